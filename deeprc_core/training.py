"""Train DeepRC: a data-driven start, attention-based reduction, AdamW, model selection on validation.

The start (``seed_kernels``) writes k-mer patterns and V/J genes enriched in the training labels into the
kernels and the attention network (a pattern's carriers counted by their V and J gene, ``seeding_by_gene``),
and fits o() in closed form on the pooled seeded features
(:func:`fit_output_layer`). Each update takes ``batch_size`` training repertoires, ranks their sequences with
the current attention network (no gradient; all of them, or ``n_sequences`` drawn without replacement), keeps
the ``n_kept`` with the highest attention and runs the differentiable forward pass on those, the rest staying
in the softmax as constants (``full_softmax``). o() alone learns for ``warmup_updates``, then h() and f() at
``fine_tune_factor`` of its rate. Every ``eval_every`` updates the validation repertoires are scored on all
their sequences except those that training repertoires of one class hold (``validate_unseen``); the model with
the lowest validation loss, the seeded start included, is kept and restored at the end, and training stops
early after ``patience`` evaluations without improvement, at ``max_updates`` or after ``max_minutes``.

Lessons from running the original DeepRC on a CPU, each avoided here: the optimiser's ``eps`` is the default
1e-8 (not 1e-4), subsampling is without replacement and seeded, nothing is normalised bag-wide, evaluation
never re-scores the whole training set, and the best model is restored rather than deleted.
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from deeprc_core import distributed
from deeprc_core.config import TrainingConfig
from deeprc_core.dataset import RepertoireDataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import PAD, decode_sequences
from deeprc_core.model import DeepRC, DeepRCConfig, TargetSpec, autocast, outputs_to_probabilities, resolve_device


@dataclass
class TrainingProgress:
    """What callbacks receive after an update or an evaluation."""

    update: int  # updates done
    max_updates: int  # update budget
    loss: float  # running mean of the training loss
    elapsed_s: float  # seconds since training started
    eta_s: float | None  # estimated seconds left (budget-aware)
    history: list[dict] = field(default_factory=list)  # one dict per evaluation
    best: dict | None = None  # the best evaluation so far


@dataclass
class TrainingResult:
    """A trained model with its history and held-out metrics."""

    model: DeepRC  # the best model (by validation loss), in eval mode
    history: list[dict]  # one dict per evaluation: update, train_loss, val_loss, val_auc, ...
    metrics: dict  # validation metrics of the restored best model
    train_indices: np.ndarray  # repertoires used for training
    val_indices: np.ndarray  # repertoires held out
    optimizer: torch.optim.Optimizer  # for resuming
    state: dict  # update count, best loss, stop reason


def infer_target(metadata: pd.DataFrame, column: str, positive: str | None = None, task: str = "auto") -> TargetSpec:
    """Build the :class:`TargetSpec` for a metadata column (classes sorted; the positive class last)."""
    if column not in metadata.columns:
        options = ", ".join(c for c in metadata.columns if c not in ("repertoire", "file"))
        raise DeepRCError(f"The metadata has no column '{column}'. Columns: {options}.")
    values = metadata[column].astype(str).str.strip()
    missing = (values == "") | values.isin(_MISSING_LABELS) | metadata[column].isna().to_numpy()
    if missing.any():
        names = metadata["repertoire"] if "repertoire" in metadata.columns else pd.Series(metadata.index.astype(str))
        shown = ", ".join(map(str, names[missing.to_numpy()].head(5))) + (" ..." if missing.sum() > 5 else "")
        raise DeepRCError(
            f"Column '{column}' is empty for some repertoires (blank, NaN or NA: {shown}); fill or remove them."
        )
    distinct = sorted(values.unique())
    folded: dict[str, list[str]] = {}
    for value in distinct:
        folded.setdefault(value.casefold(), []).append(value)
    clashes = [spelled for spelled in folded.values() if len(spelled) > 1]
    if clashes and task != "regression":
        shown = "; ".join(" vs ".join(f"'{v}'" for v in spelled) for spelled in clashes[:3])
        raise DeepRCError(
            f"Column '{column}' spells the same label in different ways ({shown}); they would count as different "
            "classes. Correct the metadata so each label is written one way."
        )
    if positive is not None:
        positive = str(positive).strip()
    if task == "auto":
        numeric = pd.to_numeric(values, errors="coerce")
        if positive is not None or len(distinct) == 2:
            task = "binary"
        elif numeric.notna().all() and len(distinct) > 10:
            task = "regression"
        else:
            task = "multiclass"
    if task in ("binary", "multiclass") and len(distinct) < 2:
        raise DeepRCError(
            f"Column '{column}' has only one value ('{distinct[0]}') across the {len(values)} repertoires; training "
            "needs repertoires of at least two classes."
        )
    if task == "binary":
        if positive is None:
            if len(distinct) != 2:
                raise DeepRCError(f"Column '{column}' has {len(distinct)} values; name the positive one.")
            positive = distinct[1]
        if positive not in distinct:
            raise DeepRCError(f"'{positive}' does not occur in column '{column}' (values: {', '.join(distinct[:10])}).")
        negatives = [v for v in distinct if v != positive]
        negative = negatives[0] if len(negatives) == 1 else f"not {positive}"
        return TargetSpec(column, "binary", [negative, positive])
    if task == "multiclass":
        if len(distinct) < 2:
            raise DeepRCError(f"Column '{column}' has only one value; there is nothing to learn.")
        return TargetSpec(column, "multiclass", distinct)
    if task == "regression":
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            raise DeepRCError(f"Column '{column}' is not numeric; regression needs numbers.")
        return TargetSpec(column, "regression", [], float(numbers.mean()), float(numbers.std(ddof=0) or 1.0))
    raise DeepRCError(f"Unknown task '{task}'; use auto, binary, multiclass or regression.")


_MISSING_LABELS = {
    "nan",
    "NaN",
    "NAN",
    "NA",
    "N/A",
    "n/a",
    "na",
    "<NA>",
    "null",
    "NULL",
    "None",
    "#N/A",
    "-nan",
    "-NaN",
}


def _encode_target(metadata: pd.DataFrame, spec: TargetSpec) -> np.ndarray:
    values = metadata[spec.name].astype(str).str.strip()
    if spec.kind == "binary":
        return (values == spec.classes[1]).to_numpy(dtype=np.float32)
    if spec.kind == "multiclass":
        return values.map({c: i for i, c in enumerate(spec.classes)}).to_numpy(dtype=np.int64)
    return ((pd.to_numeric(values) - spec.mean) / spec.std).to_numpy(dtype=np.float32)


def _loss(outputs: torch.Tensor, y: torch.Tensor, spec: TargetSpec, pos_weight: float) -> torch.Tensor:
    """Loss of outputs ``(B, n_outputs)`` against encoded targets ``(B,)``."""
    outputs = outputs.float()
    if spec.kind == "binary":
        return F.binary_cross_entropy_with_logits(outputs[:, 0], y, pos_weight=outputs.new_tensor(pos_weight))
    if spec.kind == "multiclass":
        return F.cross_entropy(outputs, y)
    return F.mse_loss(outputs[:, 0], y)


def metrics_for(spec: TargetSpec, y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Metrics of one target: AUC, balanced accuracy, F1 (classification) or R², MAE (regression).

    ``y_true`` is encoded as in training (0/1, class index, or raw value for regression); ``prediction``
    is the positive probability, the class-probability matrix, or the predicted value.
    """
    out: dict[str, float] = {}
    if spec.kind == "binary":
        label = (prediction >= 0.5).astype(int)
        out["auc"] = float(roc_auc_score(y_true, prediction)) if len(set(y_true)) == 2 else float("nan")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, label))
        out["f1"] = float(f1_score(y_true, label, zero_division=0))
    elif spec.kind == "multiclass":
        label = prediction.argmax(axis=1)
        try:
            out["auc"] = float(
                roc_auc_score(y_true, prediction, multi_class="ovr", labels=list(range(len(spec.classes))))
            )
        except ValueError:
            out["auc"] = float("nan")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, label))
        out["f1"] = float(f1_score(y_true, label, average="macro", zero_division=0))
    else:
        out["r2"] = float(r2_score(y_true, prediction)) if len(y_true) > 1 else float("nan")
        out["mae"] = float(mean_absolute_error(y_true, prediction))
    return out


