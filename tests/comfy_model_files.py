"""Tiny Wan VACE models written the way ComfyUI users hold them, next to the same weights as a diffusers folder.

- transformer: Wan's original key names with ComfyUI's ``model.diffusion_model.`` prefix, as
  plain safetensors, as scaled fp8 (``scale_weight`` per layer + the ``scaled_fp8`` marker) and
  as GGUF (Q8_0 where rows allow, one Q4_K tensor written as raw blocks since gguf cannot
  quantize K-types, F32 elsewhere; 5-D patch embeddings flattened with ComfyUI-GGUF's
  ``comfy.gguf.orig_shape`` record);
- UMT5 in Hugging Face key names plus its sentencepiece model in ``spiece_model``;
- the Wan 2.1 VAE in Wan's original key names.

Each writer returns the diffusers-layout state dict the file holds after dequantizing (with
``gguf.quants.dequantize`` for GGUF), the reference the loaded model is compared with.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

PREFIX = "model.diffusion_model."
Z_DIM = 16
TEXT_DIM = 32
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=Z_DIM,
                   out_channels=Z_DIM, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=256, num_layers=3, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, vace_layers=[0],
                   vace_in_channels=2 * Z_DIM + 64)
VAE = dict(base_dim=4, z_dim=Z_DIM, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])
TEXT_ENCODER = dict(d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                    feed_forward_proj="gated-gelu")
K_QUANT_KEY = "blocks.1.ffn.net.2.weight"  # in_features 256: one Q4_K block per row
_SENTENCES = ["a quiet harbour at dusk", "she walks to the window and turns", "slow dolly in then rack focus",
              "mara waits on the pier", "the camera pans left across the bay"]


# --------------------------------------------------------------------------- the tiny models


def sentencepiece_model() -> bytes:
    """A small real sentencepiece (unigram) model, trained on a few shot descriptions."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_SENTENCES * 20), model_writer=out, vocab_size=48,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def build_pipeline(folder_tokenizer: Path, *, seed: int = 0, transformer_2: bool = False,
                   transformer: dict | None = None):
    """A tiny ``WanVACEPipeline`` whose VAE and transformer have the layouts of the public single files.

    ``transformer`` overrides the transformer's config (the benchmark builds wider ones).
    """
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    tokenizer = T5Tokenizer.from_pretrained(str(folder_tokenizer), extra_ids=0, local_files_only=True)
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER)).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**VAE).eval()
    torch.manual_seed(seed)
    config = {**TRANSFORMER, **(transformer or {})}
    main = WanVACETransformer3DModel(**config).eval()
    second = None
    if transformer_2:
        torch.manual_seed(seed + 1)
        second = WanVACETransformer3DModel(**config).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=main, transformer_2=second,
                           boundary_ratio=0.875 if transformer_2 else None)


# --------------------------------------------------------------------------- key layouts (diffusers -> original)

_TRANSFORMER_RENAMES = [  # applied in order to a diffusers key
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
]


def transformer_key(key: str) -> str:
    """The Wan/ComfyUI name of a diffusers ``WanVACETransformer3DModel`` key (without prefix)."""
    if key == "scale_shift_table":
        return "head.modulation"
    if key.startswith("proj_out."):
        return key.replace("proj_out.", "head.head.")
    key = re.sub(r"^(vace_blocks\.\d+)\.proj_in\.", r"\1.before_proj.", key)
    key = re.sub(r"^(vace_blocks\.\d+)\.proj_out\.", r"\1.after_proj.", key)
    key = key.replace(".scale_shift_table", ".modulation")
    for old, new in _TRANSFORMER_RENAMES:
        key = key.replace(old, new)
    return key


def vae_key(key: str) -> str:
    """The Wan name of a diffusers ``AutoencoderKLWan`` key (the inverse of diffusers' conversion)."""
    residual = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
                "conv2": "residual.6", "conv_shortcut": "shortcut"}
    fixed = {"quant_conv": "conv1", "post_quant_conv": "conv2", "encoder.conv_in": "encoder.conv1",
             "decoder.conv_in": "decoder.conv1", "encoder.norm_out": "encoder.head.0",
             "decoder.norm_out": "decoder.head.0", "encoder.conv_out": "encoder.head.2",
             "decoder.conv_out": "decoder.head.2"}
    module, _, leaf = key.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{leaf}"
    m = re.match(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)$", key)
    if m:
        side, kind, i, rest = m.groups()
        if kind == "attentions":
            return f"{side}.middle.1.{rest}"
        return f"{side}.middle.{2 * int(i)}.{_residual(rest, residual)}"
    m = re.match(r"encoder\.down_blocks\.(\d+)\.(.+)$", key)
    if m:
        return f"encoder.downsamples.{m.group(1)}.{_residual(m.group(2), residual)}"
    m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$", key)
    if m:
        return f"decoder.upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
    m = re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key)
    if m:
        return f"decoder.upsamples.{4 * int(m.group(1)) + int(m.group(2))}.{_residual(m.group(3), residual)}"
    raise KeyError(key)


def _residual(rest: str, table: dict) -> str:
    for old, new in table.items():
        if rest.startswith(old + ".") or rest == old:
            return new + rest[len(old):]
    return rest


