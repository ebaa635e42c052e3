"""Wan 2.1 VACE through diffusers' ``WanVACEPipeline``: reference images + prompt -> video.

VACE pastes reference content into the clip: each character, prop or environment reference
is matted onto white (its mask is the alpha), fitted to the canvas and prepended as a latent
frame that the pipeline removes before decoding, so references never flash into the output.
First frames (continuing a previous shot) are kept with a zero mask; a control video (e.g. a
previz animatic) is the frames to repaint. The ``style`` role is served by the prompt text.

This module is the pipeline family ``FAMILY`` of the model registry and the backend that
``tiny-random`` also renders with. Importing it is cheap; torch loads on first use.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import host
from ..engine.errors import GenerationError
from ..engine.frames import fit_box, resize_frames
from ..engine.memory_plan import ArchFacts
from ..engine.references.images import composite_over_white, to_uint8
from ..engine.references.reference import Reference
from ..engine.sizes import UPSCALE_1080, RenderPlan
from . import diffusers_loading as loading
from .backend import RenderRequest, RenderResult, VideoBackend
from .family import ChosenModel, PipelineFamily
from .model_folder import fingerprint, parameter_counts, read_config
from .spec import LoadOptions, ModelSpec, SchedulerChoice, family_defaults, sampling_preset

PIPELINE_CLASS = "WanVACEPipeline"
WEIGHT_COMPONENTS = ("text_encoder", "transformer", "vae")
WAN_ROLES = frozenset({"character", "environment", "prop"})
WAN_FPS = 16.0
TRAINED_FRAMES = 81
MAX_SEQUENCE_LENGTH = 512
BIG_MODEL_HIDDEN = 5120  # 14B; the 1.3B model has 1536
_EMBED_CACHE = 4


# The published architectures (configs of the Wan-AI '-diffusers' repositories), for the
# benchmark, which builds them with random weights, and for memory planning in tests and docs.
TEXT_ENCODER_CONFIG = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                           feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
VAE_CONFIG = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                  temperal_downsample=[False, True, True])
_TRANSFORMER_COMMON = dict(patch_size=(1, 2, 2), attention_head_dim=128, in_channels=16, out_channels=16,
                           text_dim=4096, freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                           rope_max_seq_len=1024, vace_in_channels=96)
REFERENCE_ARCHITECTURES: dict[str, dict] = {
    "Wan2.1-VACE-1.3B": dict(_TRANSFORMER_COMMON, num_attention_heads=12, ffn_dim=8960, num_layers=30,
                             vace_layers=list(range(0, 30, 2))),
    "Wan2.1-VACE-14B": dict(_TRANSFORMER_COMMON, num_attention_heads=40, ffn_dim=13824, num_layers=40,
                            vace_layers=list(range(0, 40, 5))),
}


def build_components(architecture: str, *, device: Any = "meta", dtype: Any = None) -> dict:
    """Text encoder, transformer and VAE of a published architecture with random weights.

    On the ``meta`` device nothing is allocated (parameter counting); on a GPU this is what
    the benchmark runs. The tokenizer and scheduler are not included.
    """
    torch, _, _ = loading.diffusion_libraries()
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    previous = torch.get_default_dtype()
    with torch.device(device):
        parts = {"vae": AutoencoderKLWan(**VAE_CONFIG)}  # fp32, as loaded for real
        torch.set_default_dtype(dtype or previous)  # build big parts directly in their dtype: no fp32 copy
        try:
            parts["text_encoder"] = UMT5EncoderModel(UMT5Config(**TEXT_ENCODER_CONFIG))
            parts["transformer"] = WanVACETransformer3DModel(**REFERENCE_ARCHITECTURES[architecture])
        finally:
            torch.set_default_dtype(previous)
    for module in parts.values():
        module.eval().requires_grad_(False)
    return parts


def reference_facts(architecture: str) -> ArchFacts:
    """:class:`ArchFacts` of a published architecture (counted on the meta device, no memory)."""
    parts = build_components(architecture)
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    largest = max(p.numel() for p in parts["transformer"].parameters())
    return facts_of(REFERENCE_ARCHITECTURES[architecture], VAE_CONFIG, TEXT_ENCODER_CONFIG, counts, largest)


def facts_of(tr: dict, vae: dict, te: dict, counts: dict[str, int], largest: int) -> ArchFacts:
    downsample = vae.get("temperal_downsample", [False, True, True])
    return ArchFacts(
        text_encoder_params=counts["text_encoder"], transformer_params=counts["transformer"],
        vae_params=counts["vae"], blocks=int(tr.get("num_layers", 30)),
        hidden=int(tr.get("num_attention_heads", 12)) * int(tr.get("attention_head_dim", 128)),
        ffn=int(tr.get("ffn_dim", 8960)), control_layers=len(tr.get("vace_layers") or []),
        patch=tuple(tr.get("patch_size", (1, 2, 2))), vae_temporal=2 ** sum(bool(x) for x in downsample),
        vae_spatial=2 ** len(downsample), vae_base_dim=int(vae.get("base_dim", 96)),
        text_layers=int(te.get("num_layers", 24)), text_hidden=int(te.get("d_model", 4096)),
        text_tokens=MAX_SEQUENCE_LENGTH, largest_leaf_params=largest, heads=int(tr.get("num_attention_heads", 12)))


# --------------------------------------------------------------------------- spec (no loading)


def arch_facts(folder: Path, options: LoadOptions | None = None) -> ArchFacts:
    """Sizes of a Wan VACE folder from its configs and safetensors headers (both Wan 2.2 experts)."""
    counts, largest = {}, 0
    for comp in WEIGHT_COMPONENTS:
        counts[comp], leaf = parameter_counts(folder / comp)
        largest = leaf if comp == "transformer" else largest
    facts = facts_of(read_config(folder, "transformer"), read_config(folder, "vae"),
                     read_config(folder, "text_encoder"), counts, largest)
    experts = 2 if (folder / "transformer_2" / "config.json").is_file() else 1
    stored = counts["transformer"] if options is not None and options.weight_dtype == "fp8_e4m3fn" else 0
    return replace(facts, experts=experts, transformer_bytes=stored)


def describe(facts: ArchFacts) -> str:
    """``Wan 2.1 VACE, 1.3B transformer (...)``, or Wan 2.2 with two experts."""
    billions = (facts.transformer_params * facts.experts + facts.text_encoder_params + facts.vae_params) / 1e9
    if facts.experts > 1:
        return (f"Wan 2.2 VACE, two {facts.transformer_params / 1e9:.1f}B experts (high and low noise; "
                f"{billions:.1f}B with text encoder and VAE)")
    return (f"Wan 2.1 VACE, {facts.transformer_params / 1e9:.1f}B transformer ({billions:.1f}B with text encoder "
            "and VAE)")


def folder_spec(name: str, facts: ArchFacts, description: str) -> ModelSpec:
    """16 fps, 4k+1 frames; 1.3B native at 480p, 14B at 720p."""
    big = facts.hidden >= BIG_MODEL_HIDDEN
    defaults = family_defaults("wan")
    return ModelSpec(
        name=name, kind=PIPELINE_CLASS, fps=WAN_FPS, size_multiple=facts.vae_spatial * facts.patch[1], roles=WAN_ROLES,
        default_steps=defaults["default_steps"], default_guidance=defaults["default_guidance"],
        native_resolution="720p" if big else "480p", trained_frames=TRAINED_FRAMES, family="wan",
        description=description, arch=facts)


def spec(name: str, folder: Path, options: LoadOptions | None = None) -> ModelSpec:
    """The facts of a Wan VACE folder, read from its configs and headers."""
    facts = arch_facts(folder, options)
    return folder_spec(name, facts, describe(facts))


def load(handle: ChosenModel) -> WanVaceBackend:
    """Load the folder (cached by folder + options) and return its backend."""
    folder = handle.folder
    assert folder is not None  # the registry resolves a diffusers model to its folder
    return load_backend(handle, handle.spec, ("diffusers", str(folder)),
                        lambda dtype: loading.from_folder(PIPELINE_CLASS, folder, dtype),
                        lambda _pipe: fingerprint(folder))


def load_backend(handle: ChosenModel, spec: ModelSpec, key: tuple, build_pipeline: Callable[[str], Any],
                 weights_fingerprint: Callable[[Any], str]) -> WanVaceBackend:
    """A backend on the pipeline cached under ``key`` + dtype + load options.

    On a miss, ``build_pipeline(dtype)`` makes the pipeline, ``weights_fingerprint(pipe)`` names
    its weights (taken before the load options, e.g. a fused LoRA, change them) and the options
    are applied.
    """
    options = handle.options
    device = host.torch_device()
    dtype = loading.resolve_dtype(options.dtype, device)

    def build() -> loading.LoadedPipeline:
        pipe = build_pipeline(dtype)
        weights = weights_fingerprint(pipe)
        loaded = loading.prepare(pipe, options, device=device, dtype=dtype, lora=handle.lora)
        loaded.fingerprint = weights
        return loaded

    return WanVaceBackend(loading.load_cached((*key, dtype, options.load_key()), build), spec, options)


# --------------------------------------------------------------------------- the backend


class WanVaceBackend(VideoBackend):
    """Renders a checked request with a loaded ``WanVACEPipeline``."""

    def __init__(self, loaded: loading.LoadedPipeline, spec: ModelSpec, options: LoadOptions) -> None:
        self.loaded = loaded
        self.spec = spec
        self.options = options

    def render(self, request: RenderRequest) -> RenderResult:
        """Steps: references -> conditioning video -> scheduler -> prompt embeddings -> denoise -> deliver."""
        torch = loading.torch_module()
        pipe, plan = self.loaded.pipe, request.plan
        width, height = plan.render_width, plan.render_height
        refs = [reference_image(r, width, height) for r in request.references if r.role in self.spec.roles]
        video, mask = conditioning(plan, request.first_frames, request.control_video)
        scheduler = set_scheduler(pipe, self.options.preset, self.spec.family, plan.resolution)
        cfg = request.guidance > 1.0
        batched = cfg and self.options.cfg_batching == "on"
        timings: dict[str, float] = {}
        step_times: list[float] = []
        started = time.perf_counter()

        def on_step_end(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
            step_times.append(time.perf_counter())
            if request.on_step is not None:
                request.on_step(i + 1, request.steps)
            return kwargs

        with loading.PeakMemory(self.loaded.device) as peak:
            try:
                embeds, negative = self._embeddings(request.composed_prompt, request.negative_prompt, cfg)
                timings["text_encode_s"] = time.perf_counter() - started
                generator = torch.Generator("cpu").manual_seed(int(request.seed))
                with paired_guidance(pipe.transformer, negative, enabled=batched):
                    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, video=video, mask=mask,
                               reference_images=refs or None, height=height, width=width,
                               num_frames=plan.frames, num_inference_steps=request.steps,
                               guidance_scale=request.guidance, generator=generator, output_type="np",
                               callback_on_step_end=on_step_end, max_sequence_length=MAX_SEQUENCE_LENGTH,
                               **second_expert_guidance(pipe, request.guidance_2))
            finally:
                pipe.maybe_free_model_hooks()
        frames = np.asarray(out.frames[0], dtype=np.float32)
        ended = time.perf_counter()
        if step_times:
            timings["condition_and_denoise_s"] = step_times[-1] - started - timings["text_encode_s"]
            timings["per_step_s"] = (step_times[-1] - step_times[0]) / max(len(step_times) - 1, 1) \
                if len(step_times) > 1 else timings["condition_and_denoise_s"]
            timings["decode_s"] = ended - step_times[-1]
        frames = deliver(frames, plan)
        timings["render_s"] = time.perf_counter() - started
        info = {
            "architecture": self.spec.description,  # "Wan 2.2 VACE, two ... experts" for two experts
            "fp8_storage": list(self.loaded.fp8_components),
            "weights_fingerprint": self.loaded.fingerprint,
            "dtype": self.loaded.dtype,
            "scheduler": scheduler,
            "loras": list(self.loaded.loras),
            "device": str(self.loaded.device),
            "memory_mode": self.loaded.memory_mode,
            "attention": self.loaded.attention,
            "compile": self.loaded.compile,
            "cfg_batched": batched,
            "pasted_references": len(refs),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "peak_memory": peak.result,
            "warnings": list(self.loaded.warnings),
        }
        return RenderResult(frames=frames, info=info)

    def _embeddings(self, prompt: str, negative: str, cfg: bool) -> tuple[Any, Any]:
        """Text embeddings for the prompt pair, cached for re-renders of the same shot."""
        cache = self.loaded.embeddings
        key = (prompt, negative if cfg else None)
        if key not in cache:
            pipe = self.loaded.pipe
            pos, neg = pipe.encode_prompt(prompt=prompt, negative_prompt=negative if cfg else None,
                                          do_classifier_free_guidance=cfg, max_sequence_length=MAX_SEQUENCE_LENGTH,
                                          device=pipe._execution_device)
            dtype = pipe.transformer.dtype
            while len(cache) >= _EMBED_CACHE:
                cache.pop(next(iter(cache)))
            cache[key] = (pos.to(dtype), neg.to(dtype) if neg is not None else None)
        return cache[key]


# --------------------------------------------------------------------------- pieces of a render


def second_expert_guidance(pipe: Any, guidance_2: float) -> dict:
    """``guidance_scale_2`` for a Wan 2.2 pipeline (two experts) when the sampler set ``guidance_2``."""
    if guidance_2 and getattr(pipe.config, "boundary_ratio", None) is not None:
        return {"guidance_scale_2": float(guidance_2)}
    return {}


def reference_image(ref: Reference, width: int, height: int) -> Any:
    """A reference as VACE wants it: RGB, matted onto white by its mask, cropped to the subject,
    fitted (aspect kept) and centred on a white ``width`` x ``height`` canvas."""
    from PIL import Image

    rgb = np.clip(np.asarray(ref.image, dtype=np.float32)[..., :3], 0.0, 1.0)
    alpha = np.clip(np.asarray(ref.mask, dtype=np.float32), 0.0, 1.0)
    if alpha.shape != rgb.shape[:2]:
        alpha = np.ones(rgb.shape[:2], dtype=np.float32)
    matted = to_uint8(composite_over_white(rgb, alpha))
    box = _subject_box(alpha)
    if box is not None:
        top, bottom, left, right = box
        matted = matted[top:bottom, left:right]
    image = Image.fromarray(matted, "RGB")
    size, offset = fit_box(image.width, image.height, width, height)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(image.resize(size, Image.Resampling.LANCZOS), offset)
    return canvas


def _subject_box(alpha: np.ndarray, margin: float = 0.04) -> tuple[int, int, int, int] | None:
    """The mask's bounding box plus a margin, or None when the mask covers (nearly) everything."""
    ys, xs = np.nonzero(alpha > 0.5)
    if ys.size == 0 or alpha.mean() > 0.98:
        return None
    h, w = alpha.shape
    my, mx = int(h * margin), int(w * margin)
    return max(ys.min() - my, 0), min(ys.max() + 1 + my, h), max(xs.min() - mx, 0), min(xs.max() + 1 + mx, w)


