"""What a model is, known without loading it, and how the user asked for it to be loaded.

:class:`ModelSpec` holds the facts the sampler plans with (fps, frame rule, size multiple,
roles, default steps and guidance, the resolutions it renders); :class:`LoadOptions` holds
the loader's choices (preset, dtype, memory mode, attention, compile, LoRA, ...). Both are
plain data: reading them never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

from ..engine.errors import InputError
from ..engine.memory_plan import ArchFacts
from ..engine.previz.render import OUTPUTS as RENDERS
from ..engine.sizes import RESOLUTIONS, WAN_FRAMES, FrameRule
from ..engine.storage import read_data

DTYPES: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
MEMORY_MODES: tuple[str, ...] = ("auto", "none", "model_offload", "group_offload", "sequential_offload")
COMPILE_MODES: tuple[str, ...] = ("auto", "off", "blocks", "full")
CFG_BATCHING: tuple[str, ...] = ("auto", "on", "off")
HD_STRATEGIES: tuple[str, ...] = ("auto", "crop", "upscale")
PARALLEL_MODES: tuple[str, ...] = ("off", "ulysses", "ring")  # context parallelism (models/context_parallel.py)
WEIGHT_DTYPES: tuple[str, ...] = ("default", "fp8_e4m3fn")  # ComfyUI's own loader's names


@dataclass(frozen=True)
class ModelSpec:
    """Facts about one model that the sampler needs before (and without) loading it."""

    name: str
    kind: str  # "previz", "tiny-random" or the diffusers pipeline class name
    fps: float
    frame_rule: FrameRule = WAN_FRAMES
    size_multiple: int = 16
    roles: frozenset[str] = frozenset({"character", "environment", "prop"})
    default_steps: int = 30
    default_guidance: float = 5.0
    resolutions: tuple[str, ...] = tuple(RESOLUTIONS)
    native_resolution: str = "720p"  # the size it was trained at: above it the info warns
    trained_frames: int | None = None  # longer clips work but drift: the info warns
    family: str = ""  # the preset family in engine/data/presets.json ("wan", "previz")
    needs_weights: bool = True
    test_only: bool = False
    description: str = ""
    arch: ArchFacts | None = None


@dataclass(frozen=True)
class WeightsKey:
    """The pipeline cache key: the weights in memory, and nothing about where or how they run.

    Two renders with equal keys share one load; a change of component file or weight storage
    loads again, a change of placement does not.
    """

    source: tuple[str, ...]  # what was loaded: ("diffusers", folder), ("comfy-files", *file paths) or ("tiny-random",)
    dtype: str
    lora: str = "none"
    lora_strength: float = 1.0
    parallel: str = "off"  # context parallelism's hooks go in with the weights
    # single-file models: the component file choices and how the transformer's weights are stored
    text_encoder: str = "auto"
    vae: str = "auto"
    transformer_2: str = "none"
    weight_dtype: str = "default"


@dataclass(frozen=True)
class Placement:
    """Where and how loaded weights run; applied to the cached pipeline in process."""

    memory_mode: str = "none"
    vae_tiling: bool = False
    attention: str = "auto"
    compile: str = "off"
    compile_backend: str = "inductor"  # torch.compile's backend ("eager" checks the graph capture on a CPU)


@dataclass(frozen=True)
class LoadOptions:
    """How to load and run a model: the RefVideoModelLoader's inputs, with defaults."""

    preset: str = "default"
    dtype: str = "auto"
    memory_mode: str = "auto"
    vae_tiling: bool = False
    attention: str = "auto"
    compile: str = "auto"
    cfg_batching: str = "auto"
    lora: str = "none"
    lora_strength: float = 1.0
    hd_strategy: str = "auto"
    match_frames_of: str = "auto"
    keep_loaded: bool = True
    parallel: str = "off"  # context parallelism over the torchrun processes: off, ulysses, ring
    render: str = "animatic"  # previz only: what the sampler's frames hold (animatic, depth, layout)
    # single-file models (diffusion_models/<file>): the other files, and how transformer weights are stored
    text_encoder: str = "auto"
    vae: str = "auto"
    transformer_2: str = "none"
    weight_dtype: str = "default"

    def __post_init__(self) -> None:
        for name, allowed in (("dtype", DTYPES), ("memory_mode", MEMORY_MODES), ("compile", COMPILE_MODES),
                              ("cfg_batching", CFG_BATCHING), ("hd_strategy", HD_STRATEGIES),
                              ("parallel", PARALLEL_MODES), ("render", RENDERS),
                              ("weight_dtype", WEIGHT_DTYPES)):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"'{value}' is not a valid choice.", input=name,
                                 fix=f"Choose one of {', '.join(allowed)}.")
        sampling_preset(self.preset)
        if self.attention not in attention_names():
            raise InputError(f"'{self.attention}' is not an attention backend.", input="attention",
                             fix=f"Choose one of {', '.join(attention_names())}.")
        if not math.isfinite(float(self.lora_strength)) or abs(float(self.lora_strength)) > 8:
            raise InputError(f"LoRA strength {self.lora_strength} is out of range.", input="lora_strength",
                             fix="Give a strength between -8 and 8 (1.0 = as trained).")

    def weights_key(self, source: tuple[str, ...], dtype: str) -> WeightsKey:
        """What the loaded weights depend on (the pipeline cache key): ``source`` names the files."""
        return WeightsKey(source=source, dtype=dtype, lora=self.lora, lora_strength=round(float(self.lora_strength), 6),
                          parallel=self.parallel, text_encoder=self.text_encoder, vae=self.vae,
                          transformer_2=self.transformer_2, weight_dtype=self.weight_dtype)

    def placement(self) -> Placement:
        """How the loaded weights run: changed in process, without loading them again."""
        return Placement(memory_mode=self.memory_mode, vae_tiling=bool(self.vae_tiling), attention=self.attention,
                         compile=self.compile)

    def with_(self, **changes) -> LoadOptions:
        return replace(self, **changes)

    def describe(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- presets (data)


def presets_data() -> dict:
    """engine/data/presets.json: sampling presets, per-family defaults, attention backends."""
    return read_data("presets.json")


def preset_names() -> list[str]:
    return list(presets_data()["presets"])


@dataclass(frozen=True)
class SchedulerChoice:
    """A diffusers scheduler class and its flow shift: one number, or one per resolution."""

    class_name: str
    flow_shift: float | Mapping[str, float] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SchedulerChoice | None:
        return cls(data["class"], data.get("flow_shift")) if data else None

    def shift_for(self, resolution: str) -> float | None:
        """The flow shift at ``resolution`` (a per-resolution table falls back to its first entry)."""
        shift = self.flow_shift
        if isinstance(shift, Mapping):
            shift = shift.get(resolution, next(iter(shift.values())))
        return float(shift) if shift is not None else None


@dataclass(frozen=True)
class LoraAdvice:
    """The LoRA a preset is made for: its file name holds one of ``hints``; ``strength`` is suggested."""

    hints: tuple[str, ...]
    strength: float = 1.0


@dataclass(frozen=True)
class SamplingPreset:
    """A sampling preset of the loader: the sampler's default steps, guidance and scheduler.

    ``steps``/``guidance`` None: the model's own default; ``scheduler`` None: the family's.
    """

    name: str
    label: str
    description: str
    steps: int | None = None
    guidance: float | None = None
    scheduler: SchedulerChoice | None = None
    lora: LoraAdvice | None = None
    sigmas: tuple[float, ...] | None = None  # an exact schedule (terminal 0 implied); wins over any flow shift

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> SamplingPreset:
        lora = data.get("lora")
        return cls(name=name, label=data.get("label", name), description=data.get("description", ""),
                   steps=data.get("steps"), guidance=data.get("guidance"),
                   scheduler=SchedulerChoice.from_dict(data.get("scheduler")),
                   lora=LoraAdvice(tuple(lora.get("hints", ())), float(lora.get("strength", 1.0))) if lora else None,
                   sigmas=tuple(float(v) for v in data["sigmas"]) if data.get("sigmas") else None)


@cache
def sampling_presets() -> dict[str, SamplingPreset]:
    """Every sampling preset of ``engine/data/presets.json``, in file order."""
    return {name: SamplingPreset.from_dict(name, data) for name, data in presets_data()["presets"].items()}


def sampling_preset(name: str) -> SamplingPreset:
    """One sampling preset, or a clear error naming the valid ones."""
    presets = sampling_presets()
    if name not in presets:
        raise InputError(f"'{name}' is not a preset.", input="preset", fix=f"Choose one of {', '.join(presets)}.")
    return presets[name]


def family_defaults(family: str) -> dict:
    """Defaults of a model family (steps, guidance, scheduler, negative prompt)."""
    return presets_data()["families"].get(family, {})


def attention_names() -> list[str]:
    return list(presets_data()["attention"])
