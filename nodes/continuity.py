"""ContinuityReport: colour, likeness, reference flash and drift of 1-6 shots; ColorAnchor: a clip's colours
matched to an anchor."""

from __future__ import annotations

from typing import Any

from ..engine.frames import to_tensor
from ..jobs.continuity import ANCHORS, anchor_frames_for, continuity_report
from ..models.image_encoders import NONE, list_encoders
from .common import CATEGORY, REFSET, with_ui

MAX_SHOTS = 6
_SHOT_TIP = "A shot's frames (IMAGE, e.g. a sampler's frames output); shots are compared in order, shot 1 first."


class ContinuityReport:
    """Measures how well 1-6 shots keep to their references and to each other."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        optional: dict[str, tuple] = {f"frames_{i}": ("IMAGE", {"tooltip": _SHOT_TIP}) for i in range(2, MAX_SHOTS + 1)}
        optional["generation_info"] = ("STRING", {"forceInput": True,
                                                  "tooltip": "The sampler's generation_info: returned with a "
                                                             "'continuity' key added, for VideoEncode to store."})
        return {
            "required": {
                "references": (REFSET, {"tooltip": "The reference set the shots were rendered with."}),
                "frames_1": ("IMAGE", {"tooltip": _SHOT_TIP}),
                "encoder": ([NONE, *list_encoders()],
                            {"default": NONE, "tooltip": "An image encoder in models/clip_vision/ (a CLIP vision "
                                                         "file such as clip_vision_h.safetensors, or a DINOv2 or "
                                                         "CLIP folder) for the likeness measure; none: colour, "
                                                         "flash and colour drift only."}),
            },
            "optional": optional,
        }

    RETURN_TYPES = ("STRING", "IMAGE", "STRING")
    RETURN_NAMES = ("report", "picture", "generation_info")
    OUTPUT_TOOLTIPS = ("The report as JSON: per shot its findings, colour and likeness figures.",
                       "Likeness curves per reference and colour swatches of each shot beside the references.",
                       "The input generation_info with the report's headline figures under 'continuity'.")
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = ("Checks shots against their references: colour distance in CIELAB, exposure and white balance, "
                   "likeness with an image encoder you have, references flashing into the opening frames, and "
                   "drift within and across shots; each finding says what to do.")

    def report(self, references: Any, frames_1: Any, encoder: str = NONE, frames_2: Any = None, frames_3: Any = None,
               frames_4: Any = None, frames_5: Any = None, frames_6: Any = None,
               generation_info: str | None = None) -> dict:
        shots = (frames_1, frames_2, frames_3, frames_4, frames_5, frames_6)
        clips = [(f"frames_{i}", frames) for i, frames in enumerate(shots, 1)]
        result = continuity_report(references, clips, encoder, generation_info)
        return with_ui((result.report_json, to_tensor(result.picture[None]), result.generation_info), result.text)


class ColorAnchor:
    """Matches a clip's colours to an anchor, once for the whole clip."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The clip to correct."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                       "tooltip": "0 leaves the clip as it is, 1 matches the anchor's colours "
                                                  "fully."}),
                "anchor": (list(ANCHORS), {"default": "auto",
                                           "tooltip": "What to match: auto takes anchor_frames when connected, "
                                                      "else the set's style image, else its environment image."}),
            },
            "optional": {
                "references": (REFSET, {"tooltip": "The reference set whose environment or style image anchors "
                                                   "the colours."}),
                "anchor_frames": ("IMAGE", {"tooltip": "Frames to match instead, e.g. the first shot of the "
                                                       "sequence."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The clip with its colours matched to the anchor.",)
    FUNCTION = "anchor_colors"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Moves a clip's colour distribution (mean and covariance in CIELAB) onto an anchor's with one "
                   "transform for the whole clip, so motion and lighting changes inside the shot survive.")

    def anchor_colors(self, frames: Any, strength: float, anchor: str, references: Any = None,
                      anchor_frames: Any = None) -> tuple:
        return (to_tensor(anchor_frames_for(frames, strength, anchor, references, anchor_frames)),)


NODES = {"ContinuityReport": (ContinuityReport, "Continuity Report (RefVideo)"),
         "ColorAnchor": (ColorAnchor, "Color Anchor (RefVideo)")}
