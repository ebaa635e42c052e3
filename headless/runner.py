"""Run an API-format ComfyUI workflow in-process with RefVideo's nodes.

A workflow is ``{node_id: {"class_type": ..., "inputs": {name: value or [source_id, slot]}}}``.
:func:`validate` reports every problem at once (each naming node, class, input and what
would be valid) before anything runs; :func:`execute` then runs the nodes that the output
nodes need, in dependency order, with ComfyUI's semantics: unconnected optional inputs are
absent, outputs are lists, ``OUTPUT_IS_LIST`` fans out and ``INPUT_IS_LIST`` gathers.
"""

from __future__ import annotations

import difflib
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import host, ranks
from ..engine.errors import InputError, RefVideoError
from ..engine.paths import API_WORKFLOWS_DIR, WORKFLOWS_DIR, is_within
from ..engine.storage import parse_json, read_text_file
from .graph import dependency_order
from .schema import InputSpec, NodeSchema, coerce, node_schema, parse_text_value, types_match

if TYPE_CHECKING:
    from ..nodes.common import NodeClass

Workflow = dict[str, dict[str, Any]]


@dataclass
class Problem:
    """One thing wrong with a workflow."""

    type: str
    message: str
    node: str | None = None
    class_type: str | None = None
    input: str | None = None

    def to_dict(self) -> dict:
        return {"node": self.node, "input": self.input, "type": self.type, "message": str(self)}

    def __str__(self) -> str:
        where = []
        if self.node is not None:
            where.append(f"node {self.node}" + (f" ({self.class_type})" if self.class_type else ""))
        if self.input:
            where.append(f"input '{self.input}'")
        return (", ".join(where) + ": " if where else "") + self.message


class WorkflowInvalid(InputError):
    """The workflow cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the workflow has {len(problems)} problem(s):\n{lines}")

    def __str__(self) -> str:
        return self.message


class NodeFailed(RefVideoError):
    """A node raised while running; ``error`` is the original exception."""

    def __init__(self, node: str, class_type: str, error: BaseException) -> None:
        self.node = node
        self.class_type = class_type
        self.error = error
        self.exit_code = getattr(error, "exit_code", 1)
        super().__init__(f"node {node} ({class_type}) failed: {error}", input=getattr(error, "input", None))

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {"node": self.node, "input": getattr(self.error, "input", None),
                "type": type(self.error).__name__, "message": str(self.error)}


@dataclass
class RunResult:
    """What a run produced: each output node's UI payload and the files it wrote."""

    prompt_id: str
    ui: dict[str, dict[str, list]] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def load_workflow(source: str | os.PathLike) -> Workflow:
    """Read an API-format workflow file; refuse malformed JSON and UI-format files clearly."""
    path = Path(source)
    try:
        text = read_text_file(path)
    except OSError as exc:
        raise InputError(f"cannot read the workflow file {path} ({exc.strerror or exc}).", input="workflow",
                         fix="Give the path of an API-format workflow JSON file.") from None
    except ValueError as exc:
        raise InputError(f"cannot read the workflow file {path}: {exc}.", input="workflow",
                         fix="Give the path of an API-format workflow JSON file saved as UTF-8.") from None
    try:
        data = parse_json(text)
    except ValueError as exc:
        raise WorkflowInvalid([Problem("malformed_json", f"{path} is not valid JSON: {exc}.")]) from None
    return as_api_workflow(data, path)


def as_api_workflow(data: Any, path: Path | None = None) -> Workflow:
    """Accept an API-format workflow (or a ``{"prompt": ...}`` request body); refuse UI format."""
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data:
        data = data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        shipped = path is not None and is_within(path, WORKFLOWS_DIR) and path.parent.resolve() == WORKFLOWS_DIR
        twin = API_WORKFLOWS_DIR / path.name if shipped and path is not None else None
        hint = (f"Use its API twin {twin}." if twin is not None and twin.is_file() else
                "Export it from ComfyUI with 'Export (API)' (Workflow menu), or use the matching file in "
                f"{API_WORKFLOWS_DIR}.")
        raise InputError(f"{path or 'this workflow'} is a UI-format workflow (the editor's graph), "
                         "which cannot be run headless.", input="workflow", fix=hint)
    if not isinstance(data, dict) or not data:
        raise WorkflowInvalid([Problem("malformed_workflow", "an API-format workflow is a JSON object "
                                       "{node_id: {\"class_type\": ..., \"inputs\": {...}}} with at least one node.")])
    return {str(k): v for k, v in data.items()}


