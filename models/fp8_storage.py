"""``weight_dtype`` ``fp8_e4m3fn``: transformer weights stored in float8, computed in the compute dtype.

diffusers' layerwise casting keeps each layer's weights in ``float8_e4m3fn`` and casts them up
to the compute dtype just before the layer runs, skipping the layers Wan VACE needs precise
(patch embeddings, condition embedder, norms: the model's own skip patterns). Half the weight
memory of bf16; GGUF-quantized and scaled-fp8 transformers are left as they are.
"""

from __future__ import annotations

from typing import Any

EXPERTS = ("transformer", "transformer_2")


def is_quantized(module: Any) -> bool:
    """True for a model whose weights a quantizer (GGUF) holds: never cast it as a whole."""
    from .fp8_scaled import MARK

    return (getattr(module, "hf_quantizer", None) is not None or bool(getattr(module, "is_quantized", False))
            or bool(getattr(module, MARK, False)))


def store_fp8(pipe: Any, weight_dtype: str, compute_dtype: Any) -> list[str]:
    """Enable fp8 storage on the pipeline's transformer(s) for ``fp8_e4m3fn``; returns what was done."""
    if weight_dtype != "fp8_e4m3fn":
        return []
    import torch

    done = []
    for name in EXPERTS:
        comp = getattr(pipe, name, None)
        if comp is None or is_quantized(comp):
            continue
        comp.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
        done.append(name)
    return done
