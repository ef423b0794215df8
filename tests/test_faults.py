"""Faults and hostile inputs corral must survive (issue 12): each test names the point."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Corral, alive, free_port, pids_running, wait_for

NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root: it makes folders and "
                             "files owned by another user (nobody)")


def planted_state(marker: Path) -> dict[str, object]:
    """A process list with one shell app that would leave `marker` if it ever ran."""
    spec = {"name": "evil", "script": f"touch {marker}", "kind": "shell", "exec_path": "",
            "cwd": "/", "env": {}, "autorestart": False}
    return {"version": 1, "next_id": 1,
            "instances": [{"pm_id": 0, "spec": spec, "status": "online", "pid": 0}]}


@as_root
def test_1_a_home_another_user_controls_is_refused(corral: Corral) -> None:
    home = corral.tmp / "shared-home"
    home.mkdir()
    os.chmod(home, 0o777)
    os.chown(home, NOBODY, NOBODY)
    victim = corral.tmp / "victim"
    victim.write_text("precious\n")
    marker = corral.tmp / "pwned"
    # what user nobody left there: a link over the pid file, and a list with a command
    os.symlink(victim, home / "corral.pid")
    os.lchown(home / "corral.pid", NOBODY, NOBODY)
    (home / "state.json").write_text(json.dumps(planted_state(marker)))
    os.chown(home / "state.json", NOBODY, NOBODY)
    env = dict(corral.env, CORRAL_HOME=str(home))
    done = corral.run("ping", check=False, env=env)
    assert done.returncode == 1
    assert f"belongs to uid {NOBODY}, not to you (uid 0)" in done.stderr, done.stderr
    assert "chown" in done.stderr  # and what to do
    assert victim.read_text() == "precious\n"
    assert not marker.exists()
    assert not (home / "corral.log").exists()  # no daemon was started there
    # the same folder, ours now but still writable by everybody: refused with the fix
    os.chown(home, 0, 0)
    done = corral.run("ping", check=False, env=env)
    assert done.returncode == 1 and "writable by other users" in done.stderr, done.stderr
    assert f"chmod 700 {home}" in done.stderr
    assert victim.read_text() == "precious\n" and not marker.exists()


@as_root
def test_1_files_of_another_user_in_our_home_are_not_read(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    marker = corral.tmp / "pwned"
    state = corral.home / "state.json"
    state.write_text(json.dumps(planted_state(marker)))
    os.chown(state, NOBODY, NOBODY)
    dump = corral.home / "dump.json"
    dump.write_text(json.dumps({"apps": [{"spec": planted_state(marker)["instances"][0]
                                          ["spec"], "instances": 1}]}))  # type: ignore[index]
    os.chown(dump, NOBODY, NOBODY)
    assert json.loads(corral.run("ping").stdout)["msg"] == "pong"
    assert corral.jlist() == []
    log = corral.home / "corral.log"
    wait_for(lambda: "refusing the process list" in log.read_text(), what="the refusal logged")
    done = corral.run("resurrect", check=False)
    assert done.returncode != 0 and f"belongs to uid {NOBODY}" in done.stderr, done.stderr
    assert not marker.exists()


def test_1_a_link_at_the_state_file_is_not_followed(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    target = corral.tmp / "elsewhere.json"
    marker = corral.tmp / "pwned"
    target.write_text(json.dumps(planted_state(marker)))
    os.symlink(target, corral.home / "state.json")
    corral.run("ping")
    assert corral.jlist() == [] and not marker.exists()
    app = corral.script("a.py", "import time\ntime.sleep(600)\n")
    corral.run("start", str(app))  # writing the list replaces the link, never its target
    assert json.loads(target.read_text())["instances"][0]["spec"]["name"] == "evil"
    assert not (corral.home / "state.json").is_symlink()


# ---- helpers for the points below ---------------------------------------------------

tmpfs_needed = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("mount") is None,
    reason="needs root to mount a small tmpfs (a full disk)")


class Raw:
    """A control connection that sends whatever frames a test gives it."""

    def __init__(self, home: Path, timeout: float = 30) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(home / "rpc.sock"))

    def send_bytes(self, body: bytes, size: int | None = None) -> None:
        self.sock.sendall(struct.pack(">I", len(body) if size is None else size) + body)

    def send(self, method: str, **params: Any) -> None:
        self.send_bytes(json.dumps({"id": 1, "method": method, "params": params}).encode())

    def recv(self) -> dict[str, Any]:
        header = self._exact(4)
        (size,) = struct.unpack(">I", header)
        reply: dict[str, Any] = json.loads(self._exact(size))
        return reply

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.send(method, **params)
        return self.recv()

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the daemon")
            data += chunk
        return data

    def closed(self) -> bool:
        """True once the daemon has closed the connection (what it sent first is read)."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def spec_of(corral: Corral, app_name: str, script: Path, **fields: Any) -> dict[str, Any]:
    """An app as the CLI sends it (AppSpec.to_dict()), with fields changed."""
    spec = {"name": app_name, "script": str(script), "kind": "script", "exec_path": str(script),
            "interpreter": sys.executable, "cwd": str(corral.tmp), "env": {}}
    spec.update(fields)
    return spec


