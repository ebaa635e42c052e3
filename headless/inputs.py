"""Bring a user's own files into the run's input folder (``refvideo run --input FILE``).

A file lands under its own name; when a different file of that name is already there it is
stored as ``name (1).ext`` (as ComfyUI's upload does) and the workflow's inputs that named the
original are pointed at the stored name, so nothing in the input folder is overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine.errors import InputError
from ..engine.storage import file_sha256, staged


def stored_name(folder: Path, source: Path) -> tuple[str, bool]:
    """The name ``source`` gets in ``folder`` and whether an identical copy is already there."""
    digest = file_sha256(source)
    stem, ext = os.path.splitext(source.name)
    candidate, counter = source.name, 0
    while (folder / candidate).exists():
        if (folder / candidate).is_file() and file_sha256(folder / candidate) == digest:
            return candidate, True
        counter += 1
        candidate = f"{stem} ({counter}){ext}"
    return candidate, False


def same_file_as(source: Path) -> Callable[[Path], bool]:
    """Whether a path holds the same bytes as ``source`` (an identical copy is reused, not duplicated)."""
    digest = file_sha256(source)
    return lambda path: path.is_file() and file_sha256(path) == digest


def input_files(files: list[str]) -> list[Path]:
    """The ``--input`` files as paths, refusing any that is not a readable file."""
    paths = []
    for item in files:
        source = Path(item).expanduser()
        if not source.is_file():
            raise InputError(f"'{item}' is not a readable file.", input="--input",
                             fix="Give the path of an image file to bring into the run.")
        paths.append(source)
    return paths


def bring_inputs(files: list[str], folder: Path) -> dict[str, str]:
    """Copy each file into ``folder``; return ``{original name: stored name}``.

    The stored name is claimed without replacing anything: when another run stores a different
    file of that name at the same moment, this one takes the next ``name (N).ext``.
    """
    renamed: dict[str, str] = {}
    for source in input_files(files):
        folder.mkdir(parents=True, exist_ok=True)
        name, present = stored_name(folder, source)
        if not present:
            with staged(folder / name, exclusive=True, taken=same_file_as(source)) as staging:
                staging.tmp.write_bytes(source.read_bytes())
            name = staging.path.name
        renamed[source.name] = name
    return renamed


def point_inputs_at(workflow: dict[str, Any], renamed: dict[str, str]) -> list[tuple[str, str, str]]:
    """Replace constant inputs equal to an original name by its stored name; list the changes."""
    changes = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key, value in (inputs if isinstance(inputs, dict) else {}).items():
            if isinstance(value, str) and value in renamed and renamed[value] != value:
                node["inputs"][key] = renamed[value]
                changes.append((node_id, key, renamed[value]))
    return changes
