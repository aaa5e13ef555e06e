"""What the app's pages used to compute themselves, now library functions both the pages and scripts call:
the model card table and headline (deeprc_core.report), the HTML report, label look-ups and predictions set
against labels (deeprc_core.labels), regex and known-sequence truth tables that agree with the regex motif
mask (deeprc_core.recovery), attention concentration and gene usage (deeprc_core.scoring), kernel tables and
typed motifs (deeprc_core.motifs)."""

from __future__ import annotations

import base64
import re
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from conftest import make_repertoire, planted_repertoires
from sklearn.metrics import roc_auc_score

from deeprc_core.attribution import attribute_sequences
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS
from deeprc_core.labels import binary_auc, first_per_label, label_columns, label_lookup, with_known_labels
from deeprc_core.model import DeepRC, DeepRCConfig, TargetSpec
from deeprc_core.motifs import KernelMotifs, logo_frame, parse_motifs
from deeprc_core.recovery import known_truth, motif_residue_mask, regex_truth, witness_mask
from deeprc_core.report import (
    attention_heads,
    coloured_sequence,
    model_card_table,
    model_summary_line,
    prediction_headline,
    repertoire_report_html,
)
from deeprc_core.scoring import attention_concentration, attention_order, attention_table, gene_usage, score_repertoire

BINARY = TargetSpec("disease", "binary", ["negative", "positive"])
MULTICLASS = TargetSpec("hla", "multiclass", ["A", "B", "C"])


def tiny_model(target: TargetSpec = BINARY) -> DeepRC:
    config = DeepRCConfig(n_kernels=4, kernel_size=3, attention_units=4, max_length=20, targets=[asdict(target)])
    return DeepRC(config).eval()


# ----------------------------------------------------------------------------------------------------------
# Model card and headline


def test_model_card_table_lists_the_facts_in_order_with_chance_levels() -> None:
    model = tiny_model()
    model.info = {
        "data": {"n_repertoires": 80, "n_sequences_total": 240000},
        "card": {
            "name": "Demo",
            "intended_use": "teaching",
            "held_out": {"auc": 0.91, "witness_motif_mass": 0.6, "witness_motif_mass_chance": 0.25, "motif_mass": 0.5},
        },
        "validation_metrics": {"auc": 0.95, "f1": 0.9, "ignored": 1.0},
        "updates": 1200,
        "stop_reason": "early stop",
        "training_seconds": 42,
        "command": "deeprc train ...",
    }
    card = model_card_table(model).set_index("fact")["value"]
    assert list(card.index) == [
        "model",
        "name",
        "predicts",
        "architecture",
        "trained on",
        "intended use",
        "held-out AUC",
        "held-out IG on motif residues, per witness",
        "held-out IG mass on motif residues, pooled",
        "validation AUC",
        "validation f1",
        "training",
        "command",
    ]
    assert card["model"] == "unsaved"
    assert card["predicts"] == "disease: positive vs negative"
    assert card["architecture"] == "CNN, 4 kernels of width 3, 8 attention heads"
    assert card["trained on"] == "80 repertoires, 240,000 sequences"
    assert card["held-out IG on motif residues, per witness"] == "0.600 (chance 0.250)"
    assert card["training"] == "1,200 updates (early stop, 42 s)"
    multiclass = model_card_table(tiny_model(MULTICLASS)).set_index("fact")["value"]
    assert multiclass["predicts"] == "hla (multiclass: A, B, C)"


def test_model_card_says_what_the_seeded_start_found() -> None:
    model = tiny_model()
    model.info = {
        "seeded_patterns": [{"pattern": "G.QH", "t": 12.34, "class": 0}, {"pattern": "YW.D", "t": 9.8, "class": 0}],
        "seeded_genes": ["TRBV27 (1.00)"],
        "seeding_threshold": 5.32,
    }
    card = model_card_table(model).set_index("fact")["value"]
    assert card["seeded start"] == (
        "patterns G.QH (t 12.3), YW.D (t 9.8), each above the t a chance pattern reaches (5.3); "
        "genes (weight) TRBV27 (1.00)"
    )
    model.info = {"seeded_patterns": [], "seeded_genes": [], "seeding_threshold": 6.0}
    assert model_card_table(model).set_index("fact")["value"]["seeded start"] == (
        "no pattern above the t a chance pattern reaches (6.0)"
    )
    model.info = {"seeded_patterns": "junk", "seeded_genes": [3]}  # a hand-edited config.json
    assert "seeded start" not in set(model_card_table(model)["fact"])


