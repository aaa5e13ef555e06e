"""Plot builders: they return figures and never show them.

Interactive plots are plotly :class:`go.Figure` objects (pages call ``st.plotly_chart``). Sequence logos are
matplotlib :class:`~matplotlib.figure.Figure` objects made without pyplot (pyplot keeps global state and is
not thread-safe inside a web server), drawn by a small renderer here that stacks letters as logomaker does
(same matrix convention and ``chemistry`` colours; pages call ``st.pyplot``). It draws a logo about 10 times
faster than ``logomaker.Logo`` on the same figure (``benchmarks/bench_logo.py``); ``tests/test_logo_golden.py``
holds its output to a reference image. :func:`figure_to_bytes` exports either kind.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D
from plotly.subplots import make_subplots
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from deeprc_core.attribution import SequenceAttributions
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.motifs import KernelMotifs

EXPORT_FORMATS = ("png", "svg", "pdf")
LOGO_COLORS = "chemistry"  # the amino-acid colour scheme by side-chain chemistry, as logomaker names it
# logomaker's "chemistry" scheme: polar green, amides purple, basic blue, acidic red, hydrophobic black
_CHEMISTRY = {"GSTYC": (0, 0.5, 0), "QN": (0.5, 0, 0.5), "KRH": (0, 0, 1), "DE": (1, 0, 0), "AVLIPWFM": (0, 0, 0)}
_LETTER_COLOURS = {a: colour for group, colour in _CHEMISTRY.items() for a in group}
_WITNESS, _OTHER = "#d62728", "#1f77b4"


def _attention_values(attention: np.ndarray | pd.DataFrame) -> np.ndarray:
    if isinstance(attention, pd.DataFrame):
        if "attention" not in attention.columns:
            raise DeepRCError("The attention table needs an 'attention' column (see attention_table).")
        return attention["attention"].to_numpy(dtype=np.float64)
    values = np.asarray(attention, dtype=np.float64)
    return values.mean(axis=1) if values.ndim == 2 else values  # several heads: the mean weight, as the table


def attention_rank_figure(
    attention: np.ndarray | pd.DataFrame, witnesses: np.ndarray | None = None, title: str = "Attention by rank"
) -> go.Figure:
    """Attention weight against rank (1 = highest), log y; witness sequences marked when known.

    Parameters
    ----------
    attention
        ``(N,)`` or ``(N, H)`` attention weights (several heads: their mean), or an attention table.
    witnesses
        ``(N,)`` bool in the same order as ``attention``.
    """
    values = _attention_values(attention)
    order = np.argsort(-values, kind="stable")
    ranks = np.arange(1, len(values) + 1)
    fig = go.Figure(go.Scattergl(x=ranks, y=values[order], mode="lines", name="all sequences", line={"color": _OTHER}))
    if witnesses is not None:
        flags = np.asarray(witnesses, dtype=bool)[order]
        fig.add_trace(
            go.Scattergl(
                x=ranks[flags], y=values[order][flags], mode="markers", name="witnesses", marker={"color": _WITNESS}
            )
        )
    fig.update_layout(title=title, xaxis_title="rank", yaxis_title="attention weight", yaxis_type="log")
    return fig


def attention_distribution_figure(
    attention: np.ndarray | pd.DataFrame, witnesses: np.ndarray | None = None, bins: int = 60
) -> go.Figure:
    """Histogram of log10 attention weights; witnesses and other sequences overlaid when known."""
    values = np.log10(np.clip(_attention_values(attention), 1e-300, None))
    fig = go.Figure()
    if witnesses is None:
        fig.add_trace(go.Histogram(x=values, nbinsx=bins, name="sequences", marker_color=_OTHER))
    else:
        flags = np.asarray(witnesses, dtype=bool)
        fig.add_trace(
            go.Histogram(x=values[~flags], nbinsx=bins, name="other sequences", marker_color=_OTHER, opacity=0.7)
        )
        fig.add_trace(go.Histogram(x=values[flags], nbinsx=bins, name="witnesses", marker_color=_WITNESS, opacity=0.7))
        fig.update_layout(barmode="overlay")
    fig.update_layout(title="Attention distribution", xaxis_title="log10 attention weight", yaxis_title="sequences")
    return fig


def attribution_heatmap_figure(
    attributions: SequenceAttributions | pd.DataFrame, max_sequences: int = 25, title: str = "Residue attributions"
) -> go.Figure:
    """Heatmap of per-residue attributions: one row per sequence (best rank on top), one column per position.

    Parameters
    ----------
    attributions
        An attribution result or its heatmap table (``sequence``, ``rank``, ``position``, ``residue``,
        ``attribution``).
    max_sequences
        Show at most this many best-ranked sequences.
    """
    frame = attributions.to_frame() if isinstance(attributions, SequenceAttributions) else attributions
    needed = {"sequence", "rank", "position", "residue", "attribution"}
    if not needed <= set(frame.columns):
        raise DeepRCError(f"The attribution table needs the columns {', '.join(sorted(needed))}.")
    ranks = np.sort(frame["rank"].unique())[:max_sequences]
    frame = frame[frame["rank"].isin(ranks)]
    width = int(frame["position"].max()) + 1 if len(frame) else 1
    row_of = {r: i for i, r in enumerate(ranks)}
    z = np.full((len(ranks), width), np.nan)
    text = np.full((len(ranks), width), "", dtype=object)
    labels = [""] * len(ranks)
    rows = frame["rank"].map(row_of).to_numpy()
    cols = frame["position"].to_numpy()
    z[rows, cols] = frame["attribution"].to_numpy()
    text[rows, cols] = frame["residue"].to_numpy()
    for r, seq in frame.groupby("rank", sort=False)["sequence"].first().items():
        labels[row_of[r]] = f"#{r} {seq}"
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(width)),
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            reversescale=True,
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "attribution"},
            hovertemplate="%{y}<br>position %{x}: %{text}<br>attribution %{z:.3g}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="position (0-based)", yaxis={"autorange": "reversed"})
    return fig


def roc_figure(y_true: np.ndarray, y_score: np.ndarray, title: str = "ROC curve") -> go.Figure:
    """ROC curve of binary labels against scores, with the AUC in the legend."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) != 2:
        raise DeepRCError("A ROC curve needs repertoires of both classes.")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    auc = roc_auc_score(y_true, y_score)
    fig = go.Figure(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"ROC (AUC = {auc:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "grey"}))
    fig.update_layout(
        title=title,
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        xaxis={"range": [0, 1]},
        yaxis={"range": [0, 1.02]},
    )
    return fig


def confusion_matrix_figure(
    y_true: Sequence, y_pred: Sequence, labels: Sequence[str] | None = None, title: str = "Confusion matrix"
) -> go.Figure:
    """Counts of true class (rows) against predicted class (columns), annotated."""
    labels = list(labels) if labels is not None else sorted({str(v) for v in [*y_true, *y_pred]})
    matrix = confusion_matrix([str(v) for v in y_true], [str(v) for v in y_pred], labels=labels)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            text=matrix,
            texttemplate="%{text}",
            colorscale="Blues",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis={"autorange": "reversed"})
    return fig


