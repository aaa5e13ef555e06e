"""Sequence-logo rendering: DeepRC Explorer's :func:`~deeprc_core.plots.logo_figure` against ``logomaker.Logo``
drawing on the same pyplot-free :class:`~matplotlib.figure.Figure`.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_logo.py [--repeats 10] [--dpi 150]

For each matrix (``positions x 20`` residues; dense = every residue non-zero and signed, as a kernel weight
logo; sparse = four residues per position, as an attribution logo of a few sequences) it prints the median
milliseconds of building the figure alone and of building it and saving it as PNG (what ``st.pyplot`` does),
for both renderers, and the ratio logomaker / ours. Timings are wall-clock medians on whatever else the machine
is running; compare ratios, not absolute figures, between machines.
"""

from __future__ import annotations

import argparse
import statistics
import time

import logomaker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from deeprc_core.io import AMINO_ACIDS
from deeprc_core.plots import figure_to_bytes, logo_figure


def matrix(positions: int, dense: bool, seed: int = 0) -> pd.DataFrame:
    """A ``(positions, 20)`` logomaker matrix of signed values."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(positions, len(AMINO_ACIDS)))
    if not dense:
        keep = np.zeros_like(values, dtype=bool)
        for row in keep:
            row[rng.choice(len(AMINO_ACIDS), 4, replace=False)] = True
        values = np.where(keep, values, 0.0)
    return pd.DataFrame(values, columns=list(AMINO_ACIDS))


def logomaker_figure(frame: pd.DataFrame) -> Figure:
    """The same logo drawn by ``logomaker.Logo`` on a pyplot-free figure of the same size."""
    fig = Figure(figsize=(max(3.0, 0.45 * len(frame) + 1.0), 2.4), layout="constrained")
    logomaker.Logo(frame, ax=fig.add_subplot(), color_scheme="chemistry", font_name="DejaVu Sans", width=0.9)
    return fig


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: glyph caches, fonts
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args()
    print(f"median of {args.repeats} runs, ms (PNG at {args.dpi} dpi)")
    print(f"{'matrix':<16}{'step':<14}{'ours':>9}{'logomaker':>11}{'ratio':>8}")
    for positions in (20, 30):
        for dense in (True, False):
            frame = matrix(positions, dense)
            name = f"{positions}x20 {'dense' if dense else 'sparse'}"
            for step, wrap in (
                ("figure", lambda f: f),
                ("figure + PNG", lambda f: lambda: figure_to_bytes(f(), "png", dpi=args.dpi)),
            ):
                ours = median_ms(wrap(lambda frame=frame: logo_figure(frame)), args.repeats)
                theirs = median_ms(wrap(lambda frame=frame: logomaker_figure(frame)), args.repeats)
                print(f"{name:<16}{step:<14}{ours:9.1f}{theirs:11.1f}{theirs / ours:8.1f}")


if __name__ == "__main__":
    main()
