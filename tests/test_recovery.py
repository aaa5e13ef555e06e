"""Recovery scores checked against values worked out by hand, and on a hand-set SLGQ detector."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from conftest import make_repertoire as _repertoire

from deeprc_core import plots
from deeprc_core.attribution import SequenceAttributions
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.motifs import logo_frame
from deeprc_core.recovery import (
    kernel_motif_match,
    motif_mass,
    motif_matrix,
    motif_residue_mask,
    per_witness_scores,
    pwm_scores,
    ranking_metrics,
    recovery_report,
    witness_mask,
    witness_motif_mass,
)

MOTIF = "SLGQ"


def _onehot(word: str, rows: int, first: int = 0) -> np.ndarray:
    values = np.zeros((rows, 20))
    for i, letter in enumerate(word):
        values[first + i, AMINO_ACIDS.index(letter)] = 1.0
    return values


def test_ranking_metrics_by_hand():
    # Witnesses at ranks 1, 4 and 9 of 10; scores given out of order to check the sorting.
    ranked = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    flags = np.zeros(10, dtype=bool)
    flags[[0, 3, 8]] = True
    order = np.random.default_rng(0).permutation(10)
    m = ranking_metrics(ranked[order], flags[order], ks=(1, 5, 20), top_fraction=0.2)
    assert m["n_sequences"] == 10 and m["n_witnesses"] == 3
    assert m["precision@1"] == 1.0 and m["recall@1"] == pytest.approx(1 / 3)
    assert m["precision@5"] == pytest.approx(2 / 5) and m["recall@5"] == pytest.approx(2 / 3)
    assert m["precision@20"] == pytest.approx(3 / 10) and m["recall@20"] == 1.0  # k clipped to N
    assert m["k_top"] == 2 and m["precision@top20%"] == 0.5 and m["recall@top20%"] == pytest.approx(1 / 3)
    assert m["auprc"] == pytest.approx((1 / 1 + 2 / 4 + 3 / 9) / 3)  # mean precision at each witness
    assert m["jaccard@n"] == pytest.approx(1 / 5)  # top 3 holds 1 of the 3 witnesses: 1 / (3 + 3 - 1)
    default = ranking_metrics(ranked, flags)
    assert default["k_top"] == 1 and default["precision@top1%"] == 1.0
    assert default["recall@10"] == 1.0 and default["recall@100"] == 1.0 and default["recall@1000"] == 1.0
    perfect = ranking_metrics(np.arange(10.0), np.arange(10) >= 7)
    assert perfect["jaccard@n"] == 1.0 and perfect["auprc"] == 1.0
    none = ranking_metrics(ranked, np.zeros(10, dtype=bool), ks=(5,))
    assert none["precision@5"] == 0.0 and math.isnan(none["recall@5"]) and math.isnan(none["auprc"])
    assert math.isnan(none["jaccard@n"])
    with pytest.raises(DeepRCError, match="one value per sequence"):
        ranking_metrics(ranked, flags[:5])


def test_witness_masks_from_each_kind_of_truth():
    rep = _repertoire("rep1", ["CASSLGQF", "CASRLGQF", "CASSIGQF", "CASSLGQAF", "CATTF"])
    truth = pd.DataFrame(
        {
            "repertoire": ["rep1.tsv", "rep1.tsv", "rep2.tsv"],
            "sequence": ["CASSLGQF", "CASSLGQAF", "CASRLGQF"],
            "motif": [MOTIF] * 3,
            "motif_start": [3, 3, 3],
            "motif_length": [4, 4, 4],
        }
    )
    expected = [True, False, False, True, False]
    assert witness_mask(rep, truth=truth).tolist() == expected  # rep2's row does not count
    assert witness_mask(rep.sequences, truth=truth, repertoire="rep2").tolist() == [False, True, False, False, False]
    assert witness_mask(rep, regex="S[LI]GQ").tolist() == [True, False, True, True, False]
    assert witness_mask(rep, known=["casslgqf", "CATTF"]).tolist() == [True, False, False, False, True]
    probabilities = logo_frame(np.full((4, 20), 0.01) + 0.8 * _onehot(MOTIF, 4))
    assert witness_mask(rep, pwm=probabilities).tolist() == expected[:3] + [True, False]
    log_odds = logo_frame(2 * _onehot(MOTIF, 4) - 0.5)  # +1.5 per matching residue, -0.5 otherwise
    assert pwm_scores(rep, log_odds).tolist() == [6.0, 4.0, 4.0, 6.0, -2.0]
    assert witness_mask(rep, pwm=log_odds, pwm_threshold=4).tolist() == [True, True, True, True, False]
    assert witness_mask(rep, pwm=log_odds).tolist() == expected[:3] + [True, False]  # default: 80 % of 6
    with pytest.raises(DeepRCError, match="exactly one"):
        witness_mask(rep, regex="SLGQ", known=["CASSLGQF"])
    with pytest.raises(DeepRCError, match="regular expression"):
        witness_mask(rep, regex="S[LG")


def test_motif_residue_masks_skip_gap_positions():
    truth = pd.DataFrame({"sequence": ["CASSLYGQF"], "motif": ["S.GQ"], "motif_start": [3], "motif_length": [4]})
    mask = motif_residue_mask(["CASSLYGQF", "CASSF"], truth=truth)
    assert mask.shape == (2, 9)
    assert np.flatnonzero(mask[0]).tolist() == [3, 5, 6] and not mask[1].any()
    spans = motif_residue_mask(["CASSLGQSLGQF", "CAF"], 14, regex="SLGQ")
    assert np.flatnonzero(spans[0]).tolist() == [3, 4, 5, 6, 7, 8, 9, 10] and not spans[1].any()


def _attributions(rows: list[list[float]]) -> SequenceAttributions:
    """Hand-made attributions: one sequence of A's per row, its residue attributions in channel A."""
    n, width = len(rows), max(len(r) for r in rows)
    attributions = np.zeros((n, width, 20), dtype=np.float32)
    for i, row in enumerate(rows):
        attributions[i, : len(row), 0] = row
    return SequenceAttributions(
        repertoire="r",
        indices=np.arange(n),
        sequences=np.array(["A" * len(r) for r in rows], dtype=object),
        lengths=np.array([len(r) for r in rows]),
        ranks=np.arange(1, n + 1),
        attention=np.full(n, 1 / n),
        attributions=attributions,
        position_attributions=np.zeros((n, width, 3), dtype=np.float32),
        deltas=np.zeros(n),
        outputs=np.zeros(n),
        baseline_outputs=np.zeros(n),
        output_index=0,
        head=None,
        baseline="zero",
        position_baseline="input",
        n_steps=2,
    )


