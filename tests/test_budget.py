"""The REFVIDEO_BUDGET object: up-front plan checks and the reserve protocol the sampler uses."""

from __future__ import annotations

import pytest

from refvideo.engine import host
from refvideo.engine.credits.budget import plan_budget
from refvideo.engine.credits.ledger import shared_ledger
from refvideo.engine.errors import BudgetRefused, InputError

INFO = {"model": "tiny-random"}


def test_a_plan_the_balance_does_not_cover_is_refused_with_the_top_up_to_run():
    shared_ledger().topup("default", 1000)
    with pytest.raises(BudgetRefused) as info:
        plan_budget(resolution="720p", seconds=5, clips=3)
    text = str(info.value)
    assert "this plan (3 clip(s)) costs 2520" in text and "1000 available" in text
    assert "`refvideo credits topup 1520`" in text
    assert [e.kind for e in shared_ledger().history()] == ["topup"]  # checking charges nothing


def test_a_new_account_has_nothing_and_previz_needs_nothing():
    with pytest.raises(BudgetRefused, match="topup 840 --account studio"):
        plan_budget(resolution="720p", seconds=5, account="studio")
    budget = plan_budget(model="previz", resolution="1080p", seconds=8, clips=10, account="studio")
    assert budget.estimate.credits == 0


def test_a_plan_over_the_cap_is_refused_before_the_balance_is_read():
    with pytest.raises(BudgetRefused) as info:  # the account is empty too: the cap must be what refuses
        plan_budget(resolution="720p", seconds=5, clips=2, cap=1000)
    assert info.value.input == "budget_cap" and "1680" in str(info.value)
    shared_ledger().topup("default", 10_000)
    assert plan_budget(resolution="720p", seconds=5, clips=2, cap=0).cap is None  # 0: no cap
    for bad in (-1, 1.5, float("nan")):
        with pytest.raises(InputError) as info:
            plan_budget(resolution="720p", seconds=5, cap=bad)
        assert info.value.input == "budget_cap"


def test_reserve_prices_one_clip_with_the_plans_audio_and_commit_charges_it():
    shared_ledger().topup("default", 5000)
    budget = plan_budget(resolution="720p", seconds=5, audio=True, clips=2)
    assert (budget.estimate.per_clip, budget.estimate.credits) == (1050, 2100)
    reservation = budget.reserve(model="tiny-random", resolution="1080p", seconds=6, prompt_id="p", node_id="4")
    assert reservation.amount == 2100  # the clip really rendered: 1080p x2, audio x1.25
    reservation.commit(generation_info=INFO, wall_seconds=3.0, gpu_seconds=None, peak_vram_bytes=None)
    charge = shared_ledger().history()[-1]
    assert (charge.kind, charge.amount, charge.prompt_id, charge.node_id) == ("charge", -2100, "p", "4")
    assert charge.to_dict()["plan"]["resolution"] == "1080p"
    assert shared_ledger().balance().balance == 2900


def test_reserve_is_refused_when_the_balance_ran_out_since_the_plan():
    ledger = shared_ledger()
    ledger.topup("default", 840)
    budget = plan_budget(resolution="720p", seconds=5)
    first = budget.reserve(model="tiny-random", resolution="720p", seconds=5, prompt_id="a", node_id="1")
    with pytest.raises(BudgetRefused, match="topup 840"):
        budget.reserve(model="tiny-random", resolution="720p", seconds=5, prompt_id="b", node_id="1")
    first.release("interrupted")
    budget.reserve(model="tiny-random", resolution="720p", seconds=5, prompt_id="b", node_id="1")


def test_the_cap_applies_per_run():
    shared_ledger().topup("default", 10_000)
    budget = plan_budget(resolution="720p", seconds=5, cap=1000)
    budget.reserve(model="x", resolution="720p", seconds=5, prompt_id="run1", node_id="1")
    with pytest.raises(BudgetRefused) as info:
        budget.reserve(model="x", resolution="720p", seconds=5, prompt_id="run1", node_id="2")
    assert info.value.input == "budget_cap"
    budget.reserve(model="x", resolution="720p", seconds=5, prompt_id="run2", node_id="1")


def test_prompt_and_node_default_to_the_running_node():
    budget = plan_budget(model="previz", resolution="720p", seconds=5)
    with host.executing("prompt-9", "12"):
        reservation = budget.reserve(model="previz", resolution="720p", seconds=5)
    assert (reservation.entry.prompt_id, reservation.entry.node_id) == ("prompt-9", "12")
    assert reservation.amount == 0


def test_the_report_shows_the_estimate_and_the_balance_before_and_after():
    shared_ledger().topup("default", 3000)
    shared_ledger().reserve("default", 500, reason="another clip")
    report = plan_budget(resolution="720p", seconds=5, clips=2, cap=2000).report()
    assert "2 clip(s) x 840 credits = 1680 credits" in report
    assert "balance 3000, 500 held, 2500 available -> 820 after this plan" in report
    assert "Budget cap: 2000" in report


def test_holds_of_a_process_that_died_after_this_one_opened_the_ledger_do_not_block_a_plan():
    import subprocess
    import sys

    ledger = shared_ledger()  # opened now, before the other process exists
    ledger.topup("default", 840)
    script = ("import sys; from refvideo.engine.credits.ledger import Ledger; "
              "Ledger(sys.argv[1]).reserve('default', 840, reason='clip')")
    subprocess.run([sys.executable, "-c", script, str(ledger.path)], check=True)  # reserves, then exits
    assert ledger.balance().available == 0
    assert plan_budget(resolution="720p", seconds=5).balance.available == 840
