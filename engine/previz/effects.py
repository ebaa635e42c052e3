"""Image effects for the previz animatic: depth-of-field blur, motion blur, grade, vignette,
and the environment (night and lights as a tone table, fog, rain).

All on uint8 Pillow images or numpy arrays; nothing here loops over pixels in Python.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from ..references.images import to_uint8
from ..references.reference import Reference


def radius_level(radius: float) -> float:
    """A blur radius rounded to a level, so blurred images can be cached and reused between frames."""
    if radius < 0.4:
        return 0.0
    if radius < 2.0:
        return round(radius * 4.0) / 4.0
    if radius < 6.0:
        return round(radius * 2.0) / 2.0
    return float(round(radius))


def gaussian_blur(image: Image.Image, radius: float) -> Image.Image:
    """A Gaussian blur; large radii are blurred at a reduced size (same look, a fraction of the time).

    RGBA images are blurred premultiplied, so transparent pixels never darken the edges.
    """
    if radius <= 0.0:
        return image
    work = image.convert("RGBa") if image.mode == "RGBA" else image
    factor = int(min(max(radius // 3.0, 1), 4))
    if factor == 1 or min(image.size) < 8 * factor:
        work = work.filter(ImageFilter.GaussianBlur(radius))
    else:
        work = work.reduce(factor).filter(ImageFilter.GaussianBlur(radius / factor))
        work = work.resize(image.size, Image.Resampling.BILINEAR)
    return work.convert(image.mode) if work.mode != image.mode else work


def motion_blur(image: Image.Image, dx: float, dy: float) -> Image.Image:
    """Smear ``image`` over ``dx`` x ``dy`` pixels of travel (a box blur along each axis; RGBA premultiplied)."""
    mode = "RGBa" if image.mode == "RGBA" else image.mode
    array = np.asarray(image.convert(mode) if mode != image.mode else image)
    for axis, length in ((1, abs(dx)), (0, abs(dy))):
        n = int(round(length))
        if n >= 2:
            array = _box_along(array, n, axis)
    blurred = Image.fromarray(array, mode)
    return blurred.convert(image.mode) if mode != image.mode else blurred


def _box_along(array: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Mean of ``n`` neighbours along ``axis`` (edges repeat), via a cumulative sum."""
    before = n // 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (before + 1, n - before - 1)
    padded = np.pad(array, pad, mode="edge").astype(np.int32)
    total = np.cumsum(padded, axis=axis, dtype=np.int32)
    upper = np.take(total, np.arange(n, total.shape[axis]), axis=axis)
    lower = np.take(total, np.arange(0, total.shape[axis] - n), axis=axis)
    return ((upper - lower + n // 2) // n).astype(np.uint8)


def bleed_colours(rgb: np.ndarray, alpha: np.ndarray, radius: float) -> np.ndarray:
    """Replace the colour under transparent and soft edge pixels with nearby subject colour.

    Mattes made from photos keep the old background's colour in their soft edges; blurring or
    resampling would show it as a halo. The subject colour is spread outwards (a normalised
    blur of the premultiplied image) and mixed in where the matte is not solid.
    """
    a = alpha[..., None].astype(np.float32)
    premultiplied = Image.fromarray(to_uint8(rgb * a))
    weight = Image.fromarray(to_uint8(alpha))
    spread = np.asarray(premultiplied.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    norm = np.asarray(weight.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)[..., None]
    subject_mean = (rgb * a).sum(axis=(0, 1)) / max(float(a.sum()), 1e-6)
    fill = np.where(norm > 1.0, spread / np.maximum(norm, 1.0), subject_mean)
    return (rgb * a + fill * (1.0 - a)).astype(np.float32)


def grade_table(frame: np.ndarray, styles: tuple[Reference, ...], *, strength: float,
                gain_range: tuple[float, float]) -> list[int] | None:
    """A per-channel tone table moving ``frame``'s colour statistics towards the style references'.

    Mean and contrast per channel are matched (clamped gains), blended with the untouched
    image by ``strength``; ``None`` without style references. Computed once per clip, so
    the grade does not flicker.
    """
    if not styles:
        return None
    pixels = np.concatenate([_sample(ref.image.reshape(-1, 3)) for ref in styles]).astype(np.float32) * 255.0
    target_mean, target_std = pixels.mean(axis=0), pixels.std(axis=0)
    source = frame.reshape(-1, 3).astype(np.float32)
    source_mean, source_std = source.mean(axis=0), source.std(axis=0)
    gain = np.clip(target_std / np.maximum(source_std, 1.0), *gain_range)
    levels = np.arange(256, dtype=np.float32)[:, None]
    matched = (levels - source_mean) * gain + target_mean
    table = np.clip(levels + strength * (matched - levels), 0, 255).round().astype(np.uint8)
    return table.T.reshape(-1).tolist()


def _sample(pixels: np.ndarray, limit: int = 200_000) -> np.ndarray:
    """At most ``limit`` evenly spaced pixels (statistics of a large image need no more)."""
    return pixels[:: max(1, len(pixels) // limit)]


def vignette(size: tuple[int, int], strength: float) -> np.ndarray:
    """Per-pixel brightness factors ``[H, W, 1]`` darkening the corners by ``strength``."""
    width, height = size
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    radius = np.sqrt(xs * xs + ys * ys) / np.sqrt(2.0)
    return (1.0 - strength * np.clip((radius - 0.35) / 0.65, 0.0, 1.0) ** 2)[..., None].astype(np.float32)


def atmosphere_table(base: list[int] | None, night: float, lights: float, settings: dict) -> list[int] | None:
    """A per-channel tone table: ``base`` (the style grade, or none) then night and lights.

    Night scales each channel down towards a cool dark (``night_gain`` at full night); lights
    coming on lift and warm the picture, more so at night. None when there is nothing to do.
    """
    if night <= 0.0 and lights <= 0.0:
        return base
    levels = np.arange(256, dtype=np.float32)
    source = np.asarray(base, np.float32).reshape(3, 256) if base is not None else np.stack([levels] * 3)
    night_gain = 1.0 + (np.asarray(settings["night_gain"], np.float32) - 1.0) * night
    light_gain = 1.0 + (np.asarray(settings["lights_gain"], np.float32) - 1.0) * lights
    lift = np.asarray(settings["lights_lift"], np.float32) * 255.0 * lights * (0.3 + 0.7 * night)
    table = source * (night_gain * light_gain)[:, None] + lift[:, None]
    return np.clip(table, 0, 255).round().astype(np.uint8).reshape(-1).tolist()


def fog(canvas: Image.Image, amount: float, colour: tuple[int, int, int]) -> Image.Image:
    """``canvas`` veiled by ``amount`` (0..1) of a flat fog colour."""
    if amount <= 0.0:
        return canvas
    return Image.blend(canvas, Image.new(canvas.mode, canvas.size, colour), float(amount))


def rain_streaks(size: tuple[int, int], settings: dict, seed: int) -> Image.Image:
    """A tileable "L" mask of slanted rain streaks covering ``size`` (scrolled each frame)."""
    width, height = size
    rng = np.random.default_rng(seed)
    count = int(float(settings["density"]) * width * height)
    length = float(settings["length"]) * height
    slant = float(settings["slant"])
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    xs, ys = rng.random(count) * width, rng.random(count) * height
    shades = (120 + 135 * rng.random(count)).astype(int)
    for x, y, shade in zip(xs, ys, shades):
        for dy in (0.0, -height):  # drawn twice so a streak over the bottom edge continues at the top
            draw.line([(x, y + dy), (x + slant * length, y + dy + length)], fill=int(shade), width=1)
    return mask


def rain(canvas: Image.Image, streaks: Image.Image, amount: float, offset: tuple[int, int],
         colour: tuple[int, int, int], opacity: float) -> None:
    """Rain over ``canvas`` in place: the streak mask shifted by ``offset`` (wrapping), at ``amount``."""
    if amount <= 0.0:
        return
    scale = float(amount) * opacity
    mask = ImageChops.offset(streaks, *offset).point(lambda v: int(v * scale + 0.5))
    canvas.paste(colour, (0, 0, canvas.width, canvas.height), mask)
