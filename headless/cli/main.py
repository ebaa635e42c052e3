"""The ``refvideo`` command: parser, exit codes, ``--json`` output and Ctrl-C handling.

Exit codes: 0 ok; 2 bad input or refused (nothing was run); 1 failure while running;
130 interrupted. Each command group lives in its own module with a ``register`` function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...engine import host
from ...engine.errors import InputError, Interrupted, RefVideoError, Terminated

COMMAND_MODULES: tuple[str, ...] = (
    "workflow_commands",
    "info_command",
    "library_commands",
    "credits_commands",
    "sequence_commands",
    "continuity_command",
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parent.add_argument("--comfyui-dir", metavar="PATH",
                        help="use this ComfyUI install's input, output, model, library and ledger locations")
    return parent


def build_parser() -> argparse.ArgumentParser:
    from ...engine.paths import pack_version

    parser = argparse.ArgumentParser(
        prog="refvideo",
        description="RefVideo: reference images + a shot description -> a video clip that keeps their look.",
    )
    parser.add_argument("--version", action="version", version=f"refvideo {pack_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = common_options()
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            continue
        module.register(commands, parent)
    return parser


def emit(args: argparse.Namespace, payload: Any, text: str | None = None) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text`` (or the payload) as text."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    elif text is not None:
        print(text)
    elif payload is not None:
        print(payload if isinstance(payload, str) else json.dumps(payload, indent=2, default=str))


def error_payload(errors: list[dict]) -> dict:
    return {"ok": False, "errors": errors}


def error_entries(exc: BaseException) -> list[dict]:
    """The ``errors`` list of the ``--json`` output for ``exc``: node, input, type, message each."""
    problems = getattr(exc, "problems", None)
    if problems is not None:  # a WorkflowInvalid: every problem at once
        return [p.to_dict() for p in problems]
    if isinstance(exc, RefVideoError):
        return [{"node": None, **exc.to_dict()}]
    return [{"node": None, "input": None, "type": type(exc).__name__, "message": str(exc) or type(exc).__name__}]


def _report(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    entries = error_entries(exc)
    if getattr(args, "json", False):
        print(json.dumps(error_payload(entries), indent=2, default=str))
    else:
        print(f"refvideo: error: {exc}", file=sys.stderr)
    return code


def check_comfyui_dir(path: str | None) -> str | None:
    """``--comfyui-dir`` must name a ComfyUI install, so a typo never creates a second ledger."""
    if path is None:
        return None
    folder = Path(path).expanduser()
    if not ((folder / "main.py").is_file() or (folder / "folder_paths.py").is_file()):
        raise InputError(f"{folder} is not a ComfyUI folder (it has no main.py).", input="--comfyui-dir",
                         fix="Give the folder that holds ComfyUI's main.py, e.g. --comfyui-dir ~/ComfyUI.")
    return str(folder)


class CtrlC:
    """Signals end a run cleanly. The first Ctrl-C asks the run to stop between steps; a second one aborts
    at once. SIGTERM and SIGHUP abort at once, as a second Ctrl-C does. Once aborting, later signals
    are ignored, so the clean-up (temporary files removed, held credits released) always finishes
    and the exit code is 130 (128 + the signal for SIGTERM/SIGHUP), never a traceback."""

    ENDING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self.pressed = 0
        self.aborting = False

    def __enter__(self) -> CtrlC:
        host.clear_interrupt()
        for signum, handler in ((signal.SIGINT, self._handle), *((s, self._end) for s in self.ENDING)):
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread
                break
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.aborting:
            return
        self.pressed += 1
        if self.pressed == 1:
            host.request_interrupt()
            print("\nrefvideo: stopping after the current step (press Ctrl-C again to abort now)...",
                  file=sys.stderr)
            return
        self.aborting = True
        raise KeyboardInterrupt

    def _end(self, signum: int, frame: Any) -> None:
        if self.aborting:
            return
        self.aborting = True
        host.request_interrupt()
        raise Terminated(signum)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            # after an abort, stay deaf to signals until the process has exited
            signal.signal(signum, signal.SIG_IGN if self.aborting else previous)
        host.clear_interrupt()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="refvideo: %(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        host.configure(comfyui_dir=check_comfyui_dir(getattr(args, "comfyui_dir", None)))
    except RefVideoError as exc:
        return _report(args, exc, exc.exit_code)
    with CtrlC():
        try:
            return int(func(args) or 0)
        except Terminated as exc:
            return _report(args, Interrupted(str(exc)), exc.exit_code)
        except (Interrupted, KeyboardInterrupt):
            return _report(args, Interrupted("Interrupted: stopped before finishing; no partial output was "
                                             "kept."), EXIT_INTERRUPTED)
        except RefVideoError as exc:
            return _report(args, exc, exc.exit_code)
        except BrokenPipeError:
            return EXIT_OK
        except Exception as exc:  # a bug or an environment problem: say so plainly, exit 1
            if host.is_interrupt(exc):
                return _report(args, exc, EXIT_INTERRUPTED)
            logging.getLogger("refvideo").debug("unexpected error", exc_info=True)
            return _report(args, exc, EXIT_FAILED)
