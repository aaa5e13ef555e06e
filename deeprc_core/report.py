"""What a model is and what it found, in words and tables: the model card as a table, the headline prediction
of a repertoire, and one self-contained HTML report of a repertoire's analysis.

Plain functions of their inputs (a model, a repertoire, its attention table and attributions, PNG bytes):
the app's Report page and any script build the same report. Importing this module does not load torch.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from deeprc_core import __version__

if TYPE_CHECKING:
    from deeprc_core.attribution import SequenceAttributions
    from deeprc_core.io import Repertoire
    from deeprc_core.model import DeepRC, TargetSpec

HELD_OUT_LABELS = {  # model card key -> label; figures measured on repertoires never seen in training
    "auc": "held-out AUC",
    "balanced_accuracy": "held-out balanced accuracy",
    "witness_recall_top1pct": "held-out witness recall in the top 1 %",
    "auprc": "held-out AUPRC (witnesses by attention)",
    "witness_motif_mass": "held-out IG on motif residues, per witness",
    "motif_mass": "held-out IG mass on motif residues",
}
HELD_OUT_CHANCE = {"motif_mass": "motif_mass_chance", "witness_motif_mass": "witness_motif_mass_chance"}
VALIDATION_METRICS = ("auc", "balanced_accuracy", "f1", "r2", "mae")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _predicts(spec: TargetSpec) -> str:
    if spec.kind == "binary":
        return f"{spec.name}: {spec.classes[1]} vs {spec.classes[0]}"
    return f"{spec.name} ({spec.kind}{': ' + ', '.join(spec.classes) if spec.classes else ''})"


def _architecture(config) -> str:
    text = config.embedding.upper()
    if config.embedding == "cnn":
        text += f", {config.n_kernels} kernels of width {config.kernel_size}"
    return text + f", {config.n_heads} attention head{'s' if config.n_heads > 1 else ''}"


def _held_out_rows(held_out: dict) -> list[tuple[str, str]]:
    rows = []
    for key, label in HELD_OUT_LABELS.items():
        if not isinstance(held_out.get(key), (int, float)):
            continue
        if key == "motif_mass" and "witness_motif_mass" in held_out:
            label += ", pooled"
        value = _fmt(float(held_out[key]))
        chance = HELD_OUT_CHANCE.get(key)
        if chance and isinstance(held_out.get(chance), (int, float)):
            value += f" (chance {held_out[chance]:.3f})"
        rows.append((label, value))
    return rows


def _validation_rows(metrics: object, which: str = "") -> list[tuple[str, str]]:
    if not isinstance(metrics, dict):
        return []
    return [
        ("validation " + ("AUC" if name == "auc" else name.replace("_", " ")) + which, _fmt(float(metrics[name])))
        for name in VALIDATION_METRICS
        if isinstance(metrics.get(name), (int, float))
    ]


def _seeded_start(info: dict) -> str:
    """What the seeded start found: the enriched patterns with their t and the t a chance pattern reaches
    (shuffled labels), and the enriched genes with their weights ("" when nothing was seeded or recorded)."""

    def t(value: object) -> str:
        return f"{value:.1f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    patterns = [p for p in info.get("seeded_patterns") or [] if isinstance(p, dict) and "pattern" in p and "t" in p]
    genes = [g for g in info.get("seeded_genes") or [] if isinstance(g, str)]
    threshold = info.get("seeding_threshold")
    chance = f"the t a chance pattern reaches ({t(threshold)})" if threshold is not None else ""
    parts = []
    if patterns:
        listed = ", ".join(f"{p['pattern']} (t {t(p['t'])})" for p in patterns)
        parts.append(f"patterns {listed}" + (f", each above {chance}" if chance else ""))
    elif chance:
        parts.append(f"no pattern above {chance}")
    if genes:
        parts.append("genes (weight) " + ", ".join(genes))
    return "; ".join(parts)


def attention_heads(model: DeepRC) -> list[dict]:
    """Per attention head: ``number`` (from 1, as users count), ``column`` (its column in
    :func:`~deeprc_core.scoring.attention_table`), ``label`` (``h1`` with what it read at the seeded start:
    ``h1 · G.QH``), ``reads`` (the seeded detectors it read at the start, ``""`` when it read none or the
    model does not record it) and ``same_as`` (the number of the first head that started reading the same
    detectors, for a head that started as its copy; ``None`` otherwise). Training moves every head from its
    start."""
    n_heads = model.config.n_heads
    recorded = (getattr(model, "info", None) or {}).get("seeded_heads")
    valid = isinstance(recorded, list) and len(recorded) == n_heads and all(isinstance(h, list) for h in recorded)
    reads = [" + ".join(str(name) for name in h) for h in recorded] if valid else [""] * n_heads
    heads, first = [], {}
    for h, detectors in enumerate(reads):
        same_as = first.get(detectors) if detectors else None
        first.setdefault(detectors, h + 1)
        label = f"h{h + 1}" + (f" · {detectors}" if detectors else "")
        heads.append(
            {"number": h + 1, "column": f"attention_h{h + 1}", "label": label, "reads": detectors, "same_as": same_as}
        )
    return heads


def _head_start(model: DeepRC) -> str:
    """The seeded detectors each head read at the start, grouped: ``G.QH: h1, h3; YW.D: h2, h4`` ("" when no
    head read one or the model does not record it)."""
    groups: dict[str, list[str]] = {}
    for head in attention_heads(model):
        if head["reads"]:
            groups.setdefault(head["reads"], []).append(f"h{head['number']}")
    return "; ".join(f"{reads}: {', '.join(heads)}" for reads, heads in groups.items())


def model_card_table(model: DeepRC) -> pd.DataFrame:
    """The model's facts as a two-column table (``fact``, ``value``): what it predicts, its architecture, the
    data it was trained on, its held-out and validation figures and how it was trained."""
    info = dict(getattr(model, "info", {}) or {})
    card = info.get("card") if isinstance(info.get("card"), dict) else {}
    rows: list[tuple[str, str]] = [("model", Path(getattr(model, "path", "") or "").name or "unsaved")]
    if isinstance(card.get("name"), str):
        rows.append(("name", card["name"]))
    rows.append(("predicts", _predicts(model.config.target_spec())))
    rows.append(("architecture", _architecture(model.config)))
    data = info.get("data") or {}
    if isinstance(data, dict) and data.get("n_repertoires"):
        text = f"{data['n_repertoires']:,} repertoires"
        if data.get("n_sequences_total"):
            text += f", {int(data['n_sequences_total']):,} sequences"
        rows.append(("trained on", text))
    if isinstance(card.get("intended_use"), str):
        rows.append(("intended use", card["intended_use"]))
    rows += [
        (key.replace("_", " "), info[key])
        for key in ("dataset", "training_data", "description")
        if isinstance(info.get(key), str)
    ]
    rows += _held_out_rows(card.get("held_out") or info.get("test_metrics") or info.get("held_out_metrics") or {})
    if isinstance(info.get("validation_metrics_all_receptors"), dict):  # model selection read unseen receptors
        rows += _validation_rows(info["validation_metrics"], " (new receptors)")
        rows += _validation_rows(info["validation_metrics_all_receptors"], " (all receptors)")
    else:
        rows += _validation_rows(info.get("validation_metrics"))
    seeded = _seeded_start(info)
    if seeded:
        rows.append(("seeded start", seeded))
    heads = _head_start(model) if model.config.n_heads > 1 else ""
    if heads:
        rows.append(("attention heads at the start", heads))
    if info.get("updates"):
        run = f"{info['updates']:,} updates ({info.get('stop_reason', 'done')}, {info.get('training_seconds', '?')} s)"
        rows.append(("training", run))
    command = info.get("command") or card.get("command")
    if isinstance(command, str):
        rows.append(("command", command))
    return pd.DataFrame(rows, columns=["fact", "value"])


def model_summary_line(document: dict) -> str:
    """One line on a saved model from its ``config.json`` document (:func:`~deeprc_core.checkpoint.read_model_config`):
    what it predicts and its held-out (else validation) AUC, in Markdown."""
    targets = (document.get("config") or {}).get("targets") or [{}]
    info = document.get("info") or {}
    held_out = ((info.get("card") or {}).get("held_out") or {}).get("auc")
    validation = (info.get("validation_metrics") or {}).get("auc")
    line = f"Predicts **{targets[0].get('name', '?')}**"
    classes = targets[0].get("classes") or []
    if len(classes) == 2:
        line += f" ({classes[1]} vs {classes[0]})"
    if isinstance(held_out, (int, float)):
        line += f" · held-out AUC {held_out:.2f}"
    elif isinstance(validation, (int, float)):
        line += f" · validation AUC {validation:.2f}"
    return line


def model_card_markdown(model: DeepRC) -> str | None:
    """The text of ``MODEL_CARD.md`` next to the model, when there is one."""
    path = Path(getattr(model, "path", "") or "") / "MODEL_CARD.md"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


def model_info_json(model: DeepRC) -> str:
    """The model's training facts as pretty JSON."""
    return json.dumps(getattr(model, "info", {}) or {}, indent=2, default=str)


