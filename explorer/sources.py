"""Repertoires a session can pick: the shipped samples and this session's own uploads (kept as bytes in its
state only), read once per content and cached; the picker shared by every page; the sample data's labels and
truth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from deeprc_core.errors import DeepRCError
from deeprc_core.io import Repertoire, read_metadata, read_repertoire, repertoire_name
from explorer import settings
from explorer.archive import safe_name
from explorer.state import session_dir


@dataclass(frozen=True)
class RepertoireSource:
    """A repertoire a page can analyse; ``key`` identifies its content for every cache."""

    key: str  # "sample:<file>@<mtime>" or "upload:<sha256>"
    name: str  # repertoire name (file name without extensions)
    origin: str  # "uploaded", "sample patient" or "sample dataset"
    path: str | None = None  # file on disk (samples only); uploads live in session_state as bytes

    @property
    def label(self) -> str:
        return f"{self.name} ({self.origin})"


def _path_key(path: Path) -> str:
    return f"sample:{path.name}@{path.stat().st_mtime_ns}"


@st.cache_data(max_entries=4, show_spinner=False)
def _sample_catalogue(stamp: float) -> list[RepertoireSource]:
    sources = []
    for path in sorted(settings.SAMPLE_SINGLE.glob("patient_*")):
        sources.append(RepertoireSource(_path_key(path), repertoire_name(path), "sample patient", str(path)))
    folder = settings.SAMPLE_DATASET / "repertoires"
    for path in sorted(folder.glob("*.tsv*")) if folder.is_dir() else []:
        sources.append(RepertoireSource(_path_key(path), repertoire_name(path), "sample dataset", str(path)))
    return sources


def sample_sources(origin: str | None = None) -> list[RepertoireSource]:
    """The shipped sample repertoires (patients first, then the 80 of the sample dataset)."""
    folders = (settings.SAMPLE_SINGLE, settings.SAMPLE_DATASET / "repertoires")
    stamp = max((p.stat().st_mtime for p in folders if p.exists()), default=0.0)
    return [s for s in _sample_catalogue(stamp) if origin is None or s.origin == origin]


def _uploads() -> dict[str, dict]:
    return st.session_state.setdefault("uploads", {})


def uploaded_sources() -> list[RepertoireSource]:
    """Repertoires uploaded in this session (newest first)."""
    return [entry["source"] for entry in reversed(list(_uploads().values()))]


def all_sources() -> list[RepertoireSource]:
    """This session's uploads, then the samples."""
    return [*uploaded_sources(), *sample_sources()]


def current_source() -> RepertoireSource:
    """The repertoire every page shows (the one picked last), else the first one there is."""
    sources = all_sources()
    chosen = st.session_state.get("current_repertoire")
    return next((s for s in sources if s.key == chosen), sources[0])


@st.cache_data(max_entries=256, show_spinner=False)
def _read_path(path: str, key: str, max_length: int) -> Repertoire:
    return read_repertoire(path, max_length=max_length)


@st.cache_data(max_entries=16, show_spinner=False)
def _read_bytes(_data: bytes, key: str, file_name: str, max_length: int) -> Repertoire:
    return read_repertoire(
        _data,
        name=file_name,
        max_length=max_length,
        max_rows=settings.MAX_UPLOAD_ROWS,
        max_bytes=settings.MAX_UPLOAD_INFLATED_BYTES,
    )


def load_repertoire(source: RepertoireSource, max_length: int) -> Repertoire:
    """The repertoire of a source, read once per (content, length limit) and cached."""
    if source.path is not None:
        return _read_path(source.path, source.key, max_length)
    entry = _uploads().get(source.key)
    if entry is None:
        raise DeepRCError(f"The upload {source.name} is no longer in this session; upload it again.")
    return _read_bytes(entry["data"], source.key, entry["file_name"], max_length)


