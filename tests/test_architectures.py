"""The LSTM embedding (``--embedding lstm``) and multi-layer CNNs (``--n-layers``) end to end: trained through the
command line, then ``predict``, ``attention``, ``attribute`` and ``motifs`` on them, and the app's interpretation
pages on an LSTM model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_dataset
from streamlit.testing.v1 import AppTest

from deeprc_core.checkpoint import load_model
from deeprc_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = {
    "lstm": ["--embedding", "lstm", "--lstm-units", "6"],
    "cnn2": ["--n-layers", "2", "--n-kernels", "4", "--kernel-size", "3"],
}
FAST = ["--max-updates", "4", "--eval-every", "2", "--n-sequences", "50", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset folder, folder of the two models trained on it through the command line)."""
    root = tmp_path_factory.mktemp("architectures")
    data = write_dataset(root / "data", n_repertoires=12, n_sequences=60, seed=3)
    for name, flags in ARCHITECTURES.items():
        argv = ["train", str(data), "--target", "disease", "--positive", "positive", "--out", str(root / name)]
        assert main([*argv, *FAST, "--no-reference", *flags]) == 0
    return data, root


def _first_file(data: Path) -> Path:
    return sorted((data / "repertoires").glob("*.tsv"))[0]


def test_the_architecture_is_saved_and_rebuilt(trained):
    _, root = trained
    lstm = load_model(root / "lstm", "cpu")
    assert lstm.config.embedding == "lstm" and lstm.config.lstm_units == 6 and lstm.config.embedding_size == 6
    cnn = load_model(root / "cnn2", "cpu")
    assert cnn.config.embedding == "cnn" and cnn.config.n_layers == 2 and len(cnn.convs) == 2


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_predict_attention_and_attribute(trained, name, tmp_path, capsys):
    data, root = trained
    model, files = str(root / name), sorted((data / "repertoires").glob("*.tsv"))[:3]
    assert main(["predict", "--model", model, *map(str, files), "--out", str(tmp_path / "p.tsv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert len(predictions) == 3 and predictions["probability"].between(0, 1).all()
    assert set(predictions["prediction"]) <= {"negative", "positive"}

    file = str(files[0])
    assert main(["attention", "--model", model, file, "--out", str(tmp_path / "a.tsv")]) == 0
    attention = pd.read_csv(tmp_path / "a.tsv", sep="\t")
    assert len(attention) == 60 and attention["attention"].sum() == pytest.approx(1.0, abs=1e-4)
    assert attention["rank"].tolist() == list(range(1, 61))

    out = tmp_path / "ig.tsv"
    assert main(["attribute", "--model", model, file, "--top", "5", "--steps", "8", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, sep="\t")
    assert table["rank"].nunique() == 5 and np.isfinite(table["attribution"]).all()
    assert (table["attribution"] != 0).any()
    for sequence, rows in table.groupby("sequence"):  # one row per residue, in order
        assert "".join(rows.sort_values("position")["residue"]) == sequence


def test_kernel_motifs_of_a_two_layer_cnn(trained, tmp_path):
    data, root = trained
    out = tmp_path / "motifs"
    assert main(["motifs", "--model", str(root / "cnn2"), "--data", str(_first_file(data)), "--out", str(out)]) == 0
    importance = pd.read_csv(out / "importance.tsv", sep="\t")
    assert sorted(importance["kernel"]) == [0, 1, 2, 3]  # the first layer's kernels
    assert np.isfinite(importance["importance"]).all() and (importance["importance"] >= 0).all()
    assert importance["attention_share"].isna().all()  # documented: not defined beyond one layer
    for k in range(4):
        logo = pd.read_csv(out / f"kernel_{k:03d}_weights.tsv", sep="\t", index_col=0)
        assert logo.shape[0] == 3 and np.isfinite(logo.to_numpy()).all()


def test_kernel_motifs_of_an_lstm_say_why_not(trained, tmp_path, capsys):
    data, root = trained
    argv = ["motifs", "--model", str(root / "lstm"), "--data", str(_first_file(data)), "--out", str(tmp_path / "m")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in re.split(r"[\r\n]+", err) if line.startswith("error: ")]
    assert len(errors) == 1 and "only for CNN models" in errors[0] and "LSTM" in errors[0], err
    assert "Traceback" not in err


@pytest.fixture()
def lstm_app(trained, monkeypatch) -> AppTest:
    """The app with the LSTM model chosen (the demo model stays listed too)."""
    _, root = trained
    monkeypatch.setenv("DEEPRC_TRAINED_DIR", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.session_state["model_pending"] = str(root / "lstm")
    return at


def test_kernel_motifs_page_explains_an_lstm_model(lstm_app):
    at = lstm_app.switch_page("app_pages/kernel_motifs.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert Path(at.sidebar.selectbox(key="model_choice").value).name == "lstm"
    assert any("only for CNN models" in info.value for info in at.info)


def test_attributions_page_works_on_an_lstm_model(lstm_app):
    at = lstm_app.switch_page("app_pages/attributions.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert Path(at.sidebar.selectbox(key="model_choice").value).name == "lstm"
    logo = [h.value for h in at.subheader if h.value.startswith("Attribution logo: top")]
    assert logo and re.match(r"Attribution logo: top [1-9]\d* sequences of ", logo[0]), [h.value for h in at.subheader]


def test_train_architecture_defaults_come_from_the_config():
    from deeprc_core.cli import build_parser
    from deeprc_core.model import DeepRCConfig

    args = build_parser().parse_args(["train", "data", "--target", "disease", "--out", "model"])
    defaults = DeepRCConfig()
    for name in ("embedding", "kernel_size", "n_kernels", "n_layers", "lstm_units", "n_heads", "max_length"):
        assert getattr(args, name) == getattr(defaults, name), name
