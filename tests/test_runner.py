"""The in-process workflow runner: validation reports every problem; execution follows ComfyUI."""

from __future__ import annotations

import json

import pytest

from refvideo.engine import host
from refvideo.engine.errors import Interrupted
from refvideo.headless.runner import (
    NodeFailed,
    WorkflowInvalid,
    apply_overrides,
    as_api_workflow,
    execute,
    execution_order,
    files_in_ui,
    load_workflow,
    validate,
)

CALLS: list[tuple] = []


class Number:
    """A source node: a constant INT."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "make"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 10})}}

    def make(self, value):
        CALLS.append(("Number", value))
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "add"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})},
                "optional": {"bonus": ("INT", {"default": 0})}}

    def add(self, a, b, **optional):
        CALLS.append(("Add", a, b, tuple(sorted(optional))))
        return (a + b + optional.get("bonus", 0),)


class Show:
    """An output node that records what it got and reports a file."""

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "mode": (["plain", "fancy"], {})},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    def show(self, value, mode, prompt=None, unique_id=None):
        CALLS.append(("Show", value, mode, unique_id, sorted(prompt)))
        return {"ui": {"images": [{"filename": f"v{value}.txt", "subfolder": "sub", "type": "output"}]}}


class Text:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "text"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""})}}

    def text(self, text):
        return (text,)


class Fan:
    """Outputs a list: downstream nodes run once per item."""

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "fan"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 1, "max": 5})}}

    def fan(self, count):
        return (list(range(count)),)


class Gather:
    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "gather"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {"default": 0})}}

    def gather(self, values):
        return (sum(values),)


class Boom:
    RETURN_TYPES = ("INT",)
    FUNCTION = "boom"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def boom(self, value):
        raise ValueError("the node broke")


class Stop:
    RETURN_TYPES = ("INT",)
    FUNCTION = "stop"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def stop(self, value):
        host.request_interrupt()
        return (value,)


CLASSES = {"Number": Number, "Add": Add, "Show": Show, "Text": Text, "Fan": Fan, "Gather": Gather,
           "Boom": Boom, "Stop": Stop}


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def good_workflow():
    return {
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Number", "inputs": {"value": 3}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0], "mode": "fancy"}},
        "9": {"class_type": "Number", "inputs": {"value": 9}},  # not needed by any output
    }


def kinds(problems):
    return sorted(p.type for p in problems)


def test_valid_workflow_has_no_problems():
    assert validate(good_workflow(), CLASSES) == []


def test_execution_runs_only_needed_nodes_in_order_with_hidden_inputs():
    result = execute(good_workflow(), CLASSES)
    assert ("Number", 9) not in CALLS
    assert CALLS[-1] == ("Show", 5, "fancy", "4", ["1", "2", "3", "4", "9"])
    assert ("Add", 2, 3, ()) in CALLS  # unconnected optional input is absent, not None
    assert execution_order(good_workflow(), CLASSES) == ["1", "2", "3", "4"]
    assert result.files["4"] == [(host.output_dir() / "sub" / "v5.txt").resolve()]
    assert result.ui["4"]["images"][0]["filename"] == "v5.txt"


def test_every_problem_is_reported_at_once():
    wf = {
        "1": {"class_type": "Number", "inputs": {"value": 11}},  # above max
        "2": {"class_type": "Nomber", "inputs": {"value": 1}},  # typo
        "3": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},  # another pack's node
        "4": {"class_type": "Add", "inputs": {"a": ["8", 0], "b": ["1", 3]}},  # missing node, bad slot
        "5": {"class_type": "Show", "inputs": {"value": ["6", 0], "mode": "ugly"}},  # STRING into INT, combo
        "6": {"class_type": "Text", "inputs": {"text": "hi"}},
        "7": {"class_type": "Add", "inputs": {"a": 1, "colour": 2}},  # missing b, unknown input
    }
    problems = validate(wf, CLASSES)
    assert kinds(problems) == sorted(["bad_value", "unknown_class", "unknown_class", "bad_link", "bad_link",
                                      "link_type", "bad_value", "missing_input", "unknown_input"])
    by_node = {(p.node, p.input): p for p in problems}
    assert "maximum 10" in by_node[("1", "value")].message
    assert "Did you mean 'Number'" in by_node[("2", None)].message
    assert "another pack" in by_node[("3", None)].message and "--server" in by_node[("3", None)].message
    assert "not in the workflow" in by_node[("4", "a")].message
    assert "outputs 0-0" in by_node[("4", "b")].message
    assert by_node[("5", "value")].type == "link_type" and "STRING" in by_node[("5", "value")].message
    assert "'plain'" in by_node[("5", "mode")].message
    assert by_node[("7", "b")].type == "missing_input"
    assert "its inputs: a, b, bonus" in by_node[("7", "colour")].message
    assert all(p.class_type for p in problems if p.node)
    with pytest.raises(WorkflowInvalid) as info:
        execute(wf, CLASSES)
    assert len(info.value.problems) == len(problems)
    assert CALLS == []


def test_cycles_are_found():
    wf = {
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0], "mode": "plain"}},
    }
    problems = validate(wf, CLASSES)
    assert kinds(problems) == ["cycle"]
    assert "cycle" in problems[0].message and "1" in problems[0].message and "2" in problems[0].message


def test_workflow_without_output_node_is_refused():
    problems = validate({"1": {"class_type": "Number", "inputs": {"value": 1}}}, CLASSES)
    assert kinds(problems) == ["no_outputs"]


def test_values_are_converted_like_comfyui():
    wf = good_workflow()
    wf["1"]["inputs"]["value"] = "4"
    wf["2"]["inputs"]["value"] = 2.0
    execute(wf, CLASSES)
    assert CALLS[-1][1] == 6
    wf["1"]["inputs"]["value"] = 2.5
    wf["2"]["inputs"]["value"] = True
    assert kinds(validate(wf, CLASSES)) == ["bad_value", "bad_value"]


def test_list_outputs_fan_out_and_input_is_list_gathers():
    wf = {
        "1": {"class_type": "Fan", "inputs": {"count": 3}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
        "3": {"class_type": "Gather", "inputs": {"values": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0], "mode": "plain"}},
        "5": {"class_type": "Show", "inputs": {"value": ["2", 0], "mode": "plain"}},
    }
    result = execute(wf, CLASSES)
    adds = [c for c in CALLS if c[0] == "Add"]
    assert [(a, b) for _, a, b, _ in adds] == [(0, 10), (1, 10), (2, 10)]
    shows = [c[1] for c in CALLS if c[0] == "Show"]
    assert shows == [33, 10, 11, 12]
    assert [f.name for f in result.files["5"]] == ["v10.txt", "v11.txt", "v12.txt"]


def test_node_failure_names_node_and_class():
    wf = {"1": {"class_type": "Boom", "inputs": {"value": 1}},
          "2": {"class_type": "Show", "inputs": {"value": ["1", 0], "mode": "plain"}}}
    with pytest.raises(NodeFailed) as info:
        execute(wf, CLASSES)
    assert info.value.node == "1" and info.value.class_type == "Boom"
    assert "the node broke" in str(info.value)
    assert info.value.to_dict()["type"] == "ValueError"
    assert info.value.exit_code == 1


def test_interrupt_stops_between_nodes():
    wf = {"1": {"class_type": "Stop", "inputs": {"value": 1}},
          "2": {"class_type": "Show", "inputs": {"value": ["1", 0], "mode": "plain"}}}
    with pytest.raises(Interrupted):
        execute(wf, CLASSES)
    assert not any(c[0] == "Show" for c in CALLS)


def test_malformed_and_ui_format_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"class_type": "Number",, }')
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(bad)
    assert info.value.problems[0].type == "malformed_json" and "line 1" in str(info.value)

    ui = tmp_path / "single_shot.json"  # a user's file that shares a shipped workflow's name
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(Exception) as info:
        load_workflow(ui)
    assert info.value.exit_code == 2 and "UI-format" in str(info.value) and "Export (API)" in str(info.value)
    assert "workflows/api/single_shot.json" not in str(info.value)

    with pytest.raises(WorkflowInvalid):
        as_api_workflow([1, 2, 3])
    assert as_api_workflow({"prompt": good_workflow()}) == good_workflow()


def test_overrides_parse_to_the_input_type():
    wf = good_workflow()
    assert apply_overrides(wf, ["1.value=7", "4.mode=plain"], CLASSES) == []
    assert wf["1"]["inputs"]["value"] == 7 and isinstance(wf["1"]["inputs"]["value"], int)
    problems = apply_overrides(wf, ["nonsense", "77.value=1", "1.colour=2"], CLASSES)
    assert [p.type for p in problems] == ["bad_override"] * 3
    assert "NODE.INPUT=VALUE" in problems[0].message
    assert "not in the workflow" in problems[1].message
    assert "does not have" in problems[2].message


def test_files_in_ui_resolves_against_host_folders():
    ui = {"images": [{"filename": "a.mp4", "subfolder": "", "type": "output"},
                     {"filename": "b.png", "subfolder": "x", "type": "temp"}], "text": ["report"]}
    assert files_in_ui(ui) == [(host.output_dir() / "a.mp4").resolve(), (host.temp_dir() / "x" / "b.png").resolve()]
