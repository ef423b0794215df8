"""corral-runtime: the daemon in the foreground, for containers (PM2's pm2-runtime).

    corral-runtime start FILE|script [corral start's options] [--json|--raw|--format]
                   [--logs] [--no-auto-exit]

The daemon runs in this very process (no double fork: in a container it is PID 1).
Once its socket listens it starts the apps with `corral start` (a client run against
it, so a file gives the same errors, warnings and depends_on order as `corral start`),
and every line the apps write reaches the runtime's own stdout and stderr (docs/deploy.md):
an app's stdout on stdout, its stderr on stderr, as `id|name | line`, the line alone
(--raw), one JSON object a line (--json) or key=value pairs (--format). Log files are
written only with --logs. `corral list`, `logs`, `reload`, ... run beside it (same
CORRAL_HOME) talk to it as to any daemon.

As PID 1, or elsewhere as a child subreaper, it reaps every orphan reparented to it,
without taking the exit status of a process the daemon waits for: every process this
process spawns goes through subprocess.Popen, which is recorded (Spawned), and only the
other children are waited for. SIGTERM / SIGINT stop every app (kill timeouts honoured),
then the processes the apps left behind, and the runtime exits 0 (1 when an app could
not be stopped). It also exits once every app has stopped for good (1 if one is
errored or ended with a failure), unless --no-auto-exit.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.daemon.server import Daemon
from corral.daemon.supervisor import Instance, Supervisor
from corral.model.errors import CorralError
from corral.model.logformat import json_line
from corral.model.spec import AppSpec
from corral.model.states import ERRORED, STOPPED
from corral.model.version import __version__
from corral.model.wire import error_frame
from corral.store.home import Home, home_from_env

log = logging.getLogger("corral.runtime")

USAGE = """\
usage: corral-runtime start FILE|script [corral start's options] [runtime options]

Run corral's daemon in the foreground with the apps of FILE (or one script), e.g. as
a container's command: CMD ["corral-runtime", "start", "ecosystem.config.toml"].
Every option of `corral start` applies (--env NAME, --only a,b, -i N, --name, ...;
`corral start --help`); arguments after `--` go to the app.

runtime options:
  --raw           the apps' lines alone (default: `id|name | line`)
  --json          one JSON object a line (message, timestamp, type, process_id, app_name)
  --format        key=value pairs: timestamp=... app=... id=... type=... message="..."
  --logs          also write the log files (default: the apps' output goes to this
                  process's stdout and stderr only)
  --no-auto-exit  keep running when every app has stopped (default: exit then)
  -h, --help      this help;  -v, --version  corral's version

SIGTERM / SIGINT stop every app (kill_timeout honoured) and the runtime exits 0,
or 1 when an app could not be stopped. docs/deploy.md.
"""

OWN_FLAGS = ("--raw", "--json", "--format", "--logs", "--no-auto-exit")
EXIT_SETTLE_S = 0.3  # every app stopped for this long: the runtime exits
SWEEP_S = 5.0  # a reaping pass even without SIGCHLD (a missed one, a /proc race)
PR_SET_CHILD_SUBREAPER = 36


# ---- options -----------------------------------------------------------------

@dataclass
class Options:
    start_args: list[str]  # what `corral start` gets
    output: str = "prefix"  # prefix | raw | json | format
    logs: bool = False
    auto_exit: bool = True


def parse(argv: list[str]) -> Options | str:
    """argv -> Options, or the text to print and exit with (help, version, an error)."""
    args = list(argv)
    if args and args[0] == "start":
        args = args[1:]
    app_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, app_args = args[:cut], args[cut:]
    if any(a in ("-h", "--help") for a in args):
        return USAGE
    if any(a in ("-v", "--version") for a in args):
        return f"corral-runtime {__version__}"
    options = Options([a for a in args if a not in OWN_FLAGS] + app_args)
    formats = [a[2:] for a in args if a in ("--raw", "--json", "--format")]
    if len(set(formats)) > 1:
        return f"corral-runtime: error: --{formats[0]} and --{formats[1]} exclude each other"
    if formats:
        options.output = formats[0]
    options.logs = "--logs" in args
    options.auto_exit = "--no-auto-exit" not in args
    return options


# ---- our own stdout and stderr -------------------------------------------------

class Sink:
    """Lines for one of the runtime's streams, written by a thread of its own: a slow
    reader (a full pipe) never blocks the event loop. Past MAX_PENDING bytes waiting,
    lines are dropped and counted (the count is written once there is room)."""

    MAX_PENDING = 16 * 1024 * 1024

    def __init__(self, fd: int, name: str, note: Callable[[str], bytes]) -> None:
        self.fd = fd
        self.note = note  # corral's own line, in the runtime's format
        self.cond = threading.Condition()
        self.chunks: list[bytes] = []  # what waits; the dropped count follows what was kept
        self.pending = 0
        self.dropped = 0
        self.closed = False
        self.broken = False
        self.thread = threading.Thread(target=self._run, name=f"corral-runtime-{name}",
                                       daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> None:
        with self.cond:
            if self.pending + len(data) > self.MAX_PENDING:
                self.dropped += 1
                return
            self.chunks.append(data)
            self.pending += len(data)
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.chunks and not self.closed:
                    self.cond.wait()
                chunks, self.chunks, self.pending = self.chunks, [], 0
                dropped, self.dropped = self.dropped, 0
                if not chunks and self.closed:
                    return
            if dropped:
                chunks.append(self.note(f"{dropped} line(s) dropped: this stream was "
                                           "read too slowly"))
            self._write_all(b"".join(chunks))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                view = view[os.write(self.fd, view):]
            except InterruptedError:
                continue
            except OSError:  # the reader is gone (EPIPE) or the fd is closed
                self.broken = True

    def close(self, timeout: float = 5.0) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout)


class Echo:
    """How a line appears on the runtime's streams (--raw, --json, --format or the
    `id|name | line` of `corral logs`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def line(self, pm_id: int, name: str, kind: str, text: str, at: float) -> bytes:
        if self.mode == "raw":
            return f"{text}\n".encode()
        if self.mode == "json":
            return json_line(text.encode(), kind, pm_id, name, at, None)
        if self.mode == "format":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))
            pairs = [("timestamp", stamp), ("app", name), ("id", str(pm_id)), ("type", kind),
                     ("message", text)]
            return (" ".join(f"{k}={_logfmt(v)}" for k, v in pairs) + "\n").encode()
        return f"{pm_id if pm_id >= 0 else 'PM'}|{name} | {text}\n".encode()

    def own(self, text: str, at: float | None = None) -> bytes:
        """A line of corral itself (the daemon's log, what `corral start` said)."""
        return self.line(-1, "corral", "daemon", text, time.time() if at is None else at)


