"""Reference classifiers to hold DeepRC against: k-mer frequencies and V/J-gene usage, each with an
L1-regularised logistic regression.

A repertoire becomes one feature vector:

* :class:`KmerLogisticRegression` — the frequency of every amino-acid k-mer (k = 3 and 4 by default:
  8,000 + 160,000 features) over the repertoire's distinct junctions. Each junction counts once, whatever
  its clone size, as a witness does for DeepRC's attention. The windows are counted by
  :func:`deeprc_core.kmers.count_patterns`, the counter behind the kernel seeding.
* :class:`VJUsageLogisticRegression` — the share of the repertoire's junctions using each V gene and each
  J gene (the vocabulary is learned in ``fit``).

Features are scaled by their standard deviation over the training repertoires (not centred, so the many
zero k-mer counts stay zero) and fed to scikit-learn's ``liblinear`` L1 logistic regression. The penalty
``C`` is chosen by stratified inner cross-validation (ROC AUC, fixed folds) from a short grid, unless a
fixed ``C`` is given, so nothing is tuned to one data set or seed. Same data, same parameters, same model.

:func:`baseline_auc` fits one on the training repertoires of a dataset split and returns its held-out AUC:
what the app shows next to DeepRC's validation AUC.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, N_AMINO_ACIDS, Repertoire
from deeprc_core.kmers import count_patterns

DEFAULT_CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inner-CV grid of the inverse L1 penalty (scaled features)
_NEW_PENALTY_API = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)  # l1_ratio replaces penalty


def kmer_frequencies(codes: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """Frequency of each amino-acid k-mer over a repertoire's junctions.

    Parameters
    ----------
    codes
        ``(n_sequences, seq_len)`` residue codes with padding beyond each end (:attr:`Repertoire.codes`).
    lengths
        ``(n_sequences,)`` junction lengths.
    k
        k-mer length.

    Returns
    -------
    numpy.ndarray
        ``(20**k,)`` float64 summing to 1 (all zeros when no junction is ``k`` residues long). Index
        ``sum(code[i] * 20**(k - 1 - i))``, in the order of :func:`kmer_names`.
    """
    counts = count_patterns(np.asarray(codes), np.asarray(lengths, dtype=np.int64), (tuple(range(k)),))
    # kmers codes the first residue as the lowest digit; reversing the k residue axes puts it first (AAA, AAC, ...)
    counts = counts.reshape((N_AMINO_ACIDS,) * k).transpose().ravel()
    total = counts.sum()
    return counts / total if total else counts


def kmer_names(k: int) -> np.ndarray:
    """The ``20**k`` k-mer strings in feature order (``AAA``, ``AAC``, ...)."""
    return np.asarray(["".join(p) for p in itertools.product(AMINO_ACIDS, repeat=k)], dtype=object)


def _l1_logistic(C: float, seed: int) -> LogisticRegression:
    if _NEW_PENALTY_API:
        return LogisticRegression(solver="liblinear", l1_ratio=1.0, C=C, random_state=seed, max_iter=1000)
    return LogisticRegression(solver="liblinear", penalty="l1", C=C, random_state=seed, max_iter=1000)


def _scale(X: np.ndarray) -> np.ndarray:
    std = X.std(axis=0)
    return np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)  # constant features are dropped (x 0)


class _RepertoireLogisticRegression:
    """Shared machinery: features per repertoire -> scaling -> L1 logistic regression with inner-CV ``C``."""

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, cv: int = 5, seed: int = 0) -> None:
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.seed = seed

    # subclasses: turn repertoires into a (n_repertoires, n_features) matrix; _fit_features may learn a vocabulary
    def _features(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        raise NotImplementedError

    def _fit_features(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        return self._features(repertoires)

    def transform(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        """Unscaled features ``(n_repertoires, n_features)``, in the order of :meth:`get_feature_names_out`."""
        self._check_fitted()
        return self._features(repertoires)

    def fit(self, repertoires: Iterable[Repertoire], y: Sequence) -> _RepertoireLogisticRegression:
        """Learn from labelled repertoires.

        Parameters
        ----------
        repertoires
            The training repertoires (:class:`~deeprc_core.io.Repertoire`), a list or any iterable (a generator
            over ``dataset.repertoire(i)`` keeps one repertoire in memory at a time).
        y
            One label per repertoire (two or more distinct values; ``classes_`` sorts them).

        Returns
        -------
        self
        """
        y = np.asarray(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DeepRCError("All training repertoires have the same label; the baseline needs two classes.")
        X = self._fit_features(repertoires)
        if len(X) != len(y):
            raise DeepRCError(f"Got {len(X)} repertoires but {len(y)} labels; give one label per repertoire.")
        self.n_features_in_ = X.shape[1]
        self.C_, self.cv_scores_ = self._choose_C(X, y_index)
        self.scale_ = _scale(X)
        self.model_ = _l1_logistic(self.C_, self.seed).fit(X * self.scale_, y_index)
        return self

    def _choose_C(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[float, float]]:
        """The fixed ``C``, or the grid value with the best mean inner-CV AUC (ties: the smaller ``C``)."""
        n_folds = min(int(self.cv), int(np.bincount(y).min()))
        if self.C is not None or n_folds < 2 or len(self.classes_) != 2:
            return float(self.C if self.C is not None else 1.0), {}
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=self.seed).split(X, y))
        scores: dict[float, float] = {}
        for C in sorted(float(c) for c in self.Cs):
            aucs = []
            for train, test in folds:
                scale = _scale(X[train])
                model = _l1_logistic(C, self.seed).fit(X[train] * scale, y[train])
                if len(np.unique(y[test])) == 2:
                    aucs.append(roc_auc_score(y[test], model.decision_function(X[test] * scale)))
            scores[C] = float(np.mean(aucs)) if aucs else float("nan")
        best = max(scores, key=lambda c: (scores[c], -c))
        return best, scores

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise DeepRCError(f"This {type(self).__name__} is not fitted yet; call fit(repertoires, y) first.")

    def decision_function(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        """Logit of the last class ``(n_repertoires,)`` (binary) or one column per class (multiclass)."""
        self._check_fitted()
        return self.model_.decision_function(self._features(repertoires) * self.scale_)

    def predict_proba(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        """Class probabilities ``(n_repertoires, n_classes)``; columns follow ``classes_``."""
        self._check_fitted()
        return self.model_.predict_proba(self._features(repertoires) * self.scale_)

    def predict(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        """The most probable label of each repertoire."""
        return self.classes_[self.predict_proba(repertoires).argmax(axis=1)]

    @property
    def coef_(self) -> np.ndarray:
        """Weights on the *scaled* features ``(1 or n_classes, n_features)``; zero for features L1 dropped."""
        self._check_fitted()
        return self.model_.coef_

    def top_features(self, n: int = 20) -> list[tuple[str, float]]:
        """The ``n`` features with the largest absolute weight (positive = towards the last class), non-zero only."""
        weights = self.coef_[0] if self.coef_.shape[0] == 1 else np.abs(self.coef_).max(axis=0)
        order = [int(i) for i in np.argsort(-np.abs(weights), kind="stable")[:n] if weights[i] != 0]
        names = self.get_feature_names_out()
        return [(str(names[i]), float(weights[i])) for i in order]


class KmerLogisticRegression(_RepertoireLogisticRegression):
    """L1 logistic regression on the k-mer frequencies of each repertoire's junctions.

    Parameters
    ----------
    k
        k-mer lengths whose frequencies are joined (``(3, 4)``: 8,000 + 160,000 features).
    C
        Inverse L1 penalty on the scaled features; ``None`` = chosen by inner cross-validation from ``Cs``.
    Cs
        Grid searched when ``C`` is None.
    cv
        Inner folds (fewer when a class has fewer repertoires; a fixed ``C`` = 1 below two per class).
    seed
        Seeds the inner folds and the solver.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The labels, sorted; ``predict_proba`` columns follow them.
    C_ : float
        The penalty used for the final fit.
    cv_scores_ : dict
        Mean inner-CV AUC per grid value of ``C`` (empty when ``C`` was fixed).
    scale_ : numpy.ndarray
        ``(n_features,)`` 1 / standard deviation of each feature over the training repertoires.
    model_ : sklearn.linear_model.LogisticRegression
        The fitted regression on the scaled features.
    """

    def __init__(
        self,
        k: Sequence[int] = (3, 4),
        C: float | None = None,
        Cs: Sequence[float] = DEFAULT_CS,
        cv: int = 5,
        seed: int = 0,
    ) -> None:
        super().__init__(C=C, Cs=Cs, cv=cv, seed=seed)
        self.k = k

    def _features(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        ks = [int(k) for k in self.k]
        if not ks or min(ks) < 1 or max(ks) > 5:
            raise DeepRCError(f"k-mer lengths must lie between 1 and 5 (20**5 features), got {self.k!r}.")
        rows = [np.concatenate([kmer_frequencies(r.codes, r.lengths, k) for k in ks]) for r in repertoires]
        return np.vstack(rows) if rows else np.zeros((0, sum(N_AMINO_ACIDS**k for k in ks)))

    def get_feature_names_out(self) -> np.ndarray:
        """The k-mer of each feature column."""
        return np.concatenate([kmer_names(int(k)) for k in self.k])


class VJUsageLogisticRegression(_RepertoireLogisticRegression):
    """L1 logistic regression on each repertoire's V-gene and J-gene usage (share of its junctions per gene).

    Parameters are those of :class:`KmerLogisticRegression` without ``k``. Genes are compared without alleles
    (as :func:`~deeprc_core.io.read_repertoire` stores them); genes unseen in training are ignored.

    Attributes
    ----------
    v_genes_, j_genes_ : numpy.ndarray
        The V and J genes seen in the training repertoires (the feature order: V genes, then J genes).
    classes_, C_, cv_scores_, scale_, model_
        As in :class:`KmerLogisticRegression`.
    """

    def _fit_features(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        usage = [_gene_usage(r) for r in repertoires]  # one pass: the vocabulary is the union of the genes seen
        self.v_genes_ = np.asarray(sorted({g for v, _ in usage for g in v if g}), dtype=object)
        self.j_genes_ = np.asarray(sorted({g for _, j in usage for g in j if g}), dtype=object)
        if len(self.v_genes_) + len(self.j_genes_) == 0:
            raise DeepRCError("The training repertoires carry no V or J genes; the V/J-usage baseline needs them.")
        return self._matrix(usage)

    def _features(self, repertoires: Iterable[Repertoire]) -> np.ndarray:
        return self._matrix([_gene_usage(r) for r in repertoires])

    def _matrix(self, usage: list[tuple[dict[str, float], dict[str, float]]]) -> np.ndarray:
        columns = [*((0, g) for g in self.v_genes_), *((1, g) for g in self.j_genes_)]
        X = np.zeros((len(usage), len(columns)))
        for row, shares in enumerate(usage):
            for col, (part, gene) in enumerate(columns):
                X[row, col] = shares[part].get(gene, 0.0)
        return X

    def get_feature_names_out(self) -> np.ndarray:
        """The gene of each feature column (V genes, then J genes)."""
        return np.concatenate([self.v_genes_, self.j_genes_])


def _gene_usage(repertoire: Repertoire) -> tuple[dict[str, float], dict[str, float]]:
    """Share of a repertoire's junctions per V gene and per J gene."""
    n = max(len(repertoire), 1)
    shares = []
    for calls in (repertoire.v_call, repertoire.j_call):
        genes, counts = np.unique(np.asarray(calls, dtype=str), return_counts=True)
        shares.append({str(g): c / n for g, c in zip(genes, counts)})
    return shares[0], shares[1]


