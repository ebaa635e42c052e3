"""RefVideoSampler's engine: check every input, plan, reserve credits, render, report.

:func:`generate` is two steps. :func:`prepare` checks everything that can be checked without
a model (references, prompt, seed, resolution, duration, first frames, control video, the
budget socket, memory fit) and composes the prompt and camera; it raises
:class:`~engine.errors.InputError` naming the input before any work. :func:`run` reserves
the clip's credits, loads the model (cached), renders with a progress bar that is also the
interrupt check, refuses NaN/inf frames, commits the credits and returns the frames with
the generation info. Any failure or interrupt releases the reservation first; an interrupt
also frees accelerator memory. Nothing is written to disk here.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import host, ranks
from ..engine.camera.path import ShotCamera, shot_camera
from ..engine.credits.budget import CreditBudget, CreditHold
from ..engine.errors import GenerationError, InputError, RefVideoError, is_out_of_memory
from ..engine.frames import image_batch, resize_frames
from ..engine.memory_plan import MemoryDecision, decide
from ..engine.paths import pack_version
from ..engine.prompting import ComposedPrompt, compose_prompt, typed_text
from ..engine.ranks import OFF, Layout
from ..engine.references.reference import MAX_REFERENCES, ROLES, Reference, ReferenceSet
from ..engine.seeds import check_seed
from ..engine.sizes import (
    DEFAULT_ASPECT,
    DEFAULT_RESOLUTION,
    DEFAULT_SECONDS,
    MAX_SECONDS,
    MIN_SECONDS,
    RESOLUTIONS,
    UPSCALE_1080,
    RenderPlan,
    plan_render,
)
from ..engine.style import StyleDirection
from ..models import diffusers_loading as loading
from ..models.backend import RenderRequest, RenderResult, VideoBackend
from ..models.placement import DeviceInfo, choose_compile, choose_dtype, describe
from ..models.placement import nan_fix as placement_nan_fix
from ..models.registry import ModelHandle, resolve
from ..models.schedules import Schedule, check_steps, schedule_for
from ..models.spec import LoadOptions, ModelSpec, family_defaults, sampling_preset

MAX_STEPS = 200
MAX_GUIDANCE = 30.0
ASPECT_TOLERANCE = 0.02
log = logging.getLogger("refvideo")


MAX_PROMPT_CHARS = 4000
# Kept first frames fill whole latent frames (Wan packs frame 0 alone, then 4 frames each): 4k+1
CONTINUE_FRAMES_STEP = 4
DEFAULT_CONTINUE_FRAMES = 9
MAX_CONTINUE_FRAMES = 32  # accepted; the count used is snapped down to 4k+1 (at most 29)
MAX_FLOW_SHIFT = 100.0


@dataclass
class SamplerInputs:
    """RefVideoSampler's inputs as the node received them (socket values are checked by :func:`prepare`)."""

    model: object
    references: object
    prompt: str
    seed: int = 0
    steps: int = 0
    guidance: float = 0.0
    negative_prompt: str = ""
    resolution: str = DEFAULT_RESOLUTION
    aspect: str = DEFAULT_ASPECT
    duration: float = DEFAULT_SECONDS
    style: StyleDirection | None = None
    budget: object = None
    first_frames: object = None
    control_video: object = None
    continue_frames: int = DEFAULT_CONTINUE_FRAMES
    flow_shift: float = 0.0
    control_strength: float = 1.0
    guidance_2: float = 0.0  # Wan 2.2's low-noise expert; 0 = same as guidance


@dataclass
class Job:
    """A fully checked render: nothing in it has touched a model yet."""

    handle: ModelHandle
    spec: ModelSpec
    references: ReferenceSet
    prompt: str
    composed: ComposedPrompt
    plan: RenderPlan
    seed: int
    steps: int
    guidance: float
    sources: dict
    style: StyleDirection | None
    camera: ShotCamera
    first_frames: np.ndarray | None
    control_video: np.ndarray | None
    memory: MemoryDecision
    budget: CreditBudget | None
    warnings: list[str] = field(default_factory=list)
    layout: Layout = field(default_factory=Layout)
    schedule: Schedule | None = None  # of a diffusion model
    flow_shift: float = 0.0
    control_strength: float = 1.0
    continue_frames: int = DEFAULT_CONTINUE_FRAMES  # as asked; len(first_frames) is what is kept
    device: DeviceInfo | None = None  # of a diffusion model
    guidance_2: float = 0.0


