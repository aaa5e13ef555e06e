"""Regenerate everything under sample_data/ (run from the repository root).

    PYTHONPATH=. .venv/bin/python sample_data/make_sample_data.py

The dataset is the same as the CLI command
    python -m deeprc_core simulate --out sample_data/dataset --n-repertoires 80 --n-sequences 3000 \
        --motif GWQH YW.D --witness-rate 0.01 --positive-fraction 0.5 --format airr --chain TRB --seed 2024
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from deeprc_core import simulate as sim

ROOT = Path(__file__).resolve().parent

MOTIFS = ["GWQH", "YW.D"]
DATASET = sim.SimulationConfig(
    n_repertoires=80,
    n_sequences=3000,
    motifs=MOTIFS,
    witness_rate=0.01,
    substitution_prob=0.0,
    positive_fraction=0.5,
    chain="TRB",
    file_format="airr",
    compress=True,
    seed=2024,
)
SINGLES = [  # file name, positive?, format, config changes
    ("patient_A_airr.tsv", True, "airr", {"n_sequences": 5000, "seed": 101}),
    ("patient_B_immunoseq.tsv.gz", False, "immunoseq", {"n_sequences": 5000, "seed": 102}),
    # 1,500 clonotypes with smaller clones (Zipf exponent 3) -> about 2,000 cells, each with TRB and mostly TRA.
    ("patient_C_10x.csv", True, "10x", {"n_sequences": 1500, "count_exponent": 3.0, "seed": 103}),
]


def main() -> None:
    dataset_dir = ROOT / "dataset"
    shutil.rmtree(dataset_dir, ignore_errors=True)
    start = time.perf_counter()
    result = sim.simulate_dataset(dataset_dir, DATASET)
    print(
        f"dataset: {len(result.metadata)} repertoires, {len(result.truth)} witnesses, "
        f"pool {result.pool_size:,}, {time.perf_counter() - start:.1f} s"
    )

    single_dir = ROOT / "single"
    shutil.rmtree(single_dir, ignore_errors=True)
    single_dir.mkdir()
    labels, truths = [], []
    for name, positive, file_format, changes in SINGLES:
        start = time.perf_counter()
        truth = sim.write_single_repertoire(single_dir / name, replace(DATASET, **changes), positive, file_format)
        labels.append({"ID": name, "disease": "positive" if positive else "negative"})
        truths.append(truth)
        print(f"{name}: {len(truth)} witnesses, {time.perf_counter() - start:.1f} s")
    pd.DataFrame(labels).to_csv(single_dir / "labels.tsv", sep="\t", index=False, lineterminator="\n")
    pd.concat(truths, ignore_index=True).to_csv(single_dir / "truth.tsv", sep="\t", index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
