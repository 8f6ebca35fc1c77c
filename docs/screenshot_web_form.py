"""The custom parameters of Locust's start form as a PNG, in headless Chromium (Debian's ``chromium``,
driven by Playwright; no browser download): each embed-bench option with the label the web UI gives it.

    .venv/bin/python docs/screenshot_web_form.py docs/web-ui-form-labels.png

Starts ``locust -f locustfiles/self_hosted.py`` with its web UI on a free loopback port (nothing is
sent: no test is started), opens the form's "Custom parameters", types a capacity search at p95 <= 500
ms into Grid and SLO p95 (ms) (a field with a value shows its label above it) and shoots that part of
the page.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1100, "height": 900}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"locust exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the web UI did not answer at {url}")


def screenshot(png: Path) -> None:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    port = free_port()
    locust = str(Path(sys.executable).with_name("locust"))
    command = [locust, "-f", str(REPO / "locustfiles" / "self_hosted.py"), "--web-host", "127.0.0.1",
               "--web-port", str(port), "-H", "http://127.0.0.1:8000"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_page(url, process)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.get_by_role("button", name="Custom parameters").click()
            page.get_by_text("SLO p95 (ms)").first.wait_for(timeout=10_000)
            page.add_style_tag(
                content="#embed-bench-link { display: none }"
            )  # the badge floats over the form
            page.fill('input[name="grid"]', "capacity")  # a capacity search, as the form would start it
            page.fill('input[name="sloP95Ms"]', "500")
            page.wait_for_timeout(500)  # the accordion's opening animation
            accordion = page.locator(
                ".MuiAccordion-root", has=page.get_by_role("button", name="Custom parameters")
            )
            accordion.screenshot(path=str(png))
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    screenshot(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}")
