"""Style skills: round trips, chaining, overwrite rules, names, corrupt files, the StyleSkill node."""

from __future__ import annotations

import json

import pytest

from refvideo.engine import host, skills
from refvideo.engine.errors import InputError, Interrupted, StorageError
from refvideo.engine.skills import chain, direction, list_skills, load_skill, save_skill, skill_document, style_skill
from refvideo.engine.style import StyleDirection
from refvideo.headless import runner
from refvideo.headless.schema import validator_inputs
from refvideo.nodes.style_skill import StyleSkill

NOIR = direction("black and white, hard key light, 35mm", "colour, cartoon", "slow dolly in",
                 defaults={"guidance": 5.5, "steps": 30})
BAD_NAMES = ["", "a/b", "..", ".hidden", "con", "x" * 65, "name.", "none", "what?"]


def test_save_then_load_round_trips():
    path, status = save_skill(NOIR, "Noir")
    assert status == "saved" and path == host.skills_dir() / "Noir.json"
    loaded = load_skill("Noir")
    assert loaded == StyleDirection(names=("Noir",), style=NOIR.style, negative=NOIR.negative, camera=NOIR.camera,
                                    defaults=NOIR.defaults)
    document = json.loads(path.read_text())
    assert document["format"] == 1 and document["name"] == "Noir" and document["pack_version"]
    assert document["created"] == document["updated"]
    assert list_skills() == ["Noir"]


def test_chaining_joins_texts_and_later_fields_win():
    rain = direction("rain, warm tungsten", "cartoon, text", "", defaults={"guidance": 7.0})
    handheld = direction("", "", "handheld, slow push in", defaults={"guidance": 6.0})
    combined = chain(NOIR, rain, handheld)
    assert combined.style == "black and white, hard key light, 35mm, rain, warm tungsten"
    assert combined.negative == "colour, cartoon, text"  # a repeated phrase appears once
    assert combined.camera == "handheld, slow push in"
    assert combined.defaults == {"guidance": 6.0, "steps": 30}  # later skills win
    assert chain(NOIR, NOIR).style == NOIR.style
    assert chain(rain, NOIR).camera == "slow dolly in" and chain(NOIR, rain).camera == "slow dolly in"


def test_saving_never_overwrites_without_permission():
    save_skill(NOIR, "Look")
    assert save_skill(NOIR, "Look")[1] == "unchanged"
    other = direction("pastel, soft light")
    with pytest.raises(StorageError, match="already exists") as caught:
        save_skill(other, "Look")
    assert "overwrite" in caught.value.fix and load_skill("Look").style == NOIR.style
    created = skill_document("Look")["created"]
    assert save_skill(other, "Look", overwrite=True)[1] == "replaced"
    assert load_skill("Look").style == "pastel, soft light" and skill_document("Look")["created"] == created


def test_an_interrupted_save_keeps_the_previous_skill(monkeypatch):
    save_skill(NOIR, "Keep")

    def interrupted(*args, **kwargs):
        raise Interrupted()

    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(skills, "atomic_write_json", interrupted)
        save_skill(direction("other"), "Keep", overwrite=True)
    assert load_skill("Keep").style == NOIR.style


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name):
    with pytest.raises(InputError) as caught:
        save_skill(NOIR, name)
    assert caught.value.input == "save_as"
    with pytest.raises(InputError):
        load_skill(name)


@pytest.mark.parametrize("content, words", [
    ("{oops", "not valid JSON"),
    ("[]", "not a JSON object"),
    (json.dumps({"format": 2, "style": "x"}), "format is 2"),
    (json.dumps({"format": 1, "style": ["a list"]}), "'style' is not text"),
    (json.dumps({"format": 1, "defaults": {"seed": 3}}), "'seed' is not a setting"),
    (json.dumps({"format": 1, "defaults": {"steps": "many"}}), "'steps' must be int"),
    (json.dumps({"format": 1, "defaults": {"steps": True}}), "'steps' must be int"),
    (json.dumps({"format": 1, "defaults": []}), "must be a JSON object"),
])
def test_corrupt_or_hand_edited_skills_are_refused_clearly(content, words):
    host.skills_dir().mkdir(parents=True, exist_ok=True)
    (host.skills_dir() / "Broken.json").write_text(content)
    with pytest.raises(StorageError) as caught:
        load_skill("Broken")
    assert words in str(caught.value) and "Broken" in str(caught.value)
    with pytest.raises(StorageError):
        save_skill(NOIR, "Broken")
    assert save_skill(NOIR, "Broken", overwrite=True)[1] == "replaced"


def test_a_skill_file_linked_out_of_the_library_is_refused(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"format": 1, "style": "stolen"}))
    host.skills_dir().mkdir(parents=True)
    (host.skills_dir() / "Linked.json").symlink_to(outside)
    with pytest.raises(InputError, match="outside"):
        load_skill("Linked")


def test_texts_are_checked():
    with pytest.raises(InputError) as caught:
        direction("x" * 5000)
    assert caught.value.input == "style"
    with pytest.raises(InputError):
        direction(negative=3)
    with pytest.raises(InputError, match="REFVIDEO_STYLE"):
        style_skill(style="x", previous="not a style")


def test_style_skill_loads_adds_saves_and_reports():
    save_skill(NOIR, "Noir")
    result, report = style_skill(saved_skill="Noir", style="rain", camera="crane up", save_as="Noir rain")
    assert result.names == ("Noir rain",)
    assert result.style == f"{NOIR.style}, rain" and result.camera == "crane up"
    assert "Saved as 'Noir rain'" in report and "rain" in report
    assert load_skill("Noir rain").style == result.style
    assert load_skill("Noir rain").defaults == NOIR.defaults


def test_style_skill_node_in_a_workflow_chains_and_saves():
    save_skill(NOIR, "Noir")
    workflow = {
        "1": {"class_type": "StyleSkill", "inputs": {"saved_skill": "Noir", "style": "", "negative": "",
                                                       "camera": ""}},
        "2": {"class_type": "StyleSkill", "inputs": {"saved_skill": "none", "style": "rain", "negative": "text",
                                                       "camera": "", "previous": ["1", 0], "save_as": "Shot 2"}},
    }
    result = runner.execute(workflow, {"StyleSkill": StyleSkill})
    assert "Saved as 'Shot 2'" in result.ui["2"]["text"][0]
    saved = load_skill("Shot 2")
    assert saved.style == f"{NOIR.style}, rain" and saved.negative == f"{NOIR.negative}, text"
    assert saved.camera == NOIR.camera
    assert "Noir" in StyleSkill.INPUT_TYPES()["required"]["saved_skill"][0]


def test_style_skill_node_validation_and_change_detection():
    assert validator_inputs(StyleSkill) == {"save_as"}
    assert StyleSkill.VALIDATE_INPUTS(save_as="") is True
    assert "path separator" in StyleSkill.VALIDATE_INPUTS(save_as="a/b")
    assert StyleSkill.IS_CHANGED(saved_skill="none", style="x") == ""
    save_skill(NOIR, "Noir")
    before = StyleSkill.IS_CHANGED(saved_skill="Noir")
    assert StyleSkill.IS_CHANGED(saved_skill="Noir") == before
    save_skill(direction("new look"), "Noir", overwrite=True)
    assert StyleSkill.IS_CHANGED(saved_skill="Noir") != before
