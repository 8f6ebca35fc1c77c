"""What can go wrong inside the embedding service, as plain exceptions with no notion of HTTP.

The batchers and the service raise these; ``target_server.errors`` (the Flask layer) maps each class
to its status and ``error_type`` in one table. Keeping HTTP out of here lets the batching code be
used and tested without a web framework (a test checks that nothing here imports Flask).
"""

from __future__ import annotations

from dataclasses import dataclass

# How long a client should wait after a timeout or while the model loads.
DEFAULT_RETRY_AFTER_S = 5


@dataclass(eq=False)
class ServiceError(Exception):
    """A failure the service reports to its caller: a message for people, and a retry hint."""

    message: str
    # Seconds after which a retry may succeed; None where retrying does not help.
    retry_after_s: int | None = None

    def __str__(self) -> str:
        return self.message


class NotReady(ServiceError):
    """The model is still loading, its load failed, or the batcher thread is gone."""

    @classmethod
    def because(cls, state: str) -> NotReady:
        return cls(f"model not ready ({state})", DEFAULT_RETRY_AFTER_S)


class Overloaded(ServiceError):
    """Admission control is full: the request's tokens would pass ``max_queue_tokens``."""

    @classmethod
    def retry_after(cls, seconds: int) -> Overloaded:
        return cls(f"server at its admission limit; retry after {seconds} s", seconds)


class TimedOut(ServiceError):
    """No result (or, in ``none`` mode, no turn on the device) within the request timeout."""

    @classmethod
    def after(cls, timeout_s: float) -> TimedOut:
        return cls(f"no answer within {timeout_s:g} s; the server is overloaded", DEFAULT_RETRY_AFTER_S)


class InputTooLargeForDevice(ServiceError):
    """One input ran out of device memory even in a forward pass of its own."""

    @classmethod
    def of(cls, tokens: int, detail: str) -> InputTooLargeForDevice:
        return cls(
            f"an input of {tokens} tokens does not fit in device memory even alone ({detail}); "
            "shorten it or lower the server's load"
        )


class ForwardPassFailed(ServiceError):
    """The forward pass (or the batcher around it) raised something other than out-of-memory: a bug."""
