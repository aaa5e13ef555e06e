"""Models on disk: a directory with ``config.json`` and ``weights.safetensors``.

``config.json`` holds the architecture (:class:`DeepRCConfig`), the alphabet, targets and classes, the
training data summary, metrics and the library version, plus the SHA-256 of the weights and a SHA-256 of the
settings themselves (format version, alphabet, architecture and the weights' checksum), so a hand-edited
``max_length`` is caught like a changed weight. Loading never unpickles, so a model file can never run code; a
corrupt, truncated, edited or mismatched model is refused with a clear message. Saving writes to a temporary
directory and renames it into place, so an interrupted save never leaves a broken model behind; an existing
model is replaced only when asked (``overwrite=True``), and its card (``MODEL_CARD.md``, ``card/``), which
describes the old weights, is not carried over.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from deeprc_core.io import AMINO_ACIDS, check_path
from deeprc_core.model import DeepRC, DeepRCConfig, resolve_device

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINING_STATE_FILE = "training_state.json"
_MANAGED = {CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, TRAINING_STATE_FILE}
_CARD = {"MODEL_CARD.md", "card"}  # what describes one set of weights: never carried over to new weights
FORMAT_VERSION = 2  # 2: config.json carries settings_sha256 (format 1 checked the weights only)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _settings_sha256(document: dict[str, Any]) -> str:
    """SHA-256 of what defines a model besides its weights: format, alphabet, architecture, weights' checksum."""
    covered = {k: document.get(k) for k in ("format_version", "alphabet", "config", "weights_sha256")}
    return hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_model_destination(directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Where a model may be saved: a new or empty folder, or (with ``overwrite``) an existing model. Called
    before any work starts, so a long training run never ends in a refusal.

    Raises
    ------
    DeepRCError
        The folder holds a model and ``overwrite`` is False, or it is something else than a model (a file,
        a folder with other files).
    """
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return directory
    if (directory / CONFIG_FILE).is_file():
        if not overwrite:
            raise DeepRCError(
                f"{directory} already holds a model. Choose another folder, or pass --overwrite (overwrite=True) "
                "to replace it (its model card is removed with it)."
            )
        return directory
    if not directory.is_dir() or any(directory.iterdir()):
        raise DeepRCError(f"{directory} exists and is not a DeepRC model; choose another name for the model.")
    return directory


def save_model(
    model: DeepRC,
    directory: str | os.PathLike,
    info: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    training_state: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` atomically and return the directory.

    Parameters
    ----------
    info
        Extra JSON-serialisable facts stored next to the architecture: training data summary, metrics,
        the command that made it... (``model.info`` is used when not given).
    optimizer, training_state
        Saved too when given (``optimizer.safetensors`` + ``training_state.json``) so training can resume.
    overwrite
        Replace a model already in ``directory``. Its card (``MODEL_CARD.md``, ``card/``) describes the old
        weights and is removed; other files beside it are kept. Without it, an existing model is refused.
    """
    from deeprc_core import __version__

    directory = check_model_destination(directory, overwrite)
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
        document["settings_sha256"] = _settings_sha256(json.loads(json.dumps(document, default=str)))
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
            for extra in directory.iterdir():  # keep what else lives with the model, except the old card
                if extra.name not in _MANAGED | _CARD and not (tmp / extra.name).exists():
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
    directory = check_path(directory, "Model folder", want="folder")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise DeepRCError(f"{directory.name} is not a DeepRC model: it has no {CONFIG_FILE}.")
    if path.stat().st_size > 64 << 20:
        raise DeepRCError(f"The {CONFIG_FILE} of model {directory.name} is implausibly large; it is not a model file.")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DeepRCError(f"The {CONFIG_FILE} of model {directory.name} is corrupt ({exc}).") from exc
    name = directory.name
    if not isinstance(document, dict) or "config" not in document:
        raise DeepRCError(f"The {CONFIG_FILE} of model {name} has no 'config' section.")
    version = document.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DeepRCError(f"The {CONFIG_FILE} of model {name} has an invalid format_version ({version!r}).")
    if version > FORMAT_VERSION:
        raise DeepRCError(f"Model {name} was written by a newer DeepRC Explorer; please upgrade.")
    if not isinstance(document["config"], dict):
        raise DeepRCError(f"The 'config' section of the {CONFIG_FILE} of model {name} is not a set of settings.")
    if not isinstance(document.get("info", {}), dict):
        raise DeepRCError(f"The 'info' section of the {CONFIG_FILE} of model {name} is not a set of facts.")
    if document.get("alphabet", AMINO_ACIDS) != AMINO_ACIDS:
        raise DeepRCError(f"Model {name} uses another amino-acid alphabet and cannot be loaded.")
    if version < FORMAT_VERSION or "settings_sha256" not in document:
        raise DeepRCError(
            f"Model {name} was saved by an older DeepRC Explorer (format {version}) whose checksum covers only the "
            "weights, so its settings cannot be verified. Train it again with this version."
        )
    if document["settings_sha256"] != _settings_sha256(document):
        raise DeepRCError(
            f"The settings in the {CONFIG_FILE} of model {name} were changed after it was saved (they no longer "
            "match their checksum). Restore the original file, or train the model again."
        )
    known = {f.name for f in fields(DeepRCConfig)}
    unknown = set(document["config"]) - known
    if unknown:
        raise DeepRCError(f"Model {name} has unknown settings {sorted(unknown)}; it does not match this version.")
    try:
        DeepRCConfig(**document["config"])
    except (TypeError, ValueError) as exc:
        raise DeepRCError(f"The architecture in model {name} is invalid: {exc}") from exc
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
    except (TypeError, ValueError) as exc:
        raise DeepRCError(f"The architecture in model {directory.name} is invalid: {exc}") from exc
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
    state = read_training_state(directory)
    try:
        tensors = load_file(str(directory / OPTIMIZER_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DeepRCError(f"The training state of model {directory.name} is corrupt ({exc}).") from exc
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, _, name = key.partition(".")
        if not pid.isdigit() or not name:
            raise DeepRCError(
                f"The training state of model {directory.name} is corrupt (the optimizer file has an unexpected "
                f"entry {key!r}); train without --resume."
            )
        slots.setdefault(int(pid), {})[name] = value
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": state.pop("param_groups")})
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise DeepRCError(f"The training state of model {directory.name} does not fit this model ({exc}).") from exc
    return state


def read_training_state(directory: str | os.PathLike) -> dict[str, Any]:
    """The checked ``training_state.json`` of a model saved with its optimizer (update count, best loss,
    history, optimizer settings). Cheap: the CLI calls it before any work when resuming.

    Raises
    ------
    DeepRCError
        No training state, or one that is corrupt or malformed (named in the message).
    """
    directory = check_path(directory, "Model folder", want="folder")
    if not (directory / OPTIMIZER_FILE).is_file() or not (directory / TRAINING_STATE_FILE).is_file():
        raise DeepRCError(f"Model {directory.name} holds no training state to resume from.")
    try:
        state = json.loads((directory / TRAINING_STATE_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as exc:
        problem = str(exc).split("\n")[0]
    else:
        problem = _training_state_problem(state)
    if problem is not None:
        raise DeepRCError(
            f"The training state of model {directory.name} is corrupt ({problem}); train without --resume, or "
            "resume from another copy of the model."
        )
    return state


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training_state_problem(state: object) -> str | None:
    """What is wrong with a parsed ``training_state.json`` (None when it has the shape training needs)."""
    if not isinstance(state, dict):
        return "it is not a set of values"
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        return "'param_groups' is missing or malformed"
    for group in groups:
        if not isinstance(group.get("params"), list) or not all(isinstance(p, int) for p in group["params"]):
            return "'param_groups' lists no parameters"
        for key in ("lr", "weight_decay", "eps"):
            if key in group and not (_number(group[key]) and math.isfinite(group[key]) and group[key] >= 0):
                return f"'{key}' is {group[key]!r}"
    update = state.get("update", 0)
    if isinstance(update, bool) or not isinstance(update, int) or update < 0:
        return f"'update' is {update!r}, not a count of updates"
    if not _number(state.get("best_loss", math.inf)) or math.isnan(state.get("best_loss", math.inf)):
        return f"'best_loss' is {state.get('best_loss')!r}"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(h, dict) and _number(h.get("val_loss")) and _number(h.get("update")) for h in history
    ):
        return "'history' is not a list of evaluations"
    return None
