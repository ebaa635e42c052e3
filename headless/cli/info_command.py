"""``refvideo info FILE [--json]``: the generation info (``refvideo`` manifest) of a written clip."""

from __future__ import annotations

import argparse
import json

from ...engine.video import manifest
from .main import emit


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "info", parents=[parent], help="print the generation info stored in a clip",
        description="Print the 'refvideo' manifest (the generation info that re-renders the shot) stored in an "
                    "MP4, MOV or WebM clip, or a PNG-sequence folder, written by VideoEncode. With --json the "
                    "manifest itself is printed as one JSON object.")
    parser.add_argument("file", metavar="FILE", help="a clip written by VideoEncode (or its PNG-sequence folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = manifest.read_manifest(args.file)
    lines = [f"{args.file}"] + [f"  {line}" for line in manifest.summary_lines(data)]
    lines += ["", "generation info:", json.dumps(data, indent=2, ensure_ascii=False)]
    emit(args, data, "\n".join(lines))
    return 0
