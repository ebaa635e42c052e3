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

The same reading gives the shot's action (:class:`ActionCue`: who enters, walks, turns,
lifts what; lights, night, rain and fog) on the camera's timeline: ``ShotCamera.actions``.
Steps share the shot; a step opened by a sequence word ("then") follows the one before,
while an action sentence next to a camera sentence runs alongside it.

Words and amounts are data (``engine/data/camera_vocabulary.json``); how they are read is
in :mod:`engine.camera.grammar`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..references.reference import Reference
from .grammar import ActionDraft, CastMember, MoveDraft, Step, Vocabulary, read, vocabulary

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
        return eased(t, self.start, self.end, self.easing)

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


def eased(t: float, start: float, end: float, easing: str) -> float:
    """Progress at shot time ``t`` of something running from ``start`` to ``end`` (0 before, 1 after), eased."""
    if t <= start:
        return 0.0
    if t >= end or end <= start:
        return 1.0
    return float(EASINGS[easing]((t - start) / (end - start)))


@dataclass(frozen=True)
class ActionCue:
    """One action or environment change on the shot's timeline (fractions of the shot).

    ``kind``: enter, exit, walk, turn, stop, lift, carry or environment. ``actor`` is a
    reference label ("" = the subject); ``target`` a place (left, right, centre,
    foreground, background, camera, away) or, for a turn, camera, away, around, left or
    right; ``origin`` where it starts from; ``prop`` what is lifted or carried ("" = the
    first prop); ``channel``/``level`` the environment value (lights, night, rain, fog;
    0..1) it goes to, or holds for the whole shot when ``state``.
    """

    kind: str
    actor: str = ""
    target: str = ""
    origin: str = ""
    prop: str = ""
    channel: str = ""
    level: float = 0.0
    state: bool = False
    pace: str = "walk"
    speed: str = ""
    easing: str = "ease_in_out"
    start: float = 0.0
    end: float = 1.0
    text: str = ""

    def progress(self, t: float) -> float:
        return eased(t, self.start, self.end, self.easing)

    def describe(self) -> dict:
        keys = ("kind", "actor", "target", "origin", "prop", "channel", "pace", "speed", "easing", "text")
        out = {k: getattr(self, k) for k in keys if getattr(self, k)}
        if self.kind == "environment":
            out.update(level=self.level, state=self.state)
        return {**out, "start": round(self.start, 4), "end": round(self.end, 4)}


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
    actions: tuple[ActionCue, ...] = ()
    action_unknown: tuple[str, ...] = ()  # action words previz cannot draw ("Mara dances")

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
                "unknown": list(self.unknown), "actions": [a.describe() for a in self.actions],
                "action_unknown": list(self.action_unknown)}


def parse_shot(text: str, *, default_camera: str = "", targets: Mapping[str, str] | None = None,
               cast: Mapping[str, CastMember] | None = None) -> ShotCamera:
    """The camera path and the action of a shot description.

    ``default_camera`` (a style skill's camera habit, e.g. "handheld, slow push in") applies
    when ``text`` names no camera move. ``targets`` maps extra words to focus targets
    (``subject``, ``foreground``, ``background``) so "rack focus to Mara" works; see
    :func:`reference_targets`. ``cast`` maps words to the references the action names
    (:func:`reference_cast`). Camera words that are not understood are listed in
    ``unknown``, action words in ``action_unknown``; both are left out.
    """
    vocab = vocabulary()
    reading = read(text or "", vocab, targets, cast)
    source = "prompt" if reading.has_moves else "none"
    unknown = list(reading.unknown)
    moves, actions = _schedule(reading.steps, vocab)
    if not reading.has_moves and default_camera and default_camera.strip():
        fallback = read(default_camera, vocab, targets)
        unknown.extend(fallback.unknown)
        if fallback.has_moves:
            source = "default"
            moves = _schedule([Step(s.moves) for s in fallback.steps], vocab)[0]
            reading = replace(reading, framing=reading.framing or fallback.framing,
                              angle=reading.angle or fallback.angle)
    return ShotCamera(moves=moves, unknown=tuple(dict.fromkeys(unknown)),
                      framing=reading.framing, angle=reading.angle, source=source, text=text or "",
                      optics=dict(vocab.data["optics"]), shake=dict(vocab.data["handheld_shake"]),
                      actions=actions, action_unknown=tuple(dict.fromkeys(reading.action_unknown)))


def shot_camera(prompt: str, camera_habit: str, references: Iterable[Reference]) -> ShotCamera:
    """The camera path and the action of a shot: its prompt, the style's camera habit when the prompt
    names no move, the references' labels as focus targets and as the cast the action names. The
    sampler and previz both read the shot here."""
    refs = list(references)
    return parse_shot(prompt, default_camera=camera_habit, targets=reference_targets(refs),
                      cast=reference_cast(refs))


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