@dataclass
class Generation:
    """Frames ``[F, H, W, 3]`` float32 0..1, their fps, and the generation info."""

    frames: np.ndarray
    fps: float
    info: dict

    def info_json(self) -> str:
        return json.dumps(self.info, ensure_ascii=False, default=str)

    def summary(self) -> str:
        r = self.info["rendered"]
        return (f"{self.info['model']}: {r['frames']} frames {r['width']}x{r['height']} at {r['fps']:g} fps "
                f"({r['seconds']:g} s), seed {self.info['seed']}, {self.info['steps']} steps, "
                f"{self.info['timings'].get('total_s', 0):.1f} s")


def generate(inputs: SamplerInputs) -> Generation:
    """Check, plan, reserve, render and report one clip (see the module docstring)."""
    return run(prepare(inputs))


# --------------------------------------------------------------------------- checks (no model work)


def prepare(inputs: SamplerInputs) -> Job:
    """Every check and plan that needs no model; raises InputError naming the input."""
    handle = check_model(inputs.model)
    spec = handle.spec
    refs = check_references(inputs.references)
    prompt = check_prompt(inputs.prompt)
    style = check_style(inputs.style)
    seed = check_seed(inputs.seed)
    budget = check_budget(inputs.budget)
    plan = plan_for(spec, handle.options, inputs.resolution, inputs.aspect, inputs.duration)
    steps, guidance, sources = sampling(spec, handle.options.preset, style, inputs.steps, inputs.guidance)
    flow_shift = check_number(inputs.flow_shift, "flow_shift", 0.0, MAX_FLOW_SHIFT,
                              "Give 0 (the model's default) or a shift such as 16 (Wan VACE), 5 or 3.")
    control_strength = check_number(inputs.control_strength, "control_strength", 0.0, 1.0,
                                    "Give 0 (no control) to 1 (full control).")
    schedule = noise_schedule(spec, handle.options.preset, plan.resolution, flow_shift, steps)
    first = check_frames_input(continuation(inputs.first_frames, inputs.continue_frames), plan, "first_frames")
    control = check_frames_input(inputs.control_video, plan, "control_video")
    camera = parse_camera(prompt, style, refs)
    negative = check_negative_prompt(inputs.negative_prompt) or _family(spec).get("default_negative", "")
    composed = compose_prompt(prompt, refs, style, roles=spec.roles, camera_phrase=camera.phrase,
                              negative=negative)
    pasted = sum(1 for r in refs if r.role in spec.roles)
    device = describe_device(spec)
    memory = plan_memory(handle, spec, plan, pasted, guidance, device)
    check_compile(handle.options, memory, device)
    handle, layout, parallel_notes = plan_parallel(handle, spec, plan, pasted)
    job = Job(handle=handle, spec=spec, references=refs, prompt=prompt, composed=composed, plan=plan, seed=seed,
              steps=steps, guidance=guidance, sources=sources, style=style, camera=camera, first_frames=first,
              control_video=control, memory=memory, budget=budget, layout=layout, schedule=schedule,
              flow_shift=flow_shift, control_strength=control_strength, continue_frames=inputs.continue_frames,
              device=device)
    job.guidance_2 = check_guidance_2(inputs.guidance_2, spec, job.warnings)
    job.warnings = [*collect_warnings(job), *parallel_notes, *job.warnings]
    return job


