"""The open-loop dispatcher: requests leave at their planned times, whether or not earlier ones returned.

A closed-loop client (a Locust user, by default) sends its next request only once the previous one
has returned. When the server stalls, the client stalls with it, and the requests it would have sent
during the stall are never sent at all: the stall hides in a handful of slow answers. This is
coordinated omission. Here a scheduler greenlet releases each arrival at its planned wall-clock time
to a pool of at most ``max_in_flight`` senders; a request whose sender is busy waits, and its wait
counts: every latency is measured from ``planned_at``, the time the request was due, not from when it
finally left.

Senders pull due requests (``take()``), so they can be plain greenlets (:func:`run_open_loop`) or
Locust users whose task is ``due = dispatcher.take(); self.send(due.payload, planned_at=due.planned_at)``:
the user count is then the pool size. A due request that no sender takes within ``max_lag_s`` is
dropped and reported to ``on_drop``, as k6 counts ``dropped_iterations``; nothing is skipped silently.

Only gevent is imported (no Locust runner): the same object serves a Locust worker, a ``--processes``
child and a plain script. Times are wall-clock epoch seconds (``time.time``), so the processes of one
cell share the cell's start time and the records line up with every other timestamp of a run.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import gevent
import gevent.queue

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_LAG_S = 5.0  # a request that waited this long for a free sender is dropped
LATE_MS = 10.0  # a request sent more than this after its planned time is counted as late


class OpenLoopError(ValueError):
    """Settings a dispatcher cannot honour (no senders, no lag bound, no duration)."""


@dataclass(frozen=True, slots=True)
class Due(Generic[T]):
    """An arrival handed to a sender: due at ``planned_at``, taken (and about to be sent) at ``sent_at``."""

    index: int
    planned_at: float
    sent_at: float
    payload: T

    @property
    def lag_ms(self) -> float:
        return (self.sent_at - self.planned_at) * 1000.0


@dataclass(frozen=True, slots=True)
class Dropped(Generic[T]):
    """An arrival no sender took within ``max_lag_s`` of ``planned_at`` (or still waiting at a stop)."""

    index: int
    planned_at: float
    dropped_at: float
    payload: T


@dataclass(frozen=True)
class DispatchSummary:
    """What a cell offered and what left, for the console and ``cells.csv``.

    ``achieved_rate_per_s`` divides the requests sent by the time from the cell's start to its end or
    to the last send, whichever is later: a load generator that falls behind shows a lower rate
    even when it sends every request eventually.
    """

    duration_s: float
    offered: int
    sent: int
    dropped: int
    late: int
    offered_rate_per_s: float
    achieved_rate_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values): the value below which ``q`` percent of them lie."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100.0 * len(ordered)) - 1, 0)]


class OpenLoopDispatcher(Generic[T]):
    """Releases ``(offset_s, payload)`` arrivals at ``start_at + offset_s`` to whoever calls ``take()``.

    ``arrivals`` must come in time order and may be a lazy iterator (a long cell need not be held in
    memory), but a cheap one: it runs in the scheduler at send time, so payloads are built before
    the cell (or drawn from a prepared pool), never inside the iterator. ``start()`` spawns the scheduler; senders loop on ``take()`` until it returns None, which
    it does once the schedule is over and every due arrival was taken or dropped.
    """

    _STOP = object()

    def __init__(
        self,
        arrivals: Iterable[tuple[float, T]],
        *,
        start_at: float,
        duration_s: float,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        on_drop: Callable[[Dropped[T]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
            raise OpenLoopError(f"cell duration must be a positive number of seconds, found {duration_s!r}")
        if not (isinstance(max_lag_s, int | float) and max_lag_s > 0):
            raise OpenLoopError(f"max lag must be a positive number of seconds, found {max_lag_s!r}")
        self._arrivals = arrivals
        self.start_at = start_at
        self.duration_s = float(duration_s)
        self.max_lag_s = float(max_lag_s)
        self._on_drop = on_drop
        self._clock = clock
        self._queue: gevent.queue.Queue = gevent.queue.Queue()
        self._scheduler: gevent.Greenlet | None = None
        self._offered = 0
        self._dropped = 0
        self._stopped = False
        self._lags_ms = array("d")
        self._last_sent_at = start_at

    # --- the scheduler -----------------------------------------------------------------------------
    def start(self) -> gevent.Greenlet:
        """Spawn the scheduler greenlet (returned, so a caller can join it with its senders)."""
        if self._scheduler is not None:
            raise OpenLoopError("this dispatcher was already started")
        self._scheduler = gevent.spawn(self._release_all)
        return self._scheduler

    def _release_all(self) -> None:
        previous = -math.inf
        try:
            for index, (offset_s, payload) in enumerate(self._arrivals):
                if offset_s < previous:
                    raise OpenLoopError(f"arrival {index} at {offset_s:.6f} s comes before its predecessor")
                previous = offset_s
                planned_at = self.start_at + offset_s
                while (wait := planned_at - self._clock()) > 0:
                    gevent.sleep(wait)
                self._offered += 1
                self._queue.put((index, planned_at, payload))
        finally:
            # Senders drain what is queued ahead of the end mark (sending or dropping each), then stop.
            self._queue.put(self._STOP)

    def _drop(self, index: int, planned_at: float, payload: T) -> None:
        self._dropped += 1
        if self._on_drop is not None:
            self._on_drop(Dropped(index, planned_at, self._clock(), payload))

    # --- the senders' side -------------------------------------------------------------------------
    def take(self) -> Due[T] | None:
        """The next due arrival, stamped with its send time, once it is due; None when the cell is over.

        Arrivals that waited longer than ``max_lag_s`` are dropped on the way (reported to
        ``on_drop``), so a sender that frees up after a stall sends what is still worth sending.
        """
        while True:
            item = self._queue.get()
            if item is self._STOP:
                self._queue.put(self._STOP)  # every other sender sees the end too
                return None
            index, planned_at, payload = item
            sent_at = self._clock()
            if self._stopped or sent_at - planned_at > self.max_lag_s:
                self._drop(index, planned_at, payload)
                continue
            self._lags_ms.append((sent_at - planned_at) * 1000.0)
            self._last_sent_at = max(self._last_sent_at, sent_at)
            return Due(index, planned_at, sent_at, payload)

    # --- the end -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the cell now: no more arrivals; those due and not yet taken are dropped."""
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.kill()  # its ``finally`` puts the end mark
        else:
            self._queue.put(self._STOP)
        # Take (and so drop) everything ahead of the end mark, as a sender would: a plain blocking
        # get, which never races with senders that were already handed an item.
        while self.take() is not None:
            pass

    def join(self, timeout: float | None = None) -> None:
        """Wait for the scheduler to finish (re-raising its error, e.g. arrivals out of order)."""
        if self._scheduler is not None:
            self._scheduler.join(timeout)
            if self._scheduler.dead and not self._scheduler.successful():
                raise self._scheduler.exception  # type: ignore[misc]

    def summary(self) -> DispatchSummary:
        lags = list(self._lags_ms)
        span_s = max(self.duration_s, self._last_sent_at - self.start_at)
        return DispatchSummary(
            duration_s=self.duration_s,
            offered=self._offered,
            sent=len(lags),
            dropped=self._dropped,
            late=sum(1 for lag in lags if lag > LATE_MS),
            offered_rate_per_s=self._offered / self.duration_s,
            achieved_rate_per_s=len(lags) / span_s,
            lag_p50_ms=_percentile(lags, 50),
            lag_p99_ms=_percentile(lags, 99),
            lag_max_ms=max(lags, default=0.0),
        )


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T, R]):
    """One arrival's fate, in the per-request record's terms (``embed_bench.core.contract``): sent and
    answered (``result`` is what ``send`` returned), or dropped (``sent_at`` and ``completed_at`` None)."""

    index: int
    planned_at: float
    sent_at: float | None
    completed_at: float | None
    payload: T
    result: R | None = None

    @property
    def dropped(self) -> bool:
        return self.sent_at is None

    @property
    def lag_ms(self) -> float | None:
        return None if self.sent_at is None else (self.sent_at - self.planned_at) * 1000.0

    @property
    def latency_ms(self) -> float | None:
        """From the planned send time: safe from coordinated omission."""
        return None if self.completed_at is None else (self.completed_at - self.planned_at) * 1000.0


