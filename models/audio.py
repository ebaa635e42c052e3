"""Text-to-audio for a clip: diffusers ``StableAudioPipeline``, or ``tiny-random`` noise.

Real models are diffusers folders under ComfyUI's ``models/diffusers`` (e.g. Stable Audio Open
1.0), checked before loading and loaded offline from safetensors. ``tiny-random`` is a tiny
StableAudioPipeline built in code with seeded random weights: it runs anywhere in a moment and
makes noise, a placeholder until a real model is installed. A clip longer than the model's
window is generated in overlapping pieces (seeds ``seed``, ``seed + 1``, ...) joined with
equal-power crossfades.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import host
from ..engine.errors import InputError, ModelNotFound, require
from ..engine.prompting import typed_text
from ..engine.seeds import check_seed, derived_seed
from ..engine.storage import read_json
from ..engine.video.manifest import parse_generation_info
from . import model_folder
from .diffusers_loading import PipelineCache
from .family import TINY_RANDOM
from .registry import AUDIO_PIPELINE_CLASSES, discover_audio, list_audio_models

log = logging.getLogger("refvideo")

PIPELINE_CLASS = AUDIO_PIPELINE_CLASSES[0]
WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder", "projection_model")
EXPECTED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/ (tokenizer.json or spiece.model)",
    "text_encoder/config.json + model.safetensors",
    "projection_model/config.json + diffusion_pytorch_model.safetensors",
    "transformer/config.json + diffusion_pytorch_model.safetensors",
    "vae/config.json + diffusion_pytorch_model.safetensors",
)
DOWNLOAD_HINT = ("Download stabilityai/stable-audio-open-1.0 (diffusers format, ~5 GB; accept its community "
                 "licence on Hugging Face first) into models/diffusers/stable-audio-open-1.0/.")
PLACEHOLDER_NOTE = ("tiny-random has random weights: this audio is noise, a placeholder until a real model is "
                    "installed. " + DOWNLOAD_HINT)
TINY_STEPS = 4
DEFAULT_STEPS = 100
DEFAULT_GUIDANCE = 7.0
OVERLAP_SECONDS = 1.0
MAX_PIECES = 64
MAX_PROMPT_CHARS = 4000  # as the sampler's prompt

# The tiny pipeline: 16 kHz stereo, a 1.024 s window (256 latent steps x hop 64).
TINY_CONFIG: dict[str, Any] = {
    "sampling_rate": 16000,
    "vae": {"encoder_hidden_size": 8, "downsampling_ratios": [4, 16], "decoder_channels": 8,
            "decoder_input_channels": 4, "audio_channels": 2, "channel_multiples": [1, 2]},
    "transformer": {"sample_size": 256, "in_channels": 4, "num_layers": 2, "attention_head_dim": 8,
                    "num_attention_heads": 2, "num_key_value_attention_heads": 1, "out_channels": 4,
                    "cross_attention_dim": 16, "time_proj_dim": 16, "global_states_input_dim": 32,
                    "cross_attention_input_dim": 16},
    "text_encoder": {"vocab_size": 64, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2},
    "projection": {"conditioning_dim": 16, "min_value": 0, "max_value": 64},
    "scheduler": {"solver_order": 2, "prediction_type": "v_prediction", "sigma_data": 1.0,
                  "sigma_schedule": "exponential"},
    "tokenizer_max_length": 64,
}


# --------------------------------------------------------------------------- finding models


def model_names() -> list[str]:
    """The node's ``model`` combo (the registry lists the audio models as it lists the video ones)."""
    return list_audio_models()


def resolve(name: str) -> Path | None:
    """The checked folder of model ``name`` (None for ``tiny-random``), or :class:`ModelNotFound`."""
    if name == TINY_RANDOM:
        return None
    folders = host.model_dirs("diffusers")
    folder = discover_audio().get(name)
    if folder is None:
        candidate = model_folder.entry_in(folders, name, input_name="model")
        if candidate is not None:
            check_folder(candidate, name)  # names what an incomplete folder lacks
            return candidate
        searched = ", ".join(str(f) for f in folders)
        raise ModelNotFound(f"no audio model folder '{name}' was found (searched: {searched}).", input="model",
                            fix=f"A Stable Audio model folder holds {'; '.join(EXPECTED_FILES)}. {DOWNLOAD_HINT} "
                            "Or choose 'tiny-random'.")
    check_folder(folder, name)
    return folder


def check_folder(folder: Path, name: str) -> None:
    """Refuse an incomplete folder (naming the missing files) or one without safetensors weights."""
    required = ["model_index.json", "scheduler/scheduler_config.json"]
    required += [f"{c}/config.json" for c in ("text_encoder", "projection_model", "transformer", "vae")]
    missing = [f for f in required if not (folder / f).is_file()]
    tokenizer = folder / "tokenizer"
    if not any((tokenizer / f).is_file() for f in ("tokenizer.json", "spiece.model")):
        missing.append("tokenizer/tokenizer.json (or spiece.model)")
    if missing:
        raise ModelNotFound(f"the audio model folder {folder} is missing: {', '.join(missing)}.", input="model",
                            fix=f"A Stable Audio model folder holds {'; '.join(EXPECTED_FILES)}. {DOWNLOAD_HINT}")
    model_folder.validate(folder, name=name, supported=(PIPELINE_CLASS,), weight_components=WEIGHT_COMPONENTS)
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json", what=f"audio model '{name}' scheduler",
                          fix=f"Download the model folder again. {DOWNLOAD_HINT}")
    if isinstance(scheduler, dict) and scheduler.get("_class_name") == "CosineDPMSolverMultistepScheduler":
        require("torchsde", f"the audio model '{name}' (its CosineDPMSolverMultistepScheduler)")


