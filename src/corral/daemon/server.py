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
import socket
import struct
import sys
import time
import traceback
from typing import Any

from corral.daemon.metrics import TreeMetrics
from corral.daemon.supervisor import Instance, Supervisor
from corral.model.errors import CorralError
from corral.model.names import DEFAULT_POLICY
from corral.model.spec import AppSpec
from corral.model.states import ONLINE, RUNNING, WAITING
from corral.model.targets import Entry, select
from corral.model.version import __version__
from corral.model.wire import HEADER, MAX_FRAME, encode, error_frame
from corral.store.home import Home, home_from_env
from corral.store.state import read_state, write_state

log = logging.getLogger("corral.daemon")



def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class Daemon:
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
                        self.metrics_server.settings)
        except OSError as exc:
            log.error("cannot persist the process list to %s: %s", self.home.state_file, exc)

    # ---- life --------------------------------------------------------------

    async def run(self, ready_fd: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.supervisor = Supervisor(self.home, self.schedule_save, self.publish,
                                     self.following)
        logging.getLogger().addHandler(_FollowHandler(self))
        state = read_state(self.home)
        self.saved_metrics = state.metrics
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
        log.info("daemon %s ready (pid %d, home %s, %d apps)", __version__, os.getpid(),
                 self.home.root, len(self.supervisor.instances))
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

    # ---- cluster workers of a previous daemon come back -------------------------

    def _open_cluster_door(self, loop: asyncio.AbstractEventLoop) -> None:
        """CORRAL_HOME/cluster.sock: where cluster workers that outlived their daemon knock
        to hand their listeners back (the daemon owns the listeners:
        docs/cluster-mode.md)."""
        path = self.home.cluster_socket
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        door = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o177)
        try:
            door.bind(path)
        finally:
            os.umask(old_umask)
        door.listen(64)
        door.setblocking(False)
        self.door = door
        loop.add_reader(door, self._on_knock)

    def _on_knock(self) -> None:
        try:
            conn, _ = self.door.accept()
        except (BlockingIOError, InterruptedError):
            return
        if peer_uid(conn) != os.getuid():
            conn.close()
            return
        asyncio.ensure_future(self._reattach(conn))

    async def _reattach(self, conn: socket.socket) -> None:
        from corral.cluster.ipc import Channel, ChannelClosed

        loop = asyncio.get_running_loop()
        channel = Channel(conn)

        def first_message() -> Any:
            conn.settimeout(5)
            try:
                return channel.recv(block=True)
            finally:
                conn.settimeout(None)

        try:
            received = await loop.run_in_executor(None, first_message)
        except (ChannelClosed, OSError):
            conn.close()
            return
        if not received:
            conn.close()
            return
        message, fds = received
        pid = message.get("pid")
        inst = next((i for i in self.supervisor.instances.values()
                     if i.proc is not None and i.proc.pid == pid and i.proc.alive), None)
        if inst is None or inst.record.spec.exec_mode != "cluster":
            log.warning("a cluster worker (pid %s) knocked, but it is not one of ours", pid)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        cluster = self.supervisor.cluster_of(inst.record.spec)
        worker = cluster.primary.reattach(conn, message.get("sockets", []), fds)
        assert inst.proc is not None
        inst.proc.worker = worker
        channel.send({"act": "reattached", "worker_id": worker.id})
        log.info("%s (id %d): worker pid %d is back with its listeners", inst.record.spec.name,
                 inst.record.pm_id, pid)
        self.schedule_save()

    def reopen_logs(self) -> int:
        """SIGUSR2 (PM2's reloadLogs): reopen every log file, after an external rotation."""
        files = list(self.supervisor.log_files.files.values())
        for file in files:
            file.reopen()
        log.info("reopened %d log files", len(files))
        return len(files)

    # ---- following logs ------------------------------------------------------

    def following(self) -> bool:
        return bool(self.followers)

    def publish(self, event: dict[str, Any]) -> None:
        """A log line for whoever follows (bounded queues: a slow follower loses lines,
        counted and told; the files never do)."""
        for follower in self.followers:
            if follower.wants(event):
                follower.offer(event)

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

    async def stream_logs(self, request: dict[str, Any], reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """The `follow` request turns the connection into a stream of log events."""
        params = request.get("params", {})
        try:
            ids = ({i.record.pm_id for i in self.resolve(params["targets"])}
                   if params.get("targets") else None)
        except CorralError as exc:
            writer.write(encode(error_frame(request.get("id"), exc.message, exc.code)))
            await writer.drain()
            return
        follower = Follower(ids, set(params.get("types") or ("out", "err", "daemon")))
        self.followers.append(follower)
        writer.write(encode({"id": request.get("id"), "result": "following"}))
        gone = asyncio.ensure_future(reader.read())  # the client closing ends the stream
        try:
            while not gone.done():
                getter = asyncio.ensure_future(follower.queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                batch = [getter.result()]
                while not follower.queue.empty() and len(batch) < 512:
                    batch.append(follower.queue.get_nowait())
                if follower.dropped:
                    batch.append({"dropped": follower.dropped})
                    follower.dropped = 0
                writer.write(encode({"events": batch}))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.followers.remove(follower)
            gone.cancel()

    # ---- views -------------------------------------------------------------

    def view(self, with_env: bool = False) -> list[dict[str, Any]]:
        instances = sorted(self.supervisor.instances.values(), key=lambda i: i.record.pm_id)
        roots = {i.record.pid: i.record.pid_create_time for i in instances if i.record.pid}
        sampled = self.metrics.collect(roots)
        rows = []
        for inst in instances:
            data = inst.record.to_dict()
            if not with_env:
                data["spec"]["env"] = {}
            cpu, memory = sampled.get(inst.record.pid, (0.0, 0))
            data["monit"] = {"cpu": cpu, "memory": memory}
            cluster = self.supervisor.clusters.get(inst.record.spec.name)
            data["cluster_policy"] = cluster.policy if cluster else (
                inst.record.spec.cluster_policy or DEFAULT_POLICY)
            data["attached"] = bool(inst.proc and inst.proc.worker is not None)
            data["watching"] = self.supervisor.triggers.watching(inst.record.spec.name)
            data["log_write_error"] = next((f.error for f in inst.files if f.error), None)
            data["log_dropped_bytes"] = sum(f.dropped_bytes for f in inst.files)
            rows.append(data)
        return rows

    def resolve(self, targets: list[dict[str, Any]]) -> list[Instance]:
        """Targets (name, id, namespace, script path, `all`) -> instances; unknown is an error."""
        table = self.supervisor.instances
        entries = {pm_id: Entry(i.record.spec.name, i.record.spec.namespace,
                                i.record.spec.exec_path) for pm_id, i in table.items()}
        return [table[pm_id] for pm_id in select(targets, entries)]

    # ---- RPC methods -------------------------------------------------------

    async def rpc_hello(self, version: str) -> dict[str, Any]:
        return {"version": __version__, "pid": os.getpid()}

    async def rpc_ping(self) -> str:
        return "pong"

    async def rpc_list(self, env: bool = False) -> list[dict[str, Any]]:
        return self.view(with_env=env)

    async def rpc_start(self, apps: list[dict[str, Any]]) -> dict[str, Any]:
        specs = [AppSpec.from_dict(a) for a in apps]
        for spec in specs:
            if spec.force:
                continue
            running = [i for i in self.supervisor.instances.values()
                       if i.record.spec.kind == spec.kind
                       and i.record.spec.exec_path == spec.exec_path
                       and (spec.exec_path or i.record.spec.script == spec.script)
                       and i.record.spec.args == spec.args]
            if running:
                rec = running[0].record
                raise CorralError(
                    f"{spec.script} is already managed as {rec.spec.name!r} (id {rec.pm_id}); "
                    f"use `corral restart {rec.spec.name}`, or -f to start it again"
                )
        started = []
        for spec in specs:
            started += self._add_instances(spec, spec.instances)
        await self._settled(started)
        return {"started": started, "list": self.view()}

    async def _settled(self, ids: list[int]) -> None:
        table = self.supervisor.instances
        await self.supervisor.settled([table[i] for i in ids if i in table])

    def _add_instances(self, spec: AppSpec, count: int) -> list[int]:
        """Register `count` new instances of spec and launch them (unless autostart is off)."""
        ids = []
        for _ in range(count):
            try:
                inst = self.supervisor.add(spec, self.supervisor.lowest_free_index(spec.name))
            except OSError as exc:
                raise CorralError(
                    f"cannot open the log files of {spec.name}: {exc.filename}: "
                    f"{exc.strerror}; fix the folder's permissions or choose other files "
                    "(-o/-e, or out_file/error_file in an ecosystem file)") from None
            if spec.autostart:
                self.supervisor.launch(inst)
            ids.append(inst.record.pm_id)
        return ids

    async def rpc_apply(self, apps: list[dict[str, Any]], mode: str, parallel: int = 1
                        ) -> dict[str, Any]:
        """Apps of an ecosystem file: start those not registered; for those that are,
        take the file's settings and restart them (mode restart), reload them one by
        one (mode reload) or start them if they are not running (mode start)."""
        specs = [AppSpec.from_dict(a) for a in apps]
        if mode == "reload":
            to_reload: list[Instance] = []
            new_specs: dict[int, AppSpec] = {}
            new: list[int] = []
            for spec in specs:
                existing = self.supervisor.instances_of(spec.name)
                for inst in existing:
                    # applied as each instance is reloaded: one a failed reload skips keeps
                    # the settings it runs with
                    new_specs[inst.record.pm_id] = AppSpec.from_dict(spec.to_dict())
                    to_reload.append(inst)
                if spec.instances > len(existing):
                    new += self._add_instances(spec, spec.instances - len(existing))
            return await self._reload(to_reload, parallel, started=new, new_specs=new_specs)
        started: list[int] = []
        restarted: list[int] = []
        untouched: list[int] = []
        jobs = []
        for spec in specs:
            existing = self.supervisor.instances_of(spec.name)
            if not existing:
                started += self._add_instances(spec, spec.instances)
                continue
            for inst in existing:
                if mode == "start" and inst.alive:
                    untouched.append(inst.record.pm_id)
                    continue
                inst.record.spec = AppSpec.from_dict(spec.to_dict())
                jobs.append(self.supervisor.restart(inst) if mode == "restart"
                            else self.supervisor.start_stopped(inst))
                restarted.append(inst.record.pm_id)
            if spec.instances > len(existing):
                started += self._add_instances(spec, spec.instances - len(existing))
        await asyncio.gather(*jobs)
        await self._settled(started + restarted)
        self.schedule_save()
        return {"started": started, "restarted": restarted, "untouched": untouched,
                "list": self.view()}

    async def _each(self, targets: list[dict[str, Any]], action: str) -> dict[str, Any]:
        instances = self.resolve(targets)
        operation = {
            "stop": self.supervisor.stop,
            "restart": self.supervisor.restart,
            "delete": self.supervisor.delete,
        }[action]
        await asyncio.gather(*(operation(inst) for inst in instances))
        return {"ids": [i.record.pm_id for i in instances], "list": self.view()}

    async def rpc_stop(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        for inst in self.resolve(targets):  # PM2: stop turns watching off
            if inst.record.spec.watch:
                inst.record.spec.watch = False
                self.supervisor.triggers.unwatch(inst.record.spec.name)
        result = await self._each(targets, "stop")
        self.supervisor.close_idle_clusters()  # a stopped cluster app frees its port
        return result

    async def rpc_reload(self, targets: list[dict[str, Any]], parallel: int = 1,
                         env: dict[str, str] | None = None) -> dict[str, Any]:
        """Rolling reload: `parallel` instances at a time (1 by default, PM2 does 2). With
        env (--update-env), the shell part of the apps' environment is replaced first."""
        instances = self.resolve(targets)
        new_specs = {}
        if env is not None:
            for inst in instances:
                spec = AppSpec.from_dict(inst.record.spec.to_dict())
                spec.env = {**env, **spec.env_overrides}
                new_specs[inst.record.pm_id] = spec
        return await self._reload(instances, parallel, new_specs=new_specs)

    async def _reload(self, instances: list[Instance], parallel: int,
                      started: list[int] | None = None,
                      new_specs: dict[int, AppSpec] | None = None) -> dict[str, Any]:
        if parallel < 1:
            raise CorralError(f"--parallel {parallel}: give 1 or more instances at a time")
        gate = asyncio.Semaphore(parallel)
        failures: list[str] = []

        async def one(inst: Instance) -> None:
            async with gate:
                if failures:
                    return  # a new worker failed to come up: leave the rest as they are
                failure = await self.supervisor.reload(
                    inst, (new_specs or {}).get(inst.record.pm_id))
                if failure:
                    failures.append(failure)

        await asyncio.gather(*(one(i) for i in instances))
        if started:
            await self._settled(started)
        self.schedule_save()
        forked = sorted({i.record.spec.name for i in instances
                         if i.record.spec.exec_mode != "cluster"})
        return {"ids": [i.record.pm_id for i in instances], "failures": failures,
                "started": started or [], "restarted_fork_apps": forked, "list": self.view()}

    async def rpc_scale(self, name: str, count: str) -> dict[str, Any]:
        """PM2's scale: N, +N or -N instances; new ones copy the first, lowest index reused."""
        instances = self.supervisor.instances_of(name)
        if not instances:
            raise CorralError(f"unknown app {name!r}; `corral list` shows what exists")
        text = str(count).strip()
        try:
            number = int(text)
        except ValueError:
            raise CorralError(f"scale {name} {text!r}: give a number, +N or -N") from None
        target = len(instances) + number if text[:1] in "+-" else number
        if target < 0:
            raise CorralError(f"scale {name} {text}: {name} has {len(instances)} instances")
        added: list[int] = []
        removed: list[int] = []
        if target > len(instances):
            template = instances[0].record.spec
            spec = AppSpec.from_dict(template.to_dict())
            spec.instances = target
            for inst in instances:
                inst.record.spec.instances = target
            added = self._add_instances(spec, target - len(instances))
            await self._settled(added)
        elif target < len(instances):
            doomed = sorted(instances, key=lambda i: i.record.instance_index)[target:]
            await asyncio.gather(*(self.supervisor.delete(i) for i in doomed))
            removed = [i.record.pm_id for i in doomed]
            for inst in instances:
                inst.record.spec.instances = target
        self.schedule_save()
        return {"added": added, "removed": removed, "list": self.view()}

    async def rpc_restart(self, targets: list[dict[str, Any]],
                          env: dict[str, str] | None = None,
                          toggle_watch: bool = False) -> dict[str, Any]:
        if toggle_watch:  # PM2's `restart --watch`: on if it was off, off if it was on
            instances = self.resolve(targets)
            for name in {i.record.spec.name for i in instances}:
                on = self.supervisor.triggers.watching(name)
                for inst in instances:
                    if inst.record.spec.name == name:
                        inst.record.spec.watch = False if on else (
                            inst.record.spec.watch or True)
                if on:
                    self.supervisor.triggers.unwatch(name)
        result = await self._restart(targets, env)
        if toggle_watch:
            for inst in self.resolve(targets):
                self.supervisor.triggers.watch(inst)
        await self._settled(result["ids"])
        result["list"] = self.view()
        return result

    async def _restart(self, targets: list[dict[str, Any]],
                       env: dict[str, str] | None = None) -> dict[str, Any]:
        """Restart; with env (--update-env), the shell part of each app's environment is
        replaced by it: variables that are gone are removed, the config's own stay."""
        if env is not None:
            for inst in self.resolve(targets):
                spec = inst.record.spec
                spec.env = {**env, **spec.env_overrides}
            self.schedule_save()
        return await self._each(targets, "restart")

    async def rpc_delete(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._each(targets, "delete")

    async def rpc_reset(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        instances = self.resolve(targets)
        for inst in instances:
            inst.record.restart_time = 0
            inst.record.unstable_restarts = 0
            inst.record.created_at = int(time.time() * 1000)
        self.schedule_save()
        return {"ids": [i.record.pm_id for i in instances], "list": self.view()}

    async def rpc_signal(self, signal_name: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            sig = signal.Signals[signal_name] if not signal_name.isdigit() else signal.Signals(
                int(signal_name))
        except (KeyError, ValueError):
            raise CorralError(f"unknown signal {signal_name!r}; use a name such as SIGUSR1 "
                              "or a number") from None
        instances = self.resolve(targets)
        sent = []
        for inst in instances:
            if inst.record.pid:
                try:
                    os.kill(inst.record.pid, sig)
                    sent.append(inst.record.pm_id)
                except ProcessLookupError:
                    pass
        return {"ids": sent, "signal": sig.name}

    async def rpc_log_files(self, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        instances = self.resolve(targets) if targets else sorted(
            self.supervisor.instances.values(), key=lambda i: i.record.pm_id)
        return [{"pm_id": i.record.pm_id, "name": i.record.spec.name,
                 "out": i.record.out_log_path, "err": i.record.err_log_path,
                 "combined": i.record.log_path} for i in instances]

    async def rpc_flush(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        """Empty the log files of the targets (all, and the daemon's log, without)."""
        instances = self.resolve(targets) if targets else list(
            self.supervisor.instances.values())
        files = {f.path: f for i in instances for f in i.files}
        for file in files.values():
            file.truncate()
        if not targets:
            try:
                os.truncate(self.home.daemon_log, 0)
            except OSError:
                pass
        return {"files": sorted(files)}

    async def rpc_reload_logs(self) -> dict[str, Any]:
        return {"files": self.reopen_logs()}

    def metrics_snapshot(self) -> dict[str, Any]:
        from corral.daemon.metricsserver import snapshot

        log_bytes = sum(f.written_bytes for f in self.supervisor.log_files.files.values())
        return snapshot(self.view(), log_bytes)

    async def rpc_metrics(self, port: int | None = None, host: str = "127.0.0.1",
                          allow_remote: bool = False, stop: bool = False) -> dict[str, Any]:
        """Serve (or stop serving) /metrics; without arguments, say where it is served."""
        if stop:
            await self.metrics_server.stop()
        elif port is not None:
            await self.metrics_server.start(host, port, allow_remote)
        address = self.metrics_server.address
        self.schedule_save()  # the next daemon serves it too
        return {"url": f"http://{address[0]}:{address[1]}/metrics" if address else None}

    async def rpc_save(self, force: bool = False) -> dict[str, Any]:
        from corral.store import dump

        data = dump.build(i.record for i in self.supervisor.instances.values())
        path = dump.write(self.home, data, force)
        log.info("saved %d app(s) to %s", len(data["apps"]), path)
        return {"path": path, "apps": [a["spec"]["name"] for a in data["apps"]]}

    async def rpc_update(self) -> dict[str, Any]:
        """`corral update`: hand every app over to a new daemon without stopping any. Stop
        taking commands, wait for operations under way, move what the apps wrote to the
        files, persist the list (with where each log line stands), then exit once the
        reply is sent (handle() calls _exit_for_update). The next daemon adopts the apps,
        as after a SIGKILL, and cluster workers hand it their listeners."""
        instances = list(self.supervisor.instances.values())
        locks = [inst.lock for inst in instances]
        taken = []
        try:
            for lock in locks:
                await asyncio.wait_for(lock.acquire(), 10)
                taken.append(lock)
        except asyncio.TimeoutError:
            for lock in taken:
                lock.release()
            raise CorralError("an operation (a reload, a restart) is still under way after "
                              "10 s; run `corral update` again when it has finished") from None
        # from here on the daemon is leaving: the locks stay taken
        assert self.server is not None
        self.server.close()
        for inst in instances:
            if inst.restart_timer is not None:
                inst.restart_timer.cancel()
            handover = {}
            for stream in ("out", "err"):
                capture = getattr(inst, stream)
                if capture is not None:
                    handover[stream] = capture.hand_over()
            inst.record.handover = handover
        self.save()
        self.updating = True
        log.info("handing %d process(es) over to a new daemon (corral update)", len(instances))
        return {"pid": os.getpid(), "processes": len(instances)}

    def _exit_for_update(self) -> None:
        from corral.daemon.logcapture import finish_rotations

        finish_rotations()
        for path in (self.home.socket, self.home.pid_file):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        log.info("daemon exits; its apps keep running for the next one")
        logging.shutdown()
        os._exit(0)  # no cleanup: the apps, their listeners and pipes must stay as they are

    async def rpc_kill(self) -> dict[str, Any]:
        instances = list(self.supervisor.instances.values())
        await asyncio.gather(*(self.supervisor.delete(i) for i in instances))
        self.save()
        return {"stopped": len(instances)}


class Follower:
    QUEUE_SIZE = 10_000

    def __init__(self, ids: set[int] | None, types: set[str]) -> None:
        self.ids = ids
        self.types = types
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.QUEUE_SIZE)
        self.dropped = 0

    def wants(self, event: dict[str, Any]) -> bool:
        if event["type"] not in self.types:
            return False
        return self.ids is None or event["pm_id"] in self.ids

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class _FollowHandler(logging.Handler):
    """The daemon's own log lines, for `corral logs` without a target."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(logging.INFO)
        self.daemon = daemon

    def emit(self, record: logging.LogRecord) -> None:
        if self.daemon.followers:
            self.daemon.publish({"pm_id": -1, "name": "corral", "type": "daemon",
                                 "at": record.created, "line": self.format(record)})


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
    lock_fd = os.open(home.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another daemon owns this home: the client will talk to that one.
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"ok")
        return 0
    pid_fd = os.open(home.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(pid_fd, str(os.getpid()).encode())
    os.close(pid_fd)
    os.chdir("/")
    try:
        asyncio.run(Daemon(home).run(args.ready_fd))
    finally:
        try:
            os.unlink(home.pid_file)
        except FileNotFoundError:
            pass
    return 0

