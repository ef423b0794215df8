"""The primary side of corral.cluster (Node's internal/cluster/primary.js).

The primary forks workers (or attaches workers someone else spawned, as the
corral daemon does), answers their requests for listeners (queryServer),
hands out connections under the rr policy, and turns what workers say into
events: fork, online, listening, disconnect, exit, message.

A worker speaks one of two protocols: corral's (a Python worker, ipc.Channel)
or Node's (an unmodified `node app.js`, node.NodeWorkerChannel). The channel
translates; the primary and the listener policies are the same for both.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import warnings
from typing import Any

from corral.cluster.events import EventEmitter
from corral.cluster.handles import (
    DEFAULT_BACKLOG,
    POLICIES,
    Handle,
    ReusePortHandle,
    RoundRobinHandle,
    SharedHandle,
    key_of,
    make_listener,
)
from corral.cluster.iothread import IOThread, start_helper
from corral.cluster.ipc import Channel, ChannelClosed
from corral.cluster.node import (
    NODE_ENV_NAMES,
    NodeWorkerChannel,
    channel_pair,
    is_node_script,
    node_env,
)

log = logging.getLogger("corral.cluster")

ENV_WORKER_ID = "CORRAL_CLUSTER_WORKER_ID"
ENV_IPC_FD = "CORRAL_CLUSTER_IPC_FD"
ENV_POLICY = "CORRAL_CLUSTER_SCHED_POLICY"
ENV_LISTEN_FDS = "CORRAL_CLUSTER_LISTEN_FDS"
DEFAULT_POLICY = "shared"
PROTOCOLS = ("python", "node")


class ClusterError(ValueError):
    pass


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ClusterError(f"unknown scheduling policy {policy!r}; valid policies: "
                           f"{', '.join(POLICIES)}")
    return policy


def parse_listen(spec: Any) -> tuple[int, Any]:
    """'127.0.0.1:8000', '[::1]:8000', ':8000', 8000, 'unix:/path' -> (family, address)."""
    if isinstance(spec, int):
        return socket.AF_INET, ("0.0.0.0", spec)
    if isinstance(spec, tuple):
        family = socket.AF_INET6 if ":" in spec[0] else socket.AF_INET
        return family, spec
    text = str(spec)
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[5:]
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"listen address {text!r}: expected HOST:PORT, :PORT or unix:PATH")
    if host.startswith("["):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host or "0.0.0.0", int(port))


class Worker(EventEmitter):
    """A worker as the primary sees it (Node's Worker)."""

    def __init__(self, primary: Primary, worker_id: int, channel: Channel | NodeWorkerChannel,
                 process: Any = None) -> None:
        super().__init__()
        self.primary = primary
        self.id = worker_id
        self.channel = channel
        self.protocol: str = getattr(channel, "protocol", "python")
        self.process = process  # a subprocess.Popen (anything with .pid) or None
        self.pid: int | None = getattr(process, "pid", None)
        self.state = "none"
        self.exited_after_disconnect: bool | None = None
        self.exit_code: int | None = None
        self.signal_code: str | None = None
        self.connected = True
        self.dead = False
        self.listening: list[dict[str, Any]] = []
        self._seq = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Worker id={self.id} pid={self.pid} state={self.state}>"

    def next_seq(self) -> int:
        return next(self._seq)

    def send(self, message: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Send any JSON-able object (and fds; one at most to a Node worker) to the worker:
        `cluster.worker.on("message")` in Python, `process.on('message')` in Node.
        Raises ChannelClosed when the worker is gone, node.ChannelFull when a Node worker
        has not read what it was sent (the message is then not queued)."""
        self.channel.send({"user": message}, fds)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.pid and not self.dead:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    destroy = kill

    def disconnect(self) -> None:
        """Stop giving it connections, ask it to close its listeners and leave."""
        if not self.connected:
            return
        self.exited_after_disconnect = True
        self.primary._remove_from_handles(self, requeue=False)
        try:
            self.channel.send({"act": "disconnect"})
        except ChannelClosed:
            pass

    def is_dead(self) -> bool:
        return self.dead

    def is_connected(self) -> bool:
        return self.connected


class Primary(EventEmitter):
    """One cluster: its settings, workers and listeners."""

    def __init__(self, policy: str | None = None, backlog: int = DEFAULT_BACKLOG,
                 standalone: bool = True) -> None:
        """standalone: a script's own primary (Node's lifetime rules, stop workers at exit);
        corral's daemon passes False and manages its workers' lives itself."""
        super().__init__()
        self.standalone = standalone
        self.scheduling_policy = check_policy(
            policy or os.environ.get(ENV_POLICY) or DEFAULT_POLICY)
        self.backlog = backlog
        self.settings: dict[str, Any] = {}
        self.workers: dict[int, Worker] = {}
        self.handles: dict[tuple[Any, ...], Handle] = {}
        self.listen_socks: list[socket.socket] = []
        self._ids = itertools.count(1)
        self._table_lock = threading.RLock()
        self._setup_done = False
        self.io = IOThread(daemon=not standalone)
        self.io.keep_running = self._keep_running
        self._frozen_policy = False
        self.warnings: list[str] = []

    # ---- settings and forking ------------------------------------------------

    def setup_primary(self, exec: str | None = None, args: list[str] | None = None,
                      exec_argv: list[str] | None = None, cwd: str | None = None,
                      silent: bool = False, stdio: tuple[Any, Any, Any] | None = None,
                      env: dict[str, str] | None = None, listen: list[Any] | None = None,
                      python: str | None = None, node: str | None = None,
                      protocol: str | None = None) -> None:
        """Settings for the next forks (Node's setupPrimary). `listen` pre-binds addresses
        that workers receive as systemd socket activation (LISTEN_FDS, fds from 3).
        An exec ending in .js/.mjs/.cjs (or protocol="node") runs as `node [exec_argv]
        exec args`, a Node cluster worker (`node` names the binary, default from PATH)."""
        main = sys.modules.get("__main__")
        default_exec = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv else "")
        merged = {
            "exec": default_exec,
            "args": list(sys.argv[1:]),
            "exec_argv": [],
            "cwd": None,
            "silent": False,
            "stdio": None,
            "env": None,
            "python": sys.executable,
            "node": None,
            "protocol": None,
            **self.settings,
        }
        if protocol is not None and protocol not in PROTOCOLS:
            raise ClusterError(f"unknown worker protocol {protocol!r}; valid: "
                               f"{', '.join(PROTOCOLS)}")
        for key, value in (("exec", exec), ("args", args), ("exec_argv", exec_argv),
                           ("cwd", cwd), ("stdio", stdio), ("env", env), ("python", python),
                           ("node", node), ("protocol", protocol)):
            if value is not None:
                merged[key] = value
        merged["silent"] = silent or self.settings.get("silent", False)
        if listen is not None:
            for sock in self.listen_socks:
                sock.close()
            self.listen_socks = []
            for spec in listen:
                family, address = parse_listen(spec)
                self.listen_socks.append(make_listener(family, address, backlog=self.backlog))
            merged["listen"] = list(listen)
        self.settings = merged
        self._setup_done = True
        self.emit("setup", dict(merged))

    def _freeze(self) -> None:
        if not self._frozen_policy:
            self._frozen_policy = True
            check_policy(self.scheduling_policy)
            if self.scheduling_policy == "reuseport":
                from corral.cluster.handles import migrate_warning

                message = migrate_warning()
                if message:
                    warnings.warn(message, RuntimeWarning, stacklevel=3)
                    self.warnings.append(message)
            self.io.start()
            if self.standalone:
                atexit.register(self._stop_workers_at_exit)
                self._watch_uncaught()

    def worker_protocol(self) -> str:
        """The protocol of the next fork: settings' protocol, else by exec's extension."""
        chosen = self.settings.get("protocol")
        if chosen:
            return str(chosen)
        return "node" if is_node_script(self.settings.get("exec") or "") else "python"

    def node_argv(self) -> list[str]:
        settings = self.settings
        node = settings.get("node") or shutil.which("node")
        if not node:
            raise ClusterError(f"{settings['exec']}: a Node worker needs `node`, which is not "
                               f"on PATH (setup_primary(node=...) names it)")
        return [node, *settings["exec_argv"], settings["exec"], *settings["args"]]

    def worker_argv(self) -> list[str]:
        settings = self.settings
        if self.worker_protocol() == "node":
            return self.node_argv()
        boot = [settings["python"], *settings["exec_argv"], "-m", "corral.cluster.bootstrap"]
        if self.listen_socks:
            boot += ["--listen-fds", ",".join(str(s.fileno()) for s in self.listen_socks)]
        return [*boot, "--", settings["exec"], *settings["args"]]

    def fork(self, env: dict[str, str] | None = None) -> Worker:
        """Start a worker running the primary's script (or settings.exec) and return it."""
        if not self._setup_done:
            self.setup_primary()
        self._freeze()
        protocol = self.worker_protocol()
        argv = self.worker_argv()
        worker_id = next(self._ids)
        base_env = {k: v for k, v in os.environ.items() if k not in NODE_ENV_NAMES}
        base_env.update(self.settings.get("env") or {})
        base_env.update(env or {})
        if protocol == "node":
            parent_end, child_end = channel_pair()
            child_env = {**base_env, **node_env(child_end.fileno(), worker_id)}
            pass_fds = [child_end.fileno()]
        else:
            parent_end, child_end = Channel.pair()
            child_env = {**base_env, ENV_WORKER_ID: str(worker_id),
                         ENV_IPC_FD: str(child_end.fileno()), ENV_POLICY: self.scheduling_policy}
            pass_fds = [child_end.fileno(), *(s.fileno() for s in self.listen_socks)]
        stdio = self.settings.get("stdio")
        if stdio is None and self.settings.get("silent"):
            stdio = (subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE)
        stdin, stdout, stderr = stdio or (None, None, None)
        try:
            process = subprocess.Popen(
                argv, env=child_env, cwd=self.settings.get("cwd"), pass_fds=pass_fds,
                stdin=stdin, stdout=stdout, stderr=stderr,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        worker = self.attach(worker_id, parent_end, process, protocol=protocol)
        start_helper(threading.Thread(target=self._reap, args=(worker,), daemon=True,
                                      name=f"corral-cluster-reap-{worker_id}"))
        return worker

    def next_worker_id(self) -> int:
        return next(self._ids)

    def quiet(self, worker: Worker, timeout: float = 2.0) -> None:
        """Stop giving a worker connections and have it quiet its listeners (before a stop):
        rr takes it off the free list; shared points its fd at a listener nobody knows."""
        self._remove_from_handles(worker, requeue=False)
        if worker.connected:
            try:
                worker.channel.request({"act": "quiet"}, timeout=timeout)
            except (ChannelClosed, TimeoutError):
                pass

    def reattach(self, sock: socket.socket, sockets: list[dict[str, Any]], fds: list[int],
                 process: Any = None) -> Worker:
        """A worker that outlived its primary came back (to a new corral daemon): take its
        listeners (fds, in the order of `sockets` that have one) and serve it again."""
        fd_iter = iter(fds)
        with self._table_lock:
            for entry in sockets:
                key = key_of({"family": entry["key"][0], "address": entry["key"][1],
                              "v6only": entry["key"][2]})
                fd = next(fd_iter) if entry.get("fd") else None
                if key in self.handles:
                    if fd is not None:
                        os.close(fd)
                    continue
                if entry["policy"] == "shared" and fd is not None:
                    self.handles[key] = SharedHandle.adopt(key, fd, self.backlog)
                else:
                    if fd is not None:
                        os.close(fd)
                    query = {"family": key[0], "address": key[1], "v6only": key[2]}
                    try:
                        self.handles[key] = self._new_handle(key, query)
                    except OSError as exc:
                        log.error("cannot listen again on %s: %s", key[1], exc)
        worker = self.attach(self.next_worker_id(), sock, process)
        with self._table_lock:
            for entry in sockets:
                key = key_of({"family": entry["key"][0], "address": entry["key"][1],
                              "v6only": entry["key"][2]})
                handle = self.handles.get(key)
                if handle is not None:
                    handle.add(worker)
                    worker.listening.append(entry.get("info", {}))
        return worker

    def attach(self, worker_id: int, sock: socket.socket, process: Any = None,
               protocol: str = "python") -> Worker:
        """Adopt a worker spawned by someone else: its end of the channel and its process
        (anything with .pid, or None; then call worker_exited() when it ends).

        protocol="python": a corral worker (`python -m corral.cluster.bootstrap`, the channel
        from ipc.Channel.pair()); protocol="node": a `node app.js` given node.channel_pair()'s
        child end with node.node_env(fd_in_child, worker_id)."""
        if protocol not in PROTOCOLS:
            raise ClusterError(f"unknown worker protocol {protocol!r}; valid: "
                               f"{', '.join(PROTOCOLS)}")
        self._freeze()
        channel: Channel | NodeWorkerChannel = (
            NodeWorkerChannel(sock) if protocol == "node" else Channel(sock))
        worker = Worker(self, worker_id, channel, process)
        with self._table_lock:
            self.workers[worker_id] = worker
        callback = self._io_callback(worker)
        self.io.add_reader(channel.sock, callback)
        if isinstance(channel, NodeWorkerChannel):
            channel.raw.on_write_interest = lambda: self._update_interest(worker, callback)
        self._emit_both("fork", worker)
        return worker

    def _io_callback(self, worker: Worker) -> Any:
        channel = worker.channel

        def on_event() -> None:
            if isinstance(channel, NodeWorkerChannel) and channel.raw.wants_write:
                try:
                    channel.flush()
                except ChannelClosed:
                    pass  # shows as the end of stream when reading
            self._on_readable(worker)

        return on_event

    def _update_interest(self, worker: Worker, callback: Any) -> None:
        """Watch a Node channel for writability while it has output it could not write."""
        channel = worker.channel

        def apply() -> None:
            if channel.closed:
                return
            events = selectors.EVENT_READ
            if isinstance(channel, NodeWorkerChannel) and channel.raw.wants_write:
                events |= selectors.EVENT_WRITE
            try:
                self.io.selector.modify(channel.sock, events, callback)
            except (KeyError, ValueError, OSError):
                pass

        if self.io.in_thread():
            apply()
        else:
            self.io.call_soon(apply)

    def _reap(self, worker: Worker) -> None:
        code = worker.process.wait()
        self.io.call_soon(self.worker_exited, worker, code)

    def worker_exited(self, worker: Worker, returncode: int | None) -> None:
        """The worker's process ended (returncode as subprocess gives it)."""
        if worker.dead:
            return
        worker.dead = True
        if returncode is not None and returncode < 0:
            worker.signal_code = signal.Signals(-returncode).name
        else:
            worker.exit_code = returncode
        if worker.exited_after_disconnect is None:
            worker.exited_after_disconnect = False
        worker.state = "dead"
        self._remove_from_handles(worker)
        if worker.connected:
            self._disconnected(worker)
        self._emit_both("exit", worker, worker.exit_code, worker.signal_code)
        self._forget_if_gone(worker)

    # ---- worker messages (on the I/O thread) ----------------------------------

    def _on_readable(self, worker: Worker) -> None:
        channel = worker.channel
        received: list[tuple[dict[str, Any], list[int]]] = []
        closed = False
        try:
            if isinstance(channel, NodeWorkerChannel):
                # one read per wake-up (the selector wakes again while more is waiting)
                received = channel.recv_ready()
            else:
                while len(received) < 64:
                    one = channel.recv(block=False)
                    if one is None:
                        break
                    received.append(one)
        except ChannelClosed:
            closed = True  # what came before the end is dispatched first
        for message, fds in received:
            try:
                self._dispatch(worker, message, fds)
            except Exception:  # noqa: BLE001
                log.exception("worker %d: message %r failed", worker.id, message.get("act"))
        if closed:
            self.io.remove_reader(channel.sock)
            self._disconnected(worker)

    def _dispatch(self, worker: Worker, message: dict[str, Any], fds: list[int]) -> None:
        if "user" in message:
            self._emit_both("message", worker, message["user"], fds)
            return
        if worker.channel.dispatch_reply(message, fds):
            return
        act = message.get("act")
        for fd in fds:
            os.close(fd)
        if act == "online":
            worker.state = "online"
            self._emit_both("online", worker)
        elif act == "queryServer":
            self._query_server(worker, message)
        elif act == "listening":
            worker.state = "listening"
            info = message.get("info", {})
            worker.listening.append(info)
            self._emit_both("listening", worker, info)
        elif act == "newconn_ack":
            handle = message.get("handle") or self.handles.get(
                key_of({"family": message["key"][0], "address": message["key"][1],
                        "v6only": message["key"][2]}))
            if isinstance(handle, RoundRobinHandle):
                handle.on_ack(worker, message["seq"], bool(message.get("accepted")))
        elif act == "close":
            key = message.get("key")
            if key:
                handle = self.handles.get(key_of({"family": key[0], "address": key[1],
                                                  "v6only": key[2]}))
                if handle:
                    handle.remove(worker)
        elif act == "exitedAfterDisconnect":
            worker.exited_after_disconnect = True
            worker.channel.send({"ack": message.get("seq")})
        else:
            log.warning("worker %d: unknown message %.300r, ignored", worker.id, message)

    def _query_server(self, worker: Worker, query: dict[str, Any]) -> None:
        seq = query.get("seq")
        if worker.exited_after_disconnect:
            if worker.protocol == "node":
                return  # as Node's primary: no answer (an error would crash a clean exit)
            worker.channel.send({"ack": seq, "errno": errno.ECONNABORTED,
                                 "error": "the worker is leaving"})
            return
        key = key_of(query)
        try:
            with self._table_lock:
                handle = self.handles.get(key)
                if handle is None:
                    handle = self._new_handle(key, query)
                    self.handles[key] = handle
                reply, fds = handle.add(worker)
                if handle.data is None and query.get("data") is not None:
                    handle.data = query["data"]
        except OSError as exc:
            worker.channel.send({"ack": seq, "errno": exc.errno or errno.EINVAL,
                                 "error": exc.strerror or str(exc)})
            self._emit_both("bind_error", worker, {
                "address": query.get("address"), "errno": exc.errno,
                "error": f"[Errno {exc.errno}] {exc.strerror or exc}"})
            return
        reply["policy"] = handle.policy
        reply["key"] = list(key)
        reply["data"] = handle.data
        worker.channel.send({"ack": seq, **reply}, fds)

    def _new_handle(self, key: tuple[Any, ...], query: dict[str, Any]) -> Handle:
        policy = self.scheduling_policy
        if policy == "rr":
            return RoundRobinHandle(key, query, self.backlog, self.io)
        if policy == "reuseport":
            return ReusePortHandle(key, query, self.backlog)
        return SharedHandle(key, query, self.backlog)

    def _remove_from_handles(self, worker: Worker, requeue: bool = True) -> None:
        for handle in list(self.handles.values()):
            handle.remove(worker, requeue)

    def _disconnected(self, worker: Worker) -> None:
        if not worker.connected:
            return
        worker.connected = False
        self.io.remove_reader(worker.channel.sock)  # before its fd number can be reused
        worker.channel.close()
        self._remove_from_handles(worker)
        if worker.state != "dead":
            worker.state = "disconnected"
        self._emit_both("disconnect", worker)
        self._forget_if_gone(worker)

    def _forget_if_gone(self, worker: Worker) -> None:
        # Node: a worker leaves cluster.workers once it is both disconnected and dead
        if worker.dead and not worker.connected:
            with self._table_lock:
                self.workers.pop(worker.id, None)

    def _emit_both(self, event: str, worker: Worker, *args: Any) -> None:
        worker.emit(event, *args)
        self.emit(event, worker, *args)

    # ---- the end ---------------------------------------------------------------

    def disconnect(self, timeout: float | None = None) -> None:
        """Disconnect every worker and wait (up to timeout) for them to exit; then close
        the listeners."""
        workers = list(self.workers.values())
        done = threading.Event()
        remaining = {w.id for w in workers if not w.dead}

        def on_exit(worker: Worker, *_: Any) -> None:
            remaining.discard(worker.id)
            if not remaining:
                done.set()

        self.on("exit", on_exit)
        for worker in workers:
            worker.disconnect()
        if remaining:
            done.wait(timeout)
        self.off("exit", on_exit)
        self.close_handles()

    def close_handles(self) -> None:
        with self._table_lock:
            handles, self.handles = list(self.handles.values()), {}
        for handle in handles:
            if self.io.started:
                self.io.call_soon(handle.close)
            else:
                handle.close()

    def _watch_uncaught(self) -> None:
        """An uncaught exception (Ctrl-C's KeyboardInterrupt included) ends the primary and
        its workers; only a main script that simply ends leaves the workers running."""
        previous = sys.excepthook

        def hook(*exc_info: Any) -> None:
            self._aborting = True
            self.io.call_soon(lambda: None)
            previous(*exc_info)

        self._aborting = False
        sys.excepthook = hook

    def _keep_running(self) -> bool:
        """Like Node's event loop: live workers keep the primary's process alive."""
        if not self.standalone:
            return True
        if getattr(self, "_aborting", False):
            return False
        if threading.main_thread().is_alive() and not self.io.main_done:
            return True
        return any(not w.dead for w in self.workers.values())

    def _stop_workers_at_exit(self) -> None:
        live = [w for w in self.workers.values() if not w.dead]
        for worker in live:
            worker.kill(signal.SIGTERM)
        for worker in live:
            process = worker.process
            if process is None:
                continue
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                worker.kill(signal.SIGKILL)
        self.io.stop()
