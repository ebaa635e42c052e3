"""Wan VACE from ComfyUI's own files: ``diffusion_models/<file>`` plus a text encoder and a VAE file.

The ``model`` combo lists each recognised VACE transformer file as ``diffusion_models/<file>``;
the loader's ``text_encoder`` and ``vae`` inputs choose the other two files (``auto``: the names
ComfyUI's Wan VACE templates use), and ``transformer_2`` a second expert (Wan 2.2 VACE-Fun A14B:
``model`` is the high-noise expert, ``transformer_2`` the low-noise one). Everything is checked
from file headers when the loader runs; the weights load in the sampler, into the same
``WanVACEPipeline`` and backend a diffusers folder uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine.errors import InputError
from . import comfy_files as cf
from .family import ChosenModel, PipelineFamily
from .spec import LoadOptions, ModelSpec

FILE_CLASS = "WanVACEPipeline:comfy-files"
WAN22_BOUNDARY_RATIO = 0.875  # Wan 2.2 A14B: the high-noise expert runs while t >= 0.875 * 1000
_SAMPLE = 64 * 1024


@dataclass(frozen=True)
class ModelFiles:
    """The single files one model is made of (headers read, nothing loaded)."""

    transformer: cf.FileInfo
    text_encoder: cf.FileInfo
    vae: cf.FileInfo
    transformer_2: cf.FileInfo | None = None

    def all(self) -> list[cf.FileInfo]:
        return [f for f in (self.transformer, self.transformer_2, self.text_encoder, self.vae) if f is not None]


def model_files(path: Path, options: LoadOptions) -> ModelFiles:
    """The files of a single-file model, or a refusal naming the file and where it goes."""
    transformer = cf.read_info(path)
    second = None
    if options.transformer_2 not in ("", cf.NONE):
        second = cf.find("transformer", options.transformer_2, input_name="transformer_2")
        if second.path == transformer.path:
            raise InputError("transformer_2 is the same file as model.", input="transformer_2",
                             fix="Choose the low-noise expert file (model is the high-noise one), or 'none'.")
        if cf.transformer_config(second) != cf.transformer_config(transformer):
            raise InputError(f"{second.path.name} has another architecture than {path.name}.", input="transformer_2",
                             fix="Choose the other expert of the same Wan 2.2 model.")
    if transformer.fmt == "gguf" and options.weight_dtype != "default":
        raise InputError(f"{path.name} is a GGUF file: its weights are quantized already.", input="weight_dtype",
                         fix="Set weight_dtype to default for GGUF files.")
    return ModelFiles(transformer, cf.find_component("text_encoder", options.text_encoder),
                      cf.find_component("vae", options.vae), second)


def check_files(name: str, options: LoadOptions) -> Path:
    """Check a ``diffusion_models/<file>`` choice and its component files (nothing loads); the file's path."""
    info = cf.find("transformer", name[len(cf.FILE_MODEL_DIR) + 1:], input_name="model")
    model_files(info.path, options)
    return info.path


def _format(info: cf.FileInfo) -> str:
    if info.fmt == "gguf":
        quant = [q for q in info.quant_types if q not in ("F32", "F16", "BF16")]
        return f"GGUF {'/'.join(quant) or 'F16'}"
    return "scaled fp8" if info.fmt == "scaled_fp8" else "/".join(info.quant_types).lower()


def spec(name: str, path: Path, options: LoadOptions) -> ModelSpec:
    """The model's facts from its files' headers; the memory plan counts each format's real bytes."""
    from .wan_vace import describe, facts_of, folder_spec

    files = model_files(path, options)
    facts = facts_of(cf.transformer_config(files.transformer), cf.vae_config(files.vae),
                     cf.text_encoder_config(files.text_encoder),
                     {"transformer": files.transformer.params, "text_encoder": files.text_encoder.params,
                      "vae": files.vae.params}, files.transformer.largest)
    stored = files.transformer.weight_bytes if files.transformer.fmt in ("gguf", "scaled_fp8") else 0
    if options.weight_dtype == "fp8_e4m3fn" and not stored:
        stored = files.transformer.params
    facts = replace(facts, transformer_bytes=stored, experts=2 if files.transformer_2 else 1)
    return folder_spec(name, facts, describe(facts) + f"; {_format(files.transformer)} file")


def file_fingerprint(files: ModelFiles) -> str:
    """A short fingerprint of the files: names, sizes, headers and sampled bytes (not whole weights)."""
    digest = hashlib.sha256()
    for info in files.all():
        size = info.path.stat().st_size
        digest.update(f"{info.path.name}\0{size}\0".encode())
        with open(info.path, "rb") as fh:
            digest.update(fh.read(4 * _SAMPLE))
            fh.seek(max(size - _SAMPLE, 0))
            digest.update(fh.read(_SAMPLE))
    return "sha256:" + digest.hexdigest()[:16]


def build_pipeline(files: ModelFiles, dtype: Any) -> Any:
    """A ``WanVACEPipeline`` from the files: transformer(s), UMT5 with its own tokenizer, Wan VAE."""
    from diffusers import UniPCMultistepScheduler, WanVACEPipeline

    from . import umt5_file
    from .diffusers_loading import torch_dtype
    from .single_file_loading import load_transformer, load_vae

    compute = torch_dtype(dtype)
    transformer = load_transformer(files.transformer, compute)
    second = load_transformer(files.transformer_2, compute, input_name="transformer_2") if files.transformer_2 else None
    text_encoder, tokenizer = umt5_file.load(files.text_encoder, compute)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=load_vae(files.vae),
                           scheduler=scheduler, transformer=transformer, transformer_2=second,
                           boundary_ratio=WAN22_BOUNDARY_RATIO if second is not None else None)


def load(handle: ChosenModel):
    """Load the files (cached by files + options) and return the Wan VACE backend."""
    from .wan_vace import load_backend

    assert handle.folder is not None
    files = model_files(handle.folder, handle.options)
    key = ("comfy-files", *(str(f.path) for f in files.all()))
    return load_backend(handle, handle.spec, key, lambda dtype: build_pipeline(files, dtype),
                        lambda _pipe: file_fingerprint(files))


def report_lines(handle: ChosenModel, *, files: bool) -> list[str]:
    """What the loader's ``model_info`` says about component files (used, or ignored for a folder)."""
    o = handle.options
    if files and handle.folder is not None:
        chosen = model_files(handle.folder, o)
        lines = [f"Transformer: {chosen.transformer.path.name} ({_format(chosen.transformer)}).",
                 f"Text encoder: {chosen.text_encoder.path.name}; VAE: {chosen.vae.path.name}."]
        if chosen.transformer_2 is not None:
            lines.append(f"Wan 2.2: low-noise expert {chosen.transformer_2.path.name} "
                         f"({_format(chosen.transformer_2)}), boundary ratio {WAN22_BOUNDARY_RATIO}.")
        return lines
    ignored = [f"{k} '{v}'" for k, v in (("text_encoder", o.text_encoder), ("vae", o.vae),
                                           ("transformer_2", o.transformer_2)) if v not in (cf.AUTO, cf.NONE)]
    return [f"Ignored for a model folder (it has its own): {', '.join(ignored)}."] if ignored else []


FAMILY = PipelineFamily(name="wan_vace_files", pipeline_classes=(FILE_CLASS,), weight_components=(),
                        spec=spec, load=load)
