"""Grid cells and the request names that carry them.

The Locust side names every measured request ``b=<batch> t=<passage tokens> c=<concurrency>``
(e.g. ``b=32 t=512 c=5``) and every warm-up request ``warmup ...``, so the cell of a row in any
Locust CSV is recovered from its name alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WARMUP_PREFIX = "warmup"
_CELL_NAME = re.compile(r"b=(\d+) t=(\d+) c=(\d+)")


@dataclass(frozen=True, order=True)
class Cell:
    """One grid point; the field order sorts cells the way the study's tables list them."""

    concurrency: int
    batch_size: int
    passage_tokens: int

    @property
    def name(self) -> str:
        return f"b={self.batch_size} t={self.passage_tokens} c={self.concurrency}"

    @property
    def nominal_tokens_per_request(self) -> int:
        """Tokens a request carries by construction (passages are token-exact)."""
        return self.batch_size * self.passage_tokens


def parse_cell_name(name: str) -> Cell | None:
    """The cell of a measured request name; None for warm-up, ``Aggregated`` or foreign names."""
    match = _CELL_NAME.fullmatch(name.strip())
    if match is None:
        return None
    batch, tokens, concurrency = (int(group) for group in match.groups())
    return Cell(concurrency=concurrency, batch_size=batch, passage_tokens=tokens)


def is_warmup_name(name: str) -> bool:
    return name.strip().startswith(WARMUP_PREFIX)
