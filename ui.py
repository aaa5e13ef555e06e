"""Streamlit glue of DeepRC Explorer: everything the pages share, and nothing scientific.

``deeprc_core`` does the science and never imports streamlit; the pages compose it; this module holds what
sits between them: the per-session temp folder, cached model loading and cached results (keyed by model path
+ modification time and by file content hash), the repertoires a session can pick (samples and its own
uploads), safe extraction of uploaded datasets, the background training job, and the error guard that turns
any exception into a readable ``st.error`` instead of a traceback.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import streamlit as st
import torch

from deeprc_core.attribution import SequenceAttributions, attribute_sequences
from deeprc_core.checkpoint import list_models, load_model, read_model_config
from deeprc_core.dataset import RepertoireDataset, open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import (
    Repertoire,
    find_repertoire_files,
    is_repertoire_file_name,
    read_metadata,
    read_repertoire,
    repertoire_name,
)
from deeprc_core.model import DeepRC, resolve_device
from deeprc_core.motifs import KernelMotifs
from deeprc_core.motifs import kernel_motifs as compute_kernel_motifs
from deeprc_core.plots import figure_to_bytes, logo_figure
from deeprc_core.recovery import RecoveryReport, recovery_report
from deeprc_core.scoring import RepertoireScore, attention_order, attention_table, predict, score_repertoire

LOG = logging.getLogger("deeprc_explorer")

APP_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = APP_DIR / "sample_data"
SAMPLE_DATASET = SAMPLE_DIR / "dataset"
SAMPLE_SINGLE = SAMPLE_DIR / "single"

TABLE_ROWS = 5_000  # rows shown in an on-screen table; the full table is a download
MAX_UPLOAD_ROWS = 5_000_000  # rows a single uploaded repertoire may hold
MAX_UPLOAD_INFLATED_BYTES = 512 << 20  # bytes an uploaded repertoire may hold once decompressed (gzip)
MAX_SESSION_UPLOAD_BYTES = 1 << 30  # uploads a session keeps in memory (oldest dropped beyond this)
MAX_ZIP_MEMBERS = 5_000  # files an uploaded zip may hold
MAX_ZIP_BYTES = 2 << 30  # total uncompressed size of an uploaded zip (2 GiB)
MAX_TRAIN_REPERTOIRES = 500  # in-app training limit; larger datasets go to the command line
MAX_TRAIN_SEQUENCES = 5_000_000  # in-app training limit (all repertoires together)
MAX_TRAIN_MINUTES = 30.0  # in-app training time limit
MAX_PARALLEL_TRAININGS = 1  # trainings running at once on this server (others queue)
CLI_TRAIN = "python -m deeprc_core train DATASET_DIR --target COLUMN --positive VALUE --out models/my_model"


def _set_torch_threads() -> None:
    """One torch thread per computation (``DEEPRC_TORCH_THREADS``, 0 = torch's default).

    A web server runs many short computations side by side; on a small, shared CPU, torch's intra-op threads
    wait for each other and score a 100,000-sequence repertoire 5-10x slower than a single thread does
    (measured: 2 s vs 0.2 s on 2 busy cores). Concurrency comes from the sessions instead.
    """
    threads = int(os.environ.get("DEEPRC_TORCH_THREADS", "1") or 0)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


_set_torch_threads()


# ----------------------------------------------------------------------------------------------------------
# Errors: a readable message, never a traceback


@contextmanager
def errors_shown() -> Iterator[None]:
    """Show any exception raised inside as ``st.error`` (library errors verbatim, others briefly).

    Streamlit's own control flow (``st.stop``, ``st.rerun``, ``st.switch_page``) derives from BaseException and
    passes through untouched.
    """
    try:
        yield
    except DeepRCError as exc:
        st.error(str(exc))
    except MemoryError:
        st.error("The server ran out of memory for this request. Try a smaller file or fewer sequences.")
    except Exception as exc:  # noqa: BLE001 - the point is that nothing reaches the user as a traceback
        LOG.exception("Unexpected error in a page")
        st.error(f"Something went wrong ({type(exc).__name__}: {str(exc)[:300]}). The details are in the server log.")


# ----------------------------------------------------------------------------------------------------------
# The session's private temp folder


class _SessionFolder:
    """A per-session temp folder, removed when the session's state is garbage-collected or at exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="deeprc_session_"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)


def session_dir() -> Path:
    """This session's private temp folder: the only place user uploads are ever written."""
    folder = st.session_state.get("session_folder")
    if folder is None or not folder.path.is_dir():
        folder = _SessionFolder()
        st.session_state["session_folder"] = folder
    return folder.path


def _app_cache_dir() -> Path:
    """Process-wide cache folder for derived files of the shipped sample data (never user data)."""
    path = Path(tempfile.gettempdir()) / f"deeprc_explorer_{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# Models


def model_folders() -> list[Path]:
    """Folders searched for models: ``DEEPRC_MODELS_DIR`` (``os.pathsep``-separated) or ``models/``, then the
    folder models trained in the app are saved to."""
    env = os.environ.get("DEEPRC_MODELS_DIR", "")
    shipped = [Path(p) for p in env.split(os.pathsep) if p] or [APP_DIR / "models"]
    return [*shipped, trained_folder()]


def trained_folder() -> Path:
    """Where models trained in the app are saved (``DEEPRC_TRAINED_DIR``, default ``trained_models/``)."""
    return Path(os.environ.get("DEEPRC_TRAINED_DIR", APP_DIR / "trained_models"))


def available_models() -> list[str]:
    """Model directories found in :func:`model_folders`, shipped ones first, ``demo`` first of all."""
    found = [str(p) for p in list_models(*model_folders())]
    return sorted(dict.fromkeys(found), key=lambda p: (Path(p).parent == trained_folder(), Path(p).name != "demo"))


def model_stamp(path: str) -> str:
    """Cache key of a model directory: its path and the modification time of its files."""
    folder = Path(path)
    times = [f.stat().st_mtime_ns for f in (folder / "config.json", folder / "weights.safetensors") if f.exists()]
    return f"{folder.resolve()}@{max(times, default=0)}"


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _load_model(path: str, stamp: str) -> DeepRC:
    return load_model(path, device="auto")


@st.cache_data(max_entries=32, show_spinner=False)
def _model_document(path: str, stamp: str) -> dict:
    return read_model_config(path)


def model_label(path: str) -> str:
    """How a model is named in the picker: its folder name, marked when trained in the app."""
    origin = "trained here" if Path(path).parent == trained_folder() else "shipped"
    return f"{Path(path).name} ({origin})"


def selected_model_path() -> str | None:
    """The model picked in the sidebar (None when there is none)."""
    path = st.session_state.get("model_path")
    return path if path and Path(path).is_dir() else None


def current_model() -> tuple[DeepRC, str]:
    """The sidebar's model and its cache key; says so and stops the page when there is none."""
    path = selected_model_path()
    if path is None:
        st.info(
            "No model is available yet. Train one on the **Train** page (the sample data works), or put a model "
            "folder under `models/` (or point `DEEPRC_MODELS_DIR` at one)."
        )
        st.stop()
    stamp = model_stamp(path)
    try:
        return _load_model(path, stamp), stamp
    except DeepRCError as exc:
        st.error(str(exc))
        st.stop()


def device_label() -> str:
    """Where this server computes: "GPU (name)" or "CPU"."""
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return "CPU"


def positive_class(model: DeepRC) -> tuple[str, str]:
    """(target name, positive class) of the model's first target (classes[-1] for multiclass)."""
    spec = model.config.target_specs()[0]
    return spec.name, (spec.classes[-1] if spec.classes else spec.name)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def model_card(model: DeepRC) -> pd.DataFrame:
    """The model's facts as a two-column table (``fact``, ``value``) for a card."""
    config, info = model.config, dict(getattr(model, "info", {}) or {})
    spec = config.target_specs()[0]
    rows: list[tuple[str, str]] = [("model", Path(getattr(model, "path", "")).name or "unsaved")]
    if spec.kind == "binary":
        rows.append(("predicts", f"{spec.name}: {spec.classes[1]} vs {spec.classes[0]}"))
    else:
        rows.append(("predicts", f"{spec.name} ({spec.kind}{': ' + ', '.join(spec.classes) if spec.classes else ''})"))
    arch = f"{config.embedding.upper()}"
    if config.embedding == "cnn":
        arch += f", {config.n_kernels} kernels of width {config.kernel_size}"
    arch += f", {config.n_heads} attention head{'s' if config.n_heads > 1 else ''}"
    rows.append(("architecture", arch))
    data = info.get("data") or {}
    if isinstance(data, dict) and data.get("n_repertoires"):
        text = f"{data['n_repertoires']:,} repertoires"
        if data.get("n_sequences_total"):
            text += f", {int(data['n_sequences_total']):,} sequences"
        rows.append(("trained on", text))
    card = info.get("card") if isinstance(info.get("card"), dict) else {}
    for key, label in (("name", "name"), ("intended_use", "intended use")):
        if isinstance(card.get(key), str):
            rows.insert(1 if key == "name" else len(rows), (label, card[key]))
    for key in ("dataset", "training_data", "description"):
        if isinstance(info.get(key), str):
            rows.append((key.replace("_", " "), info[key]))
    held_out = card.get("held_out") or info.get("test_metrics") or info.get("held_out_metrics") or {}
    labels = {
        "auc": "held-out AUC",
        "balanced_accuracy": "held-out balanced accuracy",
        "witness_recall_top1pct": "held-out witness recall in the top 1 %",
        "auprc": "held-out AUPRC (witnesses by attention)",
        "witness_motif_mass": "held-out IG on motif residues, per witness",
        "motif_mass": "held-out IG mass on motif residues" + (", pooled" if "witness_motif_mass" in held_out else ""),
    }
    chances = {"motif_mass": "motif_mass_chance", "witness_motif_mass": "witness_motif_mass_chance"}
    for key, label in labels.items():
        if isinstance(held_out.get(key), (int, float)):
            value = _fmt(float(held_out[key]))
            if key in chances and isinstance(held_out.get(chances[key]), (int, float)):
                value += f" (chance {held_out[chances[key]]:.3f})"
            rows.append((label, value))
    metrics = info.get("validation_metrics")
    if isinstance(metrics, dict):
        for name in ("auc", "balanced_accuracy", "f1", "r2", "mae"):
            if isinstance(metrics.get(name), (int, float)):
                label = "validation " + ("AUC" if name == "auc" else name.replace("_", " "))
                rows.append((label, _fmt(float(metrics[name]))))
    if info.get("updates"):
        rows.append(
            (
                "training",
                f"{info['updates']:,} updates ({info.get('stop_reason', 'done')}, {info.get('training_seconds', '?')} s)",
            )
        )
    command = info.get("command") or card.get("command")
    if isinstance(command, str):
        rows.append(("command", command))
    return pd.DataFrame(rows, columns=["fact", "value"])


def show_markdown(text: str, base: Path) -> None:
    """Markdown whose local images (``![alt](card/x.png)`` next to the model) are shown with ``st.image``."""
    pattern = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
    position = 0
    for match in pattern.finditer(text):
        st.markdown(text[position : match.start()])
        path = (base / match.group(2)).resolve()
        if base.resolve() in path.parents and path.is_file():
            st.image(str(path), caption=match.group(1) or None)
        position = match.end()
    st.markdown(text[position:])


def model_card_markdown(model: DeepRC) -> str | None:
    """The text of ``MODEL_CARD.md`` next to the model, when there is one."""
    path = Path(getattr(model, "path", "")) / "MODEL_CARD.md"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/classify.py", "Classify", ":material/fact_check:"),
    ("pages/attention.py", "Attention", ":material/visibility:"),
    ("pages/attributions.py", "Attributions", ":material/insights:"),
    ("pages/kernel_motifs.py", "Kernel motifs", ":material/grid_view:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/validate.py", "Validate", ":material/verified:"),
    ("pages/report.py", "Report", ":material/description:"),
)


