"""The start form's labels in real headless Chromium: each embed-bench option shows its own label
(``OptionSpec.form_label``: "SLO p95 (ms)", not Locust's "Slo P9 5Ms"), then its help, in the label
and in the outline's notch alike; the fields keep Locust's names, so the form still posts what
Locust expects, and a wrong value is refused naming the field by the label shown.

Playwright drives Debian's ``chromium``; without either the module is skipped with the reason.
Screenshots go to tests/artifacts/ (gitignored); docs/screenshot_web_form.py makes the docs' one.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from embed_bench.core.options import OPTION_SPECS
from embed_bench.load.swarm_form import locust_label
from tests.load.runs import REPO, web_ui_locust

pytestmark = pytest.mark.usefixtures("spawn")


ARTIFACTS = REPO / "tests" / "artifacts"
DASH = "\u2014"

FIELDS = """names => Object.fromEntries(names.map(name => {
    const input = document.querySelector(`input[name="${name}"]`);
    if (!input) return [name, null];
    const field = input.closest(".MuiFormControl-root");
    const legend = field.querySelector("legend");
    return [name, {label: field.querySelector("label").textContent,
                   legend: legend ? legend.textContent : null, title: field.title}];
}))"""


def open_custom_parameters(page) -> None:
    page.get_by_role("button", name="Custom parameters").click()
    page.get_by_text("SLO p95 (ms)").first.wait_for(timeout=10_000)


def test_every_option_shows_its_own_label_and_a_wrong_value_is_named_by_it(tmp_path, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    # Nothing listens on the host: the form is only looked at, and the one start is refused.
    with web_ui_locust("self_hosted.py", "http://127.0.0.1:9", tmp_path / "run") as web:
        page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        page.goto(web.url)
        open_custom_parameters(page)
        shown = page.evaluate(FIELDS, [spec.form_name for spec in OPTION_SPECS])
        page.locator(
            ".MuiAccordion-root", has=page.get_by_role("button", name="Custom parameters")
        ).screenshot(path=ARTIFACTS / "web-ui-form-labels.png")
        for spec in OPTION_SPECS:
            field = shown[spec.form_name]
            assert field is not None, f"no field {spec.form_name} in the form"
            label = field["label"]
            assert label.startswith(f"{spec.form_label} {DASH} "), (spec.flag, label)
            if spec.dest != "api_key":  # its help is the credentials note (test_credentials.py)
                assert label == f"{spec.form_label} {DASH} {spec.help}", (spec.flag, label)
            assert field["legend"] == label  # the outline's notch is cut for the label shown
            assert field["title"] == label  # the whole text on hover
        page_text = page.inner_text("body")
        assert locust_label("slo_p95_ms") == "Slo P9 5Ms" and "Slo P9 5Ms" not in page_text
        assert "Aws Region" not in page_text and "SLO success (%)" in page_text

        # The fields keep Locust's names. Locust's page posts sloP95Ms as slo_p9_5ms, which its own
        # handler ignored (the field did nothing): the value now reaches the option and its check.
        page.fill('input[name="sloP95Ms"]', "fast")
        page.get_by_role("button", name="Start", exact=True).click()
        message = page.get_by_text("SLO p95 (ms): --slo-p95-ms: invalid value 'fast'")
        message.wait_for(timeout=10_000)
        assert "it accepts a number" in message.inner_text()
        assert not (tmp_path / "run" / "cells.csv").exists()  # nothing started

        # A capacity search needs SLO p95 (ms): without it the start is refused; with it the run
        # starts, so the value reached the option (stopped at once: nothing listens on the host).
        page.fill('input[name="sloP95Ms"]', "")
        page.fill('input[name="grid"]', "capacity")
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text("--grid capacity needs a target").wait_for(timeout=10_000)
        page.fill('input[name="sloP95Ms"]', "250")
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_role("button", name="Stop").wait_for(timeout=30_000)
        with urllib.request.urlopen(urllib.request.Request(f"{web.url}/stop", data=b""), timeout=10):
            pass
        with urllib.request.urlopen(f"{web.url}/embed-bench/state.json", timeout=10) as response:
            assert json.loads(response.read())["grid"] == "capacity"
