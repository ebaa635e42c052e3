"""The camera grammar: words -> moves, timing, the camera state over time, unknown words."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refvideo.engine.camera.grammar import vocabulary
from refvideo.engine.camera.path import CameraMove, ShotCamera, parse_shot, reference_targets
from refvideo.engine.references.reference import Reference, ReferenceSet


def kinds(camera: ShotCamera) -> list[tuple[str, str]]:
    return [(m.kind, m.direction) for m in camera.moves]


@pytest.mark.parametrize("text, expected", [
    ("slow dolly in", [("dolly", "in")]),
    ("push in on her face", [("dolly", "in")]),
    ("pull back to reveal the valley", [("dolly", "out")]),
    ("truck left", [("truck", "left")]),
    ("tracking right along the wall", [("truck", "right")]),
    ("pan left", [("pan", "left")]),
    ("the camera pans right across the skyline", [("pan", "right")]),
    ("tilt up to the sky", [("tilt", "up")]),
    ("crane down", [("pedestal", "down")]),
    ("pedestal up", [("pedestal", "up")]),
    ("zoom out", [("zoom", "out")]),
    ("orbit left around her", [("arc", "left")]),
    ("arc right", [("arc", "right")]),
    ("rack focus to the foreground", [("rack_focus", "foreground")]),
    ("rack focus to background", [("rack_focus", "background")]),
    ("handheld", [("handheld", "")]),
    ("static shot", [("static", "")]),
    ("locked-off camera", [("static", "")]),
    ("whip pan left", [("whip_pan", "left")]),
    ("the camera moves closer and rises", [("dolly", "in"), ("pedestal", "up")]),
])
def test_each_move_is_read(text, expected):
    camera = parse_shot(text)
    assert kinds(camera) == expected
    assert camera.unknown == ()
    assert camera.source == "prompt"


@pytest.mark.parametrize("text", ["pans left", "panning left", "panned left", "the camera is panning left"])
def test_verb_forms_read_as_the_same_move(text):
    assert kinds(parse_shot(text)) == [("pan", "left")]


def test_sequencing_splits_the_shot_and_speed_words_attach():
    camera = parse_shot("Mara turns to the window. Slow dolly in, then rack focus to background.")
    dolly, rack = camera.moves
    assert (dolly.kind, dolly.speed, rack.kind) == ("dolly", "slow", "rack_focus")
    assert dolly.start == 0.0 and dolly.end == pytest.approx(rack.start) and rack.end == pytest.approx(1.0)
    assert rack.start > 0.5  # a rack takes a shorter share than a camera move
    assert camera.phrase == "slow dolly in, then rack focus to background"


def test_moves_in_one_step_run_together():
    camera = parse_shot("dolly in while panning left")
    assert [(m.start, m.end) for m in camera.moves] == [(0.0, 1.0), (0.0, 1.0)]
    assert camera.phrase == "dolly in and pan left"


def test_speed_words_scale_the_distance():
    amounts = {word: parse_shot(f"{word} pan left").moves[0].amount for word in ("slow", "steady", "fast")}
    assert amounts["slow"] > amounts["steady"] > amounts["fast"]  # all negative: left
    assert parse_shot("very slow pan left").moves[0].amount > amounts["slow"]
    sudden = parse_shot("sudden zoom in").moves[0]
    assert sudden.easing == "ease_out" and parse_shot("steady zoom in").moves[0].easing == "linear"
    assert parse_shot("pan left, ease out").moves[0].easing == "ease_out"


def test_action_words_are_not_camera_moves():
    for text in ("Mara tilts her head and smiles", "Mara pushes the door open", "a truck drives by",
                 "she pulls the lever"):
        camera = parse_shot(text)
        assert camera.moves == () and camera.unknown == () and camera.phrase == "", text


def test_unknown_camera_words_are_reported_not_dropped():
    camera = parse_shot("dolly zoom on her face, then zoom left. The camera floats over the lake.")
    assert "dolly zoom" in camera.unknown
    assert "zoom left" in camera.unknown
    assert "camera floats" in camera.unknown
    assert camera.moves == ()
    assert camera.describe()["unknown"] == list(camera.unknown)
    assert parse_shot("rack focus to the lamp").unknown == ("rack focus to the lamp",)


def test_default_camera_applies_only_without_a_move_in_the_prompt():
    styled = parse_shot("Mara smiles", default_camera="handheld, slow push in")
    assert styled.source == "default" and kinds(styled) == [("handheld", ""), ("dolly", "in")]
    own = parse_shot("pan left", default_camera="handheld, slow push in")
    assert own.source == "prompt" and kinds(own) == [("pan", "left")]
    assert parse_shot("Mara smiles").source == "none"


def test_framing_and_angle():
    camera = parse_shot("close-up, low angle, slow dolly in")
    assert camera.framing["name"] == "close-up" and camera.angle["name"] == "low angle"
    assert camera.phrase == "close-up, low angle, slow dolly in"
    assert camera.at(0).zoom == pytest.approx(camera.framing["zoom"])


def test_dolly_state_moves_forward_steadily():
    camera = parse_shot("slow dolly in")
    z = np.array([s.z for s in camera.states(81)])
    assert z[0] == 0.0 and np.all(np.diff(z) >= 0) and 0.05 < z[-1] < 0.2
    assert np.abs(np.diff(z)).max() < 3 * z[-1] / 80  # no jumps: eased, spread over the shot


def test_pan_left_turns_the_camera_left():
    pans = [s.pan for s in parse_shot("pan left").states(17)]
    assert pans[0] == 0.0 and all(b < a for a, b in zip(pans, pans[1:]))


def test_rack_focus_state_moves_focus_to_the_background_in_its_step():
    camera = parse_shot("slow dolly in, then rack focus to background")
    rack = camera.moves[1]
    assert camera.at(rack.start - 0.01).focus == pytest.approx(0.5)
    assert camera.at(1.0).focus == pytest.approx(1.0)
    assert camera.at(0.0).aperture > parse_shot("slow dolly in").at(0.0).aperture


def test_arc_keeps_the_subject_centred():
    state = parse_shot("arc right").at(1.0)
    theta = math.atan2(state.x, 1.0 - state.z)
    assert state.x > 0 and state.pan == pytest.approx(-math.degrees(theta))


def test_static_and_handheld():
    static = parse_shot("static shot")
    assert static.is_static and static.at(0.3) == static.at(0.9)
    handheld = parse_shot("handheld")
    a = [handheld.at(t, seed=1).shake_pan for t in np.linspace(0, 1, 20)]
    b = [handheld.at(t, seed=2).shake_pan for t in np.linspace(0, 1, 20)]
    assert a == [handheld.at(t, seed=1).shake_pan for t in np.linspace(0, 1, 20)]  # repeatable
    assert a != b and max(map(abs, a)) < 1.0 and np.std(a) > 0.01


def test_whip_pan_is_quick_and_far():
    whip = parse_shot("whip pan right").moves[0]
    pan = parse_shot("pan right").moves[0]
    assert whip.amount > 4 * pan.amount


def test_rack_focus_to_a_reference_label():
    refs = ReferenceSet((
        Reference(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32), "character", "Mara, red coat"),
        Reference(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32), "prop", "lantern"),
    ))
    targets = reference_targets(refs)
    assert targets["mara"] == "subject" and targets["lantern"] == "foreground"
    camera = parse_shot("rack focus to the lantern, then rack focus to Mara", targets=targets)
    assert kinds(camera) == [("rack_focus", "foreground"), ("rack_focus", "subject")]


def test_describe_is_json_and_moves_name_known_kinds():
    camera = parse_shot("handheld, fast whip pan right, then slow tilt up and zoom in")
    info = json.loads(json.dumps(camera.describe()))
    assert info["phrase"] == "handheld camera, fast whip pan right, then slow tilt up and zoom in"
    assert [m["kind"] for m in info["moves"]] == ["handheld", "whip_pan", "tilt", "zoom"]
    assert isinstance(camera.moves[0], CameraMove)


def test_vocabulary_heads_lead_to_known_moves():
    vocab = vocabulary()
    for name, spec in vocab.heads.items():
        for move in [spec.get("default"), *spec.get("directions", {}).values()]:
            if move:
                kind, _, direction = move.partition(" ")
                assert kind in vocab.moves, name
                move_spec = vocab.moves[kind]
                allowed = set(move_spec.get("signs", {})) | set(move_spec.get("targets", {}))
                assert not allowed or direction in allowed, (name, move)


def test_explicit_degrees_set_the_turn():
    camera = parse_shot("orbit 90 degrees around her, then pan left 30 degrees")
    arc, pan = camera.moves
    assert (arc.amount, pan.amount) == (90.0, -30.0)
    assert camera.phrase == "arc right 90 degrees around the subject, then pan left 30 degrees"
    assert parse_shot("dolly in 30 degrees").unknown == ("30 degrees",)  # a dolly is not a turn
    limit = vocabulary().data["optics"]["max_arc_degrees"]
    state = camera.at(1.0)
    assert math.degrees(math.atan2(state.x, 1.0 - state.z)) == pytest.approx(limit)  # flat layers: arcs are capped


def test_static_between_moves_is_a_hold():
    camera = parse_shot("Pan left, then hold, then pan right.")
    assert kinds(camera) == [("pan", "left"), ("static", ""), ("pan", "right")]
    assert camera.phrase == "pan left, then hold, then pan right"
    hold = camera.moves[1]
    assert camera.at(hold.start).pan == pytest.approx(camera.at(hold.end).pan)


def test_clause_initial_moves_are_instructions():
    camera = parse_shot("The camera tracks left with Mara along the pier, then pans right to the lighthouse")
    assert kinds(camera) == [("truck", "left"), ("pan", "right")]
    assert kinds(parse_shot("Mara looks up. Tilt up.")) == [("tilt", "up")]


# --------------------------------------------------------------------------- the action, read by the same grammar

CAST = ReferenceSet((Reference(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), "character", "Mara"),
                     Reference(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), "prop", "brass lantern")))


def actions(text: str) -> list[tuple]:
    from refvideo.engine.camera.path import shot_camera

    return [(a.kind, a.actor, a.target, a.origin, a.prop, a.channel, a.level)
            for a in shot_camera(text, "", CAST).actions]


@pytest.mark.parametrize("text, expected", [
    ("Mara walks from the left of frame to the right", [("walk", "Mara", "right", "left", "", "", 0.0)]),
    ("Mara enters from the right", [("enter", "Mara", "", "right", "", "", 0.0)]),
    ("She enters frame left", [("enter", "", "", "left", "", "", 0.0)]),
    ("Mara exits to the left", [("exit", "Mara", "left", "", "", "", 0.0)]),
    ("Mara runs off to the right", [("exit", "Mara", "right", "", "", "", 0.0)]),
    ("Mara walks towards the camera", [("walk", "Mara", "camera", "", "", "", 0.0)]),
    ("the woman strolls into the background", [("walk", "", "background", "", "", "", 0.0)]),
    ("Mara turns to face the camera", [("turn", "Mara", "camera", "", "", "", 0.0)]),
    ("Mara turns from the water to face the camera", [("turn", "Mara", "camera", "away", "", "", 0.0)]),
    ("Mara turns away", [("turn", "Mara", "away", "", "", "", 0.0)]),
    ("Mara stops", [("stop", "Mara", "", "", "", "", 0.0)]),
    ("Mara lifts the lantern", [("lift", "Mara", "", "", "brass lantern", "", 0.0)]),
    ("Mara, the brass lantern raised in her hand", [("lift", "Mara", "", "", "brass lantern", "", 0.0)]),
    ("Mara carries it to the centre", [("carry", "Mara", "centre", "", "", "", 0.0)]),
    ("the harbour lamps come on", [("environment", "", "", "", "", "lights", 1.0)]),
    ("the lights go out", [("environment", "", "", "", "", "lights", 0.0)]),
    ("night falls", [("environment", "", "", "", "", "night", 1.0)]),
    ("dawn breaks", [("environment", "", "", "", "", "night", 0.0)]),
    ("it starts to rain", [("environment", "", "", "", "", "rain", 1.0)]),
    ("fog rolls in", [("environment", "", "", "", "", "fog", 1.0)]),
])
def test_each_action_is_read(text, expected):
    assert actions(text) == expected


def test_actions_and_camera_share_one_timeline():
    from refvideo.engine.camera.path import shot_camera

    shot = shot_camera("Mara walks to the right, then turns to face the camera as the camera dollies in.", "", CAST)
    walk, turn = shot.actions
    (dolly,) = shot.moves
    assert walk.end == pytest.approx(turn.start) == pytest.approx(dolly.start)  # "then" orders, "as" runs together
    enter, walk = shot_camera("Mara enters from the left and walks towards the camera.", "", CAST).actions
    assert enter.start == 0.0 and enter.end == pytest.approx(walk.start) and walk.end == pytest.approx(1.0)
    side = shot_camera("Mara walks to the right. Slow pan left.", "", CAST)  # an action sentence beside a camera one
    assert side.actions[0].start == side.moves[0].start == 0.0
    quick = shot_camera("Mara suddenly turns to face the camera", "", CAST).actions[0]
    slow = shot_camera("Mara slowly turns to face the camera", "", CAST).actions[0]
    assert quick.end - quick.start < 0.5 * (slow.end - slow.start) and quick.easing == "ease_out"
    assert shot.describe()["actions"][0]["kind"] == "walk"


def test_action_words_that_cannot_be_drawn_are_reported_apart_from_the_camera():
    from refvideo.engine.camera.path import shot_camera

    shot = shot_camera("Mara dances. She walks to the lighthouse. She raises her hand. Slow dolly in.", "", CAST)
    assert shot.action_unknown == ("mara dances", "walks to the lighthouse", "raises her hand")
    assert shot.unknown == () and [m.kind for m in shot.moves] == ["dolly"] and shot.actions == ()
    assert shot.describe()["action_unknown"] == list(shot.action_unknown)