# --------------------------------------------------------------------------- validation


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def _unknown_class_problem(node_id: str, class_type: Any, classes: Mapping[str, type[NodeClass]]) -> Problem:
    close = difflib.get_close_matches(str(class_type), list(classes), n=1, cutoff=0.75)
    if close:
        msg = f"'{class_type}' is not a known node class. Did you mean '{close[0]}'?"
    else:
        msg = (f"'{class_type}' is not a RefVideo node (it belongs to ComfyUI core or another pack); the "
               "in-process runner runs RefVideo nodes only. Run this workflow in ComfyUI with "
               "'refvideo run --server URL', or replace the node.")
    return Problem("unknown_class", msg, node_id, str(class_type))


Schemas = dict[type, NodeSchema]


def _schema(cls: type[NodeClass], schemas: Schemas) -> NodeSchema:
    """``cls``'s schema, read once per validation or run."""
    if cls not in schemas:
        schemas[cls] = node_schema(cls)
    return schemas[cls]


def validate(workflow: Workflow, classes: Mapping[str, type[NodeClass]],
             schemas: Schemas | None = None) -> list[Problem]:
    """Every problem in ``workflow`` against the node ``classes`` (empty list: it can run)."""
    schemas = {} if schemas is None else schemas
    problems: list[Problem] = []
    known: dict[str, type[NodeClass]] = {}
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            problems.append(Problem("malformed_node", "each node needs \"class_type\" (a node class name) and "
                                    "\"inputs\".", node_id))
            continue
        if not isinstance(node.get("inputs", {}), dict):
            problems.append(Problem("malformed_node", "\"inputs\" must be an object.", node_id, node["class_type"]))
            continue
        cls = classes.get(node["class_type"])
        if cls is None:
            problems.append(_unknown_class_problem(node_id, node["class_type"], classes))
            continue
        known[node_id] = cls

    for node_id, cls in known.items():
        problems.extend(_validate_node(node_id, workflow[node_id], _schema(cls, schemas), cls, workflow, known))

    problems.extend(_cycle_problems(workflow, known))
    if not any(getattr(cls, "OUTPUT_NODE", False) for cls in known.values()) and not problems:
        problems.append(Problem("no_outputs", "the workflow has no output node (such as VideoEncode), so "
                                "nothing would run. Add an output node."))
    return problems


def _validate_node(node_id: str, node: dict, schema: NodeSchema, cls: type[NodeClass], workflow: Workflow,
                   known: dict[str, type[NodeClass]]) -> list[Problem]:
    class_type = node["class_type"]
    specs = schema.inputs
    inputs = node.get("inputs", {})
    skip_checks = schema.self_checked
    problems: list[Problem] = []

    def problem(kind: str, name: str | None, message: str) -> None:
        problems.append(Problem(kind, message, node_id, class_type, name))

    for name in inputs:
        if name not in specs:
            valid = ", ".join(specs) or "none"
            problem("unknown_input", name, f"{class_type} has no input '{name}' (its inputs: {valid}).")
    constants: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in inputs:
            if spec.required:
                problem("missing_input", name, f"required input is missing ({_describe(spec)}).")
            continue
        value = inputs[name]
        if _is_link(value):
            problems.extend(_check_link(node_id, class_type, spec, value, workflow, known))
            continue
        if name in skip_checks:
            constants[name] = value
            continue
        converted, issue = coerce(spec, value)
        if issue:
            problem("bad_value", name, issue + ".")
        else:
            constants[name] = converted
    validator = getattr(cls, "VALIDATE_INPUTS", None)
    if validator is not None and not problems:
        wanted = {n: constants[n] for n in skip_checks if n in constants}
        try:
            verdict = validator(**wanted)
        except InputError as exc:
            problem("bad_value", exc.input, str(exc))
        else:
            if verdict is not True:
                named = [n for n in skip_checks if n in str(verdict)]
                problem("bad_value", named[0] if len(named) == 1 else None, str(verdict))
    return problems


def _describe(spec: InputSpec) -> str:
    if spec.type == "COMBO":
        return f"one of {', '.join(map(repr, (spec.choices or [])[:8]))}"
    if spec.is_widget:
        return f"a {spec.type} value"
    return f"connect a {spec.type} output"


