"""``none``: every request runs on arrival, alone -- the study's "standard" server.

Unlike the study's, a large request is cut into budget-sized passes, so 128 long passages no longer
exhaust device memory; forward passes are serialized on one lock (the device runs one at a time).
"""

from __future__ import annotations

import threading

from target_server.batching.base import Batcher, Job
from target_server.domain_errors import TimedOut


class NoBatching(Batcher):
    mode = "none"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._device = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    def queue_depth(self) -> int:
        return self._waiting

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._waiting += delta

    def _enqueue(self, job: Job) -> None:
        self._count(len(job.ids))
        acquired = self._device.acquire(timeout=self.request_timeout_s)
        self._count(-len(job.ids))
        if not acquired:  # the same answer the queueing modes give a request that waited too long
            raise TimedOut.after(self.request_timeout_s)
        try:
            self.run_in_budget(job.entries(), sort=False)
        finally:
            self._device.release()
