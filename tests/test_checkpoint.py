"""Tests of model files: safetensors + config.json round trip, refusal of damaged models, atomic saves,
no pickle anywhere, and resuming training from a saved state."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_junctions, write_dataset

from deeprc_core import checkpoint
from deeprc_core.checkpoint import list_models, load_model, load_training_state, read_model_config, save_model
from deeprc_core.dataset import open_dataset
from deeprc_core.errors import DeepRCError
from deeprc_core.io import ReadReport, Repertoire, encode_sequences
from deeprc_core.model import DeepRC, DeepRCConfig, TargetSpec
from deeprc_core.scoring import score_repertoire
from deeprc_core.training import TrainingConfig, _Trainer, build_optimizer, train


def _model(seed: int = 0, **overrides) -> DeepRC:
    torch.manual_seed(seed)
    config = DeepRCConfig(
        **{
            "n_kernels": 8,
            "kernel_size": 5,
            "n_heads": 2,
            "v_genes": ["TRBV5-1", "TRBV20-1"],
            "j_genes": ["TRBJ2-7"],
            "use_counts": True,
            "targets": [asdict(TargetSpec("hla", "multiclass", ["A", "B", "C"]))],
            **overrides,
        }
    )
    model = DeepRC(config).eval()
    model.info = {"validation_metrics": {"auc": 0.75}, "note": "unit test"}
    return model


def _repertoire() -> Repertoire:
    seqs = random_junctions(np.random.default_rng(1), 60)
    codes, lengths = encode_sequences(seqs)
    rng = np.random.default_rng(2)
    return Repertoire(
        "r", np.asarray(seqs, object), codes, lengths, rng.integers(1, 9, 60).astype(float),
        rng.choice(["TRBV5-1", "TRBV20-1", "TRBV9"], 60).astype(object), np.full(60, "TRBJ2-7", object), ReadReport("r"),
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path) -> tuple[DeepRC, Path]:
    model = _model()
    return model, save_model(model, tmp_path / "models" / "hla_model")


def _fix_sha(directory: Path) -> None:
    """Make both checksums match again (to test what lies behind them)."""
    doc = json.loads((directory / "config.json").read_text())
    doc["weights_sha256"] = checkpoint._sha256(directory / "weights.safetensors")
    doc["settings_sha256"] = checkpoint._settings_sha256(doc)
    (directory / "config.json").write_text(json.dumps(doc))


# ----------------------------------------------------------------------------------------------------------
# Round trip


def test_round_trip_gives_identical_outputs(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = load_model(directory, "cpu")
    assert loaded.config == model.config
    assert not loaded.training
    assert loaded.path == directory
    assert loaded.info == model.info
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    rep = _repertoire()
    a, b = score_repertoire(model, rep), score_repertoire(loaded, rep)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.attention, b.attention)


def test_config_json_documents_the_model(saved):
    model, directory = saved
    doc = read_model_config(directory)
    assert doc["config"] == asdict(model.config)
    assert doc["alphabet"] == "ACDEFGHIKLMNPQRSTVWY"
    assert doc["weights_sha256"] == checkpoint._sha256(directory / "weights.safetensors")
    assert doc["info"]["validation_metrics"] == {"auc": 0.75}
    assert DeepRC(DeepRCConfig(**doc["config"])).config == model.config


def test_no_pickle_is_written_or_read(saved, monkeypatch):
    _, directory = saved
    for path in directory.rglob("*"):
        assert path.suffix not in (".pt", ".pth", ".pkl", ".pickle", ".bin")
        assert not path.read_bytes().startswith(b"\x80")  # pickle protocol 2+ magic
    json.loads((directory / "config.json").read_text())  # plain JSON

    def _forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", _forbidden)
    monkeypatch.setattr(pickle, "load", _forbidden)
    monkeypatch.setattr(pickle, "loads", _forbidden)
    monkeypatch.setattr(pickle, "Unpickler", _forbidden)
    load_model(directory, "cpu")


def test_list_models(tmp_path):
    save_model(_model(), tmp_path / "b")
    save_model(_model(), tmp_path / "a")
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.json").write_text("{}")
    assert [p.name for p in list_models(tmp_path, tmp_path / "missing")] == ["a", "b"]


# ----------------------------------------------------------------------------------------------------------
# Damaged models are refused with a clear message


def test_tampered_weights_fail_the_checksum(saved):
    _, directory = saved
    weights = directory / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # flip one bit inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(DeepRCError, match="checksum"):
        load_model(directory, "cpu")


def test_truncated_weights_are_refused(saved):
    _, directory = saved
    weights = directory / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(DeepRCError, match="checksum|truncated"):
        load_model(directory, "cpu")
    _fix_sha(directory)  # even when the checksum is made to match, the file itself is refused
    with pytest.raises(DeepRCError, match="corrupt or truncated"):
        load_model(directory, "cpu")


def test_missing_config_json(saved):
    _, directory = saved
    (directory / "config.json").unlink()
    with pytest.raises(DeepRCError, match="config.json"):
        load_model(directory, "cpu")


def test_missing_weights(saved):
    _, directory = saved
    (directory / "weights.safetensors").unlink()
    with pytest.raises(DeepRCError, match="weights.safetensors"):
        load_model(directory, "cpu")


def test_missing_model_folder(tmp_path):
    with pytest.raises(DeepRCError, match="does not exist"):
        load_model(tmp_path / "nothing", "cpu")


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[1, 2]", '{"format_version": 1}', "\xff\xfe"],
    ids=["broken", "empty", "list", "no-config", "binary"],
)
def test_corrupt_config_json(saved, text):
    _, directory = saved
    (directory / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(DeepRCError, match="config.json"):
        load_model(directory, "cpu")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda doc: doc["config"].update(n_kernels=16), "do not fit"),
        (lambda doc: doc["config"].update(kernel_size=7), "do not fit"),
        (lambda doc: doc["config"].update(n_heads=1), "do not fit"),
        (lambda doc: doc["config"].update(v_genes=["TRBV5-1"]), "do not fit"),
        (lambda doc: doc["config"].update(kernel_size=4), "odd"),
        (lambda doc: doc["config"].update(secret_option=True), "unknown settings"),
        (lambda doc: doc.update(format_version=99), "newer"),
        (lambda doc: doc.update(alphabet="ACDEFGHIKLMNPQRSTVWYX"), "alphabet"),
    ],
    ids=["n_kernels", "kernel_size", "n_heads", "v_genes", "even-kernel", "unknown-key", "newer-format", "alphabet"],
)
def test_mismatched_or_invalid_architecture_is_refused(saved, edit, match):
    _, directory = saved
    doc = json.loads((directory / "config.json").read_text())
    edit(doc)
    (directory / "config.json").write_text(json.dumps(doc))
    _fix_sha(directory)
    with pytest.raises(DeepRCError, match=match):
        load_model(directory, "cpu")


# ----------------------------------------------------------------------------------------------------------
# Atomic saves


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_overwriting_a_model_replaces_it_and_leaves_nothing_behind(saved):
    _, directory = saved
    new = _model(seed=1)
    save_model(new, directory, overwrite=True)
    loaded = load_model(directory, "cpu")
    assert torch.equal(loaded.convs[0].weight, new.convs[0].weight)
    assert _leftovers(directory.parent) == []


def test_saving_into_a_folder_with_other_files_does_not_delete_them(tmp_path):
    """``--out results`` where results/ already holds the user's files: refuse, or keep them; never delete them."""
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    try:
        save_model(_model(), target)
    except DeepRCError:
        pass
    assert (target / "notes.txt").read_text() == "keep me"


