"""Read immune repertoires from the files real pipelines write, clean them, and encode them.

CDR3 convention
---------------
Every sequence is the **junction** amino-acid string: the CDR3 *including* the conserved 5' cysteine
and the 3' phenylalanine/tryptophan (``CASSLGQAYEQYF``), as in DeepRC's data, AIRR ``junction_aa``,
immunoSEQ ``amino_acid``, 10x ``cdr3`` and VDJdb ``CDR3``. AIRR files that carry only ``cdr3_aa``
(the IMGT CDR3 without those two residues) are read as they are and the report says so.

Formats (detected from the header; tab or comma separated; optionally gzip-compressed):

=============  ==================================  =====================================  =====================
format         sequence column                     count column                           productive column
=============  ==================================  =====================================  =====================
airr           ``junction_aa``                     ``duplicate_count``                    ``productive`` (T/F)
immunoseq      ``amino_acid``                      ``templates`` / ``seq_reads``          ``frame_type`` (In)
immunoseq_v1   ``aminoAcid``                       ``count (templates/reads)``            ``sequenceStatus``
10x            ``cdr3`` (+ ``chain``)              ``umis`` / ``reads``                   ``productive``
vdjdb          ``CDR3`` / ``cdr3`` (+ ``V``/``J``)  none (1 each)                          none
list           a single column of sequences        none (1 each)                          none
=============  ==================================  =====================================  =====================

The hot path is vectorised: no Python loop runs per sequence.
"""

from __future__ import annotations

import gzip
import io as _io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from deeprc_core.errors import DeepRCError

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
N_AMINO_ACIDS = len(AMINO_ACIDS)
PAD = N_AMINO_ACIDS  # code of "no residue" (padding beyond a sequence's end)
DEFAULT_MAX_LENGTH = 40  # longest junction kept by default (TRB rarely exceeds 25, IGH 35)

Source = str | os.PathLike | bytes | BinaryIO

_INVALID = 255
_LUT = np.full(256, _INVALID, dtype=np.uint8)  # byte -> residue code
for _i, _aa in enumerate(AMINO_ACIDS):
    _LUT[ord(_aa)] = _i
    _LUT[ord(_aa.lower())] = _i
_LUT[0] = PAD  # numpy's fixed-width bytes pad short strings with NUL
_NON_PRODUCTIVE = {"F", "FALSE", "0", "OUT", "STOP", "NO", "N", "NONPRODUCTIVE", "NON-PRODUCTIVE"}
_MISSING_GENE = {"", "NAN", "NONE", "NA", "N/A", "UNRESOLVED", "UNKNOWN", "-"}


@dataclass(frozen=True)
class _Format:
    name: str  # short name shown to the user
    label: str  # human name
    sequence: tuple[str, ...]  # candidate sequence columns, first present wins
    count: tuple[str, ...] = ()  # candidate count columns
    v_call: tuple[str, ...] = ()  # candidate V gene columns
    j_call: tuple[str, ...] = ()  # candidate J gene columns
    productive: tuple[str, ...] = ()  # candidate productivity columns
    chain: str | None = None  # column naming the locus (10x)
    requires: tuple[str, ...] = ()  # extra columns that must be present to claim the file


