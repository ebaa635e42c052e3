"""Image encoders for the likeness measure, from the files users already have in ``models/clip_vision/``.

Two forms load, offline and from safetensors only:

- ComfyUI's single files (e.g. the CLIP ViT-H ``clip_vision_h.safetensors`` Wan image-to-video
  users hold, or a DINOv2 file). They carry no config, so the transformers model is built from
  the tensor shapes: widths, patch and image size, layer count and MLP size are read off the
  weights; the head count (which shapes do not show) and the activation follow the published
  models of that width (CLIP ViT-B 12 heads, L/H/bigG 16; DINOv2 64-wide heads). The weights then
  go through transformers' ``from_pretrained`` (config + state dict), which renames the published
  key layouts (DINOv2's ``attention.attention.query``, ``weights_in``) to the installed version's.
- transformers folders (``config.json`` + ``model.safetensors``) of a CLIP or DINOv2 vision
  model, through ``from_pretrained(local_files_only=True)``.

A CLIP encoder's embedding is its projected image embedding; DINOv2's is its pooled (class
token) output. Pictures come in as square RGB float arrays and are normalised with the model's
mean and standard deviation.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import host
from ..engine.errors import InputError, ModelNotFound, require
from .model_folder import UNSAFE_WEIGHTS, entry_in, read_header

KIND = "clip_vision"
NONE = "none"
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DINO_INPUT = 224                   # DINOv2 interpolates its position embeddings; it is shown 224 px pictures
# Published CLIP vision widths -> (heads, activation): ViT-B (OpenAI), ViT-L (OpenAI), ViT-H and bigG (LAION).
CLIP_WIDTHS = {768: (12, "quick_gelu"), 1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu")}
HEAD_WIDTH = 64                    # other widths: 64-wide heads (DINOv2 always)
SUGGESTION = ("Put an image encoder in ComfyUI's models/clip_vision/ (e.g. clip_vision_h.safetensors, which Wan "
              "image-to-video uses, or a DINOv2 or CLIP vision folder) and choose it as the encoder.")
_CLIP_PATCH = "vision_model.embeddings.patch_embedding.weight"
_DINO_PATCH = "embeddings.patch_embeddings.projection.weight"


@dataclass
class TransformersEncoder:
    """A transformers CLIP or DINOv2 vision model as an ``ImageEncoder``."""

    name: str
    family: str
    image_size: int
    model: Any
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def pixel_values(self, images: np.ndarray) -> Any:
        """The model input ``[N, 3, S, S]`` for pictures ``[N, S, S, 3]`` (float 0..1)."""
        torch = require("torch", "The likeness measure")
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        pixels = (np.asarray(images, dtype=np.float32)[..., :3] - mean) / std
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))

    def embed(self, images: np.ndarray) -> np.ndarray:
        torch = require("torch", "The likeness measure")
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model(pixel_values=self.pixel_values(images).to(device))
        vectors = out.image_embeds if self.family == "clip" and hasattr(out, "image_embeds") else out.pooler_output
        return vectors.float().cpu().numpy()


# --------------------------------------------------------------------------- finding files


def _candidates(root: Path) -> list[str]:
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return []
    return [p.name for p in entries if not p.name.startswith(".") and
            ((p.is_file() and p.suffix == ".safetensors") or (p.is_dir() and (p / "config.json").is_file()))]


def list_encoders() -> list[str]:
    """Encoder files and folders in the ``clip_vision`` model folders (ComfyUI's, or REFVIDEO_HOME's)."""
    names: list[str] = []
    for root in host.model_dirs(KIND):
        names.extend(n for n in _candidates(root) if n not in names)
    return names


def find_encoder(name: str, *, input_name: str = "encoder") -> Path:
    """The file or folder of encoder ``name`` (contained in a ``clip_vision`` folder)."""
    if Path(name).suffix.lower() in UNSAFE_WEIGHTS:
        raise InputError(f"'{name}' is a pickle-based weights file, which RefVideo does not load.", input=input_name,
                         fix="Use the model's .safetensors file.")
    roots = host.model_dirs(KIND)
    path = entry_in(roots, name, input_name=input_name, kind="file") or entry_in(roots, name, input_name=input_name)
    if path is None:
        available = ", ".join(list_encoders()) or "none found"
        raise ModelNotFound(f"there is no image encoder '{name}' in {', '.join(str(r) for r in roots)}.",
                            input=input_name, fix=f"Choose one of: {available}. {SUGGESTION}")
    return path


# --------------------------------------------------------------------------- building from shapes


def _layers(keys: list[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _grid(positions: int, patch: int) -> int:
    side = math.isqrt(positions - 1)
    return side * patch


def clip_config(shapes: dict[str, list[int]]) -> dict:
    """A ``CLIPVisionConfig`` (as keyword arguments) for a transformers-layout CLIP vision state dict."""
    hidden, channels, patch, _ = shapes[_CLIP_PATCH]
    heads, act = CLIP_WIDTHS.get(hidden, (max(1, hidden // HEAD_WIDTH), "gelu"))
    config = dict(hidden_size=hidden, num_channels=channels, patch_size=patch, num_attention_heads=heads,
                  hidden_act=act, image_size=_grid(shapes["vision_model.embeddings.position_embedding.weight"][0],
                                                  patch),
                  num_hidden_layers=_layers(list(shapes), r"vision_model\.encoder\.layers\.(\d+)\."),
                  intermediate_size=shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0])
    if "visual_projection.weight" in shapes:
        config["projection_dim"] = shapes["visual_projection.weight"][0]
    return config


def dinov2_config(shapes: dict[str, list[int]]) -> dict:
    """A ``Dinov2Config`` (as keyword arguments) for a transformers-layout DINOv2 state dict."""
    hidden, channels, patch, _ = shapes[_DINO_PATCH]
    swiglu = any(f"encoder.layer.0.mlp.{k}.weight" in shapes for k in ("weights_in", "gate_proj"))
    mlp = 4 if swiglu else shapes["encoder.layer.0.mlp.fc1.weight"][0] // hidden
    return dict(hidden_size=hidden, num_channels=channels, patch_size=patch,
                num_attention_heads=max(1, hidden // HEAD_WIDTH), mlp_ratio=mlp, use_swiglu_ffn=swiglu,
                image_size=_grid(shapes["embeddings.position_embeddings"][1], patch),
                num_hidden_layers=_layers(list(shapes), r"encoder\.layer\.(\d+)\."))


def _from_file(path: Path, name: str) -> TransformersEncoder:
    transformers = require("transformers", "The likeness measure")
    safetensors_torch = require("safetensors.torch", "The likeness measure", pip_name="safetensors")
    header = read_header(path)
    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    if _CLIP_PATCH in shapes:
        config = transformers.CLIPVisionConfig(**clip_config(shapes))
        cls = (transformers.CLIPVisionModelWithProjection if "projection_dim" in clip_config(shapes)
               else transformers.CLIPVisionModel)
        family, size, mean, std = "clip", config.image_size, CLIP_MEAN, CLIP_STD
    elif _DINO_PATCH in shapes:
        config = transformers.Dinov2Config(**dinov2_config(shapes))
        cls, family, size, mean, std = transformers.Dinov2Model, "dinov2", DINO_INPUT, IMAGENET_MEAN, IMAGENET_STD
    else:
        raise ModelNotFound(f"'{name}' is neither a CLIP nor a DINOv2 vision model (no '{_CLIP_PATCH}' or "
                            f"'{_DINO_PATCH}' tensor).", input="encoder", fix=SUGGESTION)
    state = safetensors_torch.load_file(str(path))
    try:  # from_pretrained renames the published key layouts (e.g. DINOv2's) to the installed version's
        model, info = cls.from_pretrained(None, config=config, state_dict=state, output_loading_info=True)
    except (RuntimeError, ValueError) as exc:  # a tensor of another size than the shapes implied
        raise ModelNotFound(f"'{name}' does not match the {family} model its shapes describe ({exc}).",
                            input="encoder", fix=SUGGESTION) from None
    missing = sorted(k for k in info["missing_keys"] if not k.endswith("position_ids"))
    wrong = sorted(info["unexpected_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
    if missing or wrong:
        raise ModelNotFound(f"'{name}' does not match the {family} model its shapes describe (missing "
                            f"{missing[:3]}, unexpected {wrong[:3]}).", input="encoder", fix=SUGGESTION)
    return TransformersEncoder(name, family, size, model.eval(), mean, std)


def _from_folder(path: Path, name: str) -> TransformersEncoder:
    transformers = require("transformers", "The likeness measure")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"'{name}' has no readable config.json ({exc}).", input="encoder", fix=SUGGESTION) from None
    kind = config.get("model_type")
    if not any(path.glob("*.safetensors")):
        raise ModelNotFound(f"'{name}' holds no .safetensors weights.", input="encoder",
                            fix="Download the folder's model.safetensors (pickle weights are not loaded).")
    processor = _processor(path)
    options = dict(local_files_only=True, use_safetensors=True)
    if kind in ("clip", "clip_vision_model"):
        model = transformers.CLIPVisionModelWithProjection.from_pretrained(path, **options)
        size = model.config.image_size
        return TransformersEncoder(name, "clip", size, model.eval(), tuple(processor.get("image_mean", CLIP_MEAN)),
                                   tuple(processor.get("image_std", CLIP_STD)))
    if kind == "dinov2":
        model = transformers.Dinov2Model.from_pretrained(path, **options)
        crop = processor.get("crop_size", DINO_INPUT)
        size = int(crop.get("height", DINO_INPUT) if isinstance(crop, dict) else crop)
        return TransformersEncoder(name, "dinov2", size, model.eval(),
                                   tuple(processor.get("image_mean", IMAGENET_MEAN)),
                                   tuple(processor.get("image_std", IMAGENET_STD)))
    raise ModelNotFound(f"'{name}' is a '{kind}' model; the likeness measure takes CLIP or DINOv2 vision models.",
                        input="encoder", fix=SUGGESTION)


def _processor(folder: Path) -> dict:
    try:
        data = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- loading (one kept loaded)

_lock = threading.Lock()
_loaded: dict[tuple, TransformersEncoder] = {}


def load_encoder(name: str, *, input_name: str = "encoder") -> TransformersEncoder:
    """Encoder ``name`` from the ``clip_vision`` folders, on RefVideo's device; the last one stays loaded."""
    return load_encoder_at(find_encoder(name, input_name=input_name), name)


def load_encoder_at(path: Path, name: str | None = None) -> TransformersEncoder:
    """The encoder in file or folder ``path`` (a ``.safetensors`` file or a transformers folder)."""
    name = name or path.name
    if not path.exists() or (path.is_file() and path.suffix != ".safetensors"):
        raise ModelNotFound(f"'{path}' is not an image encoder file or folder.", input="encoder",
                            fix=f"Give a .safetensors file or a transformers folder. {SUGGESTION}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _lock:
        if key not in _loaded:
            _loaded.clear()
            encoder = _from_folder(path, name) if path.is_dir() else _from_file(path, name)
            encoder.model.to(host.torch_device())
            _loaded[key] = encoder
        return _loaded[key]


def choice_note(chosen: str) -> str:
    """What the report says when no encoder was chosen: which files would enable likeness."""
    if chosen and chosen != NONE:
        return ""
    found = list_encoders()
    if found:
        return f"No encoder chosen; {', '.join(found)} would enable likeness (choose one as the encoder)."
    return f"No image encoder found. {SUGGESTION}"
