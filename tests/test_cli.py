"""Tests of the command line: train / predict / attention outputs, exit codes and one-line errors, --help."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_dataset

from deeprc_core.checkpoint import load_model
from deeprc_core.cli import build_parser, main
from deeprc_core.model import DeepRCConfig

FAST = ["--n-kernels", "4", "--kernel-size", "3", "--n-sequences", "50", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> Path:
    """A model trained through the CLI on the shared tiny dataset (30 updates)."""
    out = tmp_path_factory.mktemp("cli") / "model"
    argv = ["train", str(tiny_dataset), "--target", "disease", "--positive", "positive", "--out", str(out)]
    code = main(argv + ["--max-updates", "30", "--eval-every", "15", "--seed", "0", *FAST])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("cli_small"), n_repertoires=12, n_sequences=30, seed=2)


def _lines(text: str) -> list[str]:
    """Lines as a terminal shows them: progress bars rewrite their line with carriage returns."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def _one_error_line(err: str, *words: str) -> str:
    errors = [line for line in _lines(err) if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


# ----------------------------------------------------------------------------------------------------------
# train / predict / attention


def test_train_writes_a_loadable_model(trained, capsys):
    assert (trained / "config.json").is_file() and (trained / "weights.safetensors").is_file()
    assert not list(trained.glob("*.pt")) and not list(trained.glob("*.pkl"))
    doc = json.loads((trained / "config.json").read_text())
    assert doc["config"]["n_kernels"] == 4 and doc["config"]["kernel_size"] == 3
    assert doc["config"]["targets"][0]["classes"] == ["negative", "positive"]
    assert doc["info"]["updates"] == 30 and doc["info"]["training"]["seed"] == 0
    model = load_model(trained, "cpu")
    assert model.config.max_length == 40


def test_train_records_the_command_it_was_given(trained):
    """The model card's command is the argv given to main() (notebooks, the app, tests), not sys.argv."""
    command = json.loads((trained / "config.json").read_text())["info"]["command"]
    assert command.startswith("python -m deeprc_core train ")
    assert "--max-updates 30" in command


def test_train_prints_where_it_saved(small, tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(
            [
                "train",
                str(small),
                "--target",
                "disease",
                "--out",
                str(out),
                "--max-updates",
                "3",
                "--eval-every",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert f"Saved model to {out}" in stdout and "3 updates" in stdout and "auc=" in stdout
    # model selection read the unseen receptors; the all-receptor figures stand beside the references
    assert "validation without the receptors that training repertoires of one class hold: " in stdout
    assert "Validation on all receptors: " in stdout


def test_train_resume_continues(small, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["train", str(small), "--target", "disease", "--eval-every", "2", *FAST]
    assert main([*base, "--out", str(first), "--max-updates", "2"]) == 0
    assert main([*base, "--out", str(second), "--max-updates", "4", "--resume", str(first)]) == 0
    assert "4 updates" in capsys.readouterr().out
    state = json.loads((second / "training_state.json").read_text())
    assert state["update"] == 4 and [h["update"] for h in state["history"]] == [0, 2, 4]


def test_train_cross_validation_writes_a_table(small, tmp_path, capsys):
    out = tmp_path / "cv"
    assert (
        main(["train", str(small), "--target", "disease", "--out", str(out), "--cv", "2", "--max-updates", "2", *FAST])
        == 0
    )
    table = pd.read_csv(out / "cross_validation.tsv", sep="\t")
    assert table["fold"].astype(str).tolist() == ["1", "2", "mean", "sd"]
    assert {"loss", "auc"} <= set(table.columns)
    assert not (out / "weights.safetensors").exists()


def test_predict_writes_one_row_per_file(trained, tiny_dataset, tmp_path, capsys):
    reps = tiny_dataset / "repertoires"
    gz = tmp_path / "donor.x.tsv.gz"
    gz.write_bytes(gzip.compress((reps / "rep_001.tsv").read_bytes()))
    out = tmp_path / "pred.tsv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained),
                str(reps / "rep_000.tsv"),
                str(gz),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    table = pd.read_csv(out, sep="\t")
    assert {"repertoire", "probability", "prediction"} <= set(table.columns)
    assert table.columns[0] == "repertoire"
    assert table["repertoire"].tolist() == ["rep_000", "donor.x"]  # file names without extensions
    assert table["probability"].between(0, 1).all()
    assert table["prediction"].isin(["negative", "positive"]).all()
    assert (table["prediction"] == "positive").tolist() == (table["probability"] >= 0.5).tolist()
    captured = capsys.readouterr()
    assert "Wrote 2 predictions" in captured.out
    assert "rep_000.tsv (airr): kept 300 sequences" in captured.err  # the read report of every file


def test_attention_writes_the_documented_columns(trained, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "att.tsv"
    assert (
        main(
            [
                "attention",
                "--model",
                str(trained),
                str(tiny_dataset / "repertoires" / "rep_003.tsv"),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    columns = ["sequence", "count", "v_call", "j_call", "attention", "attention_logit"]
    n_heads = DeepRCConfig().n_heads
    heads = [c for h in range(1, n_heads + 1) for c in (f"attention_h{h}", f"attention_logit_h{h}")]
    assert list(table.columns) == [*columns, *heads, "rank"]
    assert len(table) == 300
    assert table["rank"].tolist() == list(range(1, 301))
    assert table["attention"].sum() == pytest.approx(1.0, abs=1e-3)
    assert table["attention"].is_monotonic_decreasing
    assert not table["v_call"].str.contains(r"\*").any()
    assert "Wrote attention for 300 sequences" in capsys.readouterr().out


def test_predict_with_a_10x_chain(trained, tmp_path, capsys):
    tenx = tmp_path / "contigs.csv"
    tenx.write_text(
        "barcode,chain,v_gene,j_gene,cdr3,umis,productive\n"
        "A,TRB,TRBV5-1,TRBJ2-7,CASSLGQAYEQYF,3,True\n"
        "A,TRA,TRAV1-2,TRAJ33,CAVRDSNYQLIW,2,True\n"
        "B,TRA,TRAV1-2,TRAJ20,CAVNDYKLSF,2,True\n"
    )
    out = tmp_path / "p.tsv"
    assert (
        main(["predict", "--model", str(trained), str(tenx), "--chain", "TRA", "--out", str(out), "--device", "cpu"])
        == 0
    )
    assert pd.read_csv(out, sep="\t")["n_sequences"].tolist() == [2]
    assert "Kept the TRA chain" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# Errors: exit code 1 and one clear line on stderr


def test_missing_model(tiny_dataset, tmp_path, capsys):
    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "no_model"),
            str(tiny_dataset / "repertoires" / "rep_000.tsv"),
            "--out",
            str(tmp_path / "p.tsv"),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert _lines(captured.err) == [_one_error_line(captured.err, "no_model", "does not exist")]
    assert not (tmp_path / "p.tsv").exists()


def test_not_a_model_folder(tiny_dataset, tmp_path, capsys):
    (tmp_path / "empty_model").mkdir()
    code = main(
        [
            "attention",
            "--model",
            str(tmp_path / "empty_model"),
            str(tiny_dataset / "repertoires" / "rep_000.tsv"),
            "--out",
            str(tmp_path / "a.tsv"),
        ]
    )
    assert code == 1
    _one_error_line(capsys.readouterr().err, "config.json")


def test_tampered_model(trained, tiny_dataset, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    weights = broken / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code = main(
        [
            "predict",
            "--model",
            str(broken),
            str(tiny_dataset / "repertoires" / "rep_000.tsv"),
            "--out",
            str(tmp_path / "p.tsv"),
        ]
    )
    assert code == 1
    _one_error_line(capsys.readouterr().err, "checksum")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("clone\tabundance\nCASSF\t1\n", ["bad.tsv", "clone", "AIRR"]),
        ("", ["bad.tsv", "empty"]),
        ("junction_aa\tduplicate_count\n", ["bad.tsv", "no sequences"]),
        ("junction_aa\tduplicate_count\nCAS*F\t1\n", ["bad.tsv", "No usable sequence"]),
    ],
    ids=["unknown-columns", "empty", "header-only", "nothing-usable"],
)
def test_bad_repertoire_file(trained, tmp_path, capsys, content, words):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content)
    assert main(["predict", "--model", str(trained), str(bad), "--out", str(tmp_path / "p.tsv")]) == 1
    captured = capsys.readouterr()
    assert _lines(captured.err) == [_one_error_line(captured.err, *words)]


def test_missing_repertoire_file(trained, tmp_path, capsys):
    assert (
        main(["attention", "--model", str(trained), str(tmp_path / "gone.tsv"), "--out", str(tmp_path / "a.tsv")]) == 1
    )
    _one_error_line(capsys.readouterr().err, "gone.tsv")


def test_predict_into_a_missing_folder(trained, tiny_dataset, tmp_path, capsys):
    """Either the folder is created or the user gets one clear line, never a traceback."""
    out = tmp_path / "not_yet" / "p.tsv"
    code = main(
        ["predict", "--model", str(trained), str(tiny_dataset / "repertoires" / "rep_000.tsv"), "--out", str(out)]
    )
    if code == 0:
        assert out.is_file()
    else:
        assert code == 1
        _one_error_line(capsys.readouterr().err, "not_yet")


@pytest.mark.parametrize(
    ("target", "extra", "words"),
    [("diagnosis", [], ["diagnosis", "disease"]), ("disease", ["--positive", "sick"], ["sick", "negative, positive"])],
    ids=["missing-column", "unknown-positive"],
)
def test_train_target_errors(small, tmp_path, capsys, target, extra, words):
    code = main(["train", str(small), "--target", target, *extra, "--out", str(tmp_path / "m"), *FAST])
    assert code == 1
    _one_error_line(capsys.readouterr().err, *words)
    assert not (tmp_path / "m").exists()


def test_train_missing_dataset(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--target", "disease", "--out", str(tmp_path / "m")]) == 1
    _one_error_line(capsys.readouterr().err, "nowhere", "does not exist")


def test_train_dataset_with_a_missing_repertoire_file(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", n_repertoires=4, n_sequences=10)
    (root / "repertoires" / "rep_002.tsv").unlink()
    assert main(["train", str(root), "--target", "disease", "--out", str(tmp_path / "m")]) == 1
    _one_error_line(capsys.readouterr().err, "rep_002")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "somewhere"])  # --target and --out are required
    assert info.value.code == 2
    assert "--target" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------------------------
# --help


def _commands() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return list(sub.choices)


def test_the_core_commands_are_registered():
    assert {"train", "predict", "attention"} <= set(_commands())


@pytest.mark.parametrize("command", [None, *_commands()])
def test_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"] if command is None else [command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m deeprc_core")
    if command is not None:
        assert command in out
