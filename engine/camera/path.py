"""The camera grammar: a shot description becomes a timed camera path.

``parse_shot("slow dolly in, then rack focus to background")`` gives a :class:`ShotCamera`:
its ``moves`` (kind, direction, speed, easing and the fraction of the shot each one spans),
the normalised ``phrase`` the diffusion prompt composer uses, the camera words it did not
understand (``unknown``, reported in the generation info), and :meth:`ShotCamera.at`, the
camera state at a time ``t`` in 0..1 that the previz renderer draws.

Conventions of :class:`CameraState` (all relative to the camera at rest):

- ``x``, ``y``, ``z``: position in units of the distance to the subject; +x is the camera's
  right, +y up, +z forward (a dolly in). Moving right makes the picture content move left,
  near things more than far ones (parallax).
- ``pan``, ``tilt``, ``roll``: degrees; +pan turns right, +tilt looks up, +roll is clockwise.
  Panning left turns the camera left, so the picture content moves **right** across the
  frame; tilting up moves the content down.
- ``zoom``: focal-length factor (1 = the framing's lens; > 1 narrower, everything larger).
- ``focus``: where the focus sits on the scene's depth axis: 0 foreground, 0.5 the subject,
  1 the background. ``aperture`` scales the depth-of-field blur.
- ``shake_pan``, ``shake_tilt``: handheld jitter in degrees (added to pan and tilt).
- ``shutter``: the fraction of a frame interval the shutter is open; the renderer blurs
  motion over that time (a whip pan smears, a slow dolly stays crisp).
- ``aim``: the height on the subject (0 feet, 1 head) that the framing centres on, or None.

Words and amounts are data (``engine/data/camera_vocabulary.json``); how they are read is
in :mod:`engine.camera.grammar`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..references.reference import Reference
from .grammar import MoveDraft, Reading, Vocabulary, read, vocabulary

EASINGS: dict[str, Callable[[float], float]] = {
    "linear": lambda p: p,
    "ease_in": lambda p: p * p,
    "ease_out": lambda p: 1.0 - (1.0 - p) ** 2,
    "ease_in_out": lambda p: p * p * (3.0 - 2.0 * p),
}


@dataclass(frozen=True)
class CameraMove:
    """One move of the path: what, which way, how fast, and when (fractions of the shot)."""

    kind: str
    direction: str = ""
    speed: str = ""
    easing: str = "ease_in_out"
    start: float = 0.0
    end: float = 1.0
    amount: float = 0.0  # signed: distance, degrees, log zoom, focus target or shake intensity
    text: str = ""
    explicit_speed: bool = False
    degrees: float | None = None  # the angle the words gave, if any

    @property
    def whole_shot(self) -> bool:
        """True for a move that lasts the whole shot (handheld, a static shot)."""
        return self.start <= 0.0 and self.end >= 1.0 and bool(_spec(self.kind).get("whole_shot"))

    def progress(self, t: float) -> float:
        """How far this move has got at shot time ``t`` (0 before it starts, 1 once done), eased."""
        if t <= self.start:
            return 0.0
        if t >= self.end or self.end <= self.start:
            return 1.0
        return float(EASINGS[self.easing]((t - self.start) / (self.end - self.start)))

    def phrase(self, vocab: Vocabulary | None = None) -> str:
        """The move in standard camera language ("slow dolly in", "rack focus to background")."""
        vocab = vocab or vocabulary()
        spec = vocab.moves[self.kind]
        if spec.get("hold_phrase") and not self.whole_shot:
            return spec["hold_phrase"]
        degrees = f" {self.degrees:g} degrees" if self.degrees is not None else ""
        text = spec["phrase"].format(direction=self.direction, degrees=degrees).strip()
        if self.explicit_speed and self.speed:
            text = f"{self.speed} {text}"
        return text

    def describe(self) -> dict:
        return {"kind": self.kind, "direction": self.direction, "speed": self.speed or "steady",
                "easing": self.easing, "start": round(self.start, 4), "end": round(self.end, 4),
                "amount": round(self.amount, 4), "text": self.text}


@dataclass(frozen=True)
class CameraState:
    """The camera at one instant (see the module docstring for units and signs)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    pan: float = 0.0
    tilt: float = 0.0
    roll: float = 0.0
    zoom: float = 1.0
    focus: float = 0.5
    aperture: float = 0.0
    shake_pan: float = 0.0
    shake_tilt: float = 0.0
    shutter: float = 0.5
    aim: float | None = None


