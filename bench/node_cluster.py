#!/usr/bin/env python3
"""Node cluster-mode benchmark (issue 11, issue 17 goal 4): the lesson's hello world
(examples/node/app.js) on 2 workers under corral's Node cluster (the corral daemon is Node's
cluster primary), under PM2, and under the lesson's own `node cluster.js`, side by side in one
run on 127.0.0.1, load from wrk.

    python bench/node_cluster.py            # full run, about 12 minutes (installs included)
    python bench/node_cluster.py --quick    # smoke test: 1 run per config, short runs, ~3 min

What it does:
  * makes a temp folder; installs PM2 from the npm registry into it (`npm install --prefix
    <tmp>/pm2 pm2@7`) and corral, non-editable, into a fresh venv (`pip install` of a copy of
    this repository's working tree), byte-compiles the venv's site-packages; copies
    examples/node/app.js and examples/node/cluster.js into <tmp>/app, where every command
    runs. app.js answers `hello world, start with cluster <pid>` on $PORT, 127.0.0.1.
    PYTHONDONTWRITEBYTECODE and PYTHONPATH are removed from the environment of every process
    it launches. Own homes: CORRAL_HOME=<tmp>/corral_home, PM2_HOME=<tmp>/pm2_home; both
    daemons are started (`ping`) before any timing;
  * four servers of 2 workers run the whole time, each on its own port:
      corral         `corral start app.js -i 2` (policy rr, the default for Node apps; name app)
      corral shared  `corral start app.js -i 2 --cluster-policy shared -n shared`
      PM2            `pm2 start app.js -i 2` (name app)
      node cluster   `WORKERS=2 node cluster.js` (Node's cluster module, rr on Linux)
  * part 1, throughput: for keep-alive, then for `-H "Connection: close"`: a 2 s wrk warm-up
    per server, then --runs rounds of `wrk -t2 -c64 -d10s --latency`, the 4 servers in a
    rotating order; req/s median (min-max), ratios corral/PM2 and corral/node cluster
    (of the medians, and per round);
  * part 2, reload under load: `wrk -t2 -c64 -d20s --latency` (keep-alive, then with
    `-H "Connection: close"`) with `corral reload app` / `pm2 reload app` at t = 5 s and 12 s;
    --runs runs each, corral and PM2 alternating. failed = wrk socket errors (connect, read,
    write, timeout) + HTTP errors (wrk's "Non-2xx or 3xx", status >= 400);
    then the same keep-alive reload runs with examples/node/graceful.js (the lesson's app plus
    a drain on the 'shutdown' message: `Connection: close`, then exit), started with
    `corral start graceful.js -i 2 --shutdown-with-message` and `pm2 start graceful.js -i 2
    --shutdown-with-message` (name graceful); --no-graceful skips them;
  * part 3, SIGKILL of one worker under load: `wrk -t2 -c64 -d5s -H "Connection: close"`; at
    1.5 s one worker of corral's app (rr) or PM2's app (pm_id 0 and 1 in turn) gets SIGKILL; a
    thread then sends GETs (one connection each, 5 ms apart) until a pid that was not a worker
    before the kill answers: kill -> replacement answers. --kills per manager, alternating;
  * before each measured run it waits until other jobs use < --max-other cores, and repeats
    a run during which they used more (at most --retries times), as bench/cluster_mode.py does
    (whose wrk hook, /proc helpers and run logic it reuses);
  * records whether the kernel schedules by autogroup (/proc/sys/kernel/sched_autogroup_enabled)
    and each worker's session: with autogroup, a busy CPU is shared equally between sessions,
    and corral puts each worker in its own session, PM2 all in its daemon's, `node cluster.js`
    all in the primary's;
  * prints markdown tables and the goals; writes every raw sample to
    bench/out/node_cluster-<timestamp>.json (git-ignored; --out to change);
  * stops only what it started: `node cluster.js` by its pid (SIGINT, then SIGKILL),
    `corral kill`, `pm2 kill`, then SIGKILL of any recorded pid (daemons, every worker pid
    seen in a jlist or in an HTTP answer, the daemons' and the node primary's descendants)
    that still runs a program of the temp folder. It never uses pkill/killall.

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

import cluster_mode
from common import (
    REPO,
    BenchError,
    add_end_options,
    add_quiet_options,
    alive,
    cmdline,
    finish,
    new_parser,
    run_bench,
    say,
    unmet_needs,
)
from common import fmt_values as fmt
from wrkkit import descendants, get_pid, port_free

# below the ephemeral range, away from cluster.py (18110+), cluster_mode.py (18310+) and
# worker_kill.py (18410+)
PORTS = {"corral": 18510, "shared": 18511, "pm2": 18512, "node": 18513}
GRACEFUL_PORTS = {"corral": 18514, "pm2": 18515}
SERVERS = ("corral", "shared", "pm2", "node")
LABEL = {"corral": "corral (rr, default)", "shared": "corral --cluster-policy shared",
         "pm2": "PM2", "node": "node cluster.js"}
COMMAND = {"corral": "`corral start app.js -i 2`",
           "shared": "`corral start app.js -i 2 --cluster-policy shared -n shared`",
           "pm2": "`pm2 start app.js -i 2`", "node": "`WORKERS=2 node cluster.js`"}
MANAGERS = ("corral", "pm2")
MODES = ("keepalive", "close")
MODE_LABEL = {"keepalive": "keep-alive", "close": "Connection: close"}
TPUT_GOAL = 0.95
RELOAD_GOAL = 0.1


class KillProbe(threading.Thread):
    """At t0 + at: SIGKILL `pid`, then GET the port (one connection per request, `pause` s
    apart) until a pid outside `old` answers, or `limit` s. Records kill -> first answer of a
    new pid, the failed probes, and the answers of the surviving worker meanwhile."""

    def __init__(self, port: int, pid: int, old: set[int], t0: float, at: float,
                 pause: float = 0.005, limit: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.port, self.pid, self.old, self.t0, self.at = port, pid, old, t0, at
        self.pause, self.limit = pause, limit
        self.killed_at: float | None = None  # s since t0 (wrk's start)
        self.answer_s: float | None = None  # kill -> a new pid answered
        self.new_pid: int | None = None
        self.gone_s: float | None = None  # kill -> the killed pid was no longer alive
        self.failures = 0
        self.old_answers = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            wait = self.t0 + self.at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t_kill = time.perf_counter()
            os.kill(self.pid, signal.SIGKILL)
            self.killed_at = t_kill - self.t0
            while time.perf_counter() - t_kill < self.limit:
                if self.gone_s is None and not alive(self.pid):
                    self.gone_s = time.perf_counter() - t_kill
                try:
                    pid = get_pid(self.port)
                except (OSError, ValueError, IndexError):
                    self.failures += 1
                else:
                    if pid not in self.old:
                        self.answer_s = time.perf_counter() - t_kill
                        self.new_pid = pid
                        return
                    self.old_answers += 1
                time.sleep(self.pause)
        except OSError as exc:
            self.error = repr(exc)


class Bench(cluster_mode.Bench):
    """cluster_mode.Bench's helpers (run, jlist, worker_pids, note, wait_quiet, measured,
    wrk, stop_plain, cleanup; most from wrkkit.PairBench) with this bench's apps, servers and
    parts."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-nc-")

    # -- set-up

    def setup(self) -> None:
        self.prepare([os.path.join(REPO, "examples", "node", name)
                      for name in ("app.js", "cluster.js", "graceful.js")])
        try:
            with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
                autogroup = f.read().strip()
        except OSError:
            autogroup = "absent"
        self.install({"sched_autogroup_enabled": autogroup})

    def server_argv(self, server: str) -> list[str]:
        return {"corral": [self.corral, "start", "app.js", "-i", "2"],
                "shared": [self.corral, "start", "app.js", "-i", "2", "--cluster-policy",
                           "shared", "-n", "shared"],
                "pm2": [self.pm2, "start", "app.js", "-i", "2"],
                "node": ["node", "cluster.js"]}[server]

    def start_servers(self) -> None:
        started: dict[str, Any] = {}
        for server in SERVERS:
            port = PORTS[server]
            if not port_free(port):
                raise BenchError(f"port {port} is already in use")
            argv = self.server_argv(server)
            env = self.app_env(port)
            t0 = time.perf_counter()
            if server == "node":
                proc = subprocess.Popen(argv, cwd=self.appdir, env=dict(env, WORKERS="2"),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
                self.plain["node"] = proc
                self.seen_pids.add(proc.pid)
                # its CPU is reported beside the daemons' (the primary of that cluster)
                self.daemon_pids["node"] = proc.pid
            else:
                self.run(argv, env=env)
            pids = self.wait_answering(port, 2)
            elapsed = time.perf_counter() - t0
            if server == "node":
                kids = set(descendants(self.plain["node"].pid))
                if not pids <= kids:
                    raise BenchError(f"node cluster.js: pids {sorted(pids)} answered, its "
                                     f"children are {sorted(kids)}")
            else:
                manager = "pm2" if server == "pm2" else "corral"
                name = "shared" if server == "shared" else "app"
                listed = self.worker_pids(manager, name)
                if set(listed) != pids or set(listed.values()) != {"online"}:
                    raise BenchError(f"{server}: jlist {listed}, answering pids {sorted(pids)}")
            for pid in pids:
                if self.tmp not in cmdline(pid):
                    self.note(f"{server} worker {pid} runs {cmdline(pid)!r}, not a program of "
                              "the temp folder (the cleanup would not SIGKILL it)")
            started[server] = {"argv": [os.path.basename(argv[0]), *argv[1:]],
                               "answering_s": elapsed, "pids": sorted(pids),
                               "cmdlines": {p: cmdline(p) for p in pids},
                               # with autogroup scheduling each session shares the CPU
                               # equally with the others: how the workers are grouped matters
                               "sessions": {p: os.getsid(p) for p in pids}}
            say(f"{server}: `{' '.join(started[server]['argv'])}` on 127.0.0.1:{port}, "
                f"2 workers answer after {elapsed * 1000:.0f} ms: {sorted(pids)}")
        self.results["servers"] = started

    # -- part 1: throughput

    def part_throughput(self) -> None:
        a = self.args
        res: dict[str, Any] = {"settings": {"duration_s": a.tput_duration, "runs": a.runs}}
        for mode in MODES:
            close = mode == "close"
            say(f"throughput, {MODE_LABEL[mode]}: warm-up 2 s per server")
            for server in SERVERS:
                self.wrk(PORTS[server], 2, close)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SERVERS}
            for rep in range(a.runs):
                order = list(SERVERS[rep % 4:] + SERVERS[:rep % 4])
                for server in order:
                    r = self.measured(f"throughput {mode} {server} run {rep + 1}",
                                      PORTS[server], a.tput_duration, close)
                    r["order"] = order
                    runs[server].append(r)
                    say(f"  {mode} {server} run {rep + 1}: {r['rps']:.0f} req/s, p99 "
                        f"{r['p99_ms']:.1f} ms, failed {r['failed']}, other CPU "
                        f"{r['other_cores']:.2f} cores")
            res[mode] = runs
        self.results["throughput"] = res

    # -- part 2: reload under load

    def wait_online(self, manager: str, limit: float = 30, name: str = "app") -> dict[int, str]:
        deadline = time.monotonic() + limit
        while True:
            pids = self.worker_pids(manager, name)
            if len(pids) == 2 and set(pids.values()) == {"online"}:
                return pids
            if time.monotonic() > deadline:
                raise BenchError(f"{manager}: app not back to 2 online workers in {limit:g} s: "
                                 f"{pids}")
            time.sleep(0.1)

    def start_graceful(self) -> None:
        for manager in MANAGERS:
            port = GRACEFUL_PORTS[manager]
            if not port_free(port):
                raise BenchError(f"port {port} is already in use")
            argv = [self.cli(manager), "start", "graceful.js", "-i", "2",
                    "--shutdown-with-message"]
            self.run(argv, env=self.app_env(port))
            pids = self.wait_answering(port, 2)
            listed = self.wait_online(manager, name="graceful")
            if set(listed) != pids:
                raise BenchError(f"{manager} graceful: jlist {listed}, answering {sorted(pids)}")
            say(f"{manager}: `{' '.join([os.path.basename(argv[0]), *argv[1:]])}` on "
                f"127.0.0.1:{port}: {sorted(pids)}")

    def part_reload(self, app: str = "app", modes: tuple[str, ...] = MODES) -> None:
        a = self.args
        ports = PORTS if app == "app" else GRACEFUL_PORTS
        res: dict[str, Any] = {"settings": {"duration_s": a.duration, "reload_at_s": a.reload_at,
                                            "runs": a.runs}}
        runs: dict[str, list[dict[str, Any]]] = {}
        for mode in modes:
            close = mode == "close"
            for rep in range(a.runs):
                order = MANAGERS if rep % 2 == 0 else MANAGERS[::-1]
                for manager in order:
                    key = f"{manager}/{mode}"
                    before = self.wait_online(manager, name=app)
                    during = [(t, [self.cli(manager), "reload", app]) for t in a.reload_at]
                    r = self.measured(f"reload {app} {key} run {rep + 1}", ports[manager],
                                      a.duration, close, during)
                    after = self.wait_online(manager, name=app)
                    r["pids_before"], r["pids_after"] = sorted(before), sorted(after)
                    if set(before) & set(after):
                        self.note(f"reload {app} {key} run {rep + 1}: some workers were not replaced "
                                  f"(before {sorted(before)}, after {sorted(after)})")
                    runs.setdefault(key, []).append(r)
                    acts = ", ".join(f"{x['wall_s']:.2f} s" for x in r["actions"])
                    say(f"  reload {app} {key} run {rep + 1}: {r['rps']:.0f} req/s, failed "
                        f"{r['failed']} (conn {r['connect']} read {r['read']} write "
                        f"{r['write']} timeout {r['timeout']} http {r['status']}), p99 "
                        f"{r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms, other CPU "
                        f"{r['other_cores']:.2f} cores, reload CLI {acts}")
        res["runs"] = runs
        self.results["reload" if app == "app" else "reload_graceful"] = res

    # -- part 3: SIGKILL of one worker under load

    def kill_run(self, manager: str, pm_id: int) -> dict[str, Any]:
        a = self.args
        port = PORTS[manager]

        def once() -> dict[str, Any]:
            self.wait_online(manager)
            rows = {int(r["pm_id"]): int(r["pid"]) for r in self.jlist(manager)
                    if r["name"] == "app" and r.get("pid")}
            ids = sorted(rows)
            pid = rows[ids[pm_id % len(ids)]]
            if not (alive(pid) and self.tmp in cmdline(pid)):
                raise BenchError(f"{manager} worker {pid} is not ours: {cmdline(pid)!r}")
            self.wait_quiet()
            t0 = time.perf_counter()
            probe = KillProbe(port, pid, set(rows.values()), t0, a.kill_at)
            probe.start()
            r = self.wrk(port, a.kill_duration, True)
            probe.join(30)
            if probe.error:
                raise BenchError(f"{manager} kill run: {probe.error}")
            if probe.new_pid is not None:
                self.seen_pids.add(probe.new_pid)
            after = self.wait_online(manager)
            r = {k: v for k, v in r.items() if k != "text"}
            r |= {"killed_pm_id": ids[pm_id % len(ids)], "killed_pid": pid,
                  "pids_before": sorted(rows.values()), "pids_after": sorted(after),
                  "killed_at_s": probe.killed_at, "answer_s": probe.answer_s,
                  "new_pid": probe.new_pid, "gone_s": probe.gone_s,
                  "probe_failures": probe.failures, "old_answers": probe.old_answers}
            return r

        return self.repeat_disturbed(f"kill {manager}", once, "text")

    def part_kill(self) -> None:
        a = self.args
        res: dict[str, Any] = {"settings": {"duration_s": a.kill_duration, "kill_at_s": a.kill_at,
                                            "kills": a.kills}}
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MANAGERS}
        for rep in range(a.kills):
            order = MANAGERS if rep % 2 == 0 else MANAGERS[::-1]
            for manager in order:
                r = self.kill_run(manager, rep % 2)
                runs[manager].append(r)
                ans = r["answer_s"]
                say(f"  kill {manager} #{rep + 1} (pm_id {r['killed_pm_id']}, pid "
                    f"{r['killed_pid']}): new pid {r['new_pid']} answers after "
                    f"{'-' if ans is None else f'{ans * 1000:.0f} ms'}; wrk socket errors "
                    f"{r['socket_errors']}, http {r['status']}; other CPU "
                    f"{r['other_cores']:.2f} cores")
                time.sleep(0.5)
        res["runs"] = runs
        self.results["kill"] = res

    # -- the whole run

    def main(self) -> None:
        self.setup()
        self.start_daemons()
        self.start_servers()
        say("part 1: throughput, 4 servers of 2 workers")
        self.part_throughput()
        say("part 2: reload under load")
        self.part_reload()
        for server in ("corral", "pm2"):
            self.wait_answering(PORTS[server], 2)
        if self.args.graceful:
            say("part 2b: reload under keep-alive load, graceful.js --shutdown-with-message")
            self.start_graceful()
            self.part_reload("graceful", ("keepalive",))
        if self.args.kills:
            say("part 3: SIGKILL of one worker under load")
            self.part_kill()

    def cleanup(self) -> None:
        proc = self.plain.get("node")
        if proc is not None:
            self.seen_pids |= set(descendants(proc.pid))
        self.daemon_pids.pop("node", None)
        super().cleanup()


