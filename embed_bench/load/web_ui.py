"""The embed-bench tab of Locust's web UI: the grid's cells live, a tokens/s chart, the run's report.

Attached by Locust's ``init`` event on the process that serves the web UI (a local runner or the
master; workers have none), on Locust's extension points (locust ``examples/extend_web_ui.py``):

- an ``embed-bench`` tab (``extended_tabs`` + ``extended_tables``, its rows carried as
  ``extended_stats`` in ``/stats/requests``): one row per cell with its state, elapsed time,
  requests, failures, success rate, tokens/s and exact p50 / p95;
- the start form's labels: Locust derives them from the option names ("Slo P9 5Ms"); a page script
  (``web_ui_assets/form_labels.js``) puts each option's own label in place (``OptionSpec.form_label``:
  "SLO p95 (ms)"), leaving the field names, and so what the form posts, as they are;
- ``/embed-bench``: a self-contained page (no CDN) with the same table, a live chart of successful
  tokens/s with the cell boundaries, and the report; linked from a badge on Locust's page and from
  its "Download Data" tab;
- ``/embed-bench/state.json``: what the page draws; ``/embed-bench/report``: the run directory's
  ``report/report.html`` (``?download=1`` to save it), built by ``python -m reports`` in a
  subprocess when the grid ends (``POST`` builds it again);
- a check of the start form before Locust's ``/swarm`` handler (``embed_bench.load.swarm_form``): a wrong
  value gets a message naming the option and what it accepts, instead of a 500, and nothing starts;
  paths in the form are confined (run directory, grid file, tokenizer);
- credentials bound to their host (``embed_bench.load.credentials``): after a start from the form the
  run's key is bound to the host it may go to; the form's API key field says so, and never shows the
  key given at start (Locust would put it, masked, into the page);
- a login with Locust's own ``--web-login`` (``WebLogin``): the user and password come from
  ``EMBED_BENCH_WEB_USERNAME`` / ``EMBED_BENCH_WEB_PASSWORD``; the login page for a browser, HTTP
  Basic credentials for scripts, 401 for anything else without them.

Data comes into a ``LiveGrid`` (``embed_bench.load.live_grid``): every per-request record row the master
(or single process) collects (``embed_bench.load.recorder``, which also ships workers' rows to it), and
cell states from the run's ``cells.csv``, which the walker on this same process writes.
"""

from __future__ import annotations

from locust import events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, Runner

# isort: split
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Any

import gevent
from flask import (
    Blueprint,
    Response,
    g,
    jsonify,
    make_response,
    redirect,
    request,
    send_file,
    session,
    url_for,
)
from flask_login import UserMixin, current_user, login_user
from werkzeug.datastructures import ImmutableMultiDict

from embed_bench.core.cells import GridError, grid_of
from embed_bench.core.contract import RUN_FILES
from embed_bench.core.credentials import (
    DEFAULT_WEB_USERNAME,
    WEB_PASSWORD_ENV,
    WEB_USERNAME_ENV,
    is_loopback,
)
from embed_bench.core.options import (
    OPTION_SPECS,
    BenchOptions,
    OptionError,
    concurrency_option,
    csv_prefix_option,
    resolve_run_dir,
)
from embed_bench.core.progress import PREPARING, RUNNING, RunProgress, clock, progress_line
from embed_bench.load import credentials, recorder
from embed_bench.load.live_grid import CellFigures, LiveGrid
from embed_bench.load.swarm_form import MISPOSTED, FormLimits, restore_form_names, swarm_form_error
from embed_bench.load.workload import CellTracker

logger = logging.getLogger(__name__)

TAB_KEY = "embed-bench"
ROUTE = "/embed-bench"
REPORT_DIR = "report"  # the report goes to <run dir>/report, as `embed-bench report RUN --out RUN/report`
REPORT_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 1.0  # a build killed at quit: how long its process may take to go
CELLS_CSV_POLL_S = 0.5
LIVE_PAGE = files("embed_bench.load").joinpath("web_ui_assets", "live.html")
FORM_LABELS_SCRIPT = files("embed_bench.load").joinpath("web_ui_assets", "form_labels.js")