_FORMATS = (
    _Format(
        "airr",
        "AIRR rearrangement TSV",
        ("junction_aa",),
        ("duplicate_count", "umi_count", "consensus_count"),
        ("v_call",),
        ("j_call",),
        ("productive",),
    ),
    _Format(
        "airr",
        "AIRR rearrangement TSV (cdr3_aa only)",
        ("cdr3_aa",),
        ("duplicate_count", "umi_count", "consensus_count"),
        ("v_call",),
        ("j_call",),
        ("productive",),
        requires=("v_call",),
    ),
    _Format(
        "immunoseq",
        "Adaptive immunoSEQ export",
        ("amino_acid",),
        ("templates", "seq_reads", "reads"),
        ("v_resolved", "v_gene", "v_family"),
        ("j_resolved", "j_gene", "j_family"),
        ("frame_type",),
    ),
    _Format(
        "immunoseq_v1",
        "Adaptive immunoSEQ export (v1 columns)",
        ("aminoAcid",),
        ("count (templates/reads)", "count (templates)", "count (reads)", "count"),
        ("vMaxResolved", "vGeneName", "vFamilyName"),
        ("jMaxResolved", "jGeneName", "jFamilyName"),
        ("sequenceStatus",),
    ),
    _Format(
        "10x",
        "10x Genomics contig annotations",
        ("cdr3",),
        ("umis", "reads"),
        ("v_gene",),
        ("j_gene",),
        ("productive",),
        chain="chain",
        requires=("chain",),
    ),
    _Format("vdjdb", "VDJdb export", ("CDR3",), (), ("V",), ("J",)),
    _Format("vdjdb", "VDJdb export", ("cdr3",), (), ("v.segm",), ("j.segm",), requires=("v.segm",)),
)
_FORMAT_HELP = (
    "AIRR (junction_aa, duplicate_count, v_call, j_call), immunoSEQ (amino_acid, templates, v_gene, "
    "j_gene, frame_type or aminoAcid, count (templates/reads), vGeneName, sequenceStatus), 10x Genomics "
    "(cdr3, umis, v_gene, j_gene, chain, productive), VDJdb (CDR3, V, J) or a single column of sequences"
)


