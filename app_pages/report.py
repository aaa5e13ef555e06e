"""Report: one self-contained HTML file of a repertoire's analysis (prediction, top sequences coloured by their
residue attributions, attribution logos and kernel motifs as embedded images, the model card)."""

import streamlit as st

from deeprc_core.motifs import attribution_logo
from deeprc_core.plots import logo_figure
from deeprc_core.report import prediction_headline, repertoire_report_html
from explorer import cache, figures, models, sources

st.title("Report")
model, model_key = models.current_model()
spec = model.config.target_spec()
st.caption(
    "A single HTML file with the analysis of one repertoire, images embedded: e-mail it, archive it, open it offline."
)

source = sources.pick_repertoire("report")
cols = st.columns(4)
n_table = cols[0].slider("Top sequences in the table", 10, 200, 25, step=5, key="report_rows")
top_n = cols[1].slider("Sequences attributed (logo)", 10, 200, 50, step=10, key="report_top_n")
steps = cols[2].slider("Integration steps", 8, 128, 32, step=8, key="report_steps")
with_kernels = cols[3].toggle(
    "Include kernel motifs", value=True, key="report_kernels", help="Adds the 4 most important kernels."
)

repertoire = sources.load_repertoire(source, model.config.max_length)
with st.spinner("Scoring, attributing and drawing…"):
    result = cache.cached_score(model, model_key, repertoire, source.key)
    table = cache.cached_attention_table(model, model_key, repertoire, source.key)
    attributed = cache.cached_attributions(
        model, model_key, repertoire, source.key, top=top_n, n_steps=steps, baseline="zero"
    )
    logo = attribution_logo(attributed, width=5, align="centre", flank=4)
    logo_png = figures.cached_png(
        lambda: logo_figure(logo, title="IG attribution, aligned centre on the best 5-residue window"),
        f"attrlogo|{model_key}|{source.key}|{top_n}|{steps}|zero|centre|5|4",
    )
    kernel_pngs, kernel_table = None, None
    if with_kernels and model.config.embedding == "cnn":
        patients = sources.sample_sources("sample patient")
        reps = [sources.load_repertoire(s, model.config.max_length) for s in patients]
        keys = tuple(s.key for s in patients)
        motifs = cache.cached_kernel_motifs(model, model_key, reps, keys, top_n=100)
        settings = f"{model_key}|{'+'.join(keys)}|100"
        kernel_pngs = [
            (
                figures.kernel_logo_png(motifs, settings, k, "weights"),
                figures.kernel_logo_png(motifs, settings, k, "activation"),
            )
            for k in motifs.kernels[:4]
            if k in motifs.activation_logos
        ]
        kernel_table = motifs.summary.head(8)[
            ["kernel", "importance", "top_kmer", "weight_consensus", "position_share"]
        ]

headline = prediction_headline(spec, result.prediction)
report_html = repertoire_report_html(
    repertoire=repertoire,
    model=model,
    headline=headline,
    attention=table,
    attributed=attributed,
    n_steps=steps,
    logo_png=logo_png,
    n_top=n_table,
    kernel_pngs=kernel_pngs,
    kernel_table=kernel_table,
    device=models.device_label(),
    name=source.name,
)

cols = st.columns([1, 2])
cols[0].metric(headline[0], f"{headline[1]:.3f}")
with cols[1]:
    figures.download(
        "Download the report (HTML)",
        report_html.encode(),
        f"deeprc_report_{source.name}.html",
        "report_download",
        type="primary",
        icon=":material/download:",
    )
st.caption(f"{len(report_html) / 1024:,.0f} KB, self-contained (images embedded as base64 PNG).")
with st.expander("Preview", expanded=True):
    st.iframe(report_html, height=700)
