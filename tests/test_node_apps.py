"""Node apps under the corral daemon (issue 11): the lesson's app.js and pm2.config.js in
cluster mode with the daemon as Node's cluster primary, Node's IPC channel (wait_ready,
messages) in fork and cluster mode, NODE_APP_INSTANCE, reloads, kills and scaling."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clusterkit import Wrk, get, needs_wrk, pid_of
from conftest import ROOT, Corral, free_port, wait_for

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH (.ci/run installs it)")

LESSON = ROOT / "examples" / "node"


def lesson(corral: Corral, port: int) -> dict[str, str]:
    """The lesson's files in this test's folder, and an environment whose HOME is the test's
    (the file logs to ~/data) and whose PORT is free."""
    for name in ("app.js", "pm2.config.js"):
        shutil.copy(LESSON / name, corral.tmp / name)
    home = corral.tmp / "user"
    home.mkdir()
    return dict(corral.env, HOME=str(home), PORT=str(port))


def node_rows(corral: Corral, name: str) -> list[dict[str, Any]]:
    return [r for r in corral.jlist() if r["name"] == name]


def test_lesson_config_runs_as_written_in_cluster_mode(corral: Corral) -> None:
    port = free_port()
    env = lesson(corral, port)
    started = corral.run("start", "pm2.config.js", "--env", "production", env=env)
    rows = node_rows(corral, "nodejs-column")
    assert [r["pm2_env"]["exec_mode"] for r in rows] == ["cluster_mode"] * 2, started.stdout
    assert all(r["pm2_env"]["status"] == "online" for r in rows)
    pids = [r["pid"] for r in rows]
    # both workers answer on the one port, in turn (Node's round robin)
    answers = [pid_of(get(port)[1]) for _ in range(6)]
    assert set(answers) == set(pids), answers
    assert all(a != b for a, b in zip(answers, answers[1:])), answers
    time.sleep(3)  # stability over a span of time: no worker restarts meanwhile
    rows = node_rows(corral, "nodejs-column")
    assert [r["pm2_env"]["restart_time"] for r in rows] == [0, 0]
    assert [r["pid"] for r in rows] == pids
    # the configured files, with PM2's -<id> suffix, stamped with log_date_format
    data = Path(env["HOME"]) / "data"
    for index in (0, 1):
        text = wait_for(lambda index=index: (data / f"info-{index}.log").read_text()
                        if (data / f"info-{index}.log").exists() else "", what="out file")
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d: worker \d+ "
                        rf"\(instance {index}\) serves http://127.0.0.1:{port} in production",
                        text), text
        assert (data / f"err-{index}.log").exists()
    described = corral.run("describe", "0").stdout
    assert f"127.0.0.1:{port} (rr)" in described


def test_round_robin_six_requests_alternate(corral: Corral) -> None:
    port = free_port()
    env = lesson(corral, port)
    corral.run("start", "app.js", "-i", "2", "--name", "web", env=env)
    pids = {r["pid"] for r in node_rows(corral, "web")}
    answers = [pid_of(get(port)[1]) for _ in range(6)]
    assert set(answers) == pids and answers[0::2] == [answers[0]] * 3 \
        and answers[1::2] == [answers[1]] * 3, answers


READY_APP = """
const fs = require('fs');
const http = require('http');
const mode = process.argv[2];
setTimeout(() => {
  if (mode !== 'never') {
    fs.writeFileSync(process.env.MARK + '.' + process.env.NODE_APP_INSTANCE, 'sent');
    process.send('ready');
  }
}, 1200);
if (mode === 'server') {
  http.createServer((q, s) => s.end('ok ' + process.pid)).listen(Number(process.env.PORT),
                                                                  '127.0.0.1');
} else {
  setInterval(() => {}, 1000);
}
"""


@pytest.mark.parametrize("mode", ["fork", "cluster"])
def test_process_send_ready_completes_wait_ready(corral: Corral, mode: str) -> None:
    app = corral.script("ready.js", READY_APP)
    mark = corral.tmp / "mark"
    env = dict(corral.env, MARK=str(mark), PORT=str(free_port()))
    args = ["start", str(app), "--name", "r", "--wait-ready", "--listen-timeout", "8000"]
    if mode == "cluster":
        args += ["-i", "2", "--", "server"]
    else:
        args += ["--", "plain"]
    corral.run(*args, env=env)
    # start returned: each instance is online, and only because it sent 'ready'
    rows = node_rows(corral, "r")
    assert rows and all(r["pm2_env"]["status"] == "online" for r in rows)
    for index in range(len(rows)):  # a fresh home: instance i is pm_id i
        assert Path(f"{mark}.{index}").exists(), rows
    assert [r["pm2_env"]["exec_mode"] for r in rows] == [f"{mode}_mode"] * len(rows)


def test_an_app_that_never_sends_ready_is_online_after_listen_timeout(corral: Corral) -> None:
    app = corral.script("never.js", READY_APP)
    began = time.monotonic()
    corral.run("start", str(app), "--name", "n", "--wait-ready", "--listen-timeout", "1500",
               "--", "never")
    assert time.monotonic() - began >= 1.4  # it waited listen_timeout, as PM2 does
    rows = node_rows(corral, "n")
    assert [r["pm2_env"]["status"] for r in rows] == ["online"]


MESSAGES_APP = """
process.on('message', (m) => { if (m === 'shutdown') { console.log('got shutdown');
  process.exit(0); } });
