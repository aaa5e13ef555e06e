"""Kernel motifs: what every first-layer CNN kernel detects (weight and activation logos), how much the
prediction relies on it, and its top k-mers; downloads of the grid, the matrices and the tables."""

import pandas as pd
import streamlit as st

import ui
from deeprc_core.motifs import motif_kernels
from deeprc_core.plots import figure_to_bytes, kernel_grid_figure, kernel_importance_figure, logo_figure

DATA = {
    "patients": "Sample patients",
    "current": "The current repertoire",
    "weights": "Weights only",
}


def main() -> None:
    st.title("Kernel motifs")
    model, model_key = ui.current_model()
    target, positive = ui.positive_class(model)
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
    data = (
        cols[0].segmented_control(
            "Repertoires for activations and importance",
            list(DATA),
            format_func=DATA.get,
            default="patients",
            key="kernels_data",
        )
        or "patients"
    )
    n_kernels = model.convs[0].out_channels
    shown_n = cols[1].slider("Kernels shown", 1, n_kernels, min(4, n_kernels), key="kernels_shown")
    top_n = cols[2].slider("Sequences per activation logo", 20, 500, 100, step=20, key="kernels_top_n")
    n_cols = cols[3].slider("Columns", 1, 6, 4, key="kernels_columns")
    truth = ui.sample_truth()
    sample_motifs = " ".join(sorted(truth["motif"].astype(str).unique())) if "motif" in truth.columns else ""
    st.session_state.setdefault("kernels_known_motifs", sample_motifs)
    known = st.text_input(
        "Known motifs",
        key="kernels_known_motifs",
        help="Motifs to match every kernel against, separated by spaces ('.' = any residue); the default is the "
        "sample data's implanted motifs. Empty: no matching.",
    )
    motif_list = tuple(m for m in known.upper().replace(",", " ").split() if m)
    bad = [m for m in motif_list if any(c not in "ACDEFGHIKLMNPQRSTVWY.-" for c in m)]
    if bad:
        st.error(f"'{bad[0]}' is not a motif: use the 20 amino-acid letters and '.' for any residue.")
        motif_list = tuple(m for m in motif_list if m not in bad)

    if data == "patients":
        sources = ui.sample_sources("sample patient")
    elif data == "current":
        sources = [s for s in ui.all_sources() if s.key == st.session_state.get("current_repertoire")][
            :1
        ] or ui.all_sources()[:1]
    else:
        sources = []
    repertoires = [ui.load_repertoire(s, model.config.max_length) for s in sources]
    if sources:
        st.caption("Using: " + ", ".join(s.name for s in sources))
    with st.spinner("Computing kernel logos and importances…"):
        motifs = ui.kernel_motifs(
            model, model_key, repertoires, tuple(s.key for s in sources), top_n=top_n, motifs=motif_list
        )

    if sources:
        st.plotly_chart(kernel_importance_figure(motifs), width="stretch")
    if motif_list:
        st.subheader("Which kernels found which motif")
        found = motif_kernels(motifs)
        for motif, group in found.groupby("motif", sort=False):
            if group["found"].iloc[0]:
                parts = [
                    f"kernel {int(r.kernel)} (r = {r.correlation:.2f}"
                    + (f", {r.attention_share:.0%} of the attention logit" if pd.notna(r.attention_share) else "")
                    + ")"
                    for r in group.head(3).itertuples()
                ]
                more = f", and {len(group) - 3} more" if len(group) > 3 else ""
                st.markdown(f"**{motif}**: " + ", ".join(parts) + more)
            else:
                r = group.iloc[0]
                st.markdown(
                    f"**{motif}**: no kernel matches it well (best: kernel {int(r['kernel'])}, r = {r['correlation']:.2f})."
                )
        st.caption(
            "A kernel counts as having found a motif when its weight logo matches that motif best among the known ones, "
            "with a correlation of at least 0.5; kernels are listed by their share of the attention logit (all kernels "
            "in the table below)."
        )

    kernels = motifs.kernels[:shown_n]
    st.subheader(f"The {len(kernels)} most important kernels" if sources else f"The first {len(kernels)} kernels")
    settings = f"{model_key}|{'+'.join(s.key for s in sources)}|{top_n}"
    for row in range(0, len(kernels), n_cols):
        cols = st.columns(n_cols)
        for col, kernel in zip(cols, kernels[row : row + n_cols]):
            col.image(ui.kernel_logo_png(motifs, settings, kernel, "weights"), width="stretch")
            if kernel in motifs.activation_logos:
                col.image(ui.kernel_logo_png(motifs, settings, kernel, "activation"), width="stretch")
    st.caption("Upper logo of each kernel: its residue weights (centred); lower: the k-mers that activate it most.")
    ui.png_download(
        lambda fmt: figure_to_bytes(kernel_grid_figure(motifs, kernels, n_cols=n_cols), fmt),
        "kernel_logos",
        "kernels_grid",
    )

    st.subheader("Kernels")
    summary = motifs.summary
    config = {
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
    st.dataframe(summary, hide_index=True, column_config=config, width="stretch")

    st.subheader("One kernel")
    kernel = st.selectbox(
        "Kernel",
        motifs.kernels,
        format_func=lambda k: (
            f"kernel {k}"
            + (
                f" · top k-mer {motifs.top_kmers[k]['kmer'].iloc[0]}"
                if k in motifs.top_kmers and len(motifs.top_kmers[k])
                else ""
            )
        ),
        key="kernels_one",
    )
    if kernel in kernels:
        st.caption(f"Kernel {kernel}'s weight and activation logos are in the grid above.")
    else:
        cols = st.columns(2)
        with cols[0]:
            ui.show_figure(
                lambda: logo_figure(motifs.weight_logos[kernel], title=f"kernel {kernel}: residue weights (centred)"),
                f"kweight|{model_key}|{kernel}",
                f"kernel_{kernel}_weights",
            )
        if kernel in motifs.activation_logos:
            with cols[1]:
                ui.show_figure(
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

    def _matrices() -> bytes:
        frames = []
        for kind, logos in (("weights", motifs.weight_logos), ("activation", motifs.activation_logos)):
            for k, frame in logos.items():
                frames.append(frame.reset_index().assign(kernel=k, kind=kind))
        return pd.concat(frames, ignore_index=True).to_csv(sep="\t", index=False, float_format="%.6g").encode()

    def _kmers() -> bytes:
        frames = [frame.assign(kernel=k) for k, frame in motifs.top_kmers.items()]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["kernel", "kmer"])
        return table.to_csv(sep="\t", index=False, float_format="%.6g").encode()

    cols = st.columns(3)
    cols[0].download_button(
        "Kernel table (TSV)",
        data=lambda: summary.to_csv(sep="\t", index=False).encode(),
        file_name="kernels.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="kernels_dl_summary",
    )
    cols[1].download_button(
        "All logo matrices (TSV)",
        data=_matrices,
        file_name="kernel_logo_matrices.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="kernels_dl_matrices",
    )
    cols[2].download_button(
        "Top k-mers (TSV)",
        data=_kmers,
        file_name="kernel_top_kmers.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="kernels_dl_kmers",
    )


ui.run_page("Kernel motifs", main)
