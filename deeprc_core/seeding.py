"""A data-driven start for DeepRC: kernels initialised on k-mer patterns enriched in the training labels.

Why: at a witness rate of 0.2 % or below, a randomly initialised network attends to random sequences, so
the attention-based reduction almost never hands a witness to the gradient pass (measured: a witness
reached the gradient pass in 9 % of positive repertoire draws at 0.2 %), and the softmax gives each
witness a weight of ~1/N, so its gradient is tiny. The model then memorises its ~100 training repertoires.

What: before the first update, every *training* repertoire (never the validation ones) is counted for
contiguous 4-mers and for 3-residue patterns spanning up to 5 positions (gapped motifs such as ``S..NE``),
as rates per sequence. Each pattern gets a Welch t statistic between the classes (one class against the
rest for multiclass; a correlation t for regression). Patterns whose t exceeds the largest t found with
shuffled labels (and an absolute floor) are enriched; the strongest non-overlapping ones each become one
CNN kernel (weights +1 on the pattern's residues, a bias so the kernel fires only on a full match), and the
attention network gets one hidden unit per seeded kernel with a positive weight, so the untrained model
already attends to the carriers of enriched patterns. Everything stays trainable; the rest of the kernels
keep their random start. This is switchable (``TrainingConfig.seed_kernels``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deeprc_core.kmers import SEEDING_SHAPES, Shape, count_patterns, locate, pattern_string
from deeprc_core.model import DeepRC

KERNEL_WEIGHT = 1.0  # weight on each residue of a seeded pattern
ATTENTION_INPUT_WEIGHT = 2.0  # attention hidden unit <- its seeded kernel
ATTENTION_OUTPUT_WEIGHT = 3.0  # attention logit <- that hidden unit
MIN_T = 4.0  # enrichment floor, whatever the shuffled labels give


@dataclass
class EnrichedPattern:
    """A k-mer pattern enriched in one class of the training repertoires."""

    pattern: str  # e.g. "WPQV" or "S..NE" ("." = any residue)
    shape: Shape  # residue offsets, e.g. (0, 3, 4)
    residues: tuple[int, ...]  # residue codes at those offsets
    t: float  # enrichment statistic (Welch t, or correlation t for regression)
    label: int  # class index it is enriched in (0 for binary and regression)


def _residues(shape: Shape, code: int) -> tuple[int, ...]:
    out = []
    for _ in shape:
        out.append(code % 20)
        code //= 20
    return tuple(out)


def _overlaps(a: EnrichedPattern, b: EnrichedPattern) -> bool:
    """Two patterns describe the same motif when, at some shift, two or more residues coincide."""
    pa = dict(zip(a.shape, a.residues))
    pb = dict(zip(b.shape, b.residues))
    for shift in range(-b.shape[-1], a.shape[-1] + 1):
        same = sum(1 for o, r in pb.items() if pa.get(o + shift) == r)
        if same >= 2:
            return True
    return False


def _t_statistics(sums: np.ndarray, squares: np.ndarray, n: np.ndarray, floor: float) -> np.ndarray:
    """Welch t of group 1 against group 0 from per-group sums ``(2, F)`` and squares ``(2, F)``."""
    mean = sums / n[:, None]
    var = np.maximum(squares / n[:, None] - mean**2, 0.0) * n[:, None] / np.maximum(n[:, None] - 1, 1)
    se = np.sqrt(var[1] / n[1] + var[0] / n[0] + floor)
    return (mean[1] - mean[0]) / se


def enriched_patterns(
    repertoires: Callable[[int], tuple[np.ndarray, np.ndarray]],
    n_repertoires: int,
    labels: np.ndarray,
    kind: str,
    max_patterns: int,
    seed: int = 0,
    shapes: tuple[Shape, ...] = SEEDING_SHAPES,
) -> list[EnrichedPattern]:
    """The strongest non-overlapping patterns enriched in a class of the given repertoires.

    Parameters
    ----------
    repertoires
        ``repertoires(i)`` returns repertoire ``i``'s ``(codes (N, W), lengths (N,))``.
    n_repertoires
        How many repertoires there are (``0 .. n_repertoires - 1``).
    labels
        ``(n_repertoires,)`` 0/1 (binary), class index (multiclass) or standardised value (regression).
    kind
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    max_patterns
        At most this many patterns are returned, strongest first.
    seed
        Seed of the label shuffles that set the enrichment threshold.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n_shuffles = 2
    label_sets = [labels] + [rng.permutation(labels) for _ in range(n_shuffles)]
    if kind == "multiclass":
        classes = np.unique(labels)
        groups = [np.stack([(lab == c).astype(np.float64) for c in classes]) for lab in label_sets]  # (C, R)
    else:
        classes = np.array([0])
        groups = [(lab.astype(np.float64))[None, :] for lab in label_sets]  # (1, R)
    n_classes = len(classes)
    n_features = None
    # per label set, class, group (rest / class): sums and squares of per-repertoire rates (x 1,000 sequences)
    sums = squares = None
    cross = None  # regression: sum of x * y per label set
    for i in range(n_repertoires):
        codes, lengths = repertoires(i)
        x = count_patterns(codes, lengths, shapes) * (1000.0 / max(len(codes), 1))
        if n_features is None:
            n_features = len(x)
            sums = np.zeros((len(label_sets), n_classes, 2, n_features))
            squares = np.zeros_like(sums)
            cross = np.zeros((len(label_sets), n_features))
        x2 = x * x
        for s, g in enumerate(groups):
            if kind == "regression":
                sums[s, 0, 0] += x
                squares[s, 0, 0] += x2
                cross[s] += x * label_sets[s][i]
            else:
                for c in range(n_classes):
                    member = int(g[c, i] > 0.5)
                    sums[s, c, member] += x
                    squares[s, c, member] += x2
    if n_features is None:
        return []
    stats = np.zeros((len(label_sets), n_classes, n_features))
    floor = 1.0 / n_repertoires  # Poisson-like floor: a pattern seen once in one repertoire is no signal
    for s in range(len(label_sets)):
        if kind == "regression":
            y = label_sets[s].astype(np.float64)
            n = float(len(y))
            mx, my = sums[s, 0, 0] / n, y.mean()
            cov = cross[s] / n - mx * my
            sx = np.sqrt(np.maximum(squares[s, 0, 0] / n - mx**2, 0.0) + floor)
            r = np.clip(cov / (sx * (y.std() or 1.0)), -0.999, 0.999)
            stats[s, 0] = r * np.sqrt((n - 2) / (1 - r**2))
        else:
            for c in range(n_classes):
                n_in = groups[s][c].sum()
                counts = np.array([n_repertoires - n_in, n_in], dtype=np.float64)
                if counts.min() < 2:
                    continue
                stats[s, c] = _t_statistics(sums[s, c], squares[s, c], counts, floor)
    threshold = max(MIN_T, float(stats[1:].max()) if n_shuffles else MIN_T)
    found: list[EnrichedPattern] = []
    # strongest first, classes taking turns so every class gets its own detectors
    ranked = [np.argsort(-stats[0, c]) for c in range(n_classes)]
    cursors = [0] * n_classes
    active = set(range(n_classes))
    while active and len(found) < max_patterns:
        for c in sorted(active):
            while cursors[c] < n_features:
                index = int(ranked[c][cursors[c]])
                cursors[c] += 1
                t = float(stats[0, c, index])
                if t <= threshold:
                    cursors[c] = n_features
                    break
                shape, code = locate(index, shapes)
                candidate = EnrichedPattern(pattern_string(shape, code), shape, _residues(shape, code), t, int(classes[c]))
                if not any(_overlaps(candidate, other) for other in found):
                    found.append(candidate)
                    break
            if cursors[c] >= n_features:
                active.discard(c)
            if len(found) >= max_patterns:
                break
    return found


