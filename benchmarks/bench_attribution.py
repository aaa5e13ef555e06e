"""Benchmark: integrated gradients for the 100 highest-attention sequences of a repertoire (target <= 3 s).

Prints, for the default architecture (32 kernels of width 9) on a simulated repertoire:

* the time to score the repertoire (fixed attention context, fast path) for scale;
* ``attribute_sequences`` for ``--top`` sequences and ``--steps`` steps given the repertoire's cached
  representations (fixed context + IG + float64 endpoints), at a few sequence batch sizes, and once more
  with the repertoire's scoring included; best of ``--repeats``;
* the ratio to the 3 s target, and the median and largest relative convergence delta.

Usage: ``PYTHONPATH=. python benchmarks/bench_attribution.py [--n 100000] [--top 100] [--steps 50]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from deeprc_core.attribution import attribute_sequences
from deeprc_core.io import AMINO_ACIDS, ReadReport, Repertoire, encode_sequences
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.scoring import repertoire_representation, score_repertoire

ROOT = Path(__file__).resolve().parents[1]

TARGET_SECONDS = 3.0


def _repertoire(n: int, seed: int) -> Repertoire:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(11, 19, size=n)
    letters = np.array(list(AMINO_ACIDS))
    sequences = ["CASS" + "".join(rng.choice(letters, m - 5)) + "F" for m in lengths]
    codes, lengths = encode_sequences(sequences)
    blank = np.array([""] * n, dtype=object)
    return Repertoire(
        "bench", np.asarray(sequences, dtype=object), codes, lengths, np.ones(n), blank, blank, ReadReport("bench")
    )


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="sequences in the repertoire")
    parser.add_argument("--top", type=int, default=100, help="sequences to attribute")
    parser.add_argument("--steps", type=int, default=50, help="integration steps")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = DeepRC(DeepRCConfig()).eval()
    repertoire = _repertoire(args.n, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; repertoire of {args.n:,} sequences")
    print(
        f"model: {model.config.n_kernels} kernels of width {model.config.kernel_size}, {model.config.n_heads} head(s)"
    )

    attribute_sequences(model, repertoire, top=4, n_steps=4)  # warm-up (allocators, captum import)
    score_s, _ = _best(lambda: score_repertoire(model, repertoire), args.repeats)
    print(f"score repertoire (fast path, for scale):           {score_s:7.3f} s")
    z = repertoire_representation(model, repertoire)  # what a page has cached after scoring
    result = None
    for batch_size in (32, 64, 128):
        seconds, result = _best(
            lambda b=batch_size: attribute_sequences(
                model, repertoire, top=args.top, n_steps=args.steps, batch_size=b, representation=z
            ),
            args.repeats,
        )
        print(
            f"IG top {args.top}, {args.steps} steps, batch {batch_size:3d} (scored):  {seconds:7.3f} s"
            f"  ({seconds / TARGET_SECONDS:.2f} x the {TARGET_SECONDS:.0f} s target)"
        )
    seconds, _ = _best(lambda: attribute_sequences(model, repertoire, top=args.top, n_steps=args.steps), args.repeats)
    print(f"IG top {args.top}, {args.steps} steps, scoring included:     {seconds:7.3f} s")
    rel = result.relative_deltas()
    print(f"relative convergence delta: median {np.median(rel):.2e}, max {rel.max():.2e}")
    top_rel = rel[: min(10, len(rel))]
    print(f"relative delta of the 10 most attended:  max {top_rel.max():.2e}")


if __name__ == "__main__":
    main()
