"""Previz speed: seconds per 5 s clip (81 frames at 16 fps) at 720p and 1080p on the CPU.

Each shot is rendered from the bundled samples (character and prop cut out with the
flat-background key) with the renderer's default thread count, and again on one thread,
the peer that shows what the frame threads buy. "x real time" is render seconds over the
clip's own length. The demo case runs the whole demo workflow in-process (reference
preparation, previz, MP4 encode), as ``refvideo demo`` does.

    python benchmarks/bench_previz.py              # 720p and 1080p, three shots, then the demo
    python benchmarks/bench_previz.py --quick      # 720p, the demo shot only
    python benchmarks/bench_previz.py --json       # one JSON object
    python benchmarks/bench_previz.py --repeat 3   # best of 3 runs per case (default 2)
    python benchmarks/bench_previz.py --blocking   # the blocked shot: animatic + depth + layout vs main

Target: under 10 s per 5 s clip at 720p on 2 cores; the demo well under a minute.

``--blocking`` renders a 5 s 720p shot with action (an entrance, a walk towards the camera,
a turn, lamps coming on, a truck) as the animatic, the depth pass and the layout pass, and
the same prompt with the renderer of another git revision (``--peer``, default ``main``:
extracted with ``git archive`` into a temporary folder), which draws the camera only. Each
side runs in its own process, best of ``--repeat``; the ratios are against the peer.
Target: all three passes together under 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_ROOT.parent))

SHOTS = {
    "demo": "Slow dolly in, then rack focus to the background.",
    "whip": "Handheld, fast whip pan right, then slow tilt up.",
    "dutch-arc": "Dutch angle, slow arc left around her.",
}
BLOCKING = ("Mara enters from the left and walks towards the camera as the harbour lamps come on, then turns away. "
            "Slow truck right.")
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FRAMES, FPS = 81, 16.0


def sample_set():
    """The demo's three references, prepared as LoadReferenceSet does (flat key for character and prop)."""
    from refvideo.engine.references.matting import flat_background_key
    from refvideo.engine.references.reference import Reference, ReferenceSet

    def load(name: str, role: str, label: str, key: bool) -> Reference:
        rgb = np.asarray(Image.open(PACK_ROOT / "samples" / name).convert("RGB"), np.float32) / 255.0
        mask = flat_background_key(rgb).matte if key else np.ones(rgb.shape[:2], np.float32)
        return Reference(rgb, mask, role, label)

    return ReferenceSet((load("character_mara.png", "character", "Mara", True),
                         load("environment_harbour.png", "environment", "harbour", False),
                         load("prop_lantern.png", "prop", "lantern", True)))


def time_render(refs, prompt: str, size: tuple[int, int], workers: int | None, repeat: int,
                output: str = "") -> dict:
    from refvideo.engine.camera import path as camera_module
    from refvideo.engine.previz.render import render_animatic

    parse = getattr(camera_module, "shot_camera", None)
    camera = parse(prompt, "", refs) if parse else camera_module.parse_shot(prompt)
    extra = {"output": output} if output else {}  # an older renderer draws the animatic only
    best: dict | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        animatic = render_animatic(refs, camera, size=size, frames=FRAMES, fps=FPS, workers=workers, **extra)
        run = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
        del animatic
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    return best


def time_demo(repeat: int) -> dict:
    """The demo workflow end to end, in-process, into a temporary data folder."""
    from refvideo.engine import host
    from refvideo.engine.paths import API_WORKFLOWS_DIR
    from refvideo.headless.runner import execute, load_workflow
    from refvideo.nodes import NODE_CLASS_MAPPINGS

    best = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as home:
            os.environ["REFVIDEO_HOME"] = home
            host.configure(output_dir=Path(home) / "output")
            host.set_progress_bars(False)
            wall, cpu = time.perf_counter(), time.process_time()
            execute(load_workflow(API_WORKFLOWS_DIR / "demo_shot.json"), NODE_CLASS_MAPPINGS)
            run = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    return best


def peer_package(revision: str, folder: Path) -> Path:
    """The pack at ``revision``, extracted as ``folder/refvideo`` (``git archive``; the repository is untouched)."""
    archive = folder / "peer.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(PACK_ROOT), "archive", "--format=tar", revision], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "refvideo", filter="data")
    return folder


