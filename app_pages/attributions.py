"""Attributions: which residues made the model count a sequence. Integrated-gradient logos over a repertoire's
top-attended sequences for one of three questions (why each sequence is attended, what it adds to the
prediction, why the repertoire is positive), a logo of the known motif carriers with its per-witness motif
mass, per-sequence heatmaps, a positive and a negative repertoire side by side, and downloads."""

import re

import numpy as np
import streamlit as st

from deeprc_core.attribution import EXPLAIN, EXPLAIN_HELP, EXPLAIN_LABELS, SequenceAttributions
from deeprc_core.errors import DeepRCError
from deeprc_core.labels import label_lookup
from deeprc_core.motifs import ALIGNMENTS, NORMALISATION_HELP, NORMALISATIONS, attribution_logo, enrichment_logo
from deeprc_core.plots import attribution_heatmap_figure, logo_figure
from deeprc_core.recovery import motif_residue_mask, truth_rows, witness_mask, witness_motif_mass
from explorer import cache, figures, models, sources

NORMALISATION_LABELS = {"none": "raw", "sum": "one vote per sequence", "max": "per-sequence maximum"}


def convergence(result: SequenceAttributions, steps: int) -> str:
    """The convergence delta in words (captum's completeness check)."""
    relative = result.relative_deltas()
    if result.explain == "repertoire":
        return (
            f"Completeness: the {len(result)} sequences' attributions add up to {result.sequence_totals().sum():.3g}; "
            f"the repertoire's logit moved {result.outputs[0] - result.baseline_outputs[0]:.3g} from the baseline "
            f"(convergence delta {result.deltas[0]:.2g}, {relative[0]:.1%}; {steps} steps; raise the steps if this "
            "exceeds a few percent)."
        )
    return (
        f"Completeness: median relative convergence delta {float(np.median(relative)):.1%}, largest "
        f"{relative.max():.1%} over {len(result)} sequences ({steps} steps; raise the steps if the median exceeds "
        "a few percent)."
    )


