"""The continuity check: clips in shot order + references (+ an image encoder) -> a :class:`Report`.

Each clip is read once, frame by frame: every frame is shrunk to the analysis size (colour and
flash measures) and, with an encoder, fitted on the encoder's square (likeness), so a 720p clip
is never held at full size. Shot 1 is the baseline for drift across shots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..references.reference import Reference
from . import drift
from .color import ColorStats, image_pixels, shrink, srgb_to_lab, stats
from .flash import find_flashes
from .likeness import ImageEncoder, embed_in_batches, reference_view, similarities, square_view
from .report import ClipReport, ContinuityFinding, Report, thresholds

COLOR_ROLES = ("environment", "style")           # references whose colours a shot should keep
LIKENESS_ROLES = ("character", "prop", "environment")
THUMB_SIDE = 224                                 # the picture's frames (longer side)


@dataclass
class ClipInput:
    """One clip: its name (a file path or a socket name), its frames (uint8 or float ``[H, W, 3]`` each,
    an array or any iterable) and its frame rate when known."""

    name: str
    frames: Iterable[np.ndarray]
    fps: float | None = None


@dataclass
class _Measured:
    name: str
    fps: float | None
    size: tuple[int, int]
    view: np.ndarray                 # [F, h, w, 3] at the analysis size
    squares: np.ndarray | None       # [F, S, S, 3] for the encoder
    middle: np.ndarray               # the middle frame at the picture size


def reference_names(references: list[Reference]) -> list[str]:
    """Each reference's name in the report: its label, else its role (numbered when repeated)."""
    names = [ref.label or ref.role for ref in references]
    return [f"{n} {i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _measure(clip: ClipInput, side: int, square: int | None) -> _Measured:
    """Read the clip once: each frame shrunk to the picture size, from which the analysis view and the
    encoder's squares are taken; only the middle frame is kept at the picture size."""
    thumbs, view, squares, size = [], [], [], None
    for frame in clip.frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] < 3:
            raise InputError(f"'{clip.name}' holds frames shaped {frame.shape}, not [height, width, 3].",
                             input=clip.name, fix="Give RGB video frames.")
        size = size or (int(frame.shape[1]), int(frame.shape[0]))
        thumb = shrink(frame, max(THUMB_SIDE, square or 0))
        thumbs.append(thumb)
        view.append(shrink(thumb, side))
        if square:
            squares.append(square_view(thumb, square))
    if size is None:
        raise InputError(f"'{clip.name}' has no frames.", input=clip.name, fix="Give a clip with at least one frame.")
    return _Measured(clip.name, clip.fps, size, np.stack(view), np.stack(squares) if squares else None,
                     shrink(thumbs[len(thumbs) // 2], THUMB_SIDE))


@dataclass
class _References:
    """The references as the check uses them: names, colour statistics, encoder embeddings."""

    items: list[tuple[str, Reference]]
    color: list[ColorStats]
    judged: list[tuple[str, ColorStats]]           # environment and style: shots should keep their colours
    liked: list[str]                                # names measured for likeness
    embeddings: np.ndarray | None


def _references(references: list[Reference], encoder: ImageEncoder | None) -> _References:
    names = reference_names(references)
    color = [stats(image_pixels(r.image, None if r.role in COLOR_ROLES else r.mask)) for r in references]
    judged = [(n, c) for n, c, r in zip(names, color, references) if r.role in COLOR_ROLES]
    liked = [(n, r) for n, r in zip(names, references) if r.role in LIKENESS_ROLES] if encoder else []
    embeddings = (embed_in_batches(encoder, np.stack([reference_view(r, encoder.image_size) for _, r in liked]))
                  if encoder and liked else None)
    return _References(list(zip(names, references)), color, judged, [n for n, _ in liked], embeddings)


def analyse(clips: list[ClipInput], references: list[Reference], encoder: ImageEncoder | None = None,
            encoder_note: str = "") -> Report:
    """Measure and judge ``clips`` (shot order) against ``references``."""
    if not clips:
        raise InputError("no clip was given.", input="CLIP", fix="Give one clip, or the shots of a sequence in order.")
    if not references:
        raise InputError("no reference was given.", input="references",
                         fix="Give the reference set the clips were rendered with.")
    refs = _references(references, encoder)
    reports: list[ClipReport] = []
    baseline: tuple[ColorStats, np.ndarray | None] | None = None
    for index, clip in enumerate(clips):
        measured = _measure(clip, int(thresholds()["analysis_side"]),
                            encoder.image_size if encoder and refs.embeddings is not None else None)
        flashes = _flashes(measured, refs)
        count = len(measured.view)
        flashed = np.zeros(count, dtype=bool)
        for f in flashes:
            flashed[f.first:f.last + 1] = True
        whole, color, findings = _color(measured.view, flashed, refs, baseline, index)
        findings = drift.flash_findings(flashes) + findings
        similarity, likeness = None, None
        if encoder is not None and measured.squares is not None and refs.embeddings is not None:
            similarity = similarities(embed_in_batches(encoder, measured.squares), refs.embeddings)
            levels = baseline[1] if baseline is not None and baseline[1] is not None else _levels(similarity, flashed)
            likeness, more = _likeness(similarity, refs.liked, levels, flashed, index)
            findings += more
        if baseline is None:
            baseline = (whole, None if similarity is None else _levels(similarity, flashed))
        reports.append(ClipReport(clip.name, count, clip.fps, color, likeness, findings, similarity,
                                  measured.middle))
    return Report(reports, [{"name": n, "role": r.role, "label": r.label} for n, r in refs.items],
                  None if encoder is None else encoder.name, encoder_note)


def _flashes(measured: _Measured, refs: _References) -> list:
    table = thresholds()["flash"]
    count = len(measured.view)
    opening = max(int(table["opening_min"]), math.ceil(count * table["opening_share"]))
    return find_flashes(measured.view, measured.size, refs.items, threshold=table["threshold"], opening=opening)


def _color(view: np.ndarray, flashed: np.ndarray, refs: _References,
           baseline: tuple[ColorStats, np.ndarray | None] | None, index: int) -> tuple[ColorStats, dict, list]:
    """A clip's colour statistics, its ``color`` entry and its colour and colour-drift findings; flash
    frames are left out (they are judged apart)."""
    kept = np.flatnonzero(~flashed) if (~flashed).any() else np.arange(len(view))
    lab = srgb_to_lab(view[kept])
    whole = stats(lab)
    head_part, tail_part = drift.quarters(len(kept))
    head, tail = stats(lab[head_part]), stats(lab[tail_part])
    judged = [whole.distance(c) for _, c in refs.judged]
    color = {**whole.describe(),
             "references": {n: round(whole.distance(c), 2) for (n, _), c in zip(refs.items, refs.color)},
             "reference_distance": round(float(np.mean(judged)), 2) if judged else None,
             "within_distance": round(head.distance(tail), 2),
             "shot_distance": None if baseline is None else round(whole.distance(baseline[0]), 2)}
    found: list[ContinuityFinding | None] = list(drift.color_findings(whole, refs.judged))
    found.append(drift.color_drift(head.distance(tail), f"within shot {index + 1} (first quarter to last)",
                                   (int(kept[tail_part.start]), int(kept[-1])), drift.cast_words(tail, head)))
    if baseline is not None:
        found.append(drift.color_drift(whole.distance(baseline[0]), f"from shot 1 to shot {index + 1}", None,
                                       drift.cast_words(whole, baseline[0])))
    return whole, color, [f for f in found if f is not None]


def _levels(similarity: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Each reference's level: the median similarity over the frames that are not flashes."""
    kept = similarity[~excluded] if (~excluded).any() else similarity
    return np.median(kept, axis=0)


def _likeness(similarity: np.ndarray, names: list[str], levels: np.ndarray, flashed: np.ndarray,
              index: int) -> tuple[dict, list]:
    """The likeness entry of a clip and its likeness and drift findings (``levels``: shot 1's)."""
    count = len(similarity)
    head, tail = drift.quarters(count)
    keep = ~flashed
    findings = drift.likeness_findings(similarity, names, levels, flashed)
    entry: dict = {"references": {}, "per_frame": {}}
    for r, name in enumerate(names):
        values = similarity[:, r]
        median = float(np.median(values[keep] if keep.any() else values))
        first_q = values[head][keep[head]] if keep[head].any() else values[head]
        entry["references"][name] = {"median": round(median, 4), "min": round(float(values.min()), 4),
                                     "level": round(float(levels[r]), 4)}
        entry["per_frame"][name] = [round(float(v), 4) for v in values]
        within = drift.likeness_drift(float(np.median(first_q) - np.median(values[tail])), name,
                                      f"within shot {index + 1} (first quarter to last)", (tail.start, count - 1))
        across = None if index == 0 else drift.likeness_drift(float(levels[r] - median), name,
                                                              f"from shot 1 to shot {index + 1}", None)
        findings += [f for f in (within, across) if f is not None]
    return entry, findings
