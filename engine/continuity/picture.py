"""The report as a picture: likeness curves over the frames of every shot, and colour swatches of each
shot beside the references'.

Top: per-frame similarity to each reference (one colour per reference), shots separated by
dashed lines, reference flashes shaded red. Bottom: each reference and each shot (its middle
frame) with its five main colours; a shot's label says its colour distance to the references and
to shot 1, in red when it was flagged. Drawn with Pillow alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..references.images import from_uint8, to_uint8
from ..references.reference import Reference
from .report import Report

WIDTH = 1280
CURVE_HEIGHT = 300
THUMB = 120
SWATCHES = 5
LINE_COLOURS = ((230, 80, 60), (60, 140, 230), (60, 180, 90), (200, 150, 40), (150, 90, 200))
BACKGROUND, INK, GRID, ALERT = (250, 250, 248), (40, 40, 40), (200, 200, 200), (210, 40, 40)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def dominant_colours(image: np.ndarray, mask: np.ndarray | None = None,
                     count: int = SWATCHES) -> list[tuple[int, int, int]]:
    """The ``count`` main colours of an RGB image (median-cut), most frequent first; only the subject
    (``mask`` > 0.5) when a mask is given."""
    picture = Image.fromarray(to_uint8(np.asarray(image)[..., :3]), "RGB").resize((64, 64), Image.Resampling.BOX)
    if mask is not None:
        keep = np.asarray(Image.fromarray(to_uint8(mask), "L").resize((64, 64), Image.Resampling.BOX)) > 127
        if keep.sum() >= count:
            picture = Image.fromarray(np.asarray(picture)[keep][None], "RGB")
    quantised = picture.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    used: list[tuple[int, int]] = sorted(quantised.getcolors() or [], reverse=True)  # type: ignore[arg-type]
    return [(int(palette[3 * i]), int(palette[3 * i + 1]), int(palette[3 * i + 2])) for _, i in used][:count]


def _measured(report: Report) -> bool:
    return report.encoder is not None and any(c.similarity is not None for c in report.clips)


def _curves(draw: ImageDraw.ImageDraw, report: Report, top: int) -> None:
    left, right, bottom = 60, WIDTH - 20, top + CURVE_HEIGHT - 30
    font = _font(14)
    draw.text((left, top), "Likeness to each reference, per frame", fill=INK, font=font)
    top += 24
    if not _measured(report):
        draw.text((left, top), f"Not measured. {report.encoder_note}", fill=INK, font=font)
        return
    values = np.concatenate([c.similarity for c in report.clips if c.similarity is not None])
    low, high = float(values.min()) - 0.02, float(values.max()) + 0.02
    total = sum(c.frames for c in report.clips)

    def x(i: float) -> float:
        return left + (right - left) * i / max(1, total - 1)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - low) / max(high - low, 1e-6)

    draw.rectangle((left, top, right, bottom), outline=GRID)
    for v in (low + 0.02, high - 0.02):
        draw.text((4, y(v) - 7), f"{v:.2f}", fill=INK, font=_font(12))
    start = 0
    for number, clip in enumerate(report.clips, 1):
        for finding in clip.findings:
            if finding.check == "reference_flash" and finding.frames:
                draw.rectangle((x(start + finding.frames[0]), top + 1, x(start + finding.frames[1] + 1) - 1,
                                bottom - 1), fill=(250, 205, 205))
        if start:
            for yy in range(top, bottom, 8):
                draw.line((x(start), yy, x(start), yy + 4), fill=GRID)
        draw.text((x(start) + 4, bottom + 4), f"shot {number}", fill=INK, font=_font(12))
        if clip.similarity is not None:
            for r in range(clip.similarity.shape[1]):
                points = [(x(start + i), y(v)) for i, v in enumerate(clip.similarity[:, r])]
                draw.line(points if len(points) > 1 else points * 2, fill=LINE_COLOURS[r % len(LINE_COLOURS)], width=2)
        start += clip.frames
    names = list(report.clips[0].likeness["references"]) if report.clips[0].likeness else []
    for r, name in enumerate(names):
        colour = LINE_COLOURS[r % len(LINE_COLOURS)]
        draw.line((right - 180, top + 14 + 18 * r, right - 160, top + 14 + 18 * r), fill=colour, width=3)
        draw.text((right - 154, top + 6 + 18 * r), name, fill=colour, font=font)


def _tile(canvas: Image.Image, draw: ImageDraw.ImageDraw, image: np.ndarray, at: tuple[int, int], label: str,
          colour: tuple[int, int, int], mask: np.ndarray | None = None) -> None:
    picture = Image.fromarray(to_uint8(np.asarray(image)[..., :3]), "RGB")
    picture.thumbnail((THUMB * 16 // 9, THUMB))
    canvas.paste(picture, at)
    x0, y0 = at[0], at[1] + THUMB + 4
    size = THUMB * 16 // 9 // SWATCHES
    for i, rgb in enumerate(dominant_colours(image, mask)):
        draw.rectangle((x0 + i * size, y0, x0 + (i + 1) * size - 2, y0 + 24), fill=rgb)
    draw.text((x0, y0 + 30), label, fill=colour, font=_font(13))


def draw(report: Report, references: list[Reference]) -> np.ndarray:
    """The report's picture as RGB float32 ``[H, W, 3]`` (0..1)."""
    tile_w = THUMB * 16 // 9 + 16
    per_row = max(1, (WIDTH - 40) // tile_w)
    shot_rows = -(-len(report.clips) // per_row)
    curves = CURVE_HEIGHT if _measured(report) else 60
    height = curves + 40 + (1 + shot_rows) * (THUMB + 90)
    canvas = Image.new("RGB", (WIDTH, height), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    _curves(pen, report, 10)
    top = curves + 20
    pen.text((20, top), "References", fill=INK, font=_font(14))
    for i, (ref, entry) in enumerate(zip(references, report.references)):
        _tile(canvas, pen, ref.image, (20 + i * tile_w, top + 20), f"{entry['name']} ({ref.role})", INK,
              ref.mask if ref.role in ("character", "prop") else None)
    top += THUMB + 90
    for i, clip in enumerate(report.clips):
        row, col = divmod(i, per_row)
        flagged = any(f.check == "color" or (f.check == "drift" and f.reference is None) for f in clip.findings)
        label = f"shot {i + 1}"
        if clip.color.get("reference_distance") is not None:
            label += f"  to refs {clip.color['reference_distance']:.1f}"
        if clip.color.get("shot_distance") is not None:
            label += f"  to shot 1 {clip.color['shot_distance']:.1f}"
        flashes = [f"flash {f.frames[0]}-{f.frames[1]}" for f in clip.findings
                   if f.check == "reference_flash" and f.frames]
        if flashes:
            label += "\n" + ", ".join(flashes)
            flagged = True
        at = (20 + col * tile_w, top + 20 + row * (THUMB + 90))
        _tile(canvas, pen, clip.swatch if clip.swatch is not None else np.ones((9, 16, 3)), at, label,
              ALERT if flagged else INK)
    pen.text((20, top), "Shots (middle frame)", fill=INK, font=_font(14))
    return from_uint8(np.asarray(canvas))


def save_png(picture: np.ndarray, path: str) -> None:
    """Write the picture as a PNG (through a temporary file, then renamed)."""
    from ..storage import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(picture), "RGB").save(tmp, format="PNG")
