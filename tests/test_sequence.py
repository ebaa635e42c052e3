"""Storyboards: checks that name the shot and field, plans priced on the ledger, renders that resume,
continue_from, failures and interrupts that leave no held credits, and the CLI's JSON and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from refvideo.engine import host
from refvideo.engine.credits.ledger import shared_ledger
from refvideo.engine.credits.pricing import estimate
from refvideo.engine.errors import BudgetRefused, InputError, Interrupted
from refvideo.engine.frames import to_numpy
from refvideo.engine.sequence.storyboard import parse_storyboard, read_storyboard
from refvideo.engine.video.files import VideoFile
from refvideo.headless.cli import main
from refvideo.jobs.sequence.plan import plan_sequence
from refvideo.jobs.sequence.render import FAILED, RENDERED, SKIPPED, render_sequence
from refvideo.jobs.sequence.shot import recorded_digest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
REFS = [{"image": "samples/character_mara.png", "role": "character", "label": "Mara"},
        {"image": "samples/environment_harbour.png", "role": "environment", "label": "the harbour"}]


def board(shots: list[dict], **defaults) -> dict:
    return {"sequence": "scene", "defaults": {"references": REFS, "model": "previz", "resolution": "144p",
                                              "duration": 5, **defaults}, "shots": shots}


def write(tmp_path: Path, data: dict, name: str = "scene.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def frames_of(path: Path) -> np.ndarray:
    return to_numpy(VideoFile(path).get_components().images)


THREE = [{"name": "wide", "prompt": "Wide shot. Mara waits on the harbour. Slow dolly in."},
         {"name": "medium", "prompt": "Medium shot. Mara turns. Slow truck left.", "continue_from": "wide",
          "seed": 2},
         {"name": "other", "prompt": "The harbour at night. Pan right.", "seed": 3}]


# --------------------------------------------------------------------------- the storyboard


@pytest.mark.parametrize("change, where", [
    (lambda d: d["shots"][1].update(seed=-1), "shot 'medium'.seed"),
    (lambda d: d["shots"][0].update(resolution="4k"), "shot 'wide'.resolution"),
    (lambda d: d["shots"][0].update(colour="red"), "shots[0].colour"),
    (lambda d: d["shots"][2].update(name="wide"), "shot 'wide'.name"),
    (lambda d: d["shots"][1].update(continue_from="nowhere"), "shot 'medium'.continue_from"),
    (lambda d: d["shots"][0].update(continue_from="medium"), "shot 'wide'.continue_from"),
    (lambda d: d["shots"][2].update(format="png-sequence"), "shot 'other'.format"),
    (lambda d: d["shots"][2].update(loader=["fp64"]), "shot 'other'.loader"),
    (lambda d: d["defaults"].update(duration=12), "defaults.duration"),
    (lambda d: d["shots"][1].update(references=[{"image": "x.png", "role": "villain"}]),
     "shot 'medium'.references[0].role"),
    (lambda d: d["shots"][0].update(prompt=" "), "shot 'wide'.prompt"),
])
def test_every_bad_field_is_named_with_its_shot(change, where):
    data = board([dict(s) for s in THREE])
    change(data)
    with pytest.raises(InputError) as caught:
        parse_storyboard(json.dumps(data))
    assert caught.value.input == where, str(caught.value)
    assert caught.value.fix


def test_an_unquoted_aspect_reads_as_the_aspect():
    text = yaml.safe_dump(board([{"name": "a", "prompt": "a"}])) + "\n"
    for written, aspect in (("16:9", "16:9"), ("9:16", "9:16"), ("1:1", "1:1")):
        story = parse_storyboard(text.replace("defaults:", f"defaults:\n  aspect: {written}", 1))
        assert story.shot("a").aspect == aspect
    with pytest.raises(InputError):
        parse_storyboard(text.replace("defaults:", "defaults:\n  aspect: 4:3", 1))


def test_defaults_apply_and_shots_come_in_dependency_order():
    shots = [{"name": "b", "prompt": "b", "continue_from": "a", "seed": 9}, {"name": "a", "prompt": "a"}]
    story = parse_storyboard(yaml.safe_dump(board(shots, seed=4)))
    assert [s.name for s in story.shots] == ["a", "b"]
    assert story.shot("a").seed == 4 and story.shot("b").seed == 9
    assert story.shot("b").resolution == "144p" and story.shot("b").model == "previz"


def test_missing_images_and_models_are_refused_before_any_render(tmp_path):
    bad_image = board([{"name": "a", "prompt": "a", "references": [{"image": "nothere.png", "role": "prop"}]}])
    with pytest.raises(InputError) as caught:
        render_sequence(read_storyboard(write(tmp_path, bad_image)), tmp_path / "out")
    assert caught.value.input == "shot 'a'.references[0].image"
    bad_model = board([{"name": "a", "prompt": "a"}, {"name": "b", "prompt": "b", "model": "no-such-model"}])
    with pytest.raises(InputError) as caught:
        render_sequence(read_storyboard(write(tmp_path, bad_model)), tmp_path / "out")
    assert caught.value.input == "shot 'b'.model"
    assert not (tmp_path / "out" / "a.mp4").exists()
    for loader, field in (({"dtype": "fp64"}, "shot 'a'.loader"), ({"colour": 1}, "shot 'a'.loader")):
        with pytest.raises(InputError) as caught:
            plan_sequence(parse_storyboard(yaml.safe_dump(board([{"name": "a", "prompt": "a", "loader": loader}]))))
        assert caught.value.input == field, str(caught.value)
    with pytest.raises(InputError) as caught:
        plan_sequence(parse_storyboard(yaml.safe_dump(board([{"name": "a", "prompt": "a", "steps": 900}]))))
    assert caught.value.input == "shot 'a'.steps"


def test_images_beside_the_storyboard_are_read_and_contained(tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "mara.png").write_bytes(SAMPLES.joinpath("character_mara.png").read_bytes())
    ok = board([{"name": "a", "prompt": "a", "references": [{"image": "refs/mara.png", "role": "character"}]}])
    (shot,) = plan_sequence(read_storyboard(write(tmp_path, ok))).shots
    assert shot.references.references[0].source == "refs/mara.png"
    escape = board([{"name": "a", "prompt": "a", "references": [{"image": "../../etc/passwd", "role": "prop"}]}])
    with pytest.raises(InputError) as caught:
        plan_sequence(read_storyboard(write(tmp_path, escape)))
    assert caught.value.input == "shot 'a'.references[0].image"


# --------------------------------------------------------------------------- plan and credits


def tiny_board(**defaults) -> dict:
    shots = [{"name": "one", "prompt": "Mara waits. Slow dolly in."},
             {"name": "two", "prompt": "Mara turns. Pan left.", "continue_from": "one", "seed": 1}]
    return board(shots, model="tiny-random", steps=1, **defaults)


def test_plan_prices_every_shot_and_refuses_what_the_balance_or_cap_cannot_cover(tmp_path, capsys):
    path = write(tmp_path, tiny_board())
    price = estimate(model="tiny-random", resolution="144p", seconds=5).per_clip
    assert price > 0
    assert main(["sequence", "plan", str(path), "--json"]) == 2  # a new account has nothing
    assert "not enough credits" in capsys.readouterr().out
    shared_ledger().topup("default", 3 * price)
    assert main(["sequence", "plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan == {"sequence": "scene", "shots": [
        {"name": "one", "model": "tiny-random", "frames": 21, "width": 256, "height": 144, "credits": price},
        {"name": "two", "model": "tiny-random", "frames": 21, "width": 256, "height": 144, "credits": price}],
        "credits": 2 * price, "balance": 3 * price, "balance_after": price}
    with pytest.raises(BudgetRefused) as caught:
        plan_sequence(parse_storyboard(yaml.safe_dump(tiny_board(budget_cap=price + 1))))
    assert caught.value.input == "defaults.budget_cap"
    capped = tiny_board()
    capped["shots"][1]["budget_cap"] = price - 1
    with pytest.raises(BudgetRefused) as caught:
        plan_sequence(parse_storyboard(yaml.safe_dump(capped)))
    assert caught.value.input == "shot 'two'.budget_cap"
    assert shared_ledger().balance("default").balance == 3 * price  # planning charges nothing


def charge_count(account: str = "default") -> int:
    return sum(1 for e in shared_ledger().history(account) if e.kind == "charge")


def assert_ledger_consistent(account: str = "default") -> None:
    ledger = shared_ledger()
    assert ledger.verify() == []
    balance = ledger.balance(account)
    assert (balance.balance, balance.held) == ledger.sums(account)
    assert balance.held == 0


@pytest.mark.slow
def test_tiny_random_render_charges_each_shot_once_and_a_resume_only_the_changed_ones(tmp_path):
    price = estimate(model="tiny-random", resolution="144p", seconds=5).per_clip
    shared_ledger().topup("default", 5 * price)
    data = tiny_board()
    story = read_storyboard(write(tmp_path, data))
    out = tmp_path / "out"
    result = render_sequence(story, out)
    assert result.ok and [s.status for s in result.shots] == [RENDERED, RENDERED]
    assert [s.credits for s in result.shots] == [price, price]
    assert shared_ledger().balance("default").balance == 3 * price and charge_count() == 2
    assert_ledger_consistent()
    assert frames_of(out / "one.mp4").shape == (21, 144, 256, 3)

    again = render_sequence(read_storyboard(write(tmp_path, data)), out)
    assert [s.status for s in again.shots] == [SKIPPED, SKIPPED] and charge_count() == 2

    data["shots"][1]["prompt"] = "Mara turns to the water. Pan right."
    changed = render_sequence(read_storyboard(write(tmp_path, data)), out)
    assert [s.status for s in changed.shots] == [SKIPPED, RENDERED]
    assert charge_count() == 3 and shared_ledger().balance("default").balance == 2 * price
    assert_ledger_consistent()


@pytest.mark.slow
def test_previz_resume_rerenders_a_changed_shot_and_those_continuing_from_it(tmp_path):
    out = tmp_path / "out"
    data = board([dict(s) for s in THREE])
    first = render_sequence(read_storyboard(write(tmp_path, data)), out)
    assert [s.status for s in first.shots] == [RENDERED, RENDERED, RENDERED]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    # continue_from: the medium shot opens on the wide shot's last frames (as decoded from its file)
    wide, medium = frames_of(out / "wide.mp4"), frames_of(out / "medium.mp4")
    assert np.abs(medium[:4] - wide[-8:-4]).mean() < 0.03
    assert np.abs(medium[:4] - frames_of(out / "other.mp4")[:4]).mean() > 0.05

    data["shots"][0]["prompt"] = "Wide shot. Mara waits on the harbour. Slow dolly out."
    second = render_sequence(read_storyboard(write(tmp_path, data)), out)
    assert {s.name: s.status for s in second.shots} == {"wide": RENDERED, "medium": RENDERED, "other": SKIPPED}
    assert (out / "other.mp4").stat().st_mtime_ns == stamps["other.mp4"]
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*"))
    # a file of another shot under the expected name is not taken for the shot
    (out / "other.mp4").write_bytes((out / "wide.mp4").read_bytes())
    third = render_sequence(read_storyboard(write(tmp_path, data)), out)
    assert {s.name: s.status for s in third.shots} == {"wide": SKIPPED, "medium": SKIPPED, "other": RENDERED}
    assert recorded_digest(out / "other.mp4") != recorded_digest(out / "wide.mp4")


class FailOn:
    """A frame filter that fails (or interrupts) one shot: the renderer's own extension point."""

    name = "fail_on"

    def __init__(self, shot: str, interrupt: bool = False) -> None:
        self.shot, self.interrupt = shot, interrupt

    def settings(self) -> dict:
        return {"shot": self.shot}

    def __call__(self, frames: np.ndarray, shot: str) -> np.ndarray:
        if shot == self.shot:
            if self.interrupt:
                host.request_interrupt()
                host.check_interrupt()
            raise RuntimeError("the colour step broke")
        return frames