process.send({ hello: 'daemon', pid: process.pid });
setInterval(() => {}, 1000);
"""


def test_messages_are_logged_and_shutdown_with_message(corral: Corral) -> None:
    app = corral.script("msg.js", MESSAGES_APP)
    corral.run("start", str(app), "--name", "m", "--shutdown-with-message")
    pid = node_rows(corral, "m")[0]["pid"]
    log = corral.home / "corral.log"
    wait_for(lambda: f'sent a message: {{"hello":"daemon","pid":{pid}}}' in log.read_text(),
             what="the app's message in corral.log")
    began = time.monotonic()
    corral.run("stop", "m")
    assert time.monotonic() - began < 1.5  # it left on the message, not at kill_timeout
    out = corral.home / "logs" / "m-out-0.log"
    assert "got shutdown" in out.read_text()


def test_node_app_instance_and_instance_var(corral: Corral) -> None:
    app = corral.script("env.js", """
const fs = require('fs');
fs.writeFileSync(process.env.OUT + '.' + process.env.NODE_APP_INSTANCE,
                 JSON.stringify({ ...process.env, connected: process.connected }));
setInterval(() => {}, 1000);
""")
    out = corral.tmp / "env"
    corral.run("start", str(app), "-i", "2", "--exec-mode", "fork", "--name", "e",
               env=dict(corral.env, OUT=str(out), BASE_PORT="8000"))
    seen = [json.loads(wait_for(lambda i=i: Path(f"{out}.{i}").exists()
                                and Path(f"{out}.{i}").read_text(), what="env file"))
            for i in (0, 1)]
    assert [s["NODE_APP_INSTANCE"] for s in seen] == ["0", "1"]
    assert [s["CORRAL_INSTANCE"] for s in seen] == ["0", "1"]
    assert not any("NODE_UNIQUE_ID" in s for s in seen)  # fork mode: a channel, no cluster
    assert all(s["connected"] is True for s in seen)  # Node's IPC channel is there


@needs_wrk
def test_two_reloads_under_load_fail_no_request(corral: Corral) -> None:
    port = free_port()
    env = lesson(corral, port)
    corral.run("start", "pm2.config.js", "--env", "production", env=env)
    before = {r["pid"] for r in node_rows(corral, "nodejs-column")}
    load = Wrk(port, 8, close=True)
    time.sleep(1.5)  # let the bounded load run a while before acting
    corral.run("reload", "nodejs-column")
    corral.run("reload", "nodejs-column")
    result = load.result()
    after = node_rows(corral, "nodejs-column")
    assert result["errors"] == 0 and result["non2xx"] == 0, result
    assert result["requests"] > 1000
    assert before.isdisjoint({r["pid"] for r in after})
    assert [r["pm2_env"]["restart_time"] for r in after] == [2, 2]


def test_sigkill_of_a_worker_keeps_the_port_answering_and_scale(corral: Corral) -> None:
    port = free_port()
    env = lesson(corral, port)
    corral.run("start", "app.js", "-i", "2", "--name", "web", env=env)
    rows = node_rows(corral, "web")
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def poll() -> None:  # a request every few ms while the worker dies and comes back
        while not stop.is_set():
            try:
                status, _ = get(port, timeout=5)
                answered[0] += 1
                if status != 200:
                    failures.append(str(status))
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        os.kill(rows[0]["pid"], signal.SIGKILL)
        wait_for(lambda: any(r["pm_id"] == rows[0]["pm_id"] and r["pid"] != rows[0]["pid"]
                             and r["pm2_env"]["status"] == "online"
                             for r in node_rows(corral, "web")), what="the replacement")
        wait_for(lambda: answered[0] > 50, what="requests after the kill")
    finally:
        stop.set()
        poller.join()
    # the port never stopped answering: nothing refused; at most the one request the
    # poller had in flight on the killed worker is lost with it
    assert not any("Refused" in f for f in failures), failures[:5]
    assert len(failures) <= 1, failures[:5]
    corral.run("scale", "web", "4")
    four = {r["pid"] for r in node_rows(corral, "web")}
    assert len(four) == 4
    wait_for(lambda: {pid_of(get(port)[1]) for _ in range(12)} == four, what="4 answering")
    corral.run("scale", "web", "1")
    one = node_rows(corral, "web")
    assert len(one) == 1
    assert {pid_of(get(port)[1]) for _ in range(4)} == {one[0]["pid"]}


def test_node_missing_is_a_clear_error(corral: Corral) -> None:
    app = corral.script("a.js", "setInterval(() => {}, 1000);\n")
    empty = corral.tmp / "empty-bin"
    empty.mkdir()
    env = dict(corral.env, PATH=str(empty))  # no node on this PATH
    done = corral.run("start", str(app), check=False, env=env)
    assert done.returncode != 0
    assert "node" in done.stderr and "--interpreter" in done.stderr, done.stderr


def test_a_node_worker_that_never_listens_gets_the_warning(corral: Corral) -> None:
    app = corral.script("quiet.js", "setInterval(() => {}, 1000);\n")
    done = corral.run("start", str(app), "-i", "2", "--listen-timeout", "1000")
    assert "no worker listened on a port within listen_timeout" in done.stderr
    assert "--exec-mode fork" in done.stderr


def test_a_node_with_another_cluster_protocol_is_refused(corral: Corral) -> None:
    old = corral.tmp / "old-bin" / "node"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho v10.24.1\n")
    old.chmod(0o755)
    app = corral.script("a.js", "setInterval(() => {}, 1000);\n")
    done = corral.run("start", str(app), "-i", "2", "--interpreter", str(old), check=False)
    assert done.returncode == 1
    assert "v10.24.1" in done.stderr and "Node 12 and newer" in done.stderr, done.stderr
    assert corral.jlist() == []


@needs_wrk
def test_reload_of_a_graceful_node_app_under_keepalive_load(corral: Corral) -> None:
    """With shutdown_with_message, corral sends 'shutdown' instead of Node's disconnect:
    examples/node/graceful.js then answers Connection: close and leaves when its connections
    are gone. (The unmodified lesson app fails about one in-flight request per keep-alive
    connection of the replaced worker, as under PM2: Node's server.close() drops them;
    bench/node_cluster.py measures both.)"""
    port = free_port()
    shutil.copy(LESSON / "graceful.js", corral.tmp / "graceful.js")
    corral.run("start", "graceful.js", "-i", "2", "--name", "g", "--shutdown-with-message",
               env=dict(corral.env, PORT=str(port)))
    load = Wrk(port, 10, close=False)
    time.sleep(2)  # let the bounded load run a while before acting
    corral.run("reload", "g")
    corral.run("reload", "g")
    result = load.result()
    assert result["non2xx"] == 0
    assert result["errors"] <= 4, result  # 64 connections; ~170 without the graceful stop
    assert [r["pm2_env"]["restart_time"] for r in node_rows(corral, "g")] == [2, 2]


BIG_APP = """
const http = require('http');
const big = Buffer.alloc(64 * 1024 * 1024, 'x');
http.createServer((req, res) => {
  if (req.url === '/big') { res.end(big); return; }
  res.end('ok ' + process.pid);
}).listen(Number(process.env.PORT), '127.0.0.1');
"""


def test_a_client_that_does_not_read_never_blocks_a_worker(corral: Corral) -> None:
    """rr hands a Node worker its connection non-blocking, as Node's own primary does (the
    worker never sets it): a client that asks for 64 MB and reads nothing must not stop
    the worker from answering the next one."""
    import socket

    port = free_port()
    app = corral.script("big.js", BIG_APP)
    corral.run("start", str(app), "-i", "1", "--name", "big",
               env=dict(corral.env, PORT=str(port)))
    [row] = node_rows(corral, "big")
    wait_for(lambda: get(port)[0] == 200, timeout=20, what="the worker answering")
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(100).startswith(b"HTTP/1.1 200")  # the worker is writing it
        status, body = get(port, timeout=10)  # before the fix: timed out, worker stuck
        assert status == 200 and pid_of(body) == row["pid"]
    finally:
        stalled.close()
