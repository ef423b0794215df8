"""Restart triggers: the memory limit (on the whole process tree) and cron schedules."""

from __future__ import annotations

import datetime
import re
import time

import psutil

from conftest import Corral, free_port, wait_for

LEAKER = """
import subprocess, sys, time
# the parent stays small; its child grows: only a tree measure sees it (PM2 checks the pid)
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nhoard = []\\nwhile True:\\n    hoard.append(bytearray(4 * 1024 * 1024))\\n"
    "    time.sleep(0.05)"])
while True:
    time.sleep(1)
"""


def test_memory_limit_counts_the_whole_tree(corral: Corral) -> None:
    corral.env["CORRAL_MEMORY_CHECK_INTERVAL"] = "0.3"
    app = corral.script("leaker.py", LEAKER)
    corral.run("start", str(app), "--max-memory-restart", "120M")
    first = corral.wait_status("leaker", "online")
    restarted = wait_for(lambda: (r := corral.app("leaker")) and
                         r["pm2_env"]["restart_time"] >= 1 and r, timeout=30,
                         what="a restart for memory")
    assert restarted["pid"] != first["pid"]
    described = corral.run("describe", "leaker").stdout
    assert "over max_memory_restart 120.0 MB" in described and "process tree" in described
    assert "over max_memory_restart" in (corral.home / "corral.log").read_text()


def test_cron_restart_every_two_seconds_and_stop_keeps_it_stopped(corral: Corral) -> None:
    app = corral.script("tick.py", "import time\nwhile True:\n    time.sleep(1)\n")
    corral.run("start", str(app), "--cron-restart", "*/2 * * * * *")
    wait_for(lambda: (r := corral.app("tick")) and r["pm2_env"]["restart_time"] >= 2,
             timeout=10, what="two cron restarts")
    assert "cron_restart */2 * * * * *" in corral.run("describe", "tick").stdout
    corral.run("stop", "tick")
    stopped = corral.app("tick")
    assert stopped is not None
    count = stopped["pm2_env"]["restart_time"]
    # a tick comes every 2 s; after two more, the stopped app is still stopped
    import time

    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        row = corral.app("tick")
        assert row is not None and row["pm2_env"]["status"] == "stopped"
        assert row["pm2_env"]["restart_time"] == count
        time.sleep(0.25)


def test_bad_trigger_input(corral: Corral) -> None:
    app = corral.script("x.py", "import time\ntime.sleep(60)\n")
    bad_cron = corral.run("start", str(app), "--cron-restart", "every monday", check=False)
    assert bad_cron.returncode == 1 and "cron_restart 'every monday'" in bad_cron.stderr
    bad_size = corral.run("start", str(app), "--max-memory-restart", "lots", check=False)
    assert bad_size.returncode == 1 and "--max-memory-restart 'lots'" in bad_size.stderr
    (corral.tmp / "eco.yaml").write_text(
        "apps:\n  - name: w\n    script: x.py\n    max_memory_restart: lots\n"
        "    cron_restart: '61 * * * *'\n")
    in_file = corral.run("start", "eco.yaml", check=False)
    assert in_file.returncode == 1 and "key 'max_memory_restart'" in in_file.stderr
    assert corral.jlist() == []


