"""Tests of training: learning a planted motif, determinism, callbacks, cancel, time budget, early stopping,
other target kinds, cross-validation and target inference."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_dataset

from deeprc_core.dataset import open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.model import DeepRCConfig, TargetSpec
from deeprc_core.scoring import attention_table, predict
from deeprc_core.seeding import MIN_T
from deeprc_core.training import TrainingConfig, _Trainer, cross_validate, infer_target, metrics_for, train

# Settings that learn the planted motif of ``tiny_dataset`` (24 x 300, SLGQ in 5% of positives' sequences).
LEARN = TrainingConfig(
    target="disease", positive="positive", max_updates=150, max_minutes=None, batch_size=4, n_sequences=300,
    top_fraction=0.5, learning_rate=1e-2, eval_every=25, patience=12, seed=0, device="cpu",
)  # fmt: skip
LEARN_ARCH = DeepRCConfig(n_kernels=8, kernel_size=5)

# Settings for the cheap runs that check mechanics rather than learning.
QUICK = TrainingConfig(
    target="disease", positive="positive", max_updates=6, max_minutes=None, batch_size=2, n_sequences=20,
    top_fraction=0.5, eval_every=3, patience=100, min_updates=0, seed=0, device="cpu",
)  # fmt: skip
QUICK_ARCH = DeepRCConfig(n_kernels=4, kernel_size=3, attention_units=8)


@pytest.fixture(scope="module")
def learned(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    updates, evaluations = [], []
    result = train(
        ds, LEARN, LEARN_ARCH, on_update=lambda p: updates.append(p), on_evaluate=lambda p: evaluations.append(p)
    )
    yield ds, result, updates, evaluations
    ds.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 repertoires x 60 sequences with extra metadata columns: hla (3 classes) and age (numeric)."""
    root = write_dataset(tmp_path_factory.mktemp("small"), n_repertoires=12, n_sequences=60, witness_rate=0.1, seed=1)
    meta = pd.read_csv(root / "metadata.tsv", sep="\t")
    meta["hla"] = ["A", "B", "C"] * 4
    meta["age"] = [20 + 3 * i + (i % 2) * 10 for i in range(12)]  # 12 distinct numbers
    meta.to_csv(root / "metadata.tsv", sep="\t", index=False)
    ds = open_dataset(root)
    yield ds
    ds.close()


# ----------------------------------------------------------------------------------------------------------
# Learning


def test_tiny_model_learns_the_planted_motif(learned, tiny_dataset):
    ds, result, _, _ = learned
    assert result.metrics["auc"] >= 0.9
    assert result.metrics["loss"] < 0.5  # well below chance (~0.69), so the AUC is not luck on 5 repertoires
    assert len(result.val_indices) == 5 and len(result.train_indices) == 19
    assert set(result.val_indices).isdisjoint(result.train_indices)
    # attention finds the witnesses: the most attended sequences of held-out positives carry the motif
    truth = pd.read_csv(tiny_dataset / "truth.tsv", sep="\t")
    witnesses = set(truth["sequence"])
    hits = []
    for i in result.val_indices:
        if ds.metadata["disease"].iloc[i] == "positive":
            top = attention_table(result.model, ds.repertoire(int(i))).head(15)
            hits.append(top["sequence"].isin(witnesses).mean())
    assert hits and np.mean(hits) >= 0.3  # six times the base rate of 5%
    table = predict(result.model, [ds.repertoire(int(i)) for i in result.val_indices])
    assert table["probability"].between(0, 1).all()


def test_the_best_evaluation_is_restored(learned):
    ds, result, _, _ = learned
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.metrics["best_update"] == best["update"]
    for key in ("loss", "auc", "balanced_accuracy", "f1"):
        assert result.metrics[key] == best[f"val_{key}"]
    again = _Trainer(ds, LEARN, LEARN_ARCH).evaluate(result.model, result.val_indices)
    assert again["loss"] == pytest.approx(best["val_loss"], abs=1e-5)
    assert not result.model.training
    info = result.model.info
    assert info["updates"] == result.state["update"] and info["validation_metrics"] == result.metrics
    assert info["data"]["n_train"] == 19 and info["target"]["classes"] == ["negative", "positive"]
    assert info["seeded_patterns"] and info["seeding_threshold"] >= MIN_T  # the t the seeded patterns beat
    assert all(p["t"] > info["seeding_threshold"] for p in info["seeded_patterns"])


def test_callbacks_are_called_for_every_update_and_evaluation(learned):
    _, result, updates, evaluations = learned
    assert [p.update for p in updates] == list(range(1, result.state["update"] + 1))
    assert all(p.max_updates == LEARN.max_updates for p in updates)
    assert all(math.isfinite(p.loss) and p.loss >= 0 for p in updates)
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in updates)
    elapsed = [p.elapsed_s for p in updates]
    assert elapsed == sorted(elapsed)
    assert [p.update for p in evaluations] == [h["update"] for h in result.history]
    assert [h["update"] for h in result.history] == [0] + list(range(25, result.state["update"] + 1, 25))
    assert evaluations[-1].best is not None and evaluations[-1].best["val_loss"] == min(
        h["val_loss"] for h in result.history
    )


