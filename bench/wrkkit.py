"""What the wrk benches of corral against PM2 share (cluster_mode.py, worker_kill.py,
node_cluster.py): wrk's Lua hook and its JSON line, the /proc helpers that split the machine's
CPU between the bench's own processes and other jobs, an HTTP probe of the hello-world apps,
and PairBench, the temp folder and the helpers of such a bench (set-up, daemons, waiting for a
quiet machine, repeating a run that other jobs disturbed, cleanup).

Imported by those scripts (`import wrkkit`, as common.py); standard library only; Linux only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import (
    CLK_TCK,
    REPO,
    BenchError,
    ManagerBench,
    bench_env,
    git_info,
    install_corral,
    install_pm2,
    kill_managers,
    machine_info,
    run_cmd,
    say,
    stat_fields,
    system_cpu_values,
    venv_versions,
)

# the hello-world apps of cluster_mode.py and worker_kill.py: `hello world, start with cluster
# <pid>` on $PORT, in Python (http.server) and in Node (http.createServer)
HELLO_APPS = (os.path.join(REPO, "examples", "app.py"),
              os.path.join(REPO, "bench", "apps", "node_app.js"))

# wrk prints one JSON line at the end (counts from its own summary, exact percentiles)
WRK_LUA = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
'''


def wrk_json(returncode: int | None, out: str, err: str) -> dict[str, Any]:
    """The counters of WRK_LUA's JSON line in wrk's output; BenchError if wrk failed."""
    line = [ln for ln in out.splitlines() if ln.startswith("WRKJSON ")]
    if returncode != 0 or not line:
        raise BenchError(f"wrk exited {returncode}: {out[-1500:]}{err[-1500:]}")
    result: dict[str, Any] = json.loads(line[-1][len("WRKJSON "):])
    return result


# ---- /proc -----------------------------------------------------------------------------------

def cpu_seconds_or_none(pid: int) -> float | None:
    """utime + stime in seconds, None if the process is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = stat_fields(int(entry))
        except OSError:
            continue
        out[int(entry)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    ppid = parents()
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in ppid.items() if pp == p]
        found += kids
        frontier += kids
    return found


def proc_times(pid: int) -> tuple[int, int] | None:
    """(utime + stime, cutime + cstime) in ticks."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def ours_ticks(roots: list[int]) -> int:
    """CPU ticks used by the bench's processes: each root (this process, the daemons) with
    its reaped children (cutime: wrk, the CLIs, workers that exited), plus every live
    descendant of a root (the workers and servers running now)."""
    total = 0
    seen = set()
    for pid in roots:
        t = proc_times(pid)
        if t is not None:
            total += t[0] + t[1]
        seen.add(pid)
    for root in roots:
        for pid in descendants(root):
            if pid in seen:
                continue
            seen.add(pid)
            t = proc_times(pid)
            if t is not None:
                total += t[0]
    return total


def system_ticks() -> tuple[int, int]:
    """(busy, steal) ticks of the whole machine, from /proc/stat."""
    v = system_cpu_values()
    # user nice system idle iowait irq softirq steal ...
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7]


class CpuSplit:
    """The CPU used from its creation to cores() by the bench's processes (ours_ticks of
    `roots`) and by the rest of the machine (busy time from /proc/stat minus ours: other
    jobs, and network softirq time the kernel does not charge to a process)."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.ours0, (self.busy0, self.steal0) = ours_ticks(roots), system_ticks()

    def cores(self, wall: float) -> tuple[float, float, float]:
        """(ours, other, steal) over `wall` s, in cores."""
        ours1, (busy1, steal1) = ours_ticks(self.roots), system_ticks()
        return ((ours1 - self.ours0) / CLK_TCK / wall,
                ((busy1 - self.busy0) - (ours1 - self.ours0)) / CLK_TCK / wall,
                (steal1 - self.steal0) / CLK_TCK / wall)


def foreign_wrk() -> list[int]:
    """wrk processes that are not ours (another benchmark sharing the machine)."""
    me = os.getpid()
    ppid = parents()
    out = []
    for pid in ppid:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "wrk":
                    continue
        except OSError:
            continue
        if ppid.get(pid) != me:
            out.append(pid)
    return out


# ---- HTTP probe ------------------------------------------------------------------------------

