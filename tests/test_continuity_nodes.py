"""ContinuityReport and ColorAnchor nodes: the report, the picture, the generation info VideoEncode stores,
the encoder combo over models/clip_vision/, and colour anchoring to each kind of anchor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from continuity_clips import graded, previz, sample_set
from refvideo.engine.continuity.check import ClipInput, analyse
from refvideo.engine.continuity.report import thresholds
from refvideo.engine.errors import InputError
from refvideo.engine.video import manifest
from refvideo.engine.video.files import save_clip
from refvideo.nodes.continuity import ColorAnchor, ContinuityReport


@pytest.fixture(scope="module")
def scene():
    refs = sample_set()
    return refs, previz(refs, "slow dolly in"), graded(previz(refs, "pan left", 1), 30, 0.7)


def test_report_node_adds_its_headline_to_the_generation_info_that_videoencode_stores(scene):
    refs, first, second = scene
    info_in = json.dumps({"model": "previz", "seed": 3})
    out = ContinuityReport().report(refs, torch.from_numpy(first), "none", frames_2=torch.from_numpy(second),
                                    generation_info=info_in)
    report_json, picture, info_out = out["result"]
    report = json.loads(report_json)
    assert [c["file"] for c in report["clips"]] == ["frames_1", "frames_2"]
    assert "Likeness: not measured." in out["ui"]["text"][0]
    assert picture.shape[0] == 1 and picture.shape[-1] == 3 and picture.dtype == torch.float32
    info = json.loads(info_out)
    assert info["seed"] == 3 and info["continuity"]["clips"][1]["shot_drift"] > thresholds()["drift"]["color"]
    saved = save_clip(torch.from_numpy(first), 4.0, "continuity/shot", generation_info=info_out)
    stored = manifest.read_manifest(saved.path)
    assert stored["continuity"] == info["continuity"]


def test_encoder_combo_lists_clip_vision_files_and_measures_likeness(scene, refvideo_home):
    refs, first, _ = scene
    folder = refvideo_home / "models" / "clip_vision"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                                           num_attention_heads=1, image_size=32, patch_size=8,
                                                           projection_dim=8))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny.safetensors"))
    choices = ContinuityReport.INPUT_TYPES()["required"]["encoder"][0]
    assert choices == ["none", "tiny.safetensors"]
    out = ContinuityReport().report(refs, torch.from_numpy(first), "none")
    assert "tiny.safetensors would enable likeness" in out["ui"]["text"][0]
    report = json.loads(ContinuityReport().report(refs, torch.from_numpy(first), "tiny.safetensors")["result"][0])
    assert report["encoder"] == "tiny.safetensors"
    assert set(report["clips"][0]["likeness"]["references"]) == {"Mara", "harbour", "lantern"}


def test_report_node_refuses_bad_inputs(scene):
    refs, first, _ = scene
    with pytest.raises(InputError, match="references"):
        ContinuityReport().report(None, torch.from_numpy(first), "none")
    with pytest.raises(InputError, match="frames_1"):
        ContinuityReport().report(refs, torch.zeros(3, 4), "none")
    with pytest.raises(InputError, match="generation_info"):
        ContinuityReport().report(refs, torch.from_numpy(first), "none", generation_info="[1, 2]")


def test_color_anchor_node_matches_each_anchor(scene):
    refs, first, second = scene
    node = ColorAnchor()
    (to_environment,) = node.anchor_colors(torch.from_numpy(second), 1.0, "auto", references=refs)
    (to_first_shot,) = node.anchor_colors(torch.from_numpy(second), 1.0, "auto", references=refs,
                                          anchor_frames=torch.from_numpy(first))
    (untouched,) = node.anchor_colors(torch.from_numpy(second), 0.0, "environment", references=refs)
    np.testing.assert_allclose(untouched.numpy(), second, atol=1e-6)
    report = analyse([ClipInput("first", first), ClipInput("environment", to_environment.numpy()),
                      ClipInput("first shot", to_first_shot.numpy())], list(refs))
    assert report.clips[1].color["reference_distance"] < thresholds()["color"]["warning"]
    assert report.clips[2].color["shot_distance"] < report.clips[1].color["shot_distance"]
    assert not [f for c in report.clips for f in c.findings], report.text()
    with pytest.raises(InputError, match="anchor_frames"):
        node.anchor_colors(torch.from_numpy(second), 1.0, "anchor_frames", references=refs)
    with pytest.raises(InputError, match="style"):
        node.anchor_colors(torch.from_numpy(second), 1.0, "style", references=refs)
