"""RefVideoAudio: a text prompt -> AI audio as long as the clip (optional in every workflow)."""

from __future__ import annotations

from typing import Any

from ..engine.frames import numpy_to_audio
from ..engine.seeds import MAX_SEED
from ..engine.video.encoder import MAX_FPS, check_fps, frame_shape
from ..models import audio as audio_models
from .common import CATEGORY, with_ui


class RefVideoAudio:
    """Generate sound for a clip with a Stable Audio model (or tiny-random noise)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (audio_models.model_names(), {
                    "default": audio_models.TINY_RANDOM,
                    "tooltip": "tiny-random makes noise (a placeholder, no download); otherwise a Stable Audio "
                               "model folder found in models/diffusers (e.g. stable-audio-open-1.0)."}),
                "prompt": ("STRING", {"multiline": True, "default": "",
                                      "tooltip": "The sound to make, e.g. 'footsteps on gravel, light wind'. Empty: "
                                                 "the shot's prompt and style from generation_info."}),
                "frames": ("IMAGE", {"tooltip": "The clip the audio is for; its length sets the audio's length."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": MAX_FPS, "step": 0.001,
                                  "tooltip": "The clip's frame rate (connect the sampler's fps output)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                 "tooltip": "Random seed; the same seed, prompt and model give the same audio."}),
            },
            "optional": {
                "generation_info": ("STRING", {"forceInput": True,
                                               "tooltip": "The sampler's generation_info: its prompt and style "
                                                          "are used when the prompt is empty."}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 500,
                                  "tooltip": "Denoising steps; 0 uses the model's default (100; tiny-random 4)."}),
            },
        }

    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("Audio as long as the clip; connect it to VideoEncode's audio input.",)
    FUNCTION = "generate"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Text-to-audio for a clip with a Stable Audio model from models/diffusers, matched to the "
                   "clip's length. tiny-random makes noise, as a placeholder until a real model is installed.")

    def generate(self, model: str, prompt: str, frames: Any, fps: float, seed: int,
                 generation_info: str | None = None, steps: int = 0) -> dict:
        seconds = frame_shape(frames)[0] / check_fps(fps)
        made = audio_models.generate(model, audio_models.shot_prompt(prompt, generation_info), seconds, seed,
                                     steps=steps)
        text = f"{made.seconds:.2f} s of audio at {made.sample_rate} Hz from '{model}'."
        return with_ui((numpy_to_audio(made.samples, made.sample_rate),), "\n".join([text, *made.notes]))


NODES = {"RefVideoAudio": (RefVideoAudio, "Audio for Clip (RefVideo)")}
