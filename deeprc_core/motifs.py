"""Motifs as logo matrices: what the attributed residues and the CNN kernels have learned.

Every matrix handed out here is a pandas DataFrame in logomaker's convention: rows = integer positions
(index named ``pos``), columns = the 20 amino-acid letters in :data:`~deeprc_core.io.AMINO_ACIDS` order.

* :func:`attribution_logo` — integrated-gradient attributions of the top-attended sequences, aligned on each
  sequence's highest-attribution window; positive and negative contributions are both kept (logomaker draws
  negative values below the axis). Sequences can be weighed equally (per-sequence normalisation), restricted
  to a subset (e.g. the motif carriers), and every column records how many sequences reach it.
* :func:`enrichment_logo` — the highest-attribution k-mers against all k-mers of the same repertoire, as a
  probability, information-content or log-enrichment matrix (``logomaker.transform_matrix``).
* :func:`kernel_motifs` — per first-layer CNN kernel: a weight logo, an activation logo, the share of its
  weights on position features, its top k-mers, its importance for the prediction (ablation), its share of
  the attention logit of the top-attended sequences and its best match to known motifs;
  :func:`motif_kernels` then says which kernels found which motif.
* :func:`kernel_motif_match` — for every first-layer kernel and every offset at which the kernel and a motif
  overlap by ``min(kernel_size, motif residues)`` positions, the Pearson correlation between the kernel's
  centred weight logo and the motif's one-hot matrix over the overlapping positions (gap positions of the
  motif left out); the best offset per kernel. 1 means the kernel's residue preferences rank the motif
  residue first at every overlapping position and all others equal.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from deeprc_core.attribution import SequenceAttributions, resolve_output
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, GAP_CHARS, N_AMINO_ACIDS, PAD, Repertoire
from deeprc_core.model import DeepRC, log_attention_share
from deeprc_core.scoring import repertoire_representation

ALIGNMENTS = ("left", "right", "centre")
NORMALISATIONS = ("none", "sum", "max")
NORMALISATION_HELP = {
    "none": "raw attributions: the sequences with the largest attributions dominate the logo",
    "sum": "each sequence's absolute attributions sum to 1: one vote per sequence",
    "max": "each sequence's largest absolute attribution is 1",
}
ENRICHMENT_KINDS = ("probability", "information", "weight")
GAP = "-"  # shown in a k-mer for a kernel position beyond the sequence's end


def logo_frame(values: np.ndarray, start: int = 0) -> pd.DataFrame:
    """A ``(n_positions, 20)`` array as a logomaker matrix with integer positions ``start, start + 1, ...``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != N_AMINO_ACIDS:
        raise DeepRCError(f"A logo matrix needs one column per amino acid (20), not shape {values.shape}.")
    frame = pd.DataFrame(values, columns=list(AMINO_ACIDS), index=pd.RangeIndex(start, start + len(values)))
    frame.index.name = "pos"
    return frame


# ----------------------------------------------------------------------------------------------------------
# Attribution logos


