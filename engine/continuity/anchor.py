"""Colour anchoring: one colour transform per clip that carries its distribution onto an anchor's.

The transform is the Monge-Kantorovich linear map in CIELAB (the closed-form optimal transport
between two Gaussians): it moves the clip's mean colour and its colour covariance (contrast,
saturation, cast) onto the anchor's. It is fitted once on the whole clip and applied to every
frame alike, so motion and lighting changes inside the shot survive; ``strength`` blends from
the identity (0) to the full map (1).

This is the same transfer the ``color-matcher`` package calls ``mkl``; a few lines of numpy
here avoid pulling that package's dependencies (matplotlib among them) into the pack. The map
is sampled into a 33-point RGB lookup table and applied with Pillow's 3-D LUT filter (8-bit
pixels, trilinear), which keeps a 720p clip to a fraction of a second per second of video.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError
from ..references.images import from_uint8, to_uint8
from .color import image_pixels, lab_to_srgb, shrink_frames, srgb_to_lab

LUT_SIZE = 33    # points per axis of the RGB lookup table the map is applied through
_RIDGE = 1e-3  # added to the covariances' diagonal (Lab units squared): flat clips stay finite


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite 3x3 matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _moments(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = lab.reshape(-1, 3).astype(np.float64)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False) + _RIDGE * np.eye(3)


def transfer_map(source_lab: np.ndarray, target_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The linear map ``x -> T (x - mu_s) + mu_t`` that carries the source Lab pixels' Gaussian onto the
    target's: returns ``T``, ``mu_s``, ``mu_t``."""
    mu_s, cov_s = _moments(source_lab)
    mu_t, cov_t = _moments(target_lab)
    root_s = _sqrtm(cov_s)
    inverse_root = np.linalg.inv(root_s)
    transform = inverse_root @ _sqrtm(root_s @ cov_t @ root_s) @ inverse_root
    return transform, mu_s, mu_t


def anchor_clip(frames: np.ndarray, anchor: np.ndarray, strength: float = 1.0,
                anchor_mask: np.ndarray | None = None) -> np.ndarray:
    """``frames`` ``[F, H, W, 3]`` (0..1) with their colour distribution moved onto ``anchor``'s.

    ``anchor`` is an image ``[H, W, 3]`` (a reference) or frames ``[F, H, W, 3]`` (e.g. the first
    shot); ``anchor_mask`` ``[H, W]`` limits an image anchor to its subject. ``strength`` 0 returns
    the frames unchanged, 1 applies the full transfer.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] < 3:
        raise InputError(f"expects frames [frames, height, width, 3], got {tuple(frames.shape)}.", input="frames",
                         fix="Connect an IMAGE output holding the clip's frames.")
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"strength {strength} is outside 0..1.", input="strength",
                         fix="Use 0 (no change) to 1 (full match).")
    anchor = np.asarray(anchor, dtype=np.float32)
    if anchor.ndim == 3:
        target = image_pixels(anchor, anchor_mask)
    else:
        target = srgb_to_lab(shrink_frames(anchor)).reshape(-1, 3)
    if strength == 0.0:
        return frames[..., :3].copy()
    transform, mu_s, mu_t = transfer_map(srgb_to_lab(shrink_frames(frames)), target)
    matrix = (1.0 - strength) * np.eye(3) + strength * transform
    offset = mu_s + strength * (mu_t - mu_s) - matrix @ mu_s
    return apply_lut(frames, color_lut(matrix, offset))


def color_lut(matrix: np.ndarray, offset: np.ndarray, size: int = LUT_SIZE) -> ImageFilter.Color3DLUT:
    """The Lab map ``x -> matrix x + offset`` as an RGB 3-D lookup table (sRGB in, sRGB out)."""
    levels = np.linspace(0.0, 1.0, size, dtype=np.float32)
    b, g, r = np.meshgrid(levels, levels, levels, indexing="ij")   # red changes fastest, as Pillow wants
    grid = np.stack([r, g, b], axis=-1).reshape(-1, 3)
    mapped = lab_to_srgb(srgb_to_lab(grid) @ matrix.T.astype(np.float32) + offset.astype(np.float32))
    return ImageFilter.Color3DLUT(size, mapped.reshape(-1).tolist(), channels=3)


def apply_lut(frames: np.ndarray, lut: ImageFilter.Color3DLUT) -> np.ndarray:
    """Frames ``[F, H, W, 3]`` (0..1) through ``lut`` (Pillow's trilinear 3-D LUT on 8-bit pixels), frames in
    parallel threads; float32 k/255 out."""
    out = np.empty(frames.shape[:3] + (3,), dtype=np.float32)

    def one(i: int) -> None:
        out[i] = from_uint8(np.asarray(Image.fromarray(to_uint8(frames[i, ..., :3]), "RGB").filter(lut)))

    with ThreadPoolExecutor(max_workers=max(1, min(len(frames), os.cpu_count() or 1))) as pool:
        list(pool.map(one, range(len(frames))))
    return out
