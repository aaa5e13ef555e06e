"""Integrated-gradient residue attributions on a tiny DeepRC trained on planted repertoires."""

from __future__ import annotations

import argparse
import contextlib
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_repertoire as _repertoire
from conftest import planted_repertoires
from test_motifs import detector

from deeprc_core.attribution import EXPLAIN, attribute_sequences, attribution_matrix, resolve_output
from deeprc_core.checkpoint import save_model
from deeprc_core.cli_interpret import add_cli
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.recovery import motif_mass, motif_residue_mask, witness_motif_mass
from deeprc_core.scoring import attention_table, score_repertoire

MOTIF = "SLGQ"


def planted(n_repertoires: int = 16, n_sequences: int = 100, rate: float = 0.05, seed: int = 0):
    """Junctions CASS + random + F (12-16 residues); odd repertoires carry MOTIF in ``rate`` of them."""
    return planted_repertoires(n_repertoires, n_sequences, rate, seed, MOTIF)


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@functools.lru_cache(maxsize=1)
def trained():
    """A tiny one-head CNN DeepRC trained for 60 full-batch Adam steps on the planted repertoires (a second or two)."""
    repertoires, truth = planted()
    torch.manual_seed(0)
    model = DeepRC(DeepRCConfig(n_kernels=8, kernel_size=5, attention_units=8, n_heads=1, max_length=20))
    width = max(r.codes.shape[1] for r in repertoires)
    codes = torch.cat(
        [
            torch.nn.functional.pad(torch.as_tensor(r.codes.astype(np.int64)), (0, width - r.codes.shape[1]), value=20)
            for r in repertoires
        ]
    )
    lengths = torch.cat([torch.as_tensor(r.lengths.astype(np.int64)) for r in repertoires])
    bag = torch.cat([torch.full((len(r),), i) for i, r in enumerate(repertoires)])
    labels = torch.tensor([i % 2 for i in range(len(repertoires))], dtype=torch.float32)
    features = model.features(codes, lengths)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with _threads(1):
        for _ in range(60):
            out = model(features, lengths, bag, len(repertoires))[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), repertoires, truth


def test_trained_model_separates_the_classes():
    model, repertoires, _ = trained()
    outputs = np.array([score_repertoire(model, r).outputs[0] for r in repertoires])
    assert (outputs[1::2] > 0).all() and (outputs[0::2] < 0).all()


def _witness_scores(model, repertoires, truth, **kwargs) -> tuple[list[dict], list[dict]]:
    """Per positive repertoire: per-witness and pooled motif masses of the attributed sequences."""
    per_witness, pooled = [], []
    for rep in repertoires[1::2]:
        result = attribute_sequences(model, rep, **kwargs)
        mask = motif_residue_mask(result.sequences, result.attributions.shape[1], truth=truth, repertoire=rep.name)
        per_witness.append(witness_motif_mass(result, mask))
        pooled.append(motif_mass(result, mask))
    return per_witness, pooled


def test_every_attributed_witness_points_at_its_motif():
    """The default target (each sequence's attention logit): every witness among the top 10, not only the
    most attended one, puts most of its positive attribution on its 4 motif residues."""
    model, repertoires, truth = trained()
    scores, _ = _witness_scores(model, repertoires, truth, top=10, n_steps=50)
    n = np.array([s["n_witnesses_attributed"] for s in scores])
    mass = np.array([s["witness_motif_mass"] for s in scores])
    chance = np.array([s["witness_chance"] for s in scores])
    assert n.sum() >= 20  # the measure covers many witnesses, not one per repertoire
    overall = float((mass * n).sum() / n.sum())
    assert overall >= 0.7, mass
    assert overall > 2.5 * float((chance * n).sum() / n.sum()), (mass, chance)
    assert np.nanmean([s["residue_auroc"] for s in scores]) > 0.85


def test_fixed_context_target_credits_mostly_the_top_witness():
    """What the issue found: swapping one witness at a time into a fixed repertoire credits the most attended
    witness (pooled mass high) while the other witnesses' motif residues get little (per-witness mass low)."""
    model, repertoires, truth = trained()
    per_witness, pooled = _witness_scores(model, repertoires, truth, top=10, n_steps=50, explain="contribution")
    assert np.mean([p["motif_mass"] for p in pooled]) > 0.6, pooled
    default, _ = _witness_scores(model, repertoires, truth, top=10, n_steps=50)
    contribution = np.mean([s["witness_motif_mass"] for s in per_witness])
    assert contribution < np.mean([s["witness_motif_mass"] for s in default]) - 0.2, (per_witness, default)


