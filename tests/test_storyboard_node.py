"""RefVideoStoryboard: the sockets replace the storyboard's defaults, the sequence comes back as frames with
its timeline and contact sheet, and a re-queue keeps the finished shots without charging them again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refvideo.engine import host
from refvideo.engine.credits.ledger import shared_ledger
from refvideo.engine.credits.pricing import estimate
from refvideo.engine.errors import BudgetRefused, InputError
from refvideo.engine.frames import to_numpy
from refvideo.engine.video.files import VideoFile
from refvideo.models.registry import resolve
from refvideo.nodes.credit_meter import CreditMeter
from refvideo.nodes.reference_set import LoadReferenceSet
from refvideo.nodes.storyboard import RefVideoStoryboard

BOARD = """sequence: reel
defaults: {resolution: 144p, seed: 5}
shots:
  - {name: wide, prompt: "Wide shot. Mara on the quay. Slow dolly in."}
  - {name: close, prompt: "Close-up of Mara. Push in.", continue_from: wide}
join: {transition: crossfade, crossfade_frames: 4}
"""


def sockets():
    refs = LoadReferenceSet().load("samples/character_mara.png", "character", "Mara",
                                   image_2="samples/prop_lantern.png", role_2="prop")["result"][0]
    return resolve("previz"), refs


def charges() -> int:
    return sum(1 for e in shared_ledger().history("default") if e.kind == "charge")


def test_the_node_renders_the_storyboard_with_its_sockets_and_resumes(refvideo_home):
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    price = estimate(model="previz", resolution="144p", seconds=5).per_clip
    shared_ledger().topup("default", 2 * price)
    model, refs = sockets()
    out = RefVideoStoryboard().render(model, refs, BOARD)
    frames, fps, timeline, sheet = out["result"]
    folder = host.output_dir() / "RefVideo" / "sequences" / "reel"
    wide, close = VideoFile(folder / "wide.mp4"), VideoFile(folder / "close.mp4")
    assert to_numpy(frames).shape == (wide.get_frame_count() + close.get_frame_count() - 4, 144, 256, 3)
    assert fps == 16.0 and timeline == str(folder / "reel.otio")
    assert to_numpy(sheet).shape[0] == 1 and to_numpy(sheet).shape[-1] == 3
    assert out["ui"]["images"][0] == {"filename": "reel.mp4", "subfolder": "RefVideo/sequences/reel",
                                      "type": "output", "format": "video/mp4"}
    assert charges() == 2 and shared_ledger().balance("default").balance == 0
    again = RefVideoStoryboard().render(model, refs, BOARD)  # a re-queue: nothing new to render or charge
    assert "skipped" in again["ui"]["text"][0] and charges() == 2
    assert np.array_equal(to_numpy(again["result"][0]), to_numpy(frames))


def test_the_budget_socket_sets_the_account_and_caps_the_sequence(refvideo_home):
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    price = estimate(model="previz", resolution="144p", seconds=5).per_clip
    shared_ledger().topup("studio", 5 * price)
    model, refs = sockets()
    budget = CreditMeter().meter("144p", 5.0, False, 1, "studio", price, model=model)["result"][0]
    with pytest.raises(BudgetRefused) as caught:
        RefVideoStoryboard().render(model, refs, BOARD, budget=budget)
    assert caught.value.input == "defaults.budget_cap"
    assert shared_ledger().balance("studio").balance == 5 * price
    with pytest.raises(InputError) as caught:
        RefVideoStoryboard().render(model, refs, BOARD, output_folder="../outside")
    assert caught.value.input == "output_folder"
