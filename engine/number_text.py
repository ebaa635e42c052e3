"""Numbers typed as text, read exactly: whole numbers never pass through ``float``.

Only plain ASCII decimal text is a number here (``12``, ``-3``, ``5.0``, ``2.5e3``); Python's
``int``/``float`` would also take other scripts' digits, underscores, ``nan`` and ``inf``.
"""

from __future__ import annotations

import re
from decimal import Decimal

_INTEGER = re.compile(r"[+-]?[0-9]{1,400}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,400}(?:\.[0-9]{0,400})?|\.[0-9]{1,400})(?:[eE][+-]?[0-9]{1,4})?", re.ASCII)


def exact_number(text: str) -> int | Decimal | None:
    """The exact value of ``text`` (surrounding spaces allowed): an int for integer text, a Decimal for
    other decimal text, None when it is not plain decimal text."""
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    if _DECIMAL.fullmatch(stripped):
        return Decimal(stripped)
    return None


def whole_number(value: int | Decimal) -> int | None:
    """``value`` as an int when it is whole (``5.0``, ``2e3``), else None; exponents are bounded by the
    pattern above, so the conversion stays cheap."""
    if isinstance(value, int):
        return value
    if value == value.to_integral_value():
        return int(value)
    return None