@pytest.mark.parametrize("explain", EXPLAIN)
def test_completeness_holds_with_enough_steps(explain: str):
    model, repertoires, _ = trained()
    rep = repertoires[1]
    result = attribute_sequences(model, rep, top=3, n_steps=300, explain=explain)
    assert result.explain == explain
    total = result.sequence_totals()
    if explain == "repertoire":  # one path for the bag: completeness holds for the sum over its sequences
        total = np.full(len(result), total.sum())
    np.testing.assert_allclose(total - (result.outputs - result.baseline_outputs), result.deltas, atol=1e-5)
    assert (result.relative_deltas() < 3e-3).all(), result.relative_deltas()  # kinks: max over positions, SELU
    coarse = attribute_sequences(model, rep, top=3, n_steps=50, explain=explain)
    assert (coarse.relative_deltas() < 3e-2).all(), coarse.relative_deltas()


def test_each_target_explains_what_it_says():
    model, repertoires, _ = trained()
    rep = repertoires[3]
    score = score_repertoire(model, rep)
    attention = attribute_sequences(model, rep, top=7, n_steps=8)  # default: the attention logit
    order = np.argsort(-score.attention_logits[:, 0], kind="stable")[:7]
    np.testing.assert_allclose(attention.outputs, score.attention_logits[order, 0], atol=1e-4)
    assert attention.explain == "attention" and attention.output_index is None and attention.head == 0
    bag = attribute_sequences(model, rep, top=7, n_steps=8, explain="repertoire")
    np.testing.assert_allclose(bag.outputs, score.outputs[0], atol=1e-4)
    assert len(set(bag.baseline_outputs)) == 1 and len(set(bag.deltas)) == 1  # one value for the whole bag
    everything = attribute_sequences(model, rep, top=len(rep), n_steps=8, explain="repertoire")
    assert len(everything) == len(rep) and np.isfinite(everything.baseline_outputs).all()  # no rest left
    with pytest.raises(DeepRCError, match="once"):
        attribute_sequences(model, rep, [1, 1], explain="repertoire")
    with pytest.raises(DeepRCError, match="attribution target"):
        attribute_sequences(model, rep, explain="output")


def test_attributed_output_is_the_repertoire_output_and_shapes_follow_the_input():
    model, repertoires, _ = trained()
    rep = repertoires[3]
    score = score_repertoire(model, rep)
    result = attribute_sequences(model, rep, top=7, n_steps=8, explain="contribution")
    np.testing.assert_allclose(result.outputs, score.outputs[0], atol=1e-3)
    width = int(result.lengths.max())
    assert result.attributions.shape == (7, width, 20)
    assert result.position_attributions.shape == (7, width, 3)
    assert result.deltas.shape == (7,)
    assert list(result.ranks) == list(range(1, 8))
    order = np.argsort(-score.attention_logits[:, 0], kind="stable")[:7]
    assert list(result.indices) == list(order)
    # The zero baseline leaves only the observed residue's channel, and nothing beyond a sequence's end.
    for s, seq in enumerate(result.sequences):
        observed = np.zeros((width, 20), dtype=bool)
        observed[np.arange(len(seq)), [AMINO_ACIDS.index(c) for c in seq]] = True
        assert np.all(result.attributions[s][~observed] == 0)
    assert np.all(result.position_attributions == 0)  # position features kept at the input


def test_heatmap_frame_has_one_row_per_residue():
    model, repertoires, _ = trained()
    result = attribute_sequences(model, repertoires[1], top=4, n_steps=8)
    frame = result.to_frame()
    assert list(frame.columns) == ["sequence", "rank", "position", "residue", "attribution"]
    assert len(frame) == int(result.lengths.sum())
    first = frame[frame["rank"] == 1]
    assert "".join(first["residue"]) == result.sequences[0]
    assert list(first["position"]) == list(range(len(result.sequences[0])))
    np.testing.assert_allclose(first["attribution"], result.residue_attributions()[0, : len(result.sequences[0])])
    matrix = attribution_matrix(result, 0)
    assert list(matrix.columns) == list(AMINO_ACIDS) and list(matrix.index) == list(range(len(result.sequences[0])))


def test_background_baseline_and_position_attributions_keep_completeness():
    model, repertoires, _ = trained()
    result = attribute_sequences(
        model, repertoires[1], top=2, n_steps=300, baseline="background", position_baseline="zero"
    )
    assert np.abs(result.position_attributions).sum() > 0
    assert (np.abs(result.attributions).sum(axis=2) > 0).sum(axis=1).min() > 0
    assert (result.relative_deltas() < 5e-3).all(), result.relative_deltas()


