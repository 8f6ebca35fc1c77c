"""Rate-cell request names, as the Locust side writes them: ``r=20 b=1 t=128`` (one shape) or
``r=20 mix=queries`` (a weighted mix; each record then carries its own shape).

Kept apart from the closed-loop names (``b=.. t=.. c=..``) so the reports can route each record to
the figures that fit it: closed-loop cells to the study's tables, rate cells to the open-loop ones.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RATE_NAME = re.compile(r"r=([0-9.eE+-]+) (?:b=(\d+) t=(\d+)|mix=(\S.*))")


@dataclass(frozen=True)
class RateCellName:
    """What a rate cell's name says: its offered rate and its shape (or the label of its mix)."""

    request_rate: float
    batch_size: int | None = None
    passage_tokens: int | None = None
    mix: str | None = None


def parse_rate_cell_name(name: str) -> RateCellName | None:
    """The rate cell of a request name; None for closed-loop cells, warm-ups and foreign names."""
    match = _RATE_NAME.fullmatch(str(name).strip())
    if match is None:
        return None
    rate_text, batch, tokens, mix = match.groups()
    try:
        rate = float(rate_text)
    except ValueError:
        return None
    if not math.isfinite(rate) or rate <= 0:
        return None
    if mix is not None:
        return RateCellName(rate, mix=mix.strip())
    return RateCellName(rate, int(batch), int(tokens))
