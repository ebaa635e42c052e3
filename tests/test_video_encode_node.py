"""The VideoEncode node in a workflow: file, preview, path, VIDEO, metadata and the prefix rule."""

from __future__ import annotations

import io
import sys
import types
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from refvideo.engine import host
from refvideo.engine.errors import InputError
from refvideo.engine.video import manifest
from refvideo.engine.video.files import VideoFile
from refvideo.headless import runner
from refvideo.headless.schema import input_specs
from refvideo.nodes.audio import RefVideoAudio
from refvideo.nodes.join_clips import JoinClips
from refvideo.nodes.video_encode import VideoEncode

INFO = '{"model": "tiny-random", "seed": 5, "prompt": "a slow pan"}'
WORKFLOW_UI = {"nodes": [{"id": 2, "type": "VideoEncode"}], "links": []}


class TestFrames:
    """A source node for these tests: a small moving clip as IMAGE, its fps and a generation info."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 9, "min": 1})}}

    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    FUNCTION = "make"

    def make(self, count):
        frames = torch.zeros((count, 36, 64, 3))
        for i in range(count):
            frames[i, :, (i * 6) % 56:(i * 6) % 56 + 8] = 1.0
        return (frames, 16.0, INFO)


CLASSES = {"TestFrames": TestFrames, "VideoEncode": VideoEncode, "RefVideoAudio": RefVideoAudio,
           "JoinClips": JoinClips}


def workflow(**encode_inputs) -> dict:
    inputs = {"frames": ["1", 0], "fps": ["1", 1], "generation_info": ["1", 2], "filename_prefix": "shots/take",
              "format": "mp4-h264", "crf": 23, "preset": "ultrafast", **encode_inputs}
    return {"1": {"class_type": "TestFrames", "inputs": {"count": 9}},
            "2": {"class_type": "VideoEncode", "inputs": inputs}}


def run(flow: dict):
    result = runner.execute(flow, CLASSES, extra_pnginfo={"workflow": WORKFLOW_UI})
    return result, result.ui["2"]


def test_the_node_writes_previews_and_returns_path_and_video():
    flow = workflow()
    result, ui = run(flow)
    out = host.output_dir()
    assert ui["images"] == [{"filename": "take_00001.mp4", "subfolder": "shots", "type": "output",
                             "format": "video/mp4"}]
    assert ui["animated"] == [True]
    path = out / "shots" / "take_00001.mp4"
    assert result.files["2"] == [path.resolve()]
    node_out = VideoEncode().encode(*TestFrames().make(9)[:2], "shots/take", "mp4-h264", 23, "ultrafast",
                                    generation_info=INFO)
    path_string, video = node_out["result"]
    assert path_string == str(out / "shots" / "take_00002.mp4") and Path(path_string).is_absolute()
    assert isinstance(video, VideoFile)  # ComfyUI's own object is used inside ComfyUI
    assert video.get_dimensions() == (64, 36) and video.get_frame_count() == 9
    assert video.get_frame_rate() == Fraction(16) and video.get_duration() == pytest.approx(9 / 16)
    parts = video.get_components()
    assert tuple(parts.images.shape) == (9, 36, 64, 3) and parts.frame_rate == Fraction(16)
    assert abs(float(parts.images[3, 10, 20, 0]) - 1.0) < 0.1 and float(parts.images[3, 10, 40, 0]) < 0.1


def test_metadata_holds_prompt_workflow_and_generation_info():
    flow = workflow()
    run(flow)
    path = host.output_dir() / "shots" / "take_00001.mp4"
    assert manifest.read_manifest(path) == {"model": "tiny-random", "seed": 5, "prompt": "a slow pan"}
    prompt, graph = manifest.read_graph(path)
    assert prompt == flow and graph == WORKFLOW_UI


def test_comfyui_disable_metadata_is_respected(monkeypatch, tmp_path):
    """Inside ComfyUI started with --disable-metadata nothing goes into the file."""
    fake_paths = types.ModuleType("folder_paths")
    for name in ("output", "input", "temp", "user"):
        folder = tmp_path / name
        folder.mkdir()
        setattr(fake_paths, f"get_{name}_directory", lambda folder=folder: str(folder))
    comfy = types.ModuleType("comfy")
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(disable_metadata=True)
    monkeypatch.setitem(sys.modules, "folder_paths", fake_paths)
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.cli_args", cli_args)
    assert host.metadata_disabled()
    _, ui = run(workflow())
    path = tmp_path / "output" / "shots" / ui["images"][0]["filename"]
    tags = manifest.read_metadata(path)
    assert not {"prompt", "workflow", "refvideo"} & set(tags)


@pytest.mark.slow
def test_a_video_object_can_be_saved_again_with_new_metadata(tmp_path):
    flow = workflow(audio=["3", 0])
    flow["3"] = {"class_type": "RefVideoAudio", "inputs": {"model": "tiny-random", "prompt": "wind", "frames": ["1", 0],
                                                          "fps": ["1", 1], "seed": 1}}
    _, ui = run(flow)
    path = host.output_dir() / "shots" / ui["images"][0]["filename"]
    video = VideoFile(path)
    copy = tmp_path / "copy.mp4"
    video.save_to(copy, format="auto", codec="auto", metadata={"prompt": {"1": "x"}, "note": "copied"})
    with av.open(str(copy)) as container:
        assert container.streams.video[0].codec_context.name == "h264" and len(container.streams.audio) == 1
        assert container.metadata["prompt"] == '{"1": "x"}' and container.metadata["note"] == "copied"
        assert "refvideo" in container.metadata  # the original tags are kept
    buffer = io.BytesIO()
    video.save_to(buffer, metadata={"note": "in memory"})
    with av.open(io.BytesIO(buffer.getvalue())) as container:
        assert sum(1 for _ in container.decode(video=0)) == 9
    trimmed = video.as_trimmed(start_time=0.25, duration=0.25)
    assert trimmed.get_frame_count() == 4 and trimmed.get_components().images.shape[0] == 4
    trimmed.save_to(tmp_path / "trimmed.mp4")  # re-encoded: the window's frames and audio only
    with av.open(str(tmp_path / "trimmed.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
        assert float(container.streams.audio[0].duration * container.streams.audio[0].time_base) == \
            pytest.approx(0.25, abs=0.03)
    assert video.as_trimmed(start_time=0.5, duration=2.0) is None


def test_prores_and_gif_videos_are_re_encoded_when_saved_as_mp4(tmp_path):
    frames, fps, _ = TestFrames().make(5)
    for fmt in ("mov-prores", "gif"):
        _, video = VideoEncode().encode(frames, fps, "editors/e", fmt, 19, "ultrafast")["result"]
        video.save_to(tmp_path / f"{fmt}.mp4")
        with av.open(str(tmp_path / f"{fmt}.mp4")) as container:
            assert container.streams.video[0].codec_context.name == "h264", fmt
            assert sum(1 for _ in container.decode(video=0)) == 5


def test_preview_formats_return_a_readable_video_object():
    node = VideoEncode()
    frames, fps, _ = TestFrames().make(5)
    for fmt, mime in (("webp", "image/webp"), ("png-sequence", "image/png"), ("gif", "image/gif")):
        out = node.encode(frames, fps, "previews/p", fmt, 19, "ultrafast")
        _, video = out["result"]
        assert video.get_frame_count() == 5 and video.get_dimensions() == (64, 36), fmt
        assert tuple(video.get_components().images.shape) == (5, 36, 64, 3), fmt
        assert out["ui"]["images"][0]["format"] == mime
    seq = node.encode(frames, fps, "previews/s", "png-sequence", 19, "ultrafast")
    assert [e["filename"] for e in seq["ui"]["images"]] == [f"frame_{i:05d}.png" for i in range(1, 6)]
    assert seq["ui"]["images"][0]["subfolder"] == "previews/s_00001" and seq["ui"]["animated"] == [False]


@pytest.mark.parametrize("prefix", ["../outside", "/etc/clip", "shots/../../x", "C:/clip", "shots/.hidden"])
def test_the_prefix_stays_inside_the_output_folder(prefix):
    frames, fps, _ = TestFrames().make(2)
    with pytest.raises(InputError) as caught:
        VideoEncode().encode(frames, fps, prefix, "mp4-h264", 19, "ultrafast")
    assert caught.value.input == "filename_prefix"
    assert not any(host.output_dir().parent.glob("outside*"))


def test_bad_values_are_refused_by_the_workflow_or_the_node():
    with pytest.raises(runner.WorkflowInvalid, match="format"):
        run(workflow(format="avi"))
    with pytest.raises(runner.NodeFailed, match="crf 60 is outside 0-51"):
        run(workflow(crf=60))
    with pytest.raises(InputError, match="generation_info: is not valid JSON"):
        VideoEncode().encode(*TestFrames().make(2)[:2], "x", "mp4-h264", 19, "fast", generation_info="{")
    assert not host.output_dir().exists() or not any(host.output_dir().rglob("*.mp4"))


def test_every_input_has_a_tooltip_and_optional_inputs_have_defaults():
    import inspect

    specs = input_specs(VideoEncode)
    assert list(specs)[:6] == ["frames", "fps", "filename_prefix", "format", "crf", "preset"]
    assert {"audio", "generation_info", "audio_fit"} <= set(specs)
    assert all(spec.options.get("tooltip") for spec in specs.values())
    params = inspect.signature(VideoEncode.encode).parameters
    assert set(params) - {"self"} == set(specs) | {"prompt", "extra_pnginfo"}
    assert all(params[name].default is not inspect.Parameter.empty for name, s in specs.items() if not s.required)
    assert VideoEncode.OUTPUT_NODE and VideoEncode.RETURN_TYPES == ("STRING", "VIDEO")