# --------------------------------------------------------------------------- loading


@dataclass
class AudioModel:
    """A loaded pipeline and what it can make in one call."""

    name: str
    pipe: Any
    placeholder: bool
    device: Any

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vae.config.sampling_rate)

    @property
    def max_seconds(self) -> float:
        return self.pipe.transformer.config.sample_size * self.pipe.vae.hop_length / self.sample_rate

    @property
    def default_steps(self) -> int:
        return TINY_STEPS if self.placeholder else DEFAULT_STEPS


_CACHE: PipelineCache[AudioModel] = PipelineCache()  # one audio model at a time, apart from the video model's cache


def build_tiny_pipeline(seed: int = 0) -> Any:
    """A tiny StableAudioPipeline with seeded random weights, built offline in a fraction of a second."""
    torch = require("torch", "AI audio")
    diffusers = require("diffusers", "AI audio")
    transformers = require("transformers", "AI audio")
    cfg = TINY_CONFIG
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(piece, -float(i)) for i, piece in enumerate("▁ abcdefghijklmnopqrstuvwxyz0123456789.,'-")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm deprecation inside AutoencoderOobleck
        torch.manual_seed(seed)
        transformer = diffusers.StableAudioDiTModel(**cfg["transformer"])
        torch.manual_seed(seed)
        vae = diffusers.AutoencoderOobleck(sampling_rate=cfg["sampling_rate"], **cfg["vae"])
        torch.manual_seed(seed)
        text_encoder = transformers.T5EncoderModel(transformers.T5Config(**cfg["text_encoder"]))
        torch.manual_seed(seed)
        projection = diffusers.StableAudioProjectionModel(text_encoder_dim=cfg["text_encoder"]["d_model"],
                                                          **cfg["projection"])
    tokenizer = transformers.T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=cfg["tokenizer_max_length"])
    scheduler = diffusers.EDMDPMSolverMultistepScheduler(**cfg["scheduler"])
    pipe = diffusers.StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection,
                                         tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)
    for module in (vae, text_encoder, projection, transformer):
        module.eval()
    return pipe


def _load_folder(folder: Path, device: Any) -> Any:
    """The pipeline from ``folder`` (offline, safetensors), fp16 for an accelerator, fp32 for the CPU."""
    torch = require("torch", "AI audio")
    diffusers = require("diffusers", "AI audio")
    dtype = torch.float32 if getattr(device, "type", "cpu") == "cpu" else torch.float16
    host.free_host_models()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # weight_norm deprecation inside AutoencoderOobleck
            pipe = diffusers.StableAudioPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                                 use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFound(f"the audio model in {folder} could not be loaded ({exc}).", input="model",
                            fix=f"Download the model folder again. {DOWNLOAD_HINT}") from exc
    return pipe  # on the CPU until it runs: see _run_pieces


def load(name: str) -> AudioModel:
    """The audio model ``name``, loaded once and kept until another audio model is asked for."""
    folder = resolve(name)
    if folder is None:
        torch = require("torch", "AI audio")
        device = torch.device("cpu")
    else:
        device = host.torch_device()
    return _CACHE.get((name, str(folder), str(device)), lambda: _build(name, folder, device))


def _build(name: str, folder: Path | None, device: Any) -> AudioModel:
    pipe = build_tiny_pipeline() if folder is None else _load_folder(folder, device)
    pipe.set_progress_bar_config(disable=True)
    return AudioModel(name, pipe, folder is None, device)


# --------------------------------------------------------------------------- generating


