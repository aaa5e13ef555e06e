"""Cached results of the library, keyed by the model's stamp and the repertoire's content key (the model and
repertoire arguments themselves are not hashed: leading underscore). Each wrapper is named for what it
returns, never like the library function it calls."""

from __future__ import annotations

import copy

import pandas as pd
import streamlit as st

from deeprc_core.attribution import SequenceAttributions, attribute_sequences
from deeprc_core.io import Repertoire
from deeprc_core.model import DeepRC
from deeprc_core.motifs import KernelMotifs, kernel_motifs
from deeprc_core.recovery import RecoveryReport, recovery_report
from deeprc_core.scoring import RepertoireScore, attention_order, attention_table, predict, score_repertoire


@st.cache_data(max_entries=128, show_spinner=False)
def cached_score(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> RepertoireScore:
    """The repertoire's prediction and per-sequence attention."""
    return score_repertoire(_model, _repertoire)


@st.cache_data(max_entries=512, show_spinner=False)
def cached_prediction(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> pd.DataFrame:
    """One row of :func:`deeprc_core.scoring.predict` for one repertoire (reusing its cached score)."""
    return predict(_model, [_repertoire], [cached_score(_model, model_key, _repertoire, rep_key)])


@st.cache_data(max_entries=32, show_spinner=False)
def cached_attention_table(_model: DeepRC, model_key: str, _repertoire: Repertoire, rep_key: str) -> pd.DataFrame:
    """The attention table, plus ``row`` (each sequence's row in the repertoire, for attributions)."""
    result = cached_score(_model, model_key, _repertoire, rep_key)
    table = attention_table(_model, _repertoire, score=result)
    table["row"] = attention_order(result)
    return table


@st.cache_data(max_entries=64, show_spinner=False)
def cached_attributions(
    _model: DeepRC,
    model_key: str,
    _repertoire: Repertoire,
    rep_key: str,
    rows: tuple[int, ...] | None = None,
    top: int = 50,
    n_steps: int = 32,
    baseline: str = "zero",
    explain: str = "attention",
) -> SequenceAttributions:
    """Integrated-gradient residue attributions of some sequences (``rows``) or the ``top`` attended ones;
    ``explain`` names the attributed function (see :data:`deeprc_core.attribution.EXPLAIN`)."""
    indices = list(rows) if rows is not None else None
    top = min(top, len(_repertoire))
    return attribute_sequences(
        _model, _repertoire, indices, top=top, n_steps=n_steps, baseline=baseline, explain=explain
    )


@st.cache_data(max_entries=16, show_spinner=False)
def cached_kernel_motifs(
    _model: DeepRC,
    model_key: str,
    _repertoires: list[Repertoire],
    rep_keys: tuple[str, ...],
    top_n: int = 100,
    motifs: tuple[str, ...] = (),
) -> KernelMotifs:
    """Kernel logos, top k-mers, importances and attention shares over some repertoires, and each kernel's best
    match among known ``motifs``. Computed on a private copy of the model: ablating a kernel hooks into it, and
    the cached model is shared by every session."""
    return kernel_motifs(copy.deepcopy(_model), list(_repertoires), top_n=top_n, motifs=motifs)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_recovery_report(
    _model: DeepRC,
    model_key: str,
    _repertoires: list[Repertoire],
    rep_keys: tuple[str, ...],
    truth: pd.DataFrame,
    attribute_top: int = 25,
    n_steps: int = 16,
    motif: str | None = None,
    explain: str = "attention",
) -> RecoveryReport:
    """Recovery scores of the model on repertoires with known witnesses (see :mod:`deeprc_core.recovery`)."""
    return recovery_report(
        _model, list(_repertoires), truth, attribute_top=attribute_top, n_steps=n_steps, motif=motif, explain=explain
    )
