"""ComfyUI's ``*_fp8_e4m3fn_scaled`` files, read right: each fp8 weight times its ``scale_weight``.

These files store every large linear weight as ``float8_e4m3fn`` with a per-layer scale in
``<layer>.scale_weight`` and mark themselves with a ``scaled_fp8`` tensor. diffusers' single-file
loader ignores the scales (the weights come out hundreds of times off and the render is NaN), so
the scales are applied here. A transformer keeps its weights in fp8 with their scales and computes
each layer in the compute dtype (``weight.to(dtype) * scale``, a layerwise-casting hook): one byte
per weight, as the file stores them. Other files (the UMT5 text encoder) are dequantized on load.
A scaled file whose scales do not match its fp8 weights is refused rather than rendered wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.errors import ModelNotFound
from .comfy_files import SCALE_SUFFIX, SCALED_FP8_MARKER

FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2")
HOOK = "layerwise_casting"  # the name diffusers reads the compute dtype of a cast model from
MARK = "refvideo_scaled_fp8"


def read_scaled(path: Path, dtype: Any, *, input_name: str) -> tuple[dict, dict]:
    """``(state, scaled)``: every tensor in ``dtype`` with fp8 weights multiplied out (markers dropped),
    and ``{weight key: (fp8 weight, scale)}`` as the file stores them."""
    import torch
    from safetensors.torch import load_file

    raw = load_file(str(path))
    fp8 = tuple(getattr(torch, n) for n in FP8_DTYPES if hasattr(torch, n))
    scales = {k[: -len(SCALE_SUFFIX)]: v for k, v in raw.items() if k.endswith(SCALE_SUFFIX)}
    state: dict = {}
    scaled: dict = {}
    for key, tensor in raw.items():
        if key.endswith((SCALE_SUFFIX, ".scale_input")) or key.split(".")[-1] == SCALED_FP8_MARKER:
            continue
        if tensor.dtype in fp8:
            scale = scales.get(key.rsplit(".", 1)[0])
            if scale is None or scale.numel() != 1 or not torch.isfinite(scale).all():
                raise ModelNotFound(f"{path.name}: the fp8 weight '{key}' has no usable scale_weight.",
                                    input=input_name,
                                    fix="The file is damaged or of an unknown fp8 layout; download it again, or use "
                                        "the fp16/bf16 file.")
            scaled[key] = (tensor, scale.float().reshape(()))
            tensor = tensor.float() * scale.float()
        state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state, scaled


def dequantized_state(path: Path, dtype: Any, *, input_name: str) -> dict:
    """The file's tensors in ``dtype``, every scaled fp8 weight multiplied out."""
    return read_scaled(path, dtype, input_name=input_name)[0]


def keep_fp8(model: Any, scaled: dict, compute_dtype: Any, rename: Any) -> int:
    """Put the file's fp8 weights back into ``model``'s linear layers, each with its scale and a hook
    that computes the layer with ``weight.to(compute_dtype) * scale``; returns how many layers.

    ``rename`` maps the file's key names to the model's (diffusers' checkpoint conversion). Layers the
    model keeps out of layerwise casting (embedders whose inputs follow their weight's dtype) keep
    the multiplied-out weights they were loaded with.
    """
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.layerwise_casting import LayerwiseCastingHook

    class ScaledFp8Hook(LayerwiseCastingHook):
        """Layerwise casting of a scaled fp8 layer: fp8 at rest, ``fp8 * scale`` in the compute dtype to run."""

        def __init__(self) -> None:
            super().__init__(next(iter(scaled.values()))[0].dtype, compute_dtype, non_blocking=False)
            self.stored: Any = None

        def initialize_hook(self, module: Any) -> Any:
            return module

        def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple:
            self.stored = module.weight.data
            module.weight.data = self.stored.to(self.compute_dtype) * module.scale_weight.to(self.compute_dtype)
            return args, kwargs

        def post_forward(self, module: Any, output: Any) -> Any:
            module.weight.data, self.stored = self.stored, None
            return output

    import re

    skip = tuple(getattr(model, "_skip_layerwise_casting_patterns", None) or ())
    names = {name: key for name, key in rename({key: key for key in scaled}).items()
             if not any(re.search(p, name.rsplit(".", 1)[0]) for p in skip)}  # those stay multiplied out
    for name, key in names.items():
        weight, scale = scaled[key]
        module = model.get_submodule(name.rsplit(".", 1)[0])
        module.weight.data = weight.to(module.weight.device)
        module.register_buffer("scale_weight", scale.to(module.weight.device))
        HookRegistry.check_if_exists_or_initialize(module).register_hook(ScaledFp8Hook(), HOOK)
    setattr(model, MARK, bool(names))
    return len(names)