@dataclass(frozen=True)
class ShotCamera:
    """A parsed camera path: moves in time, framing, angle, and what was not understood."""

    moves: tuple[CameraMove, ...] = ()
    unknown: tuple[str, ...] = ()
    framing: dict | None = None
    angle: dict | None = None
    source: str = "none"  # "prompt", "default" (the style's camera) or "none"
    text: str = ""
    optics: dict = field(default_factory=dict, compare=False, repr=False)
    shake: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def phrase(self) -> str:
        """The normalised camera phrase for diffusion prompts ("" when the text had no camera words)."""
        parts = [p["name"] for p in (self.framing, self.angle) if p]
        whole = [m.phrase() for m in self.moves if m.whole_shot]
        steps: dict[float, list[str]] = {}
        for move in self.moves:
            if not move.whole_shot:
                steps.setdefault(move.start, []).append(move.phrase())
        timed = ", then ".join(" and ".join(v) for _, v in sorted(steps.items()))
        return ", ".join(p for p in [*parts, *whole, timed] if p)

    @property
    def is_static(self) -> bool:
        """True when nothing moves the camera (a static or empty path)."""
        return all(m.kind == "static" for m in self.moves)

    def at(self, t: float, *, seconds: float = 5.0, seed: int = 0) -> CameraState:
        """The camera at shot time ``t`` in 0..1 (``seconds`` long; ``seed`` picks the handheld jitter)."""
        t = min(max(float(t), 0.0), 1.0)
        optics = self.optics or vocabulary().data["optics"]
        axes = {"x": 0.0, "y": 0.0, "z": 0.0, "pan": 0.0, "tilt": 0.0, "roll": 0.0, "zoom": 0.0, "arc": 0.0,
                "shake": 0.0}
        focus = float(optics["initial_focus"])
        for move in self.moves:
            axis = _spec(move.kind)["axis"]
            p = move.progress(t)
            if axis == "focus":
                focus += (move.amount - focus) * p
            elif axis == "shake":
                axes["shake"] += move.amount
            elif axis in axes:
                axes[axis] += move.amount * p
        limit = float(optics["max_arc_degrees"])  # flat layers cannot be seen from the side
        arc = math.radians(min(max(axes["arc"], -limit), limit))
        x = axes["x"] + math.sin(arc)
        z = min(axes["z"], float(optics["max_dolly"])) + 1.0 - math.cos(arc)
        angle = self.angle or {}
        framing = self.framing or {}
        shake = self.shake or vocabulary().data["handheld_shake"]
        jitter_pan, jitter_tilt = _handheld(t * seconds, axes["shake"], seed, shake)
        racks = any(m.kind == "rack_focus" for m in self.moves)
        return CameraState(
            x=x, y=axes["y"] + float(angle.get("y", 0.0)), z=z,
            pan=axes["pan"] - math.degrees(arc), tilt=axes["tilt"] + float(angle.get("tilt", 0.0)),
            roll=axes["roll"] + float(angle.get("roll", 0.0)),
            zoom=float(framing.get("zoom", 1.0)) * math.exp(axes["zoom"]),
            focus=focus, aperture=float(optics["rack_focus_aperture" if racks else "aperture"]),
            shake_pan=jitter_pan, shake_tilt=jitter_tilt, shutter=float(optics["shutter"]),
            aim=framing.get("aim"),
        )

    def states(self, frames: int, *, seconds: float = 5.0, seed: int = 0) -> list[CameraState]:
        """The camera at each of ``frames`` evenly spaced instants from the first to the last frame."""
        if frames <= 1:
            return [self.at(0.0, seconds=seconds, seed=seed)]
        return [self.at(i / (frames - 1), seconds=seconds, seed=seed) for i in range(frames)]

    def describe(self) -> dict:
        """What the generation info records about the camera."""
        return {"phrase": self.phrase, "source": self.source, "moves": [m.describe() for m in self.moves],
                "framing": (self.framing or {}).get("name", ""), "angle": (self.angle or {}).get("name", ""),
                "unknown": list(self.unknown)}


def parse_shot(text: str, *, default_camera: str = "", targets: Mapping[str, str] | None = None) -> ShotCamera:
    """The camera path of a shot description.

    ``default_camera`` (a style skill's camera habit, e.g. "handheld, slow push in") applies
    when ``text`` names no camera move. ``targets`` maps extra words to focus targets
    (``subject``, ``foreground``, ``background``) so "rack focus to Mara" works; see
    :func:`reference_targets`. Camera words that are not understood are listed in
    ``unknown`` and left out of the path.
    """
    vocab = vocabulary()
    reading = read(text or "", vocab, targets)
    source = "prompt" if reading.steps else "none"
    unknown = list(reading.unknown)
    if not reading.steps and default_camera and default_camera.strip():
        fallback = read(default_camera, vocab, targets)
        unknown.extend(fallback.unknown)
        if fallback.steps:
            source = "default"
            reading = replace(fallback, framing=reading.framing or fallback.framing,
                              angle=reading.angle or fallback.angle)
    return ShotCamera(moves=_timed_moves(reading, vocab), unknown=tuple(dict.fromkeys(unknown)),
                      framing=reading.framing, angle=reading.angle, source=source, text=text or "",
                      optics=dict(vocab.data["optics"]), shake=dict(vocab.data["handheld_shake"]))


def shot_camera(prompt: str, camera_habit: str, references: Iterable[Reference]) -> ShotCamera:
    """The camera path of a shot: its prompt, the style's camera habit when the prompt names no move,
    and the references' labels as focus targets. The sampler and previz both read the camera here."""
    return parse_shot(prompt, default_camera=camera_habit, targets=reference_targets(references))


