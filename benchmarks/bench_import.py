"""How long importing the pack takes, against importing the libraries it keeps lazy.

Each import runs in a fresh interpreter (median of N runs, interpreter start-up subtracted),
the way ComfyUI pays it once at start. Usage: python benchmarks/bench_import.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python (baseline)": "pass",
    "import refvideo": "import refvideo",
    "import numpy": "import numpy",
    "import torch": "import torch",
    "import diffusers (pipelines)": "import diffusers; diffusers.WanVACEPipeline",
    "import av": "import av",
}


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    medians = {}
    for name, code in CASES.items():
        try:
            seconds(code)  # warm the file cache
        except subprocess.CalledProcessError:
            print(f"{name:32s}  not installed")
            continue
        medians[name] = statistics.median(seconds(code) for _ in range(args.runs))
    base = medians.pop("python (baseline)")
    ours = medians["import refvideo"] - base
    print(f"interpreter start-up: {base * 1000:.0f} ms (subtracted below)")
    for name, value in medians.items():
        cost = value - base
        ratio = "" if name == "import refvideo" else f"  ({cost / max(ours, 1e-4):.1f}x the cost of importing refvideo)"
        print(f"{name:32s} {cost * 1000:8.0f} ms{ratio}")


if __name__ == "__main__":
    main()
