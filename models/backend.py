"""The interface every video backend implements (previz, tiny-random, diffusers pipelines).

A model's :class:`~models.spec.ModelSpec` declares its native fps, legal frame counts and sizes,
and which reference roles it takes as image conditioning; RefVideoSampler plans the render with
those facts, checks every input, and only then calls :meth:`VideoBackend.render`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine.camera.path import ShotCamera
from ..engine.references.reference import ReferenceSet
from ..engine.sizes import RenderPlan
from ..engine.style import StyleDirection
from .schedules import Schedule


@dataclass
class RenderRequest:
    """A fully checked render: everything a backend needs, nothing left to validate."""

    references: ReferenceSet
    prompt: str
    composed_prompt: str
    negative_prompt: str
    plan: RenderPlan
    seed: int
    steps: int
    guidance: float
    style: StyleDirection | None = None
    first_frames: np.ndarray | None = None  # [F, H, W, 3] float32, at the plan's delivered size
    control_video: np.ndarray | None = None  # [plan.frames, H, W, 3] float32
    camera: ShotCamera | None = None  # the shot's camera path (the sampler always passes it)
    on_step: Callable[[int, int], None] | None = None  # progress + interrupt check per step
    control_strength: float = 1.0  # how strongly the control video steers (0 = not at all)
    schedule: Schedule | None = None  # the noise schedule (None: the preset's / model's)
    guidance_2: float = 0.0  # Wan 2.2's low-noise expert (guidance_scale_2); 0 = same as guidance


@dataclass
class RenderResult:
    """Frames ``[F, H, W, 3]`` float32 in 0..1 at the plan's delivered size, plus info."""

    frames: np.ndarray
    info: dict = field(default_factory=dict)


class VideoBackend(ABC):
    """One way of turning a checked request into frames."""

    @abstractmethod
    def render(self, request: RenderRequest) -> RenderResult:
        """Render the frames; call ``request.on_step`` after every step."""
