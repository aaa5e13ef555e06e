"""Uploaded datasets on disk: a zip checked from its directory and extracted safely, or loose repertoire files
and a metadata table written as a dataset folder. No streamlit here: an upload is anything with ``.name`` and
``.getvalue()``; limits are read from :mod:`explorer.settings` at call time."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Protocol

from deeprc_core.errors import DeepRCError
from deeprc_core.io import is_repertoire_file_name
from explorer import settings

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class Upload(Protocol):
    """What an uploaded file offers (Streamlit's ``UploadedFile`` does)."""

    name: str

    def getvalue(self) -> bytes: ...


def safe_name(name: str) -> str:
    """A file name without directories or unusual characters ("" when nothing is left)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return _SAFE.sub("_", base).lstrip(".")


def upload_digest(files: list[Upload], metadata: Upload | None) -> str:
    """A short hash naming a set of uploads (names and contents), the key of the dataset built from them."""
    digest = hashlib.sha256()
    for file in [*files, *([metadata] if metadata is not None else [])]:
        digest.update(file.name.encode() + b"\0")
        digest.update(hashlib.sha256(file.getvalue()).digest())
    return digest.hexdigest()[:16]


def _check_member(m: zipfile.ZipInfo, parts: tuple[str, ...], files: set, folders: set) -> None:
    """Refuse one member from what the zip's directory says about it."""
    name = m.filename.replace("\\", "/")
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or "\0" in name or not parts:
        raise DeepRCError(f"The zip contains an unsafe path ({m.filename!r}); it was not extracted.")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise DeepRCError(f"The zip contains a symbolic link ({m.filename!r}); it was not extracted.")
    if m.flag_bits & 0x1:
        raise DeepRCError(
            f"The zip is password-protected ({m.filename!r} is encrypted); upload a zip without a password."
        )
    if m.compress_type not in _COMPRESSIONS:
        raise DeepRCError(
            f"{m.filename!r} in the zip uses a compression method this server cannot unpack; re-create the zip "
            "with standard (deflate) compression."
        )
    if parts in files or parts in folders or any(parts[:i] in files for i in range(1, len(parts))):
        raise DeepRCError(f"The zip holds {m.filename!r} twice (or as both a file and a folder); it was not extracted.")


def _zip_members(data: bytes) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo], list[tuple[str, ...]]]:
    """Open an uploaded zip and check everything its directory tells, before one byte is extracted: the
    members (macOS metadata left out) and each one's path parts."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise DeepRCError("The uploaded file is not a valid zip archive.") from exc
    members = [
        m
        for m in infos
        if not m.is_dir()
        and not m.filename.startswith("__MACOSX/")
        and not PurePosixPath(m.filename).name.startswith("._")
    ]
    if len(members) > settings.MAX_ZIP_MEMBERS:
        raise DeepRCError(f"The zip holds {len(members):,} files; at most {settings.MAX_ZIP_MEMBERS:,} are accepted.")
    n_repertoires = sum(is_repertoire_file_name(PurePosixPath(m.filename).name) for m in members)
    if n_repertoires > settings.MAX_TRAIN_REPERTOIRES:
        raise DeepRCError(
            f"The zip holds {n_repertoires:,} repertoire files; training in the app is limited to "
            f"{settings.MAX_TRAIN_REPERTOIRES:,}. Use the command line: {settings.CLI_TRAIN}"
        )
    declared = sum(m.file_size for m in members)
    if declared > settings.MAX_ZIP_BYTES:
        raise DeepRCError(
            f"The zip unpacks to {declared / 2**30:.1f} GiB; at most {settings.MAX_ZIP_BYTES / 2**30:.0f} GiB are "
            "accepted in the app. Train on large datasets with the command line."
        )
    paths: list[tuple[str, ...]] = []
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for m in members:
        parts = PurePosixPath(m.filename.replace("\\", "/")).parts
        _check_member(m, parts, files, folders)
        files.add(parts)
        folders.update(parts[:i] for i in range(1, len(parts)))
        paths.append(parts)
    return archive, members, paths


def _extract_member(archive: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path, written: int) -> int:
    """Write one member to ``target``; returns the bytes written so far in all (refused beyond the limit)."""
    try:
        with archive.open(m) as src, open(target, "wb") as dst:
            while block := src.read(1 << 20):
                written += len(block)
                if written > settings.MAX_ZIP_BYTES:
                    raise DeepRCError("The zip unpacks to more data than it declares; it was not extracted.")
                dst.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DeepRCError(
            f"The zip is damaged: {m.filename!r} cannot be unpacked (it fails its checksum or is cut short). "
            "Create the zip again and upload it."
        ) from exc
    except OSError as exc:
        raise DeepRCError(
            f"{m.filename!r} could not be unpacked on the server ({exc.strerror or type(exc).__name__})."
        ) from exc
    return written


def safe_extract_zip(data: bytes, destination: Path) -> Path:
    """Extract an uploaded zip into ``destination`` after checking it; returns the dataset folder in it.

    Refused, from the zip's directory before anything is extracted: not a zip, more than
    ``settings.MAX_ZIP_MEMBERS`` files or ``settings.MAX_TRAIN_REPERTOIRES`` repertoire files, more than
    ``settings.MAX_ZIP_BYTES`` declared, absolute paths, ``..`` components, drive letters, symbolic links,
    encrypted entries, unknown compression and names that clash. While extracting: more bytes than declared, or
    a damaged entry (bad CRC). On every refusal ``destination`` is removed, so nothing is left half-extracted;
    no message names a server path.
    """
    archive, members, paths = _zip_members(data)
    root = destination.resolve()
    try:
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for m, parts in zip(members, paths):
            target = root / Path(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = _extract_member(archive, m, target, written)
        return dataset_root(root)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def dataset_root(folder: Path) -> Path:
    """The folder holding ``metadata.*``: ``folder`` itself or its single subfolder."""
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if any((candidate / f"metadata{ext}").is_file() for ext in (".tsv", ".csv", ".txt")):
            return candidate
    raise DeepRCError(
        "No metadata.tsv found. The dataset needs a metadata table named metadata.tsv (or .csv) whose first "
        "column is the repertoire file name or ID, next to the repertoire files or a repertoires/ folder."
    )


def write_dataset_files(files: list[Upload], metadata: Upload | None, destination: Path) -> Path:
    """Write several uploaded repertoire files and a metadata table as a dataset folder; returns the folder.

    Without ``metadata``, a file whose name starts with ``metadata`` is the table; without either, refused.
    """
    reps = destination / "repertoires"
    reps.mkdir(parents=True, exist_ok=True)
    meta_name = None
    for file in files:
        name = safe_name(file.name)
        if not name:
            continue
        if metadata is None and name.lower().startswith("metadata"):
            meta_name = name
            (destination / ("metadata" + Path(name).suffix)).write_bytes(file.getvalue())
            continue
        (reps / name).write_bytes(file.getvalue())
    if metadata is not None:
        suffix = Path(safe_name(metadata.name)).suffix or ".tsv"
        suffix = suffix if suffix in (".tsv", ".csv", ".txt") else ".tsv"
        (destination / f"metadata{suffix}").write_bytes(metadata.getvalue())
    elif meta_name is None:
        raise DeepRCError("Add the metadata table (first column: repertoire file name or ID; one column per label).")
    return destination


def zip_folder(folder: Path) -> bytes:
    """A folder as zip bytes, its files under the folder's name (for downloading a model)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()
