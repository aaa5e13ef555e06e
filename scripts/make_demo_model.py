"""Regenerate the shipped demo model ``models/demo`` and its card, deterministically for a seed.

1. Simulate a training set (300 repertoires x 10,000 TRB sequences, motifs GWQH and YW.D implanted in 0.2 %
   of each positive repertoire's sequences) and an independent held-out test set (100 repertoires, another
   seed) with :mod:`deeprc_core.simulate`.
2. Train DeepRC on the training set (stratified 80/20 split for early stopping).
3. Measure on the held-out test set: AUC, balanced accuracy, witness precision/recall in the top 1 % by
   attention, recall@10/100/1000, AUPRC, Jaccard of the top n with the n witnesses, the integrated-gradient
   motif mass per witness (the default target, each sequence's log share of the attention; vs chance) for all three
   attribution targets, the pooled motif mass, the residue AUROC and the best kernel-motif match; draw the
   kernel logos of the most important kernels.
4. Save the model with its card (``config.json`` ``info.card``, ``MODEL_CARD.md``, ``card/*.png``).

Usage (from the repository root; about 15-25 minutes on a 2-core CPU)::

    PYTHONPATH=. python scripts/make_demo_model.py [--work /tmp/deeprc_demo] [--out models/demo] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from deeprc_core.attribution import EXPLAIN
from deeprc_core.checkpoint import load_model, save_model
from deeprc_core.dataset import open_dataset
from deeprc_core.io import find_repertoire_files, read_metadata, read_repertoire
from deeprc_core.model import DeepRCConfig
from deeprc_core.motifs import kernel_motifs
from deeprc_core.plots import figure_to_bytes, kernel_grid_figure
from deeprc_core.recovery import recovery_report
from deeprc_core.scoring import predict
from deeprc_core.simulate import SimulationConfig, read_truth, simulate_dataset
from deeprc_core.training import TrainingConfig, metrics_for, train

ROOT = Path(__file__).resolve().parents[1]

MOTIFS = ["GWQH", "YW.D"]
WITNESS_RATE = 0.002
# Training repertoires carry one motif each (drawn at random), so the model must learn both motifs; the
# held-out repertoires carry both, mixed witness by witness, so recall counts both motifs' witnesses.
TRAIN_SIM = dict(
    n_repertoires=300,
    n_sequences=10_000,
    motifs=MOTIFS,
    witness_rate=WITNESS_RATE,
    one_motif_per_repertoire=True,
    seed=7,
)
TEST_SIM = dict(n_repertoires=100, n_sequences=10_000, motifs=MOTIFS, witness_rate=WITNESS_RATE, seed=8)
# The default training (TrainingConfig), as `python -m deeprc_core train ... --max-minutes 5` runs it.
TRAINING = dict(target="disease", positive="positive", max_minutes=5.0)


def simulate(work: Path, name: str, settings: dict) -> Path:
    out = work / name
    if not (out / "metadata.tsv").is_file():
        bar = tqdm(desc=f"simulating {name}", unit="step")
        simulate_dataset(
            out, SimulationConfig(**settings), progress=lambda d, t: (setattr(bar, "total", t), bar.update(d - bar.n)),
            overwrite=True,  # an earlier, interrupted simulation
        )  # fmt: skip
        bar.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/deeprc_demo", help="folder for the simulated data (not shipped)")
    parser.add_argument("--out", default=str(ROOT / "models" / "demo"), help="model directory to write")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--evaluate-only", action="store_true", help="re-measure the card of an existing model")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    test_dir = simulate(work, "test", TEST_SIM)

    if args.evaluate_only:
        model = load_model(out, "cpu")
        info = model.info
    else:
        dataset = open_dataset(simulate(work, "train_one_motif", TRAIN_SIM))
        bar = tqdm(total=TrainingConfig().max_updates, desc="training", unit="update")

        def _tick(p):
            bar.update(p.update - bar.n)
            if p.best:
                bar.set_postfix(
                    val_auc=f"{p.best.get('val_auc', float('nan')):.3f}", val_loss=f"{p.best['val_loss']:.3f}"
                )

        start = time.perf_counter()
        result = train(
            dataset, TrainingConfig(seed=args.seed, device="cpu", **TRAINING), DeepRCConfig(), on_update=_tick
        )
        bar.close()
        model, info = result.model, result.model.info
        info["training_minutes"] = round((time.perf_counter() - start) / 60, 1)
        save_model(model, out, info, overwrite=True)  # keep the trained model even if the evaluation below fails

    # Held-out evaluation on an independently simulated test set.
    meta = read_metadata(test_dir / "metadata.tsv", find_repertoire_files(test_dir))
    reps = [read_repertoire(f, max_length=model.config.max_length) for f in tqdm(meta["file"], desc="reading test set")]
    table = predict(model, reps)
    y = (meta["disease"] == "positive").to_numpy(int)
    target = model.config.target_spec()
    test_metrics = metrics_for(target, y, table["probability"].to_numpy())
    truth = read_truth(test_dir / "truth.tsv")
    truth = truth.assign(repertoire=truth["repertoire"].map(lambda s: s.split(".")[0]))
    positives = [r for r, label in zip(reps, y) if label == 1]
    # The default target (each sequence's log share of the attention) gives the card's figures; the other two targets'
    # per-witness motif mass is recorded next to it.
    recovery = recovery_report(model, positives, truth, attribute_top=50, n_steps=32, motif=MOTIFS[0])
    by_target = {EXPLAIN[0]: recovery.summary.get("witness_motif_mass")}
    for explain in EXPLAIN[1:]:
        other = recovery_report(model, positives, truth, attribute_top=50, n_steps=32, explain=explain, motif=MOTIFS[0])
        by_target[explain] = other.summary.get("witness_motif_mass")
    kernels = kernel_motifs(model, positives[:10], motifs=MOTIFS)
    fig = kernel_grid_figure(kernels, kernels=kernels.kernels[:8])

    summary = recovery.summary
    card = {
        "name": "DeepRC demo model (simulated CMV-like TRB data)",
        "intended_use": "Demonstration and teaching on simulated data only; not for clinical or research conclusions.",
        "training_data": {
            **TRAIN_SIM,
            "chain": "TRB",
            "generator": "deeprc_core.simulate (OLGA human_T_beta background)",
        },
        "test_data": {**TEST_SIM, "chain": "TRB"},
        "training": {**TRAINING, "seed": args.seed},
        "command": "PYTHONPATH=. python scripts/make_demo_model.py",
        "held_out": {
            "auc": test_metrics["auc"],
            "balanced_accuracy": test_metrics["balanced_accuracy"],
            "f1": test_metrics["f1"],
            "witness_precision_top1pct": summary.get("precision@top1%"),
            "witness_recall_top1pct": summary.get("recall@top1%"),
            "witness_precision_at_10": summary.get("precision@10"),
            "witness_recall_at_10": summary.get("recall@10"),
            "witness_recall_at_100": summary.get("recall@100"),
            "witness_recall_at_1000": summary.get("recall@1000"),
            "auprc": summary.get("auprc"),
            "jaccard_top_n": summary.get("jaccard@n"),
            "explain": recovery.explain,
            "attributed_per_repertoire": 50,
            "n_witnesses_attributed": summary.get("n_witnesses_attributed"),
            "witness_motif_mass": summary.get("witness_motif_mass"),
            "witness_motif_mass_chance": summary.get("witness_chance"),
            "witness_motif_mass_by_target": by_target,
            "residue_auroc": summary.get("residue_auroc"),
            "motif_mass": summary.get("motif_mass"),
            "motif_mass_chance": summary.get("chance"),
            "kernel_match_GWQH": summary.get("kernel_match"),
        },
        "top_kernels": kernels.summary.head(8).to_dict(orient="records"),
    }
    info = {**info, "card": card}
    save_model(model, out, info, overwrite=True)  # the card is rewritten below
    (out / "card").mkdir(exist_ok=True)
    (out / "card" / "kernels.png").write_bytes(figure_to_bytes(fig, "png"))
    recovery.per_repertoire.to_csv(out / "card" / "recovery_per_repertoire.tsv", sep="\t", index=False)
    if recovery.per_witness is not None:
        recovery.per_witness.to_csv(out / "card" / "recovery_per_witness.tsv", sep="\t", index=False)
    (out / "MODEL_CARD.md").write_text(model_card_markdown(card, info))
    print(json.dumps(card["held_out"], indent=2))


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _fmt_count(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{int(value):,}"


def model_card_markdown(card: dict, info: dict) -> str:
    """The card as Markdown (shown by the app and committed next to the weights)."""
    h = card["held_out"]
    val = info.get("validation_metrics", {})
    lines = [
        f"# {card['name']}",
        "",
        card["intended_use"],
        "",
        "## Data",
        f"- Training: {card['training_data']['n_repertoires']} simulated TRB repertoires x "
        f"{card['training_data']['n_sequences']:,} sequences (seed {card['training_data']['seed']}), half positive; "
        f"one of the motifs {', '.join(MOTIFS)} (drawn per repertoire) implanted in {WITNESS_RATE:.1%} of each "
        "positive repertoire's sequences ('.' keeps the background residue).",
        f"- Held-out test: {card['test_data']['n_repertoires']} repertoires simulated independently (seed "
        f"{card['test_data']['seed']}); each positive one carries both motifs, mixed witness by witness.",
        "",
        "## Training",
        f"- Command: `{card['command']}`",
        f"- Settings: {', '.join(f'{k}={v}' for k, v in card['training'].items())}",
        f"- Updates: {info.get('updates')} ({info.get('stop_reason')}), {info.get('training_seconds', 0) / 60:.1f} min on CPU;"
        f" validation AUC {_fmt(val.get('auc'))}, loss {_fmt(val.get('loss'))}.",
        "",
        "## Held-out results",
        "| measure | value |",
        "|---|---|",
        f"| AUC | {_fmt(h['auc'])} |",
        f"| balanced accuracy | {_fmt(h['balanced_accuracy'])} |",
        f"| witness recall in the top 1 % by attention | {_fmt(h['witness_recall_top1pct'])} |",
        f"| witness precision in the top 1 % | {_fmt(h['witness_precision_top1pct'])} |",
        f"| witness precision@10 | {_fmt(h['witness_precision_at_10'])} |",
        f"| witness recall@10 / @100 / @1000 | {_fmt(h.get('witness_recall_at_10'))} / "
        f"{_fmt(h.get('witness_recall_at_100'))} / {_fmt(h.get('witness_recall_at_1000'))} |",
        f"| AUPRC (witness vs attention) | {_fmt(h['auprc'])} |",
        f"| Jaccard of the top n with the n witnesses | {_fmt(h.get('jaccard_top_n'))} |",
        f"| IG on motif residues per witness, top {h.get('attributed_per_repertoire', 50)} (chance level) | "
        f"{_fmt(h.get('witness_motif_mass'))} ({_fmt(h.get('witness_motif_mass_chance'))}) |",
        "| IG on motif residues per witness, by target: attention / contribution / repertoire | "
        + " / ".join(_fmt((h.get("witness_motif_mass_by_target") or {}).get(e)) for e in EXPLAIN)
        + " |",
        f"| residue AUROC (motif vs other residues, per witness) | {_fmt(h.get('residue_auroc'))} |",
        f"| IG motif mass pooled over the attributed sequences (chance level) | {_fmt(h['motif_mass'])} "
        f"({_fmt(h['motif_mass_chance'])}) |",
        f"| best kernel match with GWQH (Pearson r) | {_fmt(h['kernel_match_GWQH'])} |",
        "",
        f"Attributions: integrated gradients (target `{h.get('explain', 'attention')}`: each sequence's log share of "
        "the attention over the heads; 32 steps, zero baseline) for the "
        f"{h.get('attributed_per_repertoire', 50)} highest-attention sequences of "
        "each positive held-out repertoire; the per-witness figure averages, over the "
        f"{_fmt_count(h.get('n_witnesses_attributed'))} witnesses among them, the share of each one's positive "
        "attribution on its motif residues.",
        "",
        "![kernel logos](card/kernels.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    main()