@dataclass
class ReadReport:
    """What happened to every row of a repertoire file: nothing is dropped silently."""

    source: str  # file name the rows came from
    format: str = ""  # detected format name
    n_rows: int = 0  # data rows in the file
    n_kept: int = 0  # distinct sequences kept after merging duplicates
    n_other_chain: int = 0  # 10x rows of a chain other than the one asked for
    n_nonproductive: int = 0  # rows flagged non-productive (frame shift, stop codon)
    n_empty: int = 0  # rows with an empty sequence
    n_invalid: int = 0  # rows with characters outside the 20 amino acids (*, _, X, digits, ...)
    n_too_long: int = 0  # rows longer than the maximum length
    n_bad_count: int = 0  # rows whose count is zero or negative
    n_duplicates_merged: int = 0  # rows merged into an identical (sequence, V, J) row, counts summed
    n_lowercase: int = 0  # kept rows written in lowercase and uppercased
    n_counts_missing: int = 0  # rows with a blank count, set to 1
    counts_defaulted: bool = False  # the file has no count column: every count is 1
    max_length: int = DEFAULT_MAX_LENGTH  # the length limit applied
    notes: list[str] = field(default_factory=list)  # further remarks (column choices, conventions)

    @property
    def n_dropped(self) -> int:
        """Rows removed for any reason (merged duplicates are not counted as dropped)."""
        return (
            self.n_other_chain
            + self.n_nonproductive
            + self.n_empty
            + self.n_invalid
            + self.n_too_long
            + self.n_bad_count
        )

    def reasons(self) -> pd.DataFrame:
        """One row per reason: ``reason``, ``rows``; the rows of a summary table."""
        rows = [
            ("rows in file", self.n_rows),
            ("other chain (10x)", self.n_other_chain),
            ("non-productive", self.n_nonproductive),
            ("empty sequence", self.n_empty),
            ("characters outside the 20 amino acids", self.n_invalid),
            (f"longer than {self.max_length} residues", self.n_too_long),
            ("zero or negative count", self.n_bad_count),
            ("duplicates merged (counts summed)", self.n_duplicates_merged),
            ("blank or non-numeric count set to 1", self.n_counts_missing),
            ("distinct sequences kept", self.n_kept),
        ]
        return pd.DataFrame(rows, columns=["reason", "rows"])

    def summary(self) -> str:
        """One or two sentences a biologist can read."""
        parts = []
        for n, what in [
            (self.n_other_chain, "of another chain"),
            (self.n_nonproductive, "non-productive"),
            (self.n_empty, "empty"),
            (self.n_invalid, "with characters outside the 20 amino acids"),
            (self.n_too_long, f"longer than {self.max_length} residues"),
            (self.n_bad_count, "with a zero or negative count"),
        ]:
            if n:
                parts.append(f"{n:,} {what}")
        text = f"{self.source} ({self.format}): kept {self.n_kept:,} sequences from {self.n_rows:,} rows"
        text += "; dropped " + ", ".join(parts) if parts else "; nothing dropped"
        if self.n_duplicates_merged:
            text += f"; merged {self.n_duplicates_merged:,} duplicate rows by summing counts"
        if self.n_lowercase:
            text += f"; uppercased {self.n_lowercase:,} lowercase sequences"
        text += "."
        if self.counts_defaulted:
            text += " The file has no count column, so every sequence counts once."
        elif self.n_counts_missing:
            text += f" {self.n_counts_missing:,} blank or non-numeric counts were set to 1."
        for note in self.notes:
            text += " " + note
        return text

    def to_dict(self) -> dict:
        """Plain-JSON view of the report."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Repertoire:
    """A cleaned repertoire: distinct junctions with their counts and genes.

    ``codes`` holds residue indices into :data:`AMINO_ACIDS`, shape ``(n_sequences, max_len)``,
    with :data:`PAD` after each sequence's end.
    """

    name: str  # repertoire name (file name without extensions)
    sequences: np.ndarray  # (n_sequences,) object array of junction strings
    codes: np.ndarray  # (n_sequences, max_len) uint8 residue codes, PAD-filled
    lengths: np.ndarray  # (n_sequences,) int16 junction lengths
    counts: np.ndarray  # (n_sequences,) float64 clone counts (templates, UMIs, ...)
    v_call: np.ndarray  # (n_sequences,) object array of V genes ("" unknown), allele removed
    j_call: np.ndarray  # (n_sequences,) object array of J genes ("" unknown), allele removed
    report: ReadReport  # what reading did to the file's rows

    def __len__(self) -> int:
        return len(self.sequences)

    def to_frame(self) -> pd.DataFrame:
        """The repertoire as a table: ``sequence``, ``count``, ``v_call``, ``j_call``."""
        return pd.DataFrame(
            {"sequence": self.sequences, "count": self.counts, "v_call": self.v_call, "j_call": self.j_call}
        )


def repertoire_name(path: str | os.PathLike) -> str:
    """File name without directory and without all extensions (``a/rep1.tsv.gz`` -> ``rep1``)."""
    name = Path(path).name
    for ext in (".gz", ".tsv", ".csv", ".txt", ".tab"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def _source_bytes_and_name(source: Source, name: str | None) -> tuple[object, str, bool]:
    """Return something pandas can read, a display name, and whether it is gzip-compressed."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DeepRCError(f"Repertoire file {path} does not exist.")
        if path.stat().st_size == 0:
            raise DeepRCError(f"{path.name} is empty: it holds no sequences.")
        with open(path, "rb") as fh:
            magic = fh.read(2)
        return str(path), name or path.name, magic == b"\x1f\x8b"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
        if hasattr(source, "seek"):
            source.seek(0)
        name = name or getattr(source, "name", None)
    else:
        raise DeepRCError(f"Cannot read a repertoire from an object of type {type(source).__name__}.")
    name = name or "uploaded file"
    if not data:
        raise DeepRCError(f"{name} is empty: it holds no sequences.")
    return _io.BytesIO(data), name, data[:2] == b"\x1f\x8b"


