"""``report.html`` in headless Chromium (Debian's ``chromium``, installed by .ci/run): every image
loads, nothing is logged as an error, and a screenshot is kept for a human to look at."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from reports.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # git-ignored
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

# Installed first in <head>: records errors and console.error calls, then after load writes what the
# images did into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(e.message || ('failed to load ' + (e.target && e.target.tagName)));
}, true);
var originalError = console.error;
console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  originalError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt; });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({images: images.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""
PROBE_RESULT = re.compile(r'<pre id="probe">(.*?)</pre>', re.DOTALL)


def chromium(user_data: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data}",
        "--enable-logging=stderr",
        "--v=0",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def probe(page: Path, tmp_path: Path) -> tuple[dict, str]:
    probed = tmp_path / "probe.html"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8"
    )
    done = chromium(tmp_path / "profile-probe", "--dump-dom", probed.as_uri())
    found = PROBE_RESULT.search(done.stdout)
    assert found, f"chromium printed no probe result (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), done.stderr


def test_probe_catches_broken_images_and_errors(tmp_path: Path, spawn: None) -> None:
    """The check itself can fail: a broken image and a script error are reported."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head></head><body><img alt="broken" src="data:image/png;base64,AAAA">'
        "<script>console.error('boom'); missingFunction();</script></body></html>"
    )
    result, stderr = probe(page, tmp_path)
    assert result["broken"] == ["broken"]
    assert "console.error: boom" in result["errors"]
    assert any("missingFunction" in error for error in result["errors"])
    assert ":CONSOLE" in stderr


def test_report_html_renders(study_runs: dict[str, Path], tmp_path: Path, spawn: None) -> None:
    out = tmp_path / "report"
    assert main([*map(str, study_runs.values()), "--out", str(out), "--compare-study"]) == 0
    page = out / "report.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text), "report.html must open offline"

    result, stderr = probe(page, tmp_path)
    assert result["images"] == len(list(out.glob("*.png"))) == 5
    assert result["broken"] == []
    assert result["errors"] == []
    assert ":CONSOLE" not in stderr

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report_html.png"
    screenshot.unlink(missing_ok=True)
    chromium(
        tmp_path / "profile-shot",
        "--hide-scrollbars",
        "--window-size=1400,4200",
        f"--screenshot={screenshot}",
        page.as_uri(),
    )
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    print(f"screenshot of report.html: {screenshot}")


SECTION = re.compile(r'<section(?: class="separate")?>\n<h2 id="(?P<id>[^"]+)">.*?</section>', re.DOTALL)
SHOTS = {  # section id -> screenshot name (tests/artifacts/, git-ignored)
    "summary": "section_summary.png",
    "reference-study--published-figures--not-measured-here": "section_study.png",
    "latency": "section_latency.png",
    "where-the-time-goes": "section_time_split.png",
    "token-throughput": "section_token_throughput.png",
    "repeats": "section_repeats.png",
    "cost": "section_cost.png",
}


def screenshot_section(page: Path, section_id: str, target: Path, tmp_path: Path) -> None:
    """One section of report.html alone (the page's own <head>), shot in a tall window, then cropped
    to what it drew."""
    from PIL import Image, ImageChops

    text = page.read_text(encoding="utf-8")
    found = next(match for match in SECTION.finditer(text) if match.group("id") == section_id)
    alone = tmp_path / f"{section_id}.html"
    alone.write_text(
        text.split("<body>", 1)[0] + "<body>\n" + found.group(0) + "\n</body></html>", encoding="utf-8"
    )
    chromium(tmp_path / f"profile-{section_id}", "--hide-scrollbars", "--window-size=1400,5000",
             f"--screenshot={target}", alone.as_uri())  # fmt: skip
    image = Image.open(target).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    assert box, f"{section_id}: nothing drawn"
    image.crop((0, 0, image.size[0], min(box[3] + 20, image.size[1]))).save(target, optimize=True)


def test_reworked_sections_render_and_are_shot(tmp_path: Path, spawn: None) -> None:
    """Records with repeats, timing headers and a partial run beside a complete one, with the study:
    every reworked section renders without a broken image or an error, and is kept as a screenshot."""
    from tests.reports.record_fixtures import RecordCell, write_record_run

    cells = [
        RecordCell(1, 128, 1, requests_per_user=12, median_ms=120.0),
        RecordCell(8, 128, 8, requests_per_user=15, median_ms=450.0, fail_every=25),
        RecordCell(16, 512, 4, requests_per_user=10, median_ms=1400.0, sigma=0.5, planned=48),
    ]
    complete = [replace(cell, planned=None) for cell in cells]
    write_record_run(tmp_path / "continuous", complete, label="continuous", repeats=3, seed=3)
    write_record_run(tmp_path / "none", cells, label="none", repeats=3, seed=4, status="interrupted")
    out = tmp_path / "report"
    argv = [str(tmp_path / "continuous"), str(tmp_path / "none"), "--out", str(out), "--compare-study",
            "--price-per-hour", "1.408"]  # fmt: skip
    assert main(argv) == 0
    page = out / "report.html"
    result, _ = probe(page, tmp_path)
    assert result["images"] == len(list(out.glob("*.png"))) == 8
    assert result["broken"] == [] and result["errors"] == []
    ARTIFACTS.mkdir(exist_ok=True)
    for section_id, name in SHOTS.items():
        screenshot_section(page, section_id, ARTIFACTS / name, tmp_path)
        assert (ARTIFACTS / name).read_bytes().startswith(b"\x89PNG")
    print(f"section screenshots: {ARTIFACTS}")
