"""The Wan VACE backend on the tiny random pipeline: references, conditioning, delivery, schedulers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import WAN_FRAMES, RenderPlan, plan_render
from refvideo.models import registry, schedules, tiny_random
from refvideo.models.backend import RenderRequest
from refvideo.models.wan_vace import conditioning, deliver, reference_image

# 112x64, 9 frames: smaller than any product size, to keep these backend tests quick
SMALL = RenderPlan(width=112, height=64, render_width=112, render_height=64, frames=9, fps=1.6, seconds=5.625,
                   requested_seconds=5.0, resolution="144p", aspect="16:9", strategy="native")


def reference(role="character", size=(48, 32), seed=0, mask=None):
    rng = np.random.default_rng(seed)
    image = rng.random((*size, 3), dtype=np.float32)
    return Reference(image, np.ones(size, np.float32) if mask is None else mask, role, f"{role} {seed}")


@pytest.fixture(scope="module")
def backend():
    return registry.resolve("tiny-random").with_options(dtype="fp32").backend()  # fp32 on a GPU too


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


def test_schedulers_follow_preset_and_flow_shift(backend):
    assert schedules.schedule_for("default", "wan", "480p") == schedules.Schedule("UniPCMultistepScheduler", 16.0)
    assert schedules.schedule_for("quality", "wan", "720p", flow_shift=5.0).flow_shift == 5.0
    pipe = backend.loaded.pipe
    try:
        schedules.install(pipe, schedules.schedule_for("draft", "tiny", "144p", flow_shift=7.0))
        assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler" and pipe.scheduler.config.flow_shift == 7
    finally:
        schedules.install(pipe, schedules.schedule_for("default", "tiny", "144p"))
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
def test_batched_guidance_gives_the_same_clip_with_one_transformer_call_per_step(backend):
    refs = [reference()]
    calls: list[int] = []
    counter = backend.loaded.pipe.transformer.patch_embedding.register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0]))  # once per real forward, with its batch
    try:
        plain = render(backend, refs, guidance=5.0, steps=3)
        batched = registry.resolve("tiny-random").with_options(dtype="fp32", cfg_batching="on").backend()
        assert batched.loaded is backend.loaded  # same weights: not loaded again
        paired = render(batched, refs, guidance=5.0, steps=3)
    finally:
        counter.remove()
    assert calls == [1] * 6 + [2] * 3  # 2 calls of batch 1 per step, then 1 call of batch 2 per step
    assert paired.info["cfg_batched"] and not plain.info["cfg_batched"] and paired.info["transformer_calls"] == 3
    np.testing.assert_allclose(paired.frames, plain.frames, atol=2e-4)
    registry_hooks = backend.loaded.pipe.transformer._diffusers_hook.hooks
    assert "refvideo_paired_guidance" not in registry_hooks  # the pairing hook was removed again


@pytest.mark.slow
def test_a_raising_step_callback_stops_the_render(backend):
    class Stop(Exception):
        pass

    def stop(i, n):
        raise Stop()

    batched = registry.resolve("tiny-random").with_options(dtype="fp32", cfg_batching="on").backend()
    with pytest.raises(Stop):
        render(batched, [reference()], on_step=stop, steps=3, guidance=5.0)
    assert "refvideo_paired_guidance" not in backend.loaded.pipe.transformer._diffusers_hook.hooks


def test_tiny_spec_matches_the_built_pipeline():
    pipe = tiny_random.build_pipeline()
    arch = tiny_random.SPEC.arch
    for name, count in (("text_encoder", arch.text_encoder_params), ("transformer", arch.transformer_params),
                        ("vae", arch.vae_params)):
        assert sum(p.numel() for p in getattr(pipe, name).parameters()) == count
    assert tiny_random.fingerprint(pipe) == tiny_random.fingerprint(tiny_random.build_pipeline())


def control_hints(backend, refs, **kw):
    """The control_hidden_states of the first transformer call: [1, 96, references + latents, h, w]."""
    seen = []
    hook = backend.loaded.pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["control_hidden_states"].clone()), with_kwargs=True)
    try:
        render(backend, refs, steps=1, **kw)
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("kept", [1, 5])
def test_a_latent_frame_is_kept_exactly_when_all_its_pixel_frames_are(backend, kept):
    first = np.random.default_rng(kept).random((kept, 64, 112, 3), dtype=np.float32)
    hints = control_hints(backend, [reference()], first_frames=first)
    latent_mask = hints[0, 32:, 1:]  # the 64 mask channels, after the one reference frame
    assert latent_mask.shape[1] == 3  # 9 frames: frame 0, then 1-4, 5-8
    whole = [bool((latent_mask[:, t] == 0).all()) for t in range(3)]
    generated = [bool((latent_mask[:, t] == 1).all()) for t in range(3)]
    keeps = [t == 0 or 4 * t <= kept - 1 for t in range(3)]  # every packed frame (0 | 4t-3..4t) is kept
    assert whole == keeps and generated == [not k for k in keeps]


def test_the_latent_mask_is_exact_for_every_allowed_continuation():
    """diffusers' own prepare_masks on the mask conditioning() builds, for every clip length and 4k+1 count."""
    from refvideo.jobs.generation import MAX_CONTINUE_FRAMES, kept_frame_count
    from refvideo.models.wan_vace import kept_latents

    pipe = tiny_random.build_pipeline()
    allowed = sorted({kept_frame_count(n, MAX_CONTINUE_FRAMES) for n in range(1, MAX_CONTINUE_FRAMES + 1)})
    assert allowed == [1, 5, 9, 13, 17, 21, 25, 29]
    for frames in range(5, 130, 4):
        plan = RenderPlan(width=16, height=16, render_width=16, render_height=16, frames=frames, fps=16.0,
                          seconds=frames / 16, requested_seconds=5.0, resolution="144p", aspect="1:1",
                          strategy="native")
        for kept in (k for k in allowed if k < frames):
            _video, mask = conditioning(plan, np.zeros((kept, 16, 16, 3), np.float32), None)
            pixels = torch.from_numpy(np.stack([np.asarray(m, np.float32)[..., 0] / 255 for m in mask]))
            latent = pipe.prepare_masks(pixels[None, None], [[]])[0]  # [64, latents, 2, 2], no reference frame
            keep = kept_latents(kept)
            assert (latent[:, :keep] == 0).all() and (latent[:, keep:] == 1).all(), (frames, kept)
            assert not pixels[:kept].any()  # every kept frame is in a kept latent frame


