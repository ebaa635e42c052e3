"""Safe names and atomic writes for everything RefVideo saves.

A file is written to a temporary name in its final folder, flushed, then renamed over the
target, so a crash or interrupt never leaves a half-written file. Asset names (reference
sets, style skills, accounts) are validated before they become file names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from .errors import InputError, StorageError
from .paths import DATA_DIR

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.,()+\-]*$")
_RESERVED = {
    "con", "prn", "aux", "nul", "none", "default_none",
    *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10)),
}


def validate_name(name: Any, *, kind: str, input_name: str = "name") -> str:
    """Return ``name`` stripped, or raise :class:`InputError` saying what a valid name is.

    Valid: 1-64 characters, starting with a letter or digit, then letters, digits, spaces
    and ``_ . , ( ) + -``; no path separators, no ``..``, not hidden, not a reserved
    device name (``CON``, ``NUL``, ...), not ending in a dot or space.
    """
    rule = (f"a {kind} name is 1-{MAX_NAME_LENGTH} characters: letters, digits, spaces and _ . , ( ) + -, "
            "starting with a letter or digit")
    if not isinstance(name, str):
        raise InputError(f"the {kind} name must be text, not {type(name).__name__}.", input=input_name, fix=rule)
    cleaned = name.strip()
    if not cleaned:
        raise InputError(f"the {kind} name is empty.", input=input_name, fix=f"Give a name: {rule}.")
    problems = []
    if len(cleaned) > MAX_NAME_LENGTH:
        problems.append(f"is {len(cleaned)} characters long")
    if "/" in cleaned or "\\" in cleaned:
        problems.append("contains a path separator")
    if ".." in cleaned:
        problems.append("contains '..'")
    if cleaned.startswith("."):
        problems.append("is hidden (starts with '.')")
    if cleaned.endswith("."):
        problems.append("ends with a dot")
    if cleaned.split(".")[0].strip().lower() in _RESERVED:
        problems.append("is a reserved name")
    if not problems and not _NAME_RE.match(cleaned):
        problems.append("contains characters that are not allowed")
    if problems:
        raise InputError(f"the {kind} name '{name}' " + " and ".join(problems) + ".", input=input_name,
                         fix=f"Use another name: {rule}.")
    return cleaned


def usual_permissions(path: Path) -> None:
    """Temporary files and folders are private (0600/0700); give a finished one the user's usual mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    if path.is_dir():
        for child in path.iterdir():
            if child.is_file():
                os.chmod(child, 0o666 & ~mask)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception (an interrupt included) the temporary file is removed and nothing
    appears at ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise StorageError(f"nothing was written for {target}.")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        usual_permissions(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it onto ``target`` on success, remove it on failure."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        usual_permissions(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, *, what: str, fix: str) -> Any:
    """Read a JSON file or raise :class:`StorageError` that names the file and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StorageError(f"the {what} file {path} does not exist.", fix=fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"the {what} file {path} cannot be read ({exc}).", fix=fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(
            f"the {what} file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            fix=fix,
        ) from None


@cache
def read_data(name: str) -> Any:
    """A JSON data file bundled in ``engine/data/`` (read once per process; do not modify the result)."""
    return read_json(DATA_DIR / name, what="RefVideo data", fix="Reinstall RefVideo.")


def unique_path(folder: str | os.PathLike, stem: str, extension: str) -> Path:
    """The first ``stem_00001.ext`` style name in ``folder`` that does not exist yet."""
    folder = Path(folder)
    counter = 1
    pattern = re.compile(re.escape(stem) + r"_(\d{5})")
    if folder.is_dir():
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match:
                counter = max(counter, int(match.group(1)) + 1)
    while True:
        candidate = folder / f"{stem}_{counter:05d}{extension}"
        if not candidate.exists():
            return candidate
        counter += 1
