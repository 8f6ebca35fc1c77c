"""``serve --frontends N``: front ends that tokenize, one model process that batches, over a real socket.

The fast tests run the real ModelProcess (on a thread, around the real service and the bundled model)
and real front-end apps connected to it through ``multiprocessing.connection`` on a Unix socket:
everything but the process boundary, which the spawning tests at the end cross with the real
``python -m target_server --frontends 2``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client, Listener

import numpy as np
import psutil
import pytest
from opentelemetry.trace import SpanKind, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from target_server import create_app, service_of
from target_server.app import create_frontend_app
from target_server.batching import Job
from target_server.cli import main as serve_main
from target_server.config import resolve_config
from target_server.domain_errors import ForwardPassFailed, TimedOut
from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder
from target_server.frontend import ModelLink
from target_server.model_link import LinkAddress
from target_server.model_process import ModelProcess
from target_server.service import EmbeddingService
from target_server.serving import EXTENSION
from target_server.tokenization import InputTooLong
from target_server.tracing import ServerTracing
from tests.support.target import free_port, http_status
from tests.target_server.conftest import mixed_texts, sample, scrape
from tests.target_server.test_tracing import in_memory


@contextlib.contextmanager
def split_server(
    embedder,
    frontends: int = 2,
    model_tracing: ServerTracing | None = None,
    frontend_tracing: ServerTracing | None = None,
    **overrides,
) -> Iterator[tuple[ModelProcess, list]]:
    """A model process (on a thread) around ``embedder`` and ``frontends`` front-end apps on its socket."""
    settings = {"warmup": False, **overrides}
    _, config = resolve_config(settings)
    service = EmbeddingService(config, embedder, model_tracing)
    service.load()
    with tempfile.TemporaryDirectory() as folder:
        address = LinkAddress(os.path.join(folder, "model.sock"), secrets.token_bytes(32))
        model = ModelProcess(service, Listener(address.path, "AF_UNIX"), address.authkey, workers=16)
        threading.Thread(target=model.serve_forever, daemon=True).start()
        apps = [
            create_frontend_app(settings, address, frontends=frontends, tracing=frontend_tracing)
            for _ in range(frontends)
        ]
        try:
            yield model, apps
        finally:
            for app in apps:
                app.extensions[EXTENSION].close()
            model.close()
            service.close()


# The model process listens on a socket: the slow tier's (tests/conftest.py), though no process starts.
listens = pytest.mark.usefixtures("spawn")


@pytest.fixture
def embedder(bundled_model) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)


def rows(answer: dict) -> list[list[float]]:
    return answer.get("embeddings") or [item["embedding"] for item in answer["data"]]


def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@listens
def test_front_ends_answer_what_one_process_answers(embedder) -> None:
    texts = mixed_texts(12, seed=3)
    one = create_app({"warmup": False}, embedder=embedder)
    try:
        with split_server(embedder) as (_, (first, second)):
            for path, body in (
                ("/embed", {"texts": texts}),
                ("/v1/embeddings", {"input": texts, "model": "m", "dimensions": 64}),
                ("/embed", {"texts": texts[:3], "normalize": False, "truncate": True}),
            ):
                expected = one.test_client().post(path, json=body)
                for app in (first, second):
                    got = app.test_client().post(path, json=body)
                    assert got.status_code == expected.status_code == 200, got.get_json()
                    want, have = expected.get_json(), got.get_json()
                    assert have.get("usage") == want.get("usage")
                    np.testing.assert_allclose(np.array(rows(have)), np.array(rows(want)), atol=1e-5)
                    assert float(got.headers["x-inference-time"]) >= 0
            info = first.test_client().get("/info").get_json()
            assert info["frontends"] == {"processes": 2, "this_pid": os.getpid()}
            assert info["model"] == BUNDLED_MODEL_ID and info["status"] == "ready"
            assert first.test_client().get("/health").status_code == 200
            assert first.test_client().get("/openapi.json").status_code == 200
    finally:
        service_of(one).close()


@listens
def test_metrics_add_up_every_front_end(embedder) -> None:
    with split_server(embedder) as (_, (first, second)):
        for app, count in ((first, 3), (second, 2)):
            for _ in range(count):
                assert app.test_client().post("/embed", json={"texts": ["one", "two"]}).status_code == 200

        def embeds_counted() -> float:
            families = scrape(first.test_client().get("/metrics").get_data(as_text=True))
            return sample(families, "embed_requests_total", endpoint="embed", status="200")

        assert eventually(lambda: embeds_counted() == 5)
        families = scrape(second.test_client().get("/metrics").get_data(as_text=True))
        assert sample(families, "embed_inputs_total") == 10
        assert sample(families, "embed_request_seconds_count") == 5
        assert sample(families, "embed_in_flight_tokens") == 0


@listens
def test_admission_and_timeouts_cross_the_boundary(embedder) -> None:
    # A timeout batch that waits 8 s: the first request holds the budget, the second is refused at
    # once (429 with Retry-After); a 2 s request timeout fails the first with the server's 503.
    with split_server(
        embedder, batching="timeout", batch_timeout_s=8.0, max_queue_tokens=40, request_timeout_s=2.0
    ) as (model, (first, second)):
        for app in (first, second):  # each front end fetches the tokenizer before the race
            assert app.test_client().get("/openapi.json").status_code == 200
        answers = {}
        holder = threading.Thread(
            target=lambda: answers.setdefault(
                "first", first.test_client().post("/embed", json={"texts": ["word " * 30]})
            )
        )
        holder.start()
        assert eventually(lambda: model.service.batcher.in_flight_tokens > 0)
        refused = second.test_client().post("/embed", json={"texts": ["word " * 30]})
        assert refused.status_code == 429 and refused.get_json()["error_type"] == "overloaded"
        assert int(refused.headers["Retry-After"]) >= 1
        holder.join(timeout=10)
        timed_out = answers["first"]
        assert timed_out.status_code == 503 and timed_out.get_json()["error_type"] == "timeout"
        # The timed-out job left the admission budget, as a request thread's would.
        assert eventually(lambda: model.service.batcher.in_flight_tokens == 0)


@listens
def test_input_errors_are_answered_by_the_front_end(embedder) -> None:
    with split_server(embedder) as (model, (first, _)):
        too_long = first.test_client().post("/embed", json={"texts": ["word " * 400], "truncate": False})
        assert too_long.status_code == 422 and too_long.get_json()["error_type"] == "input_too_long"
        bad = first.test_client().post("/embed", json={"texts": "not a list"})
        assert bad.status_code == 400
        assert model.service.metrics.value("embed_inputs_total") == 0  # nothing reached the batcher


class SlowPasses:
    """The real embedder, each forward pass held for ``seconds`` (a long pass, on demand)."""

    def __init__(self, inner: SentenceTransformerEmbedder, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.running = threading.Event()

    def embed(self, batch, task=None):
        self.running.set()
        time.sleep(self.seconds)
        return self.inner.embed(batch, task)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@listens
def test_none_mode_runs_passes_off_the_front_ends_reader(embedder) -> None:
    # `none` runs a request's passes on the thread that submits it: not the thread that reads the
    # front end's messages, or /health through the same front end would wait for the pass.
    slow = SlowPasses(embedder, 1.5)
    with split_server(slow, frontends=1, batching="none") as (_, (front,)):
        assert front.test_client().get("/openapi.json").status_code == 200
        answers = []
        request = threading.Thread(
            target=lambda: answers.append(front.test_client().post("/embed", json={"texts": ["a b c"]}))
        )
        request.start()
        assert slow.running.wait(10)
        started = time.monotonic()
        assert front.test_client().get("/health").status_code == 200
        assert time.monotonic() - started < 1.0, "the health check waited for the pass"
        request.join(timeout=30)
        assert [answer.status_code for answer in answers] == [200]


@listens
def test_a_lost_model_process_is_a_503_not_a_hang(embedder) -> None:
    with split_server(embedder) as (model, (first, _)):
        assert first.test_client().post("/embed", json={"texts": ["x"]}).status_code == 200
        model.close()
        assert eventually(lambda: first.extensions[EXTENSION].link.lost is not None)
        started = time.monotonic()
        answer = first.test_client().post("/embed", json={"texts": ["x"]})
        assert answer.status_code == 503 and "model process" in answer.get_json()["error"]
        assert answer.headers["Retry-After"] == "5"
        health = first.test_client().get("/health")
        assert health.status_code == 503 and "model process" in health.get_json()["status"]
        assert first.test_client().get("/metrics").status_code == 503
        assert time.monotonic() - started < 2


@listens
def test_a_wrong_key_is_refused_and_serving_goes_on(embedder) -> None:
    with split_server(embedder, frontends=1) as (model, (first,)):
        from multiprocessing import AuthenticationError

        with pytest.raises(AuthenticationError):
            Client(model.listener.address, "AF_UNIX", authkey=b"not the key")
        link = first.extensions[EXTENSION].link
        with pytest.raises(ForwardPassFailed, match="unknown message"):
            link.call("no such kind")
        assert first.test_client().post("/embed", json={"texts": ["still here"]}).status_code == 200


@listens
def test_a_client_that_hangs_up_or_never_speaks_stops_nobody(embedder) -> None:
    import socket

    with split_server(embedder, frontends=1) as (model, (first,)):
        hang_up = socket.socket(socket.AF_UNIX)
        hang_up.connect(model.listener.address)
        hang_up.close()  # gone before the key's challenge
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(model.listener.address)  # connected, never answers the challenge
        try:
            time.sleep(0.2)
            # The model process still accepts, and a new front end gets in past the silent one.
            late = ModelLink.connect(first.extensions[EXTENSION].link_address)
            assert late.call("state")["healthy"] is True
            late.close()
            assert first.test_client().post("/embed", json={"texts": ["still here"]}).status_code == 200
        finally:
            silent.close()


@listens
def test_passes_link_requests_traced_in_a_front_end(embedder) -> None:
    model_provider, model_spans = in_memory()
    front_provider, front_spans = in_memory()
    client_provider, client_spans = in_memory()
    with split_server(
        embedder,
        frontends=1,
        model_tracing=ServerTracing(model_provider),
        frontend_tracing=ServerTracing(front_provider),
    ) as (_, (front,)):
        client = client_provider.get_tracer("client").start_span("client", kind=SpanKind.CLIENT)
        headers: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(headers, context=set_span_in_context(client))
        assert (
            front.test_client().post("/embed", json={"texts": ["traced"]}, headers=headers).status_code == 200
        )
        client.end()
    (pass_span,) = [span for span in model_spans.get_finished_spans() if span.name == "embed pass"]
    (client_span,) = client_spans.get_finished_spans()
    assert [link.context.span_id for link in pass_span.links] == [client_span.context.span_id]
    spans = {span.name: span for span in front_spans.get_finished_spans()}
    assert {"parse", "tokenize", "queue wait", "forward pass", "encode", "POST /embed"} <= set(spans)
    assert [link.context.span_id for link in spans["forward pass"].links] == [pass_span.context.span_id]
    assert spans["POST /embed"].parent.span_id == client_span.context.span_id


def test_a_tokenizer_pickles_to_the_same_ids(embedder) -> None:
    copy = pickle.loads(pickle.dumps(embedder.text_tokenizer))
    texts = mixed_texts(8, seed=5)
    assert copy.tokenize(texts) == embedder.tokenize(texts)
    short = ["a short one", "and another"]
    assert copy.tokenize(short, truncate=False, task=None) == embedder.tokenize(short, truncate=False)
    with pytest.raises(InputTooLong):
        copy.tokenize(["word " * 400], truncate=False)


def test_a_slow_tokenizer_pickles_too(bundled_model) -> None:
    from transformers import BertTokenizer

    from target_server.embedder import bundled_model_path
    from target_server.tokenization import TextTokenizer

    slow = BertTokenizer.from_pretrained(bundled_model_path())
    tokenizer = TextTokenizer(slow, max_input_tokens=16, prompts={}, default_prompt="", tasks=None)
    copy = pickle.loads(pickle.dumps(tokenizer))
    fast = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID).text_tokenizer
    assert copy.tokenize(["a short text", "and another one"]) == fast.tokenize(
        ["a short text", "and another one"]
    )
    assert len(copy.tokenize(["word " * 40])[0]) == 16


def test_a_job_ends_once_when_a_timeout_comes_between_its_last_result_and_its_end() -> None:
    ends: list[Job] = []
    job = Job(ids=[[1, 2]], task=None, tokens=2, on_done=ends.append)

    class TimeoutInTheWindow(threading.Event):
        """``done.set()`` of the last result, with the deadline's ``fail`` landing just before it."""

        def set(self) -> None:
            if not hasattr(self, "raced"):
                self.raced = True
                job.fail(TimedOut.after(1))
            super().set()

    job.done = TimeoutInTheWindow()
    job.complete(0, np.zeros(2, np.float32))
    assert ends == [job]  # answered once, with its vector
    assert job.error is None and job.answer().shape == (1, 2)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_frontends_below_one_is_refused_before_anything_starts(value, capsys) -> None:
    assert serve_main(["--frontends", value]) == 2
    assert (
        f"error: frontends must be at least 1 (one process) and at most 256, got {value}"
        in capsys.readouterr().err
    )


