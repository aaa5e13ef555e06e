"""App tests: every page runs on the sample data with no upload and shows what it should; classifying,
uploading (good and bad files), searching a motif and training a tiny model work end to end.

Pages are driven with ``streamlit.testing.v1.AppTest`` through the router: ``app.py`` opens on the Home page,
``switch_page`` goes to the others. The tests use the shipped model under ``models/``. Models trained by the
Train page go to a temporary folder (``DEEPRC_TRAINED_DIR``).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from deeprc_core.config import TrainingConfig
from deeprc_core.errors import DeepRCError

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SINGLE = ROOT / "sample_data" / "single"
TIMEOUT = 60
HEAVY_TIMEOUT = 180

PAGES = {
    "app.py": "DeepRC Explorer",
    "app_pages/classify.py": "Classify repertoires",
    "app_pages/attention.py": "Attention over every sequence",
    "app_pages/attributions.py": "Residue attributions",
    "app_pages/kernel_motifs.py": "Kernel motifs",
    "app_pages/train.py": "Train a model",
    "app_pages/validate.py": "Validate against known witnesses",
    "app_pages/report.py": "Report",
}


@pytest.fixture(scope="module", autouse=True)
def app_environment(tmp_path_factory: pytest.TempPathFactory):
    """The shipped demo model (``models/``) and a private folder for models trained by the tests."""
    saved = {k: os.environ.get(k) for k in ("DEEPRC_MODELS_DIR", "DEEPRC_TRAINED_DIR")}
    os.environ["DEEPRC_TRAINED_DIR"] = str(tmp_path_factory.mktemp("trained_models"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def open_app(page: str | None = None, timeout: float = TIMEOUT) -> AppTest:
    """Run the Home page (as a user arriving does), then switch to ``page``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    """No exception and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r} among {[m.label for m in at.metric]}")


def test_every_page_file_is_tested() -> None:
    files = {f"app_pages/{f.name}" for f in (ROOT / "app_pages").glob("*.py")}
    assert {"app_pages/home.py" if p == "app.py" else p for p in PAGES} == files  # app.py opens on the Home page


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_on_the_sample_data(page: str) -> None:
    at = open_app(None if page == "app.py" else page, timeout=HEAVY_TIMEOUT)
    assert_clean(at)
    assert [t.value for t in at.title] == [PAGES[page]]
    model_choice = at.sidebar.selectbox(key="model_choice")
    assert model_choice.value and Path(model_choice.value).is_dir()
    if page == "app.py":
        card = at.dataframe[0].value
        assert {"predicts", "architecture"} <= set(card["fact"])
        assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)
    elif page == "app_pages/attention.py":
        assert metric(at, "Sequences") == "5,000"
        table = at.dataframe[0].value
        assert len(table) == 5000 and table["rank"].is_monotonic_increasing
        assert np.all(np.diff(table["attention"].to_numpy()) <= 1e-12)
        assert float(metric(at, "Attention held by the top 10").rstrip("%")) > 0
    elif page == "app_pages/attributions.py":
        assert len(at.image) >= 2  # attribution logo and enrichment logo
    elif page == "app_pages/kernel_motifs.py":
        assert len(at.image) >= 1
        summary = at.dataframe[0].value
        assert {"kernel", "importance", "top_kmer"} <= set(summary.columns)
        assert summary["importance"].is_monotonic_decreasing
    elif page == "app_pages/train.py":
        assert any("500 repertoires" in i.value for i in at.info)
        assert at.button(key="train_start")
        defaults = TrainingConfig()  # the widgets start at the config's defaults (None shown as 0 = all)
        assert at.number_input(key="train_max_updates").value == defaults.max_updates
        assert at.number_input(key="train_lr").value == defaults.learning_rate
        assert at.number_input(key="train_n_sequences").value == (defaults.n_sequences or 0)
    elif page == "app_pages/validate.py":
        assert metric(at, "Repertoires with witnesses") == "2"  # patients A and C carry implanted motifs
        assert 0.0 <= float(metric(at, "Attention AUPRC")) <= 1.0
    elif page == "app_pages/report.py":
        assert at.get("download_button")
        assert 0.0 <= float(metric(at, "P(positive)")) <= 1.0


def test_classify_sample_patients_and_dataset() -> None:
    at = open_app("app_pages/classify.py")
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["repertoire"]) == ["patient_A_airr", "patient_B_immunoseq", "patient_C_10x"]
    assert table["probability"].between(0, 1).all()
    assert set(table["true disease"]) == {"positive", "negative"}
    at.segmented_control(key="classify_source").set_value("dataset").run(timeout=HEAVY_TIMEOUT)
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) == 80 and table["repertoire"].is_unique
    assert table["probability"].between(0, 1).all()
    assert table["prediction"].isin(["positive", "negative"]).all()
    assert metric(at, "Repertoires") == "80"
    assert 0.0 <= float(metric(at, "AUC")) <= 1.0  # labels known: ROC curve and confusion matrix drawn
    assert len(at.get("plotly_chart")) == 2


def test_upload_is_classified_and_shown_on_attention() -> None:
    at = open_app("app_pages/classify.py")
    at.segmented_control(key="classify_source").set_value("upload").run()
    assert any("Upload one or more" in i.value for i in at.info)
    data = (SINGLE / "patient_A_airr.tsv").read_bytes()
    at.file_uploader(key="classify_files").set_value(("patient_A_airr.tsv", data, "text/tab-separated-values")).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["repertoire"]) == ["patient_A_airr"] and 0 <= table["probability"].iloc[0] <= 1
    assert any("kept 5,000 sequences" in c.value for c in at.caption)  # the read report
    at.switch_page("app_pages/attention.py").run()
    assert_clean(at)
    assert at.selectbox(key="attention_repertoire").value.startswith("upload:")
    assert metric(at, "Sequences") == "5,000"


def test_sessions_do_not_see_each_others_uploads() -> None:
    alice, bob = open_app("app_pages/attention.py"), open_app("app_pages/attention.py")
    data = (SINGLE / "patient_A_airr.tsv").read_bytes()
    alice.file_uploader(key="attention_upload").set_value(("alice_private.tsv", data, "text/plain")).run()
    assert_clean(alice)
    assert "alice_private (uploaded)" in alice.selectbox(key="attention_repertoire").options
    bob.run()
    assert not any("uploaded" in option for option in bob.selectbox(key="attention_repertoire").options)
    assert alice.session_state["session_folder"].path != bob.session_state["session_folder"].path


@pytest.mark.parametrize(
    "content",
    [b"a,b,c\n1,2,3\n4,5,6\n", b"junction_aa\tduplicate_count\n1234\t1\n!!!!\t2\n", b""],
    ids=["unknown-columns", "no-amino-acids", "empty"],
)
def test_bad_upload_shows_an_error(content: bytes) -> None:
    at = open_app("app_pages/classify.py")
    at.segmented_control(key="classify_source").set_value("upload").run()
    at.file_uploader(key="classify_files").set_value(("bad.tsv", content, "text/plain")).run()
    assert not at.exception
    assert at.error and "bad.tsv" in at.error[0].value
    assert not at.dataframe  # nothing classified


def test_a_tiny_upload_works_on_every_page() -> None:
    at = open_app("app_pages/classify.py")
    at.segmented_control(key="classify_source").set_value("upload").run()
    at.file_uploader(key="classify_files").set_value(
        ("tiny.txt", b"CASSLGQF\nCASSGWQHEQYF\nCAWSF\n", "text/plain")
    ).run()
    assert_clean(at)
    assert at.dataframe[0].value["n_sequences"].tolist() == [3]
    at.switch_page("app_pages/attention.py").run()
    assert_clean(at)
    assert at.selectbox(key="attention_repertoire").value.startswith("upload:")
    assert metric(at, "Sequences") == "3"
    at.switch_page("app_pages/attributions.py").run()
    assert_clean(at)
    assert len(at.image) >= 1
    at.switch_page("app_pages/report.py").run()
    assert_clean(at)
    assert at.get("download_button")


def test_attention_motif_search_and_invalid_regex() -> None:
    at = open_app("app_pages/attention.py")
    at.text_input(key="attention_motif").set_value("GWQH").run()
    assert_clean(at)
    assert at.success and "contain 'GWQH'" in at.success[0].value
    assert at.dataframe[0].value["motif"].any()
    at.toggle(key="attention_only_matches").set_value(True).run()
    table = at.dataframe[0].value
    assert len(table) >= 1 and table["sequence"].str.contains("GWQH").all()
    at.text_input(key="attention_motif").set_value("GW[QH").run()
    assert not at.exception
    assert at.error and "not a valid regular expression" in at.error[0].value


def test_attention_shows_one_column_per_seeded_head_until_asked_for_the_copies() -> None:
    """The demo model seeded two patterns into eight heads: heads 3-8 started as copies of heads 1-2."""
    at = open_app("app_pages/attention.py")
    heads = [c for c in at.dataframe[0].value.columns if c.startswith("attention_h")]
    assert heads == ["attention_h1", "attention_h2"]
    assert "6 heads" in at.toggle(key="attention_all_heads").label
    at.toggle(key="attention_all_heads").set_value(True).run()
    assert_clean(at)
    assert [c for c in at.dataframe[0].value.columns if c.startswith("attention_h")] == [
        f"attention_h{i}" for i in range(1, 9)
    ]


def test_train_tiny_model_becomes_selectable() -> None:
    at = open_app("app_pages/train.py")
    settings = {
        "train_minutes": 0.5,
        "train_max_updates": 20,
        "train_n_sequences": 50,
        "train_batch_size": 2,
        "train_eval_every": 10,
        "train_eval_cap": 300,
        "train_n_kernels": 8,
    }
    for key, value in settings.items():
        at.number_input(key=key).set_value(value)
    at.button(key="train_start").click().run()
    assert_clean(at)
    deadline = time.time() + 90
    while not _has_button(at, "train_save"):
        assert time.time() < deadline, "training did not finish in 90 s"
        assert_clean(at)
        time.sleep(1.0)
        at.run()
    assert "Finished after" in at.success[0].value
    auc = float(metric(at, "Validation AUC, new receptors"))
    assert np.isnan(auc) or 0.0 <= auc <= 1.0
    at.text_input(key="train_model_name").set_value("tiny_test_model")
    at.button(key="train_save").click().run()
    assert_clean(at)
    choice = at.sidebar.selectbox(key="model_choice")
    assert Path(choice.value).name == "tiny_test_model"
    assert (Path(os.environ["DEEPRC_TRAINED_DIR"]) / "tiny_test_model" / "config.json").is_file()
    at.switch_page("app_pages/classify.py").run()  # the new model stays chosen on another page and classifies
    assert_clean(at)
    assert Path(at.sidebar.selectbox(key="model_choice").value).name == "tiny_test_model"
    assert at.dataframe[0].value["probability"].between(0, 1).all()


def test_train_page_reads_an_uploaded_zip_and_refuses_an_unsafe_one() -> None:
    dataset = ROOT / "sample_data" / "dataset"
    meta = pd.read_csv(dataset / "metadata.tsv", sep="\t")
    meta = pd.concat([meta[meta["disease"] == "positive"].head(3), meta[meta["disease"] == "negative"].head(3)])
    members = {"mydata/metadata.tsv": meta[["ID", "disease"]].to_csv(sep="\t", index=False).encode()}
    for name in meta["ID"]:
        members[f"mydata/repertoires/{name}"] = (dataset / "repertoires" / name).read_bytes()
    at = open_app("app_pages/train.py")
    at.segmented_control(key="train_source").set_value("upload").run()
    assert any("Upload a dataset" in i.value for i in at.info)
    at.file_uploader(key="train_files").set_value(("mydata.zip", _zip(members), "application/zip")).run()
    assert_clean(at)
    assert any("6 repertoires" in m.value for m in at.markdown)
    assert at.selectbox(key="train_target").value == "disease"
    assert at.button(key="train_start")
    unsafe = _zip({"metadata.tsv": b"ID\tdisease\n", "../../escape.tsv": b"junction_aa\nCASSF\n"})
    at.file_uploader(key="train_files").set_value(("evil.zip", unsafe, "application/zip")).run()
    assert not at.exception
    assert at.error and "unsafe path" in at.error[0].value


def test_validate_with_a_motif_regex() -> None:
    at = open_app("app_pages/validate.py")
    at.segmented_control(key="validate_truth").set_value("regex").run()
    assert_clean(at)
    assert at.text_input(key="validate_regex").value == "GWQH|YW.D"
    assert metric(at, "Repertoires with witnesses") in {"2", "3"}  # chance YW.D matches may mark patient B too
    assert 0.0 <= float(metric(at, "Precision@10")) <= 1.0
    at.text_input(key="validate_regex").set_value("GW(QH").run()
    assert not at.exception
    assert at.error and "not a valid regular expression" in at.error[0].value


def test_attributions_compare_two_repertoires() -> None:
    at = open_app("app_pages/attributions.py", timeout=HEAVY_TIMEOUT)
    n_images = len(at.image)
    at.toggle(key="attributions_compare").set_value(True).run()
    assert_clean(at)
    assert len(at.image) == n_images + 2
    positive, negative = at.selectbox(key="attributions_compare_pos"), at.selectbox(key="attributions_compare_neg")
    assert "patient_A" in positive.value or "patient_C" in positive.value  # a known positive sample
    assert "patient_B" in negative.value  # the known negative sample patient


def test_attributions_answer_each_question_and_score_the_motif_carriers() -> None:
    at = open_app("app_pages/attributions.py", timeout=HEAVY_TIMEOUT)
    assert_clean(at)

    def completeness() -> str:
        return next(c.value for c in at.caption if c.value.startswith("Completeness"))

    # Default: why each sequence is attended. Patient A carries implanted witnesses: the carriers' own logo and
    # their per-carrier motif mass are shown.
    assert at.segmented_control(key="attributions_explain").value == "attention"
    assert "median relative convergence delta" in completeness()
    assert len(at.image) >= 3  # logo, enrichment logo, carriers' logo
    assert float(metric(at, "IG on motif residues, per carrier").rstrip("%")) >= 70
    at.segmented_control(key="attributions_explain").set_value("contribution").run()
    assert_clean(at)
    assert at.warning and "swapped in" in at.warning[0].value  # the fixed-context caveat
    at.segmented_control(key="attributions_explain").set_value("repertoire").run()
    assert_clean(at)
    assert "add up to" in completeness() and not at.warning
    at.selectbox(key="attributions_normalise").set_value("sum").run()
    at.text_input(key="attributions_motif").set_value("YW.D").run()
    assert_clean(at)
    assert metric(at, "Carriers attributed").split()[0] != "0"
    at.text_input(key="attributions_motif").set_value("GW(QH").run()
    assert not at.exception and "not a valid regular expression" in at.error[0].value


def test_validate_shows_per_witness_figures_and_kernels_name_their_motifs() -> None:
    at = open_app("app_pages/validate.py", timeout=HEAVY_TIMEOUT)
    assert_clean(at)
    mass = float(metric(at, "IG on motif, per witness").rstrip("%"))
    chance = float(next(m.delta for m in at.metric if m.label == "IG on motif, per witness").split()[1].rstrip("%"))
    assert mass > 2 * chance
    assert 0.5 <= float(metric(at, "Residue AUROC")) <= 1.0
    assert 0.0 <= float(metric(at, "Jaccard top n")) <= 1.0 and 0.0 <= float(metric(at, "Recall@1000")) <= 1.0
    at.segmented_control(key="validate_explain").set_value("repertoire").run()
    assert_clean(at)
    at.switch_page("app_pages/kernel_motifs.py").run()
    assert_clean(at)
    assert any(m.value.startswith("**GWQH**") for m in at.markdown)
    assert {"best_motif", "motif_correlation", "attention_share"} <= set(at.dataframe[0].value.columns)


def _has_button(at: AppTest, key: str) -> bool:
    try:
        at.button(key=key)
    except KeyError:
        return False
    return True


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_extraction_refuses_traversal_and_bombs(tmp_path: Path) -> None:
    from explorer import archive, settings

    with pytest.raises(DeepRCError, match="unsafe path"):
        archive.safe_extract_zip(_zip({"metadata.tsv": b"ID\tdisease\n", "../evil.tsv": b"x"}), tmp_path / "a")
    assert not (tmp_path / "evil.tsv").exists()
    with pytest.raises(DeepRCError, match="unsafe path"):
        archive.safe_extract_zip(_zip({"/etc/evil.tsv": b"x"}), tmp_path / "b")
    with pytest.raises(DeepRCError, match="not a valid zip"):
        archive.safe_extract_zip(b"not a zip", tmp_path / "c")
    big = _zip({"metadata.tsv": b"ID\n", "big.tsv": b"A" * 1000})
    original = settings.MAX_ZIP_BYTES
    settings.MAX_ZIP_BYTES = 500
    try:
        with pytest.raises(DeepRCError, match="unpacks to"):
            archive.safe_extract_zip(big, tmp_path / "d")
    finally:
        settings.MAX_ZIP_BYTES = original
    root = archive.safe_extract_zip(
        _zip({"data/metadata.tsv": b"ID\tdisease\nr1.tsv\tpositive\n", "data/r1.tsv": b"junction_aa\nCASSF\n"}),
        tmp_path / "e",
    )
    assert root == (tmp_path / "e" / "data").resolve()
    assert pd.read_csv(root / "metadata.tsv", sep="\t")["ID"].tolist() == ["r1.tsv"]
