"""Previz layers: the pictures the animatic is composited from.

Each layer is a :class:`Sprite`: a Pillow image, the pixel that sits on the layer's world
anchor (a character's foot point, the background's centre), and how many pixels tall its
subject is. Foreground sprites are cut out with the reference's matte, colour-bled at the
edges and given a soft contact shadow; the background sprite is the environment reference
(or a drawn stage when there is none) extended by mirroring so that no camera move runs off
its edge. Sprites are built once per clip at the resolution the clip needs, and keep
blurred copies for depth of field, the subject's matte without its shadow (for the depth and
layout passes) and, once asked for, a back view (mirrored and darkened, for a turned figure).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from ..references.images import from_uint8, to_uint8
from ..references.reference import Reference
from .effects import bleed_colours, gaussian_blur, radius_level


@dataclass
class Sprite:
    """A layer picture with its anchor pixel and subject height in pixels."""

    image: Image.Image
    anchor: tuple[float, float]
    content_height: float
    matte: Image.Image | None = None  # "L": the subject alone, no shadow (None for the background)
    _blurred: dict[float, Image.Image] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _back: Sprite | None = field(default=None, repr=False)

    def back(self, shade: float) -> Sprite:
        """The back view: the picture mirrored about its anchor and darkened by ``shade`` (made once)."""
        with self._lock:
            if self._back is None:
                rgb, alpha = self.image.convert("RGB"), self.image.getchannel("A")
                dark = ImageOps.mirror(rgb.point(lambda v: int(v * shade + 0.5)))
                dark.putalpha(ImageOps.mirror(alpha))
                matte = ImageOps.mirror(self.matte) if self.matte is not None else None
                self._back = Sprite(dark, (self.image.width - self.anchor[0], self.anchor[1]), self.content_height,
                                    matte)
            return self._back

    def blurred(self, radius: float) -> Image.Image:
        """The image blurred by ``radius`` pixels (rounded to a cached level)."""
        level = radius_level(radius)
        if level == 0.0:
            return self.image
        with self._lock:
            cached = self._blurred.get(level)
        if cached is None:
            cached = gaussian_blur(self.image, level)
            with self._lock:
                self._blurred.setdefault(level, cached)
        return cached


def matte_box(mask: np.ndarray, threshold: float = 0.05) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1) of the matte, or None when it is empty."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    cols = np.flatnonzero((mask > threshold).any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def make_card(reference: Reference, height_px: float, pad_px: int, shadow: dict) -> Sprite | None:
    """A cut-out of ``reference`` whose subject is at most ``height_px`` tall, with a contact shadow.

    The subject is never enlarged here (the renderer scales it per frame); ``pad_px``
    transparent pixels surround it so blur can spread. None when the matte is empty.
    """
    box = matte_box(reference.mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    rgb = reference.image[y0:y1, x0:x1, :3].astype(np.float32)
    alpha = reference.mask[y0:y1, x0:x1].astype(np.float32)
    scale = min(1.0, max(height_px, 8.0) / (y1 - y0))
    width, height = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    if scale < 1.0:
        rgb = _resize_float(rgb, (width, height))
        alpha = _resize_float(alpha, (width, height))
    alpha = np.clip(alpha, 0.0, 1.0)
    rgb = bleed_colours(rgb, alpha, radius=max(2.0, 0.01 * height))
    shadow_h = float(shadow["height"]) * height
    below = int(np.ceil(shadow_h * (0.5 + float(shadow["softness"]) * 2))) + pad_px
    canvas = np.zeros((height + pad_px + below, width + 2 * pad_px, 4), np.float32)
    canvas[pad_px:pad_px + height, pad_px:pad_px + width, :3] = rgb
    canvas[pad_px:pad_px + height, pad_px:pad_px + width, 3] = alpha
    foot = (pad_px + width / 2.0, pad_px + height)
    matte = Image.fromarray(to_uint8(canvas[..., 3]), "L")
    _add_shadow(canvas, foot, float(shadow["width"]) * width, shadow_h, shadow)
    image = Image.fromarray(to_uint8(canvas), "RGBA")
    return Sprite(image, foot, float(height), matte)


def _add_shadow(canvas: np.ndarray, foot: tuple[float, float], width: float, height: float, shadow: dict) -> None:
    """A soft dark ellipse under the foot point, behind the subject."""
    if width < 2 or height < 1:
        return
    ys, xs = np.mgrid[0:canvas.shape[0], 0:canvas.shape[1]].astype(np.float32)
    d = np.sqrt(((xs - foot[0]) / (width / 2.0)) ** 2 + ((ys - foot[1]) / (height / 2.0)) ** 2)
    soft = float(shadow["softness"])
    shade = float(shadow["opacity"]) * np.clip((1.0 + soft - d) / (2.0 * soft), 0.0, 1.0)
    alpha = canvas[..., 3]
    total = alpha + shade * (1.0 - alpha)
    canvas[..., :3] *= (alpha / np.maximum(total, 1e-6))[..., None]
    canvas[..., 3] = total


def _resize_float(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float array in 0..1 (H x W or H x W x 3) with an antialiasing filter."""
    image = Image.fromarray(to_uint8(array))
    return from_uint8(np.asarray(image.resize(size, Image.Resampling.LANCZOS)))