@torch.no_grad()
def seed_model(model: DeepRC, patterns: list[EnrichedPattern]) -> list[int]:
    """Write enriched patterns into the first CNN layer and the attention network of an untrained model.

    Kernel ``k`` (for the ``k``-th pattern) gets weight ``KERNEL_WEIGHT`` on each pattern residue at its
    offset (centred in the kernel), zero elsewhere, and a bias that leaves a full match at +0.5 and a match
    of all but one residue at -0.5. Attention hidden unit ``k`` reads that kernel, and the attention logit
    reads the unit (head ``k % n_heads``). Returns the seeded kernel indices.
    """
    if model.config.embedding != "cnn" or not patterns:
        return []
    conv = model.convs[0]
    width = model.config.kernel_size
    first, last = model.attention[0], model.attention[-1]
    n = min(len(patterns), model.config.n_kernels, first.out_features if len(model.attention) > 1 else 0)
    seeded = []
    for k, p in enumerate(patterns[:n]):
        span = p.shape[-1] + 1
        if span > width:
            continue
        start = (width - span) // 2
        conv.weight[k].zero_()
        for offset, residue in zip(p.shape, p.residues):
            conv.weight[k, residue, start + offset] = KERNEL_WEIGHT
        conv.bias[k] = -KERNEL_WEIGHT * (len(p.shape) - 0.5)
        # attention: hidden unit k reads kernel k only; the logit of head k % H reads unit k
        first.weight[k].zero_()
        first.weight[k, k] = ATTENTION_INPUT_WEIGHT
        first.bias[k] = 0.0
        last.weight[:, k] = 0.0
        last.weight[k % last.out_features, k] = ATTENTION_OUTPUT_WEIGHT
        seeded.append(k)
    return seeded


__all__ = ["EnrichedPattern", "enriched_patterns", "seed_model"]
