"""The process table and the state machine of every instance.

Every status change goes through Supervisor.transition(), which refuses an
illegal move and logs the legal ones. Exits reach us through a pidfd watched
by the event loop (no polling); the restart policy is PM2's
(docs/lifecycle.md, "The restart policy"): any exit restarts unless autorestart is off or the code is a stop code;
short runs count as unstable and too many of them end in `errored`; delays are
fixed or grow ×1.5 up to 15 s and reset after 30 s up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from corral.cluster.child import ENV_DOOR
from corral.cluster.node import NodeChannel, channel_pair, node_env, without_node_env
from corral.cluster.primary import Worker
from corral.daemon import metrics
from corral.daemon.clustermode import ClusterApp, import_path, worker_argv
from corral.daemon.limits import restore_child_limit
from corral.daemon.logcapture import (
    LineFormat,
    LogFile,
    LogFiles,
    Rotation,
    StreamCapture,
    open_child_end,
)
from corral.daemon.process import (
    Proc,
    SpawnError,
    alive_in,
    descendants_or_none,
    kill_group,
    signal_tree,
    wait_tree,
    watch_exit,
)
from corral.daemon.quietstop import quiet_path
from corral.daemon.triggers import Triggers
from corral.model import states
from corral.model.apps import is_node_app
from corral.model.errors import CorralError
from corral.model.names import default_policy
from corral.model.restart import after_exit
from corral.model.spec import (
    AppSpec,
    InstanceRecord,
)
from corral.model.states import (
    ERRORED,
    LAUNCHING,
    ONLINE,
    STOPPED,
    STOPPING,
    WAITING,
    restore_path,
)
from corral.store.home import Home
from corral.store.state import is_same_process

log = logging.getLogger("corral.supervisor")

QUIET_SETTLE_S = 0.5
MESSAGE_LOG_CHARS = 1000  # of an app's message, in corral.log
NODE_INSTANCE_VAR = "NODE_APP_INSTANCE"


def now_ms() -> int:
    return int(time.time() * 1000)


def safe_name(name: str) -> str:
    """A name usable in a file name (PM2 replaces the same characters)."""
    return re.sub(r"[^a-zA-Z0-9._-]", "-", name)


def _process_entry(proc: Proc) -> dict[str, Any]:
    """One of InstanceRecord.others."""
    return {"pid": proc.pid, "create_time": proc.create_time}


def _address_text(info: dict[str, Any]) -> str:
    if info.get("family") == "unix":
        return f"unix:{info.get('address')} ({info.get('policy')})"
    host = info.get("address")
    host = f"[{host}]" if info.get("family") == "IPv6" else host
    return f"{host}:{info.get('port')} ({info.get('policy')})"


class Instance:
    """Runtime companion of an InstanceRecord: its process, timers, log captures."""

    def __init__(self, record: InstanceRecord) -> None:
        self.record = record
        self.proc: Proc | None = None
        self.pending: list[Proc] = []  # a reload's new process, until it takes over
        self.settled: asyncio.Task[None] | None = None  # cluster: launching -> online
        self.restart_timer: asyncio.TimerHandle | None = None
        self.lock = asyncio.Lock()
        self.out: StreamCapture | None = None
        self.err: StreamCapture | None = None
        self.files: list[LogFile] = []
        # deleted: an operation that waited for the lock meanwhile has nothing left to do
        self.forgotten = False
        # what a start learns of its outcome (daemon/outcome.py): exits nobody asked for,
        # and the length of the last such run
        self.crashes = 0
        self.last_run_ms = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    async def wait_exit(self) -> None:
        if self.proc is not None:
            await self.proc.exited.wait()


class Supervisor:
    def __init__(self, home: Home, on_change: Callable[[], None],
                 publish: Callable[[dict[str, Any]], None] | None = None,
                 following: Callable[[], bool] = lambda: False) -> None:
        self.home = home
        self.on_change = on_change
        # write the list now, before the next await (the daemon sets its save())
        self.persist: Callable[[], object] = on_change
        self.publish = publish
        self.following = following
        self.log_files = LogFiles()
        self.triggers = Triggers(self)
        self.loop = asyncio.get_running_loop()
        self.instances: dict[int, Instance] = {}
        self.next_id = 0
        self.clusters: dict[str, ClusterApp] = {}
        # told of every status change and restart cause (the daemon's events ring)
        self.on_event: Callable[[Instance, str, dict[str, Any]], None] | None = None

    def note(self, inst: Instance, kind: str, **details: Any) -> None:
        """Tell on_event: "status" (from transition()) or "restart" (cause=manual, or the
        trigger's reason)."""
        if self.on_event is not None:
            self.on_event(inst, kind, details)

    # ---- the state machine -------------------------------------------------

    def transition(self, inst: Instance, status: str, reason: str | None = None) -> None:
        """Move an instance to a new status; refuse moves the state machine does not have."""
        rec = inst.record
        was = rec.status
        states.check(rec.spec.name, rec.pm_id, rec.status, status)
        log.info(
            "%s (id %d): %s -> %s%s",
            rec.spec.name,
            rec.pm_id,
            rec.status,
            status,
            f" ({reason})" if reason else "",
        )
        rec.status = status
        if reason is not None:
            rec.reason = reason
        self.note(inst, "status", was=was, reason=reason)
        self.on_change()

    # ---- creating and finding ----------------------------------------------

    def instances_of(self, name: str) -> list[Instance]:
        """The instances of one app, by id."""
        return sorted((i for i in self.instances.values() if i.record.spec.name == name),
                      key=lambda i: i.record.pm_id)

    def rename(self, old: str, new: str) -> None:
        """`restart NAME --name NEW` (PM2's attribute update): the app's instances, their
        log lines and its cluster listeners take the new name."""
        for inst in self.instances_of(old):
            inst.record.spec.name = new
            for capture in (inst.out, inst.err):
                if capture is not None:
                    capture.app_name = new
        cluster = self.clusters.pop(old, None)
        if cluster is not None:
            cluster.name = new
            self.clusters[new] = cluster
        self.on_change()

    def lowest_free_index(self, name: str) -> int:
        used = {i.record.instance_index for i in self.instances.values() if i.record.spec.name == name}
        index = 0
        while index in used:
            index += 1
        return index

    def log_paths(self, spec: AppSpec, pm_id: int) -> tuple[str, str, str]:
        """(out, err, combined) for one instance. Files carry `-<id>` unless merge_logs
        (PM2's rule); `NULL`//dev/null or disable_logs turn a stream off."""
        if spec.disable_logs:
            return "/dev/null", "/dev/null", ""
        base = safe_name(spec.name)
        suffix = "" if spec.merge_logs else f"-{pm_id}"
        several = spec.instances > 1 or spec.exec_mode == "cluster"

        def configured(path: str) -> str:
            if path == "/dev/null" or not several or spec.merge_logs:
                return path
            stem, ext = os.path.splitext(path)
            return f"{stem}-{pm_id}{ext}"

        out = (configured(spec.out_file) if spec.out_file
               else os.path.join(self.home.logs, f"{base}-out{suffix}.log"))
        err = (configured(spec.error_file) if spec.error_file
               else os.path.join(self.home.logs, f"{base}-error{suffix}.log"))
        combined = ""
        if spec.log_file:
            combined = (os.path.join(self.home.logs, f"{base}{suffix}.log")
                        if spec.log_file == "true" else configured(spec.log_file))
        return out, err, combined

    def add(self, spec: AppSpec, index: int) -> Instance:
        """Register a new instance (not started) with the next pm_id (used up only when
        the instance is registered: OSError if its log files cannot be opened)."""
        pm_id = self.next_id
        out, err, combined = self.log_paths(spec, pm_id)
        record = InstanceRecord(
            pm_id=pm_id,
            spec=spec,
            instance_index=index,
            created_at=now_ms(),
            out_log_path=out,
            err_log_path=err,
            log_path=combined,
            pid_path=self.pid_path(spec, pm_id),
        )
        inst = Instance(record)
        self._open_captures(inst)
        self.next_id = pm_id + 1
        self.instances[pm_id] = inst
        self.triggers.watch(inst)
        self.on_change()
        return inst

    @staticmethod
    def pid_path(spec: AppSpec, pm_id: int) -> str:
        """The instance's pid file, if the app asked for one (-p, pid_file): the file, or
        `FILE-<id>.pid` when the app has several instances (the rule of -o and -e)."""
        if not spec.pid_file or spec.pid_file == "/dev/null":
            return ""
        if spec.instances > 1 or spec.exec_mode == "cluster":
            stem, ext = os.path.splitext(spec.pid_file)
            return f"{stem}-{pm_id}{ext}"
        return spec.pid_file

    @staticmethod
    def _write_pid_file(rec: InstanceRecord) -> None:
        """PM2 writes the main pid to the pid file at each start (and removes it at exit)."""
        if not rec.pid_path or not rec.pid:
            return
        try:
            os.makedirs(os.path.dirname(rec.pid_path) or ".", exist_ok=True)
            fd = os.open(rec.pid_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(str(rec.pid))
        except OSError as exc:
            log.warning("%s (id %d): cannot write the pid file %s: %s", rec.spec.name,
                        rec.pm_id, rec.pid_path, exc.strerror or exc)

    @staticmethod
    def _remove_pid_file(rec: InstanceRecord) -> None:
        if rec.pid_path:
            try:
                os.unlink(rec.pid_path)
            except OSError:
                pass

    def refresh_files(self, inst: Instance) -> None:
        """Give a registered instance the log settings (files, merge_logs, date format,
        log_type, rotation) and pid file of its spec, as changed by `restart FILE`,
        `reload FILE` or `restart --pid ...`. The captures keep reading their pipes; only
        what they write, and where, changes. A file that cannot be opened keeps the old."""
        rec = inst.record
        spec = rec.spec
        pid_path = self.pid_path(spec, rec.pm_id)
        if pid_path != rec.pid_path:
            self._remove_pid_file(rec)
            rec.pid_path = pid_path
            self._write_pid_file(rec)
        paths = self.log_paths(spec, rec.pm_id)
        rotation = Rotation(spec.log_max_size_bytes, spec.log_retain, spec.log_compress,
                            spec.log_rotate_daily)
        fmt = LineFormat(spec.log_date_format, spec.log_type == "json")
        if inst.out is None or inst.err is None or (
                paths == (rec.out_log_path, rec.err_log_path, rec.log_path)
                and inst.out.fmt == fmt and all(f.rotation == rotation for f in inst.files)):
            return
        acquired: list[LogFile] = []
        try:
            for path in paths:
                if path:
                    acquired.append(self.log_files.acquire(path, rotation))
        except OSError as exc:
            for file in acquired:
                self.log_files.release(file)
            log.error("%s (id %d): cannot open %s: %s; its log files stay as they were",
                      spec.name, rec.pm_id, exc.filename, exc.strerror)
            return
        for file in acquired:
            file.rotation = rotation
        old, inst.files = inst.files, acquired
        for capture, file in ((inst.out, acquired[0]), (inst.err, acquired[1])):
            capture.files = [file, *acquired[2:]]
            capture.fmt = fmt
            capture.date = fmt.stamp()
        for file in old:
            self.log_files.release(file)
        rec.out_log_path, rec.err_log_path, rec.log_path = paths
        self.on_change()

    def _fifo(self, pm_id: int, stream: str) -> str:
        return os.path.join(self.home.pipes, f"{pm_id}-{stream}")

    def _open_captures(self, inst: Instance) -> None:
        rec = inst.record
        spec = rec.spec
        rotation = Rotation(spec.log_max_size_bytes, spec.log_retain, spec.log_compress,
                            spec.log_rotate_daily)
        fmt = LineFormat(spec.log_date_format, spec.log_type == "json")
        acquired: list[LogFile] = []
        try:
            out = self.log_files.acquire(rec.out_log_path, rotation)
            acquired.append(out)
            err = self.log_files.acquire(rec.err_log_path, rotation)
            acquired.append(err)
            if rec.log_path:
                acquired.append(self.log_files.acquire(rec.log_path, rotation))
        except OSError:
            for file in acquired:
                self.log_files.release(file)
            raise
        combined = acquired[2:]
        inst.files = acquired
        try:
            for stream, file in (("out", out), ("err", err)):
                capture = StreamCapture(self.loop, self._fifo(rec.pm_id, stream), stream,
                                        [file, *combined], fmt, rec.pm_id, spec.name,
                                        self.publish, self.following)
                setattr(inst, stream, capture)
        except BaseException:
            self._close_captures(inst)  # nothing stays open for an instance never added
            raise

    def _close_captures(self, inst: Instance) -> None:
        for capture in (inst.out, inst.err):
            if capture is not None:
                capture.close()
        inst.out = inst.err = None
        for file in inst.files:
            self.log_files.release(file)
        inst.files = []

    # ---- launching ---------------------------------------------------------

    def child_env(self, rec: InstanceRecord) -> dict[str, str]:
        spec = rec.spec
        env = without_node_env(spec.env)  # a channel is ours to give, never inherited
        env.update(rec.instance_values())  # instance_var, increment_var
        if is_node_app(spec):
            env[NODE_INSTANCE_VAR] = str(rec.instance_index)  # PM2's instance_var
        env["CORRAL_PM_ID"] = str(rec.pm_id)
        env["CORRAL_APP_NAME"] = spec.name
        env["CORRAL_HOME"] = self.home.root
        # unbuffered output for every app, not only those corral knows to be Python: a shell
        # command or a console script may run Python too (PM2 #3076)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if spec.kill_signal == "SIGINT" and env.get("CORRAL_QUIET_SIGINT") != "0":
            # a plain script stopped with SIGINT exits without a KeyboardInterrupt
            # traceback in its error log (daemon/quietstop.py)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (quiet_path(self.home.root), env.get("PYTHONPATH")) if p)
        return env

    def cluster_of(self, spec: AppSpec) -> ClusterApp:
        app = self.clusters.get(spec.name)
        if app is None:
            app = ClusterApp(spec.name, spec.cluster_policy, self.loop, self._cluster_event,
                             default_policy(is_node_app(spec)))
            self.clusters[spec.name] = app
        return app

    def spawn(self, inst: Instance) -> Proc:
        """Start one process for the instance (fork or cluster mode); OSError/ValueError."""
        rec = inst.record
        spec = rec.spec
        env = self.child_env(rec)
        cluster = None
        node = is_node_app(spec)
        parent_end: socket.socket | None = None
        child_end: socket.socket | None = None
        argv = spec.argv()
        try:
            if spec.exec_mode == "cluster":
                cluster = self.cluster_of(spec)
                if node:  # an unmodified node app: the daemon is its cluster primary
                    worker_id, parent_end, child_end = cluster.prepare_node(env)
                else:
                    worker_id, parent_end, child_end = cluster.prepare(env)
                    argv = worker_argv(spec, sys.executable)
                    shim = import_path(self.home.root)
                    env[ENV_DOOR] = self.home.cluster_socket
                    env["PYTHONPATH"] = os.pathsep.join(
                        p for p in (shim, env.get("PYTHONPATH")) if p)
            elif node:  # Node's IPC channel: process.send('ready'), process.on('message')
                parent_end, child_end = channel_pair()
                env.update(node_env(child_end.fileno()))
        except OSError as exc:
            for end in (parent_end, child_end):
                if end is not None:
                    end.close()
            raise SpawnError(f"cannot prepare {argv[0]}: {exc.strerror or exc}") from None
        pass_fds = (child_end.fileno(),) if child_end is not None else ()
        out_fd = err_fd = -1
        try:
            out_fd = open_child_end(self._fifo(rec.pm_id, "out"))
            err_fd = open_child_end(self._fifo(rec.pm_id, "err"))
            # every app leads its own process group (the stop signal goes to the group);
            # a fork app gets its own session too, a cluster worker stays in the daemon's,
            # as Node's cluster.fork() does: with the kernel's autogroup scheduling a
            # session is one unit, and a worker in another one than the daemon that hands
            # it connections waits longer for each (docs/lifecycle.md, "The process")
            # (Popen's process_group is Python 3.11's; 3.10 gives workers a session too)
            session: dict[str, Any] = {"process_group": 0} if (
                cluster is not None and sys.version_info >= (3, 11)) \
                else {"start_new_session": True}
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=err_fd,
                close_fds=True,
                pass_fds=pass_fds,
                **session,
            )
        except (OSError, ValueError) as exc:
            reason = f"cannot start {argv[0]}: {getattr(exc, 'strerror', None) or exc}"
            if err_fd >= 0:
                try:
                    os.write(err_fd, f"corral: {reason}\n".encode())
                except OSError:
                    pass
            if parent_end is not None:
                parent_end.close()
            raise SpawnError(reason) from None
        finally:
            for fd in (out_fd, err_fd):
                if fd >= 0:
                    os.close(fd)
            if child_end is not None:
                child_end.close()
        proc = Proc(popen.pid, popen)
        try:
            proc.create_time = metrics.create_time(popen.pid)
            restore_child_limit(popen.pid)
            if cluster is not None:
                assert parent_end is not None
                proc.worker = cluster.attach(worker_id, parent_end, popen,
                                             protocol="node" if node else "python")
                parent_end = None
            elif parent_end is not None:
                proc.channel = NodeChannel(parent_end)
                parent_end = None
                proc.channel.attach_to_loop(
                    self.loop,
                    lambda message, fds: self._on_app_message(inst, proc, message, fds))
            watch_exit(self.loop, proc, lambda: self._reaped(inst, proc))
        except Exception as exc:  # noqa: BLE001 - it runs but cannot be watched: never untracked
            log.error("%s (id %d): pid %d cannot be watched (%s); SIGKILL", spec.name,
                      rec.pm_id, popen.pid, exc)
            kill_group(popen.pid)
            popen.wait()
            if parent_end is not None:
                parent_end.close()
            if proc.channel is not None:
                proc.channel.close()
            if proc.worker is not None and cluster is not None:
                cluster.exited(proc.worker, -signal.SIGKILL)
            raise SpawnError(f"cannot watch {argv[0]}: {exc}") from None
        return proc

    def launch(self, inst: Instance) -> None:
        """Start the instance's process now."""
        rec = inst.record
        self._cancel_timer(inst)
        if inst.forgotten:
            return
        self.transition(inst, LAUNCHING)
        try:
            proc = self.spawn(inst)
        except SpawnError as exc:
            rec.pid = 0
            self.transition(inst, ERRORED, str(exc))
            return
        self._make_current(inst, proc)
        rec.reason = None
        if rec.spec.exec_mode == "cluster" or (rec.spec.wait_ready and proc.channel):
            # online once the worker listens (or calls corral.ready() / process.send('ready')
            # with wait_ready), as a Node worker under PM2; a worker that never does is
            # online after listen_timeout
            inst.settled = self.loop.create_task(self._settle(inst, proc))
        else:
            self.transition(inst, ONLINE)

    def _readiness(self, inst: Instance, proc: Proc) -> Any:
        """What a new worker must do to count as up: listen, or with wait_ready call
        corral.ready() (or pass the health check, when the app has one)."""
        spec = inst.record.spec
        if spec.wait_ready and spec.health_check:
            return self.triggers.ready_by_health(inst)
        return (proc.ready if spec.wait_ready else proc.listening).wait()

    async def _settle(self, inst: Instance, proc: Proc) -> None:
        spec = inst.record.spec
        await _first(self.loop, spec.listen_timeout_ms / 1000, self._readiness(inst, proc),
                     proc.exited.wait())
        if inst.proc is proc and proc.alive and inst.record.status == LAUNCHING:
            self.transition(inst, ONLINE)

    async def settled(self, instances: list[Instance]) -> None:
        """Wait until freshly launched cluster instances are online (or gave up)."""
        tasks = [i.settled for i in instances if i.settled is not None]
        if tasks:
            await asyncio.wait(tasks)

    def _make_current(self, inst: Instance, proc: Proc) -> None:
        rec = inst.record
        inst.proc = proc
        rec.pid = proc.pid
        rec.pid_create_time = proc.create_time
        rec.pm_uptime = now_ms()
        rec.adopted = proc.popen is None
        rec.listening = [_address_text(a) for a in proc.addresses]
        self._write_pid_file(rec)

    def adopt(self, inst: Instance) -> bool:
        """Take back a process left by a previous daemon; False if it is gone."""
        rec = inst.record
        if not is_same_process(rec.pid, rec.pid_create_time):
            return False
        proc = Proc(rec.pid, None, rec.pid_create_time)
        inst.proc = proc
        rec.adopted = True
        watch_exit(self.loop, proc, lambda: self._reaped(inst, proc))
        log.info("%s (id %d): adopted pid %d", rec.spec.name, rec.pm_id, rec.pid)
        return True

    def _reaped(self, inst: Instance, proc: Proc) -> None:
        rec = inst.record
        code: int | None = None
        if proc.popen is not None:
            code = proc.popen.wait()
        proc.returncode = code
        proc.exited.set()
        if proc.channel is not None:
            proc.channel.close()
        if proc.worker is not None:
            cluster = self.clusters.get(rec.spec.name)
            if cluster is not None:
                cluster.exited(proc.worker, code)
        if inst.proc is not proc:
            return  # a reload's old (or failed new) process: not the instance's
        for capture in (inst.out, inst.err):
            if capture is not None:
                capture.exited()
        self._remove_pid_file(rec)
        rec.pid = 0
        rec.pid_create_time = 0.0
        rec.listening = []
        if code is None:
            rec.exit_code, rec.exit_signal = None, None
        elif code < 0:
            rec.exit_code, rec.exit_signal = None, signal.Signals(-code).name
        else:
            rec.exit_code, rec.exit_signal = code, None
        self.on_change()
        if rec.status == STOPPING:
            return  # stop() finishes the transition
        inst.crashes += 1
        inst.last_run_ms = now_ms() - rec.pm_uptime
        self._after_exit(inst, code)

    def _cluster_event(self, event: str, worker: Worker, *args: Any) -> None:
        """An event of a cluster worker, on the daemon's loop."""
        for inst in self.instances.values():
            proc = inst.proc
            procs = [p for p in (proc, *inst.pending) if p is not None]
            for candidate in procs:
                if candidate.worker is worker:
                    self._on_worker_event(inst, candidate, event, *args)
                    return

    def _on_worker_event(self, inst: Instance, proc: Proc, event: str, *args: Any) -> None:
        if event == "listening":
            proc.addresses.append(args[0])
            proc.listening.set()
            if inst.proc is proc:
                inst.record.listening = [_address_text(a) for a in proc.addresses]
                inst.record.last_error = None
                self.on_change()
        elif event == "bind_error":
            info = args[0]
            address = info.get("address")
            where = ":".join(str(a) for a in address[:2]) if isinstance(address, list) \
                else str(address)
            inst.record.last_error = f"cannot listen on {where}: {info.get('error')}"
            self.on_change()
        elif event == "message":
            self._on_app_message(inst, proc, args[0], [])
        elif event == "disconnect":
            proc.disconnected.set()

    def _on_app_message(self, inst: Instance, proc: Proc, message: Any, fds: list[int]
                        ) -> None:
        """A message from the app (corral.ready(), Node's process.send()): 'ready'
        completes wait_ready; anything else goes to corral.log and to `corral logs`."""
        for fd in fds:
            os.close(fd)
        if message == "ready" or (isinstance(message, dict)
                                  and message.get("corral") == "ready"):
            proc.ready.set()
            return
        rec = inst.record
        text = json.dumps(message, separators=(",", ":"), default=str)
        if len(text) > MESSAGE_LOG_CHARS:
            text = text[:MESSAGE_LOG_CHARS] + f"... ({len(text)} characters)"
        log.info("%s (id %d) sent a message: %s", rec.spec.name, rec.pm_id, text)

    def _after_exit(self, inst: Instance, code: int | None) -> None:
        """PM2's exit policy (model.restart): stop, restart (maybe after a delay), errored."""
        decision = after_exit(inst.record, code, now_ms())
        if decision.status == LAUNCHING:
            self.launch(inst)
            return
        self.transition(inst, decision.status, decision.reason)
        if decision.status == WAITING:
            inst.restart_timer = self.loop.call_later(decision.delay_ms / 1000,
                                                      self._delayed_launch, inst)

    def _delayed_launch(self, inst: Instance) -> None:
        inst.restart_timer = None
        if inst.record.status == WAITING:
            inst.record.restart_time += 1  # an automatic restart counts when it happens
            self.launch(inst)

    def _cancel_timer(self, inst: Instance) -> None:
        if inst.restart_timer is not None:
            inst.restart_timer.cancel()
            inst.restart_timer = None

    # ---- stopping ----------------------------------------------------------

    async def _stop_held(self, inst: Instance, reason: str = "stop requested") -> None:
        """stop() with the instance's lock held: signal the process tree, SIGKILL it after
        kill_timeout, end `stopped`."""
        rec = inst.record
        self._cancel_timer(inst)
        if not inst.alive:
            if rec.status in (WAITING, ERRORED, LAUNCHING, ONLINE, STOPPING):
                self.transition(inst, STOPPED, reason)
            return
        if rec.status != STOPPING:  # STOPPING: a stop that failed half-way, taken up again
            self.transition(inst, STOPPING, reason)
        proc = inst.proc
        assert proc is not None
        try:
            gone = await self.terminate(inst, proc)
        except Exception as exc:  # noqa: BLE001 - a stop always ends (issue 12.6)
            log.error("%s (id %d): the stop failed (%s); SIGKILL to pid %d", rec.spec.name,
                      rec.pm_id, exc, proc.pid)
            kill_group(proc.pid)
            gone = await _first(self.loop, max(rec.spec.kill_timeout_ms / 1000, 1.0),
                                proc.exited.wait())
        if gone or not proc.alive:
            self.transition(inst, STOPPED, reason)
        else:
            self.transition(inst, ERRORED,
                            f"could not be stopped: pid {proc.pid} survived SIGKILL")

    async def terminate(self, inst: Instance, proc: Proc) -> bool:
        """End one process and its tree: (cluster: quiet its listeners first) the kill
        signal or the shutdown message, SIGKILL after kill_timeout. True when it is gone."""
        spec = inst.record.spec
        pid = proc.pid
        timeout = spec.kill_timeout_ms / 1000
        tree = descendants_or_none(pid)
        kill_signal = signal.Signals.__members__.get(spec.kill_signal, signal.SIGTERM)
        worker = proc.worker
        if (worker is not None and worker.protocol == "node" and worker.connected
                and not spec.shutdown_with_message):
            # Node's own graceful leave: the worker closes its servers and its channel once
            # what it serves is done; then the kill signal, so the app's own SIGINT handler
            # still runs. (Node's server.close() also drops idle keep-alive connections,
            # failing a request a client was just sending on one: an app that wants none
            # failed takes 'shutdown' instead, docs/cluster-mode.md.)
            worker.disconnect()
            await _first(self.loop, timeout, proc.disconnected.wait(), proc.exited.wait())
        elif worker is not None and spec.name in self.clusters:
            # no new connections for a worker that is leaving; it finishes what it has
            cluster = self.clusters[spec.name]
            try:
                await self.loop.run_in_executor(None, cluster.primary.quiet, worker)
            except Exception as exc:  # noqa: BLE001 - not quiet, stopped all the same
                log.warning("%s (id %d): cannot quiet pid %d (%s)", spec.name,
                            inst.record.pm_id, pid, exc)
            # a connection the app accepted just before its listener went quiet may not be
            # handed to its request thread yet; a signal in that gap would drop it
            await asyncio.sleep(QUIET_SETTLE_S)
        channel: Any = proc.channel or (worker if worker is not None and worker.connected
                                        else None)
        if not proc.alive:
            pass
        elif spec.shutdown_with_message and channel is not None:
            try:
                channel.send("shutdown")
            except Exception:  # noqa: BLE001 - a closed channel: fall back to the signal
                signal_tree(pid, tree, kill_signal)
        else:
            signal_tree(pid, tree, kill_signal)
        done = await wait_tree(self.loop, proc, tree, timeout)
        if not done:
            log.info("%s (id %d): pid %d still alive after %s ms, SIGKILL", spec.name,
                     inst.record.pm_id, pid, spec.kill_timeout_ms)
            tree = alive_in(tree) + descendants_or_none(pid, max_age_s=0)
            signal_tree(pid, tree, signal.SIGKILL)
            await wait_tree(self.loop, proc, tree, timeout)
        return not proc.alive

    # ---- whole-instance operations -----------------------------------------

    # Each public operation takes the instance's lock; its `_held` twin expects it held.

    async def restart(self, inst: Instance) -> None:
        """A restart someone asked for (triggers go through reload(), with their cause)."""
        self.note(inst, "restart", cause="manual")
        async with inst.lock:
            if not inst.forgotten:
                await self._restart_held(inst)

    async def _restart_held(self, inst: Instance) -> None:
        """restart() with the instance's lock held. Counted in restart_time only when the
        app was running (PM2: a restart of a stopped or errored app is a start)."""
        rec = inst.record
        was_running = inst.alive or rec.status in (ONLINE, LAUNCHING)
        await self._stop_held(inst, "restart requested")
        if rec.status == ERRORED and inst.alive:
            return
        self.refresh_files(inst)  # log settings a file or restart options changed
        self._reset_counters(rec)
        if was_running:
            rec.restart_time += 1
        self.launch(inst)

    @staticmethod
    def _reset_counters(rec: InstanceRecord) -> None:
        rec.created_at = now_ms()
        rec.unstable_restarts = 0
        rec.prev_restart_delay_ms = 0

    async def reload(self, inst: Instance, new_spec: AppSpec | None = None) -> str | None:
        """Replace a cluster worker without a gap: start the new process, wait until it
        listens (or calls corral.ready() with wait_ready) within listen_timeout, then stop
        the old one. Fork mode: a restart. Returns why it failed, or None. new_spec (a
        reload from a file) applies to the new process; if that fails, the old one keeps
        serving with the settings it has."""
        async with inst.lock:
            rec = inst.record
            if inst.forgotten:
                return None
            previous = rec.spec
            if new_spec is not None:
                rec.spec = new_spec
            failure = await self._reload_held(inst)
            if failure is not None:
                rec.spec = previous
            else:
                self.refresh_files(inst)  # log settings the new spec changes
            return failure

    async def _reload_held(self, inst: Instance) -> str | None:
        """reload() with the lock held."""
        rec = inst.record
        spec = rec.spec
        if spec.exec_mode != "cluster" or rec.status != ONLINE or inst.proc is None:
            await self._restart_held(inst)
            return None
        old = inst.proc
        try:
            new = self.spawn(inst)
        except SpawnError as exc:
            return f"{spec.name} (id {rec.pm_id}): {exc}; the old worker keeps serving"
        inst.pending.append(new)
        # on disk before anything else: a daemon that dies from here on leaves the new
        # worker to the next one, which stops it (restore())
        rec.others = [_process_entry(new)]
        self.persist()
        signal_name = "corral.ready()" if spec.wait_ready else "listening"
        try:
            came = await _first(self.loop, spec.listen_timeout_ms / 1000,
                                self._readiness(inst, new), new.exited.wait())
        except BaseException:  # cancelled: the new worker does not outlive the reload
            kill_group(new.pid)
            rec.others = []
            raise
        finally:
            inst.pending.remove(new)
        if not new.alive:
            rec.others = []
            rc = new.returncode
            how = (f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0
                   else f"exited with code {rc}")
            failure = (f"{spec.name} (id {rec.pm_id}): reload failed: the new worker "
                       f"{how} before {signal_name}; the old worker keeps serving "
                       f"(see {rec.err_log_path})")
            rec.reason = failure
            log.warning(failure)
            self.on_change()
            return failure
        if not came:
            log.warning("%s (id %d): the new worker gave no %s within %d ms; replacing the "
                        "old one anyway (as PM2 does)", spec.name, rec.pm_id, signal_name,
                        spec.listen_timeout_ms)
        self._make_current(inst, new)
        self._reset_counters(rec)
        rec.restart_time += 1
        rec.reason = None
        rec.others = [_process_entry(old)]  # the old one, until it has stopped
        self.persist()
        log.info("%s (id %d): pid %d took over from pid %d", spec.name, rec.pm_id, new.pid,
                 old.pid)
        try:
            await self.terminate(inst, old)
        finally:
            if old.alive:
                kill_group(old.pid)
            rec.others = []
            self.on_change()
        return None

    async def start_stopped(self, inst: Instance) -> None:
        async with inst.lock:
            rec = inst.record
            if inst.alive or rec.status == WAITING or inst.forgotten:
                return
            rec.created_at = now_ms()
            rec.unstable_restarts = 0
            rec.prev_restart_delay_ms = 0
            self.launch(inst)

    async def stop(self, inst: Instance) -> None:
        async with inst.lock:
            if not inst.forgotten:
                await self._stop_held(inst)

    async def delete(self, inst: Instance) -> None:
        async with inst.lock:
            if inst.forgotten:
                return
            await self._stop_held(inst, "delete requested")
            if inst.alive:  # it survived SIGKILL: it stays listed (errored), never untracked
                raise CorralError(f"{inst.record.spec.name} (id {inst.record.pm_id}): "
                                  f"{inst.record.reason}; not deleted")
            self.forget(inst)

    def kill_now(self, inst: Instance) -> None:
        """SIGKILL to the instance's processes, now (a delete that failed, in `kill`)."""
        for proc in (inst.proc, *inst.pending):
            if proc is not None and proc.alive:
                kill_group(proc.pid)

    def forget(self, inst: Instance) -> None:
        rec = inst.record
        inst.forgotten = True
        self._remove_pid_file(rec)
        self._close_captures(inst)
        for stream in ("out", "err"):
            try:
                os.unlink(self._fifo(rec.pm_id, stream))
            except FileNotFoundError:
                pass
        self.instances.pop(rec.pm_id, None)
        if not self.instances:
            self.next_id = 0
        if not self.instances_of(rec.spec.name):
            self.triggers.forget(rec.spec.name)
        self.close_idle_clusters()
        self.on_change()

    def close_idle_clusters(self) -> None:
        """Close the listeners of cluster apps that have no running instance left."""
        for name, cluster in list(self.clusters.items()):
            if not any(i.alive or i.record.status == WAITING for i in self.instances.values()
                       if i.record.spec.name == name):
                cluster.close()
                del self.clusters[name]

    # ---- a previous daemon's table ----------------------------------------

    def restore(self, records: list[InstanceRecord], next_id: int) -> list[Instance]:
        """Load the persisted table; adopt live processes; return instances to (re)start."""
        to_start: list[Instance] = []
        self.next_id = max([next_id] + [r.pm_id + 1 for r in records])
        for rec in records:
            if rec.pm_id in self.instances:
                log.error("%s (id %d): a second entry with that id in the process list; "
                          "skipped", rec.spec.name, rec.pm_id)
                self.stop_strays([(rec.pid, rec.pid_create_time)])
                continue
            try:
                self._restore_one(rec, to_start)
            except Exception:  # noqa: BLE001 - one bad entry must not cost the others
                log.exception("%s (id %d): cannot be restored; skipped", rec.spec.name,
                              rec.pm_id)
                inst = self.instances.pop(rec.pm_id, None)
                if inst is not None:
                    self._close_captures(inst)
                self.stop_strays([(rec.pid, rec.pid_create_time)])
        self.on_change()
        return to_start

    def stop_strays(self, processes: list[tuple[int, float]]) -> None:
        """Stop processes a previous daemon started that nothing tracks any more (an
        entry of the list that cannot be read), if they still run: SIGTERM, then SIGKILL."""
        for pid, create_time in processes:
            if pid and is_same_process(pid, create_time):
                log.warning("pid %d was started by corral but is in no readable entry of "
                            "the list; stopping it", pid)
                proc = Proc(pid, None, create_time)
                watch_exit(self.loop, proc, proc.exited.set)
                self.loop.create_task(self._end_stray(proc))

    async def _end_stray(self, proc: Proc) -> None:
        tree = descendants_or_none(proc.pid)
        signal_tree(proc.pid, tree, signal.SIGTERM)
        if not await wait_tree(self.loop, proc, tree, 5.0):
            signal_tree(proc.pid, alive_in(tree) + descendants_or_none(proc.pid, 0),
                        signal.SIGKILL)

    async def _stop_others(self, inst: Instance, procs: list[Proc]) -> None:
        """The processes a reload left when the last daemon died (InstanceRecord.others):
        stopped as the instance's own would be, under its lock (a delete waits for it)."""
        async with inst.lock:
            for proc in procs:
                log.info("%s (id %d): stopping pid %d, left by a reload the last daemon "
                         "did not finish", inst.record.spec.name, inst.record.pm_id, proc.pid)
                try:
                    await self.terminate(inst, proc)
                except Exception:  # noqa: BLE001 - then SIGKILL
                    kill_group(proc.pid)
            inst.record.others = []
            self.on_change()

    def _restore_one(self, rec: InstanceRecord, to_start: list[Instance]) -> None:
        inst = Instance(rec)
        try:
            self._open_captures(inst)
        except OSError as exc:
            log.error("%s (id %d): cannot open its logs: %s", rec.spec.name, rec.pm_id, exc)
        others = []
        for entry in rec.others:
            pid, create_time = entry.get("pid", 0), entry.get("create_time", 0.0)
            if isinstance(pid, int) and isinstance(create_time, (int, float)) \
                    and is_same_process(pid, create_time):
                proc = Proc(pid, None, float(create_time))
                watch_exit(self.loop, proc, proc.exited.set)
                others.append(proc)
        if others:
            self.loop.create_task(self._stop_others(inst, others))
        else:
            rec.others = []
        handover, rec.handover = rec.handover or {}, None
        for stream in ("out", "err"):
            capture = getattr(inst, stream)
            if capture is not None and stream in handover:
                capture.take_over(handover[stream])
        self.instances[rec.pm_id] = inst
        self.triggers.watch(inst)
        was = rec.status
        alive = bool(rec.pid) and self.adopt(inst)
        if not alive:
            rec.pid = 0
            rec.pid_create_time = 0.0
        for status in restore_path(was, alive):
            self.transition(inst, status)
        if alive and was not in (ONLINE, LAUNCHING):
            asyncio.ensure_future(self.stop(inst))  # it should not be running
        elif not alive and was in (ONLINE, LAUNCHING, WAITING):
            if was != WAITING:
                rec.restart_time += 1
            to_start.append(inst)


async def _first(loop: asyncio.AbstractEventLoop, timeout: float, *waits: Any) -> bool:
    """Wait for the first of several coroutines; False on timeout. The others are cancelled."""
    tasks = [loop.create_task(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        return bool(done) and tasks[0] in done
    finally:
        for task in tasks:
            task.cancel()


