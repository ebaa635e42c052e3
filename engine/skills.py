"""Style skills: a named, saved :class:`StyleDirection`, reused across shots.

A skill is ``<skills dir>/<name>.json``: format, name, pack version, created/updated times,
``style`` (look, lens, lighting, palette, grade), ``negative``, ``camera`` (camera-language
defaults such as "slow dolly in, 35mm") and ``defaults`` (sampler settings the skill
suggests: steps and guidance, used when the sampler's own are 0 = default).
Skills chain with :meth:`StyleDirection.then`: later single fields win, texts join.
Writes are atomic; saving never replaces a different skill without ``overwrite``; a corrupt
or hand-edited file is refused with an error naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import host, ranks
from .errors import InputError, StorageError
from .library import UNCHANGED, optional_name, report_line, save_rule, stamps
from .paths import contained, pack_version
from .storage import atomic_write_json, check_target, name_lock, read_json, validate_name
from .style import StyleDirection

KIND = "style skill"
NONE = "none"
FORMAT = 1
SUFFIX = ".json"
TEXT_FIELDS = ("style", "negative", "camera")
MAX_TEXT = 4000
DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "steps": (int,), "guidance": (int, float),
}


def skill_path(name: str, *, input_name: str = "saved_skill") -> Path:
    """The file of skill ``name`` (validated, contained in the skills folder; may not exist yet)."""
    cleaned = validate_name(name, kind=KIND, input_name=input_name)
    return contained(host.skills_dir(), cleaned + SUFFIX, input_name=input_name)


def list_skills() -> list[str]:
    """Names of the saved skills, sorted case-insensitively."""
    root = host.skills_dir()
    if not root.is_dir():
        return []
    names = [entry.name[: -len(SUFFIX)] for entry in root.iterdir()
             if entry.is_file() and entry.name.endswith(SUFFIX) and not entry.name.startswith(".")]
    return sorted(names, key=str.lower)


def check_defaults(defaults: Any, *, where: str, input_name: str = "defaults") -> dict:
    """Validate a skill's sampler defaults: known keys with values of the right type."""
    if not isinstance(defaults, dict):
        raise InputError(f"{where}: 'defaults' must be a JSON object.", input=input_name,
                         fix=f"Use keys among: {', '.join(DEFAULT_TYPES)}.")
    for key, value in defaults.items():
        types = DEFAULT_TYPES.get(key)
        if types is None:
            raise InputError(f"{where}: '{key}' is not a setting a skill can suggest.", input=input_name,
                             fix=f"Use keys among: {', '.join(DEFAULT_TYPES)}.")
        if isinstance(value, bool) or not isinstance(value, types):
            raise InputError(f"{where}: '{key}' must be {' or '.join(t.__name__ for t in types)}, got {value!r}.",
                             input=input_name, fix="Correct the value in the skill.")
    return dict(defaults)


def direction(style: str = "", negative: str = "", camera: str = "", *, name: str | None = None,
              defaults: dict | None = None) -> StyleDirection:
    """A style direction from texts, checking their types and lengths."""
    texts = {"style": style, "negative": negative, "camera": camera}
    for field_name, value in texts.items():
        if not isinstance(value, str):
            raise InputError(f"must be text, not {type(value).__name__}.", input=field_name,
                             fix="Give the style as plain text.")
        if len(value) > MAX_TEXT:
            raise InputError(f"is {len(value)} characters long; at most {MAX_TEXT} fit.", input=field_name,
                             fix="Shorten it: a few precise phrases direct a model better than many.")
    return StyleDirection(names=(name,) if name else (), style=style.strip(), negative=negative.strip(),
                          camera=camera.strip(), defaults=dict(defaults or {}))


def save_skill(style: StyleDirection, name: str, *, overwrite: bool = False,
               input_name: str = "save_as") -> tuple[Path, str]:
    """Save ``style`` as skill ``name``; returns the file and what happened (saved/replaced/unchanged)."""
    path = check_target(skill_path(name, input_name=input_name), input_name=input_name)
    cleaned = path.name[: -len(SUFFIX)]
    content = {"style": style.style, "negative": style.negative, "camera": style.camera,
               "defaults": check_defaults(style.defaults, where=f"skill '{cleaned}'")}
    with name_lock(path.parent, path.name):  # the check and the write together: one save of a name at a time
        previous, status = save_rule(path, lambda: _read(path, cleaned),
                                     lambda old: {k: old.get(k) for k in content} == content, kind=KIND,
                                     name=cleaned, overwrite=overwrite, input_name=input_name)
        if status != UNCHANGED:
            atomic_write_json(path, {"format": FORMAT, "name": cleaned, "pack_version": pack_version(),
                                     **stamps(previous), **content})
    return path, status


