"""Frame helpers: the float-frame resizer."""

from __future__ import annotations

import numpy as np
import torch

from refvideo.engine.frames import fit_box, resize_frames


def test_resize_matches_torch_antialiased_bicubic_and_stays_in_0_1():
    frames = np.random.default_rng(0).random((3, 50, 80, 4), dtype=np.float32)  # alpha is dropped
    for width, height in ((32, 20), (200, 125)):  # shrink (antialiased) and enlarge
        out = resize_frames(frames, width, height)
        tensor = torch.from_numpy(frames[..., :3].copy()).permute(0, 3, 1, 2)
        expected = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True,
                                                   align_corners=False).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        assert out.shape == (3, height, width, 3) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        np.testing.assert_allclose(out, expected, atol=1e-4)


def test_frames_already_at_the_size_are_not_resampled():
    frames = np.random.default_rng(1).random((2, 20, 32, 3), dtype=np.float32)
    assert np.array_equal(resize_frames(frames, 32, 20), frames)


def test_fit_box_keeps_the_aspect_and_centres():
    assert fit_box(100, 50, 256, 144) == ((256, 128), (0, 8))  # width-bound: bands above and below
    assert fit_box(50, 100, 256, 144) == ((72, 144), (92, 0))  # height-bound: bands left and right
    assert fit_box(256, 144, 256, 144) == ((256, 144), (0, 0))
    assert fit_box(1000, 1, 64, 64) == ((64, 1), (0, 31))  # never smaller than one pixel
