"""Benchmark: reading + encoding, and end-to-end scoring of a 1,000,000-sequence repertoire.

Prints figures and ratios measured in the same run:

* pandas ``read_csv`` of the file (for scale), and ``read_repertoire`` (read + clean + encode);
* end to end (read file -> encode -> embed -> attention -> probability) with the fast lookup-table path,
  and with the dense reference (one-hot float tensor + ``Conv1d``, as the original DeepRC), each in a fresh
  subprocess so its peak RSS is its own;
* agreement of the two paths; CUDA figures when a GPU is present.

Usage: ``PYTHONPATH=. python benchmarks/bench_scoring.py [--n 1000000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deeprc_core.io import AMINO_ACIDS, read_repertoire

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
import torch
from deeprc_core.io import read_repertoire
from deeprc_core.model import DeepRC, DeepRCConfig, resolve_device
from deeprc_core.scoring import score_repertoire
path, mode, device = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
model = DeepRC(DeepRCConfig()).to(resolve_device(device)).eval()
if device == "cuda":  # warm-up so CUDA context creation is not timed
    warm = read_repertoire(path, max_rows=None)
    score_repertoire(model, warm); torch.cuda.synchronize()
start = time.perf_counter()
rep = read_repertoire(path)
if mode == "fast":
    score = score_repertoire(model, rep)
    prob = float(score.prediction)
else:
    with torch.inference_mode():
        codes = torch.as_tensor(rep.codes); lengths = torch.as_tensor(rep.lengths)
        emb = model.embed_dense(codes.to(model.device), lengths.to(model.device))
        out, _, _ = model.outputs_from_representation(model.represent(emb))
        prob = float(torch.sigmoid(out[0]))
if device == "cuda":
    torch.cuda.synchronize()
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "n": len(rep), "probability": prob,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_file(path: Path, n: int, seed: int = 0) -> None:
    """A realistic-sized AIRR file: junctions of 10-20 residues starting with C, ending with F/W."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 21, n)
    letters = np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)
    raw = letters[rng.integers(0, 20, (n, 20))]
    raw[:, 0] = ord("C")
    raw[np.arange(n), lengths - 1] = ord("F")
    raw[np.arange(20)[None, :] >= lengths[:, None]] = 0
    junctions = raw.view("S20").ravel().astype(str)
    pd.DataFrame(
        {
            "sequence_id": np.arange(n),
            "junction_aa": junctions,
            "duplicate_count": rng.zipf(2.2, n).clip(max=100_000),
            "v_call": rng.choice(["TRBV5-1*01", "TRBV20-1*01", "TRBV7-9*01", "TRBV28*01"], n),
            "j_call": rng.choice(["TRBJ2-7*01", "TRBJ1-1*01", "TRBJ2-1*01"], n),
            "productive": "T",
        }
    ).to_csv(path, sep="\t", index=False)


def child(path: Path, mode: str, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode, device],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="sequences in the repertoire")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (best is reported)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "repertoire.tsv"
        make_file(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"file: {args.n:,} rows, {size_mb:.0f} MB; torch threads: {torch.get_num_threads()}")
        t_pandas = best_of(lambda: pd.read_csv(path, sep="\t"), args.repeats)
        t_read = best_of(lambda: read_repertoire(path), args.repeats)
        print(f"pandas read_csv (reference):      {t_pandas:6.2f} s")
        print(f"read_repertoire (read+clean+encode): {t_read:6.2f} s  ({args.n / t_read / 1e6:.2f} M rows/s)")

        fast = min((child(path, "fast", "cpu") for _ in range(args.repeats)), key=lambda r: r["seconds"])
        dense = child(path, "dense", "cpu")
        print(
            f"end to end, fast path (CPU):  {fast['seconds']:6.2f} s, peak RSS {fast['peak_rss_mb']:6.0f} MB, "
            f"{fast['n'] / fast['seconds'] / 1e3:8.0f} k sequences/s"
        )
        print(
            f"end to end, dense reference:  {dense['seconds']:6.2f} s, peak RSS {dense['peak_rss_mb']:6.0f} MB, "
            f"{dense['n'] / dense['seconds'] / 1e3:8.0f} k sequences/s"
        )
        print(
            f"speed-up fast vs dense: {dense['seconds'] / fast['seconds']:.1f}x; "
            f"|probability difference|: {abs(fast['probability'] - dense['probability']):.2e}"
        )

        from deeprc_core.model import DeepRC, DeepRCConfig

        torch.manual_seed(0)
        model = DeepRC(DeepRCConfig()).eval()
        rep = read_repertoire(path)
        sub = slice(0, min(100_000, args.n))
        with torch.inference_mode():
            a = model.embed(rep.codes[sub], rep.lengths[sub])
            b = model.embed_dense(torch.as_tensor(rep.codes[sub]), torch.as_tensor(rep.lengths[sub]))
        print(f"max |fast - dense| embedding difference on {a.shape[0]:,} sequences: {(a - b).abs().max().item():.2e}")
        if torch.cuda.is_available():
            gpu = child(path, "fast", "cuda")
            print(
                f"end to end, fast path (CUDA, {torch.cuda.get_device_name()}): {gpu['seconds']:.2f} s, "
                f"{gpu['n'] / gpu['seconds'] / 1e3:.0f} k sequences/s"
            )
        else:
            print("no GPU here: CUDA figures not measured")


if __name__ == "__main__":
    main()
