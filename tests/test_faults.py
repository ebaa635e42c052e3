"""Signals at seeded random points of a metered render + encode, as real processes.

SIGTERM and SIGHUP unwind like Ctrl-C (exit 128 + the signal); SIGKILL cannot be handled. After
each, the next start cleans up: no temporary file survives, no credits stay held, and every charge
that stands has its clip on disk (a charged clip whose file was never finished is refunded).
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from refvideo.engine.credits.ledger import Ledger
from refvideo.engine.storage import is_partial
from refvideo.engine.video.manifest import MANIFEST_KEY, read_metadata
from test_cli import read_until
from test_concurrency import cli, metered_workflow

pytestmark = pytest.mark.slow
SEED = 18
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)


def _run(workflow: Path, out: Path, home: Path, signum: int | None = None, delay: float = 0.0) -> tuple[int, float]:
    """One run; ``signum`` is sent ``delay`` seconds after the sampler starts. Returns the exit code and the
    seconds from the sampler's start to the end."""
    proc = cli("run", str(workflow), "--output-dir", str(out), "--set", "5.preset=slower", home=home)
    read_until(proc, "RefVideoSampler", 300)
    started = time.monotonic()
    if signum is not None:
        time.sleep(delay)
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    return proc.returncode, time.monotonic() - started


def test_signals_at_random_points_leave_no_partial_no_hold_and_no_charge_without_a_clip(tmp_path, refvideo_home):
    (refvideo_home / "pricing.json").write_text('{"model_factors": {"previz": 1}}', encoding="utf-8")
    Ledger().topup("default", 10_000)
    workflow, out = metered_workflow(tmp_path), tmp_path / "out"
    data = json.loads(workflow.read_text(encoding="utf-8"))
    data["1"]["inputs"].update(image_1="samples/character_mara.png")
    data["3"]["inputs"]["resolution"] = data["4"]["inputs"]["resolution"] = "480p"
    workflow.write_text(json.dumps(data), encoding="utf-8")
    code, span = _run(workflow, out, refvideo_home)  # how long the render and encode take here
    assert code == 0
    rng = random.Random(SEED)
    for half in (0, 1):  # each signal once in the first half of a run (rendering), once in the second
        for signum in SIGNALS:
            code, _ = _run(workflow, out, refvideo_home, signum, span * rng.uniform(half / 2, (half + 1) / 2))
            expected = {signal.SIGKILL: -9}.get(signum, 128 + signum)
            # 0: the run finished before the signal came; -signum: it came after the run had finished, while
            # the interpreter was shutting down (default action); the checks below hold in every case
            assert code in (expected, 0, -signum), (signum, code)
    code, _ = _run(workflow, out, refvideo_home)  # the next start cleans up after the last one
    assert code == 0
    assert not [p for p in tmp_path.rglob("*") if is_partial(p.name)]
    ledger = Ledger()  # a fresh open: holds of dead processes are released
    assert ledger.balance().held == 0 and ledger.verify() == []
    refunded = {e.refund_of for e in ledger.history() if e.kind == "refund"}
    standing = {e.id for e in ledger.history() if e.kind == "charge"} - refunded
    clips = {json.loads(read_metadata(f)[MANIFEST_KEY])["credits"]["charge_id"]
             for f in (out / "shots").glob("clip_*.mp4")}
    assert standing == clips  # every charge that stands is a clip on disk, and every clip was charged
