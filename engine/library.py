"""What named reference sets and style skills share: save names and the save rule.

Saving never replaces different content without ``overwrite``: saving the same content again
is a no-op ("unchanged"), and a damaged saved asset is only replaced on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError, StorageError
from .storage import validate_name

SAVED, REPLACED, UNCHANGED = "saved", "replaced", "unchanged"
_REPORT = {SAVED: "Saved as", REPLACED: "Replaced the saved {kind}", UNCHANGED: "Already saved, unchanged:"}


def optional_name(name: str | None, *, kind: str, input_name: str = "save_as") -> str | None:
    """A save name checked before any work (None when left empty)."""
    text = (name or "").strip()
    return validate_name(text, kind=kind, input_name=input_name) if text else None


def name_verdict(name: str | None, *, kind: str) -> bool | str:
    """``VALIDATE_INPUTS``'s answer for an optional save name: True, or what is wrong."""
    try:
        optional_name(name, kind=kind)
    except InputError as exc:
        return str(exc)
    return True


def save_rule(target: Path, read_previous: Callable[[], dict], same: Callable[[dict], bool], *, kind: str,
              name: str, overwrite: bool, input_name: str = "save_as") -> tuple[dict | None, str]:
    """Whether saving to ``target`` may go ahead: ``(previous content or None, status)``.

    ``read_previous`` reads (and checks) what is saved now; ``same`` says whether it equals
    the new content. Raises :class:`StorageError` when ``overwrite`` is needed.
    """
    if not target.exists():
        return None, SAVED
    try:
        previous = read_previous()
    except StorageError:
        if not overwrite:
            raise
        return None, REPLACED
    if same(previous):
        return previous, UNCHANGED
    if not overwrite:
        raise StorageError(f"a {kind} named '{name}' already exists with other content.", input=input_name,
                           fix="Turn on 'overwrite' to replace it, or choose another name.")
    return previous, REPLACED


def stamps(previous: dict | None) -> dict:
    """``created`` (kept from the previous save) and ``updated`` times, UTC ISO 8601."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    created = (previous or {}).get("created")
    return {"created": created if isinstance(created, str) else now, "updated": now}


def report_line(status: str, *, kind: str, name: str, where: Path) -> str:
    """One line saying what a save did."""
    return f"{_REPORT[status].format(kind=kind)} '{name}' ({where})."
