"""Every parser the pack exposes, fed random JSON shapes and random bytes: each outcome is a result or
a named refusal (a RefVideo error, exit code 2), never a raw Python error.

Parsers: workflow files (and ``refvideo run``), ``--set`` values, saved reference sets, style skills,
pricing files, the ledger's metadata, PNG-sequence metadata and clip metadata (``refvideo info``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refvideo.engine import host
from refvideo.engine.credits.ledger import Ledger
from refvideo.engine.credits.pricing import estimate, load_pricing
from refvideo.engine.errors import InputError, RefVideoError
from refvideo.engine.references.library import load_set
from refvideo.engine.skills import load_skill
from refvideo.engine.video import manifest
from refvideo.engine.video.encoder import encode_video
from refvideo.headless.cli.main import main
from refvideo.headless.runner import apply_overrides, load_workflow, validate
from refvideo.nodes import NODE_CLASS_MAPPINGS

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**4299, max_value=10**4300)
           | st.floats() | st.text(max_size=30) | st.sampled_from(["", "none", "\ud800", "9" * 5000, "1e999"]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12) | st.sampled_from(["class_type", "inputs", "format",
                                      "references", "style", "mode", "model_factors", "name"]), inner, max_size=5),
                    max_leaves=20)


def json_bytes(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


DEEP = b"[" * 5000 + b"]" * 5000
HUGE_INT = b'{"1": {"class_type": "VideoEncode", "inputs": {"crf": ' + b"9" * 5000 + b"}}}"
CONTENTS = (st.builds(json_bytes, JSON) | st.binary(max_size=200)
            | st.sampled_from([DEEP, HUGE_INT, '{"a": 1}'.encode("utf-16"), b"\xff\xfe\x00\x00", b""]))


def refused_or_done(call) -> None:
    try:
        call()
    except RefVideoError as exc:
        assert exc.exit_code == 2 or isinstance(exc, InputError), repr(exc)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@FAST
@given(content=CONTENTS)
def test_workflow_files(tmp_path, content):
    path = write(tmp_path / "wf.json", content)

    def run():
        problems = validate(load_workflow(path), NODE_CLASS_MAPPINGS)
        assert all(isinstance(str(p), str) for p in problems)

    refused_or_done(run)


@pytest.mark.parametrize("content", [DEEP, HUGE_INT, '{"1": 1}'.encode("utf-16"), b"\x89PNG\r\n\x1a\n\x00",
                                     b'{"1": {"class_type": ["a"], "inputs": {}}}', b'{"1": {"inputs": [1]}}',
                                     b'{"1": {"class_type": "VideoEncode", "inputs": {"frames": [[], 0]}}}'])
def test_refvideo_run_refuses_hostile_workflow_files_with_exit_2(tmp_path, capsys, content):
    assert main(["run", str(write(tmp_path / "wf.json", content)), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["errors"]


@FAST
@given(target=st.sampled_from(["4.seed", "4.prompt", "4.duration", "5.crf", "3.budget_cap", "1.label_1", "5.fps",
                               "4.negative_prompt", "2.keep_loaded"]),
       value=st.text(max_size=40) | st.sampled_from(["9007199254740993", "18446744073709551615", "1e999", "nan",
                                                    "١٢", "0x10", "1_000", "-0", "5.0000000000000001"]))
def test_set_values(target, value):
    workflow = load_workflow(Path(__file__).parents[1] / "workflows" / "api" / "single_shot.json")
    problems = apply_overrides(workflow, [f"{target}={value}"], NODE_CLASS_MAPPINGS)
    problems += validate(workflow, NODE_CLASS_MAPPINGS)
    assert all(isinstance(str(p), str) for p in problems)


def test_set_values_are_exact():
    workflow = load_workflow(Path(__file__).parents[1] / "workflows" / "api" / "single_shot.json")
    assert apply_overrides(workflow, ["4.seed=9007199254740993"], NODE_CLASS_MAPPINGS) == []
    assert workflow["4"]["inputs"]["seed"] == 9007199254740993 and validate(workflow, NODE_CLASS_MAPPINGS) == []
    apply_overrides(workflow, ["4.seed=18446744073709551615"], NODE_CLASS_MAPPINGS)
    assert validate(workflow, NODE_CLASS_MAPPINGS) == []  # the maximum seed is a seed
    for text in ("١٢", "1_000", "nan"):
        apply_overrides(workflow, [f"4.seed={text}"], NODE_CLASS_MAPPINGS)
        assert [p.input for p in validate(workflow, NODE_CLASS_MAPPINGS)] == ["seed"]
    workflow["4"]["inputs"]["seed"] = 1
    workflow["4"]["inputs"]["negative_prompt"] = None  # JSON null is not text
    assert [p.input for p in validate(workflow, NODE_CLASS_MAPPINGS)] == ["negative_prompt"]


@FAST
@given(content=CONTENTS)
def test_saved_sets(content):
    write(host.sets_dir() / "hostile" / "manifest.json", content)
    refused_or_done(lambda: load_set("hostile"))


def test_a_saved_set_with_a_huge_matte_is_refused_before_decoding_it():
    from PIL import Image

    from refvideo.engine.references.library import save_set
    from refvideo.engine.references.reference import Reference, ReferenceSet

    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    folder, _ = save_set(ReferenceSet((Reference(image=image, mask=np.ones((64, 64), np.float32),
                                                 role="character"),)), "big")
    entry = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["references"][0]
    Image.new("L", (30000, 30000)).save(folder / entry["mask"], format="PNG", compress_level=1)
    with pytest.raises(InputError, match="'big' is damaged: reference 1's matte"):
        load_set("big")


@FAST
@given(content=CONTENTS)
def test_style_skills(content):
    write(host.skills_dir() / "hostile.json", content)
    refused_or_done(lambda: load_skill("hostile"))


@FAST
@given(content=CONTENTS | st.sampled_from([b'{"credits_per_clip": 1e308, "resolution_multipliers": {"720p": 1e308}}',
                                           b'{"model_factors": {"previz": NaN}}', b'{"credits_per_clip": Infinity}']))
def test_pricing_files(tmp_path, content):
    path = write(tmp_path / "pricing.json", content)

    def price():
        table = load_pricing(path)
        for resolution in ("144p", "720p", "1080p"):
            estimate(model="previz", resolution=resolution, seconds=5.0, clips=3, table=table)

    refused_or_done(price)


@FAST
@given(value=st.text(max_size=30) | st.sampled_from(["1", " 1 ", "9" * 5000, "١"]))
def test_ledger_metadata(tmp_path, value):
    path = tmp_path / f"l{abs(hash(value))}.sqlite3"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (value,))
    refused_or_done(lambda: Ledger(path).close())


@FAST
@given(content=CONTENTS)
def test_png_sequence_metadata(tmp_path, content):
    folder = tmp_path / "seq"
    write(folder / "frame_00001.png", b"")
    write(folder / manifest.SEQUENCE_METADATA, content)
    refused_or_done(lambda: manifest.read_manifest(folder))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.builds(lambda v: json.dumps(v), JSON) | st.text(max_size=50))
def test_clip_metadata_read_by_refvideo_info(tmp_path, capsys, tag):
    path = tmp_path / "clip.mp4"
    encode_video(np.zeros((1, 16, 16, 3), np.float32), 8.0, path, metadata={manifest.MANIFEST_KEY: tag},
                 speed="ultrafast")
    assert main(["info", str(path), "--json"]) in (0, 2)
    capsys.readouterr()


# --------------------------------------------------------------------------- named cases that used to be raw errors


def test_a_damaged_entry_is_listed_not_fatal(capsys):
    import os

    sets, skills = host.sets_dir(), host.skills_dir()
    write(sets / "odd name!" / "manifest.json", b"{}")  # a folder name no set can have
    write(sets / "stray.txt", b"not a set")
    (sets / "outside").symlink_to(host.home(), target_is_directory=True)
    write(host.home() / "manifest.json", b"{}")  # so the link looks like a set
    write(skills / "nameless.json", json.dumps({"format": 1, "style": "x"}).encode())
    write(skills / "-bad.json", b"{}")
    for command in (["refs", "list", "--json"], ["skills", "list", "--json"]):
        assert main(command) == 0, command
        entries = json.loads(capsys.readouterr().out)
        assert entries and all("error" in e or "style" in e for e in entries)
    assert main(["skills", "show", "nameless"]) == 0
    assert "nameless" in capsys.readouterr().out
    assert os.path.islink(sets / "outside")


def test_paths_of_the_wrong_kind_are_refused_with_exit_2(tmp_path, capsys):
    from refvideo.engine.references.library import save_set
    from refvideo.engine.references.reference import Reference, ReferenceSet
    from refvideo.engine.skills import direction, save_skill

    (tmp_path / "dir.csv").mkdir()
    assert main(["credits", "export", str(tmp_path / "dir.csv")]) == 2
    write(tmp_path / "file", b"x")
    assert main(["credits", "export", str(tmp_path / "file" / "out.csv")]) == 2
    write(host.sets_dir() / "taken", b"a file where the set's folder goes")
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(InputError, match="is a file, not a folder"):
        save_set(ReferenceSet((Reference(image=image, mask=np.ones((32, 32), np.float32), role="prop"),)), "taken")
    (host.skills_dir() / "look.json").mkdir(parents=True)
    with pytest.raises(InputError, match="is a folder, not a file"):
        save_skill(direction("warm"), "look", overwrite=True)


def test_numbers_and_texts_from_the_command_line(capsys):
    assert main(["credits", "topup", "5.0000000000000001"]) == 2
    assert main(["credits", "topup", "999999999.9999999999"]) == 2
    assert main(["credits", "topup", "٥"]) == 2
    assert main(["credits", "topup", "5.0"]) == 0
    assert main(["credits", "topup", "1", "--reason", "bad \udcff byte"]) == 2
    assert main(["credits", "history", "--limit", "9" * 40]) == 2
    assert main(["credits", "history", "--limit", "9" * 5000]) == 2
    assert Ledger().balance().balance == 5


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 0, -8000, 44100.5, "44100", True])
def test_audio_with_an_unusable_sample_rate_is_refused(tmp_path, rate):
    audio = {"waveform": np.zeros((1, 1, 800), np.float32), "sample_rate": rate}
    with pytest.raises(InputError) as info:
        encode_video(np.zeros((2, 16, 16, 3), np.float32), 8.0, tmp_path / "a.mp4", audio=audio)
    assert info.value.input == "audio"
