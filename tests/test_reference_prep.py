"""Preparing a reference set: checks before work, mattes per mode, strict, the report, the preview."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refvideo.engine import host
from refvideo.engine.errors import InputError, ModelNotFound
from refvideo.engine.references.images import from_uint8, to_uint8
from refvideo.jobs import reference_prep
from refvideo.jobs.reference_prep import (
    AUTO,
    FLAT,
    OFF,
    REMBG,
    ReferenceInput,
    inputs_fingerprint,
    prepare_set,
    preview_batch,
    reference_set,
)
from synthetic_references import as_float, character, character_mask, fill_input_folder, noised, save_png

GRAINY = noised(character(512, 640), 14.0)


@pytest.fixture
def inputs(refvideo_home):
    folder = host.input_dir()
    fill_input_folder(folder)
    save_png(folder / "wide.png", character(900, 520, positions=[(0.5, 0.1, 0.8)]))
    return folder


def slot(index: int = 1, name: str = "mara.png", **kwargs) -> ReferenceInput:
    return ReferenceInput(index, name, **{"background": OFF, **kwargs})


@pytest.mark.parametrize("slots, field, words", [
    ([slot(1, "none")], "image_1", "no reference image"),
    ([slot(1, role="hero")], "role_1", "not a role"),
    ([slot(1), slot(2, label="x" * 300)], "label_2", "at most"),
    ([slot(1), slot(2, background="chroma")], "background_2", "not a background mode"),
    ([slot(1), slot(2), slot(3, "../mara.png")], "image_3", "leave its folder"),
    ([slot(i) for i in (1, 2, 3, 4)], "image_1", "at most 3"),
])
def test_bad_inputs_are_refused_before_any_image_is_read(inputs, monkeypatch, slots, field, words):
    monkeypatch.setattr(reference_prep, "read_image_file", lambda *a, **k: pytest.fail("an image was decoded"))
    with pytest.raises(InputError) as caught:
        prepare_set(slots)
    assert caught.value.input == field and words in str(caught.value)


def test_a_missing_rembg_model_is_refused_before_decoding(inputs, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("REMBG_HOME", raising=False)
    monkeypatch.setattr(reference_prep, "read_image_file", lambda *a, **k: pytest.fail("an image was decoded"))
    with pytest.raises(ModelNotFound, match="u2netp.onnx"):
        prepare_set([slot(1), slot(2, background=REMBG)])


def test_mattes_follow_the_background_mode(inputs):
    rgba = np.dstack([character(512, 640), (character_mask(512, 640) * 255).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(inputs / "cutout.png")
    prepared = prepare_set([slot(1, background=OFF), slot(2, background=FLAT), slot(3, "cutout.png")])
    plain, keyed, cut = prepared.references
    assert plain.mask.min() == 1.0
    truth = character_mask(512, 640) > 0.5
    for ref in (keyed, cut):
        subject = ref.mask > 0.5
        assert (subject & truth).sum() / (subject | truth).sum() > 0.95
    assert np.array_equal(cut.mask, from_uint8(to_uint8(character_mask(512, 640))))
    assert prepared.backgrounds == (OFF, FLAT, OFF)


def test_the_report_and_findings_say_what_was_found(inputs):
    prepared = prepare_set([slot(1, label="Mara, red coat"), slot(2, "grainy.png", role="prop")])
    report = prepared.report
    assert report.splitlines()[0] == "2 references:"
    assert '1. character "Mara, red coat": mara.png, 512x640, background off' in report
    assert "ok: no findings" in report and "warning [noise]" in report
    assert [f["check"] for f in prepared.references.findings] == ["noise"]
    assert prepared.references.findings[0]["reference"] == 2
    assert prepared.findings[0] == () and prepared.findings[1][0].check == "noise"


def test_strict_refuses_warnings_and_names_the_image(inputs):
    with pytest.raises(InputError) as caught:
        prepare_set([slot(1), slot(2, "none"), slot(3, "grainy.png")], strict=True)
    assert caught.value.input == "image_3" and "noisy" in str(caught.value) and "strict" in caught.value.fix
    assert "reference 2 (grainy.png)" in str(caught.value)
    with pytest.raises(InputError) as caught:
        prepare_set([slot(1), slot(2, image=as_float(GRAINY)[None])], strict=True)
    assert caught.value.input == "image_in_2"


def test_error_findings_refuse_even_without_strict(inputs):
    Image.fromarray(character(30, 40)).save(inputs / "tiny.png")
    with pytest.raises(InputError, match="too small"):
        prepare_set([slot(1, "tiny.png")])


def test_sockets_win_over_files(inputs):
    socket = as_float(character(96, 128, seed=9))[None]
    prepared = prepare_set([slot(1, image=socket)])
    ref = prepared.references.references[0]
    assert ref.source == "image_in_1" and ref.image.shape == (128, 96, 3)


def test_preview_fits_every_reference_into_one_batch(inputs):
    prepared = prepare_set([slot(1, background=FLAT), slot(2, "wide.png")])
    images, masks = preview_batch(prepared.references)
    assert images.shape == (2, 640, 900, 3) and masks.shape == (2, 640, 900)
    keyed = prepared.references.references[0]
    # the keyed reference: background turned white, the subject kept, centred without scaling
    subject = keyed.mask == 1.0
    window = images[0, :, 194:706]
    assert np.allclose(window[subject], keyed.image[subject]) and np.allclose(window[keyed.mask == 0], 1.0)
    assert masks[1].max() == 1.0 and masks[0][:, :194].max() == 0.0  # padding is not subject


def test_reference_set_saves_and_loads_by_name(inputs):
    saved = reference_set([slot(1, label="Mara")], save_as=" Mara ")
    assert saved.references.name == "Mara" and "Saved as 'Mara'" in saved.report
    loaded = reference_set([slot(1, "none")], saved_set="Mara")
    assert loaded.report.startswith("Loaded the saved reference set 'Mara'")
    assert np.array_equal(loaded.references.references[0].image, saved.references.references[0].image)
    with pytest.raises(InputError, match="path separator"):
        reference_set([slot(1)], save_as="a/b")


def test_fingerprint_follows_file_contents(inputs):
    before = inputs_fingerprint(["mara.png", "none", "none"])
    assert inputs_fingerprint(["mara.png", "none", "none"]) == before
    save_png(inputs / "mara.png", character(512, 640, seed=4))
    assert inputs_fingerprint(["mara.png", "none", "none"]) != before
    assert inputs_fingerprint(["../escape.png"]) != inputs_fingerprint(["missing.png"])


def test_auto_background_cuts_out_subjects_and_keeps_places_whole(inputs, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)  # no rembg model: the flat key serves subjects
    monkeypatch.delenv("REMBG_HOME", raising=False)
    busy = np.full((300, 400, 3), 128, np.uint8)  # half the border busy: no flat backdrop to key
    busy[:, :200] = (np.random.default_rng(0).random((300, 200, 3)) * 255).astype(np.uint8)
    save_png(inputs / "street.png", busy)
    prepared = prepare_set([slot(1, background=AUTO), slot(2, "mara.png", role="environment", background=AUTO),
                            slot(3, "street.png", role="prop", background=AUTO)])
    subject, place, busy = prepared.references
    assert prepared.backgrounds == (FLAT, OFF, OFF)
    truth = character_mask(512, 640) > 0.5
    cut = subject.mask > 0.5
    assert (cut & truth).sum() / (cut | truth).sum() > 0.95  # the backdrop was keyed out
    assert place.mask.min() == 1.0 and busy.mask.min() == 1.0  # an environment goes in whole
    assert "auto: flat background" in prepared.report
    assert "background kept" in prepared.report and "rembg" in prepared.report  # says how to fix it


def test_auto_background_uses_rembg_when_installed(inputs, monkeypatch):
    import os
    from pathlib import Path

    folder = os.environ.get("REFVIDEO_TEST_U2NET_HOME")
    if not folder or not (Path(folder) / "u2netp.onnx").is_file():
        pytest.skip("REFVIDEO_TEST_U2NET_HOME is not set to a folder holding u2netp.onnx")
    monkeypatch.setenv("U2NET_HOME", folder)
    prepared = prepare_set([slot(1, background=AUTO), slot(2, role="style", background=AUTO)])
    assert prepared.backgrounds == (REMBG, OFF)
