"""Real-receptor implanting for the benchmark: reading MIRA files, disjoint donor splits, implants."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from deeprc_core import epitopes
from deeprc_core.epitopes import implant_receptors, junction_nucleotides, read_mira_receptors, split_by_donor
from deeprc_core.errors import DeepRCError
from deeprc_core.simulate import _CODON


def _mira_csv(path, n_donors: int = 6, per_donor: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    rows = []
    for d in range(n_donors):
        for _ in range(per_donor):
            middle = "".join(rng.choice(letters, 9))
            rows.append(
                {"subject": 100 + d, "v_b_gene": "TRBV27*01", "j_b_gene": "TRBJ2-7*01", "cdr3_b_aa": f"CASS{middle}F"}
            )
    rows.append({"subject": 100, "v_b_gene": "TRBV27*01", "j_b_gene": "TRBJ2-7*01", "cdr3_b_aa": "CASSLGQF"})  # public:
    rows.append(
        {"subject": 101, "v_b_gene": "TRBV27*01", "j_b_gene": "TRBJ2-7*01", "cdr3_b_aa": "CASSLGQF"}
    )  # 2 donors
    rows.append({"subject": 102, "v_b_gene": "TRBV27*01", "j_b_gene": "TRBJ2-7*01", "cdr3_b_aa": "ASSLGQ"})  # no C...F
    rows.append({"subject": 102, "v_b_gene": "", "j_b_gene": "TRBJ2-7*01", "cdr3_b_aa": "CASSQQF"})  # no V gene
    frame = pd.DataFrame(rows).assign(epitope="HTTDPSFLGRY", cohort="COVID-19-Convalescent")
    frame.to_csv(path, index=False)
    return path


def test_read_keeps_clean_trb_receptors(tmp_path):
    receptors = read_mira_receptors(_mira_csv(tmp_path / "mira.csv"))
    assert list(receptors.columns) == ["subject", "junction_aa", "v_call", "j_call", "epitope"]
    assert len(receptors) == 6 * 20 + 2  # the malformed junction and the row without V gene are dropped
    assert receptors["junction_aa"].str.match(r"^C[A-Z]+F$").all() and set(receptors["epitope"]) == {"HTTDPSFLGRY"}


def test_missing_package_says_how_to_get_the_data(monkeypatch):
    monkeypatch.setattr(epitopes, "installed_mira_folder", lambda: None)
    with pytest.raises(DeepRCError, match="pip install --no-deps tcrdist3"):
        read_mira_receptors()


def test_donor_split_is_disjoint_without_shared_junctions_and_seeded(tmp_path):
    receptors = read_mira_receptors(_mira_csv(tmp_path / "mira.csv"))
    train, test = split_by_donor(receptors, test_fraction=0.5, seed=3)
    assert set(train["subject"]).isdisjoint(test["subject"]) and len(train) and len(test)
    assert set(train["junction_aa"]).isdisjoint(test["junction_aa"])  # the public CASSLGQF sits on one side only
    again = split_by_donor(receptors, test_fraction=0.5, seed=3)
    pd.testing.assert_frame_equal(train, again[0])


def test_implant_replaces_rows_with_receptors_and_keeps_clone_sizes(tmp_path):
    receptors = read_mira_receptors(_mira_csv(tmp_path / "mira.csv"))
    background = ["CASR" + "".join(p) + "F" for p in itertools.product("ADEG", repeat=4)][:200]  # distinct
    table = pd.DataFrame(
        {
            "junction": [junction_nucleotides(s) for s in background],
            "junction_aa": background,
            "v_call": "TRBV5-1*01",
            "j_call": "TRBJ1-1*01",
            "duplicate_count": np.arange(200, 0, -1),
        }
    )
    new, truth = implant_receptors(table, receptors, rate=0.05, rng=np.random.default_rng(0), repertoire="rep_0")
    changed = new["junction_aa"] != table["junction_aa"]
    assert changed.sum() == 10 == len(truth)
    assert set(new.loc[changed, "junction_aa"]) == set(truth["sequence"]) <= set(receptors["junction_aa"])
    assert (new.loc[changed, "v_call"] == "TRBV27*01").all()
    assert new["duplicate_count"].tolist() == table["duplicate_count"].tolist()
    translate = {codon: aa for aa, codon in _CODON.items()}
    for nt, aa in zip(new["junction"], new["junction_aa"]):
        assert "".join(translate[nt[i : i + 3]] for i in range(0, len(nt), 3)) == aa
    assert (truth["repertoire"] == "rep_0").all() and (truth["motif_length"] == truth["sequence"].str.len()).all()
    with pytest.raises(DeepRCError, match="distinct receptors"):
        implant_receptors(table, receptors.head(3), rate=0.05, rng=np.random.default_rng(0))
