"""The previz renderer: a reference set, a camera path and the action become a 2.5D animatic.

The scene (see :mod:`engine.previz.blocking`) is a set of flat, camera-facing layers at
depths: the environment plate far away, characters at the subject's depth, props nearer.
The action (:mod:`engine.previz.action`) moves those layers in the world on the camera's
timeline. For each frame the camera state (:meth:`engine.camera.path.ShotCamera.at`) projects
every layer's anchor through a cylindrical lens, which gives parallax for free: moving the
camera, or a layer walking nearer, shifts and scales near layers more than far ones, while
panning shifts all of them alike. Layers are drawn far to near every frame, so the
occlusion order follows the action; a turning layer is squashed side-on and shows its
mirrored, darkened back. Depth of field blurs each layer by its distance from the focus
plane (rack focus moves that plane), motion blur smears layers by how far they travel
while the shutter is open (whip pans), style references tint a per-clip grade, and night,
lights, fog and rain change the picture over time.

``output`` chooses the pass: ``animatic`` (the picture), ``depth`` (each layer's distance,
near = bright, as depth control videos are) or ``layout`` (flat-coloured silhouettes on a
neutral ground); the control passes are sharp (no blur, grade, vignette or weather).

Frames are drawn with Pillow's resampling (an exact sub-pixel source box per layer) on one
thread per core, at most 4 (``workers`` overrides); Pillow releases the GIL while it works.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..camera.path import CameraState, ShotCamera
from ..errors import InputError
from ..references.images import from_uint8, to_uint8
from ..references.reference import ReferenceSet
from .action import Body, Figure, Motion, turn_look
from .blocking import Blocking, block_scene, blocking_data
from .effects import atmosphere_table, fog, grade_table, motion_blur, rain, rain_streaks, vignette
from .layers import Sprite, make_card, make_plate, matte_box

OUTPUTS: tuple[str, ...] = ("animatic", "depth", "layout")
AIM_TARGET = 0.08  # where a framing puts its aim point: frame heights above the centre
CROSSFADE_FRAMES = 8  # frames over which a continued shot blends into the animatic


@dataclass(frozen=True)
class Lens:
    """The output frame and the focal length (in frame heights) of the lens at zoom 1."""

    width: int
    height: int
    focal: float


@dataclass(frozen=True)
class Pose:
    """A layer on screen: its anchor pixel, picture height in pixels, distance and roll."""

    px: float
    py: float
    height_px: float
    distance: float
    roll: float  # radians, the picture's counter-clockwise turn on screen


@dataclass(frozen=True)
class Animatic:
    """Rendered frames ``[F, H, W, 3]`` float32 in 0..1, and what the render reports."""

    frames: np.ndarray
    info: dict


def render_animatic(
    references: ReferenceSet,
    camera: ShotCamera,
    *,
    size: tuple[int, int],
    frames: int,
    fps: float,
    seed: int = 0,
    render_size: tuple[int, int] | None = None,
    first_frames: np.ndarray | None = None,
    on_step: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    output: str = "animatic",
) -> Animatic:
    """Render ``frames`` frames of ``size`` (width, height) at ``fps``.

    ``render_size`` (when it differs from ``size``) is drawn and then centre-cropped or
    resized to ``size``. ``first_frames`` continue a previous shot: they open the clip and
    the animatic (its camera path running over the remaining frames) fades in after them;
    a control pass holds its first drawn frame over them instead. ``output`` is one of
    :data:`OUTPUTS`. ``on_step(done, total)`` is called after every frame (progress and
    interrupt checks).
    """
    if output not in OUTPUTS:
        raise InputError(f"'{output}' is not a previz output.", input="render",
                         fix=f"Choose one of {', '.join(OUTPUTS)}.")
    control = output != "animatic"
    width, height = render_size or size
    kept = _continued(first_frames, frames, size)
    drawn = frames - len(kept)
    seconds = max(drawn - 1, 1) / fps
    scene = Scene.build(references, camera, Lens(width, height, _focal(camera)), drawn, seconds, seed,
                        effects=not control)
    out = np.empty((frames, size[1], size[0], 3), np.float32)
    for i, frame in enumerate(kept):
        if not control:
            out[i] = frame
        if on_step:
            on_step(i + 1, frames)
    fade = min(CROSSFADE_FRAMES, drawn - 1) if len(kept) and not control else 0
    shade = np.full((1, 1, 3), 1.0 / 255.0, np.float32) if control else np.repeat(
        vignette(size, float(blocking_data()["grade"]["vignette"])) * np.float32(1.0 / 255.0), 3, axis=2)

    def draw(i: int) -> np.ndarray:
        image = scene.control(i, output) if control else scene.frame(i)
        if image.size != tuple(size):
            image = _fit(image, size)
        return np.asarray(image)

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="previz") as pool:
        queued: deque = deque()
        submitted = 0
        try:
            for j in range(drawn):
                while submitted < drawn and len(queued) < 2 * workers:  # a bounded window of frames in flight
                    queued.append(pool.submit(draw, submitted))
                    submitted += 1
                _store(out, len(kept) + j, queued.popleft().result(), shade, kept, j, fade)
                if on_step:
                    on_step(len(kept) + j + 1, frames)
        except BaseException:
            for future in queued:
                future.cancel()
            raise
    if control and len(kept):
        out[: len(kept)] = out[len(kept)]  # the control pass holds its first drawn frame
    info = {"camera": camera.describe(), "blocking": scene.blocking.describe(), "output": output,
            "lens": {"vertical_fov_degrees": camera.optics.get("vertical_fov_degrees"), "focal": scene.lens.focal},
            "grade": "style references" if scene.table is not None else "none",
            "first_frames": {"kept": len(kept), "crossfade": fade},
            "warnings": list(scene.blocking.warnings) + scene.motion.warnings}
    return Animatic(out, info)


def _store(out: np.ndarray, index: int, frame: np.ndarray, shade: np.ndarray, kept: np.ndarray, j: int,
           fade: int) -> None:
    """Frame ``j`` of the animatic into ``out[index]`` as float, with the vignette and any crossfade."""
    target = out[index]
    np.multiply(frame, shade, out=target)  # 0..255 -> 0..1 and the vignette, in one pass
    if j < fade:
        w = np.float32((j + 1) / (fade + 1))
        out[index] *= w
        out[index] += (1.0 - w) * kept[-1]


def _continued(first_frames: np.ndarray | None, frames: int, size: tuple[int, int]) -> np.ndarray:
    """The previous shot's frames that open this clip (at least one frame is left to draw)."""
    if first_frames is None or len(first_frames) == 0:
        return np.zeros((0, size[1], size[0], 3), np.float32)
    given = np.asarray(first_frames, np.float32)[: max(frames - 1, 0), ..., :3]
    if given.shape[1:3] != (size[1], size[0]):
        given = np.stack([from_uint8(np.asarray(_fit(Image.fromarray(to_uint8(f)), size))) for f in given])
    return np.clip(given, 0.0, 1.0)


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop a larger render to ``size``, or resize when the aspect or scale differs."""
    w, h = image.size
    if w >= size[0] and h >= size[1] and (w - size[0]) <= 16 and (h - size[1]) <= 16:
        left, top = (w - size[0]) // 2, (h - size[1]) // 2
        return image.crop((left, top, left + size[0], top + size[1]))
    return image.resize(size, Image.Resampling.BICUBIC)


def _focal(camera: ShotCamera) -> float:
    fov = float(camera.optics.get("vertical_fov_degrees", 40.0))
    return 0.5 / math.tan(math.radians(fov) / 2.0)


# --------------------------------------------------------------------------- the scene


class Scene:
    """Layers, their world positions and screen poses for every frame, the grade and the environment."""

    def __init__(self, blocking: Blocking, lens: Lens, states: list[tuple[CameraState, ...]], background: Body,
                 motion: Motion, times: list[tuple[float, float, float]], aim: float) -> None:
        self.blocking = blocking
        self.lens = lens
        self.states = states  # per frame: the camera now, when the shutter opens, when it closes
        self.background = background
        self.motion = motion
        self.figures = [tuple(motion.figures(t) for t in moment) for moment in times]  # the same three instants
        self.atmospheres = [motion.atmosphere(moment[0]) for moment in times]
        self.aim = aim
        self.settings = blocking_data()
        self.sprites: list[Sprite | None] = []
        self.table: list[int] | None = None
        self.streaks: Image.Image | None = None
        self.seconds = 1.0
        self.depth_range = (1.0, 2.0)

    @classmethod
    def build(cls, references: ReferenceSet, camera: ShotCamera, lens: Lens, frames: int, seconds: float,
              seed: int, *, effects: bool = True) -> Scene:
        blocking = block_scene(references)
        data = blocking_data()
        half = float(camera.optics.get("shutter", 0.5)) / max(frames - 1, 1) / 2.0
        times = [(t, t - half, t + half) for t in (i / max(frames - 1, 1) for i in range(frames))]
        states = [tuple(camera.at(t, seconds=seconds, seed=seed) for t in moment) for moment in times]
        aspect = lens.width / lens.height
        over = blocking.overscan
        background = Body(0.0, 0.0, blocking.background_depth, over * blocking.background_depth / lens.focal)
        motion = Motion(blocking, camera.actions, aspect=aspect, focal=lens.focal,
                        widths=[_picture_ratio(p.reference.mask) for p in blocking.layers], settings=data["action"],
                        seconds=seconds)
        scene = cls(blocking, lens, states, background, motion, times, _aim_tilt(camera, blocking, aspect, lens.focal))
        scene.seconds = seconds
        scene._make_sprites(data, (aspect * over, over))
        scene._make_depth_range(float(data["controls"]["depth"]["near_margin"]))
        if effects:
            scene._make_grade(data["grade"])
            if any(a.rain > 0 for a in scene.atmospheres):
                scene.streaks = rain_streaks((lens.width, lens.height), data["atmosphere"]["rain"], seed)
        return scene

    # ---- geometry

    def pose(self, body: Body, state: CameraState) -> Pose:
        """Where ``body`` appears for the camera ``state`` (cylindrical projection, then roll)."""
        d = self.blocking.subject_depth
        dx, dy = body.x - state.x * d, body.y - state.y * d
        dz = max(body.z - state.z * d, 0.05 * body.z)
        across = math.hypot(dx, dz)
        distance = math.hypot(across, dy)
        focal = self.lens.focal * state.zoom
        u = focal * (math.atan2(dx, dz) - math.radians(state.pan + state.shake_pan))
        v = focal * (math.atan2(dy, across) - math.radians(state.tilt + state.shake_tilt) - self.aim)
        roll = math.radians(state.roll)
        u, v = u * math.cos(roll) - v * math.sin(roll), u * math.sin(roll) + v * math.cos(roll)
        h = self.lens.height
        return Pose(self.lens.width / 2.0 + u * h, h / 2.0 - v * h, focal * body.height / distance * h, distance, roll)

    def blur_radius(self, body: Body, state: CameraState, i: int | None = None) -> float:
        """Depth-of-field blur in output pixels for a layer at ``body``'s depth (at frame ``i`` the focus
        follows the subject where the action moves it)."""
        b, cz = self.blocking, state.z * self.blocking.subject_depth
        subject = self.subject_depth(i) if i is not None else b.subject_depth
        planes = [1.0 / max(depth - cz, 0.05) for depth in (b.foreground_depth, subject, b.background_depth)]
        f = min(max(state.focus, 0.0), 1.0) * 2.0
        focus = planes[0] + (planes[1] - planes[0]) * f if f <= 1.0 else planes[1] + (planes[2] - planes[1]) * (f - 1.0)
        here = 1.0 / max(body.z - cz, 0.05)
        return state.aperture * self.lens.height * state.zoom * b.subject_depth * abs(here - focus)

    def subject_depth(self, i: int) -> float:
        """How far away the subject stands at frame ``i`` (its resting depth without one)."""
        index = next((j for j, p in enumerate(self.blocking.layers) if p.is_subject), None)
        return self.figures[i][0][index].body.z if index is not None else self.blocking.subject_depth

    def bodies(self, i: int, layer: int | None) -> tuple[Body, Body, Body]:
        """The background (``layer`` None) or a foreground layer at frame ``i``: now, shutter open, closed."""
        if layer is None:
            return self.background, self.background, self.background
        now, opened, closed = self.figures[i]
        return now[layer].body, opened[layer].body, closed[layer].body

    def travel(self, i: int, layer: int | None) -> tuple[float, float]:
        """How far a layer moves on screen while the shutter is open at frame ``i`` (pixels, x and y)."""
        _, opened, closed = self.states[i]
        _, first, last = self.bodies(i, layer)
        start, end = self.pose(first, opened), self.pose(last, closed)
        return end.px - start.px, end.py - start.py

    def order(self, i: int) -> list[int]:
        """The foreground layers of frame ``i``, far to near (the occlusion order follows the action)."""
        state, now = self.states[i][0], self.figures[i][0]
        return sorted(range(len(now)), key=lambda j: -self.pose(now[j].body, state).distance)

    # ---- layers

    def _make_sprites(self, data: dict, rest_size: tuple[float, float]) -> None:
        frames = range(len(self.states))

        def margin(i: int, layer: int | None) -> float:
            """Output pixels around a layer that blur and motion may spread it by at frame ``i``."""
            return 3.0 * self.blur_radius(self.bodies(i, layer)[0], self.states[i][0], i) + math.hypot(
                *self.travel(i, layer)) + 2.0

        plate_poses = [self.pose(self.background, s[0]) for s in self.states]
        plate_unit = max(p.height_px for p in plate_poses) / rest_size[1]
        extent = _plate_extent(plate_poses, rest_size[1], self.lens, max(margin(i, None) for i in frames))
        self.sprites = [make_plate(self.blocking.background, rest_size, plate_unit, extent, data["stage"])]
        for j, placement in enumerate(self.blocking.layers):
            heights = [max(self.pose(self.bodies(i, j)[0], self.states[i][0]).height_px, 1.0) for i in frames]
            tallest = max(heights)
            size = min(tallest, placement.reference.height)  # the card's height in its own pixels
            pad = math.ceil(max(margin(i, j) * size / h for i, h in zip(frames, heights))) + 2
            self.sprites.append(make_card(placement.reference, tallest, pad, data["shadow"]))

    def _make_grade(self, grade: dict) -> None:
        if self.blocking.styles:
            middle = np.asarray(self.composite(len(self.states) // 2))
            self.table = grade_table(middle, self.blocking.styles, strength=float(grade["style_strength"]),
                                     gain_range=tuple(grade["gain_range"]))

    def _make_depth_range(self, margin: float) -> None:
        """The distances the depth pass maps to its brightest and darkest values, fixed for the clip."""
        far = max(self.pose(self.background, s[0]).distance for s in self.states)
        near = min([self.pose(f.body, s[0]).distance for s, moment in zip(self.states, self.figures)
                    for f in moment[0]] + [far * 0.5]) * margin
        self.depth_range = (near, far)

    # ---- drawing

    def frame(self, i: int) -> Image.Image:
        """Frame ``i``, composited and graded (the vignette is applied when it is stored)."""
        frame = self.composite(i)
        air = self.atmospheres[i]
        table = atmosphere_table(self.table, air.night, air.lights, self.settings["atmosphere"])
        return frame.point(table) if table is not None else frame

    def composite(self, i: int) -> Image.Image:
        """Frame ``i`` before the grade: background, fog, the layers from far to near, fog, rain."""
        air = self.atmospheres[i]
        settings = self.settings["atmosphere"]
        veil = _rgb(settings["fog_colour"])
        canvas = Image.new("RGB", (self.lens.width, self.lens.height))
        self._draw_layer(canvas, i, None)
        canvas = fog(canvas, air.fog * float(settings["fog_far"]), veil)
        for j in self.order(i):
            self._draw_layer(canvas, i, j)
        canvas = fog(canvas, air.fog * float(settings["fog_near"]), veil)
        if self.streaks is not None and air.rain > 0:
            spec = settings["rain"]
            fallen = int(float(spec["speed"]) * self.lens.height * self.seconds * i / max(len(self.states) - 1, 1))
            rain(canvas, self.streaks, air.rain, (int(fallen * float(spec["slant"])), fallen), _rgb(spec["colour"]),
                 float(spec["opacity"]))
        return canvas

    def _draw_layer(self, canvas: Image.Image, i: int, layer: int | None) -> None:
        """The background (``layer`` None) or one foreground layer onto ``canvas``, as frame ``i`` sees it."""
        squash = 1.0
        sprite = self.sprites[0 if layer is None else layer + 1]
        if layer is not None:
            sprite, squash = self._turned(sprite, self.figures[i][0][layer])
        if sprite is None:
            return
        body = self.bodies(i, layer)[0]
        state = self.states[i][0]
        _draw(canvas, sprite, self.pose(body, state), self.blur_radius(body, state, i), self.travel(i, layer), squash)

    def _turned(self, sprite: Sprite | None, figure: Figure) -> tuple[Sprite | None, float]:
        """The sprite a turned figure shows (its back past side-on) and how much it is squashed."""
        action = self.settings["action"]
        squash, back = turn_look(figure.turn, float(action["profile_width"]))
        if sprite is not None and back:
            sprite = sprite.back(float(action["back_shade"]))
        return sprite, squash

    def control(self, i: int, output: str) -> Image.Image:
        """Frame ``i`` of a control pass: ``depth`` (near = bright) or ``layout`` (flat silhouettes)."""
        state = self.states[i][0]
        size = (self.lens.width, self.lens.height)
        controls = self.settings["controls"]
        if output == "depth":
            canvas = Image.new("L", size, self._depth_value(self.pose(self.background, state).distance))
        else:
            canvas = Image.new("RGB", size, _rgb(controls["layout"]["ground"]))
        colours = controls["layout"]["colours"]
        for j in self.order(i):
            figure = self.figures[i][0][j]
            sprite, squash = self._turned(self.sprites[j + 1], figure)
            if sprite is None or sprite.matte is None:
                continue
            pose = self.pose(figure.body, state)
            k = pose.height_px / sprite.content_height
            placed = _resample(size, sprite.matte, sprite.anchor, pose, k * squash, k) if k > 1e-6 else None
            if placed is None:
                continue
            region, left, top = placed
            fill = self._depth_value(pose.distance) if output == "depth" else _rgb(colours[j % len(colours)])
            canvas.paste(fill, (left, top, left + region.width, top + region.height), region)
        return canvas.convert("RGB") if canvas.mode != "RGB" else canvas

    def _depth_value(self, distance: float) -> int:
        """Inverse distance mapped to 0..255 over the clip's range: near bright, the background dark."""
        near, far = self.depth_range
        floor = float(self.settings["controls"]["depth"]["floor"])
        value = (1.0 / max(distance, 1e-6) - 1.0 / far) / (1.0 / near - 1.0 / far)
        return round(255.0 * (floor + (1.0 - floor) * min(max(value, 0.0), 1.0)))