@pytest.mark.parametrize("explain", ["contribution", "repertoire"])
def test_head_contributions_add_up_for_a_linear_output(explain: str):
    torch.manual_seed(1)
    model = DeepRC(DeepRCConfig(n_kernels=6, kernel_size=3, n_heads=2, attention_units=4, max_length=20)).eval()
    _, repertoires, _ = trained()
    rep = repertoires[1]
    rows = np.arange(5)
    both = attribute_sequences(model, rep, rows, n_steps=64, explain=explain)
    heads = [attribute_sequences(model, rep, rows, n_steps=64, head=h, explain=explain) for h in (0, 1)]
    # IG is linear in the explained function, and a linear o() is a sum of per-head terms.
    np.testing.assert_allclose(heads[0].attributions + heads[1].attributions, both.attributions, atol=1e-6)
    assert np.abs(heads[0].attributions).sum() > 0 and np.abs(heads[1].attributions).sum() > 0


def test_attention_over_several_heads_is_each_sequences_share_of_it():
    torch.manual_seed(1)
    model = DeepRC(DeepRCConfig(n_kernels=6, kernel_size=3, n_heads=2, attention_units=4, max_length=20)).eval()
    _, repertoires, _ = trained()
    rep = repertoires[1]
    table = attention_table(model, rep)
    result = attribute_sequences(model, rep, top=4, n_steps=200)
    # the sequences explained are the table's top four, with their shares of the attention over both heads
    np.testing.assert_array_equal(result.sequences, table["sequence"].to_numpy()[:4])
    np.testing.assert_allclose(result.attention, table["attention"].to_numpy()[:4], rtol=1e-5)
    np.testing.assert_allclose(result.outputs, table["attention_logit"].to_numpy()[:4], atol=1e-5)
    assert (result.relative_deltas() < 1e-2).all(), result.relative_deltas()
    # one head chosen: that head's own logit, as before
    head1 = attribute_sequences(model, rep, result.indices, n_steps=200, head=1)
    np.testing.assert_allclose(
        head1.outputs, score_repertoire(model, rep).attention_logits[result.indices, 1], atol=1e-5
    )


@pytest.mark.parametrize("explain", ["contribution", "repertoire"])
def test_a_repertoire_of_one_sequence(explain: str):
    model, _, _ = trained()
    rep = _repertoire("single", ["CASSLGQTYEQYF"])
    result = attribute_sequences(model, rep, n_steps=200, explain=explain)
    np.testing.assert_allclose(result.outputs, score_repertoire(model, rep).outputs[0], atol=1e-3)
    assert result.relative_deltas()[0] < 1e-2


def _two_witnesses():
    """A repertoire of 60 sequences without Q, two of them carrying SLGQ at the same place (equally strong
    for the SLGQ detector), and its truth table."""
    rng = np.random.default_rng(5)
    letters = list(AMINO_ACIDS.replace("Q", ""))
    sequences = ["CASS" + "".join(rng.choice(letters, 8)) + "F" for _ in range(60)]
    for i in (7, 31):
        sequences[i] = sequences[i][:5] + MOTIF + sequences[i][9:]
    truth = pd.DataFrame(
        {
            "repertoire": "two",
            "sequence": [sequences[7], sequences[31]],
            "motif": MOTIF,
            "motif_start": 5,
            "motif_length": 4,
        }
    )
    return _repertoire("two", sequences), truth


def test_two_equally_strong_witnesses_are_both_credited():
    model = detector()
    rep, truth = _two_witnesses()
    score = score_repertoire(model, rep)
    assert score.attention[[7, 31], 0].sum() > 0.99  # the two witnesses share the attention
    default = attribute_sequences(model, rep, top=2, n_steps=100)
    assert sorted(default.indices) == [7, 31]
    mask = motif_residue_mask(default.sequences, default.attributions.shape[1], truth=truth, repertoire="two")
    assert (default.sequence_totals() > 5).all()  # both attributed positively, by the same amount
    np.testing.assert_allclose(default.sequence_totals()[0], default.sequence_totals()[1], rtol=1e-3)
    assert witness_motif_mass(default, mask)["witness_motif_mass"] > 0.95
    # Swapping either one out of the fixed repertoire changes nothing: the other takes over its attention.
    contribution = attribute_sequences(model, rep, top=2, n_steps=100, explain="contribution")
    assert np.abs(contribution.sequence_totals()).max() < 0.05 * default.sequence_totals().min()
    # Both moving together from the baseline: the repertoire's logit is shared out between them.
    bag = attribute_sequences(model, rep, top=2, n_steps=100, explain="repertoire")
    shares = bag.sequence_totals()
    assert (shares > 0).all() and shares.min() > 0.45 * shares.sum()
    assert abs(shares.sum() - (bag.outputs[0] - bag.baseline_outputs[0])) < 0.01 * abs(shares.sum())
    assert witness_motif_mass(bag, mask)["witness_motif_mass"] > 0.9


