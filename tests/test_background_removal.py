"""rembg with the real u2netp model cuts out the synthetic subject; missing models are explained.

The model comes from ``REFVIDEO_TEST_U2NET_HOME`` (a folder holding u2netp.onnx, prepared by
``.ci/u2netp.sh``); never from the network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from refvideo.engine import host
from refvideo.engine.errors import InputError, ModelNotFound
from refvideo.models import background_removal
from refvideo.models.background_removal import catalogue, find_model_file, model_names, remove_background
from refvideo.nodes.reference_set import LoadReferenceSet
from synthetic_references import TWO, as_float, character, character_mask, doubled, save_png

REMBG_IOU = 0.9  # u2netp on the synthetic character measures about 0.98


@pytest.fixture
def u2net_home() -> Path:
    folder = os.environ.get("REFVIDEO_TEST_U2NET_HOME")
    if not folder or not (Path(folder) / "u2netp.onnx").is_file():
        pytest.skip("REFVIDEO_TEST_U2NET_HOME is not set to a folder holding u2netp.onnx "
                    "(run .ci/u2netp.sh DIR and export REFVIDEO_TEST_U2NET_HOME=DIR)")
    return Path(folder)


@pytest.fixture
def no_u2net_home(monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("REMBG_HOME", raising=False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def test_catalogue_lists_local_models_with_files_and_sources():
    names = model_names()
    assert names[0] == catalogue()["default"] == "u2netp"
    assert len(names) == len(set(names)) == len(catalogue()["models"])
    for name, entry in catalogue()["models"].items():
        assert entry["file"] == f"{name}.onnx"
        assert entry["url"].startswith("https://") and entry["size"]


def test_a_missing_model_file_says_which_file_goes_where(no_u2net_home):
    with pytest.raises(ModelNotFound) as caught:
        find_model_file("isnet-general-use")
    message = str(caught.value)
    expected_folder = host.model_dirs("rembg")[0]
    assert "isnet-general-use.onnx" in message and str(expected_folder / "isnet-general-use.onnx") in message
    assert "never downloads" in message and caught.value.input == "rembg_model"


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(InputError, match="u2netp"):
        find_model_file("bria-rmbg-9000")


def test_model_files_are_found_in_the_pack_folder_then_u2net_home(u2net_home, monkeypatch, no_u2net_home):
    pack_folder = host.model_dirs("rembg")[0]
    pack_folder.mkdir(parents=True)
    with pytest.raises(ModelNotFound):
        find_model_file("u2netp")
    monkeypatch.setenv("U2NET_HOME", str(u2net_home))
    assert find_model_file("u2netp") == u2net_home / "u2netp.onnx"
    shutil.copyfile(u2net_home / "u2netp.onnx", pack_folder / "u2netp.onnx")
    assert find_model_file("u2netp") == pack_folder / "u2netp.onnx"


def test_rembg_layout_under_u2net_home_is_found(tmp_path, monkeypatch, no_u2net_home):
    nested = tmp_path / "models" / "silueta"
    nested.mkdir(parents=True)
    (nested / "silueta.onnx").write_bytes(b"placeholder")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    assert find_model_file("silueta") == nested / "silueta.onnx"


@pytest.mark.slow
def test_u2netp_cuts_out_the_synthetic_character(u2net_home, monkeypatch, no_u2net_home):
    monkeypatch.setenv("U2NET_HOME", str(u2net_home))
    image = as_float(character(384, 512))
    matte = remove_background(image, "u2netp")
    assert matte.shape == (512, 384) and matte.dtype == np.float32
    assert np.array_equal(matte, np.round(matte * 255) / 255)
    assert iou(matte, character_mask(384, 512)) > REMBG_IOU
    # the session is built once per model file
    sessions = dict(background_removal._sessions)
    two = remove_background(as_float(doubled(512, 384)), "u2netp")
    assert background_removal._sessions == sessions
    assert iou(two, character_mask(512, 384, positions=TWO)) > REMBG_IOU


@pytest.mark.slow
def test_load_reference_set_uses_the_rembg_matte(u2net_home, monkeypatch, no_u2net_home):
    monkeypatch.setenv("U2NET_HOME", str(u2net_home))
    host.input_dir().mkdir(parents=True)
    save_png(host.input_dir() / "mara.png", character(384, 512))
    refs, images, masks, report = LoadReferenceSet().load(image_1="mara.png", role_1="character", label_1="",
                                                          background_1="rembg", rembg_model="u2netp")["result"]
    assert "background rembg" in report
    assert iou(masks[0].numpy(), character_mask(384, 512)) > REMBG_IOU
    assert np.array_equal(masks[0].numpy(), refs.references[0].mask)
    background = masks[0].numpy() == 0
    assert np.allclose(images[0].numpy()[background], 1.0)  # the preview shows the cut-out on white
