"""Train: a DeepRC model on the sample dataset or an uploaded one, in a background thread with live progress,
curves and cancel; on finish the metrics and a name to save under (the model is then selectable everywhere)."""

import functools
import re
import time
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from deeprc_core.checkpoint import save_model
from deeprc_core.errors import DeepRCError
from deeprc_core.model import DeepRCConfig
from deeprc_core.plots import training_curves_figure
from deeprc_core.training import TrainingConfig, train

SOURCES = {"sample": "Sample dataset (80 repertoires)", "upload": "Upload a dataset"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _curves(history: list[dict]):
    """Training curves without the clock (elapsed seconds is not a metric)."""
    rows = [{k: v for k, v in h.items() if k not in ("elapsed_s",)} for h in history]
    return training_curves_figure(rows)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@st.fragment(run_every=1.0)
def live_progress() -> None:
    """Polls the background job once a second; hands over to a full rerun when it ends."""
    with ui.errors_shown():
        job: ui.TrainingJob = st.session_state["train_job"]
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
            best = progress.best or {}
            text = f"update {progress.update:,} of at most {progress.max_updates:,} · loss {progress.loss:.3f}"
            st.progress(min(fraction, 1.0), text=text)
            cols = st.columns(4)
            cols[0].metric("Updates", f"{progress.update:,}")
            cols[1].metric("Training loss", f"{progress.loss:.3f}")
            auc = best.get("val_auc")
            cols[2].metric("Best validation AUC", "–" if auc is None else f"{auc:.3f}")
            cols[3].metric("Elapsed / ETA", f"{_clock(progress.elapsed_s)} / {_clock(progress.eta_s)}")
            if snap["history"]:
                st.plotly_chart(_curves(snap["history"]), width="stretch", key="train_live_curves")
            else:
                st.caption("The curves appear after the first validation.")
        if job.cancelling:
            st.warning("Cancelling after the current update…")
        elif st.button("Cancel training", key="train_cancel", icon=":material/stop_circle:"):
            job.cancel()
            st.rerun(scope="fragment")


def main() -> None:
    st.title("Train a model")
    st.info(
        f"In-app training is for small datasets: up to {ui.MAX_TRAIN_REPERTOIRES} repertoires, "
        f"{ui.MAX_TRAIN_SEQUENCES / 1e6:.0f} million sequences and {ui.MAX_TRAIN_MINUTES:.0f} minutes. Larger datasets: "
        f"use the command line, `{ui.CLI_TRAIN}`.",
        icon=":material/info:",
    )

    job = st.session_state.get("train_job")
    running = job is not None and not job.finished

    source = (
        st.segmented_control(
            "Training data",
            list(SOURCES),
            format_func=SOURCES.get,
            key="train_source",
            default="sample",
            disabled=running,
        )
        or "sample"
    )
    if source == "sample":
        dataset = ui.sample_dataset()
        data_label = "the sample dataset"
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
        dataset = ui.uploaded_dataset(files, metadata)
        data_label = f"an uploaded dataset ({', '.join(f.name for f in files[:3])}{'…' if len(files) > 3 else ''})"

    meta = dataset.metadata
    facts = dataset.summary()
    st.markdown(
        f"**{len(dataset):,} repertoires**, {int(facts['n_sequences_total']):,} sequences "
        f"(median {facts['sequences_per_repertoire_median']:,.0f} per repertoire)."
    )
    with st.expander("Metadata"):
        st.dataframe(meta.head(500), hide_index=True, width="stretch")

    candidates = [
        c for c in meta.columns if c not in ("repertoire", "file") and meta[c].astype(str).nunique() < len(meta)
    ]
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
    if len(values) == 2 or len(values) <= 20:
        positive = cols[1].selectbox(
            "Positive value",
            values,
            index=values.index("positive") if "positive" in values else len(values) - 1,
            key=f"train_positive_{target}",
            help="The class whose probability the model outputs.",
            disabled=running,
        )
    else:
        cols[1].caption(f"'{target}' has {len(values)} values: trained as a regression target.")

    st.subheader("Settings")
    cols = st.columns(5)
    max_minutes = cols[0].number_input(
        "Time budget (minutes)",
        0.1,
        ui.MAX_TRAIN_MINUTES,
        5.0,
        step=0.5,
        key="train_minutes",
        help="Training stops after this long and keeps the best model so far.",
        disabled=running,
    )
    max_updates = cols[1].number_input(
        "Max updates",
        1,
        100_000,
        3000,
        step=100,
        key="train_max_updates",
        help="Upper bound on parameter updates (early stopping usually ends sooner).",
        disabled=running,
    )
    learning_rate = cols[2].number_input(
        "Learning rate",
        1e-5,
        1e-1,
        1e-3,
        step=1e-4,
        format="%.4f",
        key="train_lr",
        help="Adam step size.",
        disabled=running,
    )
    batch_size = cols[3].number_input(
        "Batch size",
        1,
        64,
        4,
        key="train_batch_size",
        help="Repertoires per update.",
        disabled=running,
    )
    n_sequences = cols[4].number_input(
        "Sequences per repertoire",
        10,
        100_000,
        1000,
        step=100,
        key="train_n_sequences",
        help="Sequences sampled from each repertoire for each update (without replacement).",
        disabled=running,
    )
    with st.expander("More settings"):
        cols = st.columns(5)
        top_fraction = cols[0].number_input(
            "Top fraction",
            0.01,
            1.0,
            0.1,
            step=0.05,
            key="train_top_fraction",
            help="Share of the sampled sequences, by attention, that the gradient pass uses.",
            disabled=running,
        )
        eval_every = cols[1].number_input(
            "Validate every",
            1,
            10_000,
            25,
            key="train_eval_every",
            help="Updates between validations.",
            disabled=running,
        )
        patience = cols[2].number_input(
            "Patience",
            1,
            1000,
            12,
            key="train_patience",
            help="Validations without improvement before stopping early.",
            disabled=running,
        )
        validation_fraction = cols[3].number_input(
            "Validation share",
            0.05,
            0.5,
            0.2,
            step=0.05,
            key="train_validation_fraction",
            help="Share of repertoires held out (stratified) to pick the best model.",
            disabled=running,
        )
        eval_cap = cols[4].number_input(
            "Validation sequences cap",
            0,
            1_000_000,
            0,
            step=1000,
            key="train_eval_cap",
            help="At most this many sequences per validation repertoire (0 = all; a cap speeds up large repertoires).",
            disabled=running,
        )
        cols = st.columns(5)
        kernel_size = cols[0].selectbox(
            "Kernel width",
            [5, 7, 9, 11],
            index=2,
            key="train_kernel_size",
            help="Residues a CNN kernel sees.",
            disabled=running,
        )
        n_kernels = cols[1].number_input(
            "Kernels", 4, 256, 32, step=4, key="train_n_kernels", help="CNN kernels = embedding size.", disabled=running
        )
        n_heads = cols[2].number_input("Attention heads", 1, 8, 1, key="train_n_heads", disabled=running)
        seed = cols[3].number_input(
            "Seed", 0, 2**31 - 1, 0, key="train_seed", help="Same seed, same model (on CPU).", disabled=running
        )
        use_genes = cols[4].checkbox(
            "Use V/J genes", key="train_use_genes", help="Learn V and J gene embeddings too.", disabled=running
        )

    if st.button("Start training", key="train_start", type="primary", disabled=running, icon=":material/play_arrow:"):
        training = TrainingConfig(
            target=target,
            positive=positive,
            max_updates=int(max_updates),
            max_minutes=float(max_minutes),
            batch_size=int(batch_size),
            n_sequences=int(n_sequences),
            top_fraction=float(top_fraction),
            learning_rate=float(learning_rate),
            eval_every=int(eval_every),
            patience=int(patience),
            validation_fraction=float(validation_fraction),
            eval_max_sequences=int(eval_cap) or None,
            use_genes=bool(use_genes),
            seed=int(seed),
        )
        model_config = DeepRCConfig(kernel_size=int(kernel_size), n_kernels=int(n_kernels), n_heads=int(n_heads))
        job = ui.TrainingJob(
            run=functools.partial(train, dataset, training, model_config),
            description=f"'{target}' ({positive or 'regression'}) on {data_label}",
            target=target,
            positive=positive,
            data_label=data_label,
            max_minutes=float(max_minutes),
        )
        st.session_state["train_job"] = job.start()
        st.rerun()

    if job is None:
        st.stop()

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
    stop_reason = result.state.get("stop_reason", "done")
    if snap["state"] == "cancelled":
        st.warning(f"Cancelled after {result.state['update']:,} updates; the best model so far is kept.")
    else:
        st.success(f"Finished after {result.state['update']:,} updates ({stop_reason}).")
    metrics = result.metrics
    cols = st.columns(4)
    for col, (key, label) in zip(
        cols,
        [
            ("auc", "Validation AUC"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("f1", "F1"),
            ("best_update", "Best update"),
        ],
    ):
        value = metrics.get(key)
        if value is not None:
            col.metric(label, f"{value:,}" if key == "best_update" else f"{value:.3f}")
    ui.show_reference(result.model, metrics.get("auc"))
    if result.history:
        st.plotly_chart(_curves(result.history), width="stretch")
    with st.expander("All validation metrics"):
        st.dataframe(pd.DataFrame([metrics]), hide_index=True)

    if job.saved_as:
        st.success(f"Saved as **{Path(job.saved_as).name}**. It is selected in the sidebar and usable on every page.")
    else:
        default = f"{job.target}_{time.strftime('%Y%m%d_%H%M%S')}"
        cols = st.columns([3, 1])
        name = cols[0].text_input(
            "Save the model as", value=default, key="train_model_name", help="Letters, digits, '.', '_' and '-'."
        )
        cols[1].markdown("&nbsp;")
        if cols[1].button("Save model", key="train_save", type="primary", icon=":material/save:"):
            if not NAME.match(name or ""):
                st.error("Use 1-64 letters, digits, '.', '_' or '-' for the name (starting with a letter or digit).")
            elif (ui.trained_folder() / name).exists() or any(Path(p).name == name for p in ui.available_models()):
                st.error(f"A model called '{name}' already exists; choose another name.")
            else:
                model = result.model
                model.info["command"] = "trained in DeepRC Explorer"
                model.info["dataset"] = job.data_label
                try:
                    path = save_model(model, ui.trained_folder() / name)
                except OSError as exc:
                    raise DeepRCError(f"The model could not be saved to {ui.trained_folder()} ({exc}).") from exc
                job.saved_as = str(path)
                st.session_state["model_pending"] = str(path)
                st.rerun()

    cols = st.columns(2)
    if job.saved_as:
        cols[0].download_button(
            "Download the model (zip)",
            data=lambda: ui.zip_folder(Path(job.saved_as)),
            file_name=f"{Path(job.saved_as).name}.zip",
            mime="application/zip",
            on_click="ignore",
            key="train_download",
        )
    if cols[1].button("Train another model", key="train_reset"):
        del st.session_state["train_job"]
        st.rerun()


ui.run_page("Train", main)
