"""Why does training fail at low witness rates? Measure it on a simulated dataset with a truth table.

For a dataset folder written by ``python -m deeprc_core simulate`` this prints, for the default
``TrainingConfig`` and for the paper's reduction (1,000 sequences sampled, top 10 % kept, no seeding):

* time per update and where it goes: the no-gradient ranking and the gradient pass;
* how often an implanted witness survives each stage in a positive repertoire: ranked (offered) and kept by
  the attention-based reduction for the gradient pass, at initialisation;
* which k-mer patterns the data-driven start found.

Run it alone on the machine (torch's threads slow down several-fold beside another process)::

    python benchmarks/bench_training_diagnostics.py DATASET_DIR --updates 30
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from deeprc_core.dataset import open_dataset
from deeprc_core.model import DeepRC
from deeprc_core.simulate import read_truth
from deeprc_core.training import TrainingConfig, _Trainer


def _measure(dataset, truth_by_rep: dict[str, set], cfg: TrainingConfig, updates: int) -> str:
    trainer = _Trainer(dataset, cfg, None)
    train_idx, _ = trainer.split()
    torch.manual_seed(cfg.seed)
    model = DeepRC(trainer.config)
    encoded = trainer.prepare(model)
    t0 = time.perf_counter()
    trainer.seed(model, encoded, train_idx)
    seed_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    positives = train_idx[trainer.y[train_idx] == 1]
    offered, kept, t_select, t_grad = [], [], [], []
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: time the update without changing the model
    for _ in range(updates):
        batch = rng.choice(positives, size=cfg.batch_size, replace=False)
        t0 = time.perf_counter()
        selection = trainer.select(model, encoded, batch, rng)
        t1 = time.perf_counter()
        model.train()
        loss = trainer.forward(model, selection, len(batch)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t_grad.append(time.perf_counter() - t1)
        t_select.append(t1 - t0)
        for b, i in enumerate(batch):
            witnesses = truth_by_rep.get(dataset.names[int(i)], set())
            flags = np.array([s in witnesses for s in encoded.sequences(int(i))])
            offered.append(flags[selection.offered[b]].sum())
            kept.append(flags[selection.kept[b]].sum())
    offered, kept = np.array(offered), np.array(kept)
    seeds = ", ".join(f"{p['pattern']} (t={p['t']})" for p in trainer.seeded_patterns) or "none"
    return (
        f"  per update: ranking {1000 * np.median(t_select):.1f} ms + gradient pass {1000 * np.median(t_grad):.1f} ms "
        f"-> {1 / np.median(np.add(t_select, t_grad)):.1f} updates/s\n"
        f"  witnesses per positive repertoire: ranked {offered.mean():.2f} (none in {np.mean(offered == 0):.0%}), "
        f"kept for the gradient pass {kept.mean():.2f} (none in {np.mean(kept == 0):.0%})\n"
        f"  data-driven start ({seed_s:.1f} s): {seeds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder from `python -m deeprc_core simulate` (with truth.tsv)")
    parser.add_argument("--updates", type=int, default=30, help="updates to time")
    parser.add_argument("--target", default="disease")
    parser.add_argument("--positive", default="positive")
    args = parser.parse_args()

    dataset = open_dataset(args.dataset)
    truth = read_truth(f"{args.dataset}/truth.tsv")
    stems = truth["repertoire"].str.replace(r"\.(tsv|csv|txt)(\.gz)?$", "", regex=True)
    truth_by_rep = truth.groupby(stems)["sequence"].apply(set).to_dict()
    default = TrainingConfig(target=args.target, positive=args.positive)
    paper = replace(default, n_sequences=1000, top_fraction=0.1, full_softmax=False, seed_kernels=False)
    print(f"{args.dataset}: {len(dataset)} repertoires; torch threads {torch.get_num_threads()}")
    for name, cfg in (("paper's reduction (v0.1 defaults)", paper), ("current defaults", default)):
        print(name)
        print(_measure(dataset, truth_by_rep, cfg, args.updates))


if __name__ == "__main__":
    main()
