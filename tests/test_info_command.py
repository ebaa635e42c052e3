"""`refvideo info FILE [--json]`: the manifest of a written clip, and clear errors without one."""

from __future__ import annotations

import json

import numpy as np

from refvideo.engine.video import encoder, manifest
from refvideo.headless.cli.main import main

INFO = {"model": "previz", "seed": 11, "steps": 1, "prompt": "slow dolly in", "rendered": {"frames": 3, "fps": 16.0}}


def write(path, fmt="mp4-h264", info=INFO):
    clip = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    return encoder.encode_video(clip, 16.0, path, format=fmt, metadata=manifest.container_metadata(info)).path


def test_json_prints_the_manifest_itself(tmp_path, capsys):
    path = write(tmp_path / "shot.mp4")
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == INFO


def test_text_shows_a_summary_and_the_full_generation_info(tmp_path, capsys):
    path = write(tmp_path / "shot.webm", "webm-vp9")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model: previz" in out and "seed: 11" in out and "rendered: frames 3, fps 16" in out
    assert json.loads(out.split("generation info:", 1)[1]) == INFO


def test_png_sequence_folders_work_too(tmp_path, capsys):
    path = write(tmp_path / "frames_00001", "png-sequence")
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 11


def test_a_file_without_a_manifest_is_a_clear_input_error(tmp_path, capsys):
    path = write(tmp_path / "bare.mp4", info=None)
    assert main(["info", str(path), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["errors"][0]
    assert error["input"] == "file" and "has no 'refvideo' manifest" in error["message"]
    assert main(["info", str(tmp_path / "missing.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "is not a video file" in capsys.readouterr().err
