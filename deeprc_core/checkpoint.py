"""Models on disk: a directory with ``config.json`` and ``weights.safetensors``.

``config.json`` holds the architecture (:class:`DeepRCConfig`), the alphabet, targets and classes, the
training data summary, metrics and the library version, plus the SHA-256 of the weights. Loading never
unpickles, so a model file can never run code; a corrupt, truncated or mismatched model is refused with a
clear message. Saving writes to a temporary directory and renames it into place, so an interrupted save
never leaves a broken model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.model import DeepRC, DeepRCConfig, resolve_device

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINING_STATE_FILE = "training_state.json"
_MANAGED = {CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, TRAINING_STATE_FILE}
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model: DeepRC,
    directory: str | os.PathLike,
    info: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory`` atomically and return the directory.

    Parameters
    ----------
    info
        Extra JSON-serialisable facts stored next to the architecture: training data summary, metrics,
        the command that made it... (``model.info`` is used when not given).
    optimizer, training_state
        Saved too when given (``optimizer.safetensors`` + ``training_state.json``) so training can resume.
    """
    from deeprc_core import __version__

    directory = Path(directory)
    if directory.exists() and not (directory / CONFIG_FILE).is_file():
        if not directory.is_dir() or any(directory.iterdir()):
            raise DeepRCError(f"{directory} exists and is not a DeepRC model; choose another name for the model.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    info = dict(model.info if info is None else info)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old = None
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        document = {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "alphabet": AMINO_ACIDS,
            "config": asdict(model.config),
            "weights_sha256": _sha256(tmp / WEIGHTS_FILE),
            "info": info,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2, default=str))
        if optimizer is not None:
            opt = optimizer.state_dict()
            tensors = {
                f"{pid}.{key}": value.detach().cpu().contiguous()
                for pid, slot in opt["state"].items()
                for key, value in slot.items()
                if isinstance(value, torch.Tensor)
            }
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
            state = {"param_groups": opt["param_groups"], **(training_state or {})}
            (tmp / TRAINING_STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a model folder is readable like any other
        for written in tmp.iterdir():
            os.chmod(written, 0o644)
        if directory.exists():
            for extra in directory.iterdir():  # keep what else lives with the model (its card, figures)
                if extra.name not in _MANAGED and not (tmp / extra.name).exists():
                    copy = shutil.copytree if extra.is_dir() else shutil.copy2
                    copy(extra, tmp / extra.name)
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
    except BaseException:
        if old is not None and not directory.exists():
            os.replace(old, directory)  # put the previous model back
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    model.info = info
    return directory


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (validated), without loading weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DeepRCError(f"Model folder {directory} does not exist.")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise DeepRCError(f"{directory.name} is not a DeepRC model: it has no {CONFIG_FILE}.")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepRCError(f"The {CONFIG_FILE} of model {directory.name} is corrupt ({exc}).") from exc
    if not isinstance(document, dict) or "config" not in document:
        raise DeepRCError(f"The {CONFIG_FILE} of model {directory.name} has no 'config' section.")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise DeepRCError(f"Model {directory.name} was written by a newer DeepRC Explorer; please upgrade.")
    if document.get("alphabet", AMINO_ACIDS) != AMINO_ACIDS:
        raise DeepRCError(f"Model {directory.name} uses another amino-acid alphabet and cannot be loaded.")
    known = {f.name for f in fields(DeepRCConfig)}
    unknown = set(document["config"]) - known
    if unknown:
        raise DeepRCError(f"Model {directory.name} has unknown settings {sorted(unknown)}; it does not match this version.")
    return document


def load_model(directory: str | os.PathLike, device: str | torch.device = "auto") -> DeepRC:
    """Rebuild a model from its directory: ``DeepRC(DeepRCConfig(**saved["config"]))`` + safetensors weights.

    The returned model is in eval mode on ``device`` and carries ``model.info`` (training facts, metrics)
    and ``model.path``.

    Raises
    ------
    DeepRCError
        Missing files, a corrupt or truncated weights file, a checksum mismatch, or weights that do not
        fit the architecture.
    """
    directory = Path(directory)
    document = read_model_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DeepRCError(f"Model {directory.name} has no {WEIGHTS_FILE}.")
    expected = document.get("weights_sha256")
    if not expected:
        raise DeepRCError(f"The {CONFIG_FILE} of model {directory.name} has no weights checksum; it cannot be trusted.")
    if _sha256(weights) != expected:
        raise DeepRCError(
            f"The weights of model {directory.name} do not match the checksum in its {CONFIG_FILE}: "
            "the file was changed or truncated. Re-save or re-train the model."
        )
    try:
        config = DeepRCConfig(**document["config"])
    except TypeError as exc:
        raise DeepRCError(f"The architecture in model {directory.name} is invalid ({exc}).") from exc
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DeepRCError(f"The weights file of model {directory.name} is corrupt or truncated ({exc}).") from exc
    model = DeepRC(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).split("\n")[0][:300]
        raise DeepRCError(f"The weights of model {directory.name} do not fit its architecture ({detail}).") from exc
    model.info = document.get("info", {})
    model.path = directory
    return model.to(resolve_device(device)).eval()


def list_models(*folders: str | os.PathLike) -> list[Path]:
    """Model directories (those holding a ``config.json``) directly inside the given folders, sorted."""
    found = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if (p / CONFIG_FILE).is_file() and not p.name.startswith("."))
    return found


def load_training_state(directory: str | os.PathLike, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore an optimizer saved by :func:`save_model` and return the saved training state (update count,
    best validation loss, ...). Raises :class:`DeepRCError` when the model holds no training state."""
    directory = Path(directory)
    if not (directory / OPTIMIZER_FILE).is_file() or not (directory / TRAINING_STATE_FILE).is_file():
        raise DeepRCError(f"Model {directory.name} holds no training state to resume from.")
    try:
        state = json.loads((directory / TRAINING_STATE_FILE).read_text())
        tensors = load_file(str(directory / OPTIMIZER_FILE), device="cpu")
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise DeepRCError(f"The training state of model {directory.name} is corrupt ({exc}).") from exc
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        slots.setdefault(int(pid), {})[name] = value
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": state.pop("param_groups")})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise DeepRCError(f"The training state of model {directory.name} does not fit this model ({exc}).") from exc
    return state
