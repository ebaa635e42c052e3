"""What an editor receives: the joined sequence, an OpenTimelineIO timeline and a contact sheet.

- ``<sequence>.mp4``: the shots joined as JoinClips joins them (cut, or crossfade of N frames).
- ``<sequence>.otio``: one video track whose clips point at the shot files (their whole length as
  the media's available range). With a crossfade, each junction is an SMPTE dissolve of N frames
  centred on the cut, the clips trimmed so the track is exactly as long as the joined file; a
  marker on each clip carries the shot's prompt.
- ``<sequence>_contact.png``: one tile per shot (its middle frame), name and duration under it.

Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import require
from ..frames import to_numpy
from ..references.images import to_uint8
from ..storage import atomic_path, atomic_write_text
from ..video.encoder import encode_video
from ..video.files import VideoFile
from ..video.join import CROSSFADE, join_clips
from ..video.manifest import container_metadata
from .storyboard import Storyboard

TILE_WIDTH = 320
CAPTION_HEIGHT = 40
MAX_COLUMNS = 4
GAP = 8
BACKGROUND = (24, 24, 24)


def sequence_files(out: Path, sequence: str) -> tuple[Path, Path, Path]:
    """The fixed names of the joined file, the timeline and the contact sheet."""
    return out / f"{sequence}.mp4", out / f"{sequence}.otio", out / f"{sequence}_contact.png"


@dataclass(frozen=True)
class ShotFile:
    """A rendered shot as the hand-off sees it."""

    name: str
    prompt: str
    file: Path


@dataclass(frozen=True, eq=False)
class Handoff:
    """The files written for the editor, and the joined frames (for a node's output)."""

    joined: Path
    timeline: Path
    contact_sheet: Path
    frames: np.ndarray
    fps: float


def write_handoff(storyboard: Storyboard, output_dir: Path, shots: Sequence[ShotFile]) -> Handoff:
    """Write the three hand-off files for shots whose files all exist (see the module docstring)."""
    clips = [VideoFile(s.file).get_components() for s in shots]
    frames = [to_numpy(c.images) for c in clips]
    fps = [float(c.frame_rate) for c in clips]
    names = [s.name for s in shots]
    joined_path, timeline_path, sheet_path = sequence_files(output_dir, storyboard.sequence)
    if len(frames) == 1:
        joined, rate = frames[0], fps[0]
    else:
        joined, rate = join_clips(frames, fps, transition=storyboard.transition,
                                  crossfade_frames=storyboard.crossfade_frames, names=names, max_clips=len(frames))
    info = {"sequence": storyboard.sequence, "transition": storyboard.transition,
            "crossfade_frames": storyboard.crossfade_frames, "shots": [s.file.name for s in shots]}
    encode_video(joined, rate, joined_path, metadata=container_metadata(info), progress="Joining the sequence")
    write_timeline(timeline_path, storyboard, [(s.name, s.prompt) for s in shots], [s.file for s in shots],
                   [len(f) for f in frames], rate)
    write_contact_sheet(sheet_path, [(n, f[len(f) // 2], len(f) / r) for n, f, r in zip(names, frames, fps)])
    return Handoff(joined_path, timeline_path, sheet_path, joined, rate)


def write_timeline(path: Path, storyboard: Storyboard, shots: Sequence[tuple[str, str]], files: Sequence[Path],
                   counts: Sequence[int], fps: float) -> None:
    """The ``.otio`` timeline (see the module docstring)."""
    otio = require("opentimelineio", "Writing an OpenTimelineIO timeline")
    time = otio.opentime
    blend = storyboard.crossfade_frames if storyboard.transition == CROSSFADE else 0
    before, after = blend // 2, blend - blend // 2  # frames of the dissolve before and after each cut
    timeline = otio.schema.Timeline(name=storyboard.sequence)
    timeline.global_start_time = time.RationalTime(0, fps)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for i, ((name, prompt), file, count) in enumerate(zip(shots, files, counts)):
        head = after if i > 0 else 0
        tail = before if i < len(files) - 1 else 0
        media = otio.schema.ExternalReference(target_url=file.resolve().as_uri(),
                                              available_range=time.TimeRange(time.RationalTime(0, fps),
                                                                             time.RationalTime(count, fps)))
        clip = otio.schema.Clip(name=name, media_reference=media,
                                source_range=time.TimeRange(time.RationalTime(head, fps),
                                                            time.RationalTime(count - head - tail, fps)))
        clip.markers.append(otio.schema.Marker(
            name=name, marked_range=time.TimeRange(time.RationalTime(head, fps), time.RationalTime(0, fps)),
            comment=prompt, metadata={"refvideo": {"shot": name, "prompt": prompt}}))
        if i > 0 and blend:
            track.append(otio.schema.Transition(name=f"dissolve {i}",
                                                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                                                in_offset=time.RationalTime(before, fps),
                                                out_offset=time.RationalTime(after, fps)))
        track.append(clip)
    timeline.tracks.append(track)
    timeline.metadata["refvideo"] = {"sequence": storyboard.sequence, "transition": storyboard.transition,
                                     "crossfade_frames": blend}
    atomic_write_text(path, otio.adapters.write_to_string(timeline, "otio_json"))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def contact_layout(count: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``(columns, rows, tile width, tile height)`` of a contact sheet for ``count`` frames of width x height."""
    columns = min(count, MAX_COLUMNS)
    rows = math.ceil(count / columns)
    return columns, rows, TILE_WIDTH, max(1, round(TILE_WIDTH * height / width))


def write_contact_sheet(path: Path, tiles: Sequence[tuple[str, np.ndarray, float]]) -> None:
    """One tile per shot (``(name, frame [H, W, 3] 0..1, seconds)``), captioned, in rows of up to four."""
    height, width = tiles[0][1].shape[:2]
    columns, rows, tile_w, tile_h = contact_layout(len(tiles), width, height)
    cell_h = tile_h + CAPTION_HEIGHT
    sheet = Image.new("RGB", (GAP + columns * (tile_w + GAP), GAP + rows * (cell_h + GAP)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    for i, (name, frame, seconds) in enumerate(tiles):
        x, y = GAP + (i % columns) * (tile_w + GAP), GAP + (i // columns) * (cell_h + GAP)
        tile = Image.fromarray(to_uint8(np.asarray(frame)[..., :3])).resize((tile_w, tile_h), Image.LANCZOS)
        sheet.paste(tile, (x, y))
        draw.text((x + 4, y + tile_h + 4), name, fill=(240, 240, 240), font=font)
        draw.text((x + 4, y + tile_h + 21), f"{seconds:.2f} s", fill=(170, 170, 170), font=font)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG", pnginfo=_png_info({"sequence_tiles": [t[0] for t in tiles]}))


def _png_info(data: dict):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("refvideo", json.dumps(data))
    return info
