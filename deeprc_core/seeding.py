"""A data-driven start for DeepRC: kernels initialised on k-mer patterns enriched in the training labels.

Why: at a witness rate of 0.2 % or below, a randomly initialised network attends to random sequences, so
the attention-based reduction almost never hands a witness to the gradient pass (measured: a witness
reached the gradient pass in 9 % of positive repertoire draws at 0.2 %), and the softmax gives each
witness a weight of ~1/N, so its gradient is tiny. The model then memorises its ~100 training repertoires.

What: before the first update, every *training* repertoire (never the validation ones) is counted for
contiguous 4-mers and for 3-residue patterns spanning up to 5 positions (gapped motifs such as ``S..NE``),
as rates per sequence (each carrier weighed by its V and J gene when the genes are given, see
:class:`GeneWeights`). Each pattern gets a Welch t statistic between the classes (one class against the
rest for multiclass; a correlation t for regression). Patterns whose t exceeds 1.2 times the largest t a
pattern reaches under shuffled labels (averaged over shuffles; and an absolute floor) are enriched; the
strongest non-overlapping ones each become one CNN kernel (weights +1 on the pattern's residues, a bias so
the kernel fires only on a full match), and the attention network gets one hidden unit per seeded kernel
with a positive weight, so the untrained model already attends to the carriers of enriched patterns.
Everything stays trainable; the rest of the kernels keep their random start. This is switchable
(``TrainingConfig.seed_kernels``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from deeprc_core.kmers import (
    SEEDING_SHAPES,
    Shape,
    carries,
    count_patterns,
    locate,
    n_patterns,
    pattern_code,
    pattern_residues,
    pattern_string,
    window_features,
)
from deeprc_core.model import DeepRC

KERNEL_WEIGHT = 1.0  # weight on each residue of a seeded pattern
ATTENTION_INPUT_WEIGHT = 2.0  # attention hidden unit <- its seeded kernel
N_SHUFFLES = 8  # label shuffles whose largest t, averaged, set the enrichment threshold
RANDOM_UNIT_SCALE = 0.1  # output weights of the attention units not seeded, relative to their random start
MIN_T = 4.0  # enrichment floor, whatever the shuffled labels give
GENE_MIN_T = 2.0  # genes weighed in once gene usage as a whole carries signal
NULL_MARGIN = 1.2  # an enriched pattern beats the t the best pattern reaches under shuffled labels by this factor
GENE_PRIOR = 1000.0  # sequences' worth of a pattern's overall rate that its rate among one gene's sequences is
# shrunk toward (a gene with few sequences keeps a weight near 1)
GENE_COUNT_BATCH = 8_000_000  # (pattern, gene) keys counted together by GeneWeights
RESIDUAL_LEVEL = 0.025  # a pattern stays enriched outside the carriers of the stronger ones kept: one-sided
# family-wise level over the candidates tested (Bonferroni; t > 1.96 for one candidate, 2.50 for four)


@dataclass
class SeededStart:
    """What :func:`seed_model` wrote: the representation features holding a seeded detector (kernel indices,
    then gene-embedding dimensions), per attention head the names of the detectors it reads at the start
    (a pattern such as ``G.QH``, ``V genes`` or ``J genes``; empty for a head left random), and the pattern
    each seeded kernel starts on (kernel ``k`` for ``kernels[k]``; the kernels after them start random)."""

    features: list[int]
    heads: list[list[str]]
    kernels: list[str]


def head_detectors(names: list[str], n_heads: int) -> list[list[str]]:
    """Which seeded attention units each head reads, by name: unit ``k`` feeds head ``k % n_heads``
    (:func:`_seed_attention_unit`), and with fewer units than heads, head ``h`` copies head ``h % len(names)``
    (:func:`_share_heads`)."""
    heads: list[list[str]] = [[] for _ in range(n_heads)]
    for unit, name in enumerate(names):
        heads[unit % n_heads].append(name)
    for h in range(len(names), n_heads) if names else ():
        heads[h] = list(heads[h % len(names)])
    return heads


@dataclass
class EnrichedPattern:
    """A k-mer pattern enriched in one class of the training repertoires."""

    pattern: str  # e.g. "WPQV" or "S..NE" ("." = any residue)
    shape: Shape  # residue offsets, e.g. (0, 3, 4)
    residues: tuple[int, ...]  # residue codes at those offsets
    t: float  # enrichment statistic (Welch t, or correlation t for regression)
    label: int  # class index it is enriched in (0 for binary and regression)
    share: float = 0.0  # mean share of a training repertoire's sequences that carry it (windows per sequence)


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


@dataclass
class Enrichment:
    """Per-class enrichment of per-repertoire features (rows: one per class; one row for binary and regression)."""

    t: np.ndarray  # (C, F) Welch t of the class against the rest (correlation t for regression)
    threshold: float  # the t that an enriched feature must beat (shuffled labels, MIN_T)
    classes: np.ndarray  # (C,) class index of each row
    mean: np.ndarray  # (F,) mean over all repertoires
    inside: np.ndarray  # (C, F) mean over the class's repertoires (regression: all)
    outside: np.ndarray  # (C, F) mean over the other repertoires (regression: all)


def enrichment(
    features: Callable[[int], np.ndarray],
    n_repertoires: int,
    labels: np.ndarray,
    kind: str,
    unit: float,
    seed: int = 0,
) -> Enrichment:
    """Enrichment statistics of per-repertoire features, and the threshold that shuffled labels set.

    ``features(i)`` returns repertoire ``i``'s feature vector (rates); ``unit`` is the rate one occurrence
    adds in a typical repertoire (it floors the standard error so a pattern seen once is no signal).
    Only per-class sums and squares are kept, so memory does not grow with the number of repertoires.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    label_sets = [labels] + [rng.permutation(labels) for _ in range(N_SHUFFLES)]
    if kind == "multiclass":
        classes = np.unique(labels)
        groups = [np.stack([(lab == c).astype(np.float64) for c in classes]) for lab in label_sets]  # (C, R)
    else:
        classes = np.array([0])
        groups = [(lab.astype(np.float64))[None, :] for lab in label_sets]  # (1, R)
    n_classes = len(classes)
    sums = squares = cross = None  # per label set, class and group (rest / class); cross: regression sum x * y
    for i in range(n_repertoires):
        x = features(i)
        if sums is None:
            sums = np.zeros((len(label_sets), n_classes, 2, len(x)))
            squares = np.zeros_like(sums)
            cross = np.zeros((len(label_sets), len(x)))
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
    if sums is None:
        empty = np.zeros((n_classes, 0))
        return Enrichment(empty, np.inf, classes, np.zeros(0), empty, empty)
    stats = np.zeros((len(label_sets), n_classes, sums.shape[-1]))
    floor = unit**2 / n_repertoires**2
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
    # the largest t under one shuffle of the labels varies from shuffle to shuffle (three-motif regime, 16
    # shuffles of one split: 3.9-5.1); their mean is what a chance pattern reaches (on noise, twelve sets of
    # shuffles give thresholds spanning 0.33, against 0.86 for the largest of two shuffles)
    threshold = max(MIN_T, NULL_MARGIN * float(stats[1:].reshape(N_SHUFFLES, -1).max(axis=1).mean()))
    if kind == "regression":
        sizes = np.full((n_classes, 2), float(n_repertoires))
        sums[0, :, 1] = sums[0, :, 0]
    else:
        sizes = np.stack([[n_repertoires - g.sum(), g.sum()] for g in groups[0]])  # (C, 2)
    means = sums[0] / np.maximum(sizes, 1)[:, :, None]  # (C, 2, F)
    return Enrichment(stats[0], threshold, classes, sums[0, 0].sum(axis=0) / n_repertoires, means[:, 1], means[:, 0])


