"""Attributions: integrated-gradient logos over a repertoire's top-attended sequences, per-sequence heatmaps,
a positive and a negative repertoire side by side, and downloads of every figure and matrix."""

import pandas as pd
import streamlit as st

import ui
from deeprc_core.errors import DeepRCError
from deeprc_core.motifs import ALIGNMENTS, attribution_logo, enrichment_logo
from deeprc_core.plots import attribution_heatmap_figure, logo_figure


def main() -> None:
    st.title("Residue attributions")
    model, model_key = ui.current_model()
    target, positive = ui.positive_class(model)
    st.caption(
        f"Integrated gradients of the output for '{positive}' with respect to every residue of the top-attended "
        "sequences, each inside its repertoire. Logos align each sequence on its highest-attribution window; letters "
        "above the axis support the prediction, letters below oppose it."
    )

    source = ui.pick_repertoire("attributions")
    cols = st.columns(6)
    top_n = cols[0].slider(
        "Top sequences (N)",
        5,
        200,
        50,
        step=5,
        key="attributions_top_n",
        help="The N highest-attention sequences are attributed.",
    )
    steps = cols[1].slider(
        "Integration steps", 8, 128, 32, step=8, key="attributions_steps", help="More steps: more exact, slower."
    )
    align = cols[2].selectbox(
        "Alignment",
        ALIGNMENTS,
        index=ALIGNMENTS.index("centre"),
        key="attributions_align",
        help="Anchor of each sequence in its best window.",
    )
    width = cols[3].slider(
        "Window (residues)",
        3,
        9,
        5,
        key="attributions_width",
        help="Width of the highest-attribution window each sequence is aligned on.",
    )
    flank = cols[5].slider(
        "Flank (residues)", 0, 10, 4, key="attributions_flank", help="Residues shown each side of the window."
    )
    baseline = cols[4].selectbox(
        "Baseline",
        ["zero", "background"],
        key="attributions_baseline",
        help="zero: no residue; background: the repertoire's residue frequencies.",
    )

    def attribute(src: ui.RepertoireSource):
        rep = ui.load_repertoire(src, model.config.max_length)
        with st.spinner(f"Integrated gradients over the top {min(top_n, len(rep))} sequences of {src.name}…"):
            return rep, ui.attributions(model, model_key, rep, src.key, top=top_n, n_steps=steps, baseline=baseline)

    repertoire, result = attribute(source)
    logo = attribution_logo(result, width=width, align=align, flank=flank)
    try:
        enrichment = enrichment_logo(result, repertoire, k=width, kind="information")
    except DeepRCError as exc:  # e.g. every attributed sequence is shorter than the window
        enrichment, enrichment_error = None, str(exc)
    stem = f"{source.name}_top{top_n}"
    settings = f"{model_key}|{source.key}|{top_n}|{steps}|{baseline}"

    left, right = st.columns([3, 2])
    with left:
        st.subheader(f"Attribution logo: top {len(result)} sequences of {source.name}")
        ui.show_figure(
            lambda: logo_figure(logo, title=f"IG attribution, aligned {align} on the best {width}-residue window"),
            f"attrlogo|{settings}|{align}|{width}|{flank}",
            f"attribution_logo_{stem}",
        )
    with right:
        st.subheader("Enrichment of the best windows")
        if enrichment is None:
            st.info(enrichment_error)
        else:
            ui.show_figure(
                lambda: logo_figure(enrichment, title=f"best {width}-mers vs all {width}-mers (bits)"),
                f"enrichlogo|{settings}|{width}",
                f"enrichment_logo_{stem}",
            )

    relative = result.relative_deltas()
    st.caption(
        f"Convergence: median relative completeness error {pd.Series(relative).median():.1%} over {len(result)} "
        f"sequences ({steps} steps; raise the steps if this exceeds a few percent)."
    )

    st.subheader("Per-sequence heatmaps")
    n_rows = len(result)
    if len(result) > 5:
        n_rows = st.slider(
            "Sequences shown", 5, min(50, len(result)), min(20, len(result)), key="attributions_heatmap_rows"
        )
    heatmap = attribution_heatmap_figure(
        result, max_sequences=n_rows, title=f"Residue attributions, top {n_rows} of {source.name}"
    )
    heatmap.update_layout(height=max(320, 28 * n_rows + 120))
    st.plotly_chart(heatmap, width="stretch")

    st.subheader("Downloads")
    frame = result.to_frame()
    cols = st.columns(3)
    cols[0].download_button(
        "Heatmap table (TSV)",
        data=lambda: ui.table_tsv(frame, f"heat_{model_key}_{source.key}_{top_n}_{steps}_{baseline}"),
        file_name=f"attributions_{stem}.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="attributions_dl_frame",
    )
    cols[1].download_button(
        "Logo matrix (TSV)",
        data=lambda: logo.to_csv(sep="\t", float_format="%.6g").encode(),
        file_name=f"attribution_logo_{stem}.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="attributions_dl_logo",
    )
    if enrichment is not None:
        cols[2].download_button(
            "Enrichment matrix (TSV)",
            data=lambda: enrichment.to_csv(sep="\t", float_format="%.6g").encode(),
            file_name=f"enrichment_logo_{stem}.tsv",
            mime="text/tab-separated-values",
            on_click="ignore",
            key="attributions_dl_enrichment",
        )

    st.divider()
    st.subheader(f"'{positive}' and the other class side by side")
    labels = ui.sample_labels()
    known = (
        labels.drop_duplicates("repertoire").set_index("repertoire")[target].astype(str)
        if target in labels.columns
        else pd.Series(dtype=str)
    )
    sources = ui.all_sources()
    by_key = {s.key: s for s in sources}
    pos_default = next((s.key for s in sources if known.get(s.name) == positive), sources[0].key)
    neg_default = next((s.key for s in sources if s.name in known and known.get(s.name) != positive), sources[-1].key)
    st.session_state.setdefault("attributions_compare_pos", pos_default)
    st.session_state.setdefault("attributions_compare_neg", neg_default)
    compare = st.toggle(
        "Compare two repertoires", key="attributions_compare", help="Attributes both; takes a few seconds."
    )
    if compare:
        cols = st.columns(2)
        for col, key, title in (
            (cols[0], "attributions_compare_pos", f"'{positive}' repertoire"),
            (cols[1], "attributions_compare_neg", "other repertoire"),
        ):
            with col:
                chosen = st.selectbox(title, list(by_key), format_func=lambda k: by_key[k].label, key=key)
                src = by_key[chosen]
                rep, res = attribute(src)
                label = known.get(src.name, "label unknown")
                ui.show_figure(
                    lambda res=res, src=src, label=label: logo_figure(
                        attribution_logo(res, width=width, align=align, flank=flank), title=f"{src.name} ({label})"
                    ),
                    f"attrlogo|{model_key}|{src.key}|{top_n}|{steps}|{baseline}|{align}|{width}|{flank}|{label}",
                    f"attribution_logo_{src.name}",
                )
        st.caption(
            "Both logos share the settings above. A positive repertoire's logo should show the motif; a negative one's should not."
        )


ui.run_page("Attributions", main)