def _first_line(handle: object, gz: bool, name: str) -> str:
    try:
        if isinstance(handle, str):
            raw = gzip.open(handle, "rb") if gz else open(handle, "rb")
        else:
            handle.seek(0)
            raw = gzip.GzipFile(fileobj=handle) if gz else handle
        try:
            line = raw.readline(1 << 20)
        finally:
            if isinstance(handle, str):
                raw.close()
            else:
                handle.seek(0)
    except (OSError, EOFError) as exc:
        raise DeepRCError(f"{name} looks gzip-compressed but cannot be decompressed ({exc}).") from exc
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DeepRCError(
            f"{name} is not a text table (it is not UTF-8). Upload a TSV/CSV file, optionally gzip-compressed."
        ) from exc
    if not text.strip():
        raise DeepRCError(f"{name} is empty: its first line is blank.")
    return text.rstrip("\r\n")


def _looks_like_sequence(token: str) -> bool:
    token = token.strip().strip('"').upper()
    return len(token) >= 4 and all(c in AMINO_ACIDS for c in token)


def _detect(columns: list[str], name: str) -> _Format | None:
    present = set(columns)
    for fmt in _FORMATS:
        if fmt.sequence[0] in present and all(c in present for c in fmt.requires):
            return fmt
    if len(columns) == 1:
        return None  # a plain list of sequences
    raise DeepRCError(
        f"Could not recognise the format of {name}: its header has the columns "
        f"{', '.join(columns[:12])}{' ...' if len(columns) > 12 else ''}. Expected {_FORMAT_HELP}."
    )


