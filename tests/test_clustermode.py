"""Cluster mode in corral: one port for N workers, reloads that drop nothing, scale,
and apps that outlive the daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clusterkit import Wrk, get, needs_wrk, pid_of
from conftest import ROOT, Corral, alive, free_port, wait_for

APP = ROOT / "examples" / "app.py"
def start_cluster(corral: Corral, port: int, instances: int, policy: str = "shared",
                  name: str = "app") -> list[dict[str, Any]]:
    corral.run("start", str(APP), "-i", str(instances), "--cluster-policy", policy, "-n", name,
               env=dict(corral.env, PORT=str(port)))
    rows = corral.jlist()
    assert len(rows) == instances
    assert all(r["pm2_env"]["status"] == "online" for r in rows)
    assert all(r["pm2_env"]["exec_mode"] == "cluster_mode" for r in rows)
    return rows


def answering_pids(port: int, requests: int = 20) -> set[int]:
    return {pid_of(get(port)[1]) for _ in range(requests)}


def test_ecosystem_file_cluster_two_workers_one_port(corral: Corral) -> None:
    port = free_port()
    (corral.tmp / "ecosystem.config.json").write_text(json.dumps({"apps": [{
        "name": "web", "script": str(APP), "instances": 2, "exec_mode": "cluster",
        "env": {"PORT": port}}]}))
    corral.run("start", "ecosystem.config.json")
    rows = corral.jlist()
    assert [r["pm2_env"]["exec_mode"] for r in rows] == ["cluster_mode"] * 2
    pids = {r["pid"] for r in rows}
    wait_for(lambda: answering_pids(port) == pids, what="both workers answering", timeout=20)
    listing = corral.run("list").stdout
    assert listing.count("cluster") == 2
    described = corral.run("describe", "web").stdout
    assert f"127.0.0.1:{port} (shared)" in described and "cluster policy             shared" \
        in described


def test_workers_share_the_daemons_session_and_fork_apps_have_their_own(
        corral: Corral) -> None:
    """Each app leads its own process group (the stop signal goes to the group); cluster
    workers stay in the daemon's session, as Node's cluster.fork() children do (one unit
    for the kernel's autogroup scheduler); a fork app is a session leader."""
    import sys

    port = free_port()
    workers = start_cluster(corral, port, 2, "rr")
    solo = corral.script("solo.py", "import time\ntime.sleep(600)\n")
    corral.run("start", str(solo))
    fork_pid = corral.wait_status("solo", "online")["pid"]
    daemon = corral.daemon_pid()
    for row in workers:
        pid = row["pid"]
        assert os.getpgid(pid) == pid, "a worker leads its process group"
        assert os.getsid(pid) == (os.getsid(daemon) if sys.version_info >= (3, 11) else pid)
    assert os.getpgid(fork_pid) == fork_pid and os.getsid(fork_pid) == fork_pid
    corral.run("stop", "all")
    for pid in [r["pid"] for r in workers] + [fork_pid]:
        wait_for(lambda p=pid: not alive(p), timeout=20,  # type: ignore[misc]
                 what=f"pid {pid} stopped")


@needs_wrk
@pytest.mark.parametrize("instances", [2, 4])
@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_reload_under_load_new_connection_per_request(corral: Corral, policy: str,
                                                      instances: int) -> None:
    port = free_port()
    before = start_cluster(corral, port, instances, policy)
    load = Wrk(port, 10, close=True)
    time.sleep(2)  # let the bounded load run a while before acting
    corral.run("reload", "app")
    middle = corral.jlist()
    corral.run("reload", "app")
    after = corral.jlist()
    result = load.result()
    if result["errors"]:
        print((corral.home / "corral.log").read_text()[-4000:])
    assert result["errors"] == 0 and result["non2xx"] == 0, result
    assert result["requests"] > 1000
    assert {r["pid"] for r in before}.isdisjoint({r["pid"] for r in middle})
    assert {r["pid"] for r in middle}.isdisjoint({r["pid"] for r in after})
    assert all(r["pm2_env"]["restart_time"] == 2 for r in after)


@needs_wrk
@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_reload_under_keepalive_load(corral: Corral, policy: str) -> None:
    """PM2 7.0.4, -i 2, two reloads in 20 s of wrk -c64: 167 read errors; the bar is 16."""
    port = free_port()
    start_cluster(corral, port, 2, policy)
    load = Wrk(port, 12, close=False)
    time.sleep(2)  # let the bounded load run a while before acting
    corral.run("reload", "app")
    time.sleep(3)  # two separate reloads, as in the PM2 measurement
    corral.run("reload", "app")
    result = load.result()
    assert result["non2xx"] == 0
    assert result["errors"] <= 16, result


@needs_wrk
def test_sigkill_one_worker_under_load(corral: Corral) -> None:
    port = free_port()
    rows = start_cluster(corral, port, 2)
    load = Wrk(port, 6, close=True)
    time.sleep(1.5)  # let the bounded load run a while before acting
    victim = rows[0]["pid"]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replacement = wait_for(
        lambda: [
            x for x in corral.jlist() if x["pm_id"] == rows[0]["pm_id"]
            and x["pid"] not in (0, victim) and x["pm2_env"]["status"] == "online"],
        timeout=10, interval=0.01, what="a replacement worker")
    online_after = time.monotonic() - killed_at
    result = load.result()
    # the time itself is a benchmark figure (bench/cluster_mode.py, BENCHMARKS.md), not a
    # pass mark here: this machine may be busy
    print(f"replacement online after {online_after:.3f}s; errors {result['errors']}")
    assert replacement[0]["pm2_env"]["restart_time"] == 1
    # only connections the killed worker held can fail: at most its in-flight ones
    assert result["errors"] <= 64, result
    assert result["non2xx"] == 0


@needs_wrk
def test_sigkill_daemon_under_load_shared(corral: Corral) -> None:
    port = free_port()
    rows = start_cluster(corral, port, 2)
    load = Wrk(port, 8, close=False)
    time.sleep(1.5)  # let the bounded load run a while before acting
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    result = load.result()
    assert result["errors"] == 0 and result["non2xx"] == 0, result
    listed = corral.jlist()  # a new daemon
    assert [(r["pm_id"], r["pid"]) for r in listed] == [(r["pm_id"], r["pid"]) for r in rows]
    wait_for(lambda: _attached(corral), what="the workers to come back to the new daemon")
    corral.run("reload", "app")
    after = corral.jlist()
    assert {r["pid"] for r in after}.isdisjoint({r["pid"] for r in rows})
    assert answering_pids(port) == {r["pid"] for r in after}


def _attached(corral: Corral) -> bool:
    from corral.client.connection import Client
    from corral.store.home import Home

    client = Client(Home(str(corral.home)), start=False)
    try:
        return all(row["attached"] for row in client.call("list")
                   if row["spec"]["exec_mode"] == "cluster")
    finally:
        client.close()


def test_scale_and_increment_var(corral: Corral) -> None:
    record = corral.tmp / "ports"
    app = corral.script("porty.py", f"""
        import os, time
        open({str(record)!r}, "a").write(os.environ["CORRAL_INSTANCE"] + " " +
                                         os.environ["PORT"] + "\\n")
        while True:
            time.sleep(1)
    """)
    (corral.tmp / "eco.yaml").write_text(
        f"apps:\n  - name: svc\n    script: {app}\n    instances: 2\n    exec_mode: fork\n"
        "    increment_var: PORT\n    env:\n      PORT: 3000\n")
    corral.run("start", "eco.yaml")
    corral.run("scale", "svc", "4")
    assert len(corral.jlist()) == 4
    corral.run("scale", "svc", "-2")
    assert sorted(r["pm2_env"]["CORRAL_INSTANCE"] for r in corral.jlist()) == [0, 1]
    corral.run("scale", "svc", "+1")
    wait_for(lambda: len(record.read_text().splitlines()) == 5, what="five starts")
    lines = record.read_text().splitlines()
    assert lines[-1] == "2 3002"  # the lowest free index is reused, PORT follows it
    assert sorted(lines[:4]) == ["0 3000", "1 3001", "2 3002", "3 3003"]
    bad = corral.run("scale", "svc", "lots", check=False)
    assert bad.returncode == 1 and "give a number, +N or -N" in bad.stderr


def test_bad_input(corral: Corral) -> None:
    port = free_port()
    start_cluster(corral, port, 2, name="keep")
    before = [(r["pid"], r["pm2_env"]["status"]) for r in corral.jlist()]
    bad = corral.run("start", str(APP), "-i", "abc", "-n", "x", "-f", check=False)
    assert bad.returncode == 1 and "-i/instances takes a number" in bad.stderr
    zero = corral.run("reload", "keep", "--parallel", "0", check=False)
    assert zero.returncode == 1 and "--parallel 0" in zero.stderr
    assert [(r["pid"], r["pm2_env"]["status"]) for r in corral.jlist()] == before
    # -i 0 means one per CPU, as in PM2
    other = free_port()
    corral.run("start", str(APP), "-i", "0", "-n", "max", "-f", env=dict(corral.env,
                                                                          PORT=str(other)))
    assert len([r for r in corral.jlist() if r["name"] == "max"]) == (os.cpu_count() or 1)
    # a port another program holds: start fails and says so (tests/test_first_hour.py),
    # errored, EADDRINUSE in its error log and describe
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        clash = corral.run("start", str(APP), "-i", "2", "-n", "clash", "-f", check=False,
                           env=dict(corral.env, PORT=str(taken)))
        assert clash.returncode == 1 and "Address already in use" in clash.stderr
        row = corral.wait_status("clash", "errored", timeout=60)
        err_log = Path(row["pm2_env"]["pm_err_log_path"]).read_text()
        assert "Address already in use" in err_log
        described = corral.run("describe", "clash").stdout
        assert f"cannot listen on 127.0.0.1:{taken}" in described and "Errno 98" in described
    finally:
        holder.close()
    assert [(r["pid"], r["pm2_env"]["status"]) for r in corral.jlist()
            if r["name"] == "keep"] == before


def test_fork_mode_reload_says_restart_and_non_python_gets_fork(corral: Corral) -> None:
    corral.run("start", str(corral.script("f.py", "import time\ntime.sleep(600)\n")))
    out = corral.run("reload", "f")
    assert "fork mode" in out.stderr and "restarted" in out.stderr
    sh = corral.script("w.sh", "sleep 600\n")
    started = corral.run("start", str(sh), "-i", "2")
    assert "cluster mode runs Python and Node apps only" in started.stderr
    assert {r["pm2_env"]["exec_mode"] for r in corral.jlist() if r["name"] == "w"} == {
        "fork_mode"}


def test_stop_frees_the_port_and_daemon_owned_listener_survives_restart(corral: Corral
                                                                        ) -> None:
    port = free_port()
    start_cluster(corral, port, 2)
    # a restart of every worker keeps the listener: connections queue meanwhile
    results: list[Any] = []
    client = threading.Thread(target=lambda: results.append(get(port, timeout=20)))
    corral.run("restart", "app")
    client.start()
    client.join(30)
    assert results and results[0][0] == 200
    corral.run("stop", "app")
    probe = socket.socket()
    probe.settimeout(2)
    with pytest.raises(OSError):
        probe.connect(("127.0.0.1", port))
    probe.close()


def test_uvicorn_command_and_module_in_cluster_mode(corral: Corral) -> None:
    uvicorn = shutil.which("uvicorn", path=str(Path(os.sys.executable).parent))
    if uvicorn is None:
        pytest.skip("uvicorn is not installed")
    (corral.tmp / "main.py").write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    body = f'hello world, start with cluster {os.getpid()}'.encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n")
    port = free_port()
    # a shell command: its variables are expanded by sh, as in fork mode
    corral.run("start", f"{uvicorn} main:app --port $PORT --log-level warning", "-i", "2",
               "-n", "uv", env=dict(corral.env, PORT=str(port)))
    rows = corral.jlist()
    assert {r["pm2_env"]["exec_mode"] for r in rows} == {"cluster_mode"}
    wait_for(lambda: answering_pids(port) == {r["pid"] for r in rows}, timeout=20,
             what="both uvicorn workers")
    pkg = corral.tmp / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(f"import runpy\nrunpy.run_path({str(APP)!r}, "
                                     "run_name='__main__')\n")
    other = free_port()
    corral.run("start", "-m", "mypkg", "-i", "2", env=dict(corral.env, PORT=str(other)))
    module_rows = [r for r in corral.jlist() if r["name"] == "mypkg"]
    assert {r["pm2_env"]["exec_mode"] for r in module_rows} == {"cluster_mode"}
    wait_for(lambda: answering_pids(other) == {r["pid"] for r in module_rows}, timeout=20,
             what="both module workers")


def test_wait_ready_and_shutdown_with_message(corral: Corral) -> None:
    port = free_port()
    marks = corral.tmp / "marks"
    app = corral.script("ready.py", f"""
        import os, sys, threading, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import corral
        from corral import cluster

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass

        server = ThreadingHTTPServer(("127.0.0.1", {port}), H)
        def on_message(message, fds):
            if message == "shutdown":
                open({str(marks)!r}, "a").write(f"shutdown {{os.getpid()}}\\n")
                threading.Thread(target=server.shutdown).start()
        cluster.worker.on("message", on_message)
        time.sleep(0.5)  # a slow warm-up: listening already, ready only now
        open({str(marks)!r}, "a").write(f"ready {{os.getpid()}}\\n")
        corral.ready()
        server.serve_forever()
    """)
    corral.run("start", str(app), "-i", "1", "--wait-ready", "--shutdown-with-message",
               "-n", "rdy", env=dict(corral.env, PYTHONPATH=str(ROOT / "src")))
    first = corral.app("rdy", "online")
    assert first is not None
    assert marks.read_text().splitlines() == [f"ready {first['pid']}"]
    corral.run("reload", "rdy")
    second = corral.app("rdy", "online")
    assert second is not None and second["pid"] != first["pid"]
    lines = marks.read_text().splitlines()
    assert lines[:3] == [f"ready {first['pid']}", f"ready {second['pid']}",
                         f"shutdown {first['pid']}"]
    wait_for(lambda: not alive(first["pid"]), what="the old worker to leave by message")


def test_sigterm_with_a_cluster_app_and_rolling_reload_of_a_file(corral: Corral) -> None:
    port = free_port()
    (corral.tmp / "eco.toml").write_text(
        f'[[apps]]\nname = "web"\nscript = "{APP}"\ninstances = 2\nexec_mode = "cluster"\n'
        f'[apps.env]\nPORT = "{port}"\n')
    corral.run("start", "eco.toml")
    first = corral.jlist()
    corral.run("reload", "eco.toml")
    second = corral.jlist()
    assert all(r["pm2_env"]["restart_time"] == 1 for r in second)
    assert {r["pid"] for r in first}.isdisjoint({r["pid"] for r in second})
    log = (corral.home / "corral.log").read_text()
    assert log.count("took over from pid") == 2  # one worker after the other, not a restart
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGTERM)
    wait_for(lambda: not alive(daemon), timeout=15, what="the daemon to exit after SIGTERM")
    assert not any(alive(r["pid"]) for r in second)
    # the next daemon brings the app back
    back = wait_for(lambda: (rows := corral.jlist()) and all(
        r["pm2_env"]["status"] == "online" for r in rows) and rows, what="web online again")
    assert len(back) == 2
    assert answering_pids(port) == {r["pid"] for r in back}


