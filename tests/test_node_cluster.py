"""corral.cluster as the primary of unmodified Node.js workers (Node's own worker protocol),
and Node's IPC channel on its own (fork mode)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.cluster.ipc import ChannelClosed
from corral.cluster.node import ChannelFull, NodeChannel, channel_pair, node_env
from corral.cluster.primary import Primary, Worker

from clusterkit import PrimaryProcess, get, pid_of
from conftest import free_port, wait_for

NODE_DIR = Path(__file__).resolve().parent / "node"
APP = NODE_DIR / "app.js"
FORK_APP = NODE_DIR / "fork_app.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH")


class Events:
    """Every event of one primary, in order, and a way to wait for one."""

    def __init__(self, primary: Primary) -> None:
        self.seen: list[tuple[str, Worker, tuple[Any, ...]]] = []
        self.cond = threading.Condition()
        for name in ("fork", "online", "listening", "message", "disconnect", "exit",
                     "bind_error"):
            primary.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(worker: Worker, *args: Any) -> None:
            with self.cond:
                self.seen.append((name, worker, args))
                self.cond.notify_all()
        return record

    def wait(self, name: str, worker: Worker | None = None, match: Any = None,
             count: int = 1, timeout: float = 20) -> list[tuple[Worker, tuple[Any, ...]]]:
        """The first `count` events `name` (of `worker`, whose first argument == match)."""
        def found() -> list[tuple[Worker, tuple[Any, ...]]]:
            return [(w, a) for n, w, a in self.seen
                    if n == name and (worker is None or w is worker)
                    and (match is None or (a and a[0] == match))]

        with self.cond:
            if not self.cond.wait_for(lambda: len(found()) >= count, timeout):
                raise AssertionError(f"no {count} {name} {match!r} within {timeout}s; seen "
                                     f"{[(n, w.id, a) for n, w, a in self.seen]}")
            return found()[:count]

    def names(self, worker: Worker) -> list[str]:
        with self.cond:
            return [n for n, w, _ in self.seen if w is worker]


@pytest.fixture
def node_cluster() -> Iterator[Any]:
    """make(policy, **env) -> (primary, events); every worker is killed by pid at the end."""
    made: list[Primary] = []

    def make(policy: str, **env: str) -> tuple[Primary, Events]:
        primary = Primary(policy=policy, standalone=False)
        primary.setup_primary(exec=str(APP), env=env)
        made.append(primary)
        return primary, Events(primary)

    yield make
    for primary in made:
        workers = list(primary.workers.values())
        for worker in workers:
            if worker.pid:
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for worker in workers:
            if worker.process is not None:
                worker.process.wait(timeout=10)
        primary.close_handles()
        primary.io.stop()


def listening(events: Events, count: int) -> list[tuple[Worker, dict[str, Any]]]:
    return [(w, a[0]) for w, a in events.wait("listening", count=count)]


# ---- two workers, one port ---------------------------------------------------------

@needs_node
@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_two_node_workers_share_one_port(node_cluster: Any, policy: str) -> None:
    port = free_port()
    primary, events = node_cluster(policy, PORT=str(port))
    workers = [primary.fork(), primary.fork()]
    assert all(w.protocol == "node" for w in workers)
    assert all(primary.workers[w.id] is w for w in workers)
    infos = listening(events, 2)
    for worker, info in infos:
        assert info["address"] == "127.0.0.1" and info["port"] == port
        assert info["family"] == "IPv4" and info["policy"] == policy
        assert worker.state == "listening"
    assert [n for n in events.names(workers[0]) if n != "message"][:3] == \
        ["fork", "online", "listening"]
    pids = {w.pid for w in workers}
    answered = []
    for _ in range(6):
        status, body = get(port)
        assert status == 200 and body.startswith("hello world, start with cluster ")
        answered.append(pid_of(body))
    assert set(answered) <= pids
    if policy == "rr":
        assert set(answered) == pids
        assert all(a != b for a, b in zip(answered, answered[1:])), answered
    else:
        # one kernel queue: which worker accepts is the kernel's choice; both can
        wait_for(lambda: {pid_of(get(port)[1]) for _ in range(20)} == pids, timeout=30,
                 what="both workers accepting from the shared listener")
    assert len(primary.handles) == 1


@needs_node
def test_listen_without_a_host_is_dual_stack(node_cluster: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    port = free_port()
    primary, events = node_cluster("rr", PORT=str(port), HOST="")
    primary.fork()
    [(_, info)] = listening(events, 1)
    assert info["address"] == "::" and info["family"] == "IPv6" and info["port"] == port
    assert get(port)[0] == 200  # an IPv4 client on the dual-stack listener


# ---- a worker killed, the listener kept -------------------------------------------------

@needs_node
@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_killed_worker_leaves_the_listener_to_the_next(node_cluster: Any, policy: str) -> None:
    port = free_port()
    primary, events = node_cluster(policy, PORT=str(port))
    first = primary.fork()
    listening(events, 1)
    assert pid_of(get(port)[1]) == first.pid
    os.kill(first.pid, signal.SIGKILL)
    [(_, (code, sig))] = events.wait("exit", first)
    assert code is None and sig == "SIGKILL" and first.exited_after_disconnect is False
    assert "disconnect" in events.names(first) and first.id not in primary.workers
    # no worker now: the primary still holds the port, a client waits instead of failing
    result: list[Any] = []
    waiting = threading.Thread(target=lambda: result.append(get(port, timeout=30)))
    waiting.start()
    second = primary.fork()
    [(_, info)] = [e for e in listening(events, 2) if e[0] is second]
    assert info["port"] == port
    waiting.join(timeout=40)
    assert result and result[0][0] == 200 and pid_of(result[0][1]) == second.pid
    assert pid_of(get(port)[1]) == second.pid
    assert len(primary.handles) == 1


@needs_node
def test_rr_connections_wait_in_the_kernel_until_a_worker_takes_them(node_cluster: Any) -> None:
    """The rr primary accepts a connection only when a worker is free for it: 40 clients
    that come while no worker exists, then 40 more at once for one worker, are all served,
    each by a worker of the cluster, none refused or reset."""
    port = free_port()
    primary, events = node_cluster("rr", PORT=str(port))
    first = primary.fork()
    listening(events, 1)
    os.kill(first.pid, signal.SIGKILL)
    events.wait("exit", first)
    results: list[Any] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            answer: Any = get(port, timeout=60)
        except OSError as exc:
            answer = exc
        with lock:
            results.append(answer)

    early = [threading.Thread(target=client) for _ in range(40)]
    for thread in early:
        thread.start()
    second = primary.fork()
    wait_for(lambda: second.state == "listening", timeout=30, what="a second worker")
    late = [threading.Thread(target=client) for _ in range(40)]
    for thread in late:
        thread.start()
    for thread in early + late:
        thread.join(timeout=90)
    assert len(results) == 80, results
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), \
        [r for r in results if not (isinstance(r, tuple) and r[0] == 200)][:3]
    assert {pid_of(r[1]) for r in results} == {second.pid}
    [handle] = primary.handles.values()
    assert not handle.pending and not handle.outstanding  # nothing left behind
    wait_for(lambda: list(handle.free) == [second], timeout=10, what="the worker free again")


# ---- messages ---------------------------------------------------------------------

@needs_node
def test_user_messages_both_ways(node_cluster: Any) -> None:
    primary, events = node_cluster("rr", NO_LISTEN="1")
    worker = primary.fork()
    events.wait("message", worker, match="ready")  # process.send('ready'), PM2's wait_ready
    payload = {"text": "é ✓ \u2028", "list": [1, 2.5, None, True], "nested": {"a": [{}]}}
    worker.send({"echo": payload})
    [(_, (message, fds))] = events.wait("message", worker,
                                        match={"echoed": payload, "pid": worker.pid})
    assert fds == []
    with pytest.raises(ValueError):
        worker.send(float("nan"))  # not JSON: Node's JSON.parse would throw in the worker


@needs_node
def test_many_and_large_messages_arrive_complete_and_in_order(node_cluster: Any) -> None:
    primary, events = node_cluster("rr", NO_LISTEN="1")
    worker = primary.fork()
    events.wait("message", worker, match="ready")
    count = 5000
    big = "x" * 300_000  # several reads on either side: lines arrive in pieces
    sender = threading.Thread(target=lambda: [worker.send({"echo": [i, big if i % 1000 == 7
                                                                       else ""]})
                                              for i in range(count)])
    sender.start()
    received = events.wait("message", worker, count=count + 1, timeout=120)
    sender.join()
    echoed = [args[0]["echoed"] for _, args in received[1:]]
    assert [e[0] for e in echoed] == list(range(count))
    assert all(e[1] == (big if e[0] % 1000 == 7 else "") for e in echoed)


@needs_node
def test_unknown_internal_message_is_logged_not_fatal(node_cluster: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="corral.cluster")
    port = free_port()
    primary, events = node_cluster("rr", PORT=str(port))
    worker = primary.fork()
    listening(events, 1)
    worker.send("bogus")
    events.wait("message", worker, match="after-bogus")
    logged = caplog.text
    assert "bogus" in logged and "NODE_SOMETHING_ELSE" in logged
    worker.send({"echo": 1})
    events.wait("message", worker, match={"echoed": 1, "pid": worker.pid})
    assert pid_of(get(port)[1]) == worker.pid
    assert not worker.is_dead() and worker.is_connected()


@needs_node
def test_a_worker_that_never_reads_does_not_block_the_primary(node_cluster: Any) -> None:
    primary, events = node_cluster("rr", NO_LISTEN="1")
    stuck, other = primary.fork(), primary.fork()
    events.wait("message", stuck, match="ready")
    events.wait("message", other, match="ready")
    stuck.send("spin")
    events.wait("message", stuck, match="spinning")
    chunk = "y" * 256 * 1024
    started = time.monotonic()
    with pytest.raises(ChannelFull):
        for _ in range(1000):  # far more than the channel buffers
            stuck.send(chunk)
    assert time.monotonic() - started < 10
    other.send({"echo": "still here"})
    events.wait("message", other, match={"echoed": "still here", "pid": other.pid})


# ---- leaving -------------------------------------------------------------------------

@needs_node
@pytest.mark.parametrize("policy", ["shared", "rr"])
def test_disconnect_lets_the_worker_finish_and_exit(node_cluster: Any, policy: str) -> None:
    port = free_port()
    primary, events = node_cluster(policy, PORT=str(port))
    leaving = primary.fork()
    listening(events, 1)
    slow: list[Any] = []
    client = threading.Thread(target=lambda: slow.append(get(port, "/slow", timeout=30)))
    client.start()
    events.wait("message", leaving, match={"slow": "started", "pid": leaving.pid})
    primary.quiet(leaving)  # what corral's reload does first: for Node, rr's rotation only
    leaving.disconnect()
    after: list[Any] = []
    if policy == "rr":  # taken off the rotation at once: a new client waits for the next
        late = threading.Thread(target=lambda: after.append(get(port, timeout=30)))
        late.start()
    [(_, (code, sig))] = events.wait("exit", leaving)
    assert code == 0 and sig is None and leaving.exited_after_disconnect is True
    names = events.names(leaving)
    assert names.index("disconnect") < names.index("exit")
    client.join(timeout=30)
    assert slow == [(200, f"slow answer from {leaving.pid}\n")]
    successor = primary.fork()
    [(_, info)] = [e for e in listening(events, 2) if e[0] is successor]
    assert info["port"] == port
    if policy == "rr":
        late.join(timeout=30)
        assert after and pid_of(after[0][1]) == successor.pid
    assert pid_of(get(port)[1]) == successor.pid


@needs_node
def test_worker_initiated_disconnect_is_voluntary(node_cluster: Any) -> None:
    port = free_port()
    primary, events = node_cluster("shared", PORT=str(port))
    worker = primary.fork()
    listening(events, 1)
    worker.send("leave")  # cluster.worker.disconnect() inside the worker
    [(_, (code, _sig))] = events.wait("exit", worker)
    assert code == 0 and worker.exited_after_disconnect is True


@needs_node
def test_a_worker_that_never_listens(node_cluster: Any) -> None:
    port = free_port()
    primary, events = node_cluster("rr", PORT=str(port))
    server = primary.fork()
    idle = primary.fork(env={"NO_LISTEN": "1"})
    listening(events, 1)
    events.wait("message", idle, match="ready")
    assert idle.state == "online" and server.state == "listening"
    for _ in range(6):
        assert pid_of(get(port)[1]) == server.pid
    [handle] = primary.handles.values()
    assert set(handle.workers) == {server.id}
    idle.disconnect()
    [(_, (code, _sig))] = events.wait("exit", idle)
    assert code == 0 and idle.exited_after_disconnect is True
    assert "listening" not in events.names(idle)


@needs_node
def test_bind_conflict_reaches_the_node_app_as_eaddrinuse(node_cluster: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        primary, events = node_cluster("shared", PORT=str(port))
        worker = primary.fork()
        events.wait("bind_error", worker)
        [(_, (message, _fds))] = events.wait("message", worker)
        assert message["error"] == "EADDRINUSE", message
        assert not primary.handles


# ---- attach: a worker spawned by someone else (the corral daemon) ------------------------

@needs_node
def test_attach_a_node_worker_spawned_elsewhere(node_cluster: Any) -> None:
    port = free_port()
    primary, events = node_cluster("rr", PORT=str(port))
    worker_id = primary.next_worker_id()
    parent, child = channel_pair()
    env = {**os.environ, "PORT": str(port), **node_env(child.fileno(), worker_id)}
    try:
        process = subprocess.Popen([NODE or "node", str(APP)], env=env,
                                   pass_fds=[child.fileno()], start_new_session=True)
    finally:
        child.close()
    worker = primary.attach(worker_id, parent, process, protocol="node")
    try:
        listening(events, 1)
        assert pid_of(get(port)[1]) == process.pid
        worker.kill(signal.SIGTERM)
        primary.worker_exited(worker, process.wait(timeout=10))
        [(_, (code, sig))] = events.wait("exit", worker)
        assert sig == "SIGTERM" and worker.exited_after_disconnect is False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---- corral.cluster from a Python script, Node's classic example ----------------------------

class NodePrimaryProcess(PrimaryProcess):
    """tests/node/node_primary.py in a subprocess (the same event stream as clusterkit's)."""

    def __init__(self, policy: str, count: int, target: Path, env: dict[str, str]) -> None:
        import queue

        full_env = dict(os.environ, **env)
        full_env["PYTHONPATH"] = os.pathsep.join([str(NODE_DIR.parent.parent / "src"),
                                                 full_env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE_DIR / "node_primary.py"), policy, str(count),
             str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=full_env)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.worker_pids: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()


@needs_node
def test_python_script_is_the_primary_of_node_workers() -> None:
    port = free_port()
    primary = NodePrimaryProcess("rr", 2, APP, {"PORT": str(port)})
    try:
        infos = [primary.wait_event("listening") for _ in range(2)]
        pids = {e["pid"] for e in infos}
        assert {pid_of(get(port)[1]) for _ in range(4)} == pids
        first = infos[0]["id"]
        primary.command(f'send {first} {{"echo": "hi"}}')
        message = primary.wait_event("message", message={"echoed": "hi",
                                                         "pid": infos[0]["pid"]})
        assert message["id"] == first
        primary.command("quit")
        exits = [primary.wait_event("exit") for _ in range(2)]
        assert all(e["code"] == 0 and e["voluntary"] is True for e in exits)
        primary.wait_event("quit")
        assert primary.proc.wait(timeout=15) == 0
    finally:
        primary.stop()


# ---- fork mode: Node's IPC channel without the cluster -----------------------------------

@pytest.fixture
def fork_child() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> tuple[NodeChannel, subprocess.Popen[bytes]]:
        parent, child = channel_pair()
        env = {**os.environ, **node_env(child.fileno())}
        try:
            process = subprocess.Popen([NODE or "node", str(FORK_APP)], env=env,
                                       pass_fds=[child.fileno()])
        finally:
            child.close()
        started.append(process)
        return NodeChannel(parent), process

    yield spawn
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@needs_node
def test_fork_mode_channel(fork_child: Any) -> None:
    channel, process = fork_child()
    assert channel.recv(timeout=20) == ("ready", [])
    channel.send({"a": [1, "b"]})
    assert channel.recv(timeout=20) == ({"got": {"a": [1, "b"]}}, [])
    mine, theirs = socket.socketpair()
    with mine:
        channel.send("take", fd=theirs.fileno())
        theirs.close()  # the channel sent its own duplicate
        assert channel.recv(timeout=20) == ({"gotHandle": "take"}, [])
        mine.settimeout(20)
        assert mine.recv(100) == f"written by node {process.pid}\n".encode()
    channel.send("bye")  # the child disconnects: the end of the stream
    with pytest.raises(ChannelClosed):
        channel.recv(timeout=20)
    assert process.wait(timeout=20) == 3
    channel.close()


@needs_node
def test_fork_mode_channel_in_an_asyncio_loop(fork_child: Any) -> None:
    channel, process = fork_child()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        channel.attach_to_loop(loop, lambda message, fds: inbox.put_nowait(message),
                               lambda: inbox.put_nowait("<closed>"))
        got = [await asyncio.wait_for(inbox.get(), 20)]
        for i in range(200):  # from another thread too: send() is thread-safe
            await asyncio.to_thread(channel.send, i) if i % 50 == 0 else channel.send(i)
        for _ in range(200):
            got.append(await asyncio.wait_for(inbox.get(), 20))
        channel.send("bye")
        got.append(await asyncio.wait_for(inbox.get(), 20))
        return got

    got = asyncio.run(main())
    assert got[0] == "ready"
    assert got[1:201] == [{"got": i} for i in range(200)]
    assert got[-1] == "<closed>" and channel.closed
    assert process.wait(timeout=20) == 3


# ---- the channel's own rules, against a peer written here ---------------------------------

def _peer_lines(sock: socket.socket, count: int) -> tuple[list[Any], list[int]]:
    """Read `count` lines (and their fds) from the raw peer end."""
    sock.settimeout(10)
    data, fds = b"", []
    while data.count(b"\n") < count:
        chunk, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        if not chunk:
            break
        data += chunk
        for _, _, payload in ancdata:
            fds.extend(int.from_bytes(payload[i:i + 4], sys.byteorder)
                       for i in range(0, len(payload) - len(payload) % 4, 4))
    return [json.loads(line) for line in data.splitlines()], fds


def test_handles_in_pieces_are_acknowledged() -> None:
    ours, peer = channel_pair()
    channel = NodeChannel(ours)
    r, w = os.pipe()
    try:
        line = json.dumps({"cmd": "NODE_HANDLE", "type": "net.Native",
                           "msg": {"a": 1}}).encode() + b"\n"
        user = b'"before"\n'
        peer.sendmsg([user + line[:10]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           r.to_bytes(4, sys.byteorder))])
        assert channel.recv(block=False) == ("before", [])
        assert channel.recv(block=False) is None  # half a message: nothing yet
        peer.sendall(line[10:] + b'{"cmd":"NODE_HANDLE","type":"net.Native","msg":2}\n')
        message, fds = channel.recv(timeout=5)
        assert message == {"a": 1} and len(fds) == 1
        os.write(w, b"!")
        assert os.read(fds[0], 1) == b"!"  # the very pipe
        os.close(fds[0])
        with pytest.raises(TimeoutError):
            channel.recv(timeout=0.2)  # the second NODE_HANDLE came without its fd
        lines, _ = _peer_lines(peer, 2)
        assert lines == [{"cmd": "NODE_HANDLE_ACK"}, {"cmd": "NODE_HANDLE_NACK"}]
    finally:
        channel.close()
        peer.close()
        os.close(r)
        os.close(w)


