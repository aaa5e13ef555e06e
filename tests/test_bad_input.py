"""Bad input never crashes, never lies, never loses data (issue 11).

Each test takes one case of the 149-case sweep: a silent wrong result must become the right result or a clear
refusal; a traceback must become one ``error:`` line and exit code 1; an existing model or dataset must never
be replaced without ``--overwrite``. Memory bounds are measured by ``benchmarks/bench_input_limits.py``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_junctions, write_dataset

from deeprc_core import checkpoint
from deeprc_core.checkpoint import load_model, load_training_state, read_model_config, save_model
from deeprc_core.cli import main
from deeprc_core.dataset import build_cache, open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import (
    ReadReport,
    Repertoire,
    encode_sequences,
    read_metadata,
    read_repertoire,
)
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.scoring import predict, score_repertoire
from deeprc_core.training import TrainingConfig, infer_target

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"
FAST = ["--n-kernels", "4", "--kernel-size", "3", "--n-sequences", "30", "--batch-size", "2", "--device", "cpu"]


def _write(path: Path, data: str | bytes, gz: bool = False) -> Path:
    raw = data.encode() if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return path


def _error_line(err: str, *words: str) -> str:
    """The single ``error:`` line of a failed command (no traceback), holding every word given."""
    lines = [line for line in re.split(r"[\r\n]+", err) if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _fails(capsys, argv: list[str], *words: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 1, err
    return _error_line(err, *words)


def _tiny_model(**overrides) -> DeepRC:
    torch.manual_seed(0)
    config = DeepRCConfig(**{"n_kernels": 4, "kernel_size": 3, "attention_units": 4, **overrides})
    return DeepRC(config).eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("bad_small"), n_repertoires=8, n_sequences=20, seed=3)


# ----------------------------------------------------------------------------------------------------------
# Silent wrong results


NUL_FILE = (
    b"junction_aa\tduplicate_count\n"
    b"CASS\x00\x00\x00LGQF\t1\n"
    b"CASSLGQAYEQYF\x00\t2\n"
    b"\x00\x00\x00\x00\x00\x00\t3\n"
    b"CASSLGQAYEQYF\t4\n"
)


def test_nul_bytes_inside_a_sequence_are_invalid_not_padding(tmp_path):
    rep = read_repertoire(_write(tmp_path / "nul.tsv", NUL_FILE))
    assert rep.sequences.tolist() == ["CASSLGQAYEQYF"]
    assert rep.counts.tolist() == [4.0]  # the NUL-terminated copy is not merged into it
    assert rep.report.n_invalid == 3 and rep.report.n_duplicates_merged == 0
    with pytest.raises(DeepRCError, match="outside the 20 amino acids"):
        encode_sequences(["CASS\0LGQF"])
    codes, lengths = encode_sequences(["CASSF", "CASSLGQF"])  # numpy's own NUL padding still works
    assert lengths.tolist() == [5, 8]


def test_a_file_of_only_nul_sequences_gets_no_probability(tmp_path):
    path = _write(tmp_path / "zeros.tsv", b"junction_aa\n\x00\x00\x00\x00\n\x00\x00\x00\x00\x00\n")
    with pytest.raises(DeepRCError, match="No usable sequence.*outside the 20 amino acids"):
        read_repertoire(path)


def test_predict_writes_no_nul_and_does_not_score_nul_sequences(tmp_path, capsys):
    path = _write(tmp_path / "nul.tsv", NUL_FILE)
    assert main(["predict", "--model", str(DEMO), str(path), "--out", str(tmp_path / "p.tsv"), "--device", "cpu"]) == 0
    assert b"\x00" not in (tmp_path / "p.tsv").read_bytes()
    assert pd.read_csv(tmp_path / "p.tsv", sep="\t")["n_sequences"].tolist() == [1]
    assert (
        main(["attention", "--model", str(DEMO), str(path), "--out", str(tmp_path / "a.tsv"), "--device", "cpu"]) == 0
    )
    assert b"\x00" not in (tmp_path / "a.tsv").read_bytes()
    assert "3 with characters outside the 20 amino acids" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["1e39", "1e400", "inf", "-inf", "Infinity", "2e12"])
def test_impossible_counts_are_dropped_and_reported(tmp_path, count):
    text = f"junction_aa\tduplicate_count\nCASSLGQF\t{count}\nCASSPDRF\t3\n"
    rep = read_repertoire(_write(tmp_path / "c.tsv", text))
    assert rep.sequences.tolist() == ["CASSPDRF"]
    assert rep.report.n_bad_count == 1
    assert "infinite or impossibly large" in rep.report.summary()


def test_huge_duplicate_counts_cannot_overflow_to_nan(tmp_path):
    """Duplicates whose counts sum beyond float32 used to give probability NaN, written as 'negative'."""
    rows = "".join(f"CASSLGQF\t{c}\n" for c in ["9e11"] * 5 + ["3e38", "3e38"]) + "CASSPDRF\t2\n"
    rep = read_repertoire(_write(tmp_path / "dup.tsv", "junction_aa\tduplicate_count\n" + rows))
    assert rep.report.n_bad_count == 2 and rep.report.n_duplicates_merged == 4
    assert np.isfinite(rep.counts.astype(np.float32)).all()
    model = _tiny_model(use_counts=True)
    p = predict(model, [rep])["probability"].iloc[0]
    assert 0.0 <= p <= 1.0


def test_a_nan_output_is_refused_not_written_as_negative():
    model = _tiny_model(use_counts=True)
    seqs = random_junctions(np.random.default_rng(0), 5)
    codes, lengths = encode_sequences(seqs)
    blank = np.full(5, "", dtype=object)
    rep = Repertoire("r", np.asarray(seqs, object), codes, lengths, np.full(5, 1e39), blank, blank, ReadReport("r"))
    with pytest.raises(DeepRCError, match="not a number"):
        score_repertoire(model, rep)


def test_a_repeated_column_name_is_noted(tmp_path):
    text = "junction_aa\tduplicate_count\tjunction_aa\nCASSLGQF\t5\tXXXX\n"
    rep = read_repertoire(_write(tmp_path / "dup_cols.tsv", text))
    assert rep.sequences.tolist() == ["CASSLGQF"]
    assert any("junction_aa more than once" in note and "first" in note for note in rep.report.notes)
    assert "first (leftmost)" in rep.report.summary()


# ----------------------------------------------------------------------------------------------------------
# Labels and training settings


META = pd.DataFrame({"repertoire": [f"r{i}" for i in range(6)], "file": [""] * 6})


@pytest.mark.parametrize("positive", [None, "positive"])
def test_a_single_class_is_refused(positive):
    meta = META.assign(disease=["positive"] * 6)
    with pytest.raises(DeepRCError, match="only one value.*at least two classes"):
        infer_target(meta, "disease", positive)


@pytest.mark.parametrize("missing", ["NaN", "nan", "NA", "", "None"])
def test_missing_labels_are_refused_not_counted_as_negative(missing):
    meta = META.assign(disease=["positive", "negative", missing, "positive", "negative", "negative"])
    with pytest.raises(DeepRCError, match=r"empty for some repertoires \(blank, NaN or NA: r2\)"):
        infer_target(meta, "disease", "positive")


@pytest.mark.parametrize("typo", ["Positive ", "POSITIVE", "Positive"])
def test_a_label_spelled_two_ways_is_refused(typo):
    meta = META.assign(disease=["positive", "negative", typo, "positive", "negative", "negative"])
    with pytest.raises(DeepRCError, match="spells the same label in different ways"):
        infer_target(meta, "disease", "positive")


def test_the_positive_value_is_matched_without_surrounding_spaces():
    meta = META.assign(disease=["positive", "negative"] * 3)
    assert infer_target(meta, "disease", " positive ").classes == ["negative", "positive"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"max_updates": 0}, "--max-updates"),
        ({"max_updates": -5}, "--max-updates"),
        ({"max_minutes": -1.0}, "--max-minutes"),
        ({"max_minutes": 0.0}, "--max-minutes"),
        ({"eval_every": 0}, "--eval-every"),
        ({"patience": 0}, "--patience"),
        ({"learning_rate": math.nan}, "--learning-rate"),
        ({"learning_rate": math.inf}, "--learning-rate"),
        ({"learning_rate": -1e-3}, "--learning-rate"),
        ({"batch_size": 0}, "--batch-size"),
        ({"seed": -1}, "--seed"),
        ({"max_updates": 10.5}, "--max-updates"),
    ],
)
def test_training_settings_are_checked_when_made(change, words):
    with pytest.raises(DeepRCError, match=words):
        TrainingConfig(**change)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-updates", "0"], "--max-updates"),
        (["--max-updates", "-3"], "--max-updates"),
        (["--max-minutes", "-1"], "--max-minutes"),
        (["--eval-every", "0"], "--eval-every"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--cv", "1"], "--cv needs at least 2 folds"),
        (["--cv", "-2"], "--cv needs at least 2 folds"),
        (["--n-kernels", "1000000000"], "n_kernels must be between 1 and 4096"),
    ],
)
def test_train_refuses_bad_settings_before_reading_anything(small, tmp_path, capsys, flags, words):
    root, out = tmp_path / "data", tmp_path / "model"
    shutil.copytree(small, root, ignore=shutil.ignore_patterns(".deeprc_cache*"))
    _fails(capsys, ["train", root, "--target", "disease", "--positive", "positive", "--out", out, *FAST, *flags], words)
    assert not out.exists()
    assert not (root / ".deeprc_cache.h5").exists()  # refused before a single repertoire was read


def test_cv_with_more_folds_than_a_class_has(small, tmp_path, capsys):
    _fails(
        capsys,
        ["train", small, "--target", "disease", "--out", tmp_path / "cv", "--cv", "5", *FAST],
        "--cv 5 needs at least 5 repertoires of every class",
    )


def test_train_on_a_single_class_with_positive_saves_nothing(small, tmp_path, capsys):
    root = tmp_path / "one_class"
    shutil.copytree(small, root, ignore=shutil.ignore_patterns(".deeprc_cache*"))
    meta = pd.read_csv(root / "metadata.tsv", sep="\t").assign(disease="positive")
    meta.to_csv(root / "metadata.tsv", sep="\t", index=False)
    out = tmp_path / "model"
    _fails(
        capsys, ["train", root, "--target", "disease", "--positive", "positive", "--out", out, *FAST], "only one value"
    )
    assert not out.exists()


def test_a_metadata_id_column_named_repertoire_trains(small, tmp_path, capsys):
    root = tmp_path / "named"
    shutil.copytree(small, root, ignore=shutil.ignore_patterns(".deeprc_cache*"))
    meta = pd.read_csv(root / "metadata.tsv", sep="\t").rename(columns={"ID": "repertoire"})
    meta.to_csv(root / "metadata.tsv", sep="\t", index=False)
    table = read_metadata(root / "metadata.tsv")
    assert table["repertoire"].tolist()[:2] == ["rep_000", "rep_001"]
    assert table.attrs["id_column"] == "repertoire_id" and table["repertoire_id"].iloc[0] == "rep_000.tsv"
    out = tmp_path / "model"
    argv = ["train", root, "--target", "disease", "--positive", "positive", "--out", out, "--max-updates", "2"]
    assert main([str(a) for a in argv + ["--eval-every", "1", *FAST]]) == 0, capsys.readouterr().err
    assert load_model(out, "cpu").config.targets[0]["classes"] == ["negative", "positive"]


# ----------------------------------------------------------------------------------------------------------
# Models: settings checked, sizes bounded, the checksum covers config.json


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_model(_tiny_model(), tmp_path / "m")


def _edit(directory: Path, change, fix: bool = True) -> None:
    doc = json.loads((directory / "config.json").read_text())
    change(doc)
    if fix:  # make the checksums match, to reach the checks behind them
        doc["settings_sha256"] = checkpoint._settings_sha256(doc)
    (directory / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["config"].update(n_kernels=32.0), "n_kernels must be a whole number, not 32.0"),
        (lambda d: d["config"].update(n_kernels=True), "n_kernels must be a whole number, not True"),
        (lambda d: d["config"].update(n_kernels=math.nan), "n_kernels must be a whole number, not nan"),
        (lambda d: d["config"].update(kernel_size=9.0), "kernel_size must be a whole number, not 9.0"),
        (lambda d: d["config"].update(n_kernels=10**9), "n_kernels must be between 1 and 4096"),
        (lambda d: d["config"].update(n_kernels=10**7), "n_kernels must be between 1 and 4096"),
        (lambda d: d["config"].update(attention_units=10**8), "attention_units must be between 1 and 4096"),
        (lambda d: d["config"].update(n_kernels=4096, kernel_size=63), "GB of memory"),
        (lambda d: d["config"].update(use_counts="yes"), "use_counts must be true or false"),
        (lambda d: d["config"].update(targets=[{"name": "d", "kind": "binary", "bogus": 1}]), "unknown or missing"),
        (lambda d: d["config"]["targets"][0].update(std=math.nan), "std of target"),
        (lambda d: d.update(format_version="2"), "invalid format_version ('2')"),
        (lambda d: d.update(config=5), "is not a set of settings"),
        (lambda d: d.update(info=[1]), "'info' section"),
    ],
)
def test_hand_edited_config_json_is_refused_in_one_sentence(saved, capsys, tmp_path, change, words):
    _edit(saved, change)
    with pytest.raises(DeepRCError, match=re.escape(words)):
        load_model(saved, "cpu")
    with pytest.raises(DeepRCError, match=re.escape(words)):
        read_model_config(saved)  # the app's sidebar reads only this
    rep = _write(tmp_path / "r.tsv", "junction_aa\nCASSLGQF\n")
    _fails(capsys, ["predict", "--model", saved, rep, "--out", tmp_path / "p.tsv"], words)


def test_an_edited_max_length_fails_the_checksum(saved, capsys, tmp_path):
    _edit(saved, lambda d: d["config"].update(max_length=20), fix=False)
    with pytest.raises(DeepRCError, match="changed after it was saved"):
        load_model(saved, "cpu")


def test_a_model_of_the_old_format_is_refused(saved):
    _edit(saved, lambda d: (d.update(format_version=1), d.pop("settings_sha256")), fix=False)
    with pytest.raises(DeepRCError, match="older DeepRC Explorer.*cannot be verified"):
        load_model(saved, "cpu")


def test_the_shipped_demo_model_has_the_new_checksum():
    doc = read_model_config(DEMO)
    assert doc["format_version"] == checkpoint.FORMAT_VERSION
    assert doc["settings_sha256"] == checkpoint._settings_sha256(doc)


# ----------------------------------------------------------------------------------------------------------
# Data loss: outputs are checked before any work, and never silently replaced


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad_trained") / "model"
    argv = ["train", small, "--target", "disease", "--positive", "positive", "--out", out]
    assert main([str(a) for a in argv + ["--max-updates", "2", "--eval-every", "1", *FAST]]) == 0
    return out


def test_train_refuses_to_replace_a_model_and_its_card(small, trained, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    (model / "MODEL_CARD.md").write_text("AUC 1.000")
    (model / "card").mkdir()
    (model / "card" / "kernels.png").write_bytes(b"png")
    (model / "notes.txt").write_text("mine")
    before = (model / "weights.safetensors").read_bytes()
    cache = small / ".deeprc_cache.h5"
    stamp = cache.stat().st_mtime_ns if cache.exists() else None
    argv = ["train", small, "--target", "disease", "--positive", "positive", "--out", model, "--max-updates", "3"]
    _fails(capsys, [*argv, *FAST], "already holds a model", "--overwrite")
    assert (model / "weights.safetensors").read_bytes() == before and (model / "MODEL_CARD.md").exists()
    assert (cache.stat().st_mtime_ns if cache.exists() else None) == stamp  # refused before reading

    assert main([str(a) for a in [*argv, "--eval-every", "1", "--overwrite", "--seed", "1", *FAST]]) == 0
    assert not (model / "MODEL_CARD.md").exists() and not (model / "card").exists()  # the old card is gone
    assert (model / "notes.txt").read_text() == "mine"
    assert load_model(model, "cpu").info["updates"] == 3


def test_train_onto_a_folder_that_is_not_a_model_is_refused_at_once(small, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "figure.png").write_bytes(b"x")
    argv = ["train", small, "--target", "disease", "--out", folder, "--max-updates", "5000", *FAST]
    _fails(capsys, argv, "is not a DeepRC model")
    _fails(capsys, ["train", small, "--target", "disease", "--out", folder / "figure.png", *FAST], "not a DeepRC model")
    assert sorted(p.name for p in folder.iterdir()) == ["figure.png"]


def test_save_model_replaces_a_model_only_when_asked(tmp_path):
    directory = save_model(_tiny_model(), tmp_path / "m")
    (directory / "MODEL_CARD.md").write_text("old card")
    with pytest.raises(DeepRCError, match="already holds a model"):
        save_model(_tiny_model(), directory)
    save_model(_tiny_model(), directory, overwrite=True)
    assert not (directory / "MODEL_CARD.md").exists()


def test_simulate_refuses_a_folder_that_is_not_empty_and_overwrites_cleanly(tmp_path, capsys):
    out = tmp_path / "sim"
    base = ["simulate", "--out", out, "--n-repertoires", "3", "--n-sequences", "40", "--pool-size", "200"]
    assert main([str(a) for a in [*base, "--seed", "1"]]) == 0
    first = {p.name for p in (out / "repertoires").iterdir()}
    meta = (out / "metadata.tsv").read_bytes()
    _fails(capsys, [*base, "--seed", "2"], "is not empty", "--overwrite")
    assert (out / "metadata.tsv").read_bytes() == meta

    smaller = ["simulate", "--out", out, "--n-repertoires", "2", "--n-sequences", "40", "--pool-size", "200"]
    assert main([str(a) for a in [*smaller, "--seed", "2", "--overwrite", "--no-compress"]]) == 0
    files = {p.name for p in (out / "repertoires").iterdir()}
    listed = set(pd.read_csv(out / "metadata.tsv", sep="\t")["ID"])
    assert files == listed and len(files) == 2 and not files & first  # nothing orphaned from the first run

    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.docx").write_bytes(b"x")
    _fails(capsys, ["simulate", "--out", other, "--n-repertoires", "2", "--overwrite"], "not a simulated dataset")
    assert [p.name for p in other.iterdir()] == ["thesis.docx"]


def test_simulate_errors_exit_1_and_huge_requests_are_refused(tmp_path, capsys):
    _fails(capsys, ["simulate", "--out", tmp_path / "a", "--witness-rate", "2"], "witness_rate")
    _fails(capsys, ["simulate", "--out", tmp_path / "b", "--n-sequences", "1000000000"], "hours", "simulate fewer")
    _fails(capsys, ["simulate", "--out", tmp_path / "c", "--n-repertoires", "1000000", "--n-sequences", "10"], "hours")
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------------------
# Crashes that became one line


def test_attribute_and_motifs_refuse_counts_below_one(tmp_path, capsys):
    rep = _write(tmp_path / "r.tsv", "junction_aa\nCASSLGQF\nCASSPDRF\n")
    for flag in ("--batch-size", "--steps", "--top"):
        _fails(
            capsys,
            ["attribute", rep, "--model", DEMO, "--out", tmp_path / "a.tsv", flag, "0"],
            f"{flag} must be at least 1",
        )
    _fails(
        capsys, ["motifs", "--model", DEMO, "--out", tmp_path / "m", "--kernels", "-1"], "--kernels must be at least 1"
    )
    _fails(capsys, ["motifs", "--model", DEMO, "--out", tmp_path / "m", "--top-n", "0"], "--top-n must be at least 1")
    assert not (tmp_path / "m").exists()


def _resumable(small, tmp_path) -> Path:
    out = tmp_path / "resumable"
    argv = ["train", small, "--target", "disease", "--positive", "positive", "--out", out, "--max-updates", "2"]
    assert main([str(a) for a in argv + ["--eval-every", "1", *FAST]]) == 0
    return out


@pytest.mark.parametrize(
    "state",
    [
        "{not json",
        "[1, 2]",
        '{"update": 2}',
        '{"param_groups": "x", "update": 2}',
        '{"param_groups": [{"params": [0], "lr": "fast"}], "update": 2}',
        '{"param_groups": [{"params": [0], "lr": 0.001}], "update": "two"}',
        '{"param_groups": [{"params": [0], "lr": 0.001}], "update": 2, "history": [{"update": 1}]}',
        '{"param_groups": [{"params": [0], "lr": 0.001}], "update": 2, "best_loss": "low"}',
    ],
    ids=["broken", "list", "no-groups", "groups-text", "lr-text", "update-text", "history", "best-loss"],
)
def test_a_corrupt_training_state_is_refused_on_resume(small, tmp_path, capsys, state):
    model = _resumable(small, tmp_path)
    (model / "training_state.json").write_text(state)
    argv = [
        "train",
        small,
        "--target",
        "disease",
        "--positive",
        "positive",
        "--out",
        tmp_path / "next",
        "--resume",
        model,
    ]
    _fails(capsys, [*argv, *FAST], "training state of model resumable is corrupt")
    with pytest.raises(DeepRCError, match="corrupt"):
        load_training_state(model, torch.optim.Adam(load_model(model, "cpu").parameters()))


def test_metadata_with_an_id_column_named_repertoire_reads(tmp_path):
    path = _write(tmp_path / "labels.tsv", "repertoire\tdisease\np1.tsv\tpositive\np2\tnegative\n")
    meta = read_metadata(path)
    assert meta["repertoire"].tolist() == ["p1", "p2"] and meta["disease"].tolist() == ["positive", "negative"]


def test_interrupting_the_cache_build_leaves_no_temporary_file(small, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small, root, ignore=shutil.ignore_patterns(".deeprc_cache*"))

    def _interrupt(done, total, name):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(root, progress=_interrupt)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
    ds = open_dataset(root)  # and the next run builds it
    assert len(ds) == 8
    ds.close()


# ----------------------------------------------------------------------------------------------------------
# Misleading messages: say what a path is


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.tsv"
    os.mkfifo(path)
    return path


def _loop(tmp_path: Path) -> Path:
    path = tmp_path / "loop.tsv"
    os.symlink(path, path)
    return path


def _broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.tsv"
    os.symlink(tmp_path / "gone.tsv", path)
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and symlinks")
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda t: t, "is a folder, not a file"),
        (_fifo, "is a named pipe (FIFO)"),
        (_loop, "symbolic link that loops"),
        (_broken, "symbolic link to"),
        (lambda t: t / "nope.tsv", "does not exist"),
    ],
    ids=["folder", "fifo", "loop", "broken-link", "missing"],
)
def test_a_path_that_is_not_a_file_says_what_it_is(tmp_path, capsys, make, words):
    path = make(tmp_path)
    with pytest.raises(DeepRCError, match=re.escape(words)):
        read_repertoire(path)
    _fails(capsys, ["predict", "--model", DEMO, path, "--out", tmp_path / "p.tsv"], words)


def test_a_file_given_as_model_says_so(tmp_path, capsys):
    path = _write(tmp_path / "model.tsv", "junction_aa\nCASSF\n")
    _fails(capsys, ["predict", "--model", path, path, "--out", tmp_path / "p.tsv"], "is a file, not a folder")


# ----------------------------------------------------------------------------------------------------------
# Memory: caps on the inflated bytes and rows, checked while streaming


def _airr_rows(n: int) -> bytes:
    return b"junction_aa\tduplicate_count\tv_call\n" + b"CASSLGQAYEQYF\t3\tTRBV5-1*01\n" * n


def test_a_gzip_that_inflates_past_the_byte_limit_is_stopped(tmp_path):
    path = _write(tmp_path / "bomb.tsv.gz", _airr_rows(400_000), gz=True)  # 10.8 MB inflated
    assert path.stat().st_size < 200_000
    with pytest.raises(DeepRCError, match="more than 1 MB once decompressed.*DEEPRC_MAX_FILE_MB"):
        read_repertoire(path, max_bytes=1 << 20)
    with pytest.raises(DeepRCError, match="more than 1 MB once decompressed"):
        read_repertoire(path.read_bytes(), name="upload.tsv.gz", max_bytes=1 << 20)
    plain = _write(tmp_path / "plain.tsv", _airr_rows(50_000))
    with pytest.raises(DeepRCError, match="more than 1 MB, the limit"):
        read_repertoire(plain, max_bytes=1 << 20)
    assert len(read_repertoire(path)) == 1  # within the default limits it reads (duplicates merged)


def test_the_row_limit_is_checked_while_streaming(tmp_path, monkeypatch):
    path = _write(tmp_path / "rows.tsv.gz", _airr_rows(30_000), gz=True)
    with pytest.raises(DeepRCError, match="more than the 1,000 allowed rows"):
        read_repertoire(path, max_rows=1000)
    monkeypatch.setenv("DEEPRC_MAX_ROWS", "500")
    with pytest.raises(DeepRCError, match="more than the 500 allowed rows.*DEEPRC_MAX_ROWS"):
        read_repertoire(path)
    monkeypatch.setenv("DEEPRC_MAX_ROWS", "lots")
    with pytest.raises(DeepRCError, match="DEEPRC_MAX_ROWS='lots' is not a positive number"):
        read_repertoire(path)


def test_the_cli_refuses_a_gzip_bomb_in_one_line(tmp_path):
    path = _write(tmp_path / "bomb.tsv.gz", _airr_rows(200_000), gz=True)
    env = {**os.environ, "DEEPRC_MAX_FILE_MB": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "deeprc_core", "predict", "--model", str(DEMO), str(path), "--out", str(tmp_path / "p.tsv")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1
    _error_line(run.stderr, "bomb.tsv.gz holds more than 1 MB once decompressed")


def test_huge_fields_are_dropped_for_the_same_reason_as_before(tmp_path):
    long_ok, long_bad = "C" + "A" * 5000 + "F", "C" + "A" * 3000 + "*" + "A" * 2000 + "F"
    text = f"junction_aa\tduplicate_count\n{long_ok}\t1\n{long_bad}\t1\n  CASSLGQF \t2\nCASSPDRF\t1\n"
    rep = read_repertoire(_write(tmp_path / "long.tsv", text))
    assert sorted(rep.sequences.tolist()) == ["CASSLGQF", "CASSPDRF"]
    assert rep.report.n_too_long == 1 and rep.report.n_invalid == 1


def test_a_truncated_gzip_is_reported_as_damaged(tmp_path):
    data = gzip.compress(_airr_rows(20_000))
    path = _write(tmp_path / "cut.tsv.gz", data[: len(data) // 2])
    with pytest.raises(DeepRCError, match="damaged or truncated"):
        read_repertoire(path)


def test_a_model_config_is_sized_before_anything_is_built():
    config = DeepRCConfig(n_kernels=64, kernel_size=7, n_layers=2, n_heads=2, v_genes=["a", "b"], use_counts=True)
    model = DeepRC(config)
    table, _, _ = model._lookup_tables()
    actual = sum(p.numel() for p in model.parameters()) + table.numel() + model.position_table.numel()
    assert abs(config.size_in_floats() - actual) <= 16