TAB_COLUMNS = (
    ("cell", "Cell"),
    ("state", "State"),
    ("elapsed_s", "Elapsed (s)"),
    ("requests", "Requests"),
    ("failures", "Failures"),
    ("success_pct", "Success (%)"),
    ("tokens_per_s", "Tokens/s"),
    ("p50_ms", "p50 (ms)"),
    ("p95_ms", "p95 (ms)"),
    ("progress", "Progress"),
)
BADGE = (
    '<a id="embed-bench-link" href="./embed-bench" title="embed-bench: the grid\'s cells, tokens/s, report"'
    ' style="position:fixed;left:16px;bottom:16px;z-index:2000;padding:8px 14px;border-radius:18px;'
    "background:#1b5e20;color:#fff;font:600 14px system-ui,sans-serif;text-decoration:none;"
    'box-shadow:0 2px 6px rgba(0,0,0,.3)">embed-bench: cells, tokens/s, report &#8599;</a>'
)


def form_labels_html() -> str:
    """What goes before the index page's ``</body>``: each option's label by its field name in the
    form (JSON, ``</`` escaped so no value can end the script) and the script that applies them."""
    labels = json.dumps({spec.form_name: spec.form_label for spec in OPTION_SPECS}).replace("</", "<\\/")
    script = FORM_LABELS_SCRIPT.read_text(encoding="utf-8")
    return (
        f'<script id="embed-bench-form-labels" type="application/json">{labels}</script>'
        f"<script>{script}</script>"
    )


LOGIN_REALM = "embed-bench"


class LoginUser(UserMixin):
    def __init__(self, username: str) -> None:
        self.id = username


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison: how long it takes says nothing about how much of it matched."""
    return hmac.compare_digest(given.encode(), expected.encode())


class WebLogin:
    """The login behind Locust's ``--web-login`` (Locust brings the login page and ``login_required``
    on every route; the locustfile supplies the rest, as in Locust's ``examples/web_ui_auth``).

    One user, from ``EMBED_BENCH_WEB_USERNAME`` (default ``embed-bench``) and
    ``EMBED_BENCH_WEB_PASSWORD`` (required), compared in constant time. A browser logs in on the
    login page (a session cookie, ``SameSite=Lax`` so another site cannot post the start form with
    it); a script sends the same user and password as HTTP Basic credentials. Without either, a
    browser's page load is sent to the login page and every other request gets 401."""

    def __init__(self, web_ui: Any, environ: Mapping[str, str]) -> None:
        self.username = environ.get(WEB_USERNAME_ENV, "").strip() or DEFAULT_WEB_USERNAME
        self.password = environ.get(WEB_PASSWORD_ENV, "")
        if not self.password:
            raise SystemExit(
                f"error: --web-login needs a password: set {WEB_PASSWORD_ENV} (and {WEB_USERNAME_ENV}, "
                f"default {DEFAULT_WEB_USERNAME!r}) in the environment of the process with the web UI"
            )
        app = web_ui.app
        app.config.update(
            SECRET_KEY=secrets.token_hex(32),  # sessions end with the process: log in again after a restart
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
        )
        manager = web_ui.login_manager
        manager.user_loader(self._load_user)
        manager.request_loader(self._basic_user)
        manager.unauthorized_handler(self._unauthorized)
        base = getattr(web_ui.environment.parsed_options, "web_base_path", "") or ""
        web_ui.auth_args = {"username_password_callback": f"{base}/login_submit", "title": "embed-bench"}
        blueprint = Blueprint("embed_bench_login", __name__, url_prefix=base or None)
        blueprint.add_url_rule("/login_submit", view_func=self._submit, methods=["POST"])
        app.register_blueprint(blueprint)

    def check(self, username: str, password: str) -> bool:
        # Both compared, always: a wrong user name takes as long as a wrong password.
        return _same(username, self.username) & _same(password, self.password)

    def _load_user(self, user_id: str) -> LoginUser | None:
        return LoginUser(user_id) if _same(user_id, self.username) else None

    def _basic_user(self, incoming: Any) -> LoginUser | None:
        auth = incoming.authorization
        if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
            return None
        return LoginUser(self.username) if self.check(auth.username, auth.password) else None

    def _unauthorized(self) -> Response:
        # A browser's page load (its Accept names text/html; fetch() and scripts send */* or none).
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return redirect(url_for("locust.login"))
        response = make_response(jsonify({"success": False, "message": "login required"}), 401)
        response.headers["WWW-Authenticate"] = f'Basic realm="{LOGIN_REALM}"'
        return response

    def _submit(self) -> Response:
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        if self.check(username, password):
            login_user(LoginUser(self.username))
            return redirect(url_for("locust.index"))
        logger.warning("web UI login refused for user %r from %s", username[:64], request.remote_addr)
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))