def reference_targets(references: Iterable[Reference]) -> dict[str, str]:
    """Focus targets named by a reference set's labels: characters are the subject, props the
    foreground, environments the background ("rack focus to Mara")."""
    by_role = {"character": "subject", "prop": "foreground", "environment": "background"}
    vocab = vocabulary()
    found: dict[str, str] = {}
    for reference in references:
        target = by_role.get(reference.role)
        for token in vocab.tokenize(reference.label or ""):
            if target and not token.is_punctuation and len(token.text) > 2 and token.lemma not in vocab.fillers:
                found.setdefault(token.lemma, target)
    return found


# --------------------------------------------------------------------------- timing


def _spec(kind: str) -> dict:
    return vocabulary().moves[kind]


def _weight(draft: MoveDraft, vocab: Vocabulary) -> float:
    """How much of the shot a move wants: quick moves (whip pans, racks) take a short share."""
    spec = vocab.moves[draft.kind]
    if not spec.get("complete"):
        return 1.0
    return min(max(float(spec["weight"]) / max(draft.factor, 1e-3), 0.08), 1.0)


def _timed_moves(reading: Reading, vocab: Vocabulary) -> tuple[CameraMove, ...]:
    """Steps share the shot in proportion to their weights; moves in a step run together.

    Quick moves alone (a whip pan, a rack) keep their short share, centred in the shot with
    a hold before and after, rather than being stretched over the whole clip.
    """
    steps = _changing_steps(reading.steps, vocab)
    timed = {id(d) for step in steps for d in step}
    whole = [d for step in reading.steps for d in step if vocab.moves[d.kind].get("whole_shot") and id(d) not in timed]
    weights = [max(_weight(d, vocab) for d in step) for step in steps]
    total = max(sum(weights), 1.0)
    moves = [_move(d, 0.0, 1.0, vocab) for d in whole]
    start = (1.0 - sum(weights) / total) / 2.0
    for step, weight in zip(steps, weights):
        length = weight / total
        moves.extend(_move(d, start, start + length * _weight(d, vocab) / weight, vocab) for d in step)
        start += length
    return tuple(moves)


def _changing_steps(steps: list[list[MoveDraft]], vocab: Vocabulary) -> list[list[MoveDraft]]:
    """The steps that take time: whole-shot kinds and racks to where the focus already is are left out,
    except that a static step between moves is a hold ("pan left, then hold")."""
    focus = "subject"
    kept = []
    moving = any(not vocab.moves[d.kind].get("whole_shot") for step in steps for d in step)
    for step in steps:
        timed = []
        holds = moving and all(d.kind == "static" for d in step)
        for draft in step:
            if (vocab.moves[draft.kind].get("whole_shot") and not holds) or (
                    draft.kind == "rack_focus" and draft.direction == focus):
                continue
            if draft.kind == "rack_focus":
                focus = draft.direction
            timed.append(draft)
        if timed:
            kept.append(timed)
    return kept


def _move(draft: MoveDraft, start: float, end: float, vocab: Vocabulary) -> CameraMove:
    spec = vocab.moves[draft.kind]
    if "targets" in spec:
        amount = float(spec["targets"][draft.direction])
    elif spec["axis"] == "shake":
        amount = float(spec["amount"]) * draft.factor
    else:
        sign = spec.get("signs", {}).get(draft.direction, 1)
        span = 1.0 if spec.get("complete") else end - start
        factor = 1.0 if spec.get("complete") else draft.factor
        amount = sign * float(spec["amount"]) * factor * span
        if draft.degrees is not None:
            amount = sign * draft.degrees
    easing = (draft.easing or vocab.data["speed_easing"].get(draft.speed)
              or spec.get("easing") or vocab.data["default_easing"])
    return CameraMove(kind=draft.kind, direction=draft.direction, speed=draft.speed, easing=easing,
                      start=start, end=end, amount=amount, text=draft.text, explicit_speed=draft.explicit_speed,
                      degrees=draft.degrees)


def _handheld(seconds: float, intensity: float, seed: int, shake: dict) -> tuple[float, float]:
    """Smooth, repeatable handheld jitter (pan, tilt in degrees): a few sines with seeded phases."""
    if intensity <= 0.0:
        return 0.0, 0.0
    digest = hashlib.sha256(f"refvideo-handheld-{int(seed)}".encode()).digest()
    phases = [b / 255.0 * 2.0 * math.pi for b in digest[:2 * len(shake["frequencies_hz"])]]
    weights = shake["weights"]
    norm = sum(weights)
    values = []
    for axis, amplitude in enumerate((shake["pan_degrees"], shake["tilt_degrees"])):
        total = 0.0
        for k, (freq, weight) in enumerate(zip(shake["frequencies_hz"], weights)):
            total += weight * math.sin(2.0 * math.pi * freq * seconds + phases[axis * len(weights) + k])
        values.append(intensity * amplitude * total / norm)
    return values[0], values[1]
