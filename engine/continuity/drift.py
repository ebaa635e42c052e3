"""Judging the measures: colour against the references, reference flashes, likeness drops and drift.

Each function turns measured values into :class:`ContinuityFinding`\\ s using the thresholds,
messages and fixes in ``engine/data/continuity_thresholds.json`` (see docs/continuity.md).
"""

from __future__ import annotations

import numpy as np

from .color import ColorStats
from .flash import Flash
from .report import ContinuityFinding, severity, thresholds


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The ``(first, last)`` index of each run of True values."""
    runs, start = [], None
    for i, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def quarters(count: int) -> tuple[slice, slice]:
    """The first and last quarter of ``count`` frames (at least one frame each)."""
    q = max(1, count // 4)
    return slice(0, q), slice(count - q, count)


def _cast(shot: ColorStats, anchor: ColorStats, table: dict) -> str:
    """Words for the exposure and white-balance difference of ``shot`` from ``anchor`` (empty when small)."""
    words = []
    d_exposure = shot.exposure - anchor.exposure
    if abs(d_exposure) > table["exposure"]:
        words.append(f"{'brighter' if d_exposure > 0 else 'darker'} by {abs(d_exposure):.0f} L*")
    da, db = (s - a for s, a in zip(shot.white_balance, anchor.white_balance))
    if np.hypot(da, db) > table["white_balance"]:
        casts = [word for value, word in ((db, "warmer" if db > 0 else "cooler"),
                                          (da, "more magenta" if da > 0 else "greener"))
                 if abs(value) > table["white_balance"] / 2]
        words.append(f"{' and '.join(casts)} (a* {round(da):+d}, b* {round(db):+d})")
    return f" ({'; '.join(words)})" if words else ""


def color_findings(shot: ColorStats, references: list[tuple[str, ColorStats]]) -> list[ContinuityFinding]:
    """The shot against each environment or style reference's colours."""
    table = thresholds()["color"]
    found = []
    for name, ref in references:
        distance = shot.distance(ref)
        level = severity(distance, table["warning"])
        if level:
            found.append(ContinuityFinding("color", level, table["message"].format(
                value=distance, reference=name, detail=_cast(shot, ref, table)), table["fix"], None, name))
    return found


def flash_findings(flashes: list[Flash]) -> list[ContinuityFinding]:
    table = thresholds()["flash"]
    return [ContinuityFinding("reference_flash", "error", table["message"].format(
        first=f.first, last=f.last, reference=f.reference, value=f.score),
        table["fix"].format(count=f.last + 1), (f.first, f.last), f.reference) for f in flashes]


def likeness_findings(similarity: np.ndarray, names: list[str], levels: np.ndarray,
                      excluded: np.ndarray) -> list[ContinuityFinding]:
    """Runs of frames whose similarity to a reference falls below its first-shot level by more than the
    threshold; ``excluded`` frames (reference flashes) are never judged."""
    table = thresholds()["likeness"]
    found = []
    for r, name in enumerate(names):
        drop = levels[r] - similarity[:, r]
        for first, last in _runs((drop > table["warning"]) & ~excluded):
            if last - first + 1 < table["min_frames"]:
                continue
            worst = float(drop[first:last + 1].max())
            found.append(ContinuityFinding("likeness", severity(worst, table["warning"]) or "warning",
                                           table["message"].format(first=first, last=last, reference=name,
                                                                   value=worst),
                                           table["fix"], (first, last), name))
    return found


def color_drift(distance: float, where: str, frames: tuple[int, int] | None,
                detail: str = "") -> ContinuityFinding | None:
    table = thresholds()["drift"]
    level = severity(distance, table["color"])
    if level is None:
        return None
    return ContinuityFinding("drift", level, table["color_message"].format(where=where, value=distance, detail=detail),
                             table["color_fix"], frames, None)


def likeness_drift(drop: float, name: str, where: str, frames: tuple[int, int] | None) -> ContinuityFinding | None:
    table = thresholds()["drift"]
    level = severity(drop, table["likeness"])
    if level is None:
        return None
    return ContinuityFinding("drift", level, table["likeness_message"].format(reference=name, where=where,
                                                                              value=drop),
                             table["likeness_fix"], frames, name)


def cast_words(shot: ColorStats, anchor: ColorStats) -> str:
    """The exposure and white-balance words of a colour finding, for drift messages too."""
    return _cast(shot, anchor, thresholds()["color"])
