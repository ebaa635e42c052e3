"""Synthetic reference images for the reference-preparation tests and benchmark.

A cartoon character on a flat backdrop (rendered at 2x and downsampled, with a little
sensor noise) plus the same image with one defect each: blurred, JPEG quality 5, noised,
cropped at the edge, doubled, shrunk, on a busy background, in an extreme aspect ratio.
``character_mask`` renders the exact subject matte of the same geometry.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKDROP = (219, 224, 230)
COAT, COAT_DARK, SLEEVE = (190, 36, 42), (150, 24, 30), (170, 30, 36)
SKIN, SKIN_SHADE, HAIR = (231, 186, 150), (225, 178, 142), (70, 40, 25)
TROUSERS, SHOES, BUTTON, BELT = (40, 44, 70), (30, 22, 18), (240, 210, 90), (60, 40, 30)
SCARF = ((30, 90, 160), (240, 240, 235))
EYE_WHITE, EYE, MOUTH = (255, 255, 255), (40, 60, 90), (150, 60, 60)
SUPERSAMPLE = 2

Paint = Callable[[tuple], object]


def _draw_character(draw: ImageDraw.ImageDraw, cx: float, top: float, u: float, paint: Paint) -> None:
    """The character centred at ``cx`` from ``top``, in units ``u`` (1024 units tall); fills via ``paint``."""

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        xa, xb = sorted((x0, x1))
        return [cx + xa * u, top + y0 * u, cx + xb * u, top + y1 * u]

    for s in (-1, 1):
        draw.rounded_rectangle(box(s * 12, 560, s * 70, 840), radius=18 * u, fill=paint(TROUSERS))
        draw.ellipse(box(s * 5, 815, s * 95, 865), fill=paint(SHOES))
        draw.rounded_rectangle(box(s * 105, 250, s * 175, 560), radius=30 * u, fill=paint(SLEEVE))
        draw.ellipse(box(s * 108, 540, s * 172, 600), fill=paint(SKIN))
    draw.rounded_rectangle(box(-130, 230, 130, 640), radius=40 * u, fill=paint(COAT))
    for x in range(-120, 121, 40):
        draw.line(box(x, 240, x, 630), fill=paint(COAT_DARK), width=max(1, round(4 * u)))
    for i in range(5):
        draw.ellipse(box(-12, 290 + i * 70, 12, 314 + i * 70), fill=paint(BUTTON))
    draw.rectangle(box(-130, 560, 130, 580), fill=paint(BELT))
    for i in range(8):
        draw.rectangle(box(-100 + i * 25, 215, -75 + i * 25, 255), fill=paint(SCARF[i % 2]))
    draw.rectangle(box(-28, 170, 28, 230), fill=paint(SKIN_SHADE))
    draw.ellipse(box(-90, 10, 90, 200), fill=paint(SKIN))
    draw.chord(box(-96, 0, 96, 150), 180, 360, fill=paint(HAIR))
    for s in (-1, 1):
        draw.ellipse(box(s * 22, 95, s * 48, 118), fill=paint(EYE_WHITE))
        draw.ellipse(box(s * 28, 100, s * 40, 114), fill=paint(EYE))
    draw.arc(box(-30, 130, 30, 170), 20, 160, fill=paint(MOUTH), width=max(1, round(5 * u)))


def _render(width: int, height: int, positions: list[tuple[float, float, float]], mode: str, backdrop,
            paint: Paint) -> Image.Image:
    """Characters at ``(centre x, top, height)`` fractions of the frame, rendered at 2x then downsampled."""
    big = Image.new(mode, (width * SUPERSAMPLE, height * SUPERSAMPLE), backdrop)
    draw = ImageDraw.Draw(big)
    for fx, ftop, fheight in positions:
        u = fheight * height * SUPERSAMPLE / 1024
        _draw_character(draw, fx * width * SUPERSAMPLE, ftop * height * SUPERSAMPLE, u, paint)
    return big.resize((width, height), Image.LANCZOS)


ONE = [(0.5, 0.08, 1.0)]
TWO = [(0.27, 0.2, 0.62), (0.73, 0.2, 0.62)]


@lru_cache(maxsize=64)
def _character(width: int, height: int, positions: tuple, seed: int, noise: float, backdrop: tuple) -> np.ndarray:
    image = _render(width, height, list(positions), "RGB", backdrop, lambda colour: colour)
    array = np.asarray(image).astype(np.float32)
    array += np.random.default_rng(seed).normal(0.0, noise, array.shape)
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def character(width: int = 768, height: int = 1024, *, positions=ONE, seed: int = 0,
              noise: float = 1.0, backdrop=BACKDROP) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: the character(s) on a flat backdrop with sensor noise of ``noise`` levels."""
    return _character(width, height, tuple(positions), seed, noise, tuple(backdrop)).copy()


@lru_cache(maxsize=64)
def _character_mask(width: int, height: int, positions: tuple) -> np.ndarray:
    image = _render(width, height, list(positions), "L", 0, lambda colour: 255)
    return np.asarray(image).astype(np.float32) / 255.0


def character_mask(width: int = 768, height: int = 1024, *, positions=ONE) -> np.ndarray:
    """float32 ``[H, W]``: the true matte of :func:`character` (1 = subject)."""
    return _character_mask(width, height, tuple(positions)).copy()


def save_png(path, image: np.ndarray) -> None:
    """Write a PNG quickly (zlib level 1: noisy images take seconds at the default level)."""
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def fill_input_folder(folder) -> None:
    """The input folder the node tests use: ``mara.png`` (clean) and ``grainy.png`` (noised), 512x640."""
    folder.mkdir(parents=True, exist_ok=True)
    save_png(folder / "mara.png", character(512, 640))
    save_png(folder / "grainy.png", _grainy())


@lru_cache(maxsize=1)
def _grainy() -> np.ndarray:
    return noised(character(512, 640), 14.0)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def blurred(image: np.ndarray, radius: float = 4.0) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def jpeg_bytes(image: np.ndarray, quality: int = 5) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg(image: np.ndarray, quality: int = 5) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(image, quality))).convert("RGB"))


def noised(image: np.ndarray, sigma: float = 14.0, seed: int = 1) -> np.ndarray:
    noisy = image.astype(np.float32) + np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def cropped_at_edge(image: np.ndarray) -> np.ndarray:
    """The top 70%: the legs run off the bottom edge."""
    return image[: int(image.shape[0] * 0.7)].copy()


def doubled(width: int = 1024, height: int = 768) -> np.ndarray:
    """Two characters side by side."""
    return character(width, height, positions=TWO)


def shrunk(image: np.ndarray, factor: float = 0.3) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.LANCZOS))


def busy_background(width: int = 768, height: int = 1024, seed: int = 2) -> np.ndarray:
    """The character in front of a cluttered scene of random boxes and stripes."""
    rng = np.random.default_rng(seed)
    scene = Image.new("RGB", (width, height), (120, 110, 100))
    draw = ImageDraw.Draw(scene)
    for _ in range(260):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(10, 120), rng.integers(10, 120)
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    person = character(width, height)
    matte = character_mask(width, height)[..., None]
    out = person * matte + np.asarray(scene).astype(np.float32) * (1 - matte)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def extreme_aspect(width: int = 2048, height: int = 512) -> np.ndarray:
    """A 4:1 strip with a small character in the middle."""
    return character(width, height, positions=[(0.5, 0.06, 0.9)])
