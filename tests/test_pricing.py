"""Pricing: the defaults, the multipliers, per-second mode, user overrides and refused amounts."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from refvideo.engine import host
from refvideo.engine.credits.pricing import check_amount, estimate, load_pricing, override_path
from refvideo.engine.errors import InputError, StorageError


def write_override(data: dict | str) -> None:
    path = override_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("seconds", [5.0, 6.5, 8.0])
@pytest.mark.parametrize("model", [None, "tiny-random", "Wan2.1-VACE-14B-diffusers"])
def test_a_clip_of_5_to_8_seconds_at_720p_costs_840_credits(seconds, model):
    price = estimate(model=model, resolution="720p", seconds=seconds)
    assert (price.credits, price.per_clip, price.clips, price.pricing) == (840, 840, 1, "built-in")


def test_previz_is_free_and_multipliers_compose():
    assert estimate(model="previz", resolution="1080p", seconds=8, audio=True, clips=5).credits == 0
    assert estimate(resolution="1080p", seconds=5).per_clip == 1680
    assert estimate(resolution="720p", seconds=5, audio=True).per_clip == 1050
    both = estimate(resolution="1080p", seconds=5, audio=True, clips=3)
    assert (both.per_clip, both.credits) == (2100, 6300)
    assert estimate(resolution="480p", seconds=5).per_clip == 420


def test_a_model_handle_is_priced_by_its_name():
    assert estimate(model=SimpleNamespace(name="previz"), resolution="720p", seconds=5).credits == 0
    assert estimate(model=SimpleNamespace(name="PreViz"), resolution="720p", seconds=5).credits == 0
    with pytest.raises(InputError) as info:
        estimate(model=SimpleNamespace(name=""), resolution="720p", seconds=5)
    assert info.value.input == "model"


def test_override_in_the_ledger_folder_switches_to_per_second_pricing():
    assert override_path() == host.system_dir() / "pricing.json"
    write_override({"mode": "per_second", "credits_per_second": 100})
    five, eight = (estimate(resolution="720p", seconds=s) for s in (5, 8))
    assert (five.credits, eight.credits) == (500, 800)
    assert five.pricing == str(override_path())
    assert "per second" in five.describe()


def test_override_merges_model_factors_and_rounds_up_to_whole_credits():
    write_override({"model_factors": {"Wan2.1-VACE-1.3B-diffusers": 0.5}, "audio_multiplier": 1.1})
    assert estimate(model="Wan2.1-VACE-1.3B-diffusers", resolution="720p", seconds=5).credits == 420
    assert estimate(model="previz", resolution="720p", seconds=5).credits == 0  # defaults kept
    assert estimate(resolution="720p", seconds=5, audio=True).credits == 924  # 840 x 1.1, no float noise
    write_override({"credits_per_clip": 100.5})
    assert estimate(resolution="720p", seconds=5).credits == 101


@pytest.mark.parametrize("bad", [
    {"nonsense": 1},
    {"mode": "per_minute"},
    {"audio_multiplier": -1},
    '{"audio_multiplier": NaN}',
    {"resolution_multipliers": {"720p": "x"}},
    {"resolution_multipliers": [1, 2]},
    {"max_amount": 0},
    "[1, 2]",
    "{not json",
])
def test_a_bad_override_names_the_file(bad):
    write_override(bad)
    with pytest.raises(StorageError) as info:
        load_pricing()
    assert str(override_path()) in str(info.value)


@pytest.mark.parametrize("kwargs, input_name", [
    ({"resolution": "4k", "seconds": 5}, "resolution"),
    ({"resolution": "720p", "seconds": 4.9}, "duration"),
    ({"resolution": "720p", "seconds": math.nan}, "duration"),
    ({"resolution": "720p", "seconds": math.inf}, "duration"),
    ({"resolution": "720p", "seconds": 5, "clips": 0}, "clips"),
    ({"resolution": "720p", "seconds": 5, "clips": 1001}, "clips"),
    ({"resolution": "720p", "seconds": 5, "clips": True}, "clips"),
    ({"resolution": "720p", "seconds": 5, "audio": "yes"}, "audio"),
])
def test_a_bad_plan_is_refused_naming_the_input(kwargs, input_name):
    with pytest.raises(InputError) as info:
        estimate(**kwargs)
    assert info.value.input == input_name


def test_a_plan_costing_more_than_one_entry_may_hold_is_refused():
    write_override({"credits_per_clip": 600_000_000})
    assert estimate(resolution="720p", seconds=5).credits == 600_000_000
    with pytest.raises(InputError, match="more than the ledger accepts"):
        estimate(resolution="720p", seconds=5, clips=2)


@pytest.mark.parametrize("value", [-1, -0.0001, math.nan, math.inf, -math.inf, "nan", "inf", "1e400", 1.5, "2.5",
                                   True, None, "abc", "", 10**9 + 1, 1e30, [840]])
def test_negative_nan_infinite_fractional_and_absurd_amounts_are_refused(value):
    with pytest.raises(InputError) as info:
        check_amount(value, input="amount", limit=10**9)
    assert info.value.input == "amount"


def test_good_amounts_are_whole_credits():
    assert check_amount("840", input="amount", limit=10**9) == 840
    assert check_amount(" 1e3 ", input="amount", limit=10**9) == 1000
    assert check_amount(840.0, input="amount", limit=10**9) == 840
    assert check_amount(10**9, input="amount", limit=10**9) == 10**9
    assert check_amount(0, input="amount", limit=10, allow_zero=True) == 0
    with pytest.raises(InputError, match="zero"):
        check_amount(0, input="amount", limit=10)