def _rgb(colour: list[float]) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in colour)
    return r, g, b


def _picture_ratio(mask: np.ndarray) -> float:
    """Width over height of a reference's matted subject (1 when the matte is empty)."""
    box = matte_box(mask)
    if box is None:
        return 1.0
    x0, y0, x1, y1 = box
    return (x1 - x0) / max(y1 - y0, 1)


def _aim_tilt(camera: ShotCamera, blocking: Blocking, aspect: float, focal: float) -> float:
    """The fixed tilt (radians) that centres a framing ("close-up") on its aim point of the subject."""
    framing = camera.framing or {}
    subject = next((p for p in blocking.layers if p.is_subject), None)
    if framing.get("aim") is None or subject is None:
        return 0.0
    v_aim = (0.5 - subject.ground) + float(framing["aim"]) * subject.height
    return v_aim / focal - AIM_TARGET / (focal * float(framing.get("zoom", 1.0)))


def _plate_extent(poses: list[Pose], rest_height: float, lens: Lens,
                  margin: float) -> tuple[float, float, float, float]:
    """The area of the background plate any frame sees, in frame heights from its centre at rest."""
    xs, ys = [], []
    corners = [(-margin, -margin), (lens.width + margin, -margin), (-margin, lens.height + margin),
               (lens.width + margin, lens.height + margin)]
    for pose in poses:
        unit = pose.height_px / rest_height
        c, s = math.cos(pose.roll), math.sin(pose.roll)
        for ox, oy in corners:
            dx, dy = ox - pose.px, oy - pose.py
            xs.append((c * dx - s * dy) / unit)
            ys.append((s * dx + c * dy) / unit)
    return min(xs), min(ys), max(xs), max(ys)


