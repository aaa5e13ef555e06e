"""The app package (explorer/) on its own: its streamlit-free modules (uploaded datasets on disk, the background
training job, the Train page's settings) without a running app, and its shape: one st.Page per page file in
the router, no module over 300 lines, no streamlit (or torch) where there should be none."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from deeprc_core.config import TrainingConfig
from deeprc_core.errors import DeepRCError
from deeprc_core.model import DeepRCConfig
from explorer import archive, settings, training_form
from explorer.training_job import TrainingJob, training_slots

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 300


@dataclass
class Upload:
    name: str
    data: bytes

    def getvalue(self) -> bytes:
        return self.data


# ----------------------------------------------------------------------------------------------------------
# Shape of the app


def _app_modules() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "explorer").glob("*.py")), *sorted((ROOT / "app_pages").glob("*.py"))]


def test_no_app_module_is_over_300_lines_and_ui_py_is_gone() -> None:
    assert not (ROOT / "ui.py").exists()
    assert not (ROOT / "pages").exists()  # a pages/ folder switches Streamlit to its old mode, bypassing the router
    long = {
        p.relative_to(ROOT).as_posix(): n for p in _app_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_router_has_one_page_per_page_file() -> None:
    routed = re.findall(r'st\.Page\("(app_pages/[a-z_]+\.py)"', (ROOT / "app.py").read_text())
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "app_pages").glob("*.py"))
    assert sorted(routed) == files and len(set(routed)) == len(routed)
    for path in files:  # pages are scripts run by the router: no set_page_config, no sys.path edits
        text = (ROOT / path).read_text()
        assert "set_page_config" not in text and "sys.path" not in text and "import ui" not in text


def test_streamlit_free_modules_import_no_streamlit_and_the_report_no_torch() -> None:
    code = (
        "import sys\n"
        "import deeprc_core.report, deeprc_core.labels\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
        "import explorer.archive, explorer.settings, explorer.training_job, explorer.training_form\n"
        "assert 'streamlit' not in sys.modules, 'streamlit'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# Uploaded datasets on disk (the zip checks are in test_app.py and test_bad_input_app.py)


def test_loose_files_become_a_dataset_folder(tmp_path: Path) -> None:
    files = [Upload("../../r1.tsv", b"junction_aa\nCASSF\n"), Upload("metadata.csv", b"ID,disease\nr1.tsv,x\n")]
    root = archive.write_dataset_files(files, None, tmp_path / "d")
    assert (root / "repertoires" / "r1.tsv").read_bytes() == b"junction_aa\nCASSF\n"  # no directories kept
    assert (root / "metadata.csv").is_file() and not (tmp_path / "r1.tsv").exists()
    root = archive.write_dataset_files(files[:1], Upload("labels.xlsx", b"ID\tdisease\n"), tmp_path / "e")
    assert (root / "metadata.tsv").read_bytes() == b"ID\tdisease\n"  # an unknown suffix is read as TSV
    with pytest.raises(DeepRCError, match="Add the metadata table"):
        archive.write_dataset_files(files[:1], None, tmp_path / "f")


def test_safe_names_and_upload_digests() -> None:
    assert archive.safe_name("..\\..\\evil name!.tsv") == "evil_name_.tsv"
    assert archive.safe_name("/etc/.hidden") == "hidden"
    a, b = [Upload("r.tsv", b"x")], [Upload("r.tsv", b"y")]
    assert archive.upload_digest(a, None) == archive.upload_digest(list(a), None)
    assert archive.upload_digest(a, None) != archive.upload_digest(b, None)
    assert archive.upload_digest(a, None) != archive.upload_digest(a, Upload("m.tsv", b""))


def test_a_zipped_folder_unzips_to_the_same_files(tmp_path: Path) -> None:
    folder = tmp_path / "my_model"
    (folder / "card").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "card" / "roc.png").write_bytes(b"png")
    with zipfile.ZipFile(io.BytesIO(archive.zip_folder(folder))) as z:
        assert sorted(z.namelist()) == ["my_model/card/roc.png", "my_model/config.json"]
        assert z.read("my_model/card/roc.png") == b"png"


# ----------------------------------------------------------------------------------------------------------
# The background training job


@dataclass
class Progress:
    update: int
    history: list = field(default_factory=list)


@dataclass
class Result:
    history: list


def test_a_job_reports_progress_and_its_result() -> None:
    seen = threading.Event()

    def run(should_stop, on_update, on_evaluate):
        on_update(Progress(1))
        on_evaluate(Progress(2, [{"update": 2, "val_auc": 0.5}]))
        seen.set()
        return Result([{"update": 2, "val_auc": 0.5}, {"update": 3, "val_auc": 0.75}])

    job = TrainingJob(run=run, description="test").start()
    assert job.wait(30)
    snap = job.snapshot()
    assert seen.is_set() and snap["state"] == "done" and snap["error"] is None
    assert snap["progress"].update == 2 and [h["update"] for h in snap["history"]] == [2, 3]
    assert snap["result"].history[-1]["val_auc"] == 0.75


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (DeepRCError("Column 'x' has only one value."), "Column 'x' has only one value."),
        (KeyError("k"), "unexpectedly"),
    ],
)
def test_a_failed_job_keeps_a_readable_message(error: Exception, message: str) -> None:
    def run(**_):
        raise error

    job = TrainingJob(run=run, description="test").start()
    assert job.wait(30)
    assert job.snapshot()["state"] == "failed" and message in job.snapshot()["error"]
    assert training_slots().acquire(timeout=1)  # the slot was given back
    training_slots().release()


def test_cancel_stops_a_running_job_and_a_queued_one_never_runs() -> None:
    started = threading.Event()

    def run(should_stop, **_):
        started.set()
        while not should_stop():
            time.sleep(0.01)
        return Result([])

    job = TrainingJob(run=run, description="running").start()
    assert started.wait(30)
    job.cancel()
    assert job.wait(30) and job.snapshot()["state"] == "cancelled" and job.snapshot()["result"] is not None

    calls = []
    slots = training_slots()
    held = [slots.acquire(timeout=5) for _ in range(settings.MAX_PARALLEL_TRAININGS)]
    try:
        queued = TrainingJob(run=lambda **_: calls.append(1), description="queued").start()
        time.sleep(0.2)
        assert queued.snapshot()["state"] == "queued" and not queued.finished
        queued.cancel()
        assert queued.wait(30) and queued.snapshot()["state"] == "cancelled"
    finally:
        for ok in held:
            if ok:
                slots.release()
    assert calls == [] and queued.snapshot()["result"] is None


# ----------------------------------------------------------------------------------------------------------
# The Train page's settings


def test_every_setting_starts_at_the_config_default() -> None:
    training, model = training_form.configs_from({}, "disease", None)
    assert training == TrainingConfig(target="disease")
    assert model == DeepRCConfig()
    names = {"training": {f.name for f in fields(TrainingConfig)}, "model": {f.name for f in fields(DeepRCConfig)}}
    for f in training_form.FIELDS:
        assert f.name in names[f.owner], f.name
        assert f.key.startswith("train_")
        value = f.default()
        if f.is_choice:
            assert value in f.options
        else:
            assert type(value) is type(f.low) is type(f.high) is type(f.step), f.key
            assert f.low <= value <= f.high, f.key
    assert len({f.key for f in training_form.FIELDS}) == len(training_form.FIELDS)


def test_widget_values_become_config_values() -> None:
    values = {
        "train_n_sequences": 0,
        "train_eval_cap": 300,
        "train_top_fraction": 0.1,
        "train_use_genes": "no",
        "train_kernel_size": 5,
        "train_n_kernels": 8,
        "train_minutes": 0.5,
    }
    training, model = training_form.configs_from(values, "disease", "positive")
    assert training.n_sequences is None and training.eval_max_sequences == 300  # 0 = all
    assert training.top_fraction == 0.1 and training.use_genes is False and training.max_minutes == 0.5
    assert training.positive == "positive"
    assert (model.kernel_size, model.n_kernels) == (5, 8)
    assert training_form.configs_from({"train_use_genes": "auto"}, "d", None)[0].use_genes is None
    with pytest.raises(DeepRCError):
        training_form.configs_from({"train_batch_size": 0}, "disease", None)
