"""Will it fit? Weights plus activations of a render, per memory mode, against free memory.

Pure arithmetic over a model's architecture facts (:class:`ArchFacts`, read from its config
and safetensors headers without loading) and a render plan. The estimates are deliberately
a little generous; they decide the ``auto`` memory mode and refuse, before any loading, a
mode that cannot fit, naming one that would.

Modes, from fastest to leanest: ``none`` (every component on the GPU), ``model_offload``
(one whole component at a time on the GPU), ``group_offload`` (a couple of transformer blocks
at a time, streamed; the VAE resident; the text encoder on the GPU only while it encodes),
``sequential_offload`` (one layer at a time; slowest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InputError

GIB = 1024**3
MODE_ORDER: tuple[str, ...] = ("none", "model_offload", "group_offload", "sequential_offload")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# Per-token activation width of one transformer forward, in units of the hidden size: the
# fp32 residual stream (2), q/k/v and attention output (4), norms and modulation (2), plus the
# VACE control hints kept for the whole forward (one per control layer) and the FFN (2 x ffn).
_TOKEN_WIDTH_HIDDEN = 8
# Peak VAE working set per pixel of one frame, in units of its base channel width (fp32):
# causal-cache frames at full resolution, the up-sampling stage and the decoded output.
_VAE_WIDTH = 16
_VAE_TILE = 320  # diffusers' default tile (256) plus its overlap
HEADROOM = 0.92  # use at most this share of free memory


@dataclass(frozen=True)
class ArchFacts:
    """Sizes of a video diffusion pipeline that decide its memory use."""

    text_encoder_params: int
    transformer_params: int
    vae_params: int
    blocks: int
    hidden: int
    ffn: int
    control_layers: int = 0
    patch: tuple[int, int, int] = (1, 2, 2)
    vae_spatial: int = 8
    vae_temporal: int = 4
    vae_base_dim: int = 96
    text_layers: int = 24
    text_hidden: int = 4096
    text_tokens: int = 512
    largest_leaf_params: int = 0
    heads: int = 0  # attention heads (0 = unknown)
    # How the transformer is stored: bytes of one expert as held in memory (GGUF Q-types, fp8),
    # 0 = its parameters in the compute dtype; Wan 2.2 A14B has two experts of equal size.
    transformer_bytes: int = 0
    experts: int = 1

    @property
    def block_params(self) -> int:
        return max(self.transformer_params // max(self.blocks, 1), 1)

    def expert_bytes(self, dtype_bytes: int) -> int:
        """Bytes of one transformer expert's weights."""
        return self.transformer_bytes or self.transformer_params * dtype_bytes


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed by one memory mode."""

    mode: str
    weights: int  # resident weights at the peak
    activations: int
    cfg_batched: bool

    @property
    def peak(self) -> int:
        return self.weights + self.activations

    def describe(self) -> dict:
        return {"mode": self.mode, "weights_gib": round(self.weights / GIB, 2),
                "activations_gib": round(self.activations / GIB, 2), "peak_gib": round(self.peak / GIB, 2),
                "cfg_batched": self.cfg_batched}


@dataclass(frozen=True)
class MemoryDecision:
    """The chosen mode and CFG batching, with every estimate and the free memory they met."""

    mode: str
    cfg_batched: bool
    free: int
    estimates: tuple[MemoryEstimate, ...]
    accelerator: bool

    def describe(self) -> dict:
        return {"mode": self.mode, "cfg_batched": self.cfg_batched, "free_gib": round(self.free / GIB, 2),
                "accelerator": self.accelerator, "estimates": [e.describe() for e in self.estimates]}


def tokens(facts: ArchFacts, width: int, height: int, frames: int, references: int) -> int:
    """Transformer tokens of one forward: latent frames (plus one per reference) x latent patches."""
    latent_frames = (frames - 1) // facts.vae_temporal + 1 + references
    pt, ph, pw = facts.patch
    return (latent_frames // pt) * (height // (facts.vae_spatial * ph)) * (width // (facts.vae_spatial * pw))


def transformer_activations(facts: ArchFacts, n_tokens: int, act_bytes: int, batch: int = 1) -> int:
    width = facts.hidden * (_TOKEN_WIDTH_HIDDEN + facts.control_layers) + 2 * facts.ffn
    return batch * n_tokens * width * act_bytes


def vae_activations(facts: ArchFacts, width: int, height: int, tiled: bool) -> int:
    pixels = min(width, _VAE_TILE) * min(height, _VAE_TILE) if tiled else width * height
    return pixels * facts.vae_base_dim * 4 * _VAE_WIDTH


def text_activations(facts: ArchFacts, act_bytes: int) -> int:
    return facts.text_tokens * facts.text_hidden * 12 * act_bytes


def output_bytes(width: int, height: int, frames: int) -> int:
    """The decoded clip in fp32 (it lives on the device until it is copied out)."""
    return frames * height * width * 3 * 4


def estimate(facts: ArchFacts, mode: str, *, width: int, height: int, frames: int, references: int,
             dtype: str, vae_tiling: bool, cfg_batched: bool) -> MemoryEstimate:
    """Peak device memory of one render in ``mode``."""
    wb = DTYPE_BYTES[dtype]
    expert = facts.expert_bytes(wb)
    te_w, tr_w, vae_w = facts.text_encoder_params * wb, expert * facts.experts, facts.vae_params * 4
    a_tr = transformer_activations(facts, tokens(facts, width, height, frames, references), wb,
                                   2 if cfg_batched else 1)
    a_vae = vae_activations(facts, width, height, vae_tiling) + output_bytes(width, height, frames)
    a_te = text_activations(facts, wb)
    if mode == "none":
        weights = te_w + tr_w + vae_w
        act = max(a_tr, a_vae, a_te)
        return MemoryEstimate(mode, weights, act, cfg_batched)
    if mode == "model_offload":
        stages = [(te_w, a_te), (expert, a_tr), (vae_w, a_vae)]  # the idle expert waits on the CPU
    elif mode == "group_offload":
        # the transformer streams its blocks (one expert at a time, in its stored bytes); the VAE stays
        # on the device; the text encoder comes to the device whole while the prompts are encoded,
        # then waits on the CPU
        tr_block = facts.block_params * expert // max(facts.transformer_params, 1)
        tr_rest = max(expert - facts.blocks * tr_block, 0)
        stages = [(te_w + vae_w, a_te), (vae_w + tr_rest + 2 * tr_block, a_tr), (vae_w, a_vae)]
    elif mode == "sequential_offload":
        leaf = 2 * max(facts.largest_leaf_params, facts.block_params // 4) * wb
        stages = [(leaf, a_te), (leaf, a_tr), (leaf, a_vae)]
    else:
        raise InputError(f"'{mode}' is not a memory mode.", input="memory_mode",
                         fix=f"Choose one of auto, {', '.join(MODE_ORDER)}.")
    weights, act = max(stages, key=lambda s: s[0] + s[1])
    return MemoryEstimate(mode, weights, act, cfg_batched)


def _fits(e: MemoryEstimate, free: int) -> bool:
    return e.peak <= free * HEADROOM


def decide(facts: ArchFacts | None, *, requested_mode: str, cfg_batching: str, free: int, accelerator: bool,
           width: int, height: int, frames: int, references: int, dtype: str, vae_tiling: bool,
           guidance: float) -> MemoryDecision:
    """Choose the memory mode and CFG batching for a render, or refuse one that cannot fit.

    ``requested_mode`` ``auto`` takes the fastest mode that fits; an explicit mode that does
    not fit is refused naming one that would. Without an accelerator memory modes do not
    apply: the whole pipeline must fit in RAM. CFG batching (``auto``) is used when guidance
    is on, a GPU is there (on a CPU it gains nothing) and the doubled activations still fit.
    """
    if facts is None:  # nothing heavy to place (previz)
        return MemoryDecision(requested_mode if requested_mode != "auto" else "none", False, free, (), accelerator)
    uses_cfg = guidance > 1.0
    kw: dict[str, Any] = dict(width=width, height=height, frames=frames, references=references, dtype=dtype,
                              vae_tiling=vae_tiling)
    modes = MODE_ORDER if accelerator else ("none",)
    want_batch = uses_cfg and (cfg_batching == "on" or (cfg_batching == "auto" and accelerator))
    single = {m: estimate(facts, m, cfg_batched=False, **kw) for m in modes}
    batched = {m: estimate(facts, m, cfg_batched=True, **kw) for m in modes} if want_batch else {}
    estimates = tuple(single.values()) + tuple(batched.values())
    if requested_mode == "auto" or not accelerator:
        candidates = [m for m in modes if _fits(single[m], free)]
    else:
        if requested_mode not in MODE_ORDER:
            estimate(facts, requested_mode, cfg_batched=False, **kw)  # raises the clear error
        candidates = [requested_mode] if _fits(single[requested_mode], free) else []
    if not candidates:
        raise _does_not_fit(requested_mode, single, free, accelerator, vae_tiling, width, height)
    mode = candidates[0]
    cfg = bool(want_batch and (cfg_batching == "on" or _fits(batched[mode], free)))
    if cfg_batching == "on" and want_batch and not _fits(batched[mode], free):
        raise InputError(
            f"CFG batching needs about {batched[mode].peak / GIB:.1f} GiB in {mode} mode; "
            f"{free / GIB:.1f} GiB is free.", input="cfg_batching",
            fix="Set cfg_batching to auto or off (same result, run one after the other).")
    return MemoryDecision(mode, cfg, free, estimates, accelerator)


def _does_not_fit(requested: str, single: dict[str, MemoryEstimate], free: int, accelerator: bool,
                  vae_tiling: bool, width: int, height: int) -> InputError:
    free_gib = free / GIB
    fitting = [m for m, e in single.items() if _fits(e, free)]
    if requested not in ("auto",) and accelerator and fitting:
        e = single[requested]
        return InputError(
            f"memory mode '{requested}' needs about {e.peak / GIB:.1f} GiB for {width}x{height}; "
            f"{free_gib:.1f} GiB is free.", input="memory_mode",
            fix=f"Use memory_mode '{fitting[0]}' (about {single[fitting[0]].peak / GIB:.1f} GiB) or 'auto'.")
    leanest = min(single.values(), key=lambda e: e.peak)
    where = "GPU memory" if accelerator else "RAM"
    tips = ["a lower resolution or a shorter duration"]
    if not vae_tiling:
        tips.insert(0, "vae_tiling on")
    return InputError(
        f"this render needs about {leanest.peak / GIB:.1f} GiB of {where} even in "
        f"'{leanest.mode}' mode; {free_gib:.1f} GiB is free.", input="memory_mode",
        fix=f"Try {' or '.join(tips)}, or close other programs using the {where}.")
