"""A charged clip that never reached a file is refunded, once.

The sampler charges a clip when its frames exist and records the charge in its generation info
(``credits.charge_id``). VideoEncode writes the file; when that write fails or is interrupted it
calls :func:`refund_unwritten`, which returns the charge through :meth:`Ledger.refund` (a
``refund`` entry linked to the charge). A refund is given only by the run that made the charge
(same prompt id), only while no encode in this process has written that clip, and only once.
Frames written by any other node (core SaveVideo, a second VideoEncode) keep their charge.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from .. import host
from ..errors import RefVideoError
from .ledger import Entry, shared_ledger

log = logging.getLogger("refvideo")
CREDITS_KEY = "credits"

_TAG = re.compile(r"\.charge-(\d{1,18})\.")
_written: set[tuple[str, int]] = set()  # (ledger file, charge id): ids are per ledger
_lock = threading.Lock()


def _key(charge: int) -> tuple[str, int]:
    return str(host.ledger_path()), charge


def charge_record(entry: Entry) -> dict[str, Any]:
    """What the generation info says about its charge (under ``credits``)."""
    return {"charge_id": entry.id, "account": entry.account, "credits": -entry.amount}


def charge_id(info: dict | None) -> int | None:
    """The charge recorded in a generation info, or None."""
    record = (info or {}).get(CREDITS_KEY)
    value = record.get("charge_id") if isinstance(record, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def partial_tag(info: dict | None) -> str:
    """The tag of a clip's temporary file: ``charge-<id>`` for a charged clip, so that the clean-up after a
    killed process (:func:`refund_abandoned`) knows which charge never reached its file."""
    charge = charge_id(info)
    with _lock:
        if charge is None or _key(charge) in _written:  # already in a file: this further copy does not decide it
            return ""
    return f"charge-{charge}"


def refund_abandoned(partial_names: list[str]) -> list[Entry]:
    """Refund the charges whose clips' temporary files a killed process left behind (found by the clean-up
    at the next start): those clips never reached a file. Only where a ledger exists already."""
    charges = sorted({int(m.group(1)) for name in partial_names if (m := _TAG.search(name))})
    if not charges or not host.ledger_path().is_file():
        return []
    refunds = []
    for charge in charges:
        try:
            refund = shared_ledger().refund(charge, "the process ended while writing the clip")
        except (RefVideoError, OSError) as exc:
            log.error("RefVideo: charge %s of an unwritten clip could not be refunded (%s).", charge, exc)
            continue
        if refund is not None:
            refunds.append(refund)
            log.warning("RefVideo: refunded %d credits to account '%s': charge %s, whose clip was never written.",
                        refund.amount, refund.account, charge)
    return refunds


def mark_written(info: dict | None) -> None:
    """The clip of ``info`` reached a file: its charge stands from now on."""
    charge = charge_id(info)
    if charge is not None:
        with _lock:
            _written.add(_key(charge))


def refund_unwritten(info: dict | None, error: BaseException) -> Entry | None:
    """Refund the charge of ``info`` because writing its clip failed with ``error``; None when there is
    nothing to refund (no charge, another run's charge, a clip already written). Never raises: a
    refund that cannot be made is logged (the charge then stays, as the history shows)."""
    charge = charge_id(info)
    if charge is None:
        return None
    with _lock:
        if _key(charge) in _written:
            return None
        _written.add(_key(charge))  # once per process, whatever happens below
    reason = "interrupted while writing the clip" if host.is_interrupt(error) else \
        f"the clip could not be written: {type(error).__name__}: {error}"
    try:
        ledger = shared_ledger()
        entry = ledger.charge_entry(charge)
        if entry is None or entry.prompt_id != host.current_execution().prompt_id:
            log.warning("RefVideo: charge %s is not this run's; it was not refunded.", charge)
            return None
        refund = ledger.refund(charge, reason[:400])
    except (RefVideoError, OSError) as exc:
        log.error("RefVideo: the clip was not written and its charge %s could not be refunded (%s).", charge, exc)
        return None
    if refund is not None:
        log.warning("RefVideo: refunded %d credits to account '%s' (%s).", refund.amount, refund.account, reason)
    return refund
