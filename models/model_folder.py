"""A diffusers model folder on disk: checks before loading, sizes and a fingerprint.

Everything here reads small files only (``model_index.json``, component configs and the
JSON headers of safetensors files), so the loader can refuse a broken folder and the memory
plan can count parameters in milliseconds, before any weight is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from functools import lru_cache
from pathlib import Path

from ..engine import host
from ..engine.errors import InputError, ModelNotFound
from ..engine.paths import relative_parts

UNSAFE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".msgpack", ".h5")
_MAX_HEADER = 100 * 1024 * 1024
_SAMPLE = 64 * 1024


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # unreadable: skipped, never fatal for the node list
        return []


def model_roots() -> list[Path]:
    """Folders searched for model folders, in order (first match of a name wins)."""
    roots: list[Path] = []
    for kind in ("diffusers", "refvideo"):
        for root in host.model_dirs(kind):
            if root not in roots:
                roots.append(root)
    return roots


def pipeline_folders(root: Path) -> list[tuple[str, Path]]:
    """Pipeline folders in ``root``: ``name/`` and ``org/name/`` that hold a ``model_index.json``.

    Folders may be symbolic links (big weights often live on another disk).
    """
    found: list[tuple[str, Path]] = []
    for child in _subfolders(root):
        if (child / "model_index.json").is_file():
            found.append((child.name, child))
            continue
        found.extend((f"{child.name}/{g.name}", g) for g in _subfolders(child) if (g / "model_index.json").is_file())
    return found


def pipeline_class(folder: Path) -> str | None:
    """The ``_class_name`` in a folder's ``model_index.json``, or None when it cannot be read."""
    try:
        data = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("_class_name") if isinstance(data, dict) else None


def entry_in(roots: list[Path], name: str, *, input_name: str, kind: str = "dir") -> Path | None:
    """``root/name`` for the first root that has it (a folder, or a file with ``kind="file"``).

    ``name`` must be a relative name without ``..``; the entry itself may be a symbolic link
    placed in the model folder (so a model kept on another disk can be linked in).
    """
    parts, problem = relative_parts(str(name))
    if problem or not parts or ":" in parts[0]:
        raise InputError(f"'{name}' is not a model name.", input=input_name,
                         fix="Choose an entry from the list (a folder or file inside a models folder).")
    for root in roots:
        candidate = Path(root, *parts)
        if candidate.is_dir() if kind == "dir" else candidate.is_file():
            return candidate
    return None


def read_index(folder: Path, *, name: str) -> dict:
    """The folder's ``model_index.json`` or a clear error."""
    path = folder / "model_index.json"
    if not path.is_file():
        raise ModelNotFound(f"'{name}' ({folder}) has no model_index.json, so it is not a diffusers pipeline folder.",
                            input="model", fix="Download the '-diffusers' version of the model (a folder with "
                            "model_index.json and one subfolder per component); see docs/models.md.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"'{name}': model_index.json cannot be read ({exc}).", input="model",
                            fix="Download the model folder again.") from None
    if not isinstance(data, dict):
        raise ModelNotFound(f"'{name}': model_index.json is not a JSON object.", input="model",
                            fix="Download the model folder again.")
    return data


def components(index: dict) -> dict[str, tuple[str, str]]:
    """``{component: (library, class)}`` for the components the index names (nulls skipped)."""
    found = {}
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, (list, tuple)) or len(value) != 2:
            continue
        if value[0] is None or value[1] is None:
            continue
        found[key] = (str(value[0]), str(value[1]))
    return found


