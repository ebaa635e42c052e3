"""RefVideoSampler: references + shot description (+ style, budget) -> frames, fps, generation info."""

from __future__ import annotations

from typing import Any

from ..engine.frames import to_tensor
from ..engine.seeds import MAX_SEED
from ..engine.sizes import (
    ASPECTS,
    DEFAULT_ASPECT,
    DEFAULT_RESOLUTION,
    DEFAULT_SECONDS,
    MAX_SECONDS,
    MIN_SECONDS,
    RESOLUTIONS,
)
from ..jobs.generation import (
    CONTINUE_FRAMES_STEP,
    DEFAULT_CONTINUE_FRAMES,
    MAX_CONTINUE_FRAMES,
    MAX_FLOW_SHIFT,
    MAX_GUIDANCE,
    MAX_STEPS,
    SamplerInputs,
    generate,
)
from .common import BUDGET, CATEGORY, MODEL, REFSET, STYLE, with_ui


class RefVideoSampler:
    """Renders one clip; every input is checked, and credits reserved, before any model work."""

    CATEGORY = CATEGORY
    DESCRIPTION = ("Renders a clip from 1-3 reference images and a shot description in filmmaking language. "
                   "Inputs are checked and the budget's credits reserved before the model loads; progress shows "
                   "per step and Cancel stops between steps, charging nothing. The generation info (JSON) records "
                   "everything needed to render the shot again.")
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    RETURN_NAMES = ("frames", "fps", "generation_info")
    RUNS_ON_EVERY_RANK = True  # under torchrun every process renders (parallel shares the work); rank 0 writes
    OUTPUT_TOOLTIPS = ("The clip's frames [frames, height, width, 3] at the delivered size.",
                       "The clip's frame rate (the model's native fps).",
                       "JSON: model, seed, steps, prompts, references, requested and rendered size/frames, "
                       "timings, memory, warnings. VideoEncode stores it in the video file.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (MODEL, {"tooltip": "From RefVideoModelLoader."}),
                "references": (REFSET, {"tooltip": "1-3 references with roles, from LoadReferenceSet."}),
                "prompt": ("STRING", {"multiline": True, "default": "",
                           "tooltip": "The action and the camera in filmmaking language, e.g. 'Mara turns to face "
                                      "the camera, slow dolly in, then rack focus to the background'."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                         "tooltip": "Noise seed: the same seed and settings give the same clip on the same setup."}),
            },
            "optional": {
                "steps": ("INT", {"default": 0, "min": 0, "max": MAX_STEPS,
                          "tooltip": "Denoising steps; 0 = the style's, preset's or model's default."}),
                "guidance": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_GUIDANCE, "step": 0.1,
                             "tooltip": "Classifier-free guidance; 1 = off (twice as fast), 0 = the default."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                    "tooltip": "What to avoid; empty = the model's usual negative prompt. The "
                                               "style's negative text is added."}),
                "resolution": (list(RESOLUTIONS), {"default": DEFAULT_RESOLUTION,
                               "tooltip": "144p preview, 480p, 720p (default) or 1080p (the info says whether "
                                          "1080p was cropped from 1920x1088 or upscaled from 720p)."}),
                "aspect": (list(ASPECTS), {"default": DEFAULT_ASPECT,
                           "tooltip": "16:9 landscape (default), 9:16 portrait or 1:1 square."}),
                "duration": ("FLOAT", {"default": DEFAULT_SECONDS, "min": MIN_SECONDS, "max": MAX_SECONDS,
                             "step": 0.25, "tooltip": "Seconds (5-8); snapped to the model's legal frame count."}),
                "style": (STYLE, {"tooltip": "A style skill (look, lens, grade, camera habits), from StyleSkill."}),
                "budget": (BUDGET, {"tooltip": "From CreditMeter: credits are reserved before the model loads and "
                                               "charged only when the clip exists."}),
                "first_frames": ("IMAGE", {"tooltip": "A previous shot's frames (connect its sampler's frames): "
                                                      "this clip continues from the last continue_frames of them."}),
                "continue_frames": ("INT", {"default": DEFAULT_CONTINUE_FRAMES, "min": 1,
                                    "max": MAX_CONTINUE_FRAMES, "step": CONTINUE_FRAMES_STEP,
                                    "tooltip": "How many of first_frames' last frames the clip starts from: 1, 5, "
                                               "9 (default), ... so they fill whole latent frames; other counts "
                                               "are snapped down."}),
                "control_video": ("IMAGE", {"tooltip": "A control video with exactly the clip's frame count, e.g. a "
                                                       "previz animatic rendered with match_frames_of."}),
                "flow_shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FLOW_SHIFT, "step": 0.5,
                               "tooltip": "The noise schedule's flow shift; 0 = the model's default (16 for Wan "
                                          "VACE). A preset with an exact schedule (distill) ignores it."}),
                "control_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                     "tooltip": "How strongly control_video steers the clip: 1 = follow it, lower "
                                                "= the model invents more of the motion, 0 = ignore it. References "
                                                "and first frames are not weakened."}),
                "guidance_2": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_GUIDANCE, "step": 0.1,
                               "tooltip": "Wan 2.2 (two experts): guidance of the low-noise expert; 0 = the same "
                                          "as guidance. Ignored, with a note, for one-expert models."}),
            },
        }

    def sample(self, model: Any, references: Any, prompt: str, seed: int, steps: int = 0, guidance: float = 0.0,
               negative_prompt: str = "", resolution: str = DEFAULT_RESOLUTION, aspect: str = DEFAULT_ASPECT,
               duration: float = DEFAULT_SECONDS, style: Any = None, budget: Any = None, first_frames: Any = None,
               control_video: Any = None, continue_frames: int = DEFAULT_CONTINUE_FRAMES, flow_shift: float = 0.0,
               control_strength: float = 1.0, guidance_2: float = 0.0) -> dict[str, Any]:
        result = generate(SamplerInputs(
            model=model, references=references, prompt=prompt, seed=seed, steps=steps, guidance=guidance,
            negative_prompt=negative_prompt, resolution=resolution, aspect=aspect, duration=duration, style=style,
            budget=budget, first_frames=first_frames, control_video=control_video, continue_frames=continue_frames,
            flow_shift=flow_shift, control_strength=control_strength, guidance_2=guidance_2))
        return with_ui((to_tensor(result.frames), float(result.fps), result.info_json()), result.summary())


NODES = {"RefVideoSampler": (RefVideoSampler, "RefVideo Sampler")}
