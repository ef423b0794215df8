"""corral-runtime: the daemon in the foreground, as a container's PID 1 (a real pid
namespace made by `unshare`), and as a plain foreground process elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from corral.daemon.runtime import Echo, Options, parse

from conftest import Corral, free_port, wait_for

RUNTIME = [sys.executable, "-m", "corral.daemon.runtime"]

WEB = """
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.getpid()}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"served {self.path}", flush=True)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""

# prints on both streams, leaves an orphan that exits a moment later (its parent, a
# shell, is gone at once: the orphan is reparented to PID 1), and ignores SIGINT, its
# kill signal: stopping it takes kill_timeout and a SIGKILL
CHATTY = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("chatty says hello on stdout", flush=True)
print("chatty says hello on stderr", file=sys.stderr, flush=True)
subprocess.run(["/bin/sh", "-c",
                f"{sys.executable} -c 'import time; time.sleep(1.5)' ORPHAN-MARK & exit 0"])
while True:
    time.sleep(1)
"""


def unshare_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                          capture_output=True, timeout=30)
    return done.returncode == 0


def start_runtime(corral: Corral, args: list[str], prefix: list[str] | None = None
                  ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = corral.tmp / "runtime.out", corral.tmp / "runtime.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([*(prefix or []), *RUNTIME, "start", *args], env=corral.env,
                                cwd=corral.tmp, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    return proc, out, err


def wait_listening(corral: Corral) -> None:
    """Until the runtime's socket listens: a command run before would start a daemon of
    its own, and the runtime would find the home taken."""
    wait_for(lambda: (corral.home / "rpc.sock").exists(), 20, what="the runtime's socket")


def stop_by_pid(proc: subprocess.Popen[bytes]) -> None:
    """The end of a test: the runtime and every process under it, by pid."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        tree = []
    for p in tree:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    proc.wait(10)


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
        return str(answer.read().decode())


