"""ComfyUI's UMT5-XXL text encoder file (``models/text_encoders/umt5_xxl_*.safetensors``).

The file holds the encoder in Hugging Face's key layout plus its own sentencepiece model in a
``spiece_model`` byte tensor. The model is a ``UMT5EncoderModel`` built from UMT5-XXL's settings
with the sizes the file's shapes give (:func:`comfy_files.text_encoder_config`); the tokenizer is
converted from the file's sentencepiece model, so nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..engine.errors import ModelNotFound
from .comfy_files import SPIECE, FileInfo, text_encoder_config
from .fp8_scaled import dequantized_state

INPUT = "text_encoder"


def load_state(info: FileInfo, dtype: Any) -> tuple[dict, bytes]:
    """The encoder's weights in ``dtype`` (scaled fp8 multiplied out) and the sentencepiece model bytes."""
    state = dequantized_state(info.path, dtype, input_name=INPUT)
    spiece = state.pop(SPIECE, None)
    if spiece is None:
        raise ModelNotFound(f"{info.path.name} carries no sentencepiece model ('{SPIECE}').", input=INPUT,
                            fix="Use ComfyUI's umt5_xxl_fp16 or umt5_xxl_fp8_e4m3fn_scaled file.")
    return state, bytes(spiece.cpu().numpy().tobytes())


def load(info: FileInfo, dtype: Any) -> tuple[Any, Any]:
    """``(UMT5EncoderModel, T5Tokenizer)`` from a ComfyUI UMT5 file, on the CPU."""
    import torch
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    state, spiece = load_state(info, dtype)
    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**text_encoder_config(info)))
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ModelNotFound(f"{info.path.name} does not fit UMT5 (missing {missing[:3]}, unexpected {unexpected[:3]}).",
                            input=INPUT, fix="Use ComfyUI's umt5_xxl text encoder file.")
    model.eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spiece.model").write_bytes(spiece)
        tokenizer = T5Tokenizer.from_pretrained(tmp, extra_ids=0, local_files_only=True)
    return model, tokenizer
