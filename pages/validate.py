"""Validate: when the truth is known (the sample data's implanted witnesses, a motif regex or a list of known
sequences), how well attention, attributions and kernels recover it."""

import re

import pandas as pd
import streamlit as st

import ui
from deeprc_core.motifs import kernel_weight_logo
from deeprc_core.plots import logo_figure, recall_at_k_figure, recovery_figure
from deeprc_core.recovery import kernel_motif_match, witness_mask

TRUTH = {"sample": "Sample truth (truth.tsv)", "regex": "A motif (regex)", "sequences": "Known sequences"}
DATA = {"patients": "Sample patients", "dataset": "Sample dataset (10 repertoires)", "current": "Current repertoire"}
PLAIN_MOTIF = re.compile(r"^[ACDEFGHIKLMNPQRSTVWY.]+$")


def main() -> None:
    st.title("Validate against known witnesses")
    model, model_key = ui.current_model()
    st.caption(
        "When you know which sequences carry the signal (witnesses), check the model found them: are they at the top "
        "of the attention ranking (precision/recall at k, AUPRC), does the attribution mass fall on the motif residues "
        "(against the chance level), and does a CNN kernel match the motif?"
    )

    truth_kind = (
        st.segmented_control("Truth", list(TRUTH), format_func=TRUTH.get, default="sample", key="validate_truth")
        or "sample"
    )
    data = (
        st.segmented_control("Repertoires", list(DATA), format_func=DATA.get, default="patients", key="validate_data")
        or "patients"
    )

    if data == "patients":
        sources = ui.sample_sources("sample patient")
    elif data == "dataset":
        labels = ui.sample_labels().set_index("repertoire")
        dataset = ui.sample_sources("sample dataset")
        by_label = {}
        for s in dataset:
            by_label.setdefault(str(labels["disease"].get(s.name, "")) if "disease" in labels else "", []).append(s)
        sources = [s for group in by_label.values() for s in group[:5]]
    else:
        sources = [s for s in ui.all_sources() if s.key == st.session_state.get("current_repertoire")][
            :1
        ] or ui.all_sources()[:1]
    repertoires = [ui.load_repertoire(s, model.config.max_length) for s in sources]

    motifs: list[str] = []
    if truth_kind == "sample":
        truth = ui.sample_truth()
        motifs = sorted(truth["motif"].astype(str).unique()) if "motif" in truth else []
    elif truth_kind == "regex":
        regex = (
            st.text_input(
                "Motif (regular expression)",
                value="GWQH|YW.D",
                key="validate_regex",
                help="A sequence containing a match is a witness; '.' is any residue.",
            )
            .strip()
            .upper()
        )
        if not regex:
            st.info("Enter a motif.")
            st.stop()
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            st.error(f"'{regex}' is not a valid regular expression ({exc}).")
            st.stop()
        rows = []
        for rep in repertoires:
            for seq in rep.sequences:
                found = pattern.search(seq)
                if found:
                    rows.append(
                        {
                            "repertoire": rep.name,
                            "sequence": seq,
                            "motif": found.group(0),
                            "motif_start": found.start(),
                            "motif_length": found.end() - found.start(),
                        }
                    )
        truth = pd.DataFrame(rows, columns=["repertoire", "sequence", "motif", "motif_start", "motif_length"])
        motifs = [m for m in regex.split("|") if PLAIN_MOTIF.match(m)]
    else:
        text = st.text_area(
            "Known witness sequences (one CDR3 junction per line)",
            key="validate_sequences",
            height=150,
            placeholder="CASSGWQHEQYF",
        )
        known = sorted({line.strip().upper() for line in text.splitlines() if line.strip()})
        if not known:
            st.info("Paste the junctions known to carry the signal (e.g. antigen-specific clonotypes from VDJdb).")
            st.stop()
        rows = [
            {"repertoire": rep.name, "sequence": seq}
            for rep in repertoires
            for seq in rep.sequences
            if seq in set(known)
        ]
        truth = pd.DataFrame(rows, columns=["repertoire", "sequence"])

    cols = st.columns(2)
    attribute_top = cols[0].slider(
        "Sequences attributed per repertoire (motif mass)",
        0,
        100,
        25,
        step=5,
        key="validate_top",
        help="0 skips integrated gradients.",
    )
    steps = cols[1].slider("Integration steps", 8, 64, 16, step=8, key="validate_steps")

    st.caption("Repertoires: " + ", ".join(s.name for s in sources))
    with st.spinner("Scoring and attributing…"):
        report = ui.recovery(
            model,
            model_key,
            repertoires,
            tuple(s.key for s in sources),
            truth,
            attribute_top,
            steps,
            motifs[0] if motifs else None,
        )
    per = report.per_repertoire
    if per.empty:
        st.info("None of these repertoires contains a known witness; pick repertoires that should carry the signal.")
        st.stop()

    summary = report.summary
    cols = st.columns(5)
    cols[0].metric("Repertoires with witnesses", f"{int(summary['n_positive_repertoires'])}")
    cols[1].metric(
        "Attention AUPRC",
        f"{summary.get('auprc', float('nan')):.3f}",
        help="Average precision of the attention ranking for finding witnesses; chance = the witness share.",
    )
    cols[2].metric(
        "Precision@10",
        f"{summary.get('precision@10', float('nan')):.2f}",
        help="Witnesses among the 10 highest-attention sequences.",
    )
    recall_key = next((k for k in summary if k.startswith("recall@top")), None)
    if recall_key:
        cols[3].metric(recall_key.replace("recall@", "Recall in the "), f"{summary[recall_key]:.2f}")
    if "motif_mass" in summary:
        cols[4].metric(
            "IG on motif residues",
            f"{summary['motif_mass']:.0%}",
            delta=f"chance {summary['chance']:.0%}",
            delta_color="off",
            help="Share of the positive integrated-gradient mass on motif residues, against a uniform attribution.",
        )

    left, right = st.columns(2)
    with left:
        st.plotly_chart(recovery_figure(per), width="stretch")
    with right:
        rankings = {}
        for src, rep in zip(sources, repertoires):
            flags = witness_mask(rep, truth=truth)
            if flags.any():
                rankings[src.name] = (ui.score(model, model_key, rep, src.key).attention_logits[:, 0], flags)
        st.plotly_chart(recall_at_k_figure(rankings), width="stretch")

    st.subheader("Per repertoire")
    st.dataframe(
        per,
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in per.columns if per[c].dtype.kind == "f"
        },
    )
    st.download_button(
        "Download (TSV)",
        data=lambda: per.to_csv(sep="\t", index=False).encode(),
        file_name="recovery.tsv",
        mime="text/tab-separated-values",
        on_click="ignore",
        key="validate_download",
    )

    if motifs and model.config.embedding == "cnn":
        st.subheader("Kernels matching the motif")
        cols = st.columns(len(motifs[:3]))
        for col, motif in zip(cols, motifs[:3]):
            with col:
                match = kernel_motif_match(model, motif)
                best = match.iloc[0]
                st.markdown(f"**{motif}**: best kernel {int(best['kernel'])}, correlation {best['correlation']:.2f}")
                k = int(best["kernel"])
                ui.show_figure(
                    lambda k=k: logo_figure(kernel_weight_logo(model, k), title=f"kernel {k} weights"),
                    f"kweight-best|{model_key}|{k}",
                    f"kernel_{k}_weights",
                )
                st.dataframe(match.head(5), hide_index=True, width="stretch")
    elif truth_kind == "sequences":
        st.caption("Kernel matching needs a motif; it is not computed for a list of sequences.")


ui.run_page("Validate", main)
