#!/usr/bin/env python3
"""Core benchmark (issue 2): corral and PM2 side by side, in one run.

    python bench/core.py            # full run, about 2 minutes (installs included)
    python bench/core.py --quick    # fewer repetitions and a 10 s idle window

What it does:
  * makes a temp folder; installs PM2 from the npm registry into it
    (`npm install --prefix <tmp>/pm2 pm2@7`) and corral, non-editable, into a
    fresh venv (`pip install` of a copy of this repository), then byte-compiles
    the venv's site-packages so both CLIs start like a user's install;
  * runs one corral daemon (CORRAL_HOME=<tmp>/corral_home) and one PM2 daemon
    (PM2_HOME=<tmp>/pm2_home) at the same time, each managing the same idle
    Python app (<tmp>/app/app.py, run by the venv's python in both);
  * measures: `list` wall time with 10 apps (plus `python -c pass` and
    `node -e 0` floors), daemon RSS with 0 and 50 apps, daemon CPU seconds
    while idle with 50 apps, and the time from `kill -9` of an app to its
    replacement's first line of Python;
  * prints medians (min-max), ratios corral/PM2 and the goals; writes every raw
    sample to bench/out/core-<timestamp>.json (git-ignored);
  * stops only what it started: `corral kill`, `pm2 kill`, then SIGKILL of any
    pid it recorded (daemons and apps) that still runs a program of the temp
    folder. The apps listen on nothing.

Standard library only (the harness reads /proc itself); Linux only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
T_BEGIN = time.monotonic()

# The app both managers run. It records time.time() at its very start in a file
# named after its pid (written then renamed, so a reader never sees half of it).
APP_SOURCE = '''\
import os
import time

t = time.time()
d = os.environ.get("BENCH_STAMP_DIR")
if d:
    path = os.path.join(d, str(os.getpid()))
    with open(path + ".tmp", "w") as f:
        f.write(repr(t))
    os.rename(path + ".tmp", path)
print(f"app pid {os.getpid()} started at {t!r}", flush=True)
while True:
    time.sleep(3600)
'''

MIN_UPTIME_S = 1.0  # both managers' default min_uptime
KILL_GAP_S = 1.6  # each killed app has run at least this long (> min_uptime)


class BenchError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[{time.monotonic() - T_BEGIN:6.1f}s] {message}", file=sys.stderr, flush=True)


# ---- /proc ---------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


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
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:].split()[0] != b"Z"


# ---- statistics ----------------------------------------------------------------------------

def summary(values: list[float]) -> dict[str, float | int]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(s: dict[str, float | int], digits: int) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


# ---- the bench -----------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="corral-bench-")
        self.venv = os.path.join(self.tmp, "venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.corral = os.path.join(self.venv, "bin", "corral")
        self.pm2_prefix = os.path.join(self.tmp, "pm2")
        self.pm2 = os.path.join(self.pm2_prefix, "node_modules", ".bin", "pm2")
        self.corral_home = os.path.join(self.tmp, "corral_home")
        self.pm2_home = os.path.join(self.tmp, "pm2_home")
        self.app = os.path.join(self.tmp, "app", "app.py")
        self.stamps = os.path.join(self.tmp, "stamps")
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["CORRAL_HOME"] = self.corral_home
        env["PM2_HOME"] = self.pm2_home
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        self.env = env
        self.daemon_pids: dict[str, int] = {}
        self.results: dict[str, Any] = {}

    # -- helpers

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
            quiet: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, env=env or self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc

    def timed(self, argv: list[str]) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        return elapsed

    def stamp_dir(self, manager: str, name: str) -> str:
        return os.path.join(self.stamps, manager, name)

    def start_argv(self, manager: str, name: str) -> list[str]:
        if manager == "corral":
            return [self.corral, "start", self.app, "-n", name, "-f",
                    "--interpreter", self.python]
        return [self.pm2, "start", self.app, "--name", name, "-f",
                "--interpreter", self.python]

    # -- set-up

    def setup(self) -> None:
        say(f"temp folder {self.tmp}")
        os.makedirs(os.path.dirname(self.app))
        with open(self.app, "w") as f:
            f.write(APP_SOURCE)

        say(f"npm install pm2@{self.args.pm2_version} ...")
        self.run(["npm", "install", "--prefix", self.pm2_prefix, f"pm2@{self.args.pm2_version}",
                  "--no-audit", "--no-fund", "--loglevel=error"], timeout=300)
        with open(os.path.join(self.pm2_prefix, "node_modules", "pm2", "package.json")) as f:
            pm2_version = json.load(f)["version"]  # `pm2 --version` would spawn a daemon

        say("python -m venv + pip install (non-editable) ...")
        src = os.path.join(self.tmp, "corral-src")
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".git", "bench", "__pycache__", "*.egg-info", "build", "dist", ".venv",
            ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"))
        self.run([sys.executable, "-m", "venv", self.venv])
        self.run([self.python, "-m", "pip", "install", "--quiet", src], timeout=300)
        site = self.run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"]).stdout.strip()
        self.run([self.python, "-m", "compileall", "-q", site], timeout=300)
        info = self.run([self.python, "-c", "import sys, corral, psutil; print(sys.version.split()"
                         "[0], corral.__version__, psutil.__version__, corral.__file__)"]
                        ).stdout.split()
        if not info[3].startswith(self.venv):
            raise BenchError(f"corral imported from {info[3]}, not from the venv")
        pyc = os.path.join(os.path.dirname(info[3]), "__pycache__")
        if not any(n.startswith("cli.") and n.endswith(".pyc") for n in os.listdir(pyc)):
            raise BenchError(f"no compiled cli.*.pyc in {pyc}")
        node = self.run(["node", "--version"]).stdout.strip()
        self.results["machine"] = machine_info() | {
            "python": info[0], "node": node, "pm2": pm2_version, "corral": info[1],
            "psutil": info[2], "corral_git": git_info(),
        }
        say(f"python {info[0]}, node {node}, pm2 {pm2_version}, corral {info[1]}")

    # -- daemons and apps

    def start_daemons(self) -> None:
        cold = {}
        for manager, argv in (("corral", [self.corral, "ping"]), ("pm2", [self.pm2, "ping"])):
            t0 = time.perf_counter()
            self.run(argv)
            cold[manager] = time.perf_counter() - t0
        pid_files = {"corral": os.path.join(self.corral_home, "corral.pid"),
                     "pm2": os.path.join(self.pm2_home, "pm2.pid")}
        for manager, path in pid_files.items():
            with open(path) as f:
                pid = int(f.read().strip())
            if not alive(pid) or self.tmp not in cmdline(pid):
                raise BenchError(f"{manager} daemon pid {pid} from {path} is not ours: "
                                 f"{cmdline(pid)!r}")
            self.daemon_pids[manager] = pid
        self.results["daemon_pids"] = dict(self.daemon_pids)
        self.results["first_ping_s"] = cold
        say(f"daemons up: {self.daemon_pids} (first `ping`, which spawns the daemon: "
            f"corral {cold['corral'] * 1000:.0f} ms, pm2 {cold['pm2'] * 1000:.0f} ms)")

    def start_apps(self, first: int, last: int) -> dict[str, list[float]]:
        """Start apps app<first>..app<last-1> in both managers, one CLI call per app."""
        times: dict[str, list[float]] = {"corral": [], "pm2": []}
        for i in range(first, last):
            for manager in ("corral", "pm2"):
                name = f"app{i}"
                stamp = self.stamp_dir(manager, name)
                os.makedirs(stamp, exist_ok=True)
                env = dict(self.env, BENCH_STAMP_DIR=stamp)
                t0 = time.perf_counter()
                self.run(self.start_argv(manager, name), env=env)
                times[manager].append(time.perf_counter() - t0)
        for i in range(first, last):
            for manager in ("corral", "pm2"):
                self.current(manager, f"app{i}", timeout=20)
        return times

    def current(self, manager: str, name: str, timeout: float = 10) -> tuple[int, float]:
        """(pid, start time) of the app's live process, from its stamp folder."""
        folder = self.stamp_dir(manager, name)
        deadline = time.monotonic() + timeout
        while True:
            best: tuple[int, float] | None = None
            for entry in os.listdir(folder):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                if alive(pid):
                    with open(os.path.join(folder, entry)) as f:
                        t = float(f.read())
                    if best is None or t > best[1]:
                        best = (pid, t)
            if best is not None:
                return best
            if time.monotonic() > deadline:
                raise BenchError(f"{manager} {name}: no live process in {folder} after "
                                 f"{timeout} s")
            time.sleep(0.01)

    def check_online(self, expected: int) -> None:
        rows = json.loads(self.run([self.corral, "jlist"]).stdout)
        online = sum(r["pm2_env"]["status"] == "online" for r in rows)
        rows2 = json.loads(self.run([self.pm2, "jlist"]).stdout)
        online2 = sum(r["pm2_env"]["status"] == "online" for r in rows2)
        if (online, online2) != (expected, expected):
            raise BenchError(f"expected {expected} online apps each; corral has {online} "
                             f"of {len(rows)}, pm2 {online2} of {len(rows2)}")

    # -- a. CLI latency

    def bench_cli(self, runs: int, warmups: int, with_floors: bool,
                  commands: list[str]) -> dict[str, list[float]]:
        table = {
            "python -c pass": [self.python, "-c", "pass"],
            "node -e 0": ["node", "-e", "0"],
            "corral list": [self.corral, "list"],
            "pm2 list": [self.pm2, "list"],
            "corral jlist": [self.corral, "jlist"],
            "pm2 jlist": [self.pm2, "jlist"],
        }
        names = (["python -c pass", "node -e 0"] if with_floors else []) + commands
        samples: dict[str, list[float]] = {n: [] for n in names}
        rng = random.Random(2)
        for round_no in range(warmups + runs):
            order = names[:]
            rng.shuffle(order)  # no command always runs right after another one
            for name in order:
                elapsed = self.timed(table[name])
                if round_no >= warmups:
                    samples[name].append(elapsed)
        return samples

    # -- d. restart latency

    def kill_once(self, manager: str, name: str) -> dict[str, float | int]:
        pid, started = self.current(manager, name)
        wait = started + KILL_GAP_S - time.time()
        if wait > 0:
            time.sleep(wait)
        if self.app not in cmdline(pid):
            raise BenchError(f"pid {pid} is not our app: {cmdline(pid)!r}")
        folder = self.stamp_dir(manager, name)
        known = set(os.listdir(folder))
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while True:
            fresh = [e for e in os.listdir(folder) if e.isdigit() and e not in known]
            if fresh:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{manager} did not restart {name} within 15 s of kill -9")
            time.sleep(0.002)
        t_seen = time.time()
        with open(os.path.join(folder, fresh[0])) as f:
            t_new = float(f.read())
        return {"killed_pid": pid, "new_pid": int(fresh[0]), "uptime_before_kill_s":
                t_kill - started, "kill_to_new_start_s": t_new - t_kill,
                "kill_to_seen_s": t_seen - t_kill}

    def bench_restart(self, reps: int) -> dict[str, list[dict[str, float | int]]]:
        out: dict[str, list[dict[str, float | int]]] = {"corral": [], "pm2": []}
        for rep in range(reps):
            order = ["corral", "pm2"] if rep % 2 == 0 else ["pm2", "corral"]
            for manager in order:
                out[manager].append(self.kill_once(manager, "app0"))
        return out

    # -- b/c. memory and idle CPU

    def sample_daemons(self, seconds: float, every: float) -> dict[str, dict[str, list[float]]]:
        series: dict[str, dict[str, list[float]]] = {
            m: {"t": [], "rss_mib": [], "cpu_s": [], "sched_cpu_s": []} for m in self.daemon_pids}
        t0 = time.monotonic()
        n = 0
        while True:
            now = time.monotonic() - t0
            for manager, pid in self.daemon_pids.items():
                series[manager]["t"].append(now)
                series[manager]["rss_mib"].append(rss_mib(pid))
                series[manager]["cpu_s"].append(cpu_seconds(pid))
                series[manager]["sched_cpu_s"].append(sched_cpu_seconds(pid))
            n += 1
            if now >= seconds - 1e-6:
                return series
            time.sleep(max(0.0, t0 + n * every - time.monotonic()))

    # -- the whole run

    def main(self) -> dict[str, Any]:
        a = self.args
        self.setup()
        self.start_daemons()
        self.results["settings"] = {"cli_runs": a.runs, "cli_warmups": 2, "kill_reps": a.reps,
                                    "idle_s": a.idle, "apps_for_list": 10, "apps_idle": 50,
                                    "kill_gap_s": KILL_GAP_S}

        say("b. daemon RSS with 0 apps (3 s after start, 5 samples 0.5 s apart)")
        time.sleep(3)
        self.results["rss_0_apps"] = self.sample_daemons(2.0, 0.5)

        say("starting 10 apps in each manager")
        start10 = self.start_apps(0, 10)
        self.check_online(10)

        say(f"a. `list` with 10 apps: {a.runs} runs each after 2 warm-ups, interleaved")
        self.results["cli_10_apps"] = self.bench_cli(a.runs, 2, True, [
            "corral list", "pm2 list", "corral jlist", "pm2 jlist"])

        say(f"d. kill -9 -> replacement started: {a.reps} reps each, interleaved")
        self.results["restart"] = self.bench_restart(a.reps)

        say("starting 40 more apps in each manager (50 each)")
        start40 = self.start_apps(10, 50)
        self.check_online(50)
        self.results["start_call_s"] = {m: start10[m] + start40[m] for m in start10}

        say("settling 5 s")
        time.sleep(5)
        say(f"b/c. daemons idle with 50 apps: RSS and CPU over {a.idle:.0f} s (1 s samples)")
        self.results["idle_50_apps"] = self.sample_daemons(a.idle, 1.0)

        say("`list` with 50 apps (extra)")
        self.results["cli_50_apps"] = self.bench_cli(max(5, a.runs // 2), 1, False, [
            "corral list", "pm2 list"])
        self.results["rss_50_apps_after_lists"] = self.sample_daemons(0.0, 1.0)
        return self.results

    # -- cleanup

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        for argv in ([self.corral, "kill"], [self.pm2, "kill"]):
            if os.path.exists(argv[0]):
                try:
                    subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=60)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    say(f"  {argv[1:]} failed: {exc}")
        pids = set(self.daemon_pids.values())
        if os.path.isdir(self.stamps):
            for manager in os.listdir(self.stamps):
                for name in os.listdir(os.path.join(self.stamps, manager)):
                    for entry in os.listdir(os.path.join(self.stamps, manager, name)):
                        if entry.isdigit():
                            pids.add(int(entry))
        deadline = time.monotonic() + 5
        while any(alive(p) and self.tmp in cmdline(p) for p in pids):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        left = [p for p in sorted(pids) if alive(p) and self.tmp in cmdline(p)]
        for pid in left:
            say(f"  leftover pid {pid} ({cmdline(pid)[:80]}): SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.results["leftover_pids_killed"] = left
        if self.args.keep:
            say(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- machine info ----------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
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
            "kernel": platform.release(), "os": platform.platform(),
            "loadavg_at_start": os.getloadavg()}


def git_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src",
                                "pyproject.toml"], capture_output=True, text=True).stdout.strip()
        return {"commit": commit, "src_dirty": bool(dirty)}
    except OSError:
        return {}


