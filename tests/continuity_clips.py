"""Clips for the continuity tests: previz renders of the bundled samples (the reference set they were made
from), a graded copy and one whose first frames are the character's sampler canvas."""

from __future__ import annotations

import numpy as np

from refvideo.engine.continuity.color import lab_to_srgb, srgb_to_lab
from refvideo.engine.references.images import from_uint8, sampler_canvas
from refvideo.engine.references.reference import ReferenceSet
from refvideo.engine.sizes import ANY_FRAMES, plan_render
from refvideo.jobs.reference_prep import ReferenceInput, prepare_set
from refvideo.models import registry
from refvideo.models.backend import RenderRequest
from refvideo.models.previz import PrevizBackend

PROMPTS = ("slow dolly in", "pan left", "the character walks to the right")


def sample_set() -> ReferenceSet:
    slots = [ReferenceInput(1, "samples/character_mara.png", role="character", label="Mara",
                            background="flat background"),
             ReferenceInput(2, "samples/environment_harbour.png", role="environment", label="harbour"),
             ReferenceInput(3, "samples/prop_lantern.png", role="prop", label="lantern", background="flat background")]
    return prepare_set(slots).references


def previz(refs: ReferenceSet, prompt: str, seed: int = 0, fps: float = 4.0) -> np.ndarray:
    plan = plan_render("144p", "16:9", 5.0, fps=fps, rule=ANY_FRAMES, size_multiple=registry.PREVIZ_SIZE_MULTIPLE)
    request = RenderRequest(references=refs, prompt=prompt, composed_prompt=prompt, negative_prompt="", plan=plan,
                            seed=seed, steps=1, guidance=1.0, style=None, camera=None)
    return PrevizBackend().render(request).frames


def graded(frames: np.ndarray, warmth: float = 14.0, exposure: float = 0.85) -> np.ndarray:
    """A colour grade: warmer (b* up) and darker (L* scaled)."""
    lab = srgb_to_lab(frames)
    lab[..., 0] *= exposure
    lab[..., 2] += warmth
    return lab_to_srgb(lab)


def flashed(frames: np.ndarray, refs: ReferenceSet, count: int = 4) -> np.ndarray:
    """``frames`` with the first ``count`` replaced by the character's canvas as the sampler feeds it."""
    out = frames.copy()
    character = refs.with_role("character")[0]
    out[:count] = from_uint8(np.asarray(sampler_canvas(character, frames.shape[2], frames.shape[1])))
    return out