def best_windows(scores: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Start of each sequence's highest-sum window of ``width`` residues ``(S,)``.

    Parameters
    ----------
    scores
        ``(S, L)`` per-residue scores (zero beyond each end).
    lengths
        ``(S,)`` sequence lengths; a sequence shorter than ``width`` gets start 0 (its whole length).
    """
    if width < 1:
        raise DeepRCError("The window width must be at least 1 residue.")
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n, length = scores.shape
    if length < width:
        return np.zeros(n, dtype=np.int64)
    cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(scores, axis=1)], axis=1)  # (S, L + 1)
    sums = cumulative[:, width:] - cumulative[:, :-width]  # (S, L - width + 1) window sums
    valid = np.arange(sums.shape[1])[None] <= (lengths - width)[:, None]
    sums = np.where(valid, sums, -np.inf)
    starts = np.argmax(sums, axis=1)
    return np.where(lengths < width, 0, starts)


def attribution_logo(
    result: SequenceAttributions,
    top: int | None = None,
    width: int = 5,
    align: str = "centre",
    flank: int | None = None,
    normalise: str = "none",
    select: np.ndarray | Sequence[bool] | None = None,
) -> pd.DataFrame:
    """Aggregated integrated-gradient logo of the top-attended sequences.

    Each sequence's residues are placed at their offset from an anchor in its highest-attribution window of
    ``width`` residues: the window's first residue (``align="left"``), its last (``"right"``) or its centre
    (``"centre"``, the left-of-centre residue for even widths). The anchor is row 0; rows run over every
    offset any sequence reaches (or the window plus ``flank`` residues each side). A cell holds the mean over
    sequences of the (normalised) attribution of that residue at that offset (a sequence without a residue
    there adds 0), so the logo's column sums are the average contribution per sequence; negative values are
    kept.

    Parameters
    ----------
    result
        Attributions from :func:`~deeprc_core.attribution.attribute_sequences`.
    top
        Use the ``top`` best-ranked attributed (and selected) sequences (default all).
    width
        Window width in residues.
    align
        ``"left"``, ``"right"`` or ``"centre"``.
    flank
        Residues kept each side of the window; default everything.
    normalise
        ``"none"`` (raw attributions), ``"sum"`` (each sequence's absolute attributions sum to 1, so each
        sequence has one vote) or ``"max"`` (each sequence's largest absolute attribution is 1).
    select
        ``(S,)`` flags in ``result``'s row order: only these sequences enter the logo (e.g. the motif carriers,
        :func:`~deeprc_core.recovery.witness_mask` of ``result.sequences``).

    Returns
    -------
    DataFrame
        ``(n_offsets, 20)`` logomaker matrix. ``attrs``: ``"window"``, the window's rows ``(first, last)``;
        ``"n_sequences"``, per row the number of sequences with a residue at that offset (a tuple);
        ``"n_logo_sequences"``, the sequences in the logo; ``"normalise"``.
    """
    if align not in ALIGNMENTS:
        raise DeepRCError(f"Unknown alignment '{align}'; use one of {', '.join(ALIGNMENTS)}.")
    if normalise not in NORMALISATIONS:
        raise DeepRCError(f"Unknown normalisation '{normalise}'; use one of {', '.join(NORMALISATIONS)}.")
    if len(result) == 0:
        raise DeepRCError("No attributed sequences to build a logo from.")
    order = np.argsort(result.ranks, kind="stable")
    if select is not None:
        select = np.asarray(select, dtype=bool).reshape(-1)
        if len(select) != len(result):
            raise DeepRCError(f"The selection needs one flag per attributed sequence ({len(result)}).")
        order = order[select[order]]
        if len(order) == 0:
            raise DeepRCError("None of the attributed sequences is selected, so there is no logo to draw.")
    order = order[: top if top else len(order)]
    scores = result.residue_attributions()[order].astype(np.float64)  # (S, L)
    if normalise != "none":
        scale = np.abs(scores).sum(axis=1) if normalise == "sum" else np.abs(scores).max(axis=1)  # (S,)
        scores = scores / np.where(scale > 0, scale, 1.0)[:, None]
    lengths = result.lengths[order].astype(np.int64)
    starts = best_windows(scores, lengths, width)
    anchor_shift = {"left": 0, "right": width - 1, "centre": (width - 1) // 2}[align]
    anchors = starts + np.minimum(anchor_shift, np.maximum(lengths - 1, 0))  # (S,)
    lo, hi = int((-anchors).min()), int((lengths - 1 - anchors).max())
    win_lo, win_hi = -anchor_shift, width - 1 - anchor_shift
    if flank is not None:
        lo, hi = max(lo, win_lo - flank), min(hi, win_hi + flank)
    matrix = np.zeros((hi - lo + 1, N_AMINO_ACIDS))
    counts = np.zeros(hi - lo + 1, dtype=np.int64)  # sequences with a residue at each offset
    codes = [np.frombuffer(s.encode(), dtype=np.uint8) for s in result.sequences[order]]
    lut = np.zeros(256, dtype=np.int64)
    lut[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(N_AMINO_ACIDS)
    for s, raw in enumerate(codes):
        offsets = np.arange(lengths[s]) - anchors[s]
        keep = (offsets >= lo) & (offsets <= hi)
        np.add.at(matrix, (offsets[keep] - lo, lut[raw[keep]]), scores[s, : lengths[s]][keep])
        counts[offsets[keep] - lo] += 1
    frame = logo_frame(matrix / len(order), start=lo)
    frame.attrs["window"] = (win_lo, win_hi)
    frame.attrs["n_sequences"] = tuple(int(c) for c in counts)
    frame.attrs["n_logo_sequences"] = len(order)
    frame.attrs["normalise"] = normalise
    return frame


def _kmer_windows(codes: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """All k-mers lying inside their sequences, ``(n_kmers, k)`` residue codes."""
    codes = np.asarray(codes)
    if codes.shape[1] < k:
        return np.zeros((0, k), dtype=codes.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)  # (N, W - k + 1, k)
    valid = np.arange(windows.shape[1])[None] <= (np.asarray(lengths, dtype=np.int64) - k)[:, None]
    return windows[valid]


def _count_matrix(kmers: np.ndarray, k: int) -> np.ndarray:
    """Residue counts per k-mer position ``(k, 20)``; gap/padding codes are ignored."""
    counts = np.zeros((k, N_AMINO_ACIDS))
    for p in range(k):
        column = kmers[:, p]
        counts[p] = np.bincount(column[column < PAD], minlength=N_AMINO_ACIDS)[:N_AMINO_ACIDS]
    return counts


def enrichment_logo(
    result: SequenceAttributions,
    repertoire: Repertoire,
    k: int = 5,
    kind: str = "information",
    top: int | None = None,
    max_background: int = 200_000,
    pseudocount: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Logo of the highest-attribution k-mers against background k-mers of the same repertoire.

    The foreground is each attributed sequence's highest-attribution window of ``k`` residues (sequences
    shorter than ``k`` are skipped); the background is every k-mer of every sequence of the repertoire
    (a random ``max_background`` of them when there are more), as per-position residue frequencies.

    Parameters
    ----------
    kind
        ``"probability"`` (foreground residue probabilities), ``"information"`` (bits of the foreground
        relative to the background, the letter heights of an enrichment logo) or ``"weight"``
        (log2 enrichment over the background, negative below the axis).

    Returns
    -------
    DataFrame
        ``(k, 20)`` logomaker matrix, rows 0..k-1.
    """
    import logomaker  # imported on use (start-up cost)

    if kind not in ENRICHMENT_KINDS:
        raise DeepRCError(f"Unknown logo kind '{kind}'; use one of {', '.join(ENRICHMENT_KINDS)}.")
    if result.repertoire != repertoire.name or (len(result) and result.indices.max() >= len(repertoire)):
        raise DeepRCError(f"These attributions belong to repertoire {result.repertoire}, not {repertoire.name}.")
    order = np.argsort(result.ranks, kind="stable")[: top if top else len(result)]
    lengths = result.lengths[order].astype(np.int64)
    keep = lengths >= k
    if not keep.any():
        raise DeepRCError(f"No attributed sequence is at least {k} residues long; choose a shorter k-mer.")
    scores = result.residue_attributions()[order][keep]
    starts = best_windows(scores, lengths[keep], k)
    rows = result.indices[order][keep]
    codes = np.asarray(repertoire.codes)
    foreground = np.stack([codes[r, s : s + k] for r, s in zip(rows, starts, strict=True)])  # (n_fg, k)
    background = _kmer_windows(codes, repertoire.lengths, k)
    if len(background) > max_background:
        background = background[np.random.default_rng(seed).choice(len(background), max_background, replace=False)]
    fg = logo_frame(_count_matrix(foreground, k))
    bg_counts = _count_matrix(background, k) + pseudocount
    bg = bg_counts / bg_counts.sum(axis=1, keepdims=True)  # (k, 20)
    if kind == "probability":
        out = logomaker.transform_matrix(fg, from_type="counts", to_type="probability", pseudocount=pseudocount)
    elif kind == "information":
        out = logomaker.transform_matrix(
            fg, from_type="counts", to_type="information", background=logo_frame(bg), pseudocount=pseudocount
        )
    else:
        prob = logomaker.transform_matrix(fg, from_type="counts", to_type="probability", pseudocount=pseudocount)
        out = logo_frame(np.log2(prob.to_numpy() / bg))
    return logo_frame(out.to_numpy())


# ----------------------------------------------------------------------------------------------------------
# Kernel motifs


@dataclass
class KernelMotifs:
    """What each first-layer CNN kernel detects, sorted by importance (most important first)."""

    summary: pd.DataFrame  # one row per kernel: kernel, importance, effect, position_share, ...
    weight_logos: dict[int, pd.DataFrame]  # kernel -> (kernel_size, 20) centred residue weights
    activation_logos: dict[int, pd.DataFrame] = field(default_factory=dict)  # kernel -> information logo
    top_kmers: dict[int, pd.DataFrame] = field(default_factory=dict)  # kernel -> kmer, activation, ...
    output_index: int = 0  # network output the importance refers to
    known_motifs: list[str] = field(default_factory=list)  # motifs the kernels were matched against
    motif_matches: dict[str, pd.DataFrame] = field(default_factory=dict)  # motif -> kernel_motif_match table

    @property
    def kernels(self) -> list[int]:
        """Kernel indices, most important first."""
        return [int(k) for k in self.summary["kernel"]]

    def logo_matrices(self) -> pd.DataFrame:
        """Every weight and activation logo in one long table: ``pos``, the 20 residues, ``kernel``, ``kind``
        (``"weights"`` or ``"activation"``)."""
        frames = [
            frame.reset_index().assign(kernel=k, kind=kind)
            for kind, logos in (("weights", self.weight_logos), ("activation", self.activation_logos))
            for k, frame in logos.items()
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["pos", "kernel", "kind"])

    def top_kmer_table(self) -> pd.DataFrame:
        """Every kernel's top k-mers in one table (the columns of :attr:`top_kmers` plus ``kernel``)."""
        frames = [frame.assign(kernel=k) for k, frame in self.top_kmers.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["kernel", "kmer"])


def parse_motifs(text: str) -> tuple[tuple[str, ...], list[str]]:
    """Motifs typed as text, separated by spaces or commas (upper-cased; ``.`` or ``-`` = any residue).

    Returns
    -------
    (motifs, refused)
        The valid motifs in order, and the words that are not motifs (a letter outside the 20 amino acids).
    """
    words = [w for w in text.upper().replace(",", " ").split() if w]
    allowed = set(AMINO_ACIDS) | set(GAP_CHARS)
    refused = [w for w in words if not set(w) <= allowed]
    return tuple(w for w in words if w not in refused), refused


def _check_cnn(model: DeepRC) -> None:
    if model.config.embedding != "cnn":
        raise DeepRCError("Kernel motifs exist only for CNN models; this model embeds sequences with an LSTM.")


def kernel_weight_logo(model: DeepRC, kernel: int) -> pd.DataFrame:
    """Residue weights of one first-layer kernel, centred per position: ``(kernel_size, 20)``.

    Row ``r`` is the residue at offset ``r - kernel_size // 2`` from the position the kernel is centred on;
    each row has the mean over the 20 residues subtracted (only differences between residues matter to
    one-hot input).
    """
    _check_cnn(model)
    weight = model.convs[0].weight.detach().float().cpu().numpy()  # (K, 23, k)
    if not 0 <= kernel < weight.shape[0]:
        raise DeepRCError(f"Kernel {kernel} does not exist; the first CNN layer has {weight.shape[0]} kernels.")
    residues = weight[kernel, :N_AMINO_ACIDS, :].T  # (20, k) -> (k, 20)
    return logo_frame(residues - residues.mean(axis=1, keepdims=True))


def kernel_weight_logos(model: DeepRC) -> dict[int, pd.DataFrame]:
    """:func:`kernel_weight_logo` for every first-layer kernel."""
    _check_cnn(model)
    return {k: kernel_weight_logo(model, k) for k in range(model.convs[0].out_channels)}


def seeded_kernel_patterns(model: DeepRC) -> list[str]:
    """Per first-layer kernel, the enriched pattern the data-driven start wrote into it before training (the
    model's ``seeded_kernels`` training fact), ``""`` for a kernel that started random or a model that does
    not record it."""
    n_kernels = model.convs[0].out_channels
    recorded = (getattr(model, "info", None) or {}).get("seeded_kernels")
    if not isinstance(recorded, list) or len(recorded) > n_kernels:
        return [""] * n_kernels
    return [str(p) for p in recorded] + [""] * (n_kernels - len(recorded))


def position_shares(model: DeepRC) -> np.ndarray:
    """Per first-layer kernel ``(K,)``: L1 norm of its position-feature weights / L1 norm of all its weights."""
    _check_cnn(model)
    weight = model.convs[0].weight.detach().abs().float().cpu().numpy()  # (K, 23, k)
    total = weight.sum(axis=(1, 2))
    return weight[:, N_AMINO_ACIDS:, :].sum(axis=(1, 2)) / np.maximum(total, 1e-12)


def motif_matrix(motif: str) -> pd.DataFrame:
    """One-hot matrix of a motif ``(len(motif), 20)``; gap positions (``.``/``-``) are rows of NaN."""
    motif = motif.strip().upper()
    if not motif or any(c not in AMINO_ACIDS + GAP_CHARS for c in motif):
        raise DeepRCError(f"The motif '{motif}' must use the 20 amino-acid letters and '.' for any residue.")
    values = np.zeros((len(motif), N_AMINO_ACIDS))
    for i, c in enumerate(motif):
        if c in GAP_CHARS:
            values[i] = np.nan
        else:
            values[i, AMINO_ACIDS.index(c)] = 1.0
    frame = pd.DataFrame(values, columns=list(AMINO_ACIDS))
    frame.index.name = "pos"
    return frame


def kernel_motif_match(source: DeepRC | dict[int, pd.DataFrame], motif: str) -> pd.DataFrame:
    """Best Pearson correlation of each kernel's centred weight logo with a motif (module docstring).

    Parameters
    ----------
    source
        A CNN model, or its weight logos (``kernel -> (kernel_size, 20)`` DataFrame).
    motif
        Motif letters, ``.`` for any residue (``SLGQ``, ``RD.G``).

    Returns
    -------
    DataFrame
        One row per kernel: ``kernel``, ``correlation``, ``offset`` (motif position aligned with kernel row
        0: kernel row ``r`` faces motif position ``r + offset``), ``overlap`` (motif residues compared);
        sorted by correlation, best first.
    """
    logos = kernel_weight_logos(source) if isinstance(source, DeepRC) else source
    target = motif_matrix(motif).to_numpy()  # (m, 20), NaN rows at gaps
    m = len(target)
    rows = []
    for kernel, logo in logos.items():
        weights = logo[list(AMINO_ACIDS)].to_numpy(dtype=np.float64)  # (k, 20)
        k = len(weights)
        need = min(k, int((~np.isnan(target[:, 0])).sum()))
        best = (math.nan, 0, 0)
        for offset in range(-(k - 1), m):
            r = np.arange(k)
            p = r + offset
            ok = (p >= 0) & (p < m)
            ok[ok] &= ~np.isnan(target[p[ok], 0])
            if ok.sum() < max(need, 1):
                continue
            a, b = weights[r[ok]].ravel(), target[p[ok]].ravel()
            if a.std() == 0 or b.std() == 0:
                continue
            corr = float(np.corrcoef(a, b)[0, 1])
            if math.isnan(best[0]) or corr > best[0]:
                best = (corr, offset, int(ok.sum()))
        rows.append({"kernel": int(kernel), "correlation": best[0], "offset": best[1], "overlap": best[2]})
    frame = pd.DataFrame(rows, columns=["kernel", "correlation", "offset", "overlap"])
    return frame.sort_values("correlation", ascending=False, kind="stable", na_position="last").reset_index(drop=True)


def kernel_attention_shares(
    model: DeepRC, repertoires: Sequence[Repertoire], top: int = 50, head: int | None = None, n_steps: int = 32
) -> np.ndarray:
    """Each first-layer kernel's share of the attention logit of the top-attended sequences ``(K,)``.

    For the ``top`` highest-attention sequences of each repertoire, integrated gradients of the attention
    logit ``f(z)[head]`` over the representation ``z`` (``head`` None: the sequence's log share of the attention
    over all heads, :func:`~deeprc_core.model.sequence_attention`, the repertoire's normalisers held fixed; with
    one head, its logit), from the repertoire's mean representation (an average sequence) to each sequence's
    own: the attributions to the embedding dimension of kernel ``k``, summed over all these sequences, divided
    by the summed rise of their logits above the average sequence's. The shares of all dimensions (kernels,
    genes, counts) add up to 1; a negative share lowers the attention. NaN without repertoires, and for CNNs of
    more than one layer (their embedding dimensions are the last layer's kernels, not the first's).
    """
    _check_cnn(model)
    n_kernels = model.convs[0].out_channels
    repertoires = [r for r in repertoires if len(r)]
    if not repertoires or len(model.convs) > 1:
        return np.full(n_kernels, np.nan)
    from captum.attr import IntegratedGradients  # imported on use (start-up cost)

    if head is None and model.config.n_heads == 1:
        head = 0
    attributed = np.zeros(n_kernels)
    rise = 0.0
    for rep in repertoires:
        with torch.no_grad():
            z = repertoire_representation(model, rep).float().clone()  # (N, D)
            all_logits = model.attention_logits(z)  # (N, H)
            lse = torch.logsumexp(all_logits, dim=0)  # (H,) the repertoire's log-normalisers, held fixed

        def explained(a: torch.Tensor, lse: torch.Tensor = lse) -> torch.Tensor:  # (S, H) logits -> (S,)
            return a[:, head] if head is not None else log_attention_share(a, lse)

        def score(x: torch.Tensor) -> torch.Tensor:
            return explained(model.attention_logits(x))

        logits = explained(all_logits)
        chosen = torch.argsort(logits, descending=True, stable=True)[:top]
        reference = z.mean(dim=0, keepdim=True).expand(len(chosen), -1)  # (S, D)
        attr = IntegratedGradients(score).attribute(
            z[chosen], baselines=reference, n_steps=n_steps, method="gausslegendre"
        )  # (S, D)
        attributed += attr[:, :n_kernels].sum(dim=0).detach().double().cpu().numpy()
        with torch.no_grad():
            rise += float((logits[chosen] - score(reference)).sum())
    return attributed / rise if rise != 0 else np.full(n_kernels, np.nan)


def _best_motifs(model: DeepRC, motifs: Sequence[str]) -> pd.DataFrame:
    """Per kernel (in kernel order): the known motif its weight logo matches best, and the correlation (empty and
    NaN where no motif correlates positively)."""
    n_kernels = model.convs[0].out_channels
    best = pd.DataFrame({"best_motif": [""] * n_kernels, "motif_correlation": np.nan})
    logos = kernel_weight_logos(model)
    for motif in motifs:
        match = kernel_motif_match(logos, motif).set_index("kernel")["correlation"].reindex(range(n_kernels))
        better = match.to_numpy() > best["motif_correlation"].fillna(0.0).to_numpy()  # only positive matches
        best.loc[better, "best_motif"] = motif.strip().upper()
        best.loc[better, "motif_correlation"] = match.to_numpy()[better]
    return best


def motif_kernels(motifs: KernelMotifs, min_correlation: float = 0.5) -> pd.DataFrame:
    """Which kernels found which known motif: one row per (motif, kernel) whose weight logo matches that motif
    best with a correlation of at least ``min_correlation``, plus one row per motif no kernel matches that
    well (its best kernel, ``found`` False). Sorted by motif, then share of the attention logit.

    Returns
    -------
    DataFrame
        ``motif``, ``kernel``, ``correlation``, ``attention_share``, ``importance``, ``found``, ``seeded_on``
        (the pattern the kernel started on, ``""`` for a random start).
    """
    summary = motifs.summary
    columns = ["motif", "kernel", "correlation", "attention_share", "importance", "found", "seeded_on"]
    if "best_motif" not in summary.columns or not motifs.known_motifs:
        return pd.DataFrame(columns=columns)
    rows = []
    for motif in motifs.known_motifs:
        mine = summary[summary["best_motif"] == motif]
        good = mine[mine["motif_correlation"] >= min_correlation]
        if len(good):
            good = good.sort_values(["attention_share", "motif_correlation"], ascending=False, kind="stable")
            for row in good.itertuples(index=False):
                rows.append(
                    (motif, row.kernel, row.motif_correlation, row.attention_share, row.importance, True, row.seeded_on)
                )
            continue
        match = motifs.motif_matches.get(motif)
        if match is not None and len(match):
            k = int(match["kernel"].iloc[0])
            info = summary.set_index("kernel").loc[k]
            correlation = float(match["correlation"].iloc[0])
            rows.append((motif, k, correlation, info["attention_share"], info["importance"], False, info["seeded_on"]))
    return pd.DataFrame(rows, columns=columns)


def _first_layer(
    model: DeepRC, codes: np.ndarray, lengths: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Max over positions of each first-layer kernel's pre-activation and where it is: ``(N, K)`` each."""
    conv = model.convs[0]
    values, where = [], []
    with torch.no_grad():
        for s in range(0, len(codes), chunk):
            c = torch.as_tensor(np.asarray(codes[s : s + chunk])).to(model.device)
            n = torch.as_tensor(np.asarray(lengths[s : s + chunk])).to(model.device).long()
            c = c[:, : int(n.max())]
            x = conv(model.features(c, n).transpose(1, 2))  # (n, L, 23) -> (n, 23, L) -> (n, K, L)
            mask = torch.arange(x.shape[2], device=x.device)[None, None] < n[:, None, None]
            best = x.masked_fill(~mask, float("-inf")).max(dim=2)
            values.append(best.values.cpu().numpy())
            where.append(best.indices.cpu().numpy())
    k = conv.out_channels
    if not values:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(values), np.concatenate(where)


def _kmer_at(codes: np.ndarray, length: int, centre: int, k: int) -> str:
    half = k // 2
    letters = []
    for p in range(centre - half, centre - half + k):
        letters.append(AMINO_ACIDS[codes[p]] if 0 <= p < length else GAP)
    return "".join(letters)


@contextlib.contextmanager
def _ablated(model: DeepRC, kernel: int) -> Iterator[None]:
    """Zero a first-layer kernel's output channel (its post-activation is then SELU(0) = 0)."""

    def hook(_module, _inputs, output):
        output = output.clone()
        output[:, kernel] = 0.0
        return output

    handle = model.convs[0].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _kernel_importance(model: DeepRC, repertoires: Sequence[Repertoire], output_index: int) -> np.ndarray:
    """Drop of the output when each kernel is ablated, per repertoire ``(n_repertoires, K)``."""
    n_kernels = model.convs[0].out_channels
    drops = np.zeros((len(repertoires), n_kernels))
    with torch.no_grad():
        for r, rep in enumerate(repertoires):
            z = repertoire_representation(model, rep).float().clone()  # (N, D); embedding = columns 0..E-1
            full = float(model.outputs_from_representation(z)[0][output_index])
            if len(model.convs) == 1:
                for c in range(n_kernels):
                    ablated = z.clone()
                    ablated[:, c] = 0.0  # SELU(max) of kernel c set to 0
                    drops[r, c] = full - float(model.outputs_from_representation(ablated)[0][output_index])
                continue
            dense = repertoire_representation(model, rep, dense=True)  # the path the ablation hook acts on
            full = float(model.outputs_from_representation(dense)[0][output_index])
            for c in range(n_kernels):
                with _ablated(model, c):
                    ablated = repertoire_representation(model, rep, dense=True)
                drops[r, c] = full - float(model.outputs_from_representation(ablated)[0][output_index])
    return drops


def kernel_motifs(
    model: DeepRC,
    repertoires: Sequence[Repertoire] = (),
    *,
    top_n: int = 100,
    class_name: str | None = None,
    output_index: int | None = None,
    pseudocount: float = 0.5,
    motifs: Sequence[str] = (),
    attention_top: int = 50,
) -> KernelMotifs:
    """What every first-layer CNN kernel detects, and how much the prediction relies on it.

    Parameters
    ----------
    model
        A CNN DeepRC model.
    repertoires
        Repertoires for the activation logos, top k-mers and importances; without any, only weight logos
        and position shares are computed (importance is NaN and kernels keep their order).
    top_n
        Sequences per kernel whose best k-mer enters its activation logo: the ``top_n`` sequences with the
        highest maximum activation over all given repertoires (the max over positions is what the model
        uses), each contributing the k-mer at its most activating position.
    class_name, output_index
        Output the importance refers to (see :func:`~deeprc_core.attribution.resolve_output`).
    pseudocount
        Pseudocount of the information-content activation logos.
    motifs
        Known motifs (``GWQH``, ``YW.D``) each kernel's weight logo is matched against
        (:func:`kernel_motif_match`).
    attention_top
        Top-attended sequences per repertoire whose attention logit is shared out over the kernels
        (:func:`kernel_attention_shares`).

    Returns
    -------
    KernelMotifs
        ``summary`` columns: ``kernel``; ``seeded_on`` (:func:`seeded_kernel_patterns`); ``importance``, the
        mean over repertoires of ``|output(all kernels) - output(kernel ablated)|`` where ablating sets the
        kernel's embedding dimension to 0 (the absolute value, because a motif detector moves positive and
        negative repertoires in opposite directions and a signed mean over both classes would cancel);
        ``effect``, the signed mean (positive = the kernel supports the explained output); ``position_share``
        (L1 share of position-feature weights); ``max_activation`` (highest pre-activation seen); ``top_kmer``;
        ``weight_consensus`` (argmax residue per kernel position); ``attention_share`` (share of the attention
        logit of the top-attended sequences, :func:`kernel_attention_shares`); with ``motifs``, ``best_motif``
        and ``motif_correlation`` (the known motif the kernel matches best, and how well). Sorted by
        ``importance``, highest first.
    """
    import logomaker  # imported on use (start-up cost)

    _check_cnn(model)
    if top_n < 1:
        raise DeepRCError("Use at least one sequence per kernel for its activation logo (top_n >= 1).")
    model.eval()
    output_index = resolve_output(model, class_name, output_index)
    n_kernels, k = model.convs[0].out_channels, model.config.kernel_size
    weight_logos = kernel_weight_logos(model)
    summary = pd.DataFrame(
        {
            "kernel": np.arange(n_kernels),
            "seeded_on": seeded_kernel_patterns(model),
            "importance": np.nan,
            "effect": np.nan,
            "position_share": position_shares(model),
            "max_activation": np.nan,
            "top_kmer": "",
            "weight_consensus": [
                "".join(AMINO_ACIDS[i] for i in weight_logos[c].to_numpy().argmax(axis=1)) for c in range(n_kernels)
            ],
        }
    )
    known = [m.strip().upper() for m in motifs if m and m.strip()]
    motif_matches = {m: kernel_motif_match(weight_logos, m) for m in known}
    if known:
        summary = pd.concat([summary, _best_motifs(model, known)], axis=1)
    activation_logos: dict[int, pd.DataFrame] = {}
    top_kmers: dict[int, pd.DataFrame] = {}
    repertoires = [r for r in repertoires if len(r)]
    summary["attention_share"] = kernel_attention_shares(model, repertoires, top=attention_top)
    if repertoires:
        drops = _kernel_importance(model, repertoires, output_index)
        summary["importance"] = np.abs(drops).mean(axis=0)
        summary["effect"] = drops.mean(axis=0)
        # Candidates per kernel: with one CNN layer the fast embedding already ranks sequences by their max
        # activation (embedding = SELU(max), SELU increasing); the dense convolution then runs on those only.
        rep_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(repertoires)])
        row_of = np.concatenate([np.arange(len(r)) for r in repertoires])
        if len(model.convs) == 1:
            with torch.no_grad():
                emb = np.concatenate([model.embed(r.codes, r.lengths).float().cpu().numpy() for r in repertoires])
            take = min(top_n, len(emb))
            candidates = np.unique(np.argpartition(-emb, take - 1, axis=0)[:take].ravel())
        else:
            candidates = np.arange(len(rep_of))
        width = max(int(np.asarray(r.codes).shape[1]) for r in repertoires)
        codes = np.full((len(candidates), width), PAD, dtype=np.uint8)
        lengths = np.zeros(len(candidates), dtype=np.int64)
        for n, g in enumerate(candidates):
            rep = repertoires[rep_of[g]]
            row = rep.codes[row_of[g]]
            codes[n, : len(row)] = row
            lengths[n] = rep.lengths[row_of[g]]
        values, where = _first_layer(model, codes, lengths)  # (n_candidates, K)
        lut = np.full(256, PAD, dtype=np.uint8)
        lut[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(N_AMINO_ACIDS)
        for c in range(n_kernels):
            best = np.argsort(-values[:, c], kind="stable")[:top_n]
            kmers = [_kmer_at(codes[b], int(lengths[b]), int(where[b, c]), k) for b in best]
            top_kmers[c] = pd.DataFrame(
                {
                    "kmer": kmers,
                    "activation": values[best, c].astype(np.float64),
                    "sequence": [repertoires[rep_of[candidates[b]]].sequences[row_of[candidates[b]]] for b in best],
                    "repertoire": [repertoires[rep_of[candidates[b]]].name for b in best],
                }
            )
            kmer_codes = lut[np.frombuffer("".join(kmers).encode(), dtype=np.uint8)].reshape(len(kmers), k)
            counts = logo_frame(_count_matrix(kmer_codes, k))
            activation_logos[c] = logo_frame(
                logomaker.transform_matrix(
                    counts, from_type="counts", to_type="information", pseudocount=pseudocount
                ).to_numpy()
            )
            summary.loc[c, "max_activation"] = float(values[best[0], c]) if len(best) else np.nan
            summary.loc[c, "top_kmer"] = kmers[0] if kmers else ""
        summary = summary.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    return KernelMotifs(
        summary=summary,
        weight_logos=weight_logos,
        activation_logos=activation_logos,
        top_kmers=top_kmers,
        output_index=output_index,
        known_motifs=known,
        motif_matches=motif_matches,
    )


__all__ = [
    "ALIGNMENTS",
    "ENRICHMENT_KINDS",
    "GAP_CHARS",
    "NORMALISATIONS",
    "NORMALISATION_HELP",
    "KernelMotifs",
    "attribution_logo",
    "best_windows",
    "enrichment_logo",
    "kernel_attention_shares",
    "kernel_motif_match",
    "kernel_motifs",
    "kernel_weight_logo",
    "kernel_weight_logos",
    "logo_frame",
    "motif_kernels",
    "motif_matrix",
    "parse_motifs",
    "position_shares",
    "seeded_kernel_patterns",
]
