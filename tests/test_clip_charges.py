"""A charged clip that never reaches a file is refunded once; a written one keeps its charge.

Real nodes throughout: tiny-random rendered by the sampler with a CreditMeter budget, then the
real VideoEncode writing (or failing to write) into the output folder.
"""

from __future__ import annotations

import json

import pytest

from refvideo.engine import host
from refvideo.engine.credits import clip_charges
from refvideo.engine.credits.ledger import Ledger, shared_ledger
from refvideo.engine.errors import InputError, RefVideoError
from refvideo.nodes.video_encode import VideoEncode
from test_credit_meter_node import sample, tiny_setup


@pytest.fixture(autouse=True)
def _fresh_written_set():
    clip_charges._written.clear()
    yield
    clip_charges._written.clear()


def rendered(prompt_id: str) -> tuple:
    handle, refs, budget = tiny_setup(420)
    frames, fps, info = sample(handle, refs, budget, prompt_id)["result"]
    return frames, fps, info


def encode(frames, fps, info, prompt_id: str, prefix: str = "shots/clip", **kwargs):
    with host.executing(prompt_id, "9"):
        return VideoEncode().encode(frames=frames, fps=fps, filename_prefix=prefix, format="mp4-h264", crf=30,
                                    preset="ultrafast", generation_info=info, **kwargs)


def kinds() -> list[str]:
    return [e.kind for e in shared_ledger().history()]


def test_the_charge_id_travels_in_the_generation_info_and_a_written_clip_keeps_it():
    frames, fps, info = rendered("run-a")
    charge = shared_ledger().history()[-1]
    assert json.loads(info)["credits"]["charge_id"] == charge.id and charge.kind == "charge"
    path = encode(frames, fps, info, "run-a")["result"][0]
    assert path.endswith(".mp4")
    assert kinds() == ["topup", "reserve", "charge"] and shared_ledger().balance().balance == 420 - 210


@pytest.mark.parametrize("stop", ["write fails", "interrupt"])
def test_a_clip_that_never_reaches_a_file_is_refunded_once_linked_to_its_charge(stop):
    frames, fps, info = rendered("run-b")
    charge_id = json.loads(info)["credits"]["charge_id"]

    def at_first_frame(description, value, total):
        if description.startswith("Encoding") and value >= 1:
            if stop == "interrupt":
                host.request_interrupt()
            else:
                raise OSError(28, "No space left on device")

    remove = host.add_progress_listener(at_first_frame)
    try:
        with pytest.raises(BaseException) as failure:
            encode(frames, fps, info, "run-b")
    finally:
        remove()
        host.clear_interrupt()
    assert host.is_interrupt(failure.value) == (stop == "interrupt")
    history = shared_ledger().history()
    assert [e.kind for e in history] == ["topup", "reserve", "charge", "refund"]
    refund = history[-1]
    assert refund.refund_of == charge_id and refund.amount == 210 and refund.prompt_id == "run-b"
    assert shared_ledger().balance().balance == 420
    assert shared_ledger().verify() == []
    assert not list((host.output_dir() / "shots").glob("*")) if (host.output_dir() / "shots").exists() else True
    # a second failing encode of the same clip does not refund again
    with pytest.raises(RefVideoError):
        encode(frames[:0], fps, info, "run-b")
    assert kinds().count("refund") == 1


def test_another_runs_charge_or_a_clip_already_written_is_never_refunded():
    frames, fps, info = rendered("run-c")
    with pytest.raises(RefVideoError):
        encode(frames[:0], fps, info, "run-other")  # not the run that made the charge
    assert "refund" not in kinds()
    clip_charges._written.clear()
    encode(frames, fps, info, "run-c")  # written: the charge stands from now on
    with pytest.raises(RefVideoError):
        encode(frames[:0], fps, info, "run-c")  # a second VideoEncode of the same clip fails
    assert "refund" not in kinds()


def test_ledger_refund_is_once_and_refuses_what_is_not_a_charge():
    ledger = Ledger()
    ledger.topup("default", 500)
    reservation = ledger.reserve("default", 300, reason="clip")
    charge = reservation.commit(generation_info={"seed": 1}, wall_seconds=1.0)
    first = ledger.refund(charge.id, "the encoder failed")
    assert first.kind == "refund" and first.refund_of == charge.id and first.amount == 300
    assert ledger.refund(charge.id, "again").id == first.id
    assert ledger.balance().balance == 500 and ledger.verify() == []
    with pytest.raises(InputError, match="no charge"):
        ledger.refund(first.id, "a refund is not a charge")
    with pytest.raises(InputError, match="no charge"):
        ledger.refund(1, "a top-up is not a charge")
    reopened = Ledger(ledger.path)
    assert [e.kind for e in reopened.history()] == ["topup", "reserve", "charge", "refund"]


def test_an_output_prefix_that_cannot_be_written_is_refused_before_anything_runs():
    (host.output_dir()).mkdir(parents=True, exist_ok=True)
    (host.output_dir() / "blocked").write_text("a file, not a folder")
    assert VideoEncode.VALIDATE_INPUTS("blocked/clip") is not True
    assert "is a file" in VideoEncode.VALIDATE_INPUTS("blocked/clip")
    assert "longer than a file system allows" in VideoEncode.VALIDATE_INPUTS("x" * 300 + "/clip")
    assert VideoEncode.VALIDATE_INPUTS("fine/clip") is True


def test_a_prompt_that_cannot_be_written_as_utf8_is_refused_before_the_reservation():
    handle, refs, budget = tiny_setup(210)
    from refvideo.nodes.sampler import RefVideoSampler

    for field in ("prompt", "negative_prompt"):
        args = {"prompt": "Mara turns", field: "Mara turns \ud800 slowly"}
        with pytest.raises(InputError) as info:
            RefVideoSampler().sample(model=handle, references=refs, seed=1, steps=2, resolution="144p",
                                     duration=5.0, budget=budget, **args)
        assert info.value.input == field
    with pytest.raises(InputError) as info:
        RefVideoSampler().sample(model=handle, references=refs, prompt="Mara", negative_prompt="blur " * 2000,
                                 seed=1, steps=2, resolution="144p", duration=5.0, budget=budget)
    assert info.value.input == "negative_prompt"
    assert kinds() == ["topup"]  # nothing was reserved


def test_a_constant_frame_rate_the_format_cannot_time_is_refused_before_anything_runs():
    assert "at most 100 frames per second" in VideoEncode.VALIDATE_INPUTS(fps=200.0, format="gif")
    assert VideoEncode.VALIDATE_INPUTS(fps=200.0, format="mp4-h264") is True
    assert "frames per second is not usable" in VideoEncode.VALIDATE_INPUTS(fps=0.0, format="gif")
    assert "not a known format" in VideoEncode.VALIDATE_INPUTS(format="avi")
    assert VideoEncode.VALIDATE_INPUTS(format="gif") is True  # fps linked: the encoder checks it before writing


def test_a_written_clip_of_one_ledger_does_not_settle_the_same_charge_id_in_another(tmp_path, monkeypatch):
    info = {"credits": {"charge_id": 1, "account": "default", "credits": 210}}
    clip_charges.mark_written(info)
    assert clip_charges.partial_tag(info) == ""  # this ledger's charge 1 is in a file
    other = tmp_path / "other_home"
    other.mkdir()
    monkeypatch.setenv("REFVIDEO_HOME", str(other))
    host.configure()
    assert clip_charges.partial_tag(info) == "charge-1"  # charge 1 of another ledger is still open
