"""Residue attributions: which residues of a sequence made the model count it, and how far.

Integrated gradients (captum :class:`~captum.attr.IntegratedGradients`) attribute one scalar function of the
model to the one-hot residues of chosen sequences of a repertoire. Three functions can be explained; each
answers a different question (``explain=``):

``"attention"`` (default) — *why is this sequence attended?*
    The sequence's own attention logit ``a_ih = f(h(x_i))[h]`` (head ``h``), as a function of its residues
    alone. No other sequence enters, so every attributed sequence is explained on the same scale, and two
    equally strong witnesses both point at their motif. Completeness: the attributions sum to
    ``a(input) - a(baseline)``. With several heads and none chosen, the function is the sequence's log share
    of the attention over all heads, ``log mean_h exp(a_ih - lse_h)``, with the repertoire's log-normalisers
    ``lse_h`` held fixed (so still no other sequence enters); with one head that is the logit itself.

``"contribution"`` — *what does this sequence add to the repertoire's prediction?*
    The repertoire's output with sequence ``i`` swapped in against the fixed rest of the repertoire (below).
    Caveat: the softmax makes witnesses compete for attention, so when several witnesses are present, the
    others take over the attention a weakened witness loses, and each witness's attribution is small or even
    negative on its motif. Completeness: ``output(repertoire) - output(repertoire with i at the baseline)``.

``"repertoire"`` — *why is this repertoire positive?* (the DeepRC paper's contribution analysis)
    The repertoire's output with all attributed sequences (the attention-reduced bag) moving from the
    baseline together along one path, the rest of the repertoire fixed. Completeness holds for the bag as a
    whole: all attributions together sum to ``output(repertoire) - output(repertoire with the bag at the
    baseline)``; a sequence's share is the sum of its attributions.

What varies and what is held fixed
----------------------------------
For an attributed sequence ``i`` of a repertoire with sequences ``j = 1..N``:

* **Varies along the path:** only sequence ``i``'s CNN input (its one-hot residues, and its position
  features when ``position_baseline="zero"``). Its embedding, representation ``z_i``, attention logit
  ``a_i`` and attention weight follow.
* **Held fixed:** every other sequence's representation ``z_j`` and attention logit ``a_j`` (computed once
  with the fast scoring path), sequence ``i``'s own V/J genes and clone count (they are not residues), and
  the network weights.
* **Recomputed with the varying logit** (``"contribution"``): the softmax normaliser. Per head ``h``::

      lse_h     = log sum_{j != i} exp(a_jh)                 # fixed: the rest of the repertoire
      w_ih      = sigmoid(a_ih - lse_h)                      # weight of i after the softmax
      pooled_h  = (1 - w_ih) * zbar_h + w_ih * z_i           # zbar_h = softmax-weighted mean of the others
      output    = o(pooled)[output_index]

  This equals the full model's output exactly (it is the softmax pooling split into "i" and "the rest"),
  so at the input the attributed function is the repertoire's real output, and at the baseline it is the
  output of the same repertoire with sequence ``i`` replaced by the baseline sequence. Each attributed
  sequence is treated independently against the same fixed context, so a batch of ``S`` sequences is a
  ``(S,)`` output where sequence ``s`` is swapped in.
* ``"repertoire"`` splits the softmax the same way into "the bag" (all ``S`` attributed sequences, varying
  together) and "the rest" (fixed): one output for the whole bag, a captum input of shape ``(1, S, L, 20)``.

With ``head=h`` (``"contribution"``, ``"repertoire"``) only head ``h``'s pooled vector follows the varying
sequences; the other heads' pooled vectors are held at their full-repertoire values, so the attribution is the
contribution through head ``h`` alone. For ``"attention"`` ``head`` picks the logit explained (see above).

Baselines
---------
``"zero"`` (default): the all-zero one-hot, i.e. "no residue" at every position of the sequence.
``"background"``: every position within the sequence holds the repertoire's residue frequencies (over its
distinct sequences' residues). Beyond a sequence's end both inputs and baselines are zero. Position
features stay as in the input (``position_baseline="input"``, their attributions are then exactly zero and
all of the difference goes to residues) or go to zero (``position_baseline="zero"``, then they get their
own attributions, separate from residues).

Completeness: ``residue + position attributions`` sum to ``f(input) - f(baseline)`` up to the convergence
``delta`` (returned, and small with enough ``n_steps``), per sequence, or per bag for ``"repertoire"``. The
delta is captum's definition, but its two endpoint values are evaluated in float64 (a float64 copy of the
model): one sequence among thousands moves the output by less than float32 resolves, so a float32 delta would
measure rounding, not the integration error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, N_AMINO_ACIDS, PAD, Repertoire
from deeprc_core.model import DeepRC, log_attention_share, sequence_attention
from deeprc_core.scoring import repertoire_representation

BASELINES = ("zero", "background")
POSITION_BASELINES = ("input", "zero")
EXPLAIN = ("attention", "contribution", "repertoire")
EXPLAIN_LABELS = {
    "attention": "Why is this sequence attended?",
    "contribution": "What does this sequence add to the repertoire's prediction?",
    "repertoire": "Why is this repertoire positive?",
}
EXPLAIN_HELP = {
    "attention": "Integrated gradients of each sequence's own attention logit, so every sequence is explained on "
    "its own and each witness points at its motif, however many other witnesses the repertoire holds.",
    "contribution": "Integrated gradients of the repertoire's output with one sequence at a time swapped in "
    "against the fixed rest of the repertoire; when several witnesses share the attention, each gets little or "
    "even negative credit on its motif, because the others take over the attention it would lose.",
    "repertoire": "Integrated gradients of the repertoire's output with all attributed sequences moving from the "
    "baseline together, so the attributions add up to the repertoire's logit minus its logit with those "
    "sequences at the baseline.",
}
_NO_OTHERS = -1e30  # log-normaliser of "the rest of the repertoire" when nothing is left in it


@dataclass
class SequenceAttributions:
    """Integrated-gradient attributions of ``S`` sequences of one repertoire.

    Shapes use ``S`` = attributed sequences, ``L`` = the longest of them. With ``explain="repertoire"`` the
    ``S`` sequences were attributed together: every row of ``deltas``, ``outputs`` and ``baseline_outputs``
    holds the bag's one value.
    """

    repertoire: str  # repertoire name
    indices: np.ndarray  # (S,) row of each sequence in the repertoire
    sequences: np.ndarray  # (S,) junction strings
    lengths: np.ndarray  # (S,) junction lengths
    ranks: np.ndarray  # (S,) attention rank in the repertoire (1 = highest) for the chosen head (None: all heads)
    attention: np.ndarray  # (S,) softmax attention weight for the chosen head (None: the heads' mean)
    attributions: np.ndarray  # (S, L, 20) attribution to each one-hot residue channel
    position_attributions: np.ndarray  # (S, L, 3) attribution to the position features
    deltas: np.ndarray  # (S,) convergence delta: sum of attributions - (f(input) - f(baseline))
    outputs: np.ndarray  # (S,) explained value at the input (attention logit, or the repertoire's output)
    baseline_outputs: np.ndarray  # (S,) explained value at the baseline
    output_index: int | None  # network output explained (None for explain="attention")
    head: int | None  # attention head explained (None = all heads)
    baseline: str  # "zero" or "background"
    position_baseline: str  # "input" or "zero"
    n_steps: int  # integration steps
    explain: str = "attention"  # "attention", "contribution" or "repertoire" (see the module docstring)

    def __len__(self) -> int:
        return len(self.sequences)

    def residue_attributions(self) -> np.ndarray:
        """Attribution per residue ``(S, L)``: the sum over the 20 channels at each position, 0 beyond ends.

        With the zero baseline only the observed residue's channel is non-zero, so this is that channel.
        """
        return self.attributions.sum(axis=2)

    def sequence_totals(self) -> np.ndarray:
        """Each sequence's summed attribution ``(S,)`` (residues + position features): with
        ``explain="repertoire"``, its share of the change of the repertoire's output."""
        return self.attributions.sum(axis=(1, 2)).astype(np.float64) + self.position_attributions.sum(axis=(1, 2))

    def relative_deltas(self) -> np.ndarray:
        """``|delta| / max(|f(input) - f(baseline)|, 1e-8)`` per sequence ``(S,)`` (per bag, repeated, for
        ``explain="repertoire"``)."""
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


