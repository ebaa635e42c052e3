"""LoadReferenceSet as ComfyUI runs it: schema, workflow runs, saved sets, IS_CHANGED, containment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from refvideo.engine import host
from refvideo.engine.errors import InputError, StorageError
from refvideo.engine.references.reference import ReferenceSet
from refvideo.headless import runner
from refvideo.headless.schema import input_specs, validator_inputs
from refvideo.nodes.reference_set import LoadReferenceSet
from synthetic_references import as_float, character, character_mask, fill_input_folder, save_png

CLASSES = {"LoadReferenceSet": LoadReferenceSet}
PACK_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def inputs(refvideo_home):
    fill_input_folder(host.input_dir())
    return host.input_dir()


def node(**inputs) -> dict:
    base = {"image_1": "mara.png", "role_1": "character", "label_1": "Mara", "image_2": "none",
            "role_2": "environment", "label_2": "", "image_3": "none", "role_3": "prop", "label_3": ""}
    return {"1": {"class_type": "LoadReferenceSet", "inputs": {**base, **inputs}}}


def run(**inputs) -> tuple[runner.RunResult, str]:
    result = runner.execute(node(**inputs), CLASSES)
    return result, result.ui["1"]["text"][0]


def call(**inputs) -> tuple:
    base = {"image_1": "mara.png", "role_1": "character", "label_1": "Mara"}
    return LoadReferenceSet().load(**{**base, **inputs})["result"]


def test_schema_has_the_public_inputs_and_lists_files_samples_and_sets(inputs):
    specs = input_specs(LoadReferenceSet)
    for i in (1, 2, 3):
        assert specs[f"image_in_{i}"].type == "IMAGE" and not specs[f"image_in_{i}"].required
        assert specs[f"role_{i}"].choices == ["character", "environment", "prop", "style"]
        assert specs[f"label_{i}"].type == "STRING"
    assert specs["image_1"].choices[:2] == ["grainy.png", "mara.png"] and "none" not in specs["image_1"].choices
    assert specs["image_2"].choices[0] == "none" and specs["image_2"].default == "none"
    # the frontend's upload button belongs to the first image_upload combo only
    assert [n for n, spec in specs.items() if spec.options.get("image_upload")] == ["image_1"]
    assert specs["background_1"].choices == ["auto", "off", "flat background", "rembg"]
    assert specs["background_1"].default == "auto"
    assert specs["saved_set"].choices == ["none"]
    assert LoadReferenceSet.OUTPUT_NODE is True
    assert LoadReferenceSet.RETURN_TYPES == ("REFVIDEO_REFSET", "IMAGE", "MASK", "STRING")
    # ComfyUI keeps its own "value not in list" check for the file inputs
    assert validator_inputs(LoadReferenceSet) == {"save_as"}


@pytest.mark.slow
def test_a_workflow_run_outputs_the_set_preview_mask_and_report(inputs):
    _, text = run(image_2="grainy.png", role_2="prop", label_2="lamp", background_1="flat background")
    assert "warning [noise]" in text and '1. character "Mara"' in text
    refs, images, masks, report = call(image_2="grainy.png", role_2="prop", label_2="lamp",
                                       background_1="flat background")
    assert isinstance(refs, ReferenceSet) and len(refs) == 2 and report == text
    assert isinstance(images, torch.Tensor) and images.shape == (2, 640, 512, 3) and images.dtype == torch.float32
    assert isinstance(masks, torch.Tensor) and masks.shape == (2, 640, 512)
    truth = character_mask(512, 640) > 0.5
    subject = masks[0].numpy() > 0.5
    assert (subject & truth).sum() / (subject | truth).sum() > 0.95
    assert masks[1].min() == 0.0  # background_2 auto (the default): the prop was cut out of its backdrop
    assert [r.label for r in refs] == ["Mara", "lamp"] and refs.references[0].sha256
    assert refs.findings[0]["check"] == "noise" and refs.findings[0]["reference"] == 2


def test_an_image_socket_wins_over_its_file(inputs):
    socket = torch.from_numpy(as_float(character(256, 320, seed=3))[None])
    refs, images, _, _ = call(image_in_1=socket)
    assert refs.references[0].source == "image_in_1" and images.shape == (1, 320, 256, 3)
    assert np.array_equal(refs.references[0].image, socket[0].numpy())


@pytest.mark.slow
def test_save_then_load_by_name_gives_identical_tensors(inputs):
    saved = call(image_2="grainy.png", background_1="flat background", save_as="Mara sheet")
    assert "Saved as 'Mara sheet'" in saved[3]
    assert "Mara sheet" in input_specs(LoadReferenceSet)["saved_set"].choices
    loaded = call(image_1="grainy.png", saved_set="Mara sheet")
    assert loaded[3].startswith("Loaded the saved reference set 'Mara sheet'")
    for a, b in zip(saved[0], loaded[0]):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.sha256 == b.sha256
    assert torch.equal(saved[1], loaded[1]) and torch.equal(saved[2], loaded[2])
    assert "Already saved, unchanged" in call(image_2="grainy.png", background_1="flat background",
                                              save_as="Mara sheet")[3]
    with pytest.raises(StorageError, match="already exists"):
        call(label_1="Other", save_as="Mara sheet")
    assert "Replaced" in call(label_1="Other", save_as="Mara sheet", overwrite=True)[3]


def test_save_name_is_checked_before_the_run(inputs):
    problems = runner.validate(node(save_as="../escape"), CLASSES)
    assert [(p.type, p.input) for p in problems] == [("bad_value", "save_as")]
    assert "contains '..'" in problems[0].message
    assert LoadReferenceSet.VALIDATE_INPUTS(save_as="") is True


@pytest.mark.parametrize("name", ["../mara.png", "/etc/passwd", "samples/../../mara.png", "sub/../mara.png"])
def test_traversal_is_refused_through_the_api_and_the_function(inputs, name):
    problems = runner.validate(node(image_1=name), CLASSES)
    assert [(p.type, p.input) for p in problems] == [("bad_value", "image_1")]
    assert "not in the list" in problems[0].message
    with pytest.raises(InputError) as caught:
        call(image_1=name)
    assert caught.value.input == "image_1"


def test_a_symlink_out_of_the_input_folder_is_refused(inputs, tmp_path):
    save_png(tmp_path / "private.png", character(64, 80))
    os.symlink(tmp_path / "private.png", inputs / "link.png")
    assert "link.png" in input_specs(LoadReferenceSet)["image_1"].choices
    with pytest.raises(InputError, match="outside"):
        call(image_1="link.png")


def test_is_changed_follows_file_contents_and_saved_sets(inputs):
    widgets = {"image_1": "mara.png", "image_2": "none", "image_3": "none", "role_1": "character",
               "image_in_1": None, "saved_set": "none"}
    first = LoadReferenceSet.IS_CHANGED(**widgets)
    assert LoadReferenceSet.IS_CHANGED(**widgets) == first
    os.utime(inputs / "mara.png", (1, 1))  # touched, same bytes: no re-run
    assert LoadReferenceSet.IS_CHANGED(**widgets) == first
    save_png(inputs / "mara.png", character(512, 640, seed=7))
    edited = LoadReferenceSet.IS_CHANGED(**widgets)
    assert edited != first
    call(save_as="Sheet")
    with_set = LoadReferenceSet.IS_CHANGED(**{**widgets, "saved_set": "Sheet"})
    call(label_1="changed", save_as="Sheet", overwrite=True)
    assert LoadReferenceSet.IS_CHANGED(**{**widgets, "saved_set": "Sheet"}) != with_set


def test_strict_turns_the_noise_warning_into_a_refusal(inputs):
    with pytest.raises(runner.NodeFailed) as caught:
        runner.execute(node(image_1="grainy.png", strict=True), CLASSES)
    assert caught.value.to_dict()["input"] == "image_1" and "noisy" in str(caught.value)


@pytest.mark.slow
def test_runs_without_torch(inputs, tmp_path):
    """The previz demo runs on machines without torch: the node then returns numpy arrays."""
    site = Path(np.__file__).resolve().parent.parent
    sandbox = tmp_path / "no_torch"
    sandbox.mkdir()
    for name in os.listdir(site):
        if name.split(".")[0].split("-")[0].lower() in ("numpy", "pil", "pillow", "tqdm"):
            os.symlink(site / name, sandbox / name)
    os.symlink(PACK_ROOT, sandbox / "refvideo")
    script = textwrap.dedent("""
        import importlib.util, sys
        assert importlib.util.find_spec("torch") is None
        from refvideo.engine import host
        from refvideo.nodes.reference_set import LoadReferenceSet
        host.set_progress_bars(False)
        out = LoadReferenceSet().load(image_1="mara.png", role_1="character", label_1="",
                                      background_1="flat background")["result"]
        assert type(out[1]).__module__ == "numpy" and out[1].shape == (1, 640, 512, 3), type(out[1])
        assert type(out[2]).__module__ == "numpy" and out[2].shape == (1, 640, 512)
        assert "torch" not in sys.modules
        print("ok")
    """)
    env = {"PATH": os.environ.get("PATH", ""), "REFVIDEO_HOME": os.environ["REFVIDEO_HOME"],
           "PYTHONPATH": str(sandbox)}
    done = subprocess.run([sys.executable, "-S", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
