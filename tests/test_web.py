"""The web dashboard (docs/web.md): `corral web` and its persistence, its security
checked with plain HTTP, and the page itself in a real Chromium driven by
Playwright (skipped, with the reason, when either is missing; .ci/run installs
both). CORRAL_SCREENSHOT_DIR=docs makes the page test write docs/web.png.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import signal
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Corral, alive, free_port, wait_for

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the browser tests skip
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SECRET = "s3cr3t-value-never-shown"

CRASHY = """\
import os, sys, time
while True:
    if os.path.exists("crash.now"):
        os.remove("crash.now")
        print("boom: the disk is on fire", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(0.02)
"""
TALKER = """\
import os, sys, time
print("talker up", flush=True)
while True:
    if os.path.exists("say.txt"):
        with open("say.txt") as f:
            text = f.read().strip()
        os.remove("say.txt")
        print(text, flush=True)
        print("to stderr: " + text, file=sys.stderr, flush=True)
    time.sleep(0.02)
"""
IDLE = "import time\nwhile True:\n    time.sleep(1)\n"


class Dashboard:
    """The URL `corral web` printed, and plain HTTP requests to it."""

    def __init__(self, url: str) -> None:
        found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", url.strip())
        assert found, url
        self.port = int(found.group(1))
        self.token = found.group(2)
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = url.strip()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            # a stream (/api/stream) never ends: its first bytes are enough
            data = resp.read(200) if resp.getheader("Content-Type") == \
                "text/event-stream" else resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def action(self, action: str, target: str, headers: dict[str, str]
               ) -> tuple[int, dict[str, Any] | str]:
        status, _, data = self.request("POST", "/api/action", json.dumps(
            {"action": action, "target": target}).encode(),
            {"Content-Type": "application/json", **headers})
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode()


def web_on(corral: Corral, *args: str) -> Dashboard:
    return Dashboard(corral.run("web", "--port", str(free_port()), *args).stdout)


def start(corral: Corral, name: str, code: str, *args: str) -> dict[str, Any]:
    script = corral.script(f"{name}.py", code)
    env = dict(corral.env, CORRAL_TEST_SECRET=SECRET)
    corral.run("start", str(script), "--name", name, *args, env=env)
    return corral.wait_status(name, "online")


def pid_of(corral: Corral, name: str) -> int:
    row = corral.app(name)
    assert row is not None
    return int(row["pid"])


# ---- `corral web` -------------------------------------------------------------------

def test_web_prints_a_url_with_a_token_and_the_next_daemon_serves_it_again(
        corral: Corral) -> None:
    dash = web_on(corral)
    token_file = corral.home / "web.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == dash.token
    assert corral.run("web", "--url").stdout.strip() == dash.url
    state = json.loads((corral.home / "state.json").read_text())
    assert state["web"] == {"host": "127.0.0.1", "port": dash.port, "allow_remote": False}
    assert dash.request("GET", "/api/state", headers=dash.bearer())[0] == 200

    # a daemon killed with SIGKILL: the next one serves the dashboard again, same token
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    assert corral.run("web", "--url").stdout.strip() == dash.url
    assert dash.request("GET", "/api/state", headers=dash.bearer())[0] == 200

    # rotate: the old token stops working at once
    rotated = Dashboard(corral.run("web", "--rotate").stdout)
    assert rotated.port == dash.port and rotated.token != dash.token
    assert token_file.read_text().strip() == rotated.token
    assert dash.request("GET", "/api/state", headers=dash.bearer())[0] == 401
    assert dash.request("GET", f"/?token={dash.token}")[0] == 401
    assert dash.request("GET", "/api/state", headers=dash.bearer(rotated.token))[0] == 200

    # stop: nothing listens, --url says so, and the next daemon leaves it off
    assert "off" in corral.run("web", "--stop").stdout
    with pytest.raises(OSError):
        dash.request("GET", "/", timeout=2)
    off = corral.run("web", "--url", check=False)
    assert off.returncode == 1 and "off" in off.stderr
    assert json.loads((corral.home / "state.json").read_text())["web"] is None


def test_an_action_that_cannot_be_recorded_says_so(corral: Corral) -> None:
    """A dashboard action answers once the list is on disk, as a CLI request does: on a
    full disk its answer is an error that names state.json and the cause."""
    from test_faults import fill, small_tmpfs, tmpfs_needed

    if tmpfs_needed.args[0]:
        pytest.skip(tmpfs_needed.kwargs["reason"])
    with small_tmpfs(corral.home):
        try:
            start(corral, "calm", "import time\ntime.sleep(600)\n")
            dash = web_on(corral)
            filler = fill(corral.home)
            own = {**dash.bearer(), "Origin": dash.origin}
            status, reply = dash.action("stop", "calm", own)
            assert status == 500, (status, reply)
            assert isinstance(reply, dict) and reply["ok"] is False
            assert "state.json" in reply["error"] and "No space left" in reply["error"]
            filler.unlink()
            assert dash.action("start", "calm", own)[0] == 200  # room again
            assert json.loads((corral.home / "state.json").read_text())["instances"][0][
                "status"] == "online"
        finally:
            corral.run("kill", check=False)


def test_web_refuses_a_remote_address_without_allow_remote(corral: Corral) -> None:
    proc = corral.run("web", "--host", "0.0.0.0", "--port", str(free_port()), check=False)
    assert proc.returncode == 1
    assert "not a loopback address" in proc.stderr and "--allow-remote" in proc.stderr
    assert corral.run("web", "--url", check=False).returncode == 1


# ---- security, with plain HTTP ----------------------------------------------------

def test_without_the_token_nothing_is_served(corral: Corral) -> None:
    start(corral, "idle", IDLE)
    dash = web_on(corral)
    routes = ["/", "/app.js", "/app.css", "/api/state", "/api/stream?log=idle",
              "/api/describe?id=0", "/favicon.ico", "/nothing"]
    wrong = "x" * len(dash.token)
    for path in routes:
        for headers in ({}, dash.bearer(wrong), {"Cookie": f"corral_web_{dash.port}={wrong}"},
                        {"Cookie": f"corral_web_{dash.port + 1}={dash.token}"}):
            status, _, body = dash.request("GET", path, headers=headers)
            assert status == 401, (path, headers, status)
            assert b"idle" not in body and SECRET.encode() not in body
    for headers in ({"Origin": dash.origin}, {"Origin": dash.origin, **dash.bearer(wrong)}):
        assert dash.action("restart", "idle", headers)[0] == 401
    assert dash.request("GET", f"/?token={wrong}")[0] == 401

    # the right token in the URL: a cookie, and a redirect that drops it from the address
    status, headers, _ = dash.request("GET", f"/?token={dash.token}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"corral_web_{dash.port}={dash.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with_cookie = {"Cookie": cookie.split(";")[0]}
    status, headers, body = dash.request("GET", "/", headers=with_cookie)
    assert status == 200 and b"<title>corral</title>" in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    status, _, body = dash.request("GET", "/api/state", headers=with_cookie)
    assert status == 200 and json.loads(body)["apps"][0]["name"] == "idle"
    assert SECRET.encode() not in body  # no environment value, ever
    status, _, body = dash.request("GET", "/api/describe?id=0", headers=with_cookie)
    assert status == 200 and SECRET.encode() not in body and b"script path" in body
    # another Host (DNS rebinding) is refused even with the token
    assert dash.request("GET", "/api/state", headers={
        **dash.bearer(), "Host": f"attacker.example:{dash.port}"})[0] == 421


def test_a_cross_origin_post_changes_nothing(corral: Corral) -> None:
    start(corral, "idle", IDLE)
    dash = web_on(corral)
    pid = pid_of(corral, "idle")
    cookie = {"Cookie": f"corral_web_{dash.port}={dash.token}"}
    refused = [
        {**dash.bearer(), "Origin": "http://evil.example"},
        {**cookie, "Origin": "http://evil.example"},
        {**cookie, "Origin": f"http://127.0.0.1:{dash.port + 1}"},  # another local port
        {**cookie, "Origin": "null"},
        cookie,  # no Origin at all
        {**cookie, "Origin": dash.origin, "Sec-Fetch-Site": "same-site"},
    ]
    for headers in refused:
        status, body = dash.action("restart", "idle", headers)
        assert status == 403, (headers, status, body)
    # reads from another origin are refused too
    assert dash.request("GET", "/api/state", headers={
        **cookie, "Origin": "http://evil.example"})[0] == 403
    row = corral.app("idle")
    assert row is not None and row["pid"] == pid and row["pm2_env"]["restart_time"] == 0
    # the control: the dashboard's own origin may act
    status, body = dash.action("restart", "idle", {**cookie, "Origin": dash.origin})
    assert status == 200 and isinstance(body, dict) and body["ok"], body
    assert pid_of(corral, "idle") != pid


def test_the_events_tell_crashes_and_the_cause_of_each_restart(corral: Corral) -> None:
    folder = corral.tmp / "w"
    folder.mkdir()
    watched = folder / "watched.py"
    watched.write_text(IDLE)
    corral.run("start", str(watched), "--name", "watched", "--watch", str(folder),
               "--cwd", str(folder))
    corral.wait_status("watched", "online")
    start(corral, "crashy", CRASHY, "--restart-delay", "300")
    dash = web_on(corral)

    def events() -> list[dict[str, Any]]:
        status, _, body = dash.request("GET", "/api/state", headers=dash.bearer())
        assert status == 200
        return list(json.loads(body)["events"])

    def one(kind: str, name: str) -> dict[str, Any] | None:
        return next((e for e in reversed(events()) if e["kind"] == kind
                     and e["name"] == name), None)

    (corral.tmp / "crash.now").write_text("")
    crash = wait_for(lambda: one("crash", "crashy"), what="the crash event")
    assert crash["exit_code"] == 3 and crash["last_error"] == "boom: the disk is on fire"
    assert "exited with code 3; restarting in 300 ms" in crash["text"]
    (folder / "data.txt").write_text("changed")
    watch = wait_for(lambda: one("restart", "watched"), what="the watch restart")
    assert watch["cause"] == "watch" and "data.txt" in watch["text"], watch
    corral.run("restart", "crashy")
    manual = wait_for(lambda: one("restart", "crashy"), what="the manual restart")
    assert manual["cause"] == "manual"
    corral.run("stop", "crashy")
    assert wait_for(lambda: one("stop", "crashy"), what="the stop event")
    # a stop or a restart asked for is not a crash
    assert [e["kind"] for e in events() if e["name"] == "crashy"].count("crash") == 1


# ---- the page, in a real browser ----------------------------------------------------

@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile per test; the browser is ended by pid if close fails."""
    if sync_playwright is None:
        pytest.skip("playwright is not installed: pip install playwright (.ci/run does)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)")
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1360, "height": 900})
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            try:
                context.close()
            finally:
                for proc in psutil.process_iter(["cmdline"]):
                    if str(profile) in " ".join(proc.info["cmdline"] or []):
                        try:
                            proc.kill()
                        except psutil.Error:
                            pass


