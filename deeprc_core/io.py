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

import contextlib
import errno
import gzip
import io as _io
import math
import os
import queue
import re
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
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
GAP_CHARS = ".-"  # motif letters that keep the original residue ("any residue")
DEFAULT_MAX_LENGTH = 40  # longest junction kept by default (TRB rarely exceeds 25, IGH 35)

Source = str | os.PathLike | bytes | BinaryIO

_INVALID = 255
_LUT = np.full(256, _INVALID, dtype=np.uint8)  # byte -> residue code
for _i, _aa in enumerate(AMINO_ACIDS):
    _LUT[ord(_aa)] = _i
    _LUT[ord(_aa.lower())] = _i
_PADDED_LUT = _LUT.copy()  # the same, for numpy's fixed-width bytes, which pad short strings with NUL
_PADDED_LUT[0] = PAD  # (inside a file a NUL byte is never a residue: it stays invalid in _LUT)
DEFAULT_MAX_FILE_BYTES = 1 << 30  # decompressed bytes one repertoire file may hold (DEEPRC_MAX_FILE_MB)
DEFAULT_MAX_ROWS = 10_000_000  # data rows one repertoire file may hold (DEEPRC_MAX_ROWS)
MAX_METADATA_BYTES = 64 << 20  # a metadata table has one short row per repertoire
MAX_CLONE_COUNT = 1e12  # larger counts are impossible (a human holds about 10^12 T cells): such rows are dropped
_MAX_FIELD_CHARS = 256  # gene and flag values are cut to this length while reading (real ones are far shorter)
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
    n_invalid: int = 0  # rows with characters outside the 20 amino acids (*, _, X, digits, NUL bytes, ...)
    n_too_long: int = 0  # rows longer than the maximum length
    n_bad_count: int = 0  # rows whose count is zero, negative, infinite or above MAX_CLONE_COUNT (1e12)
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
            ("zero, negative, infinite or impossibly large (> 1e12) count", self.n_bad_count),
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
            (self.n_bad_count, "with a zero or negative count, or an infinite or impossibly large one (> 1e12)"),
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


