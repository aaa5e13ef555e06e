"""Benchmark: cohorts larger than RAM, distributed training and cohort scoring (issue 13).

Simulates a cohort of ``--repertoires`` AIRR files of ``--sequences`` receptors each (half of them carry a
4-mer motif in 0.1 % of their receptors), then, each step in fresh processes so each peak RSS is its own:

* ``build``: converts the folder into the HDF5 cache (one file at a time); prints receptors/s and peak RSS;
* ``train``: ``--updates`` updates under ``torchrun`` with ``--ranks`` Gloo ranks on this machine, each rank
  reading per-repertoire slices of the cache (``in_memory=False``, as for a cohort larger than RAM); prints
  each rank's peak RSS and the seconds per update;
* ``score``: ``predict_files`` over ``--score-files`` files (the cohort's files, reused in turn when there are
  fewer) against one file at a time, as receptors/s, in one process; then the command line under ``torchrun``
  with 1 and ``--ranks`` ranks over the same files, and the speed-up. Every process scores with ``--threads``
  torch threads (default 1: beside the thread that reads the next file, or beside any other busy process,
  two OpenMP threads on a 2-core machine spin against each other and score up to 30x slower).

Each step prints the load average before it: another busy process on the machine skews every figure.

Measured at the issue's sizes on a 2-core CPU VM (no GPU), torch 2.13:

* build: 100,000,000 receptors in 44 s = 2.27 million receptors/s, peak RSS 248 MB (cache 2.6 GB);
* train: 100 updates on 2 Gloo ranks x 1 thread, peak RSS 1.21 GB (rank 0) and 1.29 GB (rank 1); 0.08 s per
  update; the data-driven start (k-mer seeding and the linear probe over 800 training repertoires, done on
  every rank) takes about 105 s of the 2 min. Before the heap trim in ``training._Encoded``: 6.7 GB on rank 0;
* score, 200 files x 100k, 1 thread: 0.90 million receptors/s one file at a time, 1.31 million streamed
  (145 %), peak RSS 485 MB; ``predict`` under torchrun: 18.8 s on 1 rank, 14.7 s on 2 ranks (1.28x; the one
  rank already reads on the second core while it scores), identical tables.

The issue's sizes are the defaults (1,000 x 100,000 receptors, 200 files to score): 4 GB of text on disk.
Targets: build and train <= 2 GB peak RSS (per rank); streaming >= 80 % of the one-file rate.

Usage: ``python benchmarks/bench_scale.py [--repertoires 1000] [--sequences 100000] [--score-files 200]
[--updates 100] [--ranks 2] [--work /tmp/deeprc_bench_scale] [--steps build,train,score]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LETTERS = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
V_GENES = [b"TRBV5-1", b"TRBV7-9", b"TRBV6-5", b"TRBV2-1"]  # equal widths: rows are built as one byte matrix
J_GENES = [b"TRBJ2-7", b"TRBJ1-1", b"TRBJ2-1"]
MOTIF = b"SLGQ"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_repertoire(path: Path, n: int, positive: bool, rng: np.random.Generator) -> None:
    """``n`` AIRR rows (junction_aa, duplicate_count, v_call, j_call, productive) without a Python loop per row:
    every row is a fixed-width byte row whose unused junction columns are masked out."""
    width = 17
    lengths = rng.integers(11, width + 1, n)
    junction = LETTERS[rng.integers(0, 20, (n, width))]
    junction[:, 0] = ord("C")
    junction[np.arange(n), lengths - 1] = ord("F")
    if positive:  # the motif in 0.1 % of the receptors, away from the ends
        carriers = rng.choice(n, max(1, n // 1000), replace=False)
        junction[carriers[:, None], 4 + np.arange(len(MOTIF))] = np.frombuffer(MOTIF, dtype=np.uint8)
    count = (ord("1") + rng.integers(0, 9, n)).astype(np.uint8)[:, None]
    v = np.frombuffer(b"".join(V_GENES), dtype=np.uint8).reshape(len(V_GENES), -1)[rng.integers(0, len(V_GENES), n)]
    j = np.frombuffer(b"".join(J_GENES), dtype=np.uint8).reshape(len(J_GENES), -1)[rng.integers(0, len(J_GENES), n)]
    tab = np.full((n, 1), ord("\t"), dtype=np.uint8)
    tail = np.frombuffer(b"\tT\n", dtype=np.uint8)[None].repeat(n, axis=0)
    rows = np.hstack([junction, tab, count, tab, v, tab, j, tail])
    keep = np.ones(rows.shape, dtype=bool)
    keep[:, :width] = np.arange(width)[None] < lengths[:, None]
    with open(path, "wb") as out:
        out.write(b"junction_aa\tduplicate_count\tv_call\tj_call\tproductive\n")
        out.write(rows[keep].tobytes())


def simulate(work: Path, n_repertoires: int, n_sequences: int) -> Path:
    """The cohort folder (reused when it already has these sizes)."""
    folder = work / f"cohort_{n_repertoires}x{n_sequences}"
    if (folder / "metadata.tsv").is_file():
        return folder
    (folder / "repertoires").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    lines = ["ID\tdisease"]
    for i in range(n_repertoires):
        positive = i % 2 == 1
        write_repertoire(folder / "repertoires" / f"rep_{i:05d}.tsv", n_sequences, positive, rng)
        lines.append(f"rep_{i:05d}.tsv\t{'positive' if positive else 'negative'}")
    (folder / "metadata.tsv").write_text("\n".join(lines) + "\n")
    print(
        f"simulated {n_repertoires} x {n_sequences:,} receptors in {time.perf_counter() - start:.0f} s", file=sys.stderr
    )
    return folder


# ----------------------------------------------------------------------------------------------------------
# Steps, each run in processes of their own


def child_build(folder: Path) -> dict:
    from deeprc_core.dataset import build_cache

    start = time.perf_counter()
    cache = build_cache(folder, rebuild=True)
    seconds = time.perf_counter() - start
    import h5py

    with h5py.File(cache, "r") as f:
        receptors = int(f["rep_offsets"][-1])
    return {"receptors": receptors, "seconds": seconds, "receptors_per_s": receptors / seconds, "peak_mb": _peak_mb(),
            "cache_mb": cache.stat().st_size / 2**20}  # fmt: skip


def child_train(folder: Path, updates: int, model_dir: Path) -> dict | None:
    """One rank under torchrun (rank 0 returns the figures of all ranks)."""
    import torch

    from deeprc_core import distributed
    from deeprc_core.checkpoint import save_model
    from deeprc_core.dataset import RepertoireDataset, build_cache
    from deeprc_core.training import TrainingConfig, train

    ctx = distributed.init("cpu")
    cache = ctx.main_first(lambda: build_cache(folder))  # rank 0 builds it if needed, the others then reuse it
    dataset = RepertoireDataset(cache, in_memory=False)  # slices, as for a cohort larger than RAM
    config = TrainingConfig(
        target="disease", positive="positive", max_updates=updates, max_minutes=None, batch_size=4,
        n_sequences=10_000, eval_every=updates, eval_max_sequences=10_000, min_updates=updates, reference=False,
        seed=0, device="cpu",
    )  # fmt: skip
    times = []
    result = train(dataset, config, on_update=lambda p: times.append(time.perf_counter()))
    # on_update runs on rank 0 only: its clock gives the pace of the updates (after the data-driven start)
    pace = (times[-1] - times[0]) / max(len(times) - 1, 1) if times else None
    if ctx.is_main:
        save_model(result.model, model_dir, overwrite=True)
    figures = ctx.gather_to_main([{"rank": ctx.rank, "peak_mb": _peak_mb()}])
    threads = torch.get_num_threads()
    distributed.shutdown()
    if figures is None:
        return None
    return {"ranks": figures, "seconds_per_update": pace, "threads_per_rank": threads,
            "val_auc": result.metrics.get("auc"), "updates": result.state["update"]}  # fmt: skip


def child_score(files: list[str], model_dir: Path, threads: int) -> dict:
    import torch

    from deeprc_core.checkpoint import load_model
    from deeprc_core.scoring import predict_files

    torch.set_num_threads(threads)
    model = load_model(model_dir, "cpu")
    predict_files(model, files[:1])  # warm-up: lookup tables, allocator
    singles = files[: min(5, len(files))]  # one file at a time (read, then score): nothing to overlap
    start = time.perf_counter()
    n_single = sum(int(predict_files(model, [f])["n_sequences"].sum()) for f in singles)
    one_rate = n_single / (time.perf_counter() - start)
    start = time.perf_counter()
    many = predict_files(model, files)
    seconds = time.perf_counter() - start
    rate = int(many["n_sequences"].sum()) / seconds
    return {"files": len(files), "receptors": int(many["n_sequences"].sum()), "seconds": seconds,
            "one_file_receptors_per_s": one_rate, "receptors_per_s": rate, "ratio": rate / one_rate,
            "peak_mb": _peak_mb()}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Driver


def _run_child(argv: list[str], env: dict | None = None, torchrun: int = 0) -> dict:
    command = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)]
        if torchrun
        else [sys.executable]
    )
    run = subprocess.run([*command, __file__, *argv], capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"step failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _cli_predict(files: list[str], model_dir: Path, out: Path, ranks: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", "deeprc_core", "predict", "--model", str(model_dir), *files, "--out", str(out), "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"predict under torchrun failed:\n{run.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repertoires", type=int, default=1000)
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--score-files", type=int, default=200)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process when scoring")
    parser.add_argument("--work", type=Path, default=Path("/tmp/deeprc_bench_scale"))
    parser.add_argument("--steps", default="build,train,score")
    parser.add_argument("--child", choices=["build", "train", "score"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.work / f"cohort_{args.repertoires}x{args.sequences}"
    model_dir = args.work / "model"
    files = sorted(str(p) for p in (folder / "repertoires").glob("*.tsv")) if folder.is_dir() else []
    scored = [files[k % len(files)] for k in range(args.score_files)] if files else []
    if args.child == "build":
        print(json.dumps(child_build(folder)))
        return
    if args.child == "train":
        figures = child_train(folder, args.updates, model_dir)
        if figures is not None:
            print(json.dumps(figures))
        return
    if args.child == "score":
        print(json.dumps(child_score(scored, model_dir, args.threads)))
        return

    sizes = ["--repertoires", str(args.repertoires), "--sequences", str(args.sequences), "--work", str(args.work)]
    steps = args.steps.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    folder = simulate(args.work, args.repertoires, args.sequences)
    files = sorted(str(p) for p in (folder / "repertoires").glob("*.tsv"))
    scored = [files[k % len(files)] for k in range(args.score_files)]
    cores = os.cpu_count() or 1
    print(f"cohort: {args.repertoires} repertoires x {args.sequences:,} receptors; {cores} CPU cores")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = lambda: f"load average before: {os.getloadavg()[0]:.1f}"  # noqa: E731 - other work skews every figure
    if "build" in steps:
        print(load())
        b = _run_child(["--child", "build", *sizes], env)
        print(f"build cache: {b['receptors']:,} receptors in {b['seconds']:.0f} s = {b['receptors_per_s']:,.0f} receptors/s, "
              f"peak RSS {b['peak_mb']:,.0f} MB, cache {b['cache_mb']:,.0f} MB")  # fmt: skip
    if "train" in steps:
        print(load())
        rank_env = {**env, "OMP_NUM_THREADS": str(max(1, cores // args.ranks))}
        t = _run_child(["--child", "train", "--updates", str(args.updates), *sizes], rank_env, torchrun=args.ranks)
        peaks = ", ".join(f"rank {r['rank']} {r['peak_mb']:,.0f} MB" for r in t["ranks"])
        print(f"train: {t['updates']} updates on {args.ranks} ranks x {t['threads_per_rank']} threads, "
              f"{t['seconds_per_update']:.2f} s per update after the start; peak RSS {peaks}; val AUC {t['val_auc']:.3f}")  # fmt: skip
    if "score" in steps:
        print(load())
        s = _run_child(
            ["--child", "score", "--score-files", str(args.score_files), "--threads", str(args.threads), *sizes], env
        )
        print(f"score (one process, {args.threads} thread(s)): 1 file at a time {s['one_file_receptors_per_s']:,.0f} receptors/s; "
              f"{s['files']} files {s['receptors_per_s']:,.0f} receptors/s = {100 * s['ratio']:.0f} % of it; "
              f"peak RSS {s['peak_mb']:,.0f} MB")  # fmt: skip
        receptors = s["receptors"]
        print(load())
        one = _cli_predict(scored, model_dir, args.work / "predict_1.tsv", 1, args.threads)
        many = _cli_predict(scored, model_dir, args.work / f"predict_{args.ranks}.tsv", args.ranks, args.threads)
        same = (args.work / "predict_1.tsv").read_text() == (args.work / f"predict_{args.ranks}.tsv").read_text()
        print(f"predict under torchrun, {len(scored)} files (wall time incl. start-up): 1 rank x {args.threads} thread(s) "
              f"{one:.1f} s ({receptors / one:,.0f} receptors/s); {args.ranks} ranks x {args.threads} "
              f"thread(s) {many:.1f} s ({receptors / many:,.0f} receptors/s); speed-up {one / many:.2f}x; "
              f"tables identical: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
