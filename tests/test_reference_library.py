"""Named reference sets: identical reload, overwrite rules, atomic saves, names, corrupt files."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from refvideo.engine import host
from refvideo.engine.errors import InputError, Interrupted, StorageError
from refvideo.engine.references import library as reference_library
from refvideo.engine.references.images import pixels_sha256
from refvideo.engine.references.library import list_sets, load_set, save_set, set_manifest
from refvideo.engine.references.matting import flat_background_key
from refvideo.engine.references.reference import Reference, ReferenceSet
from synthetic_references import as_float, busy_background, character

BAD_NAMES = ["", "   ", "a/b", "a\\b", "..", "../up", "x..y", ".hidden", "name.", "con", "NUL.txt", "none",
             "x" * 65, "tab\there", "semi;colon", "star*", 7]


def make_set(label: str = "Mara, red coat", seed: int = 0) -> ReferenceSet:
    person = as_float(character(96, 128, seed=seed))
    scene = as_float(busy_background(64, 48))
    return ReferenceSet((
        Reference(person, flat_background_key(person).matte, "character", label, pixels_sha256(person), "mara.png"),
        Reference(scene, np.ones((48, 64), np.float32), "environment", "", pixels_sha256(scene), "street.png"),
    ))


def assert_same(a: ReferenceSet, b: ReferenceSet) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and x.image.dtype == y.image.dtype == np.float32
        assert np.array_equal(x.mask, y.mask) and x.mask.dtype == y.mask.dtype == np.float32
        assert (x.role, x.label, x.sha256, x.source) == (y.role, y.label, y.sha256, y.source)


def test_save_then_load_reproduces_identical_arrays():
    original = make_set()
    folder, status = save_set(original, "Mara", backgrounds=["flat background", "off"])
    assert status == "saved" and folder == host.sets_dir() / "Mara"
    loaded = load_set("Mara")
    assert_same(original, loaded)
    assert loaded.name == "Mara"
    manifest = set_manifest("Mara")
    assert manifest["format"] == 1 and manifest["name"] == "Mara" and manifest["pack_version"]
    assert manifest["created"] == manifest["updated"]
    assert [r["background"] for r in manifest["references"]] == ["flat background", "off"]
    assert manifest["references"][0]["sha256"] == original.references[0].sha256
    assert list_sets() == ["Mara"]


def test_a_reference_with_a_stale_hash_is_saved_under_its_real_pixel_hash():
    ref = make_set().references[1]
    stale = Reference(ref.image, ref.mask, ref.role, ref.label, "0" * 64, ref.source)
    save_set(ReferenceSet((stale,)), "Stale")
    [entry] = set_manifest("Stale")["references"]
    assert entry["sha256"] == pixels_sha256(ref.image) and entry["image"] == f"image-{entry['sha256'][:16]}.png"
    assert np.array_equal(load_set("Stale").references[0].image, ref.image)


def test_saving_never_overwrites_without_permission():
    save_set(make_set(), "Shot A")
    assert save_set(make_set(), "Shot A") == (host.sets_dir() / "Shot A", "unchanged")
    with pytest.raises(StorageError, match="already exists") as caught:
        save_set(make_set(label="someone else"), "Shot A")
    assert caught.value.input == "save_as" and "overwrite" in caught.value.fix
    assert load_set("Shot A").references[0].label == "Mara, red coat"
    created = set_manifest("Shot A")["created"]
    _, status = save_set(make_set(label="someone else", seed=3), "Shot A", overwrite=True)
    assert status == "replaced"
    manifest = set_manifest("Shot A")
    assert manifest["created"] == created and manifest["references"][0]["label"] == "someone else"
    files = sorted(p.name for p in (host.sets_dir() / "Shot A").iterdir())
    listed = sorted(f for r in manifest["references"] for f in (r["image"], r["mask"]))
    assert files == sorted(listed + ["manifest.json"])  # the replaced images are gone


def test_an_interrupted_save_leaves_the_previous_set(monkeypatch):
    save_set(make_set(), "Keep")
    before = load_set("Keep")

    def interrupted(*args, **kwargs):
        raise Interrupted()

    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(reference_library, "atomic_write_json", interrupted)
        save_set(make_set(label="new", seed=5), "Keep", overwrite=True)
    assert_same(before, load_set("Keep"))
    assert not [p for p in (host.sets_dir() / "Keep").iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_bad_names_are_refused(name):
    with pytest.raises(InputError) as caught:
        save_set(make_set(), name)
    assert caught.value.input == "save_as"
    with pytest.raises(InputError):
        load_set(name)
    assert not host.sets_dir().exists() or list_sets() == []


def test_a_set_folder_linked_out_of_the_library_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    save_set(make_set(), "Real")
    shutil.copytree(host.sets_dir() / "Real", outside)
    os.symlink(outside, host.sets_dir() / "Linked")
    with pytest.raises(InputError, match="outside"):
        load_set("Linked")


def test_loading_an_unknown_set_lists_the_saved_ones():
    save_set(make_set(), "Alpha")
    with pytest.raises(StorageError, match="no reference set named 'Beta'") as caught:
        load_set("Beta")
    assert "Alpha" in caught.value.fix


def _edit_manifest(name: str, change) -> None:
    path = host.sets_dir() / name / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set_field(index: int, key: str, value):
    def change(data):
        data["references"][index][key] = value
    return change


CORRUPTIONS = {
    "not json": (lambda name: (host.sets_dir() / name / "manifest.json").write_text("{broken"), "not valid JSON"),
    "not an object": (lambda name: (host.sets_dir() / name / "manifest.json").write_text("[1, 2]"),
                      "not a JSON object"),
    "wrong format": (lambda name: _edit_manifest(name, lambda d: d.update(format=99)), "format is 99"),
    "no references": (lambda name: _edit_manifest(name, lambda d: d.update(references=[])), "1-3 references"),
    "four references": (lambda name: _edit_manifest(name, lambda d: d.update(references=d["references"] * 2)),
                        "1-3 references"),
    "bad role": (lambda name: _edit_manifest(name, _set_field(0, "role", "villain")), "unknown role 'villain'"),
    "label not text": (lambda name: _edit_manifest(name, _set_field(1, "label", 5)), "field 'label'"),
    "file outside": (lambda name: _edit_manifest(name, _set_field(0, "image", "../Other/image.png")),
                     "outside the set"),
    "absolute file": (lambda name: _edit_manifest(name, _set_field(0, "mask", "/etc/passwd")), "outside the set"),
    "missing file": (lambda name: _edit_manifest(name, _set_field(1, "image", "image-gone.png")), "missing"),
    "edited label hash": (lambda name: _edit_manifest(name, _set_field(0, "sha256", "0" * 64)),
                          "do not match the hashes"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_or_hand_edited_sets_are_refused_clearly(kind):
    save_set(make_set(), "Broken")
    corrupt, words = CORRUPTIONS[kind]
    corrupt("Broken")
    with pytest.raises(StorageError) as caught:
        load_set("Broken")
    assert words in str(caught.value) and "Broken" in str(caught.value)
    assert "overwrite" in caught.value.fix
    # a damaged set is only replaced on purpose
    with pytest.raises(StorageError):
        save_set(make_set(), "Broken")
    assert save_set(make_set(), "Broken", overwrite=True)[1] == "replaced"
    assert_same(make_set(), load_set("Broken"))


def test_replaced_or_damaged_image_files_are_detected():
    save_set(make_set(), "Pixels")
    entry = set_manifest("Pixels")["references"][0]
    image_path = host.sets_dir() / "Pixels" / entry["image"]
    pixels = np.asarray(Image.open(image_path)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(image_path)
    with pytest.raises(StorageError, match="do not match"):
        load_set("Pixels")
    image_path.write_bytes(b"not a png")
    with pytest.raises(StorageError, match="cannot be read"):
        load_set("Pixels")


def test_list_skips_hidden_and_unfinished_folders():
    save_set(make_set(), "b set")
    save_set(make_set(), "A set")
    (host.sets_dir() / ".partial").mkdir()
    (host.sets_dir() / "no manifest").mkdir()
    assert list_sets() == ["A set", "b set"]