def test_watch_restart_ignore_delay_burst_and_toggles(corral: Corral) -> None:
    import time
    from pathlib import Path

    project = corral.tmp / "proj"
    (project / "pkg").mkdir(parents=True)
    (project / "ignored").mkdir()
    starts = corral.tmp / "starts"
    app = project / "server.py"
    app.write_text(f"import os, time\nopen({str(starts)!r}, 'a').write(str(os.getpid()) + "
                   "'\\n')\nwhile True:\n    time.sleep(1)\n")
    corral.run("start", str(app), "--cwd", str(project), "--watch", "--ignore-watch",
               "ignored", "*.tmp", "--watch-delay", "200", "-o", str(project / "out.log"))
    wait_for(lambda: starts.exists() and len(starts.read_text().split()) == 1, what="start")
    row = corral.app("server")
    assert row is not None and row["pm2_env"]["watch"] is True
    assert "enabled" in corral.run("list").stdout

    def count() -> int:
        return len(starts.read_text().split())

    (project / "pkg" / "mod.py").write_text("x = 1\n")
    wait_for(lambda: count() == 2, timeout=10, what="a restart after an edit")
    # ignored paths and the defaults (.git, __pycache__) do not restart it
    (project / "ignored" / "a.py").write_text("")
    (project / "note.tmp").write_text("")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "m.pyc").write_bytes(b"")
    time.sleep(1.5)  # longer than debounce + delay: nothing may happen
    assert count() == 2
    # a burst (a git checkout) is one restart
    for i in range(60):
        (project / "pkg" / f"f{i}.py").write_text(str(i))
    wait_for(lambda: count() == 3, timeout=10, what="one restart for the burst")
    time.sleep(1.5)
    assert count() == 3
    corral.run("stop", "server")  # stop turns watching off, as in PM2
    (project / "pkg" / "mod.py").write_text("x = 2\n")
    time.sleep(1.5)
    assert count() == 3 and corral.app("server")["pm2_env"]["status"] == "stopped"  # type: ignore[index]
    corral.run("restart", "server", "--watch")  # toggles it back on
    wait_for(lambda: count() == 4, what="the restart")
    assert "enabled" in corral.run("list").stdout
    (project / "pkg" / "mod.py").write_text("x = 3\n")
    wait_for(lambda: count() == 5, timeout=10, what="watching again")
    corral.run("restart", "server", "--watch")  # and off
    assert "disabled" in corral.run("list").stdout
    missing = corral.run("start", str(app), "-n", "w2", "-f", "--watch", "nope", check=False)
    assert missing.returncode == 1 and "watch path" in missing.stderr
    assert Path(app).exists()


def test_metrics_endpoint_parses_and_matches_jlist(corral: Corral) -> None:
    import json
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    app = corral.script("m.py", "import time\nprint('hi', flush=True)\nwhile True:\n"
                        "    time.sleep(1)\n")
    corral.run("start", str(app), "-i", "2", "--exec-mode", "fork")
    assert "not served" in corral.run("metrics").stdout  # off by default
    url = corral.run("metrics", "--port", "0").stdout.strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    rows = {str(r["pm_id"]): r for r in corral.jlist()}
    restarts = {s.labels["pm_id"]: s.value for s in families["corral_process_restarts"].samples}
    assert restarts == {k: r["pm2_env"]["restart_time"] for k, r in rows.items()}
    status = {s.labels["pm_id"]: s.labels["status"]
              for s in families["corral_process_status"].samples}
    assert status == {k: r["pm2_env"]["status"] for k, r in rows.items()}
    memory = {s.labels["pm_id"]: s.value
              for s in families["corral_process_memory_bytes"].samples}
    for key, row in rows.items():
        assert abs(memory[key] - row["monit"]["memory"]) < 0.2 * row["monit"]["memory"]
    assert [s.value for s in families["corral_apps"].samples] == [2]
    assert families["corral_log_bytes_written"].samples[0].value >= 6  # "hi\n" twice
    as_json = json.loads(urllib.request.urlopen(url + ".json", timeout=10).read())
    assert {p["pm_id"] for p in as_json["processes"]} == {0, 1}
    remote = corral.run("metrics", "--port", "0", "--host", "0.0.0.0", check=False)
    assert remote.returncode == 1 and "--allow-remote" in remote.stderr
    # the next daemon (corral update, or after a crash) serves on the same address
    corral.run("update")
    assert corral.run("metrics").stdout.strip() == url
    assert "corral_apps" in urllib.request.urlopen(url, timeout=10).read().decode()
    corral.run("metrics", "--stop")
    corral.run("update")
    assert "not served" in corral.run("metrics").stdout


HEALTHY_APP = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

