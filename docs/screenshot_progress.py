"""A long payload preparation as people see it: ``embed-bench run`` in a terminal (tmux) and the web
UI's embed-bench page, both while the heavy cell's bodies are being built.

    .venv/bin/python docs/screenshot_progress.py docs/

Starts the bundled server with its forward pass instant (``--model null:8 --no-warmup``: what takes
the time here is the client's tokenizing, as on the study's 411 s cell), then

1. runs ``embed-bench run`` in a detached tmux session 150 x 12 with a grid whose second cell is
   b=128 t=8192 c=4 (4 users x 4 requests = 16 bodies of a million tokens each), captures the pane
   with ``tmux capture-pane -p -e`` halfway through the preparation, keeps the text
   (``progress-terminal.txt``, ANSI codes included) and renders it to ``progress-terminal.png``
   (rich turns the ANSI text into SVG; Debian's chromium, driven by Playwright, shoots it);
2. starts ``locust -f locustfiles/self_hosted.py --autostart`` with the web UI and the same grid and
   shoots ``/embed-bench`` halfway through the same preparation (``web-ui-preparing.png``).

No browser download: Playwright drives ``/usr/bin/chromium`` (``executable_path``).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from target_server.launcher import running_target_server

REPO = Path(__file__).resolve().parents[1]
GRID = """[[cells]]
concurrency = 1
batch_size = 1
passage_tokens = 16

[[cells]]
concurrency = 4
batch_size = 128
passage_tokens = 8192
"""
SLOW = "b=128 t=8192 c=4"
SESSION = "embed-bench-progress"
COLUMNS, ROWS = 150, 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium() -> str:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    return executable


def halfway(progress: dict | None) -> bool:
    """The slow cell's preparation, between a third and three quarters built."""
    if not progress or progress.get("cell") != SLOW or progress.get("phase") != "preparing":
        return False
    planned = progress.get("payloads_planned") or 0
    return planned > 0 and planned / 3 <= progress["payloads_built"] <= 3 * planned / 4


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running(run_dir: Path) -> bool:
    return (read_json(run_dir / "run.json") or {}).get("status") == "running"


def terminal(url: str, work: Path, out: Path) -> None:
    grid, run_dir = work / "grid.toml", work / "terminal-run"
    grid.write_text(GRID)
    command = (
        f"cd {REPO} && {sys.executable} -m embed_bench run --backend self-hosted --host {url} "
        f"--grid {grid} --out {run_dir} --requests-per-user 3; sleep 30"
    )
    subprocess.run(["tmux", "kill-session", "-t", SESSION], stderr=subprocess.DEVNULL, check=False)
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", SESSION, "-x", str(COLUMNS), "-y", str(ROWS), command], check=True
    )
    try:
        wait_until(lambda: halfway(read_json(run_dir / "progress.json")), 600, "the preparation in tmux")
        time.sleep(1.0)  # the live line redraws twice a second
        capture = subprocess.run(
            ["tmux", "capture-pane", "-p", "-e", "-t", SESSION], check=True, capture_output=True, text=True
        ).stdout
    finally:  # Ctrl-C: embed-bench stops Locust gracefully (it runs in its own session)
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "C-c"], check=False)
        with contextlib.suppress(SystemExit):  # not stopped in time: the session goes anyway
            wait_until(lambda: read_json(run_dir / "run.json") is not None and not running(run_dir), 90, "")
        subprocess.run(["tmux", "kill-session", "-t", SESSION], check=False)
    (out / "progress-terminal.txt").write_text(capture)
    render_ansi(capture, out / "progress-terminal.png")


def render_ansi(capture: str, png: Path) -> None:
    """The captured pane (ANSI text) as a PNG: rich writes it as SVG, chromium shoots the SVG."""
    from rich.console import Console
    from rich.text import Text

    console = Console(
        record=True, width=COLUMNS, force_terminal=True, color_system="truecolor", file=io.StringIO()
    )
    console.print(Text.from_ansi(capture.rstrip("\n")), soft_wrap=True)
    svg = png.with_suffix(".svg")
    console.save_svg(str(svg), title="embed-bench run (tmux capture-pane -p -e)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 500}, device_scale_factor=1)
        page.goto(svg.resolve().as_uri())
        page.locator("svg").screenshot(path=str(png))
        browser.close()
    svg.unlink()
    from PIL import Image, ImageChops  # the page's white around the terminal's frame, cut off

    with Image.open(png) as shot:
        image = shot.convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is not None:
        image.crop(box).save(png)


def web_ui(url: str, work: Path, out: Path) -> None:
    grid, run_dir = work / "grid.toml", work / "web-run"
    grid.write_text(GRID)
    port = free_port()
    locust = str(Path(sys.executable).with_name("locust"))
    command = [locust, "-f", str(REPO / "locustfiles" / "self_hosted.py"), "--web-host", "127.0.0.1",
               "--web-port", str(port), "-H", url, "--csv", str(run_dir / "locust"), "--grid", str(grid),
               "--requests-per-user", "3", "--autostart"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def state() -> dict | None:
        try:
            with urllib.request.urlopen(f"{base}/embed-bench/state.json", timeout=2) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    try:
        wait_until(lambda: halfway((state() or {}).get("progress")), 600, "the preparation in the web UI")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 520})
            page.goto(f"{base}/embed-bench")
            page.locator("#progress:not([hidden])").wait_for(timeout=10_000)
            page.wait_for_timeout(1200)
            page.screenshot(path=str(out / "web-ui-preparing.png"))
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a body being built on the thread pool holds it up
            process.kill()
            process.wait()


def main(out: Path) -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_target_server("--model", "null:8", "--no-warmup") as url,
    ):
        terminal(url, Path(scratch), out)
        web_ui(url, Path(scratch), out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":  # the PNG again from a kept capture
        render_ansi(Path(sys.argv[2]).read_text(), Path(sys.argv[2]).with_suffix(".png"))
        raise SystemExit(0)
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/progress-terminal.txt, progress-terminal.png, web-ui-preparing.png")
