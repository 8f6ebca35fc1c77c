"""Checks of the numbers a grid file, a capacity search, an option or a workload gives, written once.

Grid cells, arrival schedules, capacity searches, pricing files and workloads each refuse what is
not a positive (or non-negative) finite number or a positive integer. The check is the same
everywhere -- ``True`` is no number, NaN and infinity are no amount -- while each caller keeps its own
exception class (a ``GridError``, a ``ReportError``, ...) and its own wording, because users and
tests read those messages. So the helpers take the error class and a message template.

Kept free of Locust, pandas and torch imports, like the rest of ``embed_bench.core``: the reports
import it too.
"""

from __future__ import annotations

import math

NUMBER_MESSAGE = "{name} must be a {kind} number, found {value!r}"
INTEGER_MESSAGE = "{name} must be a positive integer, found {value!r}"


def is_number(value: object) -> bool:
    """An int or float that is no bool (``True`` would otherwise pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_number(
    value: object,
    name: str,
    *,
    allow_zero: bool = False,
    error: type[Exception] = ValueError,
    message: str = NUMBER_MESSAGE,
) -> float:
    """``value`` as a float when it is a finite number above zero (or at least zero with
    ``allow_zero``); else raises ``error`` with ``message``, formatted with ``name``, ``value`` and
    ``kind`` ("positive" or "non-negative")."""
    if not is_number(value) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise error(message.format(name=name, value=value, kind=kind))
    return float(value)


def positive_int(
    value: object, name: str, *, error: type[Exception] = ValueError, message: str = INTEGER_MESSAGE
) -> int:
    """``value`` when it is an int of at least 1 (no bool, no float); else raises ``error`` with
    ``message``, formatted with ``name`` and ``value``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise error(message.format(name=name, value=value))
    return value
