"""Which process this is when a render is launched over several (``torchrun --nproc-per-node N``).

``torchrun`` starts N copies of ``refvideo run``; each reads its place from the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Every rank runs the same workflow with the same
inputs and seed, and only rank 0 (the main rank) writes files, prints results and touches the
credit ledger. :func:`on_main` runs a step on rank 0 alone and hands its outcome (its result,
or its refusal) to every rank, so that no rank goes on rendering while rank 0 has refused.
Reading the rank needs no torch; the process group is started on first need.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

from . import errors
from .errors import RefVideoError

T = TypeVar("T")
GROUP_TIMEOUT = timedelta(minutes=30)  # a 14B shot's load plus a step fits; a dead peer is reported after this
OFF = "off"


@dataclass(frozen=True)
class Layout:
    """How one render is spread over the processes (recorded in the generation info)."""

    mode: str = OFF  # off, ulysses or ring
    degree: int = 1  # processes sharing each transformer call
    tokens: int = 0  # video tokens per transformer call (pasted references included)
    tokens_per_rank: int = 0

    def describe(self) -> dict:
        return asdict(self)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """How many processes render this workflow together (1 unless launched by torchrun)."""
    return max(_env_int("WORLD_SIZE", 1), 1)


def rank() -> int:
    """This process's place among them (0 = the main rank)."""
    return _env_int("RANK", 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's place on its own machine: the GPU it uses."""
    return _env_int("LOCAL_RANK", 0) if world_size() > 1 else 0


def local_world_size() -> int:
    """How many of the processes run on this machine."""
    return max(_env_int("LOCAL_WORLD_SIZE", world_size()), 1)


def is_main() -> bool:
    """True on the rank that writes files, prints and charges credits (also when running alone)."""
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def process_group_backend() -> str:
    """gloo for CPU tensors, plus NCCL for CUDA tensors on a machine with NVIDIA GPUs."""
    import torch

    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def ensure_process_group() -> bool:
    """Join the processes launched together (once); False when running alone.

    On CUDA each rank takes the GPU of its ``LOCAL_RANK`` first, so everything it loads
    lands there.
    """
    if not distributed():
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=process_group_backend(), timeout=GROUP_TIMEOUT)
    return True


def close_process_group() -> None:
    """Leave the process group at the end of a run (a no-op when there is none)."""
    if not distributed():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def on_main(step: Callable[[], T]) -> T | None:
    """Run ``step`` on rank 0 only and give every rank its outcome.

    Rank 0 gets ``step()``'s value, the other ranks None. A :class:`RefVideoError` raised on
    rank 0 is raised on every rank (the same type, message, input and fix), so all stop
    together. Alone, this is just ``step()``.
    """
    return _run_on_main(step, share=False)


def on_main_shared(step: Callable[[], T]) -> T:
    """:func:`on_main`, and every rank gets rank 0's value (plain data: it is sent to them)."""
    return cast(T, _run_on_main(step, share=True))


def _run_on_main(step: Callable[[], T], *, share: bool) -> T | None:
    if not distributed():
        return step()
    ensure_process_group()
    import torch.distributed as dist

    outcome: dict[str, Any] = {}
    value: T | None = None
    failure: BaseException | None = None
    if is_main():
        try:
            value = step()
            outcome = {"ok": True, "value": value if share else None}
        except RefVideoError as exc:
            failure = exc
            outcome = {"ok": False, "error": _describe(exc)}
        except BaseException as exc:  # noqa: BLE001 - shared so the other ranks stop too, then re-raised
            failure = exc
            outcome = {"ok": False, "error": {"type": "GenerationError", "message": f"rank 0 failed: {exc}",
                                              "input": None, "fix": ""}}
    box = [outcome]
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    if not box[0]["ok"]:
        raise _rebuild(box[0]["error"])
    return value if is_main() else box[0]["value"]


def _describe(exc: RefVideoError) -> dict[str, Any]:
    return {"module": type(exc).__module__, "type": type(exc).__name__, "message": exc.message, "input": exc.input,
            "fix": exc.fix}


def _rebuild(error: dict[str, Any]) -> RefVideoError:
    """The error rank 0 raised, as the same RefVideo error type (a plain RefVideoError for anything else)."""
    cls: Any = None
    module = str(error.get("module") or errors.__name__)
    if module.startswith(__name__.rsplit(".", 1)[0] + "."):  # only the engine's own error types
        try:
            cls = getattr(importlib.import_module(module), str(error.get("type")), None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, RefVideoError)):
        cls = RefVideoError
    exc = RefVideoError.__new__(cls)
    RefVideoError.__init__(exc, error["message"], input=error.get("input"), fix=error.get("fix") or "")
    exc.from_main = True
    return exc


def shared_from_main(exc: BaseException) -> bool:
    """True for an error that rank 0 raised and :func:`on_main` handed to this rank (rank 0 reports it)."""
    return bool(getattr(exc, "from_main", False) or getattr(getattr(exc, "error", None), "from_main", False))
