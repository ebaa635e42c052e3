"""Draw the picture strips of docs/previz.md's action vocabulary (run: python scripts/make_previz_strips.py).

One strip per verb or environment change: five frames, evenly spaced over a 5 s previz clip
of the bundled samples (Mara, the harbour, the lantern, cut out as ``refvideo demo`` does),
written as small JPEGs to ``docs/images/previz_action/``. The last two strips show the same
blocked shot as the ``depth`` and ``layout`` control passes.
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


def strip(refs, prompt: str, output: str) -> Image.Image:
    """Five frames of the shot side by side."""
    from refvideo.engine.camera.path import parse_shot_for
    from refvideo.engine.previz.render import render_animatic

    camera = parse_shot_for(prompt, refs)
    if camera.action_unknown or camera.unknown:
        raise SystemExit(f"'{prompt}': not understood: {camera.action_unknown + camera.unknown}")
    frames = render_animatic(refs, camera, size=FRAME, frames=FRAMES, fps=FPS, output=output).frames
    shown = frames[np.linspace(0, FRAMES - 1, SHOWN).round().astype(int)]
    row = np.concatenate([np.pad(f, ((0, 0), (0, 2), (0, 0)), constant_values=1.0) for f in shown], axis=1)[:, :-2]
    return Image.fromarray((np.clip(row, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the previz action strips into docs/images/previz_action/.")
    parser.add_argument("stems", nargs="*", help="only these strips (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_previz import sample_set

    refs = sample_set()
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, prompt, output in STRIPS:
        if args.stems and stem not in args.stems:
            continue
        path = OUT / f"{stem}.jpg"
        strip(refs, prompt, output).save(path, quality=80, optimize=True)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
