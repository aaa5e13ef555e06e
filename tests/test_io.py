"""Tests of the repertoire readers, the cleaning report, sequence encoding and metadata matching."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from deeprc_core.errors import DeepRCError
from deeprc_core.io import (
    AMINO_ACIDS,
    PAD,
    decode_sequences,
    encode_sequences,
    find_repertoire_files,
    read_metadata,
    read_repertoire,
    repertoire_name,
)


def _write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _accounted(rep) -> bool:
    r = rep.report
    return r.n_rows == r.n_kept + r.n_dropped + r.n_duplicates_merged


def _as_dict(rep) -> dict[str, tuple]:
    """sequence -> (count, v_call, j_call)."""
    return {s: (float(c), v, j) for s, c, v, j in zip(rep.sequences, rep.counts, rep.v_call, rep.j_call)}


AIRR = (
    "junction_aa\tduplicate_count\tv_call\tj_call\tproductive\n"
    "CASSLGQAYEQYF\t5\tTRBV5-1*01\tTRBJ2-7*01\tT\n"
    "CASSPDRGEQFF\t2\tTRBV20-1*02,TRBV20-2*01\tTRBJ2-1*01\tT\n"
    "CAWSVGTEAFF\t1\tTRBV30*01\tTRBJ1-1*01\tT\n"
)
AIRR_EXPECTED = {
    "CASSLGQAYEQYF": (5.0, "TRBV5-1", "TRBJ2-7"),
    "CASSPDRGEQFF": (2.0, "TRBV20-1", "TRBJ2-1"),
    "CAWSVGTEAFF": (1.0, "TRBV30", "TRBJ1-1"),
}


# ----------------------------------------------------------------------------------------------------------
# Formats


def test_airr_tsv_reads_sequences_counts_and_genes_without_alleles(tmp_path):
    rep = read_repertoire(_write(tmp_path / "donor1.tsv", AIRR))
    assert rep.report.format == "airr"
    assert rep.name == "donor1"
    assert _as_dict(rep) == AIRR_EXPECTED
    assert not rep.report.counts_defaulted
    assert rep.report.n_dropped == 0 and rep.report.n_kept == 3
    # codes and lengths agree with the strings
    for seq, codes, length in zip(rep.sequences, rep.codes, rep.lengths):
        assert decode_sequences(codes[None, :length])[0] == seq
        assert (codes[length:] == PAD).all()


def test_comma_separated_file_reads_like_the_tab_separated_one(tmp_path):
    tab = read_repertoire(_write(tmp_path / "a.tsv", AIRR))
    comma = read_repertoire(
        _write(
            tmp_path / "a.csv", AIRR.replace("\t", ",").replace("TRBV20-1*02,TRBV20-2*01", '"TRBV20-1*02,TRBV20-2*01"')
        )
    )
    assert comma.report.format == "airr"
    assert _as_dict(comma) == _as_dict(tab) == AIRR_EXPECTED


@pytest.mark.parametrize("file_name", ["rep.tsv.gz", "rep.tsv"])
def test_gzip_is_detected_from_the_content_not_the_name(tmp_path, file_name):
    rep = read_repertoire(_write(tmp_path / file_name, AIRR, gz=True))
    assert rep.report.format == "airr"
    assert _as_dict(rep) == AIRR_EXPECTED
    assert rep.name == "rep"


def test_gzip_upload_as_bytes_and_file_object():
    data = gzip.compress(AIRR.encode())
    rep = read_repertoire(data, name="donor 7")
    assert _as_dict(rep) == AIRR_EXPECTED
    assert rep.name == "donor 7"  # an explicit name is used as it is
    handle = io.BytesIO(data)
    handle.name = "uploads/up.tsv.gz"  # as a web upload carries its file name
    rep = read_repertoire(handle)
    assert _as_dict(rep) == AIRR_EXPECTED
    assert rep.name == "up"
    assert handle.tell() == 0  # the upload can be read again


def test_byte_order_mark_in_the_header_is_ignored(tmp_path):
    rep = read_repertoire(_write(tmp_path / "bom.tsv", "\ufeff" + AIRR))
    assert rep.report.format == "airr"
    assert _as_dict(rep) == AIRR_EXPECTED


def test_windows_line_endings(tmp_path):
    rep = read_repertoire(_write(tmp_path / "crlf.tsv", AIRR.replace("\n", "\r\n")))
    assert _as_dict(rep) == AIRR_EXPECTED


def test_immunoseq_v2_frame_type_filters_out_of_frame_and_stop(tmp_path):
    text = (
        "amino_acid\ttemplates\tv_resolved\tj_resolved\tframe_type\n"
        "CASSLGQAYEQYF\t7\tTCRBV05-01*01\tTCRBJ02-07*01\tIn\n"
        "CASSPDRG\t3\tTCRBV20-01\tTCRBJ02-01\tOut\n"
        "CASSQ\t4\tTCRBV20-01\tTCRBJ02-01\tStop\n"
        "CAWSVGTEAFF\t2\tTCRBV30-01\tTCRBJ01-01\tIn\n"
    )
    rep = read_repertoire(_write(tmp_path / "is.tsv", text))
    assert rep.report.format == "immunoseq"
    assert _as_dict(rep) == {
        "CASSLGQAYEQYF": (7.0, "TCRBV05-01", "TCRBJ02-07"),
        "CAWSVGTEAFF": (2.0, "TCRBV30-01", "TCRBJ01-01"),
    }
    assert rep.report.n_nonproductive == 2
    assert _accounted(rep)


def test_immunoseq_v1_count_templates_reads_and_sequence_status(tmp_path):
    text = (
        "nucleotide\taminoAcid\tcount (templates/reads)\tvGeneName\tjGeneName\tsequenceStatus\n"
        "ACGT\tCASSLGQAYEQYF\t11\tTCRBV05-01\tTCRBJ02-07\tIn\n"
        "ACGT\tCASSPDRG\t3\tTCRBV20-01\tTCRBJ02-01\tOut\n"
        "ACGT\tCASS*QF\t4\tTCRBV20-01\tTCRBJ02-01\tStop\n"
        "ACGT\tCAWSVGTEAFF\t2\tTCRBV30-01\tTCRBJ01-01\tIn\n"
    )
    rep = read_repertoire(_write(tmp_path / "v1.tsv", text))
    assert rep.report.format == "immunoseq_v1"
    assert _as_dict(rep) == {
        "CASSLGQAYEQYF": (11.0, "TCRBV05-01", "TCRBJ02-07"),
        "CAWSVGTEAFF": (2.0, "TCRBV30-01", "TCRBJ01-01"),
    }
    assert rep.report.n_nonproductive == 2
    assert rep.report.n_invalid == 0  # the stop row was already dropped as non-productive, counted once
    assert _accounted(rep)


TENX = (
    "barcode,is_cell,contig_id,chain,v_gene,j_gene,cdr3,reads,umis,productive\n"
    "AAAC-1,True,c1,TRB,TRBV5-1*01,TRBJ2-7*01,CASSLGQAYEQYF,100,6,True\n"
    "AAAC-1,True,c2,TRA,TRAV1-2*01,TRAJ33*01,CAVRDSNYQLIW,80,4,True\n"
    "AAAG-1,True,c3,TRB,TRBV20-1,TRBJ2-1,CASSPDRGEQFF,50,2,False\n"
    "AAAT-1,True,c4,TRA,TRAV12-1,TRAJ20,CVVNDYKLSF,40,3,True\n"
)


def test_10x_keeps_trb_by_default(tmp_path):
    rep = read_repertoire(_write(tmp_path / "filtered_contig_annotations.csv", TENX))
    assert rep.report.format == "10x"
    assert _as_dict(rep) == {"CASSLGQAYEQYF": (6.0, "TRBV5-1", "TRBJ2-7")}  # umis, not reads
    assert rep.report.n_other_chain == 2
    assert rep.report.n_nonproductive == 1
    assert _accounted(rep)
    assert "TRB" in rep.report.summary()


def test_10x_explicit_tra_chain(tmp_path):
    rep = read_repertoire(_write(tmp_path / "c.csv", TENX), chain="tra")
    assert _as_dict(rep) == {
        "CAVRDSNYQLIW": (4.0, "TRAV1-2", "TRAJ33"),
        "CVVNDYKLSF": (3.0, "TRAV12-1", "TRAJ20"),
    }
    assert rep.report.n_other_chain == 2
    assert _accounted(rep)


def test_10x_without_trb_falls_back_to_igh(tmp_path):
    text = (
        "barcode,chain,v_gene,j_gene,cdr3,umis,productive\n"
        "B1,IGH,IGHV3-23*01,IGHJ4*02,CAKDRGYSSGWYFDYW,9,True\n"
        "B1,IGK,IGKV1-39,IGKJ1,CQQSYSTPWTF,7,True\n"
    )
    rep = read_repertoire(_write(tmp_path / "b.csv", text))
    assert _as_dict(rep) == {"CAKDRGYSSGWYFDYW": (9.0, "IGHV3-23", "IGHJ4")}
    assert rep.report.n_other_chain == 1


def test_10x_without_the_requested_chain_names_the_chains_present(tmp_path):
    path = _write(tmp_path / "c.csv", TENX)
    with pytest.raises(DeepRCError, match="IGK") as info:
        read_repertoire(path, chain="IGK")
    assert "TRA" in str(info.value) and "TRB" in str(info.value)
    only_tra = "barcode,chain,v_gene,j_gene,cdr3,umis,productive\nA,TRA,TRAV1-2,TRAJ33,CAVRDSNYQLIW,4,True\n"
    with pytest.raises(DeepRCError, match="TRA"):
        read_repertoire(_write(tmp_path / "tra_only.csv", only_tra))  # no TRB, no IGH


@pytest.mark.parametrize(
    "header",
    ["complex.id\tGene\tCDR3\tV\tJ\tSpecies", "cdr3\tv.segm\tj.segm\tgene\tspecies"],
    ids=["CDR3-V-J", "cdr3-v.segm-j.segm"],
)
def test_vdjdb_exports(tmp_path, header):
    cols = header.split("\t")
    rows = [
        {"CDR3": "CASSLGQAYEQYF", "V": "TRBV5-1*01", "J": "TRBJ2-7*01"},
        {"CDR3": "CASSPDRGEQFF", "V": "TRBV20-1*01", "J": "TRBJ2-1*01"},
        {"CDR3": "CASSLGQAYEQYF", "V": "TRBV5-1*01", "J": "TRBJ2-7*01"},  # same clonotype, two epitopes
    ]
    alias = {"cdr3": "CDR3", "v.segm": "V", "j.segm": "J"}
    lines = [header] + ["\t".join(r.get(alias.get(c, c), "x") for c in cols) for r in rows]
    rep = read_repertoire(_write(tmp_path / "vdjdb.tsv", "\n".join(lines) + "\n"))
    assert rep.report.format == "vdjdb"
    assert _as_dict(rep) == {
        "CASSLGQAYEQYF": (2.0, "TRBV5-1", "TRBJ2-7"),
        "CASSPDRGEQFF": (1.0, "TRBV20-1", "TRBJ2-1"),
    }
    assert rep.report.counts_defaulted
    assert rep.report.n_duplicates_merged == 1
    assert _accounted(rep)


@pytest.mark.parametrize("header", ["", "junction\n", "sequence\n"], ids=["no-header", "junction", "sequence"])
def test_plain_list_with_and_without_header(tmp_path, header):
    rep = read_repertoire(_write(tmp_path / "list.txt", header + "CASSLGQAYEQYF\nCASSPDRGEQFF\nCASSLGQAYEQYF\n"))
    assert rep.report.format == "list"
    assert _as_dict(rep) == {"CASSLGQAYEQYF": (2.0, "", ""), "CASSPDRGEQFF": (1.0, "", "")}
    assert rep.report.n_rows == 3  # the header is not a row, and without one the first line is data
    assert rep.report.counts_defaulted


def test_airr_cdr3_aa_only_is_read_with_a_note(tmp_path):
    text = "cdr3_aa\tv_call\tj_call\tduplicate_count\nASSLGQAYEQY\tTRBV5-1*01\tTRBJ2-7*01\t3\n"
    rep = read_repertoire(_write(tmp_path / "cdr3.tsv", text))
    assert rep.report.format == "airr"
    assert _as_dict(rep) == {"ASSLGQAYEQY": (3.0, "TRBV5-1", "TRBJ2-7")}
    assert any("cdr3_aa" in note for note in rep.report.notes)
    assert "cdr3_aa" in rep.report.summary()


def test_missing_gene_values_become_empty(tmp_path):
    text = "junction_aa\tduplicate_count\tv_call\tj_call\nCASSF\t1\tunresolved\t\nCASSG\t1\tNA\tTRBJ1-1*01\n"
    rep = read_repertoire(_write(tmp_path / "g.tsv", text))
    assert _as_dict(rep) == {"CASSF": (1.0, "", ""), "CASSG": (1.0, "", "TRBJ1-1")}


# ----------------------------------------------------------------------------------------------------------
# Bad input: refused with a clear message, or cleaned and every row accounted for


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(DeepRCError, match="empty"):
        read_repertoire(_write(tmp_path / "empty.tsv", ""))
    with pytest.raises(DeepRCError, match="empty"):
        read_repertoire(b"", name="upload.tsv")


@pytest.mark.parametrize(
    "text", ["junction_aa\tduplicate_count\n", "junction_aa\tduplicate_count", "amino_acid,templates\n"]
)
def test_header_only_is_refused(tmp_path, text):
    with pytest.raises(DeepRCError, match="header but no sequences"):
        read_repertoire(_write(tmp_path / "h.tsv", text))


def test_unknown_columns_are_named_with_the_expected_formats(tmp_path):
    with pytest.raises(DeepRCError) as info:
        read_repertoire(_write(tmp_path / "odd.tsv", "clone\tabundance\tgene\nCASSF\t3\tTRBV5-1\n"))
    message = str(info.value)
    for word in ("odd.tsv", "clone", "abundance", "gene", "AIRR", "junction_aa", "immunoSEQ", "10x", "VDJdb"):
        assert word in message


@pytest.mark.parametrize("bad", ["CASS*GQF", "CASS_GQF", "CASSXGQF", "CASS1GQF", "CASSÄGQF", "CASS GQF", "CASS-GQF"])
def test_non_amino_acid_letters_are_dropped_and_counted(tmp_path, bad):
    text = f"junction_aa\tduplicate_count\nCASSLGQF\t2\n{bad}\t3\nCAWSF\t1\n"
    rep = read_repertoire(_write(tmp_path / "bad.tsv", text))
    assert rep.report.n_invalid == 1
    assert sorted(rep.sequences) == ["CASSLGQF", "CAWSF"]
    assert _accounted(rep)
    assert "1 with characters outside the 20 amino acids" in rep.report.summary()


def test_lowercase_is_uppercased_and_merged_with_its_uppercase_twin(tmp_path):
    text = "junction_aa\tduplicate_count\tv_call\tj_call\ncasslgqf\t2\tTRBV5-1\tTRBJ2-7\nCASSLGQF\t3\tTRBV5-1*01\tTRBJ2-7\ncawsf\t1\t\t\n"
    rep = read_repertoire(_write(tmp_path / "low.tsv", text))
    assert _as_dict(rep) == {"CASSLGQF": (5.0, "TRBV5-1", "TRBJ2-7"), "CAWSF": (1.0, "", "")}
    assert rep.report.n_lowercase == 2
    assert rep.report.n_duplicates_merged == 1
    assert _accounted(rep)
    assert (rep.codes[rep.codes != PAD] < 20).all()


def test_duplicates_with_different_genes_are_kept_apart(tmp_path):
    text = "junction_aa\tduplicate_count\tv_call\tj_call\nCASSF\t2\tTRBV5-1\tTRBJ2-7\nCASSF\t3\tTRBV6-1\tTRBJ2-7\nCASSF\t4\tTRBV5-1*02\tTRBJ2-7\n"
    rep = read_repertoire(_write(tmp_path / "d.tsv", text))
    got = sorted(zip(rep.sequences, rep.v_call, rep.counts))
    assert got == [("CASSF", "TRBV5-1", 6.0), ("CASSF", "TRBV6-1", 3.0)]
    assert rep.report.n_duplicates_merged == 1


def test_too_long_sequences_are_dropped_at_the_limit(tmp_path):
    text = "junction_aa\tduplicate_count\n" + "C" + "A" * 8 + "F\t1\n" + "C" + "A" * 9 + "F\t1\n"  # 10 and 11
    rep = read_repertoire(_write(tmp_path / "long.tsv", text), max_length=10)
    assert list(rep.sequences) == ["C" + "A" * 8 + "F"]
    assert rep.report.n_too_long == 1
    assert "longer than 10 residues" in rep.report.summary()


def test_nonproductive_rows_are_dropped(tmp_path):
    text = "junction_aa\tduplicate_count\tproductive\nCASSF\t1\tT\nCASSG\t1\tF\nCASSH\t1\tFALSE\nCASSI\t1\ttrue\n"
    rep = read_repertoire(_write(tmp_path / "np.tsv", text))
    assert sorted(rep.sequences) == ["CASSF", "CASSI"]
    assert rep.report.n_nonproductive == 2


def test_zero_and_negative_counts_are_dropped(tmp_path):
    text = "junction_aa\tduplicate_count\nCASSF\t0\nCASSG\t-2\nCASSH\t4\n"
    rep = read_repertoire(_write(tmp_path / "z.tsv", text))
    assert _as_dict(rep) == {"CASSH": (4.0, "", "")}
    assert rep.report.n_bad_count == 2
    assert "2 with a zero or negative count" in rep.report.summary()


def test_blank_and_non_numeric_counts_are_set_to_one(tmp_path):
    text = "junction_aa\tduplicate_count\nCASSF\t\nCASSG\tmany\nCASSH\t4\nCASSI\tNA\n"
    rep = read_repertoire(_write(tmp_path / "blank.tsv", text))
    assert _as_dict(rep) == {
        "CASSF": (1.0, "", ""),
        "CASSG": (1.0, "", ""),
        "CASSH": (4.0, "", ""),
        "CASSI": (1.0, "", ""),
    }
    assert rep.report.n_counts_missing == 3
    assert not rep.report.counts_defaulted
    assert "3 blank or non-numeric counts were set to 1" in rep.report.summary()


def test_fractional_counts_are_kept_and_summed(tmp_path):
    rep = read_repertoire(_write(tmp_path / "f.csv", "junction_aa,duplicate_count\nCASSF,1.5\nCASSF,2\n"))
    assert _as_dict(rep) == {"CASSF": (3.5, "", "")}


def test_no_count_column_sets_counts_defaulted(tmp_path):
    rep = read_repertoire(_write(tmp_path / "nc.tsv", "junction_aa\tv_call\nCASSF\tTRBV5-1\nCASSG\tTRBV5-1\n"))
    assert rep.report.counts_defaulted
    assert (rep.counts == 1).all()
    assert "no count column" in rep.report.summary()


def test_nothing_usable_left_is_refused_with_the_reasons(tmp_path):
    text = "junction_aa\tduplicate_count\tproductive\nCAS*F\t1\tT\nCASSG\t1\tF\nCASSH\t0\tT\n"
    with pytest.raises(DeepRCError, match="No usable sequence") as info:
        read_repertoire(_write(tmp_path / "none.tsv", text))
    message = str(info.value)
    assert "non-productive" in message and "outside the 20 amino acids" in message and "zero or negative" in message


@pytest.mark.parametrize("payload", [b"\x1f\x8b garbage that is not deflate", gzip.compress(AIRR.encode())[:12]])
def test_broken_gzip_is_refused(tmp_path, payload):
    path = tmp_path / "broken.tsv.gz"
    path.write_bytes(payload)
    with pytest.raises(DeepRCError, match="broken.tsv.gz"):
        read_repertoire(path)


def test_not_utf8_is_refused():
    with pytest.raises(DeepRCError, match="UTF-8"):
        read_repertoire(AIRR.encode("utf-16"), name="wide.tsv")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DeepRCError, match="nope.tsv"):
        read_repertoire(tmp_path / "nope.tsv")


def test_max_rows(tmp_path):
    path = _write(tmp_path / "rows.tsv", AIRR)
    assert len(read_repertoire(path, max_rows=3)) == 3
    with pytest.raises(DeepRCError, match="more than the 2 allowed"):
        read_repertoire(path, max_rows=2)


MESSY = (
    "junction_aa\tduplicate_count\tv_call\tj_call\tproductive\n"
    "CASSLGQF\t3\tTRBV5-1*01\tTRBJ2-7*01\tT\n"
    "casslgqf\t2\tTRBV5-1*02\tTRBJ2-7*01\tT\n"  # lowercase duplicate (allele differs): merged
    "CAS*F\t1\t\t\tT\n"  # invalid
    "CASSX\t1\t\t\tT\n"  # invalid
    "CASSIF\t1\t\t\tF\n"  # non-productive
    "\t1\t\t\tT\n"  # empty
    "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAF\t1\t\t\tT\n"  # too long
    "CASSGF\t0\t\t\tT\n"  # zero count
    "CASSHF\t\t\t\tT\n"  # blank count
    "CASSKF\tx\t\t\tT\n"  # non-numeric count
)


def test_every_row_is_accounted_for_and_every_reason_is_in_the_summary(tmp_path):
    rep = read_repertoire(_write(tmp_path / "messy.tsv", MESSY))
    r = rep.report
    assert (r.n_rows, r.n_invalid, r.n_nonproductive, r.n_empty, r.n_too_long, r.n_bad_count) == (10, 2, 1, 1, 1, 1)
    assert (r.n_duplicates_merged, r.n_lowercase, r.n_counts_missing, r.n_kept) == (1, 1, 2, 3)
    assert _accounted(rep)
    text = r.summary()
    for phrase in (
        "kept 3 sequences from 10 rows",
        "1 non-productive",
        "1 empty",
        "2 with characters outside the 20 amino acids",
        "1 longer than 40 residues",
        "1 with a zero or negative count",
        "merged 1 duplicate rows",
        "uppercased 1 lowercase",
        "2 blank or non-numeric counts were set to 1",
    ):
        assert phrase in text, phrase
    table = r.reasons().set_index("reason")["rows"]
    assert table["rows in file"] == 10 and table["distinct sequences kept"] == 3
    assert r.to_dict()["n_invalid"] == 2


def test_10x_summary_mentions_the_other_chain(tmp_path):
    rep = read_repertoire(_write(tmp_path / "c.csv", TENX))
    assert "2 of another chain" in rep.report.summary()


@pytest.mark.parametrize(
    "text",
    [AIRR, MESSY, TENX, "CASSF\nCASSF\ncassf\nCAS*F\n", "junction_aa\tduplicate_count\nCASSF\t1\nCASSF\t2\nCASSG\t0\n"],
    ids=["airr", "messy", "10x", "list", "dups"],
)
def test_nothing_is_silent(tmp_path, text):
    rep = read_repertoire(_write(tmp_path / "f.csv" if text is TENX else tmp_path / "f.tsv", text))
    assert _accounted(rep)
    assert rep.report.n_kept == len(rep) == len(set(zip(rep.sequences, rep.v_call, rep.j_call)))


# ----------------------------------------------------------------------------------------------------------
# Encoding


def test_encode_sequences_round_trips_and_pads():
    seqs = ["CASSLGQAYEQYF", "c", "ACDEFGHIKLMNPQRSTVWY"]
    codes, lengths = encode_sequences(seqs)
    assert codes.shape == (3, 20) and codes.dtype == np.uint8
    assert lengths.tolist() == [13, 1, 20]
    assert [decode_sequences(c[None, :n])[0] for c, n in zip(codes, lengths)] == [s.upper() for s in seqs]
    assert codes[2].tolist() == list(range(20))
    assert (codes[1, 1:] == PAD).all()
    assert encode_sequences([])[0].shape[0] == 0


@pytest.mark.parametrize("bad", ["CAS*F", "CASXF", "", "C" * 41, "CASÄF", "CAS1F"])
def test_encode_sequences_refuses_bad_sequences(bad):
    with pytest.raises(DeepRCError):
        encode_sequences(["CASSF", bad])


def test_alphabet():
    assert len(AMINO_ACIDS) == 20 and len(set(AMINO_ACIDS)) == 20 and PAD == 20


# ----------------------------------------------------------------------------------------------------------
# Metadata and repertoire files


@pytest.mark.parametrize(
    ("path", "name"),
    [("a/rep1.tsv.gz", "rep1"), ("rep1.TSV", "rep1"), ("rep.1.csv", "rep.1"), ("x/rep1", "rep1"), ("r.txt.gz", "r")],
)
def test_repertoire_name(path, name):
    assert repertoire_name(path) == name


def _files(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        # each file holds a sequence of its own so a mix-up is visible
        text = f"junction_aa\tduplicate_count\nCASS{'G' * (i + 1)}F\t{i + 1}\n"
        out.append(_write(folder / name, text, gz=name.endswith(".gz")))
    return out


@pytest.mark.parametrize(
    "ids",
    [["rep_a", "rep_b", "rep_c"], ["rep_a.tsv", "rep_b.tsv.gz", "rep_c.tsv"], ["rep_a.tsv", "rep_b", "rep_c.tsv"]],
)
def test_metadata_ids_with_or_without_extensions_match_their_files(tmp_path, ids):
    files = _files(tmp_path / "repertoires", ["rep_a.tsv", "rep_b.tsv.gz", "rep_c.tsv"])
    meta_path = _write(tmp_path / "metadata.tsv", "ID\tdisease\n" + "".join(f"{i}\tx\n" for i in ids))
    meta = read_metadata(meta_path, find_repertoire_files(tmp_path))
    assert meta["repertoire"].tolist() == ["rep_a", "rep_b", "rep_c"]
    assert [Path(f) for f in meta["file"]] == files
    assert meta.attrs["id_column"] == "ID"


def test_ids_ending_in_tsv_map_to_their_own_files(tmp_path):
    """Regression: the original DeepRC mapped every ID ending in '.tsv' to repertoire 0."""
    names = [f"sample_{i}.tsv" for i in range(6)]
    _files(tmp_path / "repertoires", names)
    meta_path = _write(
        tmp_path / "metadata.tsv", "ID\tdisease\n" + "".join(f"{n}\t{i % 2}\n" for i, n in enumerate(reversed(names)))
    )
    meta = read_metadata(meta_path, find_repertoire_files(tmp_path))
    assert [Path(f).name for f in meta["file"]] == list(reversed(names))
    seen = [read_repertoire(f).sequences[0] for f in meta["file"]]
    assert seen == [f"CASS{'G' * (i + 1)}F" for i in reversed(range(6))]
    assert len(set(seen)) == 6


def test_an_id_naming_a_file_exactly_prefers_that_file(tmp_path):
    """An ID that is a complete file name matches that file, not a sibling with the same stem."""
    _files(tmp_path, ["rep1.tsv", "rep1.tsv.gz"])
    meta_path = _write(tmp_path / "metadata.tsv", "ID\tdisease\nrep1.tsv.gz\tx\n")
    meta = read_metadata(meta_path, find_repertoire_files(tmp_path))
    assert Path(meta["file"].iloc[0]).name == "rep1.tsv.gz"


def test_ids_without_files_are_named(tmp_path):
    _files(tmp_path / "repertoires", ["rep_a.tsv"])
    meta_path = _write(tmp_path / "metadata.tsv", "ID\tdisease\nrep_a.tsv\tx\nrep_zz.tsv\ty\nrep_yy\ty\n")
    with pytest.raises(DeepRCError) as info:
        read_metadata(meta_path, find_repertoire_files(tmp_path))
    message = str(info.value)
    assert "2 repertoire(s)" in message and "rep_zz.tsv" in message and "rep_yy" in message
    assert "rep_a" not in message.replace("metadata", "")


@pytest.mark.parametrize("ids", [["rep_a", "rep_a"], ["rep_a", "rep_a.tsv"], ["rep_a.tsv.gz", "rep_a.tsv"]])
def test_duplicate_ids_are_refused(tmp_path, ids):
    _files(tmp_path / "repertoires", ["rep_a.tsv"])
    meta_path = _write(tmp_path / "metadata.tsv", "ID\tdisease\n" + "".join(f"{i}\tx\n" for i in ids))
    with pytest.raises(DeepRCError, match="more than once"):
        read_metadata(meta_path, find_repertoire_files(tmp_path))


def test_metadata_comma_bom_and_named_id_column(tmp_path):
    _files(tmp_path, ["s1.tsv", "s2.tsv"])
    meta_path = _write(tmp_path / "metadata.csv", "\ufeffdisease,filename\npos,s2.tsv\nneg,s1\n")
    meta = read_metadata(meta_path, find_repertoire_files(tmp_path))
    assert meta.attrs["id_column"] == "filename"
    assert meta["repertoire"].tolist() == ["s2", "s1"]
    assert meta["disease"].tolist() == ["pos", "neg"]


@pytest.mark.parametrize(("text", "match"), [("", "empty"), ("ID\tdisease\n", "no rows")])
def test_bad_metadata_is_refused(tmp_path, text, match):
    with pytest.raises(DeepRCError, match=match):
        read_metadata(_write(tmp_path / "metadata.tsv", text))
    with pytest.raises(DeepRCError, match="does not exist"):
        read_metadata(tmp_path / "missing.tsv")


def test_find_repertoire_files_skips_metadata_truth_hidden_and_other_files(tmp_path):
    rep_dir = tmp_path / "repertoires"
    _files(rep_dir, ["b.tsv", "a.csv.gz", "c.txt"])
    for name in ("metadata.tsv", "truth.tsv", "notes.md", "model.json"):
        (tmp_path / name).write_text("x")
    (rep_dir / ".deeprc_cache.h5").write_text("x")
    (rep_dir / ".hidden.tsv").write_text("x")
    (rep_dir / "sub").mkdir()
    assert [p.name for p in find_repertoire_files(tmp_path)] == ["a.csv.gz", "b.tsv", "c.txt"]