def conditioning(plan: RenderPlan, first_frames: np.ndarray | None,
                 control_video: np.ndarray | None) -> tuple[list | None, list | None]:
    """VACE's ``video`` and ``mask`` frames: kept first frames (mask 0), control frames or grey (mask 1)."""
    if first_frames is None and control_video is None:
        return None, None
    from PIL import Image

    n, w, h = plan.frames, plan.render_width, plan.render_height
    video = np.full((n, h, w, 3), 0.5, dtype=np.float32)
    mask = np.ones((n, h, w), dtype=np.float32)
    if control_video is not None:
        video[:] = resize_frames(control_video[:n], w, h)
    if first_frames is not None:
        k = min(len(first_frames), n)
        video[:k] = resize_frames(first_frames[:k], w, h)
        mask[:k] = 0.0
    to_pil = lambda a, mode: Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), mode)  # noqa: E731
    return [to_pil(f, "RGB") for f in video], [to_pil(m, "L").convert("RGB") for m in mask]


def deliver(frames: np.ndarray, plan: RenderPlan) -> np.ndarray:
    """Rendered frames at the delivered size: upscaled (720p -> 1080p) or centre-cropped (1088 -> 1080)."""
    h, w = frames.shape[1:3]
    if (w, h) == (plan.width, plan.height):
        return frames
    if plan.strategy == UPSCALE_1080:
        return resize_frames(frames, plan.width, plan.height)
    top, left = (h - plan.height) // 2, (w - plan.width) // 2
    if top < 0 or left < 0:
        raise GenerationError(f"rendered {w}x{h} is smaller than the delivered {plan.width}x{plan.height}.")
    return np.ascontiguousarray(frames[:, top:top + plan.height, left:left + plan.width])