def test_the_page_shows_the_apps_crashes_restarts_and_follows_a_log(
        corral: Corral, browser: Any) -> None:
    start(corral, "talker", TALKER)
    start(corral, "crashy", CRASHY, "--namespace", "jobs")
    start(corral, "workers", IDLE, "-i", "2", "--exec-mode", "fork", "--namespace", "jobs")
    start(corral, "batch", IDLE)
    corral.run("stop", "batch")
    dash = web_on(corral)
    page = browser.new_page()
    page.goto(dash.url)
    assert page.url == dash.origin + "/"  # the token left the address bar

    # the table: every app, grouped by namespace, with its status and pid
    talker = pid_of(corral, "talker")
    page.wait_for_selector("#conn.conn-live")
    for name in ("talker", "crashy", "workers", "batch"):
        page.wait_for_selector(f'tr.app[data-app="{name}"]')
    assert page.locator("tr.ns").all_text_contents() == ["namespace default",
                                                         "namespace jobs"]
    rows = {r["pm_id"]: r for r in corral.jlist()}
    for pm_id, row in rows.items():
        tr = page.locator(f'tr.inst[data-pm-id="{pm_id}"]')
        assert tr.locator(".status-cell").inner_text() == row["pm2_env"]["status"]
        if row["pid"]:
            assert tr.locator("td.pid").inner_text() == str(row["pid"])
    assert page.locator('tr.app[data-app="workers"] td.name').inner_text() == "workers"
    assert page.locator('tr.inst[data-app="workers"]').count() == 2
    assert "s-stopped" in (page.locator('tr.inst[data-app="batch"] .status-cell span')
                           .get_attribute("class") or "")

    # a crash is listed within 2 s, with its exit code and the last line of its error log
    (corral.tmp / "crash.now").write_text("")
    crash = page.wait_for_selector('li.ev[data-kind="crash"][data-app="crashy"]',
                                   timeout=2000)
    assert crash is not None
    text = crash.inner_text()
    assert "exited with code 3" in text and "boom: the disk is on fire" in text

    # restart from the page: confirm, see the result, and the table shows the new pid
    page.click('tr.app[data-app="talker"] button[data-action="restart"]')
    page.wait_for_selector("#confirm[open]")
    assert "Restart talker" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector("#toast:not(.error):has-text('restart talker: done')")
    new_pid = wait_for(lambda: (p := pid_of(corral, "talker")) != talker and p,
                       what="talker's new pid")
    page.wait_for_selector(f'tr.inst[data-app="talker"] td.pid:has-text("{new_pid}")')
    restart = page.wait_for_selector('li.ev[data-kind="restart"][data-app="talker"]')
    assert restart is not None and "manual" in restart.inner_text()

    # the followed log shows a new line, and the search box finds it
    page.click('tr.app[data-app="talker"] td.name')
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_selector("#log-lines .line:has-text('talker up')")
    marker = f"hello from the test {uuid.uuid4().hex[:8]}"
    (corral.tmp / "say.txt").write_text(marker)
    page.wait_for_selector(f"#log-lines .line.out:has-text('{marker}')")
    page.wait_for_selector(f"#log-lines .line.err:has-text('to stderr: {marker}')")
    page.fill("#log-search", marker)
    shown = [t for t in page.locator("#log-lines .line:not(.hidden)").all_inner_texts()]
    assert len(shown) == 2 and all(marker in t for t in shown), shown
    page.fill("#log-search", "")

    # the details: every setting as `describe` shows them, never an environment value
    page.click("#tab-details")
    page.wait_for_selector("#describe dt:has-text('script path')")
    assert str(corral.tmp / "talker.py") in page.inner_text("#describe")
    assert SECRET not in page.content()
    page.click("#tab-logs")

    shots = os.environ.get("CORRAL_SCREENSHOT_DIR")
    if shots:
        for n in range(1, 4):
            (corral.tmp / "say.txt").write_text(f"request {n} served")
            page.wait_for_selector(f"#log-lines .line.out:has-text('request {n} served')")
        page.wait_for_timeout(8000)  # samples for the sparklines
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / "web.png"), full_page=True)

    # a rotated token ends the page's stream, and the page says what to do
    corral.run("web", "--rotate")
    page.wait_for_selector("#banner:not([hidden]):has-text('corral web --url')")


