"""Attention: how much attention the model paid to every sequence of a repertoire, which sequences hold it,
a motif search over them, their V/J genes, and the residue attributions of a chosen sequence."""

import re

import numpy as np
import pandas as pd
import streamlit as st

import ui
from deeprc_core.attribution import attribution_matrix
from deeprc_core.plots import (
    attention_distribution_figure,
    attention_rank_figure,
    attribution_heatmap_figure,
    logo_figure,
)


def main() -> None:
    st.title("Attention over every sequence")
    model, model_key = ui.current_model()
    target, positive = ui.positive_class(model)

    with st.expander("Add a repertoire file"):
        upload = st.file_uploader("Repertoire file", key="attention_upload", help=ui.upload_help())
        if upload is not None:
            _, errors = ui.add_uploads([upload], model.config.max_length)
            for message in errors:
                st.error(message)

    source = ui.pick_repertoire("attention")
    repertoire = ui.load_repertoire(source, model.config.max_length)
    with st.spinner(f"Scoring {len(repertoire):,} sequences…"):
        table = ui.attention(model, model_key, repertoire, source.key)
        result = ui.score(model, model_key, repertoire, source.key)

    # Headline: the prediction and how concentrated the attention is
    prediction = result.predictions[target]
    weights = table["attention"].to_numpy()
    cumulative = np.cumsum(weights)
    cols = st.columns(5)
    if np.ndim(prediction) == 0:
        cols[0].metric(f"P({positive})", f"{float(prediction):.3f}")
    cols[1].metric("Sequences", f"{len(table):,}")
    top_k = cols[2].number_input(
        "Top k",
        min_value=1,
        max_value=max(1, len(table)),
        value=min(10, len(table)),
        key="attention_top_k",
        help="How many of the highest-attention sequences the share next to it refers to.",
    )
    cols[3].metric(f"Attention held by the top {top_k}", f"{cumulative[min(top_k, len(table)) - 1]:.1%}")
    half = int(np.searchsorted(cumulative, 0.5) + 1)
    cols[4].metric(
        "Half the attention in",
        f"{half:,} seq.",
        help="How many top sequences hold half of the attention: the fewer, the more focused the model.",
    )

    # Motif search and filters
    left, mid, right = st.columns([2, 2, 2])
    motif = (
        left.text_input(
            "Motif (regular expression)",
            key="attention_motif",
            placeholder="e.g. GWQH or YW.D or S[LI]GQ",
            help="Sequences containing a match are marked in the table and in the rank plot.",
        )
        .strip()
        .upper()
    )
    genes_v = mid.multiselect("V genes", sorted(g for g in table["v_call"].unique() if g), key="attention_v")
    genes_j = right.multiselect("J genes", sorted(g for g in table["j_call"].unique() if g), key="attention_j")

    matches = None
    if motif:
        try:
            pattern = re.compile(motif)
        except re.error as exc:
            st.error(
                f"'{motif}' is not a valid regular expression ({exc}). Use letters, '.' for any residue, [..] for a choice."
            )
        else:
            matches = table["sequence"].str.contains(pattern, regex=True).to_numpy()
            n_match = int(matches.sum())
            if n_match:
                best = int(table.loc[matches, "rank"].min())
                st.success(
                    f"{n_match:,} sequences contain '{motif}'; together they hold {weights[matches].sum():.1%} of the "
                    f"attention; the best-ranked one is #{best:,}."
                )
            else:
                st.warning(f"No sequence of {source.name} contains '{motif}'.")

    shown = table.drop(columns=["row", "attention_logit"], errors="ignore")
    shown = shown[
        [
            "rank",
            "sequence",
            "attention",
            "count",
            "v_call",
            "j_call",
            *[c for c in shown.columns if c.startswith("attention_h")],
        ]
    ]
    keep = np.ones(len(shown), dtype=bool)
    if matches is not None:
        shown.insert(2, "motif", matches)
        if st.toggle("Only sequences matching the motif", key="attention_only_matches"):
            keep &= matches
    if genes_v:
        keep &= shown["v_call"].isin(genes_v).to_numpy()
    if genes_j:
        keep &= shown["j_call"].isin(genes_j).to_numpy()
    filtered = shown[keep]
    st.subheader(f"{len(filtered):,} sequences" + (f" of {len(shown):,}" if len(filtered) < len(shown) else ""))
    config = {
        "attention": st.column_config.NumberColumn(
            "attention", format="%.3e", help="Softmax weight over the repertoire"
        ),
        "count": st.column_config.NumberColumn("count", format="localized"),
        "motif": st.column_config.CheckboxColumn("motif", help=f"Contains '{motif}'"),
    }
    ui.show_table(
        filtered, f"attention_{source.name}.tsv", f"attention_{source.key}_{motif}_{len(filtered)}", config, "sequences"
    )

    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            attention_rank_figure(weights, witnesses=matches, title="Attention by rank (log scale)"), width="stretch"
        )
    with right:
        st.plotly_chart(attention_distribution_figure(weights, witnesses=matches), width="stretch")

    # V/J usage among the top sequences against the whole repertoire
    st.subheader("V and J genes among the top sequences")
    usage_n = len(table)
    if len(table) > 20:
        usage_n = st.slider(
            "Top sequences", 10, min(1000, len(table)), min(100, len(table)), step=10, key="attention_usage_n"
        )
    cols = st.columns(2)
    for col, gene in zip(cols, ("v_call", "j_call")):
        top = table[gene].head(usage_n).replace("", "unknown").value_counts(normalize=True)
        everyone = table[gene].replace("", "unknown").value_counts(normalize=True)
        usage = pd.DataFrame({f"top {usage_n}": top, "whole repertoire": everyone}).fillna(0.0)
        usage = usage.sort_values(f"top {usage_n}", ascending=False).head(12)
        col.markdown(f"**{'V' if gene == 'v_call' else 'J'} genes** (share of sequences)")
        col.bar_chart(usage, horizontal=True, stack=False, height=360)

    # One sequence's residue attributions
    st.subheader("Residue attributions of one sequence")
    candidates = filtered.head(200)
    if candidates.empty:
        st.info("No sequence passes the filters.")
        st.stop()
    choice = st.selectbox(
        "Sequence",
        candidates.index.tolist(),
        format_func=lambda i: (
            f"#{candidates.loc[i, 'rank']:,}  {candidates.loc[i, 'sequence']}  (attention {candidates.loc[i, 'attention']:.2e})"
        ),
        key="attention_sequence",
        help="The 200 best-ranked sequences that pass the filters.",
    )
    row = int(table.loc[choice, "row"])
    with st.spinner("Integrated gradients…"):
        attributed = ui.attributions(model, model_key, repertoire, source.key, rows=(row,), n_steps=32)
    heatmap = attribution_heatmap_figure(attributed, title=f"Residue attributions of #{table.loc[choice, 'rank']:,}")
    heatmap.update_layout(height=230, margin={"t": 50, "b": 40})
    st.plotly_chart(heatmap, width="stretch")
    left, _ = st.columns([3, 2])
    with left:
        ui.show_figure(
            lambda: logo_figure(attribution_matrix(attributed, 0), title="attribution per residue", figsize=(6.0, 2.2)),
            f"seqlogo|{model_key}|{source.key}|{row}",
            f"attribution_{table.loc[choice, 'sequence']}",
        )
    st.caption(
        "Integrated gradients (32 steps, zero baseline) of this sequence's attention logit with respect to each "
        "residue: why the model attends to it. Red raises its attention, blue lowers it; the Attributions page also "
        f"explains what it adds to the prediction for '{positive}'."
    )


ui.run_page("Attention", main)
