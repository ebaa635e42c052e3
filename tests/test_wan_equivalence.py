"""The Wan VACE backend against a direct ``WanVACEPipeline.__call__``, tensor by tensor.

Same components, scheduler, processed references, conditioning video and mask, prompts and
seed: every transformer call gets the same inputs and returns the same output, and the
decoder gets the same latents (exactly; within 1e-4 with batched CFG, which computes both
passes in one batch). Frames alone would prove little: the tiny model barely reacts to
references.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import RenderPlan
from refvideo.models import diffusers_loading as loading
from refvideo.models import registry, schedules
from refvideo.models.backend import RenderRequest
from refvideo.models.wan_vace import MAX_SEQUENCE_LENGTH, conditioning, reference_image

PLAN = RenderPlan(width=112, height=64, render_width=112, render_height=64, frames=13, fps=1.6, seconds=8.125,
                  requested_seconds=8.0, resolution="144p", aspect="16:9", strategy="native")
PROMPT, NEGATIVE, SEED, STEPS = "Mara walks along the quay", "blur, low quality", 5, 3


def refs() -> ReferenceSet:
    rng = np.random.default_rng(11)
    mask = np.zeros((40, 30), np.float32)
    mask[5:35, 6:24] = 1.0
    return ReferenceSet((Reference(rng.random((40, 30, 3), dtype=np.float32), mask, "character", "Mara"),
                         Reference(rng.random((30, 50, 3), dtype=np.float32), np.ones((30, 50), np.float32),
                                   "environment", "quay")))


class Recorder:
    """Every transformer call's tensor inputs and output, and the latents the VAE decoder gets."""

    def __init__(self, pipe) -> None:
        self.inputs: list[dict] = []
        self.outputs: list[torch.Tensor] = []
        self.decoded: list[torch.Tensor] = []
        self._handles = [
            pipe.transformer.register_forward_pre_hook(self._input, with_kwargs=True),
            pipe.transformer.register_forward_hook(self._output, with_kwargs=True),
            pipe.vae.post_quant_conv.register_forward_pre_hook(lambda m, args: self.decoded.append(args[0].clone())),
        ]

    def _input(self, module, args, kwargs):
        self.inputs.append({k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)})

    def _output(self, module, args, kwargs, out):
        self.outputs.append(out[0].clone())

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def record(pipe, run):
    recorder = Recorder(pipe)
    try:
        run()
    finally:
        recorder.close()
    return recorder


def through_backend(backend, guidance, first=None, control=None):
    request = RenderRequest(references=refs(), prompt=PROMPT, composed_prompt=PROMPT, negative_prompt=NEGATIVE,
                            plan=PLAN, seed=SEED, steps=STEPS, guidance=guidance, first_frames=first,
                            control_video=control)
    return record(backend.loaded.pipe, lambda: backend.render(request))


def direct(pipe, guidance, first=None, control=None):
    """The pipeline called as its documentation shows, with the backend's processed inputs."""
    images = [reference_image(r, PLAN.render_width, PLAN.render_height) for r in refs()]
    video, mask = conditioning(PLAN, first, control)
    schedules.install(pipe, schedules.schedule_for("default", "tiny", PLAN.resolution))
    return record(pipe, lambda: pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, video=video, mask=mask, reference_images=images,
        height=PLAN.render_height, width=PLAN.render_width, num_frames=PLAN.frames, num_inference_steps=STEPS,
        guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np",
        max_sequence_length=MAX_SEQUENCE_LENGTH))


@pytest.fixture(autouse=True)
def fresh():
    loading.CACHE.release()
    yield
    loading.CACHE.release()


def assert_same_calls(ours: Recorder, theirs: Recorder, *, atol: float = 0.0) -> None:
    assert len(ours.inputs) == len(theirs.inputs) == len(ours.outputs) == len(theirs.outputs) > 0
    for mine, reference in zip(ours.inputs, theirs.inputs):
        assert mine.keys() == reference.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], reference[key], rtol=0, atol=atol, msg=key)
    for mine, reference in zip(ours.outputs, theirs.outputs):
        torch.testing.assert_close(mine, reference, rtol=0, atol=atol)


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_a_plain_render_is_the_pipeline_call_exactly(guidance):
    backend = registry.resolve("tiny-random").with_options(dtype="fp32", cfg_batching="off").backend()
    ours = through_backend(backend, guidance)
    theirs = direct(backend.loaded.pipe, guidance)
    assert len(ours.inputs) == STEPS * (2 if guidance > 1 else 1)
    assert ours.inputs[0]["control_hidden_states"].shape[2] == 2 + 4  # two references, then 4 latent frames
    assert_same_calls(ours, theirs)
    assert len(ours.decoded) == 1 and torch.equal(ours.decoded[0], theirs.decoded[0])


def test_first_frames_and_a_control_video_are_the_pipeline_call_exactly():
    rng = np.random.default_rng(3)
    first = rng.random((5, 64, 112, 3), dtype=np.float32)
    control = rng.random((PLAN.frames, 64, 112, 3), dtype=np.float32)
    backend = registry.resolve("tiny-random").with_options(dtype="fp32", cfg_batching="off").backend()
    ours = through_backend(backend, 5.0, first, control)
    theirs = direct(backend.loaded.pipe, 5.0, first, control)
    assert_same_calls(ours, theirs)
    assert torch.equal(ours.decoded[0], theirs.decoded[0])


def test_batched_guidance_reaches_the_same_decoder_latents():
    backend = registry.resolve("tiny-random").with_options(dtype="fp32", cfg_batching="on").backend()
    ours = through_backend(backend, 5.0)
    theirs = direct(backend.loaded.pipe, 5.0)
    assert_same_calls(ours, theirs, atol=1e-4)  # one batch of two: equal up to float rounding
    difference = (ours.decoded[0] - theirs.decoded[0]).abs().max().item()
    assert difference <= 1e-4 and ours.decoded[0].abs().max().item() > 0.1
