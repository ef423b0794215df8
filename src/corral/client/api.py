"""The programmatic face of corral: build app specs, resolve targets, talk to the daemon.

    from corral import API
    api = API()                      # CORRAL_HOME from the environment
    api.start(api.spec("app.py", instances=2))
    api.list()

Nothing here prints; errors are CorralError with a message for the user.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from corral.model import states
from corral.model.errors import CorralError
from corral.model.targets import to_wire
from corral.store.home import Home, home_from_env, write_json_atomically

if TYPE_CHECKING:
    from corral.model.spec import AppSpec


def _wait(wait: bool) -> dict[str, bool]:
    """The `wait` parameter, sent only when it is not the daemon's default (True)."""
    return {} if wait else {"wait": False}


class API:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or home_from_env()
        self._client: Any = None
        self.notes: list[str] = []  # what spec() decided that the user should hear about

    @property
    def client(self) -> Any:
        if self._client is None:
            from corral.client.connection import Client

            self._client = Client(self.home)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- building specs ----------------------------------------------------

    def spec(self, script: str, **options: Any) -> AppSpec:
        """Resolve what to run (config.resolve.build_spec); what it decided that the user
        should hear about is added to self.notes."""
        from corral.config.resolve import build_spec

        return build_spec(script, notes=self.notes, **options)

    # ---- talking to the daemon ---------------------------------------------

    @staticmethod
    def targets(names: Iterable[str | int]) -> list[dict[str, Any]]:
        return to_wire(names)

    def start(self, *specs: AppSpec, wait: bool = True) -> dict[str, Any]:
        """Start apps; returns once they run (cluster: listen), with `failed`: the
        instances that exited at once, their last error lines and a hint. wait=False
        returns as soon as they are launched."""
        result: dict[str, Any] = self.client.call("start", apps=[s.to_dict() for s in specs],
                                                  **_wait(wait))
        return result

    def list(self, env: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.call("list", env=env)
        return result

    def act(self, action: str, names: Iterable[str | int]) -> dict[str, Any]:
        """stop / restart / delete / reset on targets."""
        result: dict[str, Any] = self.client.call(action, targets=self.targets(names))
        return result

    def load_file(self, path: str, env_name: str | None = None,
                  only: Sequence[str] | None = None) -> Any:
        """Read an ecosystem file: its AppSpecs and the warnings about it (ecosystem.Loaded)."""
        from corral.config import ecosystem

        return ecosystem.load(path, env_name, list(only) if only else None)

    def apply(self, specs: Sequence[AppSpec], mode: str, parallel: int = 1,
              wait: bool = True, progress: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
        """Apps from a file: start the new ones; restart (mode "restart"), reload one by one
        (mode "reload") or start if stopped (mode "start") the registered ones, with the
        file's settings and environment.

        With depends_on, the apps go in waves: an app is applied only once the apps it
        depends on are online (cluster: listening) and, if they have a health check,
        healthy; stop/delete go the other way (see act_in_order).

        progress (for a file of several apps, not in mode reload): called with one line
        per app as it is launched; the verdict on them all (`failed`) comes after."""
        from corral.config.order import waves

        merged: dict[str, Any] = {}
        order = waves(list(specs))
        total = len(specs)
        done = 0
        for number, wave in enumerate(order):
            result: dict[str, Any]
            if progress is not None and wait and mode != "reload" and total > 1:
                result = self._apply_stepwise(wave, mode, progress, done, total)
                done += len(wave)
            else:
                result = self.client.call(
                    "apply", apps=[s.to_dict() for s in wave], mode=mode, parallel=parallel,
                    **_wait(wait))
            for key, value in result.items():
                if isinstance(value, list) and key != "list":
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
            if result.get("failures") or result.get("failed"):
                # a reload or a start that failed: the apps that wait for it are left alone
                merged["not_started"] = [s.name for w in order[number + 1:] for s in w]
                break
            if number < len(order) - 1:
                self._wait_usable(wave, [s.name for w in order[number + 1:] for s in w])
        merged.pop("marks", None)
        return merged

    def _apply_stepwise(self, wave: Sequence[AppSpec], mode: str,
                        progress: Callable[[str], None], done: int, total: int
                        ) -> dict[str, Any]:
        """One wave of apply(), an app at a time without waiting (a progress line each),
        then the outcome of them all at once."""
        merged: dict[str, Any] = {}
        marks: dict[str, list[int]] = {}
        for spec in wave:
            result: dict[str, Any] = self.client.call(
                "apply", apps=[spec.to_dict()], mode=mode, wait=False)
            marks.update(result.pop("marks", {}))
            for key, value in result.items():
                if isinstance(value, list) and key != "list":
                    merged.setdefault(key, []).extend(value)
            done += 1
            ids = result["started"] + result["restarted"]
            what = ("started" if result["started"] else "restarted" if result["restarted"]
                    else "left as it is")
            progress(f"[{done}/{total}] {spec.name}: {what}"
                     + (f" (id {', '.join(map(str, ids))})" if ids else ""))
        verdict = self.outcome(marks)
        merged["failed"] = verdict["failed"]
        merged["list"] = verdict["list"]
        return merged

    def outcome(self, marks: dict[str, Any]) -> dict[str, Any]:
        """The verdict on instances launched with wait=False (their `marks`): `failed`, as
        a waiting start gives it, and the list."""
        result: dict[str, Any] = self.client.call("outcome", marks=marks)
        return result

    def _wait_usable(self, wave: Sequence[AppSpec], waiting: Sequence[str]) -> None:
        """Until every app of `wave` runs (and is healthy, if it has a health check); a
        CorralError names what did not come up and the apps of the later waves."""
        import time

        from corral.model.health import HealthCheck

        deadline = 0.0
        for spec in wave:
            if spec.health_check:
                check = HealthCheck.from_dict(spec.health_check)
                deadline = max(deadline, check.give_up_after_s() + 5)
        names = {s.name for s in wave}
        checked = {s.name for s in wave if s.health_check}
        end = time.monotonic() + deadline
        while True:
            rows = [r for r in self.list() if r["spec"]["name"] in names]
            bad = [r for r in rows if r["status"] in (states.ERRORED, states.STOPPED)
                   and r["spec"]["autostart"]]
            if bad:
                row = bad[0]
                why = row.get("reason") or "see its error log"
                raise CorralError(f"{row['spec']['name']} is {row['status']} ({why}); not "
                                  f"started, as they depend on it: {', '.join(waiting)}")
            unhealthy = sorted({r["spec"]["name"] for r in rows if r["spec"]["name"] in checked
                                and r.get("health") != "healthy"})
            if not unhealthy:
                return
            if time.monotonic() > end:
                raise CorralError(
                    f"{', '.join(unhealthy)}: not healthy within {deadline:.0f} s (its "
                    f"health_check); not started, as they depend on it: {', '.join(waiting)}")
            time.sleep(0.2)

    def act_in_order(self, action: str, specs: Sequence[AppSpec],
                     present: Iterable[str]) -> dict[str, Any]:
        """stop / delete / reset the registered apps of a file, dependents first."""
        from corral.config.order import waves

        chosen = set(present)
        result: dict[str, Any] = {}
        for wave in reversed(waves(list(specs))):
            names = [s.name for s in wave if s.name in chosen]
            if names:
                result = self.act(action, names)
        return result

    def load_stdin(self, text: str, env_name: str | None = None,
                   only: Sequence[str] | None = None) -> Any:
        """`start -`, `delete -`: an ecosystem (PM2's JSON) read from standard input."""
        from corral.config import ecosystem

        return ecosystem.load(ecosystem.STDIN, env_name, list(only) if only else None,
                              text=text)

    def restart_with(self, names: Iterable[str | int], update: dict[str, Any] | None = None,
                     toggle_watch: bool = False, env: dict[str, str] | None = None,
                     wait: bool = True) -> dict[str, Any]:
        """Restart, applying first `update` (AppSpec fields: PM2's attribute update, what
        `restart NAME --max-memory-restart 300M` changes), toggling watch, and with env
        (--update-env) replacing the shell part of the environment. `failed` and wait
        as for start()."""
        result: dict[str, Any] = self.client.call(
            "restart", targets=self.targets(names), env=env, toggle_watch=toggle_watch,
            update=update or None, **_wait(wait))
        return result

    def restart_update_env(self, names: Iterable[str | int],
                           env: dict[str, str] | None = None) -> dict[str, Any]:
        """Restart with a new shell environment (default: this process's); variables that
        are gone from it are removed from the app, the config's own variables stay."""
        result: dict[str, Any] = self.client.call(
            "restart", targets=self.targets(names), env=dict(os.environ if env is None else env))
        return result

    def reload(self, names: Iterable[str | int], parallel: int = 1,
               env: dict[str, str] | None = None, update: dict[str, Any] | None = None,
               toggle_watch: bool = False) -> dict[str, Any]:
        """Rolling reload (cluster mode); fork-mode apps are restarted. env: --update-env;
        update and toggle_watch as for restart_with()."""
        result: dict[str, Any] = self.client.call(
            "reload", targets=self.targets(names), parallel=parallel, env=env,
            update=update or None, toggle_watch=toggle_watch)
        return result

    def scale(self, name: str, count: str | int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("scale", name=name, count=str(count))
        return result

    def stop(self, *names: str | int) -> dict[str, Any]:
        return self.act("stop", names)

    def restart(self, *names: str | int) -> dict[str, Any]:
        return self.act("restart", names)

    def delete(self, *names: str | int) -> dict[str, Any]:
        return self.act("delete", names)

    def reset(self, *names: str | int) -> dict[str, Any]:
        return self.act("reset", names)

    def send_signal(self, signal_name: str, *names: str | int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call(
            "signal", signal_name=signal_name, targets=self.targets(names))
        return result

    def ping(self) -> str:
        result: str = self.client.call("ping")
        return result

    def save(self, force: bool = False) -> dict[str, Any]:
        """Save the process list for `resurrect` (CORRAL_HOME/dump.json, the old one .bak)."""
        result: dict[str, Any] = self.client.call("save", force=force)
        return result

    def resurrect(self, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Start the saved apps that are not registered (by name); saved-stopped apps come
        back stopped. Returns started names, those already there, problems, notes and
        `failed` (as start). progress: a line per app as it is launched."""
        from corral.store import dump

        data, used, notes = dump.read(self.home)
        running = {row["spec"]["name"] for row in self.list()}
        specs, present, problems = dump.specs_to_resurrect(data, running)
        started: dict[str, Any] = {"list": self.list(), "failed": []}
        if specs and progress is not None and len(specs) > 1:
            marks: dict[str, list[int]] = {}
            for number, spec in enumerate(specs, 1):
                one = self.start(spec, wait=False)
                marks.update(one.get("marks", {}))
                progress(f"[{number}/{len(specs)}] {spec.name}: "
                         + (f"started (id {', '.join(map(str, one['started']))})"
                            if spec.autostart else "registered, stopped as saved"))
            started = self.outcome(marks)
        elif specs:
            started = self.start(*specs)
        return {"file": used, "started": [s.name for s in specs], "present": present,
                "problems": problems, "notes": notes, "list": started["list"],
                "failed": started.get("failed", [])}

    def cleardump(self) -> str:
        """Empty the saved list (the old one becomes .bak)."""
        from corral.store import dump

        return dump.write(self.home, dump.build([]), force=True)

    def update(self) -> dict[str, Any]:
        """Replace the daemon with one of this corral's version; the apps keep running (the
        new daemon adopts them, cluster workers hand their listeners back)."""
        client = self.client
        old_pid = client.daemon_pid
        result: dict[str, Any] = client.call("update")
        client.close()
        if not client.wait_daemon_exit():
            raise CorralError(f"the old daemon (pid {old_pid}) did not exit; see "
                              f"{self.home.daemon_log}")
        self._client = None
        self.ping()  # starts the new daemon, which adopts the apps
        return {"old_pid": old_pid, "new_pid": self.client.daemon_pid,
                "processes": result["processes"], "list": self.list()}

    def _forget_state(self) -> None:
        """Empty the persisted list, unless a daemon is starting (it holds the lock)."""
        import fcntl
        import json

        try:
            fd = os.open(self.home.daemon_lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(self.home.state_file) as f:
                state = json.load(f)
            if state.get("instances"):
                state["instances"] = []
                write_json_atomically(self.home.state_file, state, separators=(",", ":"))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)

    def _orphans_left(self) -> bool:
        from corral.store.state import orphans_left

        return orphans_left(self.home)

    def kill(self) -> dict[str, Any]:
        """Stop every app, then the daemon (returns once the daemon is gone)."""
        from corral.client.connection import Client

        try:
            client = Client(self.home, start=False)
        except OSError:
            if not self._orphans_left():
                # nothing runs; but a list that a SIGTERM left would bring the apps back
                # with the next command: `kill` means none comes back
                self._forget_state()
                return {"stopped": 0, "running": False}
            # the daemon died and left apps running: a new one adopts them, then stops them
            client = Client(self.home)
        result: dict[str, Any] = client.call("kill")
        client.close()
        client.wait_daemon_exit()
        self._client = None
        return result
