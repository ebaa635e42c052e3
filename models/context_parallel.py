"""One shot over several GPUs: context parallelism for the Wan VACE transformer.

Each of N processes holds the whole model and 1/N of the video tokens; attention exchanges
the rest (Ulysses: an all-to-all over heads; ring: key/value chunks passed around). diffusers
does the work (``ContextParallelConfig``, ``enable_parallelism``) given a plan that says where
tokens are split and gathered. diffusers ships one for plain Wan only; :func:`vace_plan` is
the one for ``WanVACETransformer3DModel``:

- the rotary table is split as it leaves ``rope`` (positions need the whole sequence first);
- the first VACE block gets its video tokens and its control tokens split identically (it
  adds them token by token; later VACE blocks carry the split control tokens on);
- the first main block gets the video tokens split again (the VACE hook changed only what
  that VACE block received), so each rank's hints line up with its own tokens;
- ``proj_out`` gathers the sequence back, so every rank returns the whole prediction.

Text tokens are not split (cross-attention reads all of them on every rank).
"""

from __future__ import annotations

from typing import Any

from ..engine import ranks
from ..engine.errors import InputError
from ..engine.memory_plan import ArchFacts
from ..engine.ranks import OFF, Layout
from ..engine.sizes import RenderPlan
from .spec import PARALLEL_MODES as MODES

# Which of diffusers' attention backends (as the loader names them) run each mode. Ulysses
# needs a backend that supports context parallelism; ring also needs the attention's
# log-sum-exp, which PyTorch's default SDPA does not return.
ATTENTION_FOR_MODE: dict[str, tuple[str, ...]] = {
    "ulysses": ("sdpa", "sdpa-cudnn", "sdpa-flash", "flash-attn", "sage"),
    "ring": ("sdpa-cudnn", "sdpa-flash", "flash-attn", "sage"),
}


def vace_plan() -> dict[str, Any]:
    """The context-parallel plan of ``WanVACETransformer3DModel`` (see the module docstring)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    tokens = ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
    rotary = ContextParallelInput(split_dim=1, expected_dims=4, split_output=True)
    return {
        "rope": {0: rotary, 1: rotary},
        "vace_blocks.0": {"hidden_states": tokens, "control_hidden_states": tokens},
        "blocks.0": {"hidden_states": tokens},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"'{mode}' is not a parallel mode.", input="parallel",
                         fix=f"Choose one of {', '.join(MODES)}.")
    return mode


def token_count(arch: ArchFacts, width: int, height: int, frames: int, references: int) -> int:
    """Video tokens the transformer sees: latent frames (plus one per pasted reference) x patches."""
    p_t, p_h, p_w = arch.patch
    latent_frames = (frames - 1) // arch.vae_temporal + 1 + references
    return (latent_frames // p_t) * (height // arch.vae_spatial // p_h) * (width // arch.vae_spatial // p_w)


def plan_layout(mode: str, arch: ArchFacts | None, plan: RenderPlan, references: int, *, attention: str,
                degree: int | None = None, alternatives: list[tuple[str, RenderPlan]] | None = None) -> Layout:
    """The layout of a render over ``degree`` processes (default: the launched ones), or a refusal.

    Refuses (before anything loads) an attention backend the mode cannot use, a head count
    Ulysses cannot divide, and a token count that does not divide by the degree; the last
    names another frame count or size of ``alternatives`` (``(label, plan)`` pairs) that would.
    """
    degree = ranks.world_size() if degree is None else degree
    if check_mode(mode) == OFF or degree < 2 or arch is None:
        return Layout()
    if attention not in ATTENTION_FOR_MODE[mode]:
        raise InputError(f"{mode} attention cannot use the '{attention}' attention backend.", input="attention",
                         fix=f"Choose one of {', '.join(ATTENTION_FOR_MODE[mode])} for parallel '{mode}'"
                             + (", or parallel 'ulysses'." if mode == "ring" else "."))
    if mode == "ulysses" and arch.heads and arch.heads % degree:
        raise InputError(f"Ulysses splits the model's {arch.heads} attention heads over {degree} processes, "
                         "which does not divide.", input="parallel",
                         fix=f"Launch a number of processes that divides {arch.heads}, or choose parallel 'ring'.")
    tokens = token_count(arch, plan.render_width, plan.render_height, plan.frames, references)
    if tokens % degree:
        fits = [label for label, other in alternatives or []
                if token_count(arch, other.render_width, other.render_height, other.frames, references) % degree == 0]
        hint = f"e.g. {fits[0]}" if fits else f"a size or duration whose token count divides by {degree}"
        raise InputError(
            f"{plan.render_width}x{plan.render_height}, {plan.frames} frames with {references} pasted reference(s) "
            f"is {tokens} tokens, which does not split evenly over {degree} processes.", input="parallel",
            fix=f"Render {hint}, or launch a number of processes that divides {tokens}.")
    return Layout(mode=mode, degree=degree, tokens=tokens, tokens_per_rank=tokens // degree)


def config(mode: str, degree: int) -> Any:
    """diffusers' ``ContextParallelConfig`` for ``mode`` over ``degree`` processes."""
    from diffusers import ContextParallelConfig

    return ContextParallelConfig(**{f"{mode}_degree": degree})


def enable(transformer: Any, mode: str, degree: int | None = None) -> None:
    """Apply :func:`vace_plan` to a VACE transformer through diffusers' ``enable_parallelism``.

    Call it on every rank, after the attention backend is set and before ``torch.compile``.
    """
    degree = ranks.world_size() if degree is None else degree
    ranks.ensure_process_group()
    transformer.enable_parallelism(config=config(mode, degree), cp_plan=vace_plan())


def enable_pipeline(pipe: Any, mode: str) -> bool:
    """:func:`enable` on each transformer of a pipeline when launched over several processes."""
    if mode == OFF or not ranks.distributed():
        return False
    for name in ("transformer", "transformer_2"):
        comp = getattr(pipe, name, None)
        if comp is not None:
            enable(comp, mode)
    return True


def check_devices() -> None:
    """Refuse a launch that diffusers cannot place: it needs one accelerator per local process."""
    import torch

    count = torch.accelerator.device_count()
    if count == 0:
        raise InputError("context parallelism needs one GPU per process, and this machine has none.",
                         input="parallel", fix="Set parallel to 'off', or launch on a machine with GPUs.")
    if torch.cuda.is_available() and count < ranks.local_world_size():
        raise InputError(f"{ranks.local_world_size()} processes were launched on a machine with {count} GPU(s).",
                         input="parallel", fix=f"Launch with torchrun --nproc-per-node {count} (or fewer).")
