"""Preparation time per 1080p reference on CPU: quality checks, flat-background key, rembg u2netp.

Each stage runs on the same 1920x1080 synthetic references (a character on a flat backdrop:
clean, noisy, JPEG quality 5, on a busy background). The peer in the same run is decoding the
reference's PNG file, which every preparation pays anyway, so "x decode" says what a stage
costs relative to just reading the image. Target: checks + flat key well under 1 s.

    python benchmarks/bench_reference_prep.py                      # checks, flat key, whole node
    python benchmarks/bench_reference_prep.py --u2net-home DIR     # + rembg u2netp (DIR holds u2netp.onnx)
    python benchmarks/bench_reference_prep.py --repeat 5 --json

The u2netp model is found in --u2net-home, else U2NET_HOME or REFVIDEO_TEST_U2NET_HOME
(``.ci/u2netp.sh DIR`` puts it there); without it the rembg rows are skipped. The first rembg
call includes building the onnxruntime session; the table gives the steady per-image time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from synthetic_references import as_float, busy_background, character, jpeg, noised, save_png  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
ONE = [(0.5, 0.1, 0.8)]


def references() -> dict:
    clean = character(WIDTH, HEIGHT, positions=ONE)
    return {"clean": clean, "noisy": noised(clean, 14.0), "jpeg q5": jpeg(clean, 5),
            "busy background": busy_background(WIDTH, HEIGHT)}


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--u2net-home", default=os.environ.get("U2NET_HOME")
                        or os.environ.get("REFVIDEO_TEST_U2NET_HOME"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="refvideo-bench-"))
    os.environ["REFVIDEO_HOME"] = str(work)
    if args.u2net_home:
        os.environ["U2NET_HOME"] = args.u2net_home
    from refvideo.engine import host
    from refvideo.engine.references.images import read_image_file
    from refvideo.engine.references.matting import flat_background_key
    from refvideo.engine.references.quality import check_reference
    from refvideo.jobs.reference_prep import FLAT, REMBG, ReferenceInput, prepare_set

    host.set_progress_bars(False)
    host.input_dir().mkdir(parents=True)
    have_rembg = bool(args.u2net_home) and (Path(args.u2net_home) / "u2netp.onnx").is_file()
    rows = []
    for name, pixels in references().items():
        file_name = name.replace(" ", "_") + ".png"
        save_png(host.input_dir() / file_name, pixels)
        image = as_float(pixels)
        row = {"reference": name,
               "decode": timed(lambda: read_image_file(host.input_dir() / file_name, input_name="image_1"),
                               args.repeat),
               "checks": timed(lambda: check_reference(image), args.repeat),
               "flat key": timed(lambda: flat_background_key(image), args.repeat)}
        slot = ReferenceInput(1, file_name, background=FLAT)
        row["node, flat key"] = timed(lambda: prepare_set([slot]), args.repeat)
        if have_rembg:
            rembg_slot = ReferenceInput(1, file_name, background=REMBG)
            row["node, rembg u2netp"] = timed(lambda: prepare_set([rembg_slot], rembg_model="u2netp"), args.repeat)
        rows.append(row)

    if args.json:
        print(json.dumps({"size": f"{WIDTH}x{HEIGHT}", "repeat": args.repeat, "cpu_count": os.cpu_count(),
                          "rows": rows}, indent=2))
        return 0
    stages = [k for k in rows[0] if k != "reference"]
    print(f"Preparation per {WIDTH}x{HEIGHT} reference on CPU ({os.cpu_count()} cores), median of {args.repeat}:")
    print(f"{'reference':<18}" + "".join(f"{s:>20}" for s in stages))
    for row in rows:
        print(f"{row['reference']:<18}" + "".join(
            f"{row[s] * 1000:>9.0f} ms {row[s] / row['decode']:>5.1f}x" for s in stages))
    print("(x = relative to decoding the reference's PNG; 'node' = read + matte + checks, as LoadReferenceSet runs)")
    if not have_rembg:
        print("rembg rows skipped: no u2netp.onnx (pass --u2net-home DIR; .ci/u2netp.sh DIR fetches it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