def _pick(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _normalise_genes(column: pa.ChunkedArray | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First call of a possibly ambiguous gene call, allele removed; unknown -> ''. Works on the few distinct
    values only, so it is vectorised over rows. Returns the names ``(N,)`` and an integer code per distinct
    cleaned name ``(N,)`` (used to merge duplicates without hashing strings again)."""
    if column is None:
        return np.full(len(rows), "", dtype=object), np.zeros(len(rows), dtype=np.int64)
    values, index = _categories(column)
    cleaned = []
    for value in values:
        g = value.strip().split(",")[0].split("|")[0].split("*")[0].strip()
        cleaned.append("" if g.upper() in _MISSING_GENE else g)
    names, code_of_value = np.unique(np.asarray(cleaned, dtype=object), return_inverse=True)
    picked = index[rows]
    return names[code_of_value][picked], code_of_value[picked].astype(np.int64)


def _read_table(handle: object, gz: bool, display: str, sep: str, names: list[str], wanted: dict[str, str], has_header: bool):
    """Parse the wanted columns with pyarrow's multithreaded CSV reader."""
    types = {c: pa.binary() if role == "sequence" else pa.string() for c, role in wanted.items() if role != "count"}
    count_cols = [c for c, role in wanted.items() if role == "count"]

    def _parse(count_type):
        stream = pa.input_stream(handle if isinstance(handle, str) else pa.py_buffer(handle.getvalue()), compression="gzip" if gz else None)
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=int(has_header), block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(wanted),
                column_types={**types, **{c: count_type for c in count_cols}},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    try:
        try:
            return _parse(pa.float64())
        except pa.ArrowInvalid:
            if not count_cols:
                raise
            return _parse(pa.string())  # counts with text in them: coerce below
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        msg = str(exc).split("\n")[0]
        if "Could not skip initial" in msg:
            raise DeepRCError(f"{display} has a header but no sequences.") from exc
        raise DeepRCError(f"Could not parse {display}: {msg}. Check that it is a tab- or comma-separated table.") from exc


def _row_any(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-row "any" of a flat per-residue boolean array, rows delimited by ``offsets`` (N + 1)."""
    if not flags.any():  # the common case: a clean file
        return np.zeros(len(offsets) - 1, dtype=bool)
    cum = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return (cum[offsets[1:]] - cum[offsets[:-1]]) > 0


def _offsets_and_bytes(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets ``(N + 1,)`` starting at 0 and the concatenated bytes of a binary arrow array."""
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n + 1, offset=column.offset * 4).astype(np.int64)
    data = column.buffers()[2]
    flat = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], flat


def _trim_spaced_rows(column: pa.Array) -> pa.Array:
    """Trim stray spaces/tabs around junctions (rare), leaving every other row untouched."""
    _, flat = _offsets_and_bytes(column)
    if not np.isin(flat, (9, 32)).any():
        return column
    return pc.utf8_trim_whitespace(column.cast(pa.string())).cast(pa.binary())


def padded_codes(flat_codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(N, W)`` residue codes, PAD beyond each end, gathered length by length (no padding is read)."""
    width = int(lengths.max()) if len(lengths) else 1
    codes = np.full((len(lengths), width), PAD, dtype=np.uint8)
    order = np.argsort(lengths.astype(np.int16), kind="stable")  # radix sort of small integers
    sorted_lengths = lengths[order]
    bounds = np.searchsorted(sorted_lengths, np.arange(width + 2))
    for length in range(1, width + 1):
        rows = order[bounds[length] : bounds[length + 1]]
        if len(rows):
            codes[rows, :length] = flat_codes[starts[rows, None] + np.arange(length)]
    return codes


def _categories(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Distinct values of a low-cardinality string column and each row's index into them (nulls -> '')."""
    encoded = pc.dictionary_encode(pc.fill_null(column, "")).combine_chunks()
    values = [str(v) for v in encoded.dictionary.to_pylist()] or [""]
    return values, encoded.indices.to_numpy(zero_copy_only=False)


def _merge_duplicates(
    codes: np.ndarray, v_call: np.ndarray, j_call: np.ndarray, v_code: np.ndarray, j_code: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Group identical (sequence, V, J) rows: indices of each group's first row and the summed counts,
    or None when every row is distinct. Rows are hashed as integers (fast), and every group is then
    checked residue by residue, so a hash collision can never merge different sequences."""
    n, width = codes.shape
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = codes
    words = words.view(np.uint64)  # (N, W/8): each row's residues as a few 64-bit words
    key = v_code.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ j_code.astype(np.uint64)
    for i in range(words.shape[1]):  # multiply-xorshift mixing, wrapping mod 2^64
        key = (key ^ words[:, i]) * np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(31)
    ordered = np.sort(key)
    if not (ordered[1:] == ordered[:-1]).any():  # distinct hashes: every row is distinct
        return None
    group, uniques = pd.factorize(key)  # ids in order of first appearance
    if len(uniques) == n:
        return None
    order = np.argsort(group, kind="stable")
    first = order[np.searchsorted(group[order], np.arange(len(uniques)))]
    same = (codes == codes[first][group]).all() and (v_call == v_call[first][group]).all()
    if not (same and (j_call == j_call[first][group]).all()):  # a 64-bit collision: group exactly instead
        exact = pd.DataFrame({"s": [r.tobytes() for r in codes], "v": v_call, "j": j_call})
        group = exact.groupby(["s", "v", "j"], sort=False).ngroup().to_numpy()
        order = np.argsort(group, kind="stable")
        first = order[np.searchsorted(group[order], np.arange(group.max() + 1))]
    return first, np.bincount(group, weights=counts, minlength=len(first))


def read_repertoire(
    source: Source,
    *,
    name: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    chain: str | None = None,
    max_rows: int | None = None,
) -> Repertoire:
    """Read, clean and encode one repertoire file.

    Parameters
    ----------
    source
        A path, the raw bytes of an upload, or a binary file object. Gzip is detected from the content.
    name
        Repertoire name (defaults to the file name without extensions).
    max_length
        Junctions longer than this are dropped (and counted in the report).
    chain
        For 10x contig annotations: the locus to keep (``TRB``, ``TRA``, ``IGH``, ...). Defaults to TRB,
        or IGH when the file holds no TRB rows.
    max_rows
        Refuse files with more data rows than this (protects a web server from huge uploads).

    Returns
    -------
    Repertoire
        Distinct sequences with their summed counts, genes and a :class:`ReadReport`.

    Raises
    ------
    DeepRCError
        Empty, unreadable or unrecognised files, or files in which no sequence survives cleaning.
    """
    handle, display, gz = _source_bytes_and_name(source, name)
    header = _first_line(handle, gz, display)
    sep = "\t" if "\t" in header else ","
    columns = [c.strip().strip('"') for c in header.split(sep)]
    fmt = _detect(columns, display)
    has_header = fmt is not None or not _looks_like_sequence(columns[0])
    report = ReadReport(source=display, max_length=max_length)

    if fmt is None:
        report.format = "list"
        names = ["sequence"]
        wanted = {"sequence": "sequence"}
    else:
        report.format = fmt.name
        names = [c if c else f"_unnamed_{i}" for i, c in enumerate(columns)]
        wanted = {fmt.sequence[0]: "sequence"}
        for key, candidates in (
            ("count", fmt.count),
            ("v_call", fmt.v_call),
            ("j_call", fmt.j_call),
            ("productive", fmt.productive),
        ):
            col = _pick(columns, candidates)
            if col is not None:
                wanted[col] = key
        if fmt.chain:
            wanted[fmt.chain] = "chain"
        if fmt.sequence[0] == "cdr3_aa":
            report.notes.append(
                "This AIRR file has no junction_aa column; its cdr3_aa sequences lack the conserved C and "
                "F/W that the model was trained with."
            )
    table = _read_table(handle, gz, display, sep, names, wanted, has_header)
    table = table.rename_columns([wanted[c] for c in table.column_names])
    n = table.num_rows
    if max_rows is not None and n > max_rows:
        raise DeepRCError(
            f"{display} has {n:,} rows, more than the {max_rows:,} allowed here. Use the command line "
            "(python -m deeprc_core predict ...) for larger repertoires."
        )
    report.n_rows = n
    if n == 0:
        raise DeepRCError(f"{display} has a header but no sequences.")

    keep = np.ones(n, dtype=bool)
    if "chain" in table.column_names:
        values, index = _categories(table["chain"])
        chains = np.asarray([v.strip().upper() for v in values], dtype=object)[index]
        wanted_chain = (chain or ("TRB" if (chains == "TRB").any() else "IGH")).upper()
        on_chain = chains == wanted_chain
        if not on_chain.any():
            found = ", ".join(sorted(set(chains.tolist()) - {""})) or "none"
            raise DeepRCError(f"{display} has no {wanted_chain} contigs (chains present: {found}).")
        report.n_other_chain = int((~on_chain).sum())
        report.notes.append(f"Kept the {wanted_chain} chain.")
        keep &= on_chain
    if "productive" in table.column_names:
        values, index = _categories(table["productive"])
        nonprod = np.isin([v.strip().upper() for v in values], list(_NON_PRODUCTIVE))[index] & keep
        report.n_nonproductive = int(nonprod.sum())
        keep &= ~nonprod

    # Residue codes straight from the byte buffer of the sequence column: no per-sequence Python.
    seq_col = _trim_spaced_rows(pc.fill_null(table["sequence"], b"").combine_chunks())
    offsets, flat = _offsets_and_bytes(seq_col)
    lengths = np.diff(offsets)
    flat_codes = _LUT[flat]
    invalid = _row_any(flat_codes == _INVALID, offsets)
    empty = (lengths == 0) & keep
    report.n_empty = int(empty.sum())
    keep &= ~empty
    bad_chars = invalid & keep
    report.n_invalid = int(bad_chars.sum())
    keep &= ~bad_chars
    too_long = (lengths > max_length) & keep
    report.n_too_long = int(too_long.sum())
    keep &= ~too_long

    if "count" in table.column_names:
        count_col = table["count"]
        if pa.types.is_floating(count_col.type):
            counts = count_col.to_numpy().astype(np.float64)
        else:
            counts = np.array(pd.to_numeric(pd.Series(count_col.to_numpy(zero_copy_only=False)), errors="coerce"), dtype=np.float64)
        missing = np.isnan(counts) & keep
        report.n_counts_missing = int(missing.sum())
        counts[missing] = 1.0
        bad = (counts <= 0) & keep
        report.n_bad_count = int(bad.sum())
        keep &= ~bad
    else:
        counts = np.ones(n, dtype=np.float64)
        report.counts_defaulted = True
    if not keep.any():
        raise DeepRCError(f"No usable sequence in {display}. {report.summary()}")

    rows = np.flatnonzero(keep)
    report.n_lowercase = int(_row_any(flat >= ord("a"), offsets)[rows].sum())
    row_lengths = lengths[rows]
    codes = padded_codes(flat_codes, offsets[rows], row_lengths)
    kept_seqs = seq_col.take(pa.array(rows)).cast(pa.string())
    if report.n_lowercase:
        kept_seqs = pc.utf8_upper(kept_seqs)
    names = table.column_names
    v_call, v_code = _normalise_genes(table["v_call"] if "v_call" in names else None, rows)
    j_call, j_code = _normalise_genes(table["j_call"] if "j_call" in names else None, rows)
    out_counts = counts[rows]

    # Merge duplicate (sequence, V, J) rows by summing their counts.
    merged = _merge_duplicates(codes, v_call, j_call, v_code, j_code, out_counts)
    if merged is not None:
        first, out_counts = merged
        report.n_duplicates_merged = len(rows) - len(first)
        kept_seqs = kept_seqs.take(pa.array(first))
        v_call, j_call, codes, row_lengths = v_call[first], j_call[first], codes[first], row_lengths[first]

    report.n_kept = len(out_counts)
    return Repertoire(
        name=repertoire_name(display) if name is None else name,
        sequences=kept_seqs.to_numpy(zero_copy_only=False),
        codes=codes,
        lengths=row_lengths.astype(np.int16),
        counts=out_counts,
        v_call=v_call,
        j_call=j_call,
        report=report,
    )



def encode_sequences(sequences: list[str] | np.ndarray, max_length: int = DEFAULT_MAX_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Encode clean junction strings into ``(codes, lengths)``; raises on invalid letters or lengths.

    Returns
    -------
    codes : (n_sequences, max_len) uint8 with :data:`PAD` after each end
    lengths : (n_sequences,) int16
    """
    seqs = np.asarray(sequences, dtype=object)
    if len(seqs) == 0:
        return np.zeros((0, 1), np.uint8), np.zeros(0, np.int16)
    upper = pd.Series(seqs).fillna("").str.strip().str.upper()
    lengths = upper.str.len().to_numpy()
    if (lengths == 0).any() or (lengths > max_length).any():
        bad = upper[(lengths == 0) | (lengths > max_length)].iloc[0]
        raise DeepRCError(f"Sequence '{bad}' is empty or longer than {max_length} residues.")
    try:
        raw = upper.to_numpy(dtype=object).astype(f"S{int(lengths.max())}")
    except UnicodeEncodeError as exc:
        raise DeepRCError("Sequences may only contain the 20 amino-acid letters.") from exc
    codes = _LUT[raw.view(np.uint8).reshape(len(raw), -1)]
    if (codes == _INVALID).any():
        bad = upper[(codes == _INVALID).any(axis=1)].iloc[0]
        raise DeepRCError(f"Sequence '{bad}' contains characters outside the 20 amino acids ({AMINO_ACIDS}).")
    return codes, lengths.astype(np.int16)


_ALPHABET_BYTES = np.frombuffer((AMINO_ACIDS + "\0").encode(), dtype=np.uint8)  # code -> ASCII, PAD -> NUL


def decode_sequences(codes: np.ndarray) -> np.ndarray:
    """``(N, W)`` residue codes (PAD-filled) -> object array of junction strings, vectorised."""
    if len(codes) == 0:
        return np.zeros(0, dtype=object)
    raw = np.ascontiguousarray(_ALPHABET_BYTES[codes])  # (N, W) ASCII bytes, NUL beyond each end
    return raw.view(f"S{codes.shape[1]}").ravel().astype(str).astype(object)


# ----------------------------------------------------------------------------------------------------------
# Metadata: which repertoire file belongs to which sample and label.


def find_repertoire_files(directory: str | os.PathLike) -> list[Path]:
    """Repertoire files directly in ``directory`` or under ``directory/repertoires``, sorted."""
    root = Path(directory)
    folders = [root / "repertoires", root] if (root / "repertoires").is_dir() else [root]
    exts = (".tsv", ".csv", ".txt", ".tsv.gz", ".csv.gz", ".txt.gz", ".tab", ".tab.gz")
    files = []
    for folder in folders:
        files += [
            p
            for p in sorted(folder.iterdir())
            if p.is_file() and p.name.lower().endswith(exts) and not p.name.startswith(("metadata", "truth", "."))
        ]
    return files


def read_metadata(path: str | os.PathLike, repertoire_files: list[Path] | None = None) -> pd.DataFrame:
    """Read a metadata table and match its IDs to repertoire files.

    The ID column is the first column (or one named ``ID``, ``filename``, ``repertoire``, ``sample`` ...).
    An ID matches a file whose name equals it, with or without extensions (``rep1``, ``rep1.tsv`` and
    ``rep1.tsv.gz`` all match ``rep1.tsv.gz``).

    Returns
    -------
    DataFrame
        The metadata with two added columns: ``repertoire`` (the name) and ``file`` (the matched path,
        when ``repertoire_files`` is given).

    Raises
    ------
    DeepRCError
        Missing file, no rows, duplicate IDs, IDs without a file (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise DeepRCError(f"Metadata file {path} does not exist.")
    if path.stat().st_size == 0:
        raise DeepRCError(f"Metadata file {path.name} is empty.")
    with open(path, "rb") as fh:
        head = fh.readline().decode("utf-8-sig", errors="replace")
    sep = "\t" if "\t" in head else ","
    try:
        meta = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DeepRCError(f"Could not parse metadata file {path.name}: {exc}") from exc
    meta.columns = [c.strip() for c in meta.columns]
    if len(meta) == 0:
        raise DeepRCError(f"Metadata file {path.name} has no rows.")
    id_col = next(
        (c for c in meta.columns if c.lower() in ("id", "filename", "file", "repertoire", "repertoire_id", "sample")),
        meta.columns[0],
    )
    ids = meta[id_col].astype(str).str.strip()
    names = ids.map(repertoire_name)
    if names.duplicated().any():
        dups = ", ".join(sorted(set(ids[names.duplicated(keep=False)]))[:5])
        raise DeepRCError(f"Metadata file {path.name} lists the same repertoire more than once: {dups}.")
    meta = meta.copy()
    meta.insert(0, "repertoire", names.to_numpy())
    if repertoire_files is not None:
        by_name: dict[str, Path] = {}
        for f in repertoire_files:
            by_name.setdefault(repertoire_name(f), f)
        exact = {Path(f).name: Path(f) for f in repertoire_files}  # an ID naming a file exactly wins
        missing = [i for i, n in zip(ids, names) if i not in exact and n not in by_name]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DeepRCError(
                f"{len(missing)} repertoire(s) listed in {path.name} (column '{id_col}') have no file: {shown}."
            )
        meta["file"] = [str(exact.get(i) or by_name[n]) for i, n in zip(ids, names)]
    meta.attrs["id_column"] = id_col
    return meta


def find_metadata(directory: str | os.PathLike) -> Path:
    """The metadata table of a dataset folder (``metadata.tsv``/``.csv``)."""
    root = Path(directory)
    for name in ("metadata.tsv", "metadata.csv", "metadata.txt"):
        if (root / name).is_file():
            return root / name
    raise DeepRCError(f"Dataset folder {root} has no metadata.tsv (first column: repertoire file name or ID).")
