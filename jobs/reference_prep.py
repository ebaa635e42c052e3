"""Preparing a reference set: read 1-3 images, take the background off, check each one.

The order keeps expensive work last: every input is checked (roles, labels, background
modes, file containment, the rembg model file) before any image is decoded or any model
runs. Each reference's matte comes from its background mode (``off``: the file's alpha or
all ones; ``flat background``: the flat-background key; ``rembg``: the rembg model;
``auto``, the default: see :func:`auto_background`) and the quality checks run with it.
Findings go into the set and a text report; ``strict`` turns warnings into errors, and errors
refuse the set.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from ..engine import host, ranks
from ..engine.errors import InputError
from ..engine.frames import fit_box
from ..engine.library import optional_name, report_line
from ..engine.prompting import typed_text
from ..engine.references.images import (
    NONE,
    LoadedImage,
    composite_over_white,
    from_uint8,
    read_image_file,
    read_image_socket,
    resolve_image_name,
    to_uint8,
)
from ..engine.references.library import KIND as SET_KIND
from ..engine.references.library import load_set, save_set, set_fingerprint, set_manifest
from ..engine.references.matting import flat_background_key
from ..engine.references.quality import Finding, check_reference
from ..engine.references.quality import strict as make_strict
from ..engine.references.reference import MAX_REFERENCES, ROLES, Reference, ReferenceSet, is_subject
from ..engine.storage import file_sha256

OFF, REMBG, FLAT, AUTO = "off", "rembg", "flat background", "auto"
BACKGROUND_MODES = (AUTO, OFF, FLAT, REMBG)
MAX_LABEL = 200


@dataclass(frozen=True)
class ReferenceInput:
    """What the user gave for one reference slot (1-3)."""

    index: int
    image_name: str = NONE
    image: Any = None          # an IMAGE socket value; wins over the file
    role: str = "character"
    label: str = ""
    background: str = AUTO

    @property
    def given(self) -> bool:
        return self.image is not None or (self.image_name or NONE) != NONE


@dataclass(frozen=True, eq=False)
class Prepared:
    """A prepared set, its findings per reference, and the report shown in the node."""

    references: ReferenceSet
    findings: tuple[tuple[Finding, ...], ...]
    report: str
    backgrounds: tuple[str, ...]


# --------------------------------------------------------------------------- checks before work


def check_inputs(slots: list[ReferenceInput]) -> list[ReferenceInput]:
    """The given slots, after checking roles, labels and background modes (no file is read)."""
    given = [slot for slot in slots if slot.given]
    if not given:
        raise InputError("no reference image was given.", input="image_1",
                         fix="Choose an image for image_1 (or connect an IMAGE to image_in_1).")
    if len(given) > MAX_REFERENCES:
        raise InputError(f"{len(given)} references were given; at most {MAX_REFERENCES} fit.", input="image_1",
                         fix=f"Use {MAX_REFERENCES} references or fewer.")
    for slot in given:
        if slot.role not in ROLES:
            raise InputError(f"'{slot.role}' is not a role.", input=f"role_{slot.index}",
                             fix=f"Use one of: {', '.join(ROLES)}.")
        if slot.label is None or len(slot.label if isinstance(slot.label, str) else "") > MAX_LABEL:
            raise InputError(f"the label must be text of at most {MAX_LABEL} characters.",
                             input=f"label_{slot.index}", fix="Give a short label such as 'Mara, red coat'.")
        typed_text(slot.label, f"label_{slot.index}", limit=MAX_LABEL,
                   fix="Give a short label such as 'Mara, red coat'.")
        if slot.background not in BACKGROUND_MODES:
            raise InputError(f"'{slot.background}' is not a background mode.", input=f"background_{slot.index}",
                             fix=f"Use one of: {', '.join(BACKGROUND_MODES)}.")
        if slot.image is None:
            resolve_image_name(slot.image_name, input_name=f"image_{slot.index}")
    return given


def check_rembg_model(slots: list[ReferenceInput], model: str) -> None:
    """Refuse a missing rembg model file before any image is decoded."""
    if any(slot.background == REMBG for slot in slots):
        from ..models.background_removal import find_model_file

        find_model_file(model)


# --------------------------------------------------------------------------- preparing


def read_slot(slot: ReferenceInput) -> LoadedImage:
    """The slot's image: the IMAGE socket when connected, else the file."""
    if slot.image is not None:
        return read_image_socket(slot.image, input_name=f"image_in_{slot.index}")
    path = resolve_image_name(slot.image_name, input_name=f"image_{slot.index}")
    return read_image_file(path, input_name=f"image_{slot.index}", source=slot.image_name)


