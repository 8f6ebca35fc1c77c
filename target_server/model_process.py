"""The model process of ``serve --frontends N``: the embedding service, served to front ends over a socket.

It holds what must be one per model: the model, the batcher (so requests from every front end share
forward passes), admission control (one budget), and the metrics (one registry, so ``/metrics`` adds
up every front end's requests). Front ends send token ids; a pool of threads here (as many as the
front ends have request threads) waits on the batcher as each request thread would in one process,
so every batching mode, timeout and error behaves as it does there. See target_server.model_link for
the wire format and the process's start; started by ``embed-bench serve``, never by hand.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from typing import Any

from target_server.batching import Job
from target_server.config import LOG_FORMAT, resolve_config
from target_server.domain_errors import ForwardPassFailed, ServiceError, TimedOut
from target_server.metrics import serve_metrics
from target_server.model_link import (
    COUNT,
    EMBED,
    ENV_AUTHKEY,
    ENV_SPEC,
    INFO,
    METRICS,
    STATE,
    TOKENIZER,
    error_payload,
)
from target_server.service import EmbeddingService
from target_server.tracing import PassLinks, span_ids

log = logging.getLogger("target_server.model_process")  # not __main__: it runs with -m


class _Peer:
    """One front end's connection. Its answers go out through one writer thread, in the order they
    are ready, so neither the batcher's thread nor the reader ever waits on the socket."""

    def __init__(self, connection: Connection, service: EmbeddingService) -> None:
        self.connection = connection
        self.service = service
        self.outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.closed = False
        self._closing = threading.Lock()
        threading.Thread(target=self._write, name="model-link-writer", daemon=True).start()

    def reply(self, request_id: int, ok: bool, payload: Any) -> None:
        self.outbox.put((request_id, ok, payload))

    def job_done(self, request_id: int, trace: PassLinks | None, job: Job) -> None:
        """A job's end, on the thread that ended it (the batcher's, or the deadlines'): its tokens
        leave the admission budget now, whatever becomes of its answer; the writer sends it."""
        self.service.settle(job)
        with self._closing:
            if not self.closed:
                self.outbox.put((request_id, job, trace))

    def close(self) -> None:
        """The reader saw the front end hang up: the writer ends after what is queued."""
        with self._closing:
            self.closed = True
            self.outbox.put(None)

    def hang_up(self) -> None:
        """End the connection from another thread: a shutdown wakes the reader blocked on it (a
        close would not), which then closes it."""
        with (
            contextlib.suppress(OSError),
            socket.fromfd(self.connection.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as dup,
        ):
            dup.shutdown(socket.SHUT_RDWR)

    def _write(self) -> None:
        gone = False
        while (item := self.outbox.get()) is not None:
            if gone:
                continue  # the front end is gone (its worker restarted): nobody to tell
            try:
                if len(item) == 3 and isinstance(item[1], Job):
                    item = self._answer_job(*item)
                self.connection.send(item)
            except (OSError, ValueError):
                gone = True
            except Exception:  # an answer that does not pickle: a bug, answered as one
                log.exception("model process: could not send an answer")
                with contextlib.suppress(Exception):
                    self.connection.send(
                        (item[0], False, error_payload(ForwardPassFailed("unsendable answer")))
                    )
        with contextlib.suppress(OSError):
            self.connection.close()

    def _answer_job(self, request_id: int, job: Job, trace: PassLinks | None) -> tuple:
        try:
            vectors = job.answer()
        except ServiceError as error:
            return request_id, False, error_payload(error)
        queue_ms, inference_ms = job.timings_ms()
        stamps = (job.enqueued_at, job.started_at, job.finished_at)
        passes = [span_ids(context) for context in trace.passes] if trace is not None else []
        return request_id, True, (vectors, job.tokens, queue_ms, inference_ms, stamps, passes)


class _Deadlines:
    """Request timeouts without a thread per request: one thread fails each job still running at its
    deadline with TimedOut, as a request thread's ``Job.wait`` would (its inputs not yet run are
    skipped). A job leaves the watch when it ends, so the watch holds only running jobs; every job
    has the same timeout, so insertion order is deadline order."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._running: dict[Job, float] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="deadlines", daemon=True).start()

    def watch(self, job: Job) -> None:
        with self._cond:
            if job.done.is_set():  # ended before it was watched (forget ran first): nothing to time
                return
            self._running[job] = job.enqueued_at + self.timeout_s
            if len(self._running) == 1:
                self._cond.notify()

    def forget(self, job: Job) -> None:
        with self._cond:
            self._running.pop(job, None)

    def __len__(self) -> int:
        return len(self._running)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._running:
                    self._cond.wait()
                job, deadline = next(iter(self._running.items()))
                wait = deadline - time.perf_counter()
                if wait > 0:
                    del job
                    self._cond.wait(wait)
                    continue
                del self._running[job]
            try:
                job.cancelled = True
                job.fail(TimedOut.after(self.timeout_s))
            except Exception:
                log.exception("model process: timing out a job failed")
            del job


class ModelProcess:
    """Accepts front ends and answers their messages from an :class:`EmbeddingService`."""

    def __init__(self, service: EmbeddingService, listener: Listener, authkey: bytes, workers: int) -> None:
        """``listener`` takes no key itself (its accept would run the challenge on the accepting
        thread): each connection answers ``authkey``'s challenge on its own thread."""
        self.service = service
        self.listener = listener
        self.authkey = authkey
        self._closing = False
        self.deadlines = _Deadlines(service.config.request_timeout_s)
        # `none` runs each request's passes on the thread that submits it: give those a pool, as
        # many threads as the front ends have request threads; the queueing modes submit at once.
        self.pool = (
            ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="embed")
            if service.config.batching == "none"
            else None
        )
        self._peers: set[_Peer] = set()

    def serve_forever(self) -> None:
        """Accept front ends until :meth:`close`. The key's challenge runs on each connection's own
        thread, so a client that hangs up or never answers holds up nobody but itself."""
        while True:
            try:
                connection = self.listener.accept()
            except OSError as error:
                if self._closing:
                    return
                log.warning("model process: accept failed: %s", error)
                continue
            threading.Thread(
                target=self._admit, args=(connection,), name="model-link-reader", daemon=True
            ).start()

    def _admit(self, connection: Connection) -> None:
        try:
            deliver_challenge(connection, self.authkey)
            answer_challenge(connection, self.authkey)
        except Exception as error:  # a wrong key (AuthenticationError), a hang-up, garbage
            log.warning("refused a connection to the model process: %s", error or type(error).__name__)
            connection.close()
            return
        peer = _Peer(connection, self.service)
        self._peers.add(peer)
        self._serve(peer)

    def _serve(self, peer: _Peer) -> None:
        while True:
            try:
                message = peer.connection.recv()
            except (EOFError, OSError):
                break
            except Exception:  # unpicklable: a bug on the other side, not a reason to stop serving
                log.exception("model process: unreadable message")
                continue
            try:
                self._dispatch(peer, message)
            except Exception:
                log.exception("model process: could not answer %r", message[:2])
        peer.close()
        self._peers.discard(peer)

    def _dispatch(self, peer: _Peer, message: tuple) -> None:
        kind = message[0]
        if kind == COUNT:
            for (endpoint, status), times in message[1].items():
                self.service.count_request(endpoint, status, times)
            return
        request_id, args = message[1], message[2:]
        if kind == EMBED:
            if self.pool is not None:
                self.pool.submit(self._embed_logged, peer, request_id, *args)
            else:
                self._embed(peer, request_id, *args)
            return
        try:
            payload = self._answer(kind)
        except ServiceError as error:
            peer.reply(request_id, False, error_payload(error))
        else:
            peer.reply(request_id, True, payload)

    def _answer(self, kind: str) -> Any:
        service = self.service
        if kind == STATE:
            return {"healthy": service.healthy, "state": service.state}
        if kind == INFO:
            return service.info()
        if kind == METRICS:
            return service.render_metrics()
        if kind == TOKENIZER:
            info = service.require_ready()
            return service.embedder.text_tokenizer, info
        raise ForwardPassFailed(f"unknown message {kind!r} (a front end of another version?)")

    def _job_done(self, peer: _Peer, request_id: int, trace: PassLinks | None, job: Job) -> None:
        self.deadlines.forget(job)
        peer.job_done(request_id, trace, job)

    def _embed_logged(self, *args: Any) -> None:
        """``_embed`` on a pool thread (``none`` mode), whose future nobody reads."""
        try:
            self._embed(*args)
        except Exception:
            log.exception("model process: embedding failed")

    def _embed(
        self,
        peer: _Peer,
        request_id: int,
        ids: list[list[int]],
        task: str | None,
        link: tuple[int, int, int] | None,
    ) -> None:
        """Submit a front end's request; the answer goes out when the job ends (``_job_done``), an
        error that keeps it from starting at once. Every path answers."""
        try:
            tracing = self.service.tracing
            trace = (
                PassLinks(tracing.remote_context(link)) if link is not None and tracing is not None else None
            )
            job = self.service.submit_ids(
                ids, task, trace, on_done=functools.partial(self._job_done, peer, request_id, trace)
            )
            self.deadlines.watch(job)
        except ServiceError as error:  # not admitted (Overloaded, NotReady), or `none` mode's TimedOut
            peer.reply(request_id, False, error_payload(error))
        except Exception as error:
            log.exception("model process: embedding failed")
            peer.reply(request_id, False, error_payload(ForwardPassFailed(f"model process: {error}")))

    def close(self) -> None:
        """Stop accepting and hang up on every front end (they answer 503 from then on)."""
        self._closing = True
        self.listener.close()
        for peer in list(self._peers):
            peer.hang_up()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _exit_with_parent(parent: int, folder: str) -> None:
    """The serve process gone (killed, so it could not stop us): stop too, rather than hold the
    model, and remove the socket's folder, which the serve process would have removed."""
    while os.getppid() == parent:
        time.sleep(0.5)
    log.error("the serve process (pid %d) is gone; the model process stops", parent)
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(1)


