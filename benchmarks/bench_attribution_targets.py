"""Benchmark: the three attribution targets side by side on simulated repertoires with known witnesses (issue 10).

Either trains a model with the default ``TrainingConfig`` (only ``--max-minutes`` and the device changed) on a
dataset simulated with :mod:`deeprc_core.simulate` (``--seed``) and evaluates it on held-out repertoires
simulated with another seed (``--test-seed``), or takes an existing model and a simulated dataset
(``--model DIR --data DIR``, the folder holding ``metadata.tsv``, ``repertoires/`` and ``truth.tsv``).

For the first ``--positives`` held-out repertoires that carry witnesses, each target (``explain`` =
attention, contribution, repertoire) attributes the ``--top`` highest-attention sequences (``--steps`` steps,
zero baseline). Over the witness sequences among them it prints:

* the per-witness motif mass (mean over witnesses of the positive share on motif residues) and its chance
  level (mean motif residues / residues of the same witnesses), the figure issue 10 asks to be >= 0.7;
* the pooled motif mass (all attributed sequences' positive mass together) and its chance level;
* the residue AUROC (motif residues vs the others, per witness, averaged);
* the median relative convergence delta and the seconds taken;
* whether the aligned logo of the top sequences (default logo settings, a window as wide as the motif, left
  alignment) has the motif's letters as its tallest column stacks (repertoires where it does / all).

It also prints the held-out AUC and the attention ranking's witness scores (AUPRC, recall@10/100/1000,
Jaccard@n). The default settings are issue 10's 1-motif 1 % setting; ``--motifs GWQH YW.D --witness-rate 0.002
--n-sequences 10000`` gives its 2-motif 0.2 % setting.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_attribution_targets.py [--n-repertoires 60 --n-sequences 3000]
        [--motifs SLGQ] [--witness-rate 0.01] [--max-minutes 5] [--top 50] [--steps 50]
    PYTHONPATH=. python benchmarks/bench_attribution_targets.py --model models/demo --data /tmp/deeprc_demo/test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deeprc_core.attribution import EXPLAIN, EXPLAIN_LABELS, attribute_sequences
from deeprc_core.checkpoint import load_model, save_model
from deeprc_core.dataset import open_dataset
from deeprc_core.io import find_repertoire_files, read_metadata, read_repertoire
from deeprc_core.model import DeepRCConfig
from deeprc_core.motifs import attribution_logo
from deeprc_core.recovery import motif_mass, motif_residue_mask, per_witness_scores, ranking_metrics, witness_mask
from deeprc_core.scoring import repertoire_representation, score_repertoire
from deeprc_core.simulate import SimulationConfig, read_truth, simulate_dataset
from deeprc_core.training import TrainingConfig, metrics_for, train


def _simulate(folder: Path, config: SimulationConfig) -> Path:
    """Simulate once per setting: a folder whose simulation.json matches ``config`` is reused."""
    record = folder / "simulation.json"
    if record.is_file() and json.loads(record.read_text())["config"] == dataclasses.asdict(config):
        return folder
    start = time.perf_counter()
    simulate_dataset(folder, config)
    print(
        f"simulated {config.n_repertoires} x {config.n_sequences:,} sequences in {folder} "
        f"({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    return folder


def _logo_shows_motif(result, motifs: list[str]) -> tuple[bool, str]:
    """Whether, for one of the motifs, the tallest column stacks of the default aligned logo (window as wide
    as the motif, left-aligned) sit at the motif's fixed positions and their top letters are its letters
    ('.' positions are left out). Also the top letters of the tallest columns, for the first motif."""
    shown, letters = False, ""
    for motif in motifs:
        fixed = [i for i, c in enumerate(motif) if c not in ".-"]
        logo = attribution_logo(result, width=len(motif), align="left")
        heights = logo.clip(lower=0).sum(axis=1)
        columns = sorted(heights.nlargest(len(fixed)).index)
        start = columns[0] - fixed[0]
        top = logo.idxmax(axis=1)
        letters = letters or "".join(top.loc[columns])
        if columns == [start + p for p in fixed] and all(top.loc[start + p] == motif[p] for p in fixed):
            shown = True
    return shown, letters


def _evaluate(model, repertoires, labels, truth, motifs, args) -> None:
    rows, witness_tables, ranking = [], {name: [] for name in EXPLAIN}, []
    probabilities, logo_letters = [], {name: [] for name in EXPLAIN}
    timings = {name: 0.0 for name in EXPLAIN}
    pooled = {name: [] for name in EXPLAIN}
    deltas = {name: [] for name in EXPLAIN}
    logo_hits = {name: 0 for name in EXPLAIN}
    n_positive = 0
    for rep in repertoires:
        score = score_repertoire(model, rep)
        probabilities.append(float(np.ravel(score.prediction)[0]))
        witnesses = witness_mask(rep, truth=truth)
        if not witnesses.any() or n_positive >= args.positives:
            continue
        n_positive += 1
        ranking.append(ranking_metrics(score.ranking, witnesses))
        z = repertoire_representation(model, rep)
        for explain in EXPLAIN:
            start = time.perf_counter()
            result = attribute_sequences(
                model, rep, top=min(args.top, len(rep)), n_steps=args.steps, explain=explain, representation=z
            )
            timings[explain] += time.perf_counter() - start
            mask = motif_residue_mask(result.sequences, result.attributions.shape[1], truth=truth, repertoire=rep.name)
            witness_tables[explain].append(per_witness_scores(result, mask))
            pooled[explain].append(motif_mass(result, mask))
            deltas[explain].append(result.relative_deltas())
            shown, letters = _logo_shows_motif(result, motifs)
            logo_hits[explain] += shown
            logo_letters[explain].append(letters)
    if n_positive == 0:
        raise SystemExit("None of the held-out repertoires carries a witness of the truth table.")

    if labels is not None and len(set(labels)) == 2:
        spec = model.config.target_spec()
        auc = metrics_for(spec, np.asarray(labels), np.asarray(probabilities))["auc"]
        print(f"held-out AUC {auc:.3f} over {len(labels)} repertoires")
    ranks = pd.DataFrame(ranking).mean(numeric_only=True)
    print(
        f"attention ranking over {n_positive} positive repertoires: AUPRC {ranks['auprc']:.3f}, recall@10 "
        f"{ranks['recall@10']:.3f}, recall@100 {ranks['recall@100']:.3f}, recall@1000 {ranks['recall@1000']:.3f}, "
        f"Jaccard@n {ranks['jaccard@n']:.3f}, witnesses per repertoire {ranks['n_witnesses']:.1f}"
    )
    for explain in EXPLAIN:
        per = pd.concat(witness_tables[explain], ignore_index=True)
        pool = pd.DataFrame(pooled[explain]).mean()
        rows.append(
            {
                "target": explain,
                "question": EXPLAIN_LABELS[explain],
                "witnesses": len(per),
                "per-witness motif mass": per["motif_share"].mean(),
                "chance": per["chance"].mean(),
                "pooled motif mass": pool["motif_mass"],
                "pooled chance": pool["chance"],
                "residue AUROC": per["residue_auroc"].mean(),
                "witnesses with share >= 0.5": (per["motif_share"] >= 0.5).mean(),
                "median rel. delta": float(np.median(np.concatenate(deltas[explain]))),
                "logo shows motif": f"{logo_hits[explain]}/{n_positive}",
                "seconds": timings[explain],
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 3):
        print(f"\ntop {args.top} sequences per repertoire, {args.steps} steps, zero baseline:")
        print(table.drop(columns="question").to_string(index=False))
    for explain in EXPLAIN:
        print(f"  {explain:<12} {EXPLAIN_LABELS[explain]:<62} logo letters: {' '.join(logo_letters[explain])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="an existing model folder (with --data); default: train one")
    parser.add_argument("--data", default=None, help="held-out simulated dataset folder (metadata.tsv, truth.tsv)")
    parser.add_argument("--work", default="/tmp/deeprc_bench_targets", help="folder for simulated data and the model")
    parser.add_argument("--n-repertoires", type=int, default=60, help="training repertoires")
    parser.add_argument("--n-sequences", type=int, default=3000, help="sequences per repertoire")
    parser.add_argument("--motifs", nargs="+", default=["SLGQ"], help="implanted motifs ('.' keeps the residue)")
    parser.add_argument("--witness-rate", type=float, default=0.01, help="share of witness sequences")
    parser.add_argument("--test-repertoires", type=int, default=20, help="held-out repertoires (about half positive)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed of the training set (and training seed)")
    parser.add_argument("--test-seed", type=int, default=1, help="simulation seed of the held-out set (differs)")
    parser.add_argument("--max-minutes", type=float, default=TrainingConfig().max_minutes, help="training budget")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--positives", type=int, default=10, help="positive held-out repertoires attributed")
    parser.add_argument("--top", type=int, default=50, help="attributed sequences per repertoire")
    parser.add_argument("--steps", type=int, default=50, help="integration steps")
    args = parser.parse_args()
    if (args.model is None) != (args.data is None):
        parser.error("give both --model and --data, or neither (then a model is trained on simulated data)")
    if args.seed == args.test_seed:
        parser.error("the held-out repertoires need another simulation seed than the training set")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)

    if args.model is not None:
        model, test_dir = load_model(args.model, device=args.device), Path(args.data)
    else:
        work = Path(args.work)
        sim = dict(motifs=args.motifs, witness_rate=args.witness_rate, n_sequences=args.n_sequences)
        tag = f"{'_'.join(args.motifs).replace('.', 'x')}_{args.witness_rate:g}_{args.n_sequences}"
        train_dir = _simulate(
            work / f"train_{tag}_{args.n_repertoires}_s{args.seed}",
            SimulationConfig(n_repertoires=args.n_repertoires, seed=args.seed, **sim),
        )
        test_dir = _simulate(
            work / f"test_{tag}_{args.test_repertoires}_s{args.test_seed}",
            SimulationConfig(n_repertoires=args.test_repertoires, seed=args.test_seed, **sim),
        )
        training = dataclasses.replace(
            TrainingConfig(),
            target="disease",
            positive="positive",
            max_minutes=args.max_minutes,
            device=args.device,
            seed=args.seed,
        )
        start = time.perf_counter()
        result = train(open_dataset(train_dir), training, DeepRCConfig())
        model = result.model
        print(
            f"trained {result.state.get('update')} updates ({result.state.get('stop_reason')}) in "
            f"{time.perf_counter() - start:.0f} s; validation {result.metrics}",
            file=sys.stderr,
        )
        out = work / f"model_{tag}_{args.n_repertoires}_s{args.seed}"
        save_model(model, out, model.info)
        print(f"model saved to {out} (rerun with --model {out} --data {test_dir})", file=sys.stderr)

    meta = read_metadata(test_dir / "metadata.tsv", find_repertoire_files(test_dir))
    repertoires = [read_repertoire(f, max_length=model.config.max_length) for f in meta["file"]]
    truth = read_truth(test_dir / "truth.tsv")
    labels = (meta["disease"] == "positive").astype(int).tolist() if "disease" in meta.columns else None
    motifs = sorted(truth["motif"].astype(str).unique()) if len(truth) else args.motifs
    _evaluate(model, repertoires, labels, truth, motifs, args)


if __name__ == "__main__":
    main()