@needs_wrk
def test_watch_in_cluster_mode_reloads_without_failed_requests(corral: Corral) -> None:
    project = corral.tmp / "site"
    project.mkdir()
    app = project / "app.py"
    app.write_text(APP.read_text())
    port = free_port()
    corral.run("start", str(app), "-i", "2", "--cwd", str(project), "--watch",
               "--watch-delay", "100", env=dict(corral.env, PORT=str(port)))
    before = {r["pid"] for r in corral.jlist()}
    load = Wrk(port, 8, close=True)
    time.sleep(2)  # let the bounded load run a while before acting
    (project / "settings.py").write_text("DEBUG = False\n")  # an edit in the editor
    wait_for(lambda: all(r["pm2_env"]["restart_time"] == 1 for r in corral.jlist()),
             timeout=20, what="both workers reloaded")
    result = load.result()
    assert result["errors"] == 0 and result["non2xx"] == 0, result
    assert {r["pid"] for r in corral.jlist()}.isdisjoint(before)
    assert "took over from pid" in (corral.home / "corral.log").read_text()


TICKER = """
import sys, time
i = 0
while True:
    sys.stdout.write(f"tick {i} start-")
    sys.stdout.flush()
    time.sleep(0.25)  # mid-line nearly all the time: the handover lands inside a line
    sys.stdout.write("end\\n")
    sys.stdout.flush()
    i += 1
    time.sleep(0.01)
"""