def _logfmt(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=False)


class SinkHandler(logging.Handler):
    """The daemon's own log lines, on the runtime's stderr."""

    def __init__(self, sink: Sink, echo: Echo) -> None:
        super().__init__(logging.INFO)
        self.sink = sink
        self.echo = echo
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            for part in text.splitlines() or [""]:
                self.sink.write(self.echo.own(part, record.created))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


# ---- children: ours, and the orphans we reap -----------------------------------

class Spawned:
    """Every process this one spawns through subprocess.Popen (the supervisor's apps,
    asyncio's subprocesses for health checks, `corral start`): their exit status
    belongs to whoever waits for them (a pidfd and Popen.wait(), asyncio's child
    watcher). Any other child is an orphan reparented to us, which we reap.

    The children are listed from /proc and each other one is waited for with WNOHANG:
    a peek with waitid(P_ALL, WNOHANG | WNOWAIT) sees one exited child at a time, and a
    child of ours whose owner has not waited for it yet would hide the orphans behind it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.popens: weakref.WeakSet[subprocess.Popen[Any]] = weakref.WeakSet()
        self.installed = False

    def install(self) -> None:
        """Record every Popen (a spawn in another thread holds the lock until its pid is
        recorded, so a reaping pass never sees the pid unrecorded)."""
        if self.installed:
            return
        self.installed = True
        original: Callable[..., None] = subprocess.Popen._execute_child  # type: ignore[attr-defined]
        spawned = self

        def _execute_child(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            with spawned.lock:
                original(popen, *args, **kwargs)
                spawned.popens.add(popen)

        subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]

    def ours(self) -> set[int]:
        """The pids someone in this process still waits for (call with the lock held)."""
        return {p.pid for p in list(self.popens) if p.returncode is None}

    def reap(self) -> list[int]:
        """Wait for every child that exited and is not ours; their pids."""
        reaped = []
        with self.lock:
            ours = self.ours()
            for pid in children():
                if pid in ours:
                    continue
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    reaped.append(done)
        return reaped

    def strays(self) -> list[int]:
        """Children that are not ours (orphans) and still run."""
        with self.lock:
            ours = self.ours()
            return [pid for pid in children() if pid not in ours and not _zombie(pid)]


def children() -> list[int]:
    """The pids of this process's children (of all its threads)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    found = False
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids += [int(p) for p in f.read().split()]
            found = True
        except (OSError, ValueError):
            continue
    if not found:  # a kernel without CONFIG_PROC_CHILDREN
        import psutil

        pids = [p.pid for p in psutil.Process().children()]
    return pids


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:][:1] in (b"Z", b"X")