EVIL_PAGE = """<!doctype html><title>evil</title>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="{action}" enctype="text/plain" target="sink">
<input name='{{"action":"restart","target":"talker","x":"' value='"}}'>
</form>
<script>
fetch("{action}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{action: "restart", target: "talker"}})}})
  .finally(() => {{ document.title = "fetched"; document.getElementById("form").submit(); }});
</script>"""


def test_a_page_on_another_local_port_cannot_act(corral: Corral, browser: Any) -> None:
    start(corral, "talker", TALKER)
    dash = web_on(corral)
    pid = pid_of(corral, "talker")
    page_html = EVIL_PAGE.format(action=f"{dash.origin}/api/action").encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: Any) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser.new_page()
        page.goto(dash.url)  # the browser holds the dashboard's cookie
        page.wait_for_selector('tr.app[data-app="talker"]')
        evil_page = browser.new_page()
        sent: list[Any] = []
        ended: list[Any] = []
        evil_page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/action")
                     else None)
        for outcome in ("requestfinished", "requestfailed"):
            evil_page.on(outcome, lambda r: ended.append(r) if r.url.endswith("/api/action")
                         else None)
        evil_page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")

        def both_answered() -> bool:
            evil_page.wait_for_timeout(50)  # Playwright delivers events while it waits
            return len(ended) >= 2

        wait_for(both_answered, timeout=10, what="the evil page's fetch and form POST")
        assert evil_page.title() == "fetched" and len(sent) == 2
    finally:
        evil.shutdown()
        evil.server_close()
    # both reached the dashboard with its cookie (same site: another port of 127.0.0.1)
    # and were refused for their Origin: a request without the token gets 401 before
    # its Origin is looked at, and is not logged
    evil_origin = f"http://127.0.0.1:{evil.server_address[1]}"

    def refusals() -> list[str]:
        return [line for line in (corral.home / "corral.log").read_text().splitlines()
                if f"refused a POST to /api/action from origin {evil_origin}: it carried "
                   "the token" in line]

    assert len(wait_for(lambda: len(refusals()) >= 2 and refusals(),
                        what="the daemon to log both refusals")) == 2
    row = corral.app("talker")
    assert row is not None and row["pid"] == pid and row["pm2_env"]["restart_time"] == 0
