"""Previz action: blocking read from the shot text, measured on the rendered frames.

The scene is test_previz's: a red striped character "Mara" (found by colour), a green prop
"lantern" nearer the camera and a blue-green textured environment. Renders are 256x144 at
a few frames per second, so each takes a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from refvideo.engine.camera.path import shot_camera
from refvideo.engine.errors import InputError
from refvideo.engine.previz.action import Motion
from refvideo.engine.previz.blocking import block_scene, blocking_data
from refvideo.engine.previz.render import render_animatic
from refvideo.engine.references.reference import ReferenceSet
from refvideo.models import registry
from refvideo.models.spec import LoadOptions
from test_previz import SCENE, character, environment, red_mask, render


def layout_masks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The character's and the prop's pixels in a layout frame (layers are coloured far to near: red, blue)."""
    return (frame[..., 0] > 0.7) & (frame[..., 1] < 0.4), (frame[..., 2] > 0.7) & (frame[..., 0] < 0.4)


def inner(mask: np.ndarray) -> np.ndarray:
    """``mask`` without a two-pixel rim (away from anti-aliased edges)."""
    return mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)


def nearer_than_background(frame: np.ndarray) -> np.ndarray:
    """The pixels of a depth frame brighter than its darkest (the background)."""
    return frame[..., 0] > frame[..., 0].min() + 0.05


def centroid_x(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean()) if mask.any() else float("nan")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def draw(prompt: str, output: str = "animatic", refs: ReferenceSet = SCENE, frames: int = 13) -> np.ndarray:
    """``frames`` frames at 256x144 of ``prompt`` read against ``refs``, in the given pass."""
    camera = shot_camera(prompt, "", refs)
    return render_animatic(refs, camera, size=(256, 144), frames=frames, fps=4.0, output=output).frames


# --------------------------------------------------------------------------- the action


def test_a_walk_from_left_to_right_moves_the_centroid_across():
    frames = render("Mara walks from the left of frame to the right.").frames
    xs = np.array([centroid_x(red_mask(f)) for f in frames])
    width = frames.shape[2]
    assert xs[0] < 0.35 * width and xs[-1] > 0.65 * width, xs
    assert np.all(np.diff(xs) > -1.0), xs  # always on the way right (a pixel of rounding allowed)


def test_a_walk_bobs_and_keeps_its_depth():
    frames = draw("Mara walks to the right.", refs=ReferenceSet((character(), environment())), frames=25)
    masks = [red_mask(f) for f in frames]
    heights = np.array([np.flatnonzero(m.any(axis=1)).size for m in masks], np.float32)
    assert np.ptp(heights) <= 0.1 * heights.mean()  # same depth: about the same size (off-axis a little smaller)
    camera = shot_camera("Mara walks to the right.", "", SCENE)
    motion = Motion(block_scene(SCENE), camera.actions, aspect=16 / 9, focal=1.4, widths=[0.4, 0.9],
                    settings=blocking_data()["action"])
    ys = np.array([motion.figures(t)[0].body.y for t in np.linspace(0, 1, 401)])
    rest = ys[0]
    peaks = np.count_nonzero((ys[1:-1] > ys[:-2]) & (ys[1:-1] >= ys[2:]) & (ys[1:-1] > rest + 1e-4))
    assert peaks >= 3 and ys[-1] == rest and ys.min() >= rest  # steps lift the body, it lands on the floor


def test_enters_from_the_right_absent_first_present_last():
    frames = render("Mara enters from the right.").frames
    first, last = red_mask(frames[0]), red_mask(frames[-1])
    assert first.sum() == 0
    assert last.sum() > 500 and abs(centroid_x(last) - frames.shape[2] / 2) < 0.1 * frames.shape[2]
    xs = [centroid_x(red_mask(f)) for f in frames if red_mask(f).sum() > 50]
    assert np.all(np.diff(xs) < 1.0)  # coming in from the right: moving left


def test_exits_frame_left_present_first_absent_last():
    frames = render("Mara exits frame left.").frames
    assert red_mask(frames[0]).sum() > 500 and red_mask(frames[-1]).sum() == 0


def test_turning_to_face_the_camera_changes_the_silhouette():
    frames = render("Mara turns to face the camera.").frames
    first, last = red_mask(frames[0]), red_mask(frames[-1])
    assert iou(first, last) < 0.9
    assert last.sum() > first.sum() * 1.3  # side-on first (narrow), facing us last (full width)


def test_turning_away_shows_the_darker_back():
    frames = render("Mara turns away from the camera.").frames
    mid = frames.shape[2] // 2
    face, back = frames[0, :, mid - 20:mid + 20], frames[-1, :, mid - 20:mid + 20]
    assert back[..., 0].max() < face[..., 0].max() - 0.2  # the back view is darkened


def test_walking_towards_the_camera_grows_and_passes_in_front_of_the_prop():
    frames = draw("Mara walks to the right, then walks towards the camera.", output="layout", frames=17)
    red, blue = layout_masks(frames)
    heights = [np.flatnonzero(m.any(axis=1)).size for m in red]
    assert heights[-1] > 1.3 * heights[8]  # nearer: larger
    her_cols, prop_cols = set(np.flatnonzero(red[8].any(axis=0))), set(np.flatnonzero(blue[8].any(axis=0)))
    assert her_cols & prop_cols and blue[8].sum() == blue[0].sum()  # behind the prop there: it stays whole
    assert blue[-1].sum() < 0.9 * blue[8].sum()  # nearer than the prop now: she covers it