def _cat_optional(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Concatenate per-repertoire tensors that are None where the model does not use them (gene indices)."""
    return torch.cat(parts) if parts[0] is not None else None


@dataclass
class _EncodedRepertoire:
    """One repertoire as the model consumes it: codes ``(N, W)``, lengths ``(N,)``, gene indices, counts."""

    codes: np.ndarray  # (N, W) uint8 residue codes, PAD beyond each end
    lengths: np.ndarray  # (N,) int64
    v: torch.Tensor | None  # (N,) model V-gene indices (0 = unknown), or None where genes are not used
    j: torch.Tensor | None  # (N,) model J-gene indices
    counts: torch.Tensor  # (N,) float32 clone counts

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        genes = sum(int(g.nbytes) for g in (self.v, self.j) if g is not None)
        return int(self.codes.nbytes + self.lengths.nbytes + self.counts.nbytes) + genes

    @staticmethod
    def concat(parts: list[_EncodedRepertoire]) -> _EncodedRepertoire:
        """Several repertoires' sequences end to end (codes padded to the widest)."""
        width = max(p.codes.shape[1] for p in parts)
        return _EncodedRepertoire(
            np.concatenate(
                [np.pad(p.codes, ((0, 0), (0, width - p.codes.shape[1])), constant_values=PAD) for p in parts]
            ),
            np.concatenate([p.lengths for p in parts]),
            _cat_optional([p.v for p in parts]),
            _cat_optional([p.j for p in parts]),
            torch.cat([p.counts for p in parts]),
        )

    def representation(self, model: DeepRC) -> torch.Tensor:
        """Every sequence's representation z ``(N, D)`` under ``model`` (:meth:`DeepRC.representation`)."""
        return model.representation(self.codes, self.lengths, self.v, self.j, self.counts)

    def receptor_keys(self) -> np.ndarray:
        """A 64-bit key per sequence from its residues and V gene (when the model reads genes): equal receptors
        get equal keys, whatever the padding width of their repertoire."""
        keys = np.zeros(len(self.lengths), dtype=np.uint64)
        prime = np.uint64(1_000_003)
        for col in range(self.codes.shape[1]):
            inside = col < self.lengths
            keys[inside] = keys[inside] * prime + self.codes[inside, col].astype(np.uint64) + np.uint64(1)
        if self.v is not None:
            keys = keys * prime + self.v.numpy().astype(np.uint64)
        return keys

    def subset(self, rows: torch.Tensor) -> _EncodedRepertoire:
        """The sequences at ``rows`` (a 1-D index tensor)."""
        idx = rows.numpy()
        return _EncodedRepertoire(
            self.codes[idx],
            self.lengths[idx],
            self.v[rows] if self.v is not None else None,
            self.j[rows] if self.j is not None else None,
            self.counts[rows],
        )


SEEN_BITS = 28  # the training receptors' bit set: 2**28 bits (32 MiB); 1.6 M receptors collide with 0.6 % of keys


def _seen_address(rep: _EncodedRepertoire) -> tuple[np.ndarray, np.ndarray]:
    """Where each receptor of ``rep`` sits in the :data:`SEEN_BITS`-bit set: its byte and the bit mask in it."""
    slot = rep.receptor_keys() >> np.uint64(64 - SEEN_BITS)
    return slot >> np.uint64(3), np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8)


ENCODED_CACHE_BYTES = 512 << 20  # encoded repertoires kept of a dataset not held in memory (least recently used go)
_TRIM_EVERY = 16  # evictions between returns of freed heap memory to the system
PROBE_SCALE_FLOOR = 0.01  # smallest standard deviation of a pooled feature in the closed-form fit of o()


def _trim_heap() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``; nothing elsewhere). Repertoires read and
    dropped one after the other fragment the heap: on 1,000 x 100k receptors, resident memory reached 5.1 GB for a
    512 MB cache without it, 1.2 GB with it, at the same speed (benchmarks/bench_scale.py)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


