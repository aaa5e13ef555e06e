"""Tests of the DeepRC network (fast vs dense embedding, invariances, heads, genes, LSTM, configuration)
and of whole-repertoire scoring (prediction table, attention table)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import random_junctions

from deeprc_core.errors import DeepRCError
from deeprc_core.io import ReadReport, Repertoire, encode_sequences
from deeprc_core.model import (
    N_FEATURES,
    DeepRC,
    DeepRCConfig,
    TargetSpec,
    outputs_to_probabilities,
    position_features,
    resolve_device,
)
from deeprc_core.scoring import attention_order, attention_table, predict, score_repertoire

V_GENES = ["TRBV5-1", "TRBV20-1", "TRBV7-9"]
J_GENES = ["TRBJ2-7", "TRBJ1-1"]


def _tiny(**overrides) -> DeepRC:
    torch.manual_seed(overrides.pop("seed", 0))
    return DeepRC(DeepRCConfig(**{"n_kernels": 8, "kernel_size": 5, **overrides})).eval()


def _sequences(n: int, seed: int, low: int = 4, high: int = 20) -> list[str]:
    return random_junctions(np.random.default_rng(seed), n, low, high)


def _repertoire(seqs: list[str], seed: int = 0, name: str = "rep") -> Repertoire:
    rng = np.random.default_rng(seed)
    codes, lengths = encode_sequences(seqs)
    n = len(seqs)
    return Repertoire(
        name=name,
        sequences=np.asarray(seqs, dtype=object),
        codes=codes,
        lengths=lengths,
        counts=rng.integers(1, 50, n).astype(np.float64),
        v_call=rng.choice(V_GENES + [""], n).astype(object),
        j_call=rng.choice(J_GENES, n).astype(object),
        report=ReadReport(source=name),
    )


def _inputs(model: DeepRC, reps: list[Repertoire]) -> dict:
    """Concatenated forward() inputs for several repertoires (one bag each)."""
    width = max(r.codes.shape[1] for r in reps)
    codes = np.concatenate([np.pad(r.codes, ((0, 0), (0, width - r.codes.shape[1])), constant_values=20) for r in reps])
    lengths = torch.as_tensor(np.concatenate([r.lengths for r in reps]))
    codes_t = torch.as_tensor(codes)
    v_index, j_index = model.gene_indices(
        np.concatenate([r.v_call for r in reps]), np.concatenate([r.j_call for r in reps])
    )
    return {
        "features": model.features(codes_t, lengths),
        "lengths": lengths,
        "bag": torch.as_tensor(np.repeat(np.arange(len(reps)), [len(r) for r in reps])),
        "n_bags": len(reps),
        "v_index": v_index,
        "j_index": j_index,
        "counts": torch.as_tensor(np.concatenate([r.counts for r in reps]), dtype=torch.float32),
    }


def _outputs(model: DeepRC, reps: list[Repertoire]) -> torch.Tensor:
    with torch.no_grad():
        return model(**_inputs(model, reps))


# ----------------------------------------------------------------------------------------------------------
# Embedding: the fast lookup path agrees with the dense reference


@pytest.mark.parametrize(("kernel_size", "n_layers"), [(1, 1), (5, 1), (9, 1), (1, 2), (5, 2), (9, 2)])
def test_fast_embed_matches_dense_reference(kernel_size, n_layers):
    model = _tiny(kernel_size=kernel_size, n_layers=n_layers, seed=kernel_size + n_layers)
    seqs = ["A", "W", "CF", "CAF", "CASF"] + _sequences(60, seed=1, low=5, high=40) + ["C" + "Y" * 38 + "F"]
    codes, lengths = encode_sequences(seqs)
    with torch.no_grad():
        fast = model.embed(codes, lengths)
        dense = model.embed_dense(torch.as_tensor(codes), torch.as_tensor(lengths))
    assert fast.shape == dense.shape == (len(seqs), 8)
    torch.testing.assert_close(fast, dense, atol=1e-4, rtol=0)
    # the embedding really depends on the sequence (not a constant)
    assert dense.std(dim=0).min() > 1e-3


def test_fast_embed_in_small_chunks_matches_one_chunk():
    model = _tiny(kernel_size=9)
    codes, lengths = encode_sequences(_sequences(50, seed=2))
    with torch.no_grad():
        torch.testing.assert_close(
            model.embed(codes, lengths, chunk_positions=17), model.embed(codes, lengths), atol=1e-6, rtol=0
        )


def test_embedding_of_a_sequence_does_not_depend_on_padding_width():
    model = _tiny(kernel_size=9)
    codes, lengths = encode_sequences(["CASSLGQF"])
    wide = np.pad(codes, ((0, 0), (0, 20)), constant_values=20)
    with torch.no_grad():
        a = model.embed_dense(torch.as_tensor(codes), torch.as_tensor(lengths))
        b = model.embed_dense(torch.as_tensor(wide), torch.as_tensor(lengths))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_sequences_longer_than_the_model_are_refused():
    model = _tiny(max_length=10)
    codes, lengths = encode_sequences(["C" * 11], max_length=40)
    with pytest.raises(DeepRCError, match="maximum of 10"):
        model.embed(codes, lengths)
    with pytest.raises(DeepRCError, match="maximum of 10"):
        model.features(torch.as_tensor(codes), torch.as_tensor(lengths))


def test_features_are_one_hot_plus_position_and_zero_beyond_the_end():
    model = _tiny()
    codes, lengths = encode_sequences(["CASSF", "CA"])
    feats = model.features(torch.as_tensor(codes), torch.as_tensor(lengths))
    assert feats.shape == (2, 5, N_FEATURES)
    assert feats[0, :, :20].sum(dim=1).tolist() == [1, 1, 1, 1, 1]
    assert feats[1, 2:].abs().sum() == 0  # beyond the end of "CA"
    assert feats[0, 0, 1] == 1  # 'C' is the second letter of the alphabet
    table = position_features(40)
    assert table.min() >= 0 and table.max() <= 1
    centre = table[9, :9, 2]
    assert centre.argmax() == 4 and centre[0] == centre[8] == 0


def test_dense_embedding_is_differentiable_in_its_input():
    """The seam integrated gradients use: gradients reach the float features."""
    model = _tiny()
    codes, lengths = encode_sequences(_sequences(5, seed=3))
    feats = model.features(torch.as_tensor(codes), torch.as_tensor(lengths)).requires_grad_(True)
    model.embed_features(feats, torch.as_tensor(lengths)).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------
# Invariances of a repertoire's score


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_heads": 3},
        {"v_genes": V_GENES, "j_genes": J_GENES, "use_counts": True},
        {"embedding": "lstm", "lstm_units": 6},
    ],
    ids=["plain", "3-heads", "genes+counts", "lstm"],
)
def test_score_is_the_same_alone_or_batched_with_other_repertoires(overrides):
    model = _tiny(**overrides)
    reps = [_repertoire(_sequences(n, seed=s, high=25), seed=s) for s, n in [(10, 40), (11, 15), (12, 70)]]
    reps.append(_repertoire(["C" + "W" * 30 + "F"] * 1 + _sequences(5, seed=13), seed=13))  # longer padding
    batched = _outputs(model, reps)
    assert batched.shape == (4, 1)
    for i, rep in enumerate(reps):
        torch.testing.assert_close(_outputs(model, [rep])[0], batched[i], atol=1e-5, rtol=0)
    # and the repertoires really score differently
    assert batched.std() > 1e-4


@pytest.mark.parametrize(
    "overrides", [{}, {"n_heads": 2, "v_genes": V_GENES, "use_counts": True}], ids=["plain", "heads+genes+counts"]
)
def test_score_does_not_depend_on_the_order_of_sequences(overrides):
    model = _tiny(**overrides)
    rep = _repertoire(_sequences(80, seed=20), seed=20)
    perm = np.random.default_rng(21).permutation(len(rep))
    shuffled = Repertoire(
        rep.name,
        rep.sequences[perm],
        rep.codes[perm],
        rep.lengths[perm],
        rep.counts[perm],
        rep.v_call[perm],
        rep.j_call[perm],
        rep.report,
    )
    torch.testing.assert_close(_outputs(model, [shuffled]), _outputs(model, [rep]), atol=1e-5, rtol=0)
    a, b = score_repertoire(model, rep), score_repertoire(model, shuffled)
    np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-5)
    np.testing.assert_allclose(a.attention[perm], b.attention, atol=1e-6)


def test_scoring_path_agrees_with_the_differentiable_forward():
    model = _tiny(kernel_size=9, n_heads=2, v_genes=V_GENES, j_genes=J_GENES, use_counts=True)
    rep = _repertoire(_sequences(120, seed=30), seed=30)
    score = score_repertoire(model, rep)
    np.testing.assert_allclose(score.outputs, _outputs(model, [rep])[0].numpy(), atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# Heads, genes, counts, LSTM


def test_multi_head_shapes_and_softmax_per_repertoire_and_head():
    model = _tiny(n_heads=3)
    reps = [_repertoire(_sequences(n, seed=n), seed=n) for n in (7, 12)]
    inputs = _inputs(model, reps)
    with torch.no_grad():
        z = model.represent(model.embed_features(inputs["features"], inputs["lengths"]))
        logits = model.attention_logits(z)
        weights = model.attention_weights(logits, inputs["bag"], 2)
        pooled = model.pool(z, weights, inputs["bag"], 2)
    assert z.shape == (19, 8) and logits.shape == (19, 3) and weights.shape == (19, 3)
    assert pooled.shape == (2, 3 * 8)
    sums = torch.zeros(2, 3).index_add(0, inputs["bag"], weights)
    torch.testing.assert_close(sums, torch.ones(2, 3))
    assert (weights > 0).all()
    score = score_repertoire(model, reps[0])
    assert score.attention.shape == score.attention_logits.shape == (7, 3)
    np.testing.assert_allclose(score.attention.sum(axis=0), np.ones(3), atol=1e-6)
    # the heads are different functions
    assert not np.allclose(score.attention_logits[:, 0], score.attention_logits[:, 1])


def test_gene_embeddings_change_the_output_when_genes_differ():
    model = _tiny(v_genes=V_GENES, j_genes=J_GENES)
    rep = _repertoire(_sequences(30, seed=40), seed=40)
    other = Repertoire(
        rep.name, rep.sequences, rep.codes, rep.lengths, rep.counts,
        np.full(len(rep), "TRBV7-9", object), np.full(len(rep), "TRBJ1-1", object), rep.report,
    )  # fmt: skip
    assert not torch.allclose(_outputs(model, [rep]), _outputs(model, [other]), atol=1e-5)
    v, j = model.gene_indices(np.array(["TRBV5-1", "TRBV7-9", "", "TRBV99"], object), np.array(["TRBJ1-1"] * 4, object))
    assert v.tolist() == [1, 3, 0, 0]  # unknown genes -> 0
    assert j.tolist() == [2, 2, 2, 2]
    # a model without genes ignores them
    plain = _tiny()
    assert plain.gene_indices(rep.v_call, rep.j_call) == (None, None)
    torch.testing.assert_close(_outputs(plain, [rep]), _outputs(plain, [other]))


def test_counts_change_the_output_only_when_used():
    rep = _repertoire(_sequences(30, seed=50), seed=50)
    more = Repertoire(
        rep.name, rep.sequences, rep.codes, rep.lengths, rep.counts * 100, rep.v_call, rep.j_call, rep.report
    )
    with_counts, without = _tiny(use_counts=True), _tiny()
    assert with_counts.config.sequence_size == 9 and without.config.sequence_size == 8
    assert not torch.allclose(_outputs(with_counts, [rep]), _outputs(with_counts, [more]), atol=1e-5)
    torch.testing.assert_close(_outputs(without, [rep]), _outputs(without, [more]))


def test_lstm_embedding_works_and_learns():
    model = _tiny(embedding="lstm", lstm_units=6)
    assert not hasattr(model, "convs")
    rep = _repertoire(_sequences(20, seed=60), seed=60)
    emb = model.embed(rep.codes, rep.lengths)
    assert emb.shape == (20, 6) and torch.isfinite(emb).all()
    model.train()
    inputs = _inputs(model, [rep])
    model(**inputs).sum().backward()
    assert model.lstm.weight_ih_l0.grad.abs().sum() > 0
    # a sequence's LSTM embedding ignores the padding added by longer batch-mates
    with torch.no_grad():
        alone = model.embed(*encode_sequences(["CASSF"]))
        batched = model.embed(*encode_sequences(["CASSF", "C" + "A" * 30 + "F"]))[:1]
    torch.testing.assert_close(alone, batched, atol=1e-6, rtol=0)


def test_two_models_do_not_share_submodules():
    """Sub-networks are built per model, never shared defaults (a bug of the original DeepRC)."""
    config = DeepRCConfig(n_kernels=8, kernel_size=5)
    a, b = DeepRC(config), DeepRC(config)
    with torch.no_grad():
        a.convs[0].weight.zero_()
        a.attention[0].weight.zero_()
    assert b.convs[0].weight.abs().sum() > 0 and b.attention[0].weight.abs().sum() > 0


def test_gradients_reach_every_parameter():
    model = _tiny(n_layers=2, n_heads=2, v_genes=V_GENES, j_genes=J_GENES, use_counts=True, output_layers=2).train()
    model(**_inputs(model, [_repertoire(_sequences(25, seed=70), seed=70)])).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


# ----------------------------------------------------------------------------------------------------------
# Configuration and outputs


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"kernel_size": 0}, "odd"),
        ({"kernel_size": -3}, "odd"),
        ({"embedding": "gru"}, "cnn"),
        ({"n_kernels": 0}, "n_kernels"),
        ({"n_heads": 0}, "n_heads"),
        ({"n_layers": 0}, "n_layers"),
        ({"attention_layers": 0}, "attention_layers"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": 201}, "max_length"),
        ({"targets": []}, "at least one target"),
        (
            {"targets": [asdict(TargetSpec("a", "binary", ["x", "y"])), asdict(TargetSpec("b", "regression"))]},
            "one target",
        ),
        ({"targets": [asdict(TargetSpec("d", "binary", ["a", "b", "c"]))]}, "exactly two"),
        ({"targets": [asdict(TargetSpec("d", "multiclass", ["a"]))]}, "at least two"),
        ({"targets": [asdict(TargetSpec("d", "ordinal", ["a", "b"]))]}, "ordinal"),
    ],
)
def test_invalid_configurations_are_refused(overrides, match):
    with pytest.raises(DeepRCError, match=match):
        DeepRCConfig(**overrides)


def test_config_sizes():
    config = DeepRCConfig(n_kernels=8, v_genes=V_GENES, j_genes=J_GENES, use_counts=True, gene_embedding_dim=3)
    assert config.embedding_size == 8 and config.sequence_size == 8 + 3 + 3 + 1
    assert DeepRCConfig(embedding="lstm", lstm_units=5).embedding_size == 5
    multi = DeepRCConfig(targets=[asdict(TargetSpec("a", "multiclass", ["w", "x", "y", "z"]))])
    assert multi.n_outputs == 4 and multi.target_spec().name == "a"
    assert DeepRC(multi)(**_inputs(DeepRC(multi), [_repertoire(_sequences(5, seed=1))])).shape == (1, 4)


def test_outputs_to_probabilities():
    def config(spec: TargetSpec) -> DeepRCConfig:
        return DeepRCConfig(targets=[asdict(spec)])

    binary = outputs_to_probabilities(
        torch.tensor([[-30.0], [30.0], [0.0]]), config(TargetSpec("disease", "binary", ["neg", "pos"]))
    )
    assert ((binary >= 0) & (binary <= 1)).all()
    np.testing.assert_allclose(binary, [0.0, 1.0, 0.5], atol=1e-6)
    hla = outputs_to_probabilities(
        torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-5.0, 5.0, 0.0]]),
        config(TargetSpec("hla", "multiclass", ["A", "B", "C"])),
    )
    assert hla.shape == (3, 3)
    np.testing.assert_allclose(hla.sum(axis=1), 1, atol=1e-6)
    assert hla[0].argmax() == 2 and hla[2].argmax() == 1
    age = outputs_to_probabilities(
        torch.tensor([[0.5], [-1.0], [0.0]]), config(TargetSpec("age", "regression", [], mean=40.0, std=10.0))
    )
    np.testing.assert_allclose(age, [45.0, 30.0, 40.0], atol=1e-5)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeepRCError, match="Unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeepRCError, match="no GPU"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------------------------------------
# Scoring whole repertoires


def test_predict_table_for_a_single_binary_target():
    model = _tiny(targets=[asdict(TargetSpec("disease", "binary", ["healthy", "sick"]))])
    reps = [_repertoire(_sequences(n, seed=n), seed=n, name=f"donor{n}") for n in (10, 25, 40)]
    table = predict(model, reps)
    assert list(table.columns) == ["repertoire", "n_sequences", "probability", "prediction"]
    assert table["repertoire"].tolist() == ["donor10", "donor25", "donor40"]
    assert table["n_sequences"].tolist() == [10, 25, 40]
    assert table["probability"].between(0, 1).all()
    expected = np.where(table["probability"] >= 0.5, "sick", "healthy")
    assert table["prediction"].tolist() == expected.tolist()
    for rep, p in zip(reps, table["probability"]):
        assert p == pytest.approx(float(torch.sigmoid(_outputs(model, [rep])[0, 0])), abs=1e-4)


def test_predict_table_for_multiclass_and_regression():
    model = _tiny(targets=[asdict(TargetSpec("hla", "multiclass", ["A", "B", "C"]))])
    table = predict(model, [_repertoire(_sequences(12, seed=1))])
    assert list(table.columns) == [
        "repertoire",
        "n_sequences",
        "probability_A",
        "probability_B",
        "probability_C",
        "prediction",
    ]
    probs = table[["probability_A", "probability_B", "probability_C"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert table["prediction"].iloc[0] == "ABC"[probs[0].argmax()]
    model = _tiny(targets=[asdict(TargetSpec("age", "regression", [], mean=50.0, std=5.0))])
    table = predict(model, [_repertoire(_sequences(12, seed=1))])
    assert list(table.columns) == ["repertoire", "n_sequences", "prediction"]
    assert np.isfinite(table["prediction"]).all()


@pytest.mark.parametrize("n_heads", [1, 2])
def test_attention_table(n_heads):
    model = _tiny(n_heads=n_heads)
    rep = _repertoire(_sequences(50, seed=80), seed=80)
    table = attention_table(model, rep)
    base = ["sequence", "count", "v_call", "j_call", "attention", "attention_logit"]
    extra = (
        [c for h in range(1, n_heads + 1) for c in (f"attention_h{h}", f"attention_logit_h{h}")] if n_heads > 1 else []
    )
    assert list(table.columns) == base + extra + ["rank"]
    assert len(table) == len(rep)
    assert sorted(table["sequence"]) == sorted(rep.sequences)
    assert table["attention"].sum() == pytest.approx(1.0, abs=1e-5)
    assert table["rank"].tolist() == list(range(1, len(rep) + 1))
    order = attention_order(score_repertoire(model, rep))
    assert (np.asarray(rep.sequences)[order] == table["sequence"].to_numpy()).all()
    assert table["attention"].iloc[0] == table["attention"].max()
    assert table["attention"].is_monotonic_decreasing and table["attention_logit"].is_monotonic_decreasing
    # each row keeps its own count and genes
    by_seq = {(s, v, j): c for s, v, j, c in zip(rep.sequences, rep.v_call, rep.j_call, rep.counts)}
    assert all(
        by_seq[(s, v, j)] == c
        for s, v, j, c in table[["sequence", "v_call", "j_call", "count"]].itertuples(index=False)
    )
    if n_heads > 1:
        for h in (1, 2):
            assert table[f"attention_h{h}"].sum() == pytest.approx(1.0, abs=1e-5)
        # one ranking over all heads: each sequence's share of the attention, the mean of the heads' weights
        heads = table[[f"attention_h{h}" for h in range(1, n_heads + 1)]].to_numpy()
        np.testing.assert_allclose(table["attention"], heads.mean(axis=1), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(np.exp(table["attention_logit"]), table["attention"], rtol=1e-6)
