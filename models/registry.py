"""Which video models exist, and the lazy handle (REFVIDEO_MODEL) the loader hands the sampler.

The combo lists ``previz`` (CPU animatic), ``tiny-random`` (test-only random weights), then
every diffusers folder under the model folders (``host.model_dirs("diffusers")`` and
``host.model_dirs("refvideo")``; ``org/name`` one level deeper also counts) whose
``model_index.json`` names a supported pipeline class.

Pipelines plug in with one module each: a module listed in :data:`FAMILY_MODULES` exposes
``FAMILY = PipelineFamily(...)`` naming the pipeline classes it runs, the components that
carry weights, a ``spec(name, folder)`` function and a ``load(handle)`` function. Such a
module imports ``family`` (the shared types), never this module.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from ..engine import host
from ..engine.errors import ModelNotFound
from ..engine.references.reference import ROLES
from ..engine.sizes import WAN_FRAMES
from . import model_folder
from .backend import VideoBackend
from .family import PREVIZ, TINY_RANDOM, PipelineFamily
from .spec import LoadOptions, ModelSpec, family_defaults

log = logging.getLogger("refvideo")

BUILTIN: tuple[str, ...] = (PREVIZ, TINY_RANDOM)
FAMILY_MODULES: tuple[str, ...] = ("wan_vace", "wan_vace_files")
AUDIO_PIPELINE_CLASSES: tuple[str, ...] = ("StableAudioPipeline",)  # run by models/audio.py
AUTO_TARGET = "auto"  # previz planned like Wan: 16 fps, 4k+1 frames
PREVIZ_SIZE_MULTIPLE = 2  # any even size: previz draws 1080p directly
LORA_SUFFIX = ".safetensors"


@lru_cache(maxsize=1)
def families() -> tuple[PipelineFamily, ...]:
    """The pipeline families, imported from :data:`FAMILY_MODULES` (cheap: no torch)."""
    return tuple(importlib.import_module(f".{m}", __package__).FAMILY for m in FAMILY_MODULES)


def family_for(class_name: str | None) -> PipelineFamily | None:
    for fam in families():
        if class_name in fam.pipeline_classes:
            return fam
    return None


def supported_classes() -> tuple[str, ...]:
    return tuple(c for fam in families() for c in fam.pipeline_classes)


# --------------------------------------------------------------------------- discovery


model_roots = model_folder.model_roots


def _pipelines(roots: list[Path], wanted: Callable[[str | None], bool]) -> dict[str, Path]:
    """``{name: folder}`` of the pipeline folders under ``roots`` whose pipeline class is ``wanted``."""
    models: dict[str, Path] = {}
    for root in roots:
        for name, folder in model_folder.pipeline_folders(root):
            if name in models or name in BUILTIN:
                continue
            if not wanted(model_folder.pipeline_class(folder)):
                log.debug("RefVideo: %s is not a supported pipeline here; not listed.", folder)
                continue
            models[name] = folder
    return models


def discover() -> dict[str, Path]:
    """``{name: folder}`` of the supported video pipeline folders found in :func:`model_roots`."""
    return _pipelines(model_roots(), lambda class_name: family_for(class_name) is not None)


def list_models() -> list[str]:
    """The loader's combo: ``previz``, ``tiny-random``, the model folders, then ``diffusion_models/<file>``."""
    from .comfy_files import transformer_choices

    return [*BUILTIN, *discover(), *transformer_choices()]


def discover_audio() -> dict[str, Path]:
    """``{name: folder}`` of the audio pipeline folders (Stable Audio) in the diffusers model folders."""
    return _pipelines(host.model_dirs("diffusers"), lambda class_name: class_name in AUDIO_PIPELINE_CLASSES)


def list_audio_models() -> list[str]:
    """The audio node's combo: ``tiny-random``, then the discovered audio model folders."""
    return [TINY_RANDOM, *discover_audio()]


def match_targets(models: list[str] | None = None) -> list[str]:
    """Choices for ``match_frames_of``: ``auto`` (Wan timing) and every non-previz model of ``models``."""
    return [AUTO_TARGET, *[m for m in (list_models() if models is None else models) if m != PREVIZ]]


def list_loras() -> list[str]:
    """``none`` plus every ``.safetensors`` file under the LoRA folders (relative names)."""
    names: list[str] = []
    for root in host.model_dirs("loras"):
        if not root.is_dir():
            continue
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a linked folder seen before (or a link loop): not again
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if fn.endswith(LORA_SUFFIX):
                    rel = Path(dirpath, fn).relative_to(root).as_posix()
                    if rel not in names:
                        names.append(rel)
    return ["none", *names]


def lora_path(name: str) -> Path | None:
    """The file of a LoRA named as in :func:`list_loras` (inside a LoRA folder; links allowed)."""
    if name in ("", "none"):
        return None
    if not name.endswith(LORA_SUFFIX):
        raise ModelNotFound(f"'{name}' is not a .safetensors LoRA.", input="lora",
                            fix="RefVideo loads LoRAs in safetensors format only; choose one from the list.")
    path = model_folder.entry_in(host.model_dirs("loras"), name, input_name="lora", kind="file")
    if path is not None:
        return path
    where = ", ".join(str(r) for r in host.model_dirs("loras"))
    raise ModelNotFound(f"the LoRA '{name}' was not found.", input="lora",
                        fix=f"Put the .safetensors file in one of: {where}.")


# --------------------------------------------------------------------------- the handle


