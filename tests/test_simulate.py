"""Tests of the repertoire simulator: the implanted signal, the file formats and reproducibility."""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deeprc_core import simulate as sim
from deeprc_core.errors import DeepRCError

MOTIFS = ["SLGQ", "RD.G"]
SMALL = sim.SimulationConfig(
    n_repertoires=10,
    n_sequences=300,
    motifs=MOTIFS,
    witness_rate=0.02,
    substitution_prob=0.0,
    positive_fraction=0.5,
    seed=7,
)


def _translate(nt: str) -> str:
    from olga.utils import nt2aa

    return nt2aa(nt)


def _read_table(path: Path) -> pd.DataFrame:
    sep = "," if ".csv" in path.name else "\t"
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _motif_matches(window: str, motif: str) -> bool:
    return len(window) == len(motif) and all(m in sim.GAP_CHARS or m == w for w, m in zip(window, motif, strict=True))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> sim.SimulationResult:
    return sim.simulate_dataset(tmp_path_factory.mktemp("dataset"), SMALL)


def test_metadata_labels_and_witness_counts(dataset: sim.SimulationResult) -> None:
    meta = pd.read_csv(dataset.out_dir / "metadata.tsv", sep="\t")
    assert list(meta.columns) == list(sim.METADATA_COLUMNS)
    assert len(meta) == SMALL.n_repertoires
    assert (meta["disease"] == "positive").sum() == 5  # 50 % of 10
    assert set(meta["disease"]) == {"positive", "negative"}
    assert (meta["n_sequences"] == SMALL.n_sequences).all()
    expected = max(1, round(SMALL.witness_rate * SMALL.n_sequences))  # 6
    assert (meta.loc[meta["disease"] == "positive", "n_witnesses"] == expected).all()
    assert (meta.loc[meta["disease"] == "negative", "n_witnesses"] == 0).all()
    for rep_id in meta["ID"]:
        assert (dataset.out_dir / "repertoires" / rep_id).is_file()
        assert rep_id.endswith(".tsv.gz")


def test_truth_rows_carry_the_motif_and_keep_the_conserved_ends(dataset: sim.SimulationResult) -> None:
    truth = sim.read_truth(dataset.out_dir / "truth.tsv")
    meta = pd.read_csv(dataset.out_dir / "metadata.tsv", sep="\t")
    negatives = set(meta.loc[meta["disease"] == "negative", "ID"])
    assert not set(truth["repertoire"]) & negatives
    positives = meta[meta["disease"] == "positive"]
    assert truth.groupby("repertoire").size().to_dict() == dict(
        zip(positives["ID"], positives["n_witnesses"], strict=True)
    )
    assert set(truth["motif"]) <= set(MOTIFS)
    assert len(set(truth["motif"])) == 2  # both motifs are used across 30 witnesses
    for row in truth.itertuples():
        seq, orig, start, length = row.sequence, row.original_sequence, row.motif_start, row.motif_length
        assert length == len(row.motif)
        assert _motif_matches(seq[start : start + length], row.motif), (seq, row.motif, start)
        assert start >= SMALL.keep_start and start + length <= len(seq) - SMALL.keep_end
        assert seq[:2] == orig[:2] and seq[-2:] == orig[-2:]
        assert seq[0] == "C" and seq[-1] in "FW"
        # Only the motif window changed; gap positions kept the original residue.
        assert seq[:start] == orig[:start] and seq[start + length :] == orig[start + length :]
        for offset, letter in enumerate(row.motif):
            if letter in sim.GAP_CHARS:
                assert seq[start + offset] == orig[start + offset]


def test_repertoire_files_contain_the_witnesses_with_consistent_nucleotides(dataset: sim.SimulationResult) -> None:
    truth = sim.read_truth(dataset.out_dir / "truth.tsv")
    for rep_id, rows in truth.groupby("repertoire"):
        table = _read_table(dataset.out_dir / "repertoires" / rep_id)
        for column in ("sequence_id", "sequence", "rev_comp", "productive", "v_call", "d_call", "j_call"):
            assert column in table.columns
        assert (table["productive"] == "T").all()
        assert table["junction_aa"].is_unique
        by_sequence = table.set_index("junction_aa")
        for row in rows.itertuples():
            assert by_sequence.loc[row.sequence, "v_call"] == row.v_call
            assert by_sequence.loc[row.sequence, "j_call"] == row.j_call
            assert _translate(by_sequence.loc[row.sequence, "junction"]) == row.sequence
        counts = table["duplicate_count"].astype(int)
        assert (counts >= 1).all() and counts.max() > 5 * counts.median()  # heavy-tailed clone sizes