def test_training_is_deterministic_for_a_seed(small):
    a = train(small, QUICK, QUICK_ARCH)
    b = train(small, QUICK, QUICK_ARCH)
    c = train(small, replace(QUICK, seed=1), QUICK_ARCH)
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), name
    assert a.history == [{**h, "elapsed_s": a.history[k]["elapsed_s"]} for k, h in enumerate(b.history)]
    assert not torch.equal(a.model.convs[0].weight, c.model.convs[0].weight)


# ----------------------------------------------------------------------------------------------------------
# Stopping


def test_should_stop_cancels_and_keeps_a_usable_model(small):
    seen = []
    result = train(
        small,
        replace(QUICK, max_updates=50),
        QUICK_ARCH,
        on_update=lambda p: seen.append(p.update),
        should_stop=lambda: len(seen) >= 2,
    )
    assert result.state["update"] == 2 and seen == [1, 2]
    assert result.state["stop_reason"] == "cancelled"
    assert result.history[-1]["update"] == 2  # the cut-short model was evaluated too
    assert 0 <= result.metrics["auc"] <= 1 or math.isnan(result.metrics["auc"])
    assert predict(result.model, [small.repertoire(0)])["probability"].between(0, 1).all()


def test_max_minutes_is_respected(small):
    result = train(small, replace(QUICK, max_updates=10_000, max_minutes=1e-9), QUICK_ARCH)
    assert result.state["stop_reason"] == "time budget"
    assert result.state["update"] <= 1
    assert len(result.history) == 1 and math.isfinite(result.metrics["loss"])  # the model is still evaluated


def test_early_stopping_restores_the_best_model(small):
    # no usable signal for this target and a large step: validation loss soon rises and stays up
    config = replace(
        QUICK,
        target="hla",
        positive=None,
        task="multiclass",
        max_updates=200,
        eval_every=2,
        patience=3,
        learning_rate=0.05,
    )
    result = train(small, config, QUICK_ARCH)
    assert result.state["stop_reason"] == "early stopping"
    assert result.state["update"] < 200
    losses = [h["val_loss"] for h in result.history]
    best = result.history[int(np.argmin(losses))]
    assert best["update"] < result.history[-1]["update"]  # the last model is not the best one
    assert result.metrics["best_update"] == best["update"]
    for key in ("loss", "auc", "balanced_accuracy", "f1"):
        assert result.metrics[key] == best[f"val_{key}"] or (
            math.isnan(result.metrics[key]) and math.isnan(best[f"val_{key}"])
        )
    again = _Trainer(small, config, QUICK_ARCH).evaluate(result.model, result.val_indices)
    assert again["loss"] == pytest.approx(best["val_loss"], abs=1e-5)
    assert again["loss"] < result.history[-1]["val_loss"]


# ----------------------------------------------------------------------------------------------------------
# Other targets, genes, cross-validation


def test_multiclass_target_trains_and_reports_classification_metrics(small):
    result = train(small, replace(QUICK, target="hla", positive=None), QUICK_ARCH)
    spec = result.model.config.target_spec()
    assert (spec.kind, spec.classes) == ("multiclass", ["A", "B", "C"])
    assert result.model.config.n_outputs == 3
    for key in ("auc", "balanced_accuracy", "f1"):
        assert 0 <= result.metrics[key] <= 1 or (key == "auc" and math.isnan(result.metrics[key]))
    table = predict(result.model, [small.repertoire(0), small.repertoire(1)])
    assert {"probability_A", "probability_B", "probability_C", "prediction"} <= set(table.columns)
    np.testing.assert_allclose(table[["probability_A", "probability_B", "probability_C"]].sum(axis=1), 1, atol=1e-5)


def test_regression_target_trains_and_reports_r2_and_mae(small):
    result = train(small, replace(QUICK, target="age", positive=None), QUICK_ARCH)
    spec = result.model.config.target_spec()
    ages = small.metadata["age"].astype(float)
    assert spec.kind == "regression"
    assert spec.mean == pytest.approx(ages.mean()) and spec.std == pytest.approx(ages.std(ddof=0))
    assert set(result.metrics) >= {"r2", "mae", "loss"} and "auc" not in result.metrics
    assert math.isfinite(result.metrics["r2"]) and result.metrics["mae"] >= 0
    value = predict(result.model, [small.repertoire(0)])["prediction"].iloc[0]
    assert ages.min() - 5 * spec.std < value < ages.max() + 5 * spec.std  # on the scale of ages, not standardised


def test_gene_embeddings_use_the_dataset_vocabulary(small):
    result = train(small, replace(QUICK, max_updates=2, use_genes=True), QUICK_ARCH)
    config = result.model.config
    assert sorted(config.v_genes) == ["TRBV20-1", "TRBV5-1", "TRBV7-9"]
    assert sorted(config.j_genes) == ["TRBJ1-1", "TRBJ2-7"]
    assert result.model.v_embedding is not None