def rembg_ready(model: str) -> bool:
    """Whether rembg and the chosen model file are installed (nothing is loaded)."""
    if importlib.util.find_spec("rembg") is None or importlib.util.find_spec("onnxruntime") is None:
        return False
    from ..models.background_removal import find_model_file

    try:
        find_model_file(model)
    except InputError:
        return False
    return True


def auto_background(role: str, loaded: LoadedImage, rembg_model: str) -> tuple[str, str]:
    """The mode ``auto`` means for one reference, and a note for the report (empty when all is well).

    A character or prop is cut out: its file's transparency when it has one, else rembg when
    installed, else the flat key when the backdrop is flat; otherwise its background stays in
    and the note says how to fix it. An environment or a style is used whole (``off``).
    """
    if not is_subject(role) or loaded.alpha is not None:
        return OFF, ""
    if rembg_ready(rembg_model):
        return REMBG, ""
    if flat_background_key(loaded.rgb).trusted:
        return FLAT, ""
    return OFF, (f"background kept: the {role}'s backdrop is not flat and rembg is not installed, so the photo's "
                 "background will be pasted into the clip; install rembg (pip install rembg[cpu]) with its model "
                 "file, or use a photo on a plain backdrop or with transparency")


def matte_for(loaded: LoadedImage, mode: str, rembg_model: str) -> np.ndarray:
    """The subject matte for a background mode (1 = subject, 8-bit-exact)."""
    if mode == FLAT:
        return flat_background_key(loaded.rgb).matte
    if mode == REMBG:
        from ..models.background_removal import remove_background

        return remove_background(loaded.rgb, rembg_model)
    if loaded.alpha is not None:
        return loaded.alpha  # read from 8 bits: already 8-bit-exact
    return np.ones(loaded.rgb.shape[:2], dtype=np.float32)


def trusted_matte(matte: np.ndarray, mode: str) -> np.ndarray | None:
    """The matte the checks may rely on: from rembg or the file's alpha, never the flat key itself.

    (The checks run their own flat key and judge whether the backdrop is flat enough for it.)
    """
    if mode == FLAT or bool(matte.min() >= 1.0):
        return None
    return matte


def prepare_set(slots: list[ReferenceInput], *, rembg_model: str = "u2netp", strict: bool = False) -> Prepared:
    """Check, read, matte and judge 1-3 references; raise when an error finding remains."""
    given = check_inputs(slots)
    check_rembg_model(given, rembg_model)
    references: list[Reference] = []
    notes: list[tuple[str, ...]] = []
    modes: list[str] = []
    with host.Progress(len(given), "Preparing references") as progress:
        for slot in given:
            loaded = read_slot(slot)
            mode, note = slot.background, ""
            if mode == AUTO:
                mode, note = auto_background(slot.role, loaded, rembg_model)
            modes.append(mode)
            matte = matte_for(loaded, mode, rembg_model)
            references.append(Reference(image=loaded.rgb, mask=matte, role=slot.role, label=slot.label.strip(),
                                        sha256=loaded.sha256, source=loaded.source))
            notes.append((*loaded.notes, *([f"auto: {mode}"] if slot.background == AUTO else []),
                          *([note] if note else [])))
            progress.update()
    inputs = [f"image_{s.index}" if s.image is None else f"image_in_{s.index}" for s in given]
    return judge_set(ReferenceSet(tuple(references)), modes, notes, inputs, strict=strict)


def judge_set(refset: ReferenceSet, backgrounds: list[str], notes: list[tuple[str, ...]], inputs: list[str], *,
              strict: bool, header: str = "") -> Prepared:
    """Run the checks on every reference; build the report; refuse on error findings.

    ``inputs`` names the node input each reference came from (for the error).
    """
    per_reference: list[tuple[Finding, ...]] = []
    for ref, mode in zip(refset, backgrounds):
        found = check_reference(ref.image, role=ref.role, matte=trusted_matte(ref.mask, mode))
        per_reference.append(tuple(make_strict(found) if strict else found))
    flat = tuple({"reference": i, **f.to_dict()} for i, found in enumerate(per_reference, 1) for f in found)
    refset = ReferenceSet(refset.references, name=refset.name, findings=flat)
    report = report_text(refset, per_reference, backgrounds, notes, header=header)
    errors = [(i, f) for i, found in enumerate(per_reference, 1) for f in found if f.severity == "error"]
    if errors:
        lines = "; ".join(f"reference {i} ({refset.references[i - 1].source}): {f.message}" for i, f in errors)
        raise InputError(f"the references are not usable as they are: {lines}", input=inputs[errors[0][0] - 1],
                         fix=" ".join(dict.fromkeys(f.fix for _, f in errors))
                         + (" (strict is on: warnings count as errors.)" if strict else ""))
    return Prepared(refset, tuple(per_reference), report, tuple(backgrounds))


