"""The editor hand-off: the joined sequence, the .otio timeline read back with opentimelineio, and the
contact sheet's tiles, measured against the shot files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import yaml
from PIL import Image

from refvideo.engine.frames import to_numpy
from refvideo.engine.sequence.handoff import CAPTION_HEIGHT, GAP, contact_layout
from refvideo.engine.sequence.storyboard import read_storyboard
from refvideo.engine.video.files import VideoFile
from refvideo.jobs.sequence.render import render_sequence

REFS = [{"image": "samples/character_mara.png", "role": "character", "label": "Mara"},
        {"image": "samples/environment_harbour.png", "role": "environment"}]
PROMPTS = {"wide": "Wide shot. Mara on the quay. Slow dolly in.",
           "pan": "The harbour at dusk. Pan right.",
           "close": "Close-up of Mara. Slow push in.",
           "night": "Night falls on the harbour. Crane up.",
           "lantern": "The lantern on the quay. Tilt down."}


def render(tmp_path: Path, names: list[str], join: dict | None = None):
    data = {"sequence": "reel", "defaults": {"references": REFS, "model": "previz", "resolution": "144p"},
            "shots": [{"name": n, "prompt": PROMPTS[n], "seed": i} for i, n in enumerate(names)]}
    if join:
        data["join"] = join
    path = tmp_path / "reel.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = render_sequence(read_storyboard(path), tmp_path / "out")
    assert result.ok
    return result


def decoded(path: Path) -> np.ndarray:
    return to_numpy(VideoFile(path).get_components().images)


@pytest.mark.slow
@pytest.mark.parametrize("join", [None, {"transition": "crossfade", "crossfade_frames": 8}])
def test_timeline_reads_back_with_clips_at_the_shot_files(tmp_path, join):
    names = ["wide", "pan", "close"]
    result = render(tmp_path, names, join)
    files = {s.name: s.file for s in result.shots}
    timeline = otio.adapters.read_from_file(str(result.handoff.timeline))
    (track,) = timeline.video_tracks()
    clips = list(track.find_clips())
    assert [c.name for c in clips] == names
    blend = join["crossfade_frames"] if join else 0
    transitions = [item for item in track if isinstance(item, otio.schema.Transition)]
    assert len(transitions) == (len(names) - 1 if blend else 0)
    for clip in clips:
        file = files[clip.name]
        count = VideoFile(file).get_frame_count()
        assert Path(clip.media_reference.target_url.removeprefix("file://")) == file.resolve()
        available = clip.media_reference.available_range
        assert available.duration.to_frames() == count and available.duration.rate == 16
        assert [m.comment for m in clip.markers] == [PROMPTS[clip.name]]
        assert clip.source_range.duration.to_frames() <= count
    joined = VideoFile(result.handoff.joined).get_frame_count()
    assert track.duration().to_frames() == joined
    assert joined == sum(VideoFile(f).get_frame_count() for f in files.values()) - blend * (len(names) - 1)
    if not blend:  # a cut keeps every shot whole: the joined file is the shots back to back
        whole = np.concatenate([decoded(files[n]) for n in names])
        assert np.abs(decoded(result.handoff.joined) - whole).mean() < 0.02


@pytest.mark.slow
def test_contact_sheet_has_one_captioned_tile_per_shot(tmp_path):
    names = ["wide", "pan", "close", "night", "lantern"]
    result = render(tmp_path, names)
    sheet = np.asarray(Image.open(result.handoff.contact_sheet).convert("RGB"), np.float32) / 255.0
    columns, rows, tile_w, tile_h = contact_layout(len(names), 256, 144)
    assert (columns, rows) == (4, 2)
    assert sheet.shape == (GAP + rows * (tile_h + CAPTION_HEIGHT + GAP), GAP + columns * (tile_w + GAP), 3)
    middles = {}
    for shot in result.shots:
        frames = decoded(shot.file)
        middle = Image.fromarray((frames[len(frames) // 2] * 255).round().astype(np.uint8)).resize((tile_w, tile_h))
        middles[shot.name] = np.asarray(middle, np.float32) / 255.0
    for i, name in enumerate(names):
        x, y = GAP + (i % columns) * (tile_w + GAP), GAP + (i // columns) * (tile_h + CAPTION_HEIGHT + GAP)
        tile = sheet[y:y + tile_h, x:x + tile_w]
        errors = {other: np.abs(tile - middle).mean() for other, middle in middles.items()}
        assert min(errors, key=errors.get) == name and errors[name] < 0.02, errors
        caption = sheet[y + tile_h:y + tile_h + CAPTION_HEIGHT, x:x + tile_w]
        assert caption.max() > 0.8  # the name and duration are drawn in light text
    empty = sheet[GAP + tile_h + CAPTION_HEIGHT + GAP:, GAP + 1 * (tile_w + GAP):]
    assert np.abs(empty - empty[0, 0]).max() < 1e-6  # no tile after the fifth