def training_curves_figure(history: Sequence[Mapping[str, float]], x: str = "update") -> go.Figure:
    """Training curves from a list of dicts (one per evaluation), e.g. ``{"update": 100, "loss": 0.6,
    "val_loss": 0.65, "val_auc": 0.8}``: losses (keys containing ``loss``) on the left, other metrics on the
    right. Missing values are skipped."""
    frame = pd.DataFrame(list(history))
    if frame.empty or x not in frame.columns:
        raise DeepRCError(f"The training history is empty or has no '{x}' values.")
    numeric = [c for c in frame.columns if c != x and pd.api.types.is_numeric_dtype(frame[c])]
    losses = [c for c in numeric if "loss" in c.lower()]
    metrics = [c for c in numeric if c not in losses]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "metrics"))
    for col, keys in ((1, losses), (2, metrics)):
        for key in keys:
            part = frame[[x, key]].dropna()
            fig.add_trace(go.Scatter(x=part[x], y=part[key], mode="lines+markers", name=key), row=1, col=col)
        fig.update_xaxes(title_text=x, row=1, col=col)
    fig.update_layout(title="Training curves")
    return fig


def recall_at_k_figure(
    rankings: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "Witness recall"
) -> go.Figure:
    """Recall of witnesses among the top ``k`` attended sequences against ``k`` (log x), per repertoire.

    Parameters
    ----------
    rankings
        Repertoire name -> (``(N,)`` attention scores, ``(N,)`` witness flags).
    """
    fig = go.Figure()
    for name, (scores, witnesses) in rankings.items():
        flags = np.asarray(witnesses, dtype=bool)[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
        if not flags.any():
            continue
        recall = np.cumsum(flags) / flags.sum()
        fig.add_trace(go.Scatter(x=np.arange(1, len(flags) + 1), y=recall, mode="lines", name=str(name)))
    fig.update_layout(title=title, xaxis_title="top k sequences", yaxis_title="recall of witnesses", xaxis_type="log")
    return fig


def recovery_figure(per_repertoire: pd.DataFrame, title: str = "Motif recovery") -> go.Figure:
    """Per positive repertoire: the per-witness and pooled motif masses of the attributions next to their
    chance levels, and the AUPRC of the attention ranking (columns of
    :class:`~deeprc_core.recovery.RecoveryReport.per_repertoire`; those missing are left out)."""
    if per_repertoire.empty or "repertoire" not in per_repertoire.columns:
        raise DeepRCError("No positive repertoires with known witnesses to show.")
    fig = go.Figure()
    names = per_repertoire["repertoire"].astype(str)
    bars = (
        ("witness_motif_mass", "IG on motif, per witness"),
        ("witness_chance", "chance per witness"),
        ("motif_mass", "IG on motif, pooled"),
        ("chance", "chance pooled"),
        ("auprc", "attention AUPRC"),
    )
    for column, label in bars:
        if column in per_repertoire.columns:
            fig.add_trace(go.Bar(x=names, y=per_repertoire[column], name=label))
    fig.update_layout(title=title, barmode="group", yaxis_title="fraction", yaxis={"range": [0, 1]})
    return fig


def kernel_importance_figure(motifs: KernelMotifs) -> go.Figure:
    """Bar chart of kernel importances (output drop when the kernel is ablated), most important first."""
    summary = motifs.summary
    fig = go.Figure(
        go.Bar(
            x=[f"kernel {k}" for k in summary["kernel"]],
            y=summary["importance"],
            customdata=list(zip(summary["position_share"], summary["top_kmer"].astype(str), strict=True)),
            hovertemplate="%{x}: %{y:.3g}<br>position share %{customdata[0]:.2f}"
            "<br>top k-mer %{customdata[1]}<extra></extra>",
        )
    )
    fig.update_layout(title="Kernel importance", yaxis_title="output drop when ablated")
    return fig


# ----------------------------------------------------------------------------------------------------------
# Logos (matplotlib, no pyplot)


_GLYPHS: dict[str, MplPath] = {}  # letter -> outline scaled to the unit square


def _glyph(letter: str) -> MplPath:
    """The outline of a bold letter filling the unit square (cached: building text paths is the slow part)."""
    path = _GLYPHS.get(letter)
    if path is None:
        text = TextPath((0, 0), letter, size=1, prop=FontProperties(family="DejaVu Sans", weight="bold"))
        box = text.get_extents()
        path = text.transformed(Affine2D().translate(-box.x0, -box.y0).scale(1 / box.width, 1 / box.height))
        _GLYPHS[letter] = path
    return path


def _draw_logo(ax, matrix: pd.DataFrame, title: str | None) -> None:
    """Stack letters as ``logomaker.Logo`` does (colour scheme ``chemistry``, smallest next to the axis,
    negative values below it and upside down), drawing only letters taller than 0.1 % of the tallest column
    as one collection of cached glyph outlines. ``logomaker.Logo`` builds a text path for every letter at every
    position: on a 20- or 30-position logo it took 3-10 times longer to draw and save as PNG, 12-38 times
    longer to build (``benchmarks/bench_logo.py``), which adds up on pages that draw a dozen logos."""
    missing = [a for a in AMINO_ACIDS if a not in matrix.columns]
    if missing:
        raise DeepRCError(f"A logo matrix needs one column per amino acid; it lacks {''.join(missing)}.")
    values = matrix[list(AMINO_ACIDS)].astype(float).fillna(0.0)
    array = values.to_numpy()
    positive, negative = np.clip(array, 0, None).sum(axis=1), np.clip(array, None, 0).sum(axis=1)
    tallest = float(max(positive.max(initial=0.0), -negative.min(initial=0.0)))
    patches = []
    for position, row in zip(values.index, array):
        up, down = 0.0, 0.0
        for i in np.argsort(np.abs(row), kind="stable"):
            v = row[i]
            if abs(v) <= 1e-3 * tallest:
                continue
            if v > 0:
                box = Affine2D().scale(0.9, v).translate(position - 0.45, up)
                up += v
            else:
                box = Affine2D().scale(0.9, v).translate(position - 0.45, down)  # negative height: flipped
                down += v
            patches.append(
                PathPatch(
                    _glyph(AMINO_ACIDS[i]).transformed(box), facecolor=_LETTER_COLOURS[AMINO_ACIDS[i]], linewidth=0
                )
            )
    ax.add_collection(PatchCollection(patches, match_original=True))
    ax.set_xlim(values.index.min() - 0.5, values.index.max() + 0.5)
    low, high = float(negative.min(initial=0.0)), float(positive.max(initial=0.0))
    pad = 0.05 * (high - low) if high > low else 1.0
    ax.set_ylim(low - (pad if low < 0 else 0), high + pad)
    window = matrix.attrs.get("window")
    if window is not None:
        ax.axvspan(window[0] - 0.5, window[1] + 0.5, color="#ffdd55", alpha=0.25, zorder=-1)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(list(values.index))
    counts = matrix.attrs.get("n_sequences")  # from attribution_logo: sequences reaching each column
    if counts is not None and len(counts) == len(values):
        ax.set_xticklabels([f"{p}\n{n}" for p, n in zip(values.index, counts)], fontsize=7)
        ax.set_xlabel("offset / sequences in the column", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)


def logo_figure(matrix: pd.DataFrame, title: str | None = None, figsize: tuple[float, float] | None = None) -> Figure:
    """A sequence logo of a logomaker matrix (rows = integer positions, columns = the 20 residues).

    Negative values are drawn below the axis; a matrix from :func:`~deeprc_core.motifs.attribution_logo`
    gets its window shaded.
    """
    fig = Figure(figsize=figsize or (max(3.0, 0.45 * len(matrix) + 1.0), 2.4), layout="constrained")
    _draw_logo(fig.add_subplot(), matrix, title)
    return fig


def kernel_grid_figure(
    motifs: KernelMotifs | Mapping[int, pd.DataFrame], kernels: Sequence[int] | None = None, n_cols: int = 4
) -> Figure:
    """Grid of kernel logos: each kernel's weight logo, with its activation logo underneath when known.

    Parameters
    ----------
    motifs
        Kernel motifs (kernels in importance order) or ``kernel -> weight logo`` matrices.
    kernels
        Kernels to draw (default all, in the given order).
    """
    if isinstance(motifs, KernelMotifs):
        weights, activations = motifs.weight_logos, motifs.activation_logos
        kernels = list(kernels) if kernels is not None else motifs.kernels
        info = motifs.summary.set_index("kernel")
    else:
        weights, activations, info = dict(motifs), {}, None
        kernels = list(kernels) if kernels is not None else list(weights)
    if not kernels:
        raise DeepRCError("There are no kernels to draw.")
    per_kernel = 2 if activations else 1
    n_cols = max(1, min(n_cols, len(kernels)))
    n_rows = math.ceil(len(kernels) / n_cols)
    fig = Figure(figsize=(3.2 * n_cols, 2.0 * per_kernel * n_rows), layout="constrained")
    axes = fig.subplots(n_rows * per_kernel, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, kernel in enumerate(kernels):
        row, col = divmod(i, n_cols)
        title = f"kernel {kernel}"
        if info is not None and np.isfinite(info.loc[kernel, "importance"]):
            title += f" (importance {info.loc[kernel, 'importance']:.2g})"
        ax = axes[row * per_kernel, col]
        ax.set_axis_on()
        _draw_logo(ax, weights[kernel], title + " weights")
        if activations and kernel in activations:
            ax = axes[row * per_kernel + 1, col]
            ax.set_axis_on()
            _draw_logo(ax, activations[kernel], f"kernel {kernel} top k-mers (bits)")
    return fig


def figure_to_bytes(fig: Figure | go.Figure, fmt: str = "png", dpi: int = 150) -> bytes:
    """Export a figure as PNG, SVG or PDF bytes (plotly figures also as ``html``).

    Plotly's static export needs the ``kaleido`` package; without it a :class:`DeepRCError` says so.
    """
    fmt = fmt.lower().lstrip(".")
    if isinstance(fig, go.Figure):
        if fmt == "html":
            return fig.to_html(include_plotlyjs="cdn").encode()
        if fmt not in EXPORT_FORMATS:
            raise DeepRCError(f"Cannot export a plot as '{fmt}'; use png, svg, pdf or html.")
        try:
            return fig.to_image(format=fmt)
        except (ValueError, ImportError, RuntimeError) as exc:
            raise DeepRCError(
                f"Exporting an interactive plot as {fmt.upper()} needs the 'kaleido' package; export it as HTML "
                "instead or install kaleido."
            ) from exc
    if not isinstance(fig, Figure):
        raise DeepRCError(f"Cannot export an object of type {type(fig).__name__} as a figure.")
    if fmt not in EXPORT_FORMATS:
        raise DeepRCError(f"Cannot export a figure as '{fmt}'; use png, svg or pdf.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


__all__ = [
    "EXPORT_FORMATS",
    "attention_distribution_figure",
    "attention_rank_figure",
    "attribution_heatmap_figure",
    "confusion_matrix_figure",
    "figure_to_bytes",
    "kernel_grid_figure",
    "kernel_importance_figure",
    "logo_figure",
    "recall_at_k_figure",
    "recovery_figure",
    "roc_figure",
    "training_curves_figure",
]
