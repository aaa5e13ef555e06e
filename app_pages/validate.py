"""Validate: when the truth is known (the sample data's implanted witnesses, a motif regex or a list of known
sequences), how well attention, attributions and kernels recover it."""

import re

import streamlit as st

from deeprc_core.attribution import EXPLAIN, EXPLAIN_HELP, EXPLAIN_LABELS
from deeprc_core.labels import first_per_label, label_lookup
from deeprc_core.motifs import kernel_motif_match, kernel_weight_logo
from deeprc_core.plots import logo_figure, recall_at_k_figure, recovery_figure
from deeprc_core.recovery import known_truth, regex_truth, witness_mask
from explorer import cache, figures, models, sources

TRUTH = {"sample": "Sample truth (truth.tsv)", "regex": "A motif (regex)", "sequences": "Known sequences"}
DATA = {"patients": "Sample patients", "dataset": "Sample dataset (10 repertoires)", "current": "Current repertoire"}
PLAIN_MOTIF = re.compile(r"^[ACDEFGHIKLMNPQRSTVWY.]+$")
NAN = float("nan")
CARD_FIGURES = {  # the model card's held-out figures shown here: key -> (label, chance key, help)
    "witness_motif_mass": (
        "IG on motif, per witness",
        "witness_motif_mass_chance",
        "Mean over the witnesses among the top attributed sequences of each one's positive attribution share on its "
        "motif residues.",
    ),
    "motif_mass": ("IG on motif, pooled", "motif_mass_chance", "All attributed sequences' positive mass together."),
    "residue_auroc": (
        "Residue AUROC",
        None,
        "Motif residues vs the others by attribution, per witness (0.5 = chance).",
    ),
    "auprc": ("AUPRC", None, "Average precision of the attention ranking for the witnesses."),
    "witness_recall_top1pct": ("Recall in the top 1 %", None, "Witnesses among the top 1 % by attention."),
    "jaccard_top_n": ("Jaccard top n", None, "Top n by attention vs the n witnesses (AIRR-ML 2025 metric)."),
}
RANKING = [  # recovery summary key -> (label, help); the attention ranking's metrics
    ("auprc", "Attention AUPRC", "Average precision of the attention ranking for finding witnesses; chance = the witness share."),
    *[(f"recall@{k}", f"Recall@{k}", f"Share of the witnesses among the {k} highest-attention sequences.") for k in (10, 100, 1000)],
    ("jaccard@n", "Jaccard top n", "The n highest-attention sequences against the n true witnesses: shared / in either "
     "(the AIRR-ML 2025 challenge metric)."),
    ("precision@10", "Precision@10", "Witnesses among the 10 highest-attention sequences."),
]  # fmt: skip


def model_card_figures(model) -> None:
    """The model card's held-out validation figures, when the model has a card."""
    card = (getattr(model, "info", {}) or {}).get("card")
    held_out = card.get("held_out") if isinstance(card, dict) else None
    if not isinstance(held_out, dict):
        return
    shown = [(k, v) for k, v in CARD_FIGURES.items() if isinstance(held_out.get(k), (int, float))]
    if not shown:
        return
    st.subheader("This model's card: held-out figures")
    for col, (key, (label, chance, text)) in zip(st.columns(len(shown)), shown):
        value = float(held_out[key])
        delta = f"chance {held_out[chance]:.0%}" if chance and isinstance(held_out.get(chance), (int, float)) else None
        col.metric(
            f"Card: {label}", f"{value:.0%}" if chance else f"{value:.3f}", delta=delta, delta_color="off", help=text
        )
    target = held_out.get("explain")
    st.caption(
        "Measured by scripts/make_demo_model.py on independently simulated repertoires"
        + (f"; attributions explain: {EXPLAIN_LABELS.get(target, target)}" if target else "")
        + (
            "."
            if "witness_motif_mass" in held_out
            else ". This card predates the per-witness figures; `scripts/make_demo_model.py --evaluate-only` "
            "re-measures it."
        )
    )


st.title("Validate against known witnesses")
model, model_key = models.current_model()
st.caption(
    "When you know which sequences carry the signal (witnesses), check the model found them: are they at the top "
    "of the attention ranking (AUPRC, recall at k, Jaccard of the top n), does each witness's attribution fall on "
    "its motif residues (against the chance level), and does a CNN kernel match the motif?"
)

truth_kind = st.segmented_control("Truth", list(TRUTH), format_func=TRUTH.get, default="sample", key="validate_truth")
truth_kind = truth_kind or "sample"
data = st.segmented_control("Repertoires", list(DATA), format_func=DATA.get, default="patients", key="validate_data")
data = data or "patients"

if data == "patients":
    chosen = sources.sample_sources("sample patient")
elif data == "dataset":  # five of each class
    dataset = {s.name: s for s in sources.sample_sources("sample dataset")}
    chosen = [dataset[n] for n in first_per_label(list(dataset), label_lookup(sources.sample_labels(), "disease"), 5)]
else:
    chosen = [sources.current_source()]
repertoires = [sources.load_repertoire(s, model.config.max_length) for s in chosen]

motifs: list[str] = []
if truth_kind == "sample":
    truth = sources.sample_truth()
    motifs = sorted(truth["motif"].astype(str).unique()) if "motif" in truth else []
elif truth_kind == "regex":
    regex = st.text_input(
        "Motif (regular expression)",
        value="GWQH|YW.D",
        key="validate_regex",
        help="A sequence containing a match is a witness; '.' is any residue.",
    )
    regex = regex.strip().upper()
    if not regex:
        st.info("Enter a motif.")
        st.stop()
    truth = regex_truth(repertoires, regex)  # every match, as the motif residues are marked everywhere
    motifs = [m for m in regex.split("|") if PLAIN_MOTIF.match(m)]
