"""Distributed training and scoring on CPU: Gloo ranks on loopback, spawned with torch.multiprocessing and
joined exactly as under torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT; a TCP store on 127.0.0.1).

Each rank runs the command line from a folder of its own, so whatever it writes relative to that folder shows
which rank wrote it. Two ranks with ``--batch-size 2`` must take the same first step as one rank with
``--batch-size 4`` over the same four repertoires (the gradient is averaged over the ranks, not summed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from conftest import write_dataset
from safetensors.torch import load_file

from deeprc_core.checkpoint import load_model
from deeprc_core.dataset import open_dataset
from deeprc_core.distributed import BatchSampler, Context
from deeprc_core.io import read_repertoire
from deeprc_core.model import DeepRC, DeepRCConfig
from deeprc_core.scoring import predict, predict_files

TRAIN = [
    "--target", "disease", "--positive", "positive", "--max-updates", "1", "--eval-every", "1", "--n-kept", "8",
    "--n-kernels", "4", "--kernel-size", "3", "--no-reference", "--seed", "0", "--device", "cpu",
]  # fmt: skip


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _rank(rank: int, world: int, ports: list[int], workdir: str, steps: list[list[str]]) -> None:
    """One rank: for each command line, join a fresh run as torchrun would (one port per command) and run it
    from ``workdir/rank{rank}``; exit codes and output go to ``workdir/log{rank}.json``."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo",
    )  # fmt: skip
    here = Path(workdir) / f"rank{rank}"
    here.mkdir()
    os.chdir(here)
    from deeprc_core.cli import main

    log = []
    for port, argv in zip(ports, steps):
        os.environ["MASTER_PORT"] = str(port)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        log.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
    (Path(workdir) / f"log{rank}.json").write_text(json.dumps(log))


@contextlib.contextmanager
def _plain_main():
    """Spawned ranks re-run the parent's ``__main__`` file; after an AppTest in the same pytest process that is
    the app's script (``app.py``), so hide it while spawning."""
    main_module = sys.modules["__main__"]
    saved = main_module.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if saved is not None:
            main_module.__file__ = saved


