"""The previz backend: the animatic's measured motion, focus, blur, sizes, progress and determinism.

References are built in code: a textured blue-green environment (so shifts and sharpness
can be measured), a red striped character (found by colour) and a green prop. Renders are
small (256x144) and short (planned with a low fps), so the file stays fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from refvideo.engine.camera.path import parse_shot
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import ANY_FRAMES, WAN_FRAMES, plan_render
from refvideo.engine.style import StyleDirection
from refvideo.models import registry
from refvideo.models.backend import RenderRequest
from refvideo.models.previz import PrevizBackend

PACK_ROOT = Path(__file__).resolve().parent.parent


def environment(seed: int = 1) -> Reference:
    """Smoothed noise in green and blue only (red stays low, so the character is found by colour)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((90, 160, 2)).astype(np.float32)
    big = np.kron(noise, np.ones((4, 4, 1), np.float32))  # 360x640, blocky texture with sharp edges
    image = np.zeros((360, 640, 3), np.float32)
    image[..., 0] = 0.05
    image[..., 1:] = 0.15 + 0.7 * big
    return Reference(image, np.ones((360, 640), np.float32), "environment", "noise field")


def character() -> Reference:
    """A red figure with dark-red stripes (texture for sharpness) on white, with its matte."""
    h, w = 300, 120
    mask = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    mask[((xx - 60) ** 2 + (yy - 40) ** 2) < 30 ** 2] = 1.0  # head
    mask[70:290, 25:95] = 1.0  # body
    image = np.ones((h, w, 3), np.float32)
    stripes = ((xx // 4 + yy // 4) % 2).astype(np.float32)
    red = np.stack([0.95 - 0.4 * stripes, 0.05 + 0 * stripes, 0.05 + 0 * stripes], axis=-1)
    image = np.where(mask[..., None] > 0, red, image)
    return Reference(image, mask, "character", "Mara")


def prop() -> Reference:
    h, w = 100, 100
    mask = np.zeros((h, w), np.float32)
    mask[20:95, 15:85] = 1.0
    image = np.ones((h, w, 3), np.float32)
    image[mask > 0] = (0.1, 0.8, 0.2)
    return Reference(image, mask, "prop", "lantern")


SCENE = ReferenceSet((character(), environment(), prop()))


def render(prompt: str, *, refs: ReferenceSet = SCENE, fps: float = 4.0, aspect: str = "16:9",
           resolution: str = "144p", seed: int = 0, style: StyleDirection | None = None, camera=None,
           first_frames=None, on_step=None, upscale: bool = False, rule=ANY_FRAMES):
    backend = PrevizBackend()
    plan = plan_render(resolution, aspect, 5.0, fps=fps, rule=rule, size_multiple=registry.PREVIZ_SIZE_MULTIPLE,
                       upscale_1080=upscale)
    request = RenderRequest(references=refs, prompt=prompt, composed_prompt=prompt, negative_prompt="", plan=plan,
                            seed=seed, steps=1, guidance=1.0, style=style, camera=camera,
                            first_frames=first_frames, on_step=on_step)
    return backend.render(request)


def red_mask(frame: np.ndarray) -> np.ndarray:
    return (frame[..., 0] > 0.35) & (frame[..., 1] < 0.3) & (frame[..., 2] < 0.3)


def shift_x(reference: np.ndarray, moved: np.ndarray) -> float:
    """Horizontal displacement (px, + = to the right) of ``moved`` against ``reference`` by phase correlation."""
    a, b = reference.mean(axis=-1), moved.mean(axis=-1)
    a, b = a - a.mean(), b - b.mean()
    window = np.hanning(a.shape[1])[None, :] * np.hanning(a.shape[0])[:, None]
    spectrum = np.fft.fft2(b * window) * np.conj(np.fft.fft2(a * window))
    corr = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
    y, x = np.unravel_index(np.argmax(corr), corr.shape)
    width = corr.shape[1]
    left, right = corr[y, (x - 1) % width], corr[y, (x + 1) % width]
    offset = 0.5 * (left - right) / (left - 2 * corr[y, x] + right + 1e-12)
    value = x + offset
    return float(value - width if value > width / 2 else value)


def sharpness(frame: np.ndarray, region: np.ndarray) -> float:
    """Variance of the Laplacian of luminance inside ``region``."""
    g = frame.mean(axis=-1)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap[region[1:-1, 1:-1]].var())


# --------------------------------------------------------------------------- motion


def test_slow_dolly_in_grows_the_subject_steadily_and_slowly():
    frames = render("slow dolly in").frames
    heights = np.array([np.flatnonzero(red_mask(f).any(axis=1)).size for f in frames], np.float32)
    growth = heights[-1] / heights[0]
    assert 1.05 < growth < 1.3, growth  # slow: a gentle push, not a lunge
    steps = np.diff(heights)
    assert steps.min() >= -1.0  # never shrinks (one pixel of rounding allowed)
    assert steps.max() <= max(3.0, 3.0 * steps.mean())  # steady: no jumps
    fast = render("fast dolly in").frames
    fast_growth = np.flatnonzero(red_mask(fast[-1]).any(axis=1)).size / heights[0]
    assert fast_growth > growth + 0.15


@pytest.mark.parametrize("direction, sign", [("left", 1.0), ("right", -1.0)])
def test_pan_moves_the_background_the_opposite_way(direction, sign):
    """Convention: panning the camera left moves the picture content right (and vice versa)."""
    frames = render(f"pan {direction}").frames
    band = slice(0, 26)  # above the character's head: background only
    offsets = np.array([sign * shift_x(frames[0, band], f[band]) for f in frames])
    assert offsets[-1] > 20.0, offsets  # ~12 degrees: about a sixth of the frame width
    assert np.all(np.diff(offsets) > -0.3), offsets  # consistent: one direction throughout


def test_truck_gives_parallax_near_layers_move_more():
    frames = render("truck right").frames
    band = slice(0, 26)
    background = shift_x(frames[0, band], frames[-1, band])
    xs = [np.flatnonzero(red_mask(f).any(axis=0)).mean() for f in (frames[0], frames[-1])]
    subject = xs[1] - xs[0]
    assert background < 0 and subject < 0  # trucking right: everything slides left
    assert abs(subject) > 2.0 * abs(background)


def test_rack_focus_to_background_swaps_sharpness():
    frames = render("rack focus to background").frames
    first, last = frames[0], frames[-1]
    subject = red_mask(first) & red_mask(last)
    subject[:, :] &= np.roll(subject, 2, 0) & np.roll(subject, -2, 0) & np.roll(subject, 2, 1) & np.roll(subject, -2, 1)
    background = np.zeros(subject.shape, bool)
    background[2:24, 8:-8] = True
    assert sharpness(last, background) > 1.5 * sharpness(first, background)
    assert sharpness(last, subject) < 0.6 * sharpness(first, subject)


def test_static_shot_frames_are_identical():
    frames = render("static shot, locked-off camera").frames
    assert np.abs(frames - frames[0]).max() < 1.0 / 255.0


def test_whip_pan_smears_horizontally():
    frames = render("whip pan right", fps=16.0).frames  # fast enough to show the blur
    def anisotropy(f):
        g = f.mean(axis=-1)
        return np.abs(np.diff(g, axis=0)).mean() / np.abs(np.diff(g, axis=1)).mean()
    rest = anisotropy(frames[0])
    peak = max(anisotropy(f) for f in frames)
    assert peak > 2.0 * rest  # mid-whip, horizontal detail is smeared away


# --------------------------------------------------------------------------- the request


def test_unknown_camera_words_are_reported_in_the_info():
    result = render("zoom left, then slow dolly in")
    assert any("zoom left" in w for w in result.info["warnings"])
    assert result.info["camera"]["unknown"] == ["zoom left"]
    assert result.info["camera"]["phrase"] == "slow dolly in"


def test_the_style_camera_applies_when_the_prompt_has_none():
    result = render("Mara waits.", style=StyleDirection(names=("doc",), camera="handheld"))
    assert result.info["camera"]["source"] == "default"
    assert np.abs(np.diff(result.frames, axis=0)).max() > 0.05  # handheld: the picture moves


def test_output_is_deterministic_and_the_seed_picks_the_handheld_jitter():
    a = render("handheld, slow dolly in", seed=3).frames
    b = render("handheld, slow dolly in", seed=3).frames
    c = render("handheld, slow dolly in", seed=4).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("aspect, size", [("16:9", (256, 144)), ("9:16", (144, 256)), ("1:1", (144, 144))])
def test_every_aspect_renders_at_its_size(aspect, size):
    result = render("slow arc left", aspect=aspect)
    frames = result.frames
    assert frames.shape == (20, size[1], size[0], 3) and frames.dtype == np.float32
    assert np.isfinite(frames).all() and frames.min() >= 0.0 and frames.max() <= 1.0
    assert red_mask(frames[0]).sum() > 50  # the subject is in the picture
    assert frames.std() > 0.05  # not blank


def test_1080p_upscaled_from_720p_and_wan_frame_counts():
    result = render("dolly in", fps=1.0, resolution="1080p", upscale=True)
    assert result.frames.shape == (5, 1080, 1920, 3)
    wan = registry.resolve("previz").spec  # previz is timed like Wan unless told otherwise
    assert plan_render("720p", "16:9", 5.0, fps=wan.fps, rule=wan.frame_rule,
                       size_multiple=wan.size_multiple).frames == 81 and wan.frame_rule == WAN_FRAMES


def test_progress_is_reported_per_frame_and_an_interrupt_stops_the_render():
    calls = []
    render("pan left", on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 20) for i in range(1, 21)]

    class Stop(Exception):
        pass

    seen = []

    def stop_at_three(done, total):
        seen.append(done)
        if done == 3:
            raise Stop()

    with pytest.raises(Stop):
        render("pan left", on_step=stop_at_three)
    assert seen == [1, 2, 3]


