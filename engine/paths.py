"""Pack locations and the containment rule for every file a user names.

A file input is a path relative to an allowed root (the input folder, the pack's read-only
``samples/``, the output folder). It is resolved with ``realpath`` and must stay inside the
root by ``commonpath``: absolute paths, ``..`` and symlinks that lead outside are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

PACK_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = PACK_ROOT / "samples"
DATA_DIR = PACK_ROOT / "engine" / "data"  # the bundled JSON data files
WORKFLOWS_DIR = PACK_ROOT / "workflows"
API_WORKFLOWS_DIR = WORKFLOWS_DIR / "api"
SAMPLES_PREFIX = "samples/"


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when the real path of ``path`` is ``root`` or inside it."""
    real = os.path.realpath(path)
    real_root = os.path.realpath(root)
    try:
        return os.path.commonpath([real, real_root]) == real_root
    except ValueError:  # different drives on Windows
        return False


def relative_parts(name: str) -> tuple[list[str], str | None]:
    """``name`` split on ``/`` or ``\\`` (empty and ``.`` parts dropped), and why it is not a name
    relative to a folder: ``"absolute"`` (a root, drive or UNC path), ``"escapes"`` (a ``..`` part or a
    NUL character), or None when it is one."""
    text = name.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if os.path.isabs(name) or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return parts, "absolute"
    if ".." in parts or "\x00" in text:
        return parts, "escapes"
    return parts, None


def contained(root: str | os.PathLike, relative: str, *, input_name: str) -> Path:
    """Resolve ``relative`` under ``root`` or raise :class:`InputError` naming ``input_name``."""
    if not isinstance(relative, str) or not relative.strip():
        raise InputError("no file name was given.", input=input_name,
                         fix="Choose a file from the list.")
    parts, problem = relative_parts(relative)
    if problem == "absolute":
        raise InputError(f"absolute paths are not allowed ('{relative}').", input=input_name,
                         fix=f"Put the file in {root} and give its name relative to that folder.")
    if problem == "escapes":
        raise InputError(f"'{relative}' tries to leave its folder.", input=input_name,
                         fix=f"Give a file inside {root}.")
    candidate = Path(root, *parts)
    if not is_within(candidate, root):
        raise InputError(f"'{relative}' resolves outside {root}.", input=input_name,
                         fix=f"Give a file inside {root} (links leading out of it are refused).")
    return Path(os.path.realpath(candidate))


def pack_version() -> str:
    """The installed pack version, read from pyproject metadata or the source tree."""
    from importlib import metadata

    try:
        return metadata.version("comfyui-refvideo")
    except metadata.PackageNotFoundError:
        pass
    pyproject = PACK_ROOT / "pyproject.toml"
    if pyproject.is_file():
        for line in pyproject.read_text(encoding="utf-8").splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    return "0+unknown"