def reference_cast(references) -> dict[str, CastMember]:
    """Words that name a reference set's characters and props in the action ("Mara walks", "the lantern")."""
    vocab = vocabulary()
    found: dict[str, CastMember] = {}
    for reference in references:
        if reference.role not in ("character", "prop"):
            continue
        member = CastMember(reference.label or "", reference.role)
        for token in vocab.tokenize(reference.label or ""):
            if not token.is_punctuation and len(token.text) > 2 and token.lemma not in vocab.fillers:
                found.setdefault(token.lemma, member)
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


def _schedule(steps: list[Step], vocab: Vocabulary) -> tuple[tuple[CameraMove, ...], tuple[ActionCue, ...]]:
    """Camera moves and actions on one timeline: beats share the shot in proportion to their weights.

    A step opened by a sequence word starts a new beat; any other step joins the first beat
    since the last such word that has nothing of its kind yet (an action sentence runs
    alongside a camera sentence), else starts a new one. Quick moves alone (a whip pan, a
    rack, a sudden turn) keep their short share, centred in the shot with a hold before and after.
    """
    changing = _changing_steps([s.moves for s in steps], vocab)
    timed = {id(d) for step in changing for d in step}
    whole = [d for s in steps for d in s.moves if vocab.moves[d.kind].get("whole_shot") and id(d) not in timed]
    beats: list[tuple[list[MoveDraft], list[ActionDraft]]] = []
    anchor = 0
    for step, moves in zip(steps, changing):
        acts = [a for a in step.actions if not a.state]
        if not moves and not acts:
            continue
        if step.tied:
            anchor = len(beats)
        free = [b for b in beats[anchor:] if not (moves and b[0]) and not (acts and b[1])]
        if step.tied or not free:
            beats.append(([], []))
            free = beats[-1:]
        free[0][0].extend(moves)
        free[0][1].extend(acts)
    offsets = [_chained(b[1], vocab) for b in beats]
    weights = [max([_weight(d, vocab) for d in b[0]] + [o + _action_weight(a, vocab) for a, o in zip(b[1], offset)])
               for b, offset in zip(beats, offsets)]
    total = max(sum(weights), 1.0)
    moves_out = [_move(d, 0.0, 1.0, vocab) for d in whole]
    cues = [_cue(a, 0.0, 0.0, vocab) for s in steps for a in s.actions if a.state]
    start = (1.0 - sum(weights) / total) / 2.0
    for (moves, acts), offset, weight in zip(beats, offsets, weights):
        length = weight / total
        moves_out.extend(_move(d, start, start + length * _weight(d, vocab) / weight, vocab) for d in moves)
        cues.extend(_cue(a, start + length * o / weight, start + length * (o + _action_weight(a, vocab)) / weight,
                         vocab) for a, o in zip(acts, offset))
        start += length
    return tuple(moves_out), tuple(cues)


def _chained(actions: list[ActionDraft], vocab: Vocabulary) -> list[float]:
    """Where each action of a beat starts, in weight units: one actor's moves (or turns) follow each other
    ("enters from the left and walks to the camera"); anything else starts with the beat."""
    moving = ("enter", "exit", "walk", "carry", "stop")
    ends: dict[tuple[str, str], float] = {}
    offsets = []
    for action in actions:
        track = "move" if action.kind in moving else action.kind
        key = (action.actor, track) if track in ("move", "turn") else (action.actor, str(id(action)))
        offsets.append(ends.get(key, 0.0))
        ends[key] = offsets[-1] + _action_weight(action, vocab)
    return offsets


def _action_weight(draft: ActionDraft, vocab: Vocabulary) -> float:
    """How much of the shot an action wants: its kind's share over its speed (running is quicker)."""
    acts = vocab.data["actions"]
    pace = float(acts["run_factor"]) if draft.pace == "run" else 1.0
    return min(max(float(acts["weights"][draft.kind]) / max(draft.factor * pace, 1e-3), 0.08), 1.0)


def _cue(draft: ActionDraft, start: float, end: float, vocab: Vocabulary) -> ActionCue:
    easing = vocab.data["speed_easing"].get(draft.speed) or vocab.data["default_easing"]
    return ActionCue(kind=draft.kind, actor=draft.actor, target=draft.target, origin=draft.origin, prop=draft.prop,
                     channel=draft.channel, level=draft.level, state=draft.state, pace=draft.pace,
                     speed=draft.speed, easing=easing, start=start, end=end, text=draft.text)


def _changing_steps(steps: list[list[MoveDraft]], vocab: Vocabulary) -> list[list[MoveDraft]]:
    """The moves of each step that take time (a list per step): whole-shot kinds and racks to where the
    focus already is are left out, except that a static step between moves is a hold ("pan left, then hold")."""
    focus = "subject"
    kept = []
    moving = any(not vocab.moves[d.kind].get("whole_shot") for step in steps for d in step)
    for step in steps:
        timed = []
        holds = moving and bool(step) and all(d.kind == "static" for d in step)
        for draft in step:
            if (vocab.moves[draft.kind].get("whole_shot") and not holds) or (
                    draft.kind == "rack_focus" and draft.direction == focus):
                continue
            if draft.kind == "rack_focus":
                focus = draft.direction
            timed.append(draft)
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