def test_nothing_passes_an_unacknowledged_handle() -> None:
    ours, peer = channel_pair()
    channel = NodeChannel(ours)
    r, w = os.pipe()
    try:
        channel.send({"first": True}, fd=r)
        os.close(r)  # the channel keeps its own copy until the peer acknowledges
        channel.send("second")
        lines, fds = _peer_lines(peer, 1)
        assert lines == [{"cmd": "NODE_HANDLE", "type": "net.Native", "msg": {"first": True}}]
        assert len(fds) == 1
        os.close(fds[0])
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(100)  # "second" waits
        peer.sendall(b'{"cmd":"NODE_HANDLE_NACK"}\n')  # "did not get it": sent again
        with pytest.raises(TimeoutError):
            channel.recv(timeout=0.2)
        lines, fds = _peer_lines(peer, 1)
        assert lines[0]["msg"] == {"first": True} and len(fds) == 1
        os.close(fds[0])
        peer.sendall(b'{"cmd":"NODE_HANDLE_ACK"}\n')
        with pytest.raises(TimeoutError):
            channel.recv(timeout=0.2)
        assert _peer_lines(peer, 1)[0] == ["second"]
    finally:
        channel.close()
        peer.close()
        os.close(w)


def test_a_peer_that_never_reads_fills_a_bounded_buffer() -> None:
    ours, peer = channel_pair()
    channel = NodeChannel(ours, max_buffer=1024 * 1024)
    try:
        started = time.monotonic()
        sent = 0
        with pytest.raises(ChannelFull):
            while True:
                channel.send("z" * 10_000)
                sent += 1
        assert time.monotonic() - started < 5
        assert channel.buffered() <= 1024 * 1024 and sent > 100
        assert channel.wants_write
        peer.setblocking(False)
        drained = 0
        deadline = time.monotonic() + 10
        while drained < sent and time.monotonic() < deadline:
            try:
                drained += peer.recv(1 << 20).count(b"\n")
            except BlockingIOError:
                channel.flush()
        assert drained == sent and not channel.wants_write
    finally:
        channel.close()
        peer.close()