def test_heads_are_labelled_with_what_they_read_at_the_seeded_start_and_copies_are_marked() -> None:
    model = tiny_model()
    model.config.n_heads = 4
    model.info = {"seeded_heads": [["G.QH"], ["YW.D", "V genes"], ["G.QH"], ["YW.D", "V genes"]]}
    heads = attention_heads(model)
    assert [h["label"] for h in heads] == ["h1 · G.QH", "h2 · YW.D + V genes", "h3 · G.QH", "h4 · YW.D + V genes"]
    assert [h["column"] for h in heads] == [f"attention_h{i}" for i in range(1, 5)]
    assert [h["same_as"] for h in heads] == [None, None, 1, 2]
    card = model_card_table(model).set_index("fact")["value"]
    assert card["attention heads at the start"] == "G.QH: h1, h3; YW.D + V genes: h2, h4"
    for recorded in (None, [["G.QH"]], "junk", [[], [], [], []]):  # older, hand-edited or unseeded models
        model.info = {"seeded_heads": recorded}
        assert [(h["label"], h["same_as"]) for h in attention_heads(model)] == [(f"h{i}", None) for i in range(1, 5)]
        assert "attention heads at the start" not in set(model_card_table(model)["fact"])


def test_model_card_names_which_receptors_the_validation_figures_read() -> None:
    model = tiny_model()
    model.info = {"validation_metrics": {"auc": 0.9}, "validation_metrics_all_receptors": {"auc": 0.97}}
    card = model_card_table(model).set_index("fact")["value"]
    assert card["validation AUC (new receptors)"] == "0.900"
    assert card["validation AUC (all receptors)"] == "0.970"


def test_model_summary_line_prefers_the_held_out_auc() -> None:
    document = {"config": {"targets": [asdict(BINARY)]}, "info": {"validation_metrics": {"auc": 0.8}}}
    assert model_summary_line(document) == "Predicts **disease** (positive vs negative) · validation AUC 0.80"
    document["info"]["card"] = {"held_out": {"auc": 0.912}}
    assert model_summary_line(document).endswith("· held-out AUC 0.91")
    assert model_summary_line({}) == "Predicts **?**"


def test_the_headline_names_the_class_it_gives_the_probability_of() -> None:
    assert prediction_headline(BINARY, np.float32(0.25)) == ("P(positive)", 0.25)
    label, value = prediction_headline(MULTICLASS, np.array([0.2, 0.7, 0.1]))
    assert (label, round(value, 6)) == ("P(B)", 0.7)  # the most probable class, never "P(positive)"
    assert prediction_headline(TargetSpec("age", "regression"), 41.5) == ("predicted age", 41.5)


# ----------------------------------------------------------------------------------------------------------
# The HTML report


def _report_inputs(target: TargetSpec = BINARY, name: str = "rep<1>"):
    model = tiny_model(target)
    repertoires, _ = planted_repertoires(2, 40)
    repertoire = make_repertoire(name, list(repertoires[1].sequences))
    score = score_repertoire(model, repertoire)
    table = attention_table(model, repertoire, score=score)
    table["row"] = attention_order(score)
    attributed = attribute_sequences(model, repertoire, top=5, n_steps=4)
    return model, repertoire, score, table, attributed


def test_the_html_report_holds_the_prediction_the_top_sequences_and_the_logo() -> None:
    model, repertoire, score, table, attributed = _report_inputs()
    headline = prediction_headline(BINARY, score.prediction)
    png = b"\x89PNG fake logo bytes"
    page = repertoire_report_html(
        repertoire=repertoire,
        model=model,
        headline=headline,
        attention=table,
        attributed=attributed,
        n_steps=4,
        logo_png=png,
        n_top=10,
        stamp="2025-01-01 00:00",
    )
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "DeepRC Explorer report: rep&lt;1&gt;" in page and "<1>" not in page  # the name is escaped
    assert f"P(positive) = {headline[1]:.3f}" in page
    assert base64.b64encode(png).decode() in page
    assert "Kernel motifs" not in page
    text = re.sub(r"<[^>]+>", "", page)
    assert all(sequence in text for sequence in table["sequence"].head(10))  # the top 10 sequences
    # the 5 attributed ones (the top 5 by attention) residue by residue
    assert page.count('<span style="background:') == sum(len(s) for s in table["sequence"].head(5))
    assert "held-out" not in page and "<td>predicts</td><td>disease: positive vs negative</td>" in page