_CSS = """
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
[data-testid="stSidebarHeader"] { height: 1.5rem; min-height: 1.5rem; }
"""


def run_page(title: str, body: Callable[[], None]) -> None:
    """Set a page up (config, sidebar) and run its body inside the error guard."""
    st.set_page_config(page_title=f"{title} · DeepRC Explorer", page_icon="🧬", layout="wide")
    st.html(f"<style>{_CSS}</style>")
    with errors_shown():
        session_dir()
        sidebar()
    with errors_shown():
        body()


def _remember_model() -> None:
    st.session_state["model_path"] = st.session_state["model_choice"]


def sidebar() -> None:
    """Sidebar: the pages, the model picker with a short card, and the device in use."""
    models = available_models()
    # The choice lives in "model_path" (widget state does not survive a page switch); the picker shows it.
    pending = st.session_state.pop("model_pending", None)
    if pending in models:
        st.session_state["model_path"] = pending
    if st.session_state.get("model_path") not in models:
        st.session_state["model_path"] = models[0] if models else None
    if models:
        st.session_state["model_choice"] = st.session_state["model_path"]
    with st.sidebar:
        st.markdown("## :material/biotech: DeepRC Explorer")
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
        st.divider()
        st.markdown("### Model")
        if not models:
            st.warning("No model found. Train one on the Train page.")
        else:
            st.selectbox(
                "Model",
                models,
                format_func=model_label,
                key="model_choice",
                on_change=_remember_model,
                label_visibility="collapsed",
                help="Shipped models (models/) and models trained in this app (trained_models/).",
            )
            path = st.session_state["model_path"]
            try:
                document = _model_document(path, model_stamp(path))
                targets = document.get("config", {}).get("targets") or [{}]
                info = document.get("info") or {}
                held_out = ((info.get("card") or {}).get("held_out") or {}).get("auc")
                validation = (info.get("validation_metrics") or {}).get("auc")
                line = f"Predicts **{targets[0].get('name', '?')}**"
                classes = targets[0].get("classes") or []
                if len(classes) == 2:
                    line += f" ({classes[1]} vs {classes[0]})"
                if isinstance(held_out, (int, float)):
                    line += f" · held-out AUC {held_out:.2f}"
                elif isinstance(validation, (int, float)):
                    line += f" · validation AUC {validation:.2f}"
                st.caption(line)
            except DeepRCError as exc:
                st.error(str(exc))
        st.caption(f"Computing on **{device_label()}**")