def prediction_headline(spec: TargetSpec, prediction: float | np.ndarray) -> tuple[str, float]:
    """How a repertoire's prediction is named and its number: ``("P(positive)", 0.93)`` for a binary target
    (the positive class), ``("P(CMV+)", 0.71)`` for the most probable class of a multiclass target, and
    ``("predicted age", 41.8)`` for a regression target."""
    if spec.kind == "binary":
        return f"P({spec.classes[1]})", float(prediction)
    if spec.kind == "multiclass":
        probabilities = np.asarray(prediction, dtype=float).reshape(-1)
        best = int(np.argmax(probabilities))
        return f"P({spec.classes[best]})", float(probabilities[best])
    return f"predicted {spec.name}", float(prediction)


# ----------------------------------------------------------------------------------------------------------
# The HTML report

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #c0392b; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; } th { background: #f4f4f4; }
.big { font-size: 1.6em; font-weight: bold; color: #c0392b; } .muted { color: #777; font-size: 0.9em; }
.seq { font-family: Menlo, Consolas, monospace; font-size: 1.05em; letter-spacing: 0.05em; }
.seq span { padding: 1px 0; } img { max-width: 100%; }
"""


def html_table(frame: pd.DataFrame) -> str:
    """A table as escaped HTML."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def html_image(png: bytes, alt: str) -> str:
    """A PNG embedded as a base64 ``<img>``."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def coloured_sequence(sequence: str, scores: np.ndarray) -> str:
    """A sequence with each residue shaded by its attribution ``(L,)`` relative to the sequence's strongest
    residue (red supports, blue opposes); the value is the residue's tooltip."""
    limit = float(np.abs(scores).max()) if len(scores) else 0.0
    spans = []
    for residue, value in zip(sequence, scores):
        alpha = min(1.0, abs(float(value)) / limit) if limit > 0 else 0.0
        colour = f"rgba(192,57,43,{alpha:.2f})" if value > 0 else f"rgba(41,98,255,{alpha:.2f})"
        spans.append(f'<span style="background:{colour}" title="{value:.3g}">{html.escape(residue)}</span>')
    return '<span class="seq">' + "".join(spans) + "</span>"


def _top_sequences_html(attention: pd.DataFrame, attributed: SequenceAttributions, n_top: int) -> str:
    scores = attributed.residue_attributions()  # (S, L)
    by_row = {int(r): i for i, r in enumerate(attributed.indices)}
    rows = []
    for rec in attention.head(n_top).itertuples(index=False):
        i = by_row.get(int(rec.row))
        seq = (
            coloured_sequence(rec.sequence, scores[i, : len(rec.sequence)])
            if i is not None
            else f'<span class="seq">{html.escape(rec.sequence)}</span>'
        )
        rows.append(
            f"<tr><td>{rec.rank}</td><td>{seq}</td><td>{rec.attention:.3e}</td><td>{rec.count:g}</td>"
            f"<td>{html.escape(str(rec.v_call))}</td><td>{html.escape(str(rec.j_call))}</td></tr>"
        )
    head = "<tr><th>rank</th><th>sequence</th><th>attention</th><th>count</th><th>V</th><th>J</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def repertoire_report_html(
    *,
    repertoire: Repertoire,
    model: DeepRC,
    headline: tuple[str, float],
    attention: pd.DataFrame,
    attributed: SequenceAttributions,
    n_steps: int,
    logo_png: bytes,
    n_top: int = 25,
    kernel_pngs: Sequence[tuple[bytes, bytes]] | None = None,
    kernel_table: pd.DataFrame | None = None,
    device: str = "CPU",
    stamp: str | None = None,
    name: str | None = None,
) -> str:
    """One self-contained HTML page of a repertoire's analysis (images embedded as base64 PNG).

    Parameters
    ----------
    repertoire
        The repertoire (its read report is included).
    model
        The model (name and card).
    headline
        :func:`prediction_headline` of the repertoire's prediction.
    attention
        :func:`~deeprc_core.scoring.attention_table` plus ``row`` (each sequence's row in the repertoire),
        sorted by attention.
    attributed
        Integrated gradients of the top sequences (each sequence's attention: its logit, or with several heads its
        log share of the attention); their residues are shaded.
    n_steps, logo_png
        Integration steps (stated in the text) and the attribution logo as PNG.
    n_top
        Sequences in the table of top sequences.
    kernel_pngs, kernel_table
        Optional kernel motifs: (weights logo, activation logo) PNGs per kernel and a kernel table.
    device, stamp
        Where it was computed, and when (default: now).
    name
        The repertoire's name in the title (default: ``repertoire.name``).
    """
    label, value = headline
    weights = attention["attention"].to_numpy()
    reasons = repertoire.report.reasons()
    name = html.escape(name or repertoire.name)
    stamp = stamp or time.strftime("%Y-%m-%d %H:%M")
    model_name = html.escape(Path(getattr(model, "path", "") or "").name or "unsaved")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>DeepRC report: {name}</title><style>{STYLE}</style></head><body>",
        f"<h1>DeepRC Explorer report: {name}</h1>",
        f"<p class='muted'>{stamp} · model {model_name} · deeprc_core {__version__} · computed on {html.escape(device)}</p>",
        "<h2>Prediction</h2>",
        f"<p><span class='big'>{html.escape(label)} = {value:.3f}</span> &nbsp; over {len(repertoire):,} distinct sequences. "
        f"The 10 highest-attention sequences hold {float(weights[:10].sum()):.1%} of the attention.</p>",
        f"<p class='muted'>{html.escape(repertoire.report.summary())}</p>",
        html_table(reasons[reasons["rows"] > 0]),
        f"<h2>Top {min(n_top, len(attention))} sequences by attention</h2>",
        f"<p class='muted'>Residues of the {len(attributed)} attributed sequences are shaded by their integrated-gradient "
        "attribution to the sequence's attention (its log share over the heads), i.e. why the model attends to it "
        f"({n_steps} steps, zero baseline), "
        "relative to each sequence's strongest residue: red raises its attention, blue lowers it; hover for values.</p>",
        _top_sequences_html(attention, attributed, n_top),
        "<h2>Attribution logo</h2>",
        f"<p class='muted'>Top {len(attributed)} sequences, each aligned on its highest-attribution 5-residue window.</p>",
        html_image(logo_png, "attribution logo"),
    ]
    if kernel_pngs is not None:
        parts += [
            "<h2>Kernel motifs</h2>",
            f"<p class='muted'>The {len(kernel_pngs)} most important first-layer kernels (importance over the three "
            "sample patients): residue weights and the k-mers that activate them most.</p>",
            "<table><tr>"
            + "".join(f"<td>{html_image(w, 'weights')}<br/>{html_image(a, 'top k-mers')}</td>" for w, a in kernel_pngs)
            + "</tr></table>",
        ]
        if kernel_table is not None:
            parts.append(html_table(kernel_table.round(4)))
    parts += ["<h2>Model card</h2>", html_table(model_card_table(model))]
    card_md = model_card_markdown(model)
    if card_md:
        parts.append(f"<pre style='white-space: pre-wrap'>{html.escape(card_md)}</pre>")
    parts.append(
        "<p class='muted'>DeepRC (Widrich et al., NeurIPS 2020) embeds each CDR3 with a CNN, scores it with an attention "
        "network, pools the repertoire with softmax attention and predicts from the pooled vector.</p></body></html>"
    )
    return "\n".join(parts)


__all__ = [
    "attention_heads",
    "coloured_sequence",
    "html_image",
    "html_table",
    "model_card_markdown",
    "model_card_table",
    "model_info_json",
    "model_summary_line",
    "prediction_headline",
    "repertoire_report_html",
]
