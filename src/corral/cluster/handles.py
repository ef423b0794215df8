"""The primary's listeners, one object per (family, address, v6only), one class per policy.

Every handle has the same small interface (Node's shared_handle.js and
round_robin_handle.js): `add(worker) -> (reply, fds)` when a worker asks for
the address, `remove(worker)` when it goes, `close()` when the cluster ends.
The rest of the code does not branch on the policy.

Unlike Node, the primary keeps a listener open after its last worker has
gone: connections wait in the kernel (or in the round-robin queue) until a
worker comes back, so a restart or a reload never refuses or resets one.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import stat
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from corral.cluster.ipc import close_quietly

if TYPE_CHECKING:
    from corral.cluster.primary import Worker

log = logging.getLogger("corral.cluster")

DEFAULT_BACKLOG = 511
MAX_PENDING = 4096
POLICIES = ("rr", "shared", "reuseport")


def key_of(query: dict[str, Any]) -> tuple[Any, ...]:
    address = query["address"]
    return (query["family"], tuple(address) if isinstance(address, list) else address,
            bool(query.get("v6only")))


def make_listener(family: int, address: Any, *, v6only: bool = False, reuseport: bool = False,
                  listen: bool = True, backlog: int = DEFAULT_BACKLOG, nodelay: bool = False
                  ) -> socket.socket:
    """Bind (and listen) a stream socket; OSError (EADDRINUSE, ...) as a plain bind gives."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(tuple(address) if isinstance(address, list) else address)
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def sockname(sock: socket.socket) -> Any:
    name = sock.getsockname()
    return list(name) if isinstance(name, tuple) else name


class Handle:
    policy = ""

    def __init__(self, key: tuple[Any, ...], query: dict[str, Any], backlog: int) -> None:
        self.key = key
        self.family, self.address, self.v6only = key
        self.workers: dict[int, Worker] = {}
        self.backlog = backlog
        self.nodelay = bool(query.get("nodelay"))
        # what the first worker said about the listener (Node: TLS session ticket keys),
        # given to every worker that asks for it
        self.data: Any = None

    def add(self, worker: Worker) -> tuple[dict[str, Any], list[int]]:
        raise NotImplementedError

    def _listen(self) -> tuple[_UnixPath | None, socket.socket]:
        """Bind and listen on the key's address (a unix path through _UnixPath)."""
        unix = None
        address = self.address
        if self.family == socket.AF_UNIX:
            unix = _UnixPath(address)
            unix.claim()
            address = unix.private
        try:
            sock = make_listener(self.family, address, v6only=self.v6only,
                                 backlog=self.backlog, nodelay=self.nodelay)
        except BaseException:
            if unix:
                unix.release()
            raise
        return unix, sock

    def remove(self, worker: Worker, requeue: bool = True) -> None:
        """The worker takes no more connections. requeue=False when it is still alive and
        will answer for what it was handed (a quiet worker before its stop)."""
        self.workers.pop(worker.id, None)

    def close(self) -> None:
        raise NotImplementedError


class _UnixPath:
    """A unix listener at a private path, reached through a symlink at the asked path.

    Servers commonly unlink a stale socket file before they bind (asyncio does);
    when a second worker does so, the symlink is simply made again, and the
    listener every worker shares stays reachable.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.private_dir = tempfile.mkdtemp(prefix="corral-unix-")
        self.private = os.path.join(self.private_dir, "listener.sock")

    def claim(self) -> None:
        """Point the asked path at our listener; EADDRINUSE if something else is there."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            os.symlink(self.private, self.path)
            return
        if stat.S_ISLNK(st.st_mode) and os.readlink(self.path) == self.private:
            return
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE), self.path)

    def release(self) -> None:
        try:
            if os.path.islink(self.path) and os.readlink(self.path) == self.private:
                os.unlink(self.path)
        except OSError:
            pass
        for leftover in (self.private, self.private_dir):
            try:
                (os.rmdir if leftover == self.private_dir else os.unlink)(leftover)
            except OSError:
                pass


