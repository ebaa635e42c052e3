"""``python -m refvideo``: the same CLI as the ``refvideo`` command."""

from .headless.cli import main

raise SystemExit(main())