def load_saved(name: str, *, strict: bool = False) -> Prepared:
    """A saved set, re-checked with the current thresholds."""
    refset = load_set(name)
    entries = set_manifest(name)["references"]
    backgrounds = [entry.get("background", OFF) for entry in entries]
    return judge_set(refset, backgrounds, [()] * len(refset), ["saved_set"] * len(refset), strict=strict,
                     header=f"Loaded the saved reference set '{refset.name}' (the image inputs are not used).")


def save_prepared(prepared: Prepared, name: str, *, overwrite: bool) -> Prepared:
    """Save a prepared set under ``name``: the set gets the name and the report says what happened."""
    # under torchrun rank 0 writes and every rank gets where
    folder, status = ranks.on_main_shared(lambda: save_set(prepared.references, name, overwrite=overwrite,
                                                            backgrounds=list(prepared.backgrounds)))
    named = ReferenceSet(prepared.references.references, name=folder.name, findings=prepared.references.findings)
    line = report_line(status, kind=SET_KIND, name=folder.name, where=folder)
    return replace(prepared, references=named, report=f"{prepared.report}\n{line}")


def reference_set(slots: list[ReferenceInput], *, rembg_model: str = "u2netp", strict: bool = False,
                  saved_set: str = NONE, save_as: str = "", overwrite: bool = False) -> Prepared:
    """What LoadReferenceSet does: build (or load) the set, check it, optionally save it by name."""
    save_name = optional_name(save_as, kind=SET_KIND)
    if saved_set and saved_set != NONE:
        prepared = load_saved(saved_set, strict=strict)
    else:
        prepared = prepare_set(slots, rembg_model=rembg_model, strict=strict)
    return save_prepared(prepared, save_name, overwrite=overwrite) if save_name else prepared


# --------------------------------------------------------------------------- report and preview


def report_text(refset: ReferenceSet, findings: list[tuple[Finding, ...]], backgrounds: list[str],
                notes: list[tuple[str, ...]], *, header: str = "") -> str:
    """The per-reference quality report shown in the node and returned as a STRING."""
    count = len(refset)
    lines = [header] if header else []
    lines.append(f"{count} reference{'s' if count != 1 else ''}:")
    for i, (ref, found, mode, note) in enumerate(zip(refset, findings, backgrounds, notes), 1):
        label = f' "{ref.label}"' if ref.label else ""
        extra = f"; {'; '.join(note)}" if note else ""
        lines.append(f"{i}. {ref.role}{label}: {ref.source}, {ref.width}x{ref.height}, background {mode}, "
                     f"sha256 {ref.sha256[:12]}{extra}")
        lines.extend(f"   {f.line()}" for f in found)
        if not found:
            lines.append("   ok: no findings")
    return "\n".join(lines)


def preview_batch(refset: ReferenceSet) -> tuple[np.ndarray, np.ndarray]:
    """IMAGE ``[N, H, W, 3]`` (each reference over white where its matte says background) and MASK ``[N, H, W]``.

    References of different sizes are fitted, centred, into the largest width and height.
    """
    height = max(ref.height for ref in refset)
    width = max(ref.width for ref in refset)
    images = np.ones((len(refset), height, width, 3), dtype=np.float32)
    masks = np.zeros((len(refset), height, width), dtype=np.float32)
    for i, ref in enumerate(refset):
        image, mask = ref.image, ref.mask
        size, (left, top) = fit_box(ref.width, ref.height, width, height)
        if (ref.width, ref.height) != (width, height):
            image = from_uint8(np.asarray(Image.fromarray(to_uint8(image)).resize(size, Image.Resampling.LANCZOS)))
            mask = from_uint8(np.asarray(Image.fromarray(to_uint8(mask)).resize(size, Image.Resampling.BILINEAR)))
        window = (i, slice(top, top + size[1]), slice(left, left + size[0]))
        images[window] = composite_over_white(image, mask)
        masks[window] = mask
    return images, masks


# --------------------------------------------------------------------------- change detection


def inputs_fingerprint(image_names: list[str], saved_set: str = NONE) -> str:
    """A digest that changes when a named image file or the saved set changes on disk."""
    digest = hashlib.sha256()
    if saved_set and saved_set != NONE:
        digest.update(set_fingerprint(saved_set).encode())
    for index, name in enumerate(image_names, 1):
        if not name or name == NONE:
            continue
        try:
            content = file_sha256(resolve_image_name(name, input_name=f"image_{index}"))
        except (InputError, OSError) as exc:
            content = f"unreadable: {exc}"
        digest.update(f"{index}:{name}:{content}\n".encode())
    return digest.hexdigest()