def test_motif_mass_by_hand():
    # Residue attributions [1, 2, -1, 0] and [0.5, 0.5, 3] (the second sequence is 3 long).
    result = _attributions([[1, 2, -1, 0], [0.5, 0.5, 3]])
    mask = np.array([[False, True, True, False], [False, False, True, True]])  # (1, 3) lies beyond the end
    scores = motif_mass(result, mask)
    # Positive mass 1 + 2 + 0.5 + 0.5 + 3 = 7, of which 2 + 3 on motif residues; 3 of 7 residues are motif.
    assert scores["motif_mass"] == pytest.approx(5 / 7)
    assert scores["chance"] == pytest.approx(3 / 7)
    assert scores["ratio"] == pytest.approx(5 / 3)


def test_per_witness_motif_mass_by_hand():
    # A dominant witness, a weak witness and a sequence without the motif: pooled over all three, the dominant
    # witness's 100 on its motif carries the score; per witness, the weak one counts as much.
    result = _attributions([[0, 100, 100, 0, 0], [0.3, 0.1, 0.1, 0.5, -0.2], [1, 1, 1, 1, 1]])
    mask = np.zeros((3, 5), dtype=bool)
    mask[0, 1:3] = mask[1, 1:3] = True
    pooled = motif_mass(result, mask)
    assert pooled["motif_mass"] == pytest.approx(200.2 / 206)
    per = per_witness_scores(result, mask)
    assert per["row"].tolist() == [0, 1] and per["rank"].tolist() == [1, 2]  # the third is no witness
    assert per["motif_share"].tolist() == pytest.approx([1.0, 0.2 / 1.0])
    assert per["chance"].tolist() == pytest.approx([2 / 5, 2 / 5])
    # AUROC, motif vs other residues: witness 1 ranks both motif residues above all others (ties count half);
    # witness 2 ranks its motif residues (0.1, 0.1) above -0.2 only: 2 of 6 pairs.
    assert per["residue_auroc"].tolist() == pytest.approx([1.0, 2 / 6])
    scores = witness_motif_mass(result, mask)
    assert scores["witness_motif_mass"] == pytest.approx(0.6)
    assert scores["witness_chance"] == pytest.approx(0.4) and scores["witness_ratio"] == pytest.approx(1.5)
    assert scores["residue_auroc"] == pytest.approx((1 + 2 / 6) / 2)
    assert scores["n_witnesses_attributed"] == 2
    assert 0.5 < scores["residue_auroc_pooled"] < 1.0
    # A witness without any positive attribution scores 0, and no witness at all gives NaN.
    flat = witness_motif_mass(_attributions([[-1, -1, -1]]), np.array([[True, False, False]]))
    assert flat["witness_motif_mass"] == 0.0
    none = witness_motif_mass(result, np.zeros((3, 5), dtype=bool))
    assert math.isnan(none["witness_motif_mass"]) and none["n_witnesses_attributed"] == 0
    with pytest.raises(DeepRCError, match="one row per"):
        witness_motif_mass(result, mask[:2])