def scheduler_choice(preset_name: str, family: str, resolution: str) -> dict | None:
    """The scheduler a preset (else the family) asks for, with its flow shift for ``resolution``."""
    choice = (sampling_preset(preset_name).scheduler
              or SchedulerChoice.from_dict(family_defaults(family).get("scheduler")))
    if choice is None:
        return None
    return {"class": choice.class_name, "flow_shift": choice.shift_for(resolution)}


def set_scheduler(pipe: Any, preset_name: str, family: str, resolution: str) -> dict:
    """Install the preset's scheduler on the pipeline (built from its saved config); return what was set."""
    choice = scheduler_choice(preset_name, family, resolution)
    base = pipe.__dict__.setdefault("_refvideo_base_scheduler", pipe.scheduler.config)
    if choice is None:
        pipe.scheduler = type(pipe.scheduler).from_config(base)
        return {"class": type(pipe.scheduler).__name__}
    import diffusers

    cls = getattr(diffusers, choice["class"])
    accepted = inspect.signature(cls.__init__).parameters
    shift = choice["flow_shift"]
    kwargs: dict = {}
    if shift is not None:
        kwargs = {"flow_shift": shift} if "flow_shift" in accepted else {"shift": shift}
    if choice["class"] == "UniPCMultistepScheduler":
        kwargs.update(prediction_type="flow_prediction", use_flow_sigmas=True)
    pipe.scheduler = cls.from_config({k: v for k, v in base.items() if k in accepted}, **kwargs)
    return {"class": choice["class"], **({"flow_shift": shift} if shift is not None else {})}