def listens_beyond_loopback(web_host: str | None) -> bool:
    """Whether Locust's ``--web-host`` takes connections from other machines ('*': all interfaces)."""
    return not is_loopback(web_host)


def _number(value: float | None, digits: int) -> str:
    return "\N{EM DASH}" if value is None else f"{value:,.{digits}f}"


def progress_of(progress: RunProgress | None, now: float) -> dict[str, Any] | None:
    """state.json's ``progress``: the walker's state (``embed_bench.core.progress``) and, rendered at
    ``now``, its line, time in the phase and estimate (None: none can be made)."""
    if progress is None:
        return None
    line = progress_line(progress, now)
    return {
        **progress.to_json(),
        "line": line.plain,
        "work": line.work,
        "elapsed_s": round(progress.elapsed_s(now), 1),
        "estimate_left_s": progress.left_at(now),
    }


def tab_row(index: int, figures: CellFigures, progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """A row of the tab's table; Locust renders values as given, so units live in the titles. The
    cell being prepared or run shows its progress (``progress_of``), and a cell being prepared is
    "preparing" before cells.csv knows of it.

    Locust sorts the rows by their ``name``, a column it does not show: the walk's order."""
    current = (
        progress is not None
        and progress["phase"] in (PREPARING, RUNNING)
        and (progress["cell"], progress["repeat"]) == (figures.cell, figures.repeat)
        and figures.state != "done"
    )
    text = ""
    if current:
        assert progress is not None
        left = progress["estimate_left_s"]
        text = f"{progress['work']}, {clock(progress['elapsed_s'])}" + (
            f", about {clock(left)} left" if left is not None else ""
        )
    state = PREPARING if current and progress and progress["phase"] == PREPARING else figures.state
    return {
        "name": f"{index:05d}",
        "cell": figures.cell if figures.repeat == 0 else f"{figures.cell} (repeat {figures.repeat + 1})",
        "state": state,
        "elapsed_s": _number(figures.elapsed_s, 1),
        "requests": figures.requests,
        "failures": figures.failures,
        "success_pct": _number(figures.success_pct, 1),
        "tokens_per_s": _number(figures.throughput_tokens_per_s, 0),
        "p50_ms": _number(figures.p50_latency_ms, 1),
        "p95_ms": _number(figures.p95_latency_ms, 1),
        "progress": text,
    }


class RunReport:
    """The report of the run directory, built off the gevent loop by ``python -m reports``."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.state = "none"
        self.message = ""
        self._greenlet: gevent.Greenlet | None = None
        self._closed = False  # the process is quitting: no new build

    @property
    def html(self) -> Path | None:
        return self.run_dir / REPORT_DIR / "report.html" if self.run_dir is not None else None

    def reset(self, run_dir: Path | None) -> None:
        """A new run: the last report no longer describes it."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self.run_dir = run_dir
        if run_dir is None:
            self.state = "unavailable"
            self.message = "no run directory: start Locust with --csv DIR/locust (or --run-dir) for a report"
        else:
            self.state, self.message = "waiting", "built when the grid ends"

    def build(self) -> None:
        if self.run_dir is None or self._closed:
            return
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self.state, self.message = "building", f"python -m reports {self.run_dir}"
        self._greenlet = gevent.spawn(self._build, self.run_dir)

    def _build(self, run_dir: Path) -> None:
        out = run_dir / REPORT_DIR
        command = [sys.executable, "-m", "reports", str(run_dir), "--out", str(out)]
        try:
            # Locust monkey-patched subprocess: the web UI keeps serving while the report builds.
            result = subprocess.run(command, capture_output=True, text=True, timeout=REPORT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.state, self.message = "failed", f"{' '.join(command)}: {exc}"
        else:
            if result.returncode == 0 and (out / "report.html").is_file():
                self.state, self.message = "ready", str(out / "report.html")
            else:
                lines = (result.stderr or result.stdout).strip().splitlines()
                self.state = "failed"
                self.message = lines[-1] if lines else f"python -m reports exited {result.returncode}"
        logger.info("embed-bench report %s: %s", self.state, self.message)
        self._greenlet = None

    def wait(self, timeout_s: float) -> None:
        """Let a build under way finish: an unattended master (``--autoquit``) quits a second after
        the grid ends, and the report is what it was started for."""
        self._closed = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=timeout_s)

    def stop(self) -> None:
        """Stop a build under way, its ``python -m reports`` process with it (``subprocess.run``
        kills its child when the greenlet is killed), and start no other: the process quits on a
        signal, and Ctrl-C must not wait for a report (it once waited the whole build, 10 s and more)."""
        self._closed = True
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None or greenlet.dead:
            return
        greenlet.kill(block=True, timeout=STOP_TIMEOUT_S)
        assert self.run_dir is not None
        self.state = "stopped"
        self.message = f"stopped by the quit; build it with: embed-bench report {self.run_dir}"
        logger.warning("embed-bench report of %s not built: %s", self.run_dir, self.message)

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "message": self.message}


