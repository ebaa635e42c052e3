"""Safe names and atomic writes for everything RefVideo saves.

A file is written to a temporary name in its final folder, flushed, then renamed over the
target, so a crash or interrupt never leaves a half-written file. Asset names (reference
sets, style skills, accounts) are validated before they become file names.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporary files are judged by age alone
    fcntl = None  # type: ignore[assignment]

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


PARTIAL = ".partial"  # temporary names end in it (before the extension): ".<stem>.<random>.partial<ext>"
STALE_AFTER = 24 * 3600.0  # without flock (Windows): an older temporary file is taken for a dead writer's


class Staging:
    """A temporary file or folder beside its target, locked by this writer while it is written.

    ``path`` is where the finished result went (the target, or with ``exclusive`` the next free
    counter). The lock (``flock`` on the temporary entry) tells :func:`remove_stale_partials` that
    a writer is alive; the kernel drops it when the process dies, however it dies.
    """

    def __init__(self, target: Path, *, folder: bool, tag: str = "") -> None:
        self.target = target
        self.path = target
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{target.name if folder else target.stem}.{tag + '.' if tag else ''}"
        suffix = f"{PARTIAL}{'' if folder else target.suffix}"
        while True:
            if folder:
                self.tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
                self._fd: int | None = os.open(self.tmp, os.O_RDONLY)
            else:
                self._fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
                self.tmp = Path(name)
            if fcntl is None:
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:  # a clean-up may have taken it for a dead writer's in the moment before the lock
                if os.stat(self.tmp).st_ino == os.fstat(self._fd).st_ino:
                    return
            except FileNotFoundError:
                pass
            os.close(self._fd)

    def finish(self, *, exclusive: bool, taken: Callable[[Path], bool] | None = None) -> Path:
        if not self.tmp.exists():
            raise StorageError(f"nothing was written for {self.target}.")
        if self.tmp.is_file():
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        usual_permissions(self.tmp)
        if exclusive:
            self.path = place_new(self.tmp, self.target, taken=taken)
        else:
            os.replace(self.tmp, self.target)
        return self.path

    def discard(self) -> None:
        _remove(self.tmp)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def staged(target: str | os.PathLike, *, folder: bool = False, exclusive: bool = False,
           taken: Callable[[Path], bool] | None = None, tag: str = "") -> Iterator[Staging]:
    """Yield a :class:`Staging` for ``target``; on success move it into place (with ``exclusive``, never
    over an existing name: the next counter instead, see :func:`place_new` for ``taken``), on any
    exception (interrupts included) remove it. ``tag`` (letters, digits, ``-``) goes into the
    temporary name, so whoever finds it left behind knows what it was for."""
    staging = Staging(Path(target), folder=folder, tag=tag)
    try:
        yield staging
        staging.finish(exclusive=exclusive, taken=taken)
    except BaseException:
        staging.discard()
        raise
    finally:
        staging.close()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception (an interrupt included) the temporary file is removed and nothing
    appears at ``target``.
    """
    with staged(target) as staging:
        yield staging.tmp


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it onto ``target`` on success, remove it on failure."""
    with staged(target, folder=True) as staging:
        yield staging.tmp


def check_target(path: str | os.PathLike, *, folder: bool = False, input_name: str) -> Path:
    """Refuse, before any work, a place nothing can be written to: ``path`` exists as the wrong kind
    (a folder where a file goes, or the reverse) or one of its parents is a file."""
    path = Path(path)
    wanted = "a folder" if folder else "a file"
    if path.exists() and path.is_dir() != folder:
        raise InputError(f"{path} exists and is {'a file' if folder else 'a folder'}, not {wanted}.",
                         input=input_name, fix="Choose another name, or move it away first.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{parent} is a file, so {path} cannot be written.", input=input_name,
                                 fix="Choose another place, or move that file away first.")
            break
    return path


@contextmanager
def name_lock(folder: str | os.PathLike, name: str, *, shared: bool = False) -> Iterator[None]:
    """Hold ``<folder>/.<name>.lock`` while an asset of that name is written (exclusive) or read (shared),
    so that two saves of one name, or a save and a load, never interleave. The lock file is hidden (no
    saved name starts with a dot) and stays; where it cannot be made (a read-only library) reading
    goes ahead without it. Without ``flock`` (Windows) there is no lock."""
    if fcntl is None:
        yield
        return
    path = Path(folder) / f".{name}.lock"
    try:
        if not shared:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_partial(name: str) -> bool:
    """Whether ``name`` is a temporary name of :class:`Staging` (hidden, with ``.partial``)."""
    return name.startswith(".") and PARTIAL in name


def remove_stale_partials(folder: str | os.PathLike, *, recursive: bool = True, limit: int = 100_000) -> list[Path]:
    """Remove temporary files and folders that no live writer holds (left by a crash, a kill or a power
    cut) under ``folder``; returns what was removed. A writer's own temporary entry is locked while it
    writes (and a writer that finds its new entry taken before it locked it makes another), so another
    process's work in progress is never touched. Without ``flock`` (Windows) only entries older than
    a day are removed."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    seen = 0
    for current, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            seen += 1
            if is_partial(name) and _is_stale(Path(current, name)):
                path = Path(current, name)
                _remove(path)
                removed.append(path)
        dirs[:] = [d for d in dirs if not is_partial(d)] if recursive else []
        if seen > limit:
            break
    return removed


