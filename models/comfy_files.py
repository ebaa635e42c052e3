"""ComfyUI's own Wan model files: where they are, what each one is, and the config its shapes imply.

ComfyUI users keep Wan VACE as three single files: a transformer in ``models/diffusion_models/``
(or ``models/unet/``) as ``.safetensors`` (fp16/bf16, or ``*_fp8_e4m3fn_scaled``) or ``.gguf``,
the UMT5-XXL text encoder in ``models/text_encoders/`` and the Wan 2.1 VAE in ``models/vae/``.
Everything here reads headers only (safetensors JSON headers, GGUF tensor tables), so listing,
recognising and refusing a file take milliseconds and never load a weight.

A transformer file is recognised by its VACE keys; its diffusers config comes from its tensor
shapes (:func:`transformer_config`): width, FFN size, layer and VACE-layer counts, channels and
patch. Real Wan models have a head size of 128; tiny test models (width not a multiple of 128)
have 2 heads.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..engine import host
from ..engine.errors import ModelNotFound
from .model_folder import entry_in, model_roots, read_header

SAFETENSORS = ".safetensors"
GGUF = ".gguf"
FILE_SUFFIXES = (SAFETENSORS, GGUF)
PREFIX = "model.diffusion_model."
FILE_MODEL_DIR = "diffusion_models"  # the combo's prefix: ``diffusion_models/<file>``
AUTO = "auto"
NONE = "none"
# Where each kind of file lives (ComfyUI folder names; the first is the one named in messages).
FOLDERS: dict[str, tuple[str, ...]] = {
    "transformer": ("diffusion_models", "unet"),
    "text_encoder": ("text_encoders", "clip"),
    "vae": ("vae",),
}
# What ``auto`` picks, in order (the names ComfyUI's Wan VACE templates use).
AUTO_NAMES: dict[str, tuple[str, ...]] = {
    "text_encoder": ("umt5_xxl_fp16.safetensors", "umt5_xxl_bf16.safetensors",
                     "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "vae": ("wan_2.1_vae.safetensors", "wan2.1_vae.safetensors", "Wan2.1_VAE.safetensors"),
}
DOWNLOADS = {
    "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors (or umt5_xxl_fp16) from "
                    "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
    "vae": "wan_2.1_vae.safetensors from Comfy-Org/Wan_2.1_ComfyUI_repackaged",
}
HEAD_DIM = 128  # Wan's attention head size
TINY_HEADS = 2  # test-sized models (width not a multiple of 128)
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_SUFFIX = ".scale_weight"
SPIECE = "spiece_model"
VACE_KEY = "vace_patch_embedding.weight"
UMT5_KEY = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
VAE_KEY = "decoder.middle.0.residual.0.gamma"
WAN21_VAE_Z = 16


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a file as its header tells it: logical shape, stored bytes and type name."""

    shape: tuple[int, ...]
    nbytes: int
    dtype: str


@dataclass(frozen=True)
class FileInfo:
    """A single model file's header: its tensors (prefix kept) and its storage format."""

    path: Path
    tensors: dict[str, TensorInfo]
    fmt: str  # "safetensors", "scaled_fp8" or "gguf"

    def stripped(self) -> dict[str, TensorInfo]:
        """Tensors with ComfyUI's ``model.diffusion_model.`` prefix removed."""
        return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in self.tensors.items()}

    @property
    def params(self) -> int:
        return sum(math.prod(t.shape) for k, t in self.tensors.items() if _is_weight(k))

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for k, t in self.tensors.items() if _is_weight(k))

    @property
    def largest(self) -> int:
        return max((math.prod(t.shape) for k, t in self.tensors.items() if _is_weight(k)), default=0)

    @property
    def quant_types(self) -> tuple[str, ...]:
        return tuple(sorted({t.dtype for k, t in self.tensors.items() if _is_weight(k)}))


def _is_weight(key: str) -> bool:
    return key not in (SCALED_FP8_MARKER, SPIECE) and not key.endswith((SCALE_SUFFIX, ".scale_input"))


# --------------------------------------------------------------------------- reading headers


def read_info(path: Path) -> FileInfo:
    """The header of a ``.safetensors`` or ``.gguf`` file (cached by path, size and mtime)."""
    st = path.stat()
    return _read_info(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=128)