@dataclass
class GeneratedAudio:
    """``samples`` ``[channels, samples]`` float32 at ``sample_rate``, with what was done."""

    samples: np.ndarray
    sample_rate: int
    pieces: int
    placeholder: bool
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def piece_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start samples of the overlapping windows that cover ``total`` samples."""
    if total <= window:
        return [0]
    step = window - overlap
    count = math.ceil((total - overlap) / step)
    return [i * step for i in range(count)]


def crossfade_pieces(pieces: list[np.ndarray], starts: list[int], total: int, overlap: int) -> np.ndarray:
    """Lay pieces ``[C, T]`` at ``starts``; each overlap is an equal-power crossfade. Result: ``total`` samples."""
    channels = pieces[0].shape[0]
    out = np.zeros((channels, max(total, starts[-1] + pieces[-1].shape[1])), np.float32)
    for index, (piece, start) in enumerate(zip(pieces, starts)):
        piece = piece.astype(np.float32, copy=True)
        if index > 0 and overlap:
            t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
            fade_in = np.sin(t * np.pi / 2)
            piece[:, :overlap] *= fade_in
            out[:, start:start + overlap] *= np.cos(t * np.pi / 2)
            out[:, start:start + overlap] += piece[:, :overlap]
            out[:, start + overlap:start + piece.shape[1]] = piece[:, overlap:]
        else:
            out[:, start:start + piece.shape[1]] = piece
    return out[:, :total]


def check_request(prompt: Any, seconds: Any, seed: Any) -> tuple[str, float, int]:
    """Check the prompt, duration and seed before any model is loaded."""
    text = typed_text(prompt, "prompt", limit=MAX_PROMPT_CHARS)
    if not text:
        raise InputError("the audio prompt is empty.", input="prompt",
                         fix="Describe the sound (e.g. 'rain on a tin roof, distant thunder'), or connect the "
                             "sampler's generation_info to use the shot's prompt.")
    try:
        duration = float(seconds)
    except (TypeError, ValueError):
        duration = float("nan")
    if not math.isfinite(duration) or duration <= 0:
        raise InputError(f"the clip lasts {seconds!r} seconds; audio needs a positive length.", input="frames",
                         fix="Connect the clip's frames and its fps.")
    return text, duration, check_seed(seed)


def generate(name: str, prompt: str, seconds: float, seed: int, *, steps: int = 0,
             guidance: float = DEFAULT_GUIDANCE, negative_prompt: str = "") -> GeneratedAudio:
    """``seconds`` of audio for ``prompt`` from model ``name`` (pieces + crossfades beyond its window)."""
    prompt, seconds, seed = check_request(prompt, seconds, seed)
    if int(steps) < 0:
        raise InputError(f"steps must be 0 (the model's default) or more, not {steps}.", input="steps",
                         fix="Give 0 or a positive number of steps.")
    model = load(name)
    rate = model.sample_rate
    total = round(seconds * rate)
    window = int(model.max_seconds * rate)
    overlap = min(round(OVERLAP_SECONDS * rate), window // 4)
    starts = piece_starts(total, window, overlap)
    if len(starts) > MAX_PIECES:
        raise InputError(f"{seconds:.1f} s of audio would need {len(starts)} pieces of {model.max_seconds:.1f} s; "
                         f"at most {MAX_PIECES} are made.", input="frames",
                         fix="Generate audio for a shorter clip (or per shot, then join).")
    steps = int(steps) or model.default_steps
    pieces = _run_pieces(model, prompt, negative_prompt, starts, min(window, total), steps, guidance, seed)
    samples = crossfade_pieces(pieces, starts, total, overlap)
    notes = []
    if len(starts) > 1:
        last_seed = derived_seed(seed, len(starts) - 1)
        notes.append(f"{seconds:.2f} s is longer than the model's {model.max_seconds:.2f} s window: made in "
                     f"{len(starts)} overlapping pieces (seeds {seed} to {last_seed}), crossfaded.")
    if model.placeholder:
        notes.insert(0, PLACEHOLDER_NOTE)
    return GeneratedAudio(samples, rate, len(starts), model.placeholder, notes)


def _run_pieces(model: AudioModel, prompt: str, negative_prompt: str, starts: list[int], length: int, steps: int,
                guidance: float, seed: int) -> list[np.ndarray]:
    """One pipeline call per piece, on the model's device; an accelerator is handed back afterwards."""
    torch = require("torch", "AI audio")
    rate = model.sample_rate
    pieces = []
    on_accelerator = getattr(model.device, "type", "cpu") != "cpu"
    if on_accelerator:
        model.pipe.to(model.device)
    try:
        with host.Progress(steps * len(starts), "Generating audio") as bar:
            def on_step(*_: Any) -> None:
                bar.update()

            for index, _start in enumerate(starts):
                generator = torch.Generator("cpu").manual_seed(derived_seed(seed, index))
                with torch.inference_mode():
                    out = model.pipe(prompt, negative_prompt=negative_prompt or None, audio_end_in_s=length / rate,
                                     num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                                     callback=on_step, callback_steps=1, output_type="pt")
                piece = out.audios[0].float().cpu().numpy()
                if piece.shape[1] < length:  # float rounding of the window end: pad the last few samples
                    piece = np.pad(piece, ((0, 0), (0, length - piece.shape[1])))
                pieces.append(piece[:, :length])
    finally:
        if on_accelerator:  # park the weights in RAM so the video model gets the whole GPU
            model.pipe.to("cpu")
            host.soft_empty_cache()
    return pieces


def shot_prompt(prompt: str, generation_info: Any = None) -> str:
    """The audio prompt: ``prompt`` when given, else the shot's prompt and style from the generation info."""
    if isinstance(prompt, str) and prompt.strip():
        return prompt.strip()
    info = parse_generation_info(generation_info) or {}
    parts = [str(info.get("prompt") or "").strip()]
    style = info.get("style")
    if isinstance(style, dict):
        style = style.get("style")
    if isinstance(style, str):
        parts.append(style.strip())
    return ", ".join(p for p in parts if p)[:MAX_PROMPT_CHARS]  # the shot's words first; a long style is cut
