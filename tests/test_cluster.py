"""corral.cluster with real servers, real sockets and real processes."""

from __future__ import annotations

import collections
import http.client
import os
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clusterkit import SERVERS, PrimaryProcess, get, pid_of
from conftest import alive, free_port, wait_for

SERVER_MATRIX = {
    "http.server": (SERVERS / "threaded_http.py", {}),
    "socketserver": (SERVERS / "plain_socketserver.py", {}),
    "asyncio": (SERVERS / "plain_asyncio.py", {}),
    "aiohttp": (SERVERS / "aiohttp_app.py", {}),
    "flask": (SERVERS / "flask_app.py", {}),
    "uvicorn-asyncio": (SERVERS / "uvicorn_app.py", {"LOOP": "asyncio"}),
    "uvicorn-uvloop": (SERVERS / "uvicorn_app.py", {"LOOP": "uvloop"}),
    "django": (SERVERS / "django_app.py", {}),
}


@pytest.fixture
def primaries() -> Any:
    started: list[PrimaryProcess] = []

    def start(policy: str, count: int, target: Path, *args: str, **env: str) -> PrimaryProcess:
        primary = PrimaryProcess(policy, count, target, *args, env=env)
        started.append(primary)
        return primary

    yield start
    for primary in started:
        primary.stop()


@pytest.mark.parametrize("policy", ["shared", "rr", "reuseport"])
@pytest.mark.parametrize("server", list(SERVER_MATRIX))
def test_server_matrix(primaries: Any, server: str, policy: str) -> None:
    script, extra_env = SERVER_MATRIX[server]
    port = free_port()
    primary = primaries(policy, 2, script, PORT=str(port), **extra_env)
    if server == "uvicorn-uvloop" and policy == "rr":
        exits = [primary.wait_event("exit") for _ in range(2)]
        assert all(e["code"] not in (0, None) for e in exits)
        message = "".join(primary.stderr).lower()  # uvicorn lowercases the error it logs
        assert "uvloop accepts in c" in message and "policy=shared" in message
        return
    listening = [primary.wait_event("listening") for _ in range(2)]
    for event in listening:
        assert event["address"]["address"] == "127.0.0.1"
        assert event["address"]["port"] == port
        assert event["address"]["family"] == "IPv4"
        assert event["address"]["policy"] == policy
    worker_pids = {e["pid"] for e in listening}
    split: collections.Counter[int] = collections.Counter()
    for _ in range(40):
        status, body = get(port)
        assert status == 200 and "hello world, start with cluster" in body
        split[pid_of(body)] += 1
    assert set(split) <= worker_pids and sum(split.values()) == 40
    print(f"{server} {policy}: split {sorted(split.values(), reverse=True)}")
    if policy == "rr":
        if min(split.values(), default=0) < 10 or len(split) < 2:
            primary.command("state")
            print("STATE", primary.wait_event("state"), listening)
        assert len(split) == 2 and min(split.values()) >= 10, f"uneven round robin {split}"


@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_queued_connections_survive_a_killed_worker(primaries: Any, policy: str) -> None:
    """One busy worker, ten requests queued behind it, then SIGKILL: only the request it
    was handling fails; the queued ones are answered by the next worker."""
    port = free_port()
    primary = primaries(policy, 1, SERVERS / "plain_socketserver.py", PORT=str(port),
                        SLOW_MS="400")
    first = primary.wait_event("listening")
    results: list[Any] = [None] * 10

    def client(i: int) -> None:
        try:
            results[i] = get(port, timeout=30)
        except OSError as exc:
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # keep the order: the first one is being handled
    os.kill(first["pid"], signal.SIGKILL)
    primary.wait_event("exit", pid=first["pid"])
    primary.command("fork")
    for thread in threads:
        thread.join(timeout=60)
    failures = [r for r in results if isinstance(r, Exception)]
    answered = [r for r in results if isinstance(r, tuple)]
    assert len(failures) <= 1, failures
    assert len(answered) >= 9
    assert all(status == 200 for status, _ in answered)
    assert {pid_of(body) for _, body in answered} != {first["pid"]}