def test_a_failed_shot_releases_its_credits_fails_its_followers_and_spares_the_others(tmp_path, monkeypatch):
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    price = estimate(model="previz", resolution="144p", seconds=5).per_clip
    shared_ledger().topup("default", 3 * price)
    story = read_storyboard(write(tmp_path, board([dict(s) for s in THREE])))
    result = render_sequence(story, tmp_path / "out", filters=(FailOn("wide"),))
    status = {s.name: (s.status, s.error) for s in result.shots}
    assert status["other"] == (RENDERED, None)
    assert status["wide"][0] == FAILED and "colour step broke" in status["wide"][1]
    assert status["medium"][0] == FAILED and "'wide'" in status["medium"][1]
    assert not result.ok and result.handoff is None
    assert charge_count() == 1 and shared_ledger().balance("default").balance == 2 * price
    assert_ledger_consistent()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other.mp4"]


def test_an_interrupt_keeps_no_partial_file_and_no_held_credits(tmp_path):
    (host.ledger_path().parent / "pricing.json").write_text(json.dumps({"model_factors": {"previz": 1.0}}))
    shared_ledger().topup("default", 10_000)
    story = read_storyboard(write(tmp_path, board([dict(s) for s in THREE])))
    with pytest.raises(Interrupted):
        render_sequence(story, tmp_path / "out", filters=(FailOn("other", interrupt=True),))
    host.clear_interrupt()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["wide.mp4"]
    assert charge_count() == 1
    assert_ledger_consistent()


