"""Loading diffusers pipelines safely, placing them in memory, and keeping one loaded.

Weights load with ``local_files_only=True`` and ``use_safetensors=True``, never remote code.
One pipeline stays loaded per process (keyed by folder + load options): a 14B model does not
share a GPU well, so loading another model first releases the previous one. The loader's
options map onto diffusers here: dtype, memory mode (model / group / sequential offload),
VAE tiling, attention backend, ``torch.compile`` and a LoRA fused at a strength.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..engine import host
from ..engine.errors import GenerationError, InputError, MissingDependency, is_out_of_memory, require
from . import fp8_storage
from .spec import LoadOptions, presets_data

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
    memory_mode: str
    attention: str
    compile: str
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

    def get(self, key: Hashable, build: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            if self._value is not None and self._key == key:
                return self._value
            self.release()
            value = build()
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
    """``auto``: bf16 on CUDA with bf16 support, fp16 on Apple MPS, fp32 on CPU."""
    if choice != "auto":
        return choice
    torch = torch_module()
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "fp32"


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


def prepare(pipe: Any, options: LoadOptions, *, device: Any, dtype: str, lora: Path | None) -> LoadedPipeline:
    """Apply the load options to a pipeline: dtype, LoRA, attention, placement, tiling, compile."""
    loaded = LoadedPipeline(pipe=pipe, device=device, dtype=dtype, memory_mode="none", attention="default",
                            compile="off")
    wanted = torch_dtype(dtype)
    for name in ("transformer", "transformer_2", "text_encoder"):
        comp = getattr(pipe, name, None)
        if comp is not None and comp.dtype != wanted and not fp8_storage.is_quantized(comp):
            comp.to(wanted)
    loaded.fp8_components = fp8_storage.store_fp8(pipe, options.weight_dtype, wanted)
    if lora is not None:
        loaded.loras.append(apply_lora(pipe, lora, options.lora_strength))
    loaded.attention = apply_attention(pipe, options.attention, device)
    loaded.memory_mode = place(pipe, options.memory_mode, device, loaded.warnings)
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    from .context_parallel import enable_pipeline  # its hooks go in before compiling

    enable_pipeline(pipe, options.parallel)
    loaded.compile = apply_compile(pipe, options.compile, device)
    pipe.set_progress_bar_config(disable=True)
    return loaded


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


def apply_attention(pipe: Any, choice: str, device: Any) -> str:
    """Set the transformer's attention backend; ``auto`` picks cuDNN attention on Hopper or newer."""
    table = presets_data()["attention"]
    backend = table[choice]["backend"]
    if choice == "auto":
        backend = _auto_attention(device)
    if backend is None:
        return "default (PyTorch SDPA)"
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


def attention_name(choice: str, device: Any) -> str:
    """The loader's attention choice with ``auto`` resolved for ``device``, as :func:`apply_attention` does."""
    if choice != "auto":
        return choice
    backend = _auto_attention(device)
    names = [name for name, entry in presets_data()["attention"].items() if entry["backend"] == backend]
    return names[0] if backend and names else "sdpa"


def _auto_attention(device: Any) -> str | None:
    rule = presets_data()["auto_attention"]
    if device.type != "cuda":
        return None
    major, minor = torch_module().cuda.get_device_capability(device)
    return rule["backend"] if major + minor / 10 >= rule["min_compute_capability"] else None


def _attention_package(backend: str) -> str:
    return {"flash": "flash-attn", "sage": "sageattention", "_flash_3": "flash-attn-3"}.get(backend, backend)


def place(pipe: Any, mode: str, device: Any, warnings: list[str]) -> str:
    """Put the pipeline on ``device`` whole, or set up model / group / sequential offload."""
    if not is_accelerator(device):
        if mode not in ("auto", "none"):
            warnings.append(f"memory_mode '{mode}' has no effect without a GPU; ran on the CPU.")
        pipe.to(device)
        return "none"
    if mode in ("auto", "none"):
        pipe.to(device)
        return "none"
    require("accelerate", f"memory_mode '{mode}'")
    if mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    elif mode == "group_offload":
        pipe.enable_group_offload(onload_device=device, offload_device="cpu", offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=device.type == "cuda")
    return mode


def apply_compile(pipe: Any, mode: str, device: Any) -> str:
    """``torch.compile`` the transformer: ``blocks`` compiles its repeated blocks (fast to warm up)."""
    if mode == "auto":
        mode = "blocks" if device.type == "cuda" and importlib.util.find_spec("triton") else "off"
    if mode == "off":
        return "off"
    for name in ("transformer", "transformer_2"):
        comp = getattr(pipe, name, None)
        if comp is None:
            continue
        if mode == "blocks":
            comp.compile_repeated_blocks(fullgraph=True)
        else:
            comp.compile()
    return mode


def load_cached(key: Hashable, build: Callable[[], LoadedPipeline]) -> LoadedPipeline:
    """The cached pipeline for ``key``, building it (after releasing any other) if needed."""
    return CACHE.get(key, build)
