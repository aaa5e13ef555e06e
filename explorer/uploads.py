"""Training datasets: the shipped sample dataset (converted once per server), or an upload (one zip, or
repertoire files and a metadata table) unpacked into the session's folder, converted once and kept in the
session's state. Refused uploads leave nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from deeprc_core.dataset import RepertoireDataset, open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import find_repertoire_files
from explorer import settings
from explorer.archive import safe_extract_zip, upload_digest, write_dataset_files
from explorer.state import app_cache_dir, session_dir


@st.cache_resource(show_spinner="Reading the sample dataset (once per server)…")
def sample_dataset() -> RepertoireDataset:
    """The shipped sample dataset, converted once per server process and shared read-only."""
    return open_dataset(settings.SAMPLE_DATASET, cache_path=app_cache_dir() / "sample_dataset.h5", in_memory=True)


def uploaded_dataset(files: list, metadata) -> RepertoireDataset:
    """A training dataset from uploads (one zip, or repertoire files + a metadata table), unpacked into this
    session's folder, converted once and kept in this session's state (the previous one is closed)."""
    key = upload_digest(files, metadata)
    datasets: dict = st.session_state.setdefault("train_datasets", {})
    if key in datasets:
        return datasets[key]
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DeepRCError("Upload either one zip archive or several repertoire files, not both.")
    folder = session_dir() / f"dataset_{key}"
    cache = session_dir() / f"dataset_{key}.h5"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        root = _unpack(files, metadata, zips, folder)
        dataset = _open_with_progress(root, cache)
    except BaseException:  # a refused upload leaves nothing behind in the session folder
        shutil.rmtree(folder, ignore_errors=True)
        cache.unlink(missing_ok=True)
        raise
    for old in datasets.values():
        old.close()
    datasets.clear()
    datasets[key] = dataset
    return dataset


def _unpack(files: list, metadata, zips: list, folder: Path) -> Path:
    """The uploads as a dataset folder; refused when it holds no or too many repertoire files."""
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
    if n_files > settings.MAX_TRAIN_REPERTOIRES:
        raise DeepRCError(
            f"The upload holds {n_files:,} repertoire files; training in the app is limited to "
            f"{settings.MAX_TRAIN_REPERTOIRES:,}. Use the command line: {settings.CLI_TRAIN}"
        )
    return root


def _open_with_progress(root: Path, cache: Path) -> RepertoireDataset:
    """Convert the dataset folder with a progress bar; refused beyond the in-app training limits."""
    bar = st.progress(0.0, text="Reading repertoires…")

    def _progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"Reading repertoires… {done}/{total} {name}")

    try:
        dataset = open_dataset(root, cache_path=cache, progress=_progress)
    finally:
        bar.empty()
    n_repertoires, total = len(dataset), int(dataset.summary()["n_sequences_total"])
    if n_repertoires > settings.MAX_TRAIN_REPERTOIRES or total > settings.MAX_TRAIN_SEQUENCES:
        dataset.close()
        raise DeepRCError(
            f"This dataset has {n_repertoires:,} repertoires and {total:,} sequences; training in the app is limited "
            f"to {settings.MAX_TRAIN_REPERTOIRES:,} repertoires and {settings.MAX_TRAIN_SEQUENCES:,} sequences. "
            f"Train it with the command line instead: {settings.CLI_TRAIN}"
        )
    return dataset
