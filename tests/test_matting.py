"""The flat-background key cuts out the synthetic subject; components and bands are right."""

from __future__ import annotations

import numpy as np
import pytest

from refvideo.engine.references.images import from_uint8, to_uint8
from refvideo.engine.references.matting import border_band, downsample, flat_background_key, label_components
from synthetic_references import BACKDROP, as_float, blurred, busy_background, character, character_mask, jpeg, noised

FLAT_KEY_IOU = 0.95  # the stated floor for a clean, noisy or JPEG-compressed studio shot


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("name, make", [
    ("clean", lambda img: img),
    ("noised", lambda img: noised(img, 14.0)),
    ("jpeg quality 5", lambda img: jpeg(img, 5)),
])
def test_flat_key_cuts_out_the_subject(name, make):
    truth = character_mask()
    image = as_float(make(character()))
    key = flat_background_key(image)
    assert key.trusted and key.flat_share > 0.95
    assert iou(key.matte, truth) > FLAT_KEY_IOU, name
    assert np.allclose(key.colour, image[:40, :40].reshape(-1, 3).mean(axis=0), atol=0.02)


def test_flat_key_matte_is_soft_and_8bit_exact():
    key = flat_background_key(as_float(blurred(character(), 2.0)))
    matte = key.matte
    assert matte.dtype == np.float32 and matte.shape == (1024, 768)
    assert np.array_equal(from_uint8(to_uint8(matte)), matte)
    partial = ((matte > 0.05) & (matte < 0.95)).mean()
    assert 0.001 < partial < 0.05  # soft edges, not a soft everything
    assert iou(matte, character_mask()) > 0.9


def test_flat_key_does_not_trust_a_busy_backdrop():
    key = flat_background_key(as_float(busy_background()))
    assert not key.trusted and key.flat_share < 0.6


def test_flat_key_works_on_any_backdrop_colour():
    green = character(384, 512, backdrop=(40, 170, 60))
    key = flat_background_key(as_float(green))
    assert iou(key.matte, character_mask(384, 512)) > FLAT_KEY_IOU
    assert np.allclose(key.colour, np.array((40, 170, 60)) / 255, atol=0.01)
    assert np.allclose(flat_background_key(as_float(character(192, 256))).colour, np.array(BACKDROP) / 255, atol=0.01)


def test_border_band():
    band = border_band((100, 200), fraction=0.05)
    assert band.shape == (100, 200)
    assert band[:5].all() and band[-5:].all() and band[:, :5].all() and band[:, -5:].all()
    assert not band[5:95, 5:195].any()
    assert border_band((10, 10), fraction=0.01)[:2].all()  # at least 2 px


def test_label_components_counts_and_sizes():
    binary = np.zeros((60, 80), dtype=bool)
    binary[5:15, 5:15] = True        # a square
    binary[30:50, 10:70] = True      # a bar...
    binary[35:45, 30:50] = False     # ...with a hole (still one region)
    binary[14, 20] = True            # diagonal neighbours are separate (4-connectivity)
    binary[15, 21] = True
    labels, sizes = label_components(binary)
    assert sizes.size == 4
    assert sorted(sizes.tolist()) == [1, 1, 100, 1200 - 200]
    assert (labels > 0).sum() == binary.sum() and labels[~binary].max() == 0


def test_label_components_follows_a_long_snake():
    binary = np.zeros((41, 41), dtype=bool)
    for row in range(0, 41, 4):
        binary[row, :] = True
    for i, row in enumerate(range(0, 37, 4)):
        binary[row:row + 4, 40 if i % 2 == 0 else 0] = True  # alternate ends join the rows
    _, sizes = label_components(binary)
    assert sizes.tolist() == [binary.sum()]
    assert label_components(np.zeros((5, 5), dtype=bool))[1].size == 0


def test_downsample_matte_keeps_coverage():
    matte = character_mask()
    small = downsample(matte, 256)
    assert max(small.shape) == 256
    assert abs(small.mean() - matte.mean()) < 0.01
    assert downsample(matte, 4096) is not None and downsample(matte, 4096).shape == matte.shape
