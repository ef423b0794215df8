"""Helpers shared by the benchmark scripts of this folder (core.py, scale.py, cluster.py,
uvicorn_close.py, cluster_mode.py, worker_kill.py, node_cluster.py, logs.py, watch.py): messages,
/proc readers, statistics, the installs of PM2 and corral into a temp folder, the temp folders
of the benches (ManagerBench, ServerBench), the daemons' start and samples, the cleanup of what
a run started, machine facts, the options they share, and the run itself with its end (raw
results to JSON, exit status, the report and its headline). What only the wrk benches of PM2
against corral share (cluster_mode.py, worker_kill.py, node_cluster.py) is in wrkkit.py.

The scripts run as `python bench/<name>.py`, which puts this folder on sys.path, so they
`import common`. Standard library only; Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
T_BEGIN = time.monotonic()  # the script imports this module first thing: its start time


class BenchError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[{time.monotonic() - T_BEGIN:6.1f}s] {message}", file=sys.stderr, flush=True)


# ---- /proc ---------------------------------------------------------------------------------

def stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (state first). OSError."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rfind(b")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in clock ticks -> seconds."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_field(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise BenchError(f"no {key} for pid {pid}")


def rss_mib(pid: int) -> float:
    """VmRSS from /proc/<pid>/status, in MiB."""
    return int(status_field(pid, "VmRSS").split()[0]) / 1024


def sched_cpu_seconds(pid: int) -> float:
    """On-CPU time of the process's live threads, ns resolution (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        return stat_fields(pid)[0] != b"Z"
    except OSError:
        return False


def system_cpu_values() -> list[int]:
    """user nice system idle iowait irq softirq steal: ticks of the whole machine, from the
    first line of /proc/stat."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def system_cpu() -> tuple[int, int]:
    """(busy, all) ticks of the whole machine, from /proc/stat; steal time counts as busy."""
    user, nice, system, idle, iowait, irq, softirq, steal = system_cpu_values()
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def running_in(pids: Iterable[int], tmp: str) -> list[int]:
    """The pids (sorted) that still run a program of `tmp` (the temp folder)."""
    return [p for p in sorted(pids) if alive(p) and tmp in cmdline(p)]


def wait_gone(pids: Iterable[int], tmp: str, limit: float, step: float) -> bool:
    """Wait up to `limit` s (polling every `step` s) until none of the pids runs a program
    of `tmp`. True if none does."""
    pids = set(pids)
    deadline = time.monotonic() + limit
    while any(alive(p) and tmp in cmdline(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# ---- statistics ----------------------------------------------------------------------------

def summary(values: list[float]) -> dict[str, float | int]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(s: dict[str, float | int], digits: int) -> str:
    """`median (min-max)` of a summary()."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def fmt_values(values: list[float], digits: int = 0, *, collapse_equal: bool = False) -> str:
    """`median (min-max)` of the values; the value alone when there is one (or, with
    collapse_equal, when min == max)."""
    s = summary(values)
    if len(values) == 1 or (collapse_equal and s["min"] == s["max"]):
        return f"{s['median']:.{digits}f}"
    return fmt(s, digits)


# ---- commands ------------------------------------------------------------------------------

def run_cmd(argv: list[str], *, env: dict[str, str], timeout: float = 120,
            cwd: str | None = None, check: bool = True,
            tail: int = 2000) -> subprocess.CompletedProcess[str]:
    """Run a command, output captured; BenchError (with the output's last `tail` characters)
    if it fails and `check`."""
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                         f"{proc.stdout[-tail:]}{proc.stderr[-tail:]}")
    return proc


class Runner(Protocol):
    def __call__(self, argv: list[str], *,
                 timeout: float) -> subprocess.CompletedProcess[str]: ...


def bench_env(drop: Iterable[str], **values: str) -> dict[str, str]:
    """This process's environment without the `drop` variables, with `values` set."""
    env = dict(os.environ)
    for name in drop:
        env.pop(name, None)
    env.update(values)
    return env


# ---- the idle app of scale.py and watch.py ---------------------------------------------------

# It writes time.time() at its very start into a file named after its pid, in the folder
# $BENCH_STAMP_DIR (written then renamed, so a reader never sees half of it), then sleeps.
STAMP_APP_SOURCE = '''\
import os
import time

t = time.time()
d = os.environ.get("BENCH_STAMP_DIR")
if d:
    path = os.path.join(d, str(os.getpid()))
    with open(path + ".tmp", "w") as f:
        f.write(repr(t))
    os.rename(path + ".tmp", path)
while True:
    time.sleep(3600)
'''


