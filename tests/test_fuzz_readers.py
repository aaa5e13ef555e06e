"""Property-based fuzzing of the readers (issue 11): whatever bytes arrive, a reader either returns clean data
or raises :class:`DeepRCError` with a sentence, never another exception, and never hands back a sequence with
a character outside the 20 amino acids. Bounded to a few hundred examples (well under 20 s)."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, MAX_CLONE_COUNT, PAD, decode_sequences, read_metadata, read_repertoire

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
MAX_LENGTH = 30

COLUMNS = [
    "junction_aa", "cdr3_aa", "amino_acid", "aminoAcid", "cdr3", "CDR3", "duplicate_count", "templates",
    "count (templates/reads)", "umis", "v_call", "j_call", "v_gene", "j_gene", "V", "J", "v.segm", "productive",
    "frame_type", "sequenceStatus", "chain", "junction_aa", "x", "",
]  # fmt: skip
CHARACTERS = st.sampled_from(
    list(AMINO_ACIDS)
    + list("acdefgxyz*_0123456789 .,;-+eE")
    + ["\t", "\0", '"', "\r", "é", "Ω", "\ufeff", "🧬", "\x7f"]
)
FIELD = st.one_of(
    st.text(CHARACTERS, max_size=24),
    st.sampled_from(
        ["CASSLGQAYEQYF", "casslgqf", "1e39", "1e400", "inf", "-1", "0", "NaN", "", "T", "F", "TRB", "TRA"]
    ),
    st.integers(-10, 10**6).map(str),
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def _check(rep) -> None:
    """Everything a returned repertoire promises."""
    for seq in rep.sequences:
        assert isinstance(seq, str) and 0 < len(seq) <= MAX_LENGTH
        assert set(seq) <= set(AMINO_ACIDS), repr(seq)
    assert rep.codes.shape[0] == len(rep.sequences) and (rep.codes <= PAD).all()
    assert decode_sequences(rep.codes).tolist() == rep.sequences.tolist()
    assert (rep.lengths == np.char.str_len(rep.sequences.astype(str))).all()
    assert np.isfinite(rep.counts).all() and (rep.counts > 0).all()
    assert (rep.counts <= MAX_CLONE_COUNT * rep.report.n_rows).all()
    r = rep.report
    assert r.n_rows == r.n_kept + r.n_dropped + r.n_duplicates_merged
    assert r.n_kept == len(rep.sequences) > 0


def _read(data: bytes) -> None:
    try:
        rep = read_repertoire(data, name="fuzz.tsv", max_length=MAX_LENGTH, max_rows=10_000, max_bytes=1 << 20)
    except DeepRCError as exc:
        assert str(exc).strip()  # a sentence, never an empty message
        return
    _check(rep)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_another_error(data):
    _read(data)
    _read(b"junction_aa\tduplicate_count\n" + data)
    _read(gzip.compress(data)[: max(2, len(data) // 2)])


@FUZZ
@given(
    header=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6),
    rows=st.lists(st.lists(FIELD, min_size=0, max_size=7), max_size=12),
    sep=st.sampled_from(["\t", ",", ";"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    encoding=ENCODINGS,
    compress=st.sampled_from(["none", "gzip", "truncated"]),
)
def test_random_tables_never_escape_as_another_error(header, rows, sep, newline, encoding, compress):
    text = newline.join(sep.join(cells) for cells in [header, *rows]) + newline
    data = text.encode(encoding, errors="replace")
    if compress != "none":
        data = gzip.compress(data)
        data = data[: len(data) // 2] if compress == "truncated" else data
    _read(data)


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(["ID", "repertoire", "file", "sample", "disease", "age", "", "x"]), min_size=1, max_size=4
    ),
    rows=st.lists(st.lists(FIELD, min_size=0, max_size=5), max_size=8),
    sep=st.sampled_from(["\t", ","]),
    encoding=ENCODINGS,
)
def test_random_metadata_never_escapes_as_another_error(header, rows, sep, encoding):
    text = "\n".join(sep.join(cells) for cells in [header, *rows]) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metadata.tsv"
        path.write_bytes(text.encode(encoding, errors="replace"))
        for files in (None, [Path(folder) / "r1.tsv", Path(folder) / "rep.tsv.gz"]):
            try:
                meta = read_metadata(path, files)
            except DeepRCError:
                continue
            assert meta.columns[0] == "repertoire" and not meta.columns.duplicated().any()
            assert files is None or meta["file"].isin([str(f) for f in files]).all()