def test_a_lifted_prop_follows_the_character():
    frames = draw("Mara lifts the lantern and carries it to the left.", output="layout")
    rx, gx = zip(*[[centroid_x(m) for m in layout_masks(f)] for f in frames])
    assert gx[0] > rx[0] + 30  # at rest the lantern stands to her right
    assert gx[-1] < frames.shape[2] * 0.4 and abs(gx[-1] - rx[-1]) < 30  # carried to the left, at her side


def test_night_falls_lowers_the_brightness_over_time():
    frames = render("Night falls.").frames
    means = frames.mean(axis=(1, 2, 3))
    assert means[-1] < 0.75 * means[0]
    assert np.all(np.diff(means) <= 1e-4)


def test_lights_coming_on_brighten_and_rain_and_fog_change_the_picture():
    lit = render("The lamps come on.").frames.mean(axis=(1, 2, 3))
    assert lit[-1] > lit[0] * 1.08
    rain = render("It starts to rain.").frames
    streaked = np.abs(rain[-1] - rain[0]).max(axis=-1) > 0.05
    assert 0.01 < streaked.mean() < 0.2 and np.abs(rain[1] - rain[0]).max() < 1e-6  # streaks, once it has started
    foggy = render("Fog rolls in.").frames
    assert foggy[-1].std() < 0.7 * foggy[0].std()  # a veil flattens the contrast


def test_a_locked_off_shot_without_action_stays_still():
    result = render("Locked-off camera. Mara waits by the water, then dances.")
    frames = result.frames
    assert np.abs(frames - frames[0]).max() == 0.0
    assert "dances" in " ".join(result.info["warnings"])  # the action it cannot draw is reported


# --------------------------------------------------------------------------- control passes


def test_depth_is_near_bright_in_layer_order_and_overlaps_show_the_nearer_layer():
    frames = draw("Mara walks to the right.", output="depth")
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    layout = draw("Mara walks to the right.", output="layout")
    her, lantern = layout_masks(layout[0])
    depth = frames[0, ..., 0]
    assert depth[inner(lantern)].min() > depth[inner(her)].max() > depth[~(her | lantern)].max()
    alone = draw("Mara walks to the right.", output="layout", refs=ReferenceSet((character(), environment())))
    overlap = inner(layout_masks(alone[-1])[0] & layout_masks(layout[-1])[1])
    assert overlap.sum() > 20  # she ends up behind the lantern
    assert np.all(frames[-1, ..., 0][overlap] == depth[inner(lantern)].max())  # the nearer (prop) value wins


def test_depth_moves_with_the_camera():
    dolly = draw("fast dolly in", output="depth")
    truck = draw("truck right", output="depth")
    first, last = nearer_than_background(dolly[0]), nearer_than_background(dolly[-1])
    assert dolly[-1, ..., 0][last].max() > dolly[0, ..., 0][first].max() + 0.03  # nearer: brighter
    assert last.sum() > 1.2 * first.sum()  # and larger
    moved = centroid_x(nearer_than_background(truck[-1])) - centroid_x(nearer_than_background(truck[0]))
    assert moved < -5  # trucking right slides the layers left


def test_layout_matches_the_silhouettes():
    layout_data = blocking_data()["controls"]["layout"]
    palette = np.round(np.array([layout_data["ground"], *layout_data["colours"][:2]]) * 255)
    layout = draw("Mara walks from the left to the right.", output="layout")
    animatic = draw("Mara walks from the left to the right.")
    for i in (0, len(layout) // 2, len(layout) - 1):
        ground = np.all(np.abs(layout[i] - 0.5) < 0.01, axis=-1)
        assert ground.mean() > 0.7  # a neutral ground
        her, _ = layout_masks(layout[i])
        assert iou(her, red_mask(animatic[i])) > 0.75, i
        pixels = np.round(layout[i] * 255).reshape(-1, 1, 3)
        assert np.any(np.all(pixels == palette[None], axis=-1), axis=-1).mean() > 0.97  # flat (edges anti-aliased)


def test_the_loader_render_option_chooses_the_samplers_frames():
    handle = registry.resolve("previz", LoadOptions(render="depth"))
    assert "Render: depth" in registry.report(handle)
    backend = handle.backend()
    from refvideo.engine.sizes import ANY_FRAMES, plan_render
    from refvideo.models.backend import RenderRequest

    plan = plan_render("144p", "16:9", 5.0, fps=2.0, rule=ANY_FRAMES, size_multiple=registry.PREVIZ_SIZE_MULTIPLE)
    request = RenderRequest(references=SCENE, prompt="Mara walks to the right.", composed_prompt="", negative_prompt="",
                            plan=plan, seed=0, steps=1, guidance=1.0)
    result = backend.render(request)
    assert result.info["output"] == "depth" and result.frames.shape == (plan.frames, 144, 256, 3)
    assert np.array_equal(result.frames[..., 0], result.frames[..., 2])
    with pytest.raises(InputError) as error:
        LoadOptions(render="normals")
    assert error.value.input == "render"


def test_the_documented_strip_prompts_are_all_understood():
    """docs/previz.md shows a strip per verb; every prompt behind them reads without unknown words."""
    import importlib.util

    from test_previz import PACK_ROOT

    spec = importlib.util.spec_from_file_location("make_previz_strips", PACK_ROOT / "scripts" / "make_previz_strips.py")
    assert spec is not None and spec.loader is not None
    strips = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strips)
    for _, prompt, _ in strips.STRIPS:
        shot = shot_camera(prompt, "", SCENE)
        assert shot.actions and not shot.action_unknown and not shot.unknown, prompt
