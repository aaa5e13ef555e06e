"""Count k-mers and gapped k-mers of encoded sequences: the features behind the k-mer baseline and the
data-driven start of the CNN kernels.

A *shape* is a tuple of residue offsets starting at 0: ``(0, 1, 2, 3)`` is a contiguous 4-mer, ``(0, 3, 4)``
a gapped 3-residue pattern such as ``S..NE``. A pattern of a shape is coded as ``sum(residue_j * 20**j)``
over its residues (codes as in :data:`deeprc_core.io.AMINO_ACIDS`), so each shape has ``20**len(shape)``
patterns and counting is one ``bincount`` over all windows of all sequences.
"""

from __future__ import annotations

import numpy as np

from deeprc_core.io import AMINO_ACIDS, N_AMINO_ACIDS

Shape = tuple[int, ...]

CONTIGUOUS_3: Shape = (0, 1, 2)
CONTIGUOUS_4: Shape = (0, 1, 2, 3)
# every 3-residue pattern spanning at most 5 positions, and contiguous 4-mers: motifs with one or two wildcards
SEEDING_SHAPES: tuple[Shape, ...] = ((0, 1, 2), (0, 1, 3), (0, 2, 3), (0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 1, 2, 3))


def n_patterns(shape: Shape) -> int:
    """Number of distinct patterns of a shape (``20 ** residues``)."""
    return N_AMINO_ACIDS ** len(shape)


def pattern_residues(shape: Shape, code: int) -> tuple[int, ...]:
    """The residue codes of a pattern, one per offset of its shape (the inverse of its code)."""
    residues = []
    for _ in shape:
        residues.append(code % N_AMINO_ACIDS)
        code //= N_AMINO_ACIDS
    return tuple(residues)


def pattern_code(residues: tuple[int, ...]) -> int:
    """The code of a pattern from its residue codes (the inverse of :func:`pattern_residues`)."""
    return sum(int(r) * N_AMINO_ACIDS**j for j, r in enumerate(residues))


def pattern_string(shape: Shape, code: int) -> str:
    """A pattern as text, ``.`` for a wildcard position: ``(0, 3, 4)`` with S, N, E -> ``S..NE``."""
    chars = ["."] * (shape[-1] + 1)
    for offset, residue in zip(shape, pattern_residues(shape, code)):
        chars[offset] = AMINO_ACIDS[residue]
    return "".join(chars)


def _windows(codes: np.ndarray, lengths: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Pattern codes of every window of ``shape`` ``(N, windows)`` and which windows lie inside their sequence."""
    span = shape[-1] + 1
    n_windows = max(codes.shape[1] - span + 1, 0) if len(codes) else 0
    value = np.zeros((len(codes), n_windows), dtype=np.int64)
    for j, offset in enumerate(shape):
        value += codes[:, offset : offset + n_windows].astype(np.int64) * N_AMINO_ACIDS**j
    valid = np.arange(n_windows)[None, :] + span <= np.asarray(lengths)[:, None]  # (N, windows)
    return value, valid


def window_codes(codes: np.ndarray, lengths: np.ndarray, shape: Shape) -> np.ndarray:
    """Pattern codes of every window of ``shape`` inside every sequence (1-D, padding windows dropped).

    ``codes`` is ``(N, W)`` residue codes padded with ``PAD``; ``lengths`` is ``(N,)``.
    """
    value, valid = _windows(codes, lengths, shape)
    return value[valid]  # residues inside a sequence are never PAD


def carries(codes: np.ndarray, lengths: np.ndarray, shape: Shape, code: int) -> np.ndarray:
    """Which sequences ``(N,)`` hold the pattern ``code`` of ``shape`` somewhere inside them."""
    value, valid = _windows(codes, lengths, shape)
    return ((value == code) & valid).any(axis=1)


def count_patterns(codes: np.ndarray, lengths: np.ndarray, shapes: tuple[Shape, ...]) -> np.ndarray:
    """Window counts of every pattern of every shape, concatenated in ``shapes`` order (float64)."""
    parts = [np.bincount(window_codes(codes, lengths, s), minlength=n_patterns(s)) for s in shapes]
    return np.concatenate(parts).astype(np.float64)


def window_features(codes: np.ndarray, lengths: np.ndarray, shapes: tuple[Shape, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every window inside every sequence as ``(column of count_patterns, sequence row)``, both 1-D int64:
    :func:`count_patterns` is ``bincount`` of the first, and the second lets a window be weighed by its
    sequence (its V or J gene)."""
    columns, rows, offset = [], [], 0
    for s in shapes:
        value, valid = _windows(codes, lengths, s)
        columns.append(value[valid] + offset)
        rows.append(np.nonzero(valid)[0])
        offset += n_patterns(s)
    return np.concatenate(columns), np.concatenate(rows).astype(np.int64)


def feature_names(shapes: tuple[Shape, ...]) -> list[tuple[Shape, int]]:
    """``(shape, code)`` of every column of :func:`count_patterns` for ``shapes``."""
    return [(s, c) for s in shapes for c in range(n_patterns(s))]


def locate(index: int, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    """The ``(shape, code)`` of column ``index`` of :func:`count_patterns` (without listing every name)."""
    for s in shapes:
        if index < n_patterns(s):
            return s, index
        index -= n_patterns(s)
    raise IndexError("feature index beyond the shapes")


__all__ = [
    "CONTIGUOUS_3",
    "CONTIGUOUS_4",
    "SEEDING_SHAPES",
    "carries",
    "count_patterns",
    "feature_names",
    "locate",
    "n_patterns",
    "pattern_code",
    "pattern_residues",
    "pattern_string",
    "window_codes",
    "window_features",
]
