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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError, require
from ..storage import atomic_path, atomic_write_text
from ..video.encoder import encode_video
from ..video.files import VideoFile
from ..video.join import CROSSFADE, joined_frames
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


@dataclass(frozen=True)
class Handoff:
    """The files written for the editor."""

    joined: Path
    timeline: Path
    contact_sheet: Path
    fps: float
    frames: int


def _shot_frames(file: Path, middle: int, keep: list[np.ndarray]) -> Iterator[np.ndarray]:
    """A shot file's frames as float32 0..1, one at a time; its middle frame is kept for the contact sheet."""
    for index, frame in enumerate(VideoFile(file).iter_frames()):
        if index == middle:
            keep.append(frame)
        yield frame.astype(np.float32) / np.float32(255.0)


def write_handoff(storyboard: Storyboard, output_dir: Path, shots: Sequence[ShotFile]) -> Handoff:
    """Write the three hand-off files for shots whose files all exist (see the module docstring).

    The shots stream through the join into the encoder, so memory stays a few frames whatever the
    sequence's length."""
    videos = [VideoFile(s.file) for s in shots]
    counts = [v.get_frame_count() for v in videos]
    rates = [float(v.get_frame_rate()) for v in videos]
    blend = storyboard.crossfade_frames if storyboard.transition == CROSSFADE else 0
    check_joinable([(v.get_dimensions(), r, n) for v, r, n in zip(videos, rates, counts)], [s.name for s in shots],
                   blend)
    joined_path, timeline_path, sheet_path = sequence_files(output_dir, storyboard.sequence)
    middles: list[np.ndarray] = []
    frames = joined_frames([_shot_frames(s.file, n // 2, middles) for s, n in zip(shots, counts)], blend)
    total = sum(counts) - blend * (len(shots) - 1)
    info = {"sequence": storyboard.sequence, "transition": storyboard.transition, "crossfade_frames": blend,
            "shots": [s.file.name for s in shots]}
    encode_video(frames, rates[0], joined_path, frame_count=total, metadata=container_metadata(info),
                 progress="Joining the sequence")
    write_timeline(timeline_path, storyboard, [(s.name, s.prompt) for s in shots], [s.file for s in shots], counts,
                   rates[0])
    write_contact_sheet(sheet_path, [(s.name, m, n / r) for s, m, n, r in zip(shots, middles, counts, rates)])
    return Handoff(joined_path, timeline_path, sheet_path, rates[0], total)


def check_joinable(clips: Sequence[tuple[tuple[int, int], float, int]], names: Sequence[str], blend: int) -> None:
    """Shots of one size and frame rate, each long enough for the crossfade; else an InputError naming the shot."""
    (size, rate, _) = clips[0]
    for (other_size, other_rate, count), name in zip(clips, names):
        if other_size != size or abs(other_rate - rate) > 1e-3:
            raise InputError(f"shot '{name}' is {other_size[0]}x{other_size[1]} at {other_rate:g} fps, the first "
                             f"shot {size[0]}x{size[1]} at {rate:g} fps: they cannot be joined.",
                             input=f"shot '{name}'.resolution",
                             fix="Give every shot the same resolution, aspect and model, or join them in an editor.")
        if count < 2 * blend:
            raise InputError(f"shot '{name}' has {count} frames, too few for a {blend}-frame crossfade.",
                             input="join.crossfade_frames", fix=f"Use at most {count // 2} crossfade frames.")


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


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
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
    """One tile per shot (``(name, frame [H, W, 3] uint8, seconds)``), captioned, in rows of up to four."""
    height, width = tiles[0][1].shape[:2]
    columns, rows, tile_w, tile_h = contact_layout(len(tiles), width, height)
    cell_h = tile_h + CAPTION_HEIGHT
    sheet = Image.new("RGB", (GAP + columns * (tile_w + GAP), GAP + rows * (cell_h + GAP)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    for i, (name, frame, seconds) in enumerate(tiles):
        x, y = GAP + (i % columns) * (tile_w + GAP), GAP + (i // columns) * (cell_h + GAP)
        tile = Image.fromarray(np.asarray(frame, np.uint8)[..., :3]).resize((tile_w, tile_h), Image.Resampling.LANCZOS)
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
