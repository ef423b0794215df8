"""Restart triggers: the memory limit and the cron schedule.

Both restart one instance through Supervisor.reload(), which is a rolling
reload in cluster mode (nothing dropped) and a restart in fork mode. The
memory check runs only while some app has a limit, and each cron schedule only
while its app exists, so an idle daemon without them never wakes up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from corral.daemon.health import probe
from corral.daemon.metrics import TreeMetrics
from corral.model.cron import next_cron_time
from corral.model.health import HealthCheck

if TYPE_CHECKING:
    from corral.daemon.supervisor import Instance, Supervisor

log = logging.getLogger("corral.triggers")


DEFAULT_IGNORES = (".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache",
                   ".pytest_cache", ".ruff_cache", ".tox", ".hypothesis")


def watch_filter(root: str, ignore: list[str], extra_dirs: list[str],
                 files: tuple[str, ...] | list[str] = ()) -> Any:
    """A watchfiles filter: the default ignores, the app's ignore_watch globs (matched on
    the path relative to the app's folder, and on each path part), corral's home and the
    app's own log files (and their rotations), which would otherwise restart it forever."""
    import fnmatch

    import watchfiles

    base = watchfiles.DefaultFilter(ignore_dirs=DEFAULT_IGNORES)
    prefixes = tuple(os.path.abspath(d) + os.sep for d in extra_dirs)
    own = [os.path.abspath(f) for f in files]

    def keep(change: Any, path: str) -> bool:
        if not base(change, path) or path.startswith(prefixes):
            return False
        if any(path == f or path.startswith(f + ".") for f in own):
            return False
        relative = os.path.relpath(path, root)
        parts = relative.split(os.sep)
        for pattern in ignore:
            if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, pattern)
                                                          for p in parts):
                return False
        return True

    return keep


def memory_check_interval() -> float:
    try:
        return max(float(os.environ.get("CORRAL_MEMORY_CHECK_INTERVAL", "5")), 0.1)
    except ValueError:
        return 5.0


