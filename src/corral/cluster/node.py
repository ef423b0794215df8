"""Node's own IPC channel and cluster worker protocol, spoken by a Python primary.

A Node process started with `NODE_CHANNEL_FD=<fd>` (one end of an AF_UNIX
stream socketpair) and `NODE_CHANNEL_SERIALIZATION_MODE=json` talks over that
socket in JSON lines; with `NODE_UNIQUE_ID` as well it is a cluster worker:
its `server.listen()` asks its primary for the listener. Two layers here:

- `NodeChannel`: the channel itself, usable without the cluster (a fork-mode
  child's `process.send()` / `process.on('message')`). One message per line;
  a message with a file descriptor is wrapped as
  `{"cmd": "NODE_HANDLE", "type": ..., "msg": ...}` with the fd attached
  (SCM_RIGHTS) to the same write; the receiver answers `NODE_HANDLE_ACK`
  (or `NODE_HANDLE_NACK`: send it again), and the sender holds every later
  message until then. Writes never block: what the peer does not read is
  buffered up to a limit, then `send()` raises ChannelFull.
- `NodeWorkerChannel`: the same interface as corral's own `Channel`, so that
  `Primary`, `Worker` and the listener policies serve a Node worker as they
  serve a Python one; it translates Node's `NODE_CLUSTER` messages
  (online, queryServer, listening, close, exitedAfterDisconnect, newconn
  acknowledgements) to and from corral's.

Shapes checked against Node 20 (strace of Node's own primary and workers):
a rr connection is `NODE_HANDLE` type `net.Native` wrapping
`{"cmd": "NODE_CLUSTER", "act": "newconn", "key": ..., "seq": N}`, answered by
`NODE_HANDLE_ACK` then `{"cmd": "NODE_CLUSTER", "ack": N, "accepted": true}`.
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import itertools
import json
import logging
import os
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from corral.cluster.ipc import ChannelClosed, close_quietly, rights

log = logging.getLogger("corral.cluster")

ENV_UNIQUE_ID = "NODE_UNIQUE_ID"
ENV_CHANNEL_FD = "NODE_CHANNEL_FD"
ENV_SERIALIZATION = "NODE_CHANNEL_SERIALIZATION_MODE"
NODE_ENV_NAMES = (ENV_UNIQUE_ID, ENV_CHANNEL_FD, ENV_SERIALIZATION)
NODE_EXTENSIONS = (".js", ".mjs", ".cjs")

MAX_BUFFER = 16 * 1024 * 1024   # bytes queued for a peer that does not read
MAX_LINE = 64 * 1024 * 1024     # one incoming message
MAX_RETRANSMISSIONS = 3         # Node's, for a handle the peer says it did not get
READ_SIZE = 64 * 1024
MAX_FDS = 16
_ANC = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_MSG_CTRUNC = getattr(socket, "MSG_CTRUNC", 0)
_HANDLE_ACK_LINE = b'{"cmd":"NODE_HANDLE_ACK"}'  # as Node writes it
# a worker's answer to a rr connection, as Node writes it: read without the JSON parser
_CLUSTER_ACK = re.compile(
    rb'\{"cmd":"NODE_CLUSTER","ack":(\d{1,15}),"accepted":(true|false),"seq":(\d{1,15})\}\Z')

UV_TCP_IPV6ONLY = 1


class ChannelFull(ChannelClosed):
    """The peer has not read what was sent to it: the message was not queued."""


def is_internal(message: Any) -> bool:
    """Node's rule: an object whose `cmd` starts with NODE_ is the runtime's, not the app's."""
    return (isinstance(message, dict) and isinstance(message.get("cmd"), str)
            and len(message["cmd"]) > 5 and message["cmd"].startswith("NODE_"))


def is_node_script(path: str) -> bool:
    return str(path).endswith(NODE_EXTENSIONS)


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end). Pass the child end with pass_fds and close it after the
    spawn; both ends are close-on-exec, pass_fds makes the child's copy inheritable."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def node_env(channel_fd: int, worker_id: int | None = None) -> dict[str, str]:
    """The variables that give a `node` process its IPC channel at `channel_fd` (its fd
    number in the child); with worker_id it is also a cluster worker of ours."""
    env = {ENV_CHANNEL_FD: str(channel_fd), ENV_SERIALIZATION: "json"}
    if worker_id is not None:
        env[ENV_UNIQUE_ID] = str(worker_id)
    return env


