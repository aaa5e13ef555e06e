"""Score whole repertoires: probabilities per repertoire and the attention over every sequence.

Scoring never subsamples: every kept sequence is embedded once (fast lookup path), every sequence gets an
attention logit, and the softmax runs over the whole repertoire.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deeprc_core.errors import DeepRCError
from deeprc_core.io import Repertoire, read_repertoire
from deeprc_core.model import DeepRC, outputs_to_probabilities, sequence_attention


@dataclass
class RepertoireScore:
    """A repertoire's prediction and the attention the model paid to each of its sequences."""

    name: str  # repertoire name
    outputs: np.ndarray  # (n_outputs,) raw network outputs (logits / standardised values)
    prediction: np.ndarray | float  # positive-class probability (binary), class probabilities, or value
    attention_logits: np.ndarray  # (N, H) raw attention scores f(z)
    attention: np.ndarray  # (N, H) softmax weights over the whole repertoire, per head

    @property
    def ranking(self) -> np.ndarray:
        """``(N,)`` attention score over all heads (:func:`~deeprc_core.model.sequence_attention`; one head:
        the raw logit): the order of every attention ranking."""
        return sequence_attention(self.attention_logits)

    @property
    def share(self) -> np.ndarray:
        """``(N,)`` each sequence's share of the attention: its softmax weight, with several heads the mean of
        the heads' weights (``exp`` of :attr:`ranking`, so the two sort alike)."""
        return self.attention[:, 0] if self.attention.shape[1] == 1 else np.exp(self.ranking)


@torch.inference_mode()
def repertoire_representation(model: DeepRC, repertoire: Repertoire, dense: bool = False) -> torch.Tensor:
    """Every sequence's representation z ``(N, D)``: embedding joined with genes and counts
    (:meth:`DeepRC.representation`; ``dense`` as there)."""
    model.eval()
    v_index, j_index = model.gene_indices(repertoire.v_call, repertoire.j_call)
    counts = torch.as_tensor(np.asarray(repertoire.counts, dtype=np.float32))
    return model.representation(repertoire.codes, repertoire.lengths, v_index, j_index, counts, dense=dense)


@torch.inference_mode()
def score_repertoire(model: DeepRC, repertoire: Repertoire) -> RepertoireScore:
    """Score one repertoire on every one of its sequences.

    Returns
    -------
    RepertoireScore
        Outputs, the prediction, and per-sequence attention logits and weights.
    """
    z = repertoire_representation(model, repertoire)
    outputs, logits, weights = model.outputs_from_representation(z)
    if not bool(torch.isfinite(outputs).all()):  # never turn a NaN into a "negative" prediction
        raise DeepRCError(
            f"The model's output for {repertoire.name} is not a number: the repertoire holds values it cannot score "
            "(for example clone counts beyond 1e12, which the file reader drops). Check the file."
        )
    return RepertoireScore(
        name=repertoire.name,
        outputs=outputs.float().cpu().numpy(),
        prediction=outputs_to_probabilities(outputs[None], model.config)[0],
        attention_logits=logits.float().cpu().numpy(),
        attention=weights.float().cpu().numpy(),
    )


def predict(model: DeepRC, repertoires: list[Repertoire], scores: list[RepertoireScore] | None = None) -> pd.DataFrame:
    """One row per repertoire: ``repertoire``, ``n_sequences``, then the positive-class ``probability`` and
    ``prediction`` (binary), one ``probability_<class>`` column per class and the ``prediction``
    (multiclass), or the predicted value (regression). ``scores`` (one per repertoire) reuses scores
    already computed.
    """
    rows = []
    for k, rep in enumerate(repertoires):
        score = scores[k] if scores is not None else score_repertoire(model, rep)
        rows.append(_prediction_row(model, rep, score))
    return pd.DataFrame(rows)


def _prediction_row(model: DeepRC, rep: Repertoire, score: RepertoireScore) -> dict:
    """One row of :func:`predict`."""
    t, value = model.config.target_spec(), score.prediction
    row = {"repertoire": rep.name, "n_sequences": len(rep)}
    if t.kind == "binary":
        row["probability"] = float(value)
        row["prediction"] = t.classes[1] if float(value) >= 0.5 else t.classes[0]
    elif t.kind == "multiclass":
        for cls, p in zip(t.classes, value):
            row[f"probability_{cls}"] = float(p)
        row["prediction"] = t.classes[int(np.argmax(value))]
    else:
        row["prediction"] = float(value)
    return row