def test_the_html_report_of_a_multiclass_model_names_the_predicted_class() -> None:
    model, repertoire, score, table, attributed = _report_inputs(MULTICLASS, name="rep1")
    headline = prediction_headline(MULTICLASS, score.prediction)
    kernels = [(b"w0", b"a0"), (b"w1", b"a1")]
    page = repertoire_report_html(
        repertoire=repertoire,
        model=model,
        headline=headline,
        attention=table,
        attributed=attributed,
        n_steps=4,
        logo_png=b"png",
        kernel_pngs=kernels,
        kernel_table=pd.DataFrame({"kernel": [0, 1], "importance": [0.123456, 0.01]}),
        name="patient X",
    )
    assert "P(positive)" not in page
    assert f"{headline[0]} = {headline[1]:.3f}" in page and headline[0] in {"P(A)", "P(B)", "P(C)"}
    assert "DeepRC Explorer report: patient X" in page
    assert "The 2 most important first-layer kernels" in page and "<td>0.1235</td>" in page


def test_coloured_sequence_shades_each_residue_by_its_attribution() -> None:
    html = coloured_sequence("CAS", np.array([0.5, -1.0, 0.0]))
    assert html.count("<span style=") == 3
    assert "rgba(192,57,43,0.50)" in html  # supports: red, half the strongest
    assert "rgba(41,98,255,1.00)" in html  # opposes: blue, the strongest
    assert coloured_sequence("CA", np.zeros(2)).count("0.00)") == 2


# ----------------------------------------------------------------------------------------------------------
# Labels


def _metadata() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": ["a.tsv", "b.tsv", "c.tsv", "d.tsv"],
            "disease": ["positive", "negative", "positive", "negative"],
            "age": ["30", "40", "50", "60"],
            "repertoire": ["a", "b", "c", "d"],
            "file": ["/x/a.tsv", "/x/b.tsv", "/x/c.tsv", "/x/d.tsv"],
        }
    )


def test_label_columns_are_the_columns_that_repeat() -> None:
    assert label_columns(_metadata()) == ["disease"]  # IDs, ages unique per repertoire and added columns are no labels


def test_label_lookup_by_repertoire_name() -> None:
    meta = pd.concat([_metadata(), _metadata().assign(disease="other")], ignore_index=True)
    lookup = label_lookup(meta, "disease")
    assert lookup.to_dict() == {"a": "positive", "b": "negative", "c": "positive", "d": "negative"}  # first row wins
    assert label_lookup(meta, "hla").empty


def test_predictions_against_known_labels() -> None:
    predictions = pd.DataFrame(
        {
            "repertoire": ["a", "b", "c", "unknown"],
            "n_sequences": [1, 2, 3, 4],
            "probability": [0.9, 0.6, 0.4, 0.5],
            "prediction": ["positive", "positive", "negative", "positive"],
        }
    )
    table, truth = with_known_labels(predictions, _metadata(), "disease")
    assert list(table.columns[:2]) == ["repertoire", "true disease"]
    assert table["correct"].tolist() == ["✓", "✗", "✗", ""]
    assert truth.isna().tolist() == [False, False, False, True]
    auc = binary_auc(truth, table["probability"], "positive")
    assert auc == pytest.approx(roc_auc_score([1, 0, 1], [0.9, 0.6, 0.4]))
    assert binary_auc(truth.where(truth == "positive"), table["probability"], "positive") is None  # one class
    same, none = with_known_labels(predictions, _metadata(), "hla")
    assert none is None and same is predictions


def test_first_per_label_balances_the_classes() -> None:
    labels = pd.Series({"a": "x", "b": "y", "c": "x", "d": "x", "e": "y"})
    assert first_per_label(["a", "b", "c", "d", "e", "f"], labels, 2) == ["a", "c", "b", "e", "f"]


# ----------------------------------------------------------------------------------------------------------
# Truth tables