FLAG = sys.argv[1]

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        sick = os.path.exists(FLAG)
        self.send_response(500 if sick else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_health_check_restarts_an_app_that_turns_unhealthy(corral: Corral) -> None:
    from conftest import free_port

    port = free_port()
    flag = corral.tmp / "sick"
    app = corral.script("svc.py", HEALTHY_APP)
    corral.run("start", str(app), "--health-http", f"http://127.0.0.1:{port}/health",
               "--health-interval", "300ms", "--health-retries", "2", "--", str(flag),
               env=dict(corral.env, PORT=str(port)))
    wait_for(lambda: (r := corral.app("svc")) and r["pm2_env"]["health"] == "healthy",
             what="healthy")
    flag.write_text("")
    unhealthy = wait_for(lambda: "unhealthy" in corral.run("list").stdout, timeout=10,
                         what="list to show unhealthy")
    assert unhealthy
    row = wait_for(lambda: (r := corral.app("svc")) and r["pm2_env"]["restart_time"] >= 1
                   and r, timeout=10, what="a restart")
    assert "unhealthy: http check: status 500" in corral.run("describe", "svc").stdout
    flag.unlink()
    healthy = wait_for(lambda: (r := corral.app("svc")) and r["pm2_env"]["health"] == "healthy"
                       and r, what="healthy again")
    # (under load a second check may fail before the flag is gone: count from healthy on)
    assert healthy["pm2_env"]["restart_time"] >= row["pm2_env"]["restart_time"]
    time.sleep(1.5)  # five health intervals: a healthy app is left alone
    assert corral.app("svc")["pm2_env"]["restart_time"] == healthy["pm2_env"]["restart_time"]  # type: ignore[index]


def test_health_check_never_healthy_keeps_restarting(corral: Corral) -> None:
    from conftest import free_port

    port = free_port()
    app = corral.script("mute.py", "import time\nwhile True:\n    time.sleep(1)\n")
    corral.run("start", str(app), "--health-tcp", str(port), "--health-interval", "200ms",
               "--health-retries", "2", "--health-start-period", "300ms")
    wait_for(lambda: (r := corral.app("mute")) and r["pm2_env"]["restart_time"] >= 2,
             timeout=15, what="restarts of an app that never gets healthy")


def test_health_check_bad_input(corral: Corral) -> None:
    app = corral.script("y.py", "import time\ntime.sleep(60)\n")
    remote = corral.run("start", str(app), "--health-http", "http://192.0.2.1/health",
                        check=False)
    assert remote.returncode == 1 and "not a loopback address" in remote.stderr
    (corral.tmp / "eco.yaml").write_text(
        "apps:\n  - name: y\n    script: y.py\n    health_check:\n      tcp: 3000\n"
        "      http: http://127.0.0.1:3000/\n")
    both = corral.run("start", "eco.yaml", check=False)
    assert both.returncode == 1 and "key 'health_check'" in both.stderr
    assert corral.jlist() == []


def test_delete_stops_watching(corral: Corral) -> None:
    import time

    project = corral.tmp / "p2"
    project.mkdir()
    starts = corral.tmp / "starts2"
    app = project / "w.py"
    app.write_text(f"import os, time\nopen({str(starts)!r}, 'a').write('x\\n')\n"
                   "while True:\n    time.sleep(1)\n")
    corral.run("start", str(app), "--cwd", str(project), "--watch")
    wait_for(lambda: starts.exists() and len(starts.read_text().split()) == 1, what="start")
    corral.run("delete", "w")
    corral.run("start", str(app), "--cwd", str(project))  # same name, not watched
    wait_for(lambda: len(starts.read_text().split()) == 2, what="the second start")
    (project / "edit.py").write_text("x = 1\n")
    time.sleep(1.5)  # longer than the watcher's debounce: nothing may restart it
    assert len(starts.read_text().split()) == 2
    assert "disabled" in corral.run("list").stdout


HEAVY_SERVER = """
import os, pathlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer



class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello)
# listening (so online) first; then the first run of each instance grows heavy
marker = pathlib.Path(os.environ["MARKERS"]) / os.environ["CORRAL_INSTANCE"]
hoard = None if marker.exists() else bytearray(150 * 1024 * 1024)
if hoard is not None:
    hoard[::4096] = b"x" * len(hoard[::4096])  # touch every page: resident, not just mapped
    marker.touch()
server.serve_forever()
"""


def test_memory_limit_in_cluster_mode_reloads_one_worker_at_a_time(corral: Corral) -> None:
    markers = corral.tmp / "markers"
    markers.mkdir()
    corral.script("heavy.py", HEAVY_SERVER)
    env = dict(corral.env, PORT=str(free_port()), MARKERS=str(markers),
               CORRAL_MEMORY_CHECK_INTERVAL="0.3")
    corral.run("start", "heavy.py", "-i", "2", "--max-memory-restart", "100M", env=env)
    wait_for(lambda: all(r["pm2_env"]["restart_time"] == 1 for r in corral.jlist()),
             timeout=30, what="both heavy workers replaced")
    log = (corral.home / "corral.log").read_text()
    took_over = [(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(),
                  int(m.group(2)))
                 for m in re.finditer(r"^(\S+ \S+) INFO .*pid (\d+) took over", log, re.M)]
    assert len(took_over) == 2, log
    (first_done, _), (_, second_pid) = sorted(took_over)
    # the second worker's replacement was started only once the first had taken over
    assert psutil.Process(second_pid).create_time() >= first_done - 0.02
    assert log.count("over max_memory_restart") == 2