def check_model(model: object) -> ModelHandle:
    """A model handle from RefVideoModelLoader (a plain model name is resolved with defaults)."""
    if isinstance(model, str):
        return resolve(model)
    if not isinstance(model, ModelHandle):
        raise InputError(f"expects a RefVideo model, got {type(model).__name__}.", input="model",
                         fix="Connect the output of a RefVideoModelLoader node.")
    return model


def check_references(references: object) -> ReferenceSet:
    """1-3 references with known roles and usable images."""
    if references is None:
        raise InputError("no reference images were given.", input="references",
                         fix="Connect a LoadReferenceSet node with 1 to 3 images.")
    if not isinstance(references, ReferenceSet):
        items = tuple(references) if isinstance(references, (list, tuple)) else None
        if items is None or not all(isinstance(r, Reference) for r in items):
            raise InputError(f"expects a reference set, got {type(references).__name__}.", input="references",
                             fix="Connect the output of a LoadReferenceSet node.")
        references = ReferenceSet(items)
    count = len(references)
    if not 1 <= count <= MAX_REFERENCES:
        raise InputError(f"{count} reference images were given; RefVideo takes 1 to {MAX_REFERENCES}.",
                         input="references", fix=f"Use 1 to {MAX_REFERENCES} images, one subject each.")
    for i, ref in enumerate(references, 1):
        image = np.asarray(ref.image)
        if ref.role not in ROLES:
            raise InputError(f"reference {i} has the role '{ref.role}'.", input="references",
                             fix=f"Give each reference one of the roles {', '.join(ROLES)}.")
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 8:
            raise InputError(f"reference {i} is not a usable image (shape {image.shape}).", input="references",
                             fix="Give RGB images of at least 8x8 pixels.")
        if not np.isfinite(image).all():
            raise InputError(f"reference {i} contains NaN or infinite pixels.", input="references",
                             fix="Reload the image.")
    return references


def check_prompt(prompt: Any) -> str:
    text = typed_text(prompt, "prompt", limit=MAX_PROMPT_CHARS,
                      fix=f"Keep it under {MAX_PROMPT_CHARS} characters: the text encoder reads about 512 tokens; "
                          "put lasting looks in a style skill.")
    if not text:
        raise InputError("the shot description is empty.", input="prompt",
                         fix="Describe the action and the camera, e.g. 'she turns to the window, slow dolly in'.")
    return text


def check_negative_prompt(text: object) -> str:
    return typed_text(text, "negative_prompt", limit=MAX_PROMPT_CHARS)


def check_style(style: object) -> StyleDirection | None:
    if style is None or isinstance(style, StyleDirection):
        return style
    raise InputError(f"expects a style direction, got {type(style).__name__}.", input="style",
                     fix="Connect the output of a StyleSkill node, or leave style unconnected.")


def check_budget(budget: object) -> CreditBudget | None:
    if budget is None:
        return None
    if not isinstance(budget, CreditBudget):
        raise InputError(f"expects a credit budget, got {type(budget).__name__}.", input="budget",
                         fix="Connect the budget output of a CreditMeter node, or leave budget unconnected.")
    return budget


def plan_for(spec: ModelSpec, options: LoadOptions, resolution: str, aspect: str, duration: float) -> RenderPlan:
    """The render plan on this model, refusing resolutions it does not render."""
    if resolution not in spec.resolutions:
        raise InputError(f"{spec.name} does not render {resolution}.", input="resolution",
                         fix=f"Choose one of {', '.join(spec.resolutions)} for this model.")
    # auto: never render above the size the model was trained at; 1080p is 720p upscaled unless the
    # model is native 1080p (previz). 'crop' renders 1920x1088 natively on request.
    upscale = options.hd_strategy == "upscale" or (options.hd_strategy == "auto" and spec.native_resolution != "1080p")
    return plan_render(resolution, aspect, duration, fps=spec.fps, rule=spec.frame_rule,
                       size_multiple=spec.size_multiple, upscale_1080=upscale)


def _family(spec: ModelSpec) -> dict:
    return family_defaults(spec.family)


