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


def kept_layers(fp8_keys: list[str], rename: Any, skip: tuple[str, ...]) -> dict[str, str]:
    """``{model weight name: file key}`` of the fp8 weights that stay fp8: all but the layers the model
    keeps out of layerwise casting (``skip`` patterns: embedders whose inputs follow their weight's dtype).

    ``rename`` maps the file's key names to the model's (diffusers' checkpoint conversion).
    """
    import re

    return {name: key for name, key in rename({key: key for key in fp8_keys}).items()
            if not any(re.search(p, name.rsplit(".", 1)[0]) for p in skip)}


def read_scaled(path: Path, dtype: Any, *, input_name: str, placeholders: frozenset[str] = frozenset()
                ) -> tuple[dict, dict]:
    """``(state, scaled)``: every tensor in ``dtype`` with fp8 weights multiplied out (markers dropped),
    and ``{weight key: (fp8 weight, scale)}`` as the file stores them.

    Keys in ``placeholders`` (weights that will stay fp8) get an unwritten ``torch.empty`` of their
    shape instead: the loader needs a tensor there, and untouched memory costs no RAM.
    """
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
            if key in placeholders:
                state[key] = torch.empty(tensor.shape, dtype=dtype)
                continue
            tensor = tensor.float() * scale.float()
        state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state, scaled


def dequantized_state(path: Path, dtype: Any, *, input_name: str) -> dict:
    """The file's tensors in ``dtype``, every scaled fp8 weight multiplied out."""
    return read_scaled(path, dtype, input_name=input_name)[0]


def keep_fp8(model: Any, weights: dict[str, tuple[Any, Any]], compute_dtype: Any) -> int:
    """Put fp8 weights into ``model``'s linear layers (``{weight name: (fp8, scale)}``), each with its scale
    and a hook that computes the layer with ``weight.to(compute_dtype) * scale``; returns how many."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.layerwise_casting import LayerwiseCastingHook

    class ScaledFp8Hook(LayerwiseCastingHook):
        """Layerwise casting of a scaled fp8 layer: fp8 at rest, ``fp8 * scale`` in the compute dtype to run."""

        def __init__(self, storage_dtype: Any) -> None:
            super().__init__(storage_dtype, compute_dtype, non_blocking=False)
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

    for name, (weight, scale) in weights.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        module.weight.data = weight.to(module.weight.device)
        module.register_buffer("scale_weight", scale.to(module.weight.device))
        HookRegistry.check_if_exists_or_initialize(module).register_hook(ScaledFp8Hook(weight.dtype), HOOK)
    setattr(model, MARK, bool(weights))
    return len(weights)
