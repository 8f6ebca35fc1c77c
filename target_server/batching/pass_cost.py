"""What one more forward pass costs, in padded tokens: the price of splitting a pass by length.

A pass's time is close to ``fixed + per_token x padded tokens``: the fixed part (launching every
layer's kernels, Python around the model, copying results) is paid once per pass whatever its size.
Cutting a pass of mixed lengths in two saves the padding of its short rows but pays the fixed part
again, so it pays when the padding saved exceeds ``fixed / per_token`` tokens. That ratio differs by
orders of magnitude between a small model on a CPU (tens of tokens) and a large one on a GPU
(thousands), so it is measured, not set: a least-squares line through the batcher's recent passes
(the warm-up's passes of several shapes are the first).
"""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np

WINDOW = 128  # recent passes the line is fitted to
MIN_PASSES = 4
MIN_SPREAD = 2.0  # the largest pass must be this many times the smallest for a slope to mean anything


class PassCost:
    """A running fit of pass seconds against padded tokens; :meth:`tokens` is the fixed cost in tokens."""

    def __init__(self) -> None:
        self._passes: deque[tuple[int, float]] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()
        self._tokens = math.inf
        self._stale = False

    def observe(self, padded_tokens: int, seconds: float) -> None:
        with self._lock:
            self._passes.append((padded_tokens, seconds))
            self._stale = True

    def tokens(self) -> float:
        """Padded tokens that take as long as a pass's fixed cost; ``inf`` until passes of different
        sizes were measured (until then no pass is split for padding alone)."""
        with self._lock:
            if self._stale:
                self._stale = False
                fitted = fixed_cost_tokens(list(self._passes))
                if fitted is not None:  # else the last fit stands (recent passes all alike)
                    self._tokens = fitted
            return self._tokens


def fixed_cost_tokens(passes: list[tuple[int, float]]) -> float | None:
    """``fixed / per_token`` of the least-squares line through (padded tokens, seconds), at least 0;
    None when the passes are too few or too alike in size to fit a line."""
    if len(passes) < MIN_PASSES:
        return None
    tokens = np.array([p[0] for p in passes], dtype=np.float64)
    seconds = np.array([p[1] for p in passes], dtype=np.float64)
    if tokens.max() < MIN_SPREAD * tokens.min():
        return None
    per_token, fixed = np.polyfit(tokens, seconds, 1)
    if per_token <= 0:
        return None
    return max(0.0, float(fixed / per_token))
