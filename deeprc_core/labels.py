"""Known labels of repertoires: which metadata columns can be learned, a repertoire's label by name, and
predictions set against the labels (the correct ones marked, the AUC). The app's pages and any script call
these, so every route gives the same number. Importing this module does not load torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ID_COLUMNS = ("repertoire", "file")  # columns read_metadata adds; never labels


def label_columns(metadata: pd.DataFrame) -> list[str]:
    """Metadata columns that can be learned: every column but the IDs whose values repeat across repertoires
    (a column unique per repertoire, like a sample ID, is no label)."""
    return [c for c in metadata.columns if c not in ID_COLUMNS and metadata[c].astype(str).nunique() < len(metadata)]


def label_lookup(metadata: pd.DataFrame, column: str) -> pd.Series:
    """Each repertoire's ``column`` value as text, indexed by repertoire name (the ``repertoire`` column of
    :func:`~deeprc_core.io.read_metadata`; the first row wins for a name listed twice). Empty when the
    metadata has no such column."""
    if column not in metadata.columns or "repertoire" not in metadata.columns:
        return pd.Series(dtype=str)
    return metadata.drop_duplicates("repertoire").set_index("repertoire")[column].astype(str)


def with_known_labels(
    predictions: pd.DataFrame, metadata: pd.DataFrame, target: str
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Predictions (one row per ``repertoire``, as :func:`~deeprc_core.scoring.predict` returns) with the known
    labels: a column ``true {target}`` after ``repertoire`` and, when there is a ``prediction`` column,
    ``correct`` ("✓", "✗", or "" where the label is unknown).

    Returns
    -------
    (table, truth)
        The table (a copy; unchanged when no repertoire has a known label) and the known label per row (NaN
        where unknown), or None when no label is known.
    """
    truth = predictions["repertoire"].map(label_lookup(metadata, target))
    if not truth.notna().any():
        return predictions, None
    table = predictions.copy()
    table.insert(1, f"true {target}", truth)
    if "prediction" in table.columns:
        right = truth == table["prediction"].astype(str)
        table["correct"] = np.where(truth.isna(), "", np.where(right, "✓", "✗"))
    return table, truth


def binary_auc(truth: pd.Series, probability: pd.Series | np.ndarray, positive: str) -> float | None:
    """ROC AUC of the probabilities against the known labels (rows with a label only); None unless both the
    positive class and another class occur."""
    known = truth.notna().to_numpy()
    y = (truth[known] == positive).to_numpy()
    if len(np.unique(y)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(probability, dtype=float)[known]))


def first_per_label(names: Sequence[str], labels: pd.Series, n: int) -> list[str]:
    """The first ``n`` names of each label (labels in order of first appearance; names without a label form a
    group of their own): a small sample balanced over the classes."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(str(labels.get(name, "")), []).append(name)
    return [name for group in groups.values() for name in group[:n]]


__all__ = ["binary_auc", "first_per_label", "label_columns", "label_lookup", "with_known_labels"]
