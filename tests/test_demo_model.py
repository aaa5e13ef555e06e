"""The shipped demo model: it loads, its card meets the quality bar, and it scores the shipped data as the
card says. The card's held-out figures are re-measured on freshly simulated repertoires (same simulator
settings as the card's test set, another seed), which must agree within noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeprc_core.checkpoint import load_model
from deeprc_core.io import find_repertoire_files, read_metadata, read_repertoire
from deeprc_core.recovery import ranking_metrics, witness_mask
from deeprc_core.scoring import predict, score_repertoire
from deeprc_core.simulate import SimulationConfig, simulate_repertoires
from deeprc_core.training import metrics_for

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO, "cpu")


def test_card_meets_the_quality_bar(model) -> None:
    held_out = model.info["card"]["held_out"]
    assert held_out["auc"] >= 0.95
    assert held_out["witness_recall_top1pct"] >= 0.8
    assert held_out["motif_mass"] > 3 * held_out["motif_mass_chance"]
    # issue 10: every witness's attribution, not only the top sequence's, falls on its motif
    assert held_out["witness_motif_mass"] >= 0.7 > 2 * held_out["witness_motif_mass_chance"]
    assert held_out["witness_motif_mass_by_target"]["attention"] == held_out["witness_motif_mass"]
    assert (DEMO / "MODEL_CARD.md").read_text().count("|") > 10
    assert (DEMO / "card" / "kernels.png").stat().st_size > 10_000


def test_scores_the_shipped_dataset(model) -> None:
    root = ROOT / "sample_data" / "dataset"
    meta = read_metadata(root / "metadata.tsv", find_repertoire_files(root))
    reps = [read_repertoire(f) for f in meta["file"]]
    table = predict(model, reps)
    assert table["probability"].between(0, 1).all()
    y = (meta["disease"] == "positive").to_numpy(int)
    metrics = metrics_for(model.config.target_spec(), y, table["probability"].to_numpy())
    assert metrics["auc"] >= 0.95


@pytest.mark.parametrize(
    ("name", "positive"),
    [("patient_A_airr.tsv", True), ("patient_B_immunoseq.tsv.gz", False), ("patient_C_10x.csv", True)],
)
def test_scores_the_shipped_patients(model, name: str, positive: bool) -> None:
    score = score_repertoire(model, read_repertoire(ROOT / "sample_data" / "single" / name))
    assert (score.prediction > 0.5) == positive


def test_card_figures_hold_on_fresh_simulated_repertoires(model) -> None:
    """Same settings as the card's held-out set (both motifs per positive repertoire), another seed."""
    card = model.info["card"]
    settings = {k: v for k, v in card["test_data"].items() if k in SimulationConfig.__dataclass_fields__}
    config = SimulationConfig(**{**settings, "n_repertoires": 12, "seed": 1234})
    simulated, _ = simulate_repertoires(config)
    recalls, probabilities, labels = [], [], []
    for sim in simulated:
        rep = read_repertoire(sim.table.to_csv(sep="\t", index=False).encode(), name=sim.id)
        score = score_repertoire(model, rep)
        probabilities.append(float(score.prediction))
        labels.append(int(sim.positive))
        if sim.positive:
            witnesses = witness_mask(rep, known=sim.truth["sequence"].tolist())
            recalls.append(ranking_metrics(score.ranking, witnesses)["recall@top1%"])
    auc = metrics_for(model.config.target_spec(), np.array(labels), np.array(probabilities))["auc"]
    assert auc >= card["held_out"]["auc"] - 0.05
    assert np.mean(recalls) >= card["held_out"]["witness_recall_top1pct"] - 0.1
