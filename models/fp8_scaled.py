"""ComfyUI's ``*_fp8_e4m3fn_scaled`` files, read right: each fp8 weight times its ``scale_weight``.

These files store every large linear weight as ``float8_e4m3fn`` with a per-layer scale in
``<layer>.scale_weight`` and mark themselves with a ``scaled_fp8`` tensor. diffusers'
single-file loader ignores the scales (the weights come out hundreds of times too small or
large and the render is NaN), so the state dict is dequantized here, on load, to the compute
dtype: ``weight = fp8.float() * scale_weight``. A scaled file whose scales do not match its fp8
weights is refused rather than rendered wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.errors import ModelNotFound
from .comfy_files import SCALE_SUFFIX, SCALED_FP8_MARKER

FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2")


def dequantized_state(path: Path, dtype: Any, *, input_name: str) -> dict:
    """The file's tensors with every scaled fp8 weight multiplied out, in ``dtype`` (markers dropped)."""
    import torch
    from safetensors.torch import load_file

    raw = load_file(str(path))
    fp8 = tuple(getattr(torch, n) for n in FP8_DTYPES if hasattr(torch, n))
    scales = {k[: -len(SCALE_SUFFIX)]: v for k, v in raw.items() if k.endswith(SCALE_SUFFIX)}
    state: dict = {}
    for key, tensor in raw.items():
        if key.endswith((SCALE_SUFFIX, ".scale_input")) or key.split(".")[-1] == SCALED_FP8_MARKER:
            continue
        if tensor.dtype in fp8:
            layer = key.rsplit(".", 1)[0]
            scale = scales.get(layer)
            if scale is None or scale.numel() not in (1, tensor.shape[0]) or not torch.isfinite(scale).all():
                raise ModelNotFound(f"{path.name}: the fp8 weight '{key}' has no usable scale_weight.",
                                    input=input_name,
                                    fix="The file is damaged or of an unknown fp8 layout; download it again, or use "
                                        "the fp16/bf16 file.")
            scale = scale.float().reshape(-1, *([1] * (tensor.dim() - 1))) if scale.numel() > 1 else scale.float()
            tensor = tensor.float() * scale
        state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state
