"""A dataset of repertoires, converted once into one HDF5 file and read slice by slice.

Layout of the cache (all sequences of all repertoires concatenated, repertoire ``i`` owning sequences
``rep_offsets[i]:rep_offsets[i+1]`` and residues ``res_offsets[i]:res_offsets[i+1]``):

=============== ============== ===================================================
``residues``    uint8 (R,)     residue codes of every sequence, end to end
``lengths``     uint8 (S,)     junction length of every sequence
``counts``      float32 (S,)   clone counts
``v_index``     int32 (S,)     index into ``v_vocab`` (0 = unknown)
``j_index``     int32 (S,)     index into ``j_vocab``
``rep_offsets`` int64 (n+1,)   sequence offsets per repertoire
``res_offsets`` int64 (n+1,)   residue offsets per repertoire
=============== ============== ===================================================

Attributes hold the metadata table, the per-file read reports and a fingerprint of the sources (names,
sizes, modification times, reader settings): the cache is reused while they are unchanged and rebuilt when
they change. Training reads one repertoire's slice at a time and subsamples it, so memory stays bounded for
datasets larger than RAM; small datasets are held in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from deeprc_core.errors import DeepRCError
from deeprc_core.io import (
    DEFAULT_MAX_LENGTH,
    PAD,
    ReadReport,
    Repertoire,
    check_path,
    decode_sequences,
    find_metadata,
    find_repertoire_files,
    padded_codes,
    read_metadata,
    read_repertoire,
)

CACHE_VERSION = 1
IN_MEMORY_BYTES = 512 << 20  # datasets whose residues fit in this are held in RAM

Progress = Callable[[int, int, str], None]  # (done, total, current repertoire name)


def _fingerprint(files: list[Path], metadata_path: Path, max_length: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{max_length}".encode())
    for f in [metadata_path, *files]:
        st = f.stat()
        digest.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()


class RepertoireDataset:
    """Repertoires of a dataset cache: metadata plus per-repertoire access to sequences."""

    def __init__(self, path: str | os.PathLike, in_memory: bool | None = None) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DeepRCError(f"The dataset cache {self.path.name} is corrupt ({exc}); delete it to rebuild.") from exc
        f = self._file
        self.metadata = pd.read_json(_io_string(f.attrs["metadata"]), orient="table")
        self.reports: list[dict] = json.loads(f.attrs["reports"])
        self.max_length = int(f.attrs["max_length"])
        self.fingerprint = str(f.attrs["fingerprint"])
        self.v_vocab = np.asarray([s.decode() if isinstance(s, bytes) else s for s in f["v_vocab"][()]], dtype=object)
        self.j_vocab = np.asarray([s.decode() if isinstance(s, bytes) else s for s in f["j_vocab"][()]], dtype=object)
        self.rep_offsets = f["rep_offsets"][()]
        self.res_offsets = f["res_offsets"][()]
        if in_memory is None:
            in_memory = f["residues"].shape[0] <= IN_MEMORY_BYTES
        self._arrays = (
            {k: f[k][()] for k in ("residues", "lengths", "counts", "v_index", "j_index")} if in_memory else None
        )

    def __len__(self) -> int:
        return len(self.rep_offsets) - 1

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()

    @property
    def names(self) -> list[str]:
        """Repertoire names in dataset order."""
        return self.metadata["repertoire"].tolist()

    def n_sequences(self, i: int) -> int:
        """Number of sequences in repertoire ``i``."""
        return int(self.rep_offsets[i + 1] - self.rep_offsets[i])

    def _slice(self, key: str, start: int, stop: int) -> np.ndarray:
        source = self._arrays[key] if self._arrays is not None else self._file[key]
        return source[start:stop]

    def repertoire(self, i: int, indices: np.ndarray | None = None) -> Repertoire:
        """Repertoire ``i`` (all sequences, or those at ``indices`` within it)."""
        s0, s1 = int(self.rep_offsets[i]), int(self.rep_offsets[i + 1])
        r0, r1 = int(self.res_offsets[i]), int(self.res_offsets[i + 1])
        lengths = self._slice("lengths", s0, s1).astype(np.int64)
        residues = self._slice("residues", r0, r1)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        if indices is not None:
            lengths, starts = lengths[indices], starts[indices]
        codes = padded_codes(residues, starts, lengths)
        pick = slice(None) if indices is None else indices
        counts = self._slice("counts", s0, s1)[pick].astype(np.float64)
        v = self.v_vocab[self._slice("v_index", s0, s1)[pick]]
        j = self.j_vocab[self._slice("j_index", s0, s1)[pick]]
        report = self.reports[i] if i < len(self.reports) else {}
        return Repertoire(
            name=self.names[i],
            sequences=decode_sequences(codes),
            codes=codes,
            lengths=lengths.astype(np.int16),
            counts=counts,
            v_call=v,
            j_call=j,
            report=ReadReport(**report) if report else ReadReport(source=self.names[i]),
        )

    def encoded(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Repertoire ``i`` as arrays only, for training (no sequence strings are decoded): residue codes
        ``(N, W)`` padded with ``PAD``, lengths ``(N,)``, counts ``(N,)`` and indices into ``v_vocab`` /
        ``j_vocab`` ``(N,)``."""
        s0, s1 = int(self.rep_offsets[i]), int(self.rep_offsets[i + 1])
        r0, r1 = int(self.res_offsets[i]), int(self.res_offsets[i + 1])
        lengths = self._slice("lengths", s0, s1).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        codes = padded_codes(self._slice("residues", r0, r1), starts, lengths)
        counts = self._slice("counts", s0, s1).astype(np.float32)
        return codes, lengths, counts, self._slice("v_index", s0, s1), self._slice("j_index", s0, s1)

    def genes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Repertoire ``i``'s per-sequence indices into ``v_vocab`` and ``j_vocab`` (0 = no call)."""
        s0, s1 = int(self.rep_offsets[i]), int(self.rep_offsets[i + 1])
        return self._slice("v_index", s0, s1).astype(np.int64), self._slice("j_index", s0, s1).astype(np.int64)

    def sample(self, i: int, n: int, rng: np.random.Generator) -> Repertoire:
        """``n`` sequences of repertoire ``i`` drawn without replacement (all of them when it has fewer)."""
        size = self.n_sequences(i)
        if n >= size:
            return self.repertoire(i)
        return self.repertoire(i, np.sort(rng.choice(size, size=n, replace=False)))

    def summary(self) -> dict:
        """Facts about the dataset for a model card."""
        sizes = np.diff(self.rep_offsets)
        return {
            "n_repertoires": len(self),
            "n_sequences_total": int(sizes.sum()),
            "sequences_per_repertoire_median": float(np.median(sizes)) if len(sizes) else 0.0,
            "max_length": self.max_length,
        }


