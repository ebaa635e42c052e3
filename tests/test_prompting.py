"""Role-aware prompt composition: action, subjects by role, camera, style; skipped roles."""

from __future__ import annotations

import numpy as np

from refvideo.engine.prompting import compose_prompt
from refvideo.engine.references.reference import ROLES, Reference
from refvideo.engine.style import StyleDirection

WAN_ROLES = ("character", "environment", "prop")


def ref(role: str, label: str = "") -> Reference:
    return Reference(image=np.zeros((8, 8, 3), np.float32), mask=np.ones((8, 8), np.float32), role=role, label=label)


def test_one_character_and_the_action_come_first():
    out = compose_prompt("Mara turns to the window", [ref("character", "Mara")], None, roles=WAN_ROLES)
    assert out.text == "Mara turns to the window. Featuring Mara."
    assert out.negative == "" and out.skipped_roles == ()


def test_three_roles_are_named_in_a_fixed_order():
    refs = [ref("environment", "a rainy harbour"), ref("prop", "a brass lantern"), ref("character", "Mara")]
    out = compose_prompt("she lifts the lantern", refs, None, roles=WAN_ROLES)
    assert out.text == ("she lifts the lantern. Featuring Mara; with a brass lantern; set in a rainy harbour.")


def test_unlabelled_references_are_named_by_role_and_duplicates_once():
    out = compose_prompt("two of them wave", [ref("character"), ref("character"), ref("prop")], None,
                         roles=WAN_ROLES)
    assert "Featuring the character; with the prop." in out.text


def test_style_role_is_text_for_a_backend_that_does_not_paste_it():
    style = StyleDirection(names=("noir",), style="high contrast, film grain", negative="colour, blur")
    out = compose_prompt("Mara waits", [ref("character", "Mara"), ref("style", "noir poster")], style,
                         roles=WAN_ROLES, negative="blur, watermark")
    assert out.skipped_roles == ("style",)
    assert out.text.endswith("Style: high contrast, film grain, look of noir poster.")
    assert out.negative == "blur, watermark, colour"  # joined, each phrase once


def test_a_backend_taking_every_role_skips_none():
    out = compose_prompt("Mara waits", [ref("character", "Mara"), ref("style", "noir poster")], None, roles=ROLES)
    assert out.skipped_roles == () and "noir poster" not in out.text


def test_camera_phrase_is_added_unless_the_action_already_says_it():
    refs = [ref("character", "Mara")]
    added = compose_prompt("Mara turns, then the camera moves", refs, None, roles=WAN_ROLES,
                           camera_phrase="slow dolly in")
    assert "Camera: slow dolly in." in added.text
    said = compose_prompt("Mara turns, slow dolly in", refs, None, roles=WAN_ROLES, camera_phrase="slow dolly in")
    assert "Camera:" not in said.text


def test_whitespace_and_punctuation_are_normalised():
    out = compose_prompt("  Mara\n\n runs   ,", [ref("character", " Mara ")], StyleDirection(style=" warm , "),
                         roles=WAN_ROLES)
    assert out.text == "Mara runs. Featuring Mara. Style: warm."
    assert out.describe() == {"text": out.text, "negative": "", "skipped_roles": []}
