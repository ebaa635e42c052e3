"""The ``refvideo`` command-line interface (also ``python -m refvideo``)."""

from .main import main

__all__ = ["main"]
