"""What ``/metrics`` says about saturation: what waits (requests, tokens), how full and how long each
forward pass is, the process's CPU, and the GPU's utilization, memory and power where NVML works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from target_server import service_of
from target_server.gpu_metrics import Device, GpuCollector, gpu_collector
from target_server.metrics import ServerMetrics
from tests.target_server.conftest import sample, scrape


def hold_the_first_pass(app) -> tuple[threading.Event, threading.Event]:
    """Make the first forward pass wait for ``release``; ``entered`` is set once it is in it."""
    service = service_of(app)
    inner = service.embedder.embed
    entered, release = threading.Event(), threading.Event()

    def embed(batch, task=None):
        if not entered.is_set():
            entered.set()
            release.wait(30)
        return inner(batch, task)

    service.embedder.embed = embed
    return entered, release


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["continuous", "none", "timeout"])
def test_the_queue_gauges_count_the_requests_and_tokens_that_wait(make_app, mode: str) -> None:
    """One request is held in its forward pass; the ones sent meanwhile wait, and the gauges say how
    many requests and how many tokens; once released, everything drains to zero."""
    app = make_app(batching=mode, batch_timeout_s=0.01)
    entered, release = hold_the_first_pass(app)
    client = app.test_client()
    batcher = service_of(app).batcher
    tokenize = service_of(app).embedder.tokenize
    waiting = [{"texts": ["one two three", "four"]}, {"texts": ["five six"]}, {"texts": ["seven"]}]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/embed", json={"texts": ["the held one"]})
        assert entered.wait(10)
        later = [pool.submit(client.post, "/embed", json=body) for body in waiting]
        wait_for(lambda: len(batcher._admitted) == 1 + len(waiting))
        metrics = scrape(client.get("/metrics").text)
        release.set()
        assert all(f.result().status_code == 200 for f in [first, *later])
    tokens = sum(len(ids) for body in waiting for ids in tokenize(body["texts"], truncate=True))
    assert sample(metrics, "embed_requests_in_flight") == 1 + len(waiting)
    assert sample(metrics, "embed_queue_requests") == len(waiting)
    assert sample(metrics, "embed_queue_tokens") == tokens
    drained = scrape(client.get("/metrics").text)
    for name in ("embed_requests_in_flight", "embed_queue_requests", "embed_queue_tokens"):
        assert sample(drained, name) == 0, name


def test_pass_size_series_add_up_to_the_work_done(make_app) -> None:
    """Per forward pass: requests, real tokens (padding excluded), padded tokens and inputs; their sums
    are the requests and tokens embedded, so a mean pass size is a ratio of two counters."""
    app = make_app(batching="continuous")
    entered, release = hold_the_first_pass(app)
    client = app.test_client()
    bodies = [{"texts": [f"request {i} " + "word " * i]} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(client.post, "/embed", json=bodies[0])
        assert entered.wait(10)
        rest = [pool.submit(client.post, "/embed", json=body) for body in bodies[1:]]
        wait_for(lambda: len(service_of(app).batcher._admitted) == len(bodies))
        release.set()
        assert all(f.result().status_code == 200 for f in [first, *rest])
    metrics = scrape(client.get("/metrics").text)
    passes = sample(metrics, "embed_batch_requests_count")
    assert passes == 2  # the held pass, then the five that waited, together
    assert sample(metrics, "embed_batch_requests_sum") == len(bodies)
    assert sample(metrics, "embed_batch_tokens_sum") == sample(metrics, "embed_tokens_total")
    assert sample(metrics, "embed_batch_padded_tokens_sum") > sample(metrics, "embed_batch_tokens_sum")
    assert sample(metrics, "embed_batch_size_sum") == sample(metrics, "embed_inputs_total") == len(bodies)
    assert sample(metrics, "embed_batch_seconds_count") == passes


def test_the_process_cpu_and_memory_are_exported(make_app) -> None:
    """prometheus-client's ProcessCollector, on the app's own registry: the CPU seconds of the process
    that does the work (tokenization and forward passes), which grow with it."""
    client = make_app().test_client()
    before = sample(scrape(client.get("/metrics").text), "process_cpu_seconds_total")
    for _ in range(2):  # over a second of CPU on 2 cores: the counter's ticks are 10 ms
        client.post("/embed", json={"texts": ["a passage of several words " * 20] * 16})
    after = scrape(client.get("/metrics").text)
    assert after["process_cpu_seconds"].type == "counter"
    assert sample(after, "process_cpu_seconds_total") > before
    assert sample(after, "process_resident_memory_bytes") > 50e6


def test_a_model_on_the_cpu_exports_no_gpu_series(make_app) -> None:
    metrics = scrape(make_app().test_client().get("/metrics").text)
    assert not [name for name in metrics if name.startswith("embed_gpu")]
    assert gpu_collector("cpu") is None


def test_without_nvidia_ml_py_or_a_driver_there_is_no_gpu_collector(monkeypatch) -> None:
    """The two ways a CUDA server can lack NVML: the package is not installed, or the driver's library
    is missing (as on this machine when it has no GPU). Neither raises; neither exports anything."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    assert gpu_collector("cuda") is None
    monkeypatch.undo()

    class NoDriver:
        class NVMLError(Exception):
            pass

        def nvmlInit(self) -> None:
            raise self.NVMLError("NVML Shared Library Not Found")

    assert gpu_collector("cuda:0", nvml=NoDriver()) is None