def test_interrupted_save_leaves_the_previous_model_intact(saved, monkeypatch):
    old, directory = saved
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def _crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", _crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(_model(seed=1), directory, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert _leftovers(directory.parent) == []
    rep = _repertoire()
    np.testing.assert_array_equal(
        score_repertoire(load_model(directory, "cpu"), rep).outputs, score_repertoire(old, rep).outputs
    )


def test_interrupted_save_of_a_new_model_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "save_file", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(_model(), tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []


def test_save_failing_while_swapping_directories_keeps_the_previous_model_loadable(saved, monkeypatch):
    """If the final rename fails, the previous model must still be at its path (not parked in a hidden folder)."""
    old, directory = saved
    real_replace = checkpoint.os.replace

    def _replace(src, dst):
        if Path(src).name.startswith(f".{directory.name}.") and "old-" not in Path(src).name:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", _replace)
    with pytest.raises(OSError, match="rename failed"):
        save_model(_model(seed=1), directory, overwrite=True)
    monkeypatch.undo()
    loaded = load_model(directory, "cpu")
    assert torch.equal(loaded.convs[0].weight, old.convs[0].weight)


# ----------------------------------------------------------------------------------------------------------
# Training state and resuming


@pytest.fixture(scope="module")
def resume_dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("resume"), n_repertoires=8, n_sequences=40, seed=5)
    meta = (root / "metadata.tsv").read_text().splitlines()
    hla = ["hla"] + ["A", "B", "C", "A", "B", "C", "A", "B"]  # a target with no signal in the sequences
    (root / "metadata.tsv").write_text("\n".join(f"{row}\t{h}" for row, h in zip(meta, hla)) + "\n")
    ds = open_dataset(root)
    yield ds
    ds.close()