BASELINES = {"kmer": KmerLogisticRegression, "vj": VJUsageLogisticRegression}


def baseline_auc(
    dataset,
    train_indices: Sequence[int],
    val_indices: Sequence[int],
    target: str = "disease",
    positive: str | None = None,
    kind: str = "kmer",
    **params,
) -> float:
    """Held-out ROC AUC of a baseline fitted on one split of a dataset (e.g. DeepRC's train/validation split).

    Parameters
    ----------
    dataset
        An opened :class:`~deeprc_core.dataset.RepertoireDataset`.
    train_indices, val_indices
        Repertoires to fit on and to score (``TrainingResult.train_indices`` / ``val_indices``).
    target, positive
        The binary metadata column and its positive value (as for training; ``positive`` None = the
        second of the column's two sorted values).
    kind
        ``"kmer"`` (:class:`KmerLogisticRegression`) or ``"vj"`` (:class:`VJUsageLogisticRegression`).
    **params
        Passed to the baseline's constructor (``k``, ``C``, ``seed``, ...).

    Returns
    -------
    float
        ROC AUC on ``val_indices`` (NaN when they hold one class only).

    Raises
    ------
    DeepRCError
        Unknown ``kind``, a target that is not binary, or a training part with a single class.
    """
    from deeprc_core.training import infer_target  # torch is loaded only when this is called

    if kind not in BASELINES:
        raise DeepRCError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")
    spec = infer_target(dataset.metadata, target, positive, task="binary")
    y = (dataset.metadata[target].astype(str).str.strip() == spec.classes[1]).to_numpy()
    train_indices, val_indices = np.asarray(train_indices, dtype=int), np.asarray(val_indices, dtype=int)
    model = BASELINES[kind](**params).fit((dataset.repertoire(int(i)) for i in train_indices), y[train_indices])
    if len(np.unique(y[val_indices])) < 2:
        return float("nan")
    proba = model.predict_proba(dataset.repertoire(int(i)) for i in val_indices)
    return float(roc_auc_score(y[val_indices], proba[:, list(model.classes_).index(True)]))


__all__ = [
    "BASELINES",
    "KmerLogisticRegression",
    "VJUsageLogisticRegression",
    "baseline_auc",
    "kmer_frequencies",
    "kmer_names",
]
