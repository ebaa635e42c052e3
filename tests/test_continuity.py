"""The continuity check: colour, reference flash, likeness and drift logic, the report and the picture."""

from __future__ import annotations

import numpy as np
import pytest

from continuity_clips import PROMPTS, flashed, graded, previz, sample_set
from refvideo.engine.continuity import color, drift
from refvideo.engine.continuity.anchor import anchor_clip
from refvideo.engine.continuity.check import ClipInput, analyse
from refvideo.engine.continuity.likeness import similarities
from refvideo.engine.continuity.picture import draw
from refvideo.engine.continuity.report import thresholds
from refvideo.engine.errors import InputError


@pytest.fixture(scope="module")
def scene():
    refs = sample_set()
    return refs, [previz(refs, prompt, seed) for seed, prompt in enumerate(PROMPTS)]


def checks(report, clip: int = 0) -> list[str]:
    return [f.check for f in report.clips[clip].findings]


# --------------------------------------------------------------------------- colour


def test_lab_conversion_matches_published_values_and_round_trips():
    lab = color.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)
    np.testing.assert_allclose(lab[2], [0.0, 0.0, 0.0], atol=0.01)
    rgb = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    np.testing.assert_allclose(color.lab_to_srgb(color.srgb_to_lab(rgb)), rgb, atol=1e-4)


def test_sliced_wasserstein_is_zero_for_the_same_colours_and_grows_with_a_shift():
    lab = color.srgb_to_lab(np.random.default_rng(1).random((4000, 3)))
    same = color.stats(lab[np.random.default_rng(2).permutation(len(lab))])
    assert color.stats(lab).distance(same) < 1e-6
    shifts = []
    for amount in (5.0, 10.0, 20.0):
        moved = lab.copy()
        moved[:, 2] += amount
        shifts.append(color.stats(lab).distance(color.stats(moved)))
    # a uniform shift of d along b* projects to d * mean|cos| = d / 2 over directions spread on the sphere
    np.testing.assert_allclose(shifts, [2.5, 5.0, 10.0], rtol=0.05)


def test_ungraded_clips_are_not_flagged_and_a_graded_one_is(scene):
    refs, clips = scene
    report = analyse([ClipInput(f"shot{i}", c) for i, c in enumerate(clips)], list(refs))
    assert all(not clip.findings for clip in report.clips), report.text()
    worse = analyse([ClipInput("graded", graded(clips[0]))], list(refs))
    found = [f for f in worse.clips[0].findings if f.check == "color"]
    assert [f.reference for f in found] == ["harbour"]
    assert "warmer" in found[0].message and "darker" in found[0].message
    assert worse.clips[0].color["reference_distance"] > thresholds()["color"]["warning"]


def test_color_anchor_brings_a_graded_clip_back_within_the_threshold(scene):
    refs, clips = scene
    environment = refs.with_role("environment")[0]
    shifted = graded(clips[0])
    report = analyse([ClipInput("to the environment", anchor_clip(shifted, environment.image, 1.0)),
                      ClipInput("to another shot", anchor_clip(shifted, clips[1], 1.0)),
                      ClipInput("half", anchor_clip(shifted, environment.image, 0.5)),
                      ClipInput("graded", shifted)], list(refs))
    distances = [clip.color["reference_distance"] for clip in report.clips]
    limit = thresholds()["color"]["warning"]
    assert distances[0] < limit and distances[1] < limit and distances[0] < distances[2] < distances[3], distances
    assert "color" not in checks(report, 0) and "color" not in checks(report, 1), report.text()
    assert "color" in checks(report, 3)


def test_color_anchor_is_one_transform_per_clip():
    rng = np.random.default_rng(3)
    base = rng.random((1, 24, 32, 3)).astype(np.float32) * 0.5 + 0.2
    ramp = np.linspace(0.7, 1.3, 6, dtype=np.float32)[:, None, None, None]
    frames = np.clip(base * ramp, 0, 1)                  # a lighting change inside the shot
    anchor = rng.random((40, 40, 3)).astype(np.float32) * 0.3 + 0.6
    np.testing.assert_array_equal(anchor_clip(frames, anchor, 0.0), frames)
    out = anchor_clip(frames, anchor, 1.0)
    brightness = out.mean(axis=(1, 2, 3))
    assert np.all(np.diff(brightness) > 0)               # the change inside the shot survives
    matched = color.srgb_to_lab(out).reshape(-1, 3).mean(axis=0)
    target = color.srgb_to_lab(anchor).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(matched, target, atol=1.5)
    with pytest.raises(InputError, match="strength"):
        anchor_clip(frames, anchor, 1.5)


# --------------------------------------------------------------------------- reference flash


def test_a_clip_opening_on_the_character_canvas_is_flagged_with_that_range(scene):
    refs, clips = scene
    report = analyse([ClipInput("flash", flashed(clips[0], refs, 4))], list(refs))
    flashes = [f for f in report.clips[0].findings if f.check == "reference_flash"]
    assert [(f.frames, f.reference, f.severity) for f in flashes] == [((0, 3), "Mara", "error")]
    assert "color" not in checks(report) and "drift" not in checks(report)  # flash frames are judged apart


def test_a_flash_that_is_not_pixel_exact_is_found_too(scene):
    refs, clips = scene
    canvas = flashed(clips[0], refs, 1)[0]
    noisy = clips[0].copy()
    rng = np.random.default_rng(5)
    for i, blend in enumerate((0.9, 0.8, 0.7)):      # the canvas fading into the shot, with grain
        noisy[i] = np.clip(blend * canvas + (1 - blend) * clips[0][i] + rng.normal(0, 0.05, canvas.shape), 0, 1)
    report = analyse([ClipInput("fading flash", noisy)], list(refs))
    assert [f.frames for f in report.clips[0].findings if f.check == "reference_flash"] == [(0, 2)]


