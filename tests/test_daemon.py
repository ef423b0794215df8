"""The daemon: started on demand, one per home, private, persistent, and it
takes its apps back after a SIGKILL without running anything twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from corral.model.wire import HEADER, encode, read_frame

from conftest import Corral, alive, pids_running, wait_for

SLEEPER = """
import os, sys, time
while True:
    time.sleep(1)
"""


def test_sigkill_daemon_keeps_apps_no_duplicates(corral: Corral) -> None:
    scripts = [corral.script(f"app{i}.py", SLEEPER) for i in range(3)]
    chatty = corral.script("chatty.py", """
        import itertools, time
        for i in itertools.count():
            print(f"tick {i}", flush=True)
            time.sleep(0.02)
    """)
    for script in scripts:
        corral.run("start", str(script))
    corral.run("start", str(chatty))
    before = {r["pm_id"]: (r["name"], r["pid"]) for r in corral.jlist()}
    assert len(before) == 4
    out_log = Path(corral.app("chatty")["pm2_env"]["pm_out_log_path"])  # type: ignore[index]
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    lines_at_kill = len(out_log.read_text().splitlines())
    # the chatty app keeps printing while no daemon reads its pipe, and does not die of it
    chatty_proc = psutil.Process(before[3][1])
    writes_at_kill = chatty_proc.io_counters().write_count
    wait_for(lambda: chatty_proc.io_counters().write_count >= writes_at_kill + 20,
             what="20 lines printed with no daemon")
    assert chatty_proc.is_running() and chatty_proc.status() != psutil.STATUS_ZOMBIE
    listing = corral.run("list").stdout  # starts a new daemon
    assert corral.daemon_pid() != daemon
    after = {r["pm_id"]: (r["name"], r["pid"]) for r in corral.jlist()}
    assert after == before, listing
    for script in [*scripts, chatty]:
        assert len(pids_running(script)) == 1, script
    assert all(r["pm2_env"]["status"] == "online" for r in corral.jlist())
    # what it printed while the daemon was gone reaches the log, with no gap
    wait_for(lambda: len(out_log.read_text().splitlines()) > lines_at_kill + 5,
             what="new lines after adoption")
    numbers = [int(line.split()[1]) for line in out_log.read_text().splitlines()]
    assert numbers == list(range(len(numbers)))
    # adopted apps are still managed: stop works and their exit is seen
    corral.run("stop", "app0")
    assert not alive(before[0][1])
    psutil.Process(before[1][1]).kill()
    wait_for(lambda: (r := corral.app("app1", "online")) and r["pid"] != before[1][1],
             what="an adopted app restarted after a crash")


def test_sigkill_daemon_while_an_app_is_gone(corral: Corral) -> None:
    script = corral.script("lost.py", SLEEPER)
    corral.run("start", str(script))
    row = corral.wait_status("lost", "online")
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    psutil.Process(row["pid"]).kill()
    wait_for(lambda: not alive(row["pid"]), what="the app to die")
    new = corral.wait_status("lost", "online")
    assert new["pid"] != row["pid"] and new["pm_id"] == row["pm_id"]
    assert pids_running(script) == [new["pid"]]


def test_racing_clis_start_one_daemon(corral: Corral) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-m", "corral", "ping"], env=corral.env,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    answers = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    pids = {a["daemon_pid"] for a in answers}
    assert len(pids) == 1
    daemons = [p for p in psutil.process_iter(["cmdline", "environ"])
               if "corral.daemon" in " ".join(p.info["cmdline"] or [])
               and (p.info["environ"] or {}).get("CORRAL_HOME") == str(corral.home)]
    assert [p.pid for p in daemons] == list(pids)


def test_kill_stops_apps_and_daemon(corral: Corral) -> None:
    script = corral.script("k.py", SLEEPER)
    corral.run("start", str(script), "-i", "2")
    pids = [r["pid"] for r in corral.jlist()]
    daemon = corral.daemon_pid()
    out = corral.run("kill").stdout
    assert "stopped 2" in out
    assert not alive(daemon) and not any(alive(p) for p in pids)
    assert not (corral.home / "rpc.sock").exists()
    # the next command starts a fresh, empty daemon
    assert corral.jlist() == []


def test_sigterm_stops_apps_and_next_daemon_brings_them_back(corral: Corral) -> None:
    script = corral.script("term.py", SLEEPER)
    corral.run("start", str(script))
    row = corral.wait_status("term", "online")
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGTERM)
    wait_for(lambda: not alive(daemon) and not alive(row["pid"]), what="daemon and app stopped")
    new = corral.wait_status("term", "online")
    assert new["pm_id"] == row["pm_id"] and new["pid"] != row["pid"]


def test_kill_after_sigterm_means_nothing_comes_back(corral: Corral) -> None:
    corral.run("start", str(corral.script("term2.py", SLEEPER)))
    row = corral.wait_status("term2", "online")
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGTERM)
    wait_for(lambda: not alive(daemon) and not alive(row["pid"]), what="daemon and app stopped")
    out = corral.run("kill")
    assert "stopped 0 process(es)" in out.stdout
    assert corral.jlist() == []  # a new daemon, and the app did not come back


def test_home_socket_and_state_are_private(corral: Corral) -> None:
    corral.run("start", str(corral.script("p.py", SLEEPER)))
    assert stat.S_IMODE(os.stat(corral.home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(corral.home / "rpc.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(corral.home / "state.json").st_mode) == 0o600


def _connect_as(uid: int, path: Path) -> str:
    """Connect to the socket from a child running as another uid; return what it saw."""
    code = f"""
