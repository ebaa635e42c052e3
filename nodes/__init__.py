"""RefVideo's ComfyUI nodes, collected from one module per node family.

A module that fails to import (a broken install) is logged and skipped, so the pack never
breaks ComfyUI's start; nodes whose optional packages are missing still load and explain,
when run, which package to install.
"""

from __future__ import annotations

import importlib
import logging

from ..engine import host
from .common import NodeClass

log = logging.getLogger("refvideo")

NODE_MODULES: tuple[str, ...] = (
    "reference_set",
    "style_skill",
    "model_loader",
    "sampler",
    "credit_meter",
    "video_encode",
    "audio",
    "join_clips",
    "storyboard",
    "continuity",
)


def collect() -> tuple[dict[str, type[NodeClass]], dict[str, str], list[str]]:
    """Import every node module; return class mappings, display names and load errors."""
    classes: dict[str, type[NodeClass]] = {}
    names: dict[str, str] = {}
    errors: list[str] = []
    for module_name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except Exception as exc:  # never break ComfyUI's start
            errors.append(f"{module_name}: {type(exc).__name__}: {exc}")
            log.error("RefVideo: could not load nodes/%s.py (%s: %s); its nodes are unavailable.",
                      module_name, type(exc).__name__, exc)
            continue
        for node_id, (cls, display) in getattr(module, "NODES", {}).items():
            classes[node_id] = cls
            names[node_id] = display
    clashes = sorted(set(classes) & host.registered_node_ids())
    for node_id in clashes:
        log.warning("RefVideo: node id '%s' is already registered by ComfyUI or another pack; "
                    "one of them will replace the other.", node_id)
    return classes, names, errors


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, LOAD_ERRORS = collect()
