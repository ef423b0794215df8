"""What kind of program an app is: Python (it can run as cluster workers) or not.

Used on both sides: the client chooses cluster mode for a Python app, the daemon
picks the Python that runs a cluster worker's bootstrap. (The bootstrap itself,
corral.cluster.bootstrap, keeps its own `is_python_file`: corral.cluster depends on
nothing else of corral.)
"""

from __future__ import annotations

import os
import shlex
import shutil

from corral.model.spec import AppSpec


def is_python_file(path: str) -> bool:
    """A .py file, or a script whose #! line names a Python."""
    if path.endswith((".py", ".pyw")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def is_python_program(path: str) -> bool:
    """A Python interpreter, by its name: python, python3, python3.12, pypy3."""
    name = os.path.basename(path)
    for prefix in ("python", "pypy"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            return not rest or rest.replace(".", "").isdigit()
    return False


def shell_program(spec: AppSpec) -> str | None:
    """The program a shell command runs first (its path, if found in PATH)."""
    try:
        words = shlex.split(spec.script)
    except ValueError:
        return None
    while words and "=" in words[0].split("/")[0]:  # VAR=value before the program
        words.pop(0)
    if not words:
        return None
    first = words[0]
    return shutil.which(first, path=os.path.dirname(spec.interpreter or "") or None) \
        or shutil.which(first)


def is_python_app(spec: AppSpec) -> bool:
    """Is it Python (can it run as cluster workers through our bootstrap)? A script or
    module run by Python, a console script (#! python), or a Python interpreter given as
    the program (`python3 -m http.server 8000`, `python app.py`)."""
    if spec.kind == "module" or spec.is_python:
        return True
    if spec.kind == "shell":
        path = shell_program(spec)
        return path is not None and (is_python_file(path) or is_python_program(path))
    if spec.kind == "binary":
        return is_python_file(spec.exec_path) or is_python_program(spec.exec_path)
    return False


NODE_EXTENSIONS = (".js", ".mjs", ".cjs")


def is_node_app(spec: AppSpec) -> bool:
    """Is this app a Node script (run by node): it then gets Node's IPC channel, and in
    cluster mode the daemon is its cluster primary (docs/cluster-mode.md)."""
    if spec.kind != "script":
        return False
    if spec.interpreter:
        return os.path.basename(spec.interpreter).split(".")[0] in ("node", "nodejs")
    return spec.exec_path.endswith(NODE_EXTENSIONS)


def shebang_python(path: str) -> str | None:
    """The interpreter of a Python console script (its #! line), if it names one."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512).decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!") or "python" not in first:
        return None
    words = first[2:].split()
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0]


def worker_python(spec: AppSpec, default: str) -> str:
    """Which Python runs the bootstrap: the app's interpreter, its console script's, or
    the interpreter that is the program (`python3 -m http.server`)."""
    if spec.kind in ("script", "module"):
        return spec.interpreter or default
    program = spec.exec_path
    if spec.kind == "shell":
        program = shell_program(spec) or ""
    if program and is_python_program(program):
        return program
    return (shebang_python(program) if program else None) or default
