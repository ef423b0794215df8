"""The programmatic face of corral: build app specs, resolve targets, talk to the daemon.

    from corral import API
    api = API()                      # CORRAL_HOME from the environment
    api.start(api.spec("app.py", instances=2))
    api.list()

Nothing here prints; errors are CorralError with a message for the user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from corral.errors import CorralError
from corral.paths import Home, home_from_env, write_json_atomically

if TYPE_CHECKING:
    from corral.spec import AppSpec

# interpreter by extension (PM2's table, with Python run by corral's own Python)
EXT_INTERPRETERS = {
    ".py": "python",
    ".sh": "bash",
    ".bash": "bash",
    ".js": "node",
    ".cjs": "node",
    ".mjs": "node",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".ts": "bun",
}

SIGNAL_NAMES = {
    "SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGWINCH",
}


def parse_instances(value: str | int) -> int:
    """PM2's -i: N, `max` or 0 (every CPU), -N (CPUs minus N, at least 1)."""
    text = str(value).strip()
    if text.lower() == "max":
        number = 0
    else:
        try:
            number = int(text)
        except ValueError:
            raise CorralError(
                f"-i/instances takes a number, `max` or a negative number (got {text!r})"
            ) from None
    cpus = os.cpu_count() or 1
    if number == 0:
        return cpus
    if number < 0:
        return max(cpus + number, 1)
    return number


def _which(program: str) -> str | None:
    if os.sep in program:
        path = os.path.abspath(os.path.expanduser(program))
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(program)


