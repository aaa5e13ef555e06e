"""The k-mer and V/J-usage reference classifiers: features, separation of planted data, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MOTIF, make_repertoire, planted_repertoires
from sklearn.metrics import roc_auc_score

from deeprc_core.baseline import (
    KmerLogisticRegression,
    VJUsageLogisticRegression,
    baseline_auc,
    kmer_frequencies,
    kmer_names,
)
from deeprc_core.dataset import open_dataset
from deeprc_core.errors import DeepRCError


def _labels(repertoires) -> np.ndarray:
    return np.array(["positive" if int(r.name[3:]) % 2 else "negative" for r in repertoires])  # odd = planted


def test_kmer_frequencies_count_windows_inside_each_junction():
    rep = make_repertoire("r", ["CASSF", "CAS"])  # 3 + 1 three-mers; the padding after "CAS" makes none
    freq = kmer_frequencies(rep.codes, rep.lengths, 3)
    names = kmer_names(3)
    assert freq.shape == (8000,) and len(names) == 8000
    assert dict(zip(names[freq > 0], freq[freq > 0])) == {"CAS": 0.5, "ASS": 0.25, "SSF": 0.25}
    assert not kmer_frequencies(rep.codes, rep.lengths, 6).any()  # no junction is 6 long


def _string_kmer_frequencies(sequences: list[str], k: int) -> dict[str, float]:
    """k-mer frequencies counted on the strings themselves: the reference the encoded counting must match."""
    counts: dict[str, int] = {}
    for seq in sequences:
        for start in range(len(seq) - k + 1):
            counts[seq[start : start + k]] = counts.get(seq[start : start + k], 0) + 1
    total = sum(counts.values())
    return {kmer: n / total for kmer, n in counts.items()}


def test_kmer_feature_matrix_matches_string_counts():
    repertoires = [make_repertoire("a", ["CASSLF", "CAS"]), make_repertoire("b", ["CWQHF", "GG"])]
    model = KmerLogisticRegression(k=(3, 4))
    X = model._features(repertoires)
    names = model.get_feature_names_out()
    assert X.shape == (2, 8000 + 160000) and names[0] == "AAA" and names[1] == "AAC" and names[8000] == "AAAA"
    for row, rep in zip(X, repertoires):
        expected = {
            **_string_kmer_frequencies(list(rep.sequences), 3),
            **_string_kmer_frequencies(list(rep.sequences), 4),
        }
        assert dict(zip(names[row > 0], row[row > 0])) == pytest.approx(expected)
    third = pytest.approx(1 / 3)
    assert dict(zip(names[X[1] > 0], X[1][X[1] > 0])) == {
        "CWQ": third,
        "WQH": third,
        "QHF": third,
        "CWQH": 0.5,
        "WQHF": 0.5,
    }


def test_kmer_baseline_separates_planted_positives_on_new_repertoires():
    train, _ = planted_repertoires(30, 200, rate=0.05, seed=1)
    test, _ = planted_repertoires(20, 200, rate=0.05, seed=2)
    model = KmerLogisticRegression().fit(train, _labels(train))
    assert model.classes_.tolist() == ["negative", "positive"]
    proba = model.predict_proba(test)
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1) and ((proba >= 0) & (proba <= 1)).all()
    assert roc_auc_score(_labels(test) == "positive", proba[:, 1]) > 0.9
    assert model.C_ in model.cv_scores_
    top_kmer, weight = model.top_features(1)[0]
    assert top_kmer in MOTIF and weight > 0  # a piece of the planted motif, pointing to the positive class
    assert (model.coef_ == 0).mean() > 0.9  # L1 keeps few of the 168,000 k-mers


def test_kmer_baseline_is_deterministic():
    train, _ = planted_repertoires(16, 100, rate=0.05, seed=3)
    test, _ = planted_repertoires(6, 100, rate=0.05, seed=4)
    first = KmerLogisticRegression(k=(3,)).fit(train, _labels(train))
    second = KmerLogisticRegression(k=(3,)).fit(iter(train), _labels(train))  # any iterable of repertoires
    assert first.C_ == second.C_ and first.cv_scores_ == second.cv_scores_
    np.testing.assert_array_equal(first.predict_proba(test), second.predict_proba(test))


def _gene_repertoire(name: str, rng: np.random.Generator, skewed: bool):
    """200 junctions whose V genes are uniform, or (``skewed``) twice as often TRBV5-1."""
    rep = make_repertoire(name, [f"CASS{'G' * (i % 7)}F" for i in range(200)])  # the junctions do not matter here
    v_genes = np.array(["TRBV5-1", "TRBV20-1", "TRBV7-9", "TRBV28"], dtype=object)
    rep.v_call = rng.choice(v_genes, len(rep), p=[0.4, 0.2, 0.2, 0.2] if skewed else [0.25] * 4)
    rep.j_call = rng.choice(np.array(["TRBJ2-7", "TRBJ1-1"], dtype=object), len(rep))
    return rep


def test_vj_usage_baseline_learns_a_gene_shift_and_ignores_unseen_genes():
    rng = np.random.default_rng(0)
    train = [_gene_repertoire(f"rep{i}", rng, i % 2 == 1) for i in range(30)]
    test = [_gene_repertoire(f"rep{i}", rng, i % 2 == 1) for i in range(20)]
    test[0].v_call[:5] = "TRBV30"  # a gene no training repertoire has
    model = VJUsageLogisticRegression().fit(train, _labels(train))
    assert model.v_genes_.tolist() == ["TRBV20-1", "TRBV28", "TRBV5-1", "TRBV7-9"]
    assert model.get_feature_names_out().tolist()[-2:] == ["TRBJ1-1", "TRBJ2-7"]
    assert roc_auc_score(_labels(test) == "positive", model.predict_proba(test)[:, 1]) > 0.9
    assert model.top_features(1)[0][0] == "TRBV5-1"


def test_baseline_auc_on_a_dataset_split(tiny_dataset):
    dataset = open_dataset(tiny_dataset)
    try:
        train, val = np.arange(0, 16), np.arange(16, 24)
        auc = baseline_auc(dataset, train, val, target="disease", positive="positive", k=(3, 4))
        assert auc > 0.9
        assert baseline_auc(dataset, train, val, target="disease", positive="positive") == auc  # deterministic
        with pytest.raises(DeepRCError, match="Unknown baseline"):
            baseline_auc(dataset, train, val, kind="cnn")
    finally:
        dataset.close()


def test_errors_a_biologist_can_act_on():
    reps, _ = planted_repertoires(4, 20)
    with pytest.raises(DeepRCError, match="not fitted"):
        KmerLogisticRegression().predict_proba(reps)
    with pytest.raises(DeepRCError, match="same label"):
        KmerLogisticRegression().fit(reps, ["a"] * 4)
    with pytest.raises(DeepRCError, match="one label per repertoire"):
        KmerLogisticRegression().fit(reps, ["a", "b", "a"])
