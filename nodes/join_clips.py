"""JoinClips: 2-6 clips -> one sequence, with hard cuts or crossfades."""

from __future__ import annotations

from typing import Any

from ..engine.frames import to_tensor
from ..engine.video.encoder import MAX_FPS
from ..engine.video.join import CUT, MAX_CLIPS, TRANSITIONS, join_clips
from .common import CATEGORY

_CLIP_TIP = "A clip to join (IMAGE frames, e.g. a sampler's frames output); clips play in order."
_FPS_TIP = ("This clip's frame rate: connect its sampler's fps output so clips of different rates are refused "
            "instead of playing at the wrong speed. Unconnected (or 0): the same as fps_1.")


class JoinClips:
    """Join clips of one size and frame rate into a sequence."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        optional: dict[str, tuple] = {}
        for i in range(3, MAX_CLIPS + 1):
            optional[f"clip_{i}"] = ("IMAGE", {"tooltip": _CLIP_TIP})
        for i in range(2, MAX_CLIPS + 1):
            optional[f"fps_{i}"] = ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FPS, "forceInput": True,
                                              "tooltip": _FPS_TIP})
        return {
            "required": {
                "clip_1": ("IMAGE", {"tooltip": _CLIP_TIP}),
                "clip_2": ("IMAGE", {"tooltip": _CLIP_TIP}),
                "fps_1": ("FLOAT", {"default": 16.0, "min": 1.0, "max": MAX_FPS, "step": 0.001,
                                    "tooltip": "The frame rate of clip_1, and of the joined sequence."}),
                "transition": (list(TRANSITIONS), {"default": CUT,
                                                   "tooltip": "cut: clips follow each other; crossfade: each join "
                                                              "blends the last and first crossfade_frames frames."}),
                "crossfade_frames": ("INT", {"default": 8, "min": 1, "max": 120,
                                             "tooltip": "Frames blended at each join (crossfade only); the sequence "
                                                        "gets this many frames shorter per join."}),
            },
            "optional": optional,
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("frames", "fps")
    OUTPUT_TOOLTIPS = ("The joined sequence.", "Its frame rate (connect to VideoEncode's fps).")
    FUNCTION = "join"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Joins 2-6 clips of the same size and frame rate into one sequence, with hard cuts or "
                   "crossfades, for multi-shot sequences (e.g. the continuity workflow).")

    def join(self, clip_1: Any, clip_2: Any, fps_1: float, transition: str, crossfade_frames: int,
             clip_3: Any = None, clip_4: Any = None, clip_5: Any = None, clip_6: Any = None,
             fps_2: float | None = None, fps_3: float | None = None, fps_4: float | None = None,
             fps_5: float | None = None, fps_6: float | None = None) -> tuple:
        given = [(f"clip_{i}", clip, rate) for i, (clip, rate) in enumerate(
            zip((clip_1, clip_2, clip_3, clip_4, clip_5, clip_6), (fps_1, fps_2, fps_3, fps_4, fps_5, fps_6)), 1)
            if clip is not None]
        frames, fps = join_clips([c for _, c, _ in given], [r or None for _, _, r in given], transition=transition,
                                 crossfade_frames=crossfade_frames, names=[n for n, _, _ in given])
        return (to_tensor(frames), fps)


NODES = {"JoinClips": (JoinClips, "Join Clips (RefVideo)")}
