"""The first screen of a report.html as a PNG, in headless Chromium (Debian's ``chromium``, driven by
Playwright; no browser download): what a reader sees before scrolling.

    .venv/bin/python docs/screenshot_report.py runs/demo/report/report.html docs/report_first_screen.png
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

VIEWPORT = {"width": 1280, "height": 900}


def screenshot(html: Path, png: Path) -> None:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(png))
        browser.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}")