def _training(max_updates: int) -> TrainingConfig:
    return TrainingConfig(
        target="disease", positive="positive", max_updates=max_updates, max_minutes=None, batch_size=2,
        n_sequences=20, top_fraction=0.5, eval_every=2, patience=100, seed=0, device="cpu",
    )  # fmt: skip


ARCH = DeepRCConfig(n_kernels=4, kernel_size=3, attention_units=8)


def test_resume_continues_the_update_count(resume_dataset, tmp_path):
    first = train(resume_dataset, _training(4), ARCH)
    directory = save_model(first.model, tmp_path / "m", optimizer=first.optimizer, training_state=first.state)
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "optimizer.safetensors",
        "training_state.json",
        "weights.safetensors",
    ]

    fresh = build_optimizer(DeepRC(first.model.config), _training(4))
    state = load_training_state(directory, fresh)
    assert state["update"] == 4
    assert [h["update"] for h in state["history"]] == [0, 2, 4]  # 0: the seeded start
    steps = {int(s["step"]) for s in fresh.state_dict()["state"].values()}
    assert steps == {4}  # Adam's moments and step count came back

    seen = []
    resumed = train(
        resume_dataset, _training(7), ARCH, resume_from=str(directory), on_update=lambda p: seen.append(p.update)
    )
    assert seen == [5, 6, 7]
    assert resumed.state["update"] == 7
    for fact in (
        "seeded_patterns",
        "seeded_genes",
        "seeded_heads",
        "seeded_kernels",
        "seeding_threshold",
    ):  # the start is not redone
        assert resumed.model.info[fact] == first.model.info[fact], fact
    assert [h["update"] for h in resumed.history] == [0, 2, 4, 6, 7]
    steps = {int(s["step"]) for s in resumed.optimizer.state_dict()["state"].values()}
    assert steps == {7}


def test_resumed_model_reports_the_metrics_of_its_own_weights(resume_dataset, tmp_path):
    """After resuming, the metrics must belong to the restored (best) weights, not to the last evaluation."""
    config = replace(
        _training(200), target="hla", positive=None, task="multiclass", patience=3, learning_rate=0.05,
        min_updates=0, warmup_updates=0, fine_tune_factor=1.0,
    )  # fmt: skip
    first = train(resume_dataset, config, ARCH)
    best = min(first.history, key=lambda h: h["val_loss"])
    assert first.state["stop_reason"] == "early stopping" and best["update"] < first.history[-1]["update"]
    directory = save_model(first.model, tmp_path / "m", optimizer=first.optimizer, training_state=first.state)
    resumed = train(
        resume_dataset, replace(config, max_updates=first.state["update"]), ARCH, resume_from=str(directory)
    )
    assert resumed.metrics["best_update"] == best["update"]
    assert resumed.metrics["loss"] == pytest.approx(best["val_loss"])
    again = _Trainer(resume_dataset, config, ARCH).evaluate(resumed.model, resumed.val_indices)
    assert again["loss"] == pytest.approx(resumed.metrics["loss"], abs=1e-5)


def test_resume_needs_a_training_state_and_the_same_architecture(resume_dataset, tmp_path):
    first = train(resume_dataset, _training(2), ARCH)
    bare = save_model(first.model, tmp_path / "bare")
    with pytest.raises(DeepRCError, match="no training state"):
        train(resume_dataset, _training(4), ARCH, resume_from=str(bare))
    with pytest.raises(DeepRCError, match="no training state"):
        load_training_state(bare, torch.optim.Adam(first.model.parameters()))
    full = save_model(first.model, tmp_path / "full", optimizer=first.optimizer, training_state=first.state)
    with pytest.raises(DeepRCError, match="architecture"):
        train(
            resume_dataset,
            _training(4),
            DeepRCConfig(n_kernels=6, kernel_size=3, attention_units=8),
            resume_from=str(full),
        )
