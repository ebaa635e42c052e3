"""The ledger under real processes on real files: races, SIGKILL, locks and damaged files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refvideo.engine.credits.ledger import Ledger
from refvideo.engine.errors import StorageError, WriteFailed
from test_ledger import assert_consistent

# One script, several roles; it prints one line per event so the test can follow it.
WORKER = r"""
import json, sys, time, sqlite3
from pathlib import Path
role, path = sys.argv[1], sys.argv[2]
if role == "lock":
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(60)
from refvideo.engine.errors import BudgetRefused
from refvideo.engine.credits.ledger import Ledger
ledger = Ledger(path)
if role == "spend":
    attempts, go = int(sys.argv[3]), Path(sys.argv[4])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    done = refused = 0
    for i in range(attempts):
        try:
            held = ledger.reserve("default", 840, reason="clip", prompt_id=f"p{i}")
        except BudgetRefused:
            refused += 1
            continue
        time.sleep(0.001)
        held.commit(generation_info={"attempt": i}, wall_seconds=0.001)
        done += 1
    print(json.dumps({"done": done, "refused": refused}), flush=True)
elif role == "hold":
    print(ledger.reserve("default", 840, reason="clip").id, flush=True)
    time.sleep(60)
elif role == "topups":
    while True:
        print(ledger.topup("default", 1).id, flush=True)
"""


def worker(role: str, path: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, role, str(path), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_eight_processes_spending_at_once_never_overspend(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.topup("default", 840 * 20)
    go = tmp_path / "go"
    procs = [worker("spend", path, 5, go) for _ in range(8)]  # 40 attempts for 20 clips' credits
    assert [proc.stdout.readline().strip() for proc in procs] == ["ready"] * 8
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["done"] for r in results) == 20
    assert sum(r["refused"] for r in results) == 20
    state = ledger.balance()
    assert (state.balance, state.held) == (0, 0)
    assert [e.kind for e in ledger.history()].count("charge") == 20
    assert_consistent(ledger)


@pytest.mark.slow
def test_a_process_killed_between_reserve_and_commit_is_released_on_the_next_start(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).topup("default", 840 * 3)
    live = worker("hold", path)
    killed = worker("hold", path)
    zombie = worker("hold", path)
    ids = {name: proc.stdout.readline().strip() for name, proc in
           (("live", live), ("killed", killed), ("zombie", zombie))}
    killed.kill()
    killed.wait()
    zombie.send_signal(signal.SIGKILL)  # not reaped yet: a zombie until wait()
    while os.path.exists(f"/proc/{zombie.pid}") and " Z " not in Path(f"/proc/{zombie.pid}/stat").read_text():
        time.sleep(0.01)
    try:
        assert {r["id"] for r in Ledger(path, release_orphans=False).open_reservations()} == set(ids.values())
        restarted = Ledger(path)  # the next start
        released = {e.reservation_id: e.reason for e in restarted.history() if e.kind == "release"}
        assert set(released) == {ids["killed"], ids["zombie"]}
        assert all("ended before committing" in reason for reason in released.values())
        state = restarted.balance()
        assert (state.balance, state.held) == (840 * 3, 840)  # only the live owner's hold remains
        assert_consistent(restarted)
    finally:
        for proc in (live, zombie):
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_a_crash_mid_writing_loses_no_committed_entry(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path)
    proc = worker("topups", path)
    committed = [int(proc.stdout.readline()) for _ in range(200)]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    ledger = Ledger(path)
    ids = [e.id for e in ledger.history()]
    assert set(committed) <= set(ids)
    assert ledger.balance().balance == len(ids)  # every entry is a whole 1-credit top-up
    assert_consistent(ledger)


def test_a_locked_ledger_gives_a_clear_error_and_loses_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).topup("default", 840)
    holder = worker("lock", path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        ledger = Ledger(path, timeout=0.2, release_orphans=False)
        started = time.monotonic()
        with pytest.raises(WriteFailed) as info:
            ledger.topup("default", 100)
        assert time.monotonic() - started < 5
        assert "is locked by another program" in str(info.value) and "Nothing was changed" in str(info.value)
        assert info.value.fix and "try again" in info.value.fix
    finally:
        holder.kill()
        holder.communicate()
    ledger.topup("default", 100)  # the lock is gone with its process
    assert [e.amount for e in ledger.history()] == [840, 100]
    assert_consistent(ledger)


def _damage(path: Path, offset: int, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(size))


@pytest.mark.parametrize("where", ["header", "pages", "last pages"])
def test_a_damaged_ledger_gives_a_clear_error_and_is_left_untouched(tmp_path, where):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    for _ in range(120):
        ledger.topup("default", 7, reason="x" * 450)
    ledger.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.read_bytes()
    if where == "header":
        _damage(path, 0, 100)
    else:
        page = 4096
        first = 2 if where == "pages" else len(backup) // page - 3
        for index in range(first, len(backup) // page):
            _damage(path, index * page + 8, 64)
    damaged = path.read_bytes()
    with pytest.raises(StorageError) as info:
        Ledger(path)
    assert "is damaged" in str(info.value) and "has not changed it" in str(info.value)
    assert "backup" in info.value.fix
    assert path.read_bytes() == damaged  # nothing was written into the damaged file
    path.write_bytes(backup)  # restored from the backup, every committed entry is there
    restored = Ledger(path)
    assert restored.balance().balance == 7 * 120
    assert_consistent(restored)