def time_in_process(python_path: Path, outputs: list[str], repeat: int) -> dict:
    """Run this script's ``--worker`` mode with ``python_path`` first on the import path; its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    command = [sys.executable, __file__, "--worker", ",".join(outputs), "--repeat", str(repeat)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def worker(outputs: str, repeat: int) -> int:
    """Time the blocked shot at 720p for each pass in ``outputs`` ("" = the renderer's only picture)."""
    import refvideo

    refs = sample_set()
    times = {name or "animatic": time_render(refs, BLOCKING, SIZES["720p"], None, repeat, name)
             for name in outputs.split(",")}
    print(json.dumps({"package": str(Path(refvideo.__file__).parent), "times": times}))
    return 0


def blocking(peer: str, repeat: int, as_json: bool) -> int:
    """The blocked shot's three passes against ``peer``'s renderer, each in its own process."""
    ours_path = Path(os.environ.get("PYTHONPATH", str(PACK_ROOT.parent)).split(os.pathsep)[0])
    ours = time_in_process(ours_path, ["animatic", "depth", "layout"], repeat)["times"]
    with tempfile.TemporaryDirectory() as folder:
        theirs = time_in_process(peer_package(peer, Path(folder)), [""], repeat)["times"]["animatic"]
    total = sum(r["seconds"] for r in ours.values())
    result = {"cores": os.cpu_count(), "frames": FRAMES, "size": "720p", "prompt": BLOCKING, "peer": peer,
              "peer_animatic": theirs, "passes": ours, "total_seconds": total,
              "animatic_ratio": ours["animatic"]["seconds"] / theirs["seconds"],
              "total_ratio": total / theirs["seconds"]}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"blocked shot, {FRAMES} frames at 720p, {os.cpu_count()} cores, best of {repeat}: {BLOCKING!r}")
    print(f"{'renderer':28} {'seconds':>8} {'cpu s':>7} {'x peer':>7}")
    print(f"{peer + ' (camera only)':28} {theirs['seconds']:8.2f} {theirs['cpu_seconds']:7.2f} {1.0:7.2f}")
    for name, run in ours.items():
        print(f"{'this tree, ' + name:28} {run['seconds']:8.2f} {run['cpu_seconds']:7.2f} "
              f"{run['seconds'] / theirs['seconds']:7.2f}")
    print(f"{'this tree, all three':28} {total:8.2f} {'':7} {result['total_ratio']:7.2f}   (target: < 10 s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="720p, the demo shot only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per case")
    parser.add_argument("--blocking", action="store_true", help="the blocked shot's passes against --peer")
    parser.add_argument("--peer", default="main", help="the git revision whose renderer is the peer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.repeat)
    if args.blocking:
        return blocking(args.peer, args.repeat, args.json)

    refs = sample_set()
    clip_seconds = FRAMES / FPS
    sizes = {"720p": SIZES["720p"]} if args.quick else SIZES
    shots = {"demo": SHOTS["demo"]} if args.quick else SHOTS
    rows = []
    for resolution, size in sizes.items():
        for shot, prompt in shots.items():
            threaded = time_render(refs, prompt, size, None, args.repeat)
            single = time_render(refs, prompt, size, 1, args.repeat)
            rows.append({"resolution": resolution, "shot": shot, "frames": FRAMES, **threaded,
                         "ms_per_frame": 1000.0 * threaded["seconds"] / FRAMES,
                         "x_real_time": threaded["seconds"] / clip_seconds,
                         "one_thread_seconds": single["seconds"],
                         "thread_speedup": single["seconds"] / threaded["seconds"]})
    demo = time_demo(args.repeat)
    result = {"cores": os.cpu_count(), "clip_seconds": clip_seconds, "renders": rows,
              "demo_workflow_720p": demo}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"previz, {FRAMES} frames ({clip_seconds:.2f} s clip), {os.cpu_count()} cores, best of {args.repeat}")
    print(f"{'size':6} {'shot':10} {'seconds':>8} {'cpu s':>7} {'ms/frame':>9} {'x real time':>12} "
          f"{'1 thread s':>11} {'threads x':>10}")
    for r in rows:
        print(f"{r['resolution']:6} {r['shot']:10} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} "
              f"{r['ms_per_frame']:9.1f} "
              f"{r['x_real_time']:12.2f} {r['one_thread_seconds']:11.2f} {r['thread_speedup']:10.2f}")
    print(f"demo workflow at 720p (references + previz + MP4): {demo['seconds']:.2f} s "
          f"(cpu {demo['cpu_seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
