"""What the ContinuityReport and ColorAnchor nodes call: checked inputs in, report / frames out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.continuity.anchor import anchor_clip
from ..engine.continuity.check import ClipInput, analyse
from ..engine.continuity.picture import draw
from ..engine.errors import InputError
from ..engine.frames import image_batch
from ..engine.references.reference import Reference, ReferenceSet
from ..engine.video.manifest import parse_generation_info
from ..models import image_encoders

ANCHORS = ("auto", "anchor_frames", "style", "environment")


@dataclass(frozen=True)
class ContinuityResult:
    """The report as JSON and text, its picture ``[H, W, 3]``, and the generation info with its headline."""

    report_json: str
    text: str
    picture: np.ndarray
    generation_info: str


def _references(references: Any) -> list[Reference]:
    if not isinstance(references, ReferenceSet) or not len(references):
        raise InputError("expects a reference set.", input="references",
                         fix="Connect the LoadReferenceSet output the clips were rendered with.")
    return list(references)


def continuity_report(references: Any, clips: list[tuple[str, Any]], encoder: str,
                      generation_info: Any = None) -> ContinuityResult:
    """The report of IMAGE clips (``(input name, frames)`` in shot order) against ``references``, with the
    image encoder named ``encoder`` from ``models/clip_vision/`` (``none``: colour only)."""
    refs = _references(references)
    info = parse_generation_info(generation_info) or {}
    batches = [(name, image_batch(frames, input_name=name)) for name, frames in clips if frames is not None]
    loaded = None if encoder in (None, "", image_encoders.NONE) else image_encoders.load_encoder(encoder)
    report = analyse([ClipInput(name, batch[..., :3]) for name, batch in batches], refs, loaded,
                     image_encoders.choice_note(encoder))
    info["continuity"] = report.headline()
    return ContinuityResult(json.dumps(report.to_dict(), indent=2), report.text(), draw(report, refs),
                            json.dumps(info, allow_nan=False))


def anchor_frames_for(frames: Any, strength: float, anchor: str, references: Any = None,
                      anchor_frames: Any = None) -> np.ndarray:
    """The ColorAnchor node's work: ``frames`` matched to the chosen anchor (``auto``: the anchor frames when
    connected, else the set's style image, else its environment image)."""
    if anchor not in ANCHORS:
        raise InputError(f"'{anchor}' is not an anchor.", input="anchor", fix=f"Use one of: {', '.join(ANCHORS)}.")
    clip = image_batch(frames, input_name="frames")[..., :3]
    if anchor in ("auto", "anchor_frames") and anchor_frames is not None:
        return anchor_clip(clip, image_batch(anchor_frames, input_name="anchor_frames")[..., :3], strength)
    if anchor == "anchor_frames":
        raise InputError("the anchor is 'anchor_frames' but nothing is connected to it.", input="anchor_frames",
                         fix="Connect the first shot's frames, or choose the style or environment anchor.")
    roles = ("style", "environment") if anchor == "auto" else (anchor,)
    refs = references if isinstance(references, ReferenceSet) else ReferenceSet(())
    for role in roles:
        found = refs.with_role(role)
        if found:
            return anchor_clip(clip, found[0].image, strength)
    raise InputError(f"there is no {' or '.join(roles)} image to anchor to.", input="references",
                     fix="Connect a reference set with an environment or style image, or connect anchor_frames.")
