"""The daemon's answers to requests: one `rpc_<method>` per method of the wire protocol
(docs/architecture.md). Each handler validates, acts through the Supervisor, and
returns the result the client prints; a CorralError becomes an error reply.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from corral.daemon.web.events import last_line
from corral.model.apps import is_node_app
from corral.model.errors import CorralError
from corral.model.names import default_policy
from corral.model.spec import AppSpec, InstanceRecord
from corral.model.targets import Entry, select
from corral.model.validate import (
    MAX_INSTANCES,
    BadValue,
    check_env,
    quote,
    spec_from_wire,
    update_problem,
)
from corral.model.version import __version__

if TYPE_CHECKING:
    from corral.daemon.metrics import TreeMetrics
    from corral.daemon.metricsserver import MetricsServer
    from corral.daemon.supervisor import Instance, Supervisor
    from corral.daemon.web.events import Events
    from corral.daemon.web.server import WebServer
    from corral.store.home import Home

log = logging.getLogger("corral.daemon")

MAX_TARGET_CHARS = 4096  # a target word: a name, an id, a namespace or a script path
# `list` with brief (the CLI's table): the settings the table shows (client/render.py
# table_rows, crash_notes); the rest of the spec is 60 % of a row's bytes to encode and decode
BRIEF_SPEC_KEYS = ("name", "namespace", "exec_mode")
# `list` with table (the CLI's table since issue 17): each row a list of these, no more;
# client/render.py TABLE_COLUMNS reads them by position (`columns` says them, for checks)
TABLE_COLUMNS = ("pm_id", "name", "namespace", "exec_mode", "pid", "pm_uptime",
                 "restart_time", "status", "health", "cpu", "memory", "watching",
                 "last_error_line", "reason")

# what `restart`/`reload` options may change of a registered app (PM2's attribute update):
# everything `start` sets except what makes it another program or other instances
UPDATABLE = frozenset({
    "name", "namespace", "interpreter_args", "args", "autorestart", "max_restarts",
    "min_uptime_ms", "restart_delay_ms", "exp_backoff_restart_delay_ms", "stop_exit_codes",
    "kill_timeout_ms", "kill_signal", "instance_var", "out_file", "error_file", "log_file",
    "pid_file", "merge_logs", "log_date_format", "log_type", "disable_logs", "node_args",
    "log_max_size_bytes", "log_retain", "log_compress", "watch", "ignore_watch",
    "watch_delay_ms", "max_memory_restart_bytes", "cron_restart", "health_check",
    "listen_timeout_ms", "wait_ready", "shutdown_with_message",
})


class Rpc:
    """A part of the Daemon (a mixin): views, target resolution and the handlers."""

    home: Home
    supervisor: Supervisor
    metrics: TreeMetrics
    metrics_server: MetricsServer
    events: Events
    web_server: WebServer | None

    def schedule_save(self) -> None:
        raise NotImplementedError  # the Daemon's

    def save(self, records: list[dict[str, Any]] | None = None) -> str | None:
        raise NotImplementedError  # the Daemon's

    def reopen_logs(self) -> int:
        raise NotImplementedError  # the Daemon's

    def _sampled(self) -> tuple[list[Instance], dict[int, tuple[float, int]]]:
        """The instances by id, and the cpu and memory of each running one's tree."""
        instances = sorted(self.supervisor.instances.values(), key=lambda i: i.record.pm_id)
        roots = {i.record.pid: i.record.pid_create_time for i in instances if i.record.pid}
        return instances, self.metrics.collect(roots)

    @staticmethod
    def _last_error_line(rec: InstanceRecord, now_ms: float) -> str | None:
        """In a crash loop (short runs, the last one recent) or at its end in `errored`:
        the app's last error line, for list and describe."""
        if rec.status == "errored" or rec.unstable_restarts and (
                rec.status != "online" or now_ms - rec.pm_uptime < rec.spec.min_uptime_ms + 5000):
            return last_line(rec.err_log_path)
        return None

    def view(self, with_env: bool = False, brief: bool = False) -> list[dict[str, Any]]:
        instances, sampled = self._sampled()
        now_ms = time.time() * 1000
        rows = []
        for inst in instances:
            data = inst.record.to_dict(BRIEF_SPEC_KEYS if brief else None)
            if not with_env and not brief:
                data["spec"]["env"] = {}
            cpu, memory = sampled.get(inst.record.pid, (0.0, 0))
            data["monit"] = {"cpu": cpu, "memory": memory}
            cluster = self.supervisor.clusters.get(inst.record.spec.name)
            data["cluster_policy"] = cluster.policy if cluster else (
                inst.record.spec.cluster_policy or default_policy(is_node_app(inst.record.spec)))
            data["attached"] = bool(inst.proc and inst.proc.worker is not None)
            data["watching"] = self.supervisor.triggers.watching(inst.record.spec.name)
            data["log_write_error"] = next((f.error for f in inst.files if f.error), None)
            data["log_dropped_bytes"] = sum(f.dropped_bytes for f in inst.files)
            values = inst.record.instance_values()
            if is_node_app(inst.record.spec):
                values["NODE_APP_INSTANCE"] = str(inst.record.instance_index)
            data["instance_values"] = values  # no secrets: shown even without --env
            data["last_error_line"] = self._last_error_line(inst.record, now_ms)
            rows.append(data)
        return rows

    def table_view(self) -> dict[str, Any]:
        """`list` with table (the CLI's table): each row a list of TABLE_COLUMNS, an
        eighth of a brief row's bytes, and `saved` (dump.in_sync: the `saved` request's answer,
        without its round trip)."""
        from corral.store import dump

        instances, sampled = self._sampled()
        watching = self.supervisor.triggers.watching
        now_ms = time.time() * 1000
        rows = []
        for inst in instances:
            rec = inst.record
            spec = rec.spec
            cpu, memory = sampled.get(rec.pid, (0.0, 0)) if rec.pid else (0.0, 0)
            line = self._last_error_line(rec, now_ms)
            rows.append([rec.pm_id, spec.name, spec.namespace, spec.exec_mode, rec.pid,
                         rec.pm_uptime, rec.restart_time, rec.status, rec.health, cpu, memory,
                         watching(spec.name), line, rec.reason if line else None])
        return {"columns": TABLE_COLUMNS, "rows": rows,
                "saved": dump.in_sync(self.home, (i.record for i in instances))}

    def resolve(self, targets: list[dict[str, Any]], empty_ok: bool = False
                ) -> list[Instance]:
        """Targets (name, id, namespace, script path, /regex/, `all`) -> instances; one
        that matches nothing is an error ("no process found"), `all` on an empty list too
        unless empty_ok."""
        for target in targets:
            for key in ("name", "path"):
                if len(str(target.get(key) or "")) > MAX_TARGET_CHARS:
                    raise CorralError(f"a target of {len(str(target.get(key)))} characters: "
                                      f"at most {MAX_TARGET_CHARS}")
        table = self.supervisor.instances
        entries = {pm_id: Entry(i.record.spec.name, i.record.spec.namespace,
                                i.record.spec.exec_path) for pm_id, i in table.items()}
        return [table[pm_id] for pm_id in select(targets, entries, empty_ok)]

    # ---- RPC methods -------------------------------------------------------

    async def rpc_hello(self, version: str) -> dict[str, Any]:
        return {"version": __version__, "pid": os.getpid()}

    async def rpc_ping(self) -> str:
        return "pong"

    async def rpc_list(self, env: bool = False, brief: bool = False, table: bool = False
                       ) -> list[dict[str, Any]] | dict[str, Any]:
        """The rows (jlist, describe, the API); table: only what the CLI's table shows,
        as lists (TABLE_COLUMNS), and whether the saved list still matches."""
        if table:
            return self.table_view()
        return self.view(with_env=env, brief=brief)

    async def rpc_start(self, apps: list[dict[str, Any]], wait: bool = True
                        ) -> dict[str, Any]:
        specs = [spec_from_wire(a) for a in apps]
        self._check_room(specs)
        for spec in specs:
            if spec.force:
                continue
            # PM2's rule: the same script path and the same name (`start app.js --name b`
            # is a second app)
            running = [i for i in self.supervisor.instances.values()
                       if i.record.spec.kind == spec.kind
                       and i.record.spec.exec_path == spec.exec_path
                       and (spec.exec_path or i.record.spec.script == spec.script)
                       and i.record.spec.name == spec.name]
            if running:
                rec = running[0].record
                raise CorralError(
                    f"{spec.script} is already managed as {rec.spec.name!r} (id {rec.pm_id}); "
                    f"use `corral restart {rec.spec.name}`, or -f to start it again"
                )
        started: list[int] = []
        try:
            for spec in specs:
                started += self._add_instances(spec, spec.instances)
        except CorralError:  # one app of several could not start: none is started
            table = self.supervisor.instances
            await asyncio.gather(*(self.supervisor.delete(table[i]) for i in started
                                   if i in table), return_exceptions=True)
            raise
        found = await self._outcome(started, self._marks(started), wait)
        return {"started": started, **found, "list": self.view()}

    def _check_room(self, specs: list[AppSpec], count: int | None = None) -> None:
        """Refuse a start that would exhaust the daemon's file descriptors (daemon/limits.py):
        a clear error now rather than apps that cannot be watched, logged or stopped."""
        from corral.daemon import limits

        needed = sum(limits.cost(s, s.instances if count is None else count,
                                 s.name in self.supervisor.clusters) for s in specs)
        problem = limits.room_problem(needed)
        if problem is not None:
            names = ", ".join(sorted({s.name for s in specs}))
            raise CorralError(f"cannot start {names}: {problem}")

    async def _settled(self, ids: list[int]) -> None:
        table = self.supervisor.instances
        await self.supervisor.settled([table[i] for i in ids if i in table])

    def _marks(self, ids: list[int]) -> dict[int, Any]:
        """Where the instances stand before an operation (daemon/outcome.py)."""
        from corral.daemon import outcome

        table = self.supervisor.instances
        return outcome.mark([table[i] for i in ids if i in table])

    async def _outcome(self, ids: list[int], marks: dict[int, Any], wait: bool
                       ) -> dict[str, Any]:
        """Wait for the instances just launched (cluster: until they listen; fork: their
        first moments), then say which failed and why: {"failed": [...]}
        (daemon/outcome.py). wait=False (`--no-wait`, or a client showing progress):
        return at once, with the marks that `outcome` takes later."""
        from corral.daemon import outcome

        if not wait:
            return {"failed": [], "marks": outcome.marks_to_wire(marks)}
        table = self.supervisor.instances
        instances = [table[i] for i in ids if i in table]
        await self.supervisor.settled(instances)
        await outcome.wait(instances)
        return {"failed": outcome.failures(instances, marks, list(table.values()))}

    async def rpc_outcome(self, marks: dict[str, list[int]]) -> dict[str, Any]:
        """The outcome of instances launched without waiting (marks from start, apply or
        restart with wait=False): as a waiting start would have said it."""
        from corral.daemon import outcome

        ids = [int(k) for k in marks if k.isdigit()]
        found = {int(k): outcome.Mark.from_wire(v) for k, v in marks.items() if k.isdigit()}
        result = await self._outcome(ids, found, True)
        return {**result, "list": self.view()}

    def _add_instances(self, spec: AppSpec, count: int) -> list[int]:
        """Register `count` new instances of spec and launch them (unless autostart is off)."""
        added: list[Instance] = []
        next_id = self.supervisor.next_id
        for _ in range(count):
            try:
                added.append(self.supervisor.add(
                    spec, self.supervisor.lowest_free_index(spec.name)))
            except OSError as exc:
                for inst in added:  # all or nothing, and the ids are not used up
                    self.supervisor.forget(inst)
                self.supervisor.next_id = next_id
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise CorralError(f"cannot start {spec.name}: the daemon is out of file "
                                      f"descriptors ({exc.strerror})") from None
                raise CorralError(
                    f"cannot open the log files of {spec.name}: {exc.filename}: "
                    f"{exc.strerror}; fix the folder's permissions or choose other files "
                    "(-o/-e, or out_file/error_file in an ecosystem file)") from None
        if spec.autostart:
            for inst in added:
                self.supervisor.launch(inst)
        return [inst.record.pm_id for inst in added]

    async def rpc_apply(self, apps: list[dict[str, Any]], mode: str, parallel: int = 1,
                        wait: bool = True) -> dict[str, Any]:
        """Apps of an ecosystem file: start those not registered; for those that are,
        take the file's settings and restart them (mode restart), reload them one by
        one (mode reload) or start them if they are not running (mode start)."""
        if mode not in ("start", "restart", "reload"):
            raise CorralError(f"bad request: apply: mode {quote(mode)}: expected start, "
                              "restart or reload")
        specs = [spec_from_wire(a) for a in apps]
        self._check_room(specs)
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
        marks = self._marks(started + restarted)
        await asyncio.gather(*jobs)
        found = await self._outcome(started + restarted, marks, wait)
        self.schedule_save()
        return {"started": started, "restarted": restarted, "untouched": untouched,
                **found, "list": self.view()}

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
                         env: dict[str, str] | None = None, toggle_watch: bool = False,
                         update: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rolling reload: `parallel` instances at a time (1 by default, PM2 does 2). With
        env (--update-env), the shell part of the apps' environment is replaced first;
        update and toggle_watch as for rpc_restart."""
        _check_shell_env(env)
        instances = self.resolve(targets)
        if toggle_watch:
            self._toggle_watch(instances)
        notes = self._update(instances, update) if update else []
        if toggle_watch:
            for inst in instances:
                self.supervisor.triggers.watch(inst)
        new_specs = {}
        if env is not None:
            for inst in instances:
                spec = AppSpec.from_dict(inst.record.spec.to_dict())
                spec.env = {**env, **spec.env_overrides}
                new_specs[inst.record.pm_id] = spec
        result = await self._reload(instances, parallel, new_specs=new_specs)
        result["notes"] = notes
        return result

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
                self.supervisor.note(inst, "restart", cause="manual", action="reload")
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
            raise CorralError(f"unknown app {quote(name)}; `corral list` shows what exists")
        text = str(count).strip()
        try:
            number = int(text) if len(text) <= 12 else None
        except ValueError:
            number = None
        if number is None:
            raise CorralError(f"scale {name} {quote(text)}: give a number, +N or -N")
        target = len(instances) + number if text[:1] in "+-" else number
        if target < 0:
            raise CorralError(f"scale {name} {text}: {name} has {len(instances)} instances")
        if target > MAX_INSTANCES:
            raise CorralError(f"scale {name} {text}: {target} instances; at most "
                              f"{MAX_INSTANCES} per app")
        if target > len(instances):
            self._check_room([instances[0].record.spec], target - len(instances))
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
                          toggle_watch: bool = False,
                          update: dict[str, Any] | None = None,
                          wait: bool = True) -> dict[str, Any]:
        """Restart. With env (--update-env), the shell part of each app's environment is
        replaced by it: variables that are gone are removed, the config's own stay. With
        update, the options given to `restart` are applied first (PM2's attribute update);
        toggle_watch is PM2's `restart --watch`: on if it was off, off if it was on."""
        _check_shell_env(env)
        instances = self.resolve(targets)
        if toggle_watch:
            self._toggle_watch(instances)
        if env is not None:
            for inst in instances:
                spec = inst.record.spec
                spec.env = {**env, **spec.env_overrides}
        notes = self._update(instances, update) if update else []
        self.schedule_save()
        ids = [i.record.pm_id for i in instances]
        marks = self._marks(ids)
        await asyncio.gather(*(self.supervisor.restart(i) for i in instances))
        if toggle_watch:
            for inst in instances:
                self.supervisor.triggers.watch(inst)
        found = await self._outcome(ids, marks, wait)
        return {"ids": ids, "notes": notes, **found, "list": self.view()}

    def _toggle_watch(self, instances: list[Instance]) -> None:
        for name in {i.record.spec.name for i in instances}:
            on = self.supervisor.triggers.watching(name)
            for inst in instances:
                if inst.record.spec.name == name:
                    inst.record.spec.watch = False if on else (inst.record.spec.watch or True)
            if on:
                self.supervisor.triggers.unwatch(name)

    def _update(self, instances: list[Instance], update: dict[str, Any]) -> list[str]:
        """PM2's attribute update: the options given to `restart`/`reload` (or to a smart
        `start`) become the apps' settings. `--name` renames one app (its log files
        follow the new name at the restart); a schedule, limit or watch set or removed
        takes effect at once. `node_args` become interpreter arguments of the apps that
        node runs; for the others a note is returned."""
        unknown = set(update) - UPDATABLE
        if unknown:
            raise CorralError(f"{quote(', '.join(sorted(unknown)))}: not something a restart "
                              "can change; delete the app and start it again")
        problem = update_problem(update)
        if problem is not None:
            raise CorralError(problem)
        names = sorted({i.record.spec.name for i in instances})
        renamed: dict[str, str] = {}
        new_name = update.get("name")
        if new_name is not None and names != [new_name]:
            if len(names) > 1:
                raise CorralError(f"--name {new_name}: the targets are {len(names)} apps "
                                  f"({', '.join(names)}); rename one app at a time")
            if self.supervisor.instances_of(new_name):
                raise CorralError(f"--name {new_name}: an app of that name exists already")
            self.supervisor.rename(names[0], new_name)
            renamed[new_name] = names[0]
        notes: list[str] = []
        for inst in instances:
            spec = inst.record.spec
            for key, value in update.items():
                if key == "node_args":
                    if is_node_app(spec):
                        spec.interpreter_args = [*update.get("interpreter_args", []), *value]
                    elif spec.name not in {n.split(":")[0] for n in notes}:
                        notes.append(f"{spec.name}: --node-args ignored: node does not run "
                                     "this app (--interpreter-args passes arguments to any "
                                     "interpreter)")
                elif key != "name":
                    setattr(spec, key, value.copy() if isinstance(value, (list, dict)) else value)
        done: set[str] = set()
        for inst in instances:
            name = inst.record.spec.name
            if name not in done:
                done.add(name)
                self.supervisor.triggers.refresh(inst, renamed.get(name))
        return notes

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
        not_running = []
        for inst in instances:
            try:
                if not inst.record.pid:
                    raise ProcessLookupError
                os.kill(inst.record.pid, sig)
                sent.append(inst.record.pm_id)
            except ProcessLookupError:
                not_running.append(f"{inst.record.spec.name} (id {inst.record.pm_id}) is "
                                   f"{inst.record.status}")
        return {"ids": sent, "signal": sig.name, "not_running": not_running}

    async def rpc_log_files(self, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        instances = self.resolve(targets, empty_ok=True) if targets else sorted(
            self.supervisor.instances.values(), key=lambda i: i.record.pm_id)
        return [{"pm_id": i.record.pm_id, "name": i.record.spec.name,
                 "out": i.record.out_log_path, "err": i.record.err_log_path,
                 "combined": i.record.log_path} for i in instances]

    async def rpc_flush(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        """Empty the log files of the targets (all, and the daemon's log, without)."""
        instances = self.resolve(targets, empty_ok=True) if targets else list(
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

    async def rpc_web(self, action: str = "status", port: int | None = None,
                      host: str | None = None, allow_remote: bool = False) -> dict[str, Any]:
        """The web dashboard (docs/web.md): start (or move), stop, rotate the token, or say
        where it is served; the URL carries the token. The web server is imported here,
        the first time the dashboard is turned on."""
        if action not in ("status", "start", "stop", "rotate"):
            raise CorralError(f"web: unknown action {action!r}")
        if action == "start":
            from corral.daemon.web.server import WebServer

            if self.web_server is None:
                self.web_server = WebServer(self)  # type: ignore[arg-type] # the Daemon
            await self.web_server.start(host, port, allow_remote)
        elif action == "stop" and self.web_server is not None:
            await self.web_server.stop()
        elif action == "rotate":
            from corral.daemon.web.server import rotate_token

            if self.web_server is not None:
                self.web_server.rotate()
            else:
                rotate_token(self.home)
        self.schedule_save()  # the next daemon serves it too
        if self.web_server is None or self.web_server.address is None:
            return {"url": None, "address": None, "remote": False}
        return self.web_server.where()

    async def rpc_save(self, force: bool = False) -> dict[str, Any]:
        from corral.store import dump

        data = dump.build(i.record for i in self.supervisor.instances.values())
        path = dump.write(self.home, data, force)
        log.info("saved %d app(s) to %s", len(data["apps"]), path)
        return {"path": path, "apps": [a["spec"]["name"] for a in data["apps"]]}

    async def rpc_saved(self) -> dict[str, Any]:
        """Does the saved list still match the apps? in_sync: None when nothing was
        saved (`list` then says nothing), else True or False."""
        from corral.store import dump

        return {"in_sync": dump.in_sync(self.home, (i.record for i in
                                                    self.supervisor.instances.values())),
                "path": dump.dump_path(self.home)}

    async def rpc_kill(self) -> dict[str, Any]:
        """Every app, then the daemon (handle() ends it even when the client has gone).
        A delete that fails still leaves nothing running: what survives gets SIGKILL."""
        instances = list(self.supervisor.instances.values())
        results = await asyncio.gather(*(self.supervisor.delete(i) for i in instances),
                                       return_exceptions=True)
        for inst, result in zip(instances, results):
            if isinstance(result, BaseException):
                log.error("%s (id %d): delete failed (%s); SIGKILL", inst.record.spec.name,
                          inst.record.pm_id, quote(result))
                self.supervisor.kill_now(inst)
        self.save()
        return {"stopped": len(instances)}


def _check_shell_env(env: dict[str, str] | None) -> None:
    if env is not None:
        try:
            check_env(env)
        except BadValue as exc:
            raise CorralError(f"--update-env: {exc}") from None