_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def check_path(path: str | os.PathLike, what: str, want: str = "file") -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is an existing regular file (``want="file"``) or folder
    (``want="folder"``); otherwise a :class:`DeepRCError` that says what it is instead (missing, a folder, a
    file, a named pipe, a broken or looping symbolic link, unreadable).

    ``what`` names the path in the message, e.g. ``"Repertoire file"`` or ``"Model folder"``.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DeepRCError(
                f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist."
            ) from None
        raise DeepRCError(f"{what} {path} does not exist.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DeepRCError(
                f"{what} {path} is a symbolic link that loops back on itself; it leads to no file."
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DeepRCError(f"{what} {path} cannot be read: permission denied.") from None
        raise DeepRCError(f"{what} {path} cannot be opened ({exc.strerror or exc}).") from None
    if want == "file" and stat.S_ISREG(info.st_mode):
        return path
    if want == "folder" and stat.S_ISDIR(info.st_mode):
        return path
    if stat.S_ISDIR(info.st_mode):
        raise DeepRCError(f"{what} {path} is a folder, not a file; give the file(s) inside it.")
    if stat.S_ISREG(info.st_mode):
        raise DeepRCError(f"{what} {path} is a file, not a folder.")
    kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
    raise DeepRCError(f"{what} {path} is {kind}, not a regular {want}; save the data to a {want} first.")


def _env_limit(variable: str, default: int, scale: float = 1.0) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise DeepRCError(f"{variable}={value!r} is not a positive number.")
    return int(number * scale)


def file_limits() -> tuple[int, int]:
    """``(max_bytes, max_rows)`` one repertoire file may hold once decompressed: 1 GiB and 10 million rows,
    or the values of the environment variables ``DEEPRC_MAX_FILE_MB`` and ``DEEPRC_MAX_ROWS``."""
    return (
        _env_limit("DEEPRC_MAX_FILE_MB", DEFAULT_MAX_FILE_BYTES, 1 << 20),
        _env_limit("DEEPRC_MAX_ROWS", DEFAULT_MAX_ROWS),
    )


class _LimitExceeded(Exception):
    """A file outgrew its byte limit while it streamed."""


class _CappedStream(_io.RawIOBase):
    """A binary stream (decompressing when ``gz``) that hands out at most ``limit`` bytes, so a small gzip
    that inflates to gigabytes is stopped while it streams, before it is parsed or held. Only this module's
    own code reads it (never a pyarrow thread: an exception raised there aborts the process at exit)."""

    def __init__(self, raw: BinaryIO, gz: bool, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        self.limit, self.total = limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self.limit - self.total + 1]  # one byte past the limit tells it apart
        n = self._stream.readinto(view) or 0
        self.total += n
        if self.total > self.limit:
            raise _LimitExceeded()
        return n

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()
        super().close()


@dataclass
class _Source:
    """Where a repertoire's bytes come from: reopened for each pass (header, then the table)."""

    name: str  # display name
    path: Path | None = None  # file on disk
    data: bytes | None = None  # or the bytes of an upload
    gz: bool = False  # gzip-compressed (from the magic bytes, not the extension)
    max_bytes: int = DEFAULT_MAX_FILE_BYTES  # decompressed bytes allowed

    def open(self) -> _CappedStream:
        raw = open(self.path, "rb") if self.path is not None else _io.BytesIO(self.data)
        return _CappedStream(raw, self.gz, self.max_bytes)

    def too_large(self) -> DeepRCError:
        limit = f"{self.max_bytes / 2**20:,.0f} MB"
        how = " once decompressed" if self.gz else ""
        return DeepRCError(
            f"{self.name} holds more than {limit}{how}, the limit for one repertoire file. Split it into smaller "
            "files, or raise the limit with the environment variable DEEPRC_MAX_FILE_MB (command line)."
        )


def _open_source(source: Source, name: str | None, max_bytes: int) -> _Source:
    """Check a source and say how to (re)open it: a path, the raw bytes of an upload, or a file object."""
    if isinstance(source, (str, os.PathLike)):
        path = check_path(source, "Repertoire file")
        if path.stat().st_size == 0:
            raise DeepRCError(f"{path.name} is empty: it holds no sequences.")
        try:
            with open(path, "rb") as fh:
                magic = fh.read(2)
        except PermissionError:
            raise DeepRCError(f"Repertoire file {path} cannot be read: permission denied.") from None
        src = _Source(name or path.name, path=path, gz=magic == b"\x1f\x8b", max_bytes=max_bytes)
        if not src.gz and path.stat().st_size > max_bytes:
            raise src.too_large()
        return src
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
        if hasattr(source, "seek"):
            source.seek(0)
        name = name or getattr(source, "name", None)
        if not isinstance(data, (bytes, bytearray)):
            raise DeepRCError(f"{name or 'The upload'} was opened as text; open it in binary mode ('rb').")
    else:
        raise DeepRCError(f"Cannot read a repertoire from an object of type {type(source).__name__}.")
    name = str(name or "uploaded file")
    if not data:
        raise DeepRCError(f"{name} is empty: it holds no sequences.")
    src = _Source(name, data=bytes(data), gz=data[:2] == b"\x1f\x8b", max_bytes=max_bytes)
    if not src.gz and len(data) > max_bytes:
        raise src.too_large()
    return src


def _damaged(source: _Source, exc: BaseException) -> DeepRCError:
    return DeepRCError(
        f"{source.name} looks gzip-compressed but is damaged or truncated and cannot be decompressed ({exc})."
    )


def _first_line(source: _Source) -> str:
    try:
        with source.open() as stream:
            line = _io.BufferedReader(stream, 1 << 16).readline(1 << 20)
    except _LimitExceeded:
        raise source.too_large() from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _damaged(source, exc) from exc
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DeepRCError(
            f"{source.name} is not a text table (it is not UTF-8). Upload a TSV/CSV file, optionally gzip-compressed."
        ) from exc
    if not text.strip():
        raise DeepRCError(f"{source.name} is empty: its first line is blank.")
    if "\0" in text:
        raise DeepRCError(f"{source.name} is not a text table: its first line holds NUL bytes.")
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
    values only, so it is vectorised over rows. Returns the distinct cleaned names ``(G,)`` and each row's
    code into them ``(N,)``: duplicates are merged on the codes, and only kept rows get their name."""
    if column is None:
        return np.asarray([""], dtype=object), np.zeros(len(rows), dtype=np.int32)
    values, index = _categories(column)
    cleaned = []
    for value in values:
        g = value.strip().split(",")[0].split("|")[0].split("*")[0].strip()
        cleaned.append("" if g.upper() in _MISSING_GENE else g)
    names, code_of_value = np.unique(np.asarray(cleaned, dtype=object), return_inverse=True)
    return names, code_of_value.astype(np.int32)[index[rows]]


_BLOCK_BYTES = 1 << 22  # decompressed bytes parsed at once
_MAX_LINE_BYTES = 1 << 24  # a longer line is not a row of a repertoire table


def _line_blocks(stream: BinaryIO, name: str) -> Iterator[bytes]:
    """The stream's bytes in blocks of whole lines (about :data:`_BLOCK_BYTES` each), a leading BOM removed."""
    pending, first = b"", True
    while chunk := stream.read(_BLOCK_BYTES):
        if first:
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if len(pending) > _MAX_LINE_BYTES:
            raise DeepRCError(
                f"{name} has a line longer than {_MAX_LINE_BYTES >> 20} MB; it is not a repertoire table."
            )
        if cut:
            yield data[:cut]
    if pending:
        yield pending


def _prefetched(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The same blocks, each produced in a helper thread while the one before is parsed: gzip decompression
    and pyarrow's parser both release the GIL, so they overlap. At most two blocks wait; an error in the
    helper is raised here; closing this generator stops and joins the helper."""
    waiting: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def _put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work() -> None:
        try:
            for block in blocks:
                if not _put(("block", block)):
                    return
            _put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
            _put(("error", exc))

    helper = threading.Thread(target=_work, name="deeprc-read-ahead", daemon=True)
    helper.start()
    try:
        while True:
            kind, item = waiting.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        helper.join()


def _read_table(
    source: _Source,
    sep: str,
    names: list[str],
    wanted: dict[str, str],
    has_header: bool,
    max_length: int,
    max_rows: int,
) -> pa.Table:
    """Stream the wanted columns block by block, stopping as soon as the file outgrows ``max_rows`` rows or its
    byte limit. Each block is parsed in memory by pyarrow's multithreaded reader and made compact at once (see
    :func:`_compact_batch`), so what is held stays small whatever the file holds. Returns a table whose columns
    are named by role (``sequence``, ``count``, ...)."""
    types = {c: pa.binary() if role == "sequence" else pa.string() for c, role in wanted.items()}
    parse = pacsv.ParseOptions(delimiter=sep, newlines_in_values=False)
    convert = pacsv.ConvertOptions(
        include_columns=list(wanted), column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    batches, n_rows, skip = [], 0, int(has_header)
    try:
        with source.open() as stream, contextlib.closing(_prefetched(_line_blocks(stream, source.name))) as blocks:
            for block in blocks:
                read = pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=1 << 23, use_threads=False)
                skip = 0
                try:
                    table = pacsv.read_csv(
                        pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert
                    )
                except pa.ArrowInvalid as exc:
                    if "Empty CSV file" in str(exc) or "Could not skip initial" in str(exc):
                        continue  # only the header in this block
                    raise
                n_rows += table.num_rows
                if n_rows > max_rows:
                    raise DeepRCError(
                        f"{source.name} has more than the {max_rows:,} allowed rows for one repertoire file. Split "
                        "it, or raise the limit with the environment variable DEEPRC_MAX_ROWS (command line)."
                    )
                batches += [_compact_batch(b, wanted, max_length) for b in table.to_batches()]
                del table
    except _LimitExceeded:
        raise source.too_large() from None
    except (OSError, EOFError, zlib.error) as exc:
        if source.gz:
            raise _damaged(source, exc) from exc
        raise DeepRCError(f"{source.name} could not be read ({exc}).") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        msg = re.sub(r"Row #\d+: ", "", str(exc).split("\n")[0])
        raise DeepRCError(
            f"Could not parse {source.name}: {msg}. Check that it is a tab- or comma-separated table."
        ) from exc
    roles = [wanted[c] for c in wanted]
    if not batches:
        return pa.table({role: pa.array([], pa.float64() if role == "count" else pa.binary()) for role in roles})
    table = pa.Table.from_batches(batches)
    del batches
    pa.default_memory_pool().release_unused()  # hand the parser's freed buffers back to the system
    return table


def _compact_batch(batch: pa.RecordBatch, wanted: dict[str, str], max_length: int) -> pa.RecordBatch:
    """One parsed batch made small: junctions longer than ``max_length`` replaced by a stand-in that is dropped
    for the same reason (too long, or invalid characters), counts parsed to numbers, other text columns cut to
    a few hundred characters and dictionary-encoded. Nothing the report counts changes."""
    arrays, roles = [], []
    for column, role in wanted.items():
        values = batch.column(column)
        if role == "sequence":
            values = _shorten_long_rows(_trim_spaced_rows(values), max_length)
        elif role == "count":
            values = _parse_counts(values)
        else:
            offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)
            if len(values) and np.diff(offsets).max() > _MAX_FIELD_CHARS:
                values = pc.utf8_slice_codeunits(values, 0, _MAX_FIELD_CHARS)
            values = pc.dictionary_encode(values)
        arrays.append(values)
        roles.append(role)
    return pa.RecordBatch.from_arrays(arrays, names=roles)


def _parse_counts(values: pa.Array) -> pa.Array:
    """Count text -> float64 (blank or non-numeric -> null); ``1e400`` becomes inf and is dropped later."""
    try:
        return pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = pd.to_numeric(pd.Series(values.to_pylist(), dtype=object).str.strip(), errors="coerce")
        return pa.array(numbers.to_numpy(dtype=np.float64), pa.float64(), from_pandas=True)


def _shorten_long_rows(column: pa.Array, max_length: int) -> pa.Array:
    """Replace every junction longer than ``max_length`` by ``*`` (when it holds a character outside the
    alphabet) or by ``max_length + 1`` letters (otherwise): both are dropped for the reason the original would
    be, and a file of huge fields can no longer fill the memory."""
    offsets, flat = _offsets_and_bytes(column)
    too_long = np.diff(offsets) > max_length
    if not too_long.any():
        return column
    invalid = _rows_where(flat, offsets, lambda block: _LUT[block] == _INVALID)[too_long]
    stand_ins = pa.array(np.where(invalid, b"*", b"A" * (max_length + 1)).tolist(), pa.binary())
    return pc.replace_with_mask(column, pa.array(too_long), stand_ins)


def _rows_where(flat: np.ndarray, offsets: np.ndarray, test: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per-row "any" of ``test`` over a flat per-residue array, evaluated in chunks (no full-size temporary)."""
    result = np.zeros(len(offsets) - 1, dtype=bool)
    chunk = 1 << 24
    for start in range(0, len(flat), chunk):
        positions = np.flatnonzero(test(flat[start : start + chunk])) + start
        if len(positions):
            result[np.searchsorted(offsets, positions, side="right") - 1] = True
    return result


def _offsets_and_bytes(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets ``(N + 1,)`` starting at 0 and the concatenated bytes of a binary arrow array."""
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n + 1, offset=column.offset * 4).astype(np.int64)
    data = column.buffers()[2]
    flat = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    offsets -= offsets[0]
    return offsets, flat


def _trim_spaced_rows(column: pa.Array) -> pa.Array:
    """Trim stray spaces/tabs around junctions (rare), leaving every other row untouched."""
    _, flat = _offsets_and_bytes(column)
    if not np.isin(flat, (9, 32)).any():
        return column
    # a view, not a cast: the bytes need not be valid UTF-8 (such rows are dropped as invalid later)
    return pc.ascii_trim_whitespace(column.view(pa.string())).view(pa.binary())


def padded_codes(
    flat_codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, lut: np.ndarray | None = None
) -> np.ndarray:
    """``(N, W)`` residue codes, PAD beyond each end, gathered length by length (no padding is read). With
    ``lut``, ``flat_codes`` are raw bytes, translated while gathered (no full-size translated copy)."""
    width = int(lengths.max()) if len(lengths) else 1
    codes = np.full((len(lengths), width), PAD, dtype=np.uint8)
    short = lengths.astype(np.int16)
    order = np.argsort(short, kind="stable")  # radix sort of small integers
    sorted_lengths = short[order]
    del short
    bounds = np.searchsorted(sorted_lengths, np.arange(width + 2))
    chunk = max(1, (1 << 21) // width)  # rows gathered at once: the index matrix stays ~16 MB
    for length in range(1, width + 1):
        for first in range(bounds[length], bounds[length + 1], chunk):
            rows = order[first : min(first + chunk, bounds[length + 1])]
            gathered = flat_codes[starts[rows, None] + np.arange(length)]
            codes[rows, :length] = gathered if lut is None else lut[gathered]
    return codes


def _categories(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Distinct values of a low-cardinality string column and each row's index into them (nulls -> '')."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    encoded = column.unify_dictionaries().combine_chunks()
    values = [str(v) for v in encoded.dictionary.to_pylist()] + [""]
    return values, pc.fill_null(encoded.indices, len(values) - 1).to_numpy(zero_copy_only=False)


_CHUNK_ROWS = 1 << 18  # rows processed at once where a step would otherwise copy the whole (N, W) matrix


def _merge_duplicates(
    codes: np.ndarray, v_code: np.ndarray, j_code: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Group identical (sequence, V, J) rows: indices of each group's first row and the summed counts,
    or None when every row is distinct. Rows are hashed as integers (fast, in chunks of rows), and every
    group is then checked residue by residue, so a hash collision can never merge different sequences."""
    n, width = codes.shape
    key = np.empty(n, dtype=np.uint64)
    for s in range(0, n, _CHUNK_ROWS):
        block = codes[s : s + _CHUNK_ROWS]
        words = np.zeros((len(block), -(-width // 8) * 8), dtype=np.uint8)
        words[:, :width] = block
        words = words.view(np.uint64)  # (n, W/8): each row's residues as a few 64-bit words
        part = v_code[s : s + _CHUNK_ROWS].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        part ^= j_code[s : s + _CHUNK_ROWS].astype(np.uint64)
        for i in range(words.shape[1]):  # multiply-xorshift mixing, wrapping mod 2^64
            part = (part ^ words[:, i]) * np.uint64(0xBF58476D1CE4E5B9)
            part ^= part >> np.uint64(31)
        key[s : s + _CHUNK_ROWS] = part
    ordered = np.sort(key)
    if not (ordered[1:] == ordered[:-1]).any():  # distinct hashes: every row is distinct
        return None
    group, uniques = pd.factorize(key)  # ids in order of first appearance
    if len(uniques) == n:
        return None
    order = np.argsort(group, kind="stable")
    first = order[np.searchsorted(group[order], np.arange(len(uniques)))]
    same = True
    for s in range(0, n, _CHUNK_ROWS):
        lead = first[group[s : s + _CHUNK_ROWS]]  # each row's group leader
        same = same and bool(
            (codes[s : s + _CHUNK_ROWS] == codes[lead]).all()
            and (v_code[s : s + _CHUNK_ROWS] == v_code[lead]).all()
            and (j_code[s : s + _CHUNK_ROWS] == j_code[lead]).all()
        )
    if not same:  # a 64-bit collision: group exactly instead
        exact = pd.DataFrame({"s": [r.tobytes() for r in codes], "v": v_code, "j": j_code})
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
    max_bytes: int | None = None,
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
    max_rows, max_bytes
        Refuse files with more data rows, or more bytes once decompressed, than this; checked while the file
        streams, so a small gzip that inflates to gigabytes is stopped early. Defaults: :func:`file_limits`
        (10 million rows, 1 GiB).

    Returns
    -------
    Repertoire
        Distinct sequences with their summed counts, genes and a :class:`ReadReport`.

    Raises
    ------
    DeepRCError
        Empty, unreadable or unrecognised files, or files in which no sequence survives cleaning.
    """
    default_bytes, default_rows = file_limits()
    max_rows = default_rows if max_rows is None else max_rows
    src = _open_source(source, name, default_bytes if max_bytes is None else max_bytes)
    display = src.name
    header = _first_line(src)
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
        repeated = sorted({c for c in wanted if columns.count(c) > 1})
        if repeated:
            report.notes.append(
                f"The header names the column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} more than once; "
                "the first (leftmost) of each was used."
            )
        if fmt.sequence[0] == "cdr3_aa":
            report.notes.append(
                "This AIRR file has no junction_aa column; its cdr3_aa sequences lack the conserved C and "
                "F/W that the model was trained with."
            )
    table = _read_table(src, sep, names, wanted, has_header, max_length, max_rows)
    n = table.num_rows
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
    seq_col = pc.fill_null(table["sequence"], b"").combine_chunks()  # (trimmed batch by batch while read)
    table = table.drop_columns(["sequence"])  # the combined copy is the only one kept
    offsets, flat = _offsets_and_bytes(seq_col)
    lengths = np.diff(offsets)
    invalid = _rows_where(flat, offsets, lambda block: _LUT[block] == _INVALID)
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
        counts = pc.fill_null(table["count"], math.nan).to_numpy()
        counts = counts if counts.flags.writeable else counts.copy()
        missing = np.isnan(counts) & keep
        report.n_counts_missing = int(missing.sum())
        counts[missing] = 1.0
        bad = ~((counts > 0) & (counts <= MAX_CLONE_COUNT)) & keep  # zero, negative, infinite or impossible
        report.n_bad_count = int(bad.sum())
        keep &= ~bad
    else:
        counts = np.ones(n, dtype=np.float64)
        report.counts_defaulted = True
    if not keep.any():
        raise DeepRCError(f"No usable sequence in {display}. {report.summary()}")

    rows = np.flatnonzero(keep)
    report.n_lowercase = int(_rows_where(flat, offsets, lambda block: block >= ord("a"))[rows].sum())
    row_lengths = lengths[rows]
    out_counts = counts[rows]
    del counts, lengths, keep, invalid, empty, bad_chars, too_long  # large per-row arrays no longer needed
    codes = padded_codes(flat, offsets[rows], row_lengths, lut=_LUT)  # bytes -> residue codes while gathering
    del flat, offsets
    names = table.column_names
    v_names, v_code = _normalise_genes(table["v_call"] if "v_call" in names else None, rows)
    j_names, j_code = _normalise_genes(table["j_call"] if "j_call" in names else None, rows)
    table = None

    # Merge duplicate (sequence, V, J) rows by summing their counts.
    merged = _merge_duplicates(codes, v_code, j_code, out_counts)
    if merged is not None:
        first, out_counts = merged
        report.n_duplicates_merged = len(rows) - len(first)
        rows, v_code, j_code, codes, row_lengths = (
            rows[first],
            v_code[first],
            j_code[first],
            codes[first],
            row_lengths[first],
        )
    kept_seqs = seq_col.take(pa.array(rows)).cast(pa.string())
    if report.n_lowercase:
        kept_seqs = pc.utf8_upper(kept_seqs)
    v_call, j_call = v_names[v_code], j_names[j_code]

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


def encode_sequences(
    sequences: list[str] | np.ndarray, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[np.ndarray, np.ndarray]:
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
    codes = _PADDED_LUT[raw.view(np.uint8).reshape(len(raw), -1)]
    nul = upper.str.contains("\0", regex=False).to_numpy()  # a NUL inside a string is not padding
    if nul.any() or (codes == _INVALID).any():
        bad = upper[nul | (codes == _INVALID).any(axis=1)].iloc[0].replace("\0", "\\0")
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


_REPERTOIRE_EXTENSIONS = (".tsv", ".csv", ".txt", ".tsv.gz", ".csv.gz", ".txt.gz", ".tab", ".tab.gz")


def is_repertoire_file_name(name: str) -> bool:
    """Whether a file name is one :func:`find_repertoire_files` picks up (a table, not metadata or truth)."""
    return name.lower().endswith(_REPERTOIRE_EXTENSIONS) and not name.startswith(("metadata", "truth", "."))


def find_repertoire_files(directory: str | os.PathLike) -> list[Path]:
    """Repertoire files directly in ``directory`` or under ``directory/repertoires``, sorted."""
    root = Path(directory)
    folders = [root / "repertoires", root] if (root / "repertoires").is_dir() else [root]
    files = []
    for folder in folders:
        files += [p for p in sorted(folder.iterdir()) if p.is_file() and is_repertoire_file_name(p.name)]
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
    path = check_path(path, "Metadata file")
    if path.stat().st_size == 0:
        raise DeepRCError(f"Metadata file {path.name} is empty.")
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise DeepRCError(
            f"Metadata file {path.name} is larger than {MAX_METADATA_BYTES >> 20} MB; a metadata table holds one short "
            "row per repertoire. Is it a repertoire file?"
        )
    with open(path, "rb") as fh:
        head = fh.readline().decode("utf-8-sig", errors="replace")
    sep = "\t" if "\t" in head else ","
    try:
        meta = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DeepRCError(f"Could not parse metadata file {path.name}: {str(exc).splitlines()[0]}") from exc
    meta.columns = [str(c).strip() for c in meta.columns]
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
    meta, id_label = meta.copy(), id_col
    for added in ("repertoire", "file"):  # the columns added below keep their name; a user's column moves aside
        if added in meta.columns and (added == "repertoire" or repertoire_files is not None):
            moved = f"{added}_id" if f"{added}_id" not in meta.columns else f"{added}_original"
            meta = meta.rename(columns={added: moved})
            id_col = moved if id_col == added else id_col
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
                f"{len(missing)} repertoire(s) listed in {path.name} (column '{id_label}') have no file: {shown}."
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
