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
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from common import (
    BenchError,
    ManagerBench,
    add_end_options,
    alive,
    bench_env,
    cmdline,
    fmt,
    git_info,
    install_corral,
    install_pm2,
    kill_managers,
    loadavg_span,
    machine_info,
    new_parser,
    record_daemon_pids,
    run_bench,
    run_cmd,
    save_results,
    say,
    stamped_pids,
    summary,
    unmet_needs,
    venv_versions,
)

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

# pip's template for a console-script entry point (pip 23-25), for `corral.client.cli:main`
PIP_WRAPPER = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from corral.client.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""

MIN_UPTIME_S = 1.0  # both managers' default min_uptime
KILL_GAP_S = 1.6  # each killed app has run at least this long (> min_uptime)


# ---- the bench -----------------------------------------------------------------------------

class Bench(ManagerBench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-")
        self.corral_home = os.path.join(self.tmp, "corral_home")
        self.pm2_home = os.path.join(self.tmp, "pm2_home")
        self.app = os.path.join(self.tmp, "app", "app.py")
        self.stamps = os.path.join(self.tmp, "stamps")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE"], CORRAL_HOME=self.corral_home,
                             PM2_HOME=self.pm2_home, PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.results: dict[str, Any] = {}
        self.last_cpu_s = 0.0
        self.pip_wrapper = os.path.join(self.tmp, "pip-wrapper", "corral")

    # -- helpers

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
            quiet: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=env or self.env, timeout=timeout)

    def timed(self, argv: list[str]) -> float:
        """Wall time of the command; its CPU time (user + system, from wait4) goes to
        self.last_cpu_s."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.last_cpu_s = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{stderr.decode(errors='replace')[-2000:]}")
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

        pm2_version = install_pm2(self.run, self.pm2_prefix, self.args.pm2_version)

        say("python -m venv + pip install (non-editable) ...")
        install_corral(self.run, self.tmp, self.venv)
        info = venv_versions(self.run, self.venv, "psutil")
        # the console-script wrapper pip generates for an entry point (corral's before
        # issue 17: it imports re); an extra row of the 10-app round
        os.makedirs(os.path.dirname(self.pip_wrapper))
        with open(self.pip_wrapper, "w") as f:
            f.write(PIP_WRAPPER.format(python=os.path.join(self.venv, "bin", "python3")))
        os.chmod(self.pip_wrapper, 0o755)
        pyc = os.path.join(os.path.dirname(info[3]), "client", "__pycache__")
        if not any(n.startswith("cli.") and n.endswith(".pyc") for n in os.listdir(pyc)):
            raise BenchError(f"no compiled client/cli.*.pyc in {pyc}")
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
        record_daemon_pids(self.daemon_pids, self.corral_home, self.pm2_home, self.tmp)
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
            "corral list (pip's wrapper)": [self.pip_wrapper, "list"],
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
                    samples.setdefault(f"{name} (cpu)", []).append(self.last_cpu_s)
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
            "corral list", "pm2 list", "corral jlist", "pm2 jlist", "corral list (pip's wrapper)"])
        if a.cli_only:
            return self.results

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

        say("e. corral's web dashboard on (corral web): daemon RSS and `list` (extra)")
        self.results["web_on"] = self.bench_web_on(max(5, a.runs // 2))
        return self.results

    def bench_web_on(self, runs: int) -> dict[str, list[float]]:
        """corral only (PM2's dashboard is a hosted service): the daemon's RSS with the
        dashboard on and after a page's API call, and `list` meanwhile."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = self.run([self.corral, "web", "--port", str(port)]).stdout.split()[0]
        time.sleep(2)
        before = self.sample_daemons(2.0, 0.5)["corral"]["rss_mib"]
        token = url.split("token=", 1)[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/state",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        lists = self.bench_cli(runs, 1, False, ["corral list"])["corral list"]
        after = self.sample_daemons(2.0, 0.5)["corral"]["rss_mib"]
        self.run([self.corral, "web", "--stop"])
        return {"rss_mib": before, "rss_mib_after_api": after, "list_s": lists}

    # -- cleanup

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        kill_managers([self.corral, self.pm2], self.env)
        pids = set(self.daemon_pids.values()) | stamped_pids(self.stamps)
        self.end_cleanup(pids)


# ---- report ----------------------------------------------------------------------------------

def floors_report(cli: dict[str, list[float]]) -> list[str]:
    """`list` against the floors of the same rounds: wall time and CPU time, paired."""
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    lines = []
    for what in ("", " (cpu)"):
        label = "wall time" if not what else "CPU time (user+sys, wait4)"
        if f"python -c pass{what}" not in cli:
            continue
        floor = cli[f"python -c pass{what}"]
        parts = [f"`{k}` {fmt(summary(ms(cli[k + what])), 1)} ms" for k in
                 ("python -c pass", "node -e 0", "corral list", "corral jlist",
                  "corral list (pip's wrapper)") if k + what in cli]
        lines.append(f"{label}: " + ", ".join(parts))
        for k in ("corral list", "corral jlist", "corral list (pip's wrapper)"):
            if k + what in cli:
                ratios = [a / b for a, b in zip(cli[k + what], floor)]
                lines.append(f"  `{k}` / `python -c pass`, paired by round: "
                             f"{fmt(summary(ratios), 2)}; ratio of medians "
                             f"{summary(cli[k + what])['median'] / summary(floor)['median']:.2f}"
                             f" (goal for list <= 2.0)")
    return lines


def report(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    if "restart" not in r:  # --cli-only
        return "\n".join(["", *floors_report(r["cli_10_apps"])]), rows

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
    web = r.get("web_on")
    if web:
        off = r["rss_50_apps_after_lists"]["corral"]["rss_mib"]
        lines.append(f"| corral daemon RSS, 50 apps, dashboard on (extra; off: "
                     f"{fmt(summary(off), 1)}) (MiB) | {fmt(summary(web['rss_mib']), 1)}, after "
                     f"an API call {fmt(summary(web['rss_mib_after_api']), 1)} | | | | |")
        lines.append(f"| corral `list`, 50 apps, dashboard on (extra) (ms) | "
                     f"{fmt(summary(ms(web['list_s'])), 1)} | | | | |")
    floors = [f"`{k}` {fmt(summary(ms(cli[k])), 1)} ms" for k in ("python -c pass", "node -e 0")]
    ratios = [a / b for a, b in zip(cli["corral list"], cli["pm2 list"])]
    lines.append("")
    lines.append("floors (10-app round, same runs): " + ", ".join(floors))
    lines.append(f"`list` ratio paired by round: {fmt(summary(ratios), 2)}")
    lines += floors_report(cli)
    return "\n".join(lines), rows


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="8 CLI runs, 4 kills, 10 s idle window (for a smoke test)")
    parser.add_argument("--runs", type=int, help="timed CLI runs per command (default 20)")
    parser.add_argument("--reps", type=int, help="kill -9 repetitions per manager (default 9)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 30)")
    parser.add_argument("--cli-only", action="store_true",
                        help="only the `list` / `jlist` rounds with 10 apps and the floors")
    add_end_options(parser)
    args = parser.parse_args()
    args.runs = args.runs or (8 if args.quick else 20)
    args.reps = args.reps or (4 if args.quick else 9)
    args.idle = args.idle or (10.0 if args.quick else 30.0)
    if unmet_needs("bench/core.py"):
        return 2

    results, failed = run_bench(Bench, args, "bench/core.py", sys.argv[1:])
    if failed is None:
        text, results["summary"] = report(results)
    status = save_results(results, failed, args.out, "core")
    if status is not None:
        return status
    m = results["machine"]
    print(f"\ncorral {m['corral']} vs PM2 {m['pm2']}; nproc {m['nproc']}, python {m['python']}, "
          f"node {m['node']}; whole run {results['wall_s']:.0f} s; {loadavg_span(results)}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
