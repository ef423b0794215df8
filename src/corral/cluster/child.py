"""The worker side of corral.cluster (Node's internal/cluster/child.js).

setup() connects the channel the primary passed (CORRAL_CLUSTER_IPC_FD),
starts a thread that reads it, installs the hook on socket.socket.bind, and
tells the primary the worker is online. From then on, a TCP or unix stream
socket the app binds is provided by the primary, by policy:

- shared:    the primary's listening socket is dup2'd over the app's socket;
- rr:        the app's socket becomes a pipe that is readable when the
             primary has handed over a connection; accept() returns it;
- reuseport: the app binds its own socket with SO_REUSEPORT.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import signal
import socket
import sys
import threading
import weakref
from typing import Any

from corral.cluster.events import EventEmitter
from corral.cluster.iothread import start_helper
from corral.cluster.ipc import Channel, ChannelClosed
from corral.cluster.primary import ENV_IPC_FD, ENV_POLICY, ENV_WORKER_ID

# set by the corral daemon: the socket where a worker that outlived its daemon knocks to
# hand its listeners to the next one (CORRAL_HOME/cluster.sock)
ENV_DOOR = "CORRAL_CLUSTER_DOOR"

log = logging.getLogger("corral.cluster")

ENV_ORPHAN = "CORRAL_CLUSTER_ORPHAN"  # "keep": live on when the primary goes (corral's daemon)
ENV_STOP_SIGNAL = "CORRAL_CLUSTER_STOP_SIGNAL"

_real_bind = socket.socket.bind
_real_listen = socket.socket.listen
_real_accept = socket.socket.accept
_real_close = socket.socket.close
_real_getsockname = socket.socket.getsockname
_real_setsockopt = socket.socket.setsockopt
_real_getsockopt = socket.socket.getsockopt
_real_shutdown = socket.socket.shutdown
_real_send = socket.socket.send
_real_sendall = socket.socket.sendall

_STREAM = socket.SOCK_STREAM
_TYPE_MASK = ~(getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0))


class ClusteredSocket:
    """What the worker knows about one socket the primary provides."""

    def __init__(self, key: list[Any], policy: str, sockname: Any, family: int) -> None:
        self.key = key
        self.policy = policy
        self.sockname = tuple(sockname) if isinstance(sockname, list) else sockname
        self.family = family
        self.listening = False
        # rr only
        self.queue: collections.deque[tuple[int, Any, int]] = collections.deque()
        self.cond = threading.Condition()
        self.wake_w: int | None = None
        self.shadow: socket.socket | None = None
        self.closed = False


class WorkerSide(EventEmitter):
    """`cluster.worker` inside a worker: id, send(), disconnect() and its events."""

    def __init__(self, worker_id: int, channel: Channel) -> None:
        super().__init__()
        self.id = worker_id
        self.channel = channel
        self.process = _Self()
        self.exited_after_disconnect: bool | None = None
        self.state = "online"
        self.sockets: weakref.WeakKeyDictionary[socket.socket, ClusteredSocket] = (
            weakref.WeakKeyDictionary())
        self.lock = threading.Lock()

    def send(self, message: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        self.channel.send({"user": message}, fds)

    def is_connected(self) -> bool:
        return not self.channel.closed

    def is_dead(self) -> bool:
        return False

    def kill(self, sig: int = signal.SIGTERM) -> None:
        os.kill(os.getpid(), sig)

    def disconnect(self) -> None:
        """Close this worker's listeners, tell the primary, close the channel."""
        self._leave(primary_initiated=False)

    # ---- leaving -------------------------------------------------------------

    def _leave(self, primary_initiated: bool) -> None:
        self.exited_after_disconnect = True
        self.state = "disconnecting"
        for sock, info in list(self.sockets.items()):
            stop_accepting(sock, info)
        start_draining()
        if not primary_initiated:
            try:
                self.channel.request({"act": "exitedAfterDisconnect"}, timeout=5)
            except (ChannelClosed, TimeoutError):
                pass
        self.channel.close()
        self.state = "disconnected"
        if not self.emit("disconnect"):
            # Node's worker exits once its servers are closed; a Python server loop does not
            # end by itself, so ask the app to stop as a Ctrl-C would
            stop = getattr(signal, os.environ.get(ENV_STOP_SIGNAL, "SIGINT"), signal.SIGINT)
            _signal_main_thread(stop)


