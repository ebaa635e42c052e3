"""Encode throughput and peak memory: RefVideo's PyAV encoder vs an ffmpeg subprocess.

Both encode the same float32 clip (ComfyUI's IMAGE layout, values 0..1) to MP4 H.264
yuv420p with the same settings (crf 19, preset medium, BT.709, faststart). The peer is what
a script would do without PyAV: convert each frame to uint8 RGB and pipe it as rawvideo to
the imageio-ffmpeg binary. Each case runs in a fresh process so peak memory is its own.

    python benchmarks/bench_encode.py                # 720p and 1080p, 81 and 129 frames
    python benchmarks/bench_encode.py --quick        # 720p, 81 frames only
    python benchmarks/bench_encode.py --json         # one JSON object
    python benchmarks/bench_encode.py --repeat 3     # best of 3 runs per case (default 2)

Peak extra memory is the rise of the process's peak RSS above its RSS after the clip was
created (plus the ffmpeg child's peak RSS for the peer), also given in float32 frames; most
of it is x264's own lookahead and frame threads, the same in both. "heap" is the peak of the
Python-side allocations while encoding (tracemalloc, numpy buffers included; measured in a
separate untimed pass over the first 17 frames), in frames: the copies each side makes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 16.0
CRF = 19
HEAP_FRAMES = 17
SPEED = "medium"


def make_clip(width: int, height: int, frames: int, seed: int = 0) -> np.ndarray:
    """A float32 clip with structure and motion (gradients, a moving disc, fine texture)."""
    rng = np.random.default_rng(seed)
    clip = np.empty((frames, height, width, 3), np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    texture = rng.random((height + frames, width + frames), dtype=np.float32) * 0.08
    for i in range(frames):
        t = i / max(frames - 1, 1)
        cx, cy = 0.2 + 0.6 * t, 0.5 + 0.2 * np.sin(6.28 * t)
        disc = ((x - cx) ** 2 * (width / height) ** 2 + (y - cy) ** 2 < 0.02).astype(np.float32)
        grain = texture[i:i + height, i:i + width]
        clip[i, :, :, 0] = 0.6 * x + 0.3 * disc + grain
        clip[i, :, :, 1] = 0.5 * y + 0.2 * np.cos(3.14 * (x + t)) ** 2 + grain
        clip[i, :, :, 2] = 0.4 * (1 - x) * y + 0.5 * disc
    np.clip(clip, 0.0, 1.0, out=clip)
    return clip


def _rss_bytes(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


class ChildPeak:
    """The peak RSS of a child process, polled from /proc while it runs (fork-time pages excluded)."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _rss_bytes("VmHWM", self.pid))
            except (OSError, RuntimeError):
                pass
            self._stop.wait(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_ours(clip: np.ndarray, out: Path) -> int:
    from refvideo.engine import host
    from refvideo.engine.video import encoder

    host.set_progress_bars(False)
    encoder.encode_video(clip, FPS, out, format="mp4-h264", crf=CRF, speed=SPEED)
    return 0


def run_ffmpeg(clip: np.ndarray, out: Path) -> int:
    """Pipe the clip to ffmpeg; returns the ffmpeg process's peak RSS."""
    import imageio_ffmpeg

    frames, height, width, _ = clip.shape
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{FPS:g}", "-i", "-",
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
        "-c:v", "libx264", "-preset", SPEED, "-crf", str(CRF), "-pix_fmt", "yuv420p",
        "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
        "-movflags", "+faststart", str(out),
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    child = ChildPeak(process.pid)
    try:
        for i in range(frames):
            frame = np.clip(clip[i] * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
            process.stdin.write(frame.tobytes())
    finally:
        process.stdin.close()
        while process.poll() is None:
            time.sleep(0.005)
        peak = child.stop()
        if process.returncode != 0:
            raise RuntimeError(f"ffmpeg exited with {process.returncode}")
    return peak


def run_case(peer: str, size: str, frames: int) -> dict:
    """One measurement in this process (called in a fresh child by :func:`measure`)."""
    width, height = SIZES[size]
    clip = make_clip(width, height, frames)
    baseline = _rss_bytes("VmRSS")
    exact = _reset_peak()
    if not exact:
        baseline = _rss_bytes("VmHWM")
    run = run_ours if peer == "refvideo" else run_ffmpeg
    cpu_before = _cpu_seconds()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "clip.mp4"
        started = time.perf_counter()
        child_peak = run(clip, out)
        seconds = time.perf_counter() - started
        size_bytes = out.stat().st_size
    cpu = _cpu_seconds() - cpu_before
    peak = _rss_bytes("VmHWM")
    tracemalloc.start()  # a separate, untimed pass: tracing slows Python-side work
    with tempfile.TemporaryDirectory() as folder:
        run(clip[:HEAP_FRAMES], Path(folder) / "clip.mp4")
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    extra = max(peak - baseline, 0) + child_peak
    frame_bytes = width * height * 3 * 4
    return {"peer": peer, "size": size, "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2), "cpu_ms_per_frame": round(1000 * cpu / frames, 1),
            "extra_mb": round(extra / 2**20, 1),
            "extra_frames": round(extra / frame_bytes, 1), "python_heap_frames": round(heap_peak / frame_bytes, 2),
            "clip_mb": round(clip.nbytes / 2**20, 1),
            "file_kb": round(size_bytes / 1024, 1), "peak_reset": exact}


def run_child(peer: str, size: str, frames: int) -> dict:
    command = [sys.executable, __file__, "--case", peer, size, str(frames)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(size: str, frames: int, repeat: int) -> tuple[dict, dict]:
    """Both peers, alternating, ``repeat`` times each in fresh processes; the fastest run of each counts."""
    runs: dict[str, list[dict]] = {"refvideo": [], "ffmpeg": []}
    for _ in range(repeat):
        for peer, found in runs.items():
            found.append(run_child(peer, size, frames))
    best = {peer: max(found, key=lambda r: r["fps"]) for peer, found in runs.items()}
    return best["refvideo"], best["ffmpeg"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="720p, 81 frames only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the fastest counts (default 2)")
    parser.add_argument("--case", nargs=3, metavar=("PEER", "SIZE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1], int(args.case[2]))))
        return 0
    cases = [("720p", 81)] if args.quick else [(s, f) for s in ("720p", "1080p") for f in (81, 129)]
    rows = []
    for size, frames in cases:
        ours, peer = measure(size, frames, args.repeat)
        rows.append({"size": size, "frames": frames, "refvideo": ours, "ffmpeg": peer,
                     "throughput_ratio": round(ours["fps"] / peer["fps"], 3),
                     "memory_ratio": round(ours["extra_mb"] / max(peer["extra_mb"], 0.1), 3)})
    if args.json:
        print(json.dumps({"cpu_count": os.cpu_count(), "crf": CRF, "preset": SPEED, "repeat": args.repeat,
                          "rows": rows}, indent=2))
        return 0
    print(f"MP4 H.264 yuv420p crf {CRF} preset {SPEED}, {os.cpu_count()} CPU cores, best of {args.repeat}; "
          "fps = frames encoded per second")
    print(f"{'case':<14}{'refvideo fps':>13}{'ffmpeg fps':>12}{'ratio':>8}{'cpu ms/frame':>16}   "
          f"{'refvideo extra':>20}   "
          f"{'ffmpeg extra (py+child)':>24}   {'heap refvideo/ffmpeg':>20}")
    for row in rows:
        ours, peer = row["refvideo"], row["ffmpeg"]
        print(f"{row['size'] + ' x' + str(row['frames']):<14}{ours['fps']:>13.2f}{peer['fps']:>12.2f}"
              f"{row['throughput_ratio']:>8.3f}{ours['cpu_ms_per_frame']:>8.0f} /{peer['cpu_ms_per_frame']:>5.0f}   "
              f"{ours['extra_mb']:>9.1f} MB ({ours['extra_frames']:>4.1f} fr)   "
              f"{peer['extra_mb']:>13.1f} MB ({peer['extra_frames']:>4.1f} fr)   "
              f"{ours['python_heap_frames']:>9.2f} / {peer['python_heap_frames']:.2f} fr")
    print("ratio = refvideo fps / ffmpeg fps (>= 1 is parity or better); cpu ms/frame = CPU time (all threads and "
          "the ffmpeg child) per frame, refvideo / ffmpeg; fr = the same memory in float32 frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
