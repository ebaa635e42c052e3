"""``python -m refvideo``: the same CLI as the ``refvideo`` command."""

from .engine.cli import main

raise SystemExit(main())
