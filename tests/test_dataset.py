"""Tests of the HDF5 dataset cache: building, reuse, rebuild, round trip and sampling without replacement."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_dataset

from deeprc_core.dataset import build_cache, open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import decode_sequences, encode_sequences, read_repertoire


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """A private copy (tests here modify files): 6 repertoires x 40 sequences."""
    return write_dataset(tmp_path / "data", n_repertoires=6, n_sequences=40, seed=3)


def _same_repertoire(a, b) -> None:
    """Equal as multisets of (sequence, count, V, J) rows."""
    rows = lambda r: sorted(zip(r.sequences, np.round(r.counts, 3), r.v_call, r.j_call))  # noqa: E731
    assert rows(a) == rows(b)


def test_cache_is_built_and_round_trips_every_repertoire(small_dataset):
    ds = open_dataset(small_dataset)
    try:
        assert (small_dataset / ".deeprc_cache.h5").is_file()
        assert len(ds) == 6
        assert ds.names == [f"rep_{i:03d}" for i in range(6)]
        assert ds.metadata["disease"].tolist() == ["negative", "positive"] * 3
        for i, name in enumerate(ds.names):
            original = read_repertoire(small_dataset / "repertoires" / f"{name}.tsv")
            cached = ds.repertoire(i)
            assert cached.name == name
            assert ds.n_sequences(i) == len(original) == len(cached)
            # same rows in the same order, genes without alleles
            assert cached.sequences.tolist() == original.sequences.tolist()
            np.testing.assert_allclose(cached.counts, original.counts)
            assert cached.v_call.tolist() == original.v_call.tolist()
            assert cached.j_call.tolist() == original.j_call.tolist()
            assert cached.lengths.tolist() == original.lengths.tolist()
            codes, _ = encode_sequences(cached.sequences)
            np.testing.assert_array_equal(cached.codes, codes)
            assert cached.report.n_kept == original.report.n_kept
        summary = ds.summary()
        assert summary["n_repertoires"] == 6 and summary["n_sequences_total"] == sum(
            ds.n_sequences(i) for i in range(6)
        )
    finally:
        ds.close()


def test_on_disk_and_in_memory_datasets_agree(small_dataset):
    on_disk, in_memory = open_dataset(small_dataset, in_memory=False), open_dataset(small_dataset, in_memory=True)
    try:
        for i in (0, 5):
            _same_repertoire(on_disk.repertoire(i), in_memory.repertoire(i))
            idx = np.array([3, 0, 17])
            assert on_disk.repertoire(i, idx).sequences.tolist() == in_memory.repertoire(i, idx).sequences.tolist()
    finally:
        on_disk.close()
        in_memory.close()


def test_cache_is_reused_when_the_sources_are_unchanged(small_dataset):
    calls = []
    first = build_cache(small_dataset, progress=lambda done, total, name: calls.append((done, total)))
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    stamp = (first.stat().st_ino, first.stat().st_mtime_ns)
    calls.clear()
    again = build_cache(small_dataset, progress=lambda done, total, name: calls.append((done, total)))
    assert again == first
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == stamp
    assert calls == []  # nothing was read again


def test_cache_is_rebuilt_when_a_repertoire_file_changes(small_dataset):
    ds = open_dataset(small_dataset)
    old_fingerprint = ds.fingerprint
    ds.close()
    path = small_dataset / "repertoires" / "rep_002.tsv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:11]) + "\n")  # keep the header + 10 sequences
    ds = open_dataset(small_dataset)
    try:
        assert ds.fingerprint != old_fingerprint
        assert ds.n_sequences(2) == len(read_repertoire(path)) <= 10
        _same_repertoire(ds.repertoire(2), read_repertoire(path))
    finally:
        ds.close()


def test_cache_is_rebuilt_when_only_the_modification_time_changes(small_dataset):
    cache = build_cache(small_dataset)
    stamp = (cache.stat().st_ino, cache.stat().st_mtime_ns)
    path = small_dataset / "repertoires" / "rep_004.tsv"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    build_cache(small_dataset)
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) != stamp  # a new file was written


def test_cache_is_rebuilt_for_another_max_length(small_dataset):
    short = open_dataset(small_dataset, max_length=12)
    try:
        assert short.max_length == 12
        assert all(int(short.repertoire(i).lengths.max()) <= 12 for i in range(len(short)))
        assert short.reports[0]["n_too_long"] > 0
    finally:
        short.close()


def test_metadata_change_is_picked_up(small_dataset):
    open_dataset(small_dataset).close()
    meta = small_dataset / "metadata.tsv"
    meta.write_text(meta.read_text().replace("negative", "healthy"))
    ds = open_dataset(small_dataset)
    try:
        assert set(ds.metadata["disease"]) == {"healthy", "positive"}
    finally:
        ds.close()


def test_sample_draws_distinct_sequences_without_replacement(small_dataset):
    ds = open_dataset(small_dataset)
    try:
        size = ds.n_sequences(1)
        rng = np.random.default_rng(0)
        for n in (1, 10, size - 1):
            sub = ds.sample(1, n, rng)
            assert len(sub) == n
            assert len(set(zip(sub.sequences, sub.v_call, sub.j_call))) == n  # no sequence twice
            full = set(zip(ds.repertoire(1).sequences, ds.repertoire(1).v_call, ds.repertoire(1).j_call))
            assert set(zip(sub.sequences, sub.v_call, sub.j_call)) <= full
        for n in (size, size + 100):
            _same_repertoire(ds.sample(1, n, rng), ds.repertoire(1))
        # seeded: same generator state, same sample; different state, (almost surely) different sample
        a = ds.sample(3, 10, np.random.default_rng(5)).sequences.tolist()
        b = ds.sample(3, 10, np.random.default_rng(5)).sequences.tolist()
        c = ds.sample(3, 10, np.random.default_rng(6)).sequences.tolist()
        assert a == b and a != c
    finally:
        ds.close()


def test_missing_repertoire_file_is_named(small_dataset):
    (small_dataset / "repertoires" / "rep_003.tsv").unlink()
    with pytest.raises(DeepRCError, match="rep_003"):
        open_dataset(small_dataset)


def test_unreadable_repertoire_file_is_named_and_leaves_no_temporary_cache(small_dataset):
    (small_dataset / "repertoires" / "rep_001.tsv").write_text("junction_aa\tduplicate_count\n")
    with pytest.raises(DeepRCError, match="rep_001.tsv"):
        open_dataset(small_dataset)
    assert [p.name for p in small_dataset.iterdir() if p.name.startswith(".deeprc_cache")] == []


def test_missing_folder_and_metadata_are_refused(tmp_path):
    with pytest.raises(DeepRCError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepRCError, match="metadata"):
        open_dataset(tmp_path / "empty")


def test_corrupt_cache_is_rebuilt(small_dataset):
    cache = build_cache(small_dataset)
    cache.write_bytes(b"not an hdf5 file")
    ds = open_dataset(small_dataset)
    try:
        assert len(ds) == 6
    finally:
        ds.close()


def test_ids_ending_in_tsv_map_to_their_own_repertoires(small_dataset):
    """Regression (original DeepRC): metadata IDs with a '.tsv' extension all mapped to repertoire 0."""
    meta_path = small_dataset / "metadata.tsv"
    header, *rows = meta_path.read_text().splitlines()
    assert all(row.split("\t")[0].endswith(".tsv") for row in rows)  # IDs carry the extension
    meta_path.write_text("\n".join([header, *reversed(rows)]) + "\n")  # metadata order != file order
    ds = open_dataset(small_dataset)
    try:
        assert ds.names == [f"rep_{i:03d}" for i in reversed(range(6))]
        assert ds.metadata["disease"].tolist() == ["positive", "negative"] * 3
        firsts = [ds.repertoire(i).sequences[0] for i in range(len(ds))]
        assert len(set(firsts)) == len(ds)
        for i, name in enumerate(ds.names):
            assert firsts[i] == read_repertoire(small_dataset / "repertoires" / f"{name}.tsv").sequences[0]
    finally:
        ds.close()


def test_decode_sequences():
    codes, _ = encode_sequences(["CASSF", "W", "ACDEFGHIKLMNPQRSTVWY"])
    assert decode_sequences(codes).tolist() == ["CASSF", "W", "ACDEFGHIKLMNPQRSTVWY"]
    assert decode_sequences(codes[:0]).tolist() == []