def test_first_frames_open_the_clip_and_fade_into_the_animatic():
    given = np.zeros((3, 144, 256, 3), np.float32)
    given[..., 2] = 1.0  # pure blue
    result = render("slow dolly in", first_frames=given)
    frames = result.frames
    assert frames.shape[0] == 20 and np.array_equal(frames[:3], given)
    blue = [float(f[..., 2].mean() - f[..., 0].mean()) for f in frames[3:]]
    assert blue[0] > blue[-1] + 0.2 and all(a >= b - 1e-3 for a, b in zip(blue[:8], blue[1:9]))
    assert result.info["first_frames"] == {"kept": 3, "crossfade": 8}


def test_style_references_tint_the_grade():
    warm = np.zeros((64, 64, 3), np.float32)
    warm[..., 0], warm[..., 1], warm[..., 2] = 0.9, 0.5, 0.2
    styled = ReferenceSet((*SCENE.references[:2], Reference(warm, np.ones((64, 64), np.float32), "style", "warm")))
    plain = render("static shot").frames[0]
    tinted = render("static shot", refs=styled).frames[0]
    assert tinted[..., 0].mean() > plain[..., 0].mean() + 0.1
    assert tinted[..., 2].mean() < plain[..., 2].mean() - 0.1


def test_without_an_environment_a_stage_is_drawn_and_unmatted_layers_are_reported():
    flat = Reference(np.full((50, 30, 3), 0.5, np.float32), np.ones((50, 30), np.float32), "character", "card")
    result = render("slow dolly out", refs=ReferenceSet((flat, prop())))
    assert result.info["blocking"]["background"] == "stage"
    assert any("no matte" in w for w in result.info["warnings"])
    assert result.frames[:, :20].std() > 0.01  # a drawn backdrop, not black


