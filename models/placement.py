"""Where a loaded pipeline runs, and how: the device's facts, and the decisions made from them.

:class:`DeviceInfo` describes the device (kind, compute capability, free and total memory,
whether Triton is installed). The decisions (``choose_dtype``, ``choose_compile``,
``offload_plan``, ``needs_sync``) are pure functions of a :class:`DeviceInfo`, so they are
tested with a described H100, T4 or CPU on any machine. :func:`place`, :func:`unplace`,
:func:`compile_transformer` and :func:`uncompile` apply them to a real pipeline; they
accept a CPU onload device (the hooks are real, moving weights from CPU to CPU), so the
same code runs in tests.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine.errors import GenerationError, InputError

OFFLOAD_MODES = ("group_offload", "sequential_offload")  # hooks around blocks/leaves: no fullgraph compile
DENOISERS = ("transformer", "transformer_2")
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: native bf16; older cards only emulate it
_GROUP_HOOKS = ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading")


@dataclass(frozen=True)
class DeviceInfo:
    """What the placement decisions need to know about a device."""

    type: str  # "cuda", "mps" or "cpu"
    compute_capability: tuple[int, int] | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    triton: bool = False
    name: str = ""

    @property
    def accelerator(self) -> bool:
        return self.type != "cpu"


def describe(device: Any) -> DeviceInfo:
    """The :class:`DeviceInfo` of a real torch device."""
    import torch

    triton = importlib.util.find_spec("triton") is not None
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return DeviceInfo("cuda", tuple(torch.cuda.get_device_capability(device)), int(free), int(total), triton,
                          torch.cuda.get_device_name(device))
    return DeviceInfo(device.type, triton=triton)


# --------------------------------------------------------------------------- decisions


def choose_dtype(choice: str, info: DeviceInfo) -> str:
    """``auto``: bf16 on CUDA cards with native bf16 (compute capability 8.0+), fp16 on older
    CUDA cards and Apple MPS, fp32 on the CPU. Any other choice is kept."""
    if choice != "auto":
        return choice
    if info.type == "cuda":
        return "bf16" if (info.compute_capability or (0, 0)) >= BF16_MIN_CAPABILITY else "fp16"
    return "fp16" if info.type == "mps" else "fp32"


def nan_fix(dtype: str, info: DeviceInfo) -> str:
    """The fix to name when a render came out NaN."""
    if dtype == "fp16" and info.type == "cuda" and (info.compute_capability or (0, 0)) < BF16_MIN_CAPABILITY:
        return ("fp16 overflowed: this GPU has no native bf16, so set dtype to fp32 in the loader (more memory: "
                "use a leaner memory_mode), or bf16 (emulated, much slower).")
    return "fp16 can overflow with video models: set dtype to bf16 or fp32 in the loader."


@dataclass(frozen=True)
class CompileChoice:
    """How the transformer is compiled: ``off``, ``blocks`` (its repeated blocks) or ``full``."""

    mode: str
    fullgraph: bool = False
    backend: str = "inductor"

    def describe(self) -> str:
        return self.mode if self.mode == "off" else f"{self.mode} ({'fullgraph' if self.fullgraph else 'graph breaks'})"


def choose_compile(choice: str, memory_mode: str, info: DeviceInfo) -> CompileChoice:
    """``torch.compile`` for this memory mode on this device; refuses what cannot run.

    ``auto`` compiles the repeated blocks on CUDA with Triton, in every memory mode. Offload
    hooks are ``torch.compiler.disable()``d, so under group or sequential offload the blocks
    compile with graph breaks at the hooks instead of one full graph. Compiling on a GPU
    without Triton cannot run and is refused when asked for.
    """
    if choice == "off" or (choice == "auto" and not (info.type == "cuda" and info.triton)):
        return CompileChoice("off")
    if info.type == "cuda" and not info.triton:
        raise InputError(f"compile '{choice}' needs Triton on an NVIDIA GPU, and it is not installed.",
                         input="compile", fix="pip install triton (Linux), or set compile to auto or off.")
    if info.type == "mps":
        raise InputError(f"compile '{choice}' does not run on Apple MPS here.", input="compile",
                         fix="Set compile to auto or off.")
    mode = "blocks" if choice == "auto" else choice
    return CompileChoice(mode, fullgraph=mode == "blocks" and memory_mode not in OFFLOAD_MODES)


@dataclass(frozen=True)
class OffloadPlan:
    """Which components are offloaded in which way, and with which diffusers arguments."""

    offload_type: str  # "block_level" or "leaf_level"
    components: tuple[str, ...]  # group-offloaded
    resident: tuple[str, ...]  # on the device for the whole render
    parked: tuple[str, ...]  # on the CPU, brought to the device only while used (the text encoder)
    use_stream: bool
    low_cpu_mem_usage: bool

    def kwargs(self) -> dict:
        args: dict = {"offload_type": self.offload_type, "use_stream": self.use_stream,
                      "low_cpu_mem_usage": self.low_cpu_mem_usage}
        if self.offload_type == "block_level":
            args["num_blocks_per_group"] = 1
        return args


def offload_plan(mode: str, info: DeviceInfo) -> OffloadPlan | None:
    """The group offload of a memory mode (``None`` for ``none`` and ``model_offload``).

    ``group_offload`` streams the transformer's blocks; the VAE (small) stays on the device and
    the text encoder waits on the CPU until the prompts are encoded. ``sequential_offload``
    streams every leaf of every component. Streams prefetch on CUDA; ``low_cpu_mem_usage``
    pins each group only while it moves instead of pinning the whole model in host RAM.
    """
    stream = info.type == "cuda"
    if mode == "group_offload":
        return OffloadPlan("block_level", DENOISERS, ("vae",), ("text_encoder",), stream, True)
    if mode == "sequential_offload":
        return OffloadPlan("leaf_level", (*DENOISERS, "text_encoder", "vae"), (), (), stream, True)
    return None


def needs_sync(info: DeviceInfo) -> bool:
    """Whether timestamps must wait for queued device work (CUDA and MPS run asynchronously)."""
    return info.type in ("cuda", "mps")


def synchronizer(device: Any, info: DeviceInfo) -> Callable[[], None]:
    """A function that waits for the device's queued work (nothing to wait for on the CPU)."""
    if not needs_sync(info):
        return lambda: None
    import torch

    if info.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return torch.mps.synchronize