class SharedHandle(Handle):
    """The primary binds and listens once; every worker gets the same listening fd."""

    policy = "shared"

    def __init__(self, key: tuple[Any, ...], query: dict[str, Any], backlog: int) -> None:
        super().__init__(key, query, backlog)
        self.unix, self.sock = self._listen()

    @classmethod
    def adopt(cls, key: tuple[Any, ...], fd: int, backlog: int) -> SharedHandle:
        """A listener that outlived its primary, handed back by a worker (a new daemon)."""
        handle = cls.__new__(cls)
        Handle.__init__(handle, key, {}, backlog)
        handle.unix = None
        handle.sock = socket.socket(fileno=fd)
        return handle

    def add(self, worker: Worker) -> tuple[dict[str, Any], list[int]]:
        if self.unix:
            self.unix.claim()
        self.workers[worker.id] = worker
        name = self.unix.path if self.unix else (
            self.address if self.family == socket.AF_UNIX else sockname(self.sock))
        return {"sockname": name}, [self.sock.fileno()]

    def close(self) -> None:
        self.sock.close()
        if self.unix:
            self.unix.release()


class ReusePortHandle(Handle):
    """Each worker binds its own SO_REUSEPORT socket; the primary holds a bound,
    non-listening anchor that reserves the port (and fixes port 0 for all)."""

    policy = "reuseport"
    _warned = False

    def __init__(self, key: tuple[Any, ...], query: dict[str, Any], backlog: int) -> None:
        super().__init__(key, query, backlog)
        if self.family == socket.AF_UNIX:
            raise OSError(errno.EINVAL, "the reuseport policy works for TCP only (Linux refuses "
                          "SO_REUSEPORT on unix sockets); use the shared policy")
        if not hasattr(socket, "SO_REUSEPORT"):
            raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available here; use the "
                          "shared policy")
        self.sock = make_listener(self.family, self.address, v6only=self.v6only,
                                  reuseport=True, listen=False)
        self.warning = migrate_warning()

    def add(self, worker: Worker) -> tuple[dict[str, Any], list[int]]:
        self.workers[worker.id] = worker
        return {"sockname": sockname(self.sock), "reuseport": True}, []

    def close(self) -> None:
        self.sock.close()


def migrate_warning() -> str | None:
    """The reuseport caveat, unless net.ipv4.tcp_migrate_req is on."""
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            if f.read().strip() == "1":
                return None
    except OSError:
        pass
    return ("reuseport: when a worker exits, the connections queued on its own socket are "
            "reset; set net.ipv4.tcp_migrate_req=1 (Linux 5.14+) before starting, or use the "
            "shared policy")