def test_the_camera_from_the_sampler_is_used_as_given():
    camera = parse_shot("pan left")
    result = render("this prompt says dolly in", camera=camera)
    assert "camera" not in result.info  # the sampler records the camera it parsed
    band = slice(0, 26)
    assert shift_x(result.frames[0, band], result.frames[-1, band]) > 20.0


def test_previz_runs_without_torch(tmp_path):
    """The demo must run where torch is not installed: rendering never imports it."""
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        sys.path.insert(0, {str(PACK_ROOT.parent)!r})
        import numpy as np
        from refvideo.engine.camera.path import parse_shot
        from refvideo.engine.references.reference import Reference, ReferenceSet
        from refvideo.engine.previz.render import render_animatic
        import refvideo.models.previz
        ref = Reference(np.full((40, 20, 3), 0.5, np.float32), np.ones((40, 20), np.float32), "character", "x")
        out = render_animatic(ReferenceSet((ref,)), parse_shot("pan left"), size=(64, 36), frames=5, fps=4)
        print(out.frames.shape, "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("(5, 36, 64, 3) False")


@pytest.mark.slow
def test_demo_workflow_renders_an_mp4_with_the_camera_in_its_manifest():
    """The API demo runs in-process on the bundled samples (at 144p here, to stay fast)."""
    import av

    from refvideo.headless.runner import execute, load_workflow
    from refvideo.nodes import NODE_CLASS_MAPPINGS

    workflow = load_workflow(PACK_ROOT / "workflows" / "api" / "demo_shot.json")
    assert workflow["3"]["inputs"]["resolution"] == "720p" and workflow["2"]["inputs"]["model"] == "previz"
    workflow["3"]["inputs"]["resolution"] = "144p"
    result = execute(workflow, NODE_CLASS_MAPPINGS)
    [path] = result.files["4"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height, frames) == (256, 144, 81)
        manifest = json.loads(container.metadata["refvideo"])
    assert manifest["model"] == "previz"
    assert manifest["camera"]["phrase"] == "slow dolly in, then rack focus to background"
    assert manifest["warnings"] == []


def test_an_empty_matte_is_left_out_and_reported():
    empty = Reference(np.ones((40, 20, 3), np.float32), np.zeros((40, 20), np.float32), "character", "ghost")
    result = render("pan left", refs=ReferenceSet((empty, environment(), prop())))
    assert any("ghost" in w and "empty" in w for w in result.info["warnings"])
    assert [layer["role"] for layer in result.info["blocking"]["layers"]] == ["prop"]
