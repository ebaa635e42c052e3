"""Writers at once, as real processes: N metered runs of one workflow into one output folder, each with
its own same-named --input file, and N saves of one reference-set name.

Every run's own file exists with its own content and reference, every charge matches a file, the
ledger's balance equals the sum of its history, and the set that remains loads whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import synthetic_references as synth
from refvideo.engine import host
from refvideo.engine.credits.ledger import Ledger
from refvideo.engine.paths import API_WORKFLOWS_DIR
from refvideo.engine.references.library import load_set
from refvideo.engine.storage import is_partial
from refvideo.engine.video.manifest import MANIFEST_KEY, read_metadata

pytestmark = pytest.mark.slow
RUNS = 4
PRICE = 210  # a metered previz clip at 144p: 840 x 0.25


def metered_workflow(tmp_path: Path) -> Path:
    """single_shot.json at 144p with one reference read from the input folder as 'ref.png'."""
    workflow = json.loads((API_WORKFLOWS_DIR / "single_shot.json").read_text(encoding="utf-8"))
    refs = workflow["1"]["inputs"]
    refs.update(image_1="ref.png", background_1="off", image_2="none", image_3="none")
    workflow["3"]["inputs"]["resolution"] = workflow["4"]["inputs"]["resolution"] = "144p"
    workflow["5"]["inputs"].update(preset="ultrafast", filename_prefix="shots/clip")
    path = tmp_path / "metered.json"
    path.write_text(json.dumps(workflow), encoding="utf-8")
    return path


def cli(*argv: str, home: Path) -> subprocess.Popen:
    code = "import sys\nfrom refvideo.headless.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "REFVIDEO_HOME": str(home)})


def test_runs_at_once_keep_their_own_files_inputs_and_charges(tmp_path, refvideo_home):
    (refvideo_home / "pricing.json").write_text('{"model_factors": {"previz": 1}}', encoding="utf-8")
    Ledger().topup("default", 10_000)
    workflow, out = metered_workflow(tmp_path), tmp_path / "out"
    own: dict[int, str] = {}
    procs = []
    for seed in range(RUNS):
        source = tmp_path / f"run{seed}" / "ref.png"
        source.parent.mkdir()
        synth.save_png(source, synth.character(160, 200, seed=seed + 1))
        own[seed] = hashlib.sha256(source.read_bytes()).hexdigest()
        procs.append(cli("run", str(workflow), "--input", str(source), "--set", f"4.seed={seed}", "--output-dir",
                         str(out), "--json", home=refvideo_home))
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
    files = sorted((out / "shots").glob("clip_*.mp4"))
    assert len(files) == RUNS and sorted(json.loads(o)["outputs"][0]["files"][0] for o, _ in results) == \
        [str(f) for f in files]
    infos = {json.loads(read_metadata(f)[MANIFEST_KEY])["seed"]: json.loads(read_metadata(f)[MANIFEST_KEY])
             for f in files}
    assert sorted(infos) == list(range(RUNS))  # each run's clip is its own
    for seed, info in infos.items():
        stored = host.input_dir() / info["references"][0]["source"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == own[seed]  # rendered from its own reference
    ledger = Ledger()
    charges = [e for e in ledger.history() if e.kind == "charge"]
    assert sorted(e.id for e in charges) == sorted(i["credits"]["charge_id"] for i in infos.values())
    assert ledger.balance().balance == 10_000 - RUNS * PRICE and ledger.balance().held == 0
    assert ledger.verify() == []
    assert not [p for p in tmp_path.rglob("*") if is_partial(p.name)]


SAVE = """
import sys
import numpy as np
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.references.library import save_set
seed = int(sys.argv[1])
image = np.random.default_rng(seed).random((300, 400, 3), dtype=np.float32)
refs = ReferenceSet((Reference(image=image, mask=np.ones((300, 400), np.float32), role="character",
                               label=f"take {seed}"),))
for _ in range(3):
    save_set(refs, "shared", overwrite=True)
"""


def test_saves_of_one_set_name_at_once_leave_a_set_that_loads_whole(refvideo_home):
    procs = [subprocess.Popen([sys.executable, "-c", SAVE, str(seed)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "REFVIDEO_HOME": str(refvideo_home)}) for seed in range(RUNS)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    loaded = load_set("shared")
    assert loaded.references[0].label in {f"take {seed}" for seed in range(RUNS)}
    folder = host.sets_dir() / "shared"
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["image", "manifest.json", "mask"]