@pytest.mark.parametrize("server", ["blocking_accept.py", "threaded_http.py"])
def test_quieted_worker_takes_no_more_connections(primaries: Any, server: str) -> None:
    """A worker about to stop is quieted first; from then on it must accept nothing, even
    when its thread was already waiting inside accept() on the shared listener."""
    port = free_port()
    primary = primaries("shared", 2, SERVERS / server, PORT=str(port))
    first = primary.wait_event("listening")
    second = primary.wait_event("listening")
    wait_for(lambda: {pid_of(get(port)[1]) for _ in range(10)} == {first["pid"], second["pid"]},
             what="both workers answering (both back in accept)")
    primary.command(f"quiet {first['id']}")
    primary.wait_event("quieted")
    answered_by = [pid_of(get(port, timeout=10)[1]) for _ in range(30)]
    assert set(answered_by) == {second["pid"]}, answered_by
    assert alive(first["pid"])  # quiet, not gone


def test_worker_whose_primary_dies_exits(primaries: Any) -> None:
    port = free_port()
    primary = primaries("shared", 2, SERVERS / "plain_asyncio.py", PORT=str(port))
    pids = [primary.wait_event("listening")["pid"] for _ in range(2)]
    primary.proc.send_signal(signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="orphans to exit")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_primary_that_exits_stops_its_workers(primaries: Any, sig: int) -> None:
    port = free_port()
    primary = primaries("rr", 2, SERVERS / "threaded_http.py", PORT=str(port))
    pids = [primary.wait_event("listening")["pid"] for _ in range(2)]
    primary.proc.send_signal(sig)
    primary.proc.wait(timeout=15)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="workers to exit")


def test_disconnect_and_quit(primaries: Any) -> None:
    port = free_port()
    primary = primaries("rr", 2, SERVERS / "plain_asyncio.py", PORT=str(port))
    listening = [primary.wait_event("listening") for _ in range(2)]
    primary.command(f"disconnect {listening[0]['id']}")
    gone = primary.wait_event("exit", id=listening[0]["id"])
    assert gone["voluntary"] is True
    for _ in range(6):  # the other worker serves everything
        assert pid_of(get(port)[1]) == listening[1]["pid"]
    primary.command("quit")
    primary.wait_event("quit")
    assert primary.proc.wait(timeout=15) == 0


def test_bind_conflict_is_eaddrinuse(primaries: Any, tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    script = tmp_path / "binder.py"
    script.write_text(
        "import errno, os, socket, sys\n"
        "s = socket.socket()\n"
        "try:\n"
        f"    s.bind(('127.0.0.1', {port}))\n"
        "except OSError as e:\n"
        "    print('bind failed', errno.errorcode[e.errno], file=sys.stderr)\n"
        "    raise SystemExit(7)\n")
    try:
        primary = primaries("shared", 1, script)
        event = primary.wait_event("exit")
        assert event["code"] == 7
        assert "bind failed EADDRINUSE" in "".join(primary.stderr)
    finally:
        holder.close()


def test_port_zero_is_shared_and_ipv6_and_unix(primaries: Any, tmp_path: Path) -> None:
    script = tmp_path / "multi.py"
    sock_path = tmp_path / "app.sock"
    script.write_text(f"""
import asyncio, os
async def handle(r, w):
    await r.readuntil(b"\\r\\n\\r\\n")
    body = str(os.getpid()).encode()
    w.write(b"HTTP/1.1 200 OK\\r\\nConnection: close\\r\\nContent-Length: " +
            str(len(body)).encode() + b"\\r\\n\\r\\n" + body)
    await w.drain(); w.close()
async def main():
    a = await asyncio.start_server(handle, "127.0.0.1", 0)
    b = await asyncio.start_unix_server(handle, {str(sock_path)!r})
    c = await asyncio.start_server(handle, "::1", 0) if os.environ.get("V6") else None
    await asyncio.sleep(3600)
asyncio.run(main())
""")
    v6 = socket.has_ipv6
    if v6:
        try:
            socket.socket(socket.AF_INET6).bind(("::1", 0))
        except OSError:
            v6 = False
    primary = primaries("shared", 2, script, **({"V6": "1"} if v6 else {}))
    events = [primary.wait_event("listening") for _ in range(4 + 2 * v6)]
    tcp = [e["address"]["port"] for e in events if e["address"]["family"] == "IPv4"]
    assert len(tcp) == 2 and tcp[0] == tcp[1] != 0  # port 0: one port for all, as in Node
    unix = [e for e in events if e["address"]["family"] == "unix"]
    assert len(unix) == 2 and all(e["address"]["address"] == str(sock_path) for e in unix)
    pids = set()
    for _ in range(6):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock_path))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        pids.add(int(data.split(b"\r\n\r\n")[1]))
    assert pids <= {e["pid"] for e in events}
    assert get(tcp[0])[0] == 200
    if v6:
        port6 = [e["address"]["port"] for e in events if e["address"]["family"] == "IPv6"]
        assert len(set(port6)) == 1
        assert get(port6[0], host="::1")[0] == 200


