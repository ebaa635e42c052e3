"""One shot as a self-contained job: what a worker needs to render it, and what it hands back.

:class:`ShotTask` carries everything by value (the model's name and options, the reference
pixels, the style, the first frames of a continuation), so it renders the same in this process
or on a Ray worker on another machine. :func:`render_shot` runs the sampler's engine with no
budget (the driver owns the ledger), applies the task's frame filters, encodes the clip into a
temporary folder and returns its bytes with the generation info; it never touches the output
folder or the ledger.

The manifest of a shot (:func:`shot_manifest`) lists every setting that changes its pixels:
the references' pixel and matte hashes, prompt, seed, model and loader options, size, duration,
format, style, frame filters and the digest of the shot it continues from. Its digest is stored
in the clip (generation info key ``sequence``), so a resumed render recognises a clip made with
the same settings.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ...engine.errors import InputError
from ...engine.references.library import mask_sha256
from ...engine.references.reference import ReferenceSet
from ...engine.style import StyleDirection
from ...engine.video.encoder import encode_video, get_format
from ...engine.video.manifest import container_metadata, read_manifest
from ..generation import DEFAULT_CONTINUE_FRAMES, SamplerInputs, generate

if TYPE_CHECKING:
    from ...models.spec import LoadOptions
    from .plan import PreparedShot

SEQUENCE_KEY = "sequence"


class FrameFilter(Protocol):
    """A step applied to a shot's frames after rendering and before encoding (e.g. a colour anchor).

    It must be picklable (it travels to Ray workers); :meth:`settings` goes into the shot's
    manifest, so changing it re-renders the shot on resume.
    """

    name: str

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, frames: np.ndarray, shot: str) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class ShotTask:
    """Everything one shot's render needs, by value."""

    sequence: str
    name: str
    model: str
    options: LoadOptions
    references: ReferenceSet
    style: StyleDirection | None
    prompt: str
    seed: int
    steps: int
    resolution: str
    aspect: str
    duration: float
    format: str
    first_frames: np.ndarray | None
    manifest: dict
    digest: str
    filters: tuple[FrameFilter, ...] = ()
    needs_accelerator: bool = True  # False for previz: a Ray task then asks for no GPU

    @property
    def file_name(self) -> str:
        return shot_file_name(self.name, self.format)


@dataclass(frozen=True)
class ShotOutput:
    """A rendered shot: the encoded clip's bytes and its generation info (with the manifest)."""

    name: str
    data: bytes
    info: dict
    seconds: float


def shot_file_name(name: str, format: str) -> str:
    """``<shot>.mp4`` (or the format's own extension): fixed, so a resumed render finds it."""
    return f"{name}{get_format(format).extension}"


def shot_manifest(prepared: PreparedShot, parent_digest: str | None,
                  filters: tuple[FrameFilter, ...] = ()) -> dict:
    """Every setting that changes the shot's pixels (see the module docstring)."""
    shot, options = prepared.shot, prepared.handle.options.describe()
    options.pop("keep_loaded", None)
    return {
        "shot": shot.name,
        "model": prepared.handle.name,
        "options": options,
        "references": [{"hash": r.sha256, "matte": mask_sha256(r.mask), "role": r.role, "label": r.label}
                       for r in prepared.references],
        "style": prepared.style.describe() if prepared.style else None,
        "prompt": shot.prompt,
        "seed": shot.seed,
        "steps": shot.steps,
        "resolution": shot.resolution,
        "aspect": shot.aspect,
        "duration": shot.duration,
        "format": shot.format,
        "continues": {"from": shot.continue_from, "digest": parent_digest, "frames": DEFAULT_CONTINUE_FRAMES}
        if shot.continue_from else None,
        "filters": [{"name": f.name, **f.settings()} for f in filters],
    }


def digest(manifest: dict) -> str:
    """The manifest's hash (canonical JSON, sorted keys)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_digest(path: Path) -> str | None:
    """The manifest digest stored in a written shot, or None (no file, another file, unreadable)."""
    if not path.is_file():
        return None
    try:
        return (read_manifest(path).get(SEQUENCE_KEY) or {}).get("digest")
    except (InputError, AttributeError):
        return None


def render_shot(task: ShotTask, references: ReferenceSet | None = None) -> ShotOutput:
    """Render, filter and encode one shot; returns the clip's bytes (see the module docstring).

    ``references``, when given, replaces the task's own (Ray sends a set that many shots share once,
    beside the tasks)."""
    from ...models.registry import resolve

    started = time.perf_counter()
    result = generate(SamplerInputs(
        model=resolve(task.model, task.options), references=references if references is not None else task.references,
        prompt=task.prompt, seed=task.seed,
        steps=task.steps, resolution=task.resolution, aspect=task.aspect, duration=task.duration, style=task.style,
        first_frames=task.first_frames, continue_frames=DEFAULT_CONTINUE_FRAMES))
    frames = result.frames
    for step in task.filters:
        frames = step(frames, task.name)
    info = {**result.info, SEQUENCE_KEY: {"name": task.sequence, "shot": task.name, "digest": task.digest,
                                          "manifest": task.manifest}}
    with tempfile.TemporaryDirectory(prefix="refvideo-shot-") as folder:
        target = Path(folder) / task.file_name
        encode_video(frames, result.fps, target, format=task.format, metadata=container_metadata(info),
                     progress=f"Encoding {task.name}")
        data = target.read_bytes()
    return ShotOutput(task.name, data, info, time.perf_counter() - started)
