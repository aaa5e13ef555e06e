"""Home: what DeepRC does, the loaded model's card, the device, and the way into the sample data."""

import streamlit as st

from deeprc_core.report import model_card_markdown, model_card_table, model_info_json
from explorer import models

DIAGRAM = """
digraph deeprc {
  rankdir=LR; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=13, color="#4a6fa5", fillcolor="#eef3fb"];
  edge [color="#4a6fa5", fontname="Helvetica", fontsize=11];
  rep  [label="Repertoire\\nN CDR3 sequences", fillcolor="#ffffff"];
  h    [label="h(): CNN embedding\\nof every sequence"];
  f    [label="f(): attention score\\nper sequence"];
  soft [label="softmax over\\nthe repertoire"];
  pool [label="attention-weighted\\nsum of embeddings"];
  o    [label="o(): output\\nP(disease)", fillcolor="#fde8e8", color="#c0392b"];
  rep -> h -> f -> soft -> pool -> o;
  h -> pool [style=dashed, label="embeddings"];
}
"""

st.title("DeepRC Explorer")
st.markdown(
    "**DeepRC** classifies a whole immune repertoire (tens of thousands of T- or B-cell receptor sequences) "
    "from the few sequences that carry the signal. Each CDR3 is embedded by a small CNN (**h**), an attention "
    "network (**f**) scores how relevant each sequence is, a softmax over the repertoire turns the scores into "
    "weights, and the weighted average embedding gives the prediction (**o**). The attention and the "
    "residue attributions show *which* sequences and motifs the decision rests on."
)
st.graphviz_chart(DIAGRAM, width="stretch")

left, right = st.columns([3, 2], gap="large")
with right:
    st.subheader("Try it on the sample data")
    st.markdown(
        "Simulated human TRB repertoires ship with the app: three patients and a dataset of 80 repertoires in "
        "which positives carry the motifs `GWQH` and `YW.D`. No upload needed:"
    )
    st.page_link("app_pages/classify.py", label="Classify the three sample patients", icon=":material/fact_check:")
    st.page_link(
        "app_pages/attention.py", label="See which sequences the model attends to", icon=":material/visibility:"
    )
    st.page_link("app_pages/attributions.py", label="Residue attributions and motif logos", icon=":material/insights:")
    st.page_link("app_pages/kernel_motifs.py", label="What the CNN kernels learned", icon=":material/grid_view:")
    st.page_link("app_pages/validate.py", label="Check the model against the known motifs", icon=":material/verified:")
    st.page_link("app_pages/train.py", label="Train a model in a few minutes", icon=":material/model_training:")
    st.caption(f"Computing on **{models.device_label()}**.")

with left:
    st.subheader("Loaded model")
    model, _ = models.current_model()
    st.dataframe(model_card_table(model), hide_index=True, width="stretch")
    card = model_card_markdown(model)
    if card:
        with st.expander("Full model card"):
            models.show_markdown(card, model.path)
    with st.expander("Training facts (JSON)"):
        st.code(model_info_json(model), language="json")