class _Encoded:
    """Encoded repertoires of a dataset, read on first use and kept (no sequence strings are decoded): all of
    them for a dataset held in memory; for a larger one (a cohort larger than RAM) the most recently used, up to
    :data:`ENCODED_CACHE_BYTES`, the others read again from their slice of the cache when needed."""

    def __init__(self, dataset: RepertoireDataset, model: DeepRC) -> None:
        self.dataset = dataset
        self._cache: OrderedDict[int, _EncodedRepertoire] = OrderedDict()
        self._budget = None if getattr(dataset, "_arrays", None) is not None else ENCODED_CACHE_BYTES
        self._bytes, self._evicted = 0, 0
        v_map, j_map = model.gene_indices(dataset.v_vocab, dataset.j_vocab)  # dataset vocab -> model index
        self._v_map, self._j_map = v_map, j_map

    def get(self, i: int) -> _EncodedRepertoire:
        """Repertoire ``i`` of the dataset."""
        if i not in self._cache:
            codes, lengths, counts, v_index, j_index = self.dataset.encoded(i)
            self._cache[i] = _EncodedRepertoire(
                codes,
                lengths,
                self._v_map[torch.from_numpy(v_index.astype(np.int64))] if self._v_map is not None else None,
                self._j_map[torch.from_numpy(j_index.astype(np.int64))] if self._j_map is not None else None,
                torch.from_numpy(counts),
            )
            if self._budget is not None:
                self._bytes += self._cache[i].nbytes
                while self._bytes > self._budget and len(self._cache) > 1:
                    self._bytes -= self._cache.popitem(last=False)[1].nbytes
                    self._evicted += 1
                    if self._evicted % _TRIM_EVERY == 0:
                        _trim_heap()
        elif self._budget is not None:
            self._cache.move_to_end(i)
        return self._cache[i]

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, lengths)`` of repertoire ``i`` (for k-mer counting)."""
        rep = self.get(i)
        return rep.codes, rep.lengths

    def sequences(self, i: int) -> np.ndarray:
        """Repertoire ``i``'s sequences as strings (diagnostics only)."""
        return decode_sequences(self.get(i).codes)


@dataclass
class _Selection:
    """The sequences of one update's repertoires kept for the gradient pass, and the constant rest."""

    codes: torch.Tensor  # (K, W) kept sequences of all repertoires, concatenated
    lengths: torch.Tensor  # (K,)
    bag: torch.Tensor  # (K,) repertoire of each kept sequence, in [0, B)
    v: torch.Tensor | None  # (K,) V-gene indices
    j: torch.Tensor | None  # (K,) J-gene indices
    counts: torch.Tensor  # (K,)
    shift: torch.Tensor  # (B, H) largest attention logit of each repertoire (softmax stabiliser)
    rest_weight: torch.Tensor  # (B, H) sum of exp(logit - shift) over the sequences not kept
    rest_sum: torch.Tensor  # (B, H, D) sum of exp(logit - shift) * z over the sequences not kept
    offered: list[np.ndarray]  # per repertoire: rows ranked (all, or the drawn n_sequences)
    kept: list[np.ndarray]  # per repertoire: rows kept for the gradient pass


@dataclass
class _Ranking:
    """One repertoire's attention ranking: the rows kept for the gradient pass and the constant rest.

    Reused for ``rerank_every`` draws of the repertoire: ranking all its sequences is most of an update's time
    (every sequence through h() and f()), while h() and f() move slowly: not at all during the warm-up, then at
    ``fine_tune_factor`` of o()'s learning rate. The kept rows always go through the gradient pass afresh."""

    kept: np.ndarray  # rows kept, ascending
    shift: torch.Tensor  # (H,) largest attention logit (softmax stabiliser)
    rest_weight: torch.Tensor  # (H,) sum of exp(logit - shift) over the rows not kept
    rest_sum: torch.Tensor  # (H, D) sum of exp(logit - shift) * z over the rows not kept
    uses: int = 1  # draws served by this ranking


def build_optimizer(model: DeepRC, training: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW with two parameter groups: o() first (it alone learns during the warm-up), then h() and f().

    AdamW, not Adam with an L2 term: Adam normalises the L2 gradient, so a weight the loss does not use (a
    seeded detector of a second motif, while the first motif already separates the training repertoires)
    shrinks by about the learning rate every update and is gone within a few thousand updates."""
    head = list(model.output.parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    groups = [{"params": head}, {"params": body}]
    return torch.optim.AdamW(groups, lr=training.learning_rate, weight_decay=training.weight_decay)


def fit_output_layer(
    pooled: np.ndarray, y: np.ndarray, kind: str, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """A linear o() fitted in closed form: ``(R, F)`` pooled representations of the training repertoires and
    their targets -> (weights ``(outputs, F)``, bias ``(outputs,)``) in the raw pooled units, reading only
    ``columns`` (all when empty); a regularised logistic regression (ridge for regression), or None when the
    targets hold one class.

    The columns are standardised so that the penalty weighs each alike, but no standard deviation counts as
    less than ``PROBE_SCALE_FLOOR``. A pooled feature can vary across repertoires by far less than fine-tuning
    moves it: the pooled usage of an enriched V or J gene in a head that attends almost evenly varied by ~1e-4
    on real receptors, so o() read it with a weight of 27,000, and the first 100 updates of h(), f() and the
    gene embeddings shifted every repertoire's output by 20-50 (validation loss 0.8 -> 20-42, all predictions
    1.0, held-out AUC 0.5 until a lucky evaluation). With the floor such a feature enters at the weight a
    one-percent change deserves (measured: validation loss stays within 0.68-1.04, held-out AUC 0.979 against
    0.945)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    columns = np.asarray(columns, dtype=int) if len(columns) else np.arange(pooled.shape[1])
    x = pooled[:, columns]
    centre, scale = x.mean(axis=0), np.maximum(x.std(axis=0), PROBE_SCALE_FLOOR)
    x = (x - centre) / scale
    if kind == "regression":
        fit = Ridge(alpha=1.0).fit(x, y)
        coef, intercept = fit.coef_[None, :], np.atleast_1d(fit.intercept_)
    else:
        if len(np.unique(y)) < 2:
            return None
        fit = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(x, y)
        coef, intercept = fit.coef_, fit.intercept_
    weights = np.zeros((coef.shape[0], pooled.shape[1]))
    weights[:, columns] = coef / scale  # back to the raw pooled features
    return weights, intercept - (coef / scale) @ centre


@dataclass
class _Record:
    """A run's evaluations and the best of them, with the weights that gave it."""

    history: list[dict] = field(default_factory=list)  # one dict per evaluation
    loss: float = math.inf  # the best validation loss
    state: dict | None = None  # a copy of the best weights
    best: dict | None = None  # the best evaluation