class RoundRobinHandle(Handle):
    """Node's round-robin: the primary accepts, and hands each connection to the next
    free worker; a worker has at most one handoff it has not acknowledged.

    Unlike Node's primary, which accepts every connection at once into a queue of its
    own, this one accepts a connection when a worker is free to take it: while every
    worker has one in hand, the others wait in the kernel's accept queue (its backlog is
    raised to MAX_PENDING for that), and the listener is not even watched. Under load
    that is one wake-up of the primary per connection (the worker's acknowledgement)
    instead of two, and a connection the primary has not accepted outlives the primary.
    `pending` holds only connections given back (by a worker that went away)."""

    policy = "rr"

    def __init__(self, key: tuple[Any, ...], query: dict[str, Any], backlog: int,
                 io: Any) -> None:
        super().__init__(key, query, max(backlog, MAX_PENDING))
        self.io = io
        self.unix, self.sock = self._listen()
        self.sock.setblocking(False)
        # the accepted connections are plain fds (no socket object: this is the primary's
        # work for every connection, so it is kept small), closed once a worker has its own
        self._accept = self.sock._accept  # type: ignore[attr-defined]
        self.free: collections.deque[Worker] = collections.deque()
        self.pending: collections.deque[tuple[int, Any]] = collections.deque()
        # (worker id, seq) -> the handed connection, kept until the worker acknowledges it
        self.outstanding: dict[tuple[int, int], tuple[Worker, int, Any]] = {}
        self.reading = False
        self.lock = threading.RLock()
        self.handoffs: collections.Counter[int] = collections.Counter()
        self._start_reading()

    def _start_reading(self) -> None:
        if not self.reading and not self.sock._closed:  # type: ignore[attr-defined]
            self.reading = True
            self.io.add_reader(self.sock, self._on_readable)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.io.remove_reader(self.sock)

    def _on_readable(self) -> None:
        """Connections are waiting: one for each free worker."""
        with self.lock:
            self._serve_free()

    def _serve_free(self) -> None:
        """Hand waiting connections to the free workers, the longest free first (Node's
        order). No connection left: the listener is watched; no free worker left: it is
        not (the rest wait in the kernel's queue until an acknowledgement frees one)."""
        free = self.free
        while free:
            worker = free[0]
            if worker.id not in self.workers:
                free.popleft()
                continue
            connection = self._next_connection()
            if connection is None:
                if not self.reading:
                    self._start_reading()
                return
            free.popleft()
            self._send(worker, connection)
        if self.reading:
            self._stop_reading()

    def _next_connection(self) -> tuple[int, Any] | None:
        if self.pending:
            return self.pending.popleft()
        try:
            return self._accept()  # type: ignore[no-any-return]
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return None  # the client left before it was accepted
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.error("rr accept: %s; will retry", exc)
                return None
            raise

    def add(self, worker: Worker) -> tuple[dict[str, Any], list[int]]:
        with self.lock:
            if self.unix:
                self.unix.claim()
            self.workers[worker.id] = worker
            name = self.unix.path if self.unix else sockname(self.sock)
            reply = {"sockname": name, "rr": True}
            # the handoff must come after the reply: do it on the I/O thread's next turn
            self.io.call_soon(self._welcome, worker)
            return reply, []

    def _welcome(self, worker: Worker) -> None:
        with self.lock:
            if worker.id in self.workers and not self._busy(worker):
                self.free.append(worker)
                self._serve_free()

    def _busy(self, worker: Worker) -> bool:
        return any(w is worker for w, _, _ in self.outstanding.values()) or worker in self.free

    def _send(self, worker: Worker, connection: tuple[int, Any]) -> None:
        fd, address = connection
        seq = worker.next_seq()
        self.outstanding[(worker.id, seq)] = (worker, fd, address)
        channel = worker.channel
        try:
            newconn = getattr(channel, "newconn", None)
            if newconn is not None:  # a Node worker: its channel writes Node's message itself
                newconn(self, seq, fd)
            else:
                channel.send({"act": "newconn", "key": list(self.key), "seq": seq,
                              "address": list(address) if isinstance(address, tuple)
                              else address}, [fd])
        except Exception:  # noqa: BLE001 - the worker is going; give the connection back
            self.outstanding.pop((worker.id, seq), None)
            self.pending.appendleft(connection)
            self.remove(worker)

    def on_ack(self, worker: Worker, seq: int, accepted: bool) -> None:
        with self.lock:
            entry = self.outstanding.pop((worker.id, seq), None)
            if entry is None:
                return
            _, fd, address = entry
            if accepted:
                os.close(fd)  # the worker owns it now
                self.handoffs[worker.id] += 1
            else:
                self.pending.appendleft((fd, address))
            if worker.id in self.workers and worker not in self.free:
                self.free.append(worker)  # behind the workers free before it
            self._serve_free()

    def remove(self, worker: Worker, requeue: bool = True) -> None:
        """Stop handing connections to a worker; what it did not accept goes to others.

        A worker that is alive acknowledges what it was handed (accepted or given back),
        so its handoffs stay outstanding; taking them back now could give a connection it
        has already accepted to a second worker."""
        with self.lock:
            self.workers.pop(worker.id, None)
            try:
                self.free.remove(worker)
            except ValueError:
                pass
            if not requeue:
                return
            for key, (owner, fd, address) in list(self.outstanding.items()):
                if owner is worker:
                    del self.outstanding[key]
                    self.pending.appendleft((fd, address))
            self._serve_free()

    def close(self) -> None:
        with self.lock:
            self._stop_reading()
            for fd, _ in self.pending:
                close_quietly(fd)
            for _, fd, _ in self.outstanding.values():
                close_quietly(fd)
            self.pending.clear()
            self.outstanding.clear()
            self.sock.close()
            if self.unix:
                self.unix.release()
