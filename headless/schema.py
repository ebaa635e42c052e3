"""Reading ComfyUI V1 node schemas: input specs, value checks and the /object_info shape.

One place knows how ``INPUT_TYPES`` entries look (``("INT", {"default": 1, "min": 0})``,
``(["a", "b"], {...})``), so the workflow runner, ``--set`` parsing, ``refvideo nodes`` and
the contract test all read them the same way ComfyUI does.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..nodes.common import NodeClass

from ..engine.number_text import exact_number, whole_number

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


@dataclass
class InputSpec:
    """One declared input of a node."""

    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO or a socket type such as IMAGE
    options: dict = field(default_factory=dict)
    choices: list | None = None
    required: bool = True

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    @property
    def default(self) -> Any:
        if "default" in self.options:
            return self.options["default"]
        if self.choices:
            return self.choices[0]
        return None


@dataclass
class NodeSchema:
    """One node class's inputs, read once: ``INPUT_TYPES`` may scan folders, so callers keep this."""

    inputs: dict[str, InputSpec]
    hidden: dict[str, str]
    self_checked: set[str]  # inputs VALIDATE_INPUTS checks instead of ComfyUI


def node_schema(node_class: type[NodeClass]) -> NodeSchema:
    """Read ``node_class.INPUT_TYPES()`` once into a :class:`NodeSchema`."""
    declared = node_class.INPUT_TYPES()
    specs: dict[str, InputSpec] = {}
    for section in ("required", "optional"):
        for name, entry in (declared.get(section) or {}).items():
            specs[name] = parse_entry(name, entry, required=section == "required")
    return NodeSchema(specs, dict(declared.get("hidden") or {}), _validator_inputs(node_class, specs))


def input_specs(node_class: type[NodeClass]) -> dict[str, InputSpec]:
    """The required and optional inputs of ``node_class`` in declaration order."""
    return node_schema(node_class).inputs


def parse_entry(name: str, entry: Any, *, required: bool) -> InputSpec:
    """Read one ``INPUT_TYPES`` entry: ``(type_or_list, options?)``."""
    if not isinstance(entry, (tuple, list)) or not entry:
        raise TypeError(f"input '{name}' must be declared as a (type, options) tuple, not {entry!r}")
    kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
    if isinstance(kind, (list, tuple)):
        return InputSpec(name, "COMBO", dict(options or {}), list(kind), required)
    if kind == "COMBO":
        return InputSpec(name, "COMBO", dict(options or {}), list((options or {}).get("options", [])), required)
    return InputSpec(name, str(kind), dict(options or {}), None, required)


def types_match(output_type: str, input_type: str) -> bool:
    """ComfyUI's link rule: equal types, ``*`` on either side, or comma-separated alternatives."""
    if output_type == "*" or input_type == "*":
        return True
    outs = {t.strip() for t in str(output_type).split(",")}
    ins = {t.strip() for t in str(input_type).split(",")}
    return bool(outs & ins)


def coerce(spec: InputSpec, value: Any) -> tuple[Any, str | None]:
    """Convert and check a constant value; return ``(value, problem or None)``."""
    opts = spec.options
    if spec.type == "INT":
        if isinstance(value, bool):
            return value, f"expects an integer, got {value!r}"
        number = exact_number(value) if isinstance(value, str) else value
        if isinstance(number, Decimal):
            number = whole_number(number)
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int):
            return value, f"expects an integer, got {_shown(value)}"
        converted = number
        return converted, _range_problem(converted, opts)
    if spec.type == "FLOAT":
        if isinstance(value, bool):
            return value, f"expects a number, got {value!r}"
        number = exact_number(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float, Decimal)):
            return value, f"expects a number, got {_shown(value)}"
        try:
            real = float(number)
        except OverflowError:
            real = math.inf
        if not math.isfinite(real):
            return value, f"expects a finite number, got {value!r}"
        return real, _range_problem(real, opts)
    if spec.type == "BOOLEAN":
        if isinstance(value, bool):
            return value, None
        return value, f"expects true or false, got {value!r}"
    if spec.type == "STRING":
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            return value, f"expects text, got {'null' if value is None else type(value).__name__}"
        return str(value), None
    if spec.type == "COMBO":
        choices = spec.choices or []
        if value in choices:
            return value, None
        shown = ", ".join(repr(c) for c in choices[:12])
        more = "" if len(choices) <= 12 else f" and {len(choices) - 12} more"
        return value, f"value {value!r} is not in the list: {shown}{more}"
    return value, f"is a {spec.type} socket: connect a node's output, not a constant"


def _range_problem(value: float, opts: dict) -> str | None:
    low, high = opts.get("min"), opts.get("max")
    if low is not None and value < low:
        return f"value {value} is smaller than the minimum {low}"
    if high is not None and value > high:
        return f"value {value} is bigger than the maximum {high}"
    return None


def parse_text_value(spec: InputSpec, text: str) -> Any:
    """Turn command-line text into the input's type (``--set NODE.INPUT=VALUE``)."""
    if spec.type == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return text
    if spec.type in ("INT", "FLOAT"):
        number = exact_number(text)
        if number is None:
            return text  # not a number: coerce() names the problem
        if spec.type == "INT":
            whole = whole_number(number) if isinstance(number, Decimal) else number
            return text if whole is None else whole
        return float(number)
    return text


def _shown(value: Any) -> str:
    """A value as a problem message shows it: at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def validator_inputs(node_class: type[NodeClass]) -> set[str]:
    """Inputs named by ``VALIDATE_INPUTS`` (ComfyUI then skips its own checks for them)."""
    return node_schema(node_class).self_checked


def _validator_inputs(node_class: type[NodeClass], specs: dict[str, InputSpec]) -> set[str]:
    fn = getattr(node_class, "VALIDATE_INPUTS", None)
    if fn is None:
        return set()
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(specs)
    return {n for n in params if n not in ("cls", "self", "input_types")}


def object_info(node_class: type[NodeClass], class_id: str, display_name: str,
                module: str = "custom_nodes.refvideo") -> dict:
    """One node's entry in ComfyUI's ``/object_info`` shape."""
    declared = node_class.INPUT_TYPES()
    outputs = list(node_class.RETURN_TYPES)
    names = list(getattr(node_class, "RETURN_NAMES", None) or outputs)
    return {
        "input": {k: v for k, v in declared.items() if k in ("required", "optional", "hidden")},
        "input_order": {k: list(v) for k, v in declared.items() if k in ("required", "optional", "hidden")},
        "output": outputs,
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", None) or [False] * len(outputs)),
        "output_name": names,
        "name": class_id,
        "display_name": display_name,
        "description": getattr(node_class, "DESCRIPTION", ""),
        "python_module": module,
        "category": getattr(node_class, "CATEGORY", ""),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
        "output_tooltips": list(getattr(node_class, "OUTPUT_TOOLTIPS", None) or []),
    }
