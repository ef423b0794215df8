#!/usr/bin/env python3
"""Watch benchmark (issue 7): corral and PM2 side by side, in one run.

    python bench/watch.py            # full run, about 4-5 minutes (installs included)
    python bench/watch.py --quick    # smoke test: 15 s idle window, 3 saves

What it does:
  * makes a temp folder; installs PM2 from the npm registry into it
    (`npm install --prefix <tmp>/pm2 pm2@7`) and corral, non-editable, into a
    fresh venv (`pip install` of a copy of this repository's working tree),
    byte-compiles the venv's site-packages; PYTHONDONTWRITEBYTECODE is removed
    from the environment of everything it launches;
  * writes two identical trees of 10,000 small .py files (100 folders x 100
    files), <tmp>/tree-corral and <tmp>/tree-pm2, each with an app.py at its
    root that writes time.time() to a stamp file (outside the tree) and sleeps;
  * one corral daemon (CORRAL_HOME=<tmp>/corral_home) and one PM2 daemon
    (PM2_HOME=<tmp>/pm2_home), at the same time, each in its own tree:
      1. 20 idle apps per manager, each watching its whole tree
         corral start <tree>/app.py --cwd <tree> --watch -n wN -f --exec-mode fork
         pm2 start <tree>/app.py --cwd <tree> --watch --name wN -f --interpreter <venv python>
         then 10 s to settle, then utime+stime of each daemon (/proc/<pid>/stat of
         $CORRAL_HOME/corral.pid and $PM2_HOME/pm2.pid) and its VmRSS over a 60 s idle
         window; afterwards, one save per tree proves that all 20 watchers of each
         manager were live (every app restarts once);
      2. the 20 apps deleted, ONE watched app per manager: save (rewrite in place) a
         file of its tree and measure the app's new start stamp minus time.time() just
         before the save; 1 warm-up save, then 7 per manager, alternating which manager
         goes first, each save > 2 s after the previous one of that manager and 2 s
         after the app's last start;
  * prints Markdown tables (median (min-max), ratio corral/PM2, the goal);
    `--json PATH` also writes every raw sample;
  * stops only what it started: `corral kill`, `pm2 kill`, then SIGKILL of any
    pid it recorded (daemons and apps) that still runs a program of the temp folder.

Standard library only (the harness reads /proc itself); Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from common import (
    CLK_TCK,
    STAMP_APP_SOURCE,
    BenchError,
    ManagerBench,
    alive,
    bench_env,
    cpu_seconds,
    exit_status,
    fmt,
    git_info,
    install_corral,
    install_pm2,
    kill_managers,
    machine_info,
    new_parser,
    rss_mib,
    run_bench,
    run_cmd,
    say,
    stamped_pids,
    status_field,
    summary,
    unmet_needs,
    venv_versions,
)

MANAGERS = ("corral", "pm2")

# The app both managers run, from the root of the watched tree, is common.STAMP_APP_SOURCE
# (its start stamps go to a folder outside the tree).


# ---- /proc ---------------------------------------------------------------------------------

def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, utime+stime in seconds) of each live thread."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.find(b"(") + 1:data.rfind(b")")].decode(errors="replace")
        if int(tid) == pid:
            name = f"main thread ({name})"
        fields = data[data.rfind(b")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def cpu_by_thread_name(before: dict[int, tuple[str, float]],
                       after: dict[int, tuple[str, float]]) -> dict[str, list[float]]:
    """thread name -> [threads, CPU seconds used between the snapshots]."""
    out: dict[str, list[float]] = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        row = out.setdefault(name, [0, 0.0])
        row[0] += 1
        row[1] += used
    return out


def inotify_usage(pid: int) -> tuple[int, int]:
    """(inotify instances, inotify watches) held by the process."""
    instances = watches = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                watches += sum(line.startswith("inotify wd:") for line in f)
            instances += 1
        except OSError:
            pass
    return instances, watches


# ---- the bench -----------------------------------------------------------------------------

class Bench(ManagerBench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-watch-bench-")
        self.corral_home = os.path.join(self.tmp, "corral_home")
        self.pm2_home = os.path.join(self.tmp, "pm2_home")
        self.trees = {m: os.path.join(self.tmp, f"tree-{m}") for m in MANAGERS}
        self.stamps = os.path.join(self.tmp, "stamps")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE"], CORRAL_HOME=self.corral_home,
                             PM2_HOME=self.pm2_home, PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.results: dict[str, Any] = {}

    # -- helpers

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=env or self.env, timeout=timeout)

    def stamp_dir(self, manager: str, name: str) -> str:
        return os.path.join(self.stamps, manager, name)

    def app_path(self, manager: str) -> str:
        return os.path.join(self.trees[manager], "app.py")

    def start_argv(self, manager: str, name: str) -> list[str]:
        tree = self.trees[manager]
        if manager == "corral":
            return [self.corral, "start", self.app_path(manager), "--cwd", tree, "--watch",
                    "-n", name, "-f", "--exec-mode", "fork"]
        return [self.pm2, "start", self.app_path(manager), "--cwd", tree, "--watch",
                "--name", name, "-f", "--interpreter", self.python]

    def stamps_of(self, manager: str, name: str) -> dict[int, float]:
        """Every start of the app so far: pid -> start time."""
        folder = self.stamp_dir(manager, name)
        out = {}
        for entry in os.listdir(folder):
            if entry.isdigit():
                with open(os.path.join(folder, entry)) as f:
                    out[int(entry)] = float(f.read())
        return out

    def current(self, manager: str, name: str, timeout: float = 20) -> tuple[int, float]:
        """(pid, start time) of the app's newest live process."""
        deadline = time.monotonic() + timeout
        while True:
            live = [(t, pid) for pid, t in self.stamps_of(manager, name).items() if alive(pid)]
            if live:
                t, pid = max(live)
                return pid, t
            if time.monotonic() > deadline:
                raise BenchError(f"{manager} {name}: no live process after {timeout} s")
            time.sleep(0.01)

    def jlist(self, manager: str) -> list[dict[str, Any]]:
        return json.loads(self.run([self.cli(manager), "jlist"]).stdout)

    def check_apps(self, expected: int) -> dict[str, Any]:
        """Every app online and watching, in both managers."""
        facts = {}
        for manager in MANAGERS:
            rows = self.jlist(manager)
            online = sum(r["pm2_env"]["status"] == "online" for r in rows)
            watching = sum(bool(r["pm2_env"].get("watch")) for r in rows)
            if online != expected or len(rows) != expected:
                raise BenchError(f"{manager}: expected {expected} online apps, "
                                 f"{online} of {len(rows)} are")
            if watching != expected:
                raise BenchError(f"{manager}: expected {expected} watching apps, jlist says "
                                 f"{watching}")
            facts[manager] = {"online": online, "watch_true": watching}
        return facts

    # -- set-up

    def setup(self) -> None:
        say(f"temp folder {self.tmp}")
        pm2_version = install_pm2(self.run, self.pm2_prefix, self.args.pm2_version)
        chokidar = ""
        chokidar_pkg = os.path.join(self.pm2_prefix, "node_modules", "chokidar", "package.json")
        if os.path.exists(chokidar_pkg):
            with open(chokidar_pkg) as f:
                chokidar = json.load(f)["version"]

        say("python -m venv + pip install (non-editable) ...")
        install_corral(self.run, self.tmp, self.venv)
        info = venv_versions(self.run, self.venv, "watchfiles")
        node = self.run(["node", "--version"]).stdout.strip()
        self.results["machine"] = machine_info(
            extra={"inotify": inotify_limits(), "clk_tck": CLK_TCK}) | {
            "python": info[0], "node": node, "pm2": pm2_version, "chokidar": chokidar,
            "corral": info[1], "watchfiles": info[2], "corral_git": git_info(),
        }
        say(f"python {info[0]}, node {node}, pm2 {pm2_version} (chokidar {chokidar}), "
            f"corral {info[1]} (watchfiles {info[2]})")

    def make_trees(self) -> None:
        folders, per = self.args.folders, self.args.files_per_folder
        for tree in self.trees.values():
            for d in range(folders):
                folder = os.path.join(tree, f"d{d:03d}")
                os.makedirs(folder)
                for i in range(per):
                    with open(os.path.join(folder, f"f{i:03d}.py"), "w") as f:
                        f.write(f"# file {d}/{i}\nVALUE = {d * per + i}\n")
            with open(os.path.join(tree, "app.py"), "w") as f:
                f.write(STAMP_APP_SOURCE)
        n = sum(len(files) for _, _, files in os.walk(self.trees["corral"]))
        self.results["tree"] = {"folders": folders, "files_per_folder": per,
                                "files_per_tree": n}
        say(f"2 trees of {n} files ({folders} folders x {per} files + app.py)")

    # -- daemons

    def start_daemons(self) -> None:
        self.start_daemons_pinged(self.corral_home, self.pm2_home)

    def daemon_facts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for manager, pid in self.daemon_pids.items():
            instances, watches = inotify_usage(pid)
            out[manager] = {"threads": int(status_field(pid, "Threads")),
                            "inotify_instances": instances, "inotify_watches": watches,
                            "rss_mib": rss_mib(pid), "cpu_s": cpu_seconds(pid)}
        return out

    # -- saves

    def save(self, manager: str, rel: str, tag: str) -> float:
        """Rewrite a file of the tree in place; time.time() just before the write."""
        path = os.path.join(self.trees[manager], rel)
        t = time.time()
        with open(path, "w") as f:
            f.write(f"# saved {tag}\nVALUE = {tag!r}\n")
        return t

    def wait_new_start(self, manager: str, name: str, after: float,
                       timeout: float) -> tuple[int, float] | None:
        """The first start of the app later than `after`, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [(t, pid) for pid, t in self.stamps_of(manager, name).items() if t > after]
            if fresh:
                t, pid = min(fresh)
                return pid, t
            time.sleep(0.002)
        return None

    def verify_all_watching(self, names: list[str]) -> dict[str, Any]:
        """One save per tree (one manager at a time): every app must restart once."""
        out: dict[str, Any] = {}
        for manager in MANAGERS:
            before = {n: self.stamps_of(manager, n) for n in names}
            t_save = self.save(manager, "d000/f000.py", "verify")
            latencies = []
            deadline = time.monotonic() + 30
            for n in names:
                got = self.wait_new_start(manager, n, t_save, max(0.1, deadline - time.monotonic()))
                if got is not None:
                    latencies.append(got[1] - t_save)
            time.sleep(3)  # a second restart for the same save would show up by now
            per_app = [len(set(self.stamps_of(manager, n)) - set(before[n])) for n in names]
            out[manager] = {"restarted": len(latencies), "apps": len(names),
                            "save_to_start_s": latencies, "starts_per_app": per_app}
            say(f"  {manager}: {len(latencies)}/{len(names)} apps restarted after one save; "
                f"last one {max(latencies, default=float('nan')) * 1000:.0f} ms after it; "
                f"starts per app {sorted(set(per_app))}")
        return out

    # -- 1. idle with 20 watched apps

    def phase_idle(self) -> None:
        a = self.args
        say("daemon RSS and CPU with 0 apps (10 s, extra)")
        time.sleep(2)
        self.results["idle_0_apps"] = self.sample_daemons(10.0, 1.0, check_alive=True)
        self.results["daemon_0_apps"] = self.daemon_facts()

        names = [f"w{i}" for i in range(a.apps)]
        cpu_before = {m: cpu_seconds(p) for m, p in self.daemon_pids.items()}
        say(f"starting {a.apps} watched apps per manager (interleaved)")
        start_s: dict[str, list[float]] = {m: [] for m in MANAGERS}
        for n in names:
            for manager in MANAGERS:
                stamp = self.stamp_dir(manager, n)
                os.makedirs(stamp)
                t0 = time.perf_counter()
                self.run(self.start_argv(manager, n), env=dict(self.env, BENCH_STAMP_DIR=stamp))
                start_s[manager].append(time.perf_counter() - t0)
        self.results["start_call_s"] = start_s
        for n in names:
            for manager in MANAGERS:
                self.current(manager, n)
        self.results["apps_check"] = self.check_apps(a.apps)
        say(f"all online and watching; settling {a.settle:.0f} s (longer while a daemon "
            "still uses > 2.5 % of a core)")
        settle = self.sample_daemons(a.settle, 1.0, check_alive=True)
        extra = 0
        while extra < 60 and any(s["cpu_s"][-1] - s["cpu_s"][-3] > 0.05
                                 for s in settle.values()):
            # two samples 1 s apart: keep the last
            more = self.sample_daemons(1.0, 1.0, check_alive=True)
            for m in MANAGERS:
                offset = settle[m]["t"][-1]
                for key, values in more[m].items():
                    settle[m][key].append(values[-1] + (offset if key == "t" else 0.0))
            extra += 1
        self.results["settle"] = settle
        self.results["settle_s"] = a.settle + extra
        if extra:
            say(f"  settled after {a.settle + extra:.0f} s")
        self.results["cpu_start_and_settle_s"] = {
            m: cpu_seconds(p) - cpu_before[m] for m, p in self.daemon_pids.items()}
        starts_before = {m: {n: len(self.stamps_of(m, n)) for n in names} for m in MANAGERS}

        say(f"1. daemons idle with {a.apps} watched apps: CPU and RSS over {a.idle:.0f} s")
        threads0 = {m: thread_cpu(p) for m, p in self.daemon_pids.items()}
        self.results["idle_watch"] = self.sample_daemons(a.idle, 1.0, check_alive=True)
        self.results["idle_watch_threads"] = {
            m: cpu_by_thread_name(threads0[m], thread_cpu(p)) for m, p in self.daemon_pids.items()}
        self.results["daemon_watch"] = self.daemon_facts()
        starts_after = {m: {n: len(self.stamps_of(m, n)) for n in names} for m in MANAGERS}
        self.results["restarts_during_idle"] = {
            m: sum(starts_after[m][n] - starts_before[m][n] for n in names) for m in MANAGERS}
        for m in MANAGERS:
            if any(starts_after[m][n] != 1 for n in names):
                say(f"  WARNING: {m} restarted apps without a change: {starts_after[m]}")

        say("check: one save per tree restarts every watching app")
        self.results["verify"] = self.verify_all_watching(names)
        time.sleep(2)

        say("deleting the apps")
        for exe in (self.corral, self.pm2):
            self.run([exe, "delete", "all"])
        pids = [p for m in MANAGERS for n in names for p in self.stamps_of(m, n)]
        deadline = time.monotonic() + 20
        while any(alive(p) for p in pids):
            if time.monotonic() > deadline:
                raise BenchError("apps still running 20 s after `delete all`")
            time.sleep(0.05)
        time.sleep(1)
        # with every app deleted, a daemon should hold no watcher (threads, inotify)
        self.results["daemon_after_delete"] = self.daemon_facts()

    # -- 2. save -> app started again

    def phase_latency(self) -> None:
        a = self.args
        name = "single"
        say("2. one watched app per manager")
        for manager in MANAGERS:
            stamp = self.stamp_dir(manager, name)
            os.makedirs(stamp)
            self.run(self.start_argv(manager, name), env=dict(self.env, BENCH_STAMP_DIR=stamp))
        for manager in MANAGERS:
            self.current(manager, name)
        self.results["single_check"] = self.check_apps(1)
        time.sleep(3)
        say("  daemons idle with 1 watched app: CPU over 10 s (extra)")
        self.results["idle_1_app"] = self.sample_daemons(10.0, 1.0, check_alive=True)

        last_save = {m: 0.0 for m in MANAGERS}
        samples: dict[str, list[dict[str, Any]]] = {m: [] for m in MANAGERS}
        # rep 0 is a warm-up (it also proves the watcher is live); reps 1..N are kept
        for rep in range(a.reps + 1):
            order = MANAGERS if rep % 2 == 0 else MANAGERS[::-1]
            for manager in order:
                before = set(self.stamps_of(manager, name))
                _, started = self.current(manager, name)
                wait = max(started + a.gap, last_save[manager] + a.gap) - time.time()
                if wait > 0:
                    time.sleep(wait)
                folder, file = (rep * 7 + 1) % a.folders, (rep * 13 + 2) % a.files_per_folder
                rel = f"d{folder:03d}/f{file:03d}.py"
                t_save = self.save(manager, rel, f"rep {rep}")
                last_save[manager] = t_save
                got = self.wait_new_start(manager, name, t_save, 20)
                if got is None:
                    raise BenchError(f"{manager}: no restart within 20 s of saving {rel}")
                t_seen = time.time()
                samples[manager].append({"rep": rep, "file": rel, "new_pid": got[0],
                                         "save_to_start_s": got[1] - t_save,
                                         "save_to_seen_s": t_seen - t_save,
                                         "before": sorted(before)})
                say(f"  rep {rep}{' (warm-up)' if rep == 0 else ''} {manager}: "
                    f"{(got[1] - t_save) * 1000:.0f} ms")
        time.sleep(a.gap)
        self.results["daemon_end"] = self.daemon_facts()
        # starts per save: every start of the app after the first, over the saves made
        for manager in MANAGERS:
            starts = len(self.stamps_of(manager, name))
            self.results.setdefault("single_starts", {})[manager] = {
                "starts": starts, "saves": a.reps + 1}
        self.results["latency"] = samples

    def main(self) -> None:
        self.setup()
        self.make_trees()
        self.start_daemons()
        self.phase_idle()
        self.phase_latency()

    # -- cleanup

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        kill_managers([self.corral, self.pm2], self.env)
        pids = set(self.daemon_pids.values()) | stamped_pids(self.stamps)
        self.end_cleanup(pids)


# ---- machine info ----------------------------------------------------------------------------

def inotify_limits() -> dict[str, int]:
    limits = {}
    for key in ("max_user_watches", "max_user_instances"):
        try:
            with open(f"/proc/sys/fs/inotify/{key}") as f:
                limits[key] = int(f.read())
        except (OSError, ValueError):
            pass
    return limits


# ---- report ----------------------------------------------------------------------------------

def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    lines: list[str] = []
    m = r["machine"]
    idle, facts0, facts = r["idle_watch"], r["daemon_0_apps"], r["daemon_watch"]
    span = idle["corral"]["t"][-1] - idle["corral"]["t"][0]
    files = r["tree"]["files_per_tree"]

    def total(series: dict[str, list[float]], key: str) -> float:
        return series[key][-1] - series[key][0]

    def windows(series: dict[str, list[float]]) -> str:
        cpu = series["cpu_s"]
        step = 10
        w = [cpu[i + step] - cpu[i] for i in range(0, len(cpu) - step, step)]
        return ", ".join(f"{x:.2f}" for x in w)

    cpu = {k: total(idle[k], "cpu_s") for k in MANAGERS}
    sched = {k: total(idle[k], "sched_cpu_s") * 1000 for k in MANAGERS}
    rss = {k: summary(idle[k]["rss_mib"]) for k in MANAGERS}
    rss0 = {k: summary(r["idle_0_apps"][k]["rss_mib"]) for k in MANAGERS}
    cpu0 = {k: total(r["idle_0_apps"][k], "cpu_s") for k in MANAGERS}
    span0 = r["idle_0_apps"]["corral"]["t"][-1]
    ratio = cpu["corral"] / cpu["pm2"] if cpu["pm2"] else float("inf")
    holds = cpu["corral"] <= 0.25 * cpu["pm2"]
    r["goal"] = {"cpu_ratio": ratio, "holds": holds}

    def ratio_of(c: float, p: float) -> str:
        return f"{c / p:.2f}" if p else "n/a"

    apps = args.apps
    lines += [f"### 1. {apps} idle apps per manager, each watching its whole tree "
              f"({files:,} files, {r['tree']['folders']} folders)", "",
              "| measure | corral | PM2 | ratio corral/PM2 | goal | holds |",
              "|---|---|---|---|---|---|",
              f"| daemon CPU s (utime+stime) over {span:.0f} s idle | {cpu['corral']:.2f} | "
              f"{cpu['pm2']:.2f} | {ratio:.3f} | <= 0.25 x PM2 | {'yes' if holds else 'NO'} |",
              f"| same, % of one core | {cpu['corral'] / span * 100:.2f} | "
              f"{cpu['pm2'] / span * 100:.2f} | | | |",
              f"| same, per 10 s window | {windows(idle['corral'])} | {windows(idle['pm2'])} "
              "| | | |",
              f"| daemon CPU ms from schedstat (ns resolution, extra) | {sched['corral']:.1f} | "
              f"{sched['pm2']:.1f} | {ratio_of(sched['corral'], sched['pm2'])} | | |",
              f"| daemon RSS MiB, {apps} watched apps (1 s samples) | {fmt(rss['corral'], 1)} | "
              f"{fmt(rss['pm2'], 1)} | {rss['corral']['median'] / rss['pm2']['median']:.2f} "
              "| | |",
              f"| daemon RSS MiB, 0 apps (extra) | {fmt(rss0['corral'], 1)} | "
              f"{fmt(rss0['pm2'], 1)} | {rss0['corral']['median'] / rss0['pm2']['median']:.2f} "
              "| | |",
              f"| daemon CPU s over {span0:.0f} s idle, 0 apps (extra) | {cpu0['corral']:.2f} | "
              f"{cpu0['pm2']:.2f} | | | |",
              f"| daemon CPU s from the first `start` to the end of the {r['settle_s']:.0f} s "
              f"settling (extra: start + initial scan) | "
              f"{r['cpu_start_and_settle_s']['corral']:.2f} | "
              f"{r['cpu_start_and_settle_s']['pm2']:.2f} | | | |",
              f"| daemon threads, {apps} watched apps (0 apps) | "
              f"{facts['corral']['threads']} ({facts0['corral']['threads']}) | "
              f"{facts['pm2']['threads']} ({facts0['pm2']['threads']}) | | | |",
              f"| daemon inotify instances / watches | "
              f"{facts['corral']['inotify_instances']} / {facts['corral']['inotify_watches']:,} | "
              f"{facts['pm2']['inotify_instances']} / {facts['pm2']['inotify_watches']:,} "
              "| | | |"]
    after, end = r["daemon_after_delete"], r["daemon_end"]

    def holding(f: dict[str, Any], k: str) -> str:
        return (f"{f[k]['threads']} threads, {f[k]['inotify_instances']} inotify instances / "
                f"{f[k]['inotify_watches']:,} watches")

    lines.append(f"| daemon 1 s after `delete all` of the {apps} apps (expected: as with 0 apps) | "
                 f"{holding(after, 'corral')} | {holding(after, 'pm2')} | | | |")
    lines.append(f"| daemon at the end of part 2 (1 watched app, after its saves) | "
                 f"{holding(end, 'corral')} | {holding(end, 'pm2')} | | | |")
    one = r["idle_1_app"]
    one_span = one["corral"]["t"][-1] - one["corral"]["t"][0]
    one_ms = {k: total(one[k], "sched_cpu_s") * 1000 for k in MANAGERS}
    lines.append(f"| daemon CPU ms (schedstat) over {one_span:.0f} s idle, 1 watched app, before "
                 "its first save (extra) | "
                 f"{one_ms['corral']:.1f} | {one_ms['pm2']:.1f} | "
                 f"{ratio_of(one_ms['corral'], one_ms['pm2'])} | | |")

    def by_thread(k: str) -> str:
        rows = sorted(r["idle_watch_threads"][k].items(), key=lambda kv: -kv[1][1])
        return "; ".join(f"{name} x{n}: {cpu:.2f}" for name, (n, cpu) in rows)

    lines.append(f"| daemon CPU s in the idle window, by thread name (name xN threads: s) | "
                 f"{by_thread('corral')} | {by_thread('pm2')} | | | |")
    sc = {k: summary([x * 1000 for x in r["start_call_s"][k]]) for k in MANAGERS}
    lines.append(f"| `start` call ms, one watched app ({apps} calls, extra) | "
                 f"{fmt(sc['corral'], 0)} | {fmt(sc['pm2'], 0)} | "
                 f"{sc['corral']['median'] / sc['pm2']['median']:.2f} | | |")
    lines.append(f"| restarts during the idle window (expected 0) | "
                 f"{r['restarts_during_idle']['corral']} | {r['restarts_during_idle']['pm2']} "
                 "| | | |")
    v = r["verify"]
    vcell = {}
    for k in MANAGERS:
        lat = v[k]["save_to_start_s"]
        last = f"{max(lat) * 1000:.0f}" if lat else "n/a"
        per_app = "/".join(str(x) for x in sorted(set(v[k]["starts_per_app"])))
        vcell[k] = (f"{v[k]['restarted']}/{v[k]['apps']}, the last {last} ms after it; "
                    f"starts per app {per_app}")
    lines.append(f"| after the window, one save in the tree: apps restarted | {vcell['corral']} "
                 f"| {vcell['pm2']} | | | |")

    lat = r["latency"]
    kept = {k: [x["save_to_start_s"] * 1000 for x in lat[k] if x["rep"] > 0] for k in MANAGERS}
    warm = {k: [x["save_to_start_s"] * 1000 for x in lat[k] if x["rep"] == 0] for k in MANAGERS}
    s = {k: summary(kept[k]) for k in MANAGERS}
    ss = r["single_starts"]
    lines += ["", f"### 2. save -> app started again (one watched app per manager, "
              f"{files:,}-file tree)", "",
              "| measure | corral | PM2 | ratio corral/PM2 |", "|---|---|---|---|",
              f"| save -> new process's first line of Python, ms, median (min-max), "
              f"n={len(kept['corral'])} | {fmt(s['corral'], 0)} | {fmt(s['pm2'], 0)} | "
              f"{s['corral']['median'] / s['pm2']['median']:.2f} |",
              f"| each save, ms, in order | {', '.join(f'{x:.0f}' for x in kept['corral'])} | "
              f"{', '.join(f'{x:.0f}' for x in kept['pm2'])} | |",
              f"| warm-up save (not counted), ms | {warm['corral'][0]:.0f} | "
              f"{warm['pm2'][0]:.0f} | |",
              f"| starts of the app / saves (1 first start + 1 per save expected) | "
              f"{ss['corral']['starts']} / {ss['corral']['saves']} | "
              f"{ss['pm2']['starts']} / {ss['pm2']['saves']} | |"]
    head = (f"corral {m['corral']} (watchfiles {m['watchfiles']}) vs PM2 {m['pm2']} "
            f"(chokidar {m['chokidar']}); {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, "
            f"Linux {m['kernel']}; python {m['python']}, node {m['node']}; whole run "
            f"{r['wall_s']:.0f} s; load average at start {m['loadavg_at_start'][0]:.2f}, "
            f"at end {r['loadavg_at_end'][0]:.2f}")
    goal = (f"Goal (daemon CPU while idle <= 0.25 x PM2's): corral {cpu['corral']:.2f} s, "
            f"PM2 {cpu['pm2']:.2f} s, ratio {ratio:.3f}: {'holds' if holds else 'NOT met'}.")
    return "\n".join([head, "", *lines, "", goal])


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="15 s idle window, 3 saves per manager (smoke test)")
    parser.add_argument("--apps", type=int, default=20, help="watched apps per manager (20)")
    parser.add_argument("--folders", type=int, default=100, help="folders per tree (100)")
    parser.add_argument("--files-per-folder", type=int, default=100, help="files (100)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 60)")
    parser.add_argument("--reps", type=int, help="saves per manager (default 7)")
    parser.add_argument("--gap", type=float, default=2.2,
                        help="seconds between saves of one manager, and after each start (2.2)")
    parser.add_argument("--pm2-version", default="7", help="npm version spec (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write every raw sample there")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    args.idle = args.idle or (15.0 if args.quick else 60.0)
    args.reps = args.reps or (3 if args.quick else 7)
    if unmet_needs("bench/watch.py"):
        return 2

    results, failed = run_bench(Bench, args, "bench/watch.py", sys.argv[1:])
    text = ""
    if failed is None:
        text = report(results, args)
    else:
        results["error"] = repr(failed)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        say(f"raw results: {args.json}")
    if failed is not None:
        return exit_status(failed, "bench/watch.py")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