# ---- installs ------------------------------------------------------------------------------

REPO_COPY_IGNORE = shutil.ignore_patterns(
    ".git", "bench", "__pycache__", "*.egg-info", "build", "dist", ".venv",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules")


def install_pm2(run: Runner, prefix: str, spec: str) -> str:
    """`npm install --prefix <prefix> pm2@<spec>`; returns the installed version."""
    say(f"npm install pm2@{spec} ...")
    run(["npm", "install", "--prefix", prefix, f"pm2@{spec}", "--no-audit", "--no-fund",
         "--loglevel=error"], timeout=300)
    with open(os.path.join(prefix, "node_modules", "pm2", "package.json")) as f:
        return str(json.load(f)["version"])  # `pm2 --version` would spawn a daemon


def install_corral(run: Runner, tmp: str, venv: str, packages: Sequence[str] = (), *,
                   short_timeout: float = 120) -> str:
    """A fresh venv with corral installed non-editable from a copy of this repository's
    working tree (so uncommitted changes under src/ are included), plus `packages`, its
    site-packages byte-compiled. Returns the site-packages folder."""
    python = os.path.join(venv, "bin", "python")
    src = os.path.join(tmp, "corral-src")
    shutil.copytree(REPO, src, ignore=REPO_COPY_IGNORE)
    run([sys.executable, "-m", "venv", venv], timeout=short_timeout)
    run([python, "-m", "pip", "install", "--quiet", src, *packages], timeout=300)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               timeout=short_timeout).stdout.strip()
    run([python, "-m", "compileall", "-q", site], timeout=300)
    return site


def venv_versions(run: Runner, venv: str, *modules: str) -> list[str]:
    """[Python version, corral version, each module's __version__, corral's file], from the
    venv's python; BenchError if corral is not imported from the venv."""
    python = os.path.join(venv, "bin", "python")
    names = ", ".join(f"{m}.__version__" for m in ("corral", *modules))
    info = run([python, "-c", f"import {', '.join(['sys', 'corral', *modules])}; "
                f"print(sys.version.split()[0], {names}, corral.__file__)"],
               timeout=120).stdout.split()
    if not info[-1].startswith(venv):
        raise BenchError(f"corral imported from {info[-1]}, not from the venv")
    return info


class VenvBench:
    """A bench's options, its temp folder (made now) and the venv in it, <tmp>/venv."""

    results: dict[str, Any]

    def __init__(self, args: Any, prefix: str) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.venv = os.path.join(self.tmp, "venv")
        self.python = os.path.join(self.venv, "bin", "python")


class ServerBench(VenvBench):
    """The temp folder of a bench of the servers of bench/apps/ (cluster.py, uvicorn_close.py):
    the venv, <tmp>/apps (a copy of bench/apps/, prepare()), <tmp>/logs, and the environment of
    every process it launches: without the variables that would change how Python or the
    servers run."""

    def __init__(self, args: Any, prefix: str) -> None:
        super().__init__(args, prefix)
        self.apps = os.path.join(self.tmp, "apps")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME",
                              "CORRAL_CLUSTER_SCHED_POLICY", "WEB_CONCURRENCY"],
                             PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(self, argv: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=self.env, timeout=timeout)

    def prepare(self) -> None:
        """<tmp>/logs, and bench/apps/ copied to <tmp>/apps."""
        os.makedirs(os.path.join(self.tmp, "logs"))
        shutil.copytree(os.path.join(REPO, "bench", "apps"), self.apps,
                        ignore=shutil.ignore_patterns("__pycache__"))


