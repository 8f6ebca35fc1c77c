"""``continuous`` (default): a work-conserving batcher with no timer.

Whenever the device is free it takes what is queued (oldest first, up to a few batches' worth, so
nothing starves behind a flood), sorts those inputs by length and cuts them into batches whose
padded size (longest x rows) fits ``max_batch_tokens``, and that end before an input so much longer
that padding the batch to it would cost more than one more pass (the price of a pass is fitted to
the passes' own times: ``pass_cost``), so a pass groups inputs of like lengths. A request with many inputs is split into
per-input entries, so a 128 x 8192-token request spans several batches and small requests that
arrive meanwhile ride along in the next pass instead of waiting behind all of it. A lone request
runs at once: at concurrency 1 this adds only a thread hand-off to the no-batching latency.
Anchors: text-embeddings-inference (core/src/queue.rs), Triton's dynamic batcher without delay.
"""

from __future__ import annotations

from collections import deque

from target_server.batching.base import Entry, Job, ThreadedBatcher

# How many budgets' worth of queued tokens one round takes before sorting and cutting.
ROUND_BUDGETS = 4


class ContinuousBatching(ThreadedBatcher):
    mode = "continuous"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._entries: deque[Entry] = deque()
        self.metrics.gauge(
            "embed_pass_cost_tokens",
            "A forward pass's fixed time in padded tokens' time (fitted to recent passes; +Inf until "
            "passes of several sizes ran): continuous passes split by length where padding costs more",
            self.pass_cost.tokens,
        )

    def _process(self, entries: list[Entry]) -> None:
        # Sorted by length, cut by the budget and where padding a pass costs more than another pass.
        self.run_in_budget(entries, sort=True, split_cost_tokens=self.pass_cost.tokens())

    def queue_depth(self) -> int:
        return len(self._entries)

    def _enqueue(self, job: Job) -> None:
        with self._cond:
            self._entries.extend(job.entries())
            self._cond.notify()

    def _next_work(self) -> list[Entry] | None:
        with self._cond:
            while not self._entries and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            taken: list[Entry] = []
            tokens, limit = 0, ROUND_BUDGETS * self.max_batch_tokens
            while self._entries and (not taken or tokens + self._entries[0].length <= limit):
                entry = self._entries.popleft()
                if entry.job.finished:  # timed out or failed: skip its remaining inputs
                    continue
                taken.append(entry)
                tokens += entry.length
        return taken
