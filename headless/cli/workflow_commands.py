"""``refvideo run``, ``refvideo demo`` and ``refvideo nodes``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...engine import host, ranks
from ...engine.errors import InputError, Interrupted, RefVideoError, Terminated
from ...engine.paths import API_WORKFLOWS_DIR
from ...engine.video.files import remove_stale_partials_once
from ..runner import RunResult, WorkflowInvalid, apply_overrides, execute, load_workflow
from ..schema import object_info, parse_entry
from .main import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, emit, error_entries

if TYPE_CHECKING:
    from ...nodes.common import NodeClass

DEMO_WORKFLOW = API_WORKFLOWS_DIR / "demo_shot.json"


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[parent], help="run an API-format workflow (in-process or on a server)",
                              description="Run an API-format workflow JSON with RefVideo's nodes in-process, or "
                                          "submit it to a running ComfyUI with --server.")
    run.add_argument("workflow", help="API-format workflow file (workflows/api/*.json)")
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override an input, e.g. --set 4.seed=7 (repeatable)")
    run.add_argument("--input", action="append", default=[], metavar="FILE",
                     help="bring an image into the run's input folder (uploaded with --server; repeatable)")
    run.add_argument("--output-dir", metavar="D", help="where outputs are written (default: the data folder's output/)")
    run.add_argument("--server", metavar="URL", help="submit to a running ComfyUI, e.g. http://127.0.0.1:8188")
    run.set_defaults(func=run_command)

    demo = commands.add_parser("demo", parents=[parent], help="render the demo shot from the bundled samples",
                               description="Render the demo shot (bundled sample references, previz backend, "
                                           "16:9 720p 5 s) to an MP4 and print its path.")
    demo.add_argument("--output-dir", metavar="D", help="where the MP4 is written (default: the data folder's output/)")
    demo.set_defaults(func=demo_command)

    nodes = commands.add_parser("nodes", parents=[parent], help="list RefVideo's nodes and their inputs",
                                description="Print the node schemas, in the shape of ComfyUI's /object_info.")
    nodes.set_defaults(func=nodes_command)


def node_classes() -> tuple[dict[str, type[NodeClass]], dict[str, str], list[str]]:
    from ...nodes import LOAD_ERRORS, NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    return NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, LOAD_ERRORS


# --------------------------------------------------------------------------- run


def _ui_twin(workflow_path: Path) -> dict | None:
    """The UI-format twin of ``workflows/api/X.json`` (``workflows/X.json``), for file metadata."""
    if workflow_path.parent.name != "api":
        return None
    twin = workflow_path.parent.parent / workflow_path.name
    try:
        data = json.loads(twin.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("nodes"), list) else None


def _run_payload(ok: bool, files: dict[str, list[Path]], seconds: float, errors: list[dict]) -> dict:
    return {"ok": ok, "outputs": [{"node": n, "files": [str(p) for p in paths]} for n, paths in files.items()],
            "seconds": round(seconds, 3), "errors": errors}


def _print_node(node_id: str, class_type: str) -> None:
    print(f"refvideo: running node {node_id} ({class_type})", file=sys.stderr)


def run_workflow(path: Path, *, overrides: list[str], inputs: list[str], output_dir: str | None,
                 server: str | None, quiet: bool) -> RunResult:
    """Load, adjust and run one workflow file; raise on any problem."""
    classes, _, load_errors = node_classes()
    workflow = load_workflow(path)
    problems = apply_overrides(workflow, overrides, classes)
    if problems:
        raise WorkflowInvalid(problems)
    extra = {"workflow": twin} if (twin := _ui_twin(path)) else None
    if output_dir:
        host.configure(comfyui_dir=host.settings()["comfyui_dir"], output_dir=output_dir)
    if ranks.is_main():
        remove_stale_partials_once()
    if server:
        if ranks.distributed():
            raise InputError("--server sends the workflow to a ComfyUI server, which cannot share it between "
                             "processes.", input="server", fix="Launch 'refvideo run --server ...' without torchrun.")
        return _run_on_server(server, workflow, inputs, extra, quiet)
    from ..inputs import bring_inputs, point_inputs_at

    # under torchrun rank 0 copies the inputs and every rank reads the names it stored
    renamed = ranks.on_main_shared(lambda: bring_inputs(inputs, host.input_dir())) if inputs else {}
    for node_id, name, stored in point_inputs_at(workflow, renamed):
        if ranks.is_main():
            print(f"refvideo: node {node_id} input '{name}' now reads '{stored}' (a different file of the same "
                  "name was already in the input folder)", file=sys.stderr)
    try:
        return execute(workflow, classes, extra_pnginfo=extra,
                       on_node=None if quiet or not ranks.is_main() else _print_node)
    except WorkflowInvalid as exc:
        if load_errors:
            exc.problems[0].message += f" (some RefVideo nodes failed to load: {'; '.join(load_errors)})"
        raise


def _run_on_server(server: str, workflow: dict, inputs: list[str], extra: dict | None, quiet: bool) -> RunResult:
    from ..comfy_client import ComfyClient
    from ..inputs import input_files, point_inputs_at

    client = ComfyClient(server)
    renamed = {source.name: client.upload_image(source) for source in input_files(inputs)}
    point_inputs_at(workflow, renamed)
    bars: dict[str, Any] = {}

    def progress(node: str, class_type: str, value: int, total: int) -> None:
        if quiet:
            return
        if total == 0:
            _print_node(node, class_type)
            return
        from tqdm import tqdm

        bar = bars.get(node)
        if bar is None:
            bar = bars[node] = tqdm(total=total, desc=f"node {node} ({class_type})", leave=False, file=sys.stderr)
        bar.total = total
        bar.n = value
        bar.refresh()

    try:
        return client.run(workflow, output_dir=host.output_dir(), extra_pnginfo=extra, on_progress=progress)
    finally:
        for bar in bars.values():
            bar.close()


def run_command(args: argparse.Namespace) -> int:
    """``refvideo run``; under ``torchrun --nproc-per-node N`` every rank runs it and only rank 0 reports."""
    try:
        return _run_command(args)
    finally:
        ranks.close_process_group()


def _run_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        ranks.ensure_process_group()  # first, so that each rank takes its own GPU before anything loads
        result = run_workflow(Path(args.workflow), overrides=args.set, inputs=args.input,
                              output_dir=args.output_dir, server=args.server, quiet=args.json)
    except Terminated as exc:
        return _fail(args, Interrupted(str(exc)), exc.exit_code, started)
    except (Interrupted, KeyboardInterrupt) as exc:
        return _fail(args, Interrupted(str(exc) if isinstance(exc, Interrupted) else "Interrupted by the user."),
                     EXIT_INTERRUPTED, started)
    except RefVideoError as exc:
        return _fail(args, exc, exc.exit_code, started)
    except Exception as exc:  # a bug or an environment problem: reported in the same shape, exit 1
        return _fail(args, exc, EXIT_FAILED, started)
    if not ranks.is_main():
        return EXIT_OK
    files = [str(p) for paths in result.files.values() for p in paths]
    emit(args, _run_payload(True, result.files, time.perf_counter() - started, []),
         "\n".join(files) if files else "refvideo: the workflow ran and wrote no files.")
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: BaseException, code: int, started: float) -> int:
    if not ranks.is_main():
        # rank 0 reports refusals (every rank checks the same inputs) and what it shared; a failure
        # while running may be this rank's own (e.g. its GPU ran out of memory), so it is printed
        if code == EXIT_FAILED and not ranks.shared_from_main(exc):
            print(f"refvideo (rank {ranks.rank()}): error: {exc}", file=sys.stderr)
        return code
    errors = error_entries(exc)
    if args.json:
        emit(args, _run_payload(False, {}, time.perf_counter() - started, errors))
    else:
        print(f"refvideo: error: {exc}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- demo


def demo_command(args: argparse.Namespace) -> int:
    if not DEMO_WORKFLOW.is_file():
        raise RefVideoError(f"the demo workflow {DEMO_WORKFLOW} is missing from this installation.",
                            fix="Reinstall RefVideo (pip install --force-reinstall comfyui-refvideo, or git checkout "
                                "the workflows folder).")
    args.workflow, args.set, args.input, args.server = str(DEMO_WORKFLOW), [], [], None
    return run_command(args)


# --------------------------------------------------------------------------- nodes


def nodes_command(args: argparse.Namespace) -> int:
    classes, names, load_errors = node_classes()
    info = {node_id: object_info(cls, node_id, names.get(node_id, node_id)) for node_id, cls in classes.items()}
    lines = []
    for node_id, entry in info.items():
        lines.append(f"{node_id}  ({entry['display_name']}){'  [output node]' if entry['output_node'] else ''}")
        for section in ("required", "optional"):
            for name, declared in entry["input"].get(section, {}).items():
                spec = parse_entry(name, declared, required=section == "required")
                lines.append(f"    {name}: {spec.type}{'' if spec.required else ' (optional)'}")
        outs = ", ".join(f"{n}: {t}" for n, t in zip(entry["output_name"], entry["output"]))
        lines.append(f"    -> {outs or 'nothing'}")
    for error in load_errors:
        lines.append(f"not loaded: {error}")
    emit(args, info, "\n".join(lines))
    return EXIT_OK if not load_errors else EXIT_FAILED
