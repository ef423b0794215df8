#!/usr/bin/env python3
"""Scale benchmark (issue 17): 1,000 apps in corral and in PM2, in one run.

    python bench/scale.py                 # 1,000 apps per manager, about 10-15 minutes
    python bench/scale.py --apps 300      # another size
    python bench/scale.py --quick         # 100 apps, 5 CLI runs, 10 s idle window

What it does:
  * makes a temp folder; installs PM2 from npm (`npm install --prefix <tmp>/pm2 pm2@7`)
    and corral, non-editable, into a fresh venv (a copy of this repository's working tree),
    as bench/core.py does;
  * writes one ecosystem file of N apps (`ecosystem.json`, PM2's JSON format, which both
    read): app0..app<N-1>, each the same tiny idle Python script run by the venv's Python;
    each app writes a stamp file named after its pid when it starts;
  * runs the managers one after the other (corral, then PM2; `--order` to change), so that
    at most N apps run at once (1,000 Python processes are about 8 GB of RSS). For each:
      1. two daemons, each with its own home: one runs a 10-app file (the `list`
         reference), the other the N apps;
      2. `start ecosystem.json` (N apps): the CLI call's wall time, the time until every app
         has written its stamp, and until the manager lists every app `online`;
      3. after 5 s: `list` and `jlist` of both daemons and `python -c pass`, in the same
         rounds (order shuffled in each), so 10 and N apps are compared under the same load;
         then `save` in both homes and rounds of `list` again (a saved list is checked by
         each `corral list`);
      4. the daemon's RSS and CPU over an idle window (30 s), its open fds (/proc/<pid>/fd,
         by kind) and the fds per app;
      5. `delete all`: the call's wall time and the time until every app process is gone;
      6. `kill`, then SIGKILL of any recorded pid still running a program of the temp folder;
  * prints medians (min-max), ratios corral/PM2 and the goal (`list` with N apps <= 2x its
    10-app time); writes every raw sample to bench/out/scale-<timestamp>.json.

Standard library only; Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

from common import (
    CLK_TCK,
    STAMP_APP_SOURCE,
    BenchError,
    ManagerBench,
    add_end_options,
    alive,
    bench_env,
    cmdline,
    cpu_seconds,
    fmt,
    git_info,
    install_corral,
    install_pm2,
    kill_leftovers,
    kill_managers,
    loadavg_span,
    machine_info,
    new_parser,
    report_end,
    rss_mib,
    run_bench,
    run_cmd,
    say,
    sched_cpu_seconds,
    stamped_pids,
    summary,
    system_cpu,
    unmet_needs,
    venv_versions,
    wait_gone,
)

SMALL = 10  # the apps of the small list, the reference of the goal
MANAGERS = ("corral", "pm2")


class Busy:
    """How busy the whole machine was (in cores) between start() and stop()."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.b0 = system_cpu()[0]

    def cores(self) -> float:
        elapsed = time.monotonic() - self.t0
        return (system_cpu()[0] - self.b0) / CLK_TCK / elapsed if elapsed > 0 else 0.0


def fd_kind(target: str, home: str) -> str:
    """What one of a daemon's fds is, from its /proc/<pid>/fd link."""
    if target.startswith(os.path.join(home, "pipes") + "/"):
        return "FIFO (app stdout/stderr)"
    if target.startswith(os.path.join(home, "logs") + "/"):
        return "app log file"
    if target == "anon_inode:[pidfd]":
        return "pidfd (app exit)"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("anon_inode:"):
        return target[len("anon_inode:"):].strip("[]")
    if target.startswith(home + "/"):
        return "home file: " + os.path.basename(target)
    if target.startswith("/proc/"):
        return "/proc/<pid>/" + os.path.basename(target)
    return "other: " + target


def fd_table(pid: int, home: str) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = fd_kind(target, home)
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