def test_kernel_motif_match_by_hand():
    logos = {
        0: logo_frame(_onehot("QGLS", 5)),
        1: logo_frame(_onehot(MOTIF, 5, first=1) - 0.05),  # the motif at kernel rows 1-4, centred
        2: logo_frame(np.zeros((5, 20))),
    }
    match = kernel_motif_match(logos, MOTIF)
    assert match["kernel"].tolist() == [1, 0, 2]
    assert match.loc[0, "correlation"] == pytest.approx(1.0) and match.loc[0, "offset"] == -1
    assert match.loc[0, "overlap"] == 4
    assert match.loc[1, "correlation"] < 0.5 and math.isnan(match.loc[2, "correlation"])
    gapped = kernel_motif_match(logos, "S.GQ")
    assert gapped.loc[0, "kernel"] == 1 and gapped.loc[0, "correlation"] == pytest.approx(1.0)
    assert gapped.loc[0, "overlap"] == 3
    assert np.isnan(motif_matrix("S.GQ").iloc[1]).all()
    with pytest.raises(DeepRCError, match="amino-acid letters"):
        motif_matrix("SL*Q")


def _detector() -> DeepRC:
    """Kernel 0 fires on SLGQ; attention and output read it."""
    torch.manual_seed(0)
    model = DeepRC(DeepRCConfig(n_kernels=3, kernel_size=5, attention_layers=1, max_length=20))
    with torch.no_grad():
        model.convs[0].weight.normal_(0.0, 0.05)
        model.convs[0].weight[0] = 0.0
        for row, letter in enumerate(MOTIF):
            model.convs[0].weight[0, AMINO_ACIDS.index(letter), row] = 1.0
        model.convs[0].bias.zero_()
        model.convs[0].bias[0] = -3.0
        model.attention[0].weight.zero_()
        model.attention[0].weight[0, 0] = 4.0
        model.output[0].weight.zero_()
        model.output[0].weight[0, 0] = 6.0
        model.output[0].bias.fill_(-2.0)
    return model.eval()


def test_recovery_report_of_a_detector():
    rng = np.random.default_rng(3)
    background = list(AMINO_ACIDS.replace("Q", ""))  # no chance SLGQ outside the witnesses
    repertoires, rows = [], []
    for r in range(3):
        sequences = ["CASS" + "".join(rng.choice(background, int(rng.integers(7, 12)))) + "F" for _ in range(80)]
        if r > 0:  # repertoires 1 and 2 are positive, with 4 witnesses each
            for i in range(4):
                seq = list(sequences[i])
                seq[5:9] = MOTIF
                sequences[i] = "".join(seq)
                rows.append((f"rep{r}.tsv", sequences[i], "", "", MOTIF, 5, 4))
        repertoires.append(_repertoire(f"rep{r}", sequences))
    truth = pd.DataFrame(
        rows, columns=["repertoire", "sequence", "v_call", "j_call", "motif", "motif_start", "motif_length"]
    )
    report = recovery_report(_detector(), repertoires, truth, ks=(4, 10), attribute_top=6, n_steps=16)
    per = report.per_repertoire
    assert per["repertoire"].tolist() == ["rep1", "rep2"]
    assert (per["precision@4"] == 1.0).all() and (per["recall@4"] == 1.0).all() and (per["auprc"] == 1.0).all()
    assert (per["precision@10"] == 0.4).all() and (per["jaccard@n"] == 1.0).all()
    assert (per["motif_mass"] > 0.9).all() and (per["motif_mass"] > 2 * per["chance"]).all()
    assert (per["witness_motif_mass"] > 0.9).all() and (per["n_witnesses_attributed"] == 4).all()
    assert (per["residue_auroc"] > 0.9).all() and (per["relative_delta"] < 0.05).all()
    summary = report.summary
    assert summary["n_positive_repertoires"] == 2 and summary["auprc"] == 1.0
    assert summary["n_witnesses_attributed"] == 8 and summary["witness_motif_mass"] > 0.9
    assert summary["witness_chance"] == pytest.approx(report.per_witness["chance"].mean())
    assert len(report.per_witness) == 8 and set(report.per_witness["repertoire"]) == {"rep1", "rep2"}
    assert report.explain == "attention"
    assert report.kernel_match.loc[0, "kernel"] == 0 and summary["kernel_match"] == pytest.approx(1.0)
    bag = recovery_report(_detector(), repertoires, truth, attribute_top=6, n_steps=16, explain="repertoire")
    assert bag.explain == "repertoire" and bag.summary["witness_motif_mass"] > 0.9
    figure = plots.recovery_figure(per)
    assert isinstance(figure, go.Figure) and [t.name for t in figure.data] == [
        "IG on motif, per witness",
        "chance per witness",
        "IG on motif, pooled",
        "chance pooled",
        "attention AUPRC",
    ]
    scores = {r.name: (np.arange(len(r))[::-1].astype(float), witness_mask(r, truth=truth)) for r in repertoires}
    recall = plots.recall_at_k_figure(scores)
    assert len(recall.data) == 2 and recall.data[0].y[3] == 1.0  # the witnesses are rows 0-3: ranked first
