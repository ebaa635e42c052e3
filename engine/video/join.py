"""Join 2-6 clips into one sequence, with hard cuts or crossfades of N frames.

Clips must share size, channels (single-channel clips are read as RGB) and frame rate;
anything else is refused with the clip's input name and what to change. The result is written
into one preallocated array, frame by frame from :func:`joined_frames`, so memory is the output plus
the crossfade's frames; :func:`joined_frames` alone streams clips read from files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..frames import image_batch
from .encoder import check_fps

MIN_CLIPS = 2
MAX_CLIPS = 6
FPS_TOLERANCE = 1e-3
CUT = "cut"
CROSSFADE = "crossfade"
TRANSITIONS: tuple[str, ...] = (CUT, CROSSFADE)


def _check_fps(rates: Sequence[float | None], names: Sequence[str]) -> float:
    base = check_fps(rates[0], input_name=names[0].replace("clip", "fps"))
    for rate, name in zip(rates[1:], names[1:]):
        if rate is None:
            continue
        fps_input = name.replace("clip", "fps")
        rate = check_fps(rate, input_name=fps_input)
        if abs(rate - base) > FPS_TOLERANCE:
            raise InputError(f"{name} runs at {rate:g} fps but clip_1 at {base:g} fps.", input=fps_input,
                             fix="Join clips rendered at one frame rate (render them with the same model), "
                             "or retime the clip first.")
    return base


def _check_overlap(arrays: Sequence[np.ndarray], names: Sequence[str], crossfade: int) -> None:
    for index, (array, name) in enumerate(zip(arrays, names)):
        sides = 1 if index in (0, len(arrays) - 1) else 2
        if array.shape[0] < sides * crossfade:
            raise InputError(f"{name} has {array.shape[0]} frames, too few for a {crossfade}-frame crossfade on "
                             f"{'each side' if sides == 2 else 'its joined side'}.", input="crossfade_frames",
                             fix=f"Use at most {array.shape[0] // sides} crossfade frames, or a hard cut.")


def join_clips(clips: Sequence[Any], fps: Sequence[float | None], *, transition: str = CUT,
               crossfade_frames: int = 0, names: Sequence[str] | None = None,
               max_clips: int = MAX_CLIPS) -> tuple[np.ndarray, float]:
    """Join ``clips`` (IMAGE batches) in order; returns ``(frames [F, H, W, C] float32, fps)``.

    ``fps[i]`` is clip i's frame rate (None: assume the first clip's). A crossfade blends the
    last N frames of one clip with the first N of the next, so the result has
    ``sum(lengths) - N * (clips - 1)`` frames; a cut simply concatenates. ``max_clips`` is JoinClips'
    six sockets unless a caller (a storyboard's sequence) joins more.
    """
    names = list(names or [f"clip_{i + 1}" for i in range(len(clips))])
    if not MIN_CLIPS <= len(clips) <= max_clips:
        raise InputError(f"{len(clips)} clip(s) were given; joining needs {MIN_CLIPS} to {max_clips}.",
                         input="clip_2" if len(clips) < MIN_CLIPS else None,
                         fix="Connect at least clip_1 and clip_2.")
    if transition not in TRANSITIONS:
        raise InputError(f"'{transition}' is not a transition.", input="transition",
                         fix=f"Choose one of: {', '.join(TRANSITIONS)}.")
    blend = int(crossfade_frames) if transition == CROSSFADE else 0
    if blend < 0 or (transition == CROSSFADE and blend == 0):
        raise InputError(f"a crossfade needs at least 1 frame, got {crossfade_frames}.", input="crossfade_frames",
                         fix="Give 1 or more crossfade frames, or choose the 'cut' transition.")
    arrays = [image_batch(clip, input_name=name) for clip, name in zip(clips, names)]
    first = arrays[0]
    for array, name in zip(arrays[1:], names[1:]):
        if array.shape[1:3] != first.shape[1:3]:
            raise InputError(f"{name} is {array.shape[2]}x{array.shape[1]} but clip_1 is "
                             f"{first.shape[2]}x{first.shape[1]}.", input=name,
                             fix="Join clips of one size: render them at the same resolution and aspect, or "
                             "resize the clip first.")
        if array.shape[3] != first.shape[3]:
            raise InputError(f"{name} has {array.shape[3]} channels but clip_1 has {first.shape[3]}.", input=name,
                             fix="Join clips with the same channels (all RGB, or all RGBA).")
    rate = _check_fps(list(fps) + [None] * (len(arrays) - len(fps)), names)
    _check_overlap(arrays, names, blend)
    total = sum(a.shape[0] for a in arrays) - blend * (len(arrays) - 1)
    out = np.empty((total, *first.shape[1:]), np.float32)
    for index, frame in enumerate(joined_frames(arrays, blend)):
        out[index] = frame
    return out, rate


def joined_frames(clips: Sequence[Iterable[np.ndarray]], crossfade: int = 0) -> Iterator[np.ndarray]:
    """The frames of ``clips`` (each an iterable of float32 ``[H, W, C]`` frames) in order, the last
    ``crossfade`` frames of each blended with the first ones of the next, one frame at a time.

    Only ``crossfade`` frames are held, so clips read from files join without being loaded whole.
    Callers check sizes, rates and lengths first (:func:`join_clips` does).
    """
    weights = np.arange(1, crossfade + 1, dtype=np.float32) / (crossfade + 1)
    held: deque[np.ndarray] = deque()
    for index, clip in enumerate(clips):
        frames = iter(clip)
        keep = crossfade if index < len(clips) - 1 else 0
        if index > 0:
            for w, frame in zip(weights, frames):
                mixed = held.popleft() * (1.0 - w)
                mixed += w * frame
                yield mixed
        for frame in frames:
            held.append(frame)
            if len(held) > keep:
                yield held.popleft()
    yield from held