def test_public_clones_are_shared_across_repertoires(dataset: sim.SimulationResult) -> None:
    seen: Counter[str] = Counter()
    for rep_id in dataset.metadata["ID"]:
        seen.update(set(_read_table(dataset.out_dir / "repertoires" / rep_id)["junction_aa"]))
    occurrences = np.array(list(seen.values()))
    assert occurrences.max() >= SMALL.n_repertoires // 2  # some clones are public
    assert (occurrences == 1).any()  # and some private


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    config = replace(SMALL, n_repertoires=4, n_sequences=150)
    sim.simulate_dataset(tmp_path / "a", config)
    sim.simulate_dataset(tmp_path / "b", config)
    sim.simulate_dataset(tmp_path / "c", replace(config, seed=config.seed + 1))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files_a) == 4 + 3
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "truth.tsv").read_bytes() != (tmp_path / "c" / "truth.tsv").read_bytes()
    first = min((tmp_path / "a" / "repertoires").iterdir()).name
    assert (tmp_path / "a" / "repertoires" / first).read_bytes() != (
        tmp_path / "c" / "repertoires" / first
    ).read_bytes()


def test_simulation_json_rebuilds_the_config(dataset: sim.SimulationResult) -> None:
    record = json.loads((dataset.out_dir / "simulation.json").read_text())
    assert record["config"]["motifs"] == MOTIFS
    assert sim.load_simulation_config(dataset.out_dir / "simulation.json") == SMALL


@pytest.mark.parametrize(("rate", "n_sequences", "expected"), [(0.0001, 300, 1), (0.05, 300, 15), (0.0, 300, 0)])
def test_witness_rate_down_to_one_in_ten_thousand(rate: float, n_sequences: int, expected: int) -> None:
    config = replace(SMALL, n_repertoires=2, n_sequences=n_sequences, witness_rate=rate, positive_fraction=1.0)
    repertoires, _ = sim.simulate_repertoires(config)
    assert [len(r.truth) for r in repertoires] == [expected, expected]
    assert all(r.positive for r in repertoires)


@pytest.mark.parametrize(("fraction", "n_positive"), [(0.3, 3), (0.0, 0), (1.0, 10)])
def test_class_balance(fraction: float, n_positive: int) -> None:
    repertoires, _ = sim.simulate_repertoires(replace(SMALL, n_sequences=50, positive_fraction=fraction))
    assert sum(r.positive for r in repertoires) == n_positive
    assert all(len(r.truth) == 0 for r in repertoires if not r.positive)
    assert all(len(r.truth) >= 1 for r in repertoires if r.positive)


def test_one_motif_per_repertoire_gives_each_positive_a_single_motif_and_uses_them_all() -> None:
    config = replace(SMALL, n_repertoires=12, positive_fraction=1.0, one_motif_per_repertoire=True)
    repertoires, _ = sim.simulate_repertoires(config)
    per_repertoire = [set(r.truth["motif"]) for r in repertoires]
    assert all(len(m) == 1 for m in per_repertoire)
    assert set().union(*per_repertoire) == set(MOTIFS)
    mixed, _ = sim.simulate_repertoires(replace(config, one_motif_per_repertoire=False))
    assert any(len(set(r.truth["motif"])) == 2 for r in mixed)


def test_substitution_changes_every_implanted_residue_when_certain() -> None:
    config = replace(SMALL, n_repertoires=2, positive_fraction=1.0, motifs=["SLGQ"], substitution_prob=1.0)
    repertoires, _ = sim.simulate_repertoires(config)
    truth = pd.concat([r.truth for r in repertoires])
    assert len(truth) == 12
    for row in truth.itertuples():
        window = row.sequence[row.motif_start : row.motif_start + 4]
        assert all(w != m for w, m in zip(window, "SLGQ", strict=True)), window


def test_protected_ends_are_configurable() -> None:
    config = replace(SMALL, n_repertoires=2, positive_fraction=1.0, witness_rate=0.1, keep_start=5, keep_end=4)
    repertoires, _ = sim.simulate_repertoires(config)
    for row in pd.concat([r.truth for r in repertoires]).itertuples():
        assert row.motif_start >= 5 and row.motif_start + row.motif_length <= len(row.sequence) - 4
        assert row.sequence[:5] == row.original_sequence[:5]
        assert row.sequence[-4:] == row.original_sequence[-4:]


def test_witnesses_follow_the_associated_v_gene() -> None:
    config = replace(SMALL, n_repertoires=2, positive_fraction=1.0, witness_rate=0.05, v_gene="TRBV20-1")
    repertoires, _ = sim.simulate_repertoires(config)
    truth = pd.concat([r.truth for r in repertoires])
    assert len(truth) == 30
    assert all(v.split("*")[0] == "TRBV20-1" for v in truth["v_call"])