# ----------------------------------------------------------------------------------------------------------
# Repertoires: shipped samples and this session's uploads


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
    for path in sorted(SAMPLE_SINGLE.glob("patient_*")):
        sources.append(RepertoireSource(_path_key(path), repertoire_name(path), "sample patient", str(path)))
    folder = SAMPLE_DATASET / "repertoires"
    for path in sorted(folder.glob("*.tsv*")) if folder.is_dir() else []:
        sources.append(RepertoireSource(_path_key(path), repertoire_name(path), "sample dataset", str(path)))
    return sources


def sample_sources(origin: str | None = None) -> list[RepertoireSource]:
    """The shipped sample repertoires (patients first, then the 80 of the sample dataset)."""
    stamp = max((p.stat().st_mtime for p in (SAMPLE_SINGLE, SAMPLE_DATASET / "repertoires") if p.exists()), default=0.0)
    sources = _sample_catalogue(stamp)
    return [s for s in sources if origin is None or s.origin == origin]


def _uploads() -> dict[str, dict]:
    return st.session_state.setdefault("uploads", {})


def uploaded_sources() -> list[RepertoireSource]:
    """Repertoires uploaded in this session (newest first)."""
    return [entry["source"] for entry in reversed(list(_uploads().values()))]


def all_sources() -> list[RepertoireSource]:
    """This session's uploads, then the samples."""
    return [*uploaded_sources(), *sample_sources()]