def test_unknown_policy_lists_valid_ones() -> None:
    from corral.cluster.primary import ClusterError, Primary

    with pytest.raises(ClusterError, match="valid policies: rr, shared, reuseport"):
        Primary(policy="fastest")
    import subprocess

    # importing works in any environment; the bogus policy is refused on first use
    proc = subprocess.run([sys.executable, "-c", "from corral import cluster\n"
                           "cluster.scheduling_policy"], capture_output=True,
                          text=True, env=dict(os.environ, CORRAL_CLUSTER_SCHED_POLICY="nope"))
    assert proc.returncode != 0 and "valid policies: rr, shared, reuseport" in proc.stderr


@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_handed_socket_behaves_like_the_original(primaries: Any, policy: str) -> None:
    """Family and TCP_NODELAY of accepted connections as in a plain process, and keep-alive
    latency with no 40 ms Nagle/delayed-ACK stall (uvicorn --workers has one)."""
    port = free_port()
    primary = primaries(policy, 1, SERVERS / "plain_asyncio.py", PORT=str(port))
    primary.wait_event("listening")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/info")
    import json

    info = json.loads(conn.getresponse().read())
    assert info["family"] == socket.AF_INET and info["nodelay"] != 0
    latencies = []
    for _ in range(200):
        started = time.perf_counter()
        conn.request("GET", "/")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - started)
    conn.close()
    # a stall shows as ~40 ms per request; a working hand-off is well under a millisecond
    assert statistics.median(latencies) < 0.02, statistics.median(latencies)


def test_uvicorn_keepalive_has_no_nagle_stall(primaries: Any) -> None:
    port = free_port()
    primary = primaries("shared", 2, SERVERS / "uvicorn_app.py", PORT=str(port))
    primary.wait_event("listening")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    for _ in range(100):
        started = time.perf_counter()
        conn.request("GET", "/")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - started)
    conn.close()
    assert statistics.median(latencies) < 0.02, statistics.median(latencies)


def test_the_io_threads_poller_behaves_like_selectors() -> None:
    """cluster.iothread.Poller (epoll without the selectors module): registered data back
    for each ready fd, modify, unregister of a socket closed first, errors as selectors."""
    import selectors

    from corral.cluster.iothread import Poller

    poller = Poller()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        poller.register(a, selectors.EVENT_READ, "a")
        poller.register(c, selectors.EVENT_READ, "c")
        with pytest.raises(KeyError):
            poller.register(a, selectors.EVENT_READ, "again")
        assert poller.select(0) == []
        b.send(b"x")
        assert poller.select(1) == ["a"]
        poller.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE, "a2")
        assert poller.select(1) == ["a2"]
        poller.modify(c, selectors.EVENT_WRITE, "c-out")
        assert sorted(poller.select(1)) == ["a2", "c-out"]
        c.close()  # closed before it is unregistered: found by the object, as selectors does
        poller.unregister(c)
        with pytest.raises(KeyError):
            poller.unregister(d)
        assert poller.select(0.1) == ["a2"]
        poller.unregister(a)
        assert poller.select(0.1) == []
    finally:
        poller.close()
        for sock in (a, b, c, d):
            sock.close()