def _read(path: Path, name: str) -> dict:
    fix = f"Save the skill again under this name with 'overwrite' on, or fix or delete {path}."
    data = read_json(path, what=f"style skill '{name}'", fix=fix)

    def corrupt(problem: str) -> StorageError:
        return StorageError(f"the style skill '{name}' ({path}) is damaged: {problem}.", input="saved_skill", fix=fix)

    if not isinstance(data, dict):
        raise corrupt("it is not a JSON object")
    if data.get("format") != FORMAT:
        raise corrupt(f"its format is {data.get('format')!r}, expected {FORMAT}")
    for key in TEXT_FIELDS:
        if not isinstance(data.get(key, ""), str):
            raise corrupt(f"'{key}' is not text")
        if len(data.get(key, "")) > MAX_TEXT:
            raise corrupt(f"'{key}' is {len(data[key])} characters long (at most {MAX_TEXT})")
    try:
        check_defaults(data.get("defaults", {}), where=f"skill '{name}'")
    except InputError as exc:
        raise corrupt(exc.message) from None
    return data


def load_skill(name: str, *, input_name: str = "saved_skill") -> StyleDirection:
    """Load skill ``name`` as a style direction named after it."""
    path = skill_path(name, input_name=input_name)
    cleaned = path.name[: -len(SUFFIX)]
    if not path.is_file():
        raise StorageError(f"there is no style skill named '{cleaned}'.", input=input_name,
                           fix=f"Choose a saved skill (saved: {', '.join(list_skills()) or 'none yet'}), "
                               "or save one with 'save_as'.")
    data = _read(path, cleaned)
    return direction(data.get("style", ""), data.get("negative", ""), data.get("camera", ""), name=cleaned,
                     defaults=data.get("defaults", {}))


def chain(*directions: StyleDirection) -> StyleDirection:
    """Several directions combined in order (later single fields win, texts join)."""
    result = StyleDirection()
    for item in directions:
        result = result.then(item)
    return result


def skill_document(name: str) -> dict:
    """The stored JSON of skill ``name`` (checked), with its path."""
    path = skill_path(name, input_name="name")
    if not path.is_file():
        raise StorageError(f"there is no style skill named '{path.name[: -len(SUFFIX)]}'.", input="name",
                           fix=f"Saved skills: {', '.join(list_skills()) or 'none yet'}.")
    return {**_read(path, path.name[: -len(SUFFIX)]), "path": os.fspath(path)}


def skill_fingerprint(name: str) -> str:
    """A string that changes when skill ``name`` changes on disk (for IS_CHANGED)."""
    try:
        return skill_path(name).read_text(encoding="utf-8")
    except (InputError, OSError) as exc:
        return f"unreadable:{name}:{exc}"


def style_skill(*, saved_skill: str = NONE, style: str = "", negative: str = "", camera: str = "",
                previous: StyleDirection | None = None, save_as: str = "",
                overwrite: bool = False) -> tuple[StyleDirection, str]:
    """What the StyleSkill node does: previous, then the saved skill, then the texts; saved when asked.

    Returns the direction and a short report.
    """
    if previous is not None and not isinstance(previous, StyleDirection):
        raise InputError(f"expects a REFVIDEO_STYLE, got {type(previous).__name__}.", input="previous",
                         fix="Connect the output of another StyleSkill node.")
    save_name = optional_name(save_as, kind=KIND)
    parts = [previous] if previous is not None else []
    if saved_skill and saved_skill != NONE:
        parts.append(load_skill(saved_skill))
    parts.append(direction(style, negative, camera))
    result = chain(*parts)
    lines = [f"Style: {result.style or '(none)'}", f"Negative: {result.negative or '(none)'}",
             f"Camera: {result.camera or '(none)'}"]
    if result.names:
        lines.insert(0, f"Skills: {' -> '.join(result.names)}")
    if save_name:
        # under torchrun rank 0 writes and every rank gets where
        path, status = ranks.on_main_shared(lambda: save_skill(result, save_name, overwrite=overwrite))
        result = StyleDirection(names=(path.stem,), style=result.style, negative=result.negative,
                                camera=result.camera, defaults=dict(result.defaults))
        lines.append(report_line(status, kind=KIND, name=path.stem, where=path))
    return result, "\n".join(lines)
