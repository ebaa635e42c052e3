"""A storyboard file (YAML, or JSON) read into checked, typed shots.

Top-level keys: ``sequence`` (its name), ``defaults``, ``shots`` and optional ``join``.
``defaults`` and each shot may set the :data:`SETTINGS`; a shot also has ``name`` and
``prompt`` and may ``continue_from`` an earlier shot. Every value is checked here, before
anything is read from disk or rendered, and a bad one raises :class:`InputError` whose
``input`` names the shot and the field (``shot 'wide'.seed``). Shots come back in dependency
order (a shot after the shot it continues from).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..credits.pricing import LEDGER_INTEGER_LIMIT, check_amount
from ..errors import InputError
from ..references.reference import MAX_REFERENCES, ROLES
from ..seeds import check_seed
from ..sizes import ASPECTS, DEFAULT_ASPECT, DEFAULT_RESOLUTION, DEFAULT_SECONDS, RESOLUTIONS, check_duration
from ..storage import validate_name
from ..video.encoder import get_format
from ..video.join import CROSSFADE, CUT, TRANSITIONS

MAX_SHOTS = 200
MAX_FILE_BYTES = 1_000_000
DEFAULT_MODEL = "previz"
DEFAULT_FORMAT = "mp4-h264"
DEFAULT_CROSSFADE = 8
SETTINGS = ("references", "style", "model", "loader", "resolution", "aspect", "duration", "format", "steps", "seed",
            "budget_cap", "account")
SHOT_KEYS = ("name", "prompt", "continue_from", *SETTINGS)
TOP_KEYS = ("sequence", "defaults", "shots", "join")
REFERENCE_KEYS = ("image", "role", "label", "background")
FROM_SOCKET = "<socket>"  # a default that a node's socket provides (never a valid name)


@dataclass(frozen=True)
class ReferenceImage:
    """One ``{image, role, label}`` entry: ``image`` is an input-folder name, ``samples/...`` or a file path."""

    image: str
    role: str
    label: str = ""
    background: str = "off"


@dataclass(frozen=True)
class Shot:
    """One shot with the defaults applied. ``references`` is a saved set's name or 1-3 images."""

    name: str
    prompt: str
    continue_from: str | None
    references: str | tuple[ReferenceImage, ...]
    style: str | None
    model: str
    loader: tuple[tuple[str, Any], ...]
    resolution: str
    aspect: str
    duration: float
    format: str
    steps: int
    seed: int
    budget_cap: int
    account: str


@dataclass(frozen=True)
class Storyboard:
    """A checked storyboard: shots in dependency order, the join, and where relative image paths start."""

    sequence: str
    shots: tuple[Shot, ...]
    transition: str = CUT
    crossfade_frames: int = 0
    sequence_cap: int = 0
    base_dir: Path | None = None

    def shot(self, name: str) -> Shot:
        return next(s for s in self.shots if s.name == name)


def field_name(shot: str | None, name: str) -> str:
    """How errors name a field: ``shot 'wide'.seed``, ``defaults.seed`` or the top-level key."""
    return f"shot '{shot}'.{name}" if shot else f"defaults.{name}" if name in SETTINGS else name


def _refuse(message: str, where: str, fix: str) -> InputError:
    return InputError(message, input=where, fix=fix)