class _Stop(BaseException):  # not caught by the accept loop's `except Exception`
    pass


def _raise_stop(signum: int, _frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def main() -> int:
    """``python -m target_server.model_process``, as ``embed-bench serve --frontends N`` starts it."""
    try:
        spec = json.loads(os.environ.pop(ENV_SPEC))
        authkey = bytes.fromhex(os.environ.pop(ENV_AUTHKEY))
    except (KeyError, ValueError):
        print(
            "error: the model process is started by 'embed-bench serve --frontends N', not by hand",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("target_server").setLevel(logging.INFO)
    os.set_inheritable(spec["lifeline"], False)  # only this process holds it: its exit closes it
    address = spec["address"]
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(), os.path.dirname(address)), daemon=True
    ).start()
    _, config = resolve_config(spec["overrides"])
    service = EmbeddingService(config)
    # The metrics listener first: a port in use fails the start before the front ends connect.
    if spec["metrics_port"] is not None:
        service.metrics_port = serve_metrics(
            service.metrics.registry, spec["metrics_host"], spec["metrics_port"]
        )
    server = ModelProcess(service, Listener(address, "AF_UNIX", backlog=128), authkey, spec["workers"])
    log.info("model process for %d front-end thread(s): listening at %s", spec["workers"], address)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        service.start()
        server.serve_forever()
    except _Stop as stop:
        log.info("model process: %s, stopping", stop)
    finally:
        server.close()
        service.close()
    logging.shutdown()
    # Pool threads (`none` mode) may still wait on the device lock: they have nobody to answer.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