def _signal_main_thread(sig: int) -> None:
    """The signal to the main thread itself: it runs the app's handler there and wakes the
    main thread from whatever it waits on (sent to the process, a signal may be taken by
    another thread and leave the main thread asleep)."""
    main = threading.main_thread()
    try:
        if main.ident is not None and main.is_alive():
            signal.pthread_kill(main.ident, sig)
            return
    except (AttributeError, OSError, ValueError):
        pass
    os.kill(os.getpid(), sig)


class _Self:
    @property
    def pid(self) -> int:
        return os.getpid()


WORKER: WorkerSide | None = None


# ---- the bind hook ---------------------------------------------------------------

# WORKER.sockets again, by id (the weakref tells a reused id apart): the hooked methods
# run on every connection, and a dict lookup by id does not create the weakref that each
# lookup in the WeakKeyDictionary does (bench/uvicorn_close.py)
_clustered_ids: dict[int, tuple[weakref.ref[socket.socket], ClusteredSocket]] = {}


def _clustered(sock: socket.socket) -> ClusteredSocket | None:
    entry = _clustered_ids.get(id(sock))
    if entry is None or entry[0]() is not sock:
        return None
    return entry[1]


def _wants_cluster(sock: socket.socket) -> bool:
    if WORKER is None or WORKER.channel.closed:
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        return False
    return (sock.type & _TYPE_MASK) == _STREAM