def test_update_hands_apps_over_without_a_restart(corral: Corral) -> None:
    """`corral update`: a new daemon takes over; no app is restarted, no request fails,
    and a log line that was half written at the handover is still one line."""
    port = free_port()
    rows = start_cluster(corral, port, 2)
    corral.script("ticker.py", TICKER)
    corral.run("start", "ticker.py", "--time")
    ticker = corral.app("ticker")
    assert ticker is not None
    results: list[Any] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                results.append(get(port, timeout=10)[0])
            except OSError as exc:
                results.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_for(lambda: len(results) > 50, what="requests flowing")
        old_daemon = corral.daemon_pid()
        out = corral.run("update")
        assert "nothing was restarted" in out.stdout
        assert not alive(old_daemon) and corral.daemon_pid() != old_daemon
        wait_for(lambda: _attached(corral), what="the workers to come back to the new daemon")
        count = len(results)
        wait_for(lambda: len(results) > count + 50, what="requests after the handover")
    finally:
        done.set()
        thread.join(timeout=30)
    failures = [r for r in results if r != 200]
    assert failures == [], failures[:5]
    after = corral.jlist()
    assert [(r["pm_id"], r["pid"]) for r in after] == \
        [(r["pm_id"], r["pid"]) for r in rows] + [(ticker["pm_id"], ticker["pid"])]
    assert all(r["pm2_env"]["restart_time"] == 0 for r in after)
    assert all(r["pm2_env"]["status"] == "online" for r in after)
    # the new daemon is in charge: a reload works
    corral.run("reload", "app")
    assert answering_pids(port) == {r["pid"] for r in corral.jlist() if r["name"] == "app"}
    # every line of the ticker is whole, stamped once, and none is missing
    log = Path(ticker["pm2_env"]["pm_out_log_path"])
    corral.run("stop", "ticker")
    lines = log.read_text().splitlines()
    numbers = []
    for i, line in enumerate(lines):
        # the last line may have been cut by the stop itself (and completed by corral)
        ending = "start-(end)?" if i == len(lines) - 1 else "start-end"
        match = re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+[^ ]*: tick (\d+) " + ending, line)
        assert match, line
        numbers.append(int(match.group(1)))
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert len(numbers) > 5


