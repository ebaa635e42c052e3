"""The continuity report: findings in the shape of the reference quality report, per clip.

``--json`` of ``refvideo continuity`` and the ContinuityReport node print :meth:`Report.to_dict`:
``{"clips": [{"file", "frames", "fps", "findings": [...], "color": {...}, "likeness": {...} or null}],
"encoder": name or null, "plot": path or null}``; each finding is ``{"check", "severity",
"frames", "reference", "message", "fix"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..references.quality import Finding
from ..storage import read_data


def thresholds() -> dict:
    """The continuity thresholds, messages and fixes (read once)."""
    return read_data("continuity_thresholds.json")


@dataclass(frozen=True)
class ContinuityFinding(Finding):
    """A quality-report finding that also names the frames (``[first, last]`` or None) and the reference."""

    frames: tuple[int, int] | None = None
    reference: str | None = None

    def to_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity,
                "frames": None if self.frames is None else list(self.frames), "reference": self.reference,
                "message": self.message, "fix": self.fix}


def severity(value: float, threshold: float) -> str | None:
    """``warning`` above the threshold, ``error`` above twice it, else None."""
    if value > 2 * threshold:
        return "error"
    return "warning" if value > threshold else None


@dataclass
class ClipReport:
    """What was measured on one clip and what was found."""

    file: str
    frames: int
    fps: float | None
    color: dict
    likeness: dict | None
    findings: list[ContinuityFinding] = field(default_factory=list)
    similarity: np.ndarray | None = None   # [F, R] per-frame likeness, for the picture
    swatch: np.ndarray | None = None       # the shot's middle frame, shrunk, for the picture

    def to_dict(self) -> dict:
        return {"file": self.file, "frames": self.frames, "fps": self.fps,
                "findings": [f.to_dict() for f in self.findings],
                "color": self.color, "likeness": self.likeness}


@dataclass
class Report:
    """The report over the clips in order (shot 1 first), against the references."""

    clips: list[ClipReport]
    references: list[dict]
    encoder: str | None
    encoder_note: str = ""
    plot: str | None = None

    def to_dict(self) -> dict:
        return {"clips": [c.to_dict() for c in self.clips], "references": self.references,
                "encoder": self.encoder, "plot": self.plot}

    @property
    def findings(self) -> list[ContinuityFinding]:
        return [f for clip in self.clips for f in clip.findings]

    def headline(self) -> dict:
        """The figures ``generation_info`` carries under ``continuity``: per clip its colour distance to the
        references, exposure, white balance, median likeness and the findings' checks."""
        return {"encoder": self.encoder,
                "clips": [{"file": c.file,
                           "color_distance": c.color.get("reference_distance"),
                           "exposure": c.color.get("exposure"),
                           "white_balance": c.color.get("white_balance"),
                           "shot_drift": c.color.get("shot_distance"),
                           "likeness": None if c.likeness is None else {
                               name: entry["median"] for name, entry in c.likeness["references"].items()},
                           "findings": [f"{f.severity}:{f.check}" for f in c.findings]}
                          for c in self.clips]}

    def text(self) -> str:
        """The readable report."""
        lines = []
        if self.encoder is None:
            lines.append(f"Likeness: not measured. {self.encoder_note}".rstrip())
        else:
            lines.append(f"Likeness measured with {self.encoder}.")
        for i, clip in enumerate(self.clips, 1):
            color = clip.color
            head = (f"Shot {i}: {clip.file} ({clip.frames} frames): exposure L* {color['exposure']:.1f}, "
                    f"white balance a* {color['white_balance'][0]:+.1f} b* {color['white_balance'][1]:+.1f}")
            if color.get("reference_distance") is not None:
                head += f", colour distance to references {color['reference_distance']:.1f}"
            if color.get("shot_distance") is not None:
                head += f", to shot 1 {color['shot_distance']:.1f}"
            if clip.likeness is not None:
                head += ", likeness " + ", ".join(f"{name} {entry['median']:.2f}"
                                                  for name, entry in clip.likeness["references"].items())
            lines.append(head)
            lines.extend(f"  {f.line()}" for f in clip.findings)
            if not clip.findings:
                lines.append("  ok, no findings")
        if self.plot:
            lines.append(f"Picture: {self.plot}")
        return "\n".join(lines)
