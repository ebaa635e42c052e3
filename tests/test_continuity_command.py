"""`refvideo continuity CLIP... --reference-set NAME | --reference [ROLE=]IMAGE ...`: JSON shape, text,
the picture, role guessing, the encoder path and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from continuity_clips import flashed, graded, previz, sample_set
from refvideo.engine.references.library import save_set
from refvideo.engine.video import encoder
from refvideo.headless.cli.main import main

PACK = Path(__file__).resolve().parent.parent
REFERENCES = ["--reference", f"character={PACK / 'samples/character_mara.png'}",
              "--reference", f"environment={PACK / 'samples/environment_harbour.png'}",
              "--reference", f"prop={PACK / 'samples/prop_lantern.png'}"]


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shots")
    refs = sample_set()
    first = encoder.encode_video(flashed(previz(refs, "slow dolly in"), refs), 4.0, folder / "shot1.mp4").path
    second = encoder.encode_video(graded(previz(refs, "pan left", 1), 30, 0.7), 4.0, folder / "shot2.mp4").path
    return refs, [str(first), str(second)]


def test_json_report_of_a_sequence(shots, tmp_path, capsys):
    _, files = shots
    plot = tmp_path / "report.png"
    assert main(["continuity", *files, *REFERENCES, "--plot", str(plot), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["file"] for c in data["clips"]] == files
    first, second = data["clips"]
    assert [(f["check"], f["frames"], f["reference"]) for f in first["findings"]] == [
        ("reference_flash", [0, 3], "character_mara")]
    assert {f["check"] for f in second["findings"]} == {"color", "drift"}
    assert all(c["likeness"] is None for c in data["clips"]) and data["encoder"] is None
    assert data["plot"] == str(plot.resolve()) and data["notes"] == []
    with Image.open(plot) as picture:
        assert picture.format == "PNG" and picture.width == 1280


def test_saved_set_text_report_and_guessed_roles(shots, capsys):
    refs, files = shots
    save_set(refs, "harbour")
    assert main(["continuity", files[0], "--reference-set", "harbour"]) == 0
    out = capsys.readouterr().out
    assert "Likeness: not measured. No image encoder found." in out and "models/clip_vision/" in out
    assert "error [reference_flash] Frames 0-3" in out and "Mara" in out
    assert main(["continuity", files[0], "--reference", str(PACK / "samples/character_mara.png"),
                 "--reference", str(PACK / "samples/environment_harbour.png"), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert "role guessed as 'character'" in notes[0] and "role guessed as 'environment'" in notes[1]


def test_encoder_from_a_path_measures_likeness(shots, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                                           num_attention_heads=1, image_size=32, patch_size=8,
                                                           projection_dim=8))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    _, files = shots
    assert main(["continuity", files[0], *REFERENCES, "--encoder", str(tmp_path / "tiny.safetensors"), "--json"]) == 0
    clip = json.loads(capsys.readouterr().out)["clips"][0]
    per_frame = clip["likeness"]["per_frame"]
    assert set(per_frame) == {"character_mara", "environment_harbour", "prop_lantern"}
    assert all(len(v) == clip["frames"] and all(-1 <= s <= 1 for s in v) for v in per_frame.values())


def test_bad_inputs_exit_2_before_any_work(shots, tmp_path, capsys):
    _, files = shots
    assert main(["continuity", str(tmp_path / "missing.mp4"), *REFERENCES, "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["errors"][0]["input"] == "CLIP"
    (tmp_path / "notes.txt").write_text("not a video")
    assert main(["continuity", str(tmp_path / "notes.txt"), *REFERENCES]) == 2
    assert "cannot be read as a video" in capsys.readouterr().err
    assert main(["continuity", files[0], "--reference", str(tmp_path / "missing.png")]) == 2
    assert main(["continuity", files[0], "--reference", "hero=mara.png"]) == 2
    assert "'hero' in 'hero=mara.png' is not a role" in capsys.readouterr().err
    assert main(["continuity", files[0], *REFERENCES, "--encoder", "absent.safetensors"]) == 2
    assert "no image encoder 'absent.safetensors'" in capsys.readouterr().err
    np.testing.assert_equal(main(["continuity", files[0], "--reference-set", "unknown"]), 2)