def checked_as(where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(*args)``, with an InputError re-raised naming ``where`` instead of the check's own input."""
    try:
        return check(*args, **kwargs)
    except InputError as exc:
        raise type(exc)(exc.message, input=where, fix=exc.fix) from None


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise _refuse(f"must be {'text' if empty else 'non-empty text'}, not {value!r}.", where, "Write it as text.")
    return value.strip()


def _choice(value: Any, allowed: Any, where: str) -> str:
    if value not in allowed:
        raise _refuse(f"'{value}' is not allowed.", where, f"Use one of {', '.join(allowed)}.")
    return value


def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _refuse(f"must be a mapping of keys to values, not {type(value).__name__}.", where,
                      f"Give a mapping with any of: {', '.join(keys)}.")
    unknown = [str(k) for k in value if k not in keys]
    if unknown:
        raise _refuse(f"has unknown key(s) {', '.join(unknown)}.", f"{where}.{unknown[0]}" if where else unknown[0],
                      f"Use only: {', '.join(keys)}.")
    return value


def _references(value: Any, where: str) -> str | tuple[ReferenceImage, ...]:
    if isinstance(value, str):
        return checked_as(where, validate_name, value, kind="reference set", input_name=where)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REFERENCES:
        raise _refuse("must be a saved set's name or a list of 1 to 3 images.", where,
                      "Give a name from 'refvideo refs list', or entries {image, role, label}.")
    images = []
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        entry = _mapping(entry, at, REFERENCE_KEYS)
        if "image" not in entry:
            raise _refuse("has no image.", f"{at}.image", "Give the image file, e.g. samples/character_mara.png.")
        images.append(ReferenceImage(
            image=_text(entry["image"], f"{at}.image"),
            role=_choice(entry.get("role", "character"), ROLES, f"{at}.role"),
            label=_text(entry.get("label", ""), f"{at}.label", empty=True),
            background=_choice(entry.get("background", "off"), ("off", "flat background", "rembg"),
                               f"{at}.background")))
    return tuple(images)


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(f"{value!r} is not a whole number from {low} to {high}.", where, f"Give {low} to {high}.")
    return value


def _format(value: Any, where: str) -> str:
    preset = checked_as(where, get_format, _text(value, where))
    if preset.is_sequence or not preset.metadata:
        raise _refuse(f"'{value}' cannot carry a shot's manifest, so a resumed render could not recognise it.",
                      where, "Use mp4-h264 (default), mp4-h265, webm-vp9 or mov-prores.")
    return preset.name


def _loader(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """The loader options as given (RefVideoModelLoader's inputs); the plan checks their values."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _refuse("must be a mapping of loader inputs to values.", where,
                      "Give e.g. loader: {preset: distill-4step, memory_mode: group_offload}.")
    return tuple(sorted(value.items()))


# YAML 1.1 reads an unquoted 16:9 as the base-60 number 969: take it back as the aspect it was
_SEXAGESIMAL = {int(a) * 60 + int(b): f"{a}:{b}" for a, b in (aspect.split(":") for aspect in ASPECTS)}
_CHECKS = {
    "references": _references,
    "style": lambda v, w: None if v in (None, "", "none") else checked_as(w, validate_name, v, kind="style skill",
                                                                          input_name=w),
    "model": _text,
    "loader": _loader,
    "resolution": lambda v, w: _choice(v, tuple(RESOLUTIONS), w),
    "aspect": lambda v, w: _choice(_SEXAGESIMAL.get(v, v) if isinstance(v, int) else v, ASPECTS, w),
    "duration": lambda v, w: checked_as(w, check_duration, v),
    "format": _format,
    "steps": lambda v, w: _whole(v, w, 0, 10_000),  # the model's own limit is checked by the plan
    "seed": lambda v, w: checked_as(w, check_seed, v),
    "budget_cap": lambda v, w: checked_as(w, check_amount, v, input=w, limit=LEDGER_INTEGER_LIMIT, allow_zero=True),
    "account": lambda v, w: checked_as(w, validate_name, v, kind="account", input_name=w),
}
BUILTIN_DEFAULTS: dict[str, Any] = {"references": None, "style": None, "model": DEFAULT_MODEL, "loader": (),
                                    "resolution": DEFAULT_RESOLUTION, "aspect": DEFAULT_ASPECT,
                                    "duration": DEFAULT_SECONDS, "format": DEFAULT_FORMAT, "steps": 0, "seed": 0,
                                    "budget_cap": 0, "account": "default"}


def _settings(raw: dict, shot: str | None) -> dict[str, Any]:
    return {key: _CHECKS[key](raw[key], field_name(shot, key)) for key in SETTINGS if key in raw}


def read_storyboard(path: str | Path) -> Storyboard:
    """Read and check a storyboard file; relative image paths start at its folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a readable file.", input="FILE", fix="Give the path of a storyboard file.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path} is larger than {MAX_FILE_BYTES} bytes.", input="FILE",
                         fix="A storyboard is a short text file; check the path.")
    return parse_storyboard(path.read_text(encoding="utf-8", errors="replace"), base_dir=path.resolve().parent,
                            source=str(path))


def _load_text(text: str, source: str) -> Any:
    import yaml

    try:
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{source} is not valid YAML or JSON ({str(exc).splitlines()[0]}).", input="FILE",
                         fix="Fix the syntax (see workflows/storyboards/example.yaml).") from None


