"""Training settings: :class:`TrainingConfig`, in a module of its own so that the command line and the app can
read its defaults without importing torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deeprc_core.errors import DeepRCError


@dataclass
class TrainingConfig:
    """How to train; the defaults converge on small simulated data on a laptop CPU in minutes."""

    target: str = "disease"  # metadata column to predict
    positive: str | None = None  # value of the positive class (binary); None = infer from the column
    task: str = "auto"  # "auto", "binary", "multiclass" or "regression"
    max_updates: int = 3000  # upper bound on parameter updates
    max_minutes: float | None = 5.0  # wall-clock budget; None = no limit
    batch_size: int = 4  # repertoires per update
    n_sequences: int | None = (
        None  # sequences ranked per repertoire per update (None = all; else drawn without replacement)
    )
    n_kept: int = 128  # sequences per repertoire kept by attention (highest first) for the gradient pass
    top_fraction: float | None = None  # instead of n_kept: share of the ranked sequences kept (the paper: 0.1)
    rerank_every: int = 16  # a repertoire's sequences are ranked anew on every 16th draw of it; the draws between
    # reuse that ranking and its softmax constants (1 = rank on every draw)
    full_softmax: bool = True  # non-kept sequences stay in the softmax and the pooled sum as constants, so the
    # training forward pass equals scoring on the whole repertoire; False = softmax over the kept ones only (the paper)
    warmup_updates: int = 100  # updates that train only the output network o() before h() and f() are fine-tuned
    # too (linear probe, then fine-tune: keeps the seeded detectors from being distorted by a random head)
    fine_tune_factor: float = 0.1  # learning rate of h() and f() relative to o() after the warm-up (slow: the
    # seeded detectors are refined, not replaced)
    seed_kernels: bool = (
        True  # data-driven start: kernels and attention seeded on k-mers enriched in the training labels
    )
    seeding_by_gene: bool = True  # the start counts a pattern's carriers by the inverse of its background rate
    # among their V (J) gene's sequences, so a motif that also sits in a germline segment is not hidden by it
    learning_rate: float = 1e-3  # Adam step size
    weight_decay: float = 1e-4  # Adam L2 penalty
    eval_every: int = 25  # updates between validation evaluations
    patience: int = 40  # evaluations without validation-loss improvement before stopping (1,000 updates: the
    # validation loss of ~40 repertoires is noisy and flat while the slow fine-tuning still improves the model)
    min_updates: int = 1000  # no early stopping before this many updates (a run that has not started to learn)
    validation_fraction: float = 0.2  # share of repertoires held out (stratified) for validation
    eval_max_sequences: int | None = None  # cap sequences per validation repertoire (None = all)
    validate_unseen: bool = True  # validation scores each repertoire without the receptors that training repertoires
    # of one class hold, so receptors shared with training (a donor sampled twice, the same donors' witnesses) cannot
    # make memorising them look best; receptors both classes hold (public clones) stay
    use_genes: bool | None = None  # learn V/J gene embeddings joined to each sequence's embedding; None = when the
    # dataset has gene calls (real receptors carry much of their specificity in the V gene)
    reference: bool = True  # also fit the k-mer and V/J logistic-regression references on the same split (binary)
    seed: int = 0  # seed for splits, sampling and initialisation
    device: str = "auto"  # "auto", "cpu" or "cuda"

    def __post_init__(self) -> None:
        _check_training_config(self)


_COUNTS = {  # whole-number settings: smallest allowed value (None allowed where the field may be None)
    "max_updates": 1,
    "batch_size": 1,
    "n_sequences": 1,
    "n_kept": 1,
    "rerank_every": 1,
    "eval_every": 1,
    "patience": 1,
    "min_updates": 0,
    "warmup_updates": 0,
    "eval_max_sequences": 1,
    "seed": 0,
}
_OPTIONAL = {"n_sequences", "eval_max_sequences"}


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def _check_training_config(cfg: TrainingConfig) -> None:
    """Refuse settings that would crash, loop or silently save an untrained model (0 updates, a NaN learning
    rate, a negative time budget), each in a sentence naming the command-line flag."""
    for name, low in _COUNTS.items():
        if not hasattr(cfg, name):
            continue
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DeepRCError(f"{_flag(name)} must be a whole number of at least {low}, not {value!r}.")
    for name, positive in (
        ("learning_rate", True),
        ("weight_decay", False),
        ("max_minutes", True),
        ("fine_tune_factor", False),
    ):
        value = getattr(cfg, name)
        if name == "max_minutes" and value is None:
            continue
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (positive and value == 0):
            need = "a positive number" if positive else "zero or a positive number"
            raise DeepRCError(f"{_flag(name)} must be {need}, not {value!r}.")
    top = getattr(cfg, "top_fraction", None)
    if top is not None and not (isinstance(top, (int, float)) and 0 < top <= 1):
        raise DeepRCError(f"{_flag('top_fraction')} must lie in (0, 1], not {top!r}.")
    if not (isinstance(cfg.validation_fraction, (int, float)) and 0 < cfg.validation_fraction < 1):
        raise DeepRCError(f"validation_fraction must lie strictly between 0 and 1, not {cfg.validation_fraction!r}.")
    if cfg.task not in ("auto", "binary", "multiclass", "regression"):
        raise DeepRCError(f"Unknown task '{cfg.task}'; use auto, binary, multiclass or regression.")


__all__ = ["TrainingConfig"]