def sampling(spec: ModelSpec, preset_name: str, style: StyleDirection | None, steps: object,
             guidance: object) -> tuple[int, float, dict]:
    """Steps and guidance: the sampler's own non-zero value, else the style's, the preset's, the model's."""
    chosen = sampling_preset(preset_name)
    defaults = style.defaults if style else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, given, preset_value, model_default in (("steps", steps, chosen.steps, spec.default_steps),
                                                     ("guidance", guidance, chosen.guidance, spec.default_guidance)):
        for source, value in (("input", given), ("style", defaults.get(name)), ("preset", preset_value),
                              ("model", model_default)):
            if value not in (None, 0, 0.0):
                values[name], sources[name] = value, source
                break
    try:
        n_steps, scale = int(values["steps"]), float(values["guidance"])
    except (TypeError, ValueError):
        raise InputError("steps and guidance must be numbers.", input="steps",
                         fix="Give a whole number of steps and a decimal guidance.") from None
    if isinstance(values["steps"], bool) or not 1 <= n_steps <= MAX_STEPS or n_steps != values["steps"]:
        raise InputError(f"{values['steps']!r} steps (from the {sources['steps']}) is not allowed.", input="steps",
                         fix=f"Give 1 to {MAX_STEPS} steps, or 0 for the default.")
    if not math.isfinite(scale) or not 0.0 <= scale <= MAX_GUIDANCE:
        raise InputError(f"guidance {values['guidance']} (from the {sources['guidance']}) is out of range.",
                         input="guidance", fix=f"Give 1 to {MAX_GUIDANCE:g} (1 = no guidance), or 0 for the default.")
    return n_steps, scale, sources


def kept_frame_count(count: int, available: int) -> int:
    """The first frames kept: at most ``count`` and ``available``, snapped down to 4k+1 so they fill
    whole latent frames (a latent frame is then kept exactly when all its pixel frames are)."""
    most = min(count, available)
    return (most - 1) // CONTINUE_FRAMES_STEP * CONTINUE_FRAMES_STEP + 1


def check_guidance_2(value: Any, spec: ModelSpec, warnings: list[str]) -> float:
    """The low-noise expert's guidance (Wan 2.2); 0 = the same as ``guidance``; noted when the model has one expert."""
    scale = check_number(value or 0.0, "guidance_2", 0.0, MAX_GUIDANCE,
                         f"Give 1 to {MAX_GUIDANCE:g}, or 0 for the same as guidance.")
    experts = spec.arch.experts if spec.arch is not None else 1
    if scale and experts < 2:
        warnings.append(f"guidance_2 applies to Wan 2.2 models with two experts; {spec.name} has one, so it was "
                        "not used.")
        return 0.0
    return scale


def continuation(frames: Any, count: int) -> Any:
    """The last frames of a previous shot that a continuing clip starts from (see :func:`kept_frame_count`)."""
    if frames is None:
        return None
    frames = image_batch(frames, input_name="first_frames")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CONTINUE_FRAMES:
        raise InputError(f"continue_frames {count!r} is not a frame count.", input="continue_frames",
                         fix=f"Give 1 to {MAX_CONTINUE_FRAMES} frames (1, 5, 9, ... fill whole latent frames).")
    return frames[-kept_frame_count(count, len(frames)):]


