"""What the continuity check reads from disk: clips (video files or PNG-sequence folders) and reference
images given as ``ROLE=IMAGE`` (or ``IMAGE``, whose role is then guessed and said)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..references.images import read_image_file
from ..references.matting import downsample, flat_background_key
from ..references.quality import edge_contact
from ..references.reference import ROLES, Reference
from ..video.files import VideoFile
from .check import ClipInput

SUBJECT_SHARE = (0.05, 0.6)   # a keyed subject covering this share of the frame reads as a character...
EDGE_CONTACT = 0.1            # ...when it touches no frame edge over more than this share of it


def open_clip(path: str) -> ClipInput:
    """A clip file (or PNG-sequence folder) to stream, checked readable before any work."""
    video = VideoFile(path)
    if not video.path.exists():
        raise InputError(f"'{path}' does not exist.", input="CLIP", fix="Give the path of a rendered clip.")
    try:
        fps = float(video.get_frame_rate())
        video.get_dimensions()
    except (OSError, ValueError, IndexError) as exc:  # PyAV's errors are OSErrors or ValueErrors
        raise InputError(f"'{path}' cannot be read as a video ({exc}).", input="CLIP",
                         fix="Give an MP4, WebM, MOV, GIF, WebP or a folder of PNG frames.") from None
    return ClipInput(str(path), video.iter_frames(), fps)


def guess_role(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[str, str]:
    """A role for an image given without one, and why: a cut-out or keyed subject is a character, a full
    picture an environment."""
    if alpha is not None and (alpha < 0.5).mean() > 0.05:
        return "character", "it has a transparent background"
    key = flat_background_key(downsample(rgb, 256))
    share = float((key.matte > 0.5).mean())
    if key.trusted and SUBJECT_SHARE[0] < share < SUBJECT_SHARE[1] and edge_contact(key.matte, 3)[0] < EDGE_CONTACT:
        return "character", "one subject on a flat backdrop"
    return "environment", "a full picture without a flat backdrop"


def read_reference(argument: str) -> tuple[Reference, str | None]:
    """A ``--reference`` argument (``ROLE=IMAGE`` or ``IMAGE``) as a reference, and the note saying the
    guessed role (None when the role was given)."""
    prefix = argument.split("=", 1)[0]
    if "=" in argument and prefix not in ROLES and not Path(argument).exists():
        raise InputError(f"'{prefix}' in '{argument}' is not a role.", input="--reference",
                         fix=f"Write ROLE=IMAGE with ROLE one of: {', '.join(ROLES)}.")
    role, _, path = argument.partition("=") if prefix in ROLES else ("", "", argument)
    loaded = read_image_file(Path(path), input_name="--reference", source=path)
    note = None
    if not role:
        role, why = guess_role(loaded.rgb, loaded.alpha)
        note = f"{path}: role guessed as '{role}' ({why}); write {role}={path} (or another role) to set it."
    if loaded.alpha is not None:
        mask = loaded.alpha
    elif role in ("character", "prop"):
        key = flat_background_key(loaded.rgb)
        mask = key.matte if key.trusted else np.ones(loaded.rgb.shape[:2], np.float32)
    else:
        mask = np.ones(loaded.rgb.shape[:2], np.float32)
    return Reference(loaded.rgb, mask, role, Path(path).stem, loaded.sha256, path), note