# ---- the real processes -----------------------------------------------------------------------------


@contextlib.contextmanager
def served(tmp_path, *flags: str) -> Iterator[tuple[subprocess.Popen, str, Callable[[], str]]]:
    """``python -m target_server --frontends 2`` on the null model in a session of its own, until
    /health is 200; yields the process, its URL and a reader of its log. Every process of the
    server, as found at start, is killed at the end, whatever the test did."""
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "target_server", "--port", str(port), "--model", "null:64"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--no-warmup", "--threads", "4", "--frontends", "2", *flags],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    everyone: list[psutil.Process] = []
    try:
        ready = eventually(lambda: http_status(f"{url}/health") == 200 or process.poll() is not None, 120)
        assert ready and process.poll() is None, log.read_text()[-3000:]
        everyone = psutil.Process(process.pid).children(recursive=True)
        yield process, url, log.read_text
    finally:
        for member in [*everyone, process]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                member.kill()
        process.wait()


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def family(pid: int) -> tuple[list[psutil.Process], psutil.Process]:
    """The gunicorn workers and the model process under the serve process ``pid``."""
    children, commands = [], {}
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):  # a worker just ended
            commands[child.pid] = " ".join(child.cmdline())
            children.append(child)
    model = [child for child in children if "target_server.model_process" in commands[child.pid]]
    assert len(model) == 1, commands
    return [child for child in children if child not in model], model[0]