def check_number(value: Any, name: str, low: float, high: float, fix: str) -> float:
    """A finite number in ``low..high``, else an InputError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
        raise InputError(f"{name} {value!r} is out of range ({low:g} to {high:g}).", input=name, fix=fix)
    return number


def noise_schedule(spec: Any, preset_name: str, resolution: str, flow_shift: float, steps: int) -> Any:
    """The scheduler and shift (or a preset's exact sigmas) of a diffusion model; None for previz."""
    if not spec.needs_weights:
        return None

    schedule = schedule_for(preset_name, spec.family, resolution, flow_shift)
    check_steps(schedule, steps, preset_name)
    return schedule


def check_frames_input(value: Any, plan: RenderPlan, name: str) -> np.ndarray | None:
    """First frames or a control video, at the plan's delivered size.

    A control video must have exactly the plan's frame count; first frames must be fewer.
    Both must have the plan's aspect ratio; other sizes are resized.
    """
    if value is None:
        return None
    frames = image_batch(value, input_name=name)[..., :3]
    n, h, w = frames.shape[:3]
    if name == "control_video" and n != plan.frames:
        raise InputError(
            f"the control video has {n} frames; this render needs {plan.frames} "
            f"({plan.requested_seconds:g} s at {plan.fps:g} fps, snapped to the model's frame rule).", input=name,
            fix="Render the control video for the same duration with match_frames_of set to this model "
                "(previz does this), or trim it to the needed length.")
    if name == "first_frames" and n >= plan.frames:
        raise InputError(f"{n} first frames leave nothing to generate in a {plan.frames}-frame clip.", input=name,
                         fix="Pass the last few frames of the previous shot (e.g. 1 to 16).")
    if abs(w / h - plan.width / plan.height) > ASPECT_TOLERANCE * plan.width / plan.height:
        raise InputError(f"{name} is {w}x{h}; this render is {plan.width}x{plan.height} ({plan.aspect}).",
                         input=name, fix=f"Use frames with the {plan.aspect} aspect ratio.")
    if not np.isfinite(frames).all():
        raise InputError("contains NaN or infinite values.", input=name, fix="Check the node that made them.")
    if (w, h) != (plan.width, plan.height):
        frames = resize_frames(frames, plan.width, plan.height)
    return np.ascontiguousarray(np.clip(frames, 0.0, 1.0), dtype=np.float32)


def parse_camera(prompt: str, style: StyleDirection | None, refs: ReferenceSet) -> ShotCamera:
    """The camera path of the shot (the style's camera habit applies when the prompt names none)."""
    return shot_camera(prompt, style.camera if style else "", refs)


def describe_device(spec: ModelSpec) -> DeviceInfo | None:
    """The device a diffusion model will run on; None for previz (no weights)."""
    if not spec.needs_weights or spec.arch is None:
        return None
    return describe(host.torch_device())


def plan_memory(handle: ModelHandle, spec: ModelSpec, plan: RenderPlan, references: int, guidance: float,
                device: DeviceInfo | None) -> MemoryDecision:
    """The memory mode and CFG batching for this render; refuses a mode that cannot fit."""
    options = handle.options
    if device is None:
        return decide(None, requested_mode=options.memory_mode, cfg_batching="off", free=0, accelerator=False,
                      width=plan.render_width, height=plan.render_height, frames=plan.frames,
                      references=references, dtype="fp32", vae_tiling=options.vae_tiling, guidance=guidance)
    return decide(spec.arch, requested_mode=options.memory_mode, cfg_batching=options.cfg_batching,
                  free=loading.free_memory(host.torch_device()), accelerator=device.accelerator,
                  width=plan.render_width, height=plan.render_height, frames=plan.frames, references=references,
                  dtype=choose_dtype(options.dtype, device), vae_tiling=options.vae_tiling, guidance=guidance)


def check_compile(options: LoadOptions, memory: MemoryDecision, device: DeviceInfo | None) -> None:
    """Refuse, before loading, a compile mode that cannot run with this memory mode on this device."""
    if device is not None:
        choose_compile(options.compile, memory.mode, device)


def plan_parallel(handle: ModelHandle, spec: ModelSpec, plan: RenderPlan,
                  references: int) -> tuple[ModelHandle, Layout, list[str]]:
    """How this render spreads over the launched processes, with notes; refuses a layout that cannot split.

    ``parallel`` on in a single process renders as off (the handle returned says so).
    """
    mode, degree = handle.options.parallel, ranks.world_size()
    if mode == OFF or not spec.needs_weights:
        notes = [f"{spec.name} does not use parallel '{mode}'; it was ignored."] if mode != OFF else []
        if degree > 1:
            notes.append(f"each of the {degree} processes rendered the whole clip (parallel is off); only the first "
                         "wrote it.")
        return handle, Layout(), notes
    if degree < 2:
        return handle.with_options(parallel=OFF), Layout(), [
            (f"parallel '{mode}' needs several processes (torchrun --nproc-per-node N -m refvideo run WORKFLOW); "
             "this single process rendered it as off.")]
    from ..models import context_parallel as cp
    from ..models.diffusers_loading import attention_name

    attention = attention_name(handle.options.attention, host.torch_device())
    layout = cp.plan_layout(mode, spec.arch, plan, references, attention=attention, degree=degree,
                            alternatives=parallel_alternatives(spec, handle.options, plan))
    cp.check_devices()
    return handle, layout, []


def parallel_alternatives(spec: ModelSpec, options: LoadOptions, plan: RenderPlan) -> list[tuple[str, RenderPlan]]:
    """Nearby renders to suggest when a layout does not split: other durations first, then other resolutions."""
    seconds = sorted((MIN_SECONDS + 0.25 * i for i in range(int((MAX_SECONDS - MIN_SECONDS) / 0.25) + 1)),
                     key=lambda s: abs(s - plan.requested_seconds))
    found: list[tuple[str, RenderPlan]] = []
    frames = {plan.frames}
    for s in seconds:
        other = plan_for(spec, options, plan.resolution, plan.aspect, s)
        if other.frames not in frames:
            frames.add(other.frames)
            found.append((f"duration {s:g} s ({other.frames} frames)", other))
    for resolution in spec.resolutions:
        if resolution != plan.resolution:
            other = plan_for(spec, options, resolution, plan.aspect, plan.requested_seconds)
            found.append((f"resolution {resolution} ({other.width}x{other.height})", other))
    return found


def collect_warnings(job: Job) -> list[str]:
    """What the user should know about this render (also shown in the generation info)."""
    spec, plan, options = job.spec, job.plan, job.handle.options
    warnings: list[str] = []
    if spec.test_only:
        warnings.append(f"{spec.name} is a test model with random weights: its output is noise.")
    order = list(RESOLUTIONS)
    if plan.resolution in order and spec.native_resolution in order and plan.strategy != UPSCALE_1080 and \
            order.index(plan.resolution) > order.index(spec.native_resolution):
        warnings.append(f"{spec.name} was trained at {spec.native_resolution}; {plan.resolution} works but may lose "
                        "coherence.")
    if spec.trained_frames and plan.frames > spec.trained_frames:
        warnings.append(f"{plan.frames} frames is longer than the {spec.trained_frames} frames {spec.name} was "
                        "trained on; motion may drift.")
    if plan.strategy != "native":
        warnings.append(f"{plan.width}x{plan.height}: {plan.strategy}.")
    for role in job.composed.skipped_roles:
        warnings.append(f"the {role} reference is not pasted by {spec.name}; it is given as text in the prompt.")
    unknown = list(job.camera.unknown)
    if unknown:
        warnings.append(f"camera words not understood (left out): {', '.join(unknown)}.")
    warnings.extend(_preset_warnings(options))
    if options.memory_mode not in ("auto", job.memory.mode) and job.memory.accelerator:
        warnings.append(f"memory_mode {options.memory_mode} was replaced by {job.memory.mode}.")
    if job.first_frames is not None and len(job.first_frames) != job.continue_frames:
        warnings.append(f"continued from the last {len(job.first_frames)} frames, not {job.continue_frames}: kept "
                        "frames fill whole latent frames (1, 5, 9, ... frames).")
    if job.schedule is not None and job.schedule.note:
        warnings.append(f"noise schedule: {job.schedule.note}.")
    return warnings


def _preset_warnings(options: LoadOptions) -> list[str]:
    wanted = sampling_preset(options.preset).lora
    if wanted is None:
        return []
    lora = options.lora.lower()
    if lora == "none":
        return [f"the '{options.preset}' preset is made for a step-distillation LoRA, and none is loaded: "
                "expect a blurry clip. Choose the LoRA in the loader."]
    if not any(h in lora for h in wanted.hints):
        return [f"the LoRA '{options.lora}' does not look like a step-distillation LoRA "
                f"(expected a name with {', '.join(wanted.hints)})."]
    return []


# --------------------------------------------------------------------------- the run


def run(job: Job) -> Generation:
    """Reserve, load, render, check and commit; release on any failure or interrupt."""
    reservation = ranks.on_main(lambda: _reserve(job))  # only the main rank touches the ledger
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        host.check_interrupt()
        backend = job.handle.with_options(
            memory_mode=job.memory.mode, cfg_batching="on" if job.memory.cfg_batched else "off").backend()
        timings["load_s"] = time.perf_counter() - started
        host.check_interrupt()
        result = _render(job, backend)
        frames = check_output(result.frames, job.plan, nan_fix(job))
        wall = time.perf_counter() - started
        timings["total_s"] = wall
        info = build_info(job, result.info, timings)
    except BaseException as exc:
        _release(reservation, exc)
        if host.is_interrupt(exc):
            _free_after_interrupt()
            raise
        if isinstance(exc, Exception) and not isinstance(exc, RefVideoError):
            raise _as_generation_error(exc) from exc
        raise
    if reservation is not None:
        _commit(reservation, info, wall)
    if not job.handle.options.keep_loaded:
        _release_models()
    return Generation(frames=frames, fps=job.plan.fps, info=info)


def _reserve(job: Job) -> CreditHold | None:
    if job.budget is None:
        return None
    running = host.current_execution()
    return job.budget.reserve(model=job.handle.name, resolution=job.plan.resolution,
                              seconds=job.plan.requested_seconds, prompt_id=running.prompt_id,
                              node_id=running.node_id)


def _commit(reservation: CreditHold, info: dict, wall: float) -> None:
    """Charge the finished clip. A ledger that cannot be written (locked for too long) does not cost
    the user the clip: the failure is logged and noted in the info, and the hold lapses at its expiry."""
    peak = (info.get("peak_memory") or {}).get("vram_bytes")
    on_gpu = str((info.get("peak_memory") or {}).get("device", "")).startswith("cuda")
    gpu = info["timings"].get("render_s") if on_gpu else None
    try:
        charge = reservation.commit(generation_info=info, wall_seconds=wall, gpu_seconds=gpu, peak_vram_bytes=peak)
    except RefVideoError as exc:
        log.error("RefVideo: the clip was made but could not be charged (%s).", exc)
        info.setdefault("warnings", []).append(f"credits not charged: {exc}")
        return
    if charge is not None:  # VideoEncode refunds it if the clip never reaches a file
        from ..engine.credits.clip_charges import CREDITS_KEY, charge_record

        info[CREDITS_KEY] = charge_record(charge)


def _render(job: Job, backend: VideoBackend) -> RenderResult:
    with host.Progress(job.steps, f"RefVideo {job.spec.name}") as progress:
        def on_step(done: int, total: int) -> None:
            progress.total = max(int(total), 1)
            progress.set(done)

        request = RenderRequest(references=job.references, prompt=job.prompt, composed_prompt=job.composed.text,
                                negative_prompt=job.composed.negative, plan=job.plan, seed=job.seed,
                                steps=job.steps, guidance=job.guidance, guidance_2=job.guidance_2, style=job.style,
                                first_frames=job.first_frames, control_video=job.control_video, camera=job.camera,
                                on_step=on_step, control_strength=job.control_strength, schedule=job.schedule)
        result = backend.render(request)
        host.check_interrupt()
    return result


def nan_fix(job: Job) -> str:
    """What to do when the render came out NaN, for this dtype on this device."""
    device = job.device or DeviceInfo("cpu")
    return placement_nan_fix(choose_dtype(job.handle.options.dtype, device), device)


def check_output(frames: Any, plan: RenderPlan, nan_fix: str = "fp16 can overflow with video models: set dtype "
                 "to bf16 or fp32 in the loader.") -> np.ndarray:
    """The backend's frames clipped to 0..1 in place (a clip is large: no second copy), refused when the
    shape is wrong or any value is NaN or infinite."""
    array = np.asarray(frames, dtype=np.float32)
    expected = (plan.frames, plan.height, plan.width, 3)
    if array.shape != expected:
        raise GenerationError(f"the backend returned frames shaped {array.shape}; the plan is {expected}.",
                              fix="Report this as a bug in the backend.")
    if not np.isfinite(array).all():
        raise GenerationError("the model produced NaN or infinite values instead of a clip.", fix=nan_fix)
    if not array.flags.writeable:
        array = array.copy()
    return np.clip(array, 0.0, 1.0, out=array)


def _release(reservation: CreditHold | None, exc: BaseException) -> None:
    """Give the reserved credits back; a failure to do so is logged, never hides ``exc``."""
    if reservation is None:
        return
    reason = "interrupted" if host.is_interrupt(exc) else f"failed: {type(exc).__name__}: {exc}"[:500]
    try:
        reservation.release(reason=reason)
    except Exception as release_error:  # noqa: BLE001 - the original error matters more
        log.error("RefVideo: could not release the credit reservation (%s); the ledger releases it "
                       "on its next start.", release_error)


def _as_generation_error(exc: BaseException) -> GenerationError:
    text = str(exc)
    if is_out_of_memory(exc):
        return GenerationError(f"the GPU ran out of memory while rendering ({text.splitlines()[0]}).",
                               input="memory_mode", fix="Choose a leaner memory_mode in the loader "
                               "(model_offload, group_offload), turn vae_tiling on, or render a lower resolution.")
    return GenerationError(f"rendering failed: {type(exc).__name__}: {text}",
                           fix="Check the console log; report a bug if it repeats.")


def _free_after_interrupt() -> None:
    loading.release_after_interrupt()


def _release_models() -> None:
    loading.CACHE.release()


# --------------------------------------------------------------------------- the report


def build_info(job: Job, backend_info: dict, timings: dict) -> dict:
    """The generation info: what re-renders this shot (model, weights, seed, prompts, references, timings)."""
    info = dict(backend_info or {})
    lifted = {k: info.pop(k, None) for k in ("weights_fingerprint", "dtype", "scheduler", "loras", "peak_memory",
                                             "timings", "warnings")}
    plan, options = job.plan, job.handle.options
    pasted = set(job.spec.roles)
    return {
        "pack_version": pack_version(),
        "model": job.spec.name,
        "backend": job.spec.kind,
        "weights_fingerprint": lifted["weights_fingerprint"],
        "dtype": lifted["dtype"],
        "scheduler": lifted["scheduler"],
        "loras": lifted["loras"] or [],
        "preset": options.preset,
        "seed": job.seed,
        "steps": job.steps,
        "guidance": job.guidance,
        **({"guidance_2": job.guidance_2} if job.guidance_2 else {}),
        "sampling_sources": job.sources,
        "prompt": job.prompt,
        "negative_prompt": job.composed.negative,
        "composed_prompt": job.composed.text,
        "style": job.style.describe() if job.style else None,
        "camera": job.camera.describe() if hasattr(job.camera, "describe") else None,
        "references": [{**r.describe(), "used_as": "image" if r.role in pasted else "text"} for r in job.references],
        "skipped_roles": list(job.composed.skipped_roles),
        "requested": plan.requested(),
        "rendered": plan.rendered(),
        "first_frames": 0 if job.first_frames is None else int(len(job.first_frames)),
        "control_video": 0 if job.control_video is None else int(len(job.control_video)),
        "control_strength": job.control_strength,
        "flow_shift": job.flow_shift,
        "memory": job.memory.describe(),
        "parallel": job.layout.describe(),
        "options": options.describe(),
        "timings": {**{k: round(v, 4) for k, v in timings.items()}, **(lifted["timings"] or {})},
        "peak_memory": lifted["peak_memory"],
        "warnings": [*job.warnings, *(lifted["warnings"] or [])],
        "backend_info": info,
    }