@contextmanager
def paired_guidance(transformer: Any, negative: Any, *, enabled: bool):
    """Run each step's conditional and unconditional passes as one batch of two.

    The pipeline calls the transformer twice per step (prompt, then negative prompt); with
    this on, the first call computes both in one batch and the second returns the stored
    half. Same numbers, fewer kernel launches and better GPU use at small sizes.
    """
    if not enabled or negative is None:
        yield
        return
    torch = loading.torch_module()
    previous = transformer.__dict__.get("forward")
    original = transformer.forward
    pending: list = []

    def forward(hidden_states, timestep, encoder_hidden_states, control_hidden_states=None,
                control_hidden_states_scale=None, attention_kwargs=None, return_dict=True, **kw):
        if encoder_hidden_states is negative and pending:
            return (pending.pop(),)
        if encoder_hidden_states is negative:
            return original(hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=negative,
                            control_hidden_states=control_hidden_states,
                            control_hidden_states_scale=control_hidden_states_scale,
                            attention_kwargs=attention_kwargs, return_dict=return_dict, **kw)
        out = original(hidden_states=torch.cat([hidden_states, hidden_states]),
                       timestep=torch.cat([timestep, timestep]),
                       encoder_hidden_states=torch.cat([encoder_hidden_states, negative]),
                       control_hidden_states=torch.cat([control_hidden_states, control_hidden_states]),
                       control_hidden_states_scale=control_hidden_states_scale,
                       attention_kwargs=attention_kwargs, return_dict=False, **kw)[0]
        cond, uncond = out.chunk(2)
        pending[:] = [uncond]
        return (cond,)

    transformer.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del transformer.forward
        else:
            transformer.forward = previous


FAMILY = PipelineFamily(name="wan_vace", pipeline_classes=(PIPELINE_CLASS,), weight_components=WEIGHT_COMPONENTS,
                        spec=spec, load=load)
