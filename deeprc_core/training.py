"""Train DeepRC: Adam, per-update sequence subsampling, attention-based reduction, early stopping.

Each update takes ``batch_size`` training repertoires; from each it draws ``n_sequences`` sequences
without replacement (seeded), scores them with the current attention network (no gradient), keeps the
``top_fraction`` with the highest attention and runs the differentiable forward pass on those only. Every
``eval_every`` updates the validation repertoires are scored on *all* their sequences; the model with the
lowest validation loss is kept and restored at the end, and training stops early after ``patience``
evaluations without improvement, at ``max_updates`` or after ``max_minutes``.

Lessons from running the original DeepRC on a CPU, each avoided here: Adam ``eps`` is the default 1e-8 (not
1e-4), subsampling is without replacement and seeded, nothing is normalised bag-wide, evaluation never
re-scores the whole training set, and the best model is restored rather than deleted.
"""

from __future__ import annotations

import copy
import math
import time
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

from deeprc_core.dataset import RepertoireDataset
from deeprc_core.errors import DeepRCError
from deeprc_core.model import DeepRC, DeepRCConfig, TargetSpec, autocast, outputs_to_probabilities, resolve_device


@dataclass
class TrainingConfig:
    """How to train; the defaults converge on small simulated data on a laptop CPU in minutes."""

    target: str = "disease"  # metadata column to predict
    positive: str | None = None  # value of the positive class (binary); None = infer from the column
    task: str = "auto"  # "auto", "binary", "multiclass" or "regression"
    max_updates: int = 3000  # upper bound on parameter updates
    max_minutes: float | None = 5.0  # wall-clock budget; None = no limit
    batch_size: int = 4  # repertoires per update
    n_sequences: int = 1000  # sequences sampled per repertoire per update (without replacement)
    top_fraction: float = 0.1  # share of sampled sequences kept by attention for the gradient pass
    learning_rate: float = 1e-3  # Adam step size
    weight_decay: float = 1e-4  # Adam L2 penalty
    eval_every: int = 25  # updates between validation evaluations
    patience: int = 12  # evaluations without validation-loss improvement before stopping
    validation_fraction: float = 0.2  # share of repertoires held out (stratified) for validation
    eval_max_sequences: int | None = None  # cap sequences per validation repertoire (None = all)
    use_genes: bool = False  # learn V/J gene embeddings joined to each sequence's embedding
    seed: int = 0  # seed for splits, sampling and initialisation
    device: str = "auto"  # "auto", "cpu" or "cuda"


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
    if (values == "").any() or metadata[column].isna().any():
        raise DeepRCError(f"Column '{column}' is empty for some repertoires; fill or remove them.")
    distinct = sorted(values.unique())
    if task == "auto":
        numeric = pd.to_numeric(values, errors="coerce")
        if positive is not None or len(distinct) == 2:
            task = "binary"
        elif numeric.notna().all() and len(distinct) > 10:
            task = "regression"
        else:
            task = "multiclass"
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


def _encode_targets(metadata: pd.DataFrame, spec: TargetSpec) -> np.ndarray:
    values = metadata[spec.name].astype(str).str.strip()
    if spec.kind == "binary":
        return (values == spec.classes[1]).to_numpy(dtype=np.float32)
    if spec.kind == "multiclass":
        return values.map({c: i for i, c in enumerate(spec.classes)}).to_numpy(dtype=np.int64)
    return ((pd.to_numeric(values) - spec.mean) / spec.std).to_numpy(dtype=np.float32)


def _loss(outputs: torch.Tensor, targets: list[torch.Tensor], specs: list[TargetSpec], pos_weights: list[float]) -> torch.Tensor:
    total, start = outputs.new_zeros(()), 0
    for spec, y, w in zip(specs, targets, pos_weights):
        block = outputs[:, start : start + spec.n_outputs].float()
        start += spec.n_outputs
        if spec.kind == "binary":
            total = total + F.binary_cross_entropy_with_logits(block[:, 0], y, pos_weight=block.new_tensor(w))
        elif spec.kind == "multiclass":
            total = total + F.cross_entropy(block, y)
        else:
            total = total + F.mse_loss(block[:, 0], y)
    return total


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
            out["auc"] = float(roc_auc_score(y_true, prediction, multi_class="ovr", labels=list(range(len(spec.classes)))))
        except ValueError:
            out["auc"] = float("nan")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, label))
        out["f1"] = float(f1_score(y_true, label, average="macro", zero_division=0))
    else:
        out["r2"] = float(r2_score(y_true, prediction)) if len(y_true) > 1 else float("nan")
        out["mae"] = float(mean_absolute_error(y_true, prediction))
    return out