def test_rare_v_gene_is_topped_up_from_the_pool() -> None:
    # TRBV7-7 is rare (~0.6 %): a 300-sequence repertoire holds about 2, so pool sequences are swapped in.
    config = replace(SMALL, n_repertoires=1, positive_fraction=1.0, witness_rate=0.05, v_gene="TRBV7-7")
    repertoires, _ = sim.simulate_repertoires(replace(config, pool_size=5_000))
    rep = repertoires[0]
    assert len(rep.truth) == 15
    assert rep.table["junction_aa"].is_unique and len(rep.table) == 300
    assert all(v.startswith("TRBV7-7*") for v in rep.truth["v_call"])
    with pytest.raises(DeepRCError, match="TRBV7-7"):  # 150 witnesses cannot all use this V gene
        sim.simulate_repertoires(replace(config, witness_rate=0.5, pool_size=5_000))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"witness_rate": 1.5}, "witness_rate"),
        ({"substitution_prob": -0.1}, "substitution_prob"),
        ({"positive_fraction": 2}, "positive_fraction"),
        ({"motifs": ["SLZQ"]}, "'Z'"),
        ({"motifs": ["S L"]}, "' '"),
        ({"motifs": [".-."]}, "only gap"),
        ({"motifs": []}, "at least one motif"),
        ({"motifs": ["SLGQ"], "keep_start": 12, "keep_end": 12}, "longer than 25"),
        ({"chain": "TRZ"}, "Unknown chain"),
        ({"file_format": "fasta"}, "Unknown file format"),
        ({"n_sequences": 0}, "n_sequences"),
        ({"n_repertoires": 2.5}, "whole number"),
        ({"pool_size": 100}, "pool_size"),
        ({"count_exponent": 1.0}, "count_exponent"),
        ({"keep_start": -1}, "cannot be negative"),
    ],
)
def test_bad_config_raises_a_plain_error(changes: dict, words: str) -> None:
    with pytest.raises(DeepRCError, match=re.escape(words)):
        sim.simulate_repertoires(replace(SMALL, **changes))


def test_unknown_v_gene_is_explained() -> None:
    with pytest.raises(DeepRCError, match="V gene 'TRBV99'"):
        sim.simulate_repertoires(replace(SMALL, n_repertoires=1, n_sequences=50, v_gene="TRBV99"))


def test_deeprc_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        sim.validate_config(replace(SMALL, witness_rate=-1.0))


def test_immunoseq_format(tmp_path: Path) -> None:
    config = replace(SMALL, n_repertoires=2, positive_fraction=1.0, file_format="immunoseq", compress=False)
    result = sim.simulate_dataset(tmp_path, config)
    path = tmp_path / "repertoires" / result.metadata["ID"][0]
    assert path.name.endswith(".tsv") and not path.name.endswith(".gz")
    table = _read_table(path)
    assert list(table.columns) == list(sim.IMMUNOSEQ_COLUMNS)
    assert (table["frame_type"] == "In").all()
    assert table["v_gene"].str.fullmatch(r"TCRBV\d{2}-\d{2}").all()
    assert table["j_gene"].str.fullmatch(r"TCRBJ\d{2}-\d{2}").all()
    witnesses = result.truth[result.truth["repertoire"] == path.name]
    assert len(witnesses) == 6 and set(witnesses["sequence"]) <= set(table["amino_acid"])
    assert table["templates"].astype(int).min() >= 1


@pytest.mark.parametrize(
    ("imgt", "immunoseq"),
    [
        ("TRBV5-1*01", "TCRBV05-01"),
        ("TRBV13*01", "TCRBV13-01"),
        ("TRBJ2-7*01", "TCRBJ02-07"),
        ("TRAV14/DV4*02", "TCRAV14-01/DV4"),
        ("IGHV3-30-3*01", "IGHV03-30-03"),
    ],
)
def test_immunoseq_gene_names(imgt: str, immunoseq: str) -> None:
    assert sim.immunoseq_gene_name(imgt) == immunoseq


def test_airr_files_pass_the_airr_validator(tmp_path: Path) -> None:
    airr = pytest.importorskip("airr")
    config = replace(SMALL, n_repertoires=1, positive_fraction=1.0, compress=False)
    result = sim.simulate_dataset(tmp_path, config)
    assert airr.validate_rearrangement(str(tmp_path / "repertoires" / result.metadata["ID"][0]))


