"""The reference set: 1-3 prepared reference images with roles, labels and mattes.

This is the REFVIDEO_REFSET value that LoadReferenceSet produces and every backend reads.
Images are RGB float32 ``[H, W, 3]`` in 0..1; masks are float32 ``[H, W]`` in 0..1 where 1
is the subject (all ones when no background removal was asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROLES: tuple[str, ...] = ("character", "environment", "prop", "style")
SUBJECT_ROLES: frozenset[str] = frozenset({"character", "prop"})
"""Roles that are one thing cut out of its photo: background removal (``auto``) and matting and
cropping onto the canvas apply to them. An environment or a style is a whole picture, used whole."""


def is_subject(role: str) -> bool:
    """Whether a reference of ``role`` is cut out of its background (see :data:`SUBJECT_ROLES`)."""
    return role in SUBJECT_ROLES
MAX_REFERENCES = 3


@dataclass(frozen=True, eq=False)
class Reference:
    """One prepared reference image."""

    image: np.ndarray
    mask: np.ndarray
    role: str
    label: str = ""
    sha256: str = ""
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def describe(self) -> dict:
        """What the generation info records about this reference."""
        return {"hash": self.sha256, "role": self.role, "label": self.label, "source": self.source,
                "size": [self.width, self.height]}


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """1-3 references in order, optionally saved under a name."""

    references: tuple[Reference, ...]
    name: str | None = None
    findings: tuple = field(default=())

    def __len__(self) -> int:
        return len(self.references)

    def __iter__(self):
        return iter(self.references)

    def with_role(self, *roles: str) -> list[Reference]:
        return [r for r in self.references if r.role in roles]
