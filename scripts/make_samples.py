"""Draw the bundled sample references in ``samples/`` (run: python scripts/make_samples.py).

Three small pictures made for this project, drawn with Pillow from shapes, so they can be
re-made exactly and carry no one else's rights (the workflow thumbnails are rendered from
them by scripts/build_workflows.py):

- ``character_mara.png``: a woman in a red coat, full figure, on a flat light backdrop;
- ``prop_lantern.png``: a brass lantern, whole, on the same kind of backdrop;
- ``environment_harbour.png``: a harbour town at dusk, 16:9, with a plaza to stand on.

Character and prop sit on clean flat backgrounds with a margin all round, as users are
asked to shoot their own references, so LoadReferenceSet's flat-background key cuts them
out. Everything is drawn at twice the size and reduced, for clean edges; colours are
quantised where that keeps the PNG files small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SUPERSAMPLE = 2
BACKDROP = (228, 231, 236)


class Canvas:
    """A supersampled drawing surface; shapes are given in design units (``scale`` output pixels each),
    shifted by ``offset`` design units."""

    def __init__(self, size: tuple[int, int], background: tuple[int, int, int], *, scale: float = 1.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.size = (round(size[0] * scale), round(size[1] * scale))
        self.unit = scale * SUPERSAMPLE
        self.offset = offset
        self.image = Image.new("RGB", (self.size[0] * SUPERSAMPLE, self.size[1] * SUPERSAMPLE), background)
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, points):
        dx, dy = self.offset
        return [((x + dx) * self.unit, (y + dy) * self.unit) for x, y in points]

    def polygon(self, points, fill) -> None:
        self.draw.polygon(self._xy(points), fill=fill)

    def ellipse(self, box, fill) -> None:
        x0, y0, x1, y1 = box
        self.draw.ellipse(self._xy([(x0, y0), (x1, y1)]), fill=fill)

    def rect(self, box, fill, radius: float = 0.0) -> None:
        x0, y0, x1, y1 = box
        self.draw.rounded_rectangle(self._xy([(x0, y0), (x1, y1)]), radius=radius * self.unit, fill=fill)

    def line(self, points, fill, width: float) -> None:
        self.draw.line(self._xy(points), fill=fill, width=max(1, round(width * self.unit)), joint="curve")

    def arc(self, box, start: float, end: float, fill, width: float) -> None:
        x0, y0, x1, y1 = box
        self.draw.arc(self._xy([(x0, y0), (x1, y1)]), start, end, fill=fill, width=max(1, round(width * self.unit)))

    def result(self, tilt: float = 0.0) -> Image.Image:
        """The picture at its output size, turned ``tilt`` degrees counter-clockwise first."""
        image = self.image
        if tilt:
            image = image.rotate(tilt, Image.BICUBIC, fillcolor=image.getpixel((0, 0)))
        return image.resize(self.size, Image.LANCZOS)


# --------------------------------------------------------------------------- the character


def character() -> Image.Image:
    """Mara: red coat, mustard scarf, dark bob, full figure on a flat backdrop (576x1008)."""
    c = Canvas((480, 840), BACKDROP, scale=1.2, offset=(0, 40))
    cx = 240.0
    skin, skin_shade = (236, 190, 160), (214, 163, 134)
    coat, coat_shade, coat_light = (188, 38, 44), (146, 26, 34), (212, 64, 66)
    hair, hair_light = (52, 34, 28), (84, 56, 44)
    scarf, scarf_shade = (226, 170, 46), (190, 136, 30)
    boots, trousers = (44, 32, 30), (48, 52, 70)
    # legs and boots
    for side in (-1, 1):
        c.rect((cx + side * 14 - 22, 560, cx + side * 14 + 22, 712), trousers, radius=8)
        c.rect((cx + side * 16 - 25, 660, cx + side * 16 + 25, 738), boots, radius=10)
        c.ellipse((cx + side * 22 - 32, 722, cx + side * 22 + 30, 748), boots)
    # coat body: an A-line from shoulders to knees, shaded on the right
    c.polygon([(cx - 78, 186), (cx + 78, 186), (cx + 122, 600), (cx - 122, 600)], coat)
    c.polygon([(cx + 30, 186), (cx + 78, 186), (cx + 122, 600), (cx + 52, 600)], coat_shade)
    c.polygon([(cx - 70, 200), (cx - 44, 200), (cx - 80, 590), (cx - 104, 590)], coat_light)
    c.rect((cx - 104, 372, cx + 104, 392), (96, 22, 26), radius=4)  # belt
    c.rect((cx - 14, 368, cx + 14, 396), (214, 182, 92), radius=3)  # buckle
    for y in (248, 300, 430, 490):
        c.ellipse((cx - 7, y - 7, cx + 7, y + 7), (96, 22, 26))
    # arms
    for side in (-1, 1):
        shade = coat if side < 0 else coat_shade
        c.polygon([(cx + side * 70, 190), (cx + side * 100, 196), (cx + side * 128, 470), (cx + side * 96, 478)], shade)
        c.ellipse((cx + side * 112 - 18, 462, cx + side * 112 + 18, 502), skin)
    # scarf
    c.rect((cx - 62, 166, cx + 62, 206), scarf, radius=18)
    c.polygon([(cx + 14, 196), (cx + 46, 196), (cx + 52, 300), (cx + 20, 304)], scarf_shade)
    for y in (286, 294):
        c.line([(cx + 20, y), (cx + 52, y - 3)], scarf, 2)
    # neck and head
    c.rect((cx - 17, 140, cx + 17, 176), skin_shade, radius=6)
    c.ellipse((cx - 86, 6, cx + 86, 128), hair)  # hair volume behind the face
    c.rect((cx - 86, 60, cx + 86, 150), hair, radius=26)
    c.ellipse((cx - 54, 34, cx + 54, 160), skin)
    c.polygon([(cx - 62, 30), (cx + 66, 30), (cx + 70, 84), (cx + 10, 58), (cx - 52, 78)], hair)  # fringe
    c.arc((cx - 70, 10, cx + 60, 90), 200, 300, hair_light, 5)
    for side in (-1, 1):
        ex = cx + side * 22
        c.arc((ex - 13, 80, ex + 13, 96), 200, 340, hair, 3)  # brows
        c.ellipse((ex - 8, 96, ex + 8, 108), (255, 255, 255))
        c.ellipse((ex - 5, 97, ex + 5, 107), (60, 48, 40))
        c.ellipse((ex - 10 + side * 4, 116, ex + 8 + side * 4, 126), (236, 160, 150))  # cheeks
    c.line([(cx + 2, 104), (cx - 4, 122), (cx + 4, 124)], skin_shade, 2.5)
    c.arc((cx - 16, 118, cx + 16, 142), 20, 160, (170, 70, 70), 3.5)
    return c.result()


# --------------------------------------------------------------------------- the prop


def lantern() -> Image.Image:
    """A brass storm lantern with a warm glow, whole, on a flat backdrop (540x660)."""
    c = Canvas((360, 440), BACKDROP, scale=1.5, offset=(2.3, 12.7))
    cx = 180.0
    brass, brass_dark, brass_light = (176, 128, 52), (120, 82, 30), (222, 178, 92)
    c.arc((cx - 56, 18, cx + 56, 118), 180, 360, brass_dark, 9)  # handle
    c.ellipse((cx - 14, 50, cx + 14, 78), brass_dark)
    c.polygon([(cx - 40, 70), (cx + 40, 70), (cx + 86, 128), (cx - 86, 128)], brass)  # cap
    c.polygon([(cx + 10, 70), (cx + 40, 70), (cx + 86, 128), (cx + 40, 128)], brass_dark)
    c.rect((cx - 92, 124, cx + 92, 142), brass_light, radius=6)
    # glass with a glow: concentric ellipses from amber to pale yellow
    c.rect((cx - 70, 142, cx + 70, 318), (120, 70, 24))
    for i, colour in enumerate([(170, 96, 30), (214, 138, 44), (240, 180, 70), (252, 218, 120), (255, 240, 186)]):
        r = 66 - i * 11
        c.ellipse((cx - r, 230 - r * 1.25, cx + r, 230 + r * 1.25), colour)
    c.rect((cx - 6, 250, cx + 6, 300), (236, 232, 220), radius=3)  # wick holder
    # frame bars
    for x in (-72, -24, 24, 72):
        c.rect((cx + x - 5, 138, cx + x + 5, 322), brass_dark if x > 0 else brass, radius=2)
    c.rect((cx - 96, 316, cx + 96, 340), brass, radius=6)
    c.rect((cx + 20, 316, cx + 96, 340), brass_dark, radius=6)
    c.polygon([(cx - 84, 340), (cx + 84, 340), (cx + 100, 384), (cx - 100, 384)], brass_dark)
    c.rect((cx - 104, 380, cx + 104, 394), brass, radius=5)
    return c.result(tilt=4.0)  # hanging slightly askew, as lanterns do


# --------------------------------------------------------------------------- the environment


def harbour() -> Image.Image:
    """A harbour town at dusk with a plaza in front (1280x720, 16:9)."""
    width, height = 1024, 576
    horizon = 300.0
    c = Canvas((width, height), (0, 0, 0), scale=1.25)
    # sky: banded gradient from violet to orange (bands keep the file small)
    top, low = np.array([58, 52, 112]), np.array([246, 150, 92])
    bands = 40
    for i in range(bands):
        t = (i / (bands - 1)) ** 1.4
        colour = tuple(int(v) for v in top + (low - top) * t)
        c.rect((0, horizon * i / bands - 1, width, horizon * (i + 1) / bands + 1), colour)
    c.ellipse((640, 236, 740, 336), (255, 214, 140))  # setting sun
    # far hills
    xs = np.linspace(0, width, 64)
    ridge = horizon - 40 - 26 * np.sin(xs / 90.0) - 14 * np.sin(xs / 37.0 + 1.3)
    c.polygon([(0, horizon)] + list(zip(xs, ridge)) + [(width, horizon)], (104, 82, 128))
    # sea with light streaks
    c.rect((0, horizon, width, 372), (70, 84, 138))
    for k in range(9):  # the sun's reflection: short streaks, wider towards the shore
        y = horizon + 8 + k * 7
        half = 8 + k * 3 + (k * 7) % 5
        shift = ((k * 13) % 7 - 3) * 3
        c.line([(690 + shift - half, y), (690 + shift + half, y)], (238, 170, 120), 2)
    # the town: a row of houses with roofs and lit windows
    colours = [(196, 112, 92), (226, 186, 120), (120, 150, 170), (214, 152, 132), (150, 120, 160), (236, 206, 160)]
    x = -20.0
    i = 0
    while x < 640:
        w = 70 + (i * 37) % 50
        h = 70 + (i * 53) % 60
        base = 392.0
        colour = tuple(int(v * 0.82) for v in colours[i % len(colours)])
        c.rect((x, base - h, x + w, base), colour)
        c.polygon([(x - 6, base - h), (x + w / 2, base - h - 34 - (i % 3) * 8), (x + w + 6, base - h)], (84, 52, 62))
        for wy in range(int(base - h + 14), int(base - 22), 28):
            for wx in range(int(x + 12), int(x + w - 18), 24):
                lit = ((wx * 7 + wy * 13 + i) % 5) < 3
                c.rect((wx, wy, wx + 12, wy + 14), (255, 214, 120) if lit else (70, 60, 80))
        x += w + 8
        i += 1
    # lighthouse on the right
    c.polygon([(900, 392), (936, 392), (928, 230), (908, 230)], (236, 232, 224))
    for y in (260, 300, 340):
        c.polygon([(912 - (y - 230) * 0.03, y), (924 + (y - 230) * 0.03, y), (925 + (y - 230) * 0.03, y + 14),
                   (911 - (y - 230) * 0.03, y + 14)], (190, 58, 60))
    c.rect((904, 212, 932, 232), (255, 226, 150))
    c.polygon([(900, 212), (918, 192), (936, 212)], (84, 52, 62))
    # plaza: warm paving with perspective joints, and a sea wall
    c.rect((0, 392, width, height), (150, 128, 118))
    c.rect((0, 386, width, 398), (112, 96, 92))
    vanish = (512.0, 330.0)
    for k in range(-14, 15):
        c.line([(vanish[0] + k * 16, 398), (vanish[0] + k * 150, height + 40)], (126, 106, 98), 1.6)
    for k in range(9):
        y = 398 + (height - 398) * ((k + 1) / 9) ** 1.7
        c.line([(0, y), (width, y)], (126, 106, 98), 1.6)
    # street lamps with warm pools of light
    for lx in (150, 870):
        c.ellipse((lx - 70, 506, lx + 70, 540), (176, 146, 122))
        c.rect((lx - 4, 330, lx + 4, 524), (52, 44, 48))
        c.ellipse((lx - 13, 316, lx + 13, 342), (255, 222, 150))
    return c.result()


# --------------------------------------------------------------------------- writing


SAMPLES_TO_DRAW = {
    "character_mara.png": (character, 96),
    "prop_lantern.png": (lantern, 64),
    "environment_harbour.png": (harbour, 96),
}


def save(image: Image.Image, path: Path, colours: int) -> int:
    """Write ``image`` as a palette PNG of ``colours`` colours (no dithering); returns the size."""
    quantised = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    quantised.save(path, optimize=True)
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw RefVideo's sample references into samples/.")
    parser.add_argument("--out", type=Path, default=SAMPLES, help="folder to write into (default: samples/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (draw, colours) in SAMPLES_TO_DRAW.items():
        size = save(draw(), args.out / name, colours)
        print(f"{args.out / name}: {size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
