"""What every RefVideo node shares: category, socket types and the UI result shape."""

from __future__ import annotations

from typing import Any, Protocol

CATEGORY = "RefVideo"
REFSET = "REFVIDEO_REFSET"
STYLE = "REFVIDEO_STYLE"
MODEL = "REFVIDEO_MODEL"
BUDGET = "REFVIDEO_BUDGET"


class NodeClass(Protocol):
    """A node class as ComfyUI (and the headless runner) reads it: the V1 contract."""

    RETURN_TYPES: tuple[str, ...]
    FUNCTION: str

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]: ...


def with_ui(result: tuple, text: str | None = None, **ui: list) -> dict[str, Any]:
    """A node return value that also shows ``text`` (and any other UI items) in the node."""
    payload: dict[str, list] = dict(ui)
    if text is not None:
        payload["text"] = [text]
    return {"ui": payload, "result": result}
