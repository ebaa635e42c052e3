"""The ``refvideo`` manifest and ComfyUI's graph, stored in a clip's metadata and read back.

A written clip carries, as container tags (MP4/MOV with ``movflags=use_metadata_tags``,
WebM as Matroska tags, a PNG sequence in its ``metadata.json``):

- ``refvideo``: the sampler's generation info (a JSON object), which re-renders the shot;
- ``prompt`` and ``workflow`` (and any other extra PNG-info entries): ComfyUI's API prompt
  and UI graph, each as JSON text, stored the way ComfyUI's own SaveVideo stores them, so
  dragging the file into ComfyUI restores the graph.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, require
from ..storage import parse_json, read_text_file

MANIFEST_KEY = "refvideo"
PROMPT_KEY = "prompt"
WORKFLOW_KEY = "workflow"
SEQUENCE_METADATA = "metadata.json"


def parse_generation_info(value: Any, *, input_name: str = "generation_info") -> dict | None:
    """The generation info as a dict (None when empty), or :class:`InputError` if it is not a JSON object."""
    if value is None:
        return None
    if isinstance(value, dict):
        data = value
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            data = parse_json(value)
        except ValueError as exc:
            raise InputError(f"is not valid JSON ({exc}).", input=input_name,
                             fix="Connect the sampler's generation_info output, or leave it unconnected.") from None
    else:
        raise InputError(f"must be a JSON object string, not {type(value).__name__}.", input=input_name,
                         fix="Connect the sampler's generation_info output.")
    if not isinstance(data, dict):
        raise InputError(f"must be a JSON object, not a JSON {type(data).__name__}.", input=input_name,
                         fix="Connect the sampler's generation_info output (a JSON object).")
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot be stored as JSON ({exc}).", input=input_name,
                         fix="Give a JSON object with plain values (no NaN or infinity).") from None
    return data


def _utf8_json(value: Any) -> str:
    """Compact JSON that can be written as UTF-8: readable text, escapes only where text holds lone
    surrogates (which UTF-8 cannot carry)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def container_metadata(generation_info: Any = None, prompt: dict | None = None,
                       extra_pnginfo: dict | None = None) -> dict[str, str]:
    """Container tags for a clip: ComfyUI's entries (as SaveVideo writes them) plus ``refvideo``.

    Each ``extra_pnginfo`` entry (the UI graph is ``workflow``) and the API ``prompt`` become
    JSON text under their own key; the generation info goes under ``refvideo`` last, so it wins.
    """
    tags: dict[str, str] = {}
    for key, value in (extra_pnginfo or {}).items():
        tags[str(key)] = json.dumps(value)
    if prompt is not None:
        tags[PROMPT_KEY] = json.dumps(prompt)
    info = parse_generation_info(generation_info)
    if info is not None:
        tags[MANIFEST_KEY] = _utf8_json(info)
    return tags


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """A clip's metadata tags with lower-case keys (Matroska stores them upper-case).

    ``path`` is a video file or a PNG-sequence folder; :class:`InputError` when it is
    missing or not a readable media file.
    """
    path = Path(path)
    if path.is_dir():
        sidecar = path / SEQUENCE_METADATA
        if not sidecar.is_file():
            return {}
        try:
            data = parse_json(read_text_file(sidecar))
        except (OSError, ValueError) as exc:
            raise InputError(f"{sidecar} cannot be read ({exc}).", input="file",
                             fix="Give a clip written by VideoEncode.") from None
        if not isinstance(data, dict):
            raise InputError(f"{sidecar} is not a JSON object.", input="file",
                             fix="Give a clip written by VideoEncode.")
        return {str(k).lower(): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    if not path.is_file():
        raise InputError(f"{path} does not exist.", input="file", fix="Give the path of a clip written by VideoEncode.")
    av = require("av", "Reading video metadata")
    try:
        with av.open(str(path), mode="r") as container:
            tags = dict(container.metadata)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a video file that can be read ({exc}).", input="file",
                         fix="Give an MP4, MOV or WebM clip written by VideoEncode.") from None
    return {str(k).lower(): str(v) for k, v in tags.items()}


def _json_tag(tags: dict[str, str], key: str, path: Path) -> Any:
    text = tags.get(key)
    if text is None:
        return None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise InputError(f"the '{key}' metadata of {path} is not valid JSON ({exc}).", input="file",
                         fix="The file's metadata is damaged; re-render the shot.") from None


def read_manifest(path: str | os.PathLike) -> dict:
    """The ``refvideo`` generation info of a written clip, or :class:`InputError` saying why there is none."""
    path = Path(path)
    tags = read_metadata(path)
    manifest = _json_tag(tags, MANIFEST_KEY, path)
    if manifest is None:
        raise InputError(f"{path} has no '{MANIFEST_KEY}' manifest.", input="file",
                         fix="Give a clip written by VideoEncode with its generation_info connected, in an MP4, "
                         "MOV, WebM or PNG-sequence format, with metadata enabled (GIF and WebP hold none).")
    if not isinstance(manifest, dict):
        raise InputError(f"the '{MANIFEST_KEY}' metadata of {path} is not a JSON object.", input="file",
                         fix="The file's metadata is damaged; re-render the shot.")
    return manifest


def read_graph(path: str | os.PathLike) -> tuple[dict | None, dict | None]:
    """ComfyUI's ``(prompt, workflow)`` stored in a clip (None where absent)."""
    path = Path(path)
    tags = read_metadata(path)
    return _json_tag(tags, PROMPT_KEY, path), _json_tag(tags, WORKFLOW_KEY, path)


def summary_lines(manifest: dict) -> list[str]:
    """A short human-readable summary of a manifest (the fields that re-render a shot)."""
    lines = []
    for label, key in (("model", "model"), ("seed", "seed"), ("steps", "steps"), ("guidance", "guidance"),
                       ("scheduler", "scheduler"), ("dtype", "dtype"), ("prompt", "prompt"),
                       ("negative prompt", "negative_prompt"), ("pack version", "pack_version")):
        value = manifest.get(key)
        if value not in (None, "", [], {}):
            lines.append(f"{label}: {value}")
    rendered = manifest.get("rendered")
    if isinstance(rendered, dict):
        lines.append("rendered: " + ", ".join(f"{k} {_short(v)}" for k, v in rendered.items()))
    references = manifest.get("references")
    if isinstance(references, list) and references:
        lines.append(f"references: {len(references)} ("
                     + ", ".join(str(r.get("role", "?")) for r in references if isinstance(r, dict)) + ")")
    warnings = manifest.get("warnings")
    if isinstance(warnings, list):
        lines.extend(f"warning: {w}" for w in warnings)
    return lines


def _short(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)
