"""``refvideo refs check IMAGE... | list | show NAME`` and ``refvideo skills list | show NAME``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...engine.errors import InputError
from ...engine.references.images import read_image_file
from ...engine.references.library import list_sets, set_manifest
from ...engine.references.quality import Finding, check_reference
from ...engine.references.reference import ROLES
from ...engine.skills import list_skills, skill_document
from ...jobs.reference_prep import AUTO, BACKGROUND_MODES, OFF, auto_background, matte_for, trusted_matte
from .main import EXIT_BAD_INPUT, EXIT_OK, emit


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    refs = commands.add_parser("refs", help="reference images: quality checks and saved reference sets",
                               description="Check reference images against the best practices, and list or show "
                                           "the saved reference sets.")
    actions = refs.add_subparsers(dest="refs_action", metavar="ACTION", required=True)
    check = actions.add_parser("check", parents=[parent], help="the quality report of reference images",
                               description="Exit 2 when an image cannot be read (it gets one 'unreadable' finding).")
    check.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    check.add_argument("--role", default="character", choices=ROLES,
                       help="the role the images would have (default: character; decides which checks apply)")
    check.add_argument("--background", default=OFF, choices=BACKGROUND_MODES,
                       help="background removal before the checks (default: off)")
    check.add_argument("--rembg-model", default="u2netp", help="the rembg model for --background rembg")
    check.set_defaults(func=check_command)
    listing = actions.add_parser("list", parents=[parent], help="the saved reference sets")
    listing.set_defaults(func=list_sets_command)
    show = actions.add_parser("show", parents=[parent], help="one saved reference set's manifest")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=show_set_command)

    skills = commands.add_parser("skills", help="saved style skills", description="List or show saved style skills.")
    skill_actions = skills.add_subparsers(dest="skills_action", metavar="ACTION", required=True)
    skill_list = skill_actions.add_parser("list", parents=[parent], help="the saved style skills")
    skill_list.set_defaults(func=list_skills_command)
    skill_show = skill_actions.add_parser("show", parents=[parent], help="one saved style skill")
    skill_show.add_argument("name", metavar="NAME")
    skill_show.set_defaults(func=show_skill_command)


# --------------------------------------------------------------------------- refs check


def check_one(image: str, *, role: str, background: str, rembg_model: str) -> tuple[list[Finding], bool]:
    """The findings for one image file and whether it could be read."""
    try:
        loaded = read_image_file(Path(image), input_name="IMAGE", source=image)
    except InputError as exc:
        return [Finding("unreadable", "error", exc.message, exc.fix or "Give a PNG, JPEG or WebP image.")], False
    if background == AUTO:
        background, _note = auto_background(role, loaded, rembg_model)
    matte = matte_for(loaded, background, rembg_model)
    return check_reference(loaded.rgb, role=role, matte=trusted_matte(matte, background)), True


def check_command(args: argparse.Namespace) -> int:
    report, all_read, lines = [], True, []
    for image in args.images:
        findings, readable = check_one(image, role=args.role, background=args.background,
                                       rembg_model=args.rembg_model)
        all_read &= readable
        report.append({"image": image, "findings": [f.to_dict() for f in findings]})
        lines.append(f"{image}: " + ("ok, no findings" if not findings else f"{len(findings)} finding(s)"))
        lines.extend(f"  {f.line()}" for f in findings)
    emit(args, report, "\n".join(lines))
    return EXIT_OK if all_read else EXIT_BAD_INPUT


# --------------------------------------------------------------------------- saved sets and skills


def _summaries(names: list[str], read) -> list[dict]:
    """One entry per saved asset; a damaged one is listed with its error instead of failing the list."""
    entries = []
    for name in names:
        try:
            entries.append({"name": name, **read(name)})
        except InputError as exc:  # a damaged file, an odd name, a link leading out: listed, not fatal
            entries.append({"name": name, "error": str(exc)})
    return entries


def _set_summary(name: str) -> dict:
    manifest = set_manifest(name)
    return {"updated": manifest.get("updated"),
            "references": [{"role": r["role"], "label": r["label"]} for r in manifest["references"]]}


def list_sets_command(args: argparse.Namespace) -> int:
    entries = _summaries(list_sets(), _set_summary)
    lines = [f"{e['name']}: " + (e["error"] if "error" in e else
                                 ", ".join(f"{r['role']}" + (f" '{r['label']}'" if r["label"] else "")
                                           for r in e["references"]))
             for e in entries]
    emit(args, entries, "\n".join(lines) or "No saved reference sets yet.")
    return EXIT_OK


def show_set_command(args: argparse.Namespace) -> int:
    manifest = set_manifest(args.name)
    times = f"created {manifest.get('created')}, updated {manifest.get('updated')}"
    lines = [f"{manifest.get('name') or args.name} ({manifest['folder']})",
             f"{times}, pack {manifest.get('pack_version')}"]
    for i, ref in enumerate(manifest["references"], 1):
        label = f" '{ref['label']}'" if ref["label"] else ""
        lines.append(f"{i}. {ref['role']}{label}: {ref['source']}, background {ref.get('background', OFF)}, "
                     f"sha256 {ref['sha256']}")
    emit(args, manifest, "\n".join(lines))
    return EXIT_OK


def _skill_summary(name: str) -> dict:
    document = skill_document(name)
    return {"updated": document.get("updated"), "style": document.get("style", "")}


def list_skills_command(args: argparse.Namespace) -> int:
    entries = _summaries(list_skills(), _skill_summary)
    lines = [f"{e['name']}: {e.get('error') or e.get('style') or '(no style text)'}" for e in entries]
    emit(args, entries, "\n".join(lines) or "No saved style skills yet.")
    return EXIT_OK


def show_skill_command(args: argparse.Namespace) -> int:
    document = skill_document(args.name)
    lines = [f"{document.get('name') or args.name} ({document['path']})"]
    lines += [f"{key}: {document.get(key) or '(none)'}" for key in ("style", "negative", "camera")]
    if document.get("defaults"):
        lines.append("defaults: " + ", ".join(f"{k}={v}" for k, v in document["defaults"].items()))
    emit(args, document, "\n".join(lines))
    return EXIT_OK
