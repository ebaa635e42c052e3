"""Shots on a real local Ray cluster (2 CPU workers, started and stopped by each test): the same decoded
frames and manifests as in-process, and a worker killed mid-shot ends with every shot rendered and
charged once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from refvideo.engine import host
from refvideo.engine.credits.ledger import shared_ledger
from refvideo.engine.credits.pricing import estimate
from refvideo.engine.frames import to_numpy
from refvideo.engine.sequence.storyboard import read_storyboard
from refvideo.engine.video.files import VideoFile
from refvideo.engine.video.manifest import read_manifest
from refvideo.jobs.sequence.ray_fanout import RayRunner, _ray, start_local
from refvideo.jobs.sequence.render import RENDERED, render_sequence
from refvideo.jobs.sequence.shot import recorded_digest

pytestmark = pytest.mark.slow

REFS = [{"image": "samples/character_mara.png", "role": "character", "label": "Mara"},
        {"image": "samples/prop_lantern.png", "role": "prop", "label": "the lantern"}]
SHOTS = [{"name": "wide", "prompt": "Wide shot. Mara on the quay. Slow dolly in.", "seed": 1},
         {"name": "medium", "prompt": "Medium shot. Mara lifts the lantern. Truck left.", "continue_from": "wide",
          "seed": 2},
         {"name": "other", "prompt": "The lantern on the quay. Tilt down.", "seed": 3}]
VARYING = ("timings", "peak_memory")  # measured per run, not settings


@pytest.fixture
def ray_cluster():
    ray = _ray(local=True)
    start_local(ray, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def priced_previz():
    """previz priced like a diffusion model (a pricing.json beside the ledger), so the ledger moves."""
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    price = estimate(model="previz", resolution="144p", seconds=5).per_clip
    assert price > 0
    shared_ledger().topup("default", 20 * price)
    return price


def storyboard(tmp_path: Path, shots: list[dict], **defaults):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = {"sequence": "reel", "defaults": {"references": REFS, "model": "previz", "resolution": "144p",
                                             **defaults}, "shots": shots}
    path = tmp_path / "reel.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return read_storyboard(path)


def ledger_entries(kind: str) -> int:
    return sum(1 for e in shared_ledger().history("default") if e.kind == kind)


def settings_of(path: Path) -> dict:
    return {k: v for k, v in read_manifest(path).items() if k not in VARYING}


def test_ray_renders_the_same_frames_and_manifests_as_in_process(tmp_path, ray_cluster, priced_previz):
    story = storyboard(tmp_path, SHOTS)
    local = render_sequence(story, tmp_path / "local")
    assert [s.status for s in local.shots] == [RENDERED] * 3
    runner = RayRunner(gpus_per_shot=1)
    assert not runner.owned  # it joined the test's cluster
    remote = render_sequence(story, tmp_path / "ray", runner=runner)
    weights = storyboard(tmp_path / "tiny", [{"name": "noise", "prompt": "Mara waits. Dolly in."}],
                         model="tiny-random", steps=1)
    refused = render_sequence(weights, tmp_path / "tiny_out", runner=runner)  # asks for a GPU the cluster lacks
    runner.close()
    assert refused.shots[0].status == "failed" and "--gpus-per-shot" in refused.shots[0].error
    assert [s.status for s in remote.shots] == [RENDERED] * 3
    for shot in SHOTS:
        a, b = tmp_path / "local" / f"{shot['name']}.mp4", tmp_path / "ray" / f"{shot['name']}.mp4"
        assert np.array_equal(to_numpy(VideoFile(a).get_components().images),
                              to_numpy(VideoFile(b).get_components().images))
        assert settings_of(a) == settings_of(b)
    assert ledger_entries("reserve") == 7 and ledger_entries("charge") == 6 and ledger_entries("release") == 1
    assert shared_ledger().balance("default").balance == 14 * priced_previz
    assert shared_ledger().balance("default").held == 0


def _running_shot_pid(home: Path) -> int | None:
    """The pid of a Ray worker of this test's cluster that is running a shot (Ray titles it with the task)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::refvideo-shot:") and f"REFVIDEO_HOME={home}".encode() in environ:
            return int(entry.name)
    return None


def test_a_worker_killed_mid_shot_is_retried_and_every_shot_is_charged_once(tmp_path, ray_cluster,
                                                                              refvideo_home):
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    price = estimate(model="previz", resolution="720p", seconds=5).per_clip
    shared_ledger().topup("default", 10 * price)
    shots = [{**s, "continue_from": None} for s in SHOTS[:2]]
    story = storyboard(tmp_path, [{k: v for k, v in s.items() if v is not None} for s in shots],
                       resolution="720p", duration=5)
    runner = RayRunner(gpus_per_shot=0)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=render_sequence(story, tmp_path / "out",
                                                                                    runner=runner)))
    worker.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and worker.is_alive() and time.monotonic() < deadline:
        pid = _running_shot_pid(refvideo_home)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.02)
    worker.join(timeout=300)
    runner.close()
    assert killed is not None, "no shot was caught running"
    result = outcome["result"]
    assert [s.status for s in result.shots] == [RENDERED, RENDERED], [s.error for s in result.shots]
    for s in result.shots:
        assert recorded_digest(s.file) is not None and VideoFile(s.file).get_frame_count() == 81
    assert ledger_entries("reserve") == ledger_entries("charge") == 2
    assert ledger_entries("release") == 0
    balance = shared_ledger().balance("default")
    assert (balance.balance, balance.held) == (8 * price, 0)
