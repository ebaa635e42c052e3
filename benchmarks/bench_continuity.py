"""Continuity check speed: seconds per second of 720p video on the CPU, beside a previz render of the same clip.

One 5 s clip (81 frames at 16 fps, 1280x720) is rendered with previz from the bundled samples;
that render is the peer. The check then runs on it: colour only (colour, flash and colour drift)
on the frames in memory, as the ContinuityReport node gets them; colour only from the encoded
MP4, streamed, as ``refvideo continuity`` reads it; and with a tiny random CLIP vision encoder
(the encoder's own cost is then negligible: what is left is the check's). ColorAnchor's transfer
of the clip is timed too. ``--vit-b`` adds a CLIP ViT-B/16-sized encoder (random weights) for the
cost a real encoder adds. Figures are the best of ``--repeat`` runs.

    python benchmarks/bench_continuity.py              # colour, tiny encoder, anchor
    python benchmarks/bench_continuity.py --vit-b      # and a ViT-B/16-sized encoder
    python benchmarks/bench_continuity.py --json

Target: the check costs a small fraction of a render (well under the previz render itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_ROOT.parent))
sys.path.insert(0, str(PACK_ROOT / "benchmarks"))

FRAMES, FPS, SIZE = 81, 16.0, (1280, 720)
PROMPT = "Slow dolly in, then rack focus to the background."


def best_of(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def encoder_of(hidden: int, layers: int, heads: int, intermediate: int, patch: int, projection: int, name: str):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from refvideo.models.image_encoders import CLIP_MEAN, CLIP_STD, TransformersEncoder

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=intermediate, image_size=224, patch_size=patch,
                              projection_dim=projection)
    return TransformersEncoder(name, "clip", 224, CLIPVisionModelWithProjection(config).eval(), CLIP_MEAN, CLIP_STD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--vit-b", action="store_true", help="also time a CLIP ViT-B/16-sized encoder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from bench_previz import sample_set

    from refvideo.engine.camera.path import parse_shot
    from refvideo.engine.continuity.anchor import anchor_clip
    from refvideo.engine.continuity.check import ClipInput, analyse
    from refvideo.engine.continuity.sources import open_clip
    from refvideo.engine.previz.render import render_animatic
    from refvideo.engine.video.encoder import encode_video

    refs = sample_set()
    references = list(refs)
    clip: dict = {}

    def render() -> None:
        clip["frames"] = render_animatic(refs, parse_shot(PROMPT), size=SIZE, frames=FRAMES, fps=FPS).frames

    seconds = FRAMES / FPS
    results = {"clip": f"{FRAMES} frames at {FPS:g} fps, {SIZE[0]}x{SIZE[1]} ({seconds:.2f} s)"}
    results["previz_render"] = best_of(args.repeat, render)
    frames = clip["frames"]
    with tempfile.TemporaryDirectory() as folder:
        path = encode_video(frames, FPS, Path(folder) / "shot.mp4").path
        tiny = encoder_of(32, 1, 1, 32, 32, 8, "tiny")
        cases = {
            "color_only_in_memory": lambda: analyse([ClipInput("shot", frames)], references),
            "color_only_from_mp4": lambda: analyse([open_clip(str(path))], references),
            "tiny_encoder": lambda: analyse([ClipInput("shot", frames)], references, tiny),
            "color_anchor": lambda: anchor_clip(frames, refs.with_role("environment")[0].image, 1.0),
        }
        if args.vit_b:
            vit_b = encoder_of(768, 12, 12, 3072, 16, 512, "vit-b")
            cases["vit_b16_encoder"] = lambda: analyse([ClipInput("shot", frames)], references, vit_b)
        for name, run in cases.items():
            results[name] = best_of(args.repeat, run)
    report = {"clip": results["clip"], "previz_seconds_per_video_second": results["previz_render"] / seconds}
    for name in cases:
        report[f"{name}_seconds_per_video_second"] = results[name] / seconds
        report[f"{name}_vs_previz_render"] = results[name] / results["previz_render"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(report["clip"])
    print(f"{'case':<24}{'s per video s':>15}{'x previz render':>18}")
    print(f"{'previz render (peer)':<24}{report['previz_seconds_per_video_second']:>15.3f}{1.0:>18.2f}")
    for name in cases:
        print(f"{name:<24}{report[f'{name}_seconds_per_video_second']:>15.3f}"
              f"{report[f'{name}_vs_previz_render']:>18.2f}")


if __name__ == "__main__":
    main()