def human(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


class Triggers:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.memory_task: asyncio.Task[None] | None = None
        self.memory_busy: set[str] = set()  # apps whose over-limit instances are restarting
        self.cron_tasks: dict[str, asyncio.Task[None]] = {}
        self.watched: set[str] = set()  # apps whose files are watched
        self.watch_task: asyncio.Task[None] | None = None
        self.health_tasks: dict[str, asyncio.Task[None]] = {}
        self.metrics = TreeMetrics()

    def watch(self, inst: Instance) -> None:
        """Called when an instance is added or restored: start what its spec asks for."""
        spec = inst.record.spec
        loop = self.supervisor.loop
        if spec.max_memory_restart_bytes and (self.memory_task is None
                                              or self.memory_task.done()):
            self.memory_task = loop.create_task(self._memory_loop())
        if spec.cron_restart and spec.name not in self.cron_tasks:
            self.cron_tasks[spec.name] = loop.create_task(self._cron_loop(spec.name))
        if spec.health_check and spec.name not in self.health_tasks:
            self.health_tasks[spec.name] = loop.create_task(self._health_loop(spec.name))
        if spec.watch and spec.name not in self.watched:
            self.watched.add(spec.name)
            self._rewatch()

    def refresh(self, inst: Instance, old_name: str | None = None) -> None:
        """The app's settings changed (`restart NAME --cron-restart ...`, `--name NEW`):
        stop what watched it under its settings (or old name), start what its spec asks
        for now."""
        for name in {inst.record.spec.name, old_name or inst.record.spec.name}:
            for tasks in (self.cron_tasks, self.health_tasks):
                task = tasks.pop(name, None)
                if task is not None:
                    task.cancel()
            if name in self.watched and (name != inst.record.spec.name
                                         or not inst.record.spec.watch):
                self.unwatch(name)
        self.watch(inst)

    def watching(self, name: str) -> bool:
        return name in self.watched and self.watch_task is not None \
            and not self.watch_task.done()

    def unwatch(self, name: str) -> None:
        if name in self.watched:
            self.watched.discard(name)
            self._rewatch()

    def forget(self, name: str) -> None:
        """The app was deleted: stop what watched it."""
        self.unwatch(name)

    def _rewatch(self) -> None:
        """One watcher (one thread, one inotify instance) for every watched app: start it
        again over the new set of paths."""
        if self.watch_task is not None:
            self.watch_task.cancel()
            self.watch_task = None
        if self.watched:
            self.watch_task = self.supervisor.loop.create_task(self._watch_loop())

    def _watch_plan(self, name: str) -> tuple[list[str], Any, int] | None:
        """(paths, filter, watch_delay_ms) of a watched app, or None."""
        members = self.supervisor.instances_of(name)
        if not members or not members[0].record.spec.watch:
            return None
        spec = members[0].record.spec
        paths = ([spec.cwd] if spec.watch is True else
                 [os.path.join(spec.cwd, p) for p in spec.watch])  # type: ignore[union-attr]
        own_logs = [p for i in members for p in (i.record.out_log_path, i.record.err_log_path,
                                                  i.record.log_path) if p]
        keep = watch_filter(spec.cwd, spec.ignore_watch, [self.supervisor.home.root], own_logs)
        return [os.path.abspath(p) for p in paths], keep, spec.watch_delay_ms

    async def _watch_loop(self) -> None:
        """inotify through watchfiles: a burst of changes (a git checkout) is one restart
        per app, a reload in cluster mode (so a save in the editor drops no request)."""
        import watchfiles

        plans = {name: plan for name in sorted(self.watched)
                 if (plan := self._watch_plan(name)) is not None}
        if not plans:
            return
        roots = sorted({p for paths, _, _ in plans.values() for p in paths})

        def owners(path: str) -> list[str]:
            return [name for name, (paths, keep, _) in plans.items()
                    if any(path == p or path.startswith(p.rstrip(os.sep) + os.sep)
                           for p in paths) and keep(None, path)]

        async for changes in watchfiles.awatch(
                *roots, watch_filter=lambda change, path: bool(owners(path)),
                debounce=400, step=50, recursive=True):
            touched: dict[str, list[str]] = {}
            for _, path in changes:
                for name in owners(path):
                    touched.setdefault(name, []).append(path)
            for name, paths in touched.items():
                self.supervisor.loop.create_task(
                    self._watch_restart(name, sorted(paths), plans[name]))

    async def _watch_restart(self, name: str, paths: list[str],
                             plan: tuple[list[str], Any, int]) -> None:
        roots, _, delay_ms = plan
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if name not in self.watched:
            return
        reason = f"watch: {os.path.relpath(paths[0], roots[0])} changed" + (
            f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")
        log.info("%s: %s", name, reason)
        for inst in [i for i in self.supervisor.instances_of(name) if i.alive]:
            await self._reload_for(inst, reason)

    def _limited(self) -> list[Instance]:
        return [i for i in self.supervisor.instances.values()
                if i.record.spec.max_memory_restart_bytes]

    async def _memory_loop(self) -> None:
        """PM2 checks the main pid's RSS every 30 s; corral the whole tree, every 5 s."""
        while self._limited():
            await asyncio.sleep(memory_check_interval())
            running = [i for i in self._limited() if i.alive and i.record.pid
                       and not i.lock.locked()]
            used = self.metrics.collect({i.record.pid: i.record.pid_create_time
                                         for i in running})
            over: dict[str, list[tuple[Instance, str]]] = {}
            for inst in running:
                name = inst.record.spec.name
                limit = inst.record.spec.max_memory_restart_bytes
                memory = used.get(inst.record.pid, (0.0, 0))[1]
                if memory > limit and name not in self.memory_busy:
                    reason = (f"memory {human(memory)} (process tree) over max_memory_restart "
                              f"{human(limit)}")
                    log.warning("%s (id %d): %s: restarting", name, inst.record.pm_id, reason)
                    over.setdefault(name, []).append((inst, reason))
            for name, todo in over.items():
                # one instance of an app at a time, as a reload: the others keep serving
                self.memory_busy.add(name)
                self.supervisor.loop.create_task(self._restart_in_turn(name, todo))

    async def _restart_in_turn(self, name: str, todo: list[tuple[Instance, str]]) -> None:
        try:
            for inst, reason in todo:
                if inst.alive:
                    await self._reload_for(inst, reason)
        finally:
            self.memory_busy.discard(name)

    async def _cron_loop(self, name: str) -> None:
        """Restart the app's running instances at each tick. Unlike PM2, a stopped app stays
        stopped: a schedule restarts what runs, it does not undo a `corral stop`."""
        try:
            while True:
                members = self.supervisor.instances_of(name)
                if not members or not members[0].record.spec.cron_restart:
                    return
                expression = members[0].record.spec.cron_restart
                assert expression is not None
                delay = next_cron_time(expression, time.time()) - time.time()
                await asyncio.sleep(max(delay, 0.0))
                for inst in [i for i in self.supervisor.instances_of(name) if i.alive]:
                    await self._reload_for(inst, f"cron_restart {expression}")
        finally:
            if self.cron_tasks.get(name) is asyncio.current_task():
                self.cron_tasks.pop(name, None)

    async def _health_loop(self, name: str) -> None:
        """Probe the app every interval once its start period is over; `retries` failures
        in a row mark it unhealthy (shown by `list`) and restart it (reload in cluster
        mode)."""
        failures = 0
        try:
            while True:
                members = self.supervisor.instances_of(name)
                if not members or not members[0].record.spec.health_check:
                    return
                check = HealthCheck.from_dict(members[0].record.spec.health_check)
                await asyncio.sleep(check.interval_ms / 1000)
                running = [i for i in self.supervisor.instances_of(name)
                           if i.alive and not i.lock.locked()]
                newest = max((i.record.pm_uptime for i in running), default=0)
                if not running or time.time() * 1000 - newest < check.start_period_ms:
                    continue
                problem = await probe(check, running[0].record.spec.cwd)
                if problem is None:
                    failures = 0
                    self._set_health(running, "healthy")
                    continue
                failures += 1
                log.warning("%s: health check failed (%d/%d): %s", name, failures,
                            check.retries, problem)
                if failures >= check.retries:
                    failures = 0
                    self._set_health(running, "unhealthy")
                    for inst in running:
                        await self._reload_for(inst, f"unhealthy: {problem}")
                        inst.record.health = "unhealthy"
        finally:
            if self.health_tasks.get(name) is asyncio.current_task():
                self.health_tasks.pop(name, None)

    def _set_health(self, instances: list[Instance], state: str) -> None:
        changed = False
        for inst in instances:
            if inst.record.health != state:
                inst.record.health = state
                changed = True
        if changed:
            self.supervisor.on_change()

    async def ready_by_health(self, inst: Instance) -> None:
        """wait_ready with a health check: ready once the check passes."""
        spec = inst.record.spec
        assert spec.health_check is not None
        check = HealthCheck.from_dict(spec.health_check)
        while await probe(check, spec.cwd) is not None:
            await asyncio.sleep(0.1)

    async def _reload_for(self, inst: Instance, reason: str) -> None:
        """A trigger fired: reload the instance (a restart in fork mode), record why."""
        self.supervisor.note(inst, "restart", cause=reason)
        failure = await self.supervisor.reload(inst)
        inst.record.reason = failure or f"restarted: {reason}"
        self.supervisor.on_change()
