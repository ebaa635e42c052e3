"""``refvideo continuity CLIP... (--reference-set NAME | --reference [ROLE=]IMAGE ...) [--encoder FILE]
[--plot FILE]``: the continuity report of a clip or of a sequence's shots in order."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...engine.continuity.check import analyse
from ...engine.continuity.picture import draw, save_png
from ...engine.continuity.sources import open_clip, read_reference
from ...engine.references.library import load_set
from ...models import image_encoders
from .main import EXIT_OK, emit


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "continuity", parents=[parent], help="the continuity report of clips against their references",
        description="Colour (CIELAB distances, exposure, white balance), likeness with an image encoder, "
                    "reference flash and drift across the clips, given in shot order. Exit 0 with or without "
                    "findings; 2 when an input cannot be read.")
    command.add_argument("clips", nargs="+", metavar="CLIP", help="clip files (or PNG-sequence folders), shot 1 first")
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference-set", metavar="NAME", help="a saved reference set (refvideo refs list)")
    source.add_argument("--reference", action="append", metavar="[ROLE=]IMAGE",
                        help="a reference image, e.g. character=mara.png (repeat for each; the role is guessed "
                             "and said when left out)")
    command.add_argument("--encoder", metavar="FILE", default=None,
                         help="an image encoder for likeness: a name in models/clip_vision/ or a path to a CLIP or "
                              "DINOv2 .safetensors file or transformers folder")
    command.add_argument("--plot", metavar="FILE", help="write the report's picture here (PNG)")
    command.set_defaults(func=continuity_command)


def _encoder(argument: str | None):
    if not argument:
        return None, image_encoders.choice_note("")
    path = Path(argument).expanduser()
    if path.exists():
        return image_encoders.load_encoder_at(path), ""
    return image_encoders.load_encoder(argument, input_name="--encoder"), ""


def continuity_command(args: argparse.Namespace) -> int:
    clips = [open_clip(path) for path in args.clips]      # every input checked before any work
    notes: list[str] = []
    if args.reference_set:
        references = list(load_set(args.reference_set, input_name="--reference-set"))
    else:
        references = []
        for argument in args.reference:
            reference, note = read_reference(argument)
            references.append(reference)
            notes += [note] if note else []
    encoder, encoder_note = _encoder(args.encoder)
    report = analyse(clips, references, encoder, encoder_note)
    if args.plot:
        save_png(draw(report, references), args.plot)
        report.plot = str(Path(args.plot).resolve())
    payload = {**report.to_dict(), "notes": notes}
    emit(args, payload, "\n".join(notes + [report.text()]))
    return EXIT_OK
