"""Training speed: updates per second on a quiet machine and beside one CPU-bound process.

For a dataset folder (e.g. one written by ``python -m deeprc_core simulate``), each measurement runs in a fresh
process that trains for ``--updates`` updates (no early stopping, no evaluation in between, no references)
and reports updates/s, for:

* the v0.1 recipe (1,000 sequences sampled per repertoire, top 10 % kept, softmax over the kept ones, random
  start) and the current defaults;
* torch's default thread count and one thread;
* a quiet machine and one ``yes > /dev/null`` process running beside it.

It also trains the defaults twice with the same seed and checks the weights are identical (determinism on
CPU). Run it alone on the machine::

    python benchmarks/bench_training_speed.py DATASET_DIR --updates 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys, time, hashlib
import torch
from deeprc_core.dataset import open_dataset
from deeprc_core.config import TrainingConfig
from deeprc_core.training import train
path, recipe, threads, updates = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
common = dict(target="disease", positive="positive", max_updates=updates, max_minutes=None, eval_every=updates,
              min_updates=updates, reference=False, device="cpu")
if recipe == "v0.1":
    config = TrainingConfig(**common, n_sequences=1000, top_fraction=0.1, full_softmax=False, seed_kernels=False,
                            warmup_updates=0, fine_tune_factor=1.0, use_genes=False)
else:
    config = TrainingConfig(**common)
ds = open_dataset(path)
times = []
start = time.perf_counter()
result = train(ds, config, on_update=lambda p: times.append(time.perf_counter()))
digest = hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in result.model.state_dict().values())).hexdigest()
steady = times[len(times) // 5 :]  # skip the start (seeding, the first allocations)
rate = (len(steady) - 1) / (steady[-1] - steady[0])
print(json.dumps({"updates_per_s": rate, "threads": torch.get_num_threads(), "digest": digest}))
"""


def _run(dataset: str, recipe: str, threads: int, updates: int, busy: bool) -> dict:
    hog = subprocess.Popen(["sh", "-c", "yes > /dev/null"]) if busy else None
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, dataset, recipe, str(threads), str(updates)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if hog is not None:
            subprocess.run(["pkill", "-P", str(hog.pid)], check=False)
            hog.kill()
            hog.wait()
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder with metadata.tsv (column disease, positive/negative)")
    parser.add_argument("--updates", type=int, default=300, help="updates per measurement")
    args = parser.parse_args()
    dataset = str(Path(args.dataset))
    rows = []
    for recipe in ("v0.1", "default"):
        for threads in (0, 1):
            quiet = _run(dataset, recipe, threads, args.updates, busy=False)
            busy = _run(dataset, recipe, threads, args.updates, busy=True)
            rows.append((recipe, quiet["threads"], quiet["updates_per_s"], busy["updates_per_s"]))
            print(
                f"{recipe:8s} {quiet['threads']} thread(s): quiet {quiet['updates_per_s']:6.1f} updates/s, "
                f"beside one busy process {busy['updates_per_s']:6.1f} updates/s "
                f"({busy['updates_per_s'] / quiet['updates_per_s']:.0%} of quiet)",
                flush=True,
            )
    again = [_run(dataset, "default", 1, min(args.updates, 100), busy=False)["digest"] for _ in range(2)]
    print(f"same seed twice, identical weights: {again[0] == again[1]}")


if __name__ == "__main__":
    main()
