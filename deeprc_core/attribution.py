"""Residue attributions: which residues of a sequence make its repertoire's prediction.

Integrated gradients (captum :class:`~captum.attr.IntegratedGradients`) attribute one repertoire output
to the one-hot residues of chosen sequences *inside their repertoire*.

What varies and what is held fixed
----------------------------------
For an attributed sequence ``i`` of a repertoire with sequences ``j = 1..N``:

* **Varies along the path:** only sequence ``i``'s CNN input (its one-hot residues, and its position
  features when ``position_baseline="zero"``). Its embedding, representation ``z_i``, attention logit
  ``a_i`` and attention weight follow.
* **Held fixed:** every other sequence's representation ``z_j`` and attention logit ``a_j`` (computed once
  with the fast scoring path), sequence ``i``'s own V/J genes and clone count (they are not residues), and
  the network weights.
* **Recomputed with the varying logit:** the softmax normaliser. Per head ``h``::

      lse_h     = log sum_{j != i} exp(a_jh)                 # fixed: the rest of the repertoire
      w_ih      = sigmoid(a_ih - lse_h)                      # weight of i after the softmax
      pooled_h  = (1 - w_ih) * zbar_h + w_ih * z_i           # zbar_h = softmax-weighted mean of the others
      output    = o(pooled)[output_index]

  This equals the full model's output exactly (it is the softmax pooling split into "i" and "the rest"),
  so at the input the attributed function is the repertoire's real output, and at the baseline it is the
  output of the same repertoire with sequence ``i`` replaced by the baseline sequence.

Why: a repertoire's prediction is a softmax-weighted pool, so a sequence matters both through what it
is (``z_i``) and through how much attention it draws away from the others; recomputing the normaliser keeps
the second effect, holding the others fixed keeps each sequence's attribution its own. Each attributed
sequence is treated independently against the same fixed context, so a batch of ``S`` sequences is a
``(S,)`` output where sequence ``s`` is swapped in.

With ``head=h`` only head ``h``'s pooled vector follows sequence ``i``; the other heads' pooled vectors
are held at their full-repertoire values, so the attribution is sequence ``i``'s contribution through
head ``h`` alone.

Baselines
---------
``"zero"`` (default): the all-zero one-hot, i.e. "no residue" at every position of the sequence.
``"background"``: every position within the sequence holds the repertoire's residue frequencies (over its
distinct sequences' residues). Beyond a sequence's end both inputs and baselines are zero. Position
features stay as in the input (``position_baseline="input"``, their attributions are then exactly zero and
all of the difference goes to residues) or go to zero (``position_baseline="zero"``, then they get their
own attributions, separate from residues).

Completeness: per sequence, ``residue + position attributions`` sum to ``output(input) -
output(baseline)`` up to the convergence ``delta`` (returned, and small with enough ``n_steps``). The delta is
captum's definition, but its two endpoint outputs are evaluated in float64 (a float64 copy of the model):
one sequence among thousands moves the output by less than float32 resolves, so a float32 delta would
measure rounding, not the integration error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, N_AMINO_ACIDS, PAD, Repertoire
from deeprc_core.model import DeepRC
from deeprc_core.scoring import repertoire_representation

BASELINES = ("zero", "background")
POSITION_BASELINES = ("input", "zero")
_NO_OTHERS = -1e30  # log-normaliser of "the rest of the repertoire" when the sequence is alone


@dataclass
class SequenceAttributions:
    """Integrated-gradient attributions of ``S`` sequences of one repertoire.

    Shapes use ``S`` = attributed sequences, ``L`` = the longest of them.
    """

    repertoire: str  # repertoire name
    indices: np.ndarray  # (S,) row of each sequence in the repertoire
    sequences: np.ndarray  # (S,) junction strings
    lengths: np.ndarray  # (S,) junction lengths
    ranks: np.ndarray  # (S,) attention rank in the repertoire (1 = highest) for the chosen head
    attention: np.ndarray  # (S,) softmax attention weight for the chosen head
    attributions: np.ndarray  # (S, L, 20) attribution to each one-hot residue channel
    position_attributions: np.ndarray  # (S, L, 3) attribution to the position features
    deltas: np.ndarray  # (S,) convergence delta: sum of attributions - (output - baseline output)
    outputs: np.ndarray  # (S,) attributed output at the input (the repertoire's output)
    baseline_outputs: np.ndarray  # (S,) attributed output with the sequence replaced by the baseline
    output_index: int  # which network output was attributed
    head: int | None  # attention head whose contribution was attributed (None = all heads)
    baseline: str  # "zero" or "background"
    position_baseline: str  # "input" or "zero"
    n_steps: int  # integration steps

    def __len__(self) -> int:
        return len(self.sequences)

    def residue_attributions(self) -> np.ndarray:
        """Attribution per residue ``(S, L)``: the sum over the 20 channels at each position, 0 beyond ends.

        With the zero baseline only the observed residue's channel is non-zero, so this is that channel.
        """
        return self.attributions.sum(axis=2)

    def relative_deltas(self) -> np.ndarray:
        """``|delta| / max(|output - baseline output|, 1e-8)`` per sequence ``(S,)``."""
        return np.abs(self.deltas) / np.maximum(np.abs(self.outputs - self.baseline_outputs), 1e-8)

    def to_frame(self) -> pd.DataFrame:
        """Per-sequence heatmap data, one row per (sequence, position): ``sequence``, ``rank``, ``position``
        (0-based), ``residue``, ``attribution`` (the residue's summed attribution). Also the CLI's TSV."""
        scores = self.residue_attributions()
        lengths = self.lengths.astype(np.int64)
        rows = np.repeat(np.arange(len(self)), lengths)
        positions = np.concatenate([np.arange(n) for n in lengths]) if len(self) else np.zeros(0, np.int64)
        residues = np.array(list("".join(self.sequences)), dtype=object) if len(self) else np.zeros(0, object)
        return pd.DataFrame(
            {
                "sequence": self.sequences[rows],
                "rank": self.ranks[rows],
                "position": positions,
                "residue": residues,
                "attribution": scores[rows, positions] if len(self) else np.zeros(0),
            }
        )


def resolve_output(
    model: DeepRC, target: str | None = None, class_name: str | None = None, output_index: int | None = None
) -> int:
    """Index of the network output to explain.

    Parameters
    ----------
    target
        Target name; default the model's first target. Binary: its positive-class logit. Regression: its
        (standardised) value. Multiclass: the logit of ``class_name``.
    output_index
        Explicit output index; overrides ``target`` and ``class_name``.
    """
    n_outputs = model.config.n_outputs
    if output_index is not None:
        if not 0 <= int(output_index) < n_outputs:
            raise DeepRCError(f"Output index {output_index} does not exist; this model has {n_outputs} output(s).")
        return int(output_index)
    specs = model.config.target_specs()
    start = 0
    for spec in specs:
        if target is None or spec.name == target:
            if spec.kind != "multiclass":
                return start
            if class_name is None:
                raise DeepRCError(
                    f"Target '{spec.name}' has several classes ({', '.join(spec.classes)}); "
                    "choose the class to explain."
                )
            if class_name not in spec.classes:
                raise DeepRCError(
                    f"Target '{spec.name}' has no class '{class_name}'; use one of {', '.join(spec.classes)}."
                )
            return start + spec.classes.index(class_name)
        start += spec.n_outputs
    raise DeepRCError(f"This model has no target '{target}'; its targets are {', '.join(s.name for s in specs)}.")


def background_frequencies(repertoire: Repertoire) -> np.ndarray:
    """Residue frequencies ``(20,)`` over all residues of the repertoire's distinct sequences."""
    codes = repertoire.codes[repertoire.codes < PAD]
    counts = np.bincount(codes.ravel(), minlength=N_AMINO_ACIDS).astype(np.float64)
    if counts.sum() == 0:
        raise DeepRCError(f"Repertoire {repertoire.name} holds no residues to compute a background from.")
    return counts / counts.sum()


def _check_head(model: DeepRC, head: int | None) -> None:
    if head is not None and not 0 <= head < model.config.n_heads:
        raise DeepRCError(f"Attention head {head} does not exist; this model has {model.config.n_heads} head(s).")


class _FixedContext:
    """The rest of the repertoire, per attributed sequence: ``lse`` ``(S, H)`` and ``zbar`` ``(S, H, D)``."""

    def __init__(self, z: torch.Tensor, logits: torch.Tensor) -> None:
        self.z = z.double()  # (N, D)
        self.logits = logits.double()  # (N, H)
        self.top = self.logits.max(dim=0).values  # (H,)
        self.e = torch.exp(self.logits - self.top)  # (N, H)
        self.total = self.e.sum(dim=0)  # (H,)
        self.weighted = self.e.T @ self.z  # (H, D) unnormalised pooled sum
        self.pooled = self.weighted / self.total[:, None]  # (H, D) the repertoire's pooled vectors

    def without(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-normaliser and weighted mean of the repertoire without each sequence in ``idx`` ``(S,)``."""
        n = len(self.z)
        e_i = self.e[idx]  # (S, H)
        rest = self.total - e_i  # (S, H)
        weighted = self.weighted[None] - e_i[..., None] * self.z[idx][:, None, :]  # (S, H, D)
        zbar = weighted / rest.clamp(min=1e-300)[..., None]
        lse = self.top + torch.log(rest.clamp(min=1e-300))
        # A sequence holding most of a head's attention leaves a difference that lost its precision: redo
        # those (at most one per head) exactly, without the subtraction.
        for s, h in zip(*torch.nonzero(e_i > 0.5 * self.total, as_tuple=True), strict=True):
            if n == 1:
                continue
            logits = self.logits[:, h].clone()
            logits[idx[s]] = float("-inf")
            top = logits.max()
            e = torch.exp(logits - top)
            lse[s, h] = top + torch.log(e.sum())
            zbar[s, h] = (e @ self.z) / e.sum()
        if n == 1:
            lse = torch.full_like(lse, _NO_OTHERS)
            zbar = torch.zeros_like(zbar)
        return lse, zbar


def _as(value: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Floating tensors to ``dtype``; integer tensors and None unchanged."""
    return value.to(dtype) if value is not None and value.is_floating_point() else value


def _forward_function(
    model: DeepRC, output_index: int, head: int | None, pooled: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """The attributed function of a batch of swapped-in sequences (see the module docstring)."""
    n_heads = model.config.n_heads

    def forward(
        onehot: torch.Tensor,
        position: torch.Tensor,
        lengths: torch.Tensor,
        v_index: torch.Tensor | None,
        j_index: torch.Tensor | None,
        counts: torch.Tensor | None,
        lse: torch.Tensor,
        zbar: torch.Tensor,
    ) -> torch.Tensor:
        features = torch.cat([onehot, position], dim=-1)  # (S', L, 20) + (S', L, 3) -> (S', L, 23)
        z = model.represent(model.embed_features(features, lengths), v_index, j_index, counts)  # (S', D)
        a = model.attention_logits(z)  # (S', H)
        w = torch.sigmoid(a - lse)[..., None]  # (S', H, 1) weight of the swapped-in sequence
        rest = torch.sigmoid(lse - a)[..., None]  # 1 - w without cancellation
        mixed = rest * zbar + w * z[:, None, :]  # (S', H, D)
        if head is not None and n_heads > 1:
            keep = torch.zeros(n_heads, 1, dtype=torch.bool, device=z.device)
            keep[head] = True
            mixed = torch.where(keep, mixed, pooled.expand_as(mixed))
        return model.output(mixed.reshape(len(z), -1))[:, output_index]  # (S', H * D) -> (S',)

    return forward


def attribute_sequences(
    model: DeepRC,
    repertoire: Repertoire,
    indices: np.ndarray | list[int] | None = None,
    *,
    top: int = 100,
    target: str | None = None,
    class_name: str | None = None,
    output_index: int | None = None,
    head: int | None = None,
    baseline: str = "zero",
    position_baseline: str = "input",
    n_steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int = 128,
    internal_batch_size: int | None = None,
    representation: torch.Tensor | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> SequenceAttributions:
    """Integrated gradients of a repertoire output w.r.t. the residues of some of its sequences.

    Parameters
    ----------
    model
        A CNN or LSTM DeepRC model.
    repertoire
        The repertoire the sequences belong to; it provides the fixed attention context.
    indices
        Rows of the repertoire to attribute ``(S,)``; default the ``top`` highest-attention sequences of
        ``head`` (head 0 when no head is chosen), in rank order.
    target, class_name, output_index
        The output to explain (see :func:`resolve_output`); default the positive-class logit of the first
        (binary) target.
    head
        Attribute only this attention head's contribution (the other heads' pooled vectors held fixed).
    baseline
        ``"zero"`` (all-zero one-hot) or ``"background"`` (the repertoire's residue frequencies).
    position_baseline
        ``"input"`` (position features kept, their attributions are zero) or ``"zero"``.
    n_steps, method
        Integration steps and rule, passed to captum.
    batch_size
        Sequences per captum call; each call evaluates ``batch_size * n_steps`` sequences.
    internal_batch_size
        Passed to captum to split the ``n_steps`` evaluations of one call further (saves memory).
    representation
        The repertoire's ``(N, D)`` representations from :func:`~deeprc_core.scoring.repertoire_representation`,
        when already computed (a cached score); computed here otherwise.
    on_batch
        Called as ``on_batch(done, total)`` after each batch of sequences (progress bars).

    Returns
    -------
    SequenceAttributions
        ``attributions`` ``(S, L, 20)``, ``position_attributions`` ``(S, L, 3)``, ``deltas`` ``(S,)`` and
        the outputs at input and baseline.
    """
    if baseline not in BASELINES:
        raise DeepRCError(f"Unknown baseline '{baseline}'; use one of {', '.join(BASELINES)}.")
    if position_baseline not in POSITION_BASELINES:
        raise DeepRCError(
            f"Unknown position baseline '{position_baseline}'; use one of {', '.join(POSITION_BASELINES)}."
        )
    if n_steps < 2:
        raise DeepRCError("Integrated gradients need at least 2 integration steps.")
    if len(repertoire) == 0:
        raise DeepRCError(f"Repertoire {repertoire.name} holds no sequences to explain.")
    _check_head(model, head)
    output_index = resolve_output(model, target, class_name, output_index)
    model.eval()
    device = model.device

    with torch.no_grad():
        if representation is None:
            representation = repertoire_representation(model, repertoire)
        z = representation.detach().float().to(device).clone()  # (N, D)
        if z.shape != (len(repertoire), model.config.sequence_size):
            raise DeepRCError(
                f"The representation given does not belong to repertoire {repertoire.name} and this model."
            )
        logits = model.attention_logits(z)  # (N, H)
    context = _FixedContext(z, logits)
    ranked_head = 0 if head is None else head
    order = np.argsort(-logits[:, ranked_head].cpu().numpy(), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    weights = torch.softmax(logits[:, ranked_head].double(), dim=0).cpu().numpy()
    if indices is None:
        if top < 1:
            raise DeepRCError("Choose at least one sequence to explain (top must be 1 or more).")
        indices = order[:top]
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) == 0:
        raise DeepRCError("Choose at least one sequence to explain.")
    if indices.min() < 0 or indices.max() >= len(repertoire):
        raise DeepRCError(
            f"Sequence rows must lie between 0 and {len(repertoire) - 1} in repertoire {repertoire.name}."
        )

    lengths_all = np.asarray(repertoire.lengths, dtype=np.int64)
    width = int(lengths_all[indices].max())
    v_all, j_all = model.gene_indices(repertoire.v_call, repertoire.j_call)
    counts_all = torch.as_tensor(np.asarray(repertoire.counts, dtype=np.float32))
    background = torch.as_tensor(background_frequencies(repertoire), dtype=torch.float32, device=device)
    forward = _forward_function(model, output_index, head, context.pooled.float().to(device))
    ig = IntegratedGradients(forward)
    # The endpoints are evaluated again in float64: output(input) - output(baseline) of one sequence among
    # thousands is far below float32 resolution of the output, and the delta would measure only rounding.
    model64 = copy.deepcopy(model).double()
    forward64 = _forward_function(model64, output_index, head, context.pooled.to(device))

    n = len(indices)
    attributions = np.zeros((n, width, N_AMINO_ACIDS), dtype=np.float32)
    position_attr = np.zeros((n, width, 3), dtype=np.float32)
    deltas = np.zeros(n, dtype=np.float64)
    outputs = np.zeros(n, dtype=np.float64)
    baseline_outputs = np.zeros(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        rows = indices[start : start + batch_size]
        t_rows = torch.as_tensor(rows)
        codes = torch.as_tensor(np.asarray(repertoire.codes[rows][:, :width])).to(device)
        lengths = torch.as_tensor(lengths_all[rows]).to(device)
        with torch.no_grad():
            features = model.features(codes, lengths)  # (S, L, 23)
        onehot, position = features[..., :N_AMINO_ACIDS].contiguous(), features[..., N_AMINO_ACIDS:].contiguous()
        inside = (torch.arange(width, device=device)[None] < lengths[:, None])[..., None].float()  # (S, L, 1)
        base_onehot = inside * background if baseline == "background" else torch.zeros_like(onehot)
        base_position = position if position_baseline == "input" else torch.zeros_like(position)
        lse, zbar = context.without(t_rows)
        extra = (
            lengths,
            v_all[t_rows].to(device) if v_all is not None else None,
            j_all[t_rows].to(device) if j_all is not None else None,
            counts_all[t_rows].to(device),
            lse.to(device),
            zbar.to(device),
        )
        a_onehot, a_position = ig.attribute(
            (onehot, position),
            baselines=(base_onehot, base_position),
            additional_forward_args=tuple(_as(x, torch.float32) for x in extra),
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
        )
        with torch.no_grad():
            extra64 = tuple(_as(x, torch.float64) for x in extra)
            out_input = forward64(onehot.double(), position.double(), *extra64)
            out_base = forward64(base_onehot.double(), base_position.double(), *extra64)
        delta = (a_onehot.double().sum(dim=(1, 2)) + a_position.double().sum(dim=(1, 2))) - (out_input - out_base)
        sl = slice(start, start + len(rows))
        attributions[sl] = a_onehot.detach().float().cpu().numpy()
        position_attr[sl] = a_position.detach().float().cpu().numpy()
        deltas[sl] = delta.detach().double().cpu().numpy()
        outputs[sl] = out_input.double().cpu().numpy()
        baseline_outputs[sl] = out_base.double().cpu().numpy()
        if on_batch is not None:
            on_batch(min(start + batch_size, n), n)

    return SequenceAttributions(
        repertoire=repertoire.name,
        indices=indices,
        sequences=np.asarray(repertoire.sequences[indices], dtype=object),
        lengths=lengths_all[indices],
        ranks=ranks[indices],
        attention=weights[indices],
        attributions=attributions,
        position_attributions=position_attr,
        deltas=deltas,
        outputs=outputs,
        baseline_outputs=baseline_outputs,
        output_index=output_index,
        head=head,
        baseline=baseline,
        position_baseline=position_baseline,
        n_steps=n_steps,
    )


def attribution_frame(result: SequenceAttributions) -> pd.DataFrame:
    """Per-sequence heatmap data (see :meth:`SequenceAttributions.to_frame`)."""
    return result.to_frame()


def attribution_matrix(result: SequenceAttributions, row: int) -> pd.DataFrame:
    """One sequence's attributions as a logo matrix: rows = positions 0..length-1, columns = 20 residues."""
    if not 0 <= row < len(result):
        raise DeepRCError(f"Row {row} is outside the {len(result)} attributed sequences.")
    n = int(result.lengths[row])
    frame = pd.DataFrame(result.attributions[row, :n].astype(np.float64), columns=list(AMINO_ACIDS))
    frame.index.name = "pos"
    return frame


__all__ = [
    "BASELINES",
    "SequenceAttributions",
    "attribute_sequences",
    "attribution_frame",
    "attribution_matrix",
    "background_frequencies",
    "resolve_output",
]