def test_cross_validate_returns_k_folds_mean_and_sd(small):
    folds = []
    table = cross_validate(
        small, replace(QUICK, max_updates=2, eval_every=2), QUICK_ARCH, k=3, on_fold=lambda f, row: folds.append(f)
    )
    assert folds == [1, 2, 3]
    assert table["fold"].tolist() == [1, 2, 3, "mean", "sd"]
    assert {"loss", "auc", "balanced_accuracy", "f1"} <= set(table.columns)
    rows = table.iloc[:3]
    for column in ("loss", "balanced_accuracy"):
        assert table[column].iloc[3] == pytest.approx(rows[column].astype(float).mean())
        assert table[column].iloc[4] == pytest.approx(rows[column].astype(float).std(ddof=1))
    assert (rows["balanced_accuracy"].between(0, 1)).all()


def test_cross_validate_on_a_very_small_dataset(tmp_path):
    """8 repertoires, k=2: each fold trains on 4, too few to stratify the inner validation split. train()'s own
    split falls back to an unstratified one; cross-validation must too (or say why in a DeepRCError)."""
    ds = open_dataset(write_dataset(tmp_path / "eight", n_repertoires=8, n_sequences=10, seed=4))
    try:
        table = cross_validate(ds, replace(QUICK, max_updates=1, eval_every=1), QUICK_ARCH, k=2)
        assert table["fold"].tolist() == [1, 2, "mean", "sd"]
    finally:
        ds.close()


# ----------------------------------------------------------------------------------------------------------
# Targets, metrics and settings


META = pd.DataFrame(
    {
        "repertoire": [f"r{i}" for i in range(12)],
        "disease": ["healthy", "CMV+"] * 6,
        "hla": ["A", "B", "C"] * 4,
        "age": [str(20 + i) for i in range(12)],
        "blank": ["x"] * 11 + [""],
    }
)


def test_infer_target_kinds():
    assert infer_target(META, "disease") == TargetSpec("disease", "binary", ["CMV+", "healthy"])
    assert infer_target(META, "disease", positive="CMV+") == TargetSpec("disease", "binary", ["healthy", "CMV+"])
    assert infer_target(META, "hla") == TargetSpec("hla", "multiclass", ["A", "B", "C"])
    assert infer_target(META, "hla", positive="B").classes == ["not B", "B"]
    age = infer_target(META, "age")
    assert age.kind == "regression" and age.mean == pytest.approx(25.5)
    assert infer_target(META, "age", task="multiclass").kind == "multiclass"


@pytest.mark.parametrize(
    ("column", "positive", "task", "match"),
    [
        ("diagnosis", None, "auto", r"no column 'diagnosis'.*disease, hla, age"),
        ("disease", "sick", "auto", r"'sick' does not occur.*CMV\+, healthy"),
        ("hla", None, "binary", "name the positive one"),
        ("blank", None, "auto", "empty for some repertoires"),
        ("disease", None, "regression", "not numeric"),
        ("disease", None, "survival", "Unknown task"),
    ],
)
def test_infer_target_errors(column, positive, task, match):
    with pytest.raises(DeepRCError, match=match):
        infer_target(META, column, positive, task)


def test_infer_target_refuses_a_single_class():
    with pytest.raises(DeepRCError, match="only one value"):
        infer_target(pd.DataFrame({"d": ["x", "x", "x"]}), "d", task="multiclass")


def test_metrics_for():
    binary = TargetSpec("d", "binary", ["n", "p"])
    y = np.array([0, 0, 1, 1])
    assert metrics_for(binary, y, np.array([0.1, 0.2, 0.8, 0.9])) == {"auc": 1.0, "balanced_accuracy": 1.0, "f1": 1.0}
    flipped = metrics_for(binary, y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert flipped["auc"] == 0.0 and flipped["f1"] == 0.0
    assert math.isnan(metrics_for(binary, np.array([1, 1]), np.array([0.2, 0.7]))["auc"])
    multi = TargetSpec("h", "multiclass", ["A", "B", "C"])
    probs = np.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.2 / 3
    assert metrics_for(multi, np.array([0, 1, 2, 0]), probs) == {"auc": 1.0, "balanced_accuracy": 1.0, "f1": 1.0}
    reg = TargetSpec("a", "regression")
    assert metrics_for(reg, np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == {"r2": 1.0, "mae": 0.0}
    assert metrics_for(reg, np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))["mae"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"n_sequences": 0}, "n_sequences"),
        ({"top_fraction": 0.0}, "top_fraction"),
        ({"top_fraction": 1.5}, "top_fraction"),
        ({"device": "tpu"}, "Unknown device"),
    ],
)
def test_bad_training_settings_are_refused(small, change, match):
    with pytest.raises(DeepRCError, match=match):
        train(small, replace(QUICK, **change), QUICK_ARCH)


def test_too_few_repertoires_are_refused(tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "three", n_repertoires=3, n_sequences=10))
    try:
        with pytest.raises(DeepRCError, match="at least 4 repertoires"):
            train(ds, QUICK, QUICK_ARCH)
    finally:
        ds.close()