def test_gzip_files_are_valid_gzip(dataset: sim.SimulationResult) -> None:
    path = dataset.out_dir / "repertoires" / dataset.metadata["ID"][0]
    assert path.read_bytes()[4:8] == bytes(4)  # no timestamp in the gzip header, so reruns are byte-identical
    with gzip.open(path, "rt") as handle:
        assert handle.readline().rstrip("\n").split("\t") == list(sim.AIRR_COLUMNS)


def test_single_10x_repertoire(tmp_path: Path) -> None:
    config = replace(SMALL, n_sequences=200, count_exponent=3.0)
    truth = sim.write_single_repertoire(tmp_path / "patient_10x.csv", config, positive=True, file_format="10x")
    table = _read_table(tmp_path / "patient_10x.csv")
    assert list(table.columns) == list(sim.TENX_COLUMNS)
    assert set(table["chain"]) == {"TRA", "TRB"}
    assert (table["productive"] == "True").all() and (table["is_cell"] == "True").all()
    trb = table[table["chain"] == "TRB"]
    assert trb["barcode"].is_unique  # one beta chain per cell
    assert trb["cdr3"].nunique() == 200  # every clone is present, expanded clones span several cells
    assert len(trb) > 200
    assert set(truth["repertoire"]) == {"patient_10x.csv"}
    assert len(truth) == 4 and set(truth["sequence"]) <= set(trb["cdr3"])
    assert all(_translate(nt) == aa for nt, aa in zip(table["cdr3_nt"], table["cdr3"], strict=True))


def test_single_negative_repertoire_has_no_witness(tmp_path: Path) -> None:
    truth = sim.write_single_repertoire(tmp_path / "neg.tsv.gz", SMALL, positive=False, file_format="immunoseq")
    assert truth.empty
    assert len(_read_table(tmp_path / "neg.tsv.gz")) == SMALL.n_sequences


@pytest.mark.parametrize("file_format", ["airr", "immunoseq", "10x"])
def test_files_round_trip_through_the_reader(tmp_path: Path, file_format: str) -> None:
    from deeprc_core.io import read_repertoire

    config = replace(SMALL, n_repertoires=2, positive_fraction=1.0, file_format=file_format, count_exponent=3.0)
    result = sim.simulate_dataset(tmp_path, config)
    for rep_id in result.metadata["ID"]:
        repertoire = read_repertoire(tmp_path / "repertoires" / rep_id)
        assert len(repertoire.sequences) == SMALL.n_sequences
        truth = result.truth[result.truth["repertoire"] == rep_id]
        assert set(truth["sequence"]) <= set(repertoire.sequences)
        if file_format != "10x":  # 10x counts are UMIs summed over the cells of a clone
            table = _read_table(tmp_path / "repertoires" / rep_id)
            count_column = "duplicate_count" if file_format == "airr" else "templates"
            assert repertoire.counts.sum() == table[count_column].astype(int).sum()


def test_read_truth_rejects_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.tsv"
    path.write_text("repertoire\tsequence\nrep_0.tsv\tCASSLGQYF\n")
    with pytest.raises(DeepRCError, match="motif_start"):
        sim.read_truth(path)
    header = "\t".join(sim.TRUTH_COLUMNS)
    path.write_text(f"{header}\nr\tCASSF\tV\tJ\tSL\tx\t2\n")
    with pytest.raises(DeepRCError, match="whole numbers"):
        sim.read_truth(path)
    with pytest.raises(DeepRCError, match="does not exist"):
        sim.read_truth(tmp_path / "missing.tsv")


def test_progress_reaches_its_total() -> None:
    calls: list[tuple[int, int]] = []
    sim.simulate_repertoires(replace(SMALL, n_sequences=50), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sim.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["simulate", "--out", str(tmp_path), "--n-repertoires", "4", "--n-sequences", "100", "--motif", "SLGQ",
         "RD.G", "--witness-rate", "0.05", "--format", "immunoseq", "--seed", "3", "--no-compress"]
    )  # fmt: skip
    assert args.func(args) == 0
    meta = pd.read_csv(tmp_path / "metadata.tsv", sep="\t")
    assert meta["ID"].str.endswith(".tsv").all()
    assert sim.load_simulation_config(tmp_path / "simulation.json").motifs == ["SLGQ", "RD.G"]
    bad = parser.parse_args(["simulate", "--out", str(tmp_path / "x"), "--witness-rate", "3"])
    assert bad.func(bad) != 0


def test_only_the_simulator_imports_olga_and_only_lazily() -> None:
    package = Path(sim.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "olga" for name in names):
                assert module.name == "simulate.py", f"{module.name} imports olga (GPLv3)"
                assert id(node) not in top_level, "simulate.py must import olga inside functions"
