"""Train: a DeepRC model on the sample dataset or an uploaded one, in a background thread with live progress,
curves and cancel; on finish the metrics and a name to save under (the model is then selectable everywhere)."""

import functools
import math
import re
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from deeprc_core.checkpoint import save_model
from deeprc_core.errors import DeepRCError
from deeprc_core.labels import label_columns
from deeprc_core.plots import training_curves_figure
from deeprc_core.training import infer_target, train
from explorer import figures, models, settings, state, training_form, uploads
from explorer.archive import zip_folder
from explorer.training_job import TrainingJob

SOURCES = {"sample": "Sample dataset (80 repertoires)", "upload": "Upload a dataset"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KINDS = {"binary": "a binary target", "multiclass": "a multiclass target", "regression": "a regression target"}


def curves(history: list[dict]):
    """Training curves without the clock (elapsed seconds is not a metric)."""
    return training_curves_figure([{k: v for k, v in h.items() if k != "elapsed_s"} for h in history])


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def setting(col, field: training_form.Field, disabled: bool):
    """One settings widget; its initial value is the config's default."""
    if field.is_choice:
        labels = training_form.GENE_LABELS if field.name == "use_genes" else {}
        return col.selectbox(
            field.label,
            field.options,
            index=field.options.index(field.default()),
            format_func=lambda v: labels.get(v, str(v)),
            key=field.key,
            help=field.help or None,
            disabled=disabled,
        )
    return col.number_input(
        field.label, field.low, field.high, field.default(), step=field.step, format=field.format, key=field.key,
        help=field.help or None, disabled=disabled,
    )  # fmt: skip


@st.fragment(run_every=1.0)
def live_progress() -> None:
    """Polls the background job once a second; hands over to a full rerun when it ends."""
    with state.errors_shown():
        job: TrainingJob = st.session_state["train_job"]
        if job.finished:
            st.rerun()
        snap = job.snapshot()
        progress = snap["progress"]
        if snap["state"] == "queued":
            st.info("Waiting for another training on this server to finish…")
        if progress is None:
            st.progress(0.0, text="Starting…")
        else:
            budget = job.max_minutes * 60.0 if job.max_minutes else None
            fraction = max(progress.update / progress.max_updates, progress.elapsed_s / budget if budget else 0.0)
            loss = f"{progress.loss:.3f}" if math.isfinite(progress.loss) else "–"  # none before the first update
            text = f"update {progress.update:,} of at most {progress.max_updates:,} · loss {loss}"
            st.progress(min(fraction, 1.0), text=text)
            cols = st.columns(4)
            cols[0].metric("Updates", f"{progress.update:,}")
            cols[1].metric("Training loss", loss)
            auc = (progress.best or {}).get("val_auc")
            cols[2].metric("Best validation AUC, new receptors", "–" if auc is None else f"{auc:.3f}")
            cols[3].metric("Elapsed / ETA", f"{clock(progress.elapsed_s)} / {clock(progress.eta_s)}")
            if snap["history"]:
                st.plotly_chart(curves(snap["history"]), width="stretch", key="train_live_curves")
            else:
                st.caption("The curves appear after the first validation.")
        if job.cancelling:
            st.warning("Cancelling after the current update…")
        elif st.button("Cancel training", key="train_cancel", icon=":material/stop_circle:"):
            job.cancel()
            st.rerun(scope="fragment")


st.title("Train a model")
st.info(
    f"In-app training is for small datasets: up to {settings.MAX_TRAIN_REPERTOIRES} repertoires, "
    f"{settings.MAX_TRAIN_SEQUENCES / 1e6:.0f} million sequences and {settings.MAX_TRAIN_MINUTES:.0f} minutes. "
    f"Larger datasets: use the command line, `{settings.CLI_TRAIN}`.",
    icon=":material/info:",
)
job = st.session_state.get("train_job")
running = job is not None and not job.finished

# The data
source = st.segmented_control(
    "Training data", list(SOURCES), format_func=SOURCES.get, key="train_source", default="sample", disabled=running
)
if (source or "sample") == "sample":
    dataset, data_label = uploads.sample_dataset(), "the sample dataset"
else:
    files = st.file_uploader(
        "A zip of the dataset folder, or the repertoire files",
        accept_multiple_files=True,
        type=["zip", "tsv", "csv", "txt", "tab", "gz"],
        key="train_files",
        help="A zip holding metadata.tsv and the repertoire files (directly or under repertoires/), or several "
        f"repertoire files plus the metadata table below. Up to {st.get_option('server.maxUploadSize')} MB per file.",
        disabled=running,
    )
    metadata = st.file_uploader(
        "Metadata table (when not inside the zip): first column = repertoire file name or ID, one column per label",
        type=["tsv", "csv", "txt"],
        key="train_metadata",
        disabled=running,
    )
    if not files:
        st.info("Upload a dataset to train on (or use the sample dataset).")
        st.stop()
    dataset = uploads.uploaded_dataset(files, metadata)
    data_label = f"an uploaded dataset ({', '.join(f.name for f in files[:3])}{'…' if len(files) > 3 else ''})"

meta, facts = dataset.metadata, dataset.summary()
st.markdown(
    f"**{len(dataset):,} repertoires**, {int(facts['n_sequences_total']):,} sequences "
    f"(median {facts['sequences_per_repertoire_median']:,.0f} per repertoire)."
)
with st.expander("Metadata"):
    st.dataframe(meta.head(500), hide_index=True, width="stretch")

# What to learn
candidates = label_columns(meta)
if not candidates:
    st.error("The metadata has no label column (every column is unique per repertoire, like an ID).")
    st.stop()
cols = st.columns(2)
target = cols[0].selectbox(
    "Target column",
    candidates,
    index=candidates.index("disease") if "disease" in candidates else 0,
    key="train_target",
    help="The metadata column the model learns to predict.",
    disabled=running,
)
values = sorted(meta[target].astype(str).unique())
positive = None
if len(values) <= 20:
    positive = cols[1].selectbox(
        "Positive value",
        values,
        index=values.index("positive") if "positive" in values else len(values) - 1,
        key=f"train_positive_{target}",
        help="The class whose probability the model outputs.",
        disabled=running,
    )
else:  # what train() makes of the column without a positive class
    kind = infer_target(meta, target).kind
    cols[1].caption(f"'{target}' has {len(values)} values: trained as {KINDS[kind]}.")

# How
st.subheader("Settings")
values_set = {}
for col, field in zip(st.columns(5), training_form.section("main")):
    values_set[field.key] = setting(col, field, running)
with st.expander("More settings"):
    for name in ("more", "model"):
        for col, field in zip(st.columns(6), training_form.section(name)):
            values_set[field.key] = setting(col, field, running)

if st.button("Start training", key="train_start", type="primary", disabled=running, icon=":material/play_arrow:"):
    training, model_config = training_form.configs_from(values_set, target, positive)
    job = TrainingJob(
        run=functools.partial(train, dataset, training, model_config),
        description=f"'{target}' ({positive or 'regression'}) on {data_label}",
        target=target,
        positive=positive,
        data_label=data_label,
        max_minutes=training.max_minutes,
    )
    st.session_state["train_job"] = job.start()
    st.rerun()
if job is None:
    st.stop()

# The run
st.divider()
st.subheader(f"Training {job.description}")
if not job.finished:
    live_progress()
    st.stop()
snap = job.snapshot()
if snap["state"] == "failed":
    st.error(snap["error"])
    st.stop()
result = snap["result"]
if result is None:
    st.warning("Training was cancelled before it started.")
    st.stop()
if snap["state"] == "cancelled":
    st.warning(f"Cancelled after {result.state['update']:,} updates; the best model so far is kept.")
else:
    st.success(f"Finished after {result.state['update']:,} updates ({result.state.get('stop_reason', 'done')}).")
metrics = result.metrics
HELP = {
    "auc": "On the validation repertoires without the receptors that training repertoires of one class hold "
    "(what a model could have memorised); receptors both classes hold, such as public clones, stay."
}
shown = [
    ("auc", "Validation AUC, new receptors"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("f1", "F1"),
    ("best_update", "Best update"),
]
for col, (key, label) in zip(st.columns(4), shown):
    if metrics.get(key) is not None:
        col.metric(label, f"{metrics[key]:,}" if key == "best_update" else f"{metrics[key]:.3f}", help=HELP.get(key))
models.show_reference(result.model)
if result.history:
    st.plotly_chart(curves(result.history), width="stretch")
with st.expander("All validation metrics"):
    st.dataframe(pd.DataFrame([metrics]), hide_index=True)

# Keep it
trained = settings.trained_folder()
if job.saved_as:
    st.success(f"Saved as **{Path(job.saved_as).name}**. It is selected in the sidebar and usable on every page.")
else:
    cols = st.columns([3, 1])
    name = cols[0].text_input(
        "Save the model as",
        value=f"{job.target}_{time.strftime('%Y%m%d_%H%M%S')}",
        key="train_model_name",
        help="Letters, digits, '.', '_' and '-'.",
    )
    cols[1].markdown("&nbsp;")
    if cols[1].button("Save model", key="train_save", type="primary", icon=":material/save:"):
        if not NAME.match(name or ""):
            st.error("Use 1-64 letters, digits, '.', '_' or '-' for the name (starting with a letter or digit).")
        elif (trained / name).exists() or any(Path(p).name == name for p in models.available_models()):
            st.error(f"A model called '{name}' already exists; choose another name.")
        else:
            result.model.info["command"] = "trained in DeepRC Explorer"
            result.model.info["dataset"] = job.data_label
            try:
                path = save_model(result.model, trained / name)
            except OSError as exc:
                raise DeepRCError(f"The model could not be saved to {trained} ({exc}).") from exc
            job.saved_as = str(path)
            models.select_model(str(path))
            st.rerun()

cols = st.columns(2)
if job.saved_as:
    with cols[0]:
        folder = Path(job.saved_as)
        figures.download("Download the model (zip)", lambda: zip_folder(folder), f"{folder.name}.zip", "train_download")
if cols[1].button("Train another model", key="train_reset"):
    del st.session_state["train_job"]
    st.rerun()
