"""StyleSkill: a style direction (look, negative, camera habits), saved and reused by name, chainable."""

from __future__ import annotations

from typing import Any

from ..engine.library import name_verdict
from ..engine.skills import KIND, NONE, list_skills, skill_fingerprint, style_skill
from .common import CATEGORY, STYLE, with_ui


class StyleSkill:
    """Outputs a REFVIDEO_STYLE: a saved skill and/or the texts here, after any connected style."""

    CATEGORY = CATEGORY
    FUNCTION = "build"
    OUTPUT_NODE = True
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("The style direction for RefVideoSampler (or another StyleSkill to chain).",)
    DESCRIPTION = ("A style direction reused across shots: style text (look, lens, lighting, palette, grade), "
                   "negative text and camera-language defaults. Load a saved skill by name, add to it, chain "
                   "several (later single fields win, texts join) and save the result as a named skill.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "saved_skill": ([NONE, *list_skills()], {
                    "default": NONE, "tooltip": "A saved skill to start from ('none': only the texts below)."}),
                "style": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": "The look: e.g. '35mm film, warm tungsten light, teal-orange grade, shallow depth "
                               "of field'. Joins the saved skill's style text."}),
                "negative": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": "What to avoid: e.g. 'oversaturated, cartoon, text, watermark'."}),
                "camera": ("STRING", {
                    "default": "",
                    "tooltip": "Camera habits used when the shot prompt names none, e.g. 'handheld, slow push in'. "
                               "Replaces the saved skill's camera text when given."}),
            },
            "optional": {
                "previous": (STYLE, {"tooltip": "A style to build on: this node's direction comes after it."}),
                "save_as": ("STRING", {
                    "default": "",
                    "tooltip": "Save the style this node outputs as a named skill (empty: do not save)."}),
                "overwrite": ("BOOLEAN", {
                    "default": False, "tooltip": "Allow save_as to replace a saved skill with other content."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, save_as: str = "") -> bool | str:
        return name_verdict(save_as, kind=KIND)

    @classmethod
    def IS_CHANGED(cls, saved_skill: str = NONE, **_: Any) -> str:
        return skill_fingerprint(saved_skill) if saved_skill and saved_skill != NONE else ""

    def build(self, saved_skill: str, style: str, negative: str, camera: str, previous: Any = None,
              save_as: str = "", overwrite: bool = False) -> dict:
        result, report = style_skill(saved_skill=saved_skill, style=style, negative=negative, camera=camera,
                                     previous=previous, save_as=save_as, overwrite=overwrite)
        return with_ui((result,), report)


NODES = {"StyleSkill": (StyleSkill, "Style Skill (RefVideo)")}
