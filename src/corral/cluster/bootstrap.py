"""`python -m corral.cluster.bootstrap [--listen-fds A,B] [-m] -- TARGET ARGS...`: a worker's bootstrap.

It connects to the primary and installs the bind hook (child.setup()), places pre-bound listeners at fds 3, 4, ... with the systemd
socket-activation variables (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), then
runs the target: a Python script or module in this process (so the hook sees
its binds), a Python console script (uvicorn, gunicorn, ...) the same way, or
any other program by exec (socket activation only).
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys

SD_LISTEN_FDS_START = 3


def _move_high(fd: int, floor: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(fd)
    return new


def place_listen_fds(fds: list[int], names: list[str]) -> None:
    """Put the listeners at 3.. and announce them for this very process."""
    from corral.cluster.primary import ENV_IPC_FD

    floor = SD_LISTEN_FDS_START + len(fds) + 16
    ipc = os.environ.get(ENV_IPC_FD)
    if ipc is not None and int(ipc) < floor:
        os.environ[ENV_IPC_FD] = str(_move_high(int(ipc), floor))
    high = [_move_high(fd, floor) for fd in fds]
    for index, fd in enumerate(high):
        target = SD_LISTEN_FDS_START + index
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDNAMES"] = ":".join(names or ["corral"] * len(fds))


def is_python_file(path: str) -> bool:
    if path.endswith((".py", ".pyw")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def is_python_program(path: str) -> bool:
    """A Python interpreter, by its name (corral.model.apps has the same rule)."""
    name = os.path.basename(path)
    for prefix in ("python", "pypy"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            return not rest or rest.replace(".", "").isdigit()
    return False


def run_as_interpreter(args: list[str]) -> int:
    """Run `python [options] -m MODULE ARGS`, `... SCRIPT ARGS` or `... -c CODE ARGS` in
    this process, which the daemon started with that interpreter (worker_python()), so
    the hook sees the app's binds. Options other than -u cannot apply any more: said."""
    ignored = []
    while args and args[0].startswith("-") and args[0] not in ("-m", "-c", "-"):
        option = args.pop(0)
        if option in ("-X", "-W") and args:
            option += " " + args.pop(0)
        if option != "-u":  # PYTHONUNBUFFERED is set for every app
            ignored.append(option)
    if ignored:
        print("corral.cluster.bootstrap: interpreter options do not apply in a cluster "
              f"worker: {' '.join(ignored)} (--interpreter-args passes them)", file=sys.stderr)
    if len(args) > 1 and args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    if len(args) > 1 and args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        return 0
    if not args or args[0] == "-":
        print("corral.cluster.bootstrap: the Python command runs nothing (give -m MODULE "
              "or a script)", file=sys.stderr)
        return 2
    sys.argv = list(args)
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    runpy.run_path(args[0], run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    module = False
    listen_fds: list[int] = []
    while argv and argv[0] != "--":
        option = argv.pop(0)
        if option == "-m":
            module = True
        elif option == "--listen-fds":
            listen_fds = [int(x) for x in argv.pop(0).split(",") if x]
        else:
            print(f"corral.cluster.bootstrap: unknown option {option}", file=sys.stderr)
            return 2
    if argv and argv[0] == "--":
        argv.pop(0)
    if not argv:
        print("corral.cluster.bootstrap: nothing to run", file=sys.stderr)
        return 2
    if listen_fds:
        names = [n for n in os.environ.get("CORRAL_CLUSTER_LISTEN_NAMES", "").split(":") if n]
        place_listen_fds(listen_fds, names)
    from corral.cluster import child

    child.setup()  # connects to the primary and installs the hook, before the app runs

    target, args = argv[0], argv[1:]
    if module:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
        return 0
    path = target if os.sep in target or os.path.exists(target) else shutil.which(target)
    if path is None:
        print(f"corral.cluster.bootstrap: {target}: not found", file=sys.stderr)
        return 127
    if is_python_program(path):  # `python3 -m http.server 8000`: this Python is that one
        return run_as_interpreter(args)
    if is_python_file(path):
        sys.argv = [path, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(path))
        runpy.run_path(path, run_name="__main__")
        return 0
    os.execv(path, [path, *args])
    return 127  # not reached


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    raise SystemExit(code)