def test_control_strength_weakens_the_control_video_only(backend):
    first = np.random.default_rng(5).random((5, 64, 112, 3), dtype=np.float32)
    control = np.random.default_rng(6).random((SMALL.frames, 64, 112, 3), dtype=np.float32)
    refs = [reference()]
    full = control_hints(backend, refs, first_frames=first, control_video=control)
    weak = control_hints(backend, refs, first_frames=first, control_video=control, control_strength=0.3)
    none = control_hints(backend, refs, first_frames=first, control_video=control, control_strength=0.0)
    without = control_hints(backend, refs, first_frames=first)
    kept = 1 + 2  # the reference frame, then latent frames 0 and 1 (frames 0-4)
    assert torch.equal(weak[:, :, :kept], full[:, :, :kept])  # reference and continuation hints unchanged
    assert not torch.equal(weak[:, :16, kept:], full[:, :16, kept:]) or \
        not torch.equal(weak[:, 16:32, kept:], full[:, 16:32, kept:])
    assert torch.equal(none, without)  # 0 = no control video at all
    assert torch.equal(weak[:, 32:], full[:, 32:])  # the mask does not change


def test_an_environment_goes_in_whole_and_a_subject_is_cut_out():
    image = np.zeros((100, 100, 3), np.float32)
    image[40:60, 30:50] = (1.0, 0.0, 0.0)
    mask = np.zeros((100, 100), np.float32)
    mask[40:60, 30:50] = 1.0
    place = np.asarray(reference_image(Reference(image, mask, "environment"), 100, 100), np.float32) / 255
    thing = np.asarray(reference_image(Reference(image, mask, "prop"), 100, 100), np.float32) / 255
    assert np.allclose(place[0, 0], 0.0, atol=0.02) and np.allclose(place[50, 40], (1, 0, 0), atol=0.02)  # as is
    assert np.allclose(thing[0, 0], 1.0)  # matted onto white and cropped


def test_real_wan_models_do_not_offer_144p(tmp_path):
    from refvideo.models import wan_vace

    tiny_random.build_pipeline().save_pretrained(tmp_path / "wan", safe_serialization=True)
    spec = wan_vace.spec("wan", tmp_path / "wan")
    assert "144p" not in spec.resolutions and {"480p", "720p", "1080p"} <= set(spec.resolutions)
    assert "144p" in tiny_random.SPEC.resolutions