class _Trainer:
    """One training run; :func:`train` is its public face."""

    def __init__(self, dataset: RepertoireDataset, training: TrainingConfig, model_config: DeepRCConfig | None) -> None:
        self.dataset, self.cfg = dataset, training
        self.device = resolve_device(training.device)
        if training.batch_size < 1 or training.n_sequences < 1 or not 0 < training.top_fraction <= 1:
            raise DeepRCError("batch_size and n_sequences must be >= 1 and top_fraction in (0, 1].")
        spec = infer_target(dataset.metadata, training.target, training.positive, training.task)
        config = copy.deepcopy(model_config) if model_config is not None else DeepRCConfig()
        config.targets = [asdict(spec)]
        config.max_length = dataset.max_length
        if training.use_genes:
            config.v_genes = [g for g in dataset.v_vocab.tolist() if g]
            config.j_genes = [g for g in dataset.j_vocab.tolist() if g]
        DeepRCConfig.__post_init__(config)
        self.config, self.specs = config, config.target_specs()
        self.targets = [_encode_targets(dataset.metadata, s) for s in self.specs]
        y = self.targets[0]
        self.pos_weights = [
            float((1 - t).sum() / max(t.sum(), 1)) if s.kind == "binary" else 1.0 for s, t in zip(self.specs, self.targets)
        ]
        self.stratify = y if self.specs[0].kind != "regression" else None

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

    def _batch(self, model: DeepRC, indices: np.ndarray, rng: np.random.Generator) -> tuple:
        """Subsample, reduce by attention (no grad), and assemble the kept sequences of a batch."""
        codes, lengths, bags, v_all, j_all, counts = [], [], [], [], [], []
        for b, i in enumerate(indices):
            rep = self.dataset.sample(int(i), self.cfg.n_sequences, rng)
            v_idx, j_idx = model.gene_indices(rep.v_call, rep.j_call)
            counts_t = torch.as_tensor(rep.counts, dtype=torch.float32)
            keep = max(1, int(math.ceil(self.cfg.top_fraction * len(rep))))
            if keep < len(rep):
                with torch.no_grad():
                    z = model.represent(model.embed(rep.codes, rep.lengths), v_idx, j_idx, counts_t)
                    score = model.attention_logits(z).amax(dim=1)
                top = torch.topk(score, keep).indices.cpu().numpy()
            else:
                top = np.arange(len(rep))
            width = int(rep.lengths[top].max())
            codes.append(torch.as_tensor(rep.codes[top, :width]))
            lengths.append(torch.as_tensor(rep.lengths[top]))
            bags.append(torch.full((len(top),), b, dtype=torch.long))
            counts.append(counts_t[top])
            v_all.append(v_idx[top] if v_idx is not None else None)
            j_all.append(j_idx[top] if j_idx is not None else None)
        width = max(c.shape[1] for c in codes)
        codes = torch.cat([F.pad(c, (0, width - c.shape[1]), value=20) for c in codes])
        cat = lambda xs: torch.cat(xs) if xs[0] is not None else None  # noqa: E731
        return codes, torch.cat(lengths), torch.cat(bags), cat(v_all), cat(j_all), torch.cat(counts)

    @torch.no_grad()
    def outputs(self, model: DeepRC, indices: np.ndarray) -> torch.Tensor:
        """Full-repertoire outputs ``(n, n_outputs)`` (optionally capped per repertoire, seeded)."""
        model.eval()
        rng = np.random.default_rng(self.cfg.seed + 1)
        rows = []
        for i in indices:
            cap = self.cfg.eval_max_sequences
            rep = self.dataset.sample(int(i), cap, rng) if cap else self.dataset.repertoire(int(i))
            with autocast(self.device):
                emb = model.embed(rep.codes, rep.lengths).float()
            v_idx, j_idx = model.gene_indices(rep.v_call, rep.j_call)
            z = model.represent(emb, v_idx, j_idx, torch.as_tensor(rep.counts, dtype=torch.float32))
            rows.append(model.outputs_from_representation(z)[0])
        return torch.stack(rows)

    def evaluate(self, model: DeepRC, indices: np.ndarray) -> dict[str, float]:
        """Loss and metrics on full repertoires."""
        outputs = self.outputs(model, indices)
        targets = [torch.as_tensor(t[indices], device=outputs.device) for t in self.targets]
        result = {"loss": float(_loss(outputs, targets, self.specs, self.pos_weights))}
        preds = outputs_to_probabilities(outputs, self.config)
        for k, (spec, y) in enumerate(zip(self.specs, self.targets)):
            truth = y[indices] if spec.kind != "regression" else y[indices] * spec.std + spec.mean
            prefix = "" if k == 0 else f"{spec.name}_"
            result.update({prefix + key: v for key, v in metrics_for(spec, truth, preds[spec.name]).items()})
        return result

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
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = DeepRC(self.config).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        history: list[dict] = []
        update, best_loss, best_state, best_eval, stale = 0, math.inf, None, None, 0
        if resume_from is not None:
            from deeprc_core.checkpoint import load_model, load_training_state

            loaded = load_model(resume_from, self.device)
            if loaded.config != self.config:
                raise DeepRCError(f"Model {resume_from} has another architecture or target; cannot resume from it.")
            model.load_state_dict(loaded.state_dict())
            state = load_training_state(resume_from, optimizer)
            update, best_loss = int(state.get("update", 0)), float(state.get("best_loss", math.inf))
            history = list(state.get("history", []))
            rng = np.random.default_rng([cfg.seed, update])
            best_state = copy.deepcopy(model.state_dict())  # the saved weights are the best ones
            best_eval = min(history, key=lambda h: h["val_loss"]) if history else None
        start, running, reason = time.perf_counter(), [], "max_updates"
        budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        order = np.empty(0, dtype=np.int64)
        targets_t = [torch.as_tensor(t.copy()) for t in self.targets]
        while update < cfg.max_updates:
            if should_stop is not None and should_stop():
                reason = "cancelled"
                break
            if budget is not None and time.perf_counter() - start > budget:
                reason = "time budget"
                break
            if len(order) < cfg.batch_size:
                order = np.concatenate([order, rng.permutation(train_idx)])
            batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
            model.eval()  # attention-based reduction: no dropout/batchnorm, no gradient
            codes, lengths, bag, v_idx, j_idx, counts = self._batch(model, batch, rng)
            model.train()
            with autocast(self.device):
                feats = model.features(codes.to(self.device), lengths.to(self.device))
                outputs = model(feats, lengths, bag, len(batch), v_idx, j_idx, counts)
            loss = _loss(outputs, [t[batch].to(self.device) for t in targets_t], self.specs, self.pos_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            update += 1
            running.append(loss.item())
            elapsed = time.perf_counter() - start
            progress = TrainingProgress(
                update=update,
                max_updates=cfg.max_updates,
                loss=float(np.mean(running[-cfg.eval_every :])),
                elapsed_s=elapsed,
                eta_s=self._eta(update, elapsed, budget),
                history=history,
                best=best_eval,
            )
            if on_update is not None:
                on_update(progress)
            if update % cfg.eval_every == 0 or update == cfg.max_updates:
                evaluation = {"update": update, "train_loss": progress.loss, "elapsed_s": elapsed}
                evaluation.update({f"val_{k}": v for k, v in self.evaluate(model, val_idx).items()})
                history.append(evaluation)
                if evaluation["val_loss"] < best_loss - 1e-6:
                    best_loss, best_state, best_eval, stale = evaluation["val_loss"], copy.deepcopy(model.state_dict()), evaluation, 0
                else:
                    stale += 1
                progress.history, progress.best = history, best_eval
                if on_evaluate is not None:
                    on_evaluate(progress)
                if stale >= cfg.patience:
                    reason = "early stopping"
                    break
        if best_state is None or (history and history[-1]["update"] != update and reason != "early stopping"):
            # evaluate the last model too, so a run cut short by time or cancel keeps its best
            evaluation = {"update": update, "train_loss": float(np.mean(running[-cfg.eval_every :])) if running else math.nan}
            evaluation.update({f"val_{k}": v for k, v in self.evaluate(model, val_idx).items()})
            evaluation["elapsed_s"] = time.perf_counter() - start
            history.append(evaluation)
            if evaluation["val_loss"] < best_loss or best_state is None:
                best_loss, best_state, best_eval = evaluation["val_loss"], copy.deepcopy(model.state_dict()), evaluation
        model.load_state_dict(best_state)
        model.eval()
        metrics = {k[4:]: v for k, v in best_eval.items() if k.startswith("val_")}
        metrics["best_update"] = best_eval["update"]
        state = {"update": update, "best_loss": best_loss, "stop_reason": reason, "history": history}
        model.info = {
            "target": asdict(self.specs[0]),
            "training": asdict(cfg),
            "data": {**self.dataset.summary(), "n_train": int(len(train_idx)), "n_validation": int(len(val_idx))},
            "validation_metrics": metrics,
            "updates": update,
            "stop_reason": reason,
            "training_seconds": round(time.perf_counter() - start, 1),
        }
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
    return trainer.run(np.asarray(train_indices), np.asarray(val_indices), on_update, on_evaluate, should_stop, resume_from)


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
    summary = pd.DataFrame([{"fold": "mean", **numeric.mean().to_dict()}, {"fold": "sd", **numeric.std(ddof=1).to_dict()}])
    return pd.concat([table.astype({"fold": object}), summary], ignore_index=True)