def test_previz_clips_of_the_samples_do_not_flash(scene):
    refs, clips = scene
    more = [previz(refs, "fast dolly in", 5), previz(refs, "the character turns to face camera", 6)]
    report = analyse([ClipInput(str(i), c) for i, c in enumerate(clips + more)], list(refs))
    assert not [f for f in report.findings if f.check == "reference_flash"], report.text()


# --------------------------------------------------------------------------- likeness and drift logic


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_similarity_is_the_cosine_of_the_embeddings():
    refs = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    frames = np.stack([unit(1, 0, 0) * 3, unit(1, 1, 0), unit(0, 0, 1)])
    np.testing.assert_allclose(similarities(frames, refs), [[1, 0], [2 ** -0.5, 2 ** -0.5], [0, 0]], atol=1e-12)


def constructed(angles: np.ndarray) -> np.ndarray:
    """Frame embeddings at ``angles`` (radians) from the reference embedding (1, 0)."""
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def test_likeness_drop_is_found_with_its_frame_range():
    angles = np.full(20, 0.3)
    angles[10:14] = 1.0                                  # four frames lose the subject
    angles[3] = 1.0                                      # one frame alone is not a finding
    sim = similarities(constructed(angles), np.array([[1.0, 0.0]]))
    level = np.median(sim, axis=0)
    found = drift.likeness_findings(sim, ["Mara"], level, np.zeros(20, dtype=bool))
    assert [(f.check, f.frames, f.reference) for f in found] == [("likeness", (10, 13), "Mara")]
    excluded = np.zeros(20, dtype=bool)
    excluded[10:14] = True
    assert drift.likeness_findings(sim, ["Mara"], level, excluded) == []


def test_likeness_drift_within_and_across_shots():
    from refvideo.engine.continuity.check import _likeness

    ref = np.array([[1.0, 0.0]])
    steady = similarities(constructed(np.full(16, 0.3)), ref)
    fading = similarities(constructed(np.linspace(0.3, 0.9, 16)), ref)   # identity slips away over the shot
    level = np.median(steady, axis=0)
    none = np.zeros(16, dtype=bool)
    entry, found = _likeness(steady, ["Mara"], level, none, 0)
    assert found == [] and entry["references"]["Mara"]["median"] == pytest.approx(np.cos(0.3), abs=1e-4)
    _, found = _likeness(fading, ["Mara"], level, none, 1)
    kinds = {(f.check, f.frames is None) for f in found}
    assert ("drift", False) in kinds                     # within the shot, last quarter named
    assert ("drift", True) in kinds                      # across shots, against shot 1's level
    within = next(f for f in found if f.check == "drift" and f.frames is not None)
    assert within.frames == (12, 15)


def test_color_drift_across_shots_is_flagged_against_the_first(scene):
    refs, clips = scene
    report = analyse([ClipInput("1", clips[0]), ClipInput("2", graded(clips[1], warmth=30, exposure=0.7))],
                     list(refs))
    across = [f for f in report.clips[1].findings if f.check == "drift"]
    assert across and "from shot 1 to shot 2" in across[0].message
    assert report.clips[1].color["shot_distance"] > thresholds()["drift"]["color"]


# --------------------------------------------------------------------------- report and picture


def test_report_json_has_the_public_shape(scene):
    refs, clips = scene
    report = analyse([ClipInput("a.mp4", flashed(clips[0], refs))], list(refs), encoder_note="No encoder.")
    data = report.to_dict()
    assert set(data) >= {"clips", "plot", "encoder"}
    clip = data["clips"][0]
    assert set(clip) >= {"file", "findings", "color", "likeness"} and clip["likeness"] is None
    finding = clip["findings"][0]
    assert list(finding) == ["check", "severity", "frames", "reference", "message", "fix"]
    assert finding["frames"] == [0, 3]
    assert set(clip["color"]) >= {"exposure", "white_balance", "references", "reference_distance", "shot_distance"}
    headline = report.headline()
    assert headline["clips"][0]["findings"] == ["error:reference_flash"]
    assert "Likeness: not measured. No encoder." in report.text()


def test_picture_shows_swatches_and_flagged_shots(scene):
    refs, clips = scene
    report = analyse([ClipInput("a", clips[0]), ClipInput("b", graded(clips[1], 30, 0.7))], list(refs))
    picture = draw(report, list(refs))
    assert picture.ndim == 3 and picture.shape[1] == 1280 and picture.dtype == np.float32
    red_text = (np.abs(picture - np.array([210, 40, 40]) / 255).max(axis=-1) < 0.02).sum()
    assert red_text > 20                                 # the drifting shot's label is drawn in red


def test_the_lookup_table_applies_the_lab_map_within_one_level():
    from refvideo.engine.continuity.anchor import apply_lut, color_lut, transfer_map

    rng = np.random.default_rng(4)
    frames = rng.random((2, 48, 64, 3)).astype(np.float32)
    anchor = rng.random((40, 40, 3)).astype(np.float32) * 0.4 + 0.5
    matrix, mu_s, mu_t = transfer_map(color.srgb_to_lab(frames), color.srgb_to_lab(anchor))
    offset = mu_t - matrix @ mu_s
    direct = color.lab_to_srgb(color.srgb_to_lab(frames) @ matrix.T.astype(np.float32) + offset.astype(np.float32))
    through_lut = apply_lut(frames, color_lut(matrix, offset))
    assert np.abs(direct - through_lut).max() <= 1.0 / 255 and np.abs(direct - through_lut).mean() < 0.4 / 255
