"""Recovery scores: did the model find the signal, when the truth is known (simulated or curated data)?

The truth can be given four ways; each marks *witness* sequences of a repertoire:

* a witness table (``truth.tsv`` of :mod:`deeprc_core.simulate`: ``repertoire``, ``sequence``, ``v_call``,
  ``j_call``, ``motif``, ``motif_start``, ``motif_length``) — its rows for the repertoire;
* a motif regular expression (a sequence containing a match is a witness);
* a position weight matrix (a sequence whose best window scores at least a threshold is a witness);
* a list of known sequences (e.g. antigen-specific clonotypes from VDJdb).

Scores
------
* **Attention ranking** (per repertoire; the field's sequence-level scores): sequences sorted by attention
  logit, highest first (ties keep file order). ``precision@k`` = witnesses among the top ``k`` / ``k``;
  ``recall@k`` = witnesses among the top ``k`` / all witnesses (``k`` = 10, 100, 1000 by default); the same
  at the top ``top_fraction`` (1 % by default, at least one sequence); ``auprc`` = scikit-learn's
  ``average_precision_score`` of witness vs attention (average precision); ``jaccard@n`` = the Jaccard index
  of the top ``n`` sequences with the ``n`` true witnesses (the AIRR-ML 2025 challenge metric).
* **Per-witness motif mass** (per repertoire, over the witness sequences among the attributed ones): for
  each witness, the share of its positive integrated-gradient mass that lies on its motif residues (0 when
  it has no positive mass); then the mean over witnesses. Its chance level is the mean over the same
  witnesses of motif residues / residues: what a uniform attribution would score. Every witness counts
  once, so one strongly attributed sequence cannot carry the score.
* **Pooled motif mass** (per repertoire): of the positive integrated-gradient mass on all attributed
  sequences' residues, the fraction on motif residues, against the fraction of their residues that are motif
  residues. The sequences with the largest attributions dominate it.
* **Residue AUROC**: per witness, the area under the ROC curve of its residue attributions for telling its
  motif residues from its other residues (0.5 = chance), averaged over witnesses (``residue_auroc``); and the
  same pooled over every residue of every attributed sequence (``residue_auroc_pooled``).

  Motif residues come from the truth table (``motif_start`` .. ``motif_start + motif_length - 1``, without
  the motif's ``.``/``-`` gap positions, which keep the original residue) or from regular-expression match
  spans.
* **Kernel match** (per model; :func:`~deeprc_core.motifs.kernel_motif_match`): the best Pearson
  correlation of each first-layer kernel's centred weight logo with the motif's one-hot matrix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from deeprc_core.attribution import SequenceAttributions, attribute_sequences, resolve_output
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, N_AMINO_ACIDS, Repertoire, encode_sequences, repertoire_name
from deeprc_core.model import DeepRC, sequence_attention
from deeprc_core.motifs import GAP_CHARS, kernel_motif_match, motif_matrix
from deeprc_core.scoring import repertoire_representation

REQUIRED_TRUTH_COLUMNS = ("repertoire", "sequence", "motif", "motif_start", "motif_length")  # of simulate.TRUTH_COLUMNS


def _sequences(source: Repertoire | Sequence[str] | np.ndarray) -> np.ndarray:
    if isinstance(source, Repertoire):
        return np.asarray(source.sequences, dtype=object)
    return np.asarray(list(source), dtype=object)


def truth_rows(truth: pd.DataFrame, repertoire: str | Repertoire | None) -> pd.DataFrame:
    """The witness rows of one repertoire (names compared without directories and extensions)."""
    missing = [c for c in ("sequence",) if c not in truth.columns]
    if missing:
        raise DeepRCError("A witness table needs at least a 'sequence' column (truth.tsv has it).")
    if repertoire is None or "repertoire" not in truth.columns:
        return truth
    name = repertoire.name if isinstance(repertoire, Repertoire) else str(repertoire)
    names = truth["repertoire"].astype(str).map(repertoire_name)
    return truth[names == repertoire_name(name)]


def _check_pwm(pwm: pd.DataFrame) -> np.ndarray:
    """A PWM as log-odds scores ``(w, 20)``; probability matrices (rows summing to 1) become log2(p / 0.05)."""
    if list(pwm.columns) != list(AMINO_ACIDS):
        missing = [a for a in AMINO_ACIDS if a not in pwm.columns]
        if missing:
            raise DeepRCError(f"A position weight matrix needs one column per amino acid; it lacks {''.join(missing)}.")
        pwm = pwm[list(AMINO_ACIDS)]
    values = pwm.to_numpy(dtype=np.float64)
    if len(values) == 0 or not np.isfinite(values).all():
        raise DeepRCError("The position weight matrix is empty or holds missing values.")
    if (values >= 0).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        values = np.log2(np.maximum(values, 1e-6) / (1.0 / N_AMINO_ACIDS))
    return values


def pwm_scores(sequences: Repertoire | Sequence[str], pwm: pd.DataFrame) -> np.ndarray:
    """Best window score of each sequence under a PWM ``(N,)``; ``-inf`` for sequences shorter than it."""
    scores = _check_pwm(pwm)
    w = len(scores)
    if isinstance(sequences, Repertoire):
        codes, lengths = np.asarray(sequences.codes), np.asarray(sequences.lengths)
    else:
        codes, lengths = encode_sequences(list(sequences), max_length=10_000)
    table = np.concatenate([scores, np.full((w, 1), -np.inf)], axis=1)  # (w, 21): PAD scores -inf
    if codes.shape[1] < w:
        return np.full(len(codes), -np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(codes.astype(np.int64), w, axis=1)  # (N, W - w + 1, w)
    total = table[np.arange(w), windows].sum(axis=2)  # (N, W - w + 1)
    valid = np.arange(windows.shape[1])[None] <= (lengths.astype(np.int64) - w)[:, None]
    return np.where(valid, total, -np.inf).max(axis=1)


def witness_mask(
    sequences: Repertoire | Sequence[str] | np.ndarray,
    *,
    truth: pd.DataFrame | None = None,
    repertoire: str | None = None,
    regex: str | None = None,
    pwm: pd.DataFrame | None = None,
    pwm_threshold: float | None = None,
    known: Sequence[str] | None = None,
) -> np.ndarray:
    """Which sequences are witnesses ``(N,)`` bool, from exactly one of ``truth``, ``regex``, ``pwm``, ``known``.

    Parameters
    ----------
    sequences
        A repertoire or its junction strings.
    truth, repertoire
        Witness table; only rows whose ``repertoire`` matches ``repertoire`` (default: the repertoire's name)
        count. Sequences are matched by their junction string.
    regex
        Motif regular expression, searched anywhere in each junction (``SLGQ``, ``RD.G``, ``S[LI]GQ``).
    pwm, pwm_threshold
        PWM (``(w, 20)`` DataFrame of log-odds scores, or probabilities) and the score a sequence's best
        window must reach; default 80 % of the highest possible score.
    known
        Known witness junctions.
    """
    given = [x is not None for x in (truth, regex, pwm, known)]
    if sum(given) != 1:
        raise DeepRCError(
            "Give exactly one definition of the witnesses: a truth table, a regex, a PWM or known sequences."
        )
    seqs = _sequences(sequences)
    if truth is not None:
        name = repertoire if repertoire is not None else (sequences.name if isinstance(sequences, Repertoire) else None)
        rows = truth_rows(truth, name)
        return np.isin(seqs, rows["sequence"].astype(str).to_numpy())
    if regex is not None:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise DeepRCError(f"The motif '{regex}' is not a valid regular expression ({exc}).") from exc
        return np.array([pattern.search(s) is not None for s in seqs], dtype=bool)
    if known is not None:
        return np.isin(seqs, np.asarray([s.strip().upper() for s in known], dtype=object))
    values = _check_pwm(pwm)
    threshold = 0.8 * values.max(axis=1).sum() if pwm_threshold is None else pwm_threshold
    return pwm_scores(sequences if isinstance(sequences, Repertoire) else list(seqs), pwm) >= threshold


def ranking_metrics(
    scores: np.ndarray, witnesses: np.ndarray, ks: Sequence[int] = (10, 100, 1000), top_fraction: float = 0.01
) -> dict[str, float]:
    """Precision and recall at the top of a ranking, average precision, and the Jaccard index of the top n.

    Parameters
    ----------
    scores
        ``(N,)`` ranking scores, higher = ranked first (attention logits or weights).
    witnesses
        ``(N,)`` bool, True for witness sequences.
    ks
        Cut-offs; ``k`` larger than ``N`` is clipped to ``N``.
    top_fraction
        Extra cut-off as a fraction of ``N`` (``ceil``, at least 1), reported as ``precision@top1%`` etc.

    Returns
    -------
    dict
        ``n_sequences``, ``n_witnesses``, ``precision@k``, ``recall@k`` per ``k``, ``k_top``,
        ``precision@top{p}%``, ``recall@top{p}%``, ``auprc`` (average precision), ``jaccard@n`` (top ``n`` vs
        the ``n`` witnesses: found / (2 n - found)); NaN for recall, AUPRC and Jaccard without witnesses.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    witnesses = np.asarray(witnesses, dtype=bool).reshape(-1)
    if scores.shape != witnesses.shape:
        raise DeepRCError("Scores and witness flags must have one value per sequence.")
    n, n_w = len(scores), int(witnesses.sum())
    if n == 0:
        raise DeepRCError("Cannot rank an empty repertoire.")
    hits = np.cumsum(witnesses[np.argsort(-scores, kind="stable")])  # witnesses within the top 1..N
    out: dict[str, float] = {"n_sequences": n, "n_witnesses": n_w}

    def _at(k: int) -> tuple[float, float]:
        k = min(max(int(k), 1), n)
        found = float(hits[k - 1])
        return found / k, (found / n_w if n_w else math.nan)

    for k in ks:
        out[f"precision@{k}"], out[f"recall@{k}"] = _at(k)
    k_top = max(1, math.ceil(n * top_fraction))
    label = f"top{top_fraction * 100:g}%"
    out["k_top"] = k_top
    out[f"precision@{label}"], out[f"recall@{label}"] = _at(k_top)
    out["auprc"] = float(average_precision_score(witnesses, scores)) if 0 < n_w < n else (1.0 if n_w == n else math.nan)
    found = float(hits[n_w - 1]) if n_w else math.nan
    out["jaccard@n"] = found / (2 * n_w - found) if n_w else math.nan
    return out


def motif_residue_mask(
    sequences: Sequence[str] | np.ndarray,
    width: int | None = None,
    *,
    truth: pd.DataFrame | None = None,
    repertoire: str | None = None,
    regex: str | None = None,
) -> np.ndarray:
    """Which residues of each sequence are motif residues ``(S, width)`` bool (width default: longest).

    From the truth table (rows matched by sequence within ``repertoire``): positions ``motif_start + j``
    for the motif's non-gap letters ``j``. From a regex: every position inside a match (all
    non-overlapping matches).
    """
    if (truth is None) == (regex is None):
        raise DeepRCError("Give the motif positions either as a truth table or as a regular expression.")
    seqs = [str(s) for s in sequences]
    width = width if width is not None else max((len(s) for s in seqs), default=0)
    mask = np.zeros((len(seqs), width), dtype=bool)
    if regex is not None:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise DeepRCError(f"The motif '{regex}' is not a valid regular expression ({exc}).") from exc
        for i, s in enumerate(seqs):
            for m in pattern.finditer(s):
                mask[i, m.start() : min(m.end(), width)] = True
        return mask
    missing = [c for c in ("sequence", "motif_start", "motif_length") if c not in truth.columns]
    if missing:
        raise DeepRCError(f"The witness table lacks the column(s) {', '.join(missing)} needed to locate motifs.")
    rows = truth_rows(truth, repertoire)
    where: dict[str, list[int]] = {}
    for row in rows.itertuples(index=False):
        start, length = int(row.motif_start), int(row.motif_length)
        motif = str(getattr(row, "motif", "")) if "motif" in rows.columns else ""
        offsets = [j for j in range(length) if not (j < len(motif) and motif[j] in GAP_CHARS)]
        where.setdefault(str(row.sequence), []).extend(start + j for j in offsets)
    for i, s in enumerate(seqs):
        for p in where.get(s, ()):
            if 0 <= p < min(len(s), width):
                mask[i, p] = True
    return mask


def regex_truth(repertoires: Sequence[Repertoire], regex: str) -> pd.DataFrame:
    """The witness table of a motif regular expression: one row per match, every non-overlapping match of each
    sequence (``repertoire``, ``sequence``, ``motif`` = the matched text, ``motif_start``, ``motif_length``).

    Its motif residues are those :func:`motif_residue_mask` marks for ``regex``, and its witnesses those of
    :func:`witness_mask` with ``regex``, so a regex and its table give the same scores.
    """
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise DeepRCError(f"The motif '{regex}' is not a valid regular expression ({exc}).") from exc
    rows = []
    for rep in repertoires:
        for seq in map(str, rep.sequences):
            found = pattern.search(seq)
            if found is None:
                continue
            matches = [m for m in pattern.finditer(seq) if m.end() > m.start()] or [found]
            rows += [(rep.name, seq, m.group(0), m.start(), m.end() - m.start()) for m in matches]
    return pd.DataFrame(rows, columns=list(REQUIRED_TRUTH_COLUMNS))


def known_truth(repertoires: Sequence[Repertoire], sequences: Sequence[str]) -> pd.DataFrame:
    """The witness table of known witness junctions (``repertoire``, ``sequence``): each repertoire's sequences
    that are among ``sequences`` (compared after stripping and upper-casing them)."""
    known = [s.strip().upper() for s in sequences if s.strip()]
    rows = []
    for rep in repertoires:
        flags = witness_mask(rep, known=known) if known else np.zeros(len(rep), dtype=bool)
        rows += [(rep.name, str(seq)) for seq in np.asarray(rep.sequences)[flags]]
    return pd.DataFrame(rows, columns=["repertoire", "sequence"])


def _full_mask(result: SequenceAttributions, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The motif mask at the attributions' width ``(S, L)``, and which positions lie inside a sequence."""
    s, length = result.attributions.shape[:2]
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] != s:
        raise DeepRCError("The motif mask needs one row per attributed sequence.")
    full = np.zeros((s, length), dtype=bool)
    w = min(length, mask.shape[1])
    full[:, :w] = mask[:, :w]
    inside = np.arange(length)[None] < result.lengths[:, None]
    return full & inside, inside


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (Mann-Whitney, ties count half); NaN without
    both classes."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def motif_mass(result: SequenceAttributions, mask: np.ndarray) -> dict[str, float]:
    """Pooled motif mass: the fraction of all attributed sequences' positive attribution on motif residues,
    and its chance level. The sequences with the largest attributions dominate it; see
    :func:`witness_motif_mass` for the per-witness mean.

    Parameters
    ----------
    result
        Attributions of ``S`` sequences.
    mask
        ``(S, L')`` motif residues of the same sequences (e.g. :func:`motif_residue_mask`).

    Returns
    -------
    dict
        ``motif_mass`` = sum of positive residue attributions on motif residues / sum of positive residue
        attributions; ``chance`` = motif residues / residues of the attributed sequences; ``ratio`` =
        motif_mass / chance (NaN where undefined).
    """
    scores = result.residue_attributions()  # (S, L)
    full, inside = _full_mask(result, mask)
    positive = np.clip(scores, 0.0, None) * inside
    total = positive.sum()
    mass = float(positive[full].sum() / total) if total > 0 else math.nan
    chance = float(full.sum() / inside.sum()) if inside.any() else math.nan
    ratio = mass / chance if chance and not math.isnan(mass) else math.nan
    return {"motif_mass": mass, "chance": chance, "ratio": ratio}


def per_witness_scores(result: SequenceAttributions, mask: np.ndarray) -> pd.DataFrame:
    """One row per attributed witness (a sequence with at least one motif residue in ``mask``).

    Parameters
    ----------
    result
        Attributions of ``S`` sequences.
    mask
        ``(S, L')`` motif residues of the same sequences (e.g. :func:`motif_residue_mask`).

    Returns
    -------
    DataFrame
        ``row`` (in ``result``), ``sequence``, ``rank``, ``motif_share`` (positive attribution on motif residues
        / positive attribution on the sequence, 0 without positive attribution), ``chance`` (motif residues /
        residues), ``residue_auroc`` (motif residues vs the others by attribution), ``total`` (the sequence's
        summed residue attribution).
    """
    full, inside = _full_mask(result, mask)
    scores = result.residue_attributions().astype(np.float64)  # (S, L)
    positive = np.clip(scores, 0.0, None) * inside
    rows = []
    for i in np.flatnonzero(full.any(axis=1)):
        n = int(result.lengths[i])
        total = positive[i].sum()
        rows.append(
            {
                "row": int(i),
                "sequence": str(result.sequences[i]),
                "rank": int(result.ranks[i]),
                "motif_share": float(positive[i][full[i]].sum() / total) if total > 0 else 0.0,
                "chance": float(full[i].sum() / n),
                "residue_auroc": _auroc(scores[i, :n], full[i, :n]),
                "total": float(scores[i, :n].sum()),
            }
        )
    columns = ["row", "sequence", "rank", "motif_share", "chance", "residue_auroc", "total"]
    return pd.DataFrame(rows, columns=columns)


def witness_motif_mass(result: SequenceAttributions, mask: np.ndarray) -> dict[str, float]:
    """Per-witness motif mass, its chance level and the residue AUROCs (module docstring).

    Returns
    -------
    dict
        ``witness_motif_mass`` (mean over attributed witnesses of their positive share on motif residues),
        ``witness_chance`` (mean motif residues / residues over the same witnesses), ``witness_ratio``,
        ``residue_auroc`` (mean per-witness AUROC), ``residue_auroc_pooled`` (over every residue of every
        attributed sequence) and ``n_witnesses_attributed``; NaN where there is no witness.
    """
    per = per_witness_scores(result, mask)
    full, inside = _full_mask(result, mask)
    mass = float(per["motif_share"].mean()) if len(per) else math.nan
    chance = float(per["chance"].mean()) if len(per) else math.nan
    return {
        "witness_motif_mass": mass,
        "witness_chance": chance,
        "witness_ratio": mass / chance if len(per) and chance > 0 else math.nan,
        "residue_auroc": float(per["residue_auroc"].mean()) if per["residue_auroc"].notna().any() else math.nan,
        "residue_auroc_pooled": _auroc(result.residue_attributions()[inside].astype(np.float64), full[inside]),
        "n_witnesses_attributed": float(len(per)),
    }


@dataclass
class RecoveryReport:
    """Recovery scores of a model on repertoires with known witnesses."""

    per_repertoire: pd.DataFrame  # one row per positive repertoire: ranking metrics, motif masses, chance levels
    summary: dict[str, float]  # means over positive repertoires (per-witness scores: over witnesses), kernel match
    kernel_match: pd.DataFrame | None  # per kernel: best correlation with the motif (CNN and a motif only)
    per_witness: pd.DataFrame | None = None  # one row per attributed witness (per_witness_scores + repertoire)
    explain: str = "attention"  # attribution target of the motif masses (see deeprc_core.attribution)


def recovery_report(
    model: DeepRC,
    repertoires: Sequence[Repertoire],
    truth: pd.DataFrame,
    *,
    ks: Sequence[int] = (10, 100, 1000),
    top_fraction: float = 0.01,
    attribute_top: int = 50,
    n_steps: int = 32,
    explain: str = "attention",
    motif: str | None = None,
    target: str | None = None,
    class_name: str | None = None,
) -> RecoveryReport:
    """Score how well attention, attributions and kernels recover the known witnesses and motif.

    Positive repertoires are those with at least one witness row in ``truth``. For each: the attention
    ranking metrics (:func:`ranking_metrics`, head 0), and, when ``attribute_top > 0`` and the table locates
    motifs, integrated gradients (``explain``, default each sequence's attention logit) of its
    ``attribute_top`` highest-attention sequences, scored by the per-witness motif mass, the pooled motif mass
    and the residue AUROCs. The kernel match uses ``motif`` (default: the truth table's most frequent motif).

    Returns
    -------
    RecoveryReport
        ``summary`` holds the mean of every per-repertoire column over positive repertoires, except the
        per-witness scores (``witness_motif_mass``, ``witness_chance``, ``witness_ratio``, ``residue_auroc``),
        which are means over all attributed witnesses of all repertoires, and ``n_witnesses_attributed``, a
        total.
    """
    output_index = resolve_output(model, target, class_name)
    rows, witness_rows = [], []
    for rep in repertoires:
        witnesses = witness_mask(rep, truth=truth)
        if not witnesses.any():
            continue
        z = repertoire_representation(model, rep)  # (N, D), shared by the ranking and the attributions
        with torch.inference_mode():
            outputs, logits, _ = model.outputs_from_representation(z)
        row: dict[str, float | str] = {"repertoire": rep.name}
        row.update(ranking_metrics(sequence_attention(logits.float().cpu().numpy()), witnesses, ks, top_fraction))
        row["output"] = float(outputs[output_index])
        if attribute_top > 0 and {"motif_start", "motif_length"} <= set(truth.columns):
            result = attribute_sequences(
                model,
                rep,
                top=attribute_top,
                n_steps=n_steps,
                explain=explain,
                output_index=None if explain == "attention" else output_index,
                representation=z,
            )
            mask = motif_residue_mask(result.sequences, result.attributions.shape[1], truth=truth, repertoire=rep.name)
            row.update(witness_motif_mass(result, mask))
            row.update(motif_mass(result, mask))
            row["relative_delta"] = float(np.median(result.relative_deltas()))
            witness_rows.append(per_witness_scores(result, mask).assign(repertoire=rep.name))
        rows.append(row)
    per_repertoire = pd.DataFrame(rows)
    summary: dict[str, float] = {"n_positive_repertoires": float(len(per_repertoire))}
    for column in per_repertoire.columns:
        if column != "repertoire":
            summary[column] = float(pd.to_numeric(per_repertoire[column], errors="coerce").mean())
    per_witness = None
    if witness_rows:
        per_witness = pd.concat(witness_rows, ignore_index=True)
        per_witness = per_witness[["repertoire", *[c for c in per_witness.columns if c != "repertoire"]]]
        n = len(per_witness)
        summary["n_witnesses_attributed"] = float(n)
        summary["witness_motif_mass"] = float(per_witness["motif_share"].mean()) if n else math.nan
        summary["witness_chance"] = float(per_witness["chance"].mean()) if n else math.nan
        summary["witness_ratio"] = summary["witness_motif_mass"] / summary["witness_chance"] if n else math.nan
        summary["residue_auroc"] = float(per_witness["residue_auroc"].mean()) if n else math.nan
    kernel_match = None
    if motif is None and "motif" in truth.columns and len(truth):
        motif = str(truth["motif"].astype(str).value_counts().index[0])
    if motif and model.config.embedding == "cnn":
        kernel_match = kernel_motif_match(model, motif)
        summary["kernel_match"] = float(kernel_match["correlation"].iloc[0]) if len(kernel_match) else math.nan
    return RecoveryReport(
        per_repertoire=per_repertoire,
        summary=summary,
        kernel_match=kernel_match,
        per_witness=per_witness,
        explain=explain,
    )


__all__ = [
    "GAP_CHARS",
    "RecoveryReport",
    "kernel_motif_match",
    "known_truth",
    "motif_mass",
    "motif_matrix",
    "motif_residue_mask",
    "per_witness_scores",
    "pwm_scores",
    "ranking_metrics",
    "recovery_report",
    "regex_truth",
    "truth_rows",
    "witness_mask",
    "witness_motif_mass",
]
