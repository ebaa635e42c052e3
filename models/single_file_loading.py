"""Load ComfyUI's single files into diffusers models, offline, with configs built from their shapes.

The transformer goes through ``WanVACETransformer3DModel.from_single_file`` and the VAE through
``AutoencoderKLWan.from_single_file``, each with ``config=`` a local folder holding the config
:mod:`comfy_files` derived (without it diffusers asks the Hub) and ``local_files_only=True``.
A GGUF file loads with ``GGUFQuantizationConfig``: its weights stay quantized in memory and are
dequantized layer by layer as they run. A scaled-fp8 file keeps its fp8 weights with their scales
(:mod:`fp8_scaled`). The text encoder comes from :mod:`umt5_file`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..engine.errors import GenerationError, ModelNotFound
from . import fp8_scaled
from .comfy_files import PREFIX, FileInfo, gguf_shape, transformer_config, vae_config


@contextmanager
def config_folder(config: dict) -> Iterator[str]:
    """A temporary folder with ``config.json``: what ``from_single_file(config=...)`` reads."""
    with tempfile.TemporaryDirectory(prefix="refvideo-config-") as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config), encoding="utf-8")
        yield tmp


def gguf_state(path: Path) -> dict:
    """A GGUF file's tensors as diffusers wants them (quantized ones as ``GGUFParameter``), prefix-free.

    Unquantized tensors that ComfyUI-GGUF stored reshaped get their ``orig_shape`` back.
    """
    import torch
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(str(path))
    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    state = {}
    for t in reader.tensors:
        name = t.name[len(PREFIX):] if t.name.startswith(PREFIX) else t.name
        data = torch.from_numpy(t.data.copy())
        if t.tensor_type in plain:
            state[name] = data.reshape(gguf_shape(reader, t))
        elif t.tensor_type == GGMLQuantizationType.BF16:
            state[name] = data.view(torch.bfloat16).reshape(gguf_shape(reader, t))
        elif t.tensor_type in SUPPORTED_GGUF_QUANT_TYPES:
            state[name] = GGUFParameter(data, quant_type=t.tensor_type)
        else:
            raise ModelNotFound(f"{path.name}: tensor '{t.name}' is {t.tensor_type.name}, which diffusers cannot "
                                "dequantize.", input="model",
                                fix="Use a GGUF with Q8_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K, Q5_0/1 or Q4_0/1 weights.")
    return state


def load_transformer(info: FileInfo, dtype: Any, *, input_name: str = "model") -> Any:
    """The ``WanVACETransformer3DModel`` of a single file (safetensors, scaled fp8 or GGUF)."""
    from diffusers import GGUFQuantizationConfig, WanVACETransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    kwargs: dict = {}
    scaled: dict = {}
    kept: dict[str, str] = {}
    if info.fmt == "gguf":
        source: Any = gguf_state(info.path)
        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    elif info.fmt == "scaled_fp8":
        fp8_keys = [k for k, t in info.tensors.items() if t.dtype.startswith("F8") and k.endswith(".weight")]
        kept = fp8_scaled.kept_layers(fp8_keys, convert_wan_transformer_to_diffusers,
                                      tuple(WanVACETransformer3DModel._skip_layerwise_casting_patterns or ()))
        source, scaled = fp8_scaled.read_scaled(info.path, dtype, input_name=input_name,
                                                placeholders=frozenset(kept.values()))
    else:
        source = str(info.path)
    with config_folder(transformer_config(info)) as config:
        try:
            model = WanVACETransformer3DModel.from_single_file(source, config=config, torch_dtype=dtype,
                                                               local_files_only=True, **kwargs).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise GenerationError(f"loading {info.path.name} failed: {exc}", input=input_name,
                                  fix="Download the file again, or choose another transformer file.") from exc
    if scaled:
        del source  # the placeholders: the layers take the file's fp8 weights and scales instead
        fp8_scaled.keep_fp8(model, {name: scaled[key] for name, key in kept.items()}, dtype)
    return model


def load_vae(info: FileInfo) -> Any:
    """The ``AutoencoderKLWan`` of a Wan 2.1 VAE file, in fp32 (as the pipeline runs it)."""
    import torch
    from diffusers import AutoencoderKLWan

    with config_folder(vae_config(info)) as config:
        try:
            return AutoencoderKLWan.from_single_file(str(info.path), config=config, torch_dtype=torch.float32,
                                                     local_files_only=True).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise GenerationError(f"loading {info.path.name} failed: {exc}", input="vae",
                                  fix="Download wan_2.1_vae.safetensors again.") from exc
