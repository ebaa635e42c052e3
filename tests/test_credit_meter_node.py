"""CreditMeter: its schema, report and up-front refusal, and the budget protocol with the real sampler.

The last test runs in a real ComfyUI (COMFYUI_DIR and COMFYUI_PY, see docs/development.md)
and skips with the reason otherwise.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import comfyui_server
from refvideo.engine.credits.budget import Budget
from refvideo.engine.credits.ledger import Ledger, shared_ledger
from refvideo.engine.errors import BudgetRefused
from refvideo.headless import runner
from refvideo.nodes import NODE_CLASS_MAPPINGS
from refvideo.nodes.credit_meter import CreditMeter

PLAN = {"resolution": "720p", "duration": 5.0, "audio": False, "clips": 2, "account": "default", "budget_cap": 0}


def test_schema_has_the_public_inputs_and_a_budget_output():
    assert NODE_CLASS_MAPPINGS["CreditMeter"] is CreditMeter
    inputs = CreditMeter.INPUT_TYPES()
    assert list(inputs["required"]) == ["resolution", "duration", "audio", "clips", "account", "budget_cap"]
    assert list(inputs["optional"]) == ["model"]
    assert inputs["optional"]["model"][0] == "REFVIDEO_MODEL"
    assert inputs["required"]["account"][1]["default"] == "default"
    assert (inputs["required"]["duration"][1]["min"], inputs["required"]["duration"][1]["max"]) == (5.0, 8.0)
    assert CreditMeter.RETURN_TYPES == ("REFVIDEO_BUDGET", "STRING")
    assert CreditMeter.OUTPUT_NODE  # its report shows even before a sampler is connected


def test_the_node_returns_a_budget_and_shows_its_report():
    shared_ledger().topup("default", 2000)
    out = CreditMeter().meter(**PLAN)
    budget, report = out["result"]
    assert isinstance(budget, Budget) and budget.estimate.credits == 1680
    assert out["ui"]["text"] == [report]
    assert "2000 available -> 320 after this plan" in report
    assert [e.kind for e in shared_ledger().history()] == ["topup"]  # metering a plan charges nothing


def test_a_connected_model_prices_the_plan_before_it_loads():
    out = CreditMeter().meter(**PLAN, model=SimpleNamespace(name="previz"))
    assert out["result"][0].estimate.credits == 0
    with pytest.raises(BudgetRefused):
        CreditMeter().meter(**PLAN, model=SimpleNamespace(name="tiny-random"))


def test_a_plan_the_balance_does_not_cover_is_refused_with_how_to_top_up():
    shared_ledger().topup("default", 1000)
    with pytest.raises(BudgetRefused) as info:
        CreditMeter().meter(**{**PLAN, "audio": True})
    assert "costs 2100" in str(info.value) and "refvideo credits topup 1100" in str(info.value)


def test_through_the_runner_a_refused_plan_fails_with_exit_code_2_and_a_covered_one_reports():
    workflow = {"1": {"class_type": "CreditMeter", "inputs": {**PLAN, "budget_cap": 1000}}}
    shared_ledger().topup("default", 5000)
    with pytest.raises(runner.NodeFailed) as info:
        runner.execute(workflow, NODE_CLASS_MAPPINGS)
    assert info.value.exit_code == 2 and info.value.to_dict()["input"] == "budget_cap"
    workflow["1"]["inputs"]["budget_cap"] = 2000
    result = runner.execute(workflow, NODE_CLASS_MAPPINGS)
    assert "Budget cap: 2000" in result.ui["1"]["text"][0]
    workflow["1"]["inputs"]["duration"] = 9.0
    problems = runner.validate(workflow, NODE_CLASS_MAPPINGS)
    assert [p.input for p in problems] == ["duration"]


# --------------------------------------------------------------------------- the whole protocol, real nodes


def tiny_setup(balance: int):
    """tiny-random from the real loader, a one-image reference set, and a CreditMeter budget."""
    import numpy as np

    from refvideo.engine.references.reference import Reference, ReferenceSet
    from refvideo.nodes.model_loader import RefVideoModelLoader

    handle = RefVideoModelLoader().load("tiny-random")["result"][0]
    image = np.random.default_rng(0).random((96, 128, 3), dtype=np.float32)
    refs = ReferenceSet((Reference(image=image, mask=np.ones((96, 128), np.float32), role="character",
                                   label="Mara"),))
    if balance:
        shared_ledger().topup("default", balance)
    budget = CreditMeter().meter(resolution="144p", duration=5.0, audio=False, clips=1, account="default",
                                 budget_cap=0, model=handle)["result"][0]
    return handle, refs, budget


def sample(handle, refs, budget, prompt_id: str):
    from refvideo.engine import host
    from refvideo.nodes.sampler import RefVideoSampler

    with host.executing(prompt_id, "7"):
        return RefVideoSampler().sample(model=handle, references=refs, prompt="Mara turns, slow dolly in", seed=1,
                                        steps=2, resolution="144p", duration=5.0, budget=budget)


def steps_seen():
    from refvideo.engine import host

    seen: list[int] = []
    remove = host.add_progress_listener(lambda description, value, total: seen.append(value))
    return seen, remove


@pytest.mark.slow
def test_sampler_success_commits_the_clip_with_its_generation_info():
    handle, refs, budget = tiny_setup(210)  # a 144p clip: 840 x 0.25
    frames, fps, info = sample(handle, refs, budget, "run-1")["result"]
    assert frames.shape[0] == 21 and fps == 4.0
    kinds = [(e.kind, e.amount, e.held, e.prompt_id, e.node_id) for e in shared_ledger().history()]
    assert kinds == [("topup", 210, 0, None, None), ("reserve", 0, 210, "run-1", "7"),
                     ("charge", -210, -210, "run-1", "7")]
    charge = shared_ledger().history()[-1].to_dict()
    output = json.loads(info)
    assert output.pop("credits") == {"charge_id": charge["id"], "account": "default", "credits": 210}
    assert charge["generation_info"] == output  # the clip's own generation info, as the sampler output it
    assert charge["generation_info"]["seed"] == 1 and charge["generation_info"]["model"] == "tiny-random"
    assert charge["wall_seconds"] > 0
    assert shared_ledger().balance().balance == 0


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["failure", "interrupt"])
def test_sampler_failure_and_interrupt_release_the_credits(stop):
    from refvideo.engine import host

    handle, refs, budget = tiny_setup(210)

    def at_first_step(description, value, total):
        if value >= 1:
            if stop == "interrupt":
                host.request_interrupt()
            else:
                raise RuntimeError("the GPU fell off the bus")

    remove = host.add_progress_listener(at_first_step)
    try:
        with pytest.raises(BaseException) as info:
            sample(handle, refs, budget, "run-2")
    finally:
        remove()
        host.clear_interrupt()
    assert host.is_interrupt(info.value) == (stop == "interrupt")
    entries = shared_ledger().history()
    assert [e.kind for e in entries] == ["topup", "reserve", "release"]
    assert entries[-1].reason.startswith("interrupted" if stop == "interrupt" else "failed: ")
    state = shared_ledger().balance()
    assert (state.balance, state.held) == (210, 0)


def test_a_refused_clip_runs_nothing():
    handle, refs, budget = tiny_setup(210)
    shared_ledger().reserve("default", 100, reason="another clip")  # the balance ran out since the plan
    seen, remove = steps_seen()
    try:
        with pytest.raises(BudgetRefused, match="topup 100"):
            sample(handle, refs, budget, "run-3")
    finally:
        remove()
    assert seen == []  # no step, no model work
    assert [e.kind for e in shared_ledger().history()] == ["topup", "reserve"]


# --------------------------------------------------------------------------- inside a real ComfyUI

_NO_COMFYUI = comfyui_server.missing_reason()


def comfy_workflow(seed: int) -> dict:
    return {
        "1": {"class_type": "RefVideoModelLoader", "inputs": {"model": "tiny-random"}},
        "2": {"class_type": "LoadReferenceSet", "inputs": {
            "image_1": "mara.png", "role_1": "character", "label_1": "Mara", "image_2": "none",
            "role_2": "environment", "label_2": "", "image_3": "none", "role_3": "prop", "label_3": ""}},
        "3": {"class_type": "CreditMeter", "inputs": {**PLAN, "resolution": "144p", "clips": 1, "model": ["1", 0]}},
        "4": {"class_type": "RefVideoSampler", "inputs": {
            "model": ["1", 0], "references": ["2", 0], "prompt": "Mara turns, slow dolly in", "seed": seed,
            "steps": 2, "resolution": "144p", "duration": 5.0, "budget": ["3", 0]}},
        "5": {"class_type": "VideoEncode", "inputs": {
            "frames": ["4", 0], "fps": ["4", 1], "generation_info": ["4", 2], "filename_prefix": "credits",
            "format": "mp4-h264", "crf": 30, "preset": "ultrafast"}},
    }


@pytest.mark.comfyui
@pytest.mark.skipif(_NO_COMFYUI is not None, reason=_NO_COMFYUI or "")
def test_in_comfyui_a_cached_requeue_is_free_and_every_real_generation_is_charged(tmp_path):
    import numpy as np
    from PIL import Image

    base = tmp_path / "comfy"
    (base / "input").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(1).random((96, 128, 3)) * 255).astype(np.uint8)).save(
        base / "input" / "mara.png")
    ledger = Ledger(base / "user" / "__refvideo" / "ledger.sqlite3")  # get_system_user_directory("refvideo")
    ledger.topup("default", 420)  # two 144p clips
    server = comfyui_server.start(base)
    try:
        def queue(seed: int) -> tuple[str, dict]:
            status, body = server.post("/prompt", {"prompt": comfy_workflow(seed), "client_id": "credits-test"})
            assert status == 200, body
            return body["prompt_id"], server.wait_for(body["prompt_id"])

        first, entry = queue(1)
        assert entry["status"]["status_str"] == "success", entry["status"]
        _, entry = queue(1)  # the same prompt: ComfyUI serves it from its cache
        assert entry["status"]["status_str"] == "success", entry["status"]
        second, entry = queue(2)  # a new seed: the sampler really runs
        assert entry["status"]["status_str"] == "success", entry["status"]
        _, entry = queue(3)  # the balance is spent
        assert entry["status"]["status_str"] == "error"
        assert "refvideo credits topup 210" in json.dumps(entry["status"]["messages"])
    finally:
        server.stop()
    charges = [(e.prompt_id, e.node_id, e.amount) for e in ledger.history() if e.kind == "charge"]
    assert charges == [(first, "4", -210), (second, "4", -210)]
    assert ledger.balance().balance == 0 and ledger.balance().held == 0
    assert len(list((base / "output").rglob("credits*.mp4"))) == 2