MARKED_SERVER = """
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("BROKEN"):
    sys.exit("this version cannot start")


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('MARK')} {os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


def test_reload_from_a_file_that_fails_keeps_the_old_workers_and_settings(
        corral: Corral) -> None:
    port = free_port()
    corral.script("marked.py", MARKED_SERVER)
    config = corral.tmp / "ecosystem.config.json"

    def write(instances: int, **env: str) -> None:
        config.write_text(json.dumps({"apps": [{
            "name": "web", "script": "marked.py", "instances": instances,
            "exec_mode": "cluster", "env": {"PORT": port, **env}}]}))

    def answers() -> set[tuple[str, int]]:
        return {(b.split()[0], int(b.split()[1])) for b in (get(port)[1] for _ in range(20))}

    write(2, MARK="v1")
    corral.run("start", str(config))
    before = {r["pid"] for r in corral.jlist()}
    wait_for(lambda: answers() == {("v1", p) for p in before}, what="both v1 workers")

    write(2, MARK="v2", BROKEN="1")
    failed = corral.run("reload", str(config), check=False)
    assert failed.returncode == 1
    assert "reload failed" in failed.stderr and "the old worker keeps serving" in failed.stderr
    rows = corral.jlist()
    assert {r["pid"] for r in rows} == before
    assert answers() == {("v1", p) for p in before}
    # neither worker is listed with the settings it does not run with
    described = corral.run("jlist", "--env").stdout
    assert '"BROKEN"' not in described and '"v2"' not in described

    write(3, MARK="v3")
    corral.run("reload", str(config))
    rows = corral.jlist()
    assert len(rows) == 3 and not before & {r["pid"] for r in rows}
    wait_for(lambda: answers() == {("v3", r["pid"]) for r in rows}, what="three v3 workers")


def test_a_cluster_app_that_never_listens_is_explained(corral: Corral) -> None:
    worker = corral.script("queue_worker.py", "import time\nwhile True:\n    time.sleep(1)\n")
    out = corral.run("start", str(worker), "-i", "2", "--listen-timeout", "500")
    assert "queue_worker: no worker listened on a port within listen_timeout (500 ms)" \
        in out.stderr and "--exec-mode fork" in out.stderr
    assert all(r["pm2_env"]["status"] == "online" for r in corral.jlist())
    served = corral.run("start", str(APP), "-i", "2", "-n", "web",
                        env=dict(corral.env, PORT=str(free_port())))
    assert "listen_timeout" not in served.stderr