else:
    text = st.text_area(
        "Known witness sequences (one CDR3 junction per line)",
        key="validate_sequences",
        height=150,
        placeholder="CASSGWQHEQYF",
    )
    known = text.splitlines()
    if not any(line.strip() for line in known):
        st.info("Paste the junctions known to carry the signal (e.g. antigen-specific clonotypes from VDJdb).")
        st.stop()
    truth = known_truth(repertoires, known)

cols = st.columns([1, 1, 2])
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
explain = cols[2].segmented_control(
    "Attributions explain",
    EXPLAIN,
    format_func=EXPLAIN_LABELS.get,
    default=EXPLAIN[0],
    key="validate_explain",
    help="\n".join(f"- **{EXPLAIN_LABELS[e]}** {EXPLAIN_HELP[e]}" for e in EXPLAIN),
)
explain = explain or EXPLAIN[0]

st.caption("Repertoires: " + ", ".join(s.name for s in chosen))
with st.spinner("Scoring and attributing…"):
    keys = tuple(s.key for s in chosen)
    motif = motifs[0] if motifs else None
    report = cache.cached_recovery_report(
        model, model_key, repertoires, keys, truth, attribute_top, steps, motif, explain
    )
per = report.per_repertoire
if per.empty:
    st.info("None of these repertoires contains a known witness; pick repertoires that should carry the signal.")
    st.stop()

summary = report.summary
st.markdown("**Attention ranking** (sequence level)")
cols = st.columns(7)
cols[0].metric("Repertoires with witnesses", f"{int(summary['n_positive_repertoires'])}")
for col, (key, label, text) in zip(cols[1:], RANKING):
    col.metric(label, f"{summary.get(key, NAN):.3f}" if key == "auprc" else f"{summary.get(key, NAN):.2f}", help=text)
if "motif_mass" in summary:
    st.markdown(f"**Residue attributions** ({EXPLAIN_LABELS[report.explain].lower()})")
    cols = st.columns(4)
    cols[0].metric(
        "IG on motif, per witness",
        f"{summary.get('witness_motif_mass', NAN):.0%}",
        delta=f"chance {summary.get('witness_chance', NAN):.0%}",
        delta_color="off",
        help="Mean over the witnesses among the attributed sequences of each one's share of positive attribution "
        "on its motif residues, against a uniform attribution; every witness counts once.",
    )
    cols[1].metric(
        "IG on motif, pooled",
        f"{summary['motif_mass']:.0%}",
        delta=f"chance {summary['chance']:.0%}",
        delta_color="off",
        help="Share of all attributed sequences' positive mass on motif residues: the sequences with the largest "
        "attributions dominate it.",
    )
    cols[2].metric(
        "Residue AUROC",
        f"{summary.get('residue_auroc', NAN):.2f}",
        help="Per witness, how well its residue attributions tell motif residues from the others (0.5 = chance).",
    )
    cols[3].metric(
        "Witnesses attributed",
        f"{int(summary.get('n_witnesses_attributed', 0))}",
        help="Witness sequences among the attributed ones, over all repertoires.",
    )

left, right = st.columns(2)
with left:
    st.plotly_chart(recovery_figure(per), width="stretch")
with right:
    rankings = {}
    for src, rep in zip(chosen, repertoires):
        flags = witness_mask(rep, truth=truth)
        if flags.any():
            rankings[src.name] = (cache.cached_score(model, model_key, rep, src.key).ranking, flags)
    st.plotly_chart(recall_at_k_figure(rankings), width="stretch")

st.subheader("Per repertoire")
number_format = {c: st.column_config.NumberColumn(format="%.3f") for c in per.columns if per[c].dtype.kind == "f"}
st.dataframe(per, hide_index=True, width="stretch", column_config=number_format)
figures.download(
    "Download (TSV)", lambda: per.to_csv(sep="\t", index=False).encode(), "recovery.tsv", "validate_download"
)
if report.per_witness is not None and len(report.per_witness):
    with st.expander(f"Per witness ({len(report.per_witness)} attributed witnesses)"):
        st.dataframe(
            report.per_witness,
            hide_index=True,
            width="stretch",
            column_config={
                "motif_share": st.column_config.ProgressColumn("motif share", min_value=0.0, max_value=1.0),
                "chance": st.column_config.NumberColumn(format="%.2f"),
                "residue_auroc": st.column_config.NumberColumn("residue AUROC", format="%.2f"),
                "total": st.column_config.NumberColumn("summed attribution", format="%.3g"),
            },
        )

if motifs and model.config.embedding == "cnn":
    st.subheader("Kernels matching the motif")
    for col, motif in zip(st.columns(len(motifs[:3])), motifs[:3]):
        with col:
            match = kernel_motif_match(model, motif)
            k = int(match.iloc[0]["kernel"])
            st.markdown(f"**{motif}**: best kernel {k}, correlation {match.iloc[0]['correlation']:.2f}")
            figures.show_figure(
                lambda k=k: logo_figure(kernel_weight_logo(model, k), title=f"kernel {k} weights"),
                f"kweight-best|{model_key}|{k}",
                f"kernel_{k}_weights",
            )
            st.dataframe(match.head(5), hide_index=True, width="stretch")
elif truth_kind == "sequences":
    st.caption("Kernel matching needs a motif; it is not computed for a list of sequences.")
model_card_figures(model)
models.show_reference(model)
