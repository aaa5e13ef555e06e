"""Server settings: where the shipped data and models live, what an upload or an in-app training may hold, and
torch's thread count. No streamlit here; modules read the limits as ``settings.NAME`` at call time, so a test
can lower one with ``monkeypatch.setattr(settings, NAME, value)``."""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent  # the repository root: app.py, app_pages/, models/, sample_data/
SAMPLE_DIR = APP_DIR / "sample_data"
SAMPLE_DATASET = SAMPLE_DIR / "dataset"  # 80 repertoires with metadata.tsv and truth.tsv
SAMPLE_SINGLE = SAMPLE_DIR / "single"  # three patients in three file formats, labels.tsv and truth.tsv

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
CLI_TRAIN = "deeprc train DATASET_DIR --target COLUMN --positive VALUE --out models/my_model"


def model_folders() -> list[Path]:
    """Folders searched for models: ``DEEPRC_MODELS_DIR`` (``os.pathsep``-separated) or ``models/``, then the
    folder models trained in the app are saved to."""
    env = os.environ.get("DEEPRC_MODELS_DIR", "")
    shipped = [Path(p) for p in env.split(os.pathsep) if p] or [APP_DIR / "models"]
    return [*shipped, trained_folder()]


def trained_folder() -> Path:
    """Where models trained in the app are saved (``DEEPRC_TRAINED_DIR``, default ``trained_models/``)."""
    return Path(os.environ.get("DEEPRC_TRAINED_DIR", APP_DIR / "trained_models"))


def set_torch_threads() -> None:
    """One torch thread per computation (``DEEPRC_TORCH_THREADS``, 0 = torch's default).

    A web server runs many short computations side by side; on a small, shared CPU, torch's intra-op threads
    wait for each other and score a 100,000-sequence repertoire 5-10x slower than a single thread does
    (measured: 2 s vs 0.2 s on 2 busy cores). Concurrency comes from the sessions instead. Called by the
    router (``app.py``) and the app benchmark, never on import.
    """
    import torch

    threads = int(os.environ.get("DEEPRC_TORCH_THREADS", "1") or 0)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
