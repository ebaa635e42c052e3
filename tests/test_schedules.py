"""Noise schedules: Wan VACE's official defaults, the flow_shift input, the distill presets' exact sigmas."""

from __future__ import annotations

import pytest
import torch

from refvideo.engine.errors import InputError
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import UPSCALE_1080
from refvideo.jobs.generation import SamplerInputs, plan_for, prepare
from refvideo.models import registry, schedules, tiny_random
from refvideo.models.spec import LoadOptions, ModelSpec, family_defaults, sampling_preset

OFFICIAL_NEGATIVE_START = "色调艳丽，过曝，静态，细节模糊不清"  # Wan 2.1's sample_neg_prompt


def shifted(t: float, shift: float = 5.0) -> float:
    """ComfyUI's "simple" schedule point: the flow shift applied to a timestep fraction."""
    return shift * t / (1 + (shift - 1) * t)


def test_wan_defaults_are_the_official_vace_inference():
    wan = family_defaults("wan")
    assert wan["default_steps"] == 50 and wan["default_guidance"] == 5.0
    assert schedules.schedule_for("default", "wan", "480p") == schedules.Schedule("UniPCMultistepScheduler", 16.0)
    assert schedules.schedule_for("default", "wan", "720p").flow_shift == 16.0
    assert wan["default_negative"].startswith(OFFICIAL_NEGATIVE_START) and wan["default_negative"].endswith("倒着走")


def test_flow_shift_input_overrides_the_shift_and_zero_keeps_it():
    assert schedules.schedule_for("default", "wan", "720p", flow_shift=5.0).flow_shift == 5.0
    assert schedules.schedule_for("draft", "wan", "720p", flow_shift=0.0).flow_shift == 16.0


@pytest.mark.parametrize("name, timesteps", [("distill-4step", (1000, 750, 500, 250)),
                                             ("distill-8step", tuple(range(1000, 0, -125)))])
def test_distill_presets_run_the_timesteps_their_loras_were_trained_on(name, timesteps):
    assert list(sampling_preset(name).sigmas) == pytest.approx([shifted(t / 1000) for t in timesteps], abs=1e-12)
    schedule = schedules.schedule_for(name, "wan", "720p", flow_shift=12.0)
    assert schedule.sigmas == sampling_preset(name).sigmas and "win over flow_shift 12" in schedule.note
    pipe = tiny_random.build_pipeline()
    described = schedules.install(pipe, schedule)
    pipe.scheduler.set_timesteps(len(timesteps))  # as the pipeline calls it
    assert pipe.scheduler.sigmas.tolist() == pytest.approx([*sampling_preset(name).sigmas, 0.0], abs=1e-6)
    assert pipe.scheduler.timesteps.tolist() == pytest.approx(
        [1000 * s for s in sampling_preset(name).sigmas], abs=1e-3)
    assert described["sigmas"][-1] == 0.0 and described["note"]
    with pytest.raises(ValueError):
        pipe.scheduler.set_timesteps(len(timesteps) + 1)
    schedules.install(pipe, schedules.schedule_for("default", "tiny", "144p"))
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"


def test_a_listed_schedule_fixes_the_step_count_and_is_reported():
    refs = ReferenceSet((Reference(torch.rand(32, 32, 3).numpy(), torch.ones(32, 32).numpy(), "character"),))
    model = registry.resolve("tiny-random", LoadOptions(preset="distill-4step"))
    job = prepare(SamplerInputs(model=model, references=refs, prompt="a walk", resolution="144p", flow_shift=3.0))
    assert job.steps == 4 and job.schedule.sigmas == sampling_preset("distill-4step").sigmas
    assert any("exact sigmas win over flow_shift 3" in w for w in job.warnings)
    with pytest.raises(InputError) as err:
        prepare(SamplerInputs(model=model, references=refs, prompt="a walk", resolution="144p", steps=6))
    assert err.value.input == "steps" and "steps to 0" in err.value.fix


def test_1080p_is_720p_upscaled_unless_native_is_asked_for():
    for native in ("480p", "720p"):
        spec = ModelSpec(name="wan", kind="WanVACEPipeline", fps=16.0, native_resolution=native)
        assert plan_for(spec, LoadOptions(), "1080p", "16:9", 5.0).strategy == UPSCALE_1080
        crop = plan_for(spec, LoadOptions(hd_strategy="crop"), "1080p", "16:9", 5.0)
        assert (crop.render_width, crop.render_height) == (1920, 1088)
    previz = ModelSpec(name="previz", kind="previz", fps=16.0, native_resolution="1080p", size_multiple=2)
    assert plan_for(previz, LoadOptions(), "1080p", "16:9", 5.0).strategy == "native"