def predict_files(
    model: DeepRC,
    files: Sequence[str | os.PathLike],
    *,
    chain: str | None = None,
    on_file: Callable[[int, Repertoire], None] | None = None,
) -> pd.DataFrame:
    """:func:`predict` over repertoire files, streamed: the next file is read in a helper thread while the
    current one is scored, and only its table row is kept, so hundreds of files need the memory of two.

    Parameters
    ----------
    files
        Repertoire files (any format :func:`deeprc_core.io.read_repertoire` reads), scored in this order.
    chain
        For 10x files: the chain to keep.
    on_file
        Called with ``(position, repertoire)`` once each file is read (e.g. to show its read report).

    Raises
    ------
    DeepRCError
        A file that cannot be read or scored (named); nothing after it is scored.
    """
    max_length = model.config.max_length
    rows = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deeprc-read") as reader:
        read = lambda f: read_repertoire(f, max_length=max_length, chain=chain)  # noqa: E731
        upcoming = reader.submit(read, files[0]) if len(files) else None
        try:
            for k in range(len(files)):
                rep = upcoming.result()
                upcoming = reader.submit(read, files[k + 1]) if k + 1 < len(files) else None  # overlaps scoring
                if on_file is not None:
                    on_file(k, rep)
                rows.append(_prediction_row(model, rep, score_repertoire(model, rep)))
                del rep
        finally:
            if upcoming is not None:
                upcoming.cancel()
    return pd.DataFrame(rows)


def attention_order(score: RepertoireScore) -> np.ndarray:
    """Row positions of a repertoire's sequences from highest to lowest attention (over all heads, see
    :attr:`RepertoireScore.ranking`; ties keep file order): the order of :func:`attention_table`."""
    return np.argsort(-score.ranking, kind="stable")


def attention_table(model: DeepRC, repertoire: Repertoire, score: RepertoireScore | None = None) -> pd.DataFrame:
    """One row per kept sequence, sorted by attention: ``sequence``, ``count``, ``v_call``, ``j_call``,
    ``attention`` (softmax weight over the whole repertoire; with several heads the mean of the heads'
    weights), ``attention_logit`` (the raw logit; with several heads the log of ``attention``, see
    :attr:`RepertoireScore.ranking`), ``rank`` (1 = highest). With several heads, ``attention_h{i}`` /
    ``attention_logit_h{i}`` are added per head, numbered from 1 as users count (``attention_h1`` is the
    library's head index 0)."""
    score = score or score_repertoire(model, repertoire)
    table = pd.DataFrame(
        {
            "sequence": repertoire.sequences,
            "count": repertoire.counts,
            "v_call": repertoire.v_call,
            "j_call": repertoire.j_call,
            "attention": score.share,
            "attention_logit": score.ranking,
        }
    )
    if score.attention.shape[1] > 1:
        for h in range(score.attention.shape[1]):
            table[f"attention_h{h + 1}"] = score.attention[:, h]
            table[f"attention_logit_h{h + 1}"] = score.attention_logits[:, h]
    table = table.iloc[attention_order(score)].reset_index(drop=True)
    table.insert(len(table.columns), "rank", np.arange(1, len(table) + 1))
    return table


def attention_concentration(attention: np.ndarray, top_k: int = 10) -> dict[str, float]:
    """How concentrated a repertoire's attention is.

    Parameters
    ----------
    attention
        ``(N,)`` softmax weights over the repertoire (any order).
    top_k
        Cut-off for ``top_share``.

    Returns
    -------
    dict
        ``top_share``: the attention held by the ``top_k`` highest-attention sequences; ``half_count``: how many
        top sequences hold half of the attention (the fewer, the more focused the model).
    """
    weights = np.sort(np.asarray(attention, dtype=np.float64).reshape(-1))[::-1]
    if len(weights) == 0:
        raise DeepRCError("Cannot measure the attention of an empty repertoire.")
    cumulative = np.cumsum(weights)
    k = min(max(int(top_k), 1), len(weights))
    half = min(int(np.searchsorted(cumulative, 0.5 * cumulative[-1]) + 1), len(weights))
    return {"top_share": float(cumulative[k - 1]), "half_count": float(half)}


def gene_usage(table: pd.DataFrame, column: str, top: int, n_genes: int = 12) -> pd.DataFrame:
    """Gene usage among the ``top`` highest-attention sequences against the whole repertoire.

    Parameters
    ----------
    table
        :func:`attention_table` (sorted by attention).
    column
        ``"v_call"`` or ``"j_call"``; a blank call counts as ``"unknown"``.
    top
        How many of the first rows form the top.
    n_genes
        Genes kept, by their share in the top.

    Returns
    -------
    DataFrame
        Indexed by gene: ``top {top}`` and ``whole repertoire``, each gene's share of the sequences.
    """
    calls = table[column].replace("", "unknown")
    usage = pd.DataFrame(
        {
            f"top {top}": calls.head(top).value_counts(normalize=True),
            "whole repertoire": calls.value_counts(normalize=True),
        }
    ).fillna(0.0)
    return usage.sort_values(f"top {top}", ascending=False).head(n_genes)