def test_a_regex_truth_table_marks_every_match_as_the_regex_mask_does() -> None:
    sequences = ["CASSGWQHGWQHF", "CASSYWADF", "CASSLF", "CAGWQHYWQDF"]
    rep = make_repertoire("r", sequences)
    regex = "GWQH|YW.D"
    truth = regex_truth([rep], regex)
    assert truth.columns.tolist() == ["repertoire", "sequence", "motif", "motif_start", "motif_length"]
    assert truth[truth["sequence"] == "CASSGWQHGWQHF"]["motif_start"].tolist() == [4, 8]  # both matches
    by_table = motif_residue_mask(sequences, 14, truth=truth, repertoire="r")
    by_regex = motif_residue_mask(sequences, 14, regex=regex)
    assert np.array_equal(by_table, by_regex)  # same motif residues, so the same motif mass by either route
    assert by_table[0].sum() == 8 and by_table[3].sum() == 8
    assert np.array_equal(witness_mask(rep, truth=truth), witness_mask(rep, regex=regex))
    with pytest.raises(DeepRCError, match="not a valid regular expression"):
        regex_truth([rep], "GW(QH")


def test_a_known_sequence_truth_table() -> None:
    reps = [make_repertoire("r1", ["CASSLF", "CASSGWQHF"]), make_repertoire("r2", ["CASSLF", "CAWF"])]
    truth = known_truth(reps, [" cassgwqhf ", "CAWF", "", "CASSNOTHEREF"])
    assert truth.values.tolist() == [["r1", "CASSGWQHF"], ["r2", "CAWF"]]
    assert known_truth(reps, ["  "]).empty


# ----------------------------------------------------------------------------------------------------------
# Attention concentration, gene usage


def test_attention_concentration() -> None:
    uniform = np.full(10, 0.1)
    assert attention_concentration(uniform, 2) == pytest.approx({"top_share": 0.2, "half_count": 5})
    peaked = np.array([0.05, 0.6, 0.05, 0.3])  # any order
    assert attention_concentration(peaked, 1) == pytest.approx({"top_share": 0.6, "half_count": 1})
    assert attention_concentration(peaked, 99)["top_share"] == pytest.approx(1.0)
    with pytest.raises(DeepRCError):
        attention_concentration(np.array([]))


def test_gene_usage_among_the_top_sequences() -> None:
    table = pd.DataFrame({"v_call": ["V1", "V1", "V2", "", "V2", "V2", "V3", "V3"]})
    usage = gene_usage(table, "v_call", top=2)
    assert usage.columns.tolist() == ["top 2", "whole repertoire"]
    assert usage.loc["V1"].tolist() == [1.0, 0.25]
    assert usage.loc["unknown", "whole repertoire"] == pytest.approx(0.125)
    assert usage["whole repertoire"].sum() == pytest.approx(1.0)
    assert len(gene_usage(table, "v_call", top=8, n_genes=2)) == 2


# ----------------------------------------------------------------------------------------------------------
# Kernel tables and typed motifs


def test_kernel_tables_for_download() -> None:
    logo = logo_frame(np.ones((3, len(AMINO_ACIDS))))
    motifs = KernelMotifs(
        summary=pd.DataFrame({"kernel": [1, 0]}),
        weight_logos={0: logo, 1: logo},
        activation_logos={1: logo},
        top_kmers={1: pd.DataFrame({"kmer": ["SLG", "SLA"], "activation": [2.0, 1.0]})},
    )
    matrices = motifs.logo_matrices()
    assert len(matrices) == 9 and matrices.groupby("kind").size().to_dict() == {"activation": 3, "weights": 6}
    assert set(AMINO_ACIDS) <= set(matrices.columns)
    kmers = motifs.top_kmer_table()
    assert kmers["kernel"].tolist() == [1, 1] and kmers["kmer"].tolist() == ["SLG", "SLA"]
    empty = KernelMotifs(summary=pd.DataFrame({"kernel": []}), weight_logos={})
    assert empty.logo_matrices().empty and empty.top_kmer_table().empty


def test_typed_motifs_are_parsed_and_bad_words_named() -> None:
    assert parse_motifs("gwqh, YW.D  XZ1 s-lq") == (("GWQH", "YW.D", "S-LQ"), ["XZ1"])
    assert parse_motifs("  ") == ((), [])
