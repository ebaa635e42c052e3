"""What a pipeline module plugs in with, and the model handle as that module sees it.

The registry imports the pipeline modules (``wan_vace``, ``tiny_random``); they import this
module and never the registry, so the models package has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .backend import VideoBackend
from .spec import LoadOptions, ModelSpec

PREVIZ = "previz"
TINY_RANDOM = "tiny-random"


class ChosenModel(Protocol):
    """A validated model choice (the registry's ``ModelHandle``): what a family's ``load`` reads."""

    @property
    def name(self) -> str: ...

    @property
    def folder(self) -> Path | None: ...

    @property
    def options(self) -> LoadOptions: ...

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def lora(self) -> Path | None: ...


@dataclass(frozen=True)
class PipelineFamily:
    """One kind of diffusers pipeline RefVideo can run."""

    name: str
    pipeline_classes: tuple[str, ...]
    weight_components: tuple[str, ...]
    spec: Callable[[str, Path, LoadOptions], ModelSpec]
    load: Callable[[ChosenModel], VideoBackend]
