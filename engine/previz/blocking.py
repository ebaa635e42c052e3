"""Previz blocking: where each reference of a set stands in the animatic.

A simple, deterministic layout read from ``engine/data/previz_blocking.json``: the first
environment reference is the background plate, characters stand on a ground line at the
subject's depth (the first character is the subject), props stand nearer the camera, off to
the side (or take the subject's place when there is no character), and style references
only tint the grade. Positions are given with the camera at rest, in fractions of the frame,
so every aspect ratio gets the same composition.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..references.reference import Reference, ReferenceSet
from ..storage import read_data


def blocking_data() -> dict:
    """The bundled blocking and stage settings (loaded once)."""
    return read_data("previz_blocking.json")


@dataclass(frozen=True)
class Placement:
    """One foreground layer at rest: foot point, on-screen height and depth."""

    reference: Reference
    x: float  # fraction of the frame width from the centre
    ground: float  # fraction of the frame height from the top
    height: float  # fraction of the frame height
    depth: float
    is_subject: bool = False

    def describe(self) -> dict:
        return {"role": self.reference.role, "label": self.reference.label, "x": self.x, "ground": self.ground,
                "height": self.height, "depth": self.depth, "subject": self.is_subject}


@dataclass(frozen=True)
class Blocking:
    """The scene: background, foreground layers (far to near), style references, depths."""

    background: Reference | None
    layers: tuple[Placement, ...]
    styles: tuple[Reference, ...]
    subject_depth: float
    background_depth: float
    foreground_depth: float
    overscan: float
    warnings: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"background": self.background.label or "environment" if self.background else "stage",
                "layers": [p.describe() for p in self.layers], "styles": len(self.styles)}


def block_scene(references: ReferenceSet) -> Blocking:
    """Lay out a reference set: background, characters, props, styles."""
    data = blocking_data()
    warnings = []
    environments = references.with_role("environment")
    characters: list[Reference] = []
    props: list[Reference] = []
    for ref in references.with_role("character", "prop"):
        if float(ref.mask.max()) < 0.05:
            warnings.append(f"the matte of the {ref.role} reference '{ref.label or ref.source}' is empty, so previz "
                            "leaves it out; check its background removal in LoadReferenceSet.")
        else:
            (characters if ref.role == "character" else props).append(ref)
    if len(environments) > 1:
        warnings.append(f"previz uses the first environment reference as the background; "
                        f"{len(environments) - 1} more are not drawn.")
    layers = _place(characters, data["characters"])
    layers += _place(props, data["props"] if characters else data["props_alone"])
    if layers:
        first = layers[0]
        layers[0] = Placement(first.reference, first.x, first.ground, first.height, first.depth, is_subject=True)
    for placement in layers:
        if float(placement.reference.mask.min()) >= 0.999:
            name = placement.reference.label or placement.reference.source
            warnings.append(f"the {placement.reference.role} reference '{name}'"
                            " has no matte, so previz shows it as a rectangle; turn on background removal in "
                            "LoadReferenceSet to cut it out.")
    subject_depth = next((p.depth for p in layers if p.is_subject), float(data["subject_depth"]))
    nearest = min((p.depth for p in layers if not p.is_subject), default=None)
    foreground = nearest if nearest is not None and nearest < subject_depth else subject_depth * float(
        data["foreground_focus_depth"])
    return Blocking(
        background=environments[0] if environments else None,
        layers=tuple(sorted(layers, key=lambda p: -p.depth)),
        styles=tuple(references.with_role("style")),
        subject_depth=subject_depth,
        background_depth=float(data["background"]["depth"]),
        foreground_depth=foreground,
        overscan=float(data["background"]["overscan"]),
        warnings=tuple(warnings),
    )


def _place(references: list[Reference], slots: dict) -> list[Placement]:
    if not references:
        return []
    chosen = slots[str(min(len(references), len(slots)))]
    return [Placement(ref, float(s["x"]), float(s["ground"]), float(s["height"]), float(s["depth"]))
            for ref, s in zip(references, chosen)]
