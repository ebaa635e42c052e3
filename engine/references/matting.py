"""Mattes without weights: the flat-background key and matte geometry.

The flat-background key is for the clean, solid backdrops users are told to shoot on: the
backdrop colour is the median of a band along the frame border, and the matte ramps from 0
to 1 with the colour distance from it. The ramp starts just above the spread of the border's
own colours (so sensor noise and JPEG artefacts stay background) and is softened by a 3x3
median. :func:`label_components` finds separate subjects in a matte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .images import from_uint8, to_uint8

BAND_FRACTION = 0.03     # the border band is 3% of the shorter side wide (at least 2 px)
TOLERANCE_FLOOR = 0.04   # colour distance (RGB 0..1) below which a pixel is always backdrop
NOISE_FACTOR = 2.5       # the ramp starts at this multiple of the band's median distance
SOFTNESS = 0.10          # the distance over which the matte ramps from 0 to 1
FLAT_DISTANCE = 0.12     # a band pixel this close to the backdrop colour counts as backdrop
FLAT_SHARE = 0.6         # the key is trusted when this share of the band is backdrop


@dataclass(frozen=True, eq=False)
class FlatKey:
    """A flat-background key: the matte (1 = subject), the backdrop colour and how flat it is."""

    matte: np.ndarray
    colour: tuple[float, float, float]
    flat_share: float

    @property
    def trusted(self) -> bool:
        """True when the border is mostly one colour, so the matte means something."""
        return self.flat_share >= FLAT_SHARE


def border_band(shape: tuple[int, ...], fraction: float = BAND_FRACTION, min_px: int = 2) -> np.ndarray:
    """A boolean ``[H, W]`` mask of the band along the frame border."""
    h, w = shape[:2]
    width = max(min_px, round(min(h, w) * fraction))
    band = np.ones((h, w), dtype=bool)
    band[width:h - width, width:w - width] = False
    return band


def flat_background_key(image: np.ndarray) -> FlatKey:
    """Key out the solid backdrop of an RGB float ``[H, W, 3]`` image (values 0..1)."""
    rgb = np.asarray(image, dtype=np.float32)
    band = border_band(rgb.shape)
    colour = np.median(rgb[band], axis=0).astype(np.float32)
    distance = np.sqrt(np.sum((rgb - colour) ** 2, axis=-1))
    band_distance = distance[band]
    start = max(TOLERANCE_FLOOR, NOISE_FACTOR * float(np.median(band_distance)))
    ramp = np.clip((distance - start) / SOFTNESS, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: soft but settled edges
    smoothed = Image.fromarray(to_uint8(ramp)).filter(ImageFilter.MedianFilter(3))
    flat_share = float(np.mean(band_distance < max(FLAT_DISTANCE, start)))
    return FlatKey(from_uint8(np.asarray(smoothed)), (float(colour[0]), float(colour[1]), float(colour[2])), flat_share)


def label_components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a boolean image: labels (0 = none, 1..n) and each one's size.

    Min-label propagation with pointer jumping, vectorised; meant for small images (a few
    hundred pixels a side).
    """
    binary = np.asarray(binary, dtype=bool)
    h, w = binary.shape
    empty = h * w
    labels = np.where(binary, np.arange(empty).reshape(h, w), empty)
    while True:
        spread = labels.copy()
        np.minimum(spread[1:], labels[:-1], out=spread[1:])
        np.minimum(spread[:-1], labels[1:], out=spread[:-1])
        np.minimum(spread[:, 1:], labels[:, :-1], out=spread[:, 1:])
        np.minimum(spread[:, :-1], labels[:, 1:], out=spread[:, :-1])
        spread = np.where(binary, spread, empty)
        flat = spread.ravel()
        inside = flat < empty
        flat[inside] = flat[flat[inside]]  # jump to the label's own label
        if np.array_equal(spread, labels):
            break
        labels = spread
    out = np.zeros((h, w), dtype=np.int32)
    if not binary.any():
        return out, np.zeros(0, dtype=np.int64)
    _, inverse, sizes = np.unique(labels[binary], return_inverse=True, return_counts=True)
    out[binary] = inverse.reshape(-1) + 1
    return out, sizes


def downsample(array: np.ndarray, max_side: int) -> np.ndarray:
    """A matte ``[H, W]`` or an RGB image ``[H, W, 3]`` shrunk (8-bit box filter) so its longer side is at
    most ``max_side``; float32 0..1."""
    h, w = array.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return np.asarray(array, dtype=np.float32)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(to_uint8(array)).resize(size, Image.Resampling.BOX)
    return from_uint8(np.asarray(small))