def _vocab_index(calls: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    """Gene names -> indices in a growing vocabulary (one dict lookup per distinct gene, not per row)."""
    codes, uniques = pd.factorize(calls)
    table = np.asarray([vocab.setdefault(g, len(vocab)) for g in uniques], dtype=np.int32)
    return table[codes]


@contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Delete ``path`` when the block fails or is interrupted (Ctrl-C), so no half-written file is left."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _io_string(value) -> object:
    from io import StringIO

    return StringIO(value if isinstance(value, str) else value.decode())


def build_cache(
    dataset_dir: str | os.PathLike,
    cache_path: str | os.PathLike | None = None,
    *,
    metadata_path: str | os.PathLike | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> Path:
    """Convert a dataset folder (metadata + repertoire files) into one HDF5 cache, unless an up-to-date one
    exists. Returns the cache path (default ``DATASET_DIR/.deeprc_cache.h5``).

    Raises
    ------
    DeepRCError
        Missing metadata, IDs without files (named), unreadable repertoire files (named).
    """
    root = check_path(dataset_dir, "Dataset folder", want="folder")
    metadata_path = Path(metadata_path) if metadata_path else find_metadata(root)
    files = find_repertoire_files(root)
    meta = read_metadata(metadata_path, files)
    used = [Path(f) for f in meta["file"]]
    fingerprint = _fingerprint(used, metadata_path, max_length)
    cache_path = Path(cache_path) if cache_path else root / ".deeprc_cache.h5"
    if cache_path.exists() and not rebuild:
        try:
            with h5py.File(cache_path, "r") as f:
                if f.attrs.get("fingerprint") == fingerprint:
                    return cache_path
        except OSError:
            pass  # unreadable cache: rebuild it
    tmp = cache_path.with_name(cache_path.name + ".tmp")
    v_vocab, j_vocab = {"": 0}, {"": 0}
    reports = []
    with _removed_on_failure(tmp), h5py.File(tmp, "w") as f:
        grow = {}
        for key, dtype in (
            ("residues", np.uint8),
            ("lengths", np.uint8),
            ("counts", np.float32),
            ("v_index", np.int32),
            ("j_index", np.int32),
        ):
            grow[key] = f.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1 << 16,))
        rep_offsets, res_offsets = [0], [0]
        for n, file in enumerate(used):
            if progress:
                progress(n, len(used), file.name)
            try:
                rep = read_repertoire(file, max_length=max_length)
            except DeepRCError as exc:
                tmp.unlink(missing_ok=True)
                raise DeepRCError(f"Repertoire {file.name} could not be read: {exc}") from exc
            reports.append(rep.report.to_dict())
            residues = rep.codes[rep.codes != PAD]  # row-major: sequences end to end
            columns = {
                "residues": residues,
                "lengths": rep.lengths.astype(np.uint8),
                "counts": rep.counts.astype(np.float32),
                "v_index": _vocab_index(rep.v_call, v_vocab),
                "j_index": _vocab_index(rep.j_call, j_vocab),
            }
            for key, values in columns.items():
                ds = grow[key]
                ds.resize((ds.shape[0] + len(values),))
                ds[-len(values) :] = values
            rep_offsets.append(rep_offsets[-1] + len(rep))
            res_offsets.append(res_offsets[-1] + len(residues))
        f.create_dataset("rep_offsets", data=np.asarray(rep_offsets, dtype=np.int64))
        f.create_dataset("res_offsets", data=np.asarray(res_offsets, dtype=np.int64))
        f.create_dataset("v_vocab", data=np.asarray(list(v_vocab), dtype=h5py.string_dtype()))
        f.create_dataset("j_vocab", data=np.asarray(list(j_vocab), dtype=h5py.string_dtype()))
        f.attrs["metadata"] = meta.drop(columns=["file"]).to_json(orient="table", index=False)
        f.attrs["reports"] = json.dumps(reports)
        f.attrs["max_length"] = max_length
        f.attrs["fingerprint"] = fingerprint
        f.attrs["cache_version"] = CACHE_VERSION
    os.replace(tmp, cache_path)
    if progress:
        progress(len(used), len(used), "")
    return cache_path


def open_dataset(
    dataset_dir: str | os.PathLike,
    *,
    cache_path: str | os.PathLike | None = None,
    metadata_path: str | os.PathLike | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: Progress | None = None,
    rebuild: bool = False,
    in_memory: bool | None = None,
) -> RepertoireDataset:
    """Build (or reuse) the HDF5 cache of a dataset folder and open it. See :func:`build_cache`."""
    path = build_cache(
        dataset_dir, cache_path, metadata_path=metadata_path, max_length=max_length, progress=progress, rebuild=rebuild
    )
    return RepertoireDataset(path, in_memory=in_memory)
