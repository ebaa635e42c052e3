"""The Wan VACE backend on the tiny random pipeline: references, conditioning, delivery, schedulers."""

from __future__ import annotations

import numpy as np
import pytest

from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import WAN_FRAMES, RenderPlan, plan_render
from refvideo.models import registry, tiny_random
from refvideo.models.backend import RenderRequest
from refvideo.models.wan_vace import conditioning, deliver, reference_image, scheduler_choice, set_scheduler

# 112x64, 9 frames: smaller than any product size, to keep these backend tests quick
SMALL = RenderPlan(width=112, height=64, render_width=112, render_height=64, frames=9, fps=1.6, seconds=5.625,
                   requested_seconds=5.0, resolution="144p", aspect="16:9", strategy="native")


def reference(role="character", size=(48, 32), seed=0, mask=None):
    rng = np.random.default_rng(seed)
    image = rng.random((*size, 3), dtype=np.float32)
    return Reference(image, np.ones(size, np.float32) if mask is None else mask, role, f"{role} {seed}")


@pytest.fixture(scope="module")
def backend():
    return registry.resolve("tiny-random").backend()


def render(backend, refs, **kw):
    args = dict(references=ReferenceSet(tuple(refs)), prompt="a walk", composed_prompt="a walk",
                negative_prompt="blur", plan=SMALL, seed=1, steps=2, guidance=1.0)
    args.update(kw)
    return backend.render(RenderRequest(**args))


def test_reference_is_matted_on_white_cropped_to_the_subject_and_centred():
    image = np.zeros((100, 100, 3), np.float32)
    image[40:60, 30:50] = (1.0, 0.0, 0.0)  # a red square subject
    mask = np.zeros((100, 100), np.float32)
    mask[40:60, 30:50] = 1.0
    out = np.asarray(reference_image(Reference(image, mask, "prop"), 256, 144), dtype=np.float32) / 255
    assert out.shape == (144, 256, 3)
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[:, :40], 1.0)  # white canvas, not black background
    red = (out[..., 0] > 0.8) & (out[..., 1] < 0.2)
    ys, xs = np.nonzero(red)
    # cropped to the subject (plus a small margin) and scaled up: 20 of 28 rows of 144, not 20 of 100
    assert 95 <= ys.max() - ys.min() + 1 <= 110
    assert abs((xs.min() + xs.max()) / 2 - 128) <= 2  # centred


def test_rgba_reference_becomes_rgb():
    rgba = np.ones((20, 30, 4), np.float32)
    img = reference_image(Reference(rgba, np.ones((20, 30), np.float32), "character"), 64, 64)
    assert img.mode == "RGB" and img.size == (64, 64)


def test_conditioning_keeps_first_frames_and_repaints_the_rest():
    first = np.full((3, 64, 112, 3), 0.2, np.float32)
    control = np.full((SMALL.frames, 64, 112, 3), 0.8, np.float32)
    assert conditioning(SMALL, None, None) == (None, None)
    video, mask = conditioning(SMALL, first, control)
    assert len(video) == len(mask) == SMALL.frames
    values = [np.asarray(v)[0, 0, 0] for v in video]
    masks = [np.asarray(m)[0, 0, 0] for m in mask]
    assert values[:3] == [51] * 3 and values[3:] == [204] * (SMALL.frames - 3)
    assert masks[:3] == [0] * 3 and masks[3:] == [255] * (SMALL.frames - 3)


@pytest.mark.slow
def test_delivery_crops_1088_and_upscales_720():
    crop = plan_render("1080p", "16:9", 5, fps=1.6, rule=WAN_FRAMES)
    frames = np.zeros((crop.frames, 1088, 1920, 3), np.float32)
    frames[:, 4:-4] = 1.0
    assert np.all(deliver(frames, crop) == 1.0)  # the 4-pixel bands were cropped, centred
    up = plan_render("1080p", "1:1", 5, fps=0.8, rule=WAN_FRAMES, upscale_1080=True)
    small = np.full((up.frames, 720, 720, 3), 0.5, np.float32)
    out = deliver(small, up)
    assert out.shape == (up.frames, 1080, 1080, 3) and np.allclose(out, 0.5, atol=1e-4)


def test_schedulers_follow_preset_and_resolution(backend):
    assert scheduler_choice("default", "wan", "480p") == {"class": "UniPCMultistepScheduler", "flow_shift": 3.0}
    assert scheduler_choice("quality", "wan", "720p") == {"class": "UniPCMultistepScheduler", "flow_shift": 5.0}
    assert scheduler_choice("distill-4step", "wan", "720p") == {"class": "FlowMatchEulerDiscreteScheduler",
                                                                "flow_shift": 5.0}
    pipe = backend.loaded.pipe
    try:
        set_scheduler(pipe, "distill-4step", "tiny", "144p")
        assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and pipe.scheduler.config.shift == 5
    finally:
        set_scheduler(pipe, "default", "tiny", "144p")
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler" and pipe.scheduler.config.flow_shift == 3.0


@pytest.mark.slow
def test_frames_are_deterministic_and_never_include_the_references(backend):
    refs = [reference("character", seed=1), reference("prop", seed=2), reference("environment", (32, 48), 3)]
    steps: list[tuple[int, int]] = []
    one = render(backend, refs[:1], on_step=lambda i, n: steps.append((i, n)))
    again = render(backend, refs[:1])
    other_seed = render(backend, refs[:1], seed=2)
    assert steps == [(1, 2), (2, 2)]
    assert one.frames.shape == (SMALL.frames, 64, 112, 3) and one.frames.dtype == np.float32
    np.testing.assert_array_equal(one.frames, again.frames)
    assert np.abs(one.frames - other_seed.frames).mean() > 1e-3
    three = render(backend, refs)
    assert three.frames.shape == one.frames.shape and three.info["pasted_references"] == 3
    assert np.abs(three.frames - one.frames).mean() > 1e-4  # the references condition the clip
    assert set(three.info) >= {"weights_fingerprint", "dtype", "scheduler", "loras", "timings", "peak_memory"}


@pytest.mark.slow
def test_batched_guidance_gives_the_same_clip(backend):
    refs = [reference()]
    plain = render(backend, refs, guidance=5.0)
    batched = registry.resolve("tiny-random").with_options(cfg_batching="on").backend()
    paired = render(batched, refs, guidance=5.0)
    assert paired.info["cfg_batched"] and not plain.info["cfg_batched"]
    np.testing.assert_allclose(paired.frames, plain.frames, atol=2e-4)
    assert "forward" not in backend.loaded.pipe.transformer.__dict__  # the pairing was removed again


@pytest.mark.slow
def test_a_raising_step_callback_stops_the_render(backend):
    class Stop(Exception):
        pass

    def stop(i, n):
        raise Stop()

    with pytest.raises(Stop):
        render(backend, [reference()], on_step=stop, steps=3)
    assert "forward" not in backend.loaded.pipe.transformer.__dict__


def test_tiny_spec_matches_the_built_pipeline():
    pipe = tiny_random.build_pipeline()
    arch = tiny_random.SPEC.arch
    for name, count in (("text_encoder", arch.text_encoder_params), ("transformer", arch.transformer_params),
                        ("vae", arch.vae_params)):
        assert sum(p.numel() for p in getattr(pipe, name).parameters()) == count
    assert tiny_random.fingerprint(pipe) == tiny_random.fingerprint(tiny_random.build_pipeline())