def add_uploads(files: list, max_length: int) -> tuple[list[RepertoireSource], list[str]]:
    """Read uploaded repertoire files into this session. Returns the sources read and one error per bad file.

    Each file is read once (its content hash is remembered, as is a failure); the bytes stay in this session's
    state only. The first new upload becomes the repertoire the other pages show next.
    """
    uploads = _uploads()
    failures: dict[str, str] = st.session_state.setdefault("upload_failures", {})
    sources, errors = [], []
    selected_new = False
    for file in files or []:
        data = file.getvalue()
        key = "upload:" + hashlib.sha256(data).hexdigest()
        if key in failures:
            errors.append(failures[key])
            continue
        if key not in uploads:
            try:
                _read_bytes(data, key, file.name, max_length)
            except DeepRCError as exc:
                failures[key] = f"{file.name}: {exc}"
                errors.append(failures[key])
                continue
            source = RepertoireSource(key, repertoire_name(file.name), "uploaded")
            uploads[key] = {"source": source, "data": data, "file_name": file.name}
            if not selected_new:
                select_repertoire(key)
                selected_new = True
        sources.append(uploads[key]["source"])
    _drop_oldest_uploads(uploads, keep={s.key for s in sources})
    return sources, errors


def _drop_oldest_uploads(uploads: dict[str, dict], keep: set[str]) -> None:
    """Forget the oldest uploads (never those in ``keep``) until the session holds at most
    ``settings.MAX_SESSION_UPLOAD_BYTES``."""
    while sum(len(e["data"]) for e in uploads.values()) > settings.MAX_SESSION_UPLOAD_BYTES:
        oldest = next((k for k in uploads if k not in keep), None)
        if oldest is None:
            break
        del uploads[oldest]


def upload_help() -> str:
    """What the uploader accepts, with the size limits."""
    limit = st.get_option("server.maxUploadSize")
    return (
        "AIRR rearrangement TSV, Adaptive immunoSEQ export, 10x Genomics contig annotations, VDJdb export or a "
        f"plain list of CDR3 junctions; .gz is fine. Up to {limit} MB per file, and at most "
        f"{settings.MAX_UPLOAD_INFLATED_BYTES >> 20:,} MB and {settings.MAX_UPLOAD_ROWS:,} rows once decompressed."
    )


def show_read_report(repertoire: Repertoire) -> None:
    """A repertoire's read report: the sentence, and the rows kept/dropped by reason."""
    report = repertoire.report
    st.caption(report.summary())
    reasons = report.reasons()
    st.dataframe(reasons[reasons["rows"] > 0], hide_index=True, width="content")


def pick_repertoire(
    prefix: str, sources: list[RepertoireSource] | None = None, label: str = "Repertoire"
) -> RepertoireSource:
    """A repertoire picker (widget key ``{prefix}_repertoire``) whose choice every page shares."""
    sources = sources if sources is not None else all_sources()
    by_key = {s.key: s for s in sources}
    key = f"{prefix}_repertoire"
    if st.session_state.get(key) not in by_key:
        shared = st.session_state.get("current_repertoire")
        st.session_state[key] = shared if shared in by_key else sources[0].key
    chosen = st.selectbox(label, list(by_key), format_func=lambda k: by_key[k].label, key=key)
    st.session_state["current_repertoire"] = chosen
    return by_key[chosen]


def select_repertoire(key: str) -> None:
    """Make ``key`` the repertoire every page shows next."""
    st.session_state["current_repertoire"] = key
    for name in list(st.session_state):
        if isinstance(name, str) and name.endswith("_repertoire") and name != "current_repertoire":
            del st.session_state[name]


@st.cache_data(max_entries=4, show_spinner=False)
def sample_labels() -> pd.DataFrame:
    """Known labels of every sample repertoire: ``repertoire`` + the metadata columns (e.g. ``disease``)."""
    paths = (settings.SAMPLE_SINGLE / "labels.tsv", settings.SAMPLE_DATASET / "metadata.tsv")
    frames = [read_metadata(path) for path in paths if path.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["repertoire"])


@st.cache_data(max_entries=4, show_spinner=False)
def sample_truth() -> pd.DataFrame:
    """The implanted witnesses of every sample repertoire (both truth tables)."""
    paths = (settings.SAMPLE_SINGLE / "truth.tsv", settings.SAMPLE_DATASET / "truth.tsv")
    frames = [pd.read_csv(p, sep="\t") for p in paths if p.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["repertoire", "sequence"])


def read_uploaded_metadata(file) -> pd.DataFrame:
    """An uploaded metadata table (first column = repertoire file name or ID), written to the session folder."""
    path = session_dir() / "metadata_uploads" / (safe_name(file.name) or "metadata.tsv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(file.getvalue())
    return read_metadata(path)
