"""Report: one self-contained HTML file of a repertoire's analysis (prediction, top sequences coloured by their
residue attributions, attribution logos and kernel motifs as embedded images, the model card)."""

import base64
import html
import time

import numpy as np
import pandas as pd
import streamlit as st

import ui
from deeprc_core import __version__
from deeprc_core.motifs import attribution_logo
from deeprc_core.plots import logo_figure

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #c0392b; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; } th { background: #f4f4f4; }
.big { font-size: 1.6em; font-weight: bold; color: #c0392b; } .muted { color: #777; font-size: 0.9em; }
.seq { font-family: Menlo, Consolas, monospace; font-size: 1.05em; letter-spacing: 0.05em; }
.seq span { padding: 1px 0; } img { max-width: 100%; }
"""


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def _coloured(sequence: str, scores: np.ndarray) -> str:
    """A sequence with each residue shaded by its attribution relative to the sequence's strongest residue
    (red supports, blue opposes)."""
    limit = float(np.abs(scores).max()) if len(scores) else 0.0
    spans = []
    for residue, value in zip(sequence, scores):
        alpha = min(1.0, abs(float(value)) / limit) if limit > 0 else 0.0
        colour = f"rgba(192,57,43,{alpha:.2f})" if value > 0 else f"rgba(41,98,255,{alpha:.2f})"
        spans.append(f'<span style="background:{colour}" title="{value:.3g}">{html.escape(residue)}</span>')
    return '<span class="seq">' + "".join(spans) + "</span>"


def main() -> None:
    st.title("Report")
    model, model_key = ui.current_model()
    target, positive = ui.positive_class(model)
    st.caption(
        "A single HTML file with the analysis of one repertoire, images embedded: e-mail it, archive it, open it offline."
    )

    source = ui.pick_repertoire("report")
    cols = st.columns(4)
    n_table = cols[0].slider("Top sequences in the table", 10, 200, 25, step=5, key="report_rows")
    top_n = cols[1].slider("Sequences attributed (logo)", 10, 200, 50, step=10, key="report_top_n")
    steps = cols[2].slider("Integration steps", 8, 128, 32, step=8, key="report_steps")
    with_kernels = cols[3].toggle(
        "Include kernel motifs", value=True, key="report_kernels", help="Adds the 4 most important kernels."
    )

    repertoire = ui.load_repertoire(source, model.config.max_length)
    with st.spinner("Scoring, attributing and drawing…"):
        result = ui.score(model, model_key, repertoire, source.key)
        table = ui.attention(model, model_key, repertoire, source.key)
        attributed = ui.attributions(
            model, model_key, repertoire, source.key, top=top_n, n_steps=steps, baseline="zero"
        )
        settings = f"{model_key}|{source.key}|{top_n}|{steps}|zero"
        logo = attribution_logo(attributed, width=5, align="centre", flank=4)
        logo_png = ui.figure_png(
            lambda: logo_figure(logo, title="IG attribution, aligned centre on the best 5-residue window"),
            f"attrlogo|{settings}|centre|5|4",
        )
        kernel_png, kernel_table = None, None
        if with_kernels and model.config.embedding == "cnn":
            patients = ui.sample_sources("sample patient")
            reps = [ui.load_repertoire(s, model.config.max_length) for s in patients]
            motifs = ui.kernel_motifs(model, model_key, reps, tuple(s.key for s in patients), top_n=100)
            kernels = motifs.kernels[:4]
            settings = f"{model_key}|{'+'.join(s.key for s in patients)}|100"
            kernel_png = [
                (
                    ui.kernel_logo_png(motifs, settings, k, "weights"),
                    ui.kernel_logo_png(motifs, settings, k, "activation"),
                )
                for k in kernels
                if k in motifs.activation_logos
            ]
            kernel_table = motifs.summary.head(8)[
                ["kernel", "importance", "top_kmer", "weight_consensus", "position_share"]
            ]

    prediction = result.predictions[target]
    probability = float(prediction) if np.ndim(prediction) == 0 else float(np.max(prediction))
    weights = table["attention"].to_numpy()
    top10 = float(weights[:10].sum())

    # Top sequences, coloured by residue attribution where attributed
    scores = attributed.residue_attributions()
    by_row = {int(r): i for i, r in enumerate(attributed.indices)}
    top = table.head(n_table)
    rows = []
    for rec in top.itertuples(index=False):
        i = by_row.get(int(rec.row))
        seq = (
            _coloured(rec.sequence, scores[i, : len(rec.sequence)])
            if i is not None
            else f'<span class="seq">{html.escape(rec.sequence)}</span>'
        )
        rows.append(
            f"<tr><td>{rec.rank}</td><td>{seq}</td><td>{rec.attention:.3e}</td><td>{rec.count:g}</td>"
            f"<td>{html.escape(str(rec.v_call))}</td><td>{html.escape(str(rec.j_call))}</td></tr>"
        )
    top_html = (
        "<table><tr><th>rank</th><th>sequence</th><th>attention</th><th>count</th><th>V</th><th>J</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    reasons = repertoire.report.reasons()
    card = ui.model_card(model)
    card_md = ui.model_card_markdown(model)
    stamp = time.strftime("%Y-%m-%d %H:%M")

    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>DeepRC report: {html.escape(source.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>DeepRC Explorer report: {html.escape(source.name)}</h1>",
        f"<p class='muted'>{stamp} · model {html.escape(model.path.name)} · deeprc_core {__version__} · computed on {html.escape(ui.device_label())}</p>",
        "<h2>Prediction</h2>",
        f"<p><span class='big'>P({html.escape(positive)}) = {probability:.3f}</span> &nbsp; over {len(repertoire):,} distinct sequences. "
        f"The 10 highest-attention sequences hold {top10:.1%} of the attention.</p>",
        f"<p class='muted'>{html.escape(repertoire.report.summary())}</p>",
        _table(reasons[reasons["rows"] > 0]),
        f"<h2>Top {len(top)} sequences by attention</h2>",
        f"<p class='muted'>Residues of the {len(attributed)} attributed sequences are shaded by their integrated-gradient "
        f"attribution to the sequence's attention logit, i.e. why the model attends to it ({steps} steps, zero baseline), relative to each sequence's strongest residue: red raises its attention, blue lowers it; hover for values.</p>",
        top_html,
        "<h2>Attribution logo</h2>",
        f"<p class='muted'>Top {len(attributed)} sequences, each aligned on its highest-attribution 5-residue window.</p>",
        _img(logo_png, "attribution logo"),
    ]
    if kernel_png is not None:
        parts += [
            "<h2>Kernel motifs</h2>",
            "<p class='muted'>The 4 most important first-layer kernels (importance over the three sample patients): residue weights and the k-mers that activate them most.</p>",
            "<table><tr>"
            + "".join(f"<td>{_img(w, 'weights')}<br/>{_img(a, 'top k-mers')}</td>" for w, a in kernel_png)
            + "</tr></table>",
            _table(kernel_table.round(4)),
        ]
    parts += ["<h2>Model card</h2>", _table(card)]
    if card_md:
        parts.append(f"<pre style='white-space: pre-wrap'>{html.escape(card_md)}</pre>")
    parts.append(
        "<p class='muted'>DeepRC (Widrich et al., NeurIPS 2020) embeds each CDR3 with a CNN, scores it with an attention "
        "network, pools the repertoire with softmax attention and predicts from the pooled vector.</p></body></html>"
    )
    report_html = "\n".join(parts)

    cols = st.columns([1, 2])
    cols[0].metric(f"P({positive})", f"{probability:.3f}")
    cols[1].download_button(
        "Download the report (HTML)",
        data=report_html.encode(),
        file_name=f"deeprc_report_{source.name}.html",
        mime="text/html",
        type="primary",
        icon=":material/download:",
        key="report_download",
        on_click="ignore",
    )
    st.caption(f"{len(report_html) / 1024:,.0f} KB, self-contained (images embedded as base64 PNG).")
    with st.expander("Preview", expanded=True):
        st.iframe(report_html, height=700)


ui.run_page("Report", main)
