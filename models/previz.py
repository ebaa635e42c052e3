"""The ``previz`` backend: a 2.5D animatic of the shot, on CPU, in seconds, without weights.

It runs through RefVideoSampler like a diffusion model (same inputs, same outputs), so a
workflow switches between previz and a real model with one combo. Planned with another
model's fps and frame rule (``match_frames_of``), its animatic lines up frame for frame with
that model's clip and can be its control video; the loader's ``render`` makes it a depth or
layout control video instead of the picture. numpy and Pillow only: it runs where torch is
not installed.
"""

from __future__ import annotations

import time

from ..engine.camera.path import shot_camera
from ..engine.previz.render import render_animatic
from .backend import RenderRequest, RenderResult, VideoBackend


class PrevizBackend(VideoBackend):
    """Reference layers + the parsed camera path and action -> animatic, depth or layout frames."""

    name = "previz"

    def __init__(self, render: str = "animatic") -> None:
        self.output = render

    def render(self, request: RenderRequest) -> RenderResult:
        """Draw ``request.plan.frames`` frames of the camera path and the action over the reference layers.

        The sampler passes the parsed camera (and reports its unknown camera words itself);
        called without one, previz reads the prompt and the style's camera habit here.
        """
        plan = request.plan
        camera = request.camera
        own_camera = camera is None
        if camera is None:
            camera = shot_camera(request.prompt, request.style.camera if request.style is not None else "",
                                 request.references)
        started = time.perf_counter()
        animatic = render_animatic(
            request.references, camera,
            size=(plan.width, plan.height), render_size=(plan.render_width, plan.render_height),
            frames=plan.frames, fps=plan.fps, seed=request.seed,
            first_frames=request.first_frames, on_step=request.on_step, output=self.output,
        )
        info = dict(animatic.info)
        warnings = list(info.pop("warnings", []))
        if own_camera and camera.unknown:
            warnings.append("camera words not understood (left out): " + ", ".join(camera.unknown) + ".")
        if camera.action_unknown:
            warnings.append("action words previz cannot draw (left out of the animatic): "
                            + ", ".join(camera.action_unknown) + ".")
        if not own_camera:
            info.pop("camera", None)  # the sampler records it
        if request.control_video is not None:
            warnings.append("previz draws its own camera path; the control_video input was not used.")
        info.update(backend=self.name, warnings=warnings,
                    timings={"previz_render": round(time.perf_counter() - started, 4)})
        return RenderResult(frames=animatic.frames, info=info)