def safetensors_files(component_dir: Path) -> list[Path]:
    """The weight files of a component: its ``*.safetensors`` (all shards of an index)."""
    indexes = sorted(component_dir.glob("*.safetensors.index.json"))
    if indexes:
        try:
            shards = sorted(set(json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [component_dir / s for s in shards]
    return sorted(component_dir.glob("*.safetensors"))


def validate(folder: Path, *, name: str, supported: tuple[str, ...], weight_components: tuple[str, ...]) -> dict:
    """Check a pipeline folder before loading: index, supported class, component files, safetensors only.

    Returns the parsed ``model_index.json``.
    """
    index = read_index(folder, name=name)
    cls = index.get("_class_name")
    if cls not in supported:
        raise ModelNotFound(f"'{name}' is a {cls or 'unknown'} pipeline, which RefVideo does not run.",
                            input="model", fix=f"Use a folder whose pipeline is one of: {', '.join(supported)}.")
    comps = components(index)
    for comp in weight_components:
        if comp in index and comp not in comps:
            continue  # declared null: an optional component that is absent on purpose
        if comp not in comps:
            raise ModelNotFound(f"'{name}': model_index.json names no '{comp}' component.", input="model",
                                fix="Download the complete diffusers folder of the model.")
    for comp in comps:
        _check_component(folder / comp, comp, name=name, needs_weights=comp in weight_components)
    return index


def _check_component(path: Path, comp: str, *, name: str, needs_weights: bool) -> None:
    if not path.is_dir() or not any(path.iterdir()):
        raise ModelNotFound(f"'{name}': the component folder '{comp}/' is missing or empty.", input="model",
                            fix="Download the complete diffusers folder of the model (every subfolder).")
    if not (needs_weights or (path / "config.json").is_file()):
        return
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"'{name}': '{comp}/config.json' is missing.", input="model",
                            fix="Download the complete diffusers folder of the model.")
    files = safetensors_files(path)
    missing = [f.name for f in files if not f.is_file()]
    if files and not missing:
        return
    if missing:
        raise ModelNotFound(f"'{name}': weight shards missing in '{comp}/': {', '.join(missing[:4])}.",
                            input="model", fix="Finish the download of the model folder.")
    unsafe = sorted(p.name for p in path.iterdir() if p.suffix in UNSAFE_WEIGHTS)
    if unsafe:
        raise ModelNotFound(f"'{name}': '{comp}/' has only pickle-format weights ({', '.join(unsafe[:3])}); "
                            "RefVideo loads safetensors only, which cannot run code.", input="model",
                            fix="Download the safetensors version of the model.")
    raise ModelNotFound(f"'{name}': '{comp}/' has no .safetensors weights.", input="model",
                        fix="Download the complete diffusers folder of the model.")


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ModelNotFound(f"{path} is not a safetensors file.", input="model",
                                fix="Download the model folder again.")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise ModelNotFound(f"{path} has an implausible safetensors header.", input="model",
                                fix="Download the model folder again.")
        try:
            return json.loads(fh.read(size))
        except ValueError:
            raise ModelNotFound(f"{path} has a corrupt safetensors header.", input="model",
                                fix="Download the model folder again.") from None


def parameter_counts(component_dir: Path) -> tuple[int, int]:
    """``(total parameters, largest tensor)`` of a component, from its safetensors headers."""
    total = largest = 0
    for file in safetensors_files(component_dir):
        for key, info in read_header(file).items():
            if key == "__metadata__":
                continue
            n = math.prod(info.get("shape", [])) if info.get("shape") else 1
            total += n
            largest = max(largest, n)
    return total, largest


def read_config(folder: Path, comp: str) -> dict:
    path = folder / comp / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def fingerprint(folder: Path) -> str:
    """A short content fingerprint of a model folder (configs, headers and sampled weight bytes).

    Reads a few hundred KiB, not the weights: the index and configs, each safetensors header,
    size and its first and last 64 KiB of tensor data. Cached by path, size and mtime.
    """
    stats = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".txt", ".model")):
            st = path.stat()
            stats.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return _fingerprint(str(folder), tuple(stats))


@lru_cache(maxsize=64)
def _fingerprint(folder: str, stats: tuple) -> str:
    digest = hashlib.sha256()
    for rel, size, _mtime in stats:
        digest.update(f"{rel}\0{size}\0".encode())
        path = os.path.join(folder, rel)
        with open(path, "rb") as fh:
            if not rel.endswith(".safetensors"):
                digest.update(fh.read())
                continue
            raw = fh.read(8)
            header = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
            digest.update(raw + fh.read(min(header, _MAX_HEADER) + _SAMPLE))
            if size - fh.tell() > 0:
                fh.seek(max(fh.tell(), size - _SAMPLE))
                digest.update(fh.read(_SAMPLE))
    return "sha256:" + digest.hexdigest()[:16]
