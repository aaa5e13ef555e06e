"""Attention: how much attention the model paid to every sequence of a repertoire, which sequences hold it,
a motif search over them, their V/J genes, and the residue attributions of a chosen sequence."""

import numpy as np
import streamlit as st

from deeprc_core.attribution import attribution_matrix
from deeprc_core.errors import DeepRCError
from deeprc_core.plots import (
    attention_distribution_figure,
    attention_rank_figure,
    attribution_heatmap_figure,
    logo_figure,
)
from deeprc_core.recovery import witness_mask
from deeprc_core.report import attention_heads
from deeprc_core.scoring import attention_concentration, gene_usage
from explorer import cache, figures, models, sources

st.title("Attention over every sequence")
model, model_key = models.current_model()
target, positive = models.positive_class(model)

with st.expander("Add a repertoire file"):
    upload = st.file_uploader("Repertoire file", key="attention_upload", help=sources.upload_help())
    if upload is not None:
        _, errors = sources.add_uploads([upload], model.config.max_length)
        for message in errors:
            st.error(message)

source = sources.pick_repertoire("attention")
repertoire = sources.load_repertoire(source, model.config.max_length)
with st.spinner(f"Scoring {len(repertoire):,} sequences…"):
    table = cache.cached_attention_table(model, model_key, repertoire, source.key)
    result = cache.cached_score(model, model_key, repertoire, source.key)

# Headline: the prediction and how concentrated the attention is
prediction = result.prediction
weights = table["attention"].to_numpy()
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
concentration = attention_concentration(weights, top_k)
cols[3].metric(f"Attention held by the top {top_k}", f"{concentration['top_share']:.1%}")
cols[4].metric(
    "Half the attention in",
    f"{int(concentration['half_count']):,} seq.",
    help="How many top sequences hold half of the attention: the fewer, the more focused the model.",
)

# Motif search and filters
left, mid, right = st.columns([2, 2, 2])
motif = left.text_input(
    "Motif (regular expression)",
    key="attention_motif",
    placeholder="e.g. GWQH or YW.D or S[LI]GQ",
    help="Sequences containing a match are marked in the table and in the rank plot.",
)
motif = motif.strip().upper()
genes_v = mid.multiselect("V genes", sorted(g for g in table["v_call"].unique() if g), key="attention_v")
genes_j = right.multiselect("J genes", sorted(g for g in table["j_call"].unique() if g), key="attention_j")

matches = None
if motif:
    try:
        matches = witness_mask(table["sequence"].to_numpy(), regex=motif)
    except DeepRCError as exc:
        st.error(f"{exc} Use letters, '.' for any residue, [..] for a choice.")
if matches is not None and matches.any():
    st.success(
        f"{int(matches.sum()):,} sequences contain '{motif}'; together they hold {weights[matches].sum():.1%} of the "
        f"attention; the best-ranked one is #{int(table.loc[matches, 'rank'].min()):,}."
    )
elif matches is not None:
    st.warning(f"No sequence of {source.name} contains '{motif}'.")

heads = [h for h in attention_heads(model) if h["column"] in table.columns]
copies = [h for h in heads if h["same_as"] is not None]
if copies and not st.toggle(
    f"Show the {len(copies)} heads that started as copies of another",
    key="attention_all_heads",
    help="With fewer seeded detectors than heads, the spare heads start reading the same detectors as the first "
    "ones; training moves them only a little, so their columns are near-duplicates.",
):
    heads = [h for h in heads if h["same_as"] is None]
shown = table[["rank", "sequence", "attention", "count", "v_call", "j_call", *(h["column"] for h in heads)]]
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
    "attention": st.column_config.NumberColumn("attention", format="%.3e", help="Softmax weight over the repertoire"),
    "count": st.column_config.NumberColumn("count", format="localized"),
    "motif": st.column_config.CheckboxColumn("motif", help=f"Contains '{motif}'"),
    **{
        h["column"]: st.column_config.NumberColumn(
            h["label"],
            format="%.3e",
            help=f"Softmax weight in head h{h['number']}"
            + (f", which read {h['reads']} at the seeded start" if h["reads"] else "")
            + (f"; it started as a copy of h{h['same_as']}" if h["same_as"] else ""),
        )
        for h in heads
    },
}
figures.show_table(
    filtered, f"attention_{source.name}.tsv", f"attention_{source.key}_{motif}_{len(filtered)}", config, "sequences"
)

left, right = st.columns(2)
with left:
    rank_figure = attention_rank_figure(weights, witnesses=matches, title="Attention by rank (log scale)")
    st.plotly_chart(rank_figure, width="stretch")
with right:
    st.plotly_chart(attention_distribution_figure(weights, witnesses=matches), width="stretch")

# V/J usage among the top sequences against the whole repertoire
st.subheader("V and J genes among the top sequences")
usage_n = len(table)
if len(table) > 20:
    usage_n = st.slider(
        "Top sequences", 10, min(1000, len(table)), min(100, len(table)), step=10, key="attention_usage_n"
    )
for col, gene in zip(st.columns(2), ("v_call", "j_call")):
    col.markdown(f"**{'V' if gene == 'v_call' else 'J'} genes** (share of sequences)")
    col.bar_chart(gene_usage(table, gene, usage_n), horizontal=True, stack=False, height=360)

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
    attributed = cache.cached_attributions(model, model_key, repertoire, source.key, rows=(row,), n_steps=32)
heatmap = attribution_heatmap_figure(attributed, title=f"Residue attributions of #{table.loc[choice, 'rank']:,}")
heatmap.update_layout(height=230, margin={"t": 50, "b": 40})
st.plotly_chart(heatmap, width="stretch")
left, _ = st.columns([3, 2])
with left:
    figures.show_figure(
        lambda: logo_figure(attribution_matrix(attributed, 0), title="attribution per residue", figsize=(6.0, 2.2)),
        f"seqlogo|{model_key}|{source.key}|{row}",
        f"attribution_{table.loc[choice, 'sequence']}",
    )
st.caption(
    "Integrated gradients (32 steps, zero baseline) of this sequence's attention (its log share over the "
    "attention heads) with respect to each residue: why the model attends to it. Red raises its attention, blue "
    f"lowers it; the Attributions page also explains what it adds to the prediction for '{positive}'."
)