def resolve_output(model: DeepRC, class_name: str | None = None, output_index: int | None = None) -> int:
    """Index of the network output to explain: the positive-class logit (binary), the (standardised) value
    (regression) or the logit of ``class_name`` (multiclass).

    Parameters
    ----------
    class_name
        The class whose logit is explained; a multiclass model needs it.
    output_index
        Explicit output index; overrides ``class_name``.
    """
    n_outputs = model.config.n_outputs
    if output_index is not None:
        if not 0 <= int(output_index) < n_outputs:
            raise DeepRCError(f"Output index {output_index} does not exist; this model has {n_outputs} output(s).")
        return int(output_index)
    spec = model.config.target_spec()
    if spec.kind != "multiclass":
        return 0
    if class_name is None:
        raise DeepRCError(
            f"Target '{spec.name}' has several classes ({', '.join(spec.classes)}); choose the class to explain."
        )
    if class_name not in spec.classes:
        raise DeepRCError(f"Target '{spec.name}' has no class '{class_name}'; use one of {', '.join(spec.classes)}.")
    return spec.classes.index(class_name)


def background_frequencies(repertoire: Repertoire) -> np.ndarray:
    """Residue frequencies ``(20,)`` over all residues of the repertoire's distinct sequences."""
    codes = repertoire.codes[repertoire.codes < PAD]
    counts = np.bincount(codes.ravel(), minlength=N_AMINO_ACIDS).astype(np.float64)
    if counts.sum() == 0:
        raise DeepRCError(f"Repertoire {repertoire.name} holds no residues to compute a background from.")
    return counts / counts.sum()