def daemon_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_table(pid: int) -> list[str]:
    """What the daemon holds open, for a failure message."""
    table = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            table.append(f"{fd} -> {os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return table


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of folder up to the last byte; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


SLEEPER = "import time\ntime.sleep(600)\n"


# ---- 2. a change is on disk before its reply -------------------------------------------

def test_2_a_start_is_on_disk_before_its_reply(corral: Corral) -> None:
    corral.run("ping")
    for n in range(3):
        app = corral.script(f"app{n}.py", SLEEPER)
        raw = Raw(corral.home)
        daemon = raw.call("hello", version="0")["result"]["pid"]
        reply = raw.call("start", apps=[spec_of(corral, f"app{n}", app)])
        os.kill(daemon, signal.SIGKILL)  # at once: the reply said it is done
        assert "result" in reply, reply
        pid = reply["result"]["list"][-1]["pid"]
        corral.seen_pids.add(pid)
        wait_for(lambda d=daemon: not alive(d), what="the daemon gone")  # type: ignore[misc]
        rows = {r["name"]: r for r in corral.jlist()}  # a new daemon, from state.json
        assert f"app{n}" in rows, f"app{n} lost: {sorted(rows)}"
        assert rows[f"app{n}"]["pid"] == pid  # adopted, not started twice
        assert pids_running(app) == [pid]


# ---- 3. a full disk --------------------------------------------------------------------

@tmpfs_needed
def test_3_a_start_that_cannot_be_persisted_is_an_error(corral: Corral) -> None:
    with small_tmpfs(corral.home):
        try:
            a = corral.script("a.py", SLEEPER)
            b = corral.script("b.py", SLEEPER)
            corral.run("start", str(a))
            filler = fill(corral.home)
            done = corral.run("start", str(b), check=False)
            assert done.returncode == 1, done
            assert "No space left on device" in done.stderr, done.stderr
            assert "state.json" in done.stderr and "nothing was started" in done.stderr
            assert "Traceback" not in done.stderr
            wait_for(lambda: not pids_running(b), what="b stopped again")
            assert [r["name"] for r in corral.jlist()] == ["a"]
            # the disk has room again; a daemon killed now comes back with a, only a
            filler.unlink()
            os.kill(corral.daemon_pid(), signal.SIGKILL)
            time.sleep(0.2)
            assert [r["name"] for r in corral.jlist()] == ["a"]
            assert len(pids_running(a)) == 1 and not pids_running(b)
        finally:
            corral.run("kill", check=False)


# ---- 6. a stop that fails half-way -----------------------------------------------------

def test_6_an_unknown_kill_signal_never_leaves_an_app_stopping(corral: Corral) -> None:
    corral.run("ping")
    app = corral.script("a.py", SLEEPER)
    reply = Raw(corral.home).call("start", apps=[spec_of(corral, "a", app,
                                                         kill_signal="SIGFOO")])
    if "error" in reply:  # refused at the door: the best outcome
        assert reply["error"]["code"] == 1 and "kill_signal" in reply["error"]["message"]
        assert corral.jlist() == []
        return
    corral.run("stop", "a", timeout=20)  # before the fix: `stopping` for ever, and so
    corral.run("delete", "a", timeout=20)  # was every stop and delete after it
    assert corral.jlist() == [] and not pids_running(app)


def test_6_a_stop_that_runs_out_of_fds_ends_and_the_next_one_works(corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    corral.run("start", str(app))
    pid = corral.wait_status("a", "online")["pid"]
    daemon = corral.daemon_pid()
    raw = Raw(corral.home, timeout=20)
    raw.call("hello", version="0")
    soft, hard = resource.prlimit(daemon, resource.RLIMIT_NOFILE)
    resource.prlimit(daemon, resource.RLIMIT_NOFILE, (daemon_fds(daemon), hard))
    try:
        reply = raw.call("stop", targets=[{"name": "a", "path": None}])  # EMFILE inside
    finally:
        resource.prlimit(daemon, resource.RLIMIT_NOFILE, (soft, hard))
    assert "result" in reply or reply["error"]["code"] == 1, reply  # ended, and said so
    corral.run("stop", "a", timeout=20)  # the next stop ends too
    corral.wait_status("a", "stopped", timeout=5)
    assert not alive(pid)
    corral.run("delete", "a", timeout=20)
    corral.run("kill", timeout=20)


# ---- 11. requests are validated --------------------------------------------------------

def test_11_bad_requests_get_a_clear_error_and_change_nothing(corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    corral.run("start", str(app))
    pid = corral.wait_status("a", "online")["pid"]
    good = spec_of(corral, "b", app)
    deep = b"[" * 100_000 + b"]" * 100_000
    frames: list[bytes] = [
        b"{not json", b"[1, 2]", b"42", b"\xff\xfe", deep, b'{"method": 5}',
        b'{"id": 1, "method": "list", "params": []}',
    ]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("stop", {"targets": "a"}),
        ("stop", {"targets": [1, 2]}),
        ("stop", {"targets": [{"name": "a"}], "bogus": 1}),
        ("list", {"env": "yes"}),
        ("scale", {"name": ["a"], "count": "2"}),
        ("start", {"apps": 5}),
        ("start", {"apps": [5]}),
        ("start", {"apps": [{**good, "log_date_format": 5}]}),
        ("start", {"apps": [{**good, "env": None}]}),
        ("start", {"apps": [{**good, "instances": "2"}]}),
        ("start", {"apps": [{**good, "kill_timeout_ms": -1}]}),
        ("start", {"apps": [{**good, "health_check": {"kind": "http"}}]}),
        ("restart", {"targets": [{"name": "a"}], "update": {"kill_signal": 9}}),
        ("restart", {"targets": [{"name": "a"}], "env": {"A": None}}),
        ("signal", {"signal_name": ["SIGINT"], "targets": [{"name": "a"}]}),
        ("nosuchmethod", {}),
    ]
    raw = Raw(corral.home)
    for frame in frames:
        raw.send_bytes(frame)
        reply = raw.recv()
        assert reply["error"]["code"] == 1 and "bad request" in reply["error"]["message"], \
            (frame[:40], reply)
    for method, params in calls:
        reply = raw.call(method, **params)
        assert "error" in reply and reply["error"]["code"] == 1, (method, params, reply)
        assert len(reply["error"]["message"]) < 400
    assert raw.call("ping")["result"] == "pong"  # the same connection goes on
    rows = corral.jlist()
    assert [(r["name"], r["pid"]) for r in rows] == [("a", pid)]
    assert "Traceback" not in (corral.home / "corral.log").read_text()
    state = json.loads((corral.home / "state.json").read_text())
    assert [i["spec"]["name"] for i in state["instances"]] == ["a"]


def test_11_one_bad_entry_in_the_list_does_not_cost_the_others(corral: Corral) -> None:
    apps = [corral.script(f"{n}.py", SLEEPER) for n in ("a", "b", "c")]
    for app in apps:
        corral.run("start", str(app))
    pids = {r["name"]: r["pid"] for r in corral.jlist()}
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon gone")
    state = json.loads((corral.home / "state.json").read_text())
    state["instances"][1]["spec"]["log_date_format"] = 5  # b: a value no daemon accepts
    state["instances"][1]["spec"]["env"] = None
    state["instances"].append("not an entry")
    (corral.home / "state.json").write_text(json.dumps(state))
    rows = {r["name"]: r for r in corral.jlist()}
    assert sorted(rows) == ["a", "c"]
    assert rows["a"]["pid"] == pids["a"] and rows["c"]["pid"] == pids["c"]
    wait_for(lambda: not alive(pids["b"]), what="b, which nothing tracks now, stopped")
    log = (corral.home / "corral.log").read_text()
    assert "skipping an unreadable entry of the process list: app 'b'" in log


# ---- 12. names and numbers -------------------------------------------------------------

def test_12_names_and_numbers_that_would_confuse_are_refused(corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    refused = [
        (["--name", "all"], "reserved"),
        (["--name", "0"], "is a number"),
        (["--name", "a\nb"], "newline"),
        (["--name", "a\x1b[31mred"], "control character"),
        (["--name", "x" * 300], "at most 128"),
        (["--kill-timeout", "-1"], "kill_timeout"),
        (["--min-uptime", "-1"], "min_uptime"),
        (["--max-restarts", "-1"], "max_restarts"),
    ]
    for args, why in refused:
        done = corral.run("start", str(app), *args, check=False)
        assert done.returncode == 1, (args, done)
        assert why in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr) < 500
    raw = Raw(corral.home)
    for fields in ({"kill_timeout_ms": -5}, {"min_uptime_ms": -1}, {"max_restarts": -2},
                   {"name": "12"}, {"namespace": "all"}):
        reply = raw.call("start", apps=[spec_of(corral, "b", app, **fields)])
        assert reply["error"]["code"] == 1, (fields, reply)
    weird = corral.tmp / os.fsdecode(b"caf\xe9.py")  # latin-1 bytes: not UTF-8
    weird.write_text(SLEEPER)
    done = corral.run("start", str(weird), check=False)
    assert done.returncode == 1 and "not valid UTF-8" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert corral.jlist() == []
    corral.run("start", str(app))  # the failed starts used up no id
    assert [r["pm_id"] for r in corral.jlist()] == [0]


# ---- 4. the daemon killed during a reload -----------------------------------------------

CLUSTER_APP = """\
import http.server, os, signal, sys, time
import corral
marks = os.environ["MARKS"]
if os.path.exists(os.path.join(marks, "stubborn")):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # leaves only at SIGKILL
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hi")
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello)
if os.path.exists(os.path.join(marks, "slow")):
    time.sleep(12)  # a new worker that listens, then takes its time to be ready
corral.ready()
server.serve_forever()
"""


@pytest.mark.parametrize("moment", ["new worker starting", "old worker stopping"])
def test_4_daemon_killed_during_reload_leaves_nothing_behind(corral: Corral,
                                                             moment: str) -> None:
    app = corral.script("web.py", CLUSTER_APP)
    marks = corral.tmp / "marks"
    marks.mkdir()
    env = dict(corral.env, MARKS=str(marks), PORT=str(free_port()))
    if moment == "old worker stopping":
        (marks / "stubborn").touch()
    corral.run("start", str(app), "-i", "1", "--kill-timeout", "4000", "--wait-ready",
               env=env)
    corral.wait_status("web", "online")
    old = pids_running(app)
    assert len(old) == 1
    if moment == "new worker starting":
        (marks / "slow").touch()
    log = corral.home / "corral.log"
    reload = subprocess.Popen([sys.executable, "-m", "corral", "reload", "web"], env=env,
                              cwd=corral.tmp, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        if moment == "new worker starting":
            wait_for(lambda: len(pids_running(app)) == 2, what="the new worker started")
            time.sleep(0.5)
        else:
            wait_for(lambda: "took over from pid" in log.read_text(), what="the take-over")
        both = pids_running(app)
        corral.seen_pids.update(both)
        os.kill(corral.daemon_pid(), signal.SIGKILL)
    finally:
        reload.wait(timeout=30)
    time.sleep(1.5)  # a stray worker would knock meanwhile
    (marks / "slow").unlink(missing_ok=True)
    corral.run("kill")
    # gone with the kill (kill_timeout 4 s), not at the end of the new worker's nap
    wait_for(lambda: not pids_running(app), timeout=6, what="every worker gone")
    knocks = log.read_text().count("is not one of ours")
    time.sleep(2)
    assert log.read_text().count("is not one of ours") == knocks <= 2, "endless knocking"


# ---- 5. a line cut by a full disk is not merged with the next ---------------------------

@tmpfs_needed
def test_5_a_line_cut_by_a_full_disk_is_not_merged_with_the_next(corral: Corral) -> None:
    disk = corral.tmp / "disk"
    app = corral.script("talk.py", f"""\
        import os, sys, time
        def wait(name):
            while not os.path.exists(os.path.join({str(corral.tmp)!r}, name)):
                time.sleep(0.05)
        sys.stdout.write("first\\n")
        wait("go1")
        sys.stdout.write("x" * 10000 + "\\n")
        wait("go2")
        sys.stdout.write("after\\n")
        time.sleep(600)
        """)
    with small_tmpfs(disk):
        try:
            out = disk / "out.log"
            corral.run("start", str(app), "-o", str(out))
            wait_for(lambda: out.exists() and out.read_text() == "first\n", what="first")
            filler = fill(disk)
            (corral.tmp / "go1").touch()
            wait_for(lambda: (corral.app("talk") or {}).get("pm2_env", {}).get(
                "log_write_error") or len(out.read_bytes()) > 6, what="the cut write")
            time.sleep(0.3)
            filler.unlink()
            (corral.tmp / "go2").touch()
            wait_for(lambda: "after" in out.read_text(), what="the line after")
            lines = out.read_text().splitlines()
            assert lines[0] == "first" and lines[-1] == "after", lines[-1][-80:]
            assert all(set(line) == {"x"} for line in lines[1:-1]), "a line merged"
        finally:
            corral.run("kill", check=False)


# ---- 7. file descriptors ------------------------------------------------------------------

def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux's prlimit")
def test_7_the_fd_limit_is_raised_and_a_start_that_does_not_fit_is_refused(
        corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    done = subprocess.run(["prlimit", "--nofile=64:160", sys.executable, "-m", "corral",
                           "ping"], env=corral.env, cwd=corral.tmp, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    daemon = corral.daemon_pid()
    assert _limits(daemon) == (160, 160)  # the soft limit raised to the hard one
    done = corral.run("start", str(app), "-i", "40", check=False)
    assert done.returncode == 1, done.stdout
    assert "file descriptors" in done.stderr and "limit of 160" in done.stderr, done.stderr
    assert corral.jlist() == [] and not pids_running(app)
    corral.run("start", str(app), "-i", "2")
    pids = [r["pid"] for r in corral.jlist()]
    assert all(_limits(pid) == (64, 160) for pid in pids)  # apps get what they would have


def test_7_failed_starts_and_delete_racing_restart_leak_no_fd(corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    corral.run("ping")
    daemon = corral.daemon_pid()
    base = daemon_fds(daemon)
    raw = Raw(corral.home)
    for _ in range(5):
        raw.call("start", apps=[spec_of(corral, "a", app, log_date_format=5)])
        done = corral.run("start", str(app), "-e", "/proc/no/such/err.log", check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
    raw.close()
    wait_for(lambda: daemon_fds(daemon) <= base, timeout=3, what=f"fds back to {base}: "
             f"{fd_table(daemon)}")
    web = corral.script("web.py", CLUSTER_APP)
    (corral.tmp / "marks").mkdir()
    env = dict(corral.env, MARKS=str(corral.tmp / "marks"), PORT=str(free_port()))
    for first in ("delete", "restart", "delete"):
        corral.run("start", str(web), "-i", "2", env=env)
        corral.wait_status("web", "online")
        corral.seen_pids.update(pids_running(web))
        conns = [Raw(corral.home), Raw(corral.home)]
        order = [first, "restart" if first == "delete" else "delete"]
        for conn, method in zip(conns, order):
            conn.send(method, targets=[{"name": "web", "path": None}])
        for conn in conns:
            reply = conn.recv()
            assert "internal error" not in json.dumps(reply), reply
            conn.close()
        corral.run("delete", "web", check=False)
        wait_for(lambda: not pids_running(web), what="the workers gone")
    assert corral.jlist() == []
    wait_for(lambda: daemon_fds(daemon) <= base, timeout=3, what=f"fds back to {base}: "
             f"{fd_table(daemon)}")


# ---- 8. connections ------------------------------------------------------------------------

def test_8_connections_are_capped_and_idle_ones_closed(corral: Corral) -> None:
    env = dict(corral.env, CORRAL_IDLE_TIMEOUT="2")
    corral.run("ping", env=env)
    idle = Raw(corral.home, timeout=10)
    time.sleep(3)
    assert idle.closed(), "an idle connection stays open"
    conns = []
    for _ in range(256):
        conns.append(Raw(corral.home))
        assert conns[-1].call("ping")["result"] == "pong"
    extra = Raw(corral.home)
    reply = extra.recv()
    assert "connections open already" in reply["error"]["message"]
    for conn in conns:
        conn.close()
    time.sleep(0.5)
    assert json.loads(corral.run("ping").stdout)["msg"] == "pong"


def test_8_a_hung_daemon_is_a_clear_error_not_a_hang(corral: Corral) -> None:
    corral.run("ping")
    daemon = corral.daemon_pid()
    os.kill(daemon, signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = corral.run("list", check=False, timeout=40)
        assert done.returncode == 1 and "did not answer" in done.stderr, done.stderr
        assert time.monotonic() - started < 20
        done = corral.run("list", check=False, timeout=40,
                          env=dict(corral.env, CORRAL_TIMEOUT="1"))
        assert done.returncode == 1
    finally:
        os.kill(daemon, signal.SIGCONT)
    corral.run("ping")


def test_8_repeated_errors_do_not_flood_the_log(corral: Corral) -> None:
    from corral.cluster.ipc import Channel

    corral.run("ping")
    log = corral.home / "corral.log"
    for _ in range(50):  # a worker that is not ours, knocking again and again
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(str(corral.home / "cluster.sock"))
        channel = Channel(sock)
        channel.send({"act": "reattach", "pid": 1, "sockets": []})
        sock.settimeout(5)
        assert channel.recv()[0]["act"] == "refused"  # type: ignore[index]
        channel.close()
    assert log.read_text().count("knocked, but it is not one of ours") <= 6
    # out of fds: a knock that cannot be accepted must not spin the loop nor the log
    daemon = corral.daemon_pid()
    size = log.stat().st_size
    cpu = psutil.Process(daemon).cpu_times()
    soft, hard = resource.prlimit(daemon, resource.RLIMIT_NOFILE)
    resource.prlimit(daemon, resource.RLIMIT_NOFILE, (daemon_fds(daemon), hard))
    knock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        knock.connect(str(corral.home / "cluster.sock"))
        time.sleep(3)
        used = sum(psutil.Process(daemon).cpu_times()[:2]) - sum(cpu[:2])
    finally:
        resource.prlimit(daemon, resource.RLIMIT_NOFILE, (soft, hard))
        knock.close()
    assert used < 1.0, f"{used:.1f} s of cpu in 3 s"
    assert log.stat().st_size - size < 3000
    assert json.loads(corral.run("ping").stdout)["msg"] == "pong"


# ---- 9. caps ---------------------------------------------------------------------------

def test_9_caps_on_instances_frames_and_echoed_input(corral: Corral) -> None:
    app = corral.script("a.py", SLEEPER)
    started = time.monotonic()
    done = corral.run("start", str(app), "-i", "1000000", check=False)
    assert done.returncode == 1 and "at most 1024" in done.stderr, done.stderr
    raw = Raw(corral.home)
    reply = raw.call("start", apps=[spec_of(corral, "a", app, instances=1_000_000)])
    assert reply["error"]["code"] == 1 and "1024" in reply["error"]["message"]
    assert raw.call("scale", name="nope", count="9" * 30)["error"]["code"] == 1
    assert time.monotonic() - started < 20 and corral.jlist() == []
    # a huge target is not echoed back
    reply = raw.call("stop", targets=[{"name": "n" * 5_000_000, "path": None}])
    assert reply["error"]["code"] == 1 and len(json.dumps(reply)) < 1000
    # a frame too large is refused at once; one that never arrives is not waited for
    big = Raw(corral.home)
    big.send_bytes(b"{" + b" " * 1023, size=64 * 1024 * 1024)
    assert "at most" in big.recv()["error"]["message"]
    slow = Raw(corral.home, timeout=20)
    slow.send_bytes(b"{" + b" " * 1023, size=4 * 1024 * 1024)
    started = time.monotonic()
    assert raw.call("ping")["result"] == "pong"  # others are served meanwhile
    reply = slow.recv()
    assert "did not come" in reply["error"]["message"]
    assert slow.closed() and time.monotonic() - started < 15


# ---- 10. corral.log rotates ----------------------------------------------------------------

def test_10_the_daemon_log_rotates(corral: Corral) -> None:
    crash = corral.script("crash.py", "raise SystemExit(1)\n")
    env = dict(corral.env, CORRAL_DAEMON_LOG_MAX_SIZE="4000")
    corral.run("start", str(crash), "--max-restarts", "100000", env=env, check=False)
    log = corral.home / "corral.log"
    wait_for(lambda: Path(f"{log}.3").exists(), timeout=60, what="three rotations")
    time.sleep(1)
    corral.run("stop", "crash")
    assert not Path(f"{log}.4").exists()
    for path in (log, *(Path(f"{log}.{n}") for n in (1, 2, 3))):
        assert path.stat().st_size < 4000 + 1000, path
    assert "crash (id 0)" in Path(f"{log}.1").read_text()


# ---- 13. an interrupted kill still completes -----------------------------------------------

def test_13_kill_completes_when_its_client_is_gone(corral: Corral) -> None:
    app = corral.script("slow.py", """\
        import signal, time
        signal.signal(signal.SIGINT, lambda *a: None)  # leaves only at SIGKILL
        time.sleep(600)
        """)
    corral.run("start", str(app), "--kill-timeout", "2000")
    pid = corral.wait_status("slow", "online")["pid"]
    daemon = corral.daemon_pid()
    kill = subprocess.Popen([sys.executable, "-m", "corral", "kill"], env=corral.env,
                            cwd=corral.tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    kill.send_signal(signal.SIGINT)  # Ctrl-C while the app is being stopped
    kill.wait(timeout=10)
    wait_for(lambda: not alive(pid), timeout=10, what="the app stopped")
    wait_for(lambda: not alive(daemon), timeout=10, what="the daemon gone")
    state = json.loads((corral.home / "state.json").read_text())
    assert state["instances"] == []


# ---- fuzzing the control socket --------------------------------------------------------

FUZZ_SECONDS = float(os.environ.get("CORRAL_FUZZ_SECONDS", "20"))
METHODS = ["hello", "ping", "list", "start", "apply", "stop", "restart", "reload", "scale",
           "delete", "reset", "signal", "log_files", "flush", "reload_logs", "metrics", "save",
           "kill", "update", "web", "follow", "nosuch", "__init__", "rpc_list", ""]
PARAMS = ["targets", "apps", "name", "count", "env", "update", "mode", "parallel",
          "signal_name", "version", "force", "port", "host", "types", "action", "zz"]
# what could stop the test's own apps or the daemon, or open ports, if its parameters
# happened to be right: always sent with one parameter too many
UNSAFE = {"kill", "update", "metrics", "web", "save", "flush", "reset", "scale", "signal",
          "delete", "stop", "restart", "reload", "apply"}


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 5 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, float("nan"), float("inf")])
    if kind in (4, 5):
        return "zz-" + "".join(rng.choice("ab\n\x00\x1b\u00e9\U0001f600\ud800/ ")
                               for _ in range(rng.randrange(0, 20)))
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(PARAMS + ["name", "script", "pid"]): random_json(rng, depth + 1)
            for _ in range(rng.randrange(0, 4))}


def fuzz_frame(rng: random.Random, corral: Corral, app: Path) -> tuple[bytes, int | None]:
    """(body, announced size or None) of one hostile or odd frame."""
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))), None
    if kind == 1:
        return json.dumps(random_json(rng)).encode(), None
    if kind == 2:  # a frame that promises more than it sends (the connection is dropped)
        return b'{"id": 1, "method": "ping"', rng.choice([100, 70000, 2**31])
    if kind == 3:
        depth = rng.choice([40, 1000, 100_000])
        return b'{"id":1,"method":"list","params":{"env":' + b"[" * depth + b"]" * depth \
            + b"}}", None
    method = rng.choice(METHODS)
    params: dict[str, Any] = {rng.choice(PARAMS): random_json(rng)
                              for _ in range(rng.randrange(0, 3))}
    if method in ("stop", "restart", "delete", "reload", "signal", "reset") and rng.random() < .5:
        params = {"targets": [{"name": f"zz-{rng.randrange(99)}", "path": None}]}
    if method == "start" and kind > 5:  # a real spec with one field set to anything
        spec = spec_of(corral, f"fz-{rng.randrange(10**6)}", app, autorestart=False,
                       kill_timeout_ms=300)
        spec[rng.choice([k for k in spec if k != "name"] + ["log_date_format", "watch",
                                                             "health_check", "args",
                                                             "cron_restart"])] = \
            random_json(rng)
        params = {"apps": [spec]}
    if method in UNSAFE or method == "follow" and rng.random() < .5:
        params["zz_fuzz"] = 1
    return json.dumps({"id": rng.choice([1, "x", None]), "method": method,
                       "params": params}).encode(), None


def test_fuzz_the_control_socket(corral: Corral) -> None:
    """Seeded frames for FUZZ_SECONDS: after each, the daemon answers ping; at the end the
    apps keep their pids and the daemon's fds and memory are back near their baseline."""
    seed = int(os.environ.get("CORRAL_FUZZ_SEED", "12"))
    rng = random.Random(seed)
    app = corral.script("a.py", SLEEPER)
    corral.run("start", str(app), "-n", "a")
    corral.run("start", str(app), "-n", "b", "-f")
    pids = {r["name"]: r["pid"] for r in corral.jlist()}
    daemon = corral.daemon_pid()
    pinger = Raw(corral.home, timeout=10)
    for _ in range(20):  # warm up (imports, caches) before the baseline
        pinger.call("list")
    base_fds = daemon_fds(daemon)
    base_rss = psutil.Process(daemon).memory_info().rss
    frames = 0
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        body, size = fuzz_frame(rng, corral, app)
        conn = Raw(corral.home, timeout=10)
        try:
            conn.send_bytes(body, size)
            conn.sock.settimeout(0.05 if size is not None else 10)
            try:
                conn.recv()
            except (OSError, ValueError):
                pass
        finally:
            conn.close()
        frames += 1
        assert pinger.call("ping")["result"] == "pong", f"seed {seed}, frame {frames}"
    rows = corral.jlist()
    assert {r["name"]: r["pid"] for r in rows if r["name"] in pids} == pids, f"seed {seed}"
    for row in rows:
        if row["name"] not in pids:
            corral.run("delete", row["name"], check=False)
    pinger.close()
    wait_for(lambda: daemon_fds(daemon) <= base_fds + 2, timeout=10,
             what=f"fds back to {base_fds} (seed {seed}): {fd_table(daemon)}")
    grown = psutil.Process(daemon).memory_info().rss - base_rss
    assert grown < 30 * 1024 * 1024, f"rss grew {grown >> 20} MiB (seed {seed})"
    assert "Traceback" not in (corral.home / "corral.log").read_text()
    print(f"fuzz: {frames} frames in {FUZZ_SECONDS:.0f} s, seed {seed}, rss {grown >> 10:+} kB")


# ---- 14. a signal to a cluster process reaches its main thread -------------------------------

def _blocked(pid: int, tid: str) -> int:
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    return 0


def test_14_cluster_threads_leave_the_process_signals_to_the_main_thread() -> None:
    """test_cluster.py's primary that did not exit on SIGINT and worker that did not exit
    after its disconnect, under load: a signal sent to the process is taken by whichever
    thread does not block it, and one taken by a helper thread never interrupts the main
    thread's read of stdin or its event loop's select (Python runs handlers in the main
    thread only when it next runs). Every helper thread of a primary and of a worker now
    blocks them, and a worker that leaves signals its own main thread."""
    from clusterkit import SERVERS, PrimaryProcess

    primary = PrimaryProcess("rr", 2, SERVERS / "plain_asyncio.py",
                             env={"PORT": str(free_port())})
    try:
        workers = [primary.wait_event("listening")["pid"] for _ in range(2)]
        for pid in (primary.proc.pid, *workers):
            helpers = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
            assert helpers, pid
            for tid in helpers:
                mask = _blocked(pid, tid)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                    assert mask & (1 << (sig - 1)), f"thread {tid} of {pid} takes {sig!r}"
            assert _blocked(pid, str(pid)) & (1 << (signal.SIGINT - 1)) == 0
        primary.proc.send_signal(signal.SIGINT)
        primary.proc.wait(timeout=15)
        wait_for(lambda: not any(alive(p) for p in workers), what="workers gone")
    finally:
        primary.stop()
