"""Figures and downloads: matplotlib figures rendered once to PNG and cached, tables shown with a size cap,
and download buttons whose bytes are built only when clicked."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from deeprc_core.motifs import KernelMotifs
from deeprc_core.plots import figure_to_bytes, logo_figure
from explorer import settings

MIMES = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "tsv": "text/tab-separated-values",
    "html": "text/html",
    "zip": "application/zip",
}


@st.cache_data(max_entries=256, show_spinner=False)
def cached_png(_build: Callable[[], object], key: str) -> bytes:
    """A figure rendered to PNG once per ``key`` (a string naming everything the figure depends on): logos
    are slow to draw, and switching pages must not redraw them."""
    return figure_to_bytes(_build(), "png")


@st.cache_data(max_entries=64, show_spinner=False)
def cached_tsv(_table: pd.DataFrame, key: str) -> bytes:
    """A table as TSV bytes (for downloads), cached by a key naming its content."""
    return _table.to_csv(sep="\t", index=False, float_format="%.6g").encode()


def kernel_logo_png(motifs: KernelMotifs, settings_key: str, kernel: int, kind: str) -> bytes:
    """One kernel's ``"weights"`` or ``"activation"`` logo as a cached PNG (``settings_key`` names the model
    and the repertoires the motifs were computed on). Drawn one by one so a page shows the first logos at once
    and a changed selection redraws only the new kernels."""
    if kind == "weights":
        importance = motifs.summary.set_index("kernel")["importance"].get(kernel, float("nan"))
        title = f"kernel {kernel} weights" + (f" (importance {importance:.2g})" if np.isfinite(importance) else "")
        matrix = motifs.weight_logos[kernel]
    else:
        title, matrix = f"kernel {kernel} top k-mers (bits)", motifs.activation_logos[kernel]
    return cached_png(
        lambda: logo_figure(matrix, title=title, figsize=(3.4, 2.0)), f"klogo|{settings_key}|{kernel}|{kind}"
    )


def show_figure(build: Callable[[], object], key: str, stem: str, formats: tuple[str, ...] = ("png", "svg")) -> None:
    """A (matplotlib) figure as a cached PNG image, with download buttons (SVG rendered only when clicked)."""
    png = cached_png(build, key)
    st.image(png, width="content")
    short = hashlib.sha1(key.encode()).hexdigest()[:10]
    figure_downloads(lambda fmt: png if fmt == "png" else figure_to_bytes(build(), fmt), stem, short, formats)


def figure_downloads(
    fig_bytes: Callable[[str], bytes], stem: str, key: str, formats: tuple[str, ...] = ("png", "svg")
) -> None:
    """Download buttons for a figure in several formats, side by side; each is rendered only when clicked."""
    cols = st.columns(len(formats))
    for col, fmt in zip(cols, formats):
        col.download_button(
            fmt.upper(),
            data=lambda fmt=fmt: fig_bytes(fmt),
            file_name=f"{stem}.{fmt}",
            mime=MIMES.get(fmt, "application/octet-stream"),
            on_click="ignore",
            key=f"download_{key}_{fmt}",
            width="stretch",
        )


def download(label: str, data: Callable[[], bytes] | bytes, file_name: str, key: str, **kwargs) -> None:
    """One download button (its bytes built only when clicked when ``data`` is a function); the MIME type
    follows the file name's extension."""
    st.download_button(
        label,
        data=data,
        file_name=file_name,
        mime=MIMES.get(file_name.rsplit(".", 1)[-1], "application/octet-stream"),
        on_click="ignore",
        key=key,
        **kwargs,
    )


def show_table(
    table: pd.DataFrame, file_name: str, key: str, column_config: dict | None = None, what: str = "rows"
) -> None:
    """A table on screen (at most ``settings.TABLE_ROWS`` rows, with a note) and its full TSV as a download."""
    limit = settings.TABLE_ROWS
    st.dataframe(table.head(limit), hide_index=True, column_config=column_config, width="stretch")
    if len(table) > limit:
        st.caption(f"Showing the first {limit:,} of {len(table):,} {what}; the download holds all of them.")
    download(f"Download all {len(table):,} {what} (TSV)", lambda: cached_tsv(table, key), file_name, f"download_{key}")
