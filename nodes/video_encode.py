"""VideoEncode: frames (+ audio) -> a video file in the output folder, with the shot's generation info."""

from __future__ import annotations

from typing import Any

from ..engine.errors import InputError
from ..engine.video import files
from ..engine.video.encoder import (
    AUDIO_FITS,
    DEFAULT_CRF,
    DEFAULT_FORMAT,
    DEFAULT_SPEED,
    FIT_AUDIO,
    MAX_FPS,
    SPEEDS,
    check_fps,
    check_rate_for,
    format_names,
    get_format,
)
from .common import CATEGORY, with_ui


class VideoEncode:
    """Write a clip (MP4, WebM, MOV, WebP, GIF or PNG sequence) and show it in the node."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The clip's frames (e.g. the sampler's frames output)."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": MAX_FPS, "step": 0.001,
                                  "tooltip": "Frames per second; connect the sampler's fps output so the clip plays "
                                             "at the speed it was rendered."}),
                "filename_prefix": ("STRING", {"default": files.DEFAULT_PREFIX,
                                               "tooltip": "File name prefix inside ComfyUI's output folder; may "
                                                          "name subfolders (e.g. 'shots/scene1'), never leave it. "
                                                          "A counter is added: clip_00001.mp4."}),
                "format": (format_names(), {"default": DEFAULT_FORMAT,
                                            "tooltip": "mp4-h264 plays everywhere (default); mp4-h265 is smaller; "
                                                       "webm-vp9 for the web; mov-prores for editors; webp and gif "
                                                       "are previews; png-sequence is a folder of lossless frames."}),
                "crf": ("INT", {"default": DEFAULT_CRF, "min": 0, "max": 100,
                                "tooltip": "Quality: lower is better and larger. H.264/H.265 take 0-51, VP9 0-63, "
                                           "WebP 0-100 (quality = 100 - crf); ProRes, GIF and PNG ignore it."}),
                "preset": (list(SPEEDS), {"default": DEFAULT_SPEED,
                                          "tooltip": "Encoder speed: slower presets make smaller files at the same "
                                                     "quality. ProRes and GIF ignore it."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Optional sound (e.g. from RefVideoAudio); muxed as AAC (MP4/MOV) "
                                               "or Opus (WebM), resampled as needed, mono or stereo."}),
                "generation_info": ("STRING", {"forceInput": True,
                                               "tooltip": "The sampler's generation_info; stored in the file "
                                                          "under 'refvideo' so the shot can be re-rendered "
                                                          "('refvideo info FILE' prints it)."}),
                "audio_fit": (list(AUDIO_FITS), {"default": FIT_AUDIO,
                                                 "tooltip": "When audio and video lengths differ: pad or trim the "
                                                            "audio to the video, or trim the video to the audio."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ("STRING", "VIDEO")
    RETURN_NAMES = ("path", "video")
    OUTPUT_TOOLTIPS = ("The absolute path of the written file (the folder, for a PNG sequence).",
                       "The written clip as a VIDEO, for core Save Video and other packs.")
    FUNCTION = "encode"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encodes frames (and optional audio) into a video file in the output folder, storing the "
                   "generation info and the ComfyUI workflow in its metadata, and previews it in the node.")

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str | None = None, fps: float | None = None,
                        format: str | None = None) -> bool | str:
        """Checked before the workflow runs (before any credits are reserved): the clip must be writable
        under the prefix, and a constant fps must suit the format (GIF times frames in 1/100 s).
        Linked inputs are not known yet; the encoder checks them before it writes."""
        try:
            if filename_prefix is not None:
                files.check_prefix(filename_prefix)
            preset = get_format(format) if format is not None else None
            if fps is not None:
                rate = check_fps(fps)
                if preset is not None:
                    check_rate_for(preset, rate)
        except InputError as exc:
            return str(exc)
        return True

    def encode(self, frames: Any, fps: float, filename_prefix: str, format: str, crf: int, preset: str,
               audio: dict | None = None, generation_info: str | None = None, audio_fit: str = FIT_AUDIO,
               prompt: dict | None = None, extra_pnginfo: dict | None = None) -> dict:
        saved = files.save_clip(frames, fps, filename_prefix, format=format, crf=crf, speed=preset, audio=audio,
                                     audio_fit=audio_fit, generation_info=generation_info, prompt=prompt,
                                     extra_pnginfo=extra_pnginfo)
        return with_ui((str(saved.path), saved.video), files.describe(saved), **saved.preview)


NODES = {"VideoEncode": (VideoEncode, "Video Encode (RefVideo)")}