def _launch(world: int, workdir: Path, steps: list[list[str]]) -> list[list[dict]]:
    workdir.mkdir()
    with _plain_main():
        mp.spawn(_rank, args=(world, _free_ports(len(steps)), str(workdir), steps), nprocs=world, join=True)
    return [json.loads((workdir / f"log{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    data = write_dataset(root / "data", n_repertoires=12, n_sequences=60, witness_rate=0.1, seed=3)
    files = sorted(str(p) for p in (data / "repertoires").glob("*.tsv"))[:4]
    bad = root / "bad.tsv"
    bad.write_text("nothing\tuseful\n1\t2\n")
    with_bad = [files[0], str(bad), files[2], files[3]]  # the bad file is rank 1's
    model = str(root / "two" / "rank0" / "model")  # rank 0's output, read by every rank (a shared file system)
    resume = [*TRAIN]
    resume[resume.index("--max-updates") + 1] = "3"  # two more updates
    two = _launch(
        2,
        root / "two",
        [
            ["train", str(data), "--out", "model", "--batch-size", "2", *TRAIN],
            ["train", str(data), "--out", "resumed", "--resume", model, "--batch-size", "2", *resume],
            ["predict", "--model", model, *files, "--out", "predictions.tsv", "--device", "cpu"],
            ["predict", "--model", model, *with_bad, "--out", "bad.tsv", "--device", "cpu"],
        ],
    )
    one = _launch(1, root / "one", [["train", str(data), "--out", "model", "--batch-size", "4", *TRAIN]])
    return {"root": root, "data": data, "files": files, "bad": bad, "two": two, "one": one}


def test_two_ranks_take_the_same_first_step_as_one_rank_on_the_union_of_their_batches(runs):
    root = runs["root"]
    assert [step["code"] for step in runs["one"][0]] == [0]
    two, one = root / "two" / "rank0" / "model", root / "one" / "rank0" / "model"
    for name in ("weights.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(two / name)), load_file(str(one / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-7, msg=f"{name} {key}")
    # Adam's first moment is 0.1 x the gradient: the averaged gradient itself matches (a sum would be twice it)
    moments = load_file(str(two / "optimizer.safetensors"))
    assert any(float(v.abs().max()) > 1e-4 for k, v in moments.items() if k.endswith("exp_avg"))
    history = [json.loads((d / "training_state.json").read_text())["history"] for d in (two, one)]
    assert history[0][0]["val_loss"] == pytest.approx(history[1][0]["val_loss"], rel=1e-5)  # sharded validation


def test_only_rank_0_writes_and_reports_and_the_model_loads(runs):
    root, (rank0, rank1) = runs["root"], runs["two"]
    assert [step["code"] for step in rank0[:3]] == [0, 0, 0] and [step["code"] for step in rank1[:3]] == [0, 0, 0]
    assert sorted(p.name for p in (root / "two" / "rank0").iterdir()) == ["model", "predictions.tsv", "resumed"]
    assert list((root / "two" / "rank1").iterdir()) == []
    assert "Saved model to model (1 updates" in rank0[0]["out"]
    assert all(step["out"] == "" and step["err"] == "" for step in rank1)
    model = load_model(root / "two" / "rank0" / "model", "cpu")
    assert model.info["world_size"] == 2 and model.info["updates"] == 1
    assert model.info["command"].startswith("torchrun --nnodes 1 --nproc_per_node 2 -m deeprc_core train")


def test_resuming_a_distributed_run(runs):
    model = load_model(runs["root"] / "two" / "rank0" / "resumed", "cpu")
    assert model.info["updates"] == 3 and model.info["world_size"] == 2
    state = json.loads((runs["root"] / "two" / "rank0" / "resumed" / "training_state.json").read_text())
    assert [h["update"] for h in state["history"]] == [
        0,
        1,
        2,
        3,
    ]  # the seeded start and the saved evaluation, then two new ones


def test_sharded_predict_writes_one_table_in_file_order(runs):
    root, files = runs["root"], runs["files"]
    table = pd.read_csv(root / "two" / "rank0" / "predictions.tsv", sep="\t")
    model = load_model(root / "two" / "rank0" / "model", "cpu")
    expected = predict(model, [read_repertoire(f, max_length=model.config.max_length) for f in files])
    assert table["repertoire"].tolist() == expected["repertoire"].tolist() == [Path(f).stem for f in files]
    np.testing.assert_allclose(table["probability"], expected["probability"], rtol=1e-5)
    assert runs["two"][0][2]["out"].strip() == f"Wrote {len(files)} predictions to predictions.tsv"
    # the same rows as the streaming scorer in one process, column for column
    pd.testing.assert_frame_equal(predict_files(model, files), expected)


def test_a_failure_on_one_rank_stops_all_ranks_with_one_message(runs):
    rank0, rank1 = runs["two"][0][3], runs["two"][1][3]
    assert rank0["code"] == 1 and rank1["code"] == 1
    lines = [line for line in rank0["err"].splitlines() if "error" in line]  # besides rank 0's progress bar
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad" in lines[0]
    assert "on rank 1 of 2" in lines[0]
    assert rank1["err"] == "" and not (runs["root"] / "two" / "rank0" / "bad.tsv").exists()


def _ctx(rank: int, world: int) -> Context:
    return Context(rank=rank, world_size=world, local_rank=rank, backend="gloo")


def test_batch_sampler_deals_disjoint_blocks_of_one_permutation():
    indices = np.arange(10, 20)
    one = BatchSampler(indices, 6, seed=7, context=_ctx(0, 1))
    two = [BatchSampler(indices, 3, seed=7, context=_ctx(r, 2)) for r in range(2)]
    for update in range(5):  # crosses epochs: 6 per update over 10 repertoires
        union = np.concatenate([s.batch(update) for s in two])
        np.testing.assert_array_equal(union, one.batch(update))
    first_epoch = np.concatenate([one.batch(0), one.batch(1)])[:10]
    assert sorted(first_epoch) == list(indices)  # every repertoire once per epoch
    fresh = BatchSampler(indices, 3, seed=7, context=_ctx(1, 2))
    np.testing.assert_array_equal(fresh.batch(4), two[1].batch(4))  # depends on (seed, update) only: resumable
    a, b = (s.selection_rng(0).integers(1 << 30, size=4) for s in two)
    assert not np.array_equal(a, b)  # each rank draws its own sequences


def test_encoded_repertoires_of_a_large_dataset_stay_within_the_cache_budget(tiny_dataset, monkeypatch):
    from deeprc_core import training

    small, large = open_dataset(tiny_dataset), open_dataset(tiny_dataset, in_memory=False)
    model = DeepRC(DeepRCConfig(n_kernels=4, kernel_size=3))
    full = training._Encoded(small, model)
    one = full.get(0).nbytes
    monkeypatch.setattr(training, "ENCODED_CACHE_BYTES", 3 * one)
    bounded = training._Encoded(large, model)
    for i in [*range(len(large)), 0, 5]:
        rep = bounded.get(i)
        np.testing.assert_array_equal(rep.codes, full.get(i).codes)
        assert bounded._bytes <= 3 * one + one // 2 and len(bounded._cache) <= 4
    assert len(full._cache) == len(small)  # a dataset held in memory keeps everything, as before
    small.close()
    large.close()


def test_init_adopts_a_process_group_the_caller_opened(tmp_path):
    """A notebook or test that opened its own group gets a context for it (not owned, so not closed by us)."""
    store = (tmp_path / "store").as_posix()
    code = f"""
import torch.distributed as dist
from deeprc_core import distributed
dist.init_process_group("gloo", init_method="file://{store}", rank=0, world_size=1)
ctx = distributed.init("cpu")
assert ctx is not None and (ctx.rank, ctx.world_size, ctx.owned) == (0, 1, False), ctx
assert distributed.init("cpu") is ctx and distributed.current() is ctx
distributed.shutdown()
assert dist.is_initialized()  # the caller's group stays open
print("adopted")
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "adopted" in out.stdout, out.stderr[-2000:]