def _read_info(path: str, _size: int, _mtime: int) -> FileInfo:
    if path.endswith(GGUF):
        return FileInfo(Path(path), _gguf_tensors(Path(path)), "gguf")
    header = read_header(Path(path))
    tensors = {k: TensorInfo(tuple(int(d) for d in v.get("shape", [])),
                             int(v["data_offsets"][1]) - int(v["data_offsets"][0]), str(v.get("dtype", "")))
               for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    scaled = any(k == SCALED_FP8_MARKER or k.endswith("." + SCALED_FP8_MARKER) for k in tensors)
    return FileInfo(Path(path), tensors, "scaled_fp8" if scaled else "safetensors")


def _gguf_tensors(path: Path) -> dict[str, TensorInfo]:
    try:
        from gguf import GGUFReader
    except ImportError:
        from ..engine.errors import MissingDependency

        raise MissingDependency("gguf", "GGUF model files") from None
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFound(f"{path.name} is not a readable GGUF file ({exc}).", input="model",
                            fix="Download the file again.") from None
    tensors = {}
    for t in reader.tensors:
        shape = gguf_shape(reader, t)
        tensors[t.name] = TensorInfo(shape, int(t.n_bytes), t.tensor_type.name)
    return tensors


def gguf_shape(reader: object, tensor: object) -> tuple[int, ...]:
    """A GGUF tensor's logical (PyTorch-order) shape, honouring ComfyUI-GGUF's ``orig_shape`` records."""
    field = reader.get_field(f"comfy.gguf.orig_shape.{tensor.name}")  # type: ignore[attr-defined]
    if field is not None:
        return tuple(int(field.parts[i][0]) for i in field.data)
    return tuple(int(d) for d in reversed(tensor.shape.tolist()))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- recognising files


def is_vace_transformer(info: FileInfo) -> bool:
    keys = info.stripped()
    return VACE_KEY in keys and "patch_embedding.weight" in keys and "blocks.0.self_attn.q.weight" in keys


def is_umt5(info: FileInfo) -> bool:
    return UMT5_KEY in info.tensors and "shared.weight" in info.tensors


def is_wan21_vae(info: FileInfo) -> bool:
    conv = info.tensors.get("conv1.weight")  # quant_conv: 2 * z_dim channels
    return VAE_KEY in info.tensors and conv is not None and conv.shape[0] == 2 * WAN21_VAE_Z


RECOGNISERS = {"transformer": is_vace_transformer, "text_encoder": is_umt5, "vae": is_wan21_vae}
WHAT = {"transformer": "a Wan VACE transformer", "text_encoder": "a UMT5 text encoder", "vae": "a Wan 2.1 VAE"}


# --------------------------------------------------------------------------- discovery


def folders(kind: str) -> list[Path]:
    """Folders searched for files of ``kind`` (ComfyUI's folders; standalone also ``<model root>/<name>``)."""
    found: list[Path] = []
    for name in FOLDERS[kind]:
        for d in [*host.model_dirs(name), *(root / name for root in model_roots())]:
            if d not in found:
                found.append(d)
    return found


def _files(root: Path) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names.extend(Path(dirpath, f).relative_to(root).as_posix() for f in sorted(filenames)
                     if f.endswith(FILE_SUFFIXES) and not f.startswith("."))
    return names


def list_files(kind: str) -> list[str]:
    """Relative names of the recognised files of ``kind`` (unreadable files are skipped)."""
    names: list[str] = []
    for root in folders(kind):
        if not root.is_dir():
            continue
        for rel in _files(root):
            if rel in names:
                continue
            try:
                ok = RECOGNISERS[kind](read_info(root / rel))
            except Exception:  # noqa: BLE001 - a broken or foreign file is not listed, never fatal
                ok = False
            if ok:
                names.append(rel)
    return names


def transformer_choices() -> list[str]:
    """The ``model`` combo's single-file entries: ``diffusion_models/<file>``."""
    return [f"{FILE_MODEL_DIR}/{n}" for n in list_files("transformer")]


def component_choices(kind: str) -> list[str]:
    """``auto`` (or ``none`` for ``transformer_2``) then the recognised files of ``kind``."""
    if kind == "transformer_2":
        return [NONE, *list_files("transformer")]
    return [AUTO, *list_files(kind)]


def is_file_model(name: str) -> bool:
    return isinstance(name, str) and name.startswith(FILE_MODEL_DIR + "/") and name.endswith(FILE_SUFFIXES)


def find(kind: str, name: str, *, input_name: str) -> FileInfo:
    """The recognised file ``name`` of ``kind``, or a refusal naming the file and where it goes."""
    where = ", ".join(str(f) for f in folders(kind))
    if not name.endswith(FILE_SUFFIXES):
        raise ModelNotFound(f"'{name}' is not a .safetensors or .gguf file.", input=input_name,
                            fix="RefVideo loads safetensors and GGUF files only; choose one from the list.")
    path = entry_in(folders(kind), name, input_name=input_name, kind="file")
    if path is None:
        raise ModelNotFound(f"'{name}' was not found.", input=input_name, fix=f"Put the file in one of: {where}.")
    info = read_info(path)
    if not RECOGNISERS[kind](info):
        raise ModelNotFound(f"{path.name} is not {WHAT[kind]}.", input=input_name,
                            fix=f"Choose {WHAT[kind]} file from {FOLDERS[kind][0]}/.")
    return info


def find_component(kind: str, choice: str) -> FileInfo:
    """The text encoder or VAE file for ``choice`` (``auto``: the usual names, then any recognised file)."""
    if choice != AUTO:
        return find(kind, choice, input_name=kind)
    listed = list_files(kind)
    for name in AUTO_NAMES[kind]:
        if name in listed:
            return find(kind, name, input_name=kind)
    if listed:
        return find(kind, listed[0], input_name=kind)
    where = ", ".join(str(f) for f in folders(kind))
    raise ModelNotFound(f"no {WHAT[kind]} file was found for the single-file model.", input=kind,
                        fix=f"Put {DOWNLOADS[kind]} in one of: {where}.")


# --------------------------------------------------------------------------- configs from shapes


def transformer_config(info: FileInfo) -> dict:
    """The ``WanVACETransformer3DModel`` config a transformer file's tensor shapes imply."""
    t = {k: v.shape for k, v in info.stripped().items()}
    dim, in_channels, *patch = t["patch_embedding.weight"]
    layers = _count(t, r"blocks\.(\d+)\.")
    vace = _count(t, r"vace_blocks\.(\d+)\.")
    step = max(layers // max(vace, 1), 1)
    heads = dim // HEAD_DIM if dim % HEAD_DIM == 0 else TINY_HEADS
    return dict(patch_size=tuple(patch), num_attention_heads=heads, attention_head_dim=dim // heads,
                in_channels=in_channels, out_channels=t["head.head.weight"][0] // math.prod(patch),
                text_dim=t["text_embedding.0.weight"][1], freq_dim=t["time_embedding.0.weight"][1],
                ffn_dim=t["blocks.0.ffn.0.weight"][0], num_layers=layers,
                cross_attn_norm="blocks.0.norm3.weight" in t, qk_norm="rms_norm_across_heads", eps=1e-6,
                rope_max_seq_len=1024, vace_layers=list(range(0, layers, step))[:vace],
                vace_in_channels=t[VACE_KEY][1])


def text_encoder_config(info: FileInfo) -> dict:
    """The ``UMT5Config`` of a ComfyUI UMT5 file: UMT5-XXL's settings with the sizes its shapes give."""
    t = {k: v.shape for k, v in info.tensors.items()}
    vocab, d_model = t["shared.weight"]
    buckets, heads = t[UMT5_KEY]
    return dict(vocab_size=vocab, d_model=d_model, d_kv=t["encoder.block.0.layer.0.SelfAttention.q.weight"][0] // heads,
                d_ff=t["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
                num_layers=_count(t, r"encoder\.block\.(\d+)\."), num_heads=heads,
                relative_attention_num_buckets=buckets, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True, layer_norm_epsilon=1e-6,
                tie_word_embeddings=False, scalable_attention=True)


def vae_config(info: FileInfo) -> dict:
    """The ``AutoencoderKLWan`` config of a Wan 2.1 VAE file (base width from its first convolution)."""
    t = {k: v.shape for k, v in info.tensors.items()}
    return dict(base_dim=t["encoder.conv1.weight"][0], z_dim=t["conv2.weight"][0], dim_mult=[1, 2, 4, 4],
                num_res_blocks=2, temperal_downsample=[False, True, True])


def _count(shapes: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(found) + 1 if found else 0
