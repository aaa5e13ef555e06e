"""Bad input in the app (issue 11): uploads with NUL bytes, gzip bombs, labels files whose ID column is named
``repertoire``, and zips that are damaged, encrypted, clashing or too large are refused (or read correctly)
with a clear message, never a traceback, a server path or files left in the session folder."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from deeprc_core.errors import DeepRCError

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SINGLE = ROOT / "sample_data" / "single"


@pytest.fixture(scope="module", autouse=True)
def app_environment(tmp_path_factory: pytest.TempPathFactory):
    saved = os.environ.get("DEEPRC_TRAINED_DIR")
    os.environ["DEEPRC_TRAINED_DIR"] = str(tmp_path_factory.mktemp("trained_models"))
    yield
    if saved is None:
        os.environ.pop("DEEPRC_TRAINED_DIR", None)
    else:
        os.environ["DEEPRC_TRAINED_DIR"] = saved


def _classify_upload() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/classify.py").run()
    at.segmented_control(key="classify_source").set_value("upload").run()
    return at


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def _mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the 'encrypted' bit of one member in its local and central headers (zipfile cannot encrypt)."""
    out = bytearray(data)
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = out.find(signature)
        while start != -1:
            if out[start + name_at : start + name_at + len(name)] == name.encode():
                out[start + flag_at] |= 0x01
            start = out.find(signature, start + 4)
    return bytes(out)


# ----------------------------------------------------------------------------------------------------------
# Classify page


def test_a_nul_upload_is_scored_on_its_clean_sequences_only() -> None:
    at = _classify_upload()
    data = b"junction_aa\nCASS\x00\x00\x00LGQF\nCASSLGQAYEQYF\x00\n\x00\x00\x00\x00\nCASSLGQAYEQYF\n"
    at.file_uploader(key="classify_files").set_value(("nul.tsv", data, "text/plain")).run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["n_sequences"].tolist() == [1]
    assert any("3 with characters outside the 20 amino acids" in c.value for c in at.caption)


def test_a_gzip_bomb_upload_is_refused_while_it_streams(monkeypatch) -> None:
    from explorer import settings

    monkeypatch.setattr(settings, "MAX_UPLOAD_INFLATED_BYTES", 4 << 20)  # the real limit is 512 MB; same code path
    bomb = gzip.compress(b"junction_aa\tduplicate_count\n" + b"CASSLGQAYEQYF\t3\n" * 600_000)  # 9.6 MB inflated
    at = _classify_upload()
    at.file_uploader(key="classify_files").set_value(("bomb.tsv.gz", bomb, "application/gzip")).run()
    assert not at.exception
    assert at.error and "bomb.tsv.gz holds more than 4 MB once decompressed" in at.error[0].value
    assert not at.dataframe


def test_the_upload_help_states_the_limits() -> None:
    at = _classify_upload()
    help_text = at.file_uploader(key="classify_files").help
    assert "512 MB" in help_text and "5,000,000 rows once decompressed" in help_text


def test_a_labels_file_with_an_id_column_named_repertoire_shows_the_labels() -> None:
    at = _classify_upload()
    data = (SINGLE / "patient_A_airr.tsv").read_bytes()
    at.file_uploader(key="classify_files").set_value(("patient_A_airr.tsv", data, "text/plain")).run()
    labels = b"repertoire\tdisease\npatient_A_airr.tsv\tpositive\n"
    at.file_uploader(key="classify_metadata").set_value(("labels.tsv", labels, "text/plain")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert table["true disease"].tolist() == ["positive"]


# ----------------------------------------------------------------------------------------------------------
# Zip uploads (Train page)


def _refused(data: bytes, tmp_path: Path, *words: str) -> str:
    from explorer import archive

    destination = tmp_path / "dataset_x"
    with pytest.raises(DeepRCError) as info:
        archive.safe_extract_zip(data, destination)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert str(tmp_path) not in message and "/tmp" not in message  # no server path
    assert not destination.exists()  # nothing left half-extracted
    return message


META = b"ID\tdisease\nr1.tsv\tpositive\n"
REP = b"junction_aa\nCASSLGQF\n"


def test_a_damaged_zip_entry_is_named_and_nothing_is_left(tmp_path) -> None:
    data = bytearray(_zip({"data/metadata.tsv": META, "data/r1.tsv": REP * 50}))
    at = data.find(b"CASSLGQF\njunction_aa")  # a byte inside the stored second member
    data[at] ^= 0x20
    _refused(bytes(data), tmp_path, "damaged", "data/r1.tsv")


def test_an_encrypted_zip_is_refused(tmp_path) -> None:
    _refused(_mark_encrypted(_zip({"metadata.tsv": META, "r1.tsv": REP}), "r1.tsv"), tmp_path, "password-protected")


@pytest.mark.parametrize(
    "members",
    [
        {"data/metadata.tsv": META, "data/r1.tsv": REP, "data\\r1.tsv": REP},
        {"data/metadata.tsv": META, "data/r1": REP, "data/r1/r2.tsv": REP},
    ],
    ids=["same-name", "file-and-folder"],
)
def test_clashing_names_are_refused_before_extraction(tmp_path, members) -> None:
    _refused(_zip(members), tmp_path, "twice (or as both a file and a folder)")


def test_too_many_repertoire_files_are_refused_from_the_directory(tmp_path, monkeypatch) -> None:
    from explorer import settings

    opened = []

    def _open(*args, **kwargs):
        opened.append(args)
        raise AssertionError("a member was read")

    members = {
        "metadata.tsv": META,
        **{f"repertoires/r{i}.tsv": REP for i in range(settings.MAX_TRAIN_REPERTOIRES + 1)},
    }
    data = _zip(members)
    monkeypatch.setattr(zipfile.ZipFile, "open", _open)
    _refused(data, tmp_path, f"{settings.MAX_TRAIN_REPERTOIRES + 1:,} repertoire files", "command line")
    assert opened == []  # refused from the zip's directory, before one member was read


def test_the_train_page_refuses_a_damaged_zip_and_keeps_the_session_folder_clean() -> None:
    data = bytearray(_zip({"d/metadata.tsv": META, "d/r1.tsv": REP * 50}))
    data[data.find(b"CASSLGQF\njunction_aa")] ^= 0x20
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/train.py").run()
    at.segmented_control(key="train_source").set_value("upload").run()
    at.file_uploader(key="train_files").set_value(("d.zip", bytes(data), "application/zip")).run()
    assert not at.exception
    assert at.error and "damaged" in at.error[0].value and "Something went wrong" not in at.error[0].value
    folder = at.session_state["session_folder"].path
    assert [p.name for p in folder.iterdir() if p.name.startswith("dataset_")] == []