def _is_stale(path: Path) -> bool:
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return False
    if path.is_symlink():
        return False
    if fcntl is None:
        return age > STALE_AFTER
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a live writer holds it
    finally:
        os.close(fd)


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


MAX_JSON_DEPTH = 100  # deeper nesting is no file RefVideo writes, and would exhaust Python's recursion


def parse_json(text: str) -> Any:
    """``json.loads`` for text from outside: ValueError with a readable reason for anything that is not
    plain JSON (bad syntax, nesting deeper than :data:`MAX_JSON_DEPTH`, an integer of thousands of digits)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"it is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise ValueError(str(exc).split(";")[0]) from None
    stack, depth = [(data, 1)], 1
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"it is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return data


def read_text_file(path: str | os.PathLike) -> str:
    """A text file's contents as UTF-8 (a byte-order mark is allowed); ValueError naming the problem for
    text in another encoding (UTF-16) or a binary file, OSError when it cannot be read."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        kind = "UTF-16 text" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8 text"
        raise ValueError(f"it is {kind}; save it as UTF-8") from None


def read_json(path: str | os.PathLike, *, what: str, fix: str) -> Any:
    """Read a JSON file or raise :class:`StorageError` that names the file and the fix."""
    path = Path(path)
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        raise StorageError(f"the {what} file {path} does not exist.", fix=fix) from None
    except (OSError, ValueError) as exc:
        raise StorageError(f"the {what} file {path} cannot be read ({exc}).", fix=fix) from None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise StorageError(f"the {what} file {path} is not valid JSON ({exc}).", fix=fix) from None


@cache
def read_data(name: str) -> Any:
    """A JSON data file bundled in ``engine/data/`` (read once per process; do not modify the result)."""
    return read_json(DATA_DIR / name, what="RefVideo data", fix="Reinstall RefVideo.")


COUNTER_DIGITS = 5
NAME_MAX_BYTES = 255  # the longest file name most file systems take
_TEMP_OVERHEAD = 40  # what a temporary name adds to a final one: ".", ".<random>.partial", the lock's suffix


def unique_path(folder: str | os.PathLike, stem: str, extension: str) -> Path:
    """The first ``stem_00001.ext`` style name in ``folder`` that does not exist yet.

    Only a suggestion when writers run at once: claim it with :func:`place_new`, which moves on to
    the next counter when another writer took the name first.
    """
    folder = Path(folder)
    counter = 1
    pattern = re.compile(re.escape(stem) + r"_(\d{5})")
    if folder.is_dir():
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match:
                counter = max(counter, int(match.group(1)) + 1)
    while True:
        candidate = folder / f"{stem}_{counter:0{COUNTER_DIGITS}d}{extension}"
        if not os.path.lexists(candidate):
            return candidate
        counter += 1


def next_counter(path: Path) -> Path:
    """``stem_00002.ext`` after ``stem_00001.ext`` (``name (2).ext`` after ``name (1).ext``)."""
    stem, ext = _split_extension(path)
    match = re.fullmatch(r"(.*)_(\d{5,})", stem) or re.fullmatch(r"(.*) \((\d+)\)", stem)
    if match is None:
        return path.with_name(f"{stem} (1){ext}")
    number = int(match.group(2)) + 1
    if stem.endswith(")"):
        return path.with_name(f"{match.group(1)} ({number}){ext}")
    return path.with_name(f"{match.group(1)}_{number:0{len(match.group(2))}d}{ext}")


def _split_extension(path: Path) -> tuple[str, str]:
    name = path.name
    stem, ext = os.path.splitext(name)
    return (stem, ext) if not name.startswith(".") else (name, "")


def place_new(tmp: Path, target: Path, *, taken: Callable[[Path], bool] | None = None) -> Path:
    """Move the finished ``tmp`` (file or folder) to ``target`` without ever replacing anything there;
    when another writer holds that name, the next counter (:func:`next_counter`). Returns where it went.

    Files are claimed with a hard link (create-exclusive on every local file system), folders by
    creating the final folder first and renaming onto the empty folder just made. ``taken(path)``,
    when given, may accept an existing ``path`` as this very content (the caller then keeps it and
    ``tmp`` is removed).
    """
    while True:
        if taken is not None and os.path.lexists(target) and taken(target):
            _remove(tmp)
            return target
        try:
            if tmp.is_dir() and os.name == "nt":
                os.rename(tmp, target)  # Windows never replaces on rename: FileExistsError when taken
            elif tmp.is_dir():
                os.mkdir(target)
                os.replace(tmp, target)  # onto the empty folder this writer just created
            else:
                _link_exclusive(tmp, target)
            return target
        except FileExistsError:
            target = next_counter(target)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            target = next_counter(target)


def _link_exclusive(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` only if that name is free (FileExistsError otherwise)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:  # a file system without hard links: claim the name, then fill it
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