@st.cache_data(max_entries=256, show_spinner=False)
def _read_path(path: str, key: str, max_length: int) -> Repertoire:
    return read_repertoire(path, max_length=max_length)


@st.cache_data(max_entries=16, show_spinner=False)
def _read_bytes(_data: bytes, key: str, file_name: str, max_length: int) -> Repertoire:
    return read_repertoire(
        _data, name=file_name, max_length=max_length, max_rows=MAX_UPLOAD_ROWS, max_bytes=MAX_UPLOAD_INFLATED_BYTES
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
    state only.
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
                select_repertoire(key)  # the first new upload is what the other pages show next
                selected_new = True
        sources.append(uploads[key]["source"])
    keep = {s.key for s in sources}
    while sum(len(e["data"]) for e in uploads.values()) > MAX_SESSION_UPLOAD_BYTES:
        oldest = next((k for k in uploads if k not in keep), None)
        if oldest is None:
            break
        del uploads[oldest]
    return sources, errors


def upload_help() -> str:
    """What the uploader accepts, with the size limit."""
    limit = st.get_option("server.maxUploadSize")
    return (
        "AIRR rearrangement TSV, Adaptive immunoSEQ export, 10x Genomics contig annotations, VDJdb export or a "
        f"plain list of CDR3 junctions; .gz is fine. Up to {limit} MB per file, and at most "
        f"{MAX_UPLOAD_INFLATED_BYTES >> 20:,} MB and {MAX_UPLOAD_ROWS:,} rows once decompressed."
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
    """A repertoire picker whose choice is shared by every page (``current_repertoire``)."""
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


# ----------------------------------------------------------------------------------------------------------
# Labels and truth of the sample data


@st.cache_data(max_entries=4, show_spinner=False)
def sample_labels() -> pd.DataFrame:
    """Known labels of every sample repertoire: ``repertoire`` + the metadata columns (e.g. ``disease``)."""
    frames = []
    for path in (SAMPLE_SINGLE / "labels.tsv", SAMPLE_DATASET / "metadata.tsv"):
        if path.is_file():
            frames.append(read_metadata(path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["repertoire"])


@st.cache_data(max_entries=4, show_spinner=False)
def sample_truth() -> pd.DataFrame:
    """The implanted witnesses of every sample repertoire (both truth tables)."""
    frames = [
        pd.read_csv(p, sep="\t") for p in (SAMPLE_SINGLE / "truth.tsv", SAMPLE_DATASET / "truth.tsv") if p.is_file()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["repertoire", "sequence"])


def read_uploaded_metadata(file) -> pd.DataFrame:
    """An uploaded metadata table (first column = repertoire file name or ID), written to the session folder."""
    safe = _safe_name(file.name) or "metadata.tsv"
    path = session_dir() / "metadata_uploads" / safe
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(file.getvalue())
    return read_metadata(path)


# ----------------------------------------------------------------------------------------------------------
# Cached results (keys: model stamp + repertoire key)


@st.cache_data(max_entries=128, show_spinner=False)
def score(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> RepertoireScore:
    """The repertoire's prediction and per-sequence attention."""
    return score_repertoire(_model, _repertoire)


@st.cache_data(max_entries=512, show_spinner=False)
def prediction_row(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> pd.DataFrame:
    """One row of :func:`deeprc_core.scoring.predict` for one repertoire (reusing its cached score)."""
    return predict(_model, [_repertoire], [score(_model, model_key, _repertoire, rep_key)])


@st.cache_data(max_entries=32, show_spinner=False)
def attention(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> pd.DataFrame:
    """The attention table, plus ``row`` (each sequence's row in the repertoire, for attributions)."""
    result = score(_model, model_key, _repertoire, rep_key)
    table = attention_table(_model, _repertoire, score=result)
    table["row"] = attention_order(result)
    return table


@st.cache_data(max_entries=64, show_spinner=False)
def attributions(
    _model: DeepRC,
    model_key: str,
    _repertoire: Repertoire,
    rep_key: str,
    rows: tuple[int, ...] | None = None,
    top: int = 50,
    n_steps: int = 32,
    baseline: str = "zero",
    explain: str = "attention",
) -> SequenceAttributions:
    """Integrated-gradient residue attributions of some sequences (``rows``) or the ``top`` attended ones;
    ``explain`` names the attributed function (see :data:`deeprc_core.attribution.EXPLAIN`)."""
    indices = list(rows) if rows is not None else None
    top = min(top, len(_repertoire))
    return attribute_sequences(
        _model, _repertoire, indices, top=top, n_steps=n_steps, baseline=baseline, explain=explain
    )


@st.cache_data(max_entries=16, show_spinner=False)
def kernel_motifs(
    _model: DeepRC,
    model_key: str,
    _repertoires: list[Repertoire],
    rep_keys: tuple[str, ...],
    top_n: int = 100,
    motifs: tuple[str, ...] = (),
) -> KernelMotifs:
    """Kernel logos, top k-mers, importances and attention shares over some repertoires, and each kernel's best
    match among known ``motifs`` (computed on a private model copy, since ablating a kernel hooks into the model)."""
    return compute_kernel_motifs(private_copy(_model), list(_repertoires), top_n=top_n, motifs=motifs)


@st.cache_data(max_entries=16, show_spinner=False)
def recovery(
    _model: DeepRC,
    model_key: str,
    _repertoires: list[Repertoire],
    rep_keys: tuple[str, ...],
    truth: pd.DataFrame,
    attribute_top: int = 25,
    n_steps: int = 16,
    motif: str | None = None,
    explain: str = "attention",
) -> RecoveryReport:
    """Recovery scores of the model on repertoires with known witnesses (see :mod:`deeprc_core.recovery`)."""
    return recovery_report(
        _model, list(_repertoires), truth, attribute_top=attribute_top, n_steps=n_steps, motif=motif, explain=explain
    )


@st.cache_data(max_entries=64, show_spinner=False)
def table_tsv(_table: pd.DataFrame, key: str) -> bytes:
    """A table as TSV bytes (for downloads), cached by a key naming its content."""
    return _table.to_csv(sep="\t", index=False, float_format="%.6g").encode()


def show_table(
    table: pd.DataFrame, file_name: str, key: str, column_config: dict | None = None, what: str = "rows"
) -> None:
    """A table on screen (at most :data:`TABLE_ROWS` rows, with a note) and its full TSV as a download."""
    shown = table.head(TABLE_ROWS)
    st.dataframe(shown, hide_index=True, column_config=column_config, width="stretch")
    if len(table) > TABLE_ROWS:
        st.caption(f"Showing the first {TABLE_ROWS:,} of {len(table):,} {what}; the download holds all of them.")
    st.download_button(
        f"Download all {len(table):,} {what} (TSV)",
        data=lambda: table_tsv(table, key),
        file_name=file_name,
        mime="text/tab-separated-values",
        on_click="ignore",
        key=f"download_{key}",
    )


def private_copy(model: DeepRC) -> DeepRC:
    """A private copy of a shared model, for computations that hook into it (kernel ablation)."""
    return copy.deepcopy(model)


@st.cache_data(max_entries=256, show_spinner=False)
def figure_png(_build: Callable[[], object], key: str) -> bytes:
    """A figure rendered to PNG once per ``key`` (a string naming everything the figure depends on): logos
    are slow to draw, and switching pages must not redraw them."""
    return figure_to_bytes(_build(), "png")


def kernel_logo_png(motifs: KernelMotifs, settings: str, kernel: int, kind: str) -> bytes:
    """One kernel's ``"weights"`` or ``"activation"`` logo as a cached PNG (``settings`` names the model and the
    repertoires the motifs were computed on). Drawn one by one so a page shows the first logos at once and a
    changed selection redraws only the new kernels."""
    if kind == "weights":
        importance = motifs.summary.set_index("kernel")["importance"].get(kernel, float("nan"))
        title = f"kernel {kernel} weights" + (f" (importance {importance:.2g})" if np.isfinite(importance) else "")
        matrix = motifs.weight_logos[kernel]
    else:
        title, matrix = f"kernel {kernel} top k-mers (bits)", motifs.activation_logos[kernel]
    return figure_png(lambda: logo_figure(matrix, title=title, figsize=(3.4, 2.0)), f"klogo|{settings}|{kernel}|{kind}")


def show_figure(build: Callable[[], object], key: str, stem: str, formats: tuple[str, ...] = ("png", "svg")) -> None:
    """A (matplotlib) figure as a cached PNG image, with download buttons (SVG rendered only when clicked)."""
    png = figure_png(build, key)
    st.image(png, width="content")
    short = hashlib.sha1(key.encode()).hexdigest()[:10]
    png_download(lambda fmt: png if fmt == "png" else figure_to_bytes(build(), fmt), stem, short, formats)


def png_download(
    fig_bytes: Callable[[str], bytes], stem: str, key: str, formats: tuple[str, ...] = ("png", "svg")
) -> None:
    """Download buttons for a figure in several formats; each is rendered only when clicked."""
    mimes = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "tsv": "text/tab-separated-values"}
    cols = st.columns(len(formats))
    for col, fmt in zip(cols, formats):
        col.download_button(
            fmt.upper(),
            data=lambda fmt=fmt: fig_bytes(fmt),
            file_name=f"{stem}.{fmt}",
            mime=mimes.get(fmt, "application/octet-stream"),
            on_click="ignore",
            key=f"download_{key}_{fmt}",
            width="stretch",
        )


# ----------------------------------------------------------------------------------------------------------
# Uploaded datasets (for training): safe extraction into the session folder


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(name: str) -> str:
    """A file name without directories or unusual characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return _SAFE.sub("_", base).lstrip(".")


def _zip_members(data: bytes) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo], list[tuple[str, ...]]]:
    """Open an uploaded zip and check everything its directory tells, before one byte is extracted: the
    members (macOS metadata left out) and each one's path parts."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise DeepRCError("The uploaded file is not a valid zip archive.") from exc
    members = [
        m
        for m in infos
        if not m.is_dir()
        and not m.filename.startswith("__MACOSX/")
        and not PurePosixPath(m.filename).name.startswith("._")
    ]
    if len(members) > MAX_ZIP_MEMBERS:
        raise DeepRCError(f"The zip holds {len(members):,} files; at most {MAX_ZIP_MEMBERS:,} are accepted.")
    n_repertoires = sum(is_repertoire_file_name(PurePosixPath(m.filename).name) for m in members)
    if n_repertoires > MAX_TRAIN_REPERTOIRES:
        raise DeepRCError(
            f"The zip holds {n_repertoires:,} repertoire files; training in the app is limited to "
            f"{MAX_TRAIN_REPERTOIRES:,}. Use the command line: {CLI_TRAIN}"
        )
    declared = sum(m.file_size for m in members)
    if declared > MAX_ZIP_BYTES:
        raise DeepRCError(
            f"The zip unpacks to {declared / 2**30:.1f} GiB; at most {MAX_ZIP_BYTES / 2**30:.0f} GiB are accepted in the "
            "app. Train on large datasets with the command line."
        )
    paths, files, folders = [], set(), set()
    for m in members:
        name = m.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or "\0" in name or not parts:
            raise DeepRCError(f"The zip contains an unsafe path ({m.filename!r}); it was not extracted.")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise DeepRCError(f"The zip contains a symbolic link ({m.filename!r}); it was not extracted.")
        if m.flag_bits & 0x1:
            raise DeepRCError(
                f"The zip is password-protected ({m.filename!r} is encrypted); upload a zip without a password."
            )
        if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            raise DeepRCError(
                f"{m.filename!r} in the zip uses a compression method this server cannot unpack; re-create the zip "
                "with standard (deflate) compression."
            )
        if parts in files or parts in folders or any(parts[:i] in files for i in range(1, len(parts))):
            raise DeepRCError(
                f"The zip holds {m.filename!r} twice (or as both a file and a folder); it was not extracted."
            )
        files.add(parts)
        folders.update(parts[:i] for i in range(1, len(parts)))
        paths.append(parts)
    return archive, members, paths


def safe_extract_zip(data: bytes, destination: Path) -> Path:
    """Extract an uploaded zip into ``destination`` after checking it; returns the dataset folder in it.

    Refused, from the zip's directory before anything is extracted: not a zip, more than
    :data:`MAX_ZIP_MEMBERS` files or :data:`MAX_TRAIN_REPERTOIRES` repertoire files, more than
    :data:`MAX_ZIP_BYTES` declared, absolute paths, ``..`` components, drive letters, symbolic links, encrypted
    entries, unknown compression and names that clash. While extracting: more bytes than declared, or a damaged
    entry (bad CRC). On every refusal ``destination`` is removed, so nothing is left half-extracted; no message
    names a server path.
    """
    archive, members, paths = _zip_members(data)
    root = destination.resolve()
    try:
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for m, parts in zip(members, paths):
            target = root / Path(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(m) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > MAX_ZIP_BYTES:
                            raise DeepRCError("The zip unpacks to more data than it declares; it was not extracted.")
                        dst.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise DeepRCError(
                    f"The zip is damaged: {m.filename!r} cannot be unpacked (it fails its checksum or is cut short). "
                    "Create the zip again and upload it."
                ) from exc
            except OSError as exc:
                raise DeepRCError(
                    f"{m.filename!r} could not be unpacked on the server ({exc.strerror or type(exc).__name__})."
                ) from exc
        return dataset_root(root)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def dataset_root(folder: Path) -> Path:
    """The folder holding ``metadata.*``: ``folder`` itself or its single subfolder."""
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if any((candidate / f"metadata{ext}").is_file() for ext in (".tsv", ".csv", ".txt")):
            return candidate
    raise DeepRCError(
        "No metadata.tsv found. The dataset needs a metadata table named metadata.tsv (or .csv) whose first "
        "column is the repertoire file name or ID, next to the repertoire files or a repertoires/ folder."
    )


def write_dataset_files(files: list, metadata, destination: Path) -> Path:
    """Write several uploaded repertoire files and a metadata file as a dataset folder; returns the folder."""
    reps = destination / "repertoires"
    reps.mkdir(parents=True, exist_ok=True)
    meta_name = None
    for file in files:
        name = _safe_name(file.name)
        if not name:
            continue
        if metadata is None and name.lower().startswith("metadata"):
            meta_name = name
            (destination / ("metadata" + Path(name).suffix)).write_bytes(file.getvalue())
            continue
        (reps / name).write_bytes(file.getvalue())
    if metadata is not None:
        suffix = Path(_safe_name(metadata.name)).suffix or ".tsv"
        (destination / f"metadata{suffix if suffix in ('.tsv', '.csv', '.txt') else '.tsv'}").write_bytes(
            metadata.getvalue()
        )
    elif meta_name is None:
        raise DeepRCError("Add the metadata table (first column: repertoire file name or ID; one column per label).")
    return destination


def _digest(files: list, metadata) -> str:
    digest = hashlib.sha256()
    for file in [*files, *([metadata] if metadata is not None else [])]:
        digest.update(file.name.encode() + b"\0")
        digest.update(hashlib.sha256(file.getvalue()).digest())
    return digest.hexdigest()[:16]


def _check_training_size(dataset: RepertoireDataset) -> None:
    total = int(dataset.summary()["n_sequences_total"])
    if len(dataset) > MAX_TRAIN_REPERTOIRES or total > MAX_TRAIN_SEQUENCES:
        raise DeepRCError(
            f"This dataset has {len(dataset):,} repertoires and {total:,} sequences; training in the app is limited to "
            f"{MAX_TRAIN_REPERTOIRES:,} repertoires and {MAX_TRAIN_SEQUENCES:,} sequences. Train it with the command "
            f"line instead: {CLI_TRAIN}"
        )


@st.cache_resource(show_spinner="Reading the sample dataset (once per server)…")
def sample_dataset() -> RepertoireDataset:
    """The shipped sample dataset, converted once per server process and shared read-only."""
    return open_dataset(SAMPLE_DATASET, cache_path=_app_cache_dir() / "sample_dataset.h5", in_memory=True)


def uploaded_dataset(files: list, metadata) -> RepertoireDataset:
    """A training dataset from uploads (one zip, or repertoire files + a metadata table), unpacked into this
    session's folder, converted once and kept in this session's state."""
    key = _digest(files, metadata)
    datasets: dict = st.session_state.setdefault("train_datasets", {})
    if key in datasets:
        return datasets[key]
    folder = session_dir() / f"dataset_{key}"
    shutil.rmtree(folder, ignore_errors=True)
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DeepRCError("Upload either one zip archive or several repertoire files, not both.")
    cache = session_dir() / f"dataset_{key}.h5"
    try:
        dataset = _unpack_and_open(files, metadata, zips, folder, cache)
    except BaseException:  # a refused upload leaves nothing behind in the session folder
        shutil.rmtree(folder, ignore_errors=True)
        cache.unlink(missing_ok=True)
        raise
    for old in datasets.values():
        old.close()
    datasets.clear()
    datasets[key] = dataset
    return dataset


def _unpack_and_open(files: list, metadata, zips: list, folder: Path, cache: Path) -> RepertoireDataset:
    if zips:
        root = safe_extract_zip(zips[0].getvalue(), folder)
        if metadata is not None:
            for old in root.glob("metadata.*"):
                old.unlink()
            (root / "metadata.tsv").write_bytes(metadata.getvalue())
    else:
        root = write_dataset_files(files, metadata, folder)
    n_files = len(find_repertoire_files(root))
    if n_files == 0:
        raise DeepRCError("No repertoire files (.tsv, .csv, .txt, optionally .gz) were found in the upload.")
    if n_files > MAX_TRAIN_REPERTOIRES:
        raise DeepRCError(
            f"The upload holds {n_files:,} repertoire files; training in the app is limited to {MAX_TRAIN_REPERTOIRES:,}. "
            f"Use the command line: {CLI_TRAIN}"
        )
    bar = st.progress(0.0, text="Reading repertoires…")

    def _progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"Reading repertoires… {done}/{total} {name}")

    try:
        dataset = open_dataset(root, cache_path=cache, progress=_progress)
    finally:
        bar.empty()
    try:
        _check_training_size(dataset)
    except DeepRCError:
        dataset.close()
        raise
    return dataset


# ----------------------------------------------------------------------------------------------------------
# Background training (one thread per session's job, a server-wide slot limit)


@st.cache_resource
def _training_slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(MAX_PARALLEL_TRAININGS)


@dataclass
class TrainingJob:
    """A training run in a background thread. The page polls :meth:`snapshot`; :meth:`cancel` stops it."""

    run: Callable[..., object]  # train(should_stop=..., on_update=..., on_evaluate=...) -> TrainingResult
    description: str  # what is being trained, for the page
    target: str = ""  # metadata column being learned
    positive: str | None = None  # its positive value (None: regression)
    data_label: str = ""  # which data, in words (goes into the model card)
    max_minutes: float | None = None  # time budget, for the progress bar
    state: str = "queued"  # queued, running, done, cancelled, failed
    progress: object = None  # the latest TrainingProgress
    history: list = field(default_factory=list)  # evaluations so far
    result: object = None  # the TrainingResult when done
    error: str | None = None  # readable failure message
    started: float = field(default_factory=time.time)
    saved_as: str | None = None  # model directory once saved
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> TrainingJob:
        self._thread = threading.Thread(target=self._work, name="deeprc-training", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop before its next update (the best model so far is kept)."""
        self._stop.set()

    @property
    def cancelling(self) -> bool:
        return self._stop.is_set()

    def _update(self, progress) -> None:
        with self._lock:
            self.progress = progress
            self.history = list(progress.history)

    def _work(self) -> None:
        slots = _training_slots()
        while not slots.acquire(timeout=0.5):
            if self._stop.is_set():
                with self._lock:
                    self.state = "cancelled"
                return
        try:
            with self._lock:
                self.state = "running"
                self.started = time.time()
            result = self.run(should_stop=self._stop.is_set, on_update=self._update, on_evaluate=self._update)
            with self._lock:
                self.result = result
                self.history = list(result.history)
                self.state = "cancelled" if self._stop.is_set() else "done"
        except DeepRCError as exc:
            with self._lock:
                self.error, self.state = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - reported on the page, never as a traceback
            LOG.exception("Training failed")
            with self._lock:
                self.error, self.state = f"Training failed unexpectedly ({type(exc).__name__}: {exc}).", "failed"
        finally:
            slots.release()

    def snapshot(self) -> dict:
        """A consistent copy of the job's state for drawing."""
        with self._lock:
            return {
                "state": self.state,
                "progress": self.progress,
                "history": list(self.history),
                "result": self.result,
                "error": self.error,
                "elapsed": time.time() - self.started,
            }

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed") and (self._thread is None or not self._thread.is_alive())


def show_reference(model: DeepRC, deeprc_auc: float | None) -> None:
    """DeepRC's validation AUC beside the k-mer and V/J references fitted on the same split (from training)."""
    reference = (getattr(model, "info", {}) or {}).get("reference")
    if not reference:
        return
    st.subheader("Is the model worth believing? References on the same validation split")
    cols = st.columns(3)
    cols[0].metric("DeepRC", "–" if deeprc_auc is None else f"{deeprc_auc:.3f}", help="Validation AUC of this model.")
    cols[1].metric(
        "k-mer logistic regression",
        f"{reference['kmer_auc']:.3f}",
        help="3- and 4-mer frequencies per repertoire, L1-regularised logistic regression, same training repertoires.",
    )
    cols[2].metric(
        "V/J-usage logistic regression",
        f"{reference['vj_auc']:.3f}",
        help="V and J gene usage per repertoire, L1-regularised logistic regression, same training repertoires.",
    )
    st.caption(
        "AUC on the repertoires held out for validation during training. If a reference beats DeepRC here, trust "
        "the reference's classification and read DeepRC's attention and logos with care."
    )


def model_info_json(model: DeepRC) -> str:
    """The model's training facts as pretty JSON."""
    return json.dumps(getattr(model, "info", {}) or {}, indent=2, default=str)


def zip_folder(folder: Path) -> bytes:
    """A folder as zip bytes (for downloading a model)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()