class Bench(ManagerBench):
    """Each manager gets two homes, so two daemons: `small` (SMALL apps) and `large` (N
    apps), both up during the CLI rounds, so that `list` with SMALL and with N apps are
    timed in the same rounds (paired), under the same load from other jobs."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-scale-")
        self.homes = {m: {size: os.path.join(self.tmp, f"{m}_home_{size}")
                          for size in ("small", "large")} for m in MANAGERS}
        self.app = os.path.join(self.tmp, "app", "app.py")
        self.stamps = os.path.join(self.tmp, "stamps")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE", "CORRAL_HOME", "PM2_HOME"],
                             PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.results: dict[str, Any] = {"managers": {}}
        self.app_pids: set[int] = set()

    # -- helpers

    def env_of(self, manager: str, size: str) -> dict[str, str]:
        name = "CORRAL_HOME" if manager == "corral" else "PM2_HOME"
        return dict(self.env, **{name: self.homes[manager][size]})

    def run(self, argv: list[str], *, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=env or self.env, timeout=timeout, cwd=self.tmp)

    def timed(self, argv: list[str], env: dict[str, str], timeout: float = 900) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, cwd=self.tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        return elapsed

    def write_file(self, manager: str, size: str, count: int) -> str:
        """An ecosystem file of `count` apps (PM2's JSON, read by both)."""
        stamps = os.path.join(self.stamps, manager, size)
        os.makedirs(stamps, exist_ok=True)
        prefix = "s" if size == "small" else "app"
        apps = [{"name": f"{prefix}{i}", "script": self.app, "interpreter": self.python,
                 "env": {"BENCH_STAMP_DIR": stamps}} for i in range(count)]
        path = os.path.join(self.tmp, f"{manager}-{size}", "ecosystem.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"apps": apps}, f, indent=1)
        return path

    def stamp_pids(self, manager: str, size: str) -> list[int]:
        folder = os.path.join(self.stamps, manager, size)
        return [int(e) for e in os.listdir(folder) if e.isdigit()]

    def wait_stamps(self, manager: str, size: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.stamp_pids(manager, size)) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{manager}: {len(self.stamp_pids(manager, size))} of "
                                 f"{count} apps started within {timeout:.0f} s")
            time.sleep(0.05)
        self.app_pids.update(self.stamp_pids(manager, size))

    def online(self, manager: str, size: str) -> tuple[int, int]:
        rows = json.loads(self.run([self.cli(manager), "jlist"], timeout=300,
                                   env=self.env_of(manager, size)).stdout)
        return sum(r["pm2_env"]["status"] == "online" for r in rows), len(rows)

    def wait_online(self, manager: str, size: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            online, total = self.online(manager, size)
            if online == count == total:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{manager}: {online} of {total} apps online, expected "
                                 f"{count}, after {timeout:.0f} s")
            time.sleep(0.5)

    def wait_gone(self, pids: list[int], timeout: float) -> None:
        if not wait_gone(pids, self.app, timeout, 0.05):
            raise BenchError(f"app processes still alive {timeout:.0f} s after `delete all`")

    def bench_cli(self, manager: str, runs: int, warmups: int,
                  commands: tuple[str, ...] = ("list", "jlist")) -> dict[str, list[float]]:
        """`list` and `jlist` (or `commands`) of both daemons and `python -c pass`, in an
        order shuffled in each round."""
        exe = self.cli(manager)
        table = {"python -c pass": ([self.python, "-c", "pass"], self.env)}
        for size in ("small", "large"):
            for command in commands:
                table[f"{command} {size}"] = ([exe, command], self.env_of(manager, size))
        samples: dict[str, list[float]] = {name: [] for name in table}
        samples["busy_cores"] = []
        samples["loadavg"] = []
        rng = random.Random(17)
        for round_no in range(warmups + runs):
            order = list(table)
            rng.shuffle(order)
            busy = Busy()
            elapsed = {name: self.timed(table[name][0], table[name][1], timeout=300)
                       for name in order}
            if round_no >= warmups:
                for name, value in elapsed.items():
                    samples[name].append(value)
                samples["busy_cores"].append(busy.cores())
                samples["loadavg"].append(os.getloadavg()[0])
        return samples

    def daemon_pid(self, manager: str, size: str) -> int:
        path = os.path.join(self.homes[manager][size], f"{manager}.pid")
        with open(path) as f:
            pid = int(f.read().strip())
        if not alive(pid) or self.tmp not in cmdline(pid):
            raise BenchError(f"{manager} daemon pid {pid} is not ours: {cmdline(pid)!r}")
        self.daemon_pids[f"{manager}-{size}"] = pid
        return pid

    def sample_daemon(self, pid: int, seconds: float) -> dict[str, list[float]]:
        series: dict[str, list[float]] = {"t": [], "rss_mib": [], "cpu_s": [],
                                          "sched_cpu_s": []}
        t0 = time.monotonic()
        n = 0
        while True:
            now = time.monotonic() - t0
            series["t"].append(now)
            series["rss_mib"].append(rss_mib(pid))
            series["cpu_s"].append(cpu_seconds(pid))
            series["sched_cpu_s"].append(sched_cpu_seconds(pid))
            n += 1
            if now >= seconds - 1e-6:
                return series
            time.sleep(max(0.0, t0 + n - time.monotonic()))

    # -- set-up

    def setup(self) -> None:
        a = self.args
        say(f"temp folder {self.tmp}")
        os.makedirs(os.path.dirname(self.app))
        with open(self.app, "w") as f:
            f.write(STAMP_APP_SOURCE)
        pm2_version = "-"
        if "pm2" in a.managers:
            pm2_version = install_pm2(self.run, self.pm2_prefix, a.pm2_version)
        say("python -m venv + pip install (non-editable) ...")
        install_corral(self.run, self.tmp, self.venv)
        info = venv_versions(self.run, self.venv)
        node = self.run(["node", "--version"]).stdout.strip()
        self.results["machine"] = machine_info() | {
            "python": info[0], "node": node, "pm2": pm2_version, "corral": info[1],
            "corral_git": git_info(with_files=True)}
        self.results["settings"] = {"apps": a.apps, "small": SMALL, "runs": a.runs,
                                    "idle_s": a.idle, "order": a.managers}
        say(f"python {info[0]}, node {node}, pm2 {pm2_version}, corral {info[1]}")

    # -- one manager

    def bench_manager(self, manager: str) -> dict[str, Any]:
        a = self.args
        exe = self.cli(manager)
        out: dict[str, Any] = {}
        self.results["managers"][manager] = out
        small_env, large_env = self.env_of(manager, "small"), self.env_of(manager, "large")

        say(f"{manager}: a daemon with {SMALL} apps (the `list` reference)")
        self.run([exe, "start", self.write_file(manager, "small", SMALL)], timeout=300,
                 env=small_env)
        small_pid = self.daemon_pid(manager, "small")
        self.wait_stamps(manager, "small", SMALL, 60)
        self.wait_online(manager, "small", SMALL, 60)

        self.run([exe, "ping"], timeout=60, env=large_env)
        pid = self.daemon_pid(manager, "large")
        say(f"{manager}: daemons {small_pid} ({SMALL} apps) and {pid} ({a.apps} apps)")
        path = self.write_file(manager, "large", a.apps)
        time.sleep(2)
        say(f"{manager}: `start` of {a.apps} apps")
        busy = Busy()
        t0 = time.perf_counter()
        out["start_call_s"] = self.timed([exe, "start", path], large_env)
        self.wait_stamps(manager, "large", a.apps, 900)
        out["start_all_stamped_s"] = time.perf_counter() - t0
        self.wait_online(manager, "large", a.apps, 900)
        out["start_all_online_s"] = time.perf_counter() - t0
        out["start_busy_cores"] = busy.cores()
        say(f"{manager}: start call {out['start_call_s']:.2f} s, every app started "
            f"{out['start_all_stamped_s']:.2f} s, online {out['start_all_online_s']:.2f} s")

        time.sleep(5)
        say(f"{manager}: `list` / `jlist` with {SMALL} and with {a.apps} apps, "
            f"{a.runs} rounds")
        out["cli"] = self.bench_cli(manager, a.runs, 1)
        # what most users of many apps have: a saved list (each `corral list` checks whether
        # it still matches the apps)
        say(f"{manager}: `save`, then `list` again, {a.runs} rounds")
        for env in (small_env, large_env):
            self.run([exe, "save"], timeout=300, env=env)
        out["cli_saved"] = self.bench_cli(manager, a.runs, 1, commands=("list",))
        say(f"{manager}: idle window {a.idle:.0f} s")
        time.sleep(3)
        busy = Busy()
        out["idle"] = self.sample_daemon(pid, a.idle)
        out["idle_busy_cores"] = busy.cores()
        out["fds"] = fd_table(pid, self.homes[manager]["large"])
        out["fds_total"] = sum(out["fds"].values())
        out["threads"] = len(os.listdir(f"/proc/{pid}/task"))

        say(f"{manager}: `delete all` of {a.apps} apps")
        large_pids = self.stamp_pids(manager, "large")
        busy = Busy()
        t0 = time.perf_counter()
        out["delete_call_s"] = self.timed([exe, "delete", "all"], large_env)
        self.wait_gone(large_pids, 300)
        out["delete_all_gone_s"] = time.perf_counter() - t0
        out["delete_busy_cores"] = busy.cores()
        out["rss_after_delete_mib"] = rss_mib(pid)
        say(f"{manager}: delete call {out['delete_call_s']:.2f} s, every app gone "
            f"{out['delete_all_gone_s']:.2f} s")
        for env in (small_env, large_env):
            kill_managers([exe], env, cwd=self.tmp)
        small_pids = self.stamp_pids(manager, "small")
        kill_leftovers({pid, small_pid} | set(large_pids) | set(small_pids), self.tmp)
        return out

    def main(self) -> dict[str, Any]:
        self.setup()
        for manager in self.args.managers:
            self.bench_manager(manager)
        return self.results

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        for manager in MANAGERS:
            for size in ("small", "large"):
                kill_managers([self.cli(manager)], self.env_of(manager, size), cwd=self.tmp)
        pids = set(self.daemon_pids.values()) | self.app_pids | stamped_pids(self.stamps)
        self.end_cleanup(pids)


# ---- report ----------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> str:
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    n = r["settings"]["apps"]
    m = r["managers"]
    names = [x for x in MANAGERS if x in m]
    lines = ["", f"| measure | {' | '.join(names)} |"
             + (" ratio corral/PM2 |" if len(names) == 2 else ""),
             "|---|" + "---|" * (len(names) + (1 if len(names) == 2 else 0))]

    def row(what: str, values: dict[str, list[float] | float], digits: int) -> None:
        cells, medians = [], []
        for name in names:
            v = values[name]
            if isinstance(v, list):
                s = summary(v)
                cells.append(fmt(s, digits) if len(v) > 1 else f"{s['median']:.{digits}f}")
                medians.append(s["median"])
            else:
                cells.append(f"{v:.{digits}f}")
                medians.append(v)
        ratio = ""
        if len(names) == 2:
            ratio = f" {medians[0] / medians[1]:.2f} |" if medians[1] else " n/a |"
        lines.append(f"| {what} | {' | '.join(cells)} |{ratio}")

    row(f"`start` of {n} apps, the call (s)", {k: m[k]["start_call_s"] for k in names}, 2)
    row(f"`start` of {n} apps, until every app has started (s)",
        {k: m[k]["start_all_stamped_s"] for k in names}, 2)
    row(f"`start` of {n} apps, until all are listed online (s)",
        {k: m[k]["start_all_online_s"] for k in names}, 2)
    for command in ("list", "jlist"):
        for size, count in (("small", SMALL), ("large", n)):
            row(f"`{command}`, {count} apps (ms)",
                {k: ms(m[k]["cli"][f"{command} {size}"]) for k in names}, 1)
    row("`python -c pass` in the same rounds (ms)",
        {k: ms(m[k]["cli"]["python -c pass"]) for k in names}, 1)
    if all("cli_saved" in m[k] for k in names):
        for size, count in (("small", SMALL), ("large", n)):
            row(f"`list` after `save`, {count} apps (ms; rounds of their own)",
                {k: ms(m[k]["cli_saved"][f"list {size}"]) for k in names}, 1)
    row(f"daemon RSS, {n} apps idle (MiB)", {k: m[k]["idle"]["rss_mib"] for k in names}, 1)
    span = r["settings"]["idle_s"]
    row(f"daemon CPU, {n} apps idle, utime+stime over {span:.0f} s (s)",
        {k: m[k]["idle"]["cpu_s"][-1] - m[k]["idle"]["cpu_s"][0] for k in names}, 2)
    row(f"daemon CPU, {n} apps idle, schedstat over {span:.0f} s (ms)",
        {k: 1000 * (m[k]["idle"]["sched_cpu_s"][-1] - m[k]["idle"]["sched_cpu_s"][0])
         for k in names}, 1)
    row("daemon fds per app", {k: m[k]["fds_total"] / n for k in names}, 2)
    row(f"`delete all` of {n} apps, the call (s)", {k: m[k]["delete_call_s"] for k in names}, 2)
    row(f"`delete all` of {n} apps, until every app is gone (s)",
        {k: m[k]["delete_all_gone_s"] for k in names}, 2)

    lines.append("")
    for name in names:
        cli = m[name]["cli"]
        for command in ("list", "jlist"):
            paired = [b / a for a, b in zip(cli[f"{command} small"], cli[f"{command} large"])]
            medians = (summary(cli[f"{command} large"])["median"]
                       / summary(cli[f"{command} small"])["median"])
            verdict = ""
            if name == "corral" and command == "list":
                verdict = f" (goal <= 2x: {'holds' if medians <= 2 else 'NOT MET'})"
            lines.append(f"{name}: `{command}` with {n} apps / with {SMALL} apps, paired by "
                         f"round {fmt(summary(paired), 2)}, ratio of medians "
                         f"{medians:.2f}{verdict}")
        saved = m[name].get("cli_saved")
        if saved:
            paired = [b / a for a, b in zip(saved["list small"], saved["list large"])]
            medians = summary(saved["list large"])["median"] / summary(
                saved["list small"])["median"]
            lines.append(f"{name}: `list` after `save`, {n} apps / {SMALL} apps, paired by "
                         f"round {fmt(summary(paired), 2)}, ratio of medians {medians:.2f}")
    for name in names:
        fds = ", ".join(f"{k} {v}" for k, v in m[name]["fds"].items())
        lines.append(f"{name} daemon fds ({m[name]['fds_total']} with {n} apps, "
                     f"{m[name]['threads']} threads): {fds}")
    for name in names:
        x = m[name]
        busy, load = x["cli"]["busy_cores"], x["cli"]["loadavg"]
        lines.append(f"{name}: machine busy (cores, all processes) during the CLI rounds "
                     f"{fmt(summary(busy), 2)}, load average {fmt(summary(load), 1)}; during "
                     f"start {x['start_busy_cores']:.2f}, idle window "
                     f"{x['idle_busy_cores']:.2f}, delete {x['delete_busy_cores']:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--apps", type=int, help="apps per manager (default 1000)")
    parser.add_argument("--runs", type=int, help="timed CLI runs per command (default 10)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 30)")
    parser.add_argument("--order", default="corral,pm2",
                        help="managers, in the order they run (default corral,pm2; "
                        "`corral` alone skips PM2)")
    parser.add_argument("--quick", action="store_true",
                        help="100 apps, 5 CLI runs, 10 s idle window (a smoke test)")
    add_end_options(parser)
    args = parser.parse_args()
    args.apps = args.apps or (100 if args.quick else 1000)
    args.runs = args.runs or (5 if args.quick else 10)
    args.idle = args.idle or (10.0 if args.quick else 30.0)
    args.managers = [x.strip() for x in args.order.split(",") if x.strip()]
    if not args.managers or any(x not in MANAGERS for x in args.managers):
        parser.error("--order: corral and/or pm2")
    needs = ("node", "npm") if "pm2" in args.managers else ()
    if unmet_needs("bench/scale.py", *needs):
        return 2
    results, failed = run_bench(Bench, args, "bench/scale.py", sys.argv[1:])
    return report_end(results, failed, report, args.out, "scale", headline)


def headline(r: dict[str, Any]) -> str:
    mi = r["machine"]
    return (f"\ncorral {mi['corral']} vs PM2 {mi['pm2']}; nproc {mi['nproc']}, python "
            f"{mi['python']}, node {mi['node']}; whole run {r['wall_s']:.0f} s; "
            f"{loadavg_span(r)}")


if __name__ == "__main__":
    raise SystemExit(main())