def get_pid(port: int, timeout: float = 2.0) -> int:
    """One GET on a fresh connection (Connection: close); the pid in the body. OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"hello world, start with cluster (\d+)", body)
    if not head.startswith(b"HTTP/1.1 200") or found is None:
        raise OSError(f"unexpected answer: {data[:200]!r}")
    return int(found.group(1))


def port_free(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


# ---- the bench -------------------------------------------------------------------------------

class PairBench(ManagerBench):
    """The temp folder of a wrk bench of corral against PM2: the apps in <tmp>/app (where
    every command runs), the Lua hook in <tmp>/done.lua, each manager's own home, the pids
    seen (for the cleanup), the notes; and the helpers the benches share."""

    JLIST_TIMEOUT: float = 120

    def __init__(self, args: Any, prefix: str) -> None:
        super().__init__(args, prefix)
        self.appdir = os.path.join(self.tmp, "app")
        self.lua = os.path.join(self.tmp, "done.lua")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE", "PYTHONPATH"],
                             CORRAL_HOME=os.path.join(self.tmp, "corral_home"),
                             PM2_HOME=os.path.join(self.tmp, "pm2_home"),
                             PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.seen_pids: set[int] = set()
        self.results: dict[str, Any] = {"notes": []}

    # -- helpers

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=env or self.env, timeout=timeout, cwd=self.appdir, check=check,
                       tail=3000)

    def jlist(self, manager: str) -> list[dict[str, Any]]:
        """The manager's `jlist`; every pid in it is recorded (seen_pids)."""
        rows: list[dict[str, Any]] = json.loads(
            self.run([self.cli(manager), "jlist"], timeout=self.JLIST_TIMEOUT).stdout)
        for r in rows:
            if r.get("pid"):
                self.seen_pids.add(int(r["pid"]))
        return rows

    def note(self, text: str) -> None:
        say(f"NOTE: {text}")
        self.results["notes"].append(text)

    # -- set-up

    def prepare(self, app_files: Sequence[str]) -> None:
        """<tmp>/app with a copy of each of app_files, and the Lua hook."""
        say(f"temp folder {self.tmp}")
        os.makedirs(self.appdir)
        for path in app_files:
            shutil.copy(path, self.appdir)
        with open(self.lua, "w") as f:
            f.write(WRK_LUA)

    def install(self, machine_extra: dict[str, Any] | None = None) -> None:
        """PM2 from npm and corral (non-editable) into the temp folder; the versions and the
        machine (machine_info, machine_extra) into results["machine"]."""
        pm2_version = install_pm2(self.run, self.pm2_prefix, self.args.pm2_version)
        say("python -m venv + pip install (non-editable) ...")
        install_corral(self.run, self.tmp, self.venv)
        info = venv_versions(self.run, self.venv)
        node = self.run(["node", "--version"]).stdout.strip()
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        self.results["machine"] = machine_info() | (machine_extra or {}) | {
            "python": info[0], "node": node, "pm2": pm2_version, "corral": info[1],
            "wrk": wrk.strip(), "corral_git": git_info(("src", "pyproject.toml", "examples"))}
        say(f"python {info[0]}, node {node}, pm2 {pm2_version}, corral {info[1]}, {wrk.strip()}")

    def start_daemons(self) -> None:
        self.start_daemons_pinged(self.env["CORRAL_HOME"], self.env["PM2_HOME"])

    # -- a shared machine: wait for quiet, repeat a run that other jobs disturbed

    def other_cores_now(self, seconds: float = 1.0) -> float:
        split = CpuSplit([os.getpid(), *self.daemon_pids.values()])
        time.sleep(seconds)
        return split.cores(seconds)[1]

    def wait_quiet(self) -> float:
        """Wait until the rest of the machine used < --max-other cores over 1 s (at most
        --quiet-timeout s). Returns the seconds waited."""
        t0 = time.monotonic()
        other = self.other_cores_now()
        if other < self.args.max_other:
            return 0.0
        say(f"  waiting for a quiet machine (other jobs use {other:.2f} cores)")
        while other >= self.args.max_other:
            if time.monotonic() - t0 > self.args.quiet_timeout:
                self.note(f"the machine was not quiet after {self.args.quiet_timeout:g} s "
                          f"(other jobs {other:.2f} cores): measuring anyway")
                break
            other = self.other_cores_now()
        waited = time.monotonic() - t0
        say(f"  quiet after {waited:.0f} s")
        self.results.setdefault("quiet_waits_s", []).append(waited)
        return waited

    def repeat_disturbed(self, label: str, once: Callable[[], dict[str, Any]],
                         drop: str) -> dict[str, Any]:
        """once() (a measured run, whose result has "other_cores"), repeated (at most
        --retries times) while other jobs used more than --max-other cores during it. The
        discarded runs, without their `drop` key, are kept in the result."""
        discarded: list[dict[str, Any]] = []
        while True:
            r = once()
            if r["other_cores"] <= self.args.max_other or len(discarded) >= self.args.retries:
                if r["other_cores"] > self.args.max_other:
                    self.note(f"{label}: other jobs used {r['other_cores']:.2f} cores during "
                              f"the run, kept after {len(discarded)} repeats")
                r["discarded"] = discarded
                return r
            say(f"  {label}: other jobs used {r['other_cores']:.2f} cores: run repeated")
            discarded.append({k: v for k, v in r.items() if k != drop})

    # -- cleanup

    def kill_all(self) -> None:
        """`corral kill`, `pm2 kill`, then SIGKILL of any recorded pid (the daemons, every
        pid seen, the daemons' descendants) that still runs a program of the temp folder;
        the temp folder removed (unless --keep)."""
        pids = set(self.seen_pids) | set(self.daemon_pids.values())
        for pid in self.daemon_pids.values():
            pids |= set(descendants(pid))
        kill_managers([self.corral, self.pm2], self.env)
        self.end_cleanup(pids)