def resolve_interpreter(text: str, cwd: str | None = None) -> tuple[str | None, list[str]]:
    """--interpreter value -> (absolute program, extra args); `none` runs the script itself.

    A relative path (.venv/bin/python) is taken from cwd, the app's folder."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CorralError(f"interpreter {text!r}: {exc}") from None
    if not words or words[0] == "none":
        return None, []
    if words[0] in ("python", "python3") and not shutil.which(words[0]):
        words[0] = sys.executable
    if cwd and os.sep in words[0] and not os.path.isabs(os.path.expanduser(words[0])):
        words[0] = os.path.join(cwd, words[0])
    program = _which(words[0])
    if program is None:
        raise CorralError(
            f"interpreter {words[0]!r} not found (not in PATH nor an executable file); "
            "install it or pass --interpreter with a full path"
        )
    return program, words[1:]


class API:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or home_from_env()
        self._client: Any = None
        self.notes: list[str] = []  # what spec() decided that the user should hear about

    @property
    def client(self) -> Any:
        if self._client is None:
            from corral.client import Client

            self._client = Client(self.home)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- building specs ----------------------------------------------------

    def spec(
        self,
        script: str,
        *,
        cwd: str | None = None,
        module: bool = False,
        interpreter: str | None = None,
        interpreter_args: Sequence[str] | str = (),
        instances: str | int | None = None,
        exec_mode: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> AppSpec:
        """Resolve what to run (interpreter by extension, binary, shell command, module).

        `options` are AppSpec fields (name, args, namespace, autorestart, max_restarts,
        kill_timeout_ms, out_file, ...). env defaults to this process's environment.
        """
        from corral.spec import AppSpec

        workdir = os.path.abspath(os.path.expanduser(cwd)) if cwd else os.getcwd()
        if not os.path.isdir(workdir):
            raise CorralError(f"--cwd {workdir}: no such folder")
        if isinstance(interpreter_args, str):
            try:
                interpreter_args = shlex.split(interpreter_args)
            except ValueError as exc:
                raise CorralError(f"interpreter args {interpreter_args!r}: {exc}") from None
        extra_interp_args = list(interpreter_args)
        interp: str | None = None
        if interpreter:
            interp, words = resolve_interpreter(interpreter, workdir)
            extra_interp_args = words + extra_interp_args
        kind = "script"
        exec_path = ""
        candidate = os.path.join(workdir, os.path.expanduser(script))
        if module:
            kind = "module"
            interp = interp or sys.executable
            default_name = script
        elif os.path.isfile(candidate):
            exec_path = os.path.abspath(candidate)
            ext = os.path.splitext(exec_path)[1].lower()
            default_name = os.path.splitext(os.path.basename(exec_path))[0]
            if interpreter is None:
                wanted = EXT_INTERPRETERS.get(ext)
                if wanted == "python":
                    interp = sys.executable
                elif wanted:
                    interp = shutil.which(wanted)
                    if interp is None:
                        raise CorralError(
                            f"{exec_path}: {ext} files run with {wanted}, which is not in PATH; "
                            "install it or pass --interpreter"
                        )
                elif os.access(exec_path, os.X_OK):
                    kind = "binary"
                else:
                    raise CorralError(
                        f"{exec_path} has no known extension and is not executable; "
                        "`chmod +x` it or pass --interpreter"
                    )
            elif interp is None:
                kind = "binary"
        elif os.path.isdir(candidate):
            raise CorralError(f"{candidate} is a folder; give the script to run")
        elif " " in script.strip():
            kind = "shell"
            default_name = script.strip()
        elif (found := _which(script)) is not None and os.sep not in script:
            kind = "binary"
            exec_path = found
            default_name = os.path.basename(found)
        else:
            raise CorralError(
                f"script not found: {candidate} (nor a command {script!r} in PATH); "
                "check the path, or --cwd"
            )
        watch = options.get("watch")
        if isinstance(watch, list):
            for path in watch:
                if not os.path.exists(os.path.join(workdir, path)):
                    raise CorralError(f"watch path {os.path.join(workdir, path)} does not "
                                      "exist; give existing files or folders (relative to "
                                      "the app's folder)")
        if options.get("cron_restart") is not None:
            from corral.schema import BadValue, to_cron

            try:
                options["cron_restart"] = to_cron(options["cron_restart"])
            except BadValue as exc:
                raise CorralError(f"cron_restart {options['cron_restart']!r}: {exc}") from None
        kill_signal = str(options.pop("kill_signal", "SIGINT")).upper()
        if kill_signal not in SIGNAL_NAMES:
            raise CorralError(f"kill_signal {kill_signal!r} is not one of "
                              f"{', '.join(sorted(SIGNAL_NAMES))}")
        is_python = kind == "module" or (
            interp is not None and "python" in os.path.basename(interp)
        ) or (interp is None and exec_path.endswith(".py"))
        for key in ("out_file", "error_file", "log_file"):
            if options.get(key) and options[key] != "true":
                options[key] = _abs_log_path(options[key], workdir)
        if not options.get("name"):
            options["name"] = default_name
        options = {k: v for k, v in options.items() if v is not None}
        spec = AppSpec(
            script=script,
            kind=kind,
            exec_path=exec_path,
            interpreter=interp if kind != "binary" else None,
            interpreter_args=extra_interp_args,
            cwd=workdir,
            env=dict(os.environ if env is None else env),
            instances=parse_instances(1 if instances is None else instances),
            kill_signal=kill_signal,
            is_python=is_python,
            **options,
        )
        self._choose_exec_mode(spec, exec_mode, instances is not None)
        return spec

    def _choose_exec_mode(self, spec: AppSpec, asked: str | None, instances_given: bool
                          ) -> None:
        """-i on a Python app means cluster mode (PM2 does so for Node); `fork` opts out;
        a program that is not Python runs as N fork instances."""
        from corral.clustermode import is_python_app

        if asked == "fork" or (asked is None and not instances_given):
            spec.exec_mode = "fork"
            return
        if is_python_app(spec):
            spec.exec_mode = "cluster"
            return
        spec.exec_mode = "fork"
        if spec.instances > 1 or asked == "cluster":
            self.notes.append(
                f"{spec.name}: cluster mode runs Python apps only; running {spec.instances} "
                "fork instance(s), each its own process (they must not share a port)")

    # ---- talking to the daemon ---------------------------------------------

    @staticmethod
    def targets(names: Iterable[str | int]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            text = str(name)
            path = os.path.abspath(text) if os.path.isfile(text) else None
            out.append({"name": text, "path": path})
        return out

    def start(self, *specs: AppSpec) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("start", apps=[s.to_dict() for s in specs])
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
        from corral import ecosystem

        return ecosystem.load(self, path, env_name, list(only) if only else None)

    def apply(self, specs: Sequence[AppSpec], mode: str, parallel: int = 1) -> dict[str, Any]:
        """Apps from a file: start the new ones; restart (mode "restart"), reload one by one
        (mode "reload") or start if stopped (mode "start") the registered ones, with the
        file's settings and environment.

        With depends_on, the apps go in waves: an app is applied only once the apps it
        depends on are online (cluster: listening) and, if they have a health check,
        healthy; stop/delete go the other way (see act_in_order)."""
        from corral.ecosystem import waves

        merged: dict[str, Any] = {}
        order = waves(list(specs))
        for number, wave in enumerate(order):
            result: dict[str, Any] = self.client.call(
                "apply", apps=[s.to_dict() for s in wave], mode=mode, parallel=parallel)
            for key, value in result.items():
                if isinstance(value, list) and key != "list":
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
            if result.get("failures"):
                break  # a reload that failed: the apps that wait for it are left alone
            if number < len(order) - 1:
                self._wait_usable(wave, [s.name for w in order[number + 1:] for s in w])
        return merged

    def _wait_usable(self, wave: Sequence[AppSpec], waiting: Sequence[str]) -> None:
        """Until every app of `wave` runs (and is healthy, if it has a health check); a
        CorralError names what did not come up and the apps of the later waves."""
        import time

        from corral.health import HealthCheck

        deadline = 0.0
        for spec in wave:
            if spec.health_check:
                check = HealthCheck.from_dict(spec.health_check)
                deadline = max(deadline, (check.start_period_ms + check.interval_ms
                                          * (check.retries + 1) + check.timeout_ms
                                          * check.retries) / 1000 + 5)
        names = {s.name for s in wave}
        checked = {s.name for s in wave if s.health_check}
        end = time.monotonic() + deadline
        while True:
            rows = [r for r in self.list() if r["spec"]["name"] in names]
            bad = [r for r in rows if r["status"] in ("errored", "stopped")
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
        from corral.ecosystem import waves

        chosen = set(present)
        result: dict[str, Any] = {}
        for wave in reversed(waves(list(specs))):
            names = [s.name for s in wave if s.name in chosen]
            if names:
                result = self.act(action, names)
        return result

    def restart_update_env(self, names: Iterable[str | int],
                           env: dict[str, str] | None = None) -> dict[str, Any]:
        """Restart with a new shell environment (default: this process's); variables that
        are gone from it are removed from the app, the config's own variables stay."""
        result: dict[str, Any] = self.client.call(
            "restart", targets=self.targets(names), env=dict(os.environ if env is None else env))
        return result

    def reload(self, names: Iterable[str | int], parallel: int = 1,
               env: dict[str, str] | None = None) -> dict[str, Any]:
        """Rolling reload (cluster mode); fork-mode apps are restarted. env: --update-env."""
        result: dict[str, Any] = self.client.call("reload", targets=self.targets(names),
                                                  parallel=parallel, env=env)
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

    def resurrect(self) -> dict[str, Any]:
        """Start the saved apps that are not registered (by name); saved-stopped apps come
        back stopped. Returns started names, those already there, problems and notes."""
        from corral import dump

        data, used, notes = dump.read(self.home)
        running = {row["spec"]["name"] for row in self.list()}
        specs, present, problems = dump.specs_to_resurrect(data, running)
        started: dict[str, Any] = {"list": self.list()}
        if specs:
            started = self.start(*specs)
        return {"file": used, "started": [s.name for s in specs], "present": present,
                "problems": problems, "notes": notes, "list": started["list"]}

    def cleardump(self) -> str:
        """Empty the saved list (the old one becomes .bak)."""
        from corral import dump

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
        return _orphans_left_in(self.home.state_file)

    def kill(self) -> dict[str, Any]:
        """Stop every app, then the daemon (returns once the daemon is gone)."""
        from corral.client import Client

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


def _orphans_left_in(state_file: str) -> bool:
    """Does the process list name a process that still runs (one a dead daemon left)?"""
    import json

    from corral.metrics import is_same_process

    try:
        with open(state_file) as f:
            records = json.load(f).get("instances", [])
    except (OSError, ValueError):
        return False
    return any(is_same_process(r.get("pid", 0), r.get("pid_create_time", 0.0))
               for r in records)


def _abs_log_path(path: str, cwd: str) -> str:
    if path in ("NULL", "/dev/null"):
        return "/dev/null"
    return os.path.join(cwd, os.path.expanduser(path))