class NvmlDouble:
    """NVML's calls as nvidia-ml-py names them, for two boards: the second reports no power (as some
    boards do), so that figure is left out of its scrape."""

    class NVMLError(Exception):
        pass

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=[87, 3][handle], memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=[30e9, 1e9][handle], total=80e9, free=0)

    def nvmlDeviceGetPowerUsage(self, handle):
        if handle == 1:
            raise self.NVMLError("Not Supported")
        return 612_500  # milliwatts


def test_the_gpu_collector_exports_utilization_memory_and_power_per_gpu() -> None:
    metrics = ServerMetrics()
    metrics.collector(GpuCollector(NvmlDouble(), [Device(0, "NVIDIA H200", 0), Device(1, "NVIDIA A10G", 1)]))
    found = scrape(metrics.render().decode())
    h200, a10g = {"gpu": "0", "gpu_name": "NVIDIA H200"}, {"gpu": "1", "gpu_name": "NVIDIA A10G"}
    assert sample(found, "embed_gpu_utilization_percent", **h200) == 87
    assert sample(found, "embed_gpu_utilization_percent", **a10g) == 3
    assert sample(found, "embed_gpu_memory_used_bytes", **h200) == 30e9
    assert sample(found, "embed_gpu_memory_total_bytes", **a10g) == 80e9
    assert sample(found, "embed_gpu_power_watts", **h200) == 612.5
    assert [s.labels for s in found["embed_gpu_power_watts"].samples] == [h200]


@pytest.mark.gpu
def test_a_model_on_a_real_gpu_exports_its_utilization_memory_and_power() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    collector = gpu_collector("cuda")
    assert collector is not None, "nvidia-ml-py is installed and a driver runs: NVML must work"
    metrics = ServerMetrics()
    metrics.collector(collector)
    found = scrape(metrics.render().decode())
    (device,) = collector.devices  # the one torch's cuda device is, found by its UUID
    assert device.name == torch.cuda.get_device_name(0)
    labels = {"gpu": str(device.index), "gpu_name": device.name}
    assert 0 <= sample(found, "embed_gpu_utilization_percent", **labels) <= 100
    assert (
        0
        < sample(found, "embed_gpu_memory_used_bytes", **labels)
        < sample(found, "embed_gpu_memory_total_bytes", **labels)
    )
    assert sample(found, "embed_gpu_power_watts", **labels) > 10


def test_promtool_accepts_the_servers_metrics(make_app, spawn: None) -> None:
    """``promtool check metrics`` (Prometheus' own linter, Debian's ``prometheus`` package) on a real
    scrape after some work, the GPU series included (through the NVML double)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run installs it)")
    app = make_app()
    service_of(app).metrics.collector(GpuCollector(NvmlDouble(), [Device(0, "NVIDIA H200", 0)]))
    client = app.test_client()
    client.post("/embed", json={"texts": ["one", "two"]})
    client.post("/embed", json={"texts": []})  # a 400, so a second label set exists
    text = client.get("/metrics").text
    assert "embed_gpu_power_watts" in text and 'status="400"' in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
