"""The daemon: one asyncio process per CORRAL_HOME.

It owns the control socket (0600, peer uid checked with SO_PEERCRED), the
process table (through the Supervisor) and its persisted copy, written
atomically after every change. Started by the client with
`python -m corral.daemon --ready-fd N`; it writes "ok" (or an error) to that
fd once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
import traceback
from typing import Any

from corral.daemon.door import Door
from corral.daemon.follow import Follower, FollowHandler, Following
from corral.daemon.handover import Handover
from corral.daemon.metrics import TreeMetrics
from corral.daemon.peer import peer_uid
from corral.daemon.requests import MAX_CONNECTIONS, Closed, check_call, read_request
from corral.daemon.rpc import Rpc
from corral.daemon.supervisor import Instance, Supervisor
from corral.daemon.web.events import Events
from corral.model.errors import CorralError
from corral.model.states import ONLINE, RUNNING, WAITING
from corral.model.validate import check_params, quote
from corral.model.version import __version__
from corral.model.wire import encode, error_frame
from corral.store.home import Home, home_from_env, unix_address
from corral.store.state import read_state, write_state

log = logging.getLogger("corral.daemon")

SAVE_RETRY_S = 5.0  # a list that could not be written is tried again this much later
NOT_PERSISTED = frozenset({"update", "kill"})  # they write the list themselves
FOLLOW_PARAMS: dict[str, Any] = {"targets": list[dict[str, Any]] | None,
                                 "types": list[str] | None}



class Daemon(Rpc, Handover, Door, Following):
    """The daemon: its life, the control socket, persistence and signals; the handlers,
    the update handover, the cluster door and log following are its parts (mixins)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.metrics = TreeMetrics()
        self.save_scheduled = False
        self.save_retry = False
        self.changes = 0  # schedule_save() calls: a request that made some persists them
        self.connections = 0  # open control connections (at most MAX_CONNECTIONS)
        self.shutdown = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.updating = False  # `corral update`: exit once the reply is sent
        self.saved_metrics: Any = None  # the metrics endpoint the last daemon served
        self.started_at = time.time()
        self.followers: list[Follower] = []
        from corral.daemon.metricsserver import MetricsServer

        self.metrics_server = MetricsServer(self.metrics_snapshot)
        self.events = Events()  # what happened to the apps, for the web dashboard
        self.web_server: Any = None  # the dashboard, once `corral web` turns it on

    # ---- persistence -------------------------------------------------------

    def schedule_save(self) -> None:
        """Persist the table once the current loop iteration is done (coalesces bursts).
        A request that changed something persists before its reply (dispatch())."""
        self.changes += 1
        if not self.save_scheduled:
            self.save_scheduled = True
            asyncio.get_running_loop().call_soon(self.save)

    def save(self, records: list[dict[str, Any]] | None = None) -> str | None:
        """Write state.json now; None, or why it could not be written (logged, and tried
        again SAVE_RETRY_S later)."""
        self.save_scheduled = False
        if records is None:
            records = [i.record.to_dict() for i in self.supervisor.instances.values()]
        try:
            write_state(self.home, records, self.supervisor.next_id,
                        self.metrics_server.settings,
                        self.web_server.settings if self.web_server is not None else None)
        except (OSError, ValueError, RecursionError) as exc:
            log.error("cannot persist the process list to %s: %s", self.home.state_file, exc)
            if not self.save_retry:
                self.save_retry = True
                asyncio.get_running_loop().call_later(SAVE_RETRY_S, self._retry_save)
            return getattr(exc, "strerror", None) or str(exc)
        return None

    def _retry_save(self) -> None:
        self.save_retry = False
        self.schedule_save()

    # ---- life --------------------------------------------------------------

    async def run(self, ready_fd: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.supervisor = self.make_supervisor()
        self.supervisor.persist = self.save
        self.supervisor.on_event = self.events.on_event
        logging.getLogger().addHandler(FollowHandler(self))
        state = read_state(self.home)
        self.saved_metrics = state.metrics
        saved_web = state.web if isinstance(state.web, dict) else None
        # the door first: cluster workers that outlived the last daemon hand their
        # listeners back through it, before a restarted sibling tries to bind
        self._open_cluster_door(loop)
        to_start = self.supervisor.restore(state.records, state.next_id)
        self.supervisor.stop_strays(state.strays)
        loop.create_task(self._start_restored(to_start))
        try:
            os.unlink(self.home.socket)
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o177)
        address, dir_fd = unix_address(self.home.socket)  # a home of any length
        try:
            self.server = await asyncio.start_unix_server(self.handle, path=address)
        finally:
            os.umask(old_umask)
            if dir_fd is not None:
                os.close(dir_fd)
        os.chmod(self.home.socket, 0o600)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, sig)
        loop.add_signal_handler(signal.SIGQUIT, self._signalled, signal.SIGQUIT)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        loop.add_signal_handler(signal.SIGUSR2, self.reopen_logs)
        metrics_port = os.environ.get("CORRAL_METRICS_PORT")
        saved = self.saved_metrics if isinstance(self.saved_metrics, dict) else None
        try:
            if metrics_port and metrics_port.isdigit():
                await self.metrics_server.start("127.0.0.1", int(metrics_port), False)
            elif saved:  # `corral metrics --port` of a previous daemon (update, crash)
                await self.metrics_server.start(str(saved["host"]), int(saved["port"]),
                                                bool(saved.get("allow_remote")))
        except (CorralError, KeyError, ValueError) as exc:
            log.error("metrics: %s", getattr(exc, "message", exc))
        if saved_web:  # `corral web` of a previous daemon (update, crash, reboot)
            try:
                await self.rpc_web("start", int(saved_web["port"]), str(saved_web["host"]),
                                   bool(saved_web.get("allow_remote")))
            except (CorralError, KeyError, ValueError) as exc:
                log.error("web dashboard: %s", getattr(exc, "message", exc))
        log.info("daemon %s ready (pid %d, home %s, %d apps)", __version__, os.getpid(),
                 self.home.root, len(self.supervisor.instances))
        self.ready()
        if ready_fd is not None:
            os.write(ready_fd, b"ok")
            os.close(ready_fd)
        await self.shutdown.wait()
        self.server.close()
        for cluster in self.supervisor.clusters.values():
            cluster.close()
        for path in (self.home.socket, self.home.cluster_socket):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        log.info("daemon exits")

    def make_supervisor(self) -> Supervisor:
        """The process table (corral-runtime's is one that writes no log file unless asked)."""
        return Supervisor(self.home, self.schedule_save, self.publish, self.following)

    def ready(self) -> None:
        """The socket listens (corral-runtime starts its apps from here)."""

    async def _start_restored(self, instances: list[Instance]) -> None:
        """Start what should run and does not; a cluster app whose other workers survived
        waits (up to 2 s) for them to hand their listeners back first."""
        waiting_for = {i.record.spec.name for i in self.supervisor.instances.values()
                       if i.record.spec.exec_mode == "cluster" and i.alive}
        if waiting_for and any(i.record.spec.name in waiting_for for i in instances):
            deadline = asyncio.get_running_loop().time() + 2.0
            while asyncio.get_running_loop().time() < deadline and any(
                    i.alive and i.proc is not None and i.proc.worker is None
                    for i in self.supervisor.instances.values()
                    if i.record.spec.name in waiting_for):
                await asyncio.sleep(0.05)
        for inst in instances:
            if not inst.alive:
                self.supervisor.launch(inst)

    def reopen_logs(self) -> int:
        """SIGUSR2 (PM2's reloadLogs): reopen every log file, after an external rotation."""
        files = list(self.supervisor.log_files.files.values())
        for file in files:
            file.reopen()
        log.info("reopened %d log files", len(files))
        return len(files)

    def _signalled(self, sig: int) -> None:
        """Signal handlers only enqueue; on_signal does the work."""
        asyncio.ensure_future(self.on_signal(sig))

    async def on_signal(self, sig: int) -> None:
        """SIGTERM/SIGINT: stop the apps, but remember them so the next daemon starts them."""
        log.info("received %s: stopping every app", signal.Signals(sig).name)
        snapshot = []
        for inst in self.supervisor.instances.values():
            data = inst.record.to_dict()
            if data["status"] in RUNNING or data["status"] == WAITING:
                data["status"] = ONLINE
            data["pid"] = 0
            snapshot.append(data)
        await asyncio.gather(*(self.supervisor.stop(i)
                               for i in list(self.supervisor.instances.values())))
        self.save(snapshot)
        self.shutdown.set()

    # ---- the control socket ------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock)
        if uid != os.getuid():
            log.warning("refused a connection from uid %d (the daemon belongs to uid %d)",
                        uid, os.getuid())
            try:
                writer.write(encode(error_frame(
                    0, f"refused: this corral daemon belongs to uid {os.getuid()}, you are "
                       f"uid {uid}; use your own CORRAL_HOME")))
                await writer.drain()
                # let the peer send its request and read the answer before the socket closes
                await asyncio.wait_for(reader.read(65536), 1.0)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            writer.close()
            return
        self.connections += 1
        try:
            if self.connections > MAX_CONNECTIONS:
                log.warning("refused a connection: %d are open already (at most %d)",
                            self.connections - 1, MAX_CONNECTIONS)
                writer.write(encode(error_frame(
                    0, f"the daemon has {MAX_CONNECTIONS} connections open already (the "
                       "limit); try again once some have closed")))
                await writer.drain()
                return
            await self._serve(reader, writer)
        except ConnectionError:
            return
        finally:
            self.connections -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests and replies, one at a time, until the peer leaves or misbehaves."""
        while True:
            try:
                request, problem = await read_request(reader)
            except Closed as closed:
                if closed.reply is not None:
                    log.warning("closed a control connection: %s", closed.reply)
                    writer.write(encode(error_frame(0, closed.reply)))
                    await writer.drain()
                return
            method = request.get("method")
            if problem:
                response = error_frame(request.get("id", 0), problem)
            elif method == "follow":
                try:
                    check_params("follow", FOLLOW_PARAMS, request.get("params", {}))
                except CorralError as exc:
                    response = error_frame(request.get("id", 0), exc.message)
                else:
                    await self.stream_logs(request, reader, writer)
                    return
            else:
                response = await self.dispatch(request)
            killed = method == "kill" and "result" in response
            try:
                frame = encode(response)
            except (CorralError, ValueError) as exc:  # text no UTF-8 can carry
                log.error("a reply to %s cannot be sent: %s", quote(method), exc)
                frame = encode(error_frame(request.get("id", 0), "internal error: the reply "
                                           f"cannot be encoded (see {self.home.daemon_log})", 2))
            try:
                writer.write(frame)
                await writer.drain()
            finally:
                if killed:  # the daemon ends whatever happens to the client (issue 12.13)
                    self.shutdown.set()
            if killed:
                return
            if method == "update" and self.updating:
                self._exit_for_update()

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request. A request that changed the list answers only once the change
        is on disk; one that cannot be persisted is an error, and what a start started is
        stopped (docs/daemon.md, "Persistence")."""
        rid = request.get("id", 0)
        name = request.get("method")
        if not isinstance(name, str) or not name.isidentifier() \
                or getattr(self, f"rpc_{name}", None) is None:
            return error_frame(rid, f"unknown method {quote(name)}")
        method = getattr(self, f"rpc_{name}")
        params = request.get("params") or {}
        changes = self.changes
        ids = set(self.supervisor.instances)
        next_id = self.supervisor.next_id
        try:
            check_call(name, method, params)
            response = {"id": rid, "result": await method(**params)}
        except CorralError as exc:
            response = error_frame(rid, exc.message, exc.code)
        except Exception as exc:  # noqa: BLE001 - the daemon must survive any request
            log.error("request %s failed:\n%s", name, traceback.format_exc())
            response = error_frame(rid, f"internal error: {quote(exc)} (see "
                                        f"{self.home.daemon_log})", 2)
        if self.changes != changes and name not in NOT_PERSISTED:
            failure = self.save()
            if failure is not None:
                return await self._not_persisted(rid, name, failure, ids, next_id)
        return response

    async def _not_persisted(self, rid: Any, name: str, failure: str, ids: set[int],
                             next_id: int) -> dict[str, Any]:
        """The change of a request could not be written: what it started is stopped and
        forgotten (a crash would leave it running untracked), the rest is reported."""
        added = [i for pm_id, i in self.supervisor.instances.items() if pm_id not in ids]
        where = f"cannot record the change in {self.home.state_file}: {failure}"
        if not added:
            return error_frame(rid, f"{where}; `{name}` was done, but a crash of the daemon "
                                    "now would undo it (free some space, then run it again)")
        await asyncio.gather(*(self.supervisor.delete(i) for i in added),
                             return_exceptions=True)
        if not set(self.supervisor.instances) - ids:
            self.supervisor.next_id = min(self.supervisor.next_id, next_id) \
                if self.supervisor.instances else 0
        self.save()
        names = ", ".join(sorted({i.record.spec.name for i in added}))
        return error_frame(rid, f"{where}; nothing was started: {names} stopped again (free "
                                "some space, or fix the folder, then start again)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral-daemon")
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    home = home_from_env()
    from corral.daemon.daemonlog import setup_logging

    setup_logging(home)  # corral.log: rotated, repeated lines held back
    import fcntl

    def fail(message: str) -> int:
        if args.ready_fd is not None:
            os.write(args.ready_fd, message.encode())
        log.error(message)
        return 1

    try:
        home.ensure()
    except CorralError as exc:
        return fail(exc.message)
    lock_fd = os.open(home.daemon_lock,
                      os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another daemon owns this home: the client will talk to that one.
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"ok")
        return 0
    for path in (home.pid_file, home.pm2_pid_file):
        pid_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(pid_fd, str(os.getpid()).encode())
        except OSError as exc:  # a full disk: the daemon runs all the same
            log.error("cannot write %s: %s", path, exc.strerror)
        os.close(pid_fd)
    from corral.daemon.limits import raise_fd_limit

    soft, _hard = raise_fd_limit()
    log.info("file descriptor limit: %d", soft)
    os.chdir("/")
    try:
        asyncio.run(Daemon(home).run(args.ready_fd))
    finally:
        for path in (home.pid_file, home.pm2_pid_file):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return 0