def test_cli_render_json_and_exit_codes(tmp_path, capsys):
    path = write(tmp_path, board([dict(s) for s in THREE[:2]]))
    out = tmp_path / "out"
    assert main(["sequence", "render", str(path), "--output-dir", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert [(s["name"], s["status"], s["credits"], s["error"]) for s in payload["shots"]] == [
        ("wide", RENDERED, 0, None), ("medium", RENDERED, 0, None)]
    assert payload["shots"][0]["file"] == str(out / "wide.mp4")
    assert (payload["sequence"], payload["timeline"], payload["contact_sheet"]) == (
        str(out / "scene.mp4"), str(out / "scene.otio"), str(out / "scene_contact.png"))
    bad = write(tmp_path, {"sequence": "scene", "shots": []}, "bad.yaml")
    assert main(["sequence", "render", str(bad), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["errors"][0]["input"] == "shots"


# --------------------------------------------------------------------------- the shipped example and schema


STORYBOARDS = Path(__file__).resolve().parent.parent / "workflows" / "storyboards"


def test_the_schema_lists_what_the_reader_accepts():
    from refvideo.engine.references.reference import ROLES
    from refvideo.engine.sequence import storyboard
    from refvideo.engine.sizes import ASPECTS, RESOLUTIONS
    from refvideo.engine.video.encoder import load_formats

    schema = json.loads((STORYBOARDS / "storyboard.schema.json").read_text(encoding="utf-8"))
    assert tuple(schema["properties"]) == storyboard.TOP_KEYS
    assert tuple(schema["$defs"]["shot"]["properties"]) == storyboard.SHOT_KEYS
    assert tuple(schema["$defs"]["settings"]["properties"]) == storyboard.SETTINGS
    assert tuple(schema["$defs"]["reference"]["properties"]) == storyboard.REFERENCE_KEYS
    props = {k.removesuffix("_value"): v for k, v in schema["$defs"].items() if k.endswith("_value")}
    assert tuple(props) == storyboard.SETTINGS
    assert props["resolution"]["enum"] == list(RESOLUTIONS) and props["aspect"]["enum"] == list(ASPECTS)
    assert schema["$defs"]["reference"]["properties"]["role"]["enum"] == list(ROLES)
    assert props["format"]["enum"] == [f.name for f in load_formats().values() if f.metadata and not f.is_sequence]


def test_the_example_follows_the_schema_and_plans():
    jsonschema = pytest.importorskip("jsonschema")  # comes with ray, which the test extra installs
    schema = json.loads((STORYBOARDS / "storyboard.schema.json").read_text(encoding="utf-8"))
    example = STORYBOARDS / "harbour_scene.yaml"
    jsonschema.validate(yaml.safe_load(example.read_text(encoding="utf-8")), schema)
    bad = yaml.safe_load(example.read_text(encoding="utf-8"))
    bad["shots"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    plan = plan_sequence(read_storyboard(example))
    assert [s["name"] for s in plan.to_dict()["shots"]] == ["wide", "medium", "close"]
    assert plan.credits == 0  # previz is free
