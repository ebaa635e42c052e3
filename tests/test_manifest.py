"""The `refvideo` manifest and ComfyUI's prompt/workflow: written into clips and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refvideo.engine.errors import InputError
from refvideo.engine.video import encoder, manifest

INFO = {"pack_version": "0.1.0", "model": "tiny-random", "seed": 7, "steps": 2, "guidance": 5.0,
        "prompt": "slow dolly in on the café — “rain”", "references": [{"hash": "ab12", "role": "character"}],
        "rendered": {"width": 64, "height": 48, "frames": 5, "fps": 4.0}, "warnings": []}
PROMPT = {"1": {"class_type": "VideoEncode", "inputs": {"fps": 16.0}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "VideoEncode"}], "links": [], "version": 0.4}


def clip() -> np.ndarray:
    return np.random.default_rng(1).random((3, 16, 16, 3), dtype=np.float32)


def test_tags_are_stored_the_way_comfyui_save_video_stores_them():
    tags = manifest.container_metadata(json.dumps(INFO), PROMPT, {"workflow": WORKFLOW, "extra": [1, 2]})
    assert tags["prompt"] == json.dumps(PROMPT)
    assert tags["workflow"] == json.dumps(WORKFLOW)
    assert tags["extra"] == "[1, 2]"
    assert json.loads(tags["refvideo"]) == INFO
    assert manifest.container_metadata() == {}
    assert manifest.container_metadata("", None, None) == {}


@pytest.mark.parametrize("fmt", ["mp4-h264", "mp4-h265", "mov-prores", "webm-vp9", "png-sequence"])
def test_manifest_and_graph_round_trip(tmp_path, fmt):
    tags = manifest.container_metadata(INFO, PROMPT, {"workflow": WORKFLOW})
    preset = encoder.get_format(fmt)
    result = encoder.encode_video(clip(), 16.0, tmp_path / f"clip{preset.extension}", format=fmt,
                                  speed="ultrafast", metadata=tags)
    assert manifest.read_manifest(result.path) == INFO
    assert manifest.read_graph(result.path) == (PROMPT, WORKFLOW)


@pytest.mark.parametrize("fmt", ["mp4-h264", "mp4-h265", "mov-prores"])
def test_metadata_comes_before_the_media_data(tmp_path, fmt):
    """ComfyUI's drag-and-drop loader reads only the first 64 MB of a file: the tags must come first."""
    tags = manifest.container_metadata(INFO, PROMPT, {"workflow": WORKFLOW})
    preset = encoder.get_format(fmt)
    result = encoder.encode_video(clip(), 16.0, tmp_path / f"clip{preset.extension}", format=fmt, metadata=tags)
    data = result.path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"workflow") < data.find(b"mdat")


def test_a_large_workflow_survives_in_mp4(tmp_path):
    workflow = {"nodes": [{"id": i, "widgets_values": ["x" * 200]} for i in range(1000)]}  # ~230 kB of JSON
    tags = manifest.container_metadata(INFO, PROMPT, {"workflow": workflow})
    result = encoder.encode_video(clip(), 16.0, tmp_path / "big.mp4", metadata=tags)
    assert manifest.read_graph(result.path)[1] == workflow


@pytest.mark.parametrize("value, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object, not a JSON list"),
    ('"text"', "must be a JSON object, not a JSON str"),
    ({"bad": float("nan")}, "cannot be stored as JSON"),
    (42, "must be a JSON object string"),
])
def test_bad_generation_info_is_refused(value, message):
    with pytest.raises(InputError, match=message) as caught:
        manifest.container_metadata(value)
    assert caught.value.input == "generation_info"


def test_reading_explains_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="does not exist") as caught:
        manifest.read_manifest(tmp_path / "nothing.mp4")
    assert caught.value.input == "file"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="is not a video file"):
        manifest.read_manifest(text)
    bare = encoder.encode_video(clip(), 16.0, tmp_path / "bare.mp4", metadata=manifest.container_metadata(
        None, PROMPT, {"workflow": WORKFLOW}))
    with pytest.raises(InputError, match="has no 'refvideo' manifest"):
        manifest.read_manifest(bare.path)
    assert manifest.read_graph(bare.path) == (PROMPT, WORKFLOW)
    gif = encoder.encode_video(clip(), 16.0, tmp_path / "preview.gif", format="gif",
                               metadata=manifest.container_metadata(INFO))
    assert any("holds no metadata" in w for w in gif.warnings)
    with pytest.raises(InputError, match="GIF and WebP hold none"):
        manifest.read_manifest(gif.path)


def test_summary_names_the_fields_that_rerender_a_shot():
    lines = manifest.summary_lines(INFO)
    assert "model: tiny-random" in lines and "seed: 7" in lines
    assert "rendered: width 64, height 48, frames 5, fps 4" in lines
    assert "references: 1 (character)" in lines
