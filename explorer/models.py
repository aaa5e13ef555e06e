"""Models: the sidebar's model picker, the loaded model (cached per path and modification time), and the
model's card and references drawn on a page."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from deeprc_core.checkpoint import list_models, load_model, read_model_config
from deeprc_core.errors import DeepRCError
from deeprc_core.model import DeepRC, resolve_device
from deeprc_core.report import model_summary_line
from explorer import settings


def available_models() -> list[str]:
    """Model directories found in :func:`settings.model_folders`, shipped ones first, ``demo`` first of all."""
    trained = settings.trained_folder()
    found = [str(p) for p in list_models(*settings.model_folders())]
    return sorted(dict.fromkeys(found), key=lambda p: (Path(p).parent == trained, Path(p).name != "demo"))


def model_stamp(path: str) -> str:
    """Cache key of a model directory: its path and the modification time of its files."""
    folder = Path(path)
    times = [f.stat().st_mtime_ns for f in (folder / "config.json", folder / "weights.safetensors") if f.exists()]
    return f"{folder.resolve()}@{max(times, default=0)}"


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _load_model(path: str, stamp: str) -> DeepRC:
    return load_model(path, device="auto")


@st.cache_data(max_entries=32, show_spinner=False)
def _model_document(path: str, stamp: str) -> dict:
    return read_model_config(path)


def model_label(path: str) -> str:
    """How a model is named in the picker: its folder name, marked when trained in the app."""
    origin = "trained here" if Path(path).parent == settings.trained_folder() else "shipped"
    return f"{Path(path).name} ({origin})"


def current_model() -> tuple[DeepRC, str]:
    """The sidebar's model and its cache key; says so and stops the page when there is none."""
    path = st.session_state.get("model_path")
    if not path or not Path(path).is_dir():
        st.info(
            "No model is available yet. Train one on the **Train** page (the sample data works), or put a model "
            "folder under `models/` (or point `DEEPRC_MODELS_DIR` at one)."
        )
        st.stop()
    stamp = model_stamp(path)
    try:
        return _load_model(path, stamp), stamp
    except DeepRCError as exc:
        st.error(str(exc))
        st.stop()


def select_model(path: str) -> None:
    """Make ``path`` the model every page uses from the next run on (e.g. a model just saved)."""
    st.session_state["model_pending"] = path


def positive_class(model: DeepRC) -> tuple[str, str]:
    """(target name, positive class) of the model (classes[-1] for multiclass)."""
    spec = model.config.target_spec()
    return spec.name, (spec.classes[-1] if spec.classes else spec.name)


def device_label() -> str:
    """Where this server computes: "GPU (name)" or "CPU"."""
    device = resolve_device("auto")
    if device.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(device)})"
    return "CPU"


def _remember_model() -> None:
    st.session_state["model_path"] = st.session_state["model_choice"]


def model_picker() -> None:
    """Sidebar: the model picker with a one-line card, and the device in use."""
    models = available_models()
    # The choice lives in "model_path" (widget state does not survive a page switch); the picker shows it.
    pending = st.session_state.pop("model_pending", None)
    if pending in models:
        st.session_state["model_path"] = pending
    if st.session_state.get("model_path") not in models:
        st.session_state["model_path"] = models[0] if models else None
    if models:
        st.session_state["model_choice"] = st.session_state["model_path"]
    with st.sidebar:
        st.markdown("### Model")
        if not models:
            st.warning("No model found. Train one on the Train page.")
        else:
            st.selectbox(
                "Model",
                models,
                format_func=model_label,
                key="model_choice",
                on_change=_remember_model,
                label_visibility="collapsed",
                help="Shipped models (models/) and models trained in this app (trained_models/).",
            )
            path = st.session_state["model_path"]
            try:
                st.caption(model_summary_line(_model_document(path, model_stamp(path))))
            except DeepRCError as exc:
                st.error(str(exc))
        st.caption(f"Computing on **{device_label()}**")


def show_markdown(text: str, base: Path) -> None:
    """Markdown whose local images (``![alt](card/x.png)`` next to the model) are shown with ``st.image``."""
    pattern = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
    position = 0
    for match in pattern.finditer(text):
        st.markdown(text[position : match.start()])
        path = (base / match.group(2)).resolve()
        if base.resolve() in path.parents and path.is_file():
            st.image(str(path), caption=match.group(1) or None)
        position = match.end()
    st.markdown(text[position:])


def show_reference(model: DeepRC) -> None:
    """DeepRC's validation AUC beside the k-mer and V/J references fitted on the same split (from training)."""
    info = getattr(model, "info", {}) or {}
    reference = info.get("reference")
    if not reference:
        return
    every = (info.get("validation_metrics_all_receptors") or info.get("validation_metrics") or {}).get("auc")
    unseen = (info.get("validation_metrics") or {}).get("auc")
    st.subheader("Is the model worth believing? References on the same validation split")
    cols = st.columns(3)
    cols[0].metric(
        "DeepRC",
        "–" if every is None else f"{every:.3f}",
        help="Validation AUC of this model on every receptor of the validation repertoires, as the references see "
        "them. "
        + (
            "Without the receptors that training repertoires of one class hold (what picked the kept model): "
            f"{unseen:.3f}."
            if unseen is not None and "validation_metrics_all_receptors" in info
            else ""
        ),
    )
    cols[1].metric(
        "k-mer logistic regression",
        f"{reference['kmer_auc']:.3f}",
        help="3- and 4-mer frequencies per repertoire, L1-regularised logistic regression, same training repertoires.",
    )
    cols[2].metric(
        "V/J-usage logistic regression",
        f"{reference['vj_auc']:.3f}",
        help="V and J gene usage per repertoire, L1-regularised logistic regression, same training repertoires.",
    )
    st.caption(
        "AUC on the repertoires held out for validation during training. If a reference beats DeepRC here, trust "
        "the reference's classification and read DeepRC's attention and logos with care."
    )
