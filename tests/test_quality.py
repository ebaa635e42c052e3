"""Each quality check fires on its own defect, and a clean reference has no findings."""

from __future__ import annotations

import numpy as np
import pytest

from refvideo.engine.errors import InputError
from refvideo.engine.references import quality
from refvideo.engine.references.quality import CHECKS, check_reference, judge, measure, strict, thresholds
from synthetic_references import (
    as_float,
    blurred,
    busy_background,
    character,
    character_mask,
    cropped_at_edge,
    doubled,
    extreme_aspect,
    jpeg,
    noised,
    shrunk,
)

CLEAN = character()
DEFECTS = {
    "blur": lambda: blurred(CLEAN, 4.0),
    "compression": lambda: jpeg(CLEAN, 5),
    "noise": lambda: noised(CLEAN, 14.0),
    "resolution": lambda: shrunk(CLEAN, 0.3),
    "background": busy_background,
    "cropped": lambda: cropped_at_edge(CLEAN),
    "multiple_subjects": doubled,
    "aspect": extreme_aspect,
}


def checks_fired(image: np.ndarray, **kwargs) -> list[str]:
    return [f.check for f in check_reference(as_float(image), **kwargs)]


def test_a_clean_reference_has_no_findings():
    assert check_reference(as_float(CLEAN)) == []


@pytest.mark.parametrize("check", list(DEFECTS))
def test_each_check_fires_on_its_own_defect_only(check):
    findings = check_reference(as_float(DEFECTS[check]()))
    assert [f.check for f in findings] == [check]
    finding = findings[0]
    assert finding.severity == "warning"
    assert finding.message.endswith(".") and finding.fix.endswith(".")
    assert "{" not in finding.message  # the template was filled


def test_every_check_has_thresholds_messages_and_fixes():
    table = thresholds()
    assert set(table["checks"]) == set(CHECKS)
    for name, spec in table["checks"].items():
        assert spec["measures"] and spec["message"] and spec["fix"], name
        assert any(level in spec for level in ("warning", "error")), name
        for level in ("info", "warning", "error"):
            if level in spec:
                assert set(spec[level]) <= {"above", "below"} and spec[level], f"{name}.{level}"
    assert set(table["roles"]) == {"character", "environment", "prop", "style"}
    assert all(set(checks) <= set(CHECKS) for checks in table["roles"].values())


def test_measures_grow_with_the_defect():
    blur = [measure(as_float(blurred(CLEAN, r)), wanted=["blur"])["blur"][0] for r in (0.5, 2.0, 4.0)]
    noise = [measure(as_float(noised(CLEAN, s)), wanted=["noise"])["noise"][0] for s in (2.0, 8.0, 16.0)]
    block = [measure(as_float(jpeg(CLEAN, q)), wanted=["compression"])["compression"][0] for q in (90, 10, 5)]
    assert blur == sorted(blur) and blur[-1] > 2 * max(blur[0], 0.5)
    assert noise == sorted(noise) and noise[-1] > 1.6 * noise[1]
    assert block[0] < 1.5 and block[1] > 1.8
    # noise measured in luminance levels: 16 levels per channel -> about 16 * 0.67
    assert abs(noise[-1] - 16 * 0.668) < 1.5


def test_severity_comes_from_the_data():
    tiny = character(48, 64)
    assert [(f.check, f.severity) for f in check_reference(as_float(tiny))] == [("resolution", "error")]
    assert judge("aspect", 9.0).severity == "error" and judge("aspect", 3.0).severity == "warning"
    assert judge("aspect", 1.5) is None
    assert "9.0:1" in judge("aspect", 9.0).message


def test_strict_turns_warnings_into_errors():
    findings = check_reference(as_float(noised(CLEAN, 14.0)))
    assert [f.severity for f in strict(findings)] == ["error"]
    assert [f.message for f in strict(findings)] == [f.message for f in findings]


def test_roles_choose_the_checks():
    # an environment fills the frame: no subject checks; a style image may be grainy on purpose
    assert checks_fired(cropped_at_edge(CLEAN), role="environment") == []
    assert checks_fired(busy_background(), role="environment") == []
    assert checks_fired(noised(CLEAN, 14.0), role="style") == []
    assert checks_fired(noised(CLEAN, 14.0), role="prop") == ["noise"]
    with pytest.raises(InputError, match="role"):
        check_reference(as_float(CLEAN), role="hero")


def test_a_trusted_matte_lets_subject_checks_run_on_a_busy_background():
    busy = busy_background()
    matte = character_mask()
    # without a matte the key cannot find the subject, so only the background is reported
    assert "cropped" not in measure(as_float(busy))
    measured = measure(as_float(busy), matte=matte)
    assert measured["multiple_subjects"][0] == 1 and measured["cropped"][0] == 0
    assert checks_fired(busy, matte=matte) == ["background"]
    two = np.concatenate([matte[:, :384], matte[:, 384:]], axis=1)
    two[:, 380:390] = 0  # split the figure down the middle: two regions
    assert measure(as_float(busy), matte=two)["multiple_subjects"][0] == 2


def test_cropped_names_the_edge():
    finding = check_reference(as_float(cropped_at_edge(CLEAN)))[0]
    assert "touches the bottom edge of the frame" in finding.message and "full subject" in finding.fix


def test_edge_contact_and_count_subjects_on_simple_mattes():
    params = thresholds()["parameters"]
    matte = np.zeros((100, 200), dtype=np.float32)
    matte[20:80, 20:60] = 1
    matte[20:80, 120:170] = 1
    matte[50:52, 100:102] = 1  # a speck is not a subject
    assert quality.count_subjects(matte, params) == 2
    assert quality.edge_contact(matte, 2) == (0.0, "")
    matte[60:, 20:60] = 1
    share, sides = quality.edge_contact(matte, 2)
    assert sides == "the bottom edge" and share == pytest.approx(40 / 200)
    matte[30:40, :] = 1
    assert quality.edge_contact(matte, 2)[1] == "the bottom, left and right edges"


def test_blank_images_are_refused_as_blank_and_nothing_else():
    for value in (0.0, 1.0):  # all black; all white (what a fully transparent PNG becomes)
        flat = np.full((600, 600, 3), value, dtype=np.float32)
        assert [(f.check, f.severity) for f in check_reference(flat)] == [("blank", "error")]
    subject = np.random.default_rng(0).random((600, 600, 3), dtype=np.float32)
    found = check_reference(subject, matte=np.zeros((600, 600), np.float32))
    assert [(f.check, f.severity) for f in found][0] == ("empty_subject", "error")


def test_nan_or_infinite_pixels_in_a_float_tiff_blacken_only_themselves(tmp_path):
    from PIL import Image

    from refvideo.engine.references.images import read_image_file

    values = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (256, 1))
    values[10, 10], values[20, 20] = np.nan, np.inf
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    loaded = read_image_file(tmp_path / "f.tif", input_name="image_1")
    assert loaded.rgb[:, 255].min() == 1.0 and loaded.rgb[10, 10].max() == 0.0  # not a black image
    assert any("NaN or infinite" in note for note in loaded.notes)
    assert "blank" not in [f.check for f in check_reference(loaded.rgb, role="style")]