def _normalize(sock: socket.socket, address: Any) -> Any:
    """The address as the kernel would bind it: names resolved, '' made the wildcard."""
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):
            address = os.fsdecode(address)
        if not address or address.startswith("\0"):
            return None  # abstract or autobind: leave it to the app
        return os.path.abspath(address)
    host, port = address[0], address[1]
    if host in ("", None):
        host = "0.0.0.0" if sock.family == socket.AF_INET else "::"
    infos = socket.getaddrinfo(host, port, sock.family, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    resolved: tuple[Any, ...] = tuple(infos[0][4])
    if sock.family == socket.AF_INET6:
        return [resolved[0], resolved[1], 0, resolved[3]]
    return [resolved[0], resolved[1]]


def _uvloop_running() -> bool:
    if "uvloop" not in sys.modules:
        return False
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return type(loop).__module__.startswith("uvloop")


def _bind(self: socket.socket, address: Any) -> None:
    if not _wants_cluster(self) or _clustered(self) is not None:
        return _real_bind(self, address)
    normalized = _normalize(self, address)
    if normalized is None:
        return _real_bind(self, address)
    assert WORKER is not None
    policy = os.environ.get(ENV_POLICY, "shared")
    if policy == "rr" and _uvloop_running():
        raise OSError(errno.EOPNOTSUPP,
                      "corral.cluster: the rr policy hands connections to the server's accept() "
                      "in Python, and uvloop accepts in C (libuv); use the shared policy "
                      "(corral start --cluster-policy shared, or "
                      "CORRAL_CLUSTER_SCHED_POLICY=shared)")
    v6only = False
    if self.family == socket.AF_INET6:
        v6only = bool(_real_getsockopt(self, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    nodelay = False
    if self.family != socket.AF_UNIX:
        try:
            nodelay = bool(_real_getsockopt(self, socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except OSError:
            pass
    try:
        reply, fds = WORKER.channel.request({
            "act": "queryServer", "family": int(self.family), "address": normalized,
            "v6only": v6only, "nodelay": nodelay, "policy": policy,
        })
    except (ChannelClosed, TimeoutError) as exc:
        raise OSError(errno.ECONNREFUSED, f"corral.cluster: no answer from the primary "
                      f"({exc})") from None
    if reply.get("errno"):
        for fd in fds:
            os.close(fd)
        code = int(reply["errno"])
        raise OSError(code, reply.get("error") or os.strerror(code))
    info = ClusteredSocket(reply["key"], reply["policy"], reply["sockname"], self.family)
    if info.policy == "reuseport":
        _real_setsockopt(self, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _real_bind(self, info.sockname)
        WORKER.sockets[self] = info
        _clustered_ids[id(self)] = (weakref.ref(self), info)
        _report_if_uvloop(info)
        return None
    timeout = self.gettimeout()
    inheritable = self.get_inheritable()
    if info.policy == "shared":
        fd = fds[0]
        os.dup2(fd, self.fileno(), inheritable=inheritable)
        os.close(fd)
    else:  # rr: the socket becomes the read end of a pipe that says "a connection waits"
        read_fd, info.wake_w = os.pipe()
        os.set_blocking(info.wake_w, False)
        os.dup2(read_fd, self.fileno(), inheritable=inheritable)
        os.close(read_fd)
        info.shadow = socket.socket(self.family, socket.SOCK_STREAM)
        _install_rr_hooks()
    self.settimeout(timeout)  # the new file gets the app's blocking mode
    WORKER.sockets[self] = info
    _clustered_ids[id(self)] = (weakref.ref(self), info)
    _report_if_uvloop(info)
    return None


def _report_if_uvloop(info: ClusteredSocket) -> None:
    # uvloop calls listen(2) in C, never socket.listen: the bind is the last we see
    if _uvloop_running():
        info.listening = True
        _report_listening(info)


def _listen(self: socket.socket, backlog: int | None = None) -> None:
    info = _clustered(self)
    if info is None:
        if backlog is None:
            return _real_listen(self)
        return _real_listen(self, backlog)
    if info.policy == "reuseport":
        if backlog is None:
            _real_listen(self)
        else:
            _real_listen(self, backlog)
    # shared / rr: the primary listens with its own backlog (an app's small backlog,
    # socketserver's 5, must not shrink the queue every worker shares)
    if not info.listening:
        info.listening = True
        _report_listening(info)
    return None


def _report_listening(info: ClusteredSocket) -> None:
    assert WORKER is not None
    name = info.sockname
    if info.family == socket.AF_UNIX:
        details: dict[str, Any] = {"address": name, "port": None, "family": "unix"}
    else:
        details = {"address": name[0], "port": name[1],
                   "family": "IPv6" if info.family == socket.AF_INET6 else "IPv4"}
    details["policy"] = info.policy
    WORKER.state = "listening"
    try:
        WORKER.channel.send({"act": "listening", "key": info.key, "info": details})
    except ChannelClosed:
        pass
    WORKER.emit("listening", details)


def _getsockname(self: socket.socket) -> Any:
    info = _clustered(self)
    if info is not None and info.policy == "rr":
        return info.sockname
    return _real_getsockname(self)


def _setsockopt(self: socket.socket, *args: Any) -> None:
    info = _clustered(self)
    if info is not None and info.policy == "rr":
        assert info.shadow is not None
        return _real_setsockopt(info.shadow, *args)
    return _real_setsockopt(self, *args)


def _getsockopt(self: socket.socket, *args: Any) -> Any:
    info = _clustered(self)
    if info is not None and info.policy == "rr":
        assert info.shadow is not None
        return _real_getsockopt(info.shadow, *args)
    return _real_getsockopt(self, *args)


def _shutdown(self: socket.socket, how: int) -> None:
    info = _clustered(self)
    if info is not None and info.policy in ("rr", "shared"):
        return None  # a listener shared with other workers is not this worker's to shut
    return _real_shutdown(self, how)


def _accept(self: socket.socket) -> tuple[socket.socket, Any]:
    info = _clustered(self)
    if info is None:
        return _real_accept(self)
    if info.policy != "rr":
        if self.gettimeout() is None:
            # a blocking accept() waits inside the kernel on the shared queue itself, and
            # would still take a connection after the listener is quieted: say where we
            # are, so that quieting can interrupt the wait (see _wake_accepting)
            ident = threading.get_ident()
            with _in_accept_lock:
                _in_accept[ident] = _in_accept.get(ident, 0) + 1
            try:
                conn, address = _real_accept(self)
            finally:
                with _in_accept_lock:
                    if _in_accept[ident] == 1:
                        del _in_accept[ident]
                    else:
                        _in_accept[ident] -= 1
        else:
            conn, address = _real_accept(self)
        _track(conn, address)
        return conn, address
    timeout = self.gettimeout()
    with info.cond:
        if not info.queue:
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "no connection waiting")
            if not info.cond.wait_for(lambda: info.queue or info.closed, timeout):
                raise TimeoutError("timed out")
            if info.closed:
                raise OSError(errno.EBADF, "the socket is closed")
        fd, address, seq = info.queue.popleft()
        try:
            os.read(self.fileno(), 1)  # one byte per queued connection
        except (BlockingIOError, OSError):
            pass
    assert WORKER is not None
    try:
        WORKER.channel.send({"act": "newconn_ack", "key": info.key, "seq": seq,
                             "accepted": True})
    except ChannelClosed:
        pass
    conn = socket.socket(self.family, socket.SOCK_STREAM, self.proto, fileno=fd)
    if socket.getdefaulttimeout() is None and self.gettimeout():
        conn.setblocking(True)
    if isinstance(address, list):
        address = tuple(address)
    _track(conn, address)
    return conn, address


# ---- draining keep-alive connections when the worker leaves ----------------------

_tracked: dict[int, tuple[weakref.ref[socket.socket], Any]] = {}
_tracked_lock = threading.Lock()
_drainer: threading.Thread | None = None


def _track(conn: socket.socket, address: Any) -> None:
    """Remember a connection this worker accepted from a clustered listener, until the
    socket object is gone (kept for ever, the entries grew a uvicorn worker by ~20 bytes
    a request: bench/uvicorn_close.py)."""
    key = id(conn)
    with _tracked_lock:
        _tracked[key] = (weakref.ref(conn, lambda ref: _untrack(key, ref)), address)
        # an id is an address: a new connection may reuse one that said close
        _closing_said.discard(key)


def _untrack(key: int, ref: weakref.ref[socket.socket]) -> None:
    """A tracked socket object is being freed (its weakref's callback, in any thread, so
    no lock: no other object can have its id before it is freed)."""
    entry = _tracked.get(key)
    if entry is not None and entry[0] is ref:
        _tracked.pop(key, None)
        _closing_said.discard(key)


# threads inside a blocking accept() on a shared listener (ident -> depth)
_in_accept: dict[int, int] = {}
_in_accept_lock = threading.Lock()
# sent to those threads when the listener is quieted: the interrupted accept() is
# retried by Python (PEP 475) on the same fd number, which then names the quiet socket
_WAKE_SIGNAL = signal.SIGURG
_wake_installed = False


def _on_wake(signum: int, frame: Any) -> None:
    pass


def _install_wake_signal() -> None:
    """Give SIGURG a no-op handler (its default is to be ignored, which would not
    interrupt a system call). Only from the main thread, only if the app has none."""
    global _wake_installed
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(_WAKE_SIGNAL) in (signal.SIG_DFL, None):
            signal.signal(_WAKE_SIGNAL, _on_wake)
        _wake_installed = True
    except (ValueError, OSError):
        pass


def _wake_accepting() -> None:
    """Interrupt every thread waiting in accept() on a (now quieted) shared listener."""
    if not _wake_installed:
        return
    me = threading.get_ident()
    with _in_accept_lock:
        waiting = [ident for ident in _in_accept if ident != me]
    for ident in waiting:
        try:
            signal.pthread_kill(ident, _WAKE_SIGNAL)
        except (ProcessLookupError, OSError):
            pass


_draining = False
_closing_said: set[int] = set()  # ids of connections whose last response said close
_GRACE_S = 1.0  # then idle connections are shut even if no response could say so


def _send(self: socket.socket, data: Any, flags: int = 0) -> int:
    if _draining and id(self) in _tracked and id(self) not in _closing_said:
        changed = _say_close(self, data)
        if changed is not None:
            _push(self, changed, flags)
            return len(data)
    return _real_send(self, data, flags)


def _sendall(self: socket.socket, data: Any, flags: int = 0) -> None:
    if _draining and id(self) in _tracked and id(self) not in _closing_said:
        changed = _say_close(self, data)
        if changed is not None:
            data = changed
    return _real_sendall(self, data, flags)


def _say_close(conn: socket.socket, data: Any) -> bytes | None:
    """The HTTP/1.1 response head in `data` with `Connection: close` added, or None.

    Only while the worker is leaving: the client then ends a keep-alive connection
    itself after this response, so no request of its races our closing it.
    """
    head = bytes(data[:8192])
    if not head.startswith(b"HTTP/1.1 "):
        return None
    end = head.find(b"\r\n\r\n")
    first = head.find(b"\r\n")
    if end < 0 or first < 0:
        return None
    lower = head[:end].lower()
    if b"\r\nconnection:" in lower:
        if b"\r\nconnection: close" in lower:
            _closing_said.add(id(conn))
        return None
    _closing_said.add(id(conn))
    raw = bytes(data)
    return raw[:first + 2] + b"Connection: close\r\n" + raw[first + 2:]


def _push(conn: socket.socket, data: bytes, flags: int) -> None:
    """Send all of data, waiting (briefly) on a non-blocking socket: a response head."""
    import select

    view = memoryview(data)
    deadline = 5.0
    while view:
        try:
            sent = _real_send(conn, view, flags)
        except (BlockingIOError, InterruptedError):
            if not select.select([], [conn], [], deadline)[1]:
                raise TimeoutError("could not send the response head") from None
            continue
        view = view[sent:]


def start_draining() -> None:
    """Once the worker takes no new connections, end its keep-alive connections.

    The next HTTP/1.1 response on each says `Connection: close`, so the client ends the
    connection itself and sends nothing more on it; then, with no request bytes waiting,
    the connection is shut for reading, so the server's next read sees the end of the
    stream and it closes. Connections that had no response to carry the word within a
    second are shut the same way when idle. The server's code is not touched.
    """
    global _drainer, _draining
    if _drainer is not None:
        return
    _draining = True
    # from now on a response says `Connection: close` (not hooked before: install_hook)
    socket.socket.send = _send  # type: ignore[method-assign,assignment]
    socket.socket.sendall = _sendall  # type: ignore[method-assign,assignment]
    _drainer = threading.Thread(target=_drain_loop, daemon=True, name="corral-cluster-drain")
    start_helper(_drainer)


def _drain_loop() -> None:
    import time

    started = time.monotonic()
    while True:
        with _tracked_lock:
            entries = list(_tracked.items())
        if not entries:
            return
        late = time.monotonic() - started > _GRACE_S
        for key, (ref, address) in entries:
            conn = ref()
            if conn is None or conn.fileno() < 0:
                done = True
            elif key in _closing_said or late:
                # the client was told (or had its chance): an idle connection can go
                done = _drain_one(conn, address)
            else:
                done = False
            if done:
                with _tracked_lock:
                    _tracked.pop(key, None)
                    _closing_said.discard(key)
        time.sleep(0.005)


def _drain_one(conn: socket.socket, address: Any) -> bool:
    """True when the connection is done with (closed by the peer, or now shut for reading)."""
    fd = conn.fileno()
    if fd < 0:
        return True
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError:
        return True
    try:
        try:
            peer = probe.getpeername()
        except OSError:
            return True
        if address and isinstance(peer, tuple) and tuple(peer[:2]) != tuple(address)[:2]:
            return True  # the fd was closed and reused meanwhile: not ours any more
        try:
            waiting = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            waiting = None
        except OSError:
            return True
        if waiting == b"":
            return True  # the client closed it
        if waiting:
            return False  # a request is waiting: let the server read it first
        try:
            _real_shutdown(probe, socket.SHUT_RD)
        except OSError:
            pass
        return True
    finally:
        probe.close()


def _close(self: socket.socket) -> None:
    info = _clustered(self)
    if info is not None and not info.closed:
        _forget(self, info, notify=True)
    return _real_close(self)


def _forget(sock: socket.socket, info: ClusteredSocket, notify: bool) -> None:
    """This worker stops serving a clustered address; queued rr connections go back."""
    info.closed = True
    if info.policy == "rr":
        with info.cond:
            returned = list(info.queue)
            info.queue.clear()
            info.cond.notify_all()
        assert WORKER is not None
        for fd, _address, seq in returned:
            os.close(fd)
            try:
                WORKER.channel.send({"act": "newconn_ack", "key": info.key, "seq": seq,
                                     "accepted": False})
            except ChannelClosed:
                pass
        if info.wake_w is not None:
            os.close(info.wake_w)
            info.wake_w = None
        if info.shadow is not None:
            info.shadow.close()
    if notify and WORKER is not None:
        try:
            WORKER.channel.send({"act": "close", "key": info.key})
        except ChannelClosed:
            pass


def stop_accepting(sock: socket.socket, info: ClusteredSocket) -> None:
    """Make the app's listener quiet without closing it under the app's feet.

    shared: its fd now refers to a fresh listener that nobody connects to, so the
    shared queue is left to the other workers; rr: the primary already stopped
    handing over, and what was queued here goes back.
    """
    if info.closed:
        return
    _forget(sock, info, notify=True)
    if info.policy == "shared" and sock.fileno() >= 0:
        quiet = socket.socket(info.family, socket.SOCK_STREAM)
        try:
            if info.family == socket.AF_UNIX:
                _real_bind(quiet, "")  # autobind: an abstract name nobody knows
            else:
                _real_bind(quiet, ("::1", 0) if info.family == socket.AF_INET6
                           else ("127.0.0.1", 0))
            _real_listen(quiet, 1)
            timeout = sock.gettimeout()
            os.dup2(quiet.fileno(), sock.fileno(), inheritable=sock.get_inheritable())
            sock.settimeout(timeout)
        except OSError as exc:
            log.warning("could not quiet a shared listener: %s", exc)
        finally:
            quiet.close()


def _on_newconn(message: dict[str, Any], fds: list[int]) -> None:
    assert WORKER is not None
    key = message["key"]
    target = None
    for sock, info in list(WORKER.sockets.items()):
        if info.key == key and info.policy == "rr" and not info.closed:
            target = (sock, info)
            break
    if target is None or not fds:
        for fd in fds:
            os.close(fd)
        WORKER.channel.send({"act": "newconn_ack", "key": key, "seq": message["seq"],
                             "accepted": False})
        return
    _, info = target
    with info.cond:
        info.queue.append((fds[0], message.get("address"), message["seq"]))
        info.cond.notify()
        if info.wake_w is not None:
            try:
                os.write(info.wake_w, b"c")
            except BlockingIOError:
                pass
    for fd in fds[1:]:
        os.close(fd)


# ---- the reader thread ---------------------------------------------------------

def _reader(worker: WorkerSide) -> None:
    channel = worker.channel
    while True:
        try:
            received = channel.recv(block=True)
        except ChannelClosed:
            break
        if received is None:
            continue
        message, fds = received
        try:
            if "user" in message:
                worker.emit("message", message["user"], fds)
            elif channel.dispatch_reply(message, fds):
                pass
            elif message.get("act") == "newconn":
                _on_newconn(message, fds)
            elif message.get("act") == "quiet":
                for sock, info in list(worker.sockets.items()):
                    stop_accepting(sock, info)
                _wake_accepting()
                start_draining()
                channel.send({"ack": message.get("seq")})
            elif message.get("act") == "disconnect":
                worker._leave(primary_initiated=True)
                return
            else:
                for fd in fds:
                    os.close(fd)
        except Exception:  # noqa: BLE001 - keep reading whatever one message did
            log.exception("corral.cluster: worker message failed")
    channel.fail_pending()
    if worker.exited_after_disconnect:
        return
    # the primary is gone without a disconnect
    if os.environ.get(ENV_ORPHAN) == "keep":
        worker.state = "orphaned"
        if _reconnect(worker):
            _reader(worker)
            return
        if worker.state != "refused":
            return
    worker.emit("disconnect")
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Timer(5.0, os._exit, args=(1,)).start()


def _reconnect(worker: WorkerSide) -> bool:
    """Keep serving; knock every half second at the next corral daemon's door, then hand it
    our listeners back and go on with it as our primary."""
    import time

    path = os.environ.get(ENV_DOOR)
    if not path:
        return False
    while True:
        time.sleep(0.5)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        dir_fd = None
        try:
            address = path
            if len(os.fsencode(path)) > 107:  # past AF_UNIX's limit: through our folder fd
                dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY
                                 | os.O_CLOEXEC)
                address = f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        channel = Channel(sock)
        entries = []
        fds = []
        for app_sock, info in list(worker.sockets.items()):
            if info.closed:
                continue
            entry: dict[str, Any] = {"key": info.key, "policy": info.policy,
                                     "info": {"address": info.sockname, "policy": info.policy}}
            if info.policy == "shared" and app_sock.fileno() >= 0:
                entry["fd"] = True
                fds.append(app_sock.fileno())
            entries.append(entry)
        try:
            channel.send({"act": "reattach", "pid": os.getpid(), "sockets": entries}, fds)
            sock.settimeout(10)
            reply = channel.recv(block=True)
            sock.settimeout(None)
        except (ChannelClosed, OSError):
            channel.close()
            continue
        if reply and reply[0].get("act") == "refused":
            # the daemon of this home does not count us among its workers (a reload its
            # predecessor did not finish): nobody will ever be our primary, so we leave
            channel.close()
            log.info("corral.cluster: worker %d is not one of the daemon's; exiting",
                     os.getpid())
            worker.state = "refused"
            return False
        if not reply or reply[0].get("act") != "reattached":
            channel.close()
            continue
        worker.id = int(reply[0].get("worker_id", worker.id))
        worker.channel = channel
        worker.state = "listening"
        log.info("corral.cluster: worker %d reattached to a new primary", os.getpid())
        return True


def install_hook() -> None:
    """The hooks every worker needs. Those only rr sockets need (_install_rr_hooks) and
    those of draining (start_draining) go in when first needed: a hooked method is a
    Python call on every connection, and with one connection per request the other five
    cost a uvicorn worker ~4 % of its CPU (bench/uvicorn_close.py)."""
    socket.socket.bind = _bind  # type: ignore[method-assign,assignment]
    socket.socket.listen = _listen  # type: ignore[method-assign,assignment]
    socket.socket.accept = _accept  # type: ignore[method-assign,assignment]
    socket.socket.close = _close  # type: ignore[method-assign,assignment]
    socket.socket.shutdown = _shutdown  # type: ignore[method-assign,assignment]


def _install_rr_hooks() -> None:
    """An rr socket answers getsockname/setsockopt/getsockopt for the listener it stands
    for (its shadow)."""
    socket.socket.getsockname = _getsockname  # type: ignore[method-assign,assignment]
    socket.socket.setsockopt = _setsockopt  # type: ignore[method-assign,assignment]
    socket.socket.getsockopt = _getsockopt  # type: ignore[method-assign,assignment]


def setup() -> WorkerSide:
    """Called once in a worker: by the bootstrap, or on first use of cluster.worker."""
    global WORKER
    if WORKER is not None:
        return WORKER
    worker_id = int(os.environ[ENV_WORKER_ID])
    fd = int(os.environ[ENV_IPC_FD])
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    WORKER = WorkerSide(worker_id, Channel(sock))
    # the variables must not make a subprocess of the app believe it is a worker
    for name in (ENV_WORKER_ID, ENV_IPC_FD):
        os.environ.pop(name, None)
    install_hook()
    _install_wake_signal()
    start_helper(threading.Thread(target=_reader, args=(WORKER,), daemon=True,
                                  name="corral-cluster-ipc"))
    WORKER.channel.send({"act": "online"})
    return WORKER
