"""Sequence fan-out: a 6-shot previz storyboard rendered in-process vs on a local Ray cluster.

Both runs render the same six independent shots (the bundled samples, previz, 5 s each) into
fresh folders with the editor hand-off off, so the figure is the shots alone. The in-process run
renders them one after another; the Ray run starts a local cluster with ``--workers`` CPU workers
(its start-up is timed separately) and renders the shots as Ray tasks. Per shot it reports the
worker's own render + encode time.

The per-shot cost is a round's wall time (``ceil(shots / workers)`` rounds) minus the mean render
time: dispatch, the clip's bytes coming back, the write, and on a small machine the CPU the
workers take from each other. The prediction for N GPUs assumes each shot is one GPU task whose render time dominates:
``wall(N) = start-up + ceil(shots / N) x (render + per-shot cost)``. Shots that continue from
each other form a chain that runs in order whatever N is.

    python benchmarks/bench_sequence.py                      # 720p, 2 workers
    python benchmarks/bench_sequence.py --resolution 144p    # quick
    python benchmarks/bench_sequence.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_ROOT.parent))

PROMPTS = ["Wide shot. Mara waits on the quay. Slow dolly in.", "The harbour at dusk. Slow pan right.",
           "Medium shot. Mara lifts the lantern. Truck left.", "Close-up. Mara looks out to sea. Push in.",
           "The lantern on the quay. Tilt down.", "Night falls over the harbour. Crane up."]
REFS = [{"image": "samples/character_mara.png", "role": "character", "label": "Mara", "background": "flat background"},
        {"image": "samples/environment_harbour.png", "role": "environment", "label": "the harbour"},
        {"image": "samples/prop_lantern.png", "role": "prop", "label": "the lantern", "background": "flat background"}]


def storyboard(resolution: str):
    from refvideo.engine.sequence.storyboard import parse_storyboard

    shots = [{"name": f"shot{i + 1}", "prompt": p, "seed": i} for i, p in enumerate(PROMPTS)]
    return parse_storyboard(json.dumps({"sequence": "bench", "defaults": {
        "references": REFS, "model": "previz", "resolution": resolution, "duration": 5}, "shots": shots}))


def timed(story, folder: Path, runner=None, workers: int = 1) -> dict:
    """Wall time of the shots, the workers' mean render time, and the cost per shot beyond rendering:
    the wall time of one round of ``workers`` shots minus the mean render time."""
    from refvideo.jobs.sequence.render import render_sequence

    started = time.perf_counter()
    result = render_sequence(story, folder, runner=runner, handoff=False)
    wall = time.perf_counter() - started
    assert result.ok, result.text()
    render = sum(s.render_seconds for s in result.shots) / len(result.shots)
    rounds = math.ceil(len(result.shots) / workers)
    return {"wall_s": round(wall, 2), "render_s_mean": round(render, 2),
            "per_shot_cost_s": round(wall / rounds - render, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="720p", choices=("144p", "480p", "720p", "1080p"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = tempfile.TemporaryDirectory(prefix="refvideo_bench_")
    os.environ["REFVIDEO_HOME"] = home.name
    from refvideo.engine import host

    host.configure()
    host.set_progress_bars(False)
    story = storyboard(args.resolution)
    out = Path(home.name)
    local = timed(story, out / "in_process")

    from refvideo.jobs.sequence.ray_fanout import RayRunner

    started = time.perf_counter()
    runner = RayRunner(num_cpus=args.workers, gpus_per_shot=0)
    startup = time.perf_counter() - started
    try:
        ray = timed(story, out / "ray", runner, args.workers)
    finally:
        runner.close()
    shots = len(PROMPTS)
    unit = ray["render_s_mean"] + ray["per_shot_cost_s"]
    predicted = {n: round(startup + math.ceil(shots / n) * unit, 1) for n in (1, 2, 3, 6)}
    report = {"shots": shots, "resolution": args.resolution, "workers": args.workers, "cpus": os.cpu_count(),
              "in_process": local, "ray": {**ray, "startup_s": round(startup, 2)},
              "ratio_in_process_over_ray": round(local["wall_s"] / ray["wall_s"], 2),
              "predicted_wall_s_for_n_gpus": predicted}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{shots} previz shots at {args.resolution}, {os.cpu_count()} CPUs")
        print(f"  in-process: {local['wall_s']:.1f} s ({local['render_s_mean']:.2f} s per shot, "
              f"{local['per_shot_cost_s']:.2f} s beyond rendering)")
        print(f"  Ray, {args.workers} workers: {ray['wall_s']:.1f} s (+ {startup:.1f} s cluster start), "
              f"{ray['render_s_mean']:.2f} s per shot on a worker, {ray['per_shot_cost_s']:.2f} s cost per shot "
              "beyond rendering")
        print(f"  in-process / Ray: {report['ratio_in_process_over_ray']:.2f}x")
        print("  predicted wall time with N GPUs (one shot per GPU, this shot time): "
              + ", ".join(f"N={n}: {s:.1f} s" for n, s in predicted.items()))
    home.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