import os, socket, sys
sys.path[:0] = {sys.path!r}
from corral.model.wire import encode, read_frame
os.setgid({uid}); os.setuid({uid})
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({str(path)!r})
except OSError as e:
    print("connect:", e.strerror); raise SystemExit
try:
    s.sendall(encode({{"id": 1, "method": "list", "params": {{}}}}))
except OSError:
    pass  # the daemon may have answered and closed already: read what it said
try:
    print("answer:", read_frame(s))
except Exception as e:
    print("closed:", e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20)
    return proc.stdout + proc.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_other_uid_is_refused(corral: Corral) -> None:
    # pytest's temp folders are 0700: this home needs parents another uid can traverse
    base = Path(tempfile.mkdtemp(prefix="corral-uid-"))
    os.chmod(base, 0o755)
    corral.home = base / "home"
    corral.env["CORRAL_HOME"] = str(corral.home)
    corral.run("ping")
    sock = corral.home / "rpc.sock"
    # the file system stops it first (home 0700, socket 0600)
    assert "Permission denied" in _connect_as(65534, sock)
    # and with the permissions opened by hand, SO_PEERCRED still refuses it
    os.chmod(corral.home, 0o755)
    os.chmod(sock, 0o777)
    answer = _connect_as(65534, sock)
    assert "refused" in answer and "uid 65534" in answer, answer
    assert "refused a connection from uid 65534" in (corral.home / "corral.log").read_text()
    corral.run("list")  # the owner is still served
    corral.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def test_version_mismatch_is_reported(tmp_path: Path) -> None:
    """A daemon of another version answers hello: the CLI says so and goes on."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(home / "rpc.sock"))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for _ in range(2):
                try:
                    request = read_frame(conn)
                except Exception:
                    return
                result = ({"version": "0.0.1", "pid": 1} if request["method"] == "hello"  # type: ignore[index]
                          else [])
                conn.sendall(encode({"id": request["id"], "result": result}))  # type: ignore[index]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    env = dict(os.environ, CORRAL_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "corral", "list"], env=env,
                          capture_output=True, text=True, timeout=20)
    server.close()
    assert proc.returncode == 0
    assert "daemon runs corral 0.0.1" in proc.stderr
    assert HEADER.size == 4


def test_describe_hides_env_unless_asked(corral: Corral) -> None:
    env = dict(corral.env, SECRET_TOKEN="hunter2")
    corral.run("start", str(corral.script("s.py", SLEEPER)), env=env)
    hidden = corral.run("describe", "s").stdout
    assert "hunter2" not in hidden and "hidden" in hidden
    shown = corral.run("describe", "s", "--env").stdout
    assert "SECRET_TOKEN=hunter2" in shown
    assert "hunter2" not in corral.run("jlist").stdout


def test_kill_after_daemon_sigkill_stops_orphans(corral: Corral) -> None:
    script = corral.script("orphan.py", SLEEPER)
    corral.run("start", str(script))
    row = corral.wait_status("orphan", "online")
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    assert alive(row["pid"])
    corral.run("kill")
    assert not alive(row["pid"])
    assert pids_running(script) == []


def test_sigusr2_reopens_log_files(corral: Corral) -> None:
    script = corral.script("talker.py", """
        import itertools, time
        for i in itertools.count():
            print(f"line {i}", flush=True)
            time.sleep(0.02)
    """)
    corral.run("start", str(script))
    out = Path(corral.wait_status("talker", "online")["pm2_env"]["pm_out_log_path"])
    wait_for(lambda: out.exists() and out.stat().st_size > 0, what="first lines")
    rotated = out.with_suffix(".log.1")
    out.rename(rotated)  # what logrotate does
    os.kill(corral.daemon_pid(), signal.SIGUSR2)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, what="a new file")
    assert alive(corral.daemon_pid())
    first = [int(x.split()[1]) for x in rotated.read_text().splitlines()]
    second = [int(x.split()[1]) for x in out.read_text().splitlines()]
    assert first + second[: 1] == list(range(first[0], second[0] + 1))  # nothing lost between