# ---- report ----------------------------------------------------------------------------------

def med(rs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(x[key] for x in rs)


def report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    verdicts: list[str] = []

    def verdict(ok: bool) -> str:
        return "**holds**" if ok else "**does NOT hold**"

    tp = r["throughput"]
    st = tp["settings"]
    lines += [
        "### 1. Throughput, 2 workers",
        "",
        f"`wrk -t2 -c64 -d{st['duration_s']}s --latency` (keep-alive) and the same with "
        f"`-H \"Connection: close\"`, after a 2 s warm-up per server; {st['runs']} rounds, the 4 "
        "servers in a rotating order. req/s median (min-max); ratios of the medians, and the "
        "range of the per-round ratios; manager CPU = CPU of the corral daemon, the PM2 daemon or the "
        "`node cluster.js` primary during the run, in all and per request.",
        "",
    ]
    for mode in MODES:
        runs = tp[mode]
        lines += [f"**{MODE_LABEL[mode]}**", "",
                  "| server | command | req/s | ×PM2 | ×node cluster.js | p99 ms | failed "
                  "| manager CPU s | manager CPU µs/request | other CPU, cores |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for server in SERVERS:
            rs = runs[server]
            ratios = []
            for ref in ("pm2", "node"):
                if server == ref:
                    ratios.append("1")
                    continue
                per = [x["rps"] / y["rps"] for x, y in zip(rs, runs[ref])]
                rounds = (f" (rounds {min(per):.2f}-{max(per):.2f})" if len(per) > 1 else "")
                ratios.append(f"{med(rs, 'rps') / med(runs[ref], 'rps'):.2f}{rounds}")
            owner = "pm2" if server == "pm2" else "node" if server == "node" else "corral"
            cpu = [x["daemon_cpu_s"].get(owner) for x in rs]
            cpu_text = fmt([c for c in cpu if c is not None], 2) if None not in cpu else "-"
            per_req = (fmt([c * 1e6 / x["requests"] for c, x in zip(cpu, rs)], 1)
                       if None not in cpu else "-")
            lines.append(f"| {LABEL[server]} | {COMMAND[server]} | {fmt([x['rps'] for x in rs])} "
                         f"| {ratios[0]} | {ratios[1]} | {fmt([x['p99_ms'] for x in rs], 1)} | "
                         f"{fmt([x['failed'] for x in rs])} | {cpu_text} | {per_req} | "
                         f"{fmt([x['other_cores'] for x in rs], 2)} |")
        lines.append("")
        ratio = med(runs["corral"], "rps") / med(runs["pm2"], "rps")
        ok = ratio >= TPUT_GOAL
        verdicts.append(f"throughput {MODE_LABEL[mode]}: corral/PM2 {ratio:.2f} "
                        f"(goal ≥ {TPUT_GOAL}): {verdict(ok)}")

    rel = r["reload"]
    st = rel["settings"]
    at = " and ".join(f"{t:g} s" for t in st["reload_at_s"])
    n_rel = len(st["reload_at_s"])
    lines += [
        "### 2. Reload under load (2 workers)",
        "",
        f"`wrk -t2 -c64 -d{st['duration_s']}s --latency` (keep-alive) and the same with "
        f"`-H \"Connection: close\"`; `corral reload <app>` / `pm2 reload <app>` at {at}. "
        f"{st['runs']} runs each, corral and PM2 alternating, median (min-max). failed = "
        "socket errors (connect + read + write + timeout) + HTTP errors (status ≥ 400). "
        "app.js: the lesson's app, unmodified (`corral start app.js -i 2`, `pm2 start app.js "
        "-i 2`); graceful.js: examples/node/graceful.js (drains with `Connection: close` on "
        "the 'shutdown' message), started with `-i 2 --shutdown-with-message`.",
        "",
        "| app | manager | connections | req/s | **failed per run** | socket errors "
        "connect/read/write/timeout | HTTP errors | p99 ms | max ms | reload CLI s | "
        "daemon CPU s | other CPU, cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tables = [("app.js", rel["runs"])]
    if "reload_graceful" in r:
        tables.append(("graceful.js", r["reload_graceful"]["runs"]))
    for app, runs in tables:
        for mode in MODES:
            for manager in MANAGERS:
                rs = runs.get(f"{manager}/{mode}")
                if not rs:
                    continue
                parts = "/".join(fmt([x[k] for x in rs]) for k in ("connect", "read", "write",
                                                                     "timeout"))
                cli = [act["wall_s"] for x in rs for act in x["actions"]]
                lines.append(
                    f"| {app} | {'corral' if manager == 'corral' else 'PM2'} | "
                    f"{MODE_LABEL[mode]} | {fmt([x['rps'] for x in rs])} | "
                    f"**{fmt([x['failed'] for x in rs])}** | {parts} | "
                    f"{fmt([x['status'] for x in rs])} | {fmt([x['p99_ms'] for x in rs], 1)} | "
                    f"{fmt([x['max_ms'] for x in rs])} | {fmt(cli, 2)} | "
                    f"{fmt([x['daemon_cpu_s'][manager] for x in rs], 2)} | "
                    f"{fmt([x['other_cores'] for x in rs], 2)} |")
    lines.append("")
    runs = rel["runs"]
    c = med(runs["corral/keepalive"], "failed")
    p = med(runs["pm2/keepalive"], "failed")
    verdicts.append(f"reload (app.js), keep-alive: corral {c:g} failed per run ({c / n_rel:g} "
                    f"per reload) vs PM2 {p:g} ({p / n_rel:g}), limit {RELOAD_GOAL * p:g} "
                    f"(≤ {RELOAD_GOAL}× PM2): {verdict(c <= RELOAD_GOAL * p)}")
    worst = max(x["failed"] for x in runs["corral/close"])
    pc = med(runs["pm2/close"], "failed")
    verdicts.append(f"reload (app.js), Connection: close: corral {worst} failed in the worst run "
                    f"(goal 0; PM2 median {pc:g}): {verdict(worst == 0)}")
    if "reload_graceful" in r:
        g = r["reload_graceful"]["runs"]
        gc = max(x["failed"] for x in g["corral/keepalive"])
        gp = med(g["pm2/keepalive"], "failed")
        verdicts.append(f"reload (graceful.js --shutdown-with-message), keep-alive: corral "
                        f"{gc} failed in the worst run, PM2 median {gp:g} (information, no "
                        "goal)")

    if "kill" in r:
        kl = r["kill"]
        st = kl["settings"]
        lines += [
            "### 3. SIGKILL of one worker under load",
            "",
            f"`wrk -t2 -c64 -d{st['duration_s']}s -H \"Connection: close\"`; at "
            f"{st['kill_at_s']:g} s one worker of `app` (pm_id 0 and 1 in turn) gets SIGKILL; "
            "a thread then GETs the port (one connection per request, 5 ms apart) until a pid "
            f"that was not a worker before the kill answers. {st['kills']} kills per manager, "
            "alternating; median (min-max).",
            "",
            "| measure | corral (rr) | PM2 |",
            "|---|---|---|",
        ]
        kr = kl["runs"]

        def row(label: str, key: str, scale: float = 1, digits: int = 0) -> None:
            cells = []
            for m in MANAGERS:
                xs = [x[key] for x in kr[m] if x[key] is not None]
                miss = len(kr[m]) - len(xs)
                cells.append((fmt([v * scale for v in xs], digits) if xs else "-")
                             + (f" ({miss} never)" if miss else ""))
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")

        row("**kill → a new worker answers (ms)**", "answer_s", 1000)
        row("kill → killed pid gone (ms)", "gone_s", 1000, 1)
        row("probe requests failed meanwhile", "probe_failures")
        row("probe answers from the surviving worker meanwhile", "old_answers")
        row("wrk socket errors per run", "socket_errors")
        row("wrk HTTP errors per run", "status")
        row("req/s during the kill run", "rps")
        row("other jobs' CPU (cores)", "other_cores", 1, 2)
        lines.append("")

    all_runs: list[dict[str, Any]] = []
    for mode in MODES:
        for rs in tp[mode].values():
            all_runs += rs
    for rs in rel["runs"].values():
        all_runs += rs
    for rs in r.get("reload_graceful", {}).get("runs", {}).values():
        all_runs += rs
    for rs in r.get("kill", {}).get("runs", {}).values():
        all_runs += rs
    other = [x["other_cores"] for x in all_runs]
    n_disc = sum(len(x.get("discarded", [])) for x in all_runs)
    waits = r.get("quiet_waits_s", [])
    lines += [
        "### Machine load",
        "",
        f"Other jobs' CPU during the {len(all_runs)} measured runs (machine busy time minus the "
        f"bench's processes): {fmt(other, 2)} cores, median (min-max); {n_disc} run(s) "
        f"repeated for exceeding the --max-other limit; {len(waits)} wait(s) for a quiet "
        f"machine, {sum(waits):.0f} s in all.",
        "",
    ]
    if r["machine"].get("sched_autogroup_enabled") == "1":
        groups = []
        for server in SERVERS:
            sids = r.get("servers", {}).get(server, {}).get("sessions")
            if sids:
                groups.append(f"{LABEL[server]} {len(set(sids.values()))}")
        lines += [
            "The kernel schedules by autogroup (sched_autogroup_enabled = 1): each session "
            "gets an equal share of a busy CPU, whatever its number of processes. Sessions "
            "holding the 2 workers: " + (", ".join(groups) if groups else "not recorded")
            + " (wrk runs in the bench's own session). Under contention this favours servers "
            "whose workers sit in more sessions.",
            "",
        ]
    lines += [
        "### Goals",
        "",
        *[f"* {v}" for v in verdicts],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="1 run per config, 4 s throughput runs, 8 s reload runs (reloads "
                        "at 2 and 5 s), 2 kills per manager")
    parser.add_argument("--runs", type=int, help="throughput rounds and reload runs (default 3)")
    parser.add_argument("--tput-duration", type=int, help="throughput runs, s (default 10)")
    parser.add_argument("--duration", type=int, help="reload runs, s (default 20)")
    parser.add_argument("--reload-at", help="reload times, s, comma-separated (default 5,12)")
    parser.add_argument("--kills", type=int,
                        help="SIGKILL runs per manager, 0 to skip part 3 (default 5)")
    parser.add_argument("--no-graceful", dest="graceful", action="store_false",
                        help="skip the reload runs of examples/node/graceful.js")
    parser.add_argument("--kill-duration", type=int, default=5, help="kill runs, s (default 5)")
    parser.add_argument("--kill-at", type=float, default=1.5,
                        help="when the worker is killed, s into the run (default 1.5)")
    add_quiet_options(parser)
    add_end_options(parser)
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.tput_duration = args.tput_duration or (4 if args.quick else 10)
    args.duration = args.duration or (8 if args.quick else 20)
    args.reload_at = ([float(x) for x in args.reload_at.split(",")] if args.reload_at
                      else [2.0, 5.0] if args.quick else [5.0, 12.0])
    if args.kills is None:
        args.kills = 2 if args.quick else 5
    if unmet_needs("bench/node_cluster.py", "wrk", "node", "npm"):
        return 2

    results, failed = run_bench(Bench, args, "bench/node_cluster.py", sys.argv[1:])
    return finish(results, failed, report, args.out, "node_cluster")


if __name__ == "__main__":
    raise SystemExit(main())
