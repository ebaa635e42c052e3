"""Temporary files: a live writer's are never touched, those a killed writer left are removed at the
next start (and a charged clip whose file was never finished is refunded then)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from refvideo.engine import host
from refvideo.engine.credits import clip_charges
from refvideo.engine.credits.ledger import Ledger
from refvideo.engine.storage import STALE_AFTER, remove_stale_partials
from refvideo.engine.video.files import _swept, remove_stale_partials_once

HOLD = """
import sys, time
from refvideo.engine.storage import staged
with staged(sys.argv[1]) as staging:
    staging.tmp.write_bytes(b"x" * 1000)
    print(staging.tmp, flush=True)
    time.sleep(60)
"""


def age(path, seconds: float = STALE_AFTER + 5) -> None:
    """Make ``path`` look old: even then a held temporary file is kept."""
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_only_temporary_files_no_live_writer_holds_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "live.mp4")], stdout=subprocess.PIPE,
                            text=True)
    try:
        live_tmp = tmp_path / os.path.basename(live.stdout.readline().strip())
        age(live_tmp)  # old, but its writer is alive and holds it
        killed = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "sub" / "killed.mp4")],
                                  stdout=subprocess.PIPE, text=True)
        killed_tmp = tmp_path / "sub" / os.path.basename(killed.stdout.readline().strip())
        killed.kill()
        killed.wait()
        (tmp_path / "clip_00001.mp4").write_bytes(b"a finished clip")
        age(tmp_path / "clip_00001.mp4")
        assert remove_stale_partials(tmp_path) == [killed_tmp]
        assert live_tmp.exists() and not killed_tmp.exists()
        assert (tmp_path / "clip_00001.mp4").exists()
    finally:
        live.kill()
        live.wait()


def test_a_charged_clip_whose_writer_was_killed_is_refunded_at_the_next_start():
    ledger = Ledger()
    ledger.topup("default", 500)
    charge = ledger.reserve("default", 210, reason="clip").commit(generation_info={"seed": 1}, wall_seconds=1.0)
    tag = clip_charges.partial_tag({"credits": {"charge_id": charge.id}})
    folder = host.output_dir() / "RefVideo"
    code = HOLD.replace("staged(sys.argv[1])", f"staged(sys.argv[1], tag='{tag}')")
    killed = subprocess.Popen([sys.executable, "-c", code, str(folder / "clip_00001.mp4")], stdout=subprocess.PIPE,
                              text=True)
    partial = folder / os.path.basename(killed.stdout.readline().strip())
    killed.kill()
    killed.wait()
    _swept.clear()
    assert remove_stale_partials_once() == [partial]
    history = ledger.history()
    assert history[-1].kind == "refund" and history[-1].refund_of == charge.id and ledger.balance().balance == 500
    _swept.clear()
    assert remove_stale_partials_once() == []  # once
