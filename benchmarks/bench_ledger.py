"""Ledger latency and throughput: reserve + commit on one ledger file, 1 and 8 processes.

Run: ``python benchmarks/bench_ledger.py [--cycles 400] [--rate 40] [--history 100000]``

The last line times opening the ledger (its checks on open included) against a bare SQLite
connect + ``quick_check`` on the same file.

Each cycle is what one clip costs the ledger: a reserve and a commit (two durable
transactions, WAL, ``synchronous=FULL``). Two loads:

- ``saturated``: every process runs cycles back to back (the throughput ceiling; with 8
  processes the latency is then mostly waiting for the others' turns);
- ``paced``: every process starts cycles at random (Poisson) times, ``--rate`` per second
  each; a cycle that starts late because the previous one ran long counts from its
  scheduled start, so a backlog is not hidden (the sleep's own wake-up delay is not counted).

The peer, in the same run and load, is two bare ``BEGIN IMMEDIATE; INSERT; COMMIT``
transactions with the same settings, waiting with SQLite's own busy handler: the floor any
durable two-phase charge pays. ``--history`` pre-fills the ledger to show that a long history
does not slow a charge (balances are running totals). The ``capped`` case reserves through a
budget cap, as RefVideoSampler does under a CreditMeter with ``budget_cap`` set: each reserve
also sums the run's earlier reservations (10 clips per run here). Target: reserve+commit p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _ledger(path: Path):
    try:
        from refvideo.engine.credits.ledger import Ledger
    except ImportError as exc:
        raise SystemExit(f"install the pack first (pip install -e .): {exc}") from None
    return Ledger(path)


CLIPS_PER_RUN = 10


def _ledger_cycle(path: str, seed: int, capped: bool):
    ledger = _ledger(Path(path))
    cap = {"budget_id": f"budget{seed}", "cap": 10**12} if capped else {}

    def cycle(i: int) -> None:
        prompt = f"p{seed}-{i // CLIPS_PER_RUN}" if capped else f"p{i}"
        held = ledger.reserve("default", 840, reason="bench clip", prompt_id=prompt, node_id="1",
                              plan={"resolution": "720p"}, **cap)
        held.commit(generation_info={"seed": i}, wall_seconds=1.0, gpu_seconds=1.0, peak_vram_bytes=1)

    return cycle


def _bare_cycle(path: str):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")

    def cycle(i: int) -> None:
        for _ in range(2):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(v) VALUES (?)", (i,))
            conn.execute("COMMIT")

    return cycle


def worker(kind: str, path: str, cycles: int, rate: float, seed: int, barrier) -> list[float]:
    cycle = _bare_cycle(path) if kind == "bare" else _ledger_cycle(path, seed, capped=kind == "capped")
    rng = random.Random(seed)
    barrier.wait()
    times = []
    scheduled = time.perf_counter()
    for i in range(cycles):
        behind = False
        if rate:
            scheduled += rng.expovariate(rate)
            pause = scheduled - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            behind = pause <= 0
        start = time.perf_counter()
        cycle(i)
        times.append(time.perf_counter() - (scheduled if behind else start))
    return times


def run(kind: str, path: Path, processes: int, cycles: int, rate: float) -> tuple[list[float], float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        barrier = manager.Barrier(processes + 1)
        pending = [pool.apply_async(worker, (kind, str(path), cycles, rate, seed, barrier))
                   for seed in range(processes)]
        barrier.wait()
        start = time.perf_counter()
        results = [p.get() for p in pending]
        elapsed = time.perf_counter() - start
    return [t for r in results for t in r], elapsed


def prepare(folder: Path, history: int) -> tuple[Path, Path]:
    ledger_path, bare_path = folder / "ledger.sqlite3", folder / "bare.sqlite3"
    ledger = _ledger(ledger_path)
    ledger.topup("default", 10**9)
    if history:  # plain top-ups of 1 credit, inserted in one transaction
        conn = sqlite3.connect(ledger_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO entries(time, account, kind, amount, held, balance_after, held_after, reason) "
                         "VALUES (0, 'default', 'topup', 1, 0, ?, 0, 'history')",
                         ((10**9 + i + 1,) for i in range(history)))
        conn.execute("COMMIT")
        conn.close()
    ledger.close()
    conn = sqlite3.connect(bare_path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
    conn.close()
    return ledger_path, bare_path


def open_figures(path: Path, repeats: int = 20) -> tuple[float, float, float]:
    """Median ms to open the ledger (with its checks on open), of the checks alone, and of the peer: a bare
    SQLite connection running ``PRAGMA quick_check`` (what any careful open pays)."""
    def timed(action) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    def bare() -> None:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA quick_check").fetchall()
        conn.close()

    ledger = _ledger(path)
    checks = timed(lambda: ledger._check_on_open(ledger._connection()))
    ledger.close()
    return timed(lambda: _ledger(path).close()), checks, timed(bare)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=400, help="reserve+commit cycles per process")
    parser.add_argument("--rate", type=float, default=40.0, help="paced load: cycles per second per process")
    parser.add_argument("--history", type=int, default=0, help="entries to pre-fill the ledger with")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {multiprocessing.cpu_count()} CPUs; "
          f"{args.cycles} cycles per process; paced at {args.rate:g}/s per process; history {args.history} entries")
    print(f"{'load':<10}{'procs':>6}  {'case':<24}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'cycles/s':>10}"
          f"{'p99 vs peer':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for load, rate in (("saturated", 0.0), ("paced", args.rate)):
            for processes in (1, 8):
                folder = Path(tmp, f"{load}{processes}")
                folder.mkdir()
                ledger_path, bare_path = prepare(folder, args.history)
                figures = {}
                for kind, path in (("bare", bare_path), ("ledger", ledger_path), ("capped", ledger_path)):
                    times, elapsed = run(kind, path, processes, args.cycles, rate)
                    figures[kind] = (percentile(times, 50), percentile(times, 99), max(times) * 1e3,
                                     len(times) / elapsed)
                for kind, name in (("ledger", "reserve+commit"), ("capped", "reserve+commit, capped"),
                                   ("bare", "peer: 2 bare commits")):
                    p50, p99, worst, speed = figures[kind]
                    ratio = f"{p99 / figures['bare'][1]:.2f}x" if kind != "bare" else ""
                    print(f"{load:<10}{processes:>6}  {name:<24}{p50:>8.2f}{p99:>8.2f}{worst:>8.1f}{speed:>10.0f}"
                          f"{ratio:>13}")
                check = _ledger(ledger_path)
                state = check.balance()
                assert check.verify() == [] and check.sums("default") == (state.balance, 0) and state.held == 0
        whole, checks, peer = open_figures(prepare(Path(tmp, "open"), args.history)[0])
        print(f"open (history {args.history}): {whole:.2f} ms, of which the checks on open {checks:.2f} ms; "
              f"peer (connect + quick_check) {peer:.2f} ms; open vs peer {whole / peer:.2f}x")
    print("target: reserve+commit p99 < 5 ms")


if __name__ == "__main__":
    main()
