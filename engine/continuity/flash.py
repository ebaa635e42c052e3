"""Reference flash: opening frames that are near copies of a character's or prop's canvas.

The sampler feeds each character and prop reference matted onto white, cropped to the
subject, fitted and centred on a canvas of the clip's size (:func:`sampler_canvas`). When that
canvas leaks into the clip, the first frames show it nearly unchanged. Each opening frame is
compared with each canvas by normalised cross-correlation at low resolution (1.0: the same
picture up to brightness and contrast). Environments and styles are not judged: previz and a
good render legitimately show an environment whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..references.images import from_uint8, sampler_canvas
from ..references.reference import Reference
from .color import shrink

FLASH_ROLES = ("character", "prop")


@dataclass(frozen=True)
class Flash:
    """Frames ``first``..``last`` (inclusive) are near copies of ``reference``'s canvas."""

    reference: str
    first: int
    last: int
    score: float


def correlation(frames: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The normalised cross-correlation of each frame ``[F, h, w, 3]`` with ``image`` ``[h, w, 3]``."""
    a = frames.reshape(len(frames), -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b = image.reshape(-1).astype(np.float64)
    b -= b.mean()
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b)
    return np.where(norms > 1e-9, a @ b / np.maximum(norms, 1e-9), 0.0)


def canvas_view(ref: Reference, width: int, height: int, side: int) -> np.ndarray:
    """``ref``'s sampler canvas for a ``width`` x ``height`` clip, shrunk like the clip's frames."""
    return shrink(from_uint8(np.asarray(sampler_canvas(ref, width, height))), side)


def find_flashes(view: np.ndarray, size: tuple[int, int], references: list[tuple[str, Reference]], *,
                 threshold: float, opening: int) -> list[Flash]:
    """The flashes in a clip: ``view`` is its frames shrunk ``[F, h, w, 3]``, ``size`` its full
    ``(width, height)``; only the first ``opening`` frames are searched, and a flash is the first run
    of frames whose correlation with one canvas reaches ``threshold``."""
    found = []
    head = view[:max(1, opening)]
    for name, ref in references:
        if ref.role not in FLASH_ROLES:
            continue
        scores = correlation(head, canvas_view(ref, size[0], size[1], max(view.shape[1:3])))
        hits = np.flatnonzero(scores >= threshold)
        if hits.size == 0:
            continue
        first = last = int(hits[0])
        while last + 1 < len(scores) and scores[last + 1] >= threshold:
            last += 1
        found.append(Flash(name, first, last, float(scores[first:last + 1].max())))
    return found
