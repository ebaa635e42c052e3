"""Frame and size math: what a resolution, aspect and duration mean for a backend.

``resolution`` x ``aspect`` gives the delivered size; each backend renders at its legal size
(multiples of its ``size_multiple``) and declares its native fps and frame rule, so a
request always maps to a stated render plan that the generation info reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError

RESOLUTIONS: dict[str, tuple[int, int]] = {
    "144p": (256, 144),
    "480p": (848, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
}
DEFAULT_RESOLUTION = "720p"
ASPECTS: tuple[str, ...] = ("16:9", "9:16", "1:1")
DEFAULT_ASPECT = "16:9"
MIN_SECONDS = 5.0
MAX_SECONDS = 8.0
DEFAULT_SECONDS = 5.0
UPSCALE_1080 = "render 720p, upscale"
CROP_1080 = "render 1920x1088, crop"


@dataclass(frozen=True)
class FrameRule:
    """A backend's legal frame counts: ``step * k + offset`` for k >= ``min_k``."""

    step: int = 1
    offset: int = 0
    min_count: int = 1

    def snap(self, frames: float) -> int:
        """The legal count nearest to ``frames`` (ties go up)."""
        k = math.floor((frames - self.offset) / self.step + 0.5)
        return max(self.step * k + self.offset, self.min_count)

    def is_legal(self, frames: int) -> bool:
        return frames >= self.min_count and (frames - self.offset) % self.step == 0


WAN_FRAMES = FrameRule(step=4, offset=1, min_count=5)
ANY_FRAMES = FrameRule()


@dataclass(frozen=True)
class RenderPlan:
    """What was asked for and what will be rendered, as reported in the generation info."""

    width: int
    height: int
    render_width: int
    render_height: int
    frames: int
    fps: float
    seconds: float
    requested_seconds: float
    resolution: str
    aspect: str
    strategy: str

    def requested(self) -> dict:
        return {"resolution": self.resolution, "aspect": self.aspect, "width": self.width,
                "height": self.height, "frames": round(self.requested_seconds * self.fps), "fps": self.fps,
                "seconds": self.requested_seconds}

    def rendered(self) -> dict:
        return {"width": self.width, "height": self.height, "render_width": self.render_width,
                "render_height": self.render_height, "frames": self.frames, "fps": self.fps,
                "seconds": round(self.seconds, 4), "strategy": self.strategy}


def delivered_size(resolution: str, aspect: str = DEFAULT_ASPECT) -> tuple[int, int]:
    """Width and height of the delivered clip: 16:9 as listed, 9:16 swapped, 1:1 the short side."""
    if resolution not in RESOLUTIONS:
        raise InputError(f"'{resolution}' is not a known resolution.", input="resolution",
                         fix=f"Choose one of {', '.join(RESOLUTIONS)}.")
    if aspect not in ASPECTS:
        raise InputError(f"'{aspect}' is not a supported aspect ratio.", input="aspect",
                         fix=f"Choose one of {', '.join(ASPECTS)}.")
    w, h = RESOLUTIONS[resolution]
    if aspect == "9:16":
        return h, w
    if aspect == "1:1":
        return h, h
    return w, h


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def check_duration(seconds: float) -> float:
    """Refuse durations outside the product's 5-8 s range."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise InputError(f"'{seconds}' is not a number of seconds.", input="duration",
                         fix=f"Give {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds.") from None
    if not math.isfinite(value) or not MIN_SECONDS <= value <= MAX_SECONDS:
        raise InputError(f"{seconds} s is outside the clip length RefVideo renders.", input="duration",
                         fix=f"Give {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds; join clips for longer scenes.")
    return value


def frame_count(seconds: float, fps: float, rule: FrameRule = ANY_FRAMES) -> int:
    """round(seconds x fps) snapped to the backend's legal count (4k+1 for Wan: 5 s at 16 fps = 81)."""
    return rule.snap(round(seconds * fps))


def plan_render(
    resolution: str,
    aspect: str,
    seconds: float,
    *,
    fps: float,
    rule: FrameRule = ANY_FRAMES,
    size_multiple: int = 16,
    upscale_1080: bool = False,
) -> RenderPlan:
    """The render plan for a request on a backend with ``fps``, ``rule`` and ``size_multiple``.

    Sizes that are not multiples of ``size_multiple`` (only 1080 among ours) are rendered at
    the next multiple and centre-cropped, or, with ``upscale_1080``, rendered at 720p and
    upscaled; the plan's ``strategy`` says which.
    """
    seconds = check_duration(seconds)
    width, height = delivered_size(resolution, aspect)
    frames = frame_count(seconds, fps, rule)
    strategy = "native"
    render_w, render_h = round_up(width, size_multiple), round_up(height, size_multiple)
    if resolution == "1080p" and upscale_1080:
        render_w, render_h = delivered_size("720p", aspect)
        strategy = UPSCALE_1080
    elif (render_w, render_h) != (width, height):
        strategy = f"render {render_w}x{render_h}, crop"
    return RenderPlan(width=width, height=height, render_width=render_w, render_height=render_h,
                      frames=frames, fps=float(fps), seconds=frames / fps, requested_seconds=seconds,
                      resolution=resolution, aspect=aspect, strategy=strategy)
