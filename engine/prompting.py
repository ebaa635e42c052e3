"""Role-aware prompt composition: one function, shared by every backend.

:func:`compose_prompt` turns the user's action text, the reference set, the style skill and
the normalised camera phrase into the text a diffusion model reads::

    <action>. Featuring <character label>; with <prop label>; set in <environment label>.
    Camera: <camera phrase>. Style: <style text>, look of <style reference label>.

References whose role the backend takes as image conditioning are named as subjects so the
text and the pasted images agree; roles it does not take (``style`` for Wan VACE) are served
by text instead and reported in ``skipped_roles``. Labels are what the user typed in
LoadReferenceSet; an unlabelled reference is named by its role ("the character").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .references.reference import Reference
from .style import StyleDirection

# How each role is introduced in the subject sentence, in this order.
ROLE_PHRASES: dict[str, tuple[str, str]] = {
    "character": ("Featuring", "the character"),
    "prop": ("with", "the prop"),
    "environment": ("set in", "the environment"),
}
STYLE_ROLE = "style"


def typed_text(value: Any, name: str, *, limit: int, fix: str | None = None) -> str:
    """Text as typed, with runs of white space made one space; refused (naming input ``name``) when it is
    not text, is longer than ``limit`` characters, or cannot be written as UTF-8 (a lone surrogate, which
    no file's metadata can hold). None is empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"expects text, got {type(value).__name__}.", input=name, fix="Type the text in.")
    fix = fix or f"Keep it under {limit} characters (the text encoder reads about 512 tokens)."
    if len(value) > 4 * limit:  # bounded work before any splitting
        raise InputError(f"the text is {len(value)} characters long.", input=name, fix=fix)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"holds a character that cannot be written as UTF-8 at position {exc.start}.", input=name,
                         fix="Retype the text (it holds half of a character pair).") from None
    text = " ".join(value.split())
    if len(text) > limit:
        raise InputError(f"the text is {len(text)} characters long.", input=name, fix=fix)
    return text


@dataclass(frozen=True)
class ComposedPrompt:
    """The composed positive text, the negative text, and the roles given as text only."""

    text: str
    negative: str
    skipped_roles: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"text": self.text, "negative": self.negative, "skipped_roles": list(self.skipped_roles)}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _sentence(text: str) -> str:
    text = _clean(text).rstrip(" ,;")
    return text if not text or text[-1] in ".!?" else text + "."


def _join_unique(parts: Iterable[str], sep: str = ", ") -> str:
    seen: list[str] = []
    for part in parts:
        for piece in (p.strip() for p in _clean(part).split(",")):
            if piece and piece.lower() not in (s.lower() for s in seen):
                seen.append(piece)
    return sep.join(seen)


def _subjects(references: list[Reference], roles: frozenset[str]) -> str:
    clauses = []
    for role, (intro, fallback) in ROLE_PHRASES.items():
        if role not in roles:
            continue
        names = [_clean(r.label) or fallback for r in references if r.role == role]
        if names:
            clauses.append(f"{intro} {' and '.join(dict.fromkeys(names))}")
    if not clauses:
        return ""
    return _sentence("; ".join(clauses))


def compose_prompt(action: str, references: Iterable[Reference], style: StyleDirection | None, *,
                   roles: Iterable[str], camera_phrase: str = "", negative: str = "") -> ComposedPrompt:
    """Compose the diffusion prompt: action, subjects by role, camera, then style.

    ``roles`` are the roles the backend pastes as images; the other references' roles are
    listed in ``skipped_roles`` (a ``style`` reference's label still joins the style text).
    ``negative`` (the user's negative prompt) is joined with the style's negative text.
    The camera phrase is added unless the action already says it word for word.
    """
    refs = list(references)
    taken = frozenset(roles)
    skipped = tuple(dict.fromkeys(r.role for r in refs if r.role not in taken))
    parts = [_sentence(action), _subjects(refs, taken)]
    camera = _clean(camera_phrase)
    if camera and camera.lower() not in _clean(action).lower():
        parts.append(_sentence(f"Camera: {camera}"))
    style_refs = [f"look of {_clean(r.label) or 'the style reference'}" for r in refs
                  if r.role == STYLE_ROLE and r.role not in taken]
    style_text = _join_unique([style.style if style else "", *style_refs])
    if style_text:
        parts.append(_sentence(f"Style: {style_text}"))
    negative_text = _join_unique([negative, style.negative if style else ""])
    return ComposedPrompt(text=" ".join(p for p in parts if p), negative=negative_text, skipped_roles=skipped)