def _check_head(model: DeepRC, head: int | None) -> None:
    """``head`` is a 0-based index (the table column ``attention_h{head + 1}``; the command line's ``--head`` is
    numbered from 1 and converted before it gets here)."""
    n = model.config.n_heads
    if head is not None and not 0 <= head < n:
        raise DeepRCError(
            f"Attention head index {head} does not exist; this model has {n} head(s), indexed 0 to {n - 1} "
            f"(attention_h1 to attention_h{n} in the attention table)."
        )


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

    def without_bag(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-normaliser ``(H,)`` and weighted mean ``(H, D)`` of the repertoire without all of ``idx``."""
        keep = torch.ones(len(self.z), dtype=torch.bool, device=self.z.device)
        keep[idx] = False
        if not keep.any():
            return torch.full_like(self.top, _NO_OTHERS), torch.zeros_like(self.pooled)
        logits = self.logits[keep]  # (N - S, H)
        top = logits.max(dim=0).values
        e = torch.exp(logits - top)
        return top + torch.log(e.sum(dim=0)), (e.T @ self.z[keep]) / e.sum(dim=0)[:, None]


def _as(value: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Floating tensors to ``dtype``; integer tensors and None unchanged."""
    return value.to(dtype) if value is not None and value.is_floating_point() else value


def _attention_function(model: DeepRC, head: int | None, lse: torch.Tensor) -> Callable[..., torch.Tensor]:
    """``explain="attention"``: each sequence's own attention logit of ``head``, ``(S',)``; with ``head`` None
    its log share of the attention over all heads (:func:`~deeprc_core.model.sequence_attention`), the
    repertoire's log-normalisers ``lse`` ``(H,)`` held fixed."""

    def forward(
        onehot: torch.Tensor,
        position: torch.Tensor,
        lengths: torch.Tensor,
        v_index: torch.Tensor | None,
        j_index: torch.Tensor | None,
        counts: torch.Tensor | None,
    ) -> torch.Tensor:
        features = torch.cat([onehot, position], dim=-1)  # (S', L, 20) + (S', L, 3) -> (S', L, 23)
        z = model.represent(model.embed_features(features, lengths), v_index, j_index, counts)  # (S', D)
        logits = model.attention_logits(z)  # (S', H)
        if head is not None:
            return logits[:, head]
        return log_attention_share(logits, lse)

    return forward


def _keep_head(mixed: torch.Tensor, head: int | None, pooled: torch.Tensor) -> torch.Tensor:
    """Only ``head``'s pooled vector follows the path; the other heads' stay at the repertoire's ``pooled``."""
    n_heads = pooled.shape[0]
    if head is None or n_heads == 1:
        return mixed
    keep = torch.zeros(n_heads, 1, dtype=torch.bool, device=mixed.device)
    keep[head] = True
    return torch.where(keep, mixed, pooled.expand_as(mixed))


def _forward_function(
    model: DeepRC, output_index: int, head: int | None, pooled: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """``explain="contribution"``: the repertoire output of a batch of swapped-in sequences (module docstring)."""

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
        mixed = _keep_head(rest * zbar + w * z[:, None, :], head, pooled)  # (S', H, D)
        return model.output(mixed.reshape(len(z), -1))[:, output_index]  # (S', H * D) -> (S',)

    return forward


def _bag_function(
    model: DeepRC, output_index: int, head: int | None, pooled: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """``explain="repertoire"``: the repertoire output with a whole bag of sequences varying together.

    Every tensor carries a leading path dimension ``B`` (captum repeats the bag along it): one-hot
    ``(B, S, L, 20)``, lengths/genes/counts ``(B, S)``, the rest's log-normaliser ``(B, H)`` and weighted mean
    ``(B, H, D)``; the output is ``(B,)``.
    """

    def forward(
        onehot: torch.Tensor,
        position: torch.Tensor,
        lengths: torch.Tensor,
        v_index: torch.Tensor | None,
        j_index: torch.Tensor | None,
        counts: torch.Tensor | None,
        rest_lse: torch.Tensor,
        rest_zbar: torch.Tensor,
    ) -> torch.Tensor:
        b, s, width = onehot.shape[:3]
        features = torch.cat([onehot, position], dim=-1).reshape(b * s, width, -1)  # (B, S, L, 23) -> (B*S, L, 23)

        def flat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.reshape(b * s)

        z = model.represent(model.embed_features(features, flat(lengths)), flat(v_index), flat(j_index), flat(counts))
        a = model.attention_logits(z).reshape(b, s, -1)  # (B*S, H) -> (B, S, H)
        z = z.reshape(b, s, -1)  # (B*S, D) -> (B, S, D)
        w = torch.softmax(torch.cat([rest_lse[:, None, :], a], dim=1), dim=1)  # (B, 1 + S, H): the rest, then the bag
        mixed = w[:, 0, :, None] * rest_zbar + torch.einsum("bsh,bsd->bhd", w[:, 1:], z)  # (B, H, D)
        return model.output(_keep_head(mixed, head, pooled).reshape(b, -1))[:, output_index]  # (B, H * D) -> (B,)

    return forward


def attribute_sequences(
    model: DeepRC,
    repertoire: Repertoire,
    indices: np.ndarray | list[int] | None = None,
    *,
    top: int = 100,
    explain: str = "attention",
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
    """Integrated gradients of an attention logit or a repertoire output w.r.t. the residues of some sequences.

    Parameters
    ----------
    model
        A CNN or LSTM DeepRC model.
    repertoire
        The repertoire the sequences belong to; it provides the attention ranking and the fixed context.
    indices
        Rows of the repertoire to attribute ``(S,)``; default the ``top`` highest-attention sequences of
        ``head`` (over all heads when no head is chosen), in rank order.
    explain
        What is explained (module docstring): ``"attention"`` (each sequence's attention logit; why it is
        attended), ``"contribution"`` (the repertoire output with one sequence at a time swapped in; what it
        adds) or ``"repertoire"`` (the repertoire output with all attributed sequences varying together; why
        the repertoire is positive).
    class_name, output_index
        The output to explain (see :func:`resolve_output`); default the positive-class logit (binary). Not
        used by ``explain="attention"``.
    head
        ``"attention"``: the head whose logit is explained (default: with one head its logit; with several the
        sequence's log share of the attention over all heads). Otherwise: attribute only this attention
        head's contribution (the other heads' pooled vectors held fixed).
    baseline
        ``"zero"`` (all-zero one-hot) or ``"background"`` (the repertoire's residue frequencies).
    position_baseline
        ``"input"`` (position features kept, their attributions are zero) or ``"zero"``.
    n_steps, method
        Integration steps and rule, passed to captum.
    batch_size
        Sequences per captum call; each call evaluates ``batch_size * n_steps`` sequences (``"repertoire"``
        attributes all sequences in one call).
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
        the explained values at input and baseline.
    """
    if explain not in EXPLAIN:
        raise DeepRCError(f"Unknown attribution target '{explain}'; use one of {', '.join(EXPLAIN)}.")
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
    if explain == "attention":
        output_index = None
        if head is None and model.config.n_heads == 1:
            head = 0
    else:
        output_index = resolve_output(model, class_name, output_index)
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
    if head is None:  # every head: the sequence's share of the attention
        ranking = sequence_attention(logits.double().cpu())
        weights = torch.exp(ranking).numpy()  # the mean of the heads' softmax weights
    else:
        ranking = logits[:, head].double().cpu()
        weights = torch.softmax(logits[:, head].double(), dim=0).cpu().numpy()
    order = np.argsort(-ranking.numpy(), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
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
    if explain == "repertoire" and len(np.unique(indices)) != len(indices):
        raise DeepRCError("Explaining a repertoire attributes each sequence once; remove the repeated rows.")

    lengths_all = np.asarray(repertoire.lengths, dtype=np.int64)
    width = int(lengths_all[indices].max())
    v_all, j_all = model.gene_indices(repertoire.v_call, repertoire.j_call)
    counts_all = torch.as_tensor(np.asarray(repertoire.counts, dtype=np.float32))
    background = torch.as_tensor(background_frequencies(repertoire), dtype=torch.float32, device=device)
    # The endpoints are evaluated again in float64: output(input) - output(baseline) of one sequence among
    # thousands is far below float32 resolution of the output, and the delta would measure only rounding.
    model64 = copy.deepcopy(model).double()
    if explain == "attention":
        lse = context.top + torch.log(context.total)  # (H,) the repertoire's log-normalisers
        forward, forward64 = _attention_function(model, head, lse), _attention_function(model64, head, lse)
    elif explain == "contribution":
        forward = _forward_function(model, output_index, head, context.pooled.float().to(device))
        forward64 = _forward_function(model64, output_index, head, context.pooled.to(device))
    else:
        forward = _bag_function(model, output_index, head, context.pooled.float().to(device))
        forward64 = _bag_function(model64, output_index, head, context.pooled.to(device))
    from captum.attr import IntegratedGradients  # imported on use: captum costs ~1.7 s of start-up

    ig = IntegratedGradients(forward)

    def inputs(rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        """One-hot, position features and their baselines of some sequences, ``(S', L, 20)`` / ``(S', L, 3)``."""
        codes = torch.as_tensor(np.asarray(repertoire.codes[rows][:, :width])).to(device)
        lengths = torch.as_tensor(lengths_all[rows]).to(device)
        with torch.no_grad():
            features = model.features(codes, lengths)  # (S', L, 23)
        onehot, position = features[..., :N_AMINO_ACIDS].contiguous(), features[..., N_AMINO_ACIDS:].contiguous()
        inside = (torch.arange(width, device=device)[None] < lengths[:, None])[..., None].float()  # (S', L, 1)
        base_onehot = inside * background if baseline == "background" else torch.zeros_like(onehot)
        base_position = position if position_baseline == "input" else torch.zeros_like(position)
        return onehot, position, base_onehot, base_position, lengths

    def sequence_args(rows: np.ndarray, lengths: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_rows = torch.as_tensor(rows)
        return (
            lengths,
            v_all[t_rows].to(device) if v_all is not None else None,
            j_all[t_rows].to(device) if j_all is not None else None,
            counts_all[t_rows].to(device),
        )

    def integrate(
        onehot: torch.Tensor,
        position: torch.Tensor,
        base_onehot: torch.Tensor,
        base_position: torch.Tensor,
        extra: tuple,
    ) -> tuple[torch.Tensor, ...]:
        """captum IG plus the float64 endpoints: attributions, delta, f(input), f(baseline)."""
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
        dims = tuple(range(1, onehot.dim()))
        total = a_onehot.double().sum(dim=dims) + a_position.double().sum(dim=dims)
        return a_onehot, a_position, total - (out_input - out_base), out_input, out_base

    n = len(indices)
    attributions = np.zeros((n, width, N_AMINO_ACIDS), dtype=np.float32)
    position_attr = np.zeros((n, width, 3), dtype=np.float32)
    deltas = np.zeros(n, dtype=np.float64)
    outputs = np.zeros(n, dtype=np.float64)
    baseline_outputs = np.zeros(n, dtype=np.float64)
    if explain == "repertoire":
        onehot, position, base_onehot, base_position, lengths = inputs(indices)
        rest_lse, rest_zbar = context.without_bag(torch.as_tensor(indices))
        # One path for the whole bag: a captum batch of 1, so extra tensors get a leading dimension of 1 too.
        extra = tuple(x[None] if x is not None else None for x in sequence_args(indices, lengths))
        extra += (rest_lse[None].to(device), rest_zbar[None].to(device))
        a_onehot, a_position, delta, out_input, out_base = integrate(
            onehot[None], position[None], base_onehot[None], base_position[None], extra
        )
        attributions[:] = a_onehot[0].detach().float().cpu().numpy()
        position_attr[:] = a_position[0].detach().float().cpu().numpy()
        deltas[:] = float(delta[0])
        outputs[:] = float(out_input[0])
        baseline_outputs[:] = float(out_base[0])
        if on_batch is not None:
            on_batch(n, n)
    else:
        for start in range(0, n, batch_size):
            rows = indices[start : start + batch_size]
            onehot, position, base_onehot, base_position, lengths = inputs(rows)
            extra = sequence_args(rows, lengths)
            if explain == "contribution":
                lse, zbar = context.without(torch.as_tensor(rows))
                extra += (lse.to(device), zbar.to(device))
            a_onehot, a_position, delta, out_input, out_base = integrate(
                onehot, position, base_onehot, base_position, extra
            )
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
        explain=explain,
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
    "EXPLAIN",
    "EXPLAIN_HELP",
    "EXPLAIN_LABELS",
    "SequenceAttributions",
    "attribute_sequences",
    "attribution_frame",
    "attribution_matrix",
    "background_frequencies",
    "resolve_output",
]
