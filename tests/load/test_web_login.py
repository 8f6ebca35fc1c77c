"""The web UI's login (Locust's ``--web-login``), on a real Locust process: nothing without
credentials (401; a browser's page load goes to the login page), everything with them (HTTP Basic,
or the login form's session)."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.load.runs import REPO, locust_command, locust_env, web_ui_locust

pytestmark = pytest.mark.usefixtures("spawn")

USER, PASSWORD = "bench-admin", "correct horse battery staple"
LOGIN_ENV = {"EMBED_BENCH_WEB_USERNAME": USER, "EMBED_BENCH_WEB_PASSWORD": PASSWORD}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(
    url: str,
    *,
    form: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, redirects not followed."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode() if form else None)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


PROTECTED = ("/", "/stats/requests", "/embed-bench", "/embed-bench/state.json", "/logs")
BAD_FORM = {"user_count": "1", "spawn_rate": "1", "batch_size": "notanumber", "run_dir": "/etc"}


def test_the_web_ui_needs_a_login_and_lets_the_right_one_in(tmp_path):
    with web_ui_locust(
        "self_hosted.py", "http://127.0.0.1:9", tmp_path / "run", "--web-login", env=LOGIN_ENV
    ) as ui:
        web = ui.url
        # Without credentials: 401 for every route, ours and Locust's, and for the start form.
        for path in PROTECTED:
            status, headers, _ = call(web + path)
            assert status == 401, path
            assert headers.get("WWW-Authenticate") == 'Basic realm="embed-bench"'
        status, _, body = call(f"{web}/swarm", form=BAD_FORM)
        assert status == 401 and b"not valid" not in body  # the form check never ran
        for wrong in ((USER, "wrong"), ("admin", PASSWORD), ("", "")):
            assert call(f"{web}/stats/requests", auth=wrong)[0] == 401, wrong
        # A browser's page load is sent to the login page, which answers.
        status, headers, _ = call(web + "/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert status == 302 and headers["Location"].endswith("/login")
        status, _, page = call(f"{web}/login")
        assert status == 200 and b"login_submit" in page

        # HTTP Basic with the right user and password: 200 everywhere, and the form check answers.
        for path in PROTECTED:
            assert call(web + path, auth=(USER, PASSWORD))[0] == 200, path
        status, _, body = call(f"{web}/swarm", form=BAD_FORM, auth=(USER, PASSWORD))
        assert status == 200 and json.loads(body)["success"] is False

        # The login form: a wrong password goes back to the login page; the right one opens a session.
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(jar))
        status, headers, _ = call(
            f"{web}/login_submit", form={"username": USER, "password": "nope"}, opener=browser
        )
        assert status == 302 and headers["Location"].endswith("/login")
        assert call(f"{web}/stats/requests", opener=browser)[0] == 401
        status, headers, _ = call(
            f"{web}/login_submit", form={"username": USER, "password": PASSWORD}, opener=browser
        )
        assert status == 302 and not headers["Location"].endswith("/login")
        cookie = next(iter(jar))
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert call(f"{web}/stats/requests", opener=browser)[0] == 200
        assert call(f"{web}/embed-bench/state.json", opener=browser)[0] == 200
    assert "web UI login refused for user 'bench-admin'" in ui.output
    assert PASSWORD not in ui.output


def test_web_login_without_a_password_does_not_start(tmp_path):
    result = subprocess.run(
        locust_command("self_hosted.py", "--web-login", "--web-host", "127.0.0.1", "--web-port", "0"),
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--web-login needs a password: set EMBED_BENCH_WEB_PASSWORD" in result.stderr


def test_a_web_ui_open_to_the_network_without_a_login_warns(tmp_path):
    with web_ui_locust(
        "self_hosted.py", "http://127.0.0.1:9", tmp_path / "run", "--web-host", "0.0.0.0"
    ) as ui:
        pass
    assert "the web UI listens beyond this machine (--web-host '0.0.0.0') without a login" in ui.output