def run_open_loop(
    arrivals: Iterable[tuple[float, T]],
    send: Callable[[T, float], R],
    *,
    max_in_flight: int,
    duration_s: float,
    start_at: float | None = None,
    max_lag_s: float = DEFAULT_MAX_LAG_S,
    on_outcome: Callable[[Outcome[T, R]], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> DispatchSummary:
    """One open-loop cell with ``max_in_flight`` plain greenlets as senders; returns when it is over.

    ``send(payload, planned_at)`` runs in a sender greenlet and may block on I/O (a geventhttpclient
    or a Locust FastHttpSession shared by the senders). Every arrival reaches ``on_outcome`` once,
    sent or dropped. An exception in ``send`` ends the cell and propagates: a broken client must not
    pass for a slow server.
    """
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise OpenLoopError(f"max in flight must be a positive integer, found {max_in_flight!r}")
    report = on_outcome or (lambda _outcome: None)
    dispatcher: OpenLoopDispatcher[T] = OpenLoopDispatcher(
        arrivals,
        start_at=clock() if start_at is None else start_at,
        duration_s=duration_s,
        max_lag_s=max_lag_s,
        on_drop=lambda drop: report(Outcome(drop.index, drop.planned_at, None, None, drop.payload)),
        clock=clock,
    )

    def sender() -> None:
        while (due := dispatcher.take()) is not None:
            result = send(due.payload, due.planned_at)
            report(Outcome(due.index, due.planned_at, due.sent_at, clock(), due.payload, result))

    scheduler = dispatcher.start()
    senders = [gevent.spawn(sender) for _ in range(max_in_flight)]
    try:
        gevent.joinall([scheduler, *senders], raise_error=True)
        dispatcher.join()
    finally:
        gevent.killall(senders)
        dispatcher.stop()
    return dispatcher.summary()