class ManagerBench(VenvBench):
    """The temp folder and the two CLIs of a bench that runs corral and PM2 side by side:
    <tmp>/venv (corral) and <tmp>/pm2 (PM2 from npm). The subclass runs commands with its
    run() and keeps what it measured in its results."""

    def __init__(self, args: Any, prefix: str) -> None:
        super().__init__(args, prefix)
        self.corral = os.path.join(self.venv, "bin", "corral")
        self.pm2_prefix = os.path.join(self.tmp, "pm2")
        self.pm2 = os.path.join(self.pm2_prefix, "node_modules", ".bin", "pm2")
        self.daemon_pids: dict[str, int] = {}

    def run(self, argv: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command, output captured (run_cmd): the subclass says with which environment."""
        raise NotImplementedError

    def cli(self, manager: str) -> str:
        return self.corral if manager == "corral" else self.pm2

    def start_daemons_pinged(self, corral_home: str, pm2_home: str) -> None:
        """`corral ping`, `pm2 ping` (each spawns its daemon), then the daemons' pids into
        daemon_pids and results (record_daemon_pids)."""
        for manager in ("corral", "pm2"):
            self.run([self.cli(manager), "ping"], timeout=120)
        record_daemon_pids(self.daemon_pids, corral_home, pm2_home, self.tmp)
        self.results["daemon_pids"] = dict(self.daemon_pids)
        say(f"daemons up: {self.daemon_pids}")

    def sample_daemons(self, seconds: float, every: float, *,
                       check_alive: bool = False) -> dict[str, dict[str, list[float]]]:
        """Each daemon's RSS, CPU time (stat) and on-CPU time (schedstat) every `every` s
        for `seconds` s, with the time of each sample; with check_alive, BenchError if a
        daemon died."""
        series: dict[str, dict[str, list[float]]] = {
            m: {"t": [], "rss_mib": [], "cpu_s": [], "sched_cpu_s": []} for m in self.daemon_pids}
        t0 = time.monotonic()
        n = 0
        while True:
            now = time.monotonic() - t0
            for manager, pid in self.daemon_pids.items():
                if check_alive and not alive(pid):
                    raise BenchError(f"the {manager} daemon (pid {pid}) died")
                series[manager]["t"].append(now)
                series[manager]["rss_mib"].append(rss_mib(pid))
                series[manager]["cpu_s"].append(cpu_seconds(pid))
                series[manager]["sched_cpu_s"].append(sched_cpu_seconds(pid))
            n += 1
            if now >= seconds - 1e-6:
                return series
            time.sleep(max(0.0, t0 + n * every - time.monotonic()))

    def end_cleanup(self, pids: Iterable[int]) -> None:
        """The last of a cleanup: SIGKILL of the pids that still run a program of the temp
        folder (kill_leftovers, into results), then the temp folder removed (unless --keep)."""
        self.results["leftover_pids_killed"] = kill_leftovers(pids, self.tmp)
        remove_tmp(self.tmp, self.args.keep)


# ---- daemons and cleanup -------------------------------------------------------------------

def record_daemon_pids(into: dict[str, int], corral_home: str, pm2_home: str,
                       tmp: str) -> None:
    """The daemons' pids from $CORRAL_HOME/corral.pid and $PM2_HOME/pm2.pid, into `into`
    one by one (so a cleanup after a failure knows the ones read); BenchError if a pid is
    not a live program of the temp folder."""
    pid_files = {"corral": os.path.join(corral_home, "corral.pid"),
                 "pm2": os.path.join(pm2_home, "pm2.pid")}
    for manager, path in pid_files.items():
        with open(path) as f:
            pid = int(f.read().strip())
        if not alive(pid) or tmp not in cmdline(pid):
            raise BenchError(f"{manager} daemon pid {pid} from {path} is not ours: "
                             f"{cmdline(pid)!r}")
        into[manager] = pid


def kill_managers(exes: Iterable[str], env: dict[str, str], cwd: str | None = None) -> None:
    """`<exe> kill` for each CLI that was installed; a failure is reported, not raised."""
    for argv in ([exe, "kill"] for exe in exes):
        if os.path.exists(argv[0]):
            try:
                subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=60, cwd=cwd)
            except (OSError, subprocess.TimeoutExpired) as exc:
                say(f"  {argv[1:]} failed: {exc}")


def stamped_pids(stamps: str) -> set[int]:
    """The pids named by the files of <stamps>/<manager>/<app>/ (one file per start)."""
    pids: set[int] = set()
    if os.path.isdir(stamps):
        for manager in os.listdir(stamps):
            for name in os.listdir(os.path.join(stamps, manager)):
                for entry in os.listdir(os.path.join(stamps, manager, name)):
                    if entry.isdigit():
                        pids.add(int(entry))
    return pids


def kill_leftovers(pids: Iterable[int], tmp: str) -> list[int]:
    """Wait up to 5 s for the pids that still run a program of `tmp` to end, then SIGKILL
    those left (and only those). Returns them."""
    pids = set(pids)
    wait_gone(pids, tmp, 5, 0.1)
    left = running_in(pids, tmp)
    for pid in left:
        say(f"  leftover pid {pid} ({cmdline(pid)[:80]}): SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def remove_tmp(tmp: str, keep: bool) -> None:
    if keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- a shared machine ----------------------------------------------------------------------

def wait_quiet(system_cpu: Callable[[], Sequence[int]], limit: float,
               max_wait: float) -> dict[str, float]:
    """Wait (up to max_wait s) until the machine's busy CPU over 0.3 s, the first value of
    system_cpu() in ticks, is at most `limit` % of one core."""
    t0 = time.monotonic()
    told = False
    while True:
        b0 = system_cpu()
        time.sleep(0.3)
        b1 = system_cpu()
        busy = 100.0 * (b1[0] - b0[0]) / CLK_TCK / 0.3
        waited = time.monotonic() - t0
        if busy <= limit or waited > max_wait:
            if told or busy > limit:
                say(f"  machine busy at {busy:.0f} % of a core; waited {waited:.0f} s")
            return {"busy_pct_before": busy, "waited_s": waited}
        if not told:
            say(f"  machine busy at {busy:.0f} % of a core (not us): waiting for quiet")
            told = True


# ---- machine info --------------------------------------------------------------------------

def machine_info(*, os_name: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU, memory, kernel, OS (platform.platform() unless os_name), `extra`, load average."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_gib, 1),
            "kernel": platform.release(),
            "os": platform.platform() if os_name is None else os_name,
            **(extra or {}), "loadavg_at_start": os.getloadavg()}


def git_info(paths: Sequence[str] = ("src", "pyproject.toml"), *, short: bool = False,
             with_files: bool = False) -> dict[str, Any]:
    """HEAD's commit (abbreviated if short) and whether `paths` have uncommitted changes
    (and, with_files, the changed files)."""
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", *(["--short"] if short else []),
                                 "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", *paths],
                               capture_output=True, text=True).stdout
        info: dict[str, Any] = {"commit": commit, "src_dirty": bool(dirty.strip())}
        if with_files:
            info["dirty_files"] = dirty.split()[1::2]
        return info
    except OSError:
        return {}


# ---- running a bench -----------------------------------------------------------------------

def new_parser(doc: str) -> argparse.ArgumentParser:
    """The scripts' argument parser: the first paragraph of their docstring as description."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def add_quiet_options(parser: argparse.ArgumentParser) -> None:
    """--max-other, --retries, --quiet-timeout: a run that other jobs disturbed is repeated
    (cluster_mode.py, worker_kill.py)."""
    parser.add_argument("--max-other", type=float, default=0.3,
                        help="a run during which other jobs used more CPU than this (cores) is "
                        "repeated; also the quiet level waited for before each run (default 0.3)")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeats of a disturbed run before keeping it (default 2)")
    parser.add_argument("--quiet-timeout", type=float, default=120,
                        help="longest wait for a quiet machine before a run, s (default 120)")


def add_end_options(parser: argparse.ArgumentParser, *, pm2: bool = True) -> None:
    """The options most scripts end with: --pm2-version (if pm2), --out, --keep."""
    if pm2:
        parser.add_argument("--pm2-version", default="7", help="npm version spec (default 7)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "out"),
                        help="folder for the JSON of raw results (default bench/out)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")


def unmet_needs(script: str, *programs: str) -> bool:
    """True, after saying why on stderr, if the script cannot run here: not Linux (it reads
    /proc), or one of `programs` not on the PATH."""
    if not sys.platform.startswith("linux"):
        print(f"{script} reads /proc: Linux only", file=sys.stderr)
        return True
    for program in programs:
        if shutil.which(program) is None:
            print(f"{script} needs {program} on the PATH", file=sys.stderr)
            return True
    return False


class Runnable(Protocol):
    results: dict[str, Any]

    def main(self) -> object: ...

    def cleanup(self) -> None: ...


def raise_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, so a terminated run still cleans up."""
    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def run_guarded(bench: Runnable) -> BaseException | None:
    """bench.main(), then bench.cleanup() whatever happened; returns what main() raised."""
    failed: BaseException | None = None
    try:
        bench.main()
    except BaseException as exc:  # noqa: BLE001 - clean up, keep what was measured, re-raise
        failed = exc
    finally:
        bench.cleanup()
    return failed


def record_end(results: dict[str, Any], command: str) -> None:
    results["command"] = command
    results["wall_s"] = time.monotonic() - T_BEGIN
    results["loadavg_at_end"] = os.getloadavg()


def run_bench(make: Callable[[Any], Runnable], args: Any, script: str,
              argv: Sequence[str]) -> tuple[dict[str, Any], BaseException | None]:
    """The whole run: SIGTERM raises KeyboardInterrupt, then make(args).main() and its
    cleanup() whatever happened, then `python <script> <argv...>`, the wall time and the load
    average into its results. Returns (results, what main() raised)."""
    raise_on_sigterm()
    bench = make(args)
    failed = run_guarded(bench)
    record_end(bench.results, "python " + script + "".join(f" {a}" for a in argv))
    return bench.results, failed


def exit_status(failed: BaseException, script: str) -> int:
    """1 after printing a BenchError (a failed command, a check that did not hold); any other
    exception is raised again."""
    if isinstance(failed, BenchError):
        print(f"{script}: {failed}", file=sys.stderr)
        return 1
    raise failed


def write_json(folder: str, name: str, results: dict[str, Any]) -> str:
    """Every raw sample to <folder>/<name>-<timestamp>.json; returns the path."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    say(f"raw results: {os.path.relpath(path)}")
    return path


def save_results(results: dict[str, Any], failed: BaseException | None, out: str, name: str,
                 partial: str = "") -> int | None:
    """The failure (if any) into results, then every raw sample to <out>/<name>-<timestamp>.json.
    After a failure, prints `partial` (a report of what was measured, if any) and returns the
    exit status of bench/<name>.py (exit_status); None after a success."""
    if failed is not None:
        results["error"] = repr(failed)
    write_json(out, name, results)
    if failed is None:
        return None
    if partial:
        print(partial)
    return exit_status(failed, f"bench/{name}.py")


def guarded_report(results: dict[str, Any], failed: BaseException | None,
                   report: Callable[[dict[str, Any]], str]) -> tuple[str, BaseException | None]:
    """(the report, what failed): the report of a run that did not fail; a report that raises
    fails the run instead (its raw results are still written)."""
    text = ""
    if failed is None:
        try:
            text = report(results)
        except Exception as exc:  # noqa: BLE001 - keep the raw results
            failed = exc
    return text, failed


def loadavg_span(results: dict[str, Any], n: int = 1) -> str:
    """`load average at start <..>, at end <..>`: the first n values of each, from the
    results of run_bench."""
    def loads(values: Sequence[float]) -> str:
        return " ".join(f"{x:.2f}" for x in values[:n])

    return (f"load average at start {loads(results['machine']['loadavg_at_start'])}, at end "
            f"{loads(results['loadavg_at_end'])}")


def report_end(results: dict[str, Any], failed: BaseException | None,
               report: Callable[[dict[str, Any]], str], out: str, name: str,
               headline: Callable[[dict[str, Any]], str]) -> int:
    """The end of a run: the report (guarded_report: one that raises fails the run), the JSON
    (save_results), then on stdout headline(results) and the report. Returns the exit
    status."""
    text, failed = guarded_report(results, failed, report)
    status = save_results(results, failed, out, name)
    if status is not None:
        return status
    print(headline(results))
    print(text)
    return 0


def finish(results: dict[str, Any], failed: BaseException | None,
           report: Callable[[dict[str, Any]], str], out: str, name: str, *,
           loadavg: int = 1) -> int:
    """The end of a corral-vs-PM2 wrk bench (cluster_mode.py, worker_kill.py, node_cluster.py):
    report_end with, as headline, the versions, machine, wall time, the first `loadavg` values
    of the load average at start and end, then the notes. Returns the exit status."""
    def headline(results: dict[str, Any]) -> str:
        m = results["machine"]
        text = (f"\ncorral {m['corral']} vs PM2 {m['pm2']}; nproc {m['nproc']} ({m['cpu']}), "
                f"python {m['python']}, node {m['node']}, {m['wrk']}; whole run "
                f"{results['wall_s']:.0f} s; {loadavg_span(results, loadavg)}")
        if results["notes"]:
            text += "\n\nnotes:\n" + "\n".join(f"* {n}" for n in results["notes"])
        return text + "\n"

    return report_end(results, failed, report, out, name, headline)
