"""The previz renderer: a reference set and a camera path become a 2.5D animatic.

The scene (see :mod:`engine.previz.blocking`) is a set of flat, camera-facing layers at
depths: the environment plate far away, characters at the subject's depth, props nearer.
For each frame the camera state (:meth:`engine.camera.path.ShotCamera.at`) projects every layer's
anchor through a cylindrical lens, which gives parallax for free: moving the camera shifts
and scales near layers more than far ones, while panning shifts all of them alike. Depth
of field blurs each layer by its distance from the focus plane (rack focus moves that
plane), motion blur smears layers by how far they travel while the shutter is open (whip
pans), and style references tint a per-clip grade.

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
from ..references.images import from_uint8, to_uint8
from ..references.reference import ReferenceSet
from .blocking import Blocking, Placement, block_scene, blocking_data
from .effects import grade_table, motion_blur, vignette
from .layers import Sprite, make_card, make_plate

AIM_TARGET = 0.08  # where a framing puts its aim point: frame heights above the centre
CROSSFADE_FRAMES = 8  # frames over which a continued shot blends into the animatic


@dataclass(frozen=True)
class Lens:
    """The output frame and the focal length (in frame heights) of the lens at zoom 1."""

    width: int
    height: int
    focal: float


@dataclass(frozen=True)
class Body:
    """A layer in the world: its anchor point and the world height of its picture."""

    x: float
    y: float
    z: float
    height: float


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
) -> Animatic:
    """Render ``frames`` frames of ``size`` (width, height) at ``fps``.

    ``render_size`` (when it differs from ``size``) is drawn and then centre-cropped or
    resized to ``size``. ``first_frames`` continue a previous shot: they open the clip and
    the animatic (its camera path running over the remaining frames) fades in after them.
    ``on_step(done, total)`` is called after every frame (progress and interrupt checks).
    """
    width, height = render_size or size
    kept = _continued(first_frames, frames, size)
    drawn = frames - len(kept)
    seconds = max(drawn - 1, 1) / fps
    scene = Scene.build(references, camera, Lens(width, height, _focal(camera)), drawn, seconds, seed)
    out = np.empty((frames, size[1], size[0], 3), np.float32)
    for i, frame in enumerate(kept):
        out[i] = frame
        if on_step:
            on_step(i + 1, frames)
    fade = min(CROSSFADE_FRAMES, drawn - 1) if len(kept) else 0
    shade = np.repeat(vignette(size, float(blocking_data()["grade"]["vignette"])) * np.float32(1.0 / 255.0), 3, axis=2)

    def draw(i: int) -> np.ndarray:
        image = scene.frame(i)
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
    info = {"camera": camera.describe(), "blocking": scene.blocking.describe(),
            "lens": {"vertical_fov_degrees": camera.optics.get("vertical_fov_degrees"), "focal": scene.lens.focal},
            "grade": "style references" if scene.table is not None else "none",
            "first_frames": {"kept": len(kept), "crossfade": fade},
            "warnings": list(scene.blocking.warnings)}
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
    """Layers, their screen poses for every frame, and the per-clip grade."""

    def __init__(self, blocking: Blocking, lens: Lens, states: list[tuple[CameraState, CameraState, CameraState]],
                 bodies: list[Body], aim: float) -> None:
        self.blocking = blocking
        self.lens = lens
        self.states = states
        self.bodies = bodies  # background first, then far to near
        self.aim = aim
        self.sprites: list[Sprite | None] = []
        self.table: list[int] | None = None

    @classmethod
    def build(cls, references: ReferenceSet, camera: ShotCamera, lens: Lens, frames: int, seconds: float,
              seed: int) -> Scene:
        blocking = block_scene(references)
        data = blocking_data()
        half = float(camera.optics.get("shutter", 0.5)) / max(frames - 1, 1) / 2.0
        times = [i / max(frames - 1, 1) for i in range(frames)]
        states = [(camera.at(t, seconds=seconds, seed=seed), camera.at(t - half, seconds=seconds, seed=seed),
                   camera.at(t + half, seconds=seconds, seed=seed)) for t in times]
        aspect = lens.width / lens.height
        over = blocking.overscan
        bodies = [Body(0.0, 0.0, blocking.background_depth, over * blocking.background_depth / lens.focal)]
        bodies += [_body_at_rest(p, aspect, lens.focal) for p in blocking.layers]
        aim = _aim_tilt(camera, blocking, aspect, lens.focal)
        scene = cls(blocking, lens, states, bodies, aim)
        scene._make_sprites(references, data, (aspect * over, over))
        scene._make_grade(data["grade"])
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

    def blur_radius(self, body: Body, state: CameraState) -> float:
        """Depth-of-field blur in output pixels for a layer at ``body``'s depth."""
        b, cz = self.blocking, state.z * self.blocking.subject_depth
        planes = [1.0 / max(depth - cz, 0.05) for depth in (b.foreground_depth, b.subject_depth, b.background_depth)]
        f = min(max(state.focus, 0.0), 1.0) * 2.0
        focus = planes[0] + (planes[1] - planes[0]) * f if f <= 1.0 else planes[1] + (planes[2] - planes[1]) * (f - 1.0)
        here = 1.0 / max(body.z - cz, 0.05)
        return state.aperture * self.lens.height * state.zoom * b.subject_depth * abs(here - focus)

    # ---- layers

    def _make_sprites(self, references: ReferenceSet, data: dict, rest_size: tuple[float, float]) -> None:
        lens = self.lens
        poses = [[self.pose(body, s[0]) for s in self.states] for body in self.bodies]
        margins = [max(3.0 * self.blur_radius(body, s[0]) + _travel(self, body, s) for s in self.states) + 2.0
                   for body in self.bodies]
        plate_unit = max(p.height_px for p in poses[0]) / rest_size[1]
        extent = _plate_extent(poses[0], rest_size[1], lens, margins[0])
        self.sprites = [make_plate(self.blocking.background, rest_size, plate_unit, extent, data["stage"])]
        for placement, body_poses, margin in zip(self.blocking.layers, poses[1:], margins[1:]):
            tallest = max(p.height_px for p in body_poses)
            smallest = max(min(p.height_px for p in body_poses), 1.0)
            pad = int(math.ceil(margin * min(tallest, placement.reference.height) / smallest)) + 2
            self.sprites.append(make_card(placement.reference, tallest, pad, data["shadow"]))

    def _make_grade(self, grade: dict) -> None:
        if self.blocking.styles:
            middle = np.asarray(self.composite(len(self.states) // 2))
            self.table = grade_table(middle, self.blocking.styles, strength=float(grade["style_strength"]),
                                     gain_range=tuple(grade["gain_range"]))

    # ---- drawing

    def frame(self, i: int) -> Image.Image:
        """Frame ``i``, composited and graded (the vignette is applied when it is stored)."""
        frame = self.composite(i)
        return frame.point(self.table) if self.table is not None else frame

    def composite(self, i: int) -> Image.Image:
        """Frame ``i`` before the grade: background, then the layers from far to near."""
        state, opened, closed = self.states[i]
        canvas = Image.new("RGB", (self.lens.width, self.lens.height))
        for body, sprite in zip(self.bodies, self.sprites):
            if sprite is None:
                continue
            pose = self.pose(body, state)
            start, end = self.pose(body, opened), self.pose(body, closed)
            _draw(canvas, sprite, pose, self.blur_radius(body, state), (end.px - start.px, end.py - start.py))
        return canvas


def _body_at_rest(p: Placement, aspect: float, focal: float) -> Body:
    """The world position that puts a layer's foot point where the blocking says, camera at rest."""
    u, v = p.x * aspect, 0.5 - p.ground
    x = p.depth * math.tan(u / focal)
    across = math.hypot(x, p.depth)
    y = across * math.tan(v / focal)
    return Body(x, y, p.depth, p.height * math.hypot(across, y) / focal)


def _aim_tilt(camera: ShotCamera, blocking: Blocking, aspect: float, focal: float) -> float:
    """The fixed tilt (radians) that centres a framing ("close-up") on its aim point of the subject."""
    framing = camera.framing or {}
    subject = next((p for p in blocking.layers if p.is_subject), None)
    if framing.get("aim") is None or subject is None:
        return 0.0
    v_aim = (0.5 - subject.ground) + float(framing["aim"]) * subject.height
    return v_aim / focal - AIM_TARGET / (focal * float(framing.get("zoom", 1.0)))


def _travel(scene: Scene, body: Body, states: tuple[CameraState, CameraState, CameraState]) -> float:
    start, end = scene.pose(body, states[1]), scene.pose(body, states[2])
    return math.hypot(end.px - start.px, end.py - start.py)


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


def _draw(canvas: Image.Image, sprite: Sprite, pose: Pose, radius: float, motion: tuple[float, float]) -> None:
    """Resample ``sprite`` onto ``canvas`` at ``pose``, blurred for focus and motion."""
    k = pose.height_px / sprite.content_height
    if k <= 1e-6:
        return
    source = sprite.blurred(radius / k)
    ax, ay = sprite.anchor
    sw, sh = source.size
    if abs(pose.roll) < 1e-6:
        x0, y0 = pose.px - k * ax, pose.py - k * ay
        left, top = max(0, math.ceil(x0)), max(0, math.ceil(y0))
        right, bottom = min(canvas.width, math.floor(x0 + k * sw)), min(canvas.height, math.floor(y0 + k * sh))
        if right <= left or bottom <= top:
            return
        box = (min(max((left - pose.px) / k + ax, 0.0), sw), min(max((top - pose.py) / k + ay, 0.0), sh),
               min(max((right - pose.px) / k + ax, 0.0), sw), min(max((bottom - pose.py) / k + ay, 0.0), sh))
        region: Image.Image | None = source.resize((right - left, bottom - top), Image.Resampling.BILINEAR, box=box)
    else:
        region, left, top = _rotated(canvas.size, source, pose, k, (ax, ay))
    if region is None:
        return
    if math.hypot(*motion) >= 2.0:
        region = motion_blur(region, motion[0], motion[1])
    if region.mode == "RGBA":
        canvas.paste(region, (left, top), region)
    else:
        canvas.paste(region, (left, top))


def _rotated(size: tuple[int, int], source: Image.Image, pose: Pose, k: float,
             anchor: tuple[float, float]) -> tuple[Image.Image | None, int, int]:
    """``source`` turned by the pose's roll and scaled by ``k`` (an affine resample of its bounding box)."""
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    ax, ay = anchor
    sw, sh = source.size
    xs, ys = [], []
    for cx, cy in ((0, 0), (sw, 0), (0, sh), (sw, sh)):
        dx, dy = k * (cx - ax), k * (cy - ay)
        xs.append(pose.px + c * dx + s * dy)
        ys.append(pose.py - s * dx + c * dy)
    left, top = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    right, bottom = min(size[0], math.ceil(max(xs))), min(size[1], math.ceil(max(ys)))
    if right <= left or bottom <= top:
        return None, 0, 0
    ox, oy = left - pose.px, top - pose.py
    data = (c / k, -s / k, ax + (c * ox - s * oy) / k, s / k, c / k, ay + (s * ox + c * oy) / k)
    turned = source.transform((right - left, bottom - top), Image.Transform.AFFINE, data,
                              resample=Image.Resampling.BILINEAR)
    return turned, left, top
