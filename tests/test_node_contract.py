"""Every node class has a schema ComfyUI accepts; the public node ids and input names hold.

This test reads NODE_CLASS_MAPPINGS, so a node added later is checked without new test code.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest

from refvideo import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from refvideo.headless.schema import WIDGET_TYPES, object_info, parse_entry
from refvideo.nodes import LOAD_ERRORS

SOCKET_TYPES = {"IMAGE", "MASK", "AUDIO", "VIDEO", "REFVIDEO_REFSET", "REFVIDEO_STYLE", "REFVIDEO_MODEL",
                "REFVIDEO_BUDGET"}
HIDDEN_TYPES = {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "DYNPROMPT"}

# The public node ids and the input names workflows, --set and scripts rely on.
PUBLIC_INPUTS = {
    "LoadReferenceSet": ["image_1", "image_2", "image_3", "image_in_1", "image_in_2", "image_in_3",
                         "role_1", "role_2", "role_3", "label_1", "label_2", "label_3"],
    "StyleSkill": [],
    "RefVideoModelLoader": ["model"],
    "RefVideoSampler": ["model", "references", "prompt", "seed", "steps", "guidance", "negative_prompt",
                        "resolution", "aspect", "duration", "style", "budget", "first_frames", "control_video"],
    "CreditMeter": ["model", "resolution", "duration", "audio", "clips", "account", "budget_cap"],
    "VideoEncode": ["frames", "fps", "audio", "generation_info", "filename_prefix", "format", "crf", "preset"],
    "RefVideoAudio": ["model", "prompt", "frames", "fps", "seed"],
    "JoinClips": [],
}

NODES = sorted(NODE_CLASS_MAPPINGS.items())


def declared(cls) -> dict:
    return cls.INPUT_TYPES()


def test_every_module_loaded():
    assert LOAD_ERRORS == []


def test_public_node_ids_and_inputs():
    assert set(PUBLIC_INPUTS) <= set(NODE_CLASS_MAPPINGS)
    for node_id, names in PUBLIC_INPUTS.items():
        inputs = declared(NODE_CLASS_MAPPINGS[node_id])
        present = {**inputs.get("required", {}), **inputs.get("optional", {})}
        missing = [n for n in names if n not in present]
        assert not missing, f"{node_id} lacks public inputs {missing}"
    assert declared(NODE_CLASS_MAPPINGS["RefVideoSampler"])["required"]["seed"][1].get("control_after_generate")
    assert getattr(NODE_CLASS_MAPPINGS["LoadReferenceSet"], "OUTPUT_NODE", False)
    assert getattr(NODE_CLASS_MAPPINGS["VideoEncode"], "OUTPUT_NODE", False)
    models = declared(NODE_CLASS_MAPPINGS["RefVideoModelLoader"])["required"]["model"][0]
    assert models[:2] == ["previz", "tiny-random"]


@pytest.mark.parametrize("node_id, cls", NODES, ids=[n for n, _ in NODES])
def test_schema_is_one_comfyui_accepts(node_id, cls):
    inputs = declared(cls)
    assert set(inputs) <= {"required", "optional", "hidden"}
    assert node_id in NODE_DISPLAY_NAME_MAPPINGS
    assert str(cls.CATEGORY).startswith("RefVideo")
    assert isinstance(getattr(cls, "DESCRIPTION", None), str) and cls.DESCRIPTION.strip()
    for section in ("required", "optional"):
        for name, entry in (inputs.get(section) or {}).items():
            spec = parse_entry(name, entry, required=section == "required")
            where = f"{node_id}.{name}"
            assert spec.type in WIDGET_TYPES or spec.type in SOCKET_TYPES, f"{where}: unknown type {spec.type}"
            tooltip = spec.options.get("tooltip")
            assert isinstance(tooltip, str) and tooltip.strip(), f"{where}: no tooltip"
            if spec.type in ("INT", "FLOAT"):
                assert "default" in spec.options, f"{where}: no default"
                default = spec.options["default"]
                assert isinstance(default, (int, float)) and not isinstance(default, bool), where
                assert math.isfinite(default), where
                assert spec.options.get("min", -math.inf) <= default <= spec.options.get("max", math.inf), where
                if spec.type == "INT":
                    assert isinstance(default, int), f"{where}: INT default {default!r}"
                assert spec.options.get("step", 1) > 0, where
            elif spec.type == "COMBO":
                assert spec.choices, f"{where}: empty combo"
                assert all(isinstance(c, str) for c in spec.choices), where
                if "default" in spec.options:
                    assert spec.options["default"] in spec.choices, f"{where}: default not in list"
            elif spec.type == "BOOLEAN":
                assert isinstance(spec.options.get("default"), bool), f"{where}: BOOLEAN needs a default"
            elif spec.type == "STRING":
                assert isinstance(spec.options.get("default", ""), str), where
    for name, kind in (inputs.get("hidden") or {}).items():
        assert kind in HIDDEN_TYPES, f"{node_id}: hidden input {name} has unknown type {kind}"


@pytest.mark.parametrize("node_id, cls", NODES, ids=[n for n, _ in NODES])
def test_outputs_and_function_match_the_schema(node_id, cls):
    outputs = cls.RETURN_TYPES
    assert isinstance(outputs, tuple)
    for attr in ("RETURN_NAMES", "OUTPUT_TOOLTIPS", "OUTPUT_IS_LIST"):
        value = getattr(cls, attr, None)
        if value is not None:
            assert len(value) == len(outputs), f"{node_id}.{attr} has {len(value)} entries for {len(outputs)} outputs"
    assert getattr(cls, "RETURN_NAMES", None) is not None or not outputs, f"{node_id}: name the outputs"
    assert getattr(cls, "OUTPUT_TOOLTIPS", None) is not None or not outputs, f"{node_id}: output tooltips"

    fn = getattr(cls, cls.FUNCTION, None)
    assert callable(fn), f"{node_id}: FUNCTION {cls.FUNCTION!r} missing"
    params = {k: p for k, p in inspect.signature(fn).parameters.items() if k != "self"}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    inputs = declared(cls)
    required = set(inputs.get("required") or {})
    optional = set(inputs.get("optional") or {})
    hidden = set(inputs.get("hidden") or {})
    undeclared = named - required - optional - hidden
    assert not undeclared, f"{node_id}: parameters not declared: {undeclared}"
    assert var_kw or (required | optional | hidden) <= named, f"{node_id}: inputs not accepted"
    for name in optional | hidden:
        if name in named:
            assert params[name].default is not inspect.Parameter.empty, f"{node_id}: optional '{name}' needs a default"
    assert not any(p.kind is p.VAR_POSITIONAL for p in params.values()), f"{node_id}: inputs arrive by name, not *args"


@pytest.mark.parametrize("node_id, cls", NODES, ids=[n for n, _ in NODES])
def test_object_info_entry_is_json(node_id, cls):
    entry = object_info(cls, node_id, NODE_DISPLAY_NAME_MAPPINGS[node_id])
    assert json.loads(json.dumps(entry))["name"] == node_id
    for hook in ("IS_CHANGED", "VALIDATE_INPUTS"):
        if hasattr(cls, hook):
            assert callable(getattr(cls, hook))
