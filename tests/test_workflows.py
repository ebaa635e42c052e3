"""The shipped workflows: each UI file and its API twin agree, both fit the node schemas, and each runs.

The UI widget order is computed here from the node schemas, the way ComfyUI's frontend 1.35 lays
out a node's widgets (declaration order; a control value after a seed; the upload button of an
``image_upload`` combo last), independently of ``scripts/build_workflows.py`` which writes them.
The runs use the bundled samples on previz and tiny-random at 144p, as a fresh install would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from itertools import zip_longest
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from refvideo.engine.references import library as reference_library
from refvideo.headless.runner import apply_overrides, execute, load_workflow, validate
from refvideo.headless.schema import WIDGET_TYPES, coerce, input_specs
from refvideo.nodes import NODE_CLASS_MAPPINGS

PACK_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = PACK_ROOT / "workflows"
SHIPPED = ("demo_shot", "single_shot", "continuity_three_shots", "shot_with_audio", "shot_1080p", "reference_sheet",
           "previz_to_diffusion", "storyboard_sequence")
ALL = tuple(sorted(p.stem for p in WORKFLOWS.glob("*.json")))
UI_ONLY = ("Note", "MarkdownNote")
CONTROL, UPLOAD = "<control_after_generate>", "<upload>"
MISSING = object()


def load_pair(stem: str) -> tuple[dict, dict]:
    ui = json.loads((WORKFLOWS / f"{stem}.json").read_text(encoding="utf-8"))
    api = json.loads((WORKFLOWS / "api" / f"{stem}.json").read_text(encoding="utf-8"))
    return ui, api


def is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES) and not options.get("forceInput")


def widget_names(node_class: type) -> list[str]:
    """The node's widgets in the frontend's order, with its control and upload widgets."""
    declared = node_class.INPUT_TYPES()
    names = []
    for section in ("required", "optional"):
        for name, entry in (declared.get(section) or {}).items():
            kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
            if not is_widget(kind, options):
                continue
            names.append(name)
            if options.get("control_after_generate", kind == "INT" and name in ("seed", "noise_seed")):
                names.append(CONTROL)
    if any(len(e) > 1 and e[1].get("image_upload") for e in (declared.get("required") or {}).values()):
        names.append(UPLOAD)
    return names


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


# --------------------------------------------------------------------------- the files


def test_every_ui_workflow_has_an_api_twin_and_a_thumbnail():
    assert set(SHIPPED) <= set(ALL)
    assert set(ALL) == {p.stem for p in (WORKFLOWS / "api").glob("*.json")}
    for stem in ALL:
        with Image.open(WORKFLOWS / f"{stem}.jpg") as thumb:
            assert thumb.format == "JPEG" and thumb.width <= 640
            assert abs(thumb.width / thumb.height - 16 / 9) < 0.02, stem
        assert (WORKFLOWS / f"{stem}.jpg").stat().st_size < 60 * 1024


@pytest.mark.parametrize("stem", SHIPPED)
def test_the_build_script_reproduces_the_shipped_json(stem):
    spec = importlib.util.spec_from_file_location("build_workflows", PACK_ROOT / "scripts" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    [describe] = [d for d in module.DESCRIPTIONS if d.__name__ == stem]
    for path, text in module.rendered_files(describe(), NODE_CLASS_MAPPINGS).items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date: run scripts/build_workflows.py"


@pytest.mark.parametrize("stem", ALL)
def test_ui_workflow_and_api_twin_agree(stem):
    """Same node ids, classes, titles, links and widget values (notes, groups and control widgets aside)."""
    ui, api = load_pair(stem)
    explicit = stem in SHIPPED  # the shipped workflows spell out every widget in both files
    nodes = {str(n["id"]): n for n in ui["nodes"] if n["type"] not in UI_ONLY}
    assert set(nodes) == set(api)
    links = {link[0]: link for link in ui["links"]}
    for node_id, node in nodes.items():
        entry, cls = api[node_id], NODE_CLASS_MAPPINGS[node["type"]]
        assert entry["class_type"] == node["type"]
        assert entry.get("_meta", {}).get("title") == node.get("title")
        linked = {}
        for slot, socket in enumerate(node["inputs"]):
            if socket["link"] is not None:
                _, source, source_slot, target, target_slot, kind = links[socket["link"]]
                assert (target, target_slot) == (node["id"], slot)
                assert kind == NODE_CLASS_MAPPINGS[nodes[str(source)]["type"]].RETURN_TYPES[source_slot]
                linked[socket["name"]] = [str(source), source_slot]
        assert linked == {k: v for k, v in entry["inputs"].items() if is_link(v)}, node_id
        names, values = widget_names(cls), node["widgets_values"]
        assert len(values) == len(names) if explicit else len(values) <= len(names), (node_id, node["type"])
        specs = input_specs(cls)
        for name, value in zip_longest(names, values, fillvalue=MISSING):
            if name == CONTROL:
                assert value in ("fixed", MISSING) if explicit else True
                continue
            if name == UPLOAD:
                assert value in ("image", MISSING)
                continue
            if name in linked:
                continue
            api_value = entry["inputs"].get(name, MISSING)
            assert api_value is not MISSING or not explicit, (node_id, name)
            ui_value = specs[name].default if value is MISSING else value
            api_value = specs[name].default if api_value is MISSING else api_value
            assert coerce(specs[name], api_value) == coerce(specs[name], ui_value), (node_id, name)
        assert set(entry["inputs"]) <= set(names) | set(linked), node_id


@pytest.mark.parametrize("stem", ALL)
def test_ui_graph_is_consistent(stem):
    """Sockets listed as the frontend saves them; every link is recorded at both ends."""
    ui, _ = load_pair(stem)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] >= max(nodes)
    assert len({link[0] for link in ui["links"]}) == len(ui["links"])
    assert ui["last_link_id"] >= max((link[0] for link in ui["links"]), default=0)
    for link_id, source, slot, target, target_slot, _ in ui["links"]:
        assert link_id in (nodes[source]["outputs"][slot]["links"] or [])
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
    for node in ui["nodes"]:
        if node["type"] in UI_ONLY:
            continue
        cls = NODE_CLASS_MAPPINGS[node["type"]]
        declared = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
        listed = [s["name"] for s in node["inputs"]]
        assert listed == [n for n in declared if n in listed], "sockets in declaration order"
        for name, entry in declared.items():
            options = entry[1] if len(entry) > 1 else {}
            [socket] = [s for s in node["inputs"] if s["name"] == name] or [None]
            if is_widget(entry[0], options):
                assert socket is None or (socket["link"] is not None and socket["widget"] == {"name": name})
            else:
                assert socket is not None, f"{node['type']}: socket {name} is not listed"
        assert [o["type"] for o in node["outputs"]] == list(cls.RETURN_TYPES)


@pytest.mark.parametrize("stem", ALL)
def test_every_api_workflow_validates_against_the_node_schemas(stem):
    assert validate(load_workflow(WORKFLOWS / "api" / f"{stem}.json"), NODE_CLASS_MAPPINGS) == []


@pytest.mark.parametrize("stem", SHIPPED)
def test_each_workflow_runs_on_a_fresh_install_and_says_which_model_to_use_on_a_gpu(stem):
    ui, api = load_pair(stem)
    models = [n["inputs"]["model"] for n in api.values() if n["class_type"] in ("RefVideoModelLoader", "RefVideoAudio")]
    assert set(models) <= {"previz", "tiny-random"}
    assert "previz" in models or not any(n["class_type"] == "RefVideoSampler" for n in api.values())
    for node in ui["nodes"]:
        if "tiny-random" in node.get("widgets_values", [])[:1]:
            assert "PLACEHOLDER" in node["title"], "tiny-random is labelled as a placeholder"
    [note] = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "Note"]
    headless = "refvideo demo" if stem == "demo_shot" else f"workflows/api/{stem}.json"
    for words in ("Wan2.1-VACE-1.3B-diffusers", "480p", "Wan2.1-VACE-14B-diffusers", "720p",
                  "ComfyUI/models/diffusers/", headless):
        assert words in note, (stem, words)


@pytest.mark.parametrize("stem", SHIPPED)
def test_groups_frame_the_references(stem):
    ui, api = load_pair(stem)
    for node in ui["nodes"]:
        if node["type"] != "LoadReferenceSet":
            continue
        (x, y), (w, h) = node["pos"], node["size"]
        framing = [g for g in ui["groups"] if g["bounding"][0] <= x and g["bounding"][1] <= y - 30
                   and x + w <= g["bounding"][0] + g["bounding"][2] and y + h <= g["bounding"][1] + g["bounding"][3]]
        assert framing, f"LoadReferenceSet {node['id']} is not inside a group"
        inputs = api[str(node["id"])]["inputs"]
        title = framing[0]["title"].lower()
        for i in (1, 2, 3):  # the group names each subject (a word of its label) and says what it is
            if inputs[f"image_{i}"] != "none":
                assert any(w in title for w in inputs[f"label_{i}"].lower().replace(",", " ").split() if len(w) > 3)
                assert {"character": "character", "environment": "scene", "prop": "prop"}[inputs[f"role_{i}"]] in title


# --------------------------------------------------------------------------- runs


def decode(path: Path) -> np.ndarray:
    if path.is_dir():
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("*.png"))])
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def manifest(path: Path) -> dict:
    with av.open(str(path)) as container:
        return json.loads(container.metadata["refvideo"])


def run(stem: str, overrides: list[str]) -> dict[str, list[Path]]:
    workflow = load_workflow(WORKFLOWS / "api" / f"{stem}.json")
    assert apply_overrides(workflow, overrides, NODE_CLASS_MAPPINGS) == []
    return execute(workflow, NODE_CLASS_MAPPINGS).files


def small(stem: str) -> list[str]:
    """Overrides that render every sampler of ``stem`` at 144p (the plumbing is the point here)."""
    _, api = load_pair(stem)
    return [f"{nid}.resolution=144p" for nid, n in api.items() if n["class_type"] == "RefVideoSampler"]


def assert_thumbnail_shows(stem: str, frames: np.ndarray) -> None:
    """The template thumbnail is the middle frame of this workflow's output (rendered as shipped)."""
    def small_image(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((64, 36), Image.BILINEAR), dtype=float)

    with Image.open(WORKFLOWS / f"{stem}.jpg") as thumb:
        shown = small_image(thumb)
    assert np.abs(small_image(Image.fromarray(frames[len(frames) // 2])) - shown).mean() < 2.5
    assert np.abs(small_image(Image.fromarray(frames[0])) - shown).mean() > 2.5  # not any frame would do


def one_file(files: dict[str, list[Path]], node: str) -> Path:
    [path] = files[node]
    assert path.exists()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stem, node, audio", [("single_shot", "5", False), ("shot_with_audio", "6", True)])
def test_a_shot_renders_81_frames_and_stores_its_generation_info(stem, node, audio):
    files = run(stem, small(stem))
    assert set(files) == {node}
    path = one_file(files, node)
    frames = decode(path)
    assert frames.shape == (81, 144, 256, 3)
    assert_thumbnail_shows(stem, frames)
    info = manifest(path)
    assert info["model"] == "previz" and info["warnings"] == [] and len(info["references"]) == 3
    with av.open(str(path)) as container:
        streams = [s.type for s in container.streams]
        assert ("audio" in streams) == audio
        if audio:
            seconds = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
            assert abs(seconds - 81 / 16) < 0.1


@pytest.mark.slow
def test_the_1080p_shot_plans_1080p_and_runs():
    _, api = load_pair("shot_1080p")
    planned = {n["class_type"]: n["inputs"].get("resolution") for n in api.values()}
    assert planned["RefVideoSampler"] == planned["CreditMeter"] == "1080p"
    frames = decode(one_file(run("shot_1080p", small("shot_1080p")), "5"))
    assert frames.shape == (81, 144, 256, 3)
    assert_thumbnail_shows("shot_1080p", frames)


@pytest.mark.slow
def test_continuity_three_shots_continue_and_join_seamlessly():
    workflow = load_workflow(WORKFLOWS / "api" / "continuity_three_shots.json")
    assert apply_overrides(workflow, small("continuity_three_shots"), NODE_CLASS_MAPPINGS) == []
    result = execute(workflow, NODE_CLASS_MAPPINGS)
    files = result.files
    report = result.ui["14"]["text"][0]  # the continuity report: the previz shots keep to the references
    assert report.count("ok, no findings") == 3, report
    assert set(files) == {"6", "8", "10", "12"}
    shots = [decode(one_file(files, n)) for n in ("6", "8", "10")]
    sequence = decode(one_file(files, "12"))
    assert [len(s) for s in shots] == [81, 81, 81]
    assert len(sequence) == 3 * 81 - 2 * 9  # crossfaded over the 9 frames each shot continues from
    assert_thumbnail_shows("continuity_three_shots", sequence)
    infos = [manifest(files[n][0]) for n in ("6", "8", "10")]
    assert [i["first_frames"] for i in infos] == [0, 9, 9]
    assert len({json.dumps(i["style"], sort_keys=True) for i in infos}) == 1 and infos[0]["style"]
    assert len({tuple(r["hash"] for r in i["references"]) for i in infos}) == 1
    for before, after in zip(shots, shots[1:]):  # a shot opens on the frames the one before ends with
        assert np.abs(before[-9:].astype(float) - after[:9].astype(float)).mean() < 4.0
        assert np.abs(before[-9:].astype(float) - after[40:49].astype(float)).mean() > 4.0  # then moves on
    joint = sequence[81 - 9:81].astype(float)  # the first crossfade: shot 1's end and shot 2's start
    assert np.abs(joint - shots[0][-9:].astype(float)).mean() < 4.0


@pytest.mark.slow
def test_reference_sheet_saves_a_named_set_that_a_second_pass_may_replace():
    files = run("reference_sheet", [])
    assert len(files["2"]) == 3 and decode(files["2"][0].parent).shape[0] == 3
    assert "Mara at the harbour" in reference_library.list_sets()
    first = reference_library.load_set("Mara at the harbour")
    files = run("reference_sheet", ["1.background_3=off"])  # iterate: overwrite is on in this workflow
    second = reference_library.load_set("Mara at the harbour")
    assert first.references[2].mask.min() < 0.5 and second.references[2].mask.min() == 1.0


@pytest.mark.slow
def test_previz_then_diffusion_with_the_animatic_as_control_video():
    files = run("previz_to_diffusion", small("previz_to_diffusion"))
    animatic, clip = one_file(files, "4"), one_file(files, "7")
    assert len(decode(animatic)) == len(decode(clip)) == 21  # tiny-random: 4 fps, 4k+1 frames
    assert_thumbnail_shows("previz_to_diffusion", decode(animatic))
    info = manifest(clip)
    assert info["model"] == "tiny-random" and info["control_video"] == 21
    assert manifest(animatic)["rendered"]["fps"] == info["rendered"]["fps"] == 4.0
