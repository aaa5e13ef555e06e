"""Kernel motifs: what every first-layer CNN kernel detects (weight and activation logos), how much the
prediction relies on it, and its top k-mers; downloads of the grid, the matrices and the tables."""

import pandas as pd
import streamlit as st

from deeprc_core.motifs import motif_kernels, parse_motifs
from deeprc_core.plots import figure_to_bytes, kernel_grid_figure, kernel_importance_figure, logo_figure
from explorer import cache, figures, models, sources

DATA = {
    "patients": "Sample patients",
    "current": "The current repertoire",
    "weights": "Weights only",
}
COLUMNS = {
    "seeded_on": st.column_config.TextColumn(
        "seeded on",
        help="The pattern enriched in the training labels that the data-driven start wrote into this kernel before "
        "training, which then fine-tuned it (empty: a random start). A seeded kernel's motif was found by k-mer "
        "enrichment, not learned from scratch.",
    ),
    "importance": st.column_config.NumberColumn(
        "importance", format="%.3g", help="Mean absolute output change when the kernel is ablated"
    ),
    "importance_abs": st.column_config.NumberColumn("|importance|", format="%.3g"),
    "effect": st.column_config.NumberColumn(
        "effect",
        format="%.3g",
        help="Signed mean output change when ablated (positive: the kernel supports the output)",
    ),
    "position_share": st.column_config.ProgressColumn(
        "position share",
        min_value=0.0,
        max_value=1.0,
        format="%.2f",
        help="Share of the kernel's weights on position features rather than residues",
    ),
    "max_activation": st.column_config.NumberColumn("max activation", format="%.3g"),
    "attention_share": st.column_config.NumberColumn(
        "attention share",
        format="%.2f",
        help="Share of the rise of the top-attended sequences' attention logits above an average sequence's "
        "that this kernel carries (integrated gradients; all shares add up to 1, negative = lowers attention)",
    ),
    "best_motif": st.column_config.TextColumn("best motif", help="The known motif the weight logo matches best"),
    "motif_correlation": st.column_config.NumberColumn(
        "motif r", format="%.2f", help="Pearson correlation of the weight logo with the best motif"
    ),
}


def motif_finding(found: pd.DataFrame) -> list[str]:
    """One Markdown line per known motif: the kernels that found it, or the best (poor) match."""
    lines = []
    for motif, group in found.groupby("motif", sort=False):
        if not group["found"].iloc[0]:
            r = group.iloc[0]
            lines.append(
                f"**{motif}**: no kernel matches it well (best: kernel {int(r['kernel'])}, r = {r['correlation']:.2f})."
            )
            continue
        parts = [
            f"kernel {int(r.kernel)} (r = {r.correlation:.2f}"
            + (f", {r.attention_share:.0%} of the attention logit" if pd.notna(r.attention_share) else "")
            + (f", seeded on {r.seeded_on}" if r.seeded_on else "")
            + ")"
            for r in group.head(3).itertuples()
        ]
        lines.append(f"**{motif}**: " + ", ".join(parts) + (f", and {len(group) - 3} more" if len(group) > 3 else ""))
    return lines


st.title("Kernel motifs")
model, model_key = models.current_model()
target, positive = models.positive_class(model)
if model.config.embedding != "cnn":
    st.info("Kernel motifs exist only for CNN models; this model embeds sequences with an LSTM.")
    st.stop()
st.caption(
    "Each first-layer kernel scans a CDR3 for a short pattern. **Weight logos** show the residues a kernel prefers "
    f"(per position, centred); **activation logos** the k-mers that excite it most; **importance** is how much the "
    f"output for '{positive}' changes (on average, either way) when the kernel is switched off; **attention share** "
    "is its part of the attention logit of the top-attended sequences; with known motifs, each kernel's **best "
    "motif** is the one its weight logo matches best (Pearson correlation)."
)

cols = st.columns([3, 1, 1, 1])
data = cols[0].segmented_control(
    "Repertoires for activations and importance",
    list(DATA),
    format_func=DATA.get,
    default="patients",
    key="kernels_data",
)
data = data or "patients"
n_kernels = model.convs[0].out_channels
shown_n = cols[1].slider("Kernels shown", 1, n_kernels, min(4, n_kernels), key="kernels_shown")
top_n = cols[2].slider("Sequences per activation logo", 20, 500, 100, step=20, key="kernels_top_n")
n_cols = cols[3].slider("Columns", 1, 6, 4, key="kernels_columns")
truth = sources.sample_truth()
st.session_state.setdefault(
    "kernels_known_motifs", " ".join(sorted(truth["motif"].astype(str).unique())) if "motif" in truth.columns else ""
)
known = st.text_input(
    "Known motifs",
    key="kernels_known_motifs",
    help="Motifs to match every kernel against, separated by spaces ('.' = any residue); the default is the "
    "sample data's implanted motifs. Empty: no matching.",
)
motif_list, refused = parse_motifs(known)
if refused:
    st.error(f"'{refused[0]}' is not a motif: use the 20 amino-acid letters and '.' for any residue.")

