"""Previz action: the blocking moving over the shot, on the camera's timeline.

:class:`Motion` turns the shot's :class:`~engine.camera.path.ActionCue` list into, for any shot
time ``t`` in 0..1, where each foreground layer stands in the world (a :class:`Figure`: its
body, how far it has turned, its gait bob) and the state of the environment (an
:class:`Atmosphere`: night, lights, rain, fog). Layers keep their 2.5D depth while they
move: positions are world points, so the renderer's projection gives scale and parallax,
and the draw order follows the distances. Places and amounts are data
(``engine/data/previz_blocking.json``, section ``action``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..camera.path import ActionCue, eased
from .blocking import Blocking, Placement

MOTION_KINDS = ("enter", "exit", "walk", "carry")
CHANNELS = ("night", "lights", "rain", "fog")


@dataclass(frozen=True)
class Body:
    """A layer in the world: its anchor point (a foot point, or the background's centre) and picture height."""

    x: float
    y: float
    z: float
    height: float


@dataclass(frozen=True)
class Figure:
    """A foreground layer at one instant: its body and its turn (radians: 0 as drawn, pi/2 side-on, pi the back)."""

    body: Body
    turn: float = 0.0


@dataclass(frozen=True)
class Atmosphere:
    """The environment at one instant, each 0..1."""

    night: float = 0.0
    lights: float = 0.0
    rain: float = 0.0
    fog: float = 0.0


def body_at_rest(p: Placement, aspect: float, focal: float) -> Body:
    """The world position that puts a layer's foot point where the blocking says, camera at rest."""
    u, v = p.x * aspect, 0.5 - p.ground
    x = p.depth * math.tan(u / focal)
    across = math.hypot(x, p.depth)
    y = across * math.tan(v / focal)
    return Body(x, y, p.depth, p.height * math.hypot(across, y) / focal)


@dataclass(frozen=True)
class _Segment:
    """A change of one layer between two shot times: position (x, z) or turn, eased."""

    start: float
    end: float
    easing: str
    before: tuple[float, ...]
    after: tuple[float, ...]
    gait: str = ""  # walk or run: the body bobs while it moves

    def value(self, t: float) -> tuple[float, ...]:
        p = eased(t, self.start, self.end, self.easing)
        return tuple(a + (b - a) * p for a, b in zip(self.before, self.after))


@dataclass
class _Track:
    """One layer's changes over the shot."""

    rest: Body
    width: float  # world width of the picture at rest
    position: tuple[float, float]  # (x, z) at the start of the shot
    turn: float = 0.0
    moves: list[_Segment] = field(default_factory=list)
    turns: list[_Segment] = field(default_factory=list)
    holder: int | None = None  # the layer holding this prop
    attach: tuple[float, float] = (2.0, 2.0)  # when it goes to the hand (start, end)


class Motion:
    """Where every foreground layer is, and what the environment does, at any shot time."""

    def __init__(self, blocking: Blocking, actions: tuple[ActionCue, ...], *, aspect: float, focal: float,
                 widths: list[float], settings: dict, seconds: float = 5.0) -> None:
        self.aspect, self.focal, self.settings, self.seconds = aspect, focal, settings, seconds
        self.subject_depth = blocking.subject_depth
        self.layers = blocking.layers
        self.warnings: list[str] = []
        rests = [body_at_rest(p, aspect, focal) for p in blocking.layers]
        self.tracks = [_Track(rest, w * rest.height, (rest.x, rest.z)) for rest, w in zip(rests, widths)]
        self.channels: dict[str, list[_Segment]] = {c: [] for c in CHANNELS}
        self.initial = {c: 0.0 for c in CHANNELS}
        self._plan(sorted(actions, key=lambda a: a.start))

    # ---- planning

    def _layer(self, cue: ActionCue, role: str = "") -> int | None:
        """The blocking layer a cue names: by label, else the subject (first character, else first layer)."""
        label = cue.prop if role == "prop" else cue.actor
        wanted = ("prop",) if role == "prop" else ("character", "prop")
        for index, p in enumerate(self.layers):
            if label and p.reference.label == label and p.reference.role in wanted:
                return index
        if label and role != "prop":
            self.warnings.append(f"'{cue.text}': no reference is labelled '{label}'; previz leaves it out.")
            return None
        for index, p in enumerate(self.layers):
            if (p.is_subject if role != "prop" else p.reference.role == "prop"):
                return index
        self.warnings.append(f"'{cue.text}': the reference set has no {role or 'character'} to do it; "
                             "previz leaves it out.")
        return None

    def _plan(self, cues: list[ActionCue]) -> None:
        stops = [c for c in cues if c.kind == "stop"]
        first_move: set[int] = set()
        first_turn: set[int] = set()
        for cue in cues:
            if cue.kind == "environment":
                self._plan_channel(cue)
                continue
            index = self._layer(cue)
            if index is None or cue.kind == "stop":
                continue
            track = self.tracks[index]
            if cue.kind == "turn":
                self._plan_turn(track, cue, index not in first_turn)
                first_turn.add(index)
                continue
            if cue.kind in ("lift", "carry"):
                prop = self._layer(cue, "prop")
                if prop is not None and prop != index:
                    attach_end = cue.end if cue.kind == "lift" else cue.start + (cue.end - cue.start) * float(
                        self.settings["attach_share"])
                    self.tracks[prop].holder, self.tracks[prop].attach = index, (cue.start, attach_end)
                if cue.kind == "lift" or not cue.target:  # carried where it stands: held, not moved
                    continue
            self._plan_move(track, cue, index not in first_move, stops)
            first_move.add(index)

    def _plan_channel(self, cue: ActionCue) -> None:
        segments = self.channels[cue.channel]
        if cue.state:
            self.initial[cue.channel] = cue.level
            return
        if not segments and self.initial[cue.channel] == cue.level:
            self.initial[cue.channel] = 1.0 - cue.level  # "the lights go out": they were on
        before = segments[-1].after if segments else (self.initial[cue.channel],)
        segments.append(_Segment(cue.start, cue.end, cue.easing, before, (cue.level,)))

    def _plan_turn(self, track: _Track, cue: ActionCue, first: bool) -> None:
        if first:
            track.turn = math.pi if cue.origin == "away" else (math.pi / 2 if cue.target == "camera" else 0.0)
        now = track.turns[-1].after[0] if track.turns else track.turn
        goals = {"camera": 0.0, "away": math.pi, "left": -math.pi / 2, "right": math.pi / 2}
        goal = goals.get(cue.target, now + math.pi)
        if cue.target == "camera" and abs(now) > math.pi:
            goal = 2.0 * math.pi * round(now / (2.0 * math.pi))
        track.turns.append(_Segment(cue.start, cue.end, cue.easing, (now,), (goal,)))

    def _plan_move(self, track: _Track, cue: ActionCue, first: bool, stops: list[ActionCue]) -> None:
        x, z = track.moves[-1].after if track.moves else track.position
        if cue.kind == "enter":
            side = cue.origin if cue.origin in ("left", "right") else ("right" if track.rest.x > 0 else "left")
            start = self._offscreen(side, track, z)
            rest = (track.rest.x, track.rest.z)
            goal = self._place(cue.target, track, *rest) if cue.target else rest
        elif cue.kind == "exit":
            side = cue.target if cue.target in ("left", "right") else ("right" if x > 0 else "left")
            start, goal = (x, z), self._offscreen(side, track, z)
        else:
            start = self._place(cue.origin, track, x, z) if cue.origin else (x, z)
            target = cue.target or ("left" if start[0] > 0 else "right")
            goal = self._place(target, track, *start)
        if first:
            track.position = start
        stop = next((s.start for s in stops if s.actor == cue.actor and cue.start < s.start < cue.end), None)
        segment = _Segment(cue.start, cue.end, cue.easing, start, goal, gait=cue.pace)
        if stop is not None:  # "then suddenly stops": frozen where it is
            segment = replace(segment, end=stop, after=segment.value(stop), easing="ease_out")
        track.moves.append(segment)

    def _place(self, place: str, track: _Track, x: float, z: float) -> tuple[float, float]:
        """World (x, z) of a place: a screen side at the layer's depth, or a depth at its screen position."""
        spec = self.settings["places"].get(place, {})
        u = self.focal * math.atan2(x, z)
        if "depth" in spec:
            z = max(float(spec["depth"]), float(self.settings["min_depth"])) * self.subject_depth
        if "x" in spec:
            u = float(spec["x"]) * self.aspect
        return z * math.tan(u / self.focal), z

    def _offscreen(self, side: str, track: _Track, z: float) -> tuple[float, float]:
        """Just outside the frame edge on ``side`` at depth ``z`` (the whole picture out of view)."""
        half = track.width / 2.0 * self.focal / z + float(self.settings["offscreen_margin"])
        u = (self.aspect / 2.0 + half) * (1 if side == "right" else -1)
        return z * math.tan(min(abs(u / self.focal), 1.4)) * (1 if u > 0 else -1), z

    # ---- evaluation

    def figures(self, t: float) -> list[Figure]:
        """Every foreground layer at shot time ``t`` (in the blocking's order)."""
        own = [self._own(track, t) for track in self.tracks]
        out = []
        hand = self.settings["hand"]
        for track, figure in zip(self.tracks, own):
            if track.holder is None:
                out.append(figure)
                continue
            holder = own[track.holder].body
            side = 1.0 if track.rest.x >= self.tracks[track.holder].rest.x else -1.0
            held = Body(holder.x + side * float(hand["side"]) * self.tracks[track.holder].width,
                        holder.y + float(hand["height"]) * holder.height - 0.5 * figure.body.height,
                        max(holder.z - float(hand["nearer"]), 0.3), figure.body.height)
            p = eased(t, *track.attach, "ease_in_out")
            b = figure.body
            out.append(Figure(Body(b.x + (held.x - b.x) * p, b.y + (held.y - b.y) * p, b.z + (held.z - b.z) * p,
                                   b.height), figure.turn))
        return out

    def _own(self, track: _Track, t: float) -> Figure:
        x, z = track.position
        bob = 0.0
        for segment in track.moves:
            if t < segment.start:
                break
            x, z = segment.value(t)
            if segment.gait and t < segment.end:
                gait = self.settings["gait"][segment.gait]
                steps = max(1.0, round(float(gait["steps_per_second"]) * (segment.end - segment.start) * self.seconds))
                p = (t - segment.start) / (segment.end - segment.start)
                bob = float(gait["bob"]) * track.rest.height * abs(math.sin(math.pi * steps * p))
        turn = track.turn
        for segment in track.turns:
            if t < segment.start:
                break
            turn = segment.value(t)[0]
        # walking on the floor: the foot stays at the floor's height, wherever the layer goes
        return Figure(Body(x, track.rest.y + bob, z, track.rest.height), turn)

    def atmosphere(self, t: float) -> Atmosphere:
        values = {}
        for channel, segments in self.channels.items():
            value = self.initial[channel]
            for segment in segments:
                if t < segment.start:
                    break
                value = segment.value(t)[0]
            values[channel] = min(max(value, 0.0), 1.0)
        return Atmosphere(**values)


def turn_look(turn: float, profile: float) -> tuple[float, bool]:
    """How a turned card is drawn: its width factor (squashed side-on) and whether the back shows (mirrored)."""
    c = math.cos(turn)
    return profile + (1.0 - profile) * abs(c), c < -1e-6
