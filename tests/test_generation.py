"""RefVideoSampler end to end on tiny-random: plans, info, determinism, errors, interrupts, credits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from refvideo.engine import host
from refvideo.engine.credits.budget import plan_budget
from refvideo.engine.credits.ledger import shared_ledger
from refvideo.engine.errors import GenerationError, InputError, Interrupted
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import WAN_FRAMES, plan_render
from refvideo.engine.style import StyleDirection
from refvideo.jobs.generation import SamplerInputs, check_output, generate, prepare
from refvideo.models import diffusers_loading, registry
from refvideo.models.spec import LoadOptions
from refvideo.nodes.sampler import RefVideoSampler

# The keys every generation info has
INFO_KEYS = {"pack_version", "model", "weights_fingerprint", "dtype", "scheduler", "loras", "seed", "steps", "guidance",
             "prompt", "negative_prompt", "composed_prompt", "style", "references", "requested", "rendered",
             "timings", "peak_memory", "warnings"}
PROMPT = "Mara turns to face the camera, slow dolly in"


def reference(role="character", label="Mara", seed=0, size=(48, 40)):
    image = np.random.default_rng(seed).random((*size, 3), dtype=np.float32)
    return Reference(image, np.ones(size, np.float32), role, label, sha256=f"{seed:064x}")


ONE = ReferenceSet((reference(),))
THREE = ReferenceSet((reference(), reference("prop", "lantern", 1), reference("style", "noir poster", 2)))


def inputs(**changes) -> SamplerInputs:
    """A quick render: tiny-random at 144p 1:1, 5 s at 4 fps = 21 frames of 144x144."""
    base = dict(model=registry.resolve("tiny-random"), references=ONE, prompt=PROMPT, seed=7, resolution="144p",
                aspect="1:1", duration=5.0)
    base.update(changes)
    return SamplerInputs(**base)


@pytest.fixture(autouse=True)
def nothing_loaded_before():
    diffusers_loading.CACHE.release()
    yield


@pytest.mark.slow
def test_a_clip_with_its_info_and_progress():
    seen: list[tuple[int, int]] = []
    remove = host.add_progress_listener(lambda desc, value, total: seen.append((value, total)))
    try:
        result = generate(inputs())
    finally:
        remove()
    assert result.frames.shape == (21, 144, 144, 3) and result.fps == 4.0
    assert result.frames.dtype == np.float32 and 0.0 <= result.frames.min() and result.frames.max() <= 1.0
    assert seen[-2:] == [(1, 2), (2, 2)]  # one update per step
    info = json.loads(result.info_json())
    assert INFO_KEYS <= set(info)
    assert info["rendered"] == {"width": 144, "height": 144, "render_width": 144, "render_height": 144, "frames": 21,
                                "fps": 4.0, "seconds": 5.25, "strategy": "native"}
    assert info["requested"]["seconds"] == 5.0 and (info["seed"], info["steps"], info["guidance"]) == (7, 2, 5.0)
    assert info["camera"]["phrase"] == "slow dolly in" and info["composed_prompt"].startswith(PROMPT)
    assert info["references"][0]["hash"] == f"{0:064x}" and info["references"][0]["used_as"] == "image"
    assert info["weights_fingerprint"].startswith("sha256:") and info["dtype"] == "fp32"
    assert any("test model" in w for w in info["warnings"])


@pytest.mark.slow
def test_same_seed_same_clip_other_seed_other_clip():
    first = generate(inputs(seed=11)).frames
    np.testing.assert_array_equal(first, generate(inputs(seed=11)).frames)
    assert np.abs(first - generate(inputs(seed=12)).frames).mean() > 1e-3


@pytest.mark.parametrize("refs, pasted, skipped", [
    (ReferenceSet((reference(), reference("environment", "harbour", 3))), 2, []),
    (THREE, 2, ["style"]),
])
@pytest.mark.slow
def test_two_and_three_references(refs, pasted, skipped):
    result = generate(inputs(references=refs, guidance=1.0))
    assert result.frames.shape == (21, 144, 144, 3)
    assert result.info["backend_info"]["pasted_references"] == pasted and result.info["skipped_roles"] == skipped
    assert [r["used_as"] for r in result.info["references"]].count("image") == pasted


def test_preset_style_and_input_steps_in_that_order():
    style = StyleDirection(names=("house",), style="warm light", camera="handheld", defaults={"steps": 3})
    job = prepare(inputs(style=style, prompt="Mara waits"))
    assert (job.steps, job.sources["steps"]) == (3, "style") and job.camera.source == "default"  # style's camera
    assert prepare(inputs(style=style, steps=1)).steps == 1
    distilled = registry.resolve("tiny-random", LoadOptions(preset="distill-4step"))
    job = prepare(inputs(model=distilled))
    assert (job.steps, job.guidance, job.sources) == (4, 1.0, {"steps": "preset", "guidance": "preset"})
    assert any("step-distillation LoRA" in w for w in job.warnings)


@pytest.mark.slow
def test_a_previz_animatic_steers_the_model_frame_for_frame():
    previz = registry.resolve("previz", LoadOptions(match_frames_of="tiny-random"))
    animatic = generate(inputs(model=previz))
    assert animatic.frames.shape == (21, 144, 144, 3) and animatic.fps == 4.0  # planned with tiny-random's timing
    first = np.random.default_rng(2).random((5, 288, 288, 3), dtype=np.float32)  # resized to 144x144
    result = generate(inputs(first_frames=torch.from_numpy(first), control_video=animatic.frames, guidance=1.0,
                             control_strength=0.5))
    assert result.frames.shape == (21, 144, 144, 3)
    assert (result.info["first_frames"], result.info["control_video"]) == (5, 21)
    assert result.info["control_strength"] == 0.5 and result.info["backend_info"]["control_strength"] == 0.5


@pytest.mark.slow
def test_first_frames_and_control_video_reach_the_model():
    plain = generate(inputs(guidance=1.0)).frames
    control = np.random.default_rng(3).random((21, 144, 144, 3), dtype=np.float32)
    first = np.random.default_rng(4).random((5, 144, 144, 3), dtype=np.float32)
    steered = generate(inputs(guidance=1.0, control_video=control)).frames
    continued = generate(inputs(guidance=1.0, first_frames=first)).frames
    assert np.abs(steered - plain).mean() > 1e-3  # same seed: only the control video differs
    assert np.abs(continued - plain).mean() > 1e-3  # same seed: only the first frames differ


def test_a_whole_previous_clip_continues_from_its_last_frames():
    previous = np.random.default_rng(3).random((21, 144, 144, 3), dtype=np.float32)
    job = prepare(inputs(first_frames=previous))
    assert np.array_equal(job.first_frames, previous[-9:])  # 9 (the default): whole latent frames
    assert not any("continued from" in w for w in job.warnings)
    job = prepare(inputs(first_frames=torch.from_numpy(previous), continue_frames=8))  # snapped to 4k+1
    assert np.array_equal(job.first_frames, previous[-5:])
    assert any("last 5 frames, not 8" in w for w in job.warnings)
    job = prepare(inputs(first_frames=previous[-7:], continue_frames=9))  # fewer than asked: 5 of the 7
    assert np.array_equal(job.first_frames, previous[-5:])
    job = prepare(inputs(first_frames=previous[-1]))  # one image [H, W, 3] is one frame
    assert np.array_equal(job.first_frames, previous[-1:])


BAD_INPUTS = [
    ("references", dict(references=None)),
    ("references", dict(references=ReferenceSet(()))),
    ("references", dict(references=ReferenceSet(tuple(reference(seed=i) for i in range(4))))),
    ("references", dict(references=ReferenceSet((reference("hero"),)))),
    ("references", dict(references="Mara.png")),
    ("prompt", dict(prompt="   \n ")),
    ("prompt", dict(prompt=None)),
    ("prompt", dict(prompt="slow dolly in " * 400)),
    ("resolution", dict(resolution="720p")),  # tiny-random renders 144p and 480p only
    ("resolution", dict(resolution="8k")),
    ("aspect", dict(aspect="4:3")),
    ("duration", dict(duration=4.0)),
    ("duration", dict(duration=8.5)),
    ("seed", dict(seed=-1)),
    ("steps", dict(steps=500)),
    ("guidance", dict(guidance=99.0)),
    ("flow_shift", dict(flow_shift=-1.0)),
    ("flow_shift", dict(flow_shift=float("nan"))),
    ("control_strength", dict(control_strength=1.5)),
    ("steps", dict(steps=6, preset_model="distill-4step")),
    ("control_video", dict(control_video=np.zeros((20, 144, 144, 3), np.float32))),
    ("control_video", dict(control_video=np.zeros((21, 144, 256, 3), np.float32))),
    ("first_frames", dict(first_frames=np.zeros((21, 144, 144, 3), np.float32), continue_frames=21)),
    ("continue_frames", dict(first_frames=np.zeros((21, 144, 144, 3), np.float32), continue_frames=0)),
    ("first_frames", dict(first_frames=np.full((2, 144, 144, 3), np.nan, np.float32))),
    ("style", dict(style="noir")),
    ("budget", dict(budget=840)),
    ("model", dict(model=42)),
    ("model", dict(model="not-installed")),
]


@pytest.mark.parametrize("field, change", BAD_INPUTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_before_any_work(field, change):
    shared_ledger().topup("default", 5000)
    budget = plan_budget(model="tiny-random", resolution="144p", seconds=5)
    change = {"budget": budget, **change}
    if "preset_model" in change:  # a 4-step schedule asked for 6 steps
        change["model"] = registry.resolve("tiny-random", LoadOptions(preset=change.pop("preset_model")))
    with pytest.raises(InputError) as err:
        generate(inputs(**change))
    assert err.value.input == field and err.value.fix
    assert diffusers_loading.CACHE.current() is None  # no model was loaded
    assert [e.kind for e in shared_ledger().history()] == ["topup"]  # nothing was reserved


@pytest.mark.slow
def test_interrupt_mid_run_releases_credits_and_returns_nothing():
    ledger = shared_ledger()
    ledger.topup("default", 5000)
    budget = plan_budget(model="tiny-random", resolution="144p", seconds=5)

    def stop_after_first_step(desc, value, total):
        if value == 1:
            host.request_interrupt()

    remove = host.add_progress_listener(stop_after_first_step)
    try:
        with pytest.raises(Interrupted):
            generate(inputs(budget=budget, steps=3))
    finally:
        remove()
        host.clear_interrupt()
    kinds = [e.kind for e in ledger.history()]
    assert kinds[0] == "topup" and kinds[-1] == "release" and "charge" not in kinds
    assert ledger.balance().balance == 5000 and ledger.balance().held == 0


@pytest.mark.slow
def test_a_budget_is_charged_once_when_the_clip_exists():
    ledger = shared_ledger()
    ledger.topup("default", 5000)
    handle = registry.resolve("tiny-random")
    budget = plan_budget(model=handle, resolution="144p", seconds=5)
    result = generate(inputs(model=handle, budget=budget, guidance=1.0))
    charge = ledger.history()[-1]
    assert charge.kind == "charge" and -charge.amount == budget.estimate.per_clip > 0
    assert ledger.balance().balance == 5000 - budget.estimate.per_clip and ledger.balance().held == 0
    recorded = charge.to_dict()["generation_info"]
    assert recorded["seed"] == result.info["seed"] and recorded["rendered"]["frames"] == 21
    assert charge.wall_seconds > 0 and charge.peak_vram_bytes is None  # no GPU here


def test_a_failure_after_reserving_releases_the_credits(refvideo_home):
    ledger = shared_ledger()
    ledger.topup("default", 5000)
    folder = refvideo_home / "models" / "loras"
    folder.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 40),
               "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(40, 4)},
              str(folder / "wrong_model.safetensors"))
    handle = registry.resolve("tiny-random", LoadOptions(lora="wrong_model.safetensors"))
    with pytest.raises(InputError) as err:  # found while loading, after the reservation
        generate(inputs(model=handle, budget=plan_budget(model=handle, resolution="144p", seconds=5)))
    assert err.value.input == "lora"
    assert [e.kind for e in ledger.history()] == ["topup", "reserve", "release"]
    assert ledger.balance().available == 5000


def test_nan_frames_are_an_error_not_a_clip():
    plan = plan_render("144p", "1:1", 5, fps=4, rule=WAN_FRAMES)
    frames = np.zeros((21, 144, 144, 3), np.float32)
    frames[3, 4, 5, 1] = np.inf
    with pytest.raises(GenerationError, match="NaN or infinite"):
        check_output(frames, plan)
    with pytest.raises(GenerationError, match="shaped"):
        check_output(frames[:20], plan)


def test_output_is_clipped_to_0_1_even_when_read_only():
    plan = plan_render("144p", "1:1", 5, fps=4, rule=WAN_FRAMES)
    frames = np.linspace(-0.5, 1.5, 21 * 144 * 144 * 3, dtype=np.float32).reshape(21, 144, 144, 3)
    frames.flags.writeable = False
    out = check_output(frames, plan)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert frames.min() == -0.5  # a read-only input is copied, never written


@pytest.mark.slow
def test_sampler_node_returns_image_fps_and_json_info():
    out = RefVideoSampler().sample(model=registry.resolve("tiny-random"), references=ONE, prompt=PROMPT, seed=3,
                                   guidance=1.0, resolution="144p", aspect="1:1")
    frames, fps, info = out["result"]
    assert isinstance(frames, torch.Tensor) and tuple(frames.shape) == (21, 144, 144, 3) and fps == 4.0
    assert json.loads(info)["model"] == "tiny-random" and "21 frames 144x144" in out["ui"]["text"][0]


@pytest.mark.slow
def test_keep_loaded_off_frees_the_pipeline_after_the_clip():
    handle = registry.resolve("tiny-random", LoadOptions(keep_loaded=False))
    generate(inputs(model=handle, guidance=1.0, steps=1))
    assert diffusers_loading.CACHE.current() is None


@pytest.mark.slow
def test_an_api_workflow_with_a_budget_renders_and_charges_once(tmp_path):
    """LoadReferenceSet -> CreditMeter -> RefVideoModelLoader -> RefVideoSampler -> VideoEncode, in-process."""
    from refvideo import NODE_CLASS_MAPPINGS
    from refvideo.headless import runner

    shared_ledger().topup("default", 5000)
    host.configure(output_dir=tmp_path)
    workflow = {
        "1": {"class_type": "LoadReferenceSet", "inputs": {
            "image_1": "samples/character_mara.png", "role_1": "character", "label_1": "Mara",
            "image_2": "none", "role_2": "environment", "label_2": "", "image_3": "none", "role_3": "prop",
            "label_3": ""}},
        "2": {"class_type": "RefVideoModelLoader", "inputs": {"model": "tiny-random"}},
        "5": {"class_type": "CreditMeter", "inputs": {"model": ["2", 0], "resolution": "144p", "duration": 5.0,
                                                      "audio": False, "clips": 1, "account": "default",
                                                      "budget_cap": 0}},
        "3": {"class_type": "RefVideoSampler", "inputs": {"model": ["2", 0], "references": ["1", 0],
                                                          "prompt": PROMPT, "seed": 1, "guidance": 1.0,
                                                          "resolution": "144p", "aspect": "1:1", "budget": ["5", 0]}},
        "4": {"class_type": "VideoEncode", "inputs": {"frames": ["3", 0], "fps": ["3", 1],
                                                      "generation_info": ["3", 2], "filename_prefix": "shot",
                                                      "format": "mp4-h264", "crf": 23, "preset": "ultrafast"}},
    }
    result = runner.execute(workflow, NODE_CLASS_MAPPINGS)
    files = [p for paths in result.files.values() for p in paths]
    assert len(files) == 1 and files[0].is_file() and files[0].stat().st_size > 0
    kinds = [e.kind for e in shared_ledger().history()]
    assert kinds == ["topup", "reserve", "charge"]


def test_a_render_outside_comfyui_keeps_no_autograd_graph():
    assert torch.is_grad_enabled()  # as in the CLI, `refvideo run` and the benchmarks
    result = generate(inputs(guidance=5.0))
    loaded = diffusers_loading.CACHE.current()
    for name, module in loaded.pipe.components.items():
        if isinstance(module, torch.nn.Module):
            assert not any(p.requires_grad for p in module.parameters()), name
    cached = [t for pair in loaded.embeddings.values() for t in pair if t is not None]
    assert len(cached) == 2 and all(t.grad_fn is None and not t.requires_grad for t in cached)
    assert result.info["timings"]["render_s"] > 0


def test_flow_shift_and_control_strength_are_recorded():
    result = generate(inputs(guidance=1.0, flow_shift=7.0))
    assert result.info["flow_shift"] == 7.0 and result.info["scheduler"]["flow_shift"] == 7.0
    assert result.info["scheduler"]["class"] == "UniPCMultistepScheduler"
    assert result.info["control_strength"] == 1.0
    default = generate(inputs(guidance=1.0))
    assert default.info["flow_shift"] == 0.0 and default.info["scheduler"]["flow_shift"] == 3.0  # the model's