def _check_link(node_id: str, class_type: str, spec: InputSpec, link: list, workflow: Workflow,
                known: dict[str, type[NodeClass]]) -> list[Problem]:
    source, slot = str(link[0]), link[1]
    if source not in workflow:
        return [Problem("bad_link", f"links to node {source}, which is not in the workflow.", node_id, class_type,
                        spec.name)]
    source_cls = known.get(source)
    if source_cls is None:
        return []  # the source's own problem is reported already
    outputs = list(source_cls.RETURN_TYPES)
    if not 0 <= slot < len(outputs):
        return [Problem("bad_link", f"links to output {slot} of node {source} "
                        f"({workflow[source]['class_type']}), which has outputs 0-{len(outputs) - 1}.",
                        node_id, class_type, spec.name)]
    out_type = outputs[slot]
    in_type = spec.type
    if in_type == "COMBO" and out_type in ("COMBO", "*"):
        return []
    if not types_match(out_type, in_type):
        return [Problem("link_type", f"expects {in_type}, but output {slot} of node {source} "
                        f"({workflow[source]['class_type']}) is {out_type}.", node_id, class_type, spec.name)]
    return []


def _cycle_problems(workflow: Workflow, known: dict[str, type[NodeClass]]) -> list[Problem]:
    found: list[list[str]] = []
    dependency_order(sorted(known, key=_id_key), lambda nid: [s for s in _sources(workflow, nid) if s in known],
                     on_cycle=found.append)
    return [Problem("cycle", "the nodes " + " -> ".join(c) + " form a cycle; a workflow must not feed a "
                    "node's output back into itself.", c[0], workflow[c[0]]["class_type"]) for c in found]


def _id_key(node_id: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in str(node_id).split(":"))


# --------------------------------------------------------------------------- execution


def execution_order(workflow: Workflow, classes: Mapping[str, type[NodeClass]], *,
                    every_rank_only: bool = False) -> list[str]:
    """The nodes that the output nodes need, each after the nodes it reads from.

    With ``every_rank_only`` (ranks other than 0 under torchrun), the nodes that every rank runs
    (``RUNS_ON_EVERY_RANK``, the sampler) and what they need: nothing after them, so no file is written.
    """
    marker = "RUNS_ON_EVERY_RANK" if every_rank_only else "OUTPUT_NODE"
    outputs = [nid for nid, n in workflow.items() if getattr(classes[n["class_type"]], marker, False)]
    return dependency_order(sorted(outputs, key=_id_key), lambda nid: _sources(workflow, nid))


def _sources(workflow: Workflow, node_id: str) -> list[str]:
    """The nodes ``node_id``'s linked inputs read from, in input order."""
    return [str(v[0]) for v in workflow[node_id].get("inputs", {}).values() if _is_link(v)]


