#!/usr/bin/env python3
"""Cluster-mode benchmark (issue 5): `corral start app.py -i N` against `pm2 start
node_app.js -i N`, side by side in one run, HTTP hello world on 127.0.0.1, load from wrk.

    python bench/cluster_mode.py            # full run, about 10 minutes (installs included)
    python bench/cluster_mode.py --quick    # smoke test: 1 run per config, short runs, ~2 min

Every wrk run also records the CPU the rest of the machine used meanwhile ("other CPU": busy
time from /proc/stat minus the bench's own processes), to show when another job interfered.

What it does:
  * makes a temp folder; installs PM2 from the npm registry into it (`npm install --prefix
    <tmp>/pm2 pm2@7`) and corral, non-editable, into a fresh venv (`pip install` of a copy of
    this repository's working tree), byte-compiles the venv's site-packages; copies the two
    apps into <tmp>/app: examples/app.py (http.server ThreadingHTTPServer, HTTP/1.1,
    TCP_NODELAY) and bench/apps/node_app.js (`http.createServer`), both answering
    `hello world, start with cluster <pid>` on $PORT. PYTHONDONTWRITEBYTECODE and PYTHONPATH
    are removed from the environment of every process it launches. Each manager gets its
    own home: CORRAL_HOME=<tmp>/corral_home, PM2_HOME=<tmp>/pm2_home. Commands run in
    <tmp>/app, so they are literally `corral start app.py -i 2`, `pm2 start node_app.js -i 2
    --name app`;
  * part 1, reload under load: with both clusters of 2 workers running, `wrk -t2 -c64 -d20s
    --latency` (keep-alive), and again with `-H "Connection: close"`; `corral reload app` /
    `pm2 reload app` issued at t = 5 s and t = 12 s of the run; control runs with no reload
    (`-d10s`, --ref-duration). 3 runs each, corral and PM2 alternating. Failed requests = wrk socket errors (connect,
    read, write, timeout) + HTTP errors; per reload = that / 2;
  * part 2, throughput: the two clusters beside one plain process each (`python app.py`
    with the venv's python, `node node_app.js`): a 2 s wrk warm-up each, then 3 rounds of
    `wrk -t2 -c64 -d10s --latency` (keep-alive), the 4 servers in a rotating order;
    speed-up = clustered req/s / plain req/s;
  * part 3, start and reload times with 4 workers: `corral start app.py -i 4` and `pm2 start
    node_app.js -i 4 --name app` (warm daemon), timing the command itself and, from the
    same instant, until 4 distinct pids have answered on the port (a thread polls with one
    connection per request); then `corral reload app` / `pm2 reload app` from issued to
    returned, and until 4 new pids answer; then `delete app`. 3 reps, alternating;
  * prints markdown tables and the goals; writes every raw sample to
    bench/out/cluster_mode-<timestamp>.json (git-ignored; --out to change);
  * stops only what it started: the plain servers by their pid (SIGINT, then SIGKILL),
    `corral kill`, `pm2 kill`, then SIGKILL of any recorded pid (daemons, every worker pid
    seen in a jlist or in an HTTP answer, and the daemons' descendants) that still runs a
    program of the temp folder. It never uses pkill/killall.

Standard library only; Linux only (reads /proc); needs wrk, node and npm on the PATH, and
access to PyPI and the npm registry.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from common import (
    BenchError,
    add_end_options,
    add_quiet_options,
    finish,
    new_parser,
    run_bench,
    say,
    unmet_needs,
)
from common import fmt_values as fmt
from wrkkit import (
    HELLO_APPS,
    CpuSplit,
    PairBench,
    cpu_seconds_or_none,
    foreign_wrk,
    get_pid,
    port_free,
    wrk_json,
)

# below the ephemeral range, away from bench/cluster.py's 18110+
PORTS = {"corral": 18310, "pm2": 18311, "python": 18312, "node": 18313,
         "corral4": 18314, "pm24": 18315}


# ---- HTTP probe ------------------------------------------------------------------------------

class Poller(threading.Thread):
    """From t0 on, GET the port in a loop (one connection per request) until `want` distinct
    pids outside `exclude` have answered, or `limit` seconds. Records when each new pid first
    answered and how many attempts failed (refused, reset, timeout)."""

    def __init__(self, port: int, want: int, t0: float, exclude: set[int] | None = None,
                 limit: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port, self.want, self.t0, self.limit = port, want, t0, limit
        self.exclude = exclude or set()
        self.first_seen: dict[int, float] = {}
        self.old_answers = 0
        self.failures = 0
        self.ok = 0
        self.done_at: float | None = None
        self.stop_flag = False

    def run(self) -> None:
        while not self.stop_flag and time.perf_counter() - self.t0 < self.limit:
            try:
                pid = get_pid(self.port)
            except (OSError, ValueError, IndexError):
                self.failures += 1
                time.sleep(0.002)
                continue
            self.ok += 1
            now = time.perf_counter() - self.t0
            if pid in self.exclude:
                self.old_answers += 1
            elif pid not in self.first_seen:
                self.first_seen[pid] = now
                if len(self.first_seen) >= self.want:
                    self.done_at = now
                    return


# ---- the bench -------------------------------------------------------------------------------

class Bench(PairBench):
    def __init__(self, args: argparse.Namespace, prefix: str = "corral-bench-cm-") -> None:
        super().__init__(args, prefix)
        self.plain: dict[str, subprocess.Popen[bytes]] = {}

    # -- helpers

    def timed(self, argv: list[str], env: dict[str, str] | None = None,
              timeout: float = 120) -> tuple[float, subprocess.CompletedProcess[str]]:
        t0 = time.perf_counter()
        proc = self.run(argv, env=env, timeout=timeout, check=False)
        return time.perf_counter() - t0, proc

    def worker_pids(self, manager: str, name: str = "app") -> dict[int, str]:
        return {int(r["pid"]): r["pm2_env"]["status"] for r in self.jlist(manager)
                if r["name"] == name and r.get("pid")}

    def start_argv(self, manager: str, instances: int) -> list[str]:
        if manager == "corral":
            return [self.corral, "start", "app.py", "-i", str(instances)]
        return [self.pm2, "start", "node_app.js", "-i", str(instances), "--name", "app"]

    def app_env(self, port: int) -> dict[str, str]:
        return dict(self.env, PORT=str(port))

    # -- set-up

    def setup(self) -> None:
        self.prepare(HELLO_APPS)
        self.install()

    def start_cluster(self, manager: str, instances: int, port: int) -> dict[str, Any]:
        if not port_free(port):
            raise BenchError(f"port {port} is already in use")
        elapsed, proc = self.timed(self.start_argv(manager, instances), env=self.app_env(port))
        if proc.returncode != 0:
            raise BenchError(f"{manager} start exited {proc.returncode}: {proc.stderr[-2000:]}")
        pids = self.worker_pids(manager)
        if len(pids) != instances:
            raise BenchError(f"{manager}: {len(pids)} workers after start, not {instances}")
        return {"start_s": elapsed, "pids": pids}

    def wait_answering(self, port: int, want: int, limit: float = 20) -> set[int]:
        poller = Poller(port, want, time.perf_counter(), limit=limit)
        poller.run()
        if poller.done_at is None:
            raise BenchError(f"port {port}: {len(poller.first_seen)} pids answered within "
                             f"{limit} s, not {want}")
        self.seen_pids |= set(poller.first_seen)
        return set(poller.first_seen)

    # -- a shared machine (PairBench: wait_quiet, repeat_disturbed)

    def measured(self, label: str, port: int, seconds: int, close: bool,
                 during: list[tuple[float, list[str]]] | None = None) -> dict[str, Any]:
        """A measured wrk run, after a wait for a quiet machine; repeated (at most --retries
        times) when other jobs used more than --max-other cores during it. The discarded runs
        are kept in the result."""
        def once() -> dict[str, Any]:
            self.wait_quiet()
            return self.wrk(port, seconds, close, during)

        return self.repeat_disturbed(label, once, "text")

    # -- wrk

    def wrk(self, port: int, seconds: int, close: bool,
            during: list[tuple[float, list[str]]] | None = None) -> dict[str, Any]:
        argv = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", self.lua]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(f"http://127.0.0.1:{port}/")
        foreign = foreign_wrk()
        load0 = os.getloadavg()[0]
        cpu0 = {m: cpu_seconds_or_none(p) for m, p in self.daemon_pids.items()}
        split = CpuSplit([os.getpid(), *self.daemon_pids.values()])
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.tmp)
        actions = []
        try:
            for at, cmd in during or []:
                wait = t0 + at - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                issued = time.perf_counter() - t0
                elapsed, res = self.timed(cmd, timeout=60)
                actions.append({"cmd": os.path.basename(cmd[0]) + " " + " ".join(cmd[1:]),
                                "issued_s": issued, "wall_s": elapsed, "rc": res.returncode,
                                "stderr": res.stderr[-1000:]})
                if res.returncode != 0:
                    self.note(f"{actions[-1]['cmd']} exited {res.returncode}: "
                              f"{res.stderr.strip()[-300:]}")
            out, err = proc.communicate(timeout=seconds + 60)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        ours_cores, other_cores, steal_cores = split.cores(wall)
        cpu1 = {m: cpu_seconds_or_none(p) for m, p in self.daemon_pids.items()}
        r = wrk_json(proc.returncode, out, err)
        r["socket_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
        r["failed"] = r["socket_errors"] + r["status"]
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["p99_ms"] = r["p99_us"] / 1000
        r["max_ms"] = r["max_us"] / 1000
        r["actions"] = actions
        r["wall_s"] = wall
        r["loadavg_before"] = load0
        r["daemon_cpu_s"] = {m: (cpu1[m] - cpu0[m]) if cpu0[m] is not None
                             and cpu1[m] is not None else None for m in cpu0}
        r["foreign_wrk"] = foreign
        # CPU of the machine not used by this bench's processes (other jobs; also network
        # softirq time the kernel does not charge to a process), in cores
        r["ours_cores"] = ours_cores
        r["other_cores"] = other_cores
        r["steal_cores"] = steal_cores
        r["text"] = out
        if foreign:
            self.note(f"another wrk was running during a measured run: pids {foreign}")
        return r

    # -- part 1: reload under load

    def part_reload(self) -> None:
        a = self.args
        res: dict[str, Any] = {"settings": {"duration_s": a.duration, "reload_at_s": a.reload_at,
                                            "ref_duration_s": a.ref_duration, "runs": a.runs}}
        for manager in ("corral", "pm2"):
            info = self.start_cluster(manager, 2, PORTS[manager])
            res[f"{manager}_start"] = info
            say(f"{manager}: `{' '.join(self.start_argv(manager, 2)[1:])}` "
                f"{info['start_s'] * 1000:.0f} ms, workers {sorted(info['pids'])}")
            self.wait_answering(PORTS[manager], 2)
        runs: dict[str, list[dict[str, Any]]] = {}
        for mode in ("keepalive", "close"):
            say(f"warm-up 2 s per cluster ({mode})")
            for manager in ("corral", "pm2"):
                self.wrk(PORTS[manager], 2, mode == "close")
            for rep in range(a.runs):
                order = ["corral", "pm2"] if rep % 2 == 0 else ["pm2", "corral"]
                for action in ("reload", "none"):
                    for manager in order:
                        key = f"{manager}/{mode}/{action}"
                        before = self.worker_pids(manager)
                        during = ([(t, [self.cli(manager), "reload", "app"]) for t in a.reload_at]
                                  if action == "reload" else [])
                        seconds = a.duration if action == "reload" else a.ref_duration
                        r = self.measured(f"{key} run {rep + 1}", PORTS[manager], seconds,
                                          mode == "close", during)
                        after = self.worker_pids(manager)
                        r["pids_before"], r["pids_after"] = sorted(before), sorted(after)
                        r["statuses_after"] = sorted(set(after.values()))
                        if action == "reload" and set(before) & set(after):
                            self.note(f"{key} run {rep + 1}: some workers were not replaced "
                                      f"(before {sorted(before)}, after {sorted(after)})")
                        if len(after) != 2 or set(after.values()) != {"online"}:
                            self.note(f"{key} run {rep + 1}: after the run: {after}")
                        runs.setdefault(key, []).append(r)
                        acts = ", ".join(f"{x['wall_s']:.2f} s" for x in r["actions"])
                        say(f"  {key} run {rep + 1}: {r['rps']:.0f} req/s, failed {r['failed']} "
                            f"(conn {r['connect']} read {r['read']} write {r['write']} timeout "
                            f"{r['timeout']} http {r['status']}), p99 {r['p99_ms']:.1f} ms, other CPU "
                            f"{r['other_cores']:.2f} cores"
                            + (f", reload CLI {acts}" if acts else ""))
        res["runs"] = runs
        self.results["reload"] = res

    # -- part 2: throughput

    def start_plain(self, which: str) -> None:
        port = PORTS[which]
        if not port_free(port):
            raise BenchError(f"port {port} is already in use")
        argv = [self.python, "app.py"] if which == "python" else ["node", "node_app.js"]
        proc = subprocess.Popen(argv, cwd=self.appdir, env=self.app_env(port),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.plain[which] = proc
        self.seen_pids.add(proc.pid)
        deadline = time.monotonic() + 15
        while True:
            try:
                pid = get_pid(port)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"plain {which} did not answer on {port}") from None
                time.sleep(0.02)
        if pid != proc.pid:
            raise BenchError(f"plain {which}: pid {pid} answered, not {proc.pid}")

    def stop_plain(self, which: str) -> None:
        proc = self.plain.pop(which, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def part_throughput(self) -> None:
        a = self.args
        for which in ("python", "node"):
            self.start_plain(which)
        configs = ["corral", "python", "pm2", "node"]
        say("warm-up 2 s per server")
        for c in configs:
            self.wrk(PORTS[c], 2, False)
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
        for rep in range(a.runs):
            order = configs[rep % 4:] + configs[:rep % 4]
            for c in order:
                r = self.measured(f"throughput {c} run {rep + 1}", PORTS[c], a.tput_duration,
                                  False)
                runs[c].append(r)
                say(f"  {c} run {rep + 1}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, "
                    f"errors {r['failed']}, other CPU {r['other_cores']:.2f} cores")
        for which in ("python", "node"):
            self.stop_plain(which)
        self.results["throughput"] = {"settings": {"duration_s": a.tput_duration,
                                                   "runs": a.runs}, "runs": runs}

    # -- part 3: start and reload with 4 workers

    def delete_app(self, manager: str, port: int) -> float:
        elapsed, proc = self.timed([self.cli(manager), "delete", "app"])
        if proc.returncode != 0:
            raise BenchError(f"{manager} delete app exited {proc.returncode}: {proc.stderr}")
        deadline = time.monotonic() + 10
        while not port_free(port):
            if time.monotonic() > deadline:
                self.note(f"{manager}: port {port} still answers 10 s after `delete app`")
                break
            time.sleep(0.05)
        return elapsed

    def part_start4(self) -> None:
        a = self.args
        reps: dict[str, list[dict[str, Any]]] = {"corral": [], "pm2": []}
        for rep in range(a.runs):
            order = ["corral", "pm2"] if rep % 2 == 0 else ["pm2", "corral"]
            for manager in order:
                port = PORTS[manager + "4"]
                if not port_free(port):
                    raise BenchError(f"port {port} is already in use")
                argv = self.start_argv(manager, 4)
                self.wait_quiet()
                split = CpuSplit([os.getpid(), *self.daemon_pids.values()])
                t0 = time.perf_counter()
                poller = Poller(port, 4, t0)
                poller.start()
                proc = self.run(argv, env=self.app_env(port), check=False)
                start_s = time.perf_counter() - t0
                if proc.returncode != 0:
                    poller.stop_flag = True
                    raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: "
                                     f"{proc.stderr[-2000:]}")
                statuses = self.worker_pids(manager)  # right after start returned
                poller.join(35)
                if poller.done_at is None:
                    raise BenchError(f"{manager}: only {len(poller.first_seen)} pids answered "
                                     "within 30 s of start")
                self.seen_pids |= set(poller.first_seen)
                time.sleep(1.0)
                before = self.worker_pids(manager)
                if set(before) != set(poller.first_seen):
                    self.note(f"{manager} -i 4 rep {rep + 1}: jlist pids {sorted(before)} != "
                              f"answering pids {sorted(poller.first_seen)}")
                t1 = time.perf_counter()
                rpoll = Poller(port, 4, t1, exclude=set(before))
                rpoll.start()
                proc = self.run([self.cli(manager), "reload", "app"], check=False)
                reload_s = time.perf_counter() - t1
                if proc.returncode != 0:
                    self.note(f"{manager} reload (4 workers) exited {proc.returncode}: "
                              f"{proc.stderr.strip()[-300:]}")
                rpoll.join(35)
                self.seen_pids |= set(rpoll.first_seen)
                after = self.worker_pids(manager)
                if set(before) & set(after) or len(after) != 4:
                    self.note(f"{manager} reload (4 workers) rep {rep + 1}: before "
                              f"{sorted(before)}, after {after}")
                t_end = time.perf_counter()
                other = split.cores(t_end - t0)[1]
                time.sleep(0.5)
                delete_s = self.delete_app(manager, port)
                row = {
                    "start_cmd_s": start_s,
                    "four_pids_answer_s": poller.done_at,
                    "pid_first_answers_s": sorted(poller.first_seen.values()),
                    "probe_failures_during_start": poller.failures,
                    "statuses_when_start_returned": statuses,
                    "online_when_start_returned": sum(s == "online" for s in statuses.values()),
                    "reload_cmd_s": reload_s,
                    "four_new_pids_answer_s": rpoll.done_at,
                    "probe_ok_during_reload": rpoll.ok,
                    "probe_failures_during_reload": rpoll.failures,
                    "old_pid_answers_during_reload": rpoll.old_answers,
                    "delete_cmd_s": delete_s,
                    "other_cores": other,
                }
                reps[manager].append(row)
                nr = rpoll.done_at
                say(f"  {manager} -i 4 rep {rep + 1}: start cmd {start_s * 1000:.0f} ms, 4 pids "
                    f"answer at {poller.done_at * 1000:.0f} ms ({row['online_when_start_returned']}"
                    f" online when start returned); reload cmd {reload_s * 1000:.0f} ms, 4 new "
                    f"pids at {'-' if nr is None else f'{nr * 1000:.0f} ms'}, probe failures "
                    f"{rpoll.failures}; delete {delete_s * 1000:.0f} ms")
        self.results["start4"] = reps

    # -- the whole run

    def main(self) -> None:
        self.setup()
        self.start_daemons()
        say("part 1: reload under load (2 workers)")
        self.part_reload()
        say("part 2: throughput, clustered vs one process")
        self.part_throughput()
        for manager in ("corral", "pm2"):
            self.delete_app(manager, PORTS[manager])
        say("part 3: start / reload with 4 workers")
        self.part_start4()

    def cleanup(self) -> None:
        say("cleanup: plain servers, corral kill, pm2 kill, then any recorded pid left")
        for which in list(self.plain):
            self.stop_plain(which)
        self.kill_all()


# ---- report ----------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    rel = r["reload"]
    st = rel["settings"]
    at = " and ".join(f"{t:g} s" for t in st["reload_at_s"])
    lines += [
        "### 1. Reload under load (2 workers)",
        "",
        f"`wrk -t2 -c64 -d{st['duration_s']}s --latency` (keep-alive) and the same with "
        f"`-H \"Connection: close\"`; `corral reload app` / `pm2 reload app` at {at}; control "
        f"runs (\"none\") are `-d{st['ref_duration_s']}s` with no reload. {st['runs']} runs "
        "each, median (min-max). failed = socket errors (connect + read + write + timeout) + "
        "HTTP errors; per reload = failed / 2.",
        "",
        "| manager | connections | reloads | req/s | failed per reload | socket errors "
        "(connect/read/write/timeout) | HTTP errors | p99 ms | max ms | reload CLI s | "
        "daemon CPU s | other CPU, cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = rel["runs"]
    for mode in ("keepalive", "close"):
        for action in ("reload", "none"):
            for manager in ("corral", "pm2"):
                rs = runs[f"{manager}/{mode}/{action}"]
                n_act = len(st["reload_at_s"]) if action == "reload" else 0
                per = ([x["failed"] / n_act for x in rs] if n_act else None)
                parts = "/".join(fmt([x[k] for x in rs], 0)
                                 for k in ("connect", "read", "write", "timeout"))
                cli = ([a["wall_s"] for x in rs for a in x["actions"]])
                lines.append(
                    f"| {manager} | {'keep-alive' if mode == 'keepalive' else 'close'} | "
                    f"{'2' if action == 'reload' else 'none'} | {fmt([x['rps'] for x in rs], 0)} | "
                    f"{fmt(per, 1) if per else '-'} | {parts} | "
                    f"{fmt([x['status'] for x in rs], 0)} | {fmt([x['p99_ms'] for x in rs], 1)} | "
                    f"{fmt([x['max_ms'] for x in rs], 0)} | {fmt(cli, 2) if cli else '-'} | "
                    f"{fmt([x['daemon_cpu_s'][manager] for x in rs], 2)} | "
                    f"{fmt([x['other_cores'] for x in rs], 2)} |")
    lines.append("")
    n_disc = sum(len(x.get("discarded", [])) for v in runs.values() for x in v)
    if n_disc:
        lines.append(f"{n_disc} run(s) repeated because other jobs used more than the "
                     "--max-other CPU during them (kept in the JSON).")
        lines.append("")
    c = statistics.median(x["failed"] / 2 for x in runs["corral/keepalive/reload"])
    p = statistics.median(x["failed"] / 2 for x in runs["pm2/keepalive/reload"])
    holds = c <= 0.1 * p
    lines.append(f"Goal: failed requests per reload with keep-alive ≤ 0.1 × PM2's: corral "
                 f"{c:g}, PM2 {p:g}, limit {0.1 * p:g}: **{'holds' if holds else 'does NOT hold'}"
                 "**.")
    lines.append("")

    tp = r["throughput"]
    med = {k: statistics.median(x["rps"] for x in v) for k, v in tp["runs"].items()}
    lines += [
        "### 2. Throughput: 2 workers vs one process",
        "",
        f"`wrk -t2 -c64 -d{tp['settings']['duration_s']}s --latency` (keep-alive), after a 2 s "
        f"warm-up; {tp['settings']['runs']} rounds, the 4 servers in a rotating order.",
        "",
        "| server | command | req/s | p99 ms | errors | daemon CPU s | other CPU, cores |",
        "|---|---|---|---|---|---|---|",
    ]
    cmds = {"corral": "`corral start app.py -i 2`", "python": "`python app.py`",
            "pm2": "`pm2 start node_app.js -i 2 --name app`", "node": "`node node_app.js`"}
    names = {"corral": "corral, 2 workers", "python": "Python, one process",
             "pm2": "PM2, 2 workers", "node": "Node, one process"}
    for k in ("corral", "python", "pm2", "node"):
        rs = tp["runs"][k]
        dcpu = (fmt([x["daemon_cpu_s"][k] for x in rs], 2) if k in ("corral", "pm2") else "-")
        lines.append(f"| {names[k]} | {cmds[k]} | {fmt([x['rps'] for x in rs], 0)} | "
                     f"{fmt([x['p99_ms'] for x in rs], 1)} | {fmt([x['failed'] for x in rs], 0)} "
                     f"| {dcpu} | {fmt([x['other_cores'] for x in rs], 2)} |")
    su_c = med["corral"] / med["python"]
    su_p = med["pm2"] / med["node"]
    pc = [a["rps"] / b["rps"] for a, b in zip(tp["runs"]["corral"], tp["runs"]["python"])]
    pp = [a["rps"] / b["rps"] for a, b in zip(tp["runs"]["pm2"], tp["runs"]["node"])]
    lines += ["",
              f"Speed-up (median clustered / median plain): corral {su_c:.2f}× "
              f"(per round: {fmt(pc, 2)}), PM2 {su_p:.2f}× (per round: {fmt(pp, 2)}).",
              "",
              f"Goal: corral's cluster speed-up ≥ PM2's: {su_c:.2f} vs {su_p:.2f}: "
              f"**{'holds' if su_c >= su_p else 'does NOT hold'}**.", ""]

    s4 = r["start4"]
    lines += [
        "### 3. Start and reload with 4 workers",
        "",
        "Warm daemon. Times from the command's launch; \"4 pids answer\": a thread sends "
        "GETs (one connection each) from the same instant until 4 distinct worker pids have "
        f"answered. {len(s4['corral'])} reps, median (min-max).",
        "",
        "| measure | corral | PM2 |",
        "|---|---|---|",
    ]

    def row(label: str, key: str, scale: float = 1000, digits: int = 0) -> None:
        vals = []
        for m in ("corral", "pm2"):
            xs = [x[key] for x in s4[m] if x[key] is not None]
            miss = len(s4[m]) - len(xs)
            text = fmt([v * scale for v in xs], digits) if xs else "-"
            vals.append(text + (f" ({miss} never)" if miss else ""))
        lines.append(f"| {label} | {vals[0]} | {vals[1]} |")

    row("`start app -i 4` command wall time (ms)", "start_cmd_s")
    row("start issued → 4 distinct pids answered (ms)", "four_pids_answer_s")
    row("workers `online` in `jlist` right after start returned", "online_when_start_returned",
        1, 0)
    row("`reload app` issued → returned (ms)", "reload_cmd_s")
    row("reload issued → 4 new pids answered (ms)", "four_new_pids_answer_s")
    row("probe requests failed during the reload (sequential, 1 connection each)",
        "probe_failures_during_reload", 1, 0)
    row("probe requests answered during the reload", "probe_ok_during_reload", 1, 0)
    row("`delete app` (ms, extra)", "delete_cmd_s")
    row("other jobs' CPU during start + reload (cores)", "other_cores", 1, 2)
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="1 run per config, 8 s reload runs (reloads at 2 and 5 s), 4 s "
                        "throughput runs")
    parser.add_argument("--runs", type=int, help="runs per config (default 3)")
    parser.add_argument("--duration", type=int, help="reload runs, s (default 20)")
    parser.add_argument("--ref-duration", type=int,
                        help="control runs with no reload, s (default 10; 4 with --quick)")
    parser.add_argument("--reload-at", help="reload times, s, comma-separated (default 5,12)")
    parser.add_argument("--tput-duration", type=int, help="throughput runs, s (default 10)")
    add_quiet_options(parser)
    add_end_options(parser)
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (8 if args.quick else 20)
    args.ref_duration = args.ref_duration or (4 if args.quick else 10)
    args.reload_at = ([float(x) for x in args.reload_at.split(",")] if args.reload_at
                      else [2.0, 5.0] if args.quick else [5.0, 12.0])
    args.tput_duration = args.tput_duration or (4 if args.quick else 10)
    if unmet_needs("bench/cluster_mode.py", "wrk"):
        return 2

    results, failed = run_bench(Bench, args, "bench/cluster_mode.py", sys.argv[1:])
    return finish(results, failed, report, args.out, "cluster_mode")


if __name__ == "__main__":
    raise SystemExit(main())
