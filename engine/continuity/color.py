"""Colour measures in CIELAB: exposure, white balance and the distance between colour distributions.

Frames and references are converted from sRGB (D65) to CIELAB, where a distance of 1 is about
one just-noticeable difference. The distance between two colour distributions is the sliced
Wasserstein distance: the mean, over fixed directions in Lab, of the 1-D Wasserstein distance
between the two sets of pixels projected on that direction (compared by quantiles, so sets of
any size compare). It sees a shift of the whole grade, a change of contrast or saturation, and
a change in which colours are present, and it is 0 for identical distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..references.images import from_uint8
from ..references.matting import downsample

# sRGB (D65) -> XYZ, and the D65 white point
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float64)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_TO_XYZ = (_RGB_TO_XYZ.T / _WHITE).astype(np.float32)                             # rows: R, G, B -> X/Xn...
_FROM_XYZ = (np.linalg.inv(_RGB_TO_XYZ).T * _WHITE[:, None]).astype(np.float32)   # X/Xn... -> linear RGB
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27
DIRECTIONS = 48      # projections of the sliced Wasserstein distance
QUANTILES = 64       # quantiles compared along each projection
MAX_PIXELS = 16_384    # pixels a distribution is summarised from
SAMPLE_SIDE = 96     # frames are measured with their longer side at most this many pixels


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0..1 (any leading shape, last axis 3) as CIELAB ``L, a, b`` (float32)."""
    c = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / np.float32(12.92), ((c + np.float32(0.055)) / np.float32(1.055)) ** 2.4)
    xyz = linear @ _TO_XYZ
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB back to sRGB in 0..1 (clipped; float32)."""
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f ** 3 > _EPSILON, f ** 3, (116 * f - 16) / _KAPPA)
    linear = np.clip(xyz @ _FROM_XYZ, 0.0, None)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(srgb, 0.0, 1.0).astype(np.float32)


def _directions() -> np.ndarray:
    """Fixed unit directions spread over the sphere (a Fibonacci lattice), the same on every run."""
    i = np.arange(DIRECTIONS) + 0.5
    z = 1 - 2 * i / DIRECTIONS
    theta = np.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([z, r * np.cos(theta), r * np.sin(theta)], axis=-1)  # L first: z spans lightness


_PROJECTIONS = _directions()
_LEVELS = (np.arange(QUANTILES) + 0.5) / QUANTILES


def profile(lab_pixels: np.ndarray) -> np.ndarray:
    """The quantiles of ``[N, 3]`` Lab pixels projected on each direction: ``[DIRECTIONS, QUANTILES]``.

    At most ``MAX_PIXELS`` evenly strided pixels are used; quantiles are read from the sorted
    projections (a sort is steadier than a partition on the many equal values of flat areas).
    """
    pixels = np.asarray(lab_pixels, dtype=np.float32).reshape(-1, 3)
    pixels = pixels[::max(1, -(-len(pixels) // MAX_PIXELS))]
    projected = np.sort(pixels @ _PROJECTIONS.T.astype(np.float32), axis=0)
    return projected[(_LEVELS * len(projected)).astype(np.int64)].T.astype(np.float64)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The sliced Wasserstein-1 distance between two colour distributions, given as :func:`profile`\\ s."""
    return float(np.mean(np.abs(a - b)))


@dataclass(frozen=True)
class ColorStats:
    """A colour distribution and its headline numbers: exposure (mean L*) and white balance (mean a*, b*)."""

    profile: np.ndarray
    exposure: float
    white_balance: tuple[float, float]

    def distance(self, other: ColorStats) -> float:
        return sliced_wasserstein(self.profile, other.profile)

    def describe(self) -> dict:
        return {"exposure": round(self.exposure, 2), "white_balance": [round(v, 2) for v in self.white_balance]}


def stats(lab_pixels: np.ndarray) -> ColorStats:
    """The :class:`ColorStats` of ``[N, 3]`` Lab pixels."""
    pixels = np.asarray(lab_pixels, dtype=np.float64).reshape(-1, 3)
    mean = pixels.mean(axis=0)
    return ColorStats(profile(pixels), float(mean[0]), (float(mean[1]), float(mean[2])))


def shrink(image: np.ndarray, side: int = SAMPLE_SIDE) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` (float 0..1 or uint8) box-filtered so its longer side is at most ``side``."""
    if image.dtype == np.uint8:
        image = from_uint8(image)
    return downsample(np.asarray(image)[..., :3], side)


def shrink_frames(frames: np.ndarray | list, side: int = SAMPLE_SIDE) -> np.ndarray:
    """Frames ``[F, H, W, 3]`` shrunk with :func:`shrink` (float32)."""
    return np.stack([shrink(np.asarray(f), side) for f in frames])


def image_pixels(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The Lab pixels ``[N, 3]`` of an RGB image ``[H, W, 3]``, only where ``mask`` > 0.5 when given (all
    of them when the mask keeps almost nothing)."""
    lab = srgb_to_lab(shrink(image, 2 * SAMPLE_SIDE)).reshape(-1, 3)
    if mask is None:
        return lab
    keep = (downsample(np.asarray(mask, dtype=np.float32), 2 * SAMPLE_SIDE) > 0.5).reshape(-1)
    return lab[keep] if keep.sum() >= 16 else lab