def execute(
    workflow: Workflow,
    classes: Mapping[str, type[NodeClass]],
    *,
    extra_pnginfo: dict | None = None,
    on_node: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Validate, then run ``workflow``; raise :class:`WorkflowInvalid` or :class:`NodeFailed`."""
    schemas: Schemas = {}
    problems = validate(workflow, classes, schemas)
    if problems:
        raise WorkflowInvalid(problems)
    result = RunResult(prompt_id=str(uuid.uuid4()))
    values: dict[str, list[list]] = {}
    for node_id in execution_order(workflow, classes, every_rank_only=not ranks.is_main()):
        host.check_interrupt()
        node = workflow[node_id]
        cls = classes[node["class_type"]]
        if on_node is not None:
            on_node(node_id, node["class_type"])
        args = _node_arguments(node_id, node, _schema(cls, schemas), values, workflow, extra_pnginfo)
        with host.executing(result.prompt_id, node_id):
            try:
                outputs, ui = _call_node(cls, args)
            except BaseException as exc:
                if host.is_interrupt(exc):
                    raise
                raise NodeFailed(node_id, node["class_type"], exc) from exc
        values[node_id] = outputs
        if ui:
            result.ui[node_id] = ui
            files = files_in_ui(ui)
            if files:
                result.files[node_id] = files
    return result


def _node_arguments(node_id: str, node: dict, schema: NodeSchema, values: dict[str, list[list]],
                    workflow: Workflow, extra_pnginfo: dict | None) -> dict[str, list]:
    """Each input as a list of values (ComfyUI's batch-of-calls form)."""
    specs = schema.inputs
    args: dict[str, list] = {}
    for name, value in node.get("inputs", {}).items():
        spec = specs.get(name)
        if spec is None:
            continue
        if _is_link(value):
            args[name] = values[str(value[0])][value[1]]
        else:
            args[name] = [value if name in schema.self_checked else coerce(spec, value)[0]]
    for name, kind in schema.hidden.items():
        if kind == "PROMPT":
            args[name] = [workflow]
        elif kind == "EXTRA_PNGINFO":
            args[name] = [extra_pnginfo or {}]
        elif kind == "UNIQUE_ID":
            args[name] = [node_id]
        else:
            args[name] = [None]
    return args


def _call_node(cls: type[NodeClass], args: dict[str, list]) -> tuple[list[list], dict[str, list]]:
    instance = cls()
    fn = getattr(instance, cls.FUNCTION)
    n_outputs = len(cls.RETURN_TYPES)
    output_is_list = list(getattr(cls, "OUTPUT_IS_LIST", None) or [False] * n_outputs)
    if getattr(cls, "INPUT_IS_LIST", False):
        calls = [args]
    else:
        count = max((len(v) for v in args.values()), default=1)
        if any(len(v) == 0 for v in args.values()):
            count = 0
        calls = [{k: v[min(i, len(v) - 1)] for k, v in args.items()} for i in range(count)]
    outputs: list[list] = [[] for _ in range(n_outputs)]
    ui: dict[str, list] = {}
    for call in calls:
        returned = fn(**call)
        if isinstance(returned, dict):
            for key, items in (returned.get("ui") or {}).items():
                ui.setdefault(key, []).extend(items if isinstance(items, (list, tuple)) else [items])
            returned = returned.get("result", ())
        returned = tuple(returned or ())
        if len(returned) != n_outputs:
            raise RuntimeError(f"{cls.__name__}.{cls.FUNCTION} returned {len(returned)} values for "
                               f"{n_outputs} outputs")
        for i, value in enumerate(returned):
            if output_is_list[i]:
                outputs[i].extend(value)
            else:
                outputs[i].append(value)
    return outputs, ui


def files_in_ui(ui: Mapping[str, list]) -> list[Path]:
    """Absolute paths of the files an output node reported (``filename``/``subfolder``/``type``)."""
    roots = {"output": host.output_dir(), "temp": host.temp_dir(), "input": host.input_dir()}
    files: list[Path] = []
    for items in ui.values():
        for item in items:
            if isinstance(item, dict) and "filename" in item:
                root = roots.get(item.get("type", "output"), host.output_dir())
                path = Path(root, item.get("subfolder") or "", item["filename"]).resolve()
                if path not in files:
                    files.append(path)
    return files


def apply_overrides(workflow: Workflow, overrides: list[str], classes: Mapping[str, type[NodeClass]]) -> list[Problem]:
    """Apply ``NODE.INPUT=VALUE`` overrides, parsing each value to the input's type."""
    problems: list[Problem] = []
    for item in overrides:
        target, sep, text = item.partition("=")
        node_id, dot, name = target.rpartition(".")
        if not sep or not dot or not node_id or not name:
            problems.append(Problem("bad_override", f"'{item}' is not NODE.INPUT=VALUE (e.g. 4.seed=7).",
                                    input="--set"))
            continue
        node = workflow.get(node_id)
        if node is None:
            problems.append(Problem("bad_override", f"--set names node {node_id}, which is not in the workflow "
                                    f"(its nodes: {', '.join(sorted(workflow, key=_id_key))}).", node_id))
            continue
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            problems.append(Problem("bad_override", f"--set names node {node_id}, which is not a node with "
                                    "\"inputs\" in this workflow.", node_id))
            continue
        class_type = node.get("class_type")
        cls = classes.get(class_type) if isinstance(class_type, str) else None
        specs = node_schema(cls).inputs if cls is not None else {}
        spec = specs.get(name)
        if spec is None:
            problems.append(Problem("bad_override", f"--set names input '{name}', which "
                                    f"{node.get('class_type')} does not have (its inputs: {', '.join(specs)}).",
                                    node_id, node.get("class_type"), name))
            continue
        node.setdefault("inputs", {})[name] = parse_text_value(spec, text)
    return problems