if data == "patients":
    chosen = sources.sample_sources("sample patient")
else:
    chosen = [sources.current_source()] if data == "current" else []
repertoires = [sources.load_repertoire(s, model.config.max_length) for s in chosen]
if chosen:
    st.caption("Using: " + ", ".join(s.name for s in chosen))
with st.spinner("Computing kernel logos and importances…"):
    keys = tuple(s.key for s in chosen)
    motifs = cache.cached_kernel_motifs(model, model_key, repertoires, keys, top_n=top_n, motifs=motif_list)

if chosen:
    st.plotly_chart(kernel_importance_figure(motifs), width="stretch")
if motif_list:
    st.subheader("Which kernels found which motif")
    for line in motif_finding(motif_kernels(motifs)):
        st.markdown(line)
    st.caption(
        "A kernel counts as having found a motif when its weight logo matches that motif best among the known ones, "
        "with a correlation of at least 0.5; kernels are listed by their share of the attention logit (all kernels "
        "in the table below). A kernel *seeded on* a pattern did not learn it from scratch: the data-driven start "
        "wrote that pattern, enriched in the training labels, into it before training fine-tuned it."
    )

kernels = motifs.kernels[:shown_n]
st.subheader(f"The {len(kernels)} most important kernels" if chosen else f"The first {len(kernels)} kernels")
settings = f"{model_key}|{'+'.join(keys)}|{top_n}"
for row in range(0, len(kernels), n_cols):
    for col, kernel in zip(st.columns(n_cols), kernels[row : row + n_cols]):
        col.image(figures.kernel_logo_png(motifs, settings, kernel, "weights"), width="stretch")
        if kernel in motifs.activation_logos:
            col.image(figures.kernel_logo_png(motifs, settings, kernel, "activation"), width="stretch")
st.caption("Upper logo of each kernel: its residue weights (centred); lower: the k-mers that activate it most.")
figures.figure_downloads(
    lambda fmt: figure_to_bytes(kernel_grid_figure(motifs, kernels, n_cols=n_cols), fmt), "kernel_logos", "kernels_grid"
)

st.subheader("Kernels")
st.dataframe(motifs.summary, hide_index=True, column_config=COLUMNS, width="stretch")

st.subheader("One kernel")
kernel = st.selectbox(
    "Kernel",
    motifs.kernels,
    format_func=lambda k: (
        f"kernel {k}"
        + (f" · top k-mer {motifs.top_kmers[k]['kmer'].iloc[0]}" if len(motifs.top_kmers.get(k, ())) else "")
    ),
    key="kernels_one",
)
if kernel in kernels:
    st.caption(f"Kernel {kernel}'s weight and activation logos are in the grid above.")
else:
    cols = st.columns(2)
    with cols[0]:
        figures.show_figure(
            lambda: logo_figure(motifs.weight_logos[kernel], title=f"kernel {kernel}: residue weights (centred)"),
            f"kweight|{model_key}|{kernel}",
            f"kernel_{kernel}_weights",
        )
    if kernel in motifs.activation_logos:
        with cols[1]:
            figures.show_figure(
                lambda: logo_figure(motifs.activation_logos[kernel], title=f"kernel {kernel}: top k-mers (bits)"),
                f"kact|{settings}|{kernel}",
                f"kernel_{kernel}_activation",
            )
if kernel in motifs.top_kmers:
    k_top = st.columns(4)[0].number_input(
        "Top k-mers", 5, max(5, len(motifs.top_kmers[kernel])), 20, key="kernels_top_k"
    )
    st.dataframe(
        motifs.top_kmers[kernel].head(int(k_top)),
        hide_index=True,
        column_config={"activation": st.column_config.NumberColumn(format="%.3g")},
        width="stretch",
    )
else:
    st.info("Pick sample patients or a repertoire above to see this kernel's top k-mers.")

st.subheader("Downloads")
cols = st.columns(3)
with cols[0]:
    figures.download(
        "Kernel table (TSV)", lambda: motifs.summary.to_csv(sep="\t", index=False).encode(), "kernels.tsv",
        "kernels_dl_summary",
    )  # fmt: skip
with cols[1]:
    figures.download(
        "All logo matrices (TSV)", lambda: figures.cached_tsv(motifs.logo_matrices(), f"kmat|{settings}"),
        "kernel_logo_matrices.tsv", "kernels_dl_matrices",
    )  # fmt: skip
with cols[2]:
    figures.download(
        "Top k-mers (TSV)", lambda: figures.cached_tsv(motifs.top_kmer_table(), f"kmers|{settings}"),
        "kernel_top_kmers.tsv", "kernels_dl_kmers",
    )  # fmt: skip