class GeneWeights:
    """How much one carrier of a pattern counts, by the carrier's V and J gene: the pattern's rate over all
    training sequences divided by its rate among the sequences of that gene (shrunk toward the overall rate by
    ``GENE_PRIOR`` sequences), the product over V and J (as if they were independent).

    Why: a motif that also sits in a germline segment has most of its natural carriers on one gene, and their
    count, which varies from repertoire to repertoire, hides the implants, which fall on any gene. ``S..NE``
    fits the end of TRBJ2-1 (``..SYNEQFF``): 131 of a repertoire's 162 natural carriers use it. Counting each
    carrier by the inverse of its gene's background rate (the optimal linear weight for an excess spread
    evenly over the genes against Poisson background) raised S..NE's enrichment t from 3.9 to 12.0 on the
    gapped regime's 200 training repertoires (threshold 5.5), and at 0.05 % SLGQ's from 4.4 to 6.5 and
    RDTG's from 5.7 to 8.0 (threshold 5.7). A pattern spread evenly over the genes keeps weight 1 everywhere,
    as without genes.
    """

    def __init__(
        self,
        repertoires: Callable[[int], tuple[np.ndarray, np.ndarray]],
        genes: Callable[[int], tuple[np.ndarray, np.ndarray]],
        sizes: tuple[int, int],
        n_repertoires: int,
        shapes: tuple[Shape, ...],
    ) -> None:
        self.genes = genes
        n_features = sum(n_patterns(s) for s in shapes)
        parts = [k for k in range(2) if sizes[k] > 1]
        counts = {k: np.zeros(n_features * sizes[k]) for k in parts}  # windows per (pattern, gene)
        sequences = {k: np.zeros(sizes[k]) for k in parts}  # sequences per gene
        pending: dict[int, list[np.ndarray]] = {k: [] for k in parts}  # keys not yet counted
        for i in range(n_repertoires):
            codes, lengths = repertoires(i)
            columns, rows = window_features(codes, lengths, shapes)
            calls = genes(i)
            for k in parts:
                pending[k].append(columns * sizes[k] + calls[k][rows])
                sequences[k] += np.bincount(calls[k], minlength=sizes[k])
            if parts and (i == n_repertoires - 1 or sum(len(a) for a in pending[parts[0]]) > GENE_COUNT_BATCH):
                for k in parts:  # one bincount per batch: its table of all (pattern, gene) pairs is large
                    counts[k] += np.bincount(np.concatenate(pending[k]), minlength=n_features * sizes[k])
                    pending[k] = []
        self.tables: dict[int, np.ndarray] = {}
        for k in parts:
            table = counts[k].reshape(n_features, sizes[k])
            overall = table.sum(axis=1, keepdims=True) / max(sequences[k].sum(), 1.0)  # windows per sequence
            within = (table + GENE_PRIOR * overall) / (sequences[k][None, :] + GENE_PRIOR)
            self.tables[k] = np.where(overall > 0, overall / np.maximum(within, 1e-12), 1.0).astype(np.float32)

    def window_weights(self, i: int, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The weight of pattern ``columns`` on sequence ``rows`` of repertoire ``i`` (arrays broadcast together:
        every window of the repertoire, or its carrier sequences against several patterns)."""
        calls = self.genes(i)
        weight = np.ones(np.broadcast_shapes(np.shape(columns), np.shape(rows)), dtype=np.float64)
        for k, table in self.tables.items():
            weight *= table[columns, calls[k][rows]]
        return weight


def enriched_patterns(
    repertoires: Callable[[int], tuple[np.ndarray, np.ndarray]],
    n_repertoires: int,
    labels: np.ndarray,
    kind: str,
    max_patterns: int,
    seed: int = 0,
    shapes: tuple[Shape, ...] = SEEDING_SHAPES,
    genes: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
    gene_sizes: tuple[int, int] = (0, 0),
) -> tuple[list[EnrichedPattern], float]:
    """The strongest non-overlapping patterns enriched in a class of the given repertoires, and the t they had
    to beat (the largest t under shuffled labels, averaged over ``N_SHUFFLES`` shuffles, times ``NULL_MARGIN``;
    at least ``MIN_T``).

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
    genes, gene_sizes
        ``genes(i)`` returns repertoire ``i``'s per-sequence V and J indices (0 = no call) and ``gene_sizes``
        the two vocabulary sizes: carriers are then counted with :class:`GeneWeights`. Without them (or with
        sizes below 2) every carrier counts 1.
    """
    weights = (
        GeneWeights(repertoires, genes, gene_sizes, n_repertoires, shapes)
        if genes is not None and max(gene_sizes) > 1 and n_repertoires
        else None
    )
    n_columns = sum(n_patterns(s) for s in shapes)

    def rates(i: int) -> np.ndarray:
        codes, lengths = repertoires(i)
        if weights is None:
            counts = count_patterns(codes, lengths, shapes)
        else:
            columns, rows = window_features(codes, lengths, shapes)
            counts = np.bincount(columns, weights=weights.window_weights(i, columns, rows), minlength=n_columns)
        return counts * (1000.0 / max(len(codes), 1))  # per 1,000 sequences

    unit = 1000.0 / max(len(repertoires(0)[0]), 1) if n_repertoires else 1.0  # one occurrence, per 1,000
    found_stats = enrichment(rates, n_repertoires, labels, kind, unit, seed)
    stats, threshold, classes, mean = found_stats.t, found_stats.threshold, found_stats.classes, found_stats.mean
    n_classes, n_features = stats.shape
    found: list[EnrichedPattern] = []
    columns: list[int] = []  # column of each found pattern
    # strongest first, classes taking turns so every class gets its own detectors
    ranked = [np.argsort(-stats[c]) for c in range(n_classes)]
    cursors = [0] * n_classes
    active = set(range(n_classes))
    while active and len(found) < max_patterns:
        for c in sorted(active):
            while cursors[c] < n_features:
                index = int(ranked[c][cursors[c]])
                cursors[c] += 1
                t = float(stats[c, index])
                if t <= threshold:
                    cursors[c] = n_features
                    break
                shape, code = locate(index, shapes)
                candidate = EnrichedPattern(
                    pattern_string(shape, code),
                    shape,
                    pattern_residues(shape, code),
                    t,
                    int(classes[c]),
                    mean[index] / 1000,
                )
                if not any(_overlaps(candidate, other) for other in found):
                    found.append(candidate)
                    columns.append(index)
                    break
            if cursors[c] >= n_features:
                active.discard(c)
            if len(found) >= max_patterns:
                break
    return _explained(found, columns, weights, repertoires, n_repertoires, labels, kind, unit, seed), threshold


def residual_threshold(n_tested: int) -> float:
    """The t a candidate must keep outside the stronger patterns' carriers, ``n_tested`` candidates tested."""
    return float(norm.isf(RESIDUAL_LEVEL / max(n_tested, 1)))


def _explained(
    found: list[EnrichedPattern],
    columns: list[int],
    weights: GeneWeights | None,
    repertoires: Callable[[int], tuple[np.ndarray, np.ndarray]],
    n_repertoires: int,
    labels: np.ndarray,
    kind: str,
    unit: float,
    seed: int,
) -> list[EnrichedPattern]:
    """The patterns that stay enriched among the sequences carrying none of the stronger patterns kept before
    them, as motif discovery masks the sites of a motif it has found: t above the normal quantile of
    ``RESIDUAL_LEVEL`` divided by the number of candidates tested (Bonferroni).

    Implanting a motif enriches its neighbourhood too: with SLGQ implanted before a junction's end, ``QQ.F``
    (t 8.4) and ``QE..F`` (5.8) were enriched only through SLGQ's carriers (t -1.0 and 0.2 without them), and
    seeded as motifs of their own they sent the attention to every ``GQQ.F`` junction (carrier AP 0.80 on a
    one-motif simulation; 1.00 without them). Each candidate has already beaten the shuffled-label threshold,
    so what is left is one test per candidate, at a family-wise level over the candidates: ``CAGS`` beside
    ``G.LD.`` keeps t 2.9 from implants whose L or D was substituted (threshold 2.24 for two candidates) and is
    kept; ``Q..FF`` beside WPQV kept t 2.38 among four candidates (threshold 2.50) and is not: at a nominal 2.0
    it was seeded, and in an attention head of its own it pulled the ranking off WPQV's carriers. One more
    pass over the repertoires records, per sequence, which candidates it carries (and, with ``weights``, how
    much it counts as a carrier of each, as in the first test).
    """
    if len(found) < 2:
        return found
    carried = []  # per repertoire: which candidates each carrier sequence holds, its weight as each, the size
    for i in range(n_repertoires):
        codes, lengths = repertoires(i)
        hits = np.stack([carries(codes, lengths, p.shape, pattern_code(p.residues)) for p in found], axis=1)
        rows = np.flatnonzero(hits.any(axis=1))
        counted = (
            np.ones((len(rows), len(found))) if weights is None else weights.window_weights(i, columns, rows[:, None])
        )
        carried.append((hits[rows], counted, max(len(codes), 1)))
    kept = [0]
    threshold = residual_threshold(len(found) - 1)
    for j in range(1, len(found)):

        def rate(i: int, j: int = j, stronger: tuple[int, ...] = tuple(kept)) -> np.ndarray:
            hits, counted, n = carried[i]
            alone = hits[:, j] & ~hits[:, list(stronger)].any(axis=1)
            return np.array([counted[alone, j].sum() * 1000.0 / n])

        masked = enrichment(rate, n_repertoires, labels, kind, unit, seed)
        if masked.t[list(masked.classes).index(found[j].label), 0] > threshold:
            kept.append(j)
    return [found[k] for k in kept]


def enriched_genes(
    genes: Callable[[int], tuple[np.ndarray | None, np.ndarray | None]],
    n_v: int,
    n_j: int,
    n_repertoires: int,
    labels: np.ndarray,
    kind: str,
    seed: int = 0,
) -> tuple[dict[int, float], dict[int, float]]:
    """V and J genes whose usage is enriched in a class (for regression: rises with the target).

    ``genes(i)`` returns repertoire ``i``'s per-sequence V and J indices (model vocabularies, 0 = unknown,
    None where the model does not use that gene); ``n_v`` / ``n_j`` are the vocabulary sizes (with 0).
    Returns ``{V index: weight}`` and ``{J index: weight}`` (weights in (0, 1], the strongest gene 1; empty
    when no gene beats the shuffled-label threshold), ordered by enrichment t, largest first.
    """
    if not n_repertoires or (n_v <= 1 and n_j <= 1):
        return {}, {}

    def usage(i: int) -> np.ndarray:
        v, j = genes(i)
        n = max(len(v) if v is not None else len(j), 1)
        parts = [
            np.bincount(x, minlength=size) if x is not None else np.zeros(size) for x, size in ((v, n_v), (j, n_j))
        ]
        return np.concatenate(parts) * (1000.0 / n)

    v0, j0 = genes(0)
    unit = 1000.0 / max(len(v0) if v0 is not None else len(j0), 1)
    found = enrichment(usage, n_repertoires, labels, kind, unit, seed)
    stats = found.t.copy()
    stats[:, 0] = stats[:, n_v] = 0.0  # unknown genes carry no signal
    if stats.max() <= found.threshold:
        return {}, {}
    # once one gene clears the shuffled-label threshold, every nominally enriched gene (t > 2) is weighed by the
    # log ratio of its usage in the class and outside it (one pseudo-occurrence each side): the evidence one
    # sequence of that gene gives, as in a naive Bayes classifier on gene usage. A common gene with a small
    # excess (large t, small ratio) gets little weight; a rare gene mostly used by witnesses gets much.
    if kind == "regression":
        evidence = stats
    else:
        pseudo = 2.0 * unit / n_repertoires
        evidence = np.log((found.inside + pseudo) / (found.outside + pseudo))
    weight = np.where(stats > GENE_MIN_T, np.maximum(evidence, 0.0), 0.0).max(axis=0)
    if weight.max() <= 0:
        return {}, {}
    weight = weight / weight.max()
    strength = stats.max(axis=0)

    def as_dict(w: np.ndarray, t: np.ndarray) -> dict[int, float]:  # the largest t first
        return {int(g): float(w[g]) for g in np.argsort(-t, kind="stable") if w[g] > 0}

    return as_dict(weight[:n_v], strength[:n_v]), as_dict(weight[n_v:], strength[n_v:])


def _seed_attention_unit(model: DeepRC, unit: int, feature: int, gain: float) -> None:
    """Attention hidden unit ``unit`` reads representation feature ``feature`` only; the logit of head
    ``unit % H`` reads the unit with weight ``gain`` (a one-layer f() reads the feature directly)."""
    first, last = model.attention[0], model.attention[-1]
    if len(model.attention) == 1:
        first.weight[unit % first.out_features, feature] = gain
        return
    first.weight[unit].zero_()
    first.weight[unit, feature] = ATTENTION_INPUT_WEIGHT
    first.bias[unit] = 0.0
    last.weight[:, unit] = 0.0
    last.weight[unit % last.out_features, unit] = gain


def _share_heads(model: DeepRC, read: list[int]) -> None:
    """Heads left without a seeded unit of their own (fewer seeded units than heads) read the seeded units as head
    ``h % len(read)`` does: a head left random ranks sequences by chance, and fine-tuned it may settle on a few
    non-carriers that then outrank the carriers in the attention over all heads (one motif at 1 %: carrier AP
    0.81 with the second head random). ``read[k]`` is the representation feature seeded unit ``k`` reads."""
    n_units, last = len(read), model.attention[-1]
    columns = read if len(model.attention) == 1 else list(range(n_units))
    for h in range(n_units, model.config.n_heads):
        last.weight[h, columns] = last.weight[h % n_units, columns]


def attention_gain(share: float, unit_difference: float) -> float:
    """Attention gain of a seeded unit whose carriers are ``share`` of a repertoire on average: they start with
    about half of the attention (a logit lift of ``log((1 - share) / share)``, spread over the unit's
    activation difference between carriers and the rest). A softmax saturated on the carriers would pool the
    same representation whether a repertoire holds 29 or 49 of them, hiding exactly the difference in counts
    that separates the classes when the pattern also occurs naturally (a gene always does; a 4-mer such as SLGQ
    sits in 0.3 % of background TRB junctions); at half the attention the pooled representation moves most
    with the share."""
    share = min(max(share, 1e-6), 0.5)
    return float(np.log((1 - share) / share)) / unit_difference


def _selu(x: float) -> float:
    return float(torch.nn.functional.selu(torch.tensor(x)))


def kernel_unit_difference(n_residues: int) -> float:
    """Activation difference of a seeded attention unit between a full match of its pattern and a sequence
    matching one residue of it (the typical background)."""
    on = _selu(ATTENTION_INPUT_WEIGHT * _selu(0.5 * KERNEL_WEIGHT))
    off = _selu(ATTENTION_INPUT_WEIGHT * _selu((1.5 - n_residues) * KERNEL_WEIGHT))
    return on - off


GENE_UNIT_DIFFERENCE = _selu(ATTENTION_INPUT_WEIGHT)  # gene embedding dimension 1 (enriched) against 0


@torch.no_grad()
def seed_model(
    model: DeepRC,
    patterns: list[EnrichedPattern],
    v_genes: dict[int, float] | None = None,
    j_genes: dict[int, float] | None = None,
    gene_shares: tuple[float, float] = (0.5, 0.5),
) -> SeededStart:
    """Write enriched patterns (and genes) into the first CNN layer and the attention network of an untrained
    model.

    Kernel ``k`` (for the ``k``-th pattern) gets weight ``KERNEL_WEIGHT`` on each pattern residue at its
    offset (centred in the kernel), zero elsewhere, and a bias that leaves a full match at +0.5 and a match
    of all but one residue at -0.5. Attention hidden unit ``k`` reads that kernel, and the attention logit
    reads the unit (head ``k % n_heads``; heads beyond the seeded units read them too, see
    :func:`_share_heads`) with the gain of :func:`attention_gain` for the pattern's share. Enriched V (J)
    genes get their weight on the first dimension of their gene embedding (every other gene 0), read by the
    next attention unit with the gain of :func:`attention_gain` for their mean share of a repertoire
    (``gene_shares``). Returns the seeded features of the sequence representation (kernel indices, then the
    gene-embedding dimensions of each seeded gene unit) and what each head reads (:class:`SeededStart`).
    """
    if model.config.embedding != "cnn":
        return SeededStart([], [[] for _ in range(model.config.n_heads)], [])
    conv = model.convs[0]
    width = model.config.kernel_size
    n_units = model.attention[0].out_features if len(model.attention) > 1 else model.config.n_kernels
    seeded, names = [], []  # names: one per seeded attention unit
    for p in patterns[: min(model.config.n_kernels, n_units)]:
        k = len(seeded)
        span = p.shape[-1] + 1
        if span > width:
            continue
        start = (width - span) // 2
        conv.weight[k].zero_()
        for offset, residue in zip(p.shape, p.residues):
            conv.weight[k, residue, start + offset] = KERNEL_WEIGHT
        conv.bias[k] = -KERNEL_WEIGHT * (len(p.shape) - 0.5)
        _seed_attention_unit(model, k, k, attention_gain(p.share, kernel_unit_difference(len(p.shape))))
        seeded.append(k)
        names.append(p.pattern)
    read, kernels = list(seeded), list(names)  # the feature each seeded attention unit reads; kernel patterns
    unit, feature = len(seeded), model.config.embedding_size
    for embedding, enriched, share, name in (
        (model.v_embedding, v_genes, gene_shares[0], "V genes"),
        (model.j_embedding, j_genes, gene_shares[1], "J genes"),
    ):
        if embedding is None:
            continue
        if enriched and unit < n_units:
            embedding.weight[:, 0] = 0.0
            embedding.weight[list(enriched), 0] = torch.tensor(list(enriched.values()), dtype=embedding.weight.dtype)
            _seed_attention_unit(model, unit, feature, attention_gain(share, GENE_UNIT_DIFFERENCE))
            seeded.append(feature)
            read.append(feature)
            names.append(name)
            unit += 1
            # the other dimensions each mark one of the genes of largest t, so o() can weigh their usage one by
            # one (a common gene with a small excess per sequence can still separate repertoires by its count)
            for dim, gene in enumerate(list(enriched)[: model.config.gene_embedding_dim - 1], start=1):
                embedding.weight[:, dim] = 0.0
                embedding.weight[gene, dim] = 1.0
                seeded.append(feature + dim)
        feature += model.config.gene_embedding_dim
    if 0 < unit < model.config.n_heads:
        _share_heads(model, read)
    if unit and len(model.attention) > 1:  # the random units start quiet, so the seeded ones rank the sequences
        model.attention[-1].weight[:, unit:] *= RANDOM_UNIT_SCALE
    return SeededStart(seeded, head_detectors(names, model.config.n_heads), kernels)


__all__ = [
    "EnrichedPattern",
    "GeneWeights",
    "SeededStart",
    "head_detectors",
    "enriched_genes",
    "enriched_patterns",
    "attention_gain",
    "enrichment",
    "seed_model",
]