class _Trainer:
    """One training run; :func:`train` is its public face."""

    def __init__(self, dataset: RepertoireDataset, training: TrainingConfig, model_config: DeepRCConfig | None) -> None:
        self.dataset, self.cfg = dataset, training
        self.device = resolve_device(training.device)
        if (
            training.batch_size < 1
            or training.n_kept < 1
            or (training.n_sequences is not None and training.n_sequences < 1)
        ):
            raise DeepRCError("batch_size, n_kept and n_sequences must be at least 1.")
        if training.top_fraction is not None and not 0 < training.top_fraction <= 1:
            raise DeepRCError("top_fraction must be in (0, 1].")
        spec = infer_target(dataset.metadata, training.target, training.positive, training.task)
        config = copy.deepcopy(model_config) if model_config is not None else DeepRCConfig()
        config.targets = [asdict(spec)]
        config.max_length = dataset.max_length
        self._set_genes(config, bool(training.use_genes))
        self.config, self.spec = config, config.target_spec()
        self.y = _encode_target(dataset.metadata, self.spec)  # (n,) 0/1, class index or standardised value
        self.pos_weight = float((1 - self.y).sum() / max(self.y.sum(), 1)) if self.spec.kind == "binary" else 1.0
        self.stratify = self.y if self.spec.kind != "regression" else None
        self.seeded_patterns: list[dict] = []
        self.seeded_genes: list[str] = []
        self.seeding_threshold: float | None = None  # the enrichment t a pattern had to beat to be seeded
        self.seeded_features: list[int] = []  # representation features that seeding wrote a detector into
        self.seeded_heads: list[list[str]] = []  # per attention head, the seeded detectors it reads at the start
        self.seeded_kernels: list[str] = []  # kernel k started on pattern seeded_kernels[k]
        self._genes_found: tuple[dict[int, float], dict[int, float]] | None = None  # see _enriched_genes
        self._rankings: dict[int, _Ranking] = {}  # repertoire -> its last ranking (see select)
        self._seen: np.ndarray | None = None  # bit set of the training receptors' keys (see unseen_rows)
        self._unseen: dict[int, np.ndarray] = {}  # validation repertoire -> its rows that no training one holds
        self.dist = distributed.current()  # None in a single process (see deeprc_core.distributed)

    def _set_genes(self, config: DeepRCConfig, use: bool) -> None:
        config.v_genes = [g for g in self.dataset.v_vocab.tolist() if g] if use else []
        config.j_genes = [g for g in self.dataset.j_vocab.tolist() if g] if use else []
        DeepRCConfig.__post_init__(config)

    def decide_genes(self, train_idx: np.ndarray) -> bool:
        """``use_genes=None``: V/J genes join the model when their usage differs between the classes of the
        training repertoires beyond what shuffled labels give (:func:`deeprc_core.seeding.enriched_genes`).
        Gene embeddings on data without such a signal only let o() memorise chance differences in gene usage
        (measured: held-out AUC 0.84 instead of 1.00 on two simulated 4-mer motifs at 0.2 %)."""
        if self.cfg.use_genes is not None:
            return bool(self.cfg.use_genes)
        v_w, j_w = self._enriched_genes(train_idx)
        use = bool(v_w or j_w)
        self._set_genes(self.config, use)
        return use

    def _enriched_genes(self, train_idx: np.ndarray) -> tuple[dict[int, float], dict[int, float]]:
        """Enriched V and J genes of the training repertoires, found once per run (indices of the dataset's
        vocabularies, which are the model's: both number the genes in the same order after 0 = unknown)."""
        if self._genes_found is None:
            from deeprc_core.seeding import enriched_genes

            self._genes_found = enriched_genes(
                lambda k: self.dataset.genes(int(train_idx[k])), len(self.dataset.v_vocab), len(self.dataset.j_vocab),
                len(train_idx), self.y[train_idx], self.spec.kind, self.cfg.seed,
            )  # fmt: skip
        return self._genes_found

    def _gene_shares(
        self, train_idx: np.ndarray, v_genes: dict[int, float], j_genes: dict[int, float]
    ) -> tuple[float, float]:
        """Weighted share of the enriched V (J) genes' sequences in a training repertoire, on average (0.5 where
        none is enriched); the training repertoires' gene calls are read once for both."""
        lookups = []
        for chosen, vocab in ((v_genes, self.dataset.v_vocab), (j_genes, self.dataset.j_vocab)):
            lookup = np.zeros(len(vocab))  # one weight per gene of the vocabulary, 0 for those not enriched
            lookup[list(chosen)] = list(chosen.values())
            lookups.append(lookup)
        totals = np.zeros(2)
        if v_genes or j_genes:
            for i in train_idx:
                totals += [lookup[genes].mean() for lookup, genes in zip(lookups, self.dataset.genes(int(i)))]
        shares = totals / max(len(train_idx), 1)
        return (float(shares[0]) if v_genes else 0.5), (float(shares[1]) if j_genes else 0.5)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.dataset)
        indices = np.arange(n)
        n_val = max(1, int(round(self.cfg.validation_fraction * n)))
        if n < 4:
            raise DeepRCError(f"Training needs at least 4 repertoires; this dataset has {n}.")
        stratify = self.stratify
        if stratify is not None:
            _, counts = np.unique(stratify, return_counts=True)
            if counts.min() < 2 or n_val < len(counts):
                stratify = None  # too few per class to stratify; a plain split still works
        train_idx, val_idx = train_test_split(indices, test_size=n_val, random_state=self.cfg.seed, stratify=stratify)
        return np.sort(train_idx), np.sort(val_idx)

    def prepare(self, model: DeepRC) -> _Encoded:
        """The dataset's repertoires encoded for ``model`` (codes, lengths, gene indices, counts), read on use."""
        return _Encoded(self.dataset, model)

    def seed(self, model: DeepRC, encoded: _Encoded, train_idx: np.ndarray) -> None:
        """With ``seed_kernels``, start kernels and attention on k-mers (and V/J genes, when the model uses
        them) enriched in the training repertoires (:mod:`deeprc_core.seeding`); the validation repertoires
        are never looked at."""
        self.seeded_patterns, self.seeded_genes, self.seeded_features, self.seeded_heads = [], [], [], []
        self.seeded_kernels = []
        self.seeding_threshold = None
        if not self.cfg.seed_kernels or self.config.embedding != "cnn":
            return
        from deeprc_core.seeding import enriched_patterns, seed_model

        kind, labels, seed = self.spec.kind, self.y[train_idx], self.cfg.seed
        by_gene = self.cfg.seeding_by_gene
        patterns, self.seeding_threshold = enriched_patterns(
            lambda k: encoded.arrays(int(train_idx[k])), len(train_idx), labels, kind, self.config.n_kernels // 2, seed,
            genes=(lambda k: self.dataset.genes(int(train_idx[k]))) if by_gene else None,
            gene_sizes=(len(self.dataset.v_vocab), len(self.dataset.j_vocab)) if by_gene else (0, 0),
        )  # fmt: skip
        v_genes, j_genes = self._enriched_genes(train_idx) if self.config.v_genes or self.config.j_genes else ({}, {})

        start = seed_model(model, patterns, v_genes, j_genes, self._gene_shares(train_idx, v_genes, j_genes))
        self.seeded_features, self.seeded_heads, self.seeded_kernels = start.features, start.heads, start.kernels
        self.seeded_patterns = [
            {"pattern": p.pattern, "t": round(p.t, 2), "class": p.label, "share": round(p.share, 5)} for p in patterns
        ]
        self.seeded_genes = [f"{self.config.v_genes[g - 1]} ({w:.2f})" for g, w in v_genes.items()]
        self.seeded_genes += [f"{self.config.j_genes[g - 1]} ({w:.2f})" for g, w in j_genes.items()]

    @torch.no_grad()
    def probe(self, model: DeepRC, encoded: _Encoded, train_idx: np.ndarray) -> None:
        """Fit a linear o() in closed form on the pooled representations of the training repertoires
        (:func:`fit_output_layer`), so fine-tuning starts from a head that already reads the seeded detectors
        instead of a random one. Skipped when o() has hidden layers."""
        if self.config.output_layers != 1:
            return
        model.eval()
        rows = []
        for i in train_idx:
            z = encoded.get(int(i)).representation(model)
            weights = model.attention_weights(model.attention_logits(z), None, 1)
            rows.append(model.pool(z, weights, None, 1)[0].float().cpu().numpy())  # (H * D,)
        # o() starts reading the seeded detectors only; the random features start at weight 0 and join through
        # fine-tuning. With ~100 training repertoires a fit on all pooled features lets chance differences in
        # random kernels outweigh the detectors (measured on real receptors: held-out AUC 0.88 against 0.94 from
        # the seeded features alone).
        size = len(rows[0]) // self.config.n_heads
        columns = np.array([h * size + f for h in range(self.config.n_heads) for f in self.seeded_features], dtype=int)
        layer = model.output[-1]
        fit = fit_output_layer(np.stack(rows), self.y[train_idx], self.spec.kind, columns)
        if fit is None or fit[0].shape[0] != layer.out_features:
            return  # one class only, or a class absent from the training part: leave o() to gradient descent
        layer.weight.copy_(torch.as_tensor(fit[0], dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(fit[1], dtype=layer.bias.dtype))

    def _n_kept(self, n: int) -> int:
        if self.cfg.top_fraction is not None:
            return max(1, min(n, int(math.ceil(self.cfg.top_fraction * n))))
        return max(1, min(n, self.cfg.n_kept))

    @torch.no_grad()
    def select(self, model: DeepRC, encoded: _Encoded, batch: np.ndarray, rng: np.random.Generator) -> _Selection:
        """Rank each repertoire's sequences by attention (fast path, no gradient) and keep the highest.

        With ``full_softmax`` the sequences not kept are summarised per repertoire and head as constants:
        ``rest_weight = sum exp(logit - shift)`` and ``rest_sum = sum exp(logit - shift) * z`` ``(H, D)``,
        so the gradient pass computes exactly the whole-repertoire softmax pooling of scoring. A repertoire
        ranked in full is ranked anew on every ``rerank_every``-th draw; in between its ranking and constants are
        reused (:class:`_Ranking`).
        """
        model.eval()
        rankings: list[_Ranking | None] = []
        offers, fresh, fresh_subs, drawn = [], [], [], set()
        for b, i in enumerate(batch):
            rep = encoded.get(int(i))
            n, cap = len(rep.lengths), self.cfg.n_sequences
            if cap is not None and cap < n:  # a fresh draw every time: nothing to reuse
                offered, ranking = np.sort(rng.choice(n, size=cap, replace=False)), None
                drawn.add(b)
            else:
                offered, ranking = np.arange(n), self._rankings.get(int(i))
                if ranking is not None and ranking.uses >= self.cfg.rerank_every:
                    ranking = None
            if ranking is None:
                fresh.append(b)
                fresh_subs.append(rep.subset(torch.from_numpy(offered)) if len(offered) < n else rep)
            else:
                ranking.uses += 1
            rankings.append(ranking)
            offers.append(offered)
        if fresh_subs:  # one fast embedding of all repertoires to rank (one lookup table, large length groups)
            z_all = _EncodedRepertoire.concat(fresh_subs).representation(model)
            logits_all = model.attention_logits(z_all).float()  # (N_fresh, H)
            bounds = np.cumsum([0] + [len(sub.lengths) for sub in fresh_subs])
            for k, b in enumerate(fresh):
                z, logits = z_all[bounds[k] : bounds[k + 1]], logits_all[bounds[k] : bounds[k + 1]]  # (n, D), (n, H)
                rankings[b] = self._rank(z, logits, offers[b])
                if b not in drawn:
                    self._rankings[int(batch[b])] = rankings[b]
        parts: dict[str, list] = {k: [] for k in ("codes", "lengths", "bag", "v", "j", "counts")}
        for b, (i, ranking) in enumerate(zip(batch, rankings)):
            kept = encoded.get(int(i)).subset(torch.from_numpy(ranking.kept))
            width = int(kept.lengths.max())
            parts["codes"].append(torch.from_numpy(kept.codes[:, :width]))
            parts["lengths"].append(torch.from_numpy(kept.lengths))
            parts["bag"].append(torch.full((len(ranking.kept),), b, dtype=torch.long))
            parts["v"].append(kept.v)
            parts["j"].append(kept.j)
            parts["counts"].append(kept.counts)
        width = max(c.shape[1] for c in parts["codes"])
        codes = torch.cat([F.pad(c, (0, width - c.shape[1]), value=PAD) for c in parts["codes"]])
        return _Selection(
            codes=codes,
            lengths=torch.cat(parts["lengths"]),
            bag=torch.cat(parts["bag"]),
            v=_cat_optional(parts["v"]),
            j=_cat_optional(parts["j"]),
            counts=torch.cat(parts["counts"]),
            shift=torch.stack([r.shift for r in rankings]),
            rest_weight=torch.stack([r.rest_weight for r in rankings]),
            rest_sum=torch.stack([r.rest_sum for r in rankings]),
            offered=offers,
            kept=[r.kept for r in rankings],
        )

    def _rank(self, z: torch.Tensor, logits: torch.Tensor, offered: np.ndarray) -> _Ranking:
        """Keep the highest-attention sequences of one repertoire and sum up the rest (see :meth:`select`)."""
        keep = self._n_kept(len(offered))
        top = torch.topk(logits.amax(dim=1), keep).indices.sort().values
        shift = logits.amax(dim=0)  # (H,)
        if self.cfg.full_softmax and keep < len(offered):
            weight = torch.exp(logits - shift)  # (n, H)
            weight[top] = 0.0
            rest_weight, rest_sum = weight.sum(dim=0), weight.transpose(0, 1) @ z  # (H,), (H, n) @ (n, D)
        else:
            rest_weight, rest_sum = torch.zeros_like(shift), z.new_zeros(len(shift), z.shape[1])
        return _Ranking(offered[top.cpu().numpy()], shift, rest_weight, rest_sum)

    def forward(self, model: DeepRC, sel: _Selection, n_bags: int) -> torch.Tensor:
        """Differentiable outputs ``(B, n_outputs)`` from the kept sequences (plus the constant rest)."""
        device = self.device
        lengths = sel.lengths.to(device)
        with autocast(device):
            feats = model.features(sel.codes.to(device), lengths)
            emb = model.embed_features(feats, lengths)
        z = model.represent(emb.float(), sel.v, sel.j, sel.counts)  # (K, D)
        logits = model.attention_logits(z).float()  # (K, H)
        bag = sel.bag.to(device)
        e = torch.exp(logits - sel.shift.to(device)[bag])  # (K, H); shift >= every logit of its repertoire
        n_heads, size = logits.shape[1], z.shape[1]
        numerator = z.new_zeros(n_bags, n_heads, size).index_add(0, bag, e[:, :, None] * z[:, None, :])  # (B, H, D)
        numerator = numerator + sel.rest_sum.to(device)
        denominator = e.new_zeros(n_bags, n_heads).index_add(0, bag, e) + sel.rest_weight.to(device)  # (B, H)
        pooled = numerator / denominator[:, :, None]
        return model.output(pooled.reshape(n_bags, -1))  # (B, H * D) -> (B, n_outputs)

    def index_training_receptors(self, encoded: _Encoded, train_idx: np.ndarray) -> None:
        """Remember which receptors the training repertoires of only one class hold (``validate_unseen``; for
        regression: every training receptor), as a bit set of :data:`SEEN_BITS` bits over their keys: memory
        stays bounded on any cohort; a key that collides with a training one only drops that validation
        sequence, a random thinning that leaves the estimate unbiased. A receptor that training repertoires
        of two classes hold (a public clone in patients and controls) tells the classes nothing a model could
        memorise, and new patients carry such clones too, so it stays in validation."""
        self._seen, self._unseen = None, {}
        if not self.cfg.validate_unseen:
            return
        size = 1 << (SEEN_BITS - 3)
        if self.stratify is None:
            groups = [train_idx]
        else:
            groups = [train_idx[self.y[train_idx] == c] for c in np.unique(self.y[train_idx])]
        seen, shared = np.zeros(size, dtype=np.uint8), np.zeros(size, dtype=np.uint8)
        for members in groups:
            bits = np.zeros(size, dtype=np.uint8)
            for i in members:
                np.bitwise_or.at(bits, *_seen_address(encoded.get(int(i))))
            shared |= seen & bits
            seen |= bits
        self._seen = seen & ~shared

    def unseen_rows(self, i: int, rep: _EncodedRepertoire) -> _EncodedRepertoire:
        """Validation repertoire ``i`` without the receptors that training repertoires of one class hold too
        (:meth:`index_training_receptors`): the validation loss then measures what the model learnt about the
        signal, not which receptors it has seen. Receptors shared between training and validation
        repertoires (one donor's clones in several samples, witnesses of the same donors) otherwise let a
        model that memorises them look best, while new patients share none (measured on real receptors with
        disjoint test donors: validation AUC 0.99, held-out 0.86). All rows are kept when every one of them
        was seen."""
        if self._seen is None:
            return rep
        if i not in self._unseen:
            byte, mask = _seen_address(rep)
            self._unseen[i] = np.flatnonzero((self._seen[byte] & mask) == 0)
        rows = self._unseen[i]
        if len(rows) == len(rep.lengths) or not len(rows):
            return rep
        return rep.subset(torch.from_numpy(rows))

    @torch.no_grad()
    def outputs(
        self, model: DeepRC, indices: np.ndarray, encoded: _Encoded | None = None, unseen: bool = False
    ) -> torch.Tensor:
        """Full-repertoire outputs ``(n, n_outputs)`` (optionally capped per repertoire, seeded; with
        ``unseen``, without the receptors that training repertoires of one class hold, see :meth:`unseen_rows`)."""
        model.eval()
        encoded = encoded or self.prepare(model)
        rng = np.random.default_rng(self.cfg.seed + 1)
        rows = []
        cap = self.cfg.eval_max_sequences
        mine = (
            np.ones(len(indices), dtype=bool)
            if self.dist is None
            else np.isin(np.arange(len(indices)), self.dist.shard(len(indices)))
        )
        for k, i in enumerate(indices):
            if not mine[k]:  # another rank scores it; draw its sequences all the same, so every stream stays in step
                n = self.dataset.n_sequences(int(i))
                if cap and cap < n:
                    rng.choice(n, size=cap, replace=False)
                continue
            rep = encoded.get(int(i))
            if cap and cap < len(rep.lengths):
                rep = rep.subset(torch.from_numpy(np.sort(rng.choice(len(rep.lengths), size=cap, replace=False))))
            if unseen:
                rep = self.unseen_rows(int(i), rep)
            z = rep.representation(model)
            rows.append(model.outputs_from_representation(z)[0])
        if self.dist is not None:  # validation shared out over the ranks: every rank gets all rows
            return self.dist.gather_rows(rows, np.flatnonzero(mine), len(indices), self.device)
        return torch.stack(rows)

    def evaluate(
        self, model: DeepRC, indices: np.ndarray, encoded: _Encoded | None = None, unseen: bool = False
    ) -> dict[str, float]:
        """Loss and metrics on full repertoires (with ``unseen``, without one class's training receptors)."""
        outputs = self.outputs(model, indices, encoded, unseen)
        spec, y = self.spec, self.y[indices]
        result = {"loss": float(_loss(outputs, torch.as_tensor(y, device=outputs.device), spec, self.pos_weight))}
        truth = y if spec.kind != "regression" else y * spec.std + spec.mean
        result.update(metrics_for(spec, truth, outputs_to_probabilities(outputs, self.config)))
        return result

    def _evaluate_and_keep(
        self, model: DeepRC, val_idx: np.ndarray, encoded: _Encoded, evaluation: dict, record: _Record, tolerance: float
    ) -> bool:
        """Add the validation metrics of ``model`` to ``evaluation`` (which holds the update and train loss),
        append it to ``record``'s history, and keep a copy of the weights when the validation loss beats the
        best by ``tolerance`` (or when no weights are kept yet and ``tolerance`` is 0, as at the end of a run
        cut short). Returns whether this evaluation became the best."""
        evaluation.update({f"val_{k}": v for k, v in self.evaluate(model, val_idx, encoded, unseen=True).items()})
        record.history.append(evaluation)
        if evaluation["val_loss"] < record.loss - tolerance or (tolerance == 0 and record.state is None):
            record.loss, record.best = evaluation["val_loss"], evaluation
            record.state = copy.deepcopy(model.state_dict())
            return True
        return False

    def run(
        self,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        on_update: Callable[[TrainingProgress], None] | None,
        on_evaluate: Callable[[TrainingProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        resume_from: str | None,
    ) -> TrainingResult:
        cfg = self.cfg
        if self.dist is not None and not self.dist.is_main:
            on_update = on_evaluate = None  # progress is reported by rank 0 alone
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.decide_genes(train_idx)
        model = DeepRC(self.config).to(self.device)
        encoded = self.prepare(model)
        self.index_training_receptors(encoded, train_idx)
        if resume_from is None:
            self.seed(model, encoded, train_idx)
            if cfg.seed_kernels:
                self.probe(model, encoded, train_idx)
        optimizer = build_optimizer(model, cfg)
        record, update, stale = _Record(), 0, 0
        if resume_from is None and cfg.seed_kernels:
            # the seeded model with its probed o() is the first candidate: fine-tuning must beat it on validation
            start_point = {"update": 0, "train_loss": None, "elapsed_s": 0.0}  # no update yet
            self._evaluate_and_keep(model, val_idx, encoded, start_point, record, tolerance=0.0)
            if on_evaluate is not None:
                on_evaluate(TrainingProgress(0, cfg.max_updates, math.nan, 0.0, None, record.history, record.best))
        if resume_from is not None:
            from deeprc_core.checkpoint import load_model, load_training_state

            loaded = load_model(resume_from, self.device)
            if loaded.config != self.config:
                raise DeepRCError(f"Model {resume_from} has another architecture or target; cannot resume from it.")
            model.load_state_dict(loaded.state_dict())
            seeded = loaded.info or {}  # what the first run's start seeded stays on the resumed model's card
            self.seeded_patterns = list(seeded.get("seeded_patterns") or [])
            self.seeded_genes = list(seeded.get("seeded_genes") or [])
            self.seeded_heads = list(seeded.get("seeded_heads") or [])
            self.seeded_kernels = list(seeded.get("seeded_kernels") or [])
            self.seeding_threshold = seeded.get("seeding_threshold")
            state = load_training_state(resume_from, optimizer)
            update, history = int(state.get("update", 0)), list(state.get("history", []))
            rng = np.random.default_rng([cfg.seed, update])
            record = _Record(
                history,
                float(state.get("best_loss", math.inf)),
                copy.deepcopy(model.state_dict()),  # the saved weights are the best ones
                min(history, key=lambda h: h["val_loss"]) if history else None,
            )
        sampler = ddp = None
        if self.dist is not None:  # each rank its own repertoires; gradients averaged over the ranks
            sampler = distributed.BatchSampler(train_idx, cfg.batch_size, cfg.seed, self.dist)
            rng = sampler.selection_rng(update)
            ddp = distributed.data_parallel(self.forward, model)
        start, running, reason = time.perf_counter(), [], "max_updates"
        budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        order = np.empty(0, dtype=np.int64)
        y_t = torch.as_tensor(self.y.copy())
        while update < cfg.max_updates:
            stop = "cancelled" if should_stop is not None and should_stop() else None
            if stop is None and budget is not None and time.perf_counter() - start > budget:
                stop = "time budget"
            if self.dist is not None:
                stop = self.dist.agree_stop(stop)  # all ranks stop at the same update
            if stop is not None:
                reason = stop
                break
            if sampler is not None:
                batch = sampler.batch(update)
            else:
                if len(order) < cfg.batch_size:
                    order = np.concatenate([order, rng.permutation(train_idx)])
                batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
            # attention-based reduction, no gradient (in a distributed run, a failure on one rank stops all)
            selection = distributed.together(self.dist, self.select, model, encoded, batch, rng)
            model.train()
            outputs = self.forward(model, selection, len(batch)) if ddp is None else ddp(selection, len(batch))
            loss = _loss(outputs, y_t[batch].to(self.device), self.spec, self.pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.param_groups[1]["lr"] = (
                cfg.learning_rate * cfg.fine_tune_factor if update >= cfg.warmup_updates else 0.0
            )
            optimizer.step()
            update += 1
            running.append(loss.item() if self.dist is None else self.dist.mean(loss.item()))
            elapsed = time.perf_counter() - start
            progress = TrainingProgress(
                update=update,
                max_updates=cfg.max_updates,
                loss=float(np.mean(running[-cfg.eval_every :])),
                elapsed_s=elapsed,
                eta_s=self._eta(update, elapsed, budget),
                history=record.history,
                best=record.best,
            )
            if on_update is not None:
                on_update(progress)
            if update % cfg.eval_every == 0 or update == cfg.max_updates:
                evaluation = {"update": update, "train_loss": progress.loss, "elapsed_s": elapsed}
                improved = self._evaluate_and_keep(model, val_idx, encoded, evaluation, record, tolerance=1e-6)
                stale = 0 if improved else stale + 1
                progress.best = record.best
                if on_evaluate is not None:
                    on_evaluate(progress)
                if stale >= cfg.patience and update >= cfg.min_updates:
                    reason = "early stopping"
                    break
        history = record.history
        if record.state is None or (history and history[-1]["update"] != update and reason != "early stopping"):
            # evaluate the last model too, so a run cut short by time or cancel keeps its best
            train_loss = float(np.mean(running[-cfg.eval_every :])) if running else math.nan
            evaluation = {"update": update, "train_loss": train_loss}
            self._evaluate_and_keep(model, val_idx, encoded, evaluation, record, tolerance=0.0)
            evaluation["elapsed_s"] = time.perf_counter() - start
        model.load_state_dict(record.state)
        model.eval()
        metrics = {k[4:]: v for k, v in record.best.items() if k.startswith("val_")}
        metrics["best_update"] = record.best["update"]
        # model selection read the validation receptors new to training (validate_unseen); on all of them, the kept
        # model's figures compare like for like with references fitted on whole repertoires
        every = self.evaluate(model, val_idx, encoded) if self._seen is not None else None
        state = {"update": update, "best_loss": record.loss, "stop_reason": reason, "history": history}
        model.info = {
            "target": asdict(self.spec),
            "training": asdict(cfg),
            "data": {**self.dataset.summary(), "n_train": int(len(train_idx)), "n_validation": int(len(val_idx))},
            "validation_metrics": metrics,  # without one class's training receptors (validate_unseen)
            "updates": update,
            "stop_reason": reason,
            "training_seconds": round(time.perf_counter() - start, 1),
            "seeded_patterns": self.seeded_patterns,
            "seeded_genes": self.seeded_genes,
            "seeded_heads": self.seeded_heads,
            "seeded_kernels": self.seeded_kernels,
            "seeding_threshold": None if self.seeding_threshold is None else round(self.seeding_threshold, 2),
            "world_size": 1 if self.dist is None else self.dist.world_size,  # processes that trained it together
        }
        if every is not None:  # only where model selection read the unseen receptors
            model.info["validation_metrics_all_receptors"] = every
        return TrainingResult(model, history, metrics, train_idx, val_idx, optimizer, state)

    def _eta(self, update: int, elapsed: float, budget: float | None) -> float | None:
        if update == 0:
            return None
        by_updates = elapsed / update * (self.cfg.max_updates - update)
        return by_updates if budget is None else max(0.0, min(by_updates, budget - elapsed))


def train(
    dataset: RepertoireDataset,
    training: TrainingConfig | None = None,
    model_config: DeepRCConfig | None = None,
    *,
    on_update: Callable[[TrainingProgress], None] | None = None,
    on_evaluate: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: str | None = None,
    train_indices: np.ndarray | None = None,
    val_indices: np.ndarray | None = None,
) -> TrainingResult:
    """Train a DeepRC model on a dataset with a stratified train/validation split.

    Parameters
    ----------
    dataset
        An opened dataset (:func:`deeprc_core.dataset.open_dataset`).
    training
        Optimisation settings; the target column lives here.
    model_config
        Architecture (targets, maximum length and gene vocabularies are filled in from the data).
    on_update, on_evaluate
        Called with a :class:`TrainingProgress` after every update / every evaluation.
    should_stop
        Polled before each update; returning True cancels training (the best model so far is kept).
    resume_from
        A model directory saved with its training state; training continues from its update count.
    train_indices, val_indices
        An explicit split (e.g. a cross-validation fold) instead of the stratified random one.

    Returns
    -------
    TrainingResult
        The best model by validation loss, its metrics and the training history.
    """
    trainer = _Trainer(dataset, training or TrainingConfig(), model_config)
    if train_indices is None or val_indices is None:
        train_indices, val_indices = trainer.split()
    train_indices, val_indices = np.asarray(train_indices), np.asarray(val_indices)
    result = trainer.run(train_indices, val_indices, on_update, on_evaluate, should_stop, resume_from)
    if trainer.cfg.reference and trainer.spec.kind == "binary" and (trainer.dist is None or trainer.dist.is_main):
        result.model.info["reference"] = reference_aucs(dataset, train_indices, val_indices, trainer.spec)
    return result


def reference_aucs(dataset: RepertoireDataset, train_idx: np.ndarray, val_idx: np.ndarray, spec: TargetSpec) -> dict:
    """Validation AUCs of the references every reviewer will ask for, fitted on DeepRC's own training split:
    k-mer (k = 3, 4) frequencies and V/J-gene usage, each with an L1 logistic regression
    (:mod:`deeprc_core.baseline`). A binary target only; ``{"kmer_auc", "vj_auc", "seconds"}``."""
    from deeprc_core.baseline import baseline_auc

    start = time.perf_counter()
    out = {}
    for kind in ("kmer", "vj"):
        try:
            out[f"{kind}_auc"] = baseline_auc(dataset, train_idx, val_idx, spec.name, spec.classes[1], kind=kind)
        except (DeepRCError, ValueError):
            out[f"{kind}_auc"] = float("nan")  # e.g. a class missing from a tiny split
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def cross_validate(
    dataset: RepertoireDataset,
    training: TrainingConfig | None = None,
    model_config: DeepRCConfig | None = None,
    k: int = 5,
    on_fold: Callable[[int, dict], None] | None = None,
) -> pd.DataFrame:
    """k-fold cross-validation (stratified for classification): one row of held-out metrics per fold, then
    ``mean`` and ``sd`` rows, as the paper reports. Within each fold, early stopping uses an inner split
    of the training part, and the metrics are computed on the held-out fold."""
    training = training or TrainingConfig()
    trainer = _Trainer(dataset, training, model_config)
    labels = trainer.stratify
    splitter = (
        StratifiedKFold(k, shuffle=True, random_state=training.seed)
        if labels is not None
        else KFold(k, shuffle=True, random_state=training.seed)
    )
    rows = []
    for fold, (outer_train, test) in enumerate(splitter.split(np.zeros(len(dataset)), labels)):
        strat = labels[outer_train] if labels is not None else None
        if strat is not None:
            _, per_class = np.unique(strat, return_counts=True)
            n_val = max(1, int(round(training.validation_fraction * len(outer_train))))
            if per_class.min() < 2 or n_val < len(per_class):
                strat = None  # too few per class to stratify the inner split
        inner_train, inner_val = train_test_split(
            outer_train, test_size=training.validation_fraction, random_state=training.seed, stratify=strat
        )
        result = trainer.run(np.sort(inner_train), np.sort(inner_val), None, None, None, None)
        row = {"fold": fold + 1, **trainer.evaluate(result.model, np.sort(test))}
        rows.append(row)
        if on_fold is not None:
            on_fold(fold + 1, row)
    table = pd.DataFrame(rows)
    numeric = table.drop(columns="fold")
    summary = pd.DataFrame(
        [{"fold": "mean", **numeric.mean().to_dict()}, {"fold": "sd", **numeric.std(ddof=1).to_dict()}]
    )
    return pd.concat([table.astype({"fold": object}), summary], ignore_index=True)