def marked(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if mark in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


@pytest.mark.skipif(not unshare_works(), reason="needs root and `unshare --pid` (util-linux)")
def test_runtime_as_pid_1_of_a_pid_namespace(corral: Corral) -> None:
    port = free_port()
    corral.script("web.py", WEB)
    chatty = corral.script("chatty.py", CHATTY)
    (corral.tmp / "ecosystem.config.json").write_text(json.dumps({"apps": [
        {"name": "web", "script": "web.py", "instances": 2, "exec_mode": "cluster",
         "port": port},
        {"name": "chatty", "script": "chatty.py", "kill_timeout": 1000},
    ]}))
    proc, out, err = start_runtime(corral, ["ecosystem.config.json"],
                                   ["unshare", "--pid", "--fork", "--mount-proc"])
    try:
        # unshare forks PID 1 of the new namespace: the runtime
        runtime = wait_for(lambda: [c for c in psutil.Process(proc.pid).children()
                                    if c.cmdline()[1:3] == ["-m", "corral.daemon.runtime"]],
                           20, what="the runtime")[0]
        wait_listening(corral)
        inside = ["nsenter", "-t", str(runtime.pid), "-p", "-m", sys.executable, "-m", "corral"]

        def rows() -> list[dict]:
            done = subprocess.run([*inside, "jlist"], env=corral.env, capture_output=True,
                                  text=True, timeout=30)
            return json.loads(done.stdout) if done.returncode == 0 else []

        def online() -> int:
            return len([r for r in rows() if r["pm2_env"]["status"] == "online"])

        wait_for(lambda: online() == 3, 30, interval=0.3, what="3 instances online")
        assert "hello from" in get(port)  # the cluster answers
        assert os.readlink(f"/proc/{runtime.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        assert [r["pid"] for r in rows() if r["name"] == "web"]  # pids of the namespace

        # the apps' lines on the runtime's streams, by stream
        wait_for(lambda: b"|web | served /" in out.read_bytes(), 10, what="web's line")
        wait_for(lambda: b"|chatty | chatty says hello on stdout" in out.read_bytes(), 10)
        wait_for(lambda: b"|chatty | chatty says hello on stderr" in err.read_bytes(), 10)
        assert b"on stderr" not in out.read_bytes()

        # the orphan is reparented to the runtime, and reaped when it exits: no zombie
        orphan = wait_for(lambda: [p for p in marked("ORPHAN-MARK") if p.ppid() == runtime.pid],
                          10, what="the orphan reparented to PID 1")[0]
        wait_for(lambda: not psutil.pid_exists(orphan.pid), 10, what="the orphan reaped")
        zombies = [c for c in runtime.children() if c.status() == psutil.STATUS_ZOMBIE]
        assert zombies == []

        # kill -9 of an app: restarted
        first = wait_for(lambda: [c for c in runtime.children()
                                  if str(chatty) in " ".join(c.cmdline())], 10)[0]
        first.send_signal(signal.SIGKILL)
        wait_for(lambda: [c for c in runtime.children() if c.pid != first.pid
                          and str(chatty) in " ".join(c.cmdline())], 10, what="chatty again")
        wait_for(lambda: [r for r in rows() if r["name"] == "chatty"
                          and r["pm2_env"]["status"] == "online"
                          and r["pm2_env"]["restart_time"] == 1], 10, interval=0.3)
        raw = subprocess.run([*inside[:-2], "-c", "import json; from corral import API; print("
                              "json.dumps([[r['spec']['name'], r['exit_code'], r['exit_signal']]"
                              " for r in API().list()]))"], env=corral.env, capture_output=True,
                             text=True, timeout=30)
        assert ["chatty", None, "SIGKILL"] in json.loads(raw.stdout), raw.stderr

        # commands from inside the container talk to the runtime: logs, reload
        followed = corral.tmp / "followed.txt"
        with open(followed, "wb") as sink:
            logs = subprocess.Popen([*inside, "logs", "web", "--raw"], env=corral.env,
                                    stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: get(port) and b"served /" in followed.read_bytes(), 20,
                     interval=0.3, what="`corral logs web` following the runtime")
        finally:
            stop_by_pid(logs)
        reload = subprocess.run([*inside, "reload", "web"], env=corral.env,
                                capture_output=True, text=True, timeout=60)
        assert reload.returncode == 0, reload.stderr
        assert "hello from" in get(port)

        # SIGTERM: every app stops (chatty needs its kill_timeout and a SIGKILL), exit 0
        apps = [p for c in runtime.children() for p in [c, *c.children(recursive=True)]]
        assert len(apps) >= 3
        began = time.monotonic()
        runtime.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, err.read_text()
        took = time.monotonic() - began
        assert 1.0 <= took < 1.0 + 3.0, took  # kill_timeout honoured, and not much more
        assert [p for p in apps if p.is_running()] == []
        assert marked(str(corral.tmp)) == []  # nothing of the apps remains
        assert "chatty (id 2): stopping -> stopped" in err.read_text()
    finally:
        stop_by_pid(proc)


def test_runtime_json_lines_auto_exit_and_exit_code(corral: Corral) -> None:
    # its orphan (reparented to the runtime, a child subreaper here) ends as it does: the
    # reaping of the one must not take the exit status of the other
    corral.script("once.py", """
        import subprocess, sys, time
        print("first line", flush=True)
        print("a line on stderr", file=sys.stderr, flush=True)
        subprocess.run(["/bin/sh", "-c", "sleep 0.3 & exit 0"])
        time.sleep(0.3)
        sys.exit(3)
    """)
    (corral.tmp / "eco.yaml").write_text(
        "apps:\n  - name: once\n    script: once.py\n    autorestart: false\n")
    proc, out, err = start_runtime(corral, ["eco.yaml", "--json"])
    try:
        # the app exits with 3, autorestart off: every app stopped for good, and one failed
        assert proc.wait(30) == 1, err.read_text()
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert lines == [{"message": "first line", "timestamp": lines[0]["timestamp"],
                          "type": "out", "process_id": 0, "app_name": "once"}]
        own = [json.loads(line) for line in err.read_text().splitlines()]
        assert any(o["message"] == "a line on stderr" and o["type"] == "err"
                   and o["app_name"] == "once" for o in own)
        assert any("every app has stopped; failed: once" in o["message"] for o in own)
        assert any("exited with code 3; autorestart is off" in o["message"] for o in own)
        assert not (corral.home / "logs" / "once-out-0.log").exists()  # no file without --logs
        assert not (corral.home / "rpc.sock").exists()
    finally:
        stop_by_pid(proc)


def test_runtime_logs_raw_and_a_stop_from_inside(corral: Corral) -> None:
    corral.script("tick.py", """
        import itertools, time
        for i in itertools.count():
            print(f"tick {i}", flush=True)
            time.sleep(0.1)
    """)
    proc, out, err = start_runtime(corral, ["tick.py", "--name", "tick", "--raw", "--logs"])
    try:
        wait_for(lambda: b"tick 3\n" in out.read_bytes(), 20, what="ticks")
        assert out.read_bytes().startswith(b"tick 0\n")  # --raw: the line alone
        log = corral.home / "logs" / "tick-out-0.log"
        wait_for(lambda: log.exists() and b"tick 3\n" in log.read_bytes(), 10)
        # a command beside the runtime: stopping the only app ends it (auto exit, code 0)
        assert corral.run("stop", "tick").returncode == 0
        assert proc.wait(20) == 0, err.read_text()
    finally:
        stop_by_pid(proc)


def test_runtime_gives_the_errors_of_start_and_exit_code_1(corral: Corral) -> None:
    (corral.tmp / "bad.yaml").write_text("apps:\n  - name: x\n    script: missing.py\n")
    proc, out, err = start_runtime(corral, ["bad.yaml"])
    try:
        assert proc.wait(30) == 1
        started = corral.run("start", "bad.yaml", check=False)
        message = started.stderr.strip().splitlines()[-1]
        assert message.startswith("corral: error: ") and "script not found" in message
        assert message in err.read_text()
    finally:
        stop_by_pid(proc)


def test_runtime_needs_a_home_of_its_own(corral: Corral) -> None:
    corral.run("ping")  # a daemon runs for this home
    done = subprocess.run([*RUNTIME, "start", "x.py"], env=corral.env, cwd=corral.tmp,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "a corral daemon already runs for CORRAL_HOME" in done.stderr


def test_runtime_instances_override_and_no_auto_exit(corral: Corral) -> None:
    corral.script("sleeper.py", "import time\nwhile True:\n    time.sleep(1)\n")
    (corral.tmp / "eco.json").write_text(json.dumps({"apps": [
        {"name": "s", "script": "sleeper.py", "instances": 3, "exec_mode": "fork"}]}))
    proc, out, err = start_runtime(corral, ["eco.json", "-i", "1", "--no-auto-exit"])
    try:
        wait_listening(corral)
        rows = wait_for(lambda: [r for r in corral.jlist()
                                 if r["pm2_env"]["status"] == "online"], 20)
        assert len(rows) == 1  # -i 1 over the file's 3
        corral.run("stop", "all")
        time.sleep(1.0)
        assert proc.poll() is None  # --no-auto-exit: still there
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        stop_by_pid(proc)


def test_console_script_and_options() -> None:
    script = Path(sys.executable).parent / "corral-runtime"
    assert script.exists(), "pip install -e . declares the corral-runtime console script"
    assert "usage: corral-runtime start" in subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=30).stdout
    options = parse(["start", "eco.toml", "--env", "prod", "--json", "--", "--flag"])
    assert isinstance(options, Options)
    assert options.start_args == ["eco.toml", "--env", "prod", "--", "--flag"]
    assert options.output == "json" and not options.logs and options.auto_exit
    assert "exclude each other" in str(parse(["app.py", "--raw", "--json"]))
    echo = Echo("format")
    assert echo.line(2, "web", "out", 'say "hi"', 0.0).decode().endswith(
        'app=web id=2 type=out message="say \\"hi\\""\n')
    assert Echo("prefix").line(0, "web", "err", "boom", 0.0) == b"0|web | boom\n"


def test_reaping_orphans_leaves_the_exit_status_of_our_children() -> None:
    """Spawned.reap() waits for children that are not ours (here one spawned without
    Popen, as an orphan is) and never for a Popen's: its exit code stays its own."""
    code = """
import os, subprocess, sys, time
from corral.daemon.runtime import Spawned, children
spawned = Spawned()
spawned.install()
ours = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
other = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 5"], dict(os.environ))
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    states = {}
    for pid in (ours.pid, other):
        with open(f"/proc/{pid}/stat") as f:
            states[pid] = f.read().rsplit(")", 1)[1].split()[0]
    if set(states.values()) == {"Z"}:
        break
    time.sleep(0.01)
assert spawned.reap() == [other], "the orphan is reaped"
assert other not in children() and ours.pid in children()
assert ours.wait() == 7, "the Popen's exit status is its own"
assert spawned.reap() == []
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_burst_reaches_stdout_whole(corral: Corral) -> None:
    """300,000 lines as fast as the app can write them: every one on the runtime's stdout,
    once, never cut (the daemon's loop is busy the whole time, long enough for the timer
    that flushes an incomplete line to fire while the rest of it waits in the pipe)."""
    corral.script("burst.py", """
        import sys
        write = sys.stdout.write
        for i in range(300000):
            write(f"line {i} " + "x" * 50 + "\\n")
    """)
    proc, out, err = start_runtime(corral, ["burst.py", "--no-autorestart", "--name", "b"])
    try:
        assert proc.wait(60) == 0, err.read_text()
        lines = out.read_text().splitlines()
        assert lines == [f"0|b | line {i} " + "x" * 50 for i in range(300000)]
    finally:
        stop_by_pid(proc)


def test_a_stuck_reader_never_blocks_the_writer() -> None:
    """Sink: while nobody reads the runtime's stdout, writing a line returns at once;
    past its bound lines are dropped, and the count is written when the reader is back."""
    from corral.daemon.runtime import Sink

    read_end, write_end = os.pipe()
    sink = Sink(write_end, "test", Echo("raw").own)
    sink.MAX_PENDING = 4096
    began = time.monotonic()
    for i in range(5000):  # ~500 kB: far more than the pipe holds
        sink.write(f"line {i:04d} {'x' * 90}\n".encode())
    assert time.monotonic() - began < 2.0
    received = bytearray()
    os.set_blocking(read_end, False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"dropped" not in received:
        try:
            received += os.read(read_end, 1 << 16)
        except BlockingIOError:
            time.sleep(0.01)
    sink.close()
    os.close(read_end)
    os.close(write_end)
    assert re.search(rb"\d+ line\(s\) dropped: this stream was read too slowly\n", received)
    assert received.startswith(b"line 0000 ")