def test_bad_requests_are_explained():
    model, repertoires, _ = trained()
    with pytest.raises(DeepRCError, match="baseline"):
        attribute_sequences(model, repertoires[0], baseline="mean")
    with pytest.raises(DeepRCError, match="head"):
        attribute_sequences(model, repertoires[0], head=3)
    with pytest.raises(DeepRCError, match="between 0 and"):
        attribute_sequences(model, repertoires[0], [1000])
    multi = DeepRC(
        DeepRCConfig(
            n_kernels=4, kernel_size=3, targets=[{"name": "hla", "kind": "multiclass", "classes": ["a", "b", "c"]}]
        )
    )
    with pytest.raises(DeepRCError, match="choose the class"):
        resolve_output(multi)
    assert resolve_output(multi, class_name="c") == 2
    with pytest.raises(DeepRCError, match="no class"):
        resolve_output(multi, class_name="nope")


def test_cli_head_is_numbered_from_one_as_the_attention_table(tmp_path):
    """``--head 1`` is the attention table's ``attention_h1`` (the library's head index 0); 0 does not exist."""
    model, repertoires, _ = trained()
    save_model(model, tmp_path / "model")
    rep = repertoires[1]
    pd.DataFrame({"junction_aa": rep.sequences}).to_csv(tmp_path / "rep.tsv", sep="\t", index=False)
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    base = ["attribute", "--model", str(tmp_path / "model"), str(tmp_path / "rep.tsv"), "--top", "3", "--steps", "8"]
    args = parser.parse_args([*base, "--out", str(tmp_path / "h1.tsv"), "--head", "1", "--quiet"])
    assert args.func(args) == 0
    expected = attribute_sequences(model, rep, top=3, n_steps=8, head=0).to_frame()["attribution"]
    np.testing.assert_allclose(
        pd.read_csv(tmp_path / "h1.tsv", sep="\t")["attribution"], expected, rtol=1e-4, atol=1e-6
    )
    for head in ("0", "2"):
        args = parser.parse_args([*base, "--out", str(tmp_path / "x.tsv"), "--head", head])
        with pytest.raises(DeepRCError, match="numbered 1 to 1"):
            args.func(args)


def test_cli_attribute_writes_the_table(tmp_path, capsys):
    model, repertoires, _ = trained()
    save_model(model, tmp_path / "model")
    rep = repertoires[1]
    pd.DataFrame({"junction_aa": rep.sequences, "duplicate_count": 1}).to_csv(
        tmp_path / "rep1.tsv", sep="\t", index=False
    )
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "attributions.tsv"
    args = parser.parse_args(
        [
            "attribute",
            "--model",
            str(tmp_path / "model"),
            str(tmp_path / "rep1.tsv"),
            "--top",
            "5",
            "--out",
            str(out),
            "--steps",
            "8",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["sequence", "rank", "position", "residue", "attribution"]
    assert sorted(table["rank"].unique()) == [1, 2, 3, 4, 5]
    assert len(table) == sum(len(s) for s in table.groupby("rank")["sequence"].first())
    expected = attribute_sequences(model, rep, top=5, n_steps=8)  # the default target: the attention logit
    np.testing.assert_allclose(table["attribution"], expected.to_frame()["attribution"], rtol=1e-4, atol=1e-6)
    base = ["attribute", "--model", str(tmp_path / "model"), str(tmp_path / "rep1.tsv"), "--top", "5", "--steps", "8"]
    args = parser.parse_args([*base, "--out", str(tmp_path / "bag.tsv"), "--explain", "repertoire"])
    assert args.func(args) == 0
    assert "Why is this repertoire positive?" in capsys.readouterr().err  # and the convergence delta
    bag = attribute_sequences(model, rep, top=5, n_steps=8, explain="repertoire")
    total = pd.read_csv(tmp_path / "bag.tsv", sep="\t")["attribution"].sum()
    assert total == pytest.approx(bag.outputs[0] - bag.baseline_outputs[0] + bag.deltas[0], rel=1e-3)
    args = parser.parse_args(
        ["attribute", "--model", str(tmp_path / "nothing"), str(tmp_path / "rep1.tsv"), "--out", str(out)]
    )
    with pytest.raises(DeepRCError):
        args.func(args)
