"""Batching modes of the target server; ``BATCHERS`` keys are the ``--batching`` choices."""

from __future__ import annotations

from target_server.batching.base import Batcher, Job, cut_batches
from target_server.batching.continuous import ContinuousBatching
from target_server.batching.none import NoBatching
from target_server.batching.timeout import TimeoutBatching

BATCHERS: dict[str, type[Batcher]] = {
    cls.mode: cls for cls in (ContinuousBatching, TimeoutBatching, NoBatching)
}

__all__ = ["BATCHERS", "Batcher", "Job", "cut_batches"]