def test_serve_runs_two_front_ends_and_stops_whole_on_sigterm(tmp_path, spawn: None) -> None:
    import requests

    with served(tmp_path) as (process, url, log):
        workers, model = family(process.pid)
        assert len(workers) == 2
        answer = requests.post(f"{url}/embed", json={"texts": ["hello", "world"]}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["embeddings"][0]) == 64
        assert requests.get(f"{url}/info", timeout=5).json()["frontends"]["processes"] == 2
        metrics_port = requests.get(f"{url}/info", timeout=5).json()["metrics"]["port"]
        assert http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200  # the model process's listener
        # A front end that exits (here: killed) is replaced by gunicorn; the model process stays.
        workers[0].kill()
        assert eventually(lambda: len(family(process.pid)[0]) == 2 and family(process.pid)[0] != workers, 30)
        assert family(process.pid)[1].pid == model.pid
        for _ in range(4):  # new connections: the new worker takes some
            assert requests.post(f"{url}/embed", json={"texts": ["again"]}, timeout=30).status_code == 200
        workers = family(process.pid)[0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log()[-3000:]
        assert all(gone(p) for p in [*workers, model])
        folder = os.path.dirname(
            next(line for line in log().splitlines() if "listening at" in line).split()[-1]
        )
        assert not os.path.exists(folder), "the socket's folder outlived the server"


def test_a_stop_sent_to_the_whole_group_is_a_clean_stop(tmp_path, spawn: None) -> None:
    # What Ctrl-C in a terminal and target_server.launcher do: signal every process of the group.
    # The model process is not in it, so it outlives the front ends' drain and stops after them.
    with served(tmp_path) as (process, _, log):
        workers, model = family(process.pid)
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log()[-3000:]
        assert "the model process exited" not in log()
        assert eventually(lambda: all(gone(p) for p in [*workers, model]), 10)


def test_a_dead_model_process_stops_the_server_with_an_error(tmp_path, spawn: None) -> None:
    with served(tmp_path) as (process, url, log):
        workers, model = family(process.pid)
        model.kill()
        assert process.wait(timeout=60) == 1, log()[-3000:]
        assert "the model process exited" in log()
        assert eventually(lambda: all(gone(w) for w in workers))
        assert http_status(f"{url}/health", timeout_s=1) is None


def test_a_killed_serve_process_takes_its_model_process_along(tmp_path, spawn: None) -> None:
    with served(tmp_path) as (process, _, log):
        workers, model = family(process.pid)
        folder = os.path.dirname(
            next(line for line in log().splitlines() if "listening at" in line).split()[-1]
        )
        process.kill()
        process.wait()
        assert eventually(lambda: gone(model), 10), "the model process outlived its serve process"
        assert eventually(lambda: all(gone(w) for w in workers), 15)
        assert not os.path.exists(folder), "the socket's folder outlived the model process"
