"""Batched classifier-free guidance through diffusers' hook registry and cache contexts.

The Wan pipelines call the transformer twice per step, inside ``cache_context("cond")`` and
then ``cache_context("uncond")``, with the same latents. :class:`PairedGuidance` is a
stateful diffusers ``ModelHook``: the pipeline's cache context reaches it through its
``StateManager``, so it knows which pass runs without looking at the tensors. In the
``cond`` pass it runs prompt and negative prompt as one batch of two and keeps the negative
half; in the ``uncond`` pass it returns that half. Same numbers, one transformer call per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HOOK_NAME = "refvideo_paired_guidance"
_BATCHED = ("hidden_states", "timestep", "encoder_hidden_states", "control_hidden_states")


def _context_name(manager: Any) -> str | None:
    """The cache context a ``StateManager`` was given (``CacheContext`` from diffusers 0.41, a name before)."""
    context = getattr(manager, "_context", None)
    if context is not None:
        return getattr(context, "name", context)
    return getattr(manager, "_current_context", None)


def paired_guidance_hook(negative: Any) -> Any:
    """A hook that batches each step's conditional and unconditional passes (``negative``: the
    negative prompt's embeddings, the only input that differs between them)."""
    import torch
    from diffusers.hooks.hooks import BaseState, ModelHook, StateManager

    class _Calls(BaseState):
        def reset(self, *args: Any, **kwargs: Any) -> None:
            pass

    class PairedGuidance(ModelHook):
        _is_stateful = True

        def __init__(self) -> None:
            super().__init__()
            self.state = StateManager(_Calls)
            self.pending: tuple[Any, Any] | None = None  # (latents of the cond pass, its negative half)
            self.calls = 0  # transformer calls made

        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            forward = self.fn_ref.original_forward
            name = _context_name(self.state)
            latents = kwargs.get("hidden_states")
            if name == "uncond" and self.pending is not None and self.pending[0] is latents:
                out, self.pending = self.pending[1], None
                return (out,)
            if name != "cond" or args or kwargs.get("return_dict", True) or \
                    any(kwargs.get(k) is None for k in _BATCHED):
                self.calls += 1
                return forward(*args, **kwargs)
            doubled = {k: torch.cat([v, v]) for k, v in kwargs.items() if k in _BATCHED}
            doubled["encoder_hidden_states"] = torch.cat([kwargs["encoder_hidden_states"], negative])
            self.calls += 1
            cond, uncond = forward(**{**kwargs, **doubled})[0].chunk(2)
            self.pending = (latents, uncond)
            return (cond,)

        def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
            self.state.reset()
            self.pending = None
            return module

    return PairedGuidance()


@contextmanager
def paired_guidance(transformer: Any, negative: Any, *, enabled: bool) -> Iterator[Any]:
    """Register the pairing hook on ``transformer`` for the block (yields the hook, or None)."""
    if not enabled or negative is None:
        yield None
        return
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    hook = paired_guidance_hook(negative)
    registry.register_hook(hook, HOOK_NAME)
    try:
        yield hook
    finally:
        registry.remove_hook(HOOK_NAME, recurse=False)
