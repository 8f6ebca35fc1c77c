"""The CUDA execution path (one pass queued ahead), driven by an asynchronous embedder double on the CPU."""

from __future__ import annotations

import numpy as np
import torch

from target_server.batching.base import Job
from target_server.batching.continuous import ContinuousBatching
from target_server.domain_errors import InputTooLargeForDevice
from target_server.embedder import is_out_of_memory
from target_server.metrics import ServerMetrics


class AsynchronousDouble:
    """Stages, launches and collects like the CUDA embedder, logging each step; a pass over
    ``oom_above_rows`` rows raises a CUDA out-of-memory error at launch. Each input's vector is its
    first token id, so order and completeness can be checked."""

    asynchronous = True
    pads = True

    def __init__(self, oom_above_rows: int | None = None) -> None:
        self.oom_above_rows = oom_above_rows
        self.log: list[tuple[str, int]] = []

    def stage(self, batch):
        self.log.append(("stage", len(batch)))
        return [ids[0] for ids in batch]

    def launch(self, staged, task=None):
        if self.oom_above_rows is not None and len(staged) > self.oom_above_rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        self.log.append(("launch", len(staged)))
        return staged

    def collect(self, flight) -> np.ndarray:
        self.log.append(("collect", len(flight)))
        return np.array([[value, 0.0] for value in flight], dtype=np.float32)

    def embed(self, batch, task=None):
        raise AssertionError("an asynchronous embedder is driven in stages")

    def release_memory(self) -> None:
        self.log.append(("release", 0))

    is_out_of_memory = staticmethod(is_out_of_memory)


def run(double: AsynchronousDouble, batch_rows: list[int]) -> Job:
    batcher = ContinuousBatching(double, ServerMetrics(), max_batch_tokens=4096, max_queue_tokens=10**6)
    job = Job(ids=[[100 + i, 1, 2] for i in range(sum(batch_rows))], task=None, tokens=3 * sum(batch_rows))
    entries, batches = job.entries(), []
    for rows in batch_rows:
        batches.append(entries[:rows])
        entries = entries[rows:]
    batcher.execute(batches)
    return job


def test_next_pass_is_staged_and_launched_before_the_current_one_is_collected() -> None:
    double = AsynchronousDouble()
    job = run(double, [3, 2, 1])
    assert double.log == [
        ("stage", 3),
        ("launch", 3),
        ("stage", 2),
        ("launch", 2),
        ("collect", 3),
        ("stage", 1),
        ("launch", 1),
        ("collect", 2),
        ("collect", 1),
    ]
    assert job.wait(1)[:, 0].tolist() == [100, 101, 102, 103, 104, 105]


def test_out_of_memory_at_launch_halves_the_pass_while_the_previous_one_completes() -> None:
    double = AsynchronousDouble(oom_above_rows=2)
    job = run(double, [2, 4])
    assert double.log == [
        ("stage", 2),
        ("launch", 2),
        ("stage", 4),  # its launch runs out of memory: cache released, halves run next
        ("release", 0),
        ("collect", 2),
        ("stage", 2),
        ("launch", 2),
        ("stage", 2),
        ("launch", 2),
        ("collect", 2),
        ("collect", 2),
    ]
    assert job.wait(1)[:, 0].tolist() == [100, 101, 102, 103, 104, 105]


def test_a_lone_input_that_never_fits_fails_alone() -> None:
    double = AsynchronousDouble(oom_above_rows=0)
    job = run(double, [1])
    assert double.log == [("stage", 1), ("release", 0)]
    assert isinstance(job.error, InputTooLargeForDevice)