@dataclass(frozen=True)
class ModelHandle:
    """The REFVIDEO_MODEL value: a validated model choice; weights load on :meth:`backend`."""

    name: str
    folder: Path | None = None
    options: LoadOptions = field(default_factory=LoadOptions)
    family: str = ""

    @property
    def spec(self) -> ModelSpec:
        """fps, frame rule, size multiple, roles, default steps/guidance: without loading."""
        return _spec(self.name, self.folder, self.family, self.options)

    @property
    def lora(self) -> Path | None:
        return lora_path(self.options.lora)

    def with_options(self, **changes: object) -> ModelHandle:
        return ModelHandle(self.name, self.folder, self.options.with_(**changes), self.family)

    def backend(self) -> VideoBackend:
        """Load (or take from the cache) and return the backend that renders with this model."""
        if self.name == PREVIZ:
            previz = _import_previz()
            return previz.PrevizBackend(render=self.options.render)
        if self.name == TINY_RANDOM:
            from . import tiny_random

            return tiny_random.load(self)
        fam = family_for(self.family)
        assert fam is not None, self.family
        return fam.load(self)


def _import_previz() -> ModuleType:
    try:
        return importlib.import_module(".previz", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.previz":
            raise
        raise ModelNotFound("the previz backend is not part of this installation.", input="model",
                            fix="Reinstall RefVideo, or choose a diffusion model.") from None


@lru_cache(maxsize=32)
def _spec(name: str, folder: Path | None, family: str, options: LoadOptions) -> ModelSpec:
    if name == PREVIZ:
        return _previz_spec(options.match_frames_of)
    if name == TINY_RANDOM:
        from .tiny_random import SPEC

        return SPEC
    fam = family_for(family)
    assert fam is not None and folder is not None
    return fam.spec(name, folder, options)


def _previz_spec(match_frames_of: str) -> ModelSpec:
    """previz, timed like the model whose control video it will be (``auto``: Wan, 16 fps, 4k+1)."""
    fps, rule = 16.0, WAN_FRAMES
    if match_frames_of not in (AUTO_TARGET, "", None):
        target = resolve(match_frames_of, input_name="match_frames_of").spec
        fps, rule = target.fps, target.frame_rule
    defaults = family_defaults("previz")
    return ModelSpec(name=PREVIZ, kind=PREVIZ, fps=fps, frame_rule=rule, size_multiple=PREVIZ_SIZE_MULTIPLE,
                     roles=frozenset(ROLES), default_steps=defaults.get("default_steps", 1),
                     default_guidance=defaults.get("default_guidance", 1.0), native_resolution="1080p",
                     family="previz", needs_weights=False,
                     description="2.5D animatic of the references on CPU: blocking and camera, no diffusion.")


def resolve(name: str, options: LoadOptions | None = None, *, input_name: str = "model") -> ModelHandle:
    """Validate a model choice and return its lazy handle; nothing is loaded.

    Refuses, naming ``input_name``: unknown names, folders without ``model_index.json``,
    unsupported pipeline classes, missing component files, non-safetensors weights, and a
    LoRA that is not in the LoRA folders.
    """
    options = options or LoadOptions()
    if options.match_frames_of == PREVIZ:
        raise ModelNotFound("previz cannot be its own timing target.", input="match_frames_of",
                            fix="Choose 'auto' or the diffusion model the animatic will steer.")
    from .comfy_files import is_file_model

    if name in BUILTIN:
        handle = ModelHandle(name, None, options, name)
    elif is_file_model(name):
        from .wan_vace_files import FILE_CLASS, check_files

        handle = ModelHandle(name, check_files(name, options), options, FILE_CLASS)
    else:
        folder = _find_folder(name, input_name)
        from .model_folder import read_index, validate

        fam = family_for(read_index(folder, name=name).get("_class_name"))
        # an unsupported class is refused here, with the list of supported ones
        validate(folder, name=name, supported=fam.pipeline_classes if fam else supported_classes(),
                 weight_components=fam.weight_components if fam else ())
        handle = ModelHandle(name, folder, options, fam.pipeline_classes[0] if fam else "")
    _ = handle.lora  # refuses a missing LoRA now, not after the budget was reserved
    if name == PREVIZ:
        _ = handle.spec  # resolves and validates match_frames_of
    return handle


def _find_folder(name: str, input_name: str) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFound("no model was chosen.", input=input_name, fix="Choose a model from the list.")
    folder = model_folder.entry_in(model_roots(), name, input_name=input_name)
    if folder is not None:
        return folder
    available = ", ".join(list_models())
    where = ", ".join(str(r) for r in model_roots())
    raise ModelNotFound(f"'{name}' is not an installed model.", input=input_name,
                        fix=f"Choose one of: {available}; or put a diffusers model folder in {where} "
                        "(see docs/models.md).")


def report(handle: ModelHandle) -> str:
    """A short text about the chosen model, shown in the loader node."""
    spec = handle.spec
    lines = [f"{spec.name}: {spec.description}",
             f"{spec.fps:g} fps, frames {spec.frame_rule.step}k+{spec.frame_rule.offset}, sizes in multiples of "
             f"{spec.size_multiple}; renders {', '.join(spec.resolutions)} (trained at {spec.native_resolution}).",
             f"Pastes roles: {', '.join(sorted(spec.roles))}. Defaults: {spec.default_steps} steps, "
             f"guidance {spec.default_guidance:g}; preset '{handle.options.preset}'."]
    if handle.options.lora != "none":
        lines.append(f"LoRA: {handle.options.lora} at {handle.options.lora_strength:g}.")
    if handle.options.render != "animatic":
        lines.append(f"Render: {handle.options.render} (a control video for a diffusion sampler's control_video)."
                     if handle.name == PREVIZ else f"render '{handle.options.render}' applies to previz only.")
    from .wan_vace_files import FILE_CLASS, report_lines

    lines.extend(report_lines(handle, files=handle.family == FILE_CLASS))
    if spec.test_only:
        lines.append("TEST ONLY: random weights, the output is noise.")
    return "\n".join(lines)
