"""``refvideo sequence plan FILE`` and ``refvideo sequence render FILE``: a storyboard priced, then rendered."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from ...engine import host
from .main import EXIT_FAILED, EXIT_OK, emit


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    sequence = commands.add_parser("sequence", help="plan or render a storyboard (a shot list in YAML or JSON)",
                                   description="Price a storyboard's shots up front, or render them in dependency "
                                               "order (resumable), with a joined sequence, an OpenTimelineIO "
                                               "timeline and a contact sheet for the editor.")
    actions = sequence.add_subparsers(dest="sequence_action", metavar="ACTION", required=True)
    plan = actions.add_parser("plan", parents=[parent], help="frames, size, model and credits per shot and in total")
    plan.add_argument("file", metavar="FILE", help="the storyboard (see workflows/storyboards/)")
    plan.set_defaults(func=plan_command)

    render = actions.add_parser("render", parents=[parent], help="render (or resume) every shot, then hand off")
    render.add_argument("file", metavar="FILE", help="the storyboard (see workflows/storyboards/)")
    render.add_argument("--output-dir", metavar="D",
                        help="where <shot>.mp4, <sequence>.mp4/.otio and <sequence>_contact.png go "
                             "(default: the output folder's <sequence>/)")
    render.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="render each shot as a Ray task: a local Ray on this machine, or the cluster at "
                             "ADDRESS (needs the 'ray' extra)")
    render.add_argument("--gpus-per-shot", type=float, default=1.0, metavar="N",
                        help="GPUs each shot asks Ray for (default 1; previz always runs on CPU)")
    render.set_defaults(func=render_command)


def plan_command(args: argparse.Namespace) -> int:
    from ...engine.sequence.storyboard import read_storyboard
    from ...jobs.sequence.plan import plan_sequence

    plan = plan_sequence(read_storyboard(args.file))
    emit(args, plan.to_dict(), plan.text())
    return EXIT_OK


def render_command(args: argparse.Namespace) -> int:
    from ...engine.sequence.storyboard import read_storyboard
    from ...jobs.sequence.render import render_sequence

    storyboard = read_storyboard(args.file)
    out = Path(args.output_dir) if args.output_dir else host.output_dir() / storyboard.sequence
    quiet = args.json

    def notify(text: str) -> None:
        if not quiet:
            print(f"refvideo: {text}", file=sys.stderr)

    with ExitStack() as stack:
        runner = None
        if args.ray is not None:
            from ...jobs.sequence.ray_fanout import RayRunner

            runner = RayRunner(None if args.ray == "local" else args.ray, gpus_per_shot=args.gpus_per_shot)
            stack.callback(runner.close)
        result = render_sequence(storyboard, out, runner=runner, notify=notify)
    emit(args, result.to_dict(), result.text())
    return EXIT_OK if result.ok else EXIT_FAILED
