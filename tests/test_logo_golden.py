"""The hand-written logo renderer (:func:`deeprc_core.plots.logo_figure`) against a committed reference image,
and its colours against ``logomaker.Logo``'s.

The reference ``tests/data/logo_golden.png`` is the logo of :func:`golden_matrix` saved as PNG at
:data:`DPI`. After an intended change to the renderer, look at the new image and regenerate it with::

    PYTHONPATH=. .venv/bin/python tests/test_logo_golden.py

On a mismatch the test writes the image it got into its temporary directory and names both files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.image import imread

from deeprc_core import plots
from deeprc_core.io import AMINO_ACIDS

GOLDEN = Path(__file__).parent / "data" / "logo_golden.png"
DPI = 60
TOLERANCE = 2.0  # RMS difference, 0-255 scale: antialiasing noise stays far below, a moved or recoloured letter above


def golden_matrix() -> pd.DataFrame:
    """Six positions: stacks of two and three letters above the axis, two below it, one empty column; the
    window (positions 1-3) shaded as an attribution logo's."""
    values = np.zeros((6, len(AMINO_ACIDS)))
    cells = {
        (0, "C"): 1.0,
        (1, "S"): 0.6,
        (1, "L"): 1.4,
        (2, "G"): 2.0,
        (2, "D"): 0.5,
        (2, "K"): 0.3,
        (3, "Q"): 1.2,
        (3, "E"): -0.8,
        (4, "W"): -1.0,
        (4, "H"): -0.4,
    }
    for (position, residue), value in cells.items():
        values[position, AMINO_ACIDS.index(residue)] = value
    matrix = pd.DataFrame(values, columns=list(AMINO_ACIDS))
    matrix.attrs["window"] = (1, 3)
    return matrix


def render(matrix: pd.DataFrame) -> np.ndarray:
    """RGBA pixels (0-1) of the logo saved as PNG at :data:`DPI`."""
    return imread(io.BytesIO(plots.figure_to_bytes(plots.logo_figure(matrix, title="golden"), "png", dpi=DPI)))


def rms(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square pixel difference on a 0-255 scale (infinite when the sizes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.sqrt(np.mean((a - b) ** 2)) * 255)


def test_logo_matches_the_reference_image(tmp_path):
    got = render(golden_matrix())
    difference = rms(got, imread(GOLDEN))
    if difference > TOLERANCE:
        actual = tmp_path / "logo_actual.png"
        actual.write_bytes(plots.figure_to_bytes(plots.logo_figure(golden_matrix(), title="golden"), "png", dpi=DPI))
        raise AssertionError(
            f"The logo differs from {GOLDEN} by RMS {difference:.2f} (tolerance {TOLERANCE}); compare it with "
            f"{actual}. If the change is intended, regenerate the reference (see this file's docstring)."
        )


def test_reference_comparison_catches_a_wrong_letter_or_colour():
    golden = imread(GOLDEN)
    swapped = golden_matrix()
    swapped[["G", "D"]] = swapped[["D", "G"]].to_numpy()  # the tallest letter of column 2 becomes a short one
    assert rms(render(swapped), golden) > 5 * TOLERANCE
    recoloured = plots._LETTER_COLOURS.copy()
    try:
        plots._LETTER_COLOURS["G"] = (1.0, 0.0, 0.0)
        assert rms(render(golden_matrix()), golden) > 5 * TOLERANCE
    finally:
        plots._LETTER_COLOURS.update(recoloured)


def test_letter_colours_are_logomakers_chemistry_scheme():
    import logomaker

    matrix = golden_matrix()
    logo = logomaker.Logo(matrix, ax=Figure().add_subplot(), color_scheme=plots.LOGO_COLORS)
    for residue in AMINO_ACIDS:
        assert tuple(logo.glyph_df.loc[0, residue].color) == plots._LETTER_COLOURS[residue], residue


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(plots.figure_to_bytes(plots.logo_figure(golden_matrix(), title="golden"), "png", dpi=DPI))
    print(f"wrote {GOLDEN}")