class EmbedBenchTab:
    """The tab, its routes and hooks on one web UI; the LiveGrid it shows follows each new run."""

    _instances: weakref.WeakKeyDictionary[Environment, EmbedBenchTab] = weakref.WeakKeyDictionary()

    def __init__(self, environment: Environment) -> None:
        assert environment.web_ui is not None and environment.web_ui.app is not None
        self.environment = environment
        self.live = LiveGrid()
        self.report = RunReport()
        self.run_dir: Path | None = None
        self.problem = ""
        self._cells_csv_polled = 0.0
        namespace = environment.parsed_options
        self.limits = FormLimits.at_start(
            vars(namespace) if namespace is not None else {}, csv_prefix_option(namespace)
        )
        self.interrupted = False  # a SIGINT (Ctrl-C) reached this process
        self._watch_sigint()
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stop.add_listener(self.on_test_stop)
        events.quitting.add_listener(self.on_quitting)
        self._extend(environment.web_ui)
        EmbedBenchTab._instances[environment] = self

    @classmethod
    def of(cls, environment: Environment) -> EmbedBenchTab | None:
        return cls._instances.get(environment)

    # --- runs -------------------------------------------------------------------------------------
    def begin_run(self) -> None:
        """Show the run the parsed options describe: its cells waiting, no figures, no report yet."""
        namespace = self.environment.parsed_options
        self.problem = ""
        cells: list[str] = []
        grid_name = ""
        try:
            options = BenchOptions.from_namespace(namespace)
            grid = grid_of(options, concurrency_option(namespace))
            cells, grid_name = [cell.name for cell in grid.cells], grid.name
            self.run_dir = resolve_run_dir(options, csv_prefix_option(namespace))
        except (GridError, OptionError) as exc:
            self.problem, self.run_dir = f"cannot run the grid: {exc}", None
        self.live.begin_run(cells, grid_name)
        self.report.reset(self.run_dir)
        self._cells_csv_polled = 0.0

    def on_test_start(self, **_kwargs: Any) -> None:
        if not self.live.is_open:  # a start the form did not announce (autostart, a plain run)
            self.begin_run()

    def on_test_stop(self, **_kwargs: Any) -> None:
        self._sync_cells_csv(force=True)
        self.live.end_run()
        self.report.build()

    def _watch_sigint(self) -> None:
        """Note a Ctrl-C before Locust acts on it (the handler it replaces still runs): Locust's
        ``--autostart`` answers one during the run with its ``--autoquit`` path, as if unattended."""
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):
            return

        def on_sigint(signum: int, frame: Any) -> Any:
            self.interrupted = True
            return previous(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread (an embedding harness): no watch
            signal.signal(signal.SIGINT, on_sigint)

    def on_quitting(self, **_kwargs: Any) -> None:
        """Locust's ``--autoquit`` stops the web UI, then quits: wait for the report being built,
        which is what an unattended run is for. A signal (Ctrl-C, SIGTERM) quits with the web UI
        still serving, or after a Ctrl-C: stop the build, so the process ends at once."""
        web_ui = self.environment.web_ui
        greenlet = getattr(web_ui, "greenlet", None)
        if greenlet is not None and greenlet.dead and not self.interrupted:
            self.report.wait(REPORT_TIMEOUT_S)
        else:
            self.report.stop()

    def _sync_cells_csv(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.run_dir is None or (not force and now - self._cells_csv_polled < CELLS_CSV_POLL_S):
            return
        self._cells_csv_polled = now
        self.live.sync_cells_csv(self.run_dir / RUN_FILES.cells_csv)

    # --- views ------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Bring in the request records collected since the last view, and the walker's cells.csv."""
        records = recorder.RequestRecorder.of(self.environment)
        if records is not None:
            records.publish()
        self._sync_cells_csv()

    def snapshot(self) -> dict[str, Any]:
        self._refresh()
        runner = self.environment.runner
        return {
            "grid": self.live.grid_name,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            "locust_state": runner.state if runner is not None else "missing",
            "problem": self.problem,
            "started_at": self.live.started_at,
            "ended_at": self.live.ended_at,
            "cells": [asdict(figures) for figures in self.live.figures()],
            "throughput": asdict(self.live.throughput()),
            "report": self.report.describe(),
            "progress": self.progress(),
        }

    def progress(self) -> dict[str, Any] | None:
        """The grid walker's progress on this process (the master or the single one), if it walks."""
        tracker = CellTracker.find(self.environment)
        return progress_of(tracker.progress if tracker is not None else None, time.time())

    def tab_rows(self) -> list[dict[str, Any]]:
        self._refresh()
        progress = self.progress()
        return [tab_row(index, figures, progress) for index, figures in enumerate(self.live.figures())]

    # --- Flask -------------------------------------------------------------------------------------
    def _extend(self, web_ui: Any) -> None:
        web_ui.template_args.update(
            extended_tabs=[{"title": "embed-bench", "key": TAB_KEY}],
            extended_tables=[
                {"key": TAB_KEY, "structure": [{"key": key, "title": title} for key, title in TAB_COLUMNS]}
            ],
            extended_csv_files=[
                {"href": "./embed-bench", "title": "embed-bench live view: cells, tokens/s chart, report"},
                {
                    "href": "./embed-bench/report?download=1",
                    "title": "Download the embed-bench report (HTML)",
                },
            ],
        )
        options = self.environment.parsed_options
        self.login: WebLogin | None = None
        if web_ui.web_login:
            self.login = WebLogin(web_ui, os.environ)
        elif listens_beyond_loopback(getattr(options, "web_host", None)):
            logger.warning(
                "the web UI listens beyond this machine (--web-host %r) without a login: anyone who "
                "reaches port %s can start runs. Pass --web-host 127.0.0.1, or --web-login with %s set",
                getattr(options, "web_host", ""),
                getattr(options, "web_port", ""),
                WEB_PASSWORD_ENV,
            )
        self._wrap_template_args(web_ui)
        blueprint = Blueprint("embed_bench", __name__, url_prefix=getattr(options, "web_base_path", None))
        guard = web_ui.auth_required_if_enabled

        @blueprint.route(ROUTE)
        @guard
        def live_page() -> Response:
            return make_response(LIVE_PAGE.read_text(encoding="utf-8"))

        @blueprint.route(f"{ROUTE}/state.json")
        @guard
        def state() -> Response:
            return jsonify(self.snapshot())

        @blueprint.route(f"{ROUTE}/report", methods=["GET"])
        @guard
        def report() -> Response:
            html = self.report.html
            if self.report.state != "ready" or html is None or not html.is_file():
                return make_response(f"No report yet ({self.report.state}: {self.report.message}).\n", 404)
            download = request.args.get("download")
            name = f"embed-bench-report-{self.run_dir.name if self.run_dir else 'run'}.html"
            return send_file(html, mimetype="text/html", as_attachment=bool(download), download_name=name)

        @blueprint.route(f"{ROUTE}/report", methods=["POST"])
        @guard
        def rebuild_report() -> Response:
            self.report.build()
            return jsonify(self.report.describe())

        web_ui.app.register_blueprint(blueprint)
        web_ui.app.before_request(self._check_swarm_form)
        web_ui.app.after_request(self._after_request)

    def _wrap_template_args(self, web_ui: Any) -> None:
        """Locust fills the form's custom fields with the values given at start, secrets included
        (masked, but in the page's source): blank those, and say where the API key goes."""
        update = web_ui.update_template_args
        defaults = [getattr(user, "credential_default_host", None) for user in self.environment.user_classes]

        def update_template_args() -> None:
            update()
            extra = web_ui.template_args.get("extra_options") or {}
            for option in extra.values():
                if option.get("is_secret"):
                    option["default_value"] = ""
            if credentials.API_KEY_FIELD in extra:
                extra[credentials.API_KEY_FIELD]["help_text"] = credentials.form_note(
                    self.environment, defaults
                )

        web_ui.update_template_args = update_template_args

    def _logged_in(self) -> bool:
        """Without a login the form is open; with one, a request without credentials is left to
        Locust's handler (401) and must not reach our checks or change the run's credentials."""
        return self.login is None or bool(current_user.is_authenticated)

    def _check_swarm_form(self) -> Response | None:
        if request.endpoint != "locust.swarm" or request.method != "POST" or not self._logged_in():
            return None
        if MISPOSTED.keys() & request.form.keys():
            # Locust's page posts sloP95Ms as slo_p9_5ms, which its handler would ignore.
            request.form = ImmutableMultiDict(restore_form_names(request.form.items(multi=True)))
        namespace = self.environment.parsed_options
        current = vars(namespace) if namespace is not None else {}
        message = swarm_form_error(request.form, current, self.limits)
        if message is not None:
            logger.warning("start form refused: %s", message)
            g.embed_bench_refused = True
            return jsonify({"success": False, "message": message, "host": self.environment.host})
        runner = self.environment.runner
        # Locust's handler starts a shape test only when none is running (start_shape).
        g.embed_bench_starts_run = runner is not None and runner.shape_greenlet is None
        return None

    def _after_request(self, response: Response) -> Response:
        endpoint = request.endpoint
        if (
            endpoint == "locust.swarm"
            and request.method == "POST"
            and not g.get("embed_bench_refused")
            and self._logged_in()
        ):
            started = bool((response.get_json(silent=True) or {}).get("success"))
            # Before any user of the run exists (the walk starts once this request is answered).
            credentials.form_submitted(self.environment, request.form, started)
            if started and g.get("embed_bench_starts_run"):
                self.begin_run()  # before the walk prepares its first cell: the tab shows it
        elif endpoint == "locust.request_stats" and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": TAB_KEY, "data": self.tab_rows()}]
            response.set_data(jsonify(body).get_data())
        elif endpoint == "locust.index" and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            if "</body>" in page and "embed-bench-link" not in page:
                response.set_data(page.replace("</body>", BADGE + form_labels_html() + "</body>", 1))
        return response


def live_grid_of(environment: Environment) -> LiveGrid | None:
    """The hook for the grid walker and the request records: the LiveGrid the web UI shows, if any."""
    tab = EmbedBenchTab.of(environment)
    return tab.live if tab is not None else None


@events.init.add_listener
def on_init(
    environment: Environment, runner: Runner | None = None, web_ui: Any = None, **_kwargs: Any
) -> None:
    if web_ui is not None and isinstance(runner, LocalRunner | MasterRunner):
        tab = EmbedBenchTab(environment)
        recorder.attach(environment, runner)  # the tab reads its figures from the request records
        records = recorder.RequestRecorder.of(environment)
        if records is not None:
            records.subscribe(tab.live.add_rows)