def parse_storyboard(text: str, *, base_dir: Path | None = None, source: str = "the storyboard",
                     overrides: dict[str, Any] | None = None) -> Storyboard:
    """Check a storyboard's text. ``overrides`` replace ``defaults`` entries (a shot's own value still wins)."""
    data = _mapping(_load_text(text, source), "", TOP_KEYS)
    sequence = checked_as("sequence", validate_name, data.get("sequence"), kind="sequence", input_name="sequence")
    defaults = {**BUILTIN_DEFAULTS, **_settings(_mapping(data.get("defaults") or {}, "defaults", SETTINGS), None),
                **(overrides or {})}
    raw_shots = data.get("shots")
    if not isinstance(raw_shots, list) or not 1 <= len(raw_shots) <= MAX_SHOTS:
        raise InputError("must be a list of 1 to 200 shots.", input="shots",
                         fix="Give each shot a name and a prompt under 'shots:'.")
    shots = [_shot(raw, i, defaults, sequence) for i, raw in enumerate(raw_shots)]
    transition, crossfade = _join(data.get("join") or {})
    return Storyboard(sequence=sequence, shots=dependency_order(shots), transition=transition,
                      crossfade_frames=crossfade, sequence_cap=int(defaults["budget_cap"]), base_dir=base_dir)


def _shot(raw: Any, index: int, defaults: dict[str, Any], sequence: str) -> Shot:
    raw = _mapping(raw, f"shots[{index}]", SHOT_KEYS)
    name = checked_as(f"shots[{index}].name", validate_name, raw.get("name"), kind="shot",
                    input_name=f"shots[{index}].name")
    if name == sequence:
        raise _refuse(f"a shot may not be named like the sequence ('{sequence}'): their files would clash.",
                      field_name(name, "name"), "Rename the shot.")
    prompt = " ".join(_text(raw.get("prompt"), field_name(name, "prompt")).split())
    settings = {**defaults, **_settings(raw, name)}
    if settings["references"] is None:
        raise _refuse("no references were given.", field_name(name, "references"),
                      "Give references in defaults (all shots) or in the shot.")
    parent = raw.get("continue_from")
    if parent is not None:
        parent = _text(parent, field_name(name, "continue_from"))
    return Shot(name=name, prompt=prompt, continue_from=parent, **{k: settings[k] for k in SETTINGS})


def _join(raw: Any) -> tuple[str, int]:
    raw = _mapping(raw, "join", ("transition", "crossfade_frames"))
    transition = _choice(raw.get("transition", CUT), TRANSITIONS, "join.transition")
    default = DEFAULT_CROSSFADE if transition == CROSSFADE else 0
    frames = _whole(raw.get("crossfade_frames", default), "join.crossfade_frames", 0, 64)
    if transition == CROSSFADE and frames == 0:
        raise _refuse("a crossfade needs at least 1 frame.", "join.crossfade_frames", "Give 1 to 64, or a cut.")
    return transition, frames if transition == CROSSFADE else 0


def dependency_order(shots: list[Shot]) -> tuple[Shot, ...]:
    """Shots with each one after the shot it continues from (otherwise in file order); refuses unknown
    names, duplicates and loops."""
    by_name: dict[str, Shot] = {}
    for shot in shots:
        if shot.name in by_name:
            raise _refuse("two shots have this name.", field_name(shot.name, "name"), "Give every shot its own name.")
        by_name[shot.name] = shot
    for shot in shots:
        if shot.continue_from is not None and shot.continue_from not in by_name:
            raise _refuse(f"'{shot.continue_from}' is not a shot of this storyboard.",
                          field_name(shot.name, "continue_from"),
                          f"Name one of: {', '.join(by_name)}.")
    ordered: list[Shot] = []
    placed: set[str] = set()

    def place(shot: Shot, chain: tuple[str, ...]) -> None:
        if shot.name in placed:
            return
        if shot.name in chain:
            raise _refuse(f"continues in a loop ({' -> '.join((*chain, shot.name))}).",
                          field_name(shot.name, "continue_from"), "A shot can only continue from an earlier one.")
        if shot.continue_from is not None:
            place(by_name[shot.continue_from], (*chain, shot.name))
        placed.add(shot.name)
        ordered.append(shot)

    for shot in shots:
        place(shot, ())
    return tuple(ordered)
