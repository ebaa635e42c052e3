"""Loading diffusers pipelines safely, placing them in memory, and keeping one loaded.

Weights load with ``local_files_only=True`` and ``use_safetensors=True``, never remote code.
One pipeline stays loaded per process, keyed by its weights only (:class:`~models.spec.WeightsKey`:
files, dtype, LoRA and strength): a 14B model does not share a GPU well, so loading other
weights first releases the previous ones. How the weights run (:class:`~models.spec.Placement`:
memory mode, VAE tiling, attention backend, ``torch.compile``) is applied to the loaded
pipeline in process by :func:`configure`, so a render that needs another memory mode never
reads the weights from disk again. Every component is frozen (``requires_grad_(False)``,
``eval()``) when it loads.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..engine import host
from ..engine.errors import GenerationError, InputError, MissingDependency, is_out_of_memory, require
from . import fp8_storage
from . import placement as placing
from .placement import DeviceInfo
from .spec import Placement, WeightsKey, presets_data

log = logging.getLogger("refvideo")

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
ADAPTER = "refvideo_lora"


class _HoldsPipeline(Protocol):
    @property
    def pipe(self) -> Any: ...


Loaded = TypeVar("Loaded", bound=_HoldsPipeline)


@dataclass
class LoadedPipeline:
    """A pipeline ready to run, with what was done to it (reported in the generation info)."""

    pipe: Any
    device: Any
    dtype: str
    memory_mode: str = "none"
    attention: str = "default"
    compile: str = "off"
    info: DeviceInfo = field(default_factory=lambda: DeviceInfo("cpu"))
    placement: Placement | None = None  # as last configured (None: not yet)
    loras: list[dict] = field(default_factory=list)
    fingerprint: str = ""
    warnings: list[str] = field(default_factory=list)
    embeddings: dict = field(default_factory=dict)  # (prompt, negative) -> text embeddings, newest last
    fp8_components: list[str] = field(default_factory=list)  # components whose weights are stored in fp8

    def resident_bytes(self) -> int:
        total = 0
        for comp in self.pipe.components.values():
            params = getattr(comp, "parameters", None)
            if params is not None:
                total += sum(p.numel() * p.element_size() for p in params())
        return total


class PipelineCache(Generic[Loaded]):
    """At most one loaded pipeline per process, keyed by what was loaded and how.

    The value is anything with a ``.pipe`` (a :class:`LoadedPipeline` for video; audio keeps its own).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._key: Hashable | None = None
        self._value: Loaded | None = None
        self.loads = 0  # how many times weights were built (read from disk) in this process

    def get(self, key: Hashable, build: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            if self._value is not None and self._key == key:
                return self._value
            self.release()
            value = build()
            self.loads += 1
            self._key, self._value = key, value
            return value

    def holds(self, key: Hashable) -> bool:
        with self._lock:
            return self._value is not None and self._key == key

    def current(self) -> Loaded | None:
        return self._value

    def release(self) -> bool:
        """Drop the loaded pipeline and return its memory; True if one was loaded."""
        with self._lock:
            value = self._value
            had = value is not None
            if value is not None:
                try:
                    value.pipe.remove_all_hooks()
                except Exception:  # noqa: BLE001 - best effort while freeing
                    pass
            self._key, self._value = None, None
        if had:
            gc.collect()
            host.soft_empty_cache()
        return had


CACHE: PipelineCache[LoadedPipeline] = PipelineCache()


def release_after_interrupt() -> None:
    """After an interrupt: unload a pipeline that holds accelerator memory, and return cached memory."""
    loaded = CACHE.current()
    if loaded is not None and is_accelerator(loaded.device):
        CACHE.release()
        return
    gc.collect()
    host.soft_empty_cache()


# --------------------------------------------------------------------------- devices and memory


def torch_module():
    return require("torch", "Video diffusion models")


def diffusion_libraries() -> tuple[Any, Any, Any]:
    """torch, diffusers and transformers, or a MissingDependency naming the one to install."""
    feature = "Video diffusion models"
    return require("torch", feature), require("diffusers", feature), require("transformers", feature)


def resolve_dtype(choice: str, device: Any) -> str:
    """The dtype ``choice`` means on ``device`` (see :func:`models.placement.choose_dtype`)."""
    return placing.choose_dtype(choice, placing.describe(device))


def torch_dtype(name: str) -> Any:
    return getattr(torch_module(), TORCH_DTYPES[name])


def is_accelerator(device: Any) -> bool:
    return getattr(device, "type", "cpu") != "cpu"


def free_memory(device: Any) -> int:
    """Bytes a new render may use on ``device``: free memory plus what this process's caches hold."""
    torch = torch_module()
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    current = CACHE.current()
    held = current.resident_bytes() if current is not None else 0
    return _available_ram() + held


def _available_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 50  # unknown: do not refuse


class PeakMemory:
    """Measures a block's peak device memory (CUDA) or the process's peak RSS (CPU)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.result: dict = {}

    def __enter__(self) -> PeakMemory:
        torch = torch_module()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        torch = torch_module()
        self.result = {"device": str(self.device), "vram_bytes": None, "rss_bytes": _peak_rss()}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["vram_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
            self.result["vram_reserved_bytes"] = int(torch.cuda.max_memory_reserved(self.device))


def _peak_rss() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --------------------------------------------------------------------------- loading


def from_folder(class_name: str, folder: Path, dtype: str) -> Any:
    """``<class_name>.from_pretrained(folder)`` offline, safetensors only, VAE in fp32."""
    torch = torch_module()
    diffusers = require("diffusers", "Video diffusion models")
    require("ftfy", "Wan prompt cleaning")
    cls = getattr(diffusers, class_name)
    host.free_host_models()
    try:
        return cls.from_pretrained(str(folder), dtype={"default": torch_dtype(dtype), "vae": torch.float32},
                                   local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise GenerationError(f"loading the model from {folder} failed: {exc}", input="model",
                              fix="Download the model folder again (see docs/models.md).") from exc


def prepare(pipe: Any, *, device: Any, dtype: str, lora: Path | None, lora_strength: float = 1.0,
            parallel: str = "off", weight_dtype: str = "default") -> LoadedPipeline:
    """Make freshly loaded weights ready: dtype (quantized components kept as stored; fp8 storage for
    ``weight_dtype`` ``fp8_e4m3fn``), a fused LoRA, frozen for inference, context parallelism (no placement yet)."""
    loaded = LoadedPipeline(pipe=pipe, device=device, dtype=dtype, info=placing.describe(device))
    wanted = torch_dtype(dtype)
    for name in ("transformer", "transformer_2", "text_encoder"):
        comp = getattr(pipe, name, None)
        if comp is not None and comp.dtype != wanted and not fp8_storage.is_quantized(comp):
            comp.to(wanted)
    loaded.fp8_components = fp8_storage.store_fp8(pipe, weight_dtype, wanted)
    if lora is not None:
        loaded.loras.append(apply_lora(pipe, lora, lora_strength))
    freeze(pipe)
    from .context_parallel import enable_pipeline  # its hooks stay through re-placement; compile comes after

    enable_pipeline(pipe, parallel)
    pipe.set_progress_bar_config(disable=True)
    return loaded


def freeze(pipe: Any) -> None:
    """Inference only: no component keeps gradients (nor builds autograd graphs for them)."""
    for comp in pipe.components.values():
        if hasattr(comp, "requires_grad_"):
            comp.eval().requires_grad_(False)


def configure(loaded: LoadedPipeline, wanted: Placement) -> None:
    """Apply ``wanted`` to the loaded pipeline, changing only what differs from its current placement.

    Attention, memory mode and compile changes undo the compiled blocks, re-place the weights
    (offload hooks removed, the new mode applied) and compile again; VAE tiling just switches.
    """
    pipe, current = loaded.pipe, loaded.placement
    if current == wanted:
        return
    choice = replace(placing.choose_compile(wanted.compile, wanted.memory_mode, loaded.info),
                     backend=wanted.compile_backend)
    heavy = current is None or (current.memory_mode, current.attention, current.compile, current.compile_backend) \
        != (wanted.memory_mode, wanted.attention, wanted.compile, wanted.compile_backend)
    if heavy:
        placing.uncompile(pipe)
        if current is None or current.attention != wanted.attention:
            loaded.attention = apply_attention(pipe, wanted.attention, loaded.info)
        if current is None or current.memory_mode != wanted.memory_mode:
            if current is not None:
                placing.unplace(pipe)
            loaded.memory_mode = placing.place(pipe, wanted.memory_mode, loaded.device, loaded.info)
    if wanted.vae_tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    if heavy:
        loaded.compile = placing.compile_transformer(pipe, choice)
    loaded.placement = wanted


@contextmanager
def text_encoder_on_device(loaded: LoadedPipeline) -> Iterator[None]:
    """Bring a parked text encoder to the device while prompts are encoded, then park it again."""
    parked = placing.parked(loaded.pipe, loaded.memory_mode)
    for comp in parked:
        comp.to(loaded.device)
    try:
        yield
    finally:
        for comp in parked:
            comp.to("cpu")
        if parked:
            host.soft_empty_cache()


def apply_lora(pipe: Any, path: Path, strength: float) -> dict:
    """Load a safetensors LoRA into the transformer and fuse it at ``strength`` (no run-time cost)."""
    require("peft", "LoRA loading")
    from safetensors.torch import load_file

    state = load_file(str(path))
    try:
        pipe.load_lora_weights(state, adapter_name=ADAPTER)
        pipe.fuse_lora(components=["transformer"], lora_scale=float(strength), adapter_names=[ADAPTER])
        pipe.unload_lora_weights()
    except (ValueError, KeyError, RuntimeError) as exc:
        if is_out_of_memory(exc):  # never reported as a bad LoRA
            raise
        raise InputError(f"the LoRA {path.name} does not fit this model ({exc}).", input="lora",
                         fix="Choose a LoRA made for this model (same architecture and size).") from exc
    return {"name": path.name, "strength": float(strength), "fused": True}


def apply_attention(pipe: Any, choice: str, info: DeviceInfo) -> str:
    """Set the transformer's attention backend; ``auto`` picks cuDNN attention on Hopper or newer."""
    table = presets_data()["attention"]
    backend = table[choice]["backend"]
    if choice == "auto":
        denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "transformer_2", None)
        backend = _auto_attention(info, int(getattr(denoiser.config, "attention_head_dim", 0)) if denoiser else 0)
    if backend is None:
        backend = "native"  # PyTorch SDPA (also undoes an earlier choice on a cached pipeline)
    for name in ("transformer", "transformer_2"):
        comp = getattr(pipe, name, None)
        if comp is None:
            continue
        try:
            comp.set_attention_backend(backend)
        except (RuntimeError, ImportError) as exc:
            if is_out_of_memory(exc):  # never reported as a missing package
                raise
            raise MissingDependency(_attention_package(backend), f"The '{choice}' attention backend") from exc
        except ValueError as exc:
            raise InputError(f"attention backend '{choice}' is not available here ({exc}).", input="attention",
                             fix="Choose 'auto' or 'sdpa'.") from exc
    return backend


def attention_name(choice: str, device: Any, head_dim: int = 128) -> str:
    """The loader's attention choice with ``auto`` resolved for ``device``, as :func:`apply_attention` does."""
    if choice != "auto":
        return choice
    backend = _auto_attention(placing.describe(device), head_dim)
    names = [name for name, entry in presets_data()["attention"].items() if entry["backend"] == backend]
    return names[0] if backend and names else "sdpa"


def _auto_attention(info: DeviceInfo, head_dim: int) -> str | None:
    """cuDNN attention on the cards the rule names, for head sizes it runs (multiples of 8)."""
    rule = presets_data()["auto_attention"]
    if info.type != "cuda" or info.compute_capability is None or head_dim % 8:
        return None
    major, minor = info.compute_capability
    return rule["backend"] if major + minor / 10 >= rule["min_compute_capability"] else None


def _attention_package(backend: str) -> str:
    return {"flash": "flash-attn", "sage": "sageattention", "_flash_3": "flash-attn-3"}.get(backend, backend)


def load_cached(key: WeightsKey | Hashable, build: Callable[[], LoadedPipeline]) -> LoadedPipeline:
    """The cached pipeline for the weights ``key``, building it (after releasing any other) if needed."""
    return CACHE.get(key, build)
