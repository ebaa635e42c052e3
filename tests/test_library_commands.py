"""``refvideo refs check|list|show`` and ``refvideo skills list|show``: shapes, check names, exit codes."""

from __future__ import annotations

import json

import pytest

from refvideo.engine import host
from refvideo.engine.references.quality import CHECKS
from refvideo.engine.skills import direction, save_skill
from refvideo.headless.cli import main
from refvideo.jobs.reference_prep import ReferenceInput, reference_set
from synthetic_references import character, doubled, jpeg_bytes, save_png

FINDING_KEYS = {"check", "severity", "message", "fix"}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def images(tmp_path):
    save_png(tmp_path / "clean.png", character(512, 640))
    save_png(tmp_path / "two.png", doubled(800, 600))
    (tmp_path / "blocky.jpg").write_bytes(jpeg_bytes(character(512, 640), 5))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_refs_check_json_has_the_documented_shape(images, capsys):
    paths = [str(images / n) for n in ("clean.png", "two.png", "blocky.jpg")]
    code, out, _ = cli(capsys, "refs", "check", *paths, "--json")
    report = json.loads(out)
    assert code == 0
    assert [entry["image"] for entry in report] == paths
    assert all(set(entry) == {"image", "findings"} for entry in report)
    assert report[0]["findings"] == []
    assert [f["check"] for f in report[1]["findings"]] == ["multiple_subjects"]
    assert [f["check"] for f in report[2]["findings"]] == ["compression"]
    for entry in report:
        for finding in entry["findings"]:
            assert set(finding) == FINDING_KEYS and finding["check"] in CHECKS
            assert finding["severity"] in ("info", "warning", "error")


def test_refs_check_exits_2_for_an_unreadable_image(images, capsys):
    paths = [str(images / "clean.png"), str(images / "notes.txt"), str(images / "missing.png")]
    code, out, _ = cli(capsys, "refs", "check", *paths, "--json")
    report = json.loads(out)
    assert code == 2
    assert report[0]["findings"] == []
    for entry in report[1:]:
        assert [(f["check"], f["severity"]) for f in entry["findings"]] == [("unreadable", "error")]
        assert set(entry["findings"][0]) == FINDING_KEYS


def test_refs_check_text_role_and_background(images, capsys):
    code, out, _ = cli(capsys, "refs", "check", str(images / "two.png"), str(images / "clean.png"))
    assert code == 0 and "warning [multiple_subjects]" in out and "clean.png: ok, no findings" in out
    code, out, _ = cli(capsys, "refs", "check", str(images / "two.png"), "--role", "environment", "--json")
    assert json.loads(out)[0]["findings"] == []
    code, out, _ = cli(capsys, "refs", "check", str(images / "clean.png"), "--background", "flat background",
                       "--json")
    assert code == 0 and json.loads(out)[0]["findings"] == []


def test_refs_check_with_rembg_and_no_model_explains_the_file(images, capsys, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("REMBG_HOME", raising=False)
    code, out, _ = cli(capsys, "refs", "check", str(images / "clean.png"), "--background", "rembg", "--json")
    error = json.loads(out)["errors"][0]
    assert code == 2 and error["type"] == "ModelNotFound" and "u2netp.onnx" in error["message"]


def test_refs_list_and_show(capsys, refvideo_home):
    code, out, _ = cli(capsys, "refs", "list")
    assert code == 0 and "No saved reference sets" in out
    folder = host.input_dir()
    folder.mkdir(parents=True)
    save_png(folder / "mara.png", character(512, 640))
    reference_set([ReferenceInput(1, "mara.png", label="Mara")], save_as="Mara")
    (host.sets_dir() / "Broken").mkdir()
    (host.sets_dir() / "Broken" / "manifest.json").write_text("{")
    code, out, _ = cli(capsys, "refs", "list", "--json")
    listed = {e["name"]: e for e in json.loads(out)}
    assert code == 0 and listed["Mara"]["references"] == [{"role": "character", "label": "Mara"}]
    assert "not valid JSON" in listed["Broken"]["error"]
    code, out, _ = cli(capsys, "refs", "show", "Mara", "--json")
    manifest = json.loads(out)
    assert code == 0 and manifest["name"] == "Mara" and manifest["references"][0]["source"] == "mara.png"
    code, out, _ = cli(capsys, "refs", "show", "Mara")
    assert "1. character 'Mara': mara.png, background flat background" in out  # auto keyed its backdrop
    code, out, err = cli(capsys, "refs", "show", "Nope")
    assert code == 2 and "no reference set named 'Nope'" in err
    code, out, _ = cli(capsys, "refs", "show", "../etc", "--json")
    assert code == 2 and json.loads(out)["errors"][0]["type"] == "InputError"


def test_skills_list_and_show(capsys):
    code, out, _ = cli(capsys, "skills", "list")
    assert code == 0 and "No saved style skills" in out
    save_skill(direction("black and white, 35mm", "colour", "slow dolly in", defaults={"steps": 30}), "Noir")
    code, out, _ = cli(capsys, "skills", "list", "--json")
    assert json.loads(out)[0]["name"] == "Noir" and json.loads(out)[0]["style"] == "black and white, 35mm"
    code, out, _ = cli(capsys, "skills", "show", "Noir", "--json")
    document = json.loads(out)
    assert code == 0 and document["camera"] == "slow dolly in" and document["defaults"] == {"steps": 30}
    code, out, _ = cli(capsys, "skills", "show", "Noir")
    assert "style: black and white, 35mm" in out and "defaults: steps=30" in out
    code, _, err = cli(capsys, "skills", "show", "Missing")
    assert code == 2 and "no style skill named 'Missing'" in err
