"""The process table and the state machine of every instance.

Every status change goes through Supervisor.transition(), which refuses an
illegal move and logs the legal ones. Exits reach us through a pidfd watched
by the event loop (no polling); the restart policy is PM2's (reference/pm2.md
§4): any exit restarts unless autorestart is off or the code is a stop code;
short runs count as unstable and too many of them end in `errored`; delays are
fixed or grow ×1.5 up to 15 s and reset after 30 s up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psutil

from corral import metrics
from corral.logcapture import StreamCapture, open_child_end
from corral.paths import Home
from corral.spec import (
    EXP_BACKOFF_CAP_MS,
    EXP_BACKOFF_RESET_MS,
    AppSpec,
    InstanceRecord,
)

log = logging.getLogger("corral.supervisor")

LAUNCHING = "launching"
ONLINE = "online"
STOPPING = "stopping"
STOPPED = "stopped"
ERRORED = "errored"
WAITING = "waiting restart"

# status -> the statuses it may move to
LEGAL: dict[str, frozenset[str]] = {
    STOPPED: frozenset({LAUNCHING}),
    ERRORED: frozenset({LAUNCHING, STOPPED}),
    LAUNCHING: frozenset({ONLINE, ERRORED, STOPPED, STOPPING, WAITING, LAUNCHING}),
    ONLINE: frozenset({STOPPING, STOPPED, ERRORED, WAITING, LAUNCHING}),
    WAITING: frozenset({LAUNCHING, STOPPED}),
    STOPPING: frozenset({STOPPED, ERRORED}),
}

RUNNING = frozenset({LAUNCHING, ONLINE, STOPPING})


def now_ms() -> int:
    return int(time.time() * 1000)


def safe_name(name: str) -> str:
    """A name usable in a file name (PM2 replaces the same characters)."""
    return re.sub(r"[^a-zA-Z0-9._-]", "-", name)


class IllegalTransition(RuntimeError):
    pass


class Instance:
    """Runtime companion of an InstanceRecord: the child, its watchers, its timers."""

    def __init__(self, record: InstanceRecord) -> None:
        self.record = record
        self.popen: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.exited = asyncio.Event()
        self.exited.set()
        self.restart_timer: asyncio.TimerHandle | None = None
        self.lock = asyncio.Lock()
        self.out: StreamCapture | None = None
        self.err: StreamCapture | None = None

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()


class Supervisor:
    def __init__(self, home: Home, on_change: Callable[[], None]) -> None:
        self.home = home
        self.on_change = on_change
        self.loop = asyncio.get_running_loop()
        self.instances: dict[int, Instance] = {}
        self.next_id = 0

    # ---- the state machine -------------------------------------------------

    def transition(self, inst: Instance, status: str, reason: str | None = None) -> None:
        """Move an instance to a new status; refuse moves the state machine does not have."""
        rec = inst.record
        if status not in LEGAL.get(rec.status, frozenset()):
            raise IllegalTransition(f"{rec.spec.name} (id {rec.pm_id}): {rec.status} -> {status}")
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
        self.on_change()

    # ---- creating and finding ----------------------------------------------

    def lowest_free_index(self, name: str) -> int:
        used = {i.record.instance for i in self.instances.values() if i.record.spec.name == name}
        index = 0
        while index in used:
            index += 1
        return index

    def log_paths(self, spec: AppSpec, pm_id: int) -> tuple[str, str]:
        """Default files carry the id; a configured file gets `-<id>` too when the app has
        several instances, unless merge_logs (PM2's rule)."""
        base = safe_name(spec.name)
        several = spec.instances > 1 or spec.requested_exec_mode == "cluster"

        def configured(path: str) -> str:
            if path == "/dev/null" or not several or spec.merge_logs:
                return path
            stem, ext = os.path.splitext(path)
            return f"{stem}-{pm_id}{ext}"

        out = (configured(spec.out_file) if spec.out_file
               else os.path.join(self.home.logs, f"{base}-out-{pm_id}.log"))
        err = (configured(spec.error_file) if spec.error_file
               else os.path.join(self.home.logs, f"{base}-error-{pm_id}.log"))
        return out, err

    def add(self, spec: AppSpec, index: int) -> Instance:
        """Register a new instance (not started) with the next pm_id."""
        pm_id = self.next_id
        self.next_id += 1
        out, err = self.log_paths(spec, pm_id)
        record = InstanceRecord(
            pm_id=pm_id,
            spec=spec,
            instance=index,
            created_at=now_ms(),
            out_log_path=out,
            err_log_path=err,
        )
        inst = Instance(record)
        self._open_captures(inst)
        self.instances[pm_id] = inst
        self.on_change()
        return inst

    def _fifo(self, pm_id: int, stream: str) -> str:
        return os.path.join(self.home.pipes, f"{pm_id}-{stream}")

    def _open_captures(self, inst: Instance) -> None:
        rec = inst.record
        inst.out = StreamCapture(self.loop, self._fifo(rec.pm_id, "out"), rec.out_log_path)
        try:
            inst.err = StreamCapture(self.loop, self._fifo(rec.pm_id, "err"), rec.err_log_path)
        except OSError:
            inst.out.close()
            raise

    # ---- launching ---------------------------------------------------------

    def child_env(self, rec: InstanceRecord) -> dict[str, str]:
        spec = rec.spec
        env = dict(spec.env)
        env[spec.instance_var] = str(rec.instance)
        if spec.increment_var:
            base = env.get(spec.increment_var, "")
            if base.lstrip("-").isdigit():
                env[spec.increment_var] = str(int(base) + rec.instance)
        env["CORRAL_PM_ID"] = str(rec.pm_id)
        env["CORRAL_APP_NAME"] = spec.name
        env["CORRAL_HOME"] = self.home.root
        # unbuffered output for every app, not only those corral knows to be Python: a shell
        # command or a console script may run Python too (PM2 #3076)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, inst: Instance) -> None:
        """Start the instance's process now."""
        rec = inst.record
        spec = rec.spec
        self._cancel_timer(inst)
        self.transition(inst, LAUNCHING)
        argv = spec.argv()
        out_fd = open_child_end(self._fifo(rec.pm_id, "out"))
        err_fd = open_child_end(self._fifo(rec.pm_id, "err"))
        try:
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd or None,
                env=self.child_env(rec),
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=err_fd,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            reason = f"cannot start {argv[0]}: {getattr(exc, 'strerror', None) or exc}"
            os.write(err_fd, f"corral: {reason}\n".encode())
            rec.pid = 0
            self.transition(inst, ERRORED, reason)
            return
        finally:
            os.close(out_fd)
            os.close(err_fd)
        inst.popen = popen
        rec.pid = popen.pid
        rec.pid_create_time = metrics.create_time(popen.pid)
        rec.pm_uptime = now_ms()
        rec.adopted = False
        rec.reason = None
        self._watch_exit(inst, popen.pid)
        self.transition(inst, ONLINE)

    def adopt(self, inst: Instance) -> bool:
        """Take back a process left by a previous daemon; False if it is gone."""
        rec = inst.record
        if not metrics.is_same_process(rec.pid, rec.pid_create_time):
            return False
        inst.popen = None
        rec.adopted = True
        self._watch_exit(inst, rec.pid)
        log.info("%s (id %d): adopted pid %d", rec.spec.name, rec.pm_id, rec.pid)
        return True

    def _watch_exit(self, inst: Instance, pid: int) -> None:
        inst.exited = asyncio.Event()
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._watch_exit_thread(inst, pid)
            return
        inst.pidfd = fd

        def ready() -> None:
            self.loop.remove_reader(fd)
            os.close(fd)
            inst.pidfd = None
            self._reaped(inst, pid)

        self.loop.add_reader(fd, ready)

    def _watch_exit_thread(self, inst: Instance, pid: int) -> None:
        """Fallback where pidfd is missing: a thread that blocks until the exit."""

        def wait() -> None:
            if inst.popen is not None:
                inst.popen.wait()
            else:
                try:
                    psutil.Process(pid).wait()
                except psutil.NoSuchProcess:
                    pass
            self.loop.call_soon_threadsafe(self._reaped, inst, pid)

        threading.Thread(target=wait, daemon=True).start()

    def _reaped(self, inst: Instance, pid: int) -> None:
        rec = inst.record
        code: int | None = None
        if inst.popen is not None and inst.popen.pid == pid:
            code = inst.popen.wait()
            inst.popen = None
        if rec.pid != pid:
            return
        for capture in (inst.out, inst.err):
            if capture is not None:
                capture.drain()
        rec.pid = 0
        rec.pid_create_time = 0.0
        if code is None:
            rec.exit_code, rec.exit_signal = None, None
        elif code < 0:
            rec.exit_code, rec.exit_signal = None, signal.Signals(-code).name
        else:
            rec.exit_code, rec.exit_signal = code, None
        inst.exited.set()
        self.on_change()
        if rec.status == STOPPING:
            return  # stop() finishes the transition
        self._after_exit(inst, code)

    def _after_exit(self, inst: Instance, code: int | None) -> None:
        """PM2's exit policy: stop, restart (maybe after a delay), or errored."""
        rec = inst.record
        spec = rec.spec
        how = describe_exit(rec)
        if not spec.autorestart:
            self.transition(inst, STOPPED, f"{how}; autorestart is off")
            return
        if code is not None and code >= 0 and code in spec.stop_exit_codes:
            self.transition(inst, STOPPED, f"{how}, a stop exit code")
            return
        uptime = now_ms() - rec.pm_uptime
        if uptime >= spec.min_uptime_ms:
            rec.unstable_restarts = 0  # a stable run ends the streak
        else:
            # unlike PM2, the count does not depend on a window since the start: a crash
            # loop that begins an hour after the start still ends in errored
            rec.unstable_restarts += 1
            if rec.unstable_restarts >= spec.max_restarts:
                rec.unstable_restarts = 0
                rec.created_at = None
                self.transition(
                    inst,
                    ERRORED,
                    f"{how} after {uptime} ms; too many unstable restarts "
                    f"(max_restarts {spec.max_restarts}, min_uptime {spec.min_uptime_ms} ms); "
                    f"see its error log, then `corral restart {spec.name}`",
                )
                return
        delay = self.restart_delay(rec, uptime)
        rec.restart_time += 1
        if delay > 0:
            self.transition(inst, WAITING, f"{how}; restarting in {delay} ms")
            inst.restart_timer = self.loop.call_later(delay / 1000, self._delayed_launch, inst)
        else:
            self.launch(inst)

    @staticmethod
    def restart_delay(rec: InstanceRecord, uptime_ms: int) -> int:
        spec = rec.spec
        if spec.exp_backoff_restart_delay_ms > 0:
            previous = 0 if uptime_ms >= EXP_BACKOFF_RESET_MS else rec.prev_restart_delay_ms
            if previous <= 0:
                delay = spec.exp_backoff_restart_delay_ms
            else:
                delay = min(int(previous * 1.5), EXP_BACKOFF_CAP_MS)
            rec.prev_restart_delay_ms = delay
            return delay
        return spec.restart_delay_ms

    def _delayed_launch(self, inst: Instance) -> None:
        inst.restart_timer = None
        if inst.record.status == WAITING:
            self.launch(inst)

    def _cancel_timer(self, inst: Instance) -> None:
        if inst.restart_timer is not None:
            inst.restart_timer.cancel()
            inst.restart_timer = None

    # ---- stopping ----------------------------------------------------------

    async def stop(self, inst: Instance, reason: str = "stop requested") -> None:
        """Signal the process tree, SIGKILL it after kill_timeout, end `stopped`."""
        rec = inst.record
        self._cancel_timer(inst)
        if not inst.alive:
            if rec.status in (WAITING, ERRORED, LAUNCHING, ONLINE):
                self.transition(inst, STOPPED, reason)
            return
        if rec.status == STOPPING:
            await inst.exited.wait()
            return
        self.transition(inst, STOPPING, reason)
        pid = rec.pid
        spec = rec.spec
        timeout = spec.kill_timeout_ms / 1000
        tree = metrics.descendants(pid)
        self._signal_tree(pid, tree, signal.Signals[spec.kill_signal])
        done = await self._wait_tree(inst, tree, timeout)
        if not done:
            log.info("%s (id %d): still alive after %s ms, SIGKILL", spec.name, rec.pm_id,
                     spec.kill_timeout_ms)
            tree = _alive(tree) + metrics.descendants(pid)
            self._signal_tree(pid, tree, signal.SIGKILL)
            done = await self._wait_tree(inst, tree, timeout)
        if not inst.alive:
            self.transition(inst, STOPPED, reason)
        else:
            self.transition(inst, ERRORED, f"could not be stopped: pid {pid} survived SIGKILL")

    @staticmethod
    def _signal_tree(pid: int, tree: list[psutil.Process], sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in tree:
            try:
                proc.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    async def _wait_tree(self, inst: Instance, tree: list[psutil.Process], timeout: float) -> bool:
        """Wait until the main process and every process of the tree are gone."""
        deadline = self.loop.time() + timeout
        try:
            await asyncio.wait_for(inst.exited.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        while _alive(tree):
            if self.loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # ---- whole-instance operations -----------------------------------------

    async def restart(self, inst: Instance) -> None:
        async with inst.lock:
            await self.stop(inst, "restart requested")
            rec = inst.record
            if rec.status == ERRORED and inst.alive:
                return
            rec.created_at = now_ms()
            rec.unstable_restarts = 0
            rec.prev_restart_delay_ms = 0
            rec.restart_time += 1
            self.launch(inst)

    async def start_stopped(self, inst: Instance) -> None:
        async with inst.lock:
            rec = inst.record
            if inst.alive or rec.status == WAITING:
                return
            rec.created_at = now_ms()
            rec.unstable_restarts = 0
            rec.prev_restart_delay_ms = 0
            self.launch(inst)

    async def stop_locked(self, inst: Instance) -> None:
        async with inst.lock:
            await self.stop(inst)

    async def delete(self, inst: Instance) -> None:
        async with inst.lock:
            await self.stop(inst, "delete requested")
            self.forget(inst)

    def forget(self, inst: Instance) -> None:
        rec = inst.record
        for capture in (inst.out, inst.err):
            if capture is not None:
                capture.close()
        for stream in ("out", "err"):
            try:
                os.unlink(self._fifo(rec.pm_id, stream))
            except FileNotFoundError:
                pass
        self.instances.pop(rec.pm_id, None)
        if not self.instances:
            self.next_id = 0
        self.on_change()

    # ---- a previous daemon's table ----------------------------------------

    def restore(self, records: list[InstanceRecord], next_id: int) -> list[Instance]:
        """Load the persisted table; adopt live processes; return instances to (re)start."""
        to_start: list[Instance] = []
        self.next_id = max([next_id] + [r.pm_id + 1 for r in records])
        for rec in records:
            inst = Instance(rec)
            try:
                self._open_captures(inst)
            except OSError as exc:
                log.error("%s (id %d): cannot open its logs: %s", rec.spec.name, rec.pm_id, exc)
            self.instances[rec.pm_id] = inst
            was = rec.status
            if rec.pid and self.adopt(inst):
                if was in (ONLINE, LAUNCHING):
                    rec.status = ONLINE
                else:
                    # it should not be running (stopping, stopped, errored): finish the stop
                    rec.status = ONLINE
                    asyncio.ensure_future(self.stop_locked(inst))
                continue
            rec.pid = 0
            rec.pid_create_time = 0.0
            if was in (ONLINE, LAUNCHING, WAITING):
                rec.status = STOPPED
                if was != WAITING:
                    rec.restart_time += 1
                to_start.append(inst)
            elif was == STOPPING:
                rec.status = STOPPED
        self.on_change()
        return to_start


def _alive(tree: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of a tree snapshot that still run (zombies count as gone)."""
    alive = []
    for proc in tree:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def describe_exit(rec: InstanceRecord) -> str:
    if rec.exit_signal:
        return f"killed by {rec.exit_signal}"
    if rec.exit_code is None:
        return "exited (code unknown: adopted process)"
    return f"exited with code {rec.exit_code}"
