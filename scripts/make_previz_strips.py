"""Draw the picture strips of docs/previz.md's action vocabulary (run: python scripts/make_previz_strips.py).

One strip per verb or environment change: five frames, evenly spaced over a 5 s previz clip
of the bundled samples (Mara, the harbour, the lantern, cut out as ``refvideo demo`` does),
written as small JPEGs to ``docs/images/previz_action/``. The last two strips show the same
blocked shot as the ``depth`` and ``layout`` control passes. ``hero`` re-draws the README's strip
of the demo shot (frames 0, 20, 40, 60 and 80 of its 81).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "previz_action"
FRAME = (192, 108)
FRAMES, FPS, SHOWN = 41, 8.0, 5
DEMO = ("Mara waits on the harbour at dusk beside her brass lantern as the street lamps come on. "
        "Slow dolly in, then rack focus to the background.")
HERO = ROOT / "docs" / "images" / "hero_demo_strip.jpg"

STRIPS = (  # file stem, prompt, render pass
    ("enter", "Mara enters from the right.", "animatic"),
    ("exit", "Mara exits frame left.", "animatic"),
    ("walk", "Mara walks from the left of frame to the right.", "animatic"),
    ("run", "Mara runs towards the camera.", "animatic"),
    ("turn", "Mara turns from the water to face the camera.", "animatic"),
    ("turn_away", "Mara turns away from the camera.", "animatic"),
    ("stop", "Mara walks to the left, then stops and turns to face the camera.", "animatic"),
    ("lift", "Mara lifts the lantern.", "animatic"),
    ("carry", "Mara lifts the lantern and carries it to the left.", "animatic"),
    ("lights", "The harbour lamps go out.", "animatic"),
    ("night", "Night falls and the harbour lamps come on.", "animatic"),
    ("dawn", "Dawn breaks.", "animatic"),
    ("rain", "It starts to rain.", "animatic"),
    ("fog", "Fog rolls in.", "animatic"),
    ("with_camera", "Mara walks towards the camera as the camera trucks left.", "animatic"),
    ("depth", "Mara walks towards the camera as the camera trucks left.", "depth"),
    ("layout", "Mara walks towards the camera as the camera trucks left.", "layout"),
)


def strip(refs, prompt: str, output: str, size: tuple[int, int] = FRAME, frames: int = FRAMES, fps: float = FPS,
          gap: int = 2) -> Image.Image:
    """Five frames of the shot, evenly spaced from the first to the last, side by side."""
    from refvideo.engine.camera.path import shot_camera
    from refvideo.engine.previz.render import render_animatic

    camera = shot_camera(prompt, "", refs)
    if camera.action_unknown or camera.unknown:
        raise SystemExit(f"'{prompt}': not understood: {camera.action_unknown + camera.unknown}")
    drawn = render_animatic(refs, camera, size=size, frames=frames, fps=fps, output=output).frames
    shown = drawn[np.linspace(0, frames - 1, SHOWN).round().astype(int)]
    row = np.concatenate([np.pad(f, ((0, 0), (0, gap), (0, 0)), constant_values=1.0) for f in shown], axis=1)
    row = row[:, :-gap]
    return Image.fromarray((np.clip(row, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


def save(image: Image.Image, path: Path) -> None:
    image.save(path, quality=80, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.1f} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the previz action strips into docs/images/previz_action/.")
    parser.add_argument("stems", nargs="*", help="only these strips (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_previz import sample_set

    refs = sample_set()
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, prompt, output in STRIPS:
        if not args.stems or stem in args.stems:
            save(strip(refs, prompt, output), OUT / f"{stem}.jpg")
    if not args.stems or "hero" in args.stems:
        save(strip(refs, DEMO, "animatic", size=(320, 180), frames=81, fps=16.0, gap=4), HERO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
