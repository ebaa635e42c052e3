"""Makes ``import refvideo`` work for a benchmark run as a script from a checkout."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_pack() -> None:
    """Import the installed pack, or else this checkout under the name ``refvideo``."""
    try:
        import refvideo  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location("refvideo", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["refvideo"] = module
        spec.loader.exec_module(module)
