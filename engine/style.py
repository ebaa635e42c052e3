"""A style direction (REFVIDEO_STYLE): the look and camera habits reused across shots.

Skills combine in order: later non-empty fields win for single values, texts join (a phrase
already present is not repeated).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StyleDirection:
    """Style text (look, lens, lighting, palette, grade), negative text, camera defaults."""

    names: tuple[str, ...] = ()
    style: str = ""
    negative: str = ""
    camera: str = ""
    defaults: dict = field(default_factory=dict)

    def then(self, later: StyleDirection) -> StyleDirection:
        """This direction followed by ``later``: texts join, later defaults win."""
        def join(a: str, b: str) -> str:
            # comma-separated phrases in order; a phrase already present is not repeated
            phrases: dict[str, str] = {}
            for text in (a, b):
                for phrase in (text or "").split(","):
                    if phrase.strip():
                        phrases.setdefault(phrase.strip().lower(), phrase.strip())
            return ", ".join(phrases.values())

        return StyleDirection(
            names=self.names + later.names,
            style=join(self.style, later.style),
            negative=join(self.negative, later.negative),
            camera=later.camera.strip() or self.camera,
            defaults={**self.defaults, **later.defaults},
        )

    def describe(self) -> dict:
        return {"names": list(self.names), "style": self.style, "negative": self.negative,
                "camera": self.camera, "defaults": dict(self.defaults)}