def carriers(result: SequenceAttributions, repertoire_name: str, regex: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Motif carriers among the attributed sequences ``(S,)``, their motif residues ``(S, L)`` and where the
    truth came from: the regex typed in, else the sample data's implanted witnesses."""
    width = result.attributions.shape[1]
    if regex:
        flags = witness_mask(result.sequences, regex=regex)
        return flags, motif_residue_mask(result.sequences, width, regex=regex), f"matching {regex}"
    truth = truth_rows(sources.sample_truth(), repertoire_name)
    if len(truth) and {"motif_start", "motif_length"} <= set(truth.columns):
        flags = witness_mask(result.sequences, truth=truth, repertoire=repertoire_name)
        mask = motif_residue_mask(result.sequences, width, truth=truth, repertoire=repertoire_name)
        return flags, mask, "implanted witnesses (sample truth)"
    return np.zeros(len(result), dtype=bool), np.zeros((len(result), width), dtype=bool), ""


st.title("Residue attributions")
model, model_key = models.current_model()
target, positive = models.positive_class(model)
st.caption(
    "Integrated gradients attribute one number of the model to every residue of the top-attended sequences. "
    "Logos align each sequence on its highest-attribution window; letters above the axis raise the explained "
    "number, letters below lower it; under each column, the number of sequences that reach it."
)

source = sources.pick_repertoire("attributions")
explain = st.segmented_control(
    "Explain",
    EXPLAIN,
    format_func=EXPLAIN_LABELS.get,
    default=EXPLAIN[0],
    key="attributions_explain",
    help="\n".join(f"- **{EXPLAIN_LABELS[e]}** {EXPLAIN_HELP[e]}" for e in EXPLAIN),
)
explain = explain or EXPLAIN[0]
if explain == "contribution":
    st.warning(
        f"{EXPLAIN_HELP['contribution']} Use it to see what one sequence changes in the prediction for "
        f"'{positive}'; to see which residues make sequences count, explain why they are attended.",
        icon=":material/info:",
    )
else:
    st.caption(EXPLAIN_HELP[explain] + ("" if explain == "attention" else f" (the logit of '{positive}')"))

cols = st.columns(7)
top_n = cols[0].slider(
    "Top sequences (N)", 5, 200, 50, step=5, key="attributions_top_n", help="The N highest-attention sequences."
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
flank = cols[4].slider(
    "Flank (residues)", 0, 10, 4, key="attributions_flank", help="Residues shown each side of the window."
)
baseline = cols[5].selectbox(
    "Baseline",
    ["zero", "background"],
    key="attributions_baseline",
    help="zero: no residue; background: the repertoire's residue frequencies.",
)
normalise = cols[6].selectbox(
    "Weigh sequences",
    NORMALISATIONS,
    format_func=NORMALISATION_LABELS.get,
    key="attributions_normalise",
    help="\n".join(f"- **{NORMALISATION_LABELS[n]}**: {NORMALISATION_HELP[n]}" for n in NORMALISATIONS),
)


def attribute(src: sources.RepertoireSource):
    """A repertoire and the attributions of its top sequences, with the settings above."""
    rep = sources.load_repertoire(src, model.config.max_length)
    with st.spinner(f"Integrated gradients over the top {min(top_n, len(rep))} sequences of {src.name}…"):
        return rep, cache.cached_attributions(
            model, model_key, rep, src.key, top=top_n, n_steps=steps, baseline=baseline, explain=explain
        )


repertoire, result = attribute(source)
logo = attribution_logo(result, width=width, align=align, flank=flank, normalise=normalise)
try:
    enrichment, enrichment_error = enrichment_logo(result, repertoire, k=width, kind="information"), ""
except DeepRCError as exc:  # e.g. every attributed sequence is shorter than the window
    enrichment, enrichment_error = None, str(exc)
stem = f"{source.name}_{explain}_top{top_n}"
settings = f"{model_key}|{source.key}|{top_n}|{steps}|{baseline}|{explain}"
logo_settings = f"{align}|{width}|{flank}|{normalise}"

left, right = st.columns([3, 2])
with left:
    st.subheader(f"Attribution logo: top {len(result)} sequences of {source.name}")
    figures.show_figure(
        lambda: logo_figure(
            logo, title=f"{EXPLAIN_LABELS[explain]} Aligned {align} on the best {width}-residue window"
        ),
        f"attrlogo|{settings}|{logo_settings}",
        f"attribution_logo_{stem}",
    )
with right:
    st.subheader("Enrichment of the best windows")
    if enrichment is None:
        st.info(enrichment_error)
    else:
        figures.show_figure(
            lambda: logo_figure(enrichment, title=f"best {width}-mers vs all {width}-mers (bits)"),
            f"enrichlogo|{settings}|{width}",
            f"enrichment_logo_{stem}",
        )
st.caption(convergence(result, steps))

st.subheader("Motif carriers")
regex = st.text_input(
    "Known motif (regular expression)",
    key="attributions_motif",
    placeholder="GWQH|YW.D",
    help="Sequences containing a match are the carriers; empty: the sample data's implanted witnesses, "
    "when this is a sample repertoire.",
)
regex = regex.strip().upper()
try:
    re.compile(regex)
except re.error as exc:
    st.error(f"'{regex}' is not a valid regular expression ({exc}).")
    regex = ""
flags, mask, origin = carriers(result, source.name, regex)
if not flags.any():
    st.info(
        "No motif carriers known among these sequences: type a motif above (or pick a sample repertoire with "
        "implanted witnesses) to see the carriers' own logo and how much of their attribution lies on the motif."
    )
else:
    scores = witness_motif_mass(result, mask)
    cols = st.columns([3, 1])
    with cols[0]:
        figures.show_figure(
            lambda: logo_figure(
                attribution_logo(result, width=width, align=align, flank=flank, normalise=normalise, select=flags),
                title=f"the {int(flags.sum())} motif carriers among the top {len(result)}",
            ),
            f"carrierlogo|{settings}|{logo_settings}|{regex or 'truth'}",
            f"attribution_logo_carriers_{stem}",
        )
    cols[1].metric(
        "Carriers attributed",
        f"{int(flags.sum())} of {len(result)}",
        help=f"Attributed sequences that are motif carriers ({origin}).",
    )
    cols[1].metric(
        "IG on motif residues, per carrier",
        f"{scores['witness_motif_mass']:.0%}",
        delta=f"chance {scores['witness_chance']:.0%}",
        delta_color="off",
        help="Mean over the carriers of the share of each one's positive attribution that lies on its motif "
        "residues, against a uniform attribution; every carrier counts once.",
    )
    cols[1].metric(
        "Residue AUROC",
        f"{scores['residue_auroc']:.2f}",
        help="Per carrier: how well its attributions tell motif residues from the others (0.5 = chance).",
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
with cols[0]:
    figures.download(
        "Heatmap table (TSV)", lambda: figures.cached_tsv(frame, f"heat_{settings}"), f"attributions_{stem}.tsv",
        "attributions_dl_frame",
    )  # fmt: skip
with cols[1]:
    figures.download(
        "Logo matrix (TSV)", lambda: logo.to_csv(sep="\t", float_format="%.6g").encode(),
        f"attribution_logo_{stem}.tsv", "attributions_dl_logo",
    )  # fmt: skip
if enrichment is not None:
    with cols[2]:
        figures.download(
            "Enrichment matrix (TSV)", lambda: enrichment.to_csv(sep="\t", float_format="%.6g").encode(),
            f"enrichment_logo_{stem}.tsv", "attributions_dl_enrichment",
        )  # fmt: skip

st.divider()
st.subheader(f"'{positive}' and the other class side by side")
known = label_lookup(sources.sample_labels(), target)
choices = sources.all_sources()
by_key = {s.key: s for s in choices}
pos_default = next((s.key for s in choices if known.get(s.name) == positive), choices[0].key)
neg_default = next((s.key for s in choices if s.name in known and known.get(s.name) != positive), choices[-1].key)
st.session_state.setdefault("attributions_compare_pos", pos_default)
st.session_state.setdefault("attributions_compare_neg", neg_default)
if st.toggle("Compare two repertoires", key="attributions_compare", help="Attributes both; takes a few seconds."):
    cols = st.columns(2)
    for col, key, title in (
        (cols[0], "attributions_compare_pos", f"'{positive}' repertoire"),
        (cols[1], "attributions_compare_neg", "other repertoire"),
    ):
        with col:
            src = by_key[st.selectbox(title, list(by_key), format_func=lambda k: by_key[k].label, key=key)]
            rep, res = attribute(src)
            label = known.get(src.name, "label unknown")
            figures.show_figure(
                lambda res=res, src=src, label=label: logo_figure(
                    attribution_logo(res, width=width, align=align, flank=flank, normalise=normalise),
                    title=f"{src.name} ({label})",
                ),
                f"attrlogo|{model_key}|{src.key}|{top_n}|{steps}|{baseline}|{explain}|{logo_settings}|{label}",
                f"attribution_logo_{src.name}",
            )
    st.caption(
        "Both logos share the settings above. A positive repertoire's logo should show the motif; a negative "
        "one's should not."
    )