class Stopwatch:
    """Timestamps taken after the device's queued work is done, so a stage is not charged to the next."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self.stamps: dict[str, float] = {}

    def stamp(self, name: str) -> float:
        self._sync()
        self.stamps[name] = time.perf_counter()
        return self.stamps[name]


# --------------------------------------------------------------------------- applying them


def components(pipe: Any, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(n, getattr(pipe, n)) for n in names if getattr(pipe, n, None) is not None]


def place(pipe: Any, mode: str, device: Any, info: DeviceInfo) -> str:
    """Put the pipeline on ``device`` whole, or set up model / group / sequential offload.

    ``device`` may be the CPU: the offload hooks are then real but move nothing (tests).
    """
    if mode in ("auto", "none"):
        pipe.to(device)
        return "none"
    if mode == "model_offload":
        if not info.accelerator:
            raise InputError("model_offload needs a GPU (it moves whole components to it).", input="memory_mode",
                             fix="Use none, group_offload or sequential_offload.")
        pipe.enable_model_cpu_offload(device=device)
        return mode
    plan = offload_plan(mode, info)
    if plan is None:
        raise InputError(f"'{mode}' is not a memory mode.", input="memory_mode",
                         fix="Choose auto, none, model_offload, group_offload or sequential_offload.")
    from diffusers.hooks import apply_group_offloading

    for _name, comp in components(pipe, plan.components):  # text encoders are transformers models
        apply_group_offloading(comp, onload_device=device, offload_device="cpu", **plan.kwargs())
    for _name, comp in components(pipe, plan.resident):
        comp.to(device)
    for _name, comp in components(pipe, plan.parked):
        comp.to("cpu")
    return mode


def unplace(pipe: Any) -> None:
    """Remove every offload hook (accelerate's and diffusers' group offload) and gather weights on the CPU."""
    from diffusers.hooks import HookRegistry

    pipe.remove_all_hooks()
    for comp in pipe.components.values():
        if getattr(comp, "_diffusers_hook", None) is None:
            continue
        registry = HookRegistry.check_if_exists_or_initialize(comp)
        for hook in _GROUP_HOOKS:
            registry.remove_hook(hook, recurse=True)
        registry.invalidate_child_registries_cache()
    pipe.to("cpu")


def parked(pipe: Any, mode: str) -> tuple[Any, ...]:
    """The components waiting on the CPU in ``mode`` (brought to the device only while used)."""
    plan = offload_plan(mode, DeviceInfo("cpu"))
    return tuple(c for _n, c in components(pipe, plan.parked)) if plan else ()


def compile_transformer(pipe: Any, choice: CompileChoice) -> str:
    """``torch.compile`` the denoiser(s) as chosen (after placement: the hooks are compiled around)."""
    if choice.mode == "off":
        return "off"
    for _name, comp in components(pipe, DENOISERS):
        try:
            if choice.mode == "blocks":
                comp.compile_repeated_blocks(fullgraph=choice.fullgraph, backend=choice.backend)
            else:
                comp.compile(backend=choice.backend)
        except (RuntimeError, ValueError) as exc:
            raise GenerationError(f"torch.compile could not be set up ({exc}).", input="compile",
                                  fix="Set compile to off.") from exc
    return choice.describe()


def uncompile(pipe: Any) -> None:
    """Undo :func:`compile_transformer` (modules run their plain forward again)."""
    for _name, comp in components(pipe, DENOISERS):
        for module in comp.modules():
            if getattr(module, "_compiled_call_impl", None) is not None:
                module._compiled_call_impl = None
