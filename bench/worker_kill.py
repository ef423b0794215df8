#!/usr/bin/env python3
"""Worker-kill benchmark (issue 5): SIGKILL one cluster worker under load, then the time
until its replacement is online; corral (`corral start app.py -i 2`) and PM2 (`pm2 start
node_app.js -i 2`) side by side in one run, HTTP hello world on 127.0.0.1, load from wrk.

    python bench/worker_kill.py            # full run: 7 kills per manager and poll method
    python bench/worker_kill.py --quick    # smoke test: 3 kills each, 1 control run

What one kill run does, for one manager (both clusters of 2 workers run the whole time):
  * `wrk -t2 -c32 -d5s -H "Connection: close" http://127.0.0.1:<port>/` with a Lua done()
    hook that prints wrk's own counters as JSON (bench/wrkkit.py's, as in cluster_mode.py);
  * at t = 1.5 s (--kill-at), takes one worker (pm_id 0 or 1, alternating; its pid from the
    `jlist` read just before wrk started), freezes it with SIGSTOP (until all its threads
    are stopped, about 1 ms), counts the sockets it holds besides its idle ones (its
    listener and IPC channel, read from /proc/<pid>/fd before the load): the connections it
    held, exactly; then sends it SIGKILL;
  * from the kill on, polls until that pm_id shows a new pid with status online; "kill ->
    online" is from just before os.kill() to the return of the poll that showed it. Two
    poll methods (--methods), each in its own kill runs:
      - "cli": `corral jlist` / `pm2 jlist` back to back with 10 ms pauses (--poll). Its
        resolution is one jlist call (~70 ms for corral, ~400 ms for PM2 under this load),
        and the CLIs' own CPU competes with the restarting worker;
      - "api": a poller started and connected before the wrk run asks the daemon for its
        list over that one connection every 10 ms (corral.client.Client.call("list");
        pm2.connect + pm2.list), with CLOCK_MONOTONIC time stamps: a few ms of resolution;
    the JSON keeps every poll, and the start of the last poll that did not show it yet (the
    replacement was not online before that);
  * records wrk's socket errors (connect, read, write, timeout) and HTTP errors (status
    >= 400, wrk's "Non-2xx or 3xx responses").
Each rep has a "cli" then an "api" kill run per manager, the managers alternating (corral
first in odd reps, PM2 first in even ones); pm_id 0 and 1 are killed in turn. Note that the
two managers' "online" differ: corral marks a cluster worker online once it listens, PM2
once the Node worker has booted (before it listens).
Control runs (the same wrk, no kill; --controls) follow. Before each run the harness waits
until other jobs use < --max-other cores; a run during which they used more is repeated (at
most --retries times), as in bench/cluster_mode.py.

Set-up and cleanup are those of bench/cluster_mode.py: a temp folder with PM2 from npm and
corral, non-editable, in a fresh venv; each manager's own home; the two apps copied to
<tmp>/app (examples/app.py, bench/apps/node_app.js), where every command runs. At the end:
`corral kill`, `pm2 kill`, then SIGKILL of any recorded pid (daemons, every worker pid seen,
the daemons' descendants) that still runs a program of the temp folder. Never pkill/killall.

Prints a markdown table (median (min-max), ratio corral/PM2) and the goal; writes every
raw sample to bench/out/worker_kill-<timestamp>.json (git-ignored; --out to change).
Standard library only; Linux only (reads /proc); needs wrk, node and npm on the PATH, and
access to PyPI and the npm registry.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from common import (
    CLK_TCK,
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
from wrkkit import HELLO_APPS, CpuSplit, PairBench, foreign_wrk, port_free, wrk_json

# below the ephemeral range, away from bench/cluster.py (18110+) and cluster_mode.py (18310+)
PORTS = {"corral": 18410, "pm2": 18411}
MANAGERS = ("corral", "pm2")
LABEL = {"corral": "corral", "pm2": "PM2"}
GOAL_S = 1.0
METHODS = ("cli", "api")

# The "api" pollers: connected to the daemon before the kill (start-up cost outside the
# window), they wait for "<pm_id> <killed pid>" on stdin, then ask the daemon for its list
# every 10 ms over that one connection and print each answer with its CLOCK_MONOTONIC time
# (Python's time.monotonic_ns and Node's process.hrtime.bigint read the same clock).
CORRAL_POLLER = r'''
import json, sys, time
from corral.client.connection import Client
from corral.store.home import home_from_env

pause, limit = float(sys.argv[1]), float(sys.argv[2])
client = Client(home_from_env(), start=False)
client.call("list")
print("READY", flush=True)
pm_id, old = (int(x) for x in sys.stdin.readline().split())
t_end = time.monotonic() + limit
while True:
    t0 = time.monotonic_ns()
    rows = client.call("list")
    t1 = time.monotonic_ns()
    row = [r for r in rows if r["pm_id"] == pm_id and r["spec"]["name"] == "app"]
    pid, status = (row[0]["pid"] or 0, row[0]["status"]) if row else (0, "absent")
    print("POLL " + json.dumps({"t0": t0, "t1": t1, "pid": pid, "status": status}), flush=True)
    if (pid and pid != old and status == "online") or time.monotonic() > t_end:
        break
    time.sleep(pause)
client.close()
'''

PM2_POLLER = r'''
'use strict';
const pm2 = require(process.argv[2]);
const pause = Number(process.argv[3]) * 1000, limit = Number(process.argv[4]) * 1e9;
pm2.connect((err) => {
  if (err) { console.error(err); process.exit(1); }
  pm2.list((err) => {
    if (err) { console.error(err); process.exit(1); }
    process.stdout.write('READY\n');
    let buf = '';
    process.stdin.on('data', (chunk) => {
      buf += chunk;
      if (!buf.includes('\n')) return;
      process.stdin.pause();
      const [pmId, old] = buf.split(/\s+/).map(Number);
      const tEnd = process.hrtime.bigint() + BigInt(limit);
      const poll = () => {
        const t0 = process.hrtime.bigint();
        pm2.list((err, list) => {
          const t1 = process.hrtime.bigint();
          const row = (list || []).find((r) => r.pm_id === pmId && r.name === 'app');
          const pid = row ? (row.pid || 0) : 0, status = row ? row.pm2_env.status : 'absent';
          process.stdout.write('POLL ' + JSON.stringify(
            {t0: t0.toString(), t1: t1.toString(), pid, status}) + '\n');
          if ((pid && pid !== old && status === 'online') || t1 > tEnd) {
            pm2.disconnect();
            return;
          }
          setTimeout(poll, pause);
        });
      };
      poll();
    });
  });
});
'''


def socket_inodes(pid: int) -> set[str]:
    """The `socket:[inode]` targets of /proc/<pid>/fd (empty set if the process is gone)."""
    out: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def wait_stopped(pid: int, limit: float) -> bool:
    """Wait until every thread of pid is stopped (state T in /proc/<pid>/task/*/stat)."""
    deadline = time.perf_counter() + limit
    while True:
        try:
            states = []
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    data = f.read()
                states.append(data[data.rfind(b")") + 2:data.rfind(b")") + 3])
        except OSError:
            states = [b"?"]
        if all(s in (b"T", b"t") for s in states):
            return True
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.0002)


class Bench(PairBench):
    JLIST_TIMEOUT = 30

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-wk-")
        self.idle_sockets: dict[int, set[str]] = {}  # worker pid -> its sockets when idle

    # -- helpers

    @staticmethod
    def workers(rows: list[dict[str, Any]]) -> dict[int, tuple[int, str]]:
        """pm_id -> (pid, status) of the app's workers."""
        return {int(r["pm_id"]): (int(r.get("pid") or 0), r["pm2_env"]["status"])
                for r in rows if r["name"] == "app"}

    def start_argv(self, manager: str) -> list[str]:
        if manager == "corral":
            return [self.corral, "start", "app.py", "-i", "2"]
        return [self.pm2, "start", "node_app.js", "-i", "2", "--name", "app"]

    # -- set-up

    def setup(self) -> None:
        self.prepare(HELLO_APPS)
        for name, text in (("poll_corral.py", CORRAL_POLLER), ("poll_pm2.js", PM2_POLLER)):
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(text)
        self.install()

    def start_cluster(self, manager: str) -> None:
        port = PORTS[manager]
        if not port_free(port):
            raise BenchError(f"port {port} is already in use")
        self.run(self.start_argv(manager), env=dict(self.env, PORT=str(port)))
        self.wait_workers(manager, set(), 30)
        say(f"{manager}: `{' '.join(self.start_argv(manager)[1:])}` on 127.0.0.1:{port}, "
            f"workers {self.workers(self.jlist(manager))}")

    def wait_workers(self, manager: str, old_pids: set[int], limit: float) -> dict[int, int]:
        """Wait until the 2 workers are online with pids outside old_pids; record each new
        worker's idle sockets. Returns pm_id -> pid."""
        deadline = time.monotonic() + limit
        while True:
            w = self.workers(self.jlist(manager))
            if (len(w) == 2 and all(s == "online" and p and p not in old_pids
                                    for p, s in w.values())):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{manager}: workers not online within {limit:g} s: {w}")
            time.sleep(0.05)
        for pid, _ in w.values():
            if not (alive(pid) and self.tmp in cmdline(pid)):
                raise BenchError(f"{manager} worker {pid} is not a program of the temp folder: "
                                 f"{cmdline(pid)!r}")
        return {i: p for i, (p, _) in w.items()}

    def learn_idle_sockets(self, manager: str) -> None:
        """With no load, each worker's sockets are its listener and IPC channel(s)."""
        for pid, _ in self.workers(self.jlist(manager)).values():
            if pid and pid not in self.idle_sockets:
                self.idle_sockets[pid] = socket_inodes(pid)

    # -- one run

    def one_run(self, manager: str, kill_id: int | None, method: str = "cli") -> dict[str, Any]:
        """One wrk run on the manager's cluster; with kill_id, SIGKILL that worker at
        --kill-at s and poll (`jlist` with method "cli", the daemon's list over one connection
        with "api") until its replacement is online."""
        a = self.args
        port = PORTS[manager]
        before = self.wait_workers(manager, set(), 30)
        self.learn_idle_sockets(manager)
        argv = ["wrk", "-t2", f"-c{a.connections}", f"-d{a.duration}s", "-s", self.lua,
                "-H", "Connection: close", f"http://127.0.0.1:{port}/"]
        foreign = foreign_wrk()
        split = CpuSplit([os.getpid(), *self.daemon_pids.values()])
        load0 = os.getloadavg()[0]
        r: dict[str, Any] = {"manager": manager, "method": method if kill_id is not None
                             else None, "wrk_argv": argv[:5] + argv[6:],
                             "pids_before": before, "loadavg_before": load0}
        poller = self.start_poller(manager) if kill_id is not None and method == "api" else None
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.tmp)
        try:
            if kill_id is not None:
                r |= self.kill_and_poll(manager, kill_id, before, t0, poller)
            out, err = proc.communicate(timeout=a.duration + 60)
        except BaseException:
            for p in (proc, poller):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            raise
        wall = time.perf_counter() - t0
        ours_cores, other_cores, _ = split.cores(wall)
        w = wrk_json(proc.returncode, out, err)
        r["wrk"] = w
        r["socket_errors"] = w["connect"] + w["read"] + w["write"] + w["timeout"]
        r["http_errors"] = w["status"]
        r["rps"] = w["requests"] / (w["duration_us"] / 1e6)
        r["wall_s"] = wall
        r["ours_cores"] = ours_cores
        r["other_cores"] = other_cores
        r["foreign_wrk"] = foreign
        r["wrk_text"] = out
        if foreign:
            self.note(f"another wrk was running during a measured run: pids {foreign}")
        return r

    def start_poller(self, manager: str) -> subprocess.Popen[str]:
        """The "api" poller of the manager, connected and READY."""
        a = self.args
        if manager == "corral":
            argv = [self.python, os.path.join(self.tmp, "poll_corral.py")]
        else:
            argv = ["node", os.path.join(self.tmp, "poll_pm2.js"),
                    os.path.join(self.pm2_prefix, "node_modules", "pm2")]
        argv += [str(a.poll), str(a.limit)]
        proc = subprocess.Popen(argv, env=self.env, cwd=self.appdir, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.seen_pids.add(proc.pid)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            _, err = proc.communicate()
            raise BenchError(f"{manager} poller did not start: {line!r} {err[-1500:]}")
        return proc

    def kill_and_poll(self, manager: str, kill_id: int, before: dict[int, int], t0: float,
                      poller: subprocess.Popen[str] | None) -> dict[str, Any]:
        a = self.args
        pid = before[kill_id]  # online in the jlist read just before wrk started
        if not (alive(pid) and self.tmp in cmdline(pid)):
            raise BenchError(f"{manager} worker {pid} is not ours: {cmdline(pid)!r}")
        uptime_s = None
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
            with open("/proc/uptime") as f:
                uptime_s = float(f.read().split()[0]) + a.kill_at - start_ticks / CLK_TCK
        except (OSError, ValueError, IndexError):
            pass
        wait = t0 + a.kill_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if not (alive(pid) and self.tmp in cmdline(pid)):
            raise BenchError(f"{manager} worker {pid} ended before the kill")
        # freeze it (SIGSTOP, every thread stopped: a ms or so), so that the count of the
        # connections it holds is exact, then SIGKILL
        f0 = time.perf_counter()
        os.kill(pid, signal.SIGSTOP)
        frozen = wait_stopped(pid, 0.05)
        held = socket_inodes(pid) - self.idle_sockets.get(pid, set())
        t_kill_ns = time.monotonic_ns()
        t_kill = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        freeze_ms = (t_kill - f0) * 1000
        if not frozen:
            self.note(f"{manager} worker {pid}: not every thread stopped within 50 ms of "
                      "SIGSTOP; the connection count may be off")
        polls: list[dict[str, Any]] = []
        if poller is None:
            while True:
                c0 = time.perf_counter()
                rows = self.workers(self.jlist(manager))
                c1 = time.perf_counter()
                p, s = rows.get(kill_id, (0, "absent"))
                polls.append({"start_s": c0 - t_kill, "end_s": c1 - t_kill, "pid": p,
                              "status": s})
                if (p and p != pid and s == "online") or c1 - t_kill > a.limit:
                    break
                time.sleep(a.poll)
        else:
            assert poller.stdin is not None
            poller.stdin.write(f"{kill_id} {pid}\n")
            poller.stdin.flush()
            try:
                out, err = poller.communicate(timeout=a.limit + 10)
            except subprocess.TimeoutExpired:
                poller.kill()
                out, err = poller.communicate()
            for ln in out.splitlines():
                if ln.startswith("POLL "):
                    x = json.loads(ln[5:])
                    polls.append({"start_s": (int(x["t0"]) - t_kill_ns) / 1e9,
                                  "end_s": (int(x["t1"]) - t_kill_ns) / 1e9,
                                  "pid": x["pid"], "status": x["status"]})
            if poller.returncode != 0:
                self.note(f"{manager} poller exited {poller.returncode}: {err[-300:]}")
        online_s = first_new_pid_s = None
        last_not_online_start_s = 0.0  # not online before the kill, at least
        new_pid = 0
        for x in polls:
            if x["pid"] and x["pid"] != pid:
                self.seen_pids.add(x["pid"])
                if first_new_pid_s is None:
                    first_new_pid_s = x["end_s"]
                if x["status"] == "online":
                    online_s, new_pid = x["end_s"], x["pid"]
                    break
            last_not_online_start_s = x["start_s"]
        if online_s is None:
            last = polls[-1] if polls else {}
            self.note(f"{manager} ({'jlist' if poller is None else 'api'}): pm_id {kill_id} not "
                      f"online with a new pid {a.limit:g} s after the kill (last poll: {last})")
        calls = [x["end_s"] - x["start_s"] for x in polls] or [float("nan")]
        return {"kill_id": kill_id, "killed_pid": pid, "killed_uptime_s": uptime_s,
                "kill_at_s": t_kill - t0, "held_sockets": len(held), "frozen": frozen,
                "freeze_ms": freeze_ms,
                "kill_to_online_s": online_s, "kill_to_new_pid_s": first_new_pid_s,
                "online_after_s": last_not_online_start_s, "new_pid": new_pid,
                "poll_call_s": statistics.median(calls), "polls": polls}

    def measured(self, label: str, manager: str, kill_id: int | None,
                 method: str = "cli") -> dict[str, Any]:
        """one_run() after a wait for a quiet machine, repeated as PairBench.repeat_disturbed
        says."""
        def once() -> dict[str, Any]:
            self.wait_quiet()
            return self.one_run(manager, kill_id, method)

        return self.repeat_disturbed(label, once, "wrk_text")

    # -- the whole run

    def main(self) -> None:
        a = self.args
        self.setup()
        self.start_daemons()
        for manager in MANAGERS:
            self.start_cluster(manager)
            self.learn_idle_sockets(manager)
        self.results["idle_sockets"] = {str(p): len(s) for p, s in self.idle_sockets.items()}
        say("warm-up: 2 s of wrk per cluster")
        for manager in MANAGERS:
            subprocess.run(["wrk", "-t2", f"-c{a.connections}", "-d2s", "-H",
                            "Connection: close", f"http://127.0.0.1:{PORTS[manager]}/"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        kills: dict[str, list[dict[str, Any]]] = {f"{m}/{k}": [] for m in MANAGERS
                                                   for k in a.methods}
        controls: dict[str, list[dict[str, Any]]] = {m: [] for m in MANAGERS}
        for rep in range(a.reps):
            order = MANAGERS if rep % 2 == 0 else MANAGERS[::-1]
            for i, method in enumerate(a.methods):
                for manager in order:
                    label = f"{manager} kill {rep + 1} ({method})"
                    r = self.measured(label, manager, (rep + i) % 2, method)
                    kills[f"{manager}/{method}"].append(r)
                    on = r["kill_to_online_s"]
                    say(f"  {label}: pm_id {r['kill_id']} pid {r['killed_pid']} (up "
                        f"{r['killed_uptime_s']:.1f} s, {r['held_sockets']} connections, frozen "
                        f"{r['freeze_ms']:.1f} ms) -> pid "
                        f"{r['new_pid']} online at {'-' if on is None else f'{on * 1000:.0f} ms'}"
                        f" (poll call {r['poll_call_s'] * 1000:.1f} ms); wrk: {r['rps']:.0f} "
                        f"req/s, socket errors {r['socket_errors']} (connect "
                        f"{r['wrk']['connect']} read {r['wrk']['read']} write "
                        f"{r['wrk']['write']} timeout {r['wrk']['timeout']}), HTTP errors "
                        f"{r['http_errors']}, other CPU {r['other_cores']:.2f} cores")
        for rep in range(a.controls):
            order = MANAGERS if rep % 2 == 0 else MANAGERS[::-1]
            for manager in order:
                r = self.measured(f"{manager} control {rep + 1}", manager, None)
                controls[manager].append(r)
                say(f"  {manager} control {rep + 1} (no kill): {r['rps']:.0f} req/s, socket "
                    f"errors {r['socket_errors']}, HTTP errors {r['http_errors']}")
        for manager in MANAGERS:
            self.wait_workers(manager, set(), 30)
        self.results["settings"] = {
            "reps": a.reps, "methods": a.methods, "controls": a.controls, "duration_s": a.duration,
            "connections": a.connections, "kill_at_s": a.kill_at, "poll_s": a.poll,
            "limit_s": a.limit, "max_other": a.max_other}
        self.results["kills"] = kills
        self.results["controls"] = controls

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        self.kill_all()


# ---- report ----------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> str:
    st = r["settings"]
    k, c = r["kills"], r["controls"]
    methods = st["methods"]

    def vals(runs: list[dict[str, Any]], key: str, scale: float = 1) -> list[float]:
        return [x[key] * scale for x in runs if x[key] is not None]

    def cell(runs: list[dict[str, Any]], key: str, scale: float = 1, digits: int = 0) -> str:
        v = vals(runs, key, scale)
        miss = len(runs) - len(v)
        text = fmt(v, digits) if v else "-"
        return text + (f" ({miss} never)" if miss else "")

    def ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> str:
        va, vb = vals(a, key), vals(b, key)
        if not va or not vb or statistics.median(vb) == 0:
            return "-"
        return f"{statistics.median(va) / statistics.median(vb):.2f}×"

    def row(label: str, key: str, scale: float = 1, digits: int = 0, runs: str = "",
            with_ratio: bool = True) -> str:
        a, b = (c["corral"], c["pm2"]) if runs == "control" else (k[f"corral/{runs}"],
                                                                  k[f"pm2/{runs}"])
        return (f"| {label} | {cell(a, key, scale, digits)} | {cell(b, key, scale, digits)} | "
                f"{ratio(a, b, key) if with_ratio else '-'} |")

    lines = [
        f"`wrk -t2 -c{st['connections']} -d{st['duration_s']}s -H \"Connection: close\"`, "
        f"SIGKILL of one worker (pm_id 0 and 1 in turn) at t = {st['kill_at_s']:g} s; "
        f"{st['reps']} kills per manager and poll method, managers alternating; "
        f"{st['controls']} control runs per manager (same wrk, no kill). Polls: \"jlist\" runs "
        f"`corral jlist` / `pm2 jlist` back to back ({st['poll_s'] * 1000:g} ms pause); \"api\" "
        f"asks the daemon for its list over one open connection every {st['poll_s'] * 1000:g} "
        "ms (corral.client / pm2.connect + pm2.list). Times from just before the SIGKILL to "
        "the return of the first poll that showed it. Median (min-max).",
        "",
        "| measure | corral | PM2 | corral/PM2 |",
        "|---|---|---|---|",
    ]
    for m in methods:
        tag = "jlist" if m == "cli" else "api"
        lines += [
            row(f"**kill → replacement online**, {tag} poll (ms)", "kill_to_online_s",
                1000, runs=m),
            row(f"kill → new pid listed, any status, {tag} poll (ms)", "kill_to_new_pid_s", 1000,
                runs=m),
            row(f"lower bound: start of the last {tag} poll that did not show it (ms)",
                "online_after_s", 1000, runs=m, with_ratio=False),
            row(f"one {tag} call under load, i.e. the resolution (ms)", "poll_call_s", 1000,
                1 if m == "api" else 0, runs=m),
        ]
    both = {mg: [x for m in methods for x in k[f"{mg}/{m}"]] for mg in MANAGERS}
    lines += [
        f"| connections the killed worker held (sockets in /proc/<pid>/fd), all kills | "
        f"{cell(both['corral'], 'held_sockets')} | {cell(both['pm2'], 'held_sockets')} | - |",
        f"| SIGSTOP → SIGKILL, to count the connections (ms) | "
        f"{cell(both['corral'], 'freeze_ms', 1, 2)} | {cell(both['pm2'], 'freeze_ms', 1, 2)} | - |",
        f"| **wrk socket errors per kill run**, all kills | "
        f"{cell(both['corral'], 'socket_errors')} | {cell(both['pm2'], 'socket_errors')} | - |",
        f"| wrk HTTP errors (non-2xx/3xx) per kill run, all kills | "
        f"{cell(both['corral'], 'http_errors')} | {cell(both['pm2'], 'http_errors')} | - |",
        f"| req/s, kill runs | {cell(both['corral'], 'rps')} | {cell(both['pm2'], 'rps')} | "
        f"{ratio(both['corral'], both['pm2'], 'rps')} |",
    ]
    if st["controls"]:
        lines += [
            row("wrk socket errors per control run (no kill)", "socket_errors", runs="control",
                with_ratio=False),
            row("wrk HTTP errors per control run", "http_errors", runs="control",
                with_ratio=False),
            row("req/s, control runs", "rps", runs="control"),
        ]
    lines += [
        f"| other jobs' CPU during the kill runs (cores) | "
        f"{cell(both['corral'], 'other_cores', 1, 2)} | {cell(both['pm2'], 'other_cores', 1, 2)}"
        " | - |",
        "",
    ]
    for mg in MANAGERS:
        for m in methods:
            per = ", ".join(f"{x['socket_errors']}/{x['held_sockets']}" for x in k[f"{mg}/{m}"])
            lines.append(f"{LABEL[mg]} ({'jlist' if m == 'cli' else 'api'}) per kill, socket "
                         f"errors / connections held: {per}.")
    lines.append("")
    for m in methods:
        runs = k[f"corral/{m}"]
        on = vals(runs, "kill_to_online_s")
        never = len(runs) - len(on)
        holds = bool(on) and not never and max(on) <= GOAL_S
        detail = (f"median {statistics.median(on) * 1000:.0f} ms, max {max(on) * 1000:.0f} ms"
                  if on else "never online") + (f", {never} never" if never and on else "")
        lines.append(f"Goal: replacement online ≤ 1 s (corral, every kill, seen by "
                     f"{'jlist' if m == 'cli' else 'the api poll'}): "
                     f"**{'yes' if holds else 'no'}** ({detail}).")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="3 kills and 1 control run per manager")
    parser.add_argument("--reps", type=int, help="kills per manager (default 7; 3 with --quick)")
    parser.add_argument("--controls", type=int,
                        help="control runs (no kill) per manager (default 3; 1 with --quick)")
    parser.add_argument("--duration", type=int, default=5, help="wrk -d, s (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--kill-at", type=float, default=1.5,
                        help="the kill, s after wrk started (default 1.5)")
    parser.add_argument("--poll", type=float, default=0.01,
                        help="pause between two polls, s (default 0.01)")
    parser.add_argument("--methods", default="cli,api",
                        help="how to poll, comma-separated: cli (`jlist`, back to back), api "
                        "(the daemon's list over one open connection) (default cli,api)")
    parser.add_argument("--limit", type=float, default=15,
                        help="give up waiting for the replacement after this, s (default 15)")
    add_quiet_options(parser)
    add_end_options(parser)
    args = parser.parse_args()
    args.reps = args.reps if args.reps is not None else (3 if args.quick else 7)
    args.controls = args.controls if args.controls is not None else (1 if args.quick else 3)
    args.methods = [m for m in args.methods.split(",") if m]
    if args.reps < 1 or args.kill_at >= args.duration:
        parser.error("--reps must be >= 1 and --kill-at < --duration")
    if not args.methods or set(args.methods) - set(METHODS):
        parser.error(f"--methods: a comma-separated list of {', '.join(METHODS)}")
    if unmet_needs("bench/worker_kill.py", "wrk"):
        return 2

    results, failed = run_bench(Bench, args, "bench/worker_kill.py", sys.argv[1:])
    return finish(results, failed, report, args.out, "worker_kill", loadavg=3)


if __name__ == "__main__":
    raise SystemExit(main())