# --------------------------------------------------------------------------- writers


def _comfy_state(model: torch.nn.Module) -> dict:
    return {PREFIX + transformer_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_transformer(path: Path, model: torch.nn.Module) -> dict:
    """ComfyUI's plain single file (``model.diffusion_model.`` + Wan names); returns the diffusers weights."""
    save_file(_comfy_state(model), str(path))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _scaled(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (weight.abs().max().float() / 448.0).clamp(min=1e-12).reshape(())
    return (weight.float() / scale).to(torch.float8_e4m3fn), scale


def write_scaled_fp8(path: Path, model: torch.nn.Module, *, drop_scale: str | None = None) -> dict:
    """ComfyUI's ``*_fp8_e4m3fn_scaled`` layout: fp8 linear weights, ``scale_weight`` per layer, the marker.

    Returns the diffusers weights as the file really holds them (fp8 times scale).
    """
    state, reference = {}, {}
    for key, value in model.state_dict().items():
        name = PREFIX + transformer_key(key)
        if key.endswith(".weight") and value.dim() == 2 and value.shape[1] >= 16:
            fp8, scale = _scaled(value)
            state[name] = fp8
            if name[: -len(".weight")] != drop_scale:
                state[name[: -len(".weight")] + ".scale_weight"] = scale
            reference[key] = fp8.float() * scale
        else:
            state[name] = value.detach().clone().contiguous()
            reference[key] = value.detach().clone()
    state["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    save_file(state, str(path))
    return reference


def _q4_k_blocks(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random but well-formed Q4_K blocks: random 6-bit scales and 4-bit values, power-of-two ``d``/``dmin``.

    (With power-of-two super-block scales every intermediate of the dequantization is exact in float16.)
    """
    blocks = rows * cols // 256
    out = np.zeros((blocks, 144), dtype=np.uint8)
    out[:, 0:2] = np.full(blocks, 2.0**-9, np.float16).view(np.uint8).reshape(blocks, 2)  # d
    out[:, 2:4] = np.full(blocks, 2.0**-8, np.float16).view(np.uint8).reshape(blocks, 2)  # dmin
    out[:, 4:] = rng.integers(0, 256, (blocks, 140), dtype=np.uint8)
    return out.reshape(rows, cols // 256 * 144)


def write_gguf(path: Path, model: torch.nn.Module, *, k_quant: str = "Q4_K", unsupported: str | None = None) -> dict:
    """A GGUF the way QuantStack's Wan VACE files are: Wan names without prefix, Q8_0/K-quant/F32 tensors.

    Returns the diffusers weights dequantized with ``gguf.quants.dequantize`` (the reference).
    """
    import gguf
    from gguf.quants import dequantize, quantize

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "wan")
    reference = {}
    for key, value in model.state_dict().items():
        name = transformer_key(key)
        data = value.detach().float().numpy()
        qtype = gguf.GGMLQuantizationType.F32
        if key == K_QUANT_KEY:
            qtype = getattr(gguf.GGMLQuantizationType, k_quant)
            stored = _q4_k_blocks(*data.shape, rng)
        elif name == unsupported:
            qtype = gguf.GGMLQuantizationType.IQ2_XXS
            stored = rng.integers(0, 256, (data.shape[0], data.shape[1] // 256 * 66), dtype=np.uint8)
        elif data.ndim == 2 and data.shape[1] % 32 == 0 and data.size >= 1024:
            qtype = gguf.GGMLQuantizationType.Q8_0
            stored = quantize(data, qtype)
        else:
            stored = data
            if data.ndim > 4:  # ComfyUI-GGUF: flattened, with the real shape in the metadata
                stored = data.reshape(data.shape[0], -1)
                writer.add_array(f"comfy.gguf.orig_shape.{name}", list(data.shape))
        writer.add_tensor(name, stored, raw_dtype=qtype if qtype != gguf.GGMLQuantizationType.F32 else None)
        if qtype != gguf.GGMLQuantizationType.IQ2_XXS:
            reference[key] = torch.from_numpy(np.ascontiguousarray(dequantize(stored, qtype))).reshape(value.shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return reference


def write_umt5(path: Path, model: torch.nn.Module, spiece: bytes, *, scaled: bool = False) -> dict:
    """ComfyUI's UMT5 file: HF key names, ``spiece_model`` bytes; optionally scaled fp8 linears."""
    state, reference = {}, {}
    for key, value in model.state_dict().items():
        if key == "encoder.embed_tokens.weight":
            continue
        if scaled and key.endswith(".weight") and "layer" in key and value.dim() == 2:
            fp8, scale = _scaled(value)
            state[key], state[key[: -len(".weight")] + ".scale_weight"] = fp8, scale
            reference[key] = fp8.float() * scale
        else:
            state[key] = value.detach().clone().contiguous()
            reference[key] = value.detach().clone()
    if scaled:
        state["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    state["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
    save_file(state, str(path))
    return reference


def write_vae(path: Path, model: torch.nn.Module) -> dict:
    """The Wan 2.1 VAE single file in Wan's key names."""
    save_file({vae_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
