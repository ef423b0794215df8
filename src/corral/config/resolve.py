"""From what the user gave (a script, a module, a binary, a shell command, options) to
an AppSpec: the interpreter by extension, the program on PATH, the exec mode.

The CLI's `start` and every ecosystem file go through build_spec(); it checks the
file system (the script exists, the interpreter runs) but talks to no daemon.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from corral.model.apps import is_node_app, is_python_app, is_python_program
from corral.model.errors import CorralError
from corral.model.names import NULL_LOG_PATHS
from corral.model.spec import AppSpec
from corral.model.validate import MAX_INSTANCES

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
        return min(cpus, MAX_INSTANCES)
    if number < 0:
        return min(max(cpus + number, 1), MAX_INSTANCES)
    if number > MAX_INSTANCES:
        raise CorralError(f"-i/instances {number}: at most {MAX_INSTANCES} instances per app "
                          "(docs/lifecycle.md, \"Limits\")")
    return number


RUNNERS = {"uv": "run", "poetry": "run", "pipenv": "run", "pdm": "run", "hatch": "run"}


def command_name(command: str) -> str:
    """The default name of a shell command: its program (`uvicorn main:app --port 8000`
    -> uvicorn); for a Python interpreter, the module or the script it runs (`python3 -m
    http.server 8000` -> http.server, `python app.py` -> app); through `uv run` and the
    like, the program run; leading VAR=value words, `env` and `exec` skipped."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    while words and ("=" in words[0].split("/")[0] or words[0] in ("env", "exec")):
        words.pop(0)
    if len(words) > 2 and os.path.basename(words[0]) in RUNNERS \
            and words[1] == RUNNERS[os.path.basename(words[0])]:
        words = words[2:]
    if not words:
        return command.strip()
    program = os.path.basename(words[0])
    if is_python_program(program):
        rest = words[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
        if len(rest) > 1 and rest[0] == "-m":
            return rest[1]
        if rest and not rest[0].startswith("-"):
            return os.path.splitext(os.path.basename(rest[0]))[0]
    return program or command.strip()


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


def build_spec(
    script: str,
    *,
    notes: list[str] | None = None,
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
        default_name = command_name(script)
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
        from corral.config.schema import BadValue, to_cron

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
    for key in ("out_file", "error_file", "log_file", "pid_file"):
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
    note = choose_exec_mode(spec, exec_mode, instances is not None)
    if note and notes is not None:
        notes.append(note)
    return spec

MIN_NODE_CLUSTER = 12  # NODE_CHANNEL_SERIALIZATION_MODE=json, the protocol corral speaks


def check_node_cluster(node: str) -> None:
    """Refuse cluster mode with a node whose cluster protocol corral does not speak."""
    import subprocess

    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorralError(f"cannot run {node} --version ({exc}); pass --interpreter with "
                          "the node to use") from None
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_CLUSTER:
        raise CorralError(
            f"{node} is {version or 'of an unknown version'}: corral's cluster mode for Node "
            f"speaks the worker protocol of Node {MIN_NODE_CLUSTER} and newer (JSON IPC); "
            "use a newer node (--interpreter), or --exec-mode fork")


def choose_exec_mode(spec: AppSpec, asked: str | None, instances_given: bool) -> str | None:
    """-i on a Python or Node app means cluster mode (PM2 does so for Node); `fork` opts
    out; any other program runs as N fork instances. Returns a note for the user."""
    if asked == "fork" or (asked is None and not instances_given):
        spec.exec_mode = "fork"
        return None
    if is_python_app(spec):
        spec.exec_mode = "cluster"
        return gunicorn_note(spec)
    if is_node_app(spec):
        if spec.cluster_policy == "reuseport":
            raise CorralError(f"{spec.name}: the reuseport policy is for Python apps; Node "
                              "workers take rr (Node's default) or shared")
        check_node_cluster(spec.interpreter or "node")
        spec.exec_mode = "cluster"
        return None
    spec.exec_mode = "fork"
    if spec.instances > 1 or asked == "cluster":
        return (f"{spec.name}: cluster mode runs Python and Node apps only, and "
                f"{cluster_blocker(spec)}; running {spec.instances} fork instance(s), each "
                "its own process. If they serve a port, give each its own from "
                "$CORRAL_INSTANCE (\"server --port $((8000 + CORRAL_INSTANCE))\"), or run one "
                "instance that starts its own workers")
    return None


def cluster_blocker(spec: AppSpec) -> str:
    """Why an app cannot be clustered, and what to start instead, for the note."""
    if spec.kind == "shell":
        if any(op in spec.script for op in ("&&", "||", ";", "|")):
            return ("a command of several programs cannot be: start the Python program "
                    "alone (`corral start app.py --cwd DIR -i N`)")
        first = command_name(spec.script)
        return f"{first} is neither (a Python console script or interpreter would be)"
    what = os.path.basename(spec.exec_path or spec.script)
    return f"{what} is neither"


def gunicorn_note(spec: AppSpec) -> str | None:
    """gunicorn under -i N: N masters, each with its own workers."""
    program = spec.script if spec.kind == "module" else os.path.basename(
        spec.exec_path or (spec.script.split() or [""])[0])
    if program != "gunicorn" or spec.instances < 2:
        return None
    return (f"{spec.name}: gunicorn runs its own workers: -i {spec.instances} starts "
            f"{spec.instances} gunicorn masters, each with its workers. Prefer one instance "
            "with gunicorn's -w N (`corral start \"gunicorn -w 4 app:app\" --kill-signal "
            "SIGTERM`)")


def _abs_log_path(path: str, cwd: str) -> str:
    if path in NULL_LOG_PATHS:
        return "/dev/null"
    return os.path.join(cwd, os.path.expanduser(path))
