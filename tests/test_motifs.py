"""Logos and kernel motifs on a DeepRC whose kernel 0 is hand-set to detect SLGQ; plot builders."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from conftest import planted_repertoires
from matplotlib.figure import Figure

from deeprc_core import plots
from deeprc_core.attribution import attribute_sequences
from deeprc_core.checkpoint import save_model
from deeprc_core.cli_interpret import add_cli
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.motifs import (
    attribution_logo,
    best_windows,
    enrichment_logo,
    kernel_motifs,
    kernel_weight_logo,
    motif_kernels,
    position_shares,
)
from deeprc_core.recovery import motif_mass, motif_residue_mask
from deeprc_core.scoring import score_repertoire

MOTIF = "SLGQ"


def planted(n_repertoires: int = 4, n_sequences: int = 150, rate: float = 0.05, seed: int = 0):
    """Junctions CASS + random + F (12-16 residues); odd repertoires carry MOTIF in ``rate`` of them."""
    return planted_repertoires(n_repertoires, n_sequences, rate, seed, MOTIF)


def detector() -> DeepRC:
    """Kernel 0 fires on SLGQ (rows 0-3 of its 5 positions), kernel 2 reads only position features; attention
    and output read kernel 0 (output also kernel 1 a little)."""
    torch.manual_seed(0)
    model = DeepRC(DeepRCConfig(n_kernels=4, kernel_size=5, attention_layers=1, n_heads=1, max_length=20))
    with torch.no_grad():
        conv = model.convs[0]
        conv.weight.normal_(0.0, 0.05)
        conv.weight[0] = 0.0
        for row, letter in enumerate(MOTIF):
            conv.weight[0, AMINO_ACIDS.index(letter), row] = 1.0
        conv.bias.zero_()
        conv.bias[0] = -3.0
        conv.weight[2, :20] = 0.0
        model.attention[0].weight.zero_()
        model.attention[0].weight[0, 0] = 4.0
        model.attention[0].bias.zero_()
        model.output[0].weight.zero_()
        model.output[0].weight[0, 0] = 6.0
        model.output[0].weight[0, 1] = 0.1
        model.output[0].bias.fill_(-2.0)
    return model.eval()


def _is_logo_matrix(frame: pd.DataFrame, n_rows: int | None = None) -> bool:
    ok = list(frame.columns) == list(AMINO_ACIDS) and pd.api.types.is_integer_dtype(frame.index.dtype)
    return ok and (n_rows is None or len(frame) == n_rows) and bool(np.isfinite(frame.to_numpy()).all())


def test_hand_set_detector_scores_the_planted_repertoires():
    model = detector()
    repertoires, _ = planted()
    outputs = [score_repertoire(model, r).outputs[0] for r in repertoires]
    assert outputs[1] > 2 and outputs[3] > 2 and outputs[0] < -2 and outputs[2] < -2


def test_weight_logo_shows_the_kernel_motif():
    model = detector()
    logo = kernel_weight_logo(model, 0)
    assert _is_logo_matrix(logo, 5)
    assert list(logo.index) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(logo.to_numpy().mean(axis=1), 0.0, atol=1e-7)  # centred per position
    assert "".join(logo.idxmax(axis=1).iloc[:4]) == MOTIF
    shares = position_shares(model)
    assert shares[0] == 0.0 and shares[2] == pytest.approx(1.0)
    with pytest.raises(DeepRCError, match="does not exist"):
        kernel_weight_logo(model, 9)


def test_attribution_mass_of_the_detector_lies_on_the_motif():
    model = detector()
    repertoires, truth = planted()
    rep = repertoires[1]
    result = attribute_sequences(model, rep, top=7, n_steps=100)
    assert set(result.sequences) <= set(truth["sequence"])  # the witnesses draw the attention
    mask = motif_residue_mask(result.sequences, result.attributions.shape[1], truth=truth, repertoire=rep.name)
    scores = motif_mass(result, mask)
    assert scores["motif_mass"] > 0.9 and scores["motif_mass"] > 3 * scores["chance"]
    # With a single witness, replacing it flips the prediction; the residues account for all of that change.
    single, truth = planted(rate=0.0)
    result = attribute_sequences(model, single[1], top=1, n_steps=300)
    assert result.outputs[0] - result.baseline_outputs[0] > 5
    assert result.relative_deltas()[0] < 5e-3  # the max over positions and SELU put kinks on the path
    mask = motif_residue_mask(result.sequences, result.attributions.shape[1], truth=truth, repertoire="rep1")
    assert motif_mass(result, mask)["motif_mass"] > 0.99


def test_best_windows_by_hand():
    scores = np.array([[0, 1, 5, 1, 0, 0], [3, 0, 0, 0, 0, 9], [1, 2, 0, 0, 0, 0]], dtype=float)
    lengths = np.array([6, 5, 2])  # row 2 is shorter than the window: start 0
    np.testing.assert_array_equal(best_windows(scores, lengths, 3), [1, 0, 0])


def test_attribution_logo_alignments():
    model = detector()
    repertoires, _ = planted()
    result = attribute_sequences(model, repertoires[1], top=7, n_steps=32)
    left = attribution_logo(result, width=4, align="left")
    assert _is_logo_matrix(left)
    assert "".join(left.loc[0:3].idxmax(axis=1)) == MOTIF
    assert left.attrs["window"] == (0, 3)
    assert left.index.min() < 0  # residues before the window are kept at negative offsets
    right = attribution_logo(result, width=4, align="right")
    assert "".join(right.loc[-3:0].idxmax(axis=1)) == MOTIF
    centre = attribution_logo(result, width=4, align="centre", flank=2)
    assert list(centre.index) == list(range(-3, 5))
    assert "".join(centre.loc[-1:2].idxmax(axis=1)) == MOTIF
    # Column sums are the mean residue attribution per sequence at each offset.
    np.testing.assert_allclose(left.to_numpy().sum(), result.residue_attributions().sum() / len(result), rtol=1e-6)
    with pytest.raises(DeepRCError, match="alignment"):
        attribution_logo(result, align="middle")


def test_aligned_logo_of_the_top_50_shows_the_planted_motif():
    """Default target and logo, top 50 of a planted repertoire (7 witnesses among them, 43 other sequences):
    the logo's tallest column stacks are the motif's residues, in order, and each column says how many
    sequences reach it. Logos of the motif carriers alone show it under every normalisation."""
    model = detector()
    repertoires, truth = planted()
    result = attribute_sequences(model, repertoires[1], top=50, n_steps=32)
    carriers = np.isin(result.sequences, truth["sequence"])
    assert carriers.sum() == 7
    logo = attribution_logo(result, width=4, align="left")
    heights = logo.clip(lower=0).sum(axis=1)
    assert sorted(heights.nlargest(4).index) == [0, 1, 2, 3], heights
    assert "".join(logo.loc[0:3].idxmax(axis=1)) == MOTIF
    counts = pd.Series(logo.attrs["n_sequences"], index=logo.index)
    assert logo.attrs["n_logo_sequences"] == 50 and (counts.loc[0:3] == 50).all() and counts.iloc[0] < 50
    for normalise in ("none", "sum", "max"):
        only = attribution_logo(result, width=4, align="left", normalise=normalise, select=carriers)
        assert only.attrs["n_logo_sequences"] == 7 and "".join(only.loc[0:3].idxmax(axis=1)) == MOTIF
    with pytest.raises(DeepRCError, match="one flag per"):
        attribution_logo(result, select=carriers[:3])
    with pytest.raises(DeepRCError, match="None of the attributed"):
        attribution_logo(result, select=np.zeros(50, dtype=bool))


def test_normalised_logos_give_each_sequence_one_vote():
    model = detector()
    repertoires, _ = planted()
    result = attribute_sequences(model, repertoires[1], top=10, n_steps=16)
    by_sum = attribution_logo(result, width=4, normalise="sum")
    np.testing.assert_allclose(by_sum.abs().to_numpy().sum(), 1.0, rtol=1e-6)  # 10 sequences, each |sum| 1, mean
    by_max = attribution_logo(result, width=4, normalise="max")
    assert by_max.abs().to_numpy().max() <= 1.0 + 1e-9
    with pytest.raises(DeepRCError, match="normalisation"):
        attribution_logo(result, normalise="z")


def test_enrichment_logo_finds_the_motif_against_the_repertoire():
    model = detector()
    repertoires, _ = planted()
    result = attribute_sequences(model, repertoires[1], top=7, n_steps=16)
    info = enrichment_logo(result, repertoires[1], k=4, kind="information")
    assert _is_logo_matrix(info, 4)
    assert "".join(info.idxmax(axis=1)) == MOTIF
    assert (info.to_numpy() >= 0).all()
    prob = enrichment_logo(result, repertoires[1], k=4, kind="probability")
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    weight = enrichment_logo(result, repertoires[1], k=4, kind="weight", pseudocount=0.1)  # 7 k-mers: keep it small
    assert (weight.to_numpy() < 0).any() and "".join(weight.idxmax(axis=1)) == MOTIF


def test_the_kernel_table_names_the_pattern_each_seeded_kernel_started_on():
    model = detector()
    model.info = {"seeded_kernels": [MOTIF, "YW.D"]}
    motifs = kernel_motifs(model, motifs=[MOTIF])
    found = motif_kernels(motifs).set_index("motif").loc[MOTIF]
    assert found["found"] and found["kernel"] == 0 and found["seeded_on"] == MOTIF
    summary = motifs.summary.set_index("kernel")
    n_kernels = model.convs[0].out_channels
    assert summary["seeded_on"].tolist() == [MOTIF, "YW.D"] + [""] * (n_kernels - 2)
    for recorded in (None, "junk", ["x"] * (n_kernels + 1)):  # an older, hand-edited or foreign model
        model.info = {"seeded_kernels": recorded}
        assert (kernel_motifs(model).summary["seeded_on"] == "").all()


def test_kernel_motifs_rank_the_detector_first():
    model = detector()
    repertoires, _ = planted()
    motifs = kernel_motifs(model, repertoires, top_n=20)
    assert motifs.kernels[0] == 0
    summary = motifs.summary
    assert list(summary.columns[:4]) == ["kernel", "seeded_on", "importance", "effect"]
    assert summary["importance"].is_monotonic_decreasing
    assert summary.loc[0, "top_kmer"].startswith(MOTIF)
    assert summary.loc[0, "weight_consensus"].startswith(MOTIF)
    activation = motifs.activation_logos[0]
    assert _is_logo_matrix(activation, 5)
    assert "".join(activation.iloc[:4].idxmax(axis=1)) == MOTIF
    assert motifs.top_kmers[0]["kmer"].str.startswith(MOTIF).sum() == 14  # the 2 x 7 witnesses
    # Ablating the detector moves positive repertoires down and negative ones up.
    assert summary.loc[0, "importance"] > 5 * summary.loc[1:, "importance"].max()
    bare = kernel_motifs(model)
    assert bare.summary["importance"].isna().all() and not bare.activation_logos


def test_kernel_motifs_say_which_kernel_found_which_motif():
    model = detector()
    repertoires, _ = planted()
    motifs = kernel_motifs(model, repertoires, top_n=20, motifs=["SLGQ", "wwww"])
    summary = motifs.summary.set_index("kernel")
    assert summary.loc[0, "best_motif"] == MOTIF and summary.loc[0, "motif_correlation"] > 0.95
    # Attention reads kernel 0 alone: it holds the whole rise of the top sequences' attention logit.
    assert summary.loc[0, "attention_share"] == pytest.approx(1.0, abs=1e-3)
    assert summary.drop(index=0)["attention_share"].abs().max() < 1e-3
    found = motif_kernels(motifs)
    assert found["motif"].tolist() == [MOTIF, "WWWW"] and found["found"].tolist() == [True, False]
    assert found.loc[0, "kernel"] == 0 and found.loc[0, "attention_share"] == pytest.approx(1.0, abs=1e-3)
    assert kernel_motifs(model).summary["attention_share"].isna().all()  # without repertoires
    assert motif_kernels(kernel_motifs(model)).empty  # without known motifs


def test_kernel_motifs_of_a_two_layer_cnn():
    torch.manual_seed(0)
    model = DeepRC(DeepRCConfig(n_kernels=3, kernel_size=3, n_layers=2, max_length=20)).eval()
    repertoires, _ = planted(n_repertoires=2, n_sequences=30)
    motifs = kernel_motifs(model, repertoires, top_n=5)
    assert len(motifs.summary) == 3 and np.isfinite(motifs.summary["importance"]).all()
    assert all(_is_logo_matrix(m, 3) for m in motifs.activation_logos.values())
    with pytest.raises(DeepRCError, match="LSTM"):
        kernel_motifs(DeepRC(DeepRCConfig(embedding="lstm")))


def test_logo_figures_export_without_pyplot():
    model = detector()
    repertoires, _ = planted()
    result = attribute_sequences(model, repertoires[1], top=5, n_steps=8)
    figure = plots.logo_figure(attribution_logo(result, width=4), "IG logo")
    assert isinstance(figure, Figure)
    assert plots.figure_to_bytes(figure, "png").startswith(b"\x89PNG")
    assert b"<svg" in plots.figure_to_bytes(figure, "svg")[:500]
    assert plots.figure_to_bytes(figure, "pdf").startswith(b"%PDF")
    grid = plots.kernel_grid_figure(kernel_motifs(model, repertoires[:2], top_n=5), kernels=[2], n_cols=2)
    assert isinstance(grid, Figure) and len([ax for ax in grid.axes if ax.axison]) == 2
    with pytest.raises(DeepRCError, match="png, svg or pdf"):
        plots.figure_to_bytes(figure, "gif")


def test_plotly_builders_return_figures():
    model = detector()
    repertoires, truth = planted()
    rep = repertoires[1]
    score = score_repertoire(model, rep)
    witnesses = np.isin(rep.sequences, truth["sequence"])
    rank = plots.attention_rank_figure(score.attention, witnesses)
    assert isinstance(rank, go.Figure) and rank.layout.yaxis.type == "log"
    assert len(rank.data[1].x) == witnesses.sum() and list(rank.data[1].x) == list(range(1, 8))  # witnesses on top
    assert isinstance(plots.attention_distribution_figure(score.attention, witnesses), go.Figure)
    result = attribute_sequences(model, rep, top=3, n_steps=8)
    heat = plots.attribution_heatmap_figure(result)
    assert heat.data[0].z.shape == (3, int(result.lengths.max()))
    roc = plots.roc_figure([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert "0.750" in roc.data[0].name
    confusion = plots.confusion_matrix_figure(["a", "b", "b"], ["a", "a", "b"], labels=["a", "b"])
    assert confusion.data[0].z.tolist() == [[1, 0], [1, 1]]
    curves = plots.training_curves_figure(
        [{"update": 1, "loss": 0.7, "val_auc": 0.5}, {"update": 2, "loss": 0.5, "val_auc": 0.8}]
    )
    assert {t.name for t in curves.data} == {"loss", "val_auc"}
    assert b"<html" in plots.figure_to_bytes(rank, "html")[:200]
    with pytest.raises(DeepRCError, match="both classes"):
        plots.roc_figure([1, 1], [0.2, 0.3])


def test_cli_motifs_writes_matrices_logos_and_importances(tmp_path):
    model = detector()
    save_model(model, tmp_path / "model")
    repertoires, _ = planted(n_repertoires=2, n_sequences=60)
    data = tmp_path / "data"
    data.mkdir()
    for rep in repertoires:
        pd.DataFrame({"junction_aa": rep.sequences, "duplicate_count": 1}).to_csv(
            data / f"{rep.name}.tsv", sep="\t", index=False
        )
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "motifs"
    args = parser.parse_args(
        [
            "motifs",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--kernels",
            "1",
            "--motif",
            MOTIF,
            "--motif",
            "GWQH",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    table = pd.read_csv(out / "importance.tsv", sep="\t")
    assert table["kernel"].iloc[0] == 0 and len(table) == 4
    assert table["best_motif"].iloc[0] == MOTIF and table["motif_correlation"].iloc[0] > 0.95
    weights = pd.read_csv(out / "kernel_000_weights.tsv", sep="\t", index_col=0)
    assert list(weights.columns) == list(AMINO_ACIDS) and "".join(weights.idxmax(axis=1).iloc[:4]) == MOTIF
    for kind in ("weights", "activation"):
        assert (out / f"kernel_000_{kind}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"kernel_000_{kind}.svg").stat().st_size > 0
    assert (out / "kernel_000_top_kmers.tsv").is_file()
    assert len(list(out.glob("kernel_*_weights.png"))) == 1  # --kernels 1 draws the most important only
    assert len(list(out.glob("kernel_*_weights.tsv"))) == 4 and len(list(out.glob("kernel_*_activation.tsv"))) == 4
    args = parser.parse_args(
        ["motifs", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "none"), "--out", str(out)]
    )
    with pytest.raises(DeepRCError, match="neither|does not exist"):
        args.func(args)
