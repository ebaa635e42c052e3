"""The bundled samples: clean references by the pack's own checks, small, and re-made exactly by the script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refvideo.engine.references.matting import flat_background_key
from refvideo.engine.references.quality import check_reference

PACK_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {"character_mara.png": "character", "prop_lantern.png": "prop", "environment_harbour.png": "environment"}


def load_script():
    spec = importlib.util.spec_from_file_location("make_samples", PACK_ROOT / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32)


@pytest.mark.parametrize("name, role", SAMPLES.items())
def test_samples_pass_the_reference_checks(name, role):
    path = PACK_ROOT / "samples" / name
    assert path.stat().st_size <= 100 * 1024
    rgb = pixels(path) / 255.0
    assert check_reference(rgb, role=role) == []
    if role != "environment":  # cut out by the flat-background key: one whole subject, clear of the edges
        matte = flat_background_key(rgb).matte > 0.5
        assert 0.15 < matte.mean() < 0.7
        assert not (matte[0].any() or matte[-1].any() or matte[:, 0].any() or matte[:, -1].any())


def test_the_script_redraws_the_committed_samples(tmp_path):
    assert load_script().main(["--out", str(tmp_path)]) == 0
    for name in SAMPLES:
        drawn, shipped = pixels(tmp_path / name), pixels(PACK_ROOT / "samples" / name)
        assert drawn.shape == shipped.shape
        assert np.abs(drawn - shipped).mean() < 1.0, name  # same picture (Pillow versions may differ by a level)
