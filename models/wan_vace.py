"""Wan 2.1 VACE through diffusers' ``WanVACEPipeline``: reference images + prompt -> video.

VACE pastes reference content into the clip: each character or prop reference is matted
onto white (its mask is the alpha) and cropped to the subject, an environment is used whole;
each is fitted to the canvas and prepended as a latent frame that the pipeline removes before
decoding, so references never flash into the output. First frames (continuing a previous
shot) are kept with a zero mask, aligned so that a latent frame is kept exactly when all the
pixel frames it packs are; a control video (e.g. a previz animatic) is the frames to
repaint, at ``control_strength``. The ``style`` role is served by the prompt text. Every
model call runs under ``torch.inference_mode()``.

This module is the pipeline family ``FAMILY`` of the model registry and the backend that
``tiny-random`` also renders with. Importing it is cheap; torch loads on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import host
from ..engine.errors import GenerationError
from ..engine.frames import resize_frames
from ..engine.memory_plan import ArchFacts
from ..engine.references.images import sampler_canvas as reference_image
from ..engine.sizes import RESOLUTIONS, UPSCALE_1080, RenderPlan
from . import diffusers_loading as loading
from . import placement as placing
from . import schedules
from .backend import RenderRequest, RenderResult, VideoBackend
from .family import ChosenModel, PipelineFamily
from .guidance import paired_guidance
from .model_folder import fingerprint, parameter_counts, read_config
from .spec import LoadOptions, ModelSpec, family_defaults

PIPELINE_CLASS = "WanVACEPipeline"
WEIGHT_COMPONENTS = ("text_encoder", "transformer", "vae")
WAN_ROLES = frozenset({"character", "environment", "prop"})
WAN_FPS = 16.0
# 144p is far below what the real models were trained on (their output falls apart): test model and previz only
WAN_RESOLUTIONS = tuple(r for r in RESOLUTIONS if r != "144p")
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
        resolutions=WAN_RESOLUTIONS, description=description, arch=facts)


def spec(name: str, folder: Path, options: LoadOptions | None = None) -> ModelSpec:
    """The facts of a Wan VACE folder, read from its configs and headers."""
    facts = arch_facts(folder, options)
    return folder_spec(name, facts, describe(facts))


def load(handle: ChosenModel) -> WanVaceBackend:
    """Load the folder (cached by its weights) and return its backend."""
    folder = handle.folder
    assert folder is not None  # the registry resolves a diffusers model to its folder
    return load_backend(handle, handle.spec, ("diffusers", str(folder)),
                        lambda dtype: loading.from_folder(PIPELINE_CLASS, folder, dtype),
                        lambda _pipe: fingerprint(folder))


def load_backend(handle: ChosenModel, spec: ModelSpec, source: tuple[str, ...], build_pipeline: Callable[[str], Any],
                 weights_fingerprint: Callable[[Any], str]) -> WanVaceBackend:
    """A backend on the pipeline cached under the weights key of ``source``, placed as the options say.

    On a miss, ``build_pipeline(dtype)`` makes the pipeline and ``weights_fingerprint(pipe)``
    names its weights (taken before a LoRA is fused). A hit with other placement options
    (memory mode, tiling, attention, compile) re-places the loaded weights in process.
    """
    options = handle.options
    device = host.torch_device()
    dtype = loading.resolve_dtype(options.dtype, device)

    def build() -> loading.LoadedPipeline:
        pipe = build_pipeline(dtype)
        weights = weights_fingerprint(pipe)
        loaded = loading.prepare(pipe, device=device, dtype=dtype, lora=handle.lora,
                                 lora_strength=options.lora_strength, parallel=options.parallel,
                                 weight_dtype=options.weight_dtype)
        loaded.fingerprint = weights
        return loaded

    loaded = loading.load_cached(options.weights_key(source, dtype), build)
    loading.configure(loaded, options.placement())
    return WanVaceBackend(loaded, spec, options)


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
        with torch.inference_mode():
            return self._render(request)

    def _render(self, request: RenderRequest) -> RenderResult:
        torch = loading.torch_module()
        pipe, plan, loaded = self.loaded.pipe, request.plan, self.loaded
        width, height = plan.render_width, plan.render_height
        refs = [reference_image(r, width, height) for r in request.references if r.role in self.spec.roles]
        video, mask = conditioning(plan, request.first_frames, request.control_video, request.control_strength)
        schedule = request.schedule or schedules.schedule_for(self.options.preset, self.spec.family, plan.resolution)
        scheduler = schedules.install(pipe, schedule)
        cfg = request.guidance > 1.0
        batched = cfg and self.options.cfg_batching == "on"
        clock = placing.Stopwatch(placing.synchronizer(loaded.device, loaded.info))
        steps_done: list[float] = []

        def on_step_end(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
            steps_done.append(clock.stamp(f"step_{i + 1}"))
            if request.on_step is not None:
                request.on_step(i + 1, request.steps)
            return kwargs

        with loading.PeakMemory(loaded.device) as peak:
            started = clock.stamp("start")
            try:
                embeds, negative = self._embeddings(request.composed_prompt, request.negative_prompt, cfg)
                encoded = clock.stamp("encoded")
                generator = torch.Generator("cpu").manual_seed(int(request.seed))
                with paired_guidance(pipe.transformer, negative, enabled=batched) as pairing:
                    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, video=video, mask=mask,
                               reference_images=refs or None, height=height, width=width,
                               num_frames=plan.frames, num_inference_steps=request.steps,
                               guidance_scale=request.guidance, generator=generator, output_type="np",
                               callback_on_step_end=on_step_end, max_sequence_length=MAX_SEQUENCE_LENGTH,
                               **second_expert_guidance(pipe, request.guidance_2))
                    calls = pairing.calls if pairing is not None else None
            finally:
                pipe.maybe_free_model_hooks()
            ended = clock.stamp("decoded")
        frames = deliver(np.asarray(out.frames[0], dtype=np.float32), plan)
        info = {
            "architecture": self.spec.description,  # "Wan 2.2 VACE, two ... experts" for two experts
            "fp8_storage": list(loaded.fp8_components),
            "weights_fingerprint": loaded.fingerprint,
            "dtype": loaded.dtype,
            "scheduler": scheduler,
            "loras": list(loaded.loras),
            "device": str(loaded.device),
            "memory_mode": loaded.memory_mode,
            "attention": loaded.attention,
            "compile": loaded.compile,
            "cfg_batched": batched,
            "transformer_calls": calls,
            "pasted_references": len(refs),
            "control_strength": request.control_strength if request.control_video is not None else None,
            "timings": {k: round(v, 4) for k, v in
                        stage_timings(started, encoded, steps_done, ended, time_now=clock.stamp("delivered")).items()},
            "timings_synchronized": placing.needs_sync(loaded.info),
            "peak_memory": peak.result,
            "warnings": list(loaded.warnings),
        }
        return RenderResult(frames=frames, info=info)

    def _embeddings(self, prompt: str, negative: str, cfg: bool) -> tuple[Any, Any]:
        """Text embeddings for the prompt pair (no autograd graph), cached for re-renders of the same shot."""
        cache = self.loaded.embeddings
        key = (prompt, negative if cfg else None)
        if key not in cache:
            pipe = self.loaded.pipe
            with loading.text_encoder_on_device(self.loaded):
                pos, neg = pipe.encode_prompt(prompt=prompt, negative_prompt=negative if cfg else None,
                                              do_classifier_free_guidance=cfg,
                                              max_sequence_length=MAX_SEQUENCE_LENGTH,
                                              device=pipe._execution_device)
            dtype = pipe.transformer.dtype
            while len(cache) >= _EMBED_CACHE:
                cache.pop(next(iter(cache)))
            cache[key] = (pos.detach().to(dtype), neg.detach().to(dtype) if neg is not None else None)
        return cache[key]


def stage_timings(started: float, encoded: float, steps: list[float], ended: float, *, time_now: float) -> dict:
    """Seconds per stage from synchronized stamps: text encoding, conditioning + denoising, per step, decoding."""
    timings = {"text_encode_s": encoded - started}
    if steps:
        timings["condition_and_denoise_s"] = steps[-1] - encoded
        timings["per_step_s"] = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 \
            else timings["condition_and_denoise_s"]
        timings["decode_s"] = ended - steps[-1]
    timings["render_s"] = time_now - started
    return timings


# --------------------------------------------------------------------------- pieces of a render


def second_expert_guidance(pipe: Any, guidance_2: float) -> dict:
    """``guidance_scale_2`` for a Wan 2.2 pipeline (two experts) when the sampler set ``guidance_2``."""
    if guidance_2 and getattr(pipe.config, "boundary_ratio", None) is not None:
        return {"guidance_scale_2": float(guidance_2)}
    return {}


def latent_mask_sources(frames: int, temporal: int = 4) -> list[int]:
    """The pixel frame whose mask each latent frame takes: VACE shrinks the mask in time with
    ``nearest-exact`` (as diffusers and the official inference do), so latent ``t`` reads one
    pixel frame, about ``4t + 1``; that is not the frames it packs (0, then ``4t-3 .. 4t``)."""
    torch = loading.torch_module()
    latents = (frames + temporal - 1) // temporal
    index = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1)
    picked = torch.nn.functional.interpolate(index, size=(latents, 1, 1), mode="nearest-exact")
    return [int(v) for v in picked.flatten().tolist()]


def kept_latents(kept_frames: int, temporal: int = 4) -> int:
    """How many leading latent frames pack only kept pixel frames (frame 0 alone, then ``temporal`` each)."""
    return 0 if kept_frames < 1 else 1 + (kept_frames - 1) // temporal


def conditioning(plan: RenderPlan, first_frames: np.ndarray | None, control_video: np.ndarray | None,
                 control_strength: float = 1.0) -> tuple[list | None, list | None]:
    """VACE's ``video`` and ``mask`` frames: kept first frames (mask 0), control frames or grey (mask 1).

    The control video is blended towards neutral grey by ``1 - control_strength`` (0 = the same
    as no control video). The mask is built so that the latent mask the transformer receives
    keeps a latent frame exactly when every pixel frame packed into it is kept: the pixel frame
    each kept latent reads its mask from (see :func:`latent_mask_sources`) is marked kept and
    made neutral grey, so it adds nothing to either half of the encoded video.
    """
    if first_frames is None and control_video is None:
        return None, None
    from PIL import Image

    n, w, h = plan.frames, plan.render_width, plan.render_height
    video = np.full((n, h, w, 3), 0.5, dtype=np.float32)
    mask = np.ones((n, h, w), dtype=np.float32)
    if control_video is not None:
        video[:] = resize_frames(control_video[:n], w, h)
        if control_strength != 1.0:
            video[:] = 0.5 + np.float32(control_strength) * (video - 0.5)
    if first_frames is not None:
        k = min(len(first_frames), n)
        video[:k] = resize_frames(first_frames[:k], w, h)
        mask[:k] = 0.0
        for source in latent_mask_sources(n)[:kept_latents(k)]:
            if source >= k:
                mask[source], video[source] = 0.0, 0.5
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


FAMILY = PipelineFamily(name="wan_vace", pipeline_classes=(PIPELINE_CLASS,), weight_components=WEIGHT_COMPONENTS,
                        spec=spec, load=load)
