"""Start-up cost of the command line: whole-process ``predict`` on one small repertoire against a bare
``python -c "import torch"``, side by side in one run (best of ``--repeats``), plus which heavy libraries the
``predict`` process imported. Run it alone on the machine::

    python benchmarks/bench_startup.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "single" / "patient_A_airr.tsv"
_PREDICT = (
    "import sys, runpy; sys.argv = ['deeprc', 'predict', '--model', {model!r}, {file!r}, '--out', {out!r}]\n"
    "try:\n    runpy.run_module('deeprc_core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    "print('heavy:' + ','.join(m for m in ('captum', 'sklearn', 'matplotlib', 'plotly', 'streamlit', 'olga') if m in sys.modules))"
)


def _best(command: list[str], repeats: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
        best = min(best, time.perf_counter() - start)
        lines = [line for line in done.stdout.splitlines() if line.startswith("heavy:")]
        out = lines[-1].removeprefix("heavy:") if lines else ""
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        code = _PREDICT.format(model=str(ROOT / "models" / "demo"), file=str(SAMPLE), out=str(Path(tmp) / "p.tsv"))
        torch_s, _ = _best([sys.executable, "-c", "import torch"], args.repeats)
        predict_s, heavy = _best([sys.executable, "-c", code], args.repeats)
    print(f'python -c "import torch":              {torch_s:5.2f} s')
    print(f"predict on one 3,000-sequence file:     {predict_s:5.2f} s  ({predict_s / torch_s:.2f}x; target <= 1.5x)")
    print(
        f"heavy libraries imported by predict:    {heavy or 'none of captum, sklearn, matplotlib, plotly, streamlit, olga'}"
    )


if __name__ == "__main__":
    main()