def become_subreaper() -> bool:
    """Outside a pid namespace, orphans of the apps come to us rather than to init."""
    if os.getpid() == 1:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# ---- the runtime -----------------------------------------------------------------

class RuntimeSupervisor(Supervisor):
    """The process table of corral-runtime: the apps' output goes to the runtime's
    streams, and to the log files only with --logs."""

    write_files = False

    def log_paths(self, spec: AppSpec, pm_id: int) -> tuple[str, str, str]:
        if self.write_files:
            return super().log_paths(spec, pm_id)
        return "/dev/null", "/dev/null", ""


READ_ONLY = frozenset({"hello", "ping", "list", "log_files", "follow"})


class Runtime(Daemon):
    """The daemon, in the foreground: it starts the apps, echoes their lines, reaps
    orphans, and exits when they are all stopped (by a signal, or for good)."""

    def __init__(self, home: Home, options: Options, out: Sink, err: Sink, echo: Echo,
                 spawned: Spawned) -> None:
        super().__init__(home)
        self.options = options
        self.out = out
        self.err = err
        self.echo = echo
        self.spawned = spawned
        self.exit_code = 0
        self.stopping = False  # no command is taken any more
        self.finishing = False
        self.started = False  # `corral start` has finished
        self.cleared = asyncio.Event()
        self.starter: asyncio.subprocess.Process | None = None
        self.exit_check: asyncio.TimerHandle | None = None
        self.sweeper: asyncio.TimerHandle | None = None

    # ---- the hooks of Daemon ----------------------------------------------

    def make_supervisor(self) -> Supervisor:
        supervisor = RuntimeSupervisor(self.home, self.schedule_save, self.publish,
                                       self.following)
        supervisor.write_files = self.options.logs
        return supervisor

    def following(self) -> bool:
        return True  # every line is echoed

    def publish(self, event: dict[str, Any]) -> None:
        super().publish(event)  # `corral logs` beside us
        kind = event.get("type")
        if kind in ("out", "err"):
            data = self.echo.line(event["pm_id"], event["name"], kind, event["line"],
                                  event["at"])
            (self.out if kind == "out" else self.err).write(data)

    async def _start_restored(self, instances: list[Instance]) -> None:
        """The runtime starts from an empty table: what a previous daemon left in this
        home is forgotten, and a process of it that still runs (a runtime killed with
        SIGKILL outside a pid namespace) is adopted and stopped, never run twice."""
        try:
            left = list(self.supervisor.instances.values())
            if left:
                log.info("forgetting %d process(es) a previous daemon left in %s",
                         len(left), self.home.root)
            await asyncio.gather(*(self.supervisor.delete(i) for i in left))
        finally:
            self.cleared.set()

    def ready(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self._sweep()
        loop.create_task(self._start_apps())

    def schedule_save(self) -> None:
        super().schedule_save()
        self._schedule_exit_check()

    async def on_signal(self, sig: int) -> None:
        if self.stopping:
            return
        log.info("received %s: stopping every app", signal.Signals(sig).name)
        await self.finish(0)

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.stopping and request.get("method") not in READ_ONLY:
            return error_frame(request.get("id", 0), "corral-runtime is stopping every app "
                               "and exiting; no new command is taken")
        return await super().dispatch(request)

    async def rpc_update(self) -> dict[str, Any]:
        raise CorralError("corral-runtime cannot hand its apps over to another daemon: "
                          "restart the runtime (the container) with the new corral instead")

    async def rpc_kill(self) -> dict[str, Any]:
        """`corral kill` beside the runtime: every app, then the runtime (exit 0)."""
        self.stopping = True
        result = await super().rpc_kill()
        await self.end_strays()
        return result

    # ---- starting ------------------------------------------------------------

    async def _start_apps(self) -> None:
        await self.cleared.wait()
        if self.stopping:
            return
        # --no-wait: an app that exits at once is the runtime's to judge (_check_exit),
        # not a failed start
        argv = [sys.executable, "-m", "corral", "start", "--no-wait",
                *self.options.start_args]
        env = dict(os.environ, CORRAL_HOME=self.home.root)
        try:
            self.starter = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        except OSError as exc:
            log.error("cannot run `corral start`: %s", exc)
            await self.finish(1)
            return
        assert self.starter.stdout is not None and self.starter.stderr is not None
        await asyncio.gather(self._relay(self.starter.stdout),
                             self._relay(self.starter.stderr))
        code = await self.starter.wait()
        if self.stopping:
            return
        if code != 0:
            log.error("`corral start %s` failed (exit code %d): stopping",
                      " ".join(self.options.start_args), code)
            await self.finish(code)
            return
        self.started = True
        self._schedule_exit_check()

    async def _relay(self, stream: asyncio.StreamReader) -> None:
        """What `corral start` prints (warnings, errors, the table) is corral's own output:
        on the runtime's stderr, so that stdout carries the apps' lines only."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: as it comes
                line = await stream.read(1 << 16)
            if not line:
                return
            self.err.write(self.echo.own(line.decode("utf-8", "replace").rstrip("\r\n")))

    # ---- ending --------------------------------------------------------------

    def _schedule_exit_check(self) -> None:
        if (not self.started or self.stopping or not self.options.auto_exit
                or self.exit_check is not None):
            return
        self.exit_check = asyncio.get_running_loop().call_later(EXIT_SETTLE_S,
                                                                self._check_exit)

    @staticmethod
    def _done(inst: Instance) -> bool:
        """Stopped for good: not running, not about to restart, no operation under way."""
        return (inst.record.status in (STOPPED, ERRORED) and not inst.alive
                and not inst.lock.locked() and inst.restart_timer is None)

    @staticmethod
    def _failed(inst: Instance) -> bool:
        rec = inst.record
        if rec.status == ERRORED:
            return True
        ended_alone = "autorestart is off" in (rec.reason or "")
        return ended_alone and (rec.exit_signal is not None or rec.exit_code not in (0, None))

    def _check_exit(self) -> None:
        self.exit_check = None
        if self.stopping:
            return
        instances = list(self.supervisor.instances.values())
        if not all(self._done(i) for i in instances):
            return
        failed = sorted({i.record.spec.name for i in instances if self._failed(i)})
        if failed:
            log.info("every app has stopped; failed: %s", ", ".join(failed))
        else:
            log.info("every app has stopped" if instances else "no app is left")
        asyncio.ensure_future(self.finish(1 if failed else 0))

    async def finish(self, code: int) -> None:
        """Stop every app (kill timeouts honoured) and what they left, then exit: with
        code, or 1 when an app could not be stopped."""
        if self.finishing:
            return
        self.finishing = self.stopping = True
        for timer in (self.exit_check, self.sweeper):
            if timer is not None:
                timer.cancel()
        self.exit_check = None
        if self.starter is not None and self.starter.returncode is None:
            self.starter.terminate()
            await self.starter.wait()
        survivors = await self.stop_all()
        await self.end_strays()
        if survivors:
            log.error("could not stop: %s", ", ".join(
                f"{i.record.spec.name} (pid {i.record.pid})" for i in survivors))
        self.exit_code = 1 if survivors else code
        self.save()
        self.shutdown.set()

    async def stop_all(self) -> list[Instance]:
        """Stop every instance; those still alive after their SIGKILL."""
        for _ in range(3):  # an operation under way may have started one more meanwhile
            instances = list(self.supervisor.instances.values())
            await asyncio.gather(*(self.supervisor.stop(i) for i in instances))
            if not any(i.alive for i in self.supervisor.instances.values()):
                break
        return [i for i in self.supervisor.instances.values() if i.alive]

    async def end_strays(self) -> None:
        """The processes left once every app stopped: orphans reparented to us that
        escaped their app's process tree (a daemonized grandchild). SIGTERM, SIGKILL
        after the longest kill_timeout, each reaped."""
        loop = asyncio.get_running_loop()
        timeout = max([i.record.spec.kill_timeout_ms for i in self.supervisor.instances.values()]
                      + [1600]) / 1000
        signalled: set[int] = set()
        deadline = loop.time() + timeout
        killed_at: float | None = None
        while True:
            self._reap()
            strays = self.spawned.strays()
            if not strays:
                return
            now = loop.time()
            if killed_at is None and now >= deadline:
                killed_at = now
                signalled.clear()
            if killed_at is not None and now >= killed_at + 2:
                log.error("processes left that SIGKILL did not end: %s", strays)
                return
            sig = signal.SIGTERM if killed_at is None else signal.SIGKILL
            for pid in strays:
                if pid not in signalled:
                    signalled.add(pid)
                    if sig == signal.SIGTERM:
                        log.info("pid %d was left by an app: SIGTERM", pid)
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            await asyncio.sleep(0.05)

    # ---- reaping ----------------------------------------------------------------

    def _reap(self) -> None:
        for pid in self.spawned.reap():
            log.debug("reaped orphan pid %d", pid)

    def _sweep(self) -> None:
        self._reap()
        if not self.finishing:
            self.sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)


# ---- the command ------------------------------------------------------------------

def _take_home(home: Home) -> int | str:
    """The daemon lock of the home (an fd), or why it cannot be had."""
    try:
        home.ensure()
    except CorralError as exc:
        return exc.message
    lock_fd = os.open(home.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        return (f"a corral daemon already runs for CORRAL_HOME {home.root}; corral-runtime "
                "runs the daemon itself: stop that one (`corral kill`) or give the runtime "
                "a home of its own (CORRAL_HOME=...)")
    return lock_fd


def main(argv: list[str] | None = None) -> int:
    parsed = parse(list(sys.argv[1:] if argv is None else argv))
    if isinstance(parsed, str):
        failed = parsed.startswith("corral-runtime: error")
        print(parsed, file=sys.stderr if failed else sys.stdout)
        return 2 if failed else 0
    echo = Echo(parsed.output)
    out = Sink(sys.stdout.fileno(), "stdout", echo.own)
    err = Sink(sys.stderr.fileno(), "stderr", echo.own)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(SinkHandler(err, echo))
    home = home_from_env()
    taken = _take_home(home)
    if isinstance(taken, str):
        log.error("%s", taken)
        err.close()
        out.close()
        return 1
    pid_files = (home.pid_file, home.pm2_pid_file)
    for path in pid_files:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    spawned = Spawned()
    spawned.install()
    if not become_subreaper():
        log.warning("cannot become a child subreaper: orphans of the apps go to init")
    runtime = Runtime(home, parsed, out, err, echo, spawned)
    log.info("corral-runtime %s (pid %d, CORRAL_HOME %s)", __version__, os.getpid(),
             home.root)
    try:
        asyncio.run(runtime.run(None))
    finally:
        for path in pid_files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        logging.shutdown()
        out.close()
        err.close()
    return runtime.exit_code


if __name__ == "__main__":
    sys.exit(main())
