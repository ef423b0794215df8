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
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any

from corral.daemon.door import Door
from corral.daemon.follow import Follower, FollowHandler, Following
from corral.daemon.handover import Handover
from corral.daemon.metrics import TreeMetrics
from corral.daemon.peer import peer_uid
from corral.daemon.rpc import Rpc
from corral.daemon.supervisor import Instance, Supervisor
from corral.daemon.web.events import Events
from corral.model.errors import CorralError
from corral.model.states import ONLINE, RUNNING, WAITING
from corral.model.version import __version__
from corral.model.wire import HEADER, MAX_FRAME, encode, error_frame
from corral.store.home import Home, home_from_env
from corral.store.state import read_state, write_state

log = logging.getLogger("corral.daemon")



class Daemon(Rpc, Handover, Door, Following):
    """The daemon: its life, the control socket, persistence and signals; the handlers,
    the update handover, the cluster door and log following are its parts (mixins)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.metrics = TreeMetrics()
        self.save_scheduled = False
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
        """Persist the table once the current loop iteration is done (coalesces bursts)."""
        if not self.save_scheduled:
            self.save_scheduled = True
            asyncio.get_running_loop().call_soon(self.save)

    def save(self, records: list[dict[str, Any]] | None = None) -> None:
        self.save_scheduled = False
        if records is None:
            records = [i.record.to_dict() for i in self.supervisor.instances.values()]
        try:
            write_state(self.home, records, self.supervisor.next_id,
                        self.metrics_server.settings,
                        self.web_server.settings if self.web_server is not None else None)
        except OSError as exc:
            log.error("cannot persist the process list to %s: %s", self.home.state_file, exc)

    # ---- life --------------------------------------------------------------

    async def run(self, ready_fd: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.supervisor = self.make_supervisor()
        self.supervisor.on_event = self.events.on_event
        logging.getLogger().addHandler(FollowHandler(self))
        state = read_state(self.home)
        self.saved_metrics = state.metrics
        saved_web = state.web if isinstance(state.web, dict) else None
        # the door first: cluster workers that outlived the last daemon hand their
        # listeners back through it, before a restarted sibling tries to bind
        self._open_cluster_door(loop)
        to_start = self.supervisor.restore(state.records, state.next_id)
        loop.create_task(self._start_restored(to_start))
        try:
            os.unlink(self.home.socket)
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self.handle, path=self.home.socket)
        finally:
            os.umask(old_umask)
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
            writer.write(encode(error_frame(
                0, f"refused: this corral daemon belongs to uid {os.getuid()}, you are uid "
                   f"{uid}; use your own CORRAL_HOME")))
            await writer.drain()
            # let the peer send its request and read the answer before the socket closes
            try:
                await asyncio.wait_for(reader.read(65536), 1.0)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            writer.close()
            return
        try:
            while True:
                try:
                    header = await reader.readexactly(HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                (size,) = HEADER.unpack(header)
                if size > MAX_FRAME:
                    return
                request = json.loads(await reader.readexactly(size))
                if request.get("method") == "follow":
                    await self.stream_logs(request, reader, writer)
                    return
                response = await self.dispatch(request)
                writer.write(encode(response))
                await writer.drain()
                if request.get("method") == "kill":
                    self.shutdown.set()
                    return
                if request.get("method") == "update" and self.updating:
                    self._exit_for_update()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id", 0)
        method = getattr(self, f"rpc_{request.get('method')}", None)
        if method is None:
            return error_frame(rid, f"unknown method {request.get('method')!r}")
        try:
            result = await method(**request.get("params", {}))
        except CorralError as exc:
            return error_frame(rid, exc.message, exc.code)
        except Exception as exc:  # noqa: BLE001 - the daemon must survive any request
            log.error("request %s failed:\n%s", request.get("method"), traceback.format_exc())
            return error_frame(rid, f"internal error: {exc!r} (see {self.home.daemon_log})", 2)
        return {"id": rid, "result": result}

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral-daemon")
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    home = home_from_env()
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
        os.write(pid_fd, str(os.getpid()).encode())
        os.close(pid_fd)
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

