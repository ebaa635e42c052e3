"""Frame and size math: every resolution x aspect x duration on every backend's timing."""

from __future__ import annotations

import itertools
import math

import pytest

from refvideo.engine.errors import InputError
from refvideo.engine.sizes import (
    ANY_FRAMES,
    ASPECTS,
    CROP_1080,
    RESOLUTIONS,
    UPSCALE_1080,
    WAN_FRAMES,
    FrameRule,
    check_duration,
    delivered_size,
    frame_count,
    plan_render,
)

# (fps, frame rule, size multiple) of each backend: Wan VACE, tiny-random, previz (any count, even sizes).
BACKENDS = {"wan": (16.0, WAN_FRAMES, 16), "tiny-random": (4.0, WAN_FRAMES, 16), "previz": (16.0, ANY_FRAMES, 2)}
DURATIONS = [5.0, 5.03, 5.5, 6.0, 6.49, 7.0, 7.75, 8.0]
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("upscale", [False, True])
def test_plan_is_legal_and_close_to_the_request(backend, upscale):
    fps, rule, multiple = BACKENDS[backend]
    for resolution, aspect, seconds in itertools.product(RESOLUTIONS, ASPECTS, DURATIONS):
        where = f"{backend} {resolution} {aspect} {seconds}s upscale={upscale}"
        plan = plan_render(resolution, aspect, seconds, fps=fps, rule=rule, size_multiple=multiple,
                           upscale_1080=upscale)
        w, h = delivered_size(resolution, aspect)
        assert (plan.width, plan.height) == (w, h), where
        assert rule.is_legal(plan.frames), where
        # the nearest legal count: within half a step of round(seconds * fps)
        assert abs(plan.frames - round(seconds * fps)) <= rule.step / 2, where
        assert math.isclose(plan.seconds, plan.frames / fps), where
        assert plan.render_width % multiple == 0 and plan.render_height % multiple == 0, where
        if plan.strategy == UPSCALE_1080:
            assert resolution == "1080p" and upscale, where
            assert (plan.render_width, plan.render_height) == delivered_size("720p", aspect), where
        else:
            assert plan.render_width >= w and plan.render_height >= h, where
            assert plan.render_width - w < multiple and plan.render_height - h < multiple, where
            assert (plan.strategy == "native") == ((plan.render_width, plan.render_height) == (w, h)), where
        assert plan.rendered()["frames"] == plan.frames and plan.requested()["seconds"] == seconds, where
        assert plan.requested()["frames"] == round(seconds * fps) and plan.requested()["fps"] == fps, where


def test_design_examples():
    assert frame_count(5, 16, WAN_FRAMES) == 81  # 5 s at 16 fps is 81 frames (4k+1)
    assert frame_count(8, 16, WAN_FRAMES) == 129
    assert frame_count(5, 4, WAN_FRAMES) == 21  # tiny-random keeps a 5 s clip to a handful of frames
    assert delivered_size("144p") == (256, 144)
    assert delivered_size("720p", "9:16") == (720, 1280)
    assert delivered_size("1080p", "1:1") == (1080, 1080)
    plan = plan_render("1080p", "16:9", 5, fps=16, rule=WAN_FRAMES)
    assert (plan.render_width, plan.render_height, plan.strategy) == (1920, 1088, CROP_1080)
    plan = plan_render("1080p", "9:16", 5, fps=16, rule=WAN_FRAMES, upscale_1080=True)
    assert (plan.render_width, plan.render_height, plan.strategy) == (720, 1280, UPSCALE_1080)


def test_frame_rule_snaps_to_nearest_with_ties_up():
    rule = FrameRule(step=4, offset=1, min_count=5)
    assert [rule.snap(n) for n in (0, 5, 6, 7, 8, 9, 83)] == [5, 5, 5, 9, 9, 9, 85]
    assert rule.is_legal(81) and not rule.is_legal(80) and not rule.is_legal(1)


@pytest.mark.parametrize("seconds", [4.99, 8.01, 0, -5, float("nan"), float("inf"), "five", None])
def test_durations_outside_the_range_are_refused(seconds):
    with pytest.raises(InputError) as err:
        check_duration(seconds)
    assert err.value.input == "duration"


@pytest.mark.parametrize("resolution, aspect, field", [("4k", "16:9", "resolution"), ("720p", "4:3", "aspect")])
def test_unknown_sizes_are_refused(resolution, aspect, field):
    with pytest.raises(InputError) as err:
        plan_render(resolution, aspect, 5, fps=16, rule=WAN_FRAMES)
    assert err.value.input == field
