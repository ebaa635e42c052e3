"""The noise schedule of a render: the scheduler, its flow shift, or a preset's exact sigmas.

A preset (else the model family) names the scheduler class and its flow shift
(engine/data/presets.json); the sampler's ``flow_shift`` input overrides the shift (0 keeps
it). A preset may instead carry the exact ``sigmas`` a step-distillation LoRA was trained
on; they win over any flow shift, and the generation info says so.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ..engine.errors import InputError
from .spec import SchedulerChoice, family_defaults, sampling_preset


@dataclass(frozen=True)
class Schedule:
    """The scheduler class with its flow shift, or an exact list of sigmas (terminal 0 implied)."""

    scheduler: str | None  # None: the pipeline's own scheduler as saved
    flow_shift: float | None = None
    sigmas: tuple[float, ...] | None = None
    note: str = ""

    def describe(self) -> dict:
        info: dict[str, Any] = {"class": self.scheduler}
        if self.sigmas is not None:
            info["sigmas"] = [*self.sigmas, 0.0]
        elif self.flow_shift is not None:
            info["flow_shift"] = self.flow_shift
        if self.note:
            info["note"] = self.note
        return info


def schedule_for(preset_name: str, family: str, resolution: str, flow_shift: float = 0.0) -> Schedule:
    """The schedule a preset (else the family) asks for at ``resolution``; ``flow_shift`` > 0 overrides
    the shift unless the preset lists exact sigmas."""
    chosen = sampling_preset(preset_name)
    choice = chosen.scheduler or SchedulerChoice.from_dict(family_defaults(family).get("scheduler"))
    if chosen.sigmas:
        note = f"the '{preset_name}' preset's exact sigmas"
        if flow_shift:
            note += f" win over flow_shift {flow_shift:g}"
        return Schedule("FlowMatchEulerDiscreteScheduler", None, chosen.sigmas, note)
    if choice is None:
        return Schedule(None, float(flow_shift) if flow_shift else None)
    shift = float(flow_shift) if flow_shift else choice.shift_for(resolution)
    return Schedule(choice.class_name, shift)


def check_steps(schedule: Schedule, steps: int, preset_name: str) -> None:
    """A listed schedule fixes the number of steps: refuse another count before any work."""
    if schedule.sigmas is not None and steps != len(schedule.sigmas):
        raise InputError(f"the '{preset_name}' preset is a {len(schedule.sigmas)}-step schedule; {steps} steps do "
                         "not fit it.", input="steps",
                         fix=f"Set steps to 0 (or {len(schedule.sigmas)}), or choose another preset.")


def listed_sigmas_scheduler(base: dict, sigmas: tuple[float, ...]) -> Any:
    """A flow-matching Euler scheduler that always runs ``sigmas`` (then 0), whatever the pipeline asks."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    class ListedSigmas(FlowMatchEulerDiscreteScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
            if num_inference_steps is not None and num_inference_steps != len(listed):
                raise ValueError(f"this schedule has {len(listed)} steps, {num_inference_steps} were asked for")
            return super().set_timesteps(device=device, sigmas=list(listed))

    listed = sigmas
    accepted = inspect.signature(FlowMatchEulerDiscreteScheduler.__init__).parameters
    return ListedSigmas.from_config({k: v for k, v in base.items() if k in accepted}, shift=1.0,
                                    use_dynamic_shifting=False)


def install(pipe: Any, schedule: Schedule) -> dict:
    """Put the schedule's scheduler on the pipeline (built from its saved config); return its description."""
    base = pipe.__dict__.setdefault("_refvideo_base_scheduler", pipe.scheduler.config)
    if schedule.sigmas is not None:
        pipe.scheduler = listed_sigmas_scheduler(base, schedule.sigmas)
        return schedule.describe()
    import diffusers

    name = schedule.scheduler or base["_class_name"]
    cls = getattr(diffusers, name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict = {}
    if schedule.flow_shift is not None:
        kwargs = {"flow_shift": schedule.flow_shift} if "flow_shift" in accepted else {"shift": schedule.flow_shift}
    if name == "UniPCMultistepScheduler":
        kwargs.update(prediction_type="flow_prediction", use_flow_sigmas=True)
    pipe.scheduler = cls.from_config({k: v for k, v in base.items() if k in accepted}, **kwargs)
    return {**schedule.describe(), "class": name}