def test_a_handle_sent_at_once_is_not_copied_and_stays_the_senders() -> None:
    """send_handle_now (the rr path): the fd goes with the line, no copy is kept, the
    caller's fd is never closed by the channel; a second one waits for the peer's ACK."""
    ours, peer = channel_pair()
    channel = NodeChannel(ours)
    r, w = os.pipe()
    try:
        line = b'{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"n":1}}\n'
        before = set(os.listdir("/proc/self/fd"))
        assert channel.send_handle_now(line, r)
        assert set(os.listdir("/proc/self/fd")) == before  # no copy made
        assert not channel.send_handle_now(line, r)  # one handle in flight at most
        lines, fds = _peer_lines(peer, 1)
        assert lines == [{"cmd": "NODE_HANDLE", "type": "net.Native", "msg": {"n": 1}}]
        os.write(w, b"!")
        assert os.read(fds[0], 1) == b"!"
        os.close(fds[0])
        peer.sendall(b'{"cmd":"NODE_HANDLE_ACK"}\n')
        with pytest.raises(TimeoutError):
            channel.recv(timeout=0.2)  # the ACK is the channel's business
        os.fstat(r)  # still open: the sender closes it, not the channel
        assert channel.send_handle_now(line, r)  # the next one may go now
        assert len(_peer_lines(peer, 1)[1]) == 1
    finally:
        channel.close()
        peer.close()
        os.close(w)
    os.fstat(r)  # closing the channel does not close the sender's fd either
    os.close(r)


@pytest.mark.parametrize("line", [
    b'{"cmd":"NODE_CLUSTER","ack":7,"accepted":true,"seq":3}',  # as Node writes it
    b'{"seq":3,"accepted":true,"ack":7,"cmd":"NODE_CLUSTER"}',  # any other JSON shape
    b'{"cmd": "NODE_CLUSTER", "ack": 7, "accepted": true, "seq": 3}',
])
def test_a_connection_acknowledgement_reads_the_same_in_any_shape(line: bytes) -> None:
    ours, peer = channel_pair()
    channel = NodeChannel(ours)
    try:
        peer.sendall(line + b"\n" + line.replace(b"true", b"false") + b"\n")
        assert channel.recv(timeout=5) == (
            {"cmd": "NODE_CLUSTER", "ack": 7, "accepted": True, "seq": 3}, [])
        assert channel.recv(timeout=5) == (
            {"cmd": "NODE_CLUSTER", "ack": 7, "accepted": False, "seq": 3}, [])
    finally:
        channel.close()
        peer.close()
