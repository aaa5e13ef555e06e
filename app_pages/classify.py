"""Classify: predict one or many repertoires (samples or uploads); ROC, AUC and confusion matrix when labels
are known; the predictions as a TSV."""

import pandas as pd
import streamlit as st

from deeprc_core.errors import DeepRCError
from deeprc_core.labels import binary_auc, with_known_labels
from deeprc_core.plots import confusion_matrix_figure, roc_figure
from explorer import cache, figures, models, sources

SOURCES = {
    "patients": "Sample patients (3)",
    "dataset": "Sample dataset (80 repertoires)",
    "upload": "Upload files",
}

st.title("Classify repertoires")
model, model_key = models.current_model()
target, positive = models.positive_class(model)
spec = model.config.target_spec()

source = st.segmented_control(
    "Repertoires to classify", list(SOURCES), format_func=SOURCES.get, key="classify_source", default="patients"
)
source = source or "patients"

# The repertoires, and the labels they are checked against
labels = sources.sample_labels()
if source == "upload":
    files = st.file_uploader(
        "Repertoire files", accept_multiple_files=True, key="classify_files", help=sources.upload_help()
    )
    metadata_file = st.file_uploader(
        "Labels (optional): a metadata table whose first column is the file name or ID",
        type=["tsv", "csv", "txt"],
        key="classify_metadata",
        help=f"With a '{target}' column, the page also shows the ROC curve, AUC and confusion matrix.",
    )
    chosen, errors = sources.add_uploads(files, model.config.max_length)
    for message in errors:
        st.error(message)
    if metadata_file is not None:
        try:
            labels = sources.read_uploaded_metadata(metadata_file)
        except DeepRCError as exc:
            st.error(f"{metadata_file.name}: {exc}")
    if not chosen:
        st.info("Upload one or more repertoire files to classify them (or pick the sample data above).")
        st.stop()
else:
    chosen = sources.sample_sources("sample patient" if source == "patients" else "sample dataset")
    if not chosen:
        st.info("The sample data is missing from this installation (sample_data/).")
        st.stop()

# Score every repertoire (cached per model and file content)
rows, reports = [], []
progress = st.progress(0.0, text="Reading and scoring…") if len(chosen) > 5 else None
for i, src in enumerate(chosen):
    repertoire = sources.load_repertoire(src, model.config.max_length)
    row = cache.cached_prediction(model, model_key, repertoire, src.key).copy()
    row["repertoire"] = src.name
    rows.append(row)
    reports.append((src, repertoire))
    if progress is not None:
        progress.progress((i + 1) / len(chosen), text=f"Scored {src.name}")
if progress is not None:
    progress.empty()
table, truth = with_known_labels(pd.concat(rows, ignore_index=True), labels, target)
auc = binary_auc(truth, table["probability"], positive) if truth is not None and spec.kind == "binary" else None

n_pos = int((table["prediction"].astype(str) == positive).sum()) if "prediction" in table.columns else 0
cols = st.columns(4)
cols[0].metric("Repertoires", f"{len(table):,}")
cols[1].metric(f"Predicted {positive}", f"{n_pos:,}")
cols[2].metric("Sequences scored", f"{int(table['n_sequences'].sum()):,}")
cols[3].metric(
    "AUC",
    "–" if auc is None else f"{auc:.3f}",
    help="Area under the ROC curve, when the true labels of both classes are known.",
)

config = {
    "probability": st.column_config.ProgressColumn(
        f"P({positive})", min_value=0.0, max_value=1.0, format="%.3f", help=f"Probability of '{positive}'"
    ),
    "n_sequences": st.column_config.NumberColumn("sequences", format="localized"),
    "correct": st.column_config.TextColumn("correct", help="Prediction equals the known label"),
}
figures.show_table(
    table, f"predictions_{model.path.name}.tsv", f"classify_{source}_{len(table)}", config, "predictions"
)

if truth is not None and spec.kind == "binary":
    known = truth.notna()
    left, right = st.columns(2)
    with left:
        if auc is not None:
            y = (truth[known] == positive).astype(int).to_numpy()
            st.plotly_chart(roc_figure(y, table.loc[known, "probability"].to_numpy()), width="stretch")
        else:
            st.info(f"A ROC curve needs repertoires of both classes; these are all '{truth[known].iloc[0]}'.")
    with right:
        predicted = table.loc[known, "prediction"].astype(str).to_numpy()
        st.plotly_chart(confusion_matrix_figure(truth[known].to_numpy(), predicted, spec.classes), width="stretch")
elif truth is None:
    st.caption(f"No known '{target}' labels for these repertoires, so no ROC curve or confusion matrix.")

with st.expander(f"How each file was read ({len(reports)})", expanded=source == "upload"):
    for src, repertoire in reports[:50]:
        st.markdown(f"**{src.name}**")
        sources.show_read_report(repertoire)
    if len(reports) > 50:
        st.caption(f"…and {len(reports) - 50} more.")

st.page_link("app_pages/attention.py", label="See which sequences drove a prediction", icon=":material/visibility:")