def without_node_env(env: dict[str, str]) -> dict[str, str]:
    """env minus inherited channel variables (a child must not take a channel it lacks)."""
    return {k: v for k, v in env.items() if k not in NODE_ENV_NAMES}


def _dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)


class _Out:
    """Bytes to write; `fd` goes with the first byte written, then becomes None."""

    __slots__ = ("data", "fd")

    def __init__(self, data: bytes | memoryview, fd: int | None) -> None:
        self.data = memoryview(data)
        self.fd = fd


class _Unacked:
    """The handle in flight. `owned`: the fd is the channel's copy, closed once acknowledged;
    otherwise the sender keeps its fd open until then (send_handle_now)."""

    __slots__ = ("line", "fd", "retransmissions", "owned")

    def __init__(self, line: bytes, fd: int, owned: bool = True) -> None:
        self.line = line
        self.fd = fd
        self.retransmissions = 0
        self.owned = owned


class NodeChannel:
    """One end of a Node IPC channel (JSON lines, handles with SCM_RIGHTS).

    `send()` is thread-safe and never blocks. Reading (`recv`) belongs to one
    thread; when the channel has output it could not write, it calls
    `on_write_interest()` (owner: call `flush()` when the socket is writable, while
    `wants_write`). Without an owner loop, `recv(block=True)` flushes by itself.
    `attach_to_loop()` drives it from an asyncio loop.
    """

    protocol = "node"

    def __init__(self, sock: socket.socket, max_buffer: int = MAX_BUFFER) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_buffer = max_buffer
        self.closed = False
        self.on_write_interest: Callable[[], None] | None = None
        self._lock = threading.RLock()
        self._out: collections.deque[_Out] = collections.deque()
        self._out_bytes = 0
        self._held: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._held_bytes = 0
        self._unacked: _Unacked | None = None
        self._wanted_write = False
        self._inbuf = bytearray()
        self._infds: collections.deque[int] = collections.deque()
        self._inbox: collections.deque[tuple[Any, list[int]]] = collections.deque()
        self._eof = False

    pair = staticmethod(channel_pair)

    def fileno(self) -> int:
        return self.sock.fileno()

    # ---- sending -------------------------------------------------------------

    def send(self, message: Any, fd: int | None = None, handle_type: str = "net.Native") -> None:
        """Queue one message (any JSON value), with a file descriptor if given (the
        channel sends a duplicate: the caller keeps and may close its own)."""
        if fd is not None:
            message = {"cmd": "NODE_HANDLE", "type": handle_type, "msg": message}
        line = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self._send_line(line, fd)

    def _send_line(self, line: bytes, fd: int | None, control: bool = False) -> None:
        with self._lock:
            if self.closed:
                raise ChannelClosed("the channel is closed")
            if not control and self._out_bytes + self._held_bytes + len(line) > self.max_buffer:
                raise ChannelFull(f"the peer has not read {self._out_bytes + self._held_bytes} "
                                  f"bytes; message of {len(line)} bytes not sent")
            own = _dup(fd) if fd is not None else None
            if self._unacked is not None and not control:
                # Node's rule: nothing passes a handle the peer has not acknowledged
                self._held.append((line, own))
                self._held_bytes += len(line)
                return
            self._enqueue(line, own)
            self._flush_locked()

    def send_handle_now(self, line: bytes, fd: int) -> bool:
        """Write a whole NODE_HANDLE line with `fd` at once, without copying the fd, when
        nothing is queued or in flight (a rr connection: the primary's work for every
        request). The caller keeps `fd` open until the peer has acknowledged the handle
        (for rr: until the worker's own acknowledgement of the connection, which Node sends
        after NODE_HANDLE_ACK). False: nothing was sent; use send()."""
        with self._lock:
            if self.closed or self._out or self._unacked is not None:
                return False
            try:
                sent = self.sock.sendmsg([line], rights((fd,)), _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            self._unacked = _Unacked(line, fd, owned=False)
            if sent < len(line):  # the rest waits for the socket (the fd went with byte 1)
                self._out.append(_Out(memoryview(line)[sent:], None))
                self._out_bytes += len(line) - sent
                self._tell_write_interest()
            return True

    def _enqueue(self, line: bytes, fd: int | None) -> None:
        if fd is not None:
            self._unacked = _Unacked(line, fd)
        self._out.append(_Out(line, fd))
        self._out_bytes += len(line)

    @property
    def wants_write(self) -> bool:
        return bool(self._out) and not self.closed

    def buffered(self) -> int:
        """Bytes queued for the peer (written or held behind an unacknowledged handle)."""
        return self._out_bytes + self._held_bytes

    def flush(self) -> None:
        with self._lock:
            if not self.closed:
                self._flush_locked()

    def _flush_locked(self) -> None:
        try:
            while self._out:
                item = self._out[0]
                try:
                    if item.fd is not None:
                        sent = self.sock.sendmsg([item.data], rights((item.fd,)), _SEND_FLAGS)
                    else:
                        sent = self.sock.send(item.data, _SEND_FLAGS)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._out.clear()
                    self._out_bytes = 0
                    raise ChannelClosed(str(exc)) from None
                item.fd = None  # the fd went with the first byte
                self._out_bytes -= sent
                if sent < len(item.data):
                    item.data = item.data[sent:]
                else:
                    self._out.popleft()
        finally:
            self._tell_write_interest()

    def _tell_write_interest(self) -> None:
        wanted = bool(self._out)
        if wanted != self._wanted_write:
            self._wanted_write = wanted
            if self.on_write_interest is not None:
                self.on_write_interest()

    def _handle_acked(self, ok: bool) -> None:
        with self._lock:
            unacked = self._unacked
            if unacked is None:
                log.debug("node channel: %s without a handle in flight",
                          "NODE_HANDLE_ACK" if ok else "NODE_HANDLE_NACK")
                return
            if not ok:
                unacked.retransmissions += 1
                if unacked.retransmissions <= MAX_RETRANSMISSIONS:
                    self._out.append(_Out(unacked.line, unacked.fd))
                    self._out_bytes += len(unacked.line)
                    self._flush_quietly()
                    return
                log.warning("node channel: a handle did not reach the peer after %d tries",
                            MAX_RETRANSMISSIONS + 1)
            if unacked.owned:
                close_quietly(unacked.fd)
            self._unacked = None
            if not self._held and not self._out:
                return  # the usual case (a rr connection acknowledged): nothing to write
            while self._held and self._unacked is None:
                line, fd = self._held.popleft()
                self._held_bytes -= len(line)
                self._enqueue(line, fd)
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        """Flush from the reading side: a write error shows as the end of stream there."""
        if not self.closed:
            try:
                self._flush_locked()
            except ChannelClosed:
                pass

    # ---- receiving -----------------------------------------------------------

    def recv(self, block: bool = True, timeout: float | None = None
             ) -> tuple[Any, list[int]] | None:
        """The next message (a NODE_HANDLE unwrapped: its `msg`, with the fd) and its fds.

        None when nothing is waiting (block=False); TimeoutError after timeout; raises
        ChannelClosed at end of stream, once every message before it was returned.
        Handle acknowledgements are dealt with here and never returned.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            if self._eof or self.closed:
                raise ChannelClosed("end of stream")
            if self._read_once():
                continue
            if not block:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("no message from the node process")
            self._wait(remaining)
        return self._inbox.popleft()

    def read_ready(self) -> list[tuple[Any, list[int]]]:
        """For an owner loop told that the socket is readable: read once (the loop will
        say again if more is waiting) and return every message read so far; raises
        ChannelClosed at end of stream once nothing read before it is left."""
        if not (self._eof or self.closed):
            self._read_once()
        if self._inbox:
            messages = list(self._inbox)
            self._inbox.clear()
            return messages
        if self._eof or self.closed:
            raise ChannelClosed("end of stream")
        return []

    def _wait(self, timeout: float | None) -> None:
        with selectors.DefaultSelector() as sel:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.wants_write else 0)
            sel.register(self.sock, events)
            for _key, mask in sel.select(timeout):
                if mask & selectors.EVENT_WRITE:
                    try:
                        self.flush()
                    except ChannelClosed:
                        pass

    def _read_once(self) -> bool:
        """Read once; True if something was read (or the end of stream seen)."""
        try:
            data, ancdata, flags, _ = self.sock.recvmsg(READ_SIZE, _ANC, _RECV_FLAGS)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK) or self.closed:
                self._eof = True
                return True
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                self._eof = True
                return True
            raise ChannelClosed(str(exc)) from None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                self._infds.extend(fds)
        if flags & _MSG_CTRUNC:
            log.error("node channel: file descriptors were truncated (MSG_CTRUNC)")
        if not data:
            self._eof = True
            return True
        if not self._inbuf and data[-1:] == b"\n":
            # whole lines (the usual case: a worker's acknowledgements): no buffer to keep
            for line in data.split(b"\n")[:-1]:
                if line.strip():
                    self._on_line(line)
            return True
        self._inbuf += data
        start = 0
        while True:
            end = self._inbuf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._inbuf[start:end])
            start = end + 1
            if line.strip():
                self._on_line(line)
        del self._inbuf[:start]
        if len(self._inbuf) > MAX_LINE:
            log.error("node channel: a message longer than %d bytes; closing the channel",
                      MAX_LINE)
            self._inbuf.clear()
            self._eof = True
        return True

    def _on_line(self, line: bytes) -> None:
        if line == _HANDLE_ACK_LINE:  # one per handle sent (per rr connection): no parsing
            self._handle_acked(True)
            return
        ack = _CLUSTER_ACK.match(line)
        if ack is not None:
            self._inbox.append(({"cmd": "NODE_CLUSTER", "ack": int(ack[1]),
                                 "accepted": ack[2] == b"true", "seq": int(ack[3])}, []))
            return
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("node channel: not JSON, ignored: %r", line[:200])
            return
        if not is_internal(message):
            self._inbox.append((message, []))
            return
        cmd = message["cmd"]
        if cmd == "NODE_HANDLE_ACK":
            self._handle_acked(True)
        elif cmd == "NODE_HANDLE_NACK":
            self._handle_acked(False)
        elif cmd == "NODE_HANDLE":
            if not self._infds:
                # the fd went missing (MSG_CTRUNC): Node's sender sends it again
                self._control({"cmd": "NODE_HANDLE_NACK"})
                return
            fd = self._infds.popleft()
            self._control({"cmd": "NODE_HANDLE_ACK"})
            self._inbox.append((message.get("msg"), [fd]))
        else:
            self._inbox.append((message, []))

    def _control(self, message: dict[str, Any]) -> None:
        try:
            self._send_line(json.dumps(message, separators=(",", ":")).encode() + b"\n", None,
                            control=True)
        except ChannelClosed:
            pass

    # ---- the end -------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            if self._unacked is not None:
                if self._unacked.owned:
                    close_quietly(self._unacked.fd)
                self._unacked = None
            for _, fd in self._held:
                close_quietly(fd)
            self._held.clear()
            self._out.clear()
            self._out_bytes = self._held_bytes = 0
        for fd in self._infds:
            close_quietly(fd)
        self._infds.clear()
        for _, fds in self._inbox:
            for fd in fds:
                close_quietly(fd)
        self._inbox.clear()

    # ---- asyncio -------------------------------------------------------------

    def attach_to_loop(self, loop: Any, on_message: Callable[[Any, list[int]], Any],
                       on_close: Callable[[], Any] | None = None) -> None:
        """Read and write from an asyncio loop: on_message(message, fds) for every
        message, on_close() once at end of stream (the channel is closed then).
        Call it from the loop's thread; send() may be called from any thread."""
        fd = self.fileno()
        state = {"writer": False, "done": False}

        def finish() -> None:
            if state["done"]:
                return
            state["done"] = True
            loop.remove_reader(fd)
            if state["writer"]:
                loop.remove_writer(fd)
            self.close()
            if on_close is not None:
                on_close()

        def readable() -> None:
            try:
                while True:
                    received = self.recv(block=False)
                    if received is None:
                        return
                    on_message(*received)
            except ChannelClosed:
                finish()

        def update() -> None:
            if state["done"]:
                return
            if self.wants_write and not state["writer"]:
                state["writer"] = True
                loop.add_writer(fd, writable)
            elif not self.wants_write and state["writer"]:
                state["writer"] = False
                loop.remove_writer(fd)

        def writable() -> None:
            try:
                self.flush()
            except ChannelClosed:
                finish()
                return
            update()

        self.on_write_interest = lambda: loop.call_soon_threadsafe(update)
        loop.add_reader(fd, readable)
        update()


# ---- the cluster worker protocol ---------------------------------------------

class _Server:
    """One listener a Node worker asked for: its key on each side."""

    __slots__ = ("node_key", "ident", "py_key", "policy", "sockname", "family", "address_type",
                 "newconn_head")

    def __init__(self, message: dict[str, Any], py_key: tuple[Any, ...], family: int) -> None:
        self.node_key = _node_key(message)
        # Node's rr message for a connection, up to its seq (json.dumps once, not per request)
        self.newconn_head = (
            '{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER",'
            '"act":"newconn","key":' + json.dumps(self.node_key) + ',"seq":').encode()
        self.ident = _ident(message)
        self.py_key = py_key
        self.family = family
        self.address_type = message.get("addressType")
        self.policy = ""
        self.sockname: Any = None


def _py_key(key: Any) -> tuple[Any, ...]:
    family, address, v6only = key
    return (family, tuple(address) if isinstance(address, list) else address, bool(v6only))


def _node_key(message: dict[str, Any]) -> str:
    """Node's own key for a listener: address:port:addressType:fd:index."""
    return ":".join(_js(message.get(k, "undefined"))
                    for k in ("address", "port", "addressType", "fd", "index"))


def _ident(message: dict[str, Any]) -> tuple[str, ...]:
    """The key without the port: a listening message carries the real port of listen(0)."""
    return tuple(_js(message.get(k, "undefined")) for k in ("address", "addressType", "fd",
                                                            "index"))


def _js(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


_ipv6_ok: bool | None = None


def _ipv6_available() -> bool:
    global _ipv6_ok
    if _ipv6_ok is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM):
                _ipv6_ok = True
        except OSError:
            _ipv6_ok = False
    return _ipv6_ok


class NodeWorkerChannel:
    """A Node cluster worker behind corral's Channel interface (send / recv / request /
    dispatch_reply / close), translating Node's NODE_CLUSTER messages both ways."""

    protocol = "node"

    def __init__(self, sock: socket.socket | NodeChannel, max_buffer: int = MAX_BUFFER) -> None:
        self.raw = sock if isinstance(sock, NodeChannel) else NodeChannel(sock, max_buffer)
        self._seq = itertools.count(1)
        self._servers: dict[str, _Server] = {}
        self._queries: dict[int, _Server] = {}
        # seq of a rr connection -> (its server, the primary's handle that handed it)
        self._newconns: dict[int, tuple[_Server, Any]] = {}
        self._by_py_key: dict[tuple[Any, ...], _Server] = {}  # _server_for's answers
        self._lock = threading.Lock()

    # the Channel interface --------------------------------------------------------

    @property
    def sock(self) -> socket.socket:
        return self.raw.sock

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def fileno(self) -> int:
        return self.raw.fileno()

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()

    def fail_pending(self) -> None:
        pass

    def dispatch_reply(self, message: dict[str, Any], fds: list[int]) -> bool:
        return False  # recv() already turned Node's acknowledgements into corral messages

    def request(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = (),
                timeout: float | None = 30.0) -> tuple[dict[str, Any], list[int]]:
        if message.get("act") == "quiet":
            # a Node worker has no way to quiet a listener and keep it; the primary has
            # stopped handing it connections (rr); disconnect() is what closes its listeners
            return {}, []
        raise ChannelClosed(f"a Node worker does not answer {message.get('act')!r}")

    def send(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        """Send a corral message (its shape as for a Python worker) in Node's words."""
        if len(fds) > 1:
            raise ValueError("a Node message carries at most one file descriptor")
        fd = fds[0] if fds else None
        if "user" in message:
            self.raw.send(message["user"], fd)
            return
        act = message.get("act")
        if act == "newconn":
            server = self._server_for(message.get("key"))
            if server is None:
                raise ChannelClosed(f"the worker has no listener for {message.get('key')}")
            seq = int(message["seq"])
            with self._lock:
                self._newconns[seq] = (server, None)
            try:
                self._cluster({"act": "newconn", "key": server.node_key, "seq": seq}, fd)
            except ChannelClosed:
                with self._lock:
                    self._newconns.pop(seq, None)
                raise
        elif act == "disconnect":
            self._cluster({"act": "disconnect"})
        elif act is None and "ack" in message:
            with self._lock:
                query = self._queries.pop(message["ack"], None)
            if query is not None:
                self._reply_to_query(query, message, fd)
            else:
                self._cluster({"ack": message["ack"]})
        else:
            log.debug("node worker: %r has no Node equivalent; not sent", act)

    def newconn(self, handle: Any, seq: int, fd: int) -> None:
        """Hand a rr connection to the worker (the primary's work for every request, so it
        skips the general path: a message made of cached bytes, the fd not copied when it
        can go at once). The caller keeps `fd` open until the worker acknowledges it."""
        server = self._by_py_key.get(handle.key)
        if server is None:
            server = self._server_for(handle.key)
            if server is None:
                raise ChannelClosed(f"the worker has no listener for {handle.key}")
            with self._lock:
                self._by_py_key[handle.key] = server
        with self._lock:
            self._newconns[seq] = (server, handle)
        # non-blocking, as Node's primary accepts it (accept4 SOCK_NONBLOCK): the worker's
        # libuv never sets it, and a blocking socket stalls the whole worker in a write to a
        # client that does not read. The flag belongs to the connection, not to this copy.
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        line = server.newconn_head + b"%d}}\n" % seq
        try:
            if not self.raw.send_handle_now(line, fd):
                self.raw._send_line(line, fd)
        except ChannelClosed:
            with self._lock:
                self._newconns.pop(seq, None)
            raise

    def recv_ready(self) -> list[tuple[dict[str, Any], list[int]]]:
        """recv() for an owner loop told that the socket is readable: one read, and every
        message it completed (NodeChannel.read_ready); ChannelClosed at the end."""
        out = []
        for message, fds in self.raw.read_ready():
            if not is_internal(message):
                out.append(({"user": message}, fds))
                continue
            for fd in fds:
                close_quietly(fd)
            translated = self._translate(message)
            if translated is not None:
                out.append((translated, []))
        return out

    def recv(self, block: bool = True) -> tuple[dict[str, Any], list[int]] | None:
        """The next message as corral's primary understands it; Node's internal messages
        that have no corral meaning are logged and skipped."""
        while True:
            received = self.raw.recv(block)
            if received is None:
                return None
            message, fds = received
            if not is_internal(message):
                return {"user": message}, fds
            for fd in fds:  # Node's cluster messages carry none to the primary
                close_quietly(fd)
            translated = self._translate(message)
            if translated is not None:
                return translated, []

    # the translation ------------------------------------------------------------

    def _cluster(self, message: dict[str, Any], fd: int | None = None) -> None:
        seq = message.pop("seq", None)
        self.raw.send({"cmd": "NODE_CLUSTER", **message,
                       "seq": next(self._seq) if seq is None else seq}, fd)

    def _server_for(self, key: Any) -> _Server | None:
        if key is None:
            return None
        wanted = _py_key(key)
        with self._lock:
            for server in self._servers.values():
                if server.py_key == wanted:
                    return server
        return None

    def _translate(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("cmd") != "NODE_CLUSTER":
            log.warning("node worker: unknown internal message %s, ignored",
                        json.dumps(message)[:300])
            return None
        act = message.get("act")
        seq = message.get("seq")
        if act is None and "ack" in message:
            with self._lock:
                entry = self._newconns.pop(message["ack"], None)
            if entry is None:
                log.warning("node worker: acknowledgement of nothing we sent: %s",
                            json.dumps(message)[:300])
                return None
            acked, handle = entry
            return {"act": "newconn_ack", "key": list(acked.py_key), "seq": message["ack"],
                    "accepted": bool(message.get("accepted")), "handle": handle}
        if act == "online":
            return {"act": "online"}
        if act == "queryServer":
            return self._query(message)
        if act == "listening":
            server = self._find_server(message)
            if server is None:
                log.warning("node worker: listening on a server it never asked for: %s",
                            json.dumps(message)[:300])
                return None
            return {"act": "listening", "key": list(server.py_key),
                    "info": self._listening_info(server, message)}
        if act == "close":
            with self._lock:
                server = self._servers.pop(str(message.get("key")), None)
                if server is None:
                    return None
                self._by_py_key.clear()
                still = any(s.py_key == server.py_key for s in self._servers.values())
            return None if still else {"act": "close", "key": list(server.py_key)}
        if act == "exitedAfterDisconnect":
            return {"act": "exitedAfterDisconnect", "seq": seq}
        log.warning("node worker: unknown cluster message %s, ignored",
                    json.dumps(message)[:300])
        return None

    def _query(self, message: dict[str, Any]) -> dict[str, Any] | None:
        seq = message.get("seq")
        address = message.get("address")
        port = message.get("port")
        address_type = message.get("addressType")
        node_key = _node_key(message)
        fd = message.get("fd")
        if isinstance(fd, int) and fd >= 0:
            self._refuse(seq, node_key, errno.EOPNOTSUPP,
                         "listen({fd}) names a file descriptor of Node's own primary; "
                         "a corral primary has none to give")
            return None
        if address_type == 4 or address_type == 6:
            v6only = bool(int(message.get("flags") or 0) & UV_TCP_IPV6ONLY)
            if not address:  # listen(port): Node binds :: (dual stack), else 0.0.0.0
                if _ipv6_available():
                    family, host = socket.AF_INET6, "::"
                else:
                    family, host = socket.AF_INET, "0.0.0.0"
            else:
                family = socket.AF_INET6 if address_type == 6 else socket.AF_INET
                host = address
            v6only = v6only and family == socket.AF_INET6
            py_address: Any = [host, int(port or 0)]
        elif address_type == -1 and isinstance(address, str):
            family, py_address, v6only = socket.AF_UNIX, address, False
        else:
            self._refuse(seq, node_key, errno.EOPNOTSUPP,
                         f"a {address_type} listener: corral's primary shares TCP and "
                         f"unix stream listeners only")
            return None
        server = _Server(message, _py_key([int(family), py_address, v6only]), int(family))
        if isinstance(seq, int):
            with self._lock:
                self._queries[seq] = server
        query: dict[str, Any] = {"act": "queryServer", "family": int(family),
                                 "address": py_address, "v6only": v6only, "seq": seq}
        if message.get("data") is not None:
            query["data"] = message["data"]
        return query

    def _refuse(self, seq: Any, node_key: str, code: int, why: str) -> None:
        log.error("node worker: %s", why)
        try:
            self._cluster({"errno": -code, "key": node_key, "ack": seq, "data": None})
        except ChannelClosed:
            pass

    def _reply_to_query(self, server: _Server, reply: dict[str, Any], fd: int | None) -> None:
        seq = reply["ack"]
        data = reply.get("data")
        if reply.get("errno"):
            self._cluster({"errno": -abs(int(reply["errno"])), "key": server.node_key,
                           "ack": seq, "data": data})
            return
        if reply.get("reuseport"):
            self._refuse(seq, server.node_key, errno.EOPNOTSUPP,
                         "the reuseport policy needs the worker to bind with SO_REUSEPORT, "
                         "which Node's cluster workers cannot; use the shared or rr policy")
            return
        server.policy = str(reply.get("policy") or "")
        server.sockname = reply.get("sockname")
        with self._lock:
            self._servers[server.node_key] = server
            self._by_py_key.clear()
        if fd is not None:  # shared: the listening socket itself
            self._cluster({"errno": 0, "key": server.node_key, "ack": seq, "data": data}, fd)
            return
        out: dict[str, Any] = {"errno": None, "key": server.node_key, "ack": seq, "data": data}
        sockname = server.sockname
        if server.family != socket.AF_UNIX and isinstance(sockname, (list, tuple)):
            out["sockname"] = {"address": sockname[0], "port": sockname[1],
                               "family": "IPv6" if server.family == socket.AF_INET6
                               else "IPv4"}
        self._cluster(out)

    def _find_server(self, message: dict[str, Any]) -> _Server | None:
        with self._lock:
            server = self._servers.get(_node_key(message))
            if server is not None:
                return server
            ident = _ident(message)
            for candidate in self._servers.values():
                if candidate.ident == ident:
                    return candidate
        return None

    @staticmethod
    def _listening_info(server: _Server, message: dict[str, Any]) -> dict[str, Any]:
        sockname = server.sockname
        if server.family == socket.AF_UNIX:
            info: dict[str, Any] = {"address": sockname if isinstance(sockname, str)
                                    else server.py_key[1], "port": None, "family": "unix"}
        else:
            host, port = (sockname[0], sockname[1]) if isinstance(sockname, (list, tuple)) \
                else (server.py_key[1][0], message.get("port"))
            info = {"address": host, "port": port,
                    "family": "IPv6" if server.family == socket.AF_INET6 else "IPv4"}
        info["addressType"] = server.address_type
        info["policy"] = server.policy
        return info