def _draw(canvas: Image.Image, sprite: Sprite, pose: Pose, radius: float, motion: tuple[float, float],
          squash: float = 1.0) -> None:
    """Resample ``sprite`` onto ``canvas`` at ``pose`` (``squash`` narrows it), blurred for focus and motion."""
    k = pose.height_px / sprite.content_height
    if k <= 1e-6:
        return
    placed = _resample(canvas.size, sprite.blurred(radius / k), sprite.anchor, pose, k * squash, k)
    if placed is None:
        return
    region, left, top = placed
    if math.hypot(*motion) >= 2.0:
        region = motion_blur(region, motion[0], motion[1])
    if region.mode == "RGBA":
        canvas.paste(region, (left, top), region)
    else:
        canvas.paste(region, (left, top))


def _resample(size: tuple[int, int], source: Image.Image, anchor: tuple[float, float], pose: Pose, kx: float,
              ky: float) -> tuple[Image.Image, int, int] | None:
    """The part of ``source`` that lands on a canvas of ``size``, scaled by ``kx`` x ``ky`` about ``anchor``
    (placed on the pose's pixel) and turned by its roll: (region, left, top), or None when it is off the canvas."""
    ax, ay = anchor
    sw, sh = source.size
    if abs(pose.roll) < 1e-6:
        x0, y0 = pose.px - kx * ax, pose.py - ky * ay
        left, top = max(0, math.ceil(x0)), max(0, math.ceil(y0))
        right, bottom = min(size[0], math.floor(x0 + kx * sw)), min(size[1], math.floor(y0 + ky * sh))
        if right <= left or bottom <= top:
            return None
        box = (min(max((left - pose.px) / kx + ax, 0.0), sw), min(max((top - pose.py) / ky + ay, 0.0), sh),
               min(max((right - pose.px) / kx + ax, 0.0), sw), min(max((bottom - pose.py) / ky + ay, 0.0), sh))
        return source.resize((right - left, bottom - top), Image.Resampling.BILINEAR, box=box), left, top
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    xs, ys = [], []
    for cx, cy in ((0, 0), (sw, 0), (0, sh), (sw, sh)):
        dx, dy = kx * (cx - ax), ky * (cy - ay)
        xs.append(pose.px + c * dx + s * dy)
        ys.append(pose.py - s * dx + c * dy)
    left, top = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    right, bottom = min(size[0], math.ceil(max(xs))), min(size[1], math.ceil(max(ys)))
    if right <= left or bottom <= top:
        return None
    ox, oy = left - pose.px, top - pose.py
    data = (c / kx, -s / kx, ax + (c * ox - s * oy) / kx, s / ky, c / ky, ay + (s * ox + c * oy) / ky)
    turned = source.transform((right - left, bottom - top), Image.Transform.AFFINE, data,
                              resample=Image.Resampling.BILINEAR)
    return turned, left, top