def make_plate(environment: Reference | None, rest_size: tuple[float, float], pixels_per_unit: float,
               extent: tuple[float, float, float, float], stage: dict) -> Sprite:
    """The background: ``rest_size`` (width, height in frame heights) covered by the environment.

    ``pixels_per_unit`` is the wanted resolution (pixels per frame height at rest; capped at
    the environment's own resolution); ``extent`` (left, top, right, bottom, in frame heights
    from the centre) is the area the camera will see, which mirroring fills beyond the image.
    """
    rest_w, rest_h = rest_size
    if environment is not None:
        image = Image.fromarray(to_uint8(environment.image[..., :3]))
        image = _cover_crop(image, rest_w / rest_h)
        unit = min(pixels_per_unit, image.height / rest_h)
        size = (max(2, round(rest_w * unit)), max(2, round(rest_h * unit)))
        base = np.asarray(image.resize(size, Image.Resampling.LANCZOS) if image.size != size else image)
    else:
        unit = pixels_per_unit
        size = (max(2, round(rest_w * unit)), max(2, round(rest_h * unit)))
        base = None
    left, top, right, bottom = extent
    pad = [max(0, int(np.ceil(v * unit - s / 2.0)) + 2) for v, s in
           ((-left, size[0]), (-top, size[1]), (right, size[0]), (bottom, size[1]))]
    if base is None:
        plate = draw_stage((size[0] + pad[0] + pad[2], size[1] + pad[1] + pad[3]),
                           centre=(pad[0] + size[0] / 2.0, pad[1] + size[1] / 2.0), unit=unit, stage=stage)
    else:
        plate = np.pad(base, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="symmetric")
    return Sprite(Image.fromarray(np.ascontiguousarray(plate), "RGB"),
                  (pad[0] + size[0] / 2.0, pad[1] + size[1] / 2.0), float(size[1]))


def _cover_crop(image: Image.Image, aspect: float) -> Image.Image:
    """The centred crop of ``image`` with the given width/height ratio."""
    w, h = image.size
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / aspect))
    top = (h - new_h) // 2
    return image.crop((0, top, w, top + new_h))


def draw_stage(size: tuple[int, int], *, centre: tuple[float, float], unit: float, stage: dict) -> np.ndarray:
    """A neutral previz stage (sky gradient, floor with a perspective grid) for sets without an environment."""
    width, height = size
    cx, cy = centre
    horizon = cy + (float(stage["horizon"]) - 0.5) * unit
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    sky_t = np.clip((ys - (cy - 0.5 * unit)) / max(horizon - (cy - 0.5 * unit), 1.0), 0.0, 1.0)
    floor_t = np.clip((ys - horizon) / (0.6 * unit), 0.0, 1.0)
    sky = np.array(stage["sky_top"]) + (np.array(stage["sky_horizon"]) - np.array(stage["sky_top"])) * sky_t[..., None]
    far, near = np.array(stage["floor_far"]), np.array(stage["floor_near"])
    floor = far + (near - far) * floor_t[..., None]
    colour = np.where((ys < horizon)[..., None], sky, floor) * np.ones((1, width, 1))
    below = np.maximum(ys - horizon, 1e-3)
    depth = unit / below  # distance along the floor, in arbitrary units
    lines = int(stage["grid_lines"])
    across = np.abs(((xs - cx) / below * 0.25 * lines / 2.0 + 0.5) % 1.0 - 0.5)
    along = np.abs((np.log(depth) * 3.0) % 1.0 - 0.5)
    thickness = 0.5 / np.maximum(unit / below / 6.0, 1.0)
    grid = ((across < 0.04 * thickness * 6) | (along < 0.03)) & (ys > horizon + 1)
    colour = colour * (1.0 - float(stage["grid"]) * grid[..., None])
    return np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)