# ---- report ----------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []

    def add(what: str, corral: list[float], pm2: list[float], unit: str, digits: int,
            goal_factor: float | None) -> None:
        c, p = summary(corral), summary(pm2)
        ratio = c["median"] / p["median"] if p["median"] else None
        holds = None
        if goal_factor is not None:
            holds = c["median"] <= goal_factor * p["median"]
        rows.append({"what": what, "unit": unit, "corral": c, "pm2": p, "ratio": ratio,
                     "goal": None if goal_factor is None else f"<= {goal_factor:g} x PM2",
                     "holds": holds, "digits": digits})

    cli = r["cli_10_apps"]
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    add("`list` wall time, 10 apps", ms(cli["corral list"]), ms(cli["pm2 list"]), "ms", 1, 0.4)
    add("`jlist` wall time, 10 apps (extra)", ms(cli["corral jlist"]), ms(cli["pm2 jlist"]),
        "ms", 1, None)
    rss0 = r["rss_0_apps"]
    add("daemon RSS, 0 apps", rss0["corral"]["rss_mib"], rss0["pm2"]["rss_mib"], "MiB", 1, 0.5)
    idle = r["idle_50_apps"]
    add("daemon RSS, 50 apps idle", idle["corral"]["rss_mib"], idle["pm2"]["rss_mib"], "MiB",
        1, 0.5)
    after = r["rss_50_apps_after_lists"]
    add("daemon RSS, 50 apps, after the `list` runs (extra)", after["corral"]["rss_mib"],
        after["pm2"]["rss_mib"], "MiB", 1, None)

    def cpu_windows(series: dict[str, list[float]]) -> tuple[float, list[float]]:
        cpu, t = series["cpu_s"], series["t"]
        total = cpu[-1] - cpu[0]
        # 10 s windows (to show the spread); the total is the figure
        step = max(1, round(10 / max(t[1] - t[0], 1e-9))) if len(t) > 1 else 1
        windows = [cpu[i + step] - cpu[i] for i in range(0, len(cpu) - step, step)]
        return total, windows or [total]

    ct, cw = cpu_windows(idle["corral"])
    pt, pw = cpu_windows(idle["pm2"])
    span = idle["corral"]["t"][-1] - idle["corral"]["t"][0]
    rows.append({"what": f"daemon CPU s, idle, 50 apps, over {span:.0f} s", "unit": "s",
                 "corral": {"median": ct, "min": ct, "max": ct, "n": 1, "windows_10s": cw},
                 "pm2": {"median": pt, "min": pt, "max": pt, "n": 1, "windows_10s": pw},
                 "ratio": ct / pt if pt else None, "goal": "<= PM2", "holds": ct <= pt,
                 "digits": 2})
    cs_ms = (idle["corral"]["sched_cpu_s"][-1] - idle["corral"]["sched_cpu_s"][0]) * 1000
    ps_ms = (idle["pm2"]["sched_cpu_s"][-1] - idle["pm2"]["sched_cpu_s"][0]) * 1000
    rows.append({"what": f"daemon CPU ms, idle, 50 apps, over {span:.0f} s, from schedstat "
                 "(extra: ns resolution, live threads)", "unit": "ms",
                 "corral": {"median": cs_ms, "min": cs_ms, "max": cs_ms, "n": 1},
                 "pm2": {"median": ps_ms, "min": ps_ms, "max": ps_ms, "n": 1},
                 "ratio": cs_ms / ps_ms if ps_ms else None, "goal": None, "holds": None,
                 "digits": 1})
    rs = r["restart"]
    add("kill -9 -> replacement's first line of Python", ms([x["kill_to_new_start_s"]
                                                             for x in rs["corral"]]),
        ms([x["kill_to_new_start_s"] for x in rs["pm2"]]), "ms", 1, 1.0)
    l50 = r["cli_50_apps"]
    add("`list` wall time, 50 apps (extra)", ms(l50["corral list"]), ms(l50["pm2 list"]), "ms",
        1, None)
    sc = r["start_call_s"]
    add("`start` call, one app (extra; 50 calls)", ms(sc["corral"]), ms(sc["pm2"]), "ms", 1, None)

    lines = ["", "| measure | corral | PM2 | ratio corral/PM2 | goal | holds |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        d = row["digits"]
        c, p = row["corral"], row["pm2"]
        if row["unit"] == "s":  # the CPU row: one total, 10 s windows in brackets
            cs = f"{c['median']:.2f} (10 s: {', '.join(f'{x:.2f}' for x in c['windows_10s'])})"
            ps = f"{p['median']:.2f} (10 s: {', '.join(f'{x:.2f}' for x in p['windows_10s'])})"
        elif c["n"] == 1:
            cs, ps = f"{c['median']:.{d}f}", f"{p['median']:.{d}f}"
        else:
            cs, ps = fmt(c, d), fmt(p, d)
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        holds = "" if row["holds"] is None else ("yes" if row["holds"] else "NO")
        lines.append(f"| {row['what']} ({row['unit']}) | {cs} | {ps} | {ratio} | "
                     f"{row['goal'] or ''} | {holds} |")
    floors = [f"`{k}` {fmt(summary(ms(cli[k])), 1)} ms" for k in ("python -c pass", "node -e 0")]
    ratios = [a / b for a, b in zip(cli["corral list"], cli["pm2 list"])]
    lines.append("")
    lines.append("floors (10-app round, same runs): " + ", ".join(floors))
    lines.append(f"`list` ratio paired by round: {fmt(summary(ratios), 2)}")
    return "\n".join(lines), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="8 CLI runs, 4 kills, 10 s idle window (for a smoke test)")
    parser.add_argument("--runs", type=int, help="timed CLI runs per command (default 20)")
    parser.add_argument("--reps", type=int, help="kill -9 repetitions per manager (default 9)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 30)")
    parser.add_argument("--pm2-version", default="7", help="npm version spec (default 7)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "out"),
                        help="folder for the JSON of raw results (default bench/out)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    args.runs = args.runs or (8 if args.quick else 20)
    args.reps = args.reps or (4 if args.quick else 9)
    args.idle = args.idle or (10.0 if args.quick else 30.0)
    if not sys.platform.startswith("linux"):
        print("bench/core.py reads /proc: Linux only", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    failed: BaseException | None = None
    try:
        bench.main()
    except BaseException as exc:  # noqa: BLE001 - clean up, keep what was measured, re-raise
        failed = exc
    finally:
        bench.cleanup()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    results = bench.results
    results["command"] = "python bench/core.py" + (" --quick" if args.quick else "")
    results["wall_s"] = time.monotonic() - T_BEGIN
    results["loadavg_at_end"] = os.getloadavg()
    if failed is None:
        text, rows = report(results)
        results["summary"] = rows
    else:
        results["error"] = repr(failed)
    path = os.path.join(args.out, f"core-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    say(f"raw results: {os.path.relpath(path)}")
    if failed is not None:
        if isinstance(failed, BenchError):
            print(f"bench/core.py: {failed}", file=sys.stderr)
            return 1
        raise failed
    m = results["machine"]
    print(f"\ncorral {m['corral']} vs PM2 {m['pm2']}; nproc {m['nproc']}, python {m['python']}, "
          f"node {m['node']}; whole run {results['wall_s']:.0f} s; load average at start "
          f"{m['loadavg_at_start'][0]:.2f}, at end {results['loadavg_at_end'][0]:.2f}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
