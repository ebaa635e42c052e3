"""RefVideoStoryboard: a storyboard's shots rendered with one model, reference set and style, resumably."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engine import host
from ..engine.errors import GenerationError
from ..engine.frames import to_tensor
from ..engine.paths import contained
from ..engine.sequence.storyboard import FROM_SOCKET, parse_storyboard
from ..engine.video.files import VideoFile
from ..jobs.sequence.render import render_sequence
from .common import BUDGET, CATEGORY, MODEL, REFSET, STYLE, with_ui

DEFAULT_FOLDER = "RefVideo/sequences"
EXAMPLE = """sequence: harbour_scene
defaults:
  resolution: 720p
  duration: 5
shots:
  - name: wide
    prompt: Wide shot. Mara waits on the harbour at dusk, the lantern at her side. Slow dolly in.
    seed: 101
  - name: medium
    prompt: Medium shot. Mara lifts the lantern and looks out over the water. Slow truck left.
    continue_from: wide
    seed: 102
  - name: close
    prompt: Close-up. Mara's face in the lantern light. Slow push in, then rack focus to the background.
    continue_from: medium
    seed: 103
join:
  transition: crossfade
  crossfade_frames: 8
"""


class RefVideoStoryboard:
    """Renders every shot of a storyboard (resuming finished ones) and returns the joined sequence."""

    CATEGORY = CATEGORY
    DESCRIPTION = ("Renders a storyboard (YAML or JSON: sequence, defaults, shots, join) with one model, reference "
                   "set and style: the sockets replace the storyboard's defaults, a shot's own value still wins. "
                   "Every shot is checked and the whole sequence priced before anything renders; each shot's "
                   "credits are reserved before it starts and charged when its file exists. Shots already "
                   "rendered with the same settings are kept, not charged again. Writes <shot>.mp4, the joined "
                   "<sequence>.mp4, an OpenTimelineIO <sequence>.otio and <sequence>_contact.png.")
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING", "IMAGE")
    RETURN_NAMES = ("frames", "fps", "timeline", "contact_sheet")
    OUTPUT_TOOLTIPS = ("The joined sequence's frames (cut or crossfade, as the storyboard's join says).",
                       "The sequence's frame rate.",
                       "The absolute path of the OpenTimelineIO timeline (.otio) for an editing application.",
                       "The contact sheet: one frame per shot with its name and duration.")
    FUNCTION = "render"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (MODEL, {"tooltip": "From RefVideoModelLoader: replaces the storyboard's default model."}),
                "references": (REFSET, {"tooltip": "From LoadReferenceSet: replaces the storyboard's default "
                                                   "references (a shot may still name its own)."}),
                "storyboard": ("STRING", {"multiline": True, "default": EXAMPLE,
                                          "tooltip": "The storyboard (YAML or JSON); fields in "
                                                     "workflows/storyboards/README.md."}),
                "output_folder": ("STRING", {"default": DEFAULT_FOLDER,
                                             "tooltip": "Folder inside the output folder; the files go into "
                                                        "<output_folder>/<sequence>/ under fixed names, so a "
                                                        "re-run keeps the finished shots."}),
            },
            "optional": {
                "style": (STYLE, {"tooltip": "From StyleSkill: replaces the storyboard's default style."}),
                "budget": (BUDGET, {"tooltip": "From CreditMeter: its account and cap replace the storyboard's "
                                               "(the cap is the whole sequence's)."}),
            },
        }

    def render(self, model: Any, references: Any, storyboard: str, output_folder: str = DEFAULT_FOLDER,
               style: Any = None, budget: Any = None) -> dict[str, Any]:
        overrides: dict[str, Any] = {"model": FROM_SOCKET, "references": FROM_SOCKET}
        if style is not None:
            overrides["style"] = FROM_SOCKET
        if budget is not None:
            overrides.update(account=budget.account, budget_cap=budget.cap or 0)
        board = parse_storyboard(storyboard, overrides=overrides)
        folder = contained(host.output_dir(), f"{output_folder.strip() or DEFAULT_FOLDER}/{board.sequence}",
                           input_name="output_folder")
        result = render_sequence(board, folder, references=references, style=style, model=model)
        if result.handoff is None:
            raise GenerationError("some shots failed: " + "; ".join(
                f"{s.name}: {s.error}" for s in result.shots if s.error), fix="Fix them and queue again; the "
                "finished shots are kept and not charged again.")
        files = result.handoff
        frames = VideoFile(files.joined).get_components().images
        sheet = np.asarray(Image.open(files.contact_sheet).convert("RGB"), np.float32)[None] / 255.0
        subfolder = os.path.relpath(folder, os.path.realpath(host.output_dir())).replace(os.sep, "/")
        preview = [{"filename": Path(files.joined).name, "subfolder": subfolder, "type": "output",
                    "format": "video/mp4"}]
        return with_ui((frames, float(files.fps), str(files.timeline), to_tensor(sheet)),
                       result.text(), images=preview, animated=[True])


NODES = {"RefVideoStoryboard": (RefVideoStoryboard, "RefVideo Storyboard")}
