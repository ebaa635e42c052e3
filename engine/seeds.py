"""Seeds: one range for every node (ComfyUI's 64-bit seeds) and derived seeds for pieces."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

MAX_SEED = 2**64 - 1


def check_seed(seed: Any, *, input_name: str = "seed") -> int:
    """``seed`` as an int in 0..MAX_SEED, or an InputError naming the input."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"{seed!r} is not a seed.", input=input_name, fix=f"Give a whole number from 0 to {MAX_SEED}.")
    return int(seed)


def derived_seed(seed: int, index: int) -> int:
    """The seed of piece ``index`` of a run seeded with ``seed`` (wraps within the 64-bit range)."""
    return (int(seed) + int(index)) % (MAX_SEED + 1)
