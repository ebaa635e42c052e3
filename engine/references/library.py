"""Named reference sets ("reference sheets"), saved and loaded by name.

A set is a folder ``<sets dir>/<name>/`` holding ``manifest.json`` (format, name, pack
version, created/updated times, and per reference: role, label, source, size, the sha256 of
its pixels and of its matte, and its two file names) plus one PNG per image and per matte.
Image files are named by content hash, so saving writes the new files first, then replaces
the manifest atomically (the commit point), then removes files no longer listed: an
interrupted save leaves the previous set intact. Loading checks every field and every hash,
so a corrupt or hand-edited set is refused with an error naming the set, never half-loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import host
from ..errors import InputError, StorageError
from ..library import UNCHANGED, save_rule, stamps
from ..paths import contained, pack_version
from ..storage import atomic_path, atomic_write_json, check_target, is_partial, name_lock, read_json, validate_name
from .images import from_uint8, pixels_sha256, read_image_file, to_uint8
from .reference import MAX_REFERENCES, ROLES, Reference, ReferenceSet

KIND = "reference set"
MANIFEST = "manifest.json"
FORMAT = 1
MAX_LABEL = 200  # as the loader node allows
MAX_SOURCE = 1000


def set_folder(name: str, *, input_name: str = "saved_set") -> Path:
    """The folder of set ``name`` (validated, contained in the sets folder; may not exist yet)."""
    cleaned = validate_name(name, kind=KIND, input_name=input_name)
    root = host.sets_dir()
    return contained(root, cleaned, input_name=input_name)


def list_sets() -> list[str]:
    """Names of the saved sets (folders with a manifest), sorted case-insensitively."""
    root = host.sets_dir()
    if not root.is_dir():
        return []
    names = [entry.name for entry in root.iterdir()
             if entry.is_dir() and not entry.name.startswith(".") and (entry / MANIFEST).is_file()]
    return sorted(names, key=str.lower)


def mask_sha256(mask: np.ndarray) -> str:
    """The content hash of a matte (stored as an 8-bit grey image)."""
    return pixels_sha256(np.repeat(np.asarray(mask, dtype=np.float32)[..., None], 3, axis=-1))


def _entry(ref: Reference, background: str) -> dict:
    """The manifest entry of ``ref``: the hashes of the pixels and matte as saved (what loading checks)
    and the file names made from them."""
    image_hash, mask_hash = pixels_sha256(ref.image), mask_sha256(ref.mask)
    return {"role": ref.role, "label": ref.label, "source": ref.source, "size": [ref.width, ref.height],
            "background": background, "sha256": image_hash, "mask_sha256": mask_hash,
            "image": f"image-{image_hash[:16]}.png", "mask": f"mask-{mask_hash[:16]}.png"}


def _same_content(manifest: dict, entries: list[dict]) -> bool:
    keys = ("role", "label", "sha256", "mask_sha256")
    old = [tuple(e.get(k) for k in keys) for e in manifest.get("references", [])]
    return old == [tuple(e[k] for k in keys) for e in entries]


def save_set(refset: ReferenceSet, name: str, *, overwrite: bool = False, backgrounds: list[str] | None = None,
             input_name: str = "save_as") -> tuple[Path, str]:
    """Save ``refset`` as ``name``; returns the folder and what happened (saved/replaced/unchanged).

    ``backgrounds`` records how each matte was made (``off``, ``flat background``, ``rembg``).
    An existing set with the same content is left as it is; one with other content is only
    replaced with ``overwrite``.
    """
    folder = check_target(set_folder(name, input_name=input_name), folder=True, input_name=input_name)
    modes = backgrounds or ["off"] * len(refset)
    entries = [_entry(ref, mode) for ref, mode in zip(refset, modes)]
    with name_lock(folder.parent, folder.name):
        return _save_locked(refset, folder, entries, overwrite=overwrite, input_name=input_name)


def _save_locked(refset: ReferenceSet, folder: Path, entries: list[dict], *, overwrite: bool,
                 input_name: str) -> tuple[Path, str]:
    cleaned = folder.name
    manifest_path = folder / MANIFEST

    def read_previous() -> dict:
        _load_locked(folder, input_name)  # every file present and matching its hash
        return _read_manifest(folder, cleaned)

    previous, status = save_rule(manifest_path, read_previous, lambda old: _same_content(old, entries), kind=KIND,
                                 name=cleaned, overwrite=overwrite, input_name=input_name)
    if status == UNCHANGED:
        return folder, status
    folder.mkdir(parents=True, exist_ok=True)
    for ref, entry in zip(refset, entries):
        _write_png(folder / entry["image"], to_uint8(ref.image), "RGB")
        _write_png(folder / entry["mask"], to_uint8(ref.mask), "L")
    atomic_write_json(manifest_path, {"format": FORMAT, "name": cleaned, "pack_version": pack_version(),
                                      **stamps(previous), "references": entries})
    keep = {e["image"] for e in entries} | {e["mask"] for e in entries}
    for stale in folder.iterdir():
        if stale.is_file() and stale.suffix == ".png" and stale.name not in keep and not is_partial(stale.name):
            stale.unlink()
    return folder, status


def _write_png(path: Path, pixels: np.ndarray, mode: str) -> None:
    with atomic_path(path) as tmp:
        # level 1: several times faster than the default on photos, about 15% larger
        Image.fromarray(pixels, mode).save(tmp, format="PNG", compress_level=1)


# --------------------------------------------------------------------------- loading


def _corrupt(name: str, folder: Path, problem: str) -> StorageError:
    return StorageError(f"the reference set '{name}' is damaged: {problem}.", input="saved_set",
                        fix=f"Save the set again under this name with 'overwrite' on, or delete {folder}.")


def _read_manifest(folder: Path, name: str) -> dict:
    fix = f"Save the set again under this name with 'overwrite' on, or delete {folder}."
    manifest = read_json(folder / MANIFEST, what=f"reference set '{name}' manifest", fix=fix)
    if not isinstance(manifest, dict):
        raise _corrupt(name, folder, "its manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise _corrupt(name, folder, f"its manifest format is {manifest.get('format')!r}, expected {FORMAT}")
    items = manifest.get("references")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_REFERENCES:
        raise _corrupt(name, folder, f"it must list 1-{MAX_REFERENCES} references")
    for index, item in enumerate(items, 1):
        _check_entry(item, index, name, folder)
    return manifest


def _check_entry(item: Any, index: int, name: str, folder: Path) -> None:
    if not isinstance(item, dict):
        raise _corrupt(name, folder, f"reference {index} is not a JSON object")
    for key in ("role", "label", "source", "sha256", "mask_sha256", "image", "mask"):
        if not isinstance(item.get(key), str):
            raise _corrupt(name, folder, f"reference {index} has no text field '{key}'")
    for key, limit in (("label", MAX_LABEL), ("source", MAX_SOURCE)):
        if len(item[key]) > limit:
            raise _corrupt(name, folder, f"reference {index}'s {key} is {len(item[key])} characters long "
                                         f"(at most {limit})")
    if item["role"] not in ROLES:
        raise _corrupt(name, folder, f"reference {index} has the unknown role '{item['role']}' "
                                     f"(roles: {', '.join(ROLES)})")


def _load_file(folder: Path, file_name: str, name: str, index: int) -> Path:
    try:
        path = contained(folder, file_name, input_name="saved_set")
    except InputError:
        raise _corrupt(name, folder, f"reference {index} names a file outside the set ('{file_name}')") from None
    if not path.is_file():
        raise _corrupt(name, folder, f"reference {index}'s file '{file_name}' is missing")
    return path


def load_set(name: str, *, input_name: str = "saved_set") -> ReferenceSet:
    """Load set ``name``: identical pixels and mattes to what was saved, or a clear error."""
    folder = set_folder(name, input_name=input_name)
    with name_lock(folder.parent, folder.name, shared=True):
        return _load_locked(folder, input_name)


def _load_locked(folder: Path, input_name: str) -> ReferenceSet:
    cleaned = folder.name
    if not (folder / MANIFEST).is_file():
        available = ", ".join(list_sets()) or "none yet"
        raise StorageError(f"there is no reference set named '{cleaned}'.", input=input_name,
                           fix=f"Choose a saved set (saved: {available}), or save one with 'save_as'.")
    manifest = _read_manifest(folder, cleaned)
    references = []
    for index, item in enumerate(manifest["references"], 1):
        try:
            image = read_image_file(_load_file(folder, item["image"], cleaned, index), input_name=input_name).rgb
            with Image.open(_load_file(folder, item["mask"], cleaned, index)) as mask_file:
                if mask_file.size != (image.shape[1], image.shape[0]):  # checked before decoding a single pixel
                    raise _corrupt(cleaned, folder, f"reference {index}'s matte is {mask_file.size[0]}x"
                                                    f"{mask_file.size[1]}, its image {image.shape[1]}x{image.shape[0]}")
                mask = from_uint8(np.asarray(mask_file.convert("L")))
        except InputError as exc:
            raise _corrupt(cleaned, folder, f"reference {index}'s image cannot be read ({exc.message})") from None
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _corrupt(cleaned, folder, f"reference {index}'s matte cannot be read ({exc})") from None
        if pixels_sha256(image) != item["sha256"] or mask.shape != image.shape[:2] \
                or mask_sha256(mask) != item["mask_sha256"]:
            raise _corrupt(cleaned, folder, f"reference {index}'s pixels do not match the hashes in its manifest "
                                            "(an image was edited or replaced)")
        references.append(Reference(image=image, mask=mask, role=item["role"], label=item["label"],
                                    sha256=item["sha256"], source=item["source"]))
    return ReferenceSet(tuple(references), name=cleaned)


def set_manifest(name: str) -> dict:
    """The manifest of set ``name`` (checked), with its folder."""
    folder = set_folder(name, input_name="name")
    if not (folder / MANIFEST).is_file():
        raise StorageError(f"there is no reference set named '{folder.name}'.", input="name",
                           fix=f"Saved sets: {', '.join(list_sets()) or 'none yet'}.")
    return {**_read_manifest(folder, folder.name), "folder": os.fspath(folder)}


def set_fingerprint(name: str) -> str:
    """A string that changes when set ``name`` changes on disk (for IS_CHANGED)."""
    try:
        return (set_folder(name) / MANIFEST).read_text(encoding="utf-8")
    except (InputError, OSError) as exc:
        return f"unreadable:{name}:{exc}"
