"""Benchmark: peak memory and time when a repertoire file is a gzip bomb (issue 11).

Each case runs in a fresh subprocess, so the peak RSS it prints is its own:

* ``bomb-2GB``: a few-MB gzip that inflates to 2 GB of AIRR rows (500 distinct junctions repeated), read
  with the library's default limits (1 GiB, 10 million rows): refused while it streams;
* ``bomb-200MB``: a gzip of a few hundred KB that inflates to 200 MB of the same rows: under the limits, so it
  is read (4.9 million rows merged into 500 distinct sequences);
* ``bomb-rows``: a gzip of 2 GB of one short junction per line (``list`` format, 330 million rows): stopped
  by the row limit;
* ``bomb-wide``: a gzip of 2 GB of AIRR rows carrying a 1,000-letter nucleotide column (2 million rows):
  stopped by the byte limit, its unused column never held;
* ``app-2GB``: the 2 GB bomb read with the app's upload limits (512 MB, 5 million rows);
* ``cli-2GB``: ``python -m deeprc_core predict`` on the 2 GB bomb with the shipped demo model (torch loaded);
* ``baseline``: the interpreter with the reader imported and nothing read, for scale.

Before issue 11: the 2 GB bomb raised MemoryError at 6.5 GB RSS in the CLI, the app refused it after
3.8 GB and 18 s, and the 200 MB one cost 2.2 GB. The target is <= 1 GB for every case at the default limits.

Usage: ``PYTHONPATH=. python benchmarks/bench_input_limits.py [--work /tmp/deeprc_bench_limits]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30

_CHILD = r"""
import json, resource, sys, time
case, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
from deeprc_core.errors import DeepRCError
from deeprc_core.io import read_repertoire
outcome = ""
if case != "baseline":
    kwargs = {"max_bytes": 512 << 20, "max_rows": 5_000_000} if case.startswith("app") else {}
    try:
        rep = read_repertoire(path, **kwargs)
        outcome = f"read: {rep.report.n_rows:,} rows -> {len(rep):,} sequences"
    except DeepRCError as exc:
        outcome = "refused: " + str(exc).split(". ")[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start, "peak_mb": peak}))
"""

_CLI = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
run = subprocess.run([sys.executable, "-m", "deeprc_core", "predict", "--model", sys.argv[1], sys.argv[2],
                      "--out", sys.argv[3], "--device", "cpu"], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
line = [l for l in run.stderr.splitlines() if l.startswith("error:")] or [run.stdout.strip()]
print(json.dumps({"outcome": f"exit {run.returncode}: " + line[-1].split(". ")[0],
                  "seconds": time.perf_counter() - start, "peak_mb": peak}))
"""


def _write_gzip(path: Path, block: bytes, header: bytes, total: int) -> None:
    """``header`` then ``block`` repeated up to ``total`` bytes, gzip-compressed in a stream (little memory)."""
    if path.exists():
        return
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(compressor.compress(header))
        for _ in range(total // len(block)):
            out.write(compressor.compress(block))
        out.write(compressor.flush())
    tmp.rename(path)


def _files(work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    rows = [
        f"CASS{''.join(rng.choice(letters, 7))}EQYF\t{rng.integers(1, 50)}\tTRBV5-1*01\tTRBJ2-7*01\tT\n"
        for _ in range(500)
    ]  # under 32 KB: gzip's window sees the repeat, as in a real bomb
    block = "".join(rows).encode()
    header = b"junction_aa\tduplicate_count\tv_call\tj_call\tproductive\n"
    files = {
        "2GB": work / "bomb_2GB.tsv.gz",
        "200MB": work / "bomb_200MB.tsv.gz",
        "rows": work / "bomb_rows.txt.gz",
        "wide": work / "bomb_wide.tsv.gz",
    }
    _write_gzip(files["2GB"], block, header, 2 * GiB)
    _write_gzip(files["200MB"], block, header, 200 << 20)
    _write_gzip(files["rows"], b"CASSF\n" * 10_000, b"CASSLGQF\n", 2 * GiB)
    nucleotides = "".join(rng.choice(list("ACGT"), 1000))
    wide = "".join(f"{nucleotides}\t{row}" for row in rows[:20]).encode()
    _write_gzip(files["wide"], wide, b"sequence_alignment\t" + header, 2 * GiB)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/deeprc_bench_limits", help="folder for the generated gzip files")
    args = parser.parse_args()
    files = _files(Path(args.work))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cases = [
        ("baseline", "", files["200MB"]),
        ("bomb-2GB", "library, default limits", files["2GB"]),
        ("bomb-200MB", "library, default limits", files["200MB"]),
        ("bomb-rows", "library, default limits", files["rows"]),
        ("bomb-wide", "library, default limits", files["wide"]),
        ("app-2GB", "app upload limits", files["2GB"]),
        ("cli-2GB", "predict with the demo model", files["2GB"]),
    ]
    print(f"{'case':<11} {'gzip MB':>8} {'inflated MB':>12} {'seconds':>8} {'peak RSS MB':>12}  outcome")
    worst = 0.0
    for case, what, path in cases:
        inflated = {"2GB": 2048, "200MB": 200, "rows": 2048, "wide": 2048}[path.stem.split("_")[1].split(".")[0]]
        if case == "cli-2GB":
            command = [
                sys.executable,
                "-c",
                _CLI,
                str(ROOT / "models" / "demo"),
                str(path),
                str(Path(args.work) / "p.tsv"),
            ]
        else:
            command = [sys.executable, "-c", _CHILD, case, str(path)]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout)
        if case != "baseline":
            worst = max(worst, result["peak_mb"])
        print(
            f"{case:<11} {path.stat().st_size / 2**20 if case != 'baseline' else 0:>8.1f} "
            f"{inflated if case != 'baseline' else 0:>12,} {result['seconds']:>8.1f} {result['peak_mb']:>12.0f}  "
            f"{result['outcome'] or what}"
        )
    print(f"\nworst peak RSS: {worst:.0f} MB ({'within' if worst <= 1024 else 'ABOVE'} the 1 GB target)")


if __name__ == "__main__":
    main()
