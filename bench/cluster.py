#!/usr/bin/env python3
"""Cluster benchmark (issue 4): corral.cluster against one process and against the servers'
own multi-worker modes, HTTP/1.1 hello world on 127.0.0.1, measured with wrk, in one run.

    python bench/cluster.py            # full run, about 11 minutes on a quiet machine
    python bench/cluster.py --quick    # smoke test: 2 s runs, 1 run per config, 2-3 minutes

What it does:
  * makes a temp folder with a fresh venv: corral installed non-editable (`pip install` of a
    copy of this repository's working tree) + uvicorn + gunicorn (plain installs: h11 and the
    asyncio loop, no uvloop, no httptools); byte-compiles site-packages; copies bench/apps/
    (the servers) into the temp folder. PYTHONDONTWRITEBYTECODE and PYTHONPATH are removed
    from the environment of every process it launches;
  * part 1: two servers of our own, bench/apps/aio.py (asyncio.start_server, keep-alive,
    fixed response) and bench/apps/threaded.py (http.server ThreadingHTTPServer, HTTP/1.1,
    TCP_NODELAY), each as one plain process and as 2 workers under corral.cluster with each
    policy (shared, rr, reuseport; bench/apps/primary.py is the primary), with keep-alive and
    with one connection per request (`-H "Connection: close"`);
  * part 2: servers clustered by their own means in the same run: `uvicorn --workers 2` vs
    corral.cluster running uvicorn_run.py (uvicorn.run(), one process) x2 through the bind
    hook; `gunicorn -w 2` (sync) vs corral.cluster running `gunicorn -w 1` x2 through
    LISTEN_FDS (setup_primary(exec=gunicorn, listen=[...])); one-process references;
  * every config: a 2 s wrk warm-up, then 3 runs of `wrk -t2 -c64 -d5s --latency`; medians
    (min-max) of requests/s, p99 latency, socket errors; CPU % of the started process, of its
    descendants and of wrk; the split of the requests between worker pids: every server
    counts its requests per process and writes the total to a file named after its pid
    (bench/apps/benchcount.py); the harness takes the difference over each wrk run;
  * before each wrk run, waits (up to --quiet-wait s) until the rest of the machine is idle
    (< --quiet-limit % of a core), and repeats a run during which the rest of the machine used
    more than --retry-above % of a core (at most --retries times per cell); the "rest of the
    machine" is /proc/stat busy time minus the server's and wrk's own CPU;
  * prints markdown tables and the goals; writes every raw sample to
    bench/out/cluster-<timestamp>.json (git-ignored; --out to change);
  * stops only what it started: SIGTERM to the process it launched, then SIGTERM/SIGKILL
    to any pid it recorded (that process and its descendants) that still runs a program of
    the temp folder. It never uses pkill/killall.

Standard library only; Linux only (it reads /proc); needs wrk on the PATH
(Debian: apt-get install wrk) and access to PyPI for the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from common import (
    CLK_TCK,
    BenchError,
    ServerBench,
    add_end_options,
    git_info,
    install_corral,
    loadavg_span,
    machine_info,
    new_parser,
    remove_tmp,
    run_bench,
    running_in,
    save_results,
    say,
    stat_fields,
    system_cpu_values,
    unmet_needs,
    wait_gone,
    wait_quiet,
)
from common import fmt_values as fmt

BASE_PORT = 18110  # below the ephemeral range, so wrk's own ports never collide


# ---- /proc -------------------------------------------------------------------------------------

def cpu_ticks(pid: int) -> int | None:
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def system_cpu() -> tuple[int, int, int]:
    """(busy, idle, steal) ticks of the whole machine, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = system_cpu_values()
    return user + nice + system + irq + softirq, idle + iowait, steal


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    seen: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop(0)
        if p not in seen:
            seen.append(p)
            todo += children(p)
    return seen


# ---- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    def number(pattern: str) -> float:
        m = re.search(pattern, text)
        if not m:
            raise BenchError(f"wrk output without {pattern!r}:\n{text}")
        return float(m.group(1))

    p = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if not p:
        raise BenchError(f"wrk output without a 99% line:\n{text}")
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors = dict(zip(errors, (int(x) for x in m.groups())))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": int(number(r"(\d+) requests in")),
        "p99_ms": float(p.group(1)) * _UNITS[p.group(2)],
        "p50_ms": float(p50.group(1)) * _UNITS[p50.group(2)] if p50 else None,
        "errors": errors,
        "errors_total": sum(errors.values()),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


# ---- configs -----------------------------------------------------------------------------------

KA = "keep-alive"
CLOSE = "close"


class Config:
    """One server set-up: how to start it, how many workers serve, which wrk modes to run."""

    def __init__(self, key: str, part: int, label: str, shown: str, argv: list[str],
                 workers: int, conns: list[str], kind: str, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.key = key
        self.part = part
        self.label = label
        self.shown = shown  # the start command as the report shows it (no paths of this machine)
        self.argv = argv
        self.workers = workers
        self.conns = conns
        self.kind = kind  # "plain", "corral" (our primary.py) or "native" (server's own mode)
        self.cwd = cwd
        self.env = env or {}


class Running:
    """A started config: its process, the pids seen under it, the primary's events."""

    def __init__(self, bench: Bench, config: Config, port: int) -> None:
        self.bench = bench
        self.config = config
        self.port = port
        self.count_dir = os.path.join(bench.tmp, "counts", config.key)
        os.makedirs(self.count_dir)
        self.stderr_path = os.path.join(bench.tmp, "logs", f"{config.key}.err")
        self.stdout_path = os.path.join(bench.tmp, "logs", f"{config.key}.out")
        env = dict(bench.env, HOST="127.0.0.1", PORT=str(port), BENCH_COUNT_DIR=self.count_dir,
                   **config.env)
        argv = [a.replace("{PORT}", str(port)) for a in config.argv]
        self.events: list[dict[str, Any]] = []
        self.err = open(self.stderr_path, "w")
        corral = config.kind == "corral"
        self.out = None if corral else open(self.stdout_path, "w")
        self.proc = subprocess.Popen(
            argv, cwd=config.cwd or bench.apps, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if corral else self.out, stderr=self.err,
            start_new_session=True, text=corral)
        self.pids: set[int] = {self.proc.pid}
        if corral:
            threading.Thread(target=self._read_events, daemon=True).start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        with open(self.stdout_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass

    def record_pids(self) -> list[int]:
        kids = descendants(self.proc.pid)
        self.pids.update(kids)
        return kids

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            return data.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 40.0) -> None:
        c = self.config
        deadline = time.monotonic() + timeout

        def ready() -> bool:
            if c.kind == "corral":
                name = "online" if "--listen" in c.argv else "listening"
                if len({e["id"] for e in self.events if e.get("event") == name}) < c.workers:
                    return False
            elif c.kind == "native" and len(self.record_pids()) < c.workers:
                return False
            return self.answers()

        while not ready():
            if self.proc.poll() is not None:
                raise BenchError(f"{c.key}: the server exited with {self.proc.returncode}; "
                                 f"stderr: {self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{c.key}: not ready after {timeout:.0f} s; events "
                                 f"{self.events}; stderr: {self.stderr_tail()}")
            time.sleep(0.05)
        time.sleep(0.5)  # gunicorn/uvicorn workers finish booting
        self.record_pids()

    def stderr_tail(self, chars: int = 2000) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for name in os.listdir(self.count_dir):
            if name.isdigit():
                try:
                    with open(os.path.join(self.count_dir, name)) as f:
                        out[int(name)] = int(f.read() or 0)
                except (OSError, ValueError):
                    pass
        return out

    def settled_counts(self) -> dict[int, int]:
        """Counts once the servers' 0.2 s dumps have caught up (two equal reads in a row)."""
        last = self.counts()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.counts()
            if now == last:
                return now
            last = now
        return last

    def stop(self) -> list[int]:
        """SIGTERM to the process we started; then any recorded pid still running a program
        of the temp folder gets SIGTERM, then SIGKILL. Returns the pids that needed a kill."""
        self.record_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        tmp = self.bench.tmp
        forced: list[int] = []
        wait_gone(self.pids, tmp, 5, 0.05)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = running_in(self.pids, tmp)
            for pid in left:
                if pid not in forced:
                    forced.append(pid)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if left and sig == signal.SIGTERM:
                time.sleep(2)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self.err.close()
        if self.out:
            self.out.close()
        return forced


# ---- the bench ---------------------------------------------------------------------------------

class Bench(ServerBench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-cluster-")
        self.results: dict[str, Any] = {"configs": {}, "runs": []}
        self.running: Running | None = None
        self.port = BASE_PORT

    # -- set-up

    def setup(self) -> None:
        say(f"temp folder {self.tmp}")
        wrk = shutil.which("wrk")
        if wrk is None:
            raise BenchError("wrk is not on the PATH (Debian: apt-get install -y wrk)")
        self.wrk_path = wrk
        wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        self.prepare()
        say("python -m venv + pip install (corral non-editable, uvicorn, gunicorn) ...")
        install_corral(self.run, self.tmp, self.venv,
                       [f"uvicorn{self.args.uvicorn}", f"gunicorn{self.args.gunicorn}"],
                       short_timeout=300)
        probe = ("import sys, json, importlib.metadata as m, corral; print(json.dumps({"
                 "'python': sys.version.split()[0], 'corral_file': corral.__file__, "
                 "**{p: m.version(p) for p in ('corral', 'uvicorn', 'gunicorn', 'h11')}, "
                 "'uvloop': __import__('importlib.util').util.find_spec('uvloop') is not None, "
                 "'httptools': __import__('importlib.util').util.find_spec('httptools') "
                 "is not None}))")
        versions = json.loads(self.run([self.python, "-c", probe]).stdout)
        if not versions.pop("corral_file").startswith(self.venv):
            raise BenchError("corral is not imported from the venv")
        versions["wrk"] = (wrk_version.stdout + wrk_version.stderr).split("[")[0].strip()
        self.results["machine"] = machine_info() | versions | {
            "corral_git": git_info(short=True, with_files=True)}
        say(f"versions: {versions}")
        self.gunicorn = os.path.join(self.venv, "bin", "gunicorn")
        self.uvicorn = os.path.join(self.venv, "bin", "uvicorn")

    def configs(self) -> list[Config]:
        py, prim = self.python, os.path.join(self.apps, "primary.py")
        both = [KA, CLOSE]
        out: list[Config] = []
        for server, title in (("aio", "asyncio.start_server"),
                              ("threaded", "http.server threaded (HTTP/1.1, TCP_NODELAY)")):
            script = os.path.join(self.apps, f"{server}.py")
            out.append(Config(f"{server}-plain", 1, f"{title}, 1 process",
                              f"python apps/{server}.py", [py, script], 1, both, "plain"))
            for policy in ("shared", "rr", "reuseport"):
                out.append(Config(
                    f"{server}-{policy}", 1, f"{title}, corral.cluster 2 workers, {policy}",
                    f"python apps/primary.py {policy} 2 -- apps/{server}.py",
                    [py, prim, policy, "2", "--", script], 2, both, "corral"))
        uv_args = ["--host", "127.0.0.1", "--port", "{PORT}", "--loop", "asyncio", "--http",
                   "h11", "--lifespan", "off", "--log-level", "warning", "--no-access-log"]
        uv_shown = ("uvicorn asgi_app:app --host 127.0.0.1 --port PORT --loop asyncio --http h11 "
                    "--lifespan off --log-level warning --no-access-log")
        uv_run = os.path.join(self.apps, "uvicorn_run.py")
        gu_args = ["--log-level", "warning", "wsgi_app:app"]
        gu_shown = "--log-level warning wsgi_app:app"
        extras = not self.args.no_extras
        if extras:
            out.append(Config("uvicorn-1", 2, "uvicorn, 1 process (reference)",
                              "python apps/uvicorn_run.py", [py, uv_run], 1, both, "plain"))
        out.append(Config("uvicorn-w2", 2, "uvicorn --workers 2 (its own mode)",
                          f"{uv_shown} --workers 2",
                          [self.uvicorn, "asgi_app:app", *uv_args, "--workers", "2"], 2, both,
                          "native"))
        out.append(Config("uvicorn-corral-shared", 2,
                          "corral.cluster: uvicorn.run() x2, shared (bind hook)",
                          "python apps/primary.py shared 2 -- apps/uvicorn_run.py",
                          [py, prim, "shared", "2", "--", uv_run], 2, both, "corral"))
        if extras:
            for policy in ("rr", "reuseport"):
                out.append(Config(
                    f"uvicorn-corral-{policy}", 2,
                    f"corral.cluster: uvicorn.run() x2, {policy} (bind hook)",
                    f"python apps/primary.py {policy} 2 -- apps/uvicorn_run.py",
                    [py, prim, policy, "2", "--", uv_run], 2, [KA], "corral"))
            out.append(Config("gunicorn-1", 2, "gunicorn -w 1 sync (reference)",
                              f"gunicorn -b 127.0.0.1:PORT -w 1 {gu_shown}",
                              [self.gunicorn, "-b", "127.0.0.1:{PORT}", "-w", "1", *gu_args],
                              1, [KA], "native"))
        out.append(Config("gunicorn-w2", 2, "gunicorn -w 2 sync (its own mode)",
                          f"gunicorn -b 127.0.0.1:PORT -w 2 {gu_shown}",
                          [self.gunicorn, "-b", "127.0.0.1:{PORT}", "-w", "2", *gu_args], 2,
                          [KA], "native"))
        out.append(Config("gunicorn-corral", 2,
                          "corral.cluster: gunicorn -w 1 x2 (LISTEN_FDS)",
                          f"python apps/primary.py shared 2 --listen 127.0.0.1:PORT -- "
                          f"gunicorn -w 1 {gu_shown}",
                          [py, prim, "shared", "2", "--listen", "127.0.0.1:{PORT}", "--",
                           self.gunicorn, "-w", "1", *gu_args], 2, [KA], "corral"))
        if self.args.only:
            wanted = self.args.only.split(",")
            out = [c for c in out if any(w in c.key for w in wanted)]
        return out

    # -- measuring

    def wrk_argv(self, port: int, conn: str, seconds: float) -> list[str]:
        argv = [self.wrk_path, f"-t{self.args.threads}", f"-c{self.args.conns}",
                f"-d{seconds:g}s", "--latency"]
        if conn == CLOSE:
            argv += ["-H", "Connection: close"]
        return argv + [f"http://127.0.0.1:{port}/"]

    def wrk(self, port: int, conn: str, seconds: float) -> tuple[dict[str, Any], float]:
        """One wrk run: (parsed output, wrk's own CPU seconds)."""
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(self.wrk_argv(port, conn, seconds), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env)
            deadline = time.monotonic() + seconds + 30
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    raise BenchError(f"wrk did not end within {seconds + 30:.0f} s")
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
        if proc.returncode != 0:
            raise BenchError(f"wrk exited {proc.returncode}:\n{text}")
        parsed = parse_wrk(text)
        parsed["raw"] = text
        return parsed, usage.ru_utime + usage.ru_stime

    def wait_quiet(self) -> dict[str, float]:
        """Wait (up to --quiet-wait s) until the machine is idle apart from us: busy CPU over
        0.3 s below --quiet-limit % of one core (steal time not counted), our servers being
        idle between runs."""
        return wait_quiet(system_cpu, self.args.quiet_limit, self.args.quiet_wait)

    def measure(self, running: Running, conn: str) -> list[dict[str, Any]]:
        a = self.args
        config = running.config
        self.wait_quiet()
        self.wrk(running.port, conn, a.warmup)
        runs = []
        after: dict[int, int] | None = None
        i = 0
        retries = 0
        while i < a.runs:
            kids = running.record_pids()
            root = running.proc.pid
            before = after if after is not None else running.settled_counts()
            quiet = self.wait_quiet()
            cpu0 = {p: cpu_ticks(p) for p in [root, *kids]}
            exits_before = sum(e.get("event") == "exit" for e in running.events)
            sys0 = system_cpu()
            t0 = time.monotonic()
            parsed, wrk_cpu = self.wrk(running.port, conn, a.duration)
            wall = time.monotonic() - t0
            sys1 = system_cpu()
            cpu1 = {p: cpu_ticks(p) for p in cpu0}
            after = running.settled_counts()
            split = {p: after.get(p, 0) - before.get(p, 0) for p in after}
            split = {p: n for p, n in split.items() if n}
            ranked = sorted(split.values(), reverse=True)
            top = (ranked + [0] * config.workers)[:config.workers]
            served = sum(split.values())

            def pct(ticks: int, wall: float = wall) -> float:
                return 100.0 * ticks / CLK_TCK / wall

            r0, r1 = cpu0[root], cpu1[root]
            root_cpu = pct(r1 - r0) if r0 is not None and r1 is not None else 0.0
            kids_cpu = pct(sum((cpu1[p] or cpu0[p] or 0) - (cpu0[p] or 0) for p in kids))
            wrk_pct = 100.0 * wrk_cpu / wall
            machine_busy = pct(sys1[0] - sys0[0])
            # busy CPU of the machine that is neither the server nor wrk: other jobs, and the
            # kernel's softirq work that no process is charged for
            other_cpu = machine_busy - root_cpu - kids_cpu - wrk_pct
            run = {
                "config": config.key, "conn": conn, "run": i + 1, "wrk": parsed,
                "wrk_cpu_pct": wrk_pct, "root_cpu_pct": root_cpu,
                "descendants_cpu_pct": kids_cpu, "wall_s": wall,
                "machine_busy_pct": machine_busy, "other_cpu_pct": other_cpu,
                "steal_pct": pct(sys1[2] - sys0[2]), "quiet_before": quiet,
                "split": {str(p): n for p, n in sorted(split.items(), key=lambda x: -x[1])},
                "served": served,
                "served_over_wrk": served / parsed["requests"] if parsed["requests"] else None,
                "busiest_share_pct": 100.0 * top[0] / served if served else None,
                "workers_serving": len(split),
                "worker_exits_during_run": sum(e.get("event") == "exit"
                                               for e in running.events) - exits_before,
            }
            say(f"  {config.key} {conn} run {i + 1}: {parsed['rps']:.0f} req/s, p99 "
                f"{parsed['p99_ms']:.1f} ms, errors {parsed['errors_total']}, split "
                f"{'/'.join(str(n) for n in ranked) or '-'}, CPU root {root_cpu:.0f} % / "
                f"desc {kids_cpu:.0f} % / wrk {wrk_pct:.0f} % / other {other_cpu:.0f} %")
            if other_cpu > a.retry_above and retries < a.retries:
                retries += 1
                say(f"  discarded: the rest of the machine used {other_cpu:.0f} % of a core "
                    f"(> {a.retry_above:g}); repeating the run")
                self.results.setdefault("discarded", []).append(run)
                continue
            run["retries_before"] = retries
            runs.append(run)
            self.results["runs"].append(run)
            i += 1
        return runs

    def main(self) -> dict[str, Any]:
        a = self.args
        self.setup()
        configs = self.configs()
        self.results["settings"] = {
            "threads": a.threads, "conns": a.conns, "duration_s": a.duration, "runs": a.runs,
            "warmup_s": a.warmup, "tcp_migrate_req": read_sysctl("net/ipv4/tcp_migrate_req"),
            "somaxconn": read_sysctl("net/core/somaxconn"),
            "tcp_tw_reuse": read_sysctl("net/ipv4/tcp_tw_reuse"),
            "wrk_command": " ".join(["wrk", f"-t{a.threads}", f"-c{a.conns}",
                                     f"-d{a.duration:g}s", "--latency",
                                     "[-H 'Connection: close']", "http://127.0.0.1:PORT/"]),
        }
        for config in configs:
            port = free_port(self.port)
            self.port = port + 1
            say(f"{config.key}: {config.shown} (port {port})")
            started = time.monotonic()
            running = self.running = Running(self, config, port)
            entry: dict[str, Any] = {"label": config.label, "command": config.shown,
                                     "part": config.part, "kind": config.kind,
                                     "workers": config.workers, "port": port}
            self.results["configs"][config.key] = entry
            try:
                running.wait_ready()
                entry["ready_s"] = time.monotonic() - started
                entry["pids_at_start"] = sorted(running.pids)
                for conn in config.conns:
                    entry.setdefault("conns", []).append(conn)
                    self.measure(running, conn)
            except BenchError as exc:
                entry["error"] = str(exc)
                say(f"  ERROR {config.key}: {exc}")
            finally:
                entry["events"] = running.events
                entry["stderr_tail"] = running.stderr_tail(3000)
                entry["forced_kill"] = running.stop()
                self.running = None
                if entry["forced_kill"]:
                    say(f"  had to kill {entry['forced_kill']} after SIGTERM")
                if entry["stderr_tail"].strip():
                    say(f"  stderr: {entry['stderr_tail'][-400:].strip()}")
        return self.results

    def cleanup(self) -> None:
        if self.running is not None:
            try:
                self.running.stop()
            except Exception as exc:  # noqa: BLE001
                say(f"cleanup: {exc}")
        remove_tmp(self.tmp, self.args.keep)


def free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise BenchError(f"no free port in {start}-{start + 199}")


def read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()
    except OSError:
        return None


# ---- report ------------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> str:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in r["runs"]:
        runs.setdefault((run["config"], run["conn"]), []).append(run)
    cfgs = r["configs"]

    def med(key: str, conn: str, what: str) -> float | None:
        rs = runs.get((key, conn))
        if not rs:
            return None
        return statistics.median(_get(x, what) for x in rs)

    def row(key: str, conn: str, ref: str | None) -> str:
        c = cfgs[key]
        rs = runs.get((key, conn))
        if not rs:
            return f"| {c['label']} | `{c['command']}` | {c.get('error', 'no runs')[:120]} |"
        rps = [x["wrk"]["rps"] for x in rs]
        ratio = ""
        if ref and med(ref, conn, "wrk.rps"):
            ratio = f"{statistics.median(rps) / med(ref, conn, 'wrk.rps'):.2f}"
        errs = [x["wrk"]["errors_total"] for x in rs]
        kinds = {k: sum(x["wrk"]["errors"][k] for x in rs) for k in rs[0]["wrk"]["errors"]}
        err_note = ", ".join(f"{k} {v}" for k, v in kinds.items() if v)
        shares = [x["busiest_share_pct"] for x in rs if x["busiest_share_pct"] is not None]
        split = "-" if c["workers"] == 1 else (fmt(shares, 1) if shares else "?")
        serving = sorted({x["workers_serving"] for x in rs})
        if c["workers"] > 1 and serving != [c["workers"]]:
            split += f" ({'/'.join(map(str, serving))} pids served)"
        cpu = " / ".join(f"{statistics.median(x[k] for x in rs):.0f}" for k in (
            "root_cpu_pct", "descendants_cpu_pct", "wrk_cpu_pct", "other_cpu_pct"))
        return (f"| {c['label']} | `{c['command']}` | {fmt(rps)} | {ratio} | "
                f"{fmt([x['wrk']['p99_ms'] for x in rs], 1)} | {fmt(errs)}"
                f"{' (' + err_note + ')' if err_note else ''} | {split} | {cpu} |")

    head = ("| config | start command (cwd: the apps folder) | req/s | ratio | p99 ms | "
            "socket errors | busiest worker's share % | CPU % of a core: started process / "
            "its descendants / wrk / rest of the machine |\n|---|---|---|---|---|---|---|---|")
    lines: list[str] = []
    s = r["settings"]
    lines.append(f"wrk: `{s['wrk_command']}`, {s['runs']} runs after a {s['warmup_s']:g} s "
                 "warm-up; median (min-max).")
    for conn in (KA, CLOSE):
        for server in ("aio", "threaded"):
            keys = [k for k in cfgs if k.startswith(server + "-") and cfgs[k]["part"] == 1]
            if not keys:
                continue
            how = ' (-H "Connection: close")' if conn == CLOSE else ""
            lines += ["", f"### Part 1, {server}, {conn}{how}; ratio = vs the plain process",
                      "", head]
            for key in keys:
                lines.append(row(key, conn, f"{server}-plain" if key != f"{server}-plain"
                                 else None))
    part2 = [k for k in cfgs if cfgs[k]["part"] == 2]
    if part2:
        for conn in (KA, CLOSE):
            keys = [k for k in part2 if (k, conn) in runs or (conn == KA and "error" in cfgs[k])]
            if not keys:
                continue
            lines += ["", f"### Part 2, servers' own multi-worker mode vs corral.cluster, {conn}; "
                      "ratio = vs the server's own 2-worker mode", "", head]
            for key in keys:
                ref = "uvicorn-w2" if key.startswith("uvicorn") else "gunicorn-w2"
                lines.append(row(key, conn, ref if key != ref else None))

    # goals
    goals: list[tuple[str, str, str]] = []

    def ratio_goal(what: str, a: str, b: str, conn: str, factor: float) -> None:
        x, y = med(a, conn, "wrk.rps"), med(b, conn, "wrk.rps")
        if x is None or y is None:
            return  # not in this run (--only, --no-extras)
        goals.append((what, f"{x:.0f} / {y:.0f} = {x / y:.2f} (goal ≥ {factor:g})",
                      "yes" if x >= factor * y else "NO"))

    ratio_goal("corral uvicorn x2 (shared) vs uvicorn --workers 2, keep-alive",
               "uvicorn-corral-shared", "uvicorn-w2", KA, 0.95)
    ratio_goal("corral uvicorn x2 (shared) vs uvicorn --workers 2, close (extra)",
               "uvicorn-corral-shared", "uvicorn-w2", CLOSE, 0.95)
    ratio_goal("corral gunicorn -w 1 x2 vs gunicorn -w 2", "gunicorn-corral", "gunicorn-w2", KA,
               0.95)
    for server in ("aio", "threaded"):
        ratio_goal(f"{server}: rr vs shared, keep-alive", f"{server}-rr", f"{server}-shared", KA,
                   0.9)
    for server in ("aio", "threaded"):
        for conn in (KA, CLOSE):
            shares = {p: med(f"{server}-{p}", conn, "busiest_share_pct")
                      for p in ("shared", "rr", "reuseport")}
            known = {p: v for p, v in shares.items() if v is not None}
            if not known:
                continue
            best = min(known, key=lambda p: known[p])
            goals.append((f"{server} {conn}: most even split (busiest worker's share, 50 = even)",
                          ", ".join(f"{p} {v:.1f} %" for p, v in known.items()), best))
    lines += ["", "### Goals", "", "| goal | figures (median req/s) | holds / best |",
              "|---|---|---|"]
    lines += [f"| {g} | {f} | {h} |" for g, f, h in goals]
    odd = [f"{run['config']} {run['conn']} run {run['run']}: served/wrk "
           f"{run['served_over_wrk']:.3f}" for run in r["runs"]
           if run["served_over_wrk"] is not None and abs(run["served_over_wrk"] - 1) > 0.02]
    odd += [f"{run['config']} {run['conn']} run {run['run']}: {run['worker_exits_during_run']} "
            "worker exits" for run in r["runs"] if run["worker_exits_during_run"]]
    odd += [f"{run['config']} {run['conn']} run {run['run']}: the rest of the machine used "
            f"{run['other_cpu_pct']:.0f} % of a core" for run in r["runs"]
            if run["other_cpu_pct"] > 25]
    odd += [f"{k}: {c['error']}" for k, c in cfgs.items() if c.get("error")]
    odd += [f"{k}: had to kill {c['forced_kill']}" for k, c in cfgs.items()
            if c.get("forced_kill")]
    if odd:
        lines += ["", "Odd things:", *[f"* {o}" for o in odd]]
    return "\n".join(lines)


def _get(run: dict[str, Any], path: str) -> Any:
    value: Any = run
    for part in path.split("."):
        value = value[part]
    return value


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="2 s runs, 1 run per config, 1 s warm-up (a smoke test)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5)")
    parser.add_argument("--runs", type=int, help="measured runs per config (default 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--conns", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument("--quiet-limit", type=float, default=25.0,
                        help="before each wrk run, wait until the machine's busy CPU is below "
                        "this %% of one core (default 25)")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="longest wait for a quiet machine, in s (default 120)")
    parser.add_argument("--retry-above", type=float, default=30.0,
                        help="repeat a run during which the rest of the machine used more than "
                        "this %% of one core (default 30)")
    parser.add_argument("--retries", type=int, default=6,
                        help="most repeated runs per config and connection mode (default 6)")
    parser.add_argument("--only", help="comma-separated substrings of config keys to run")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the reference and extra configs of part 2")
    parser.add_argument("--uvicorn", default="==0.54.0", help="pip version spec for uvicorn")
    parser.add_argument("--gunicorn", default="==27.0.1", help="pip version spec for gunicorn")
    add_end_options(parser, pm2=False)
    args = parser.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.runs = args.runs or (1 if args.quick else 3)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    if unmet_needs("bench/cluster.py"):
        return 2

    results, failed = run_bench(Bench, args, "bench/cluster.py", sys.argv[1:])
    text = ""
    if results.get("runs") and "settings" in results:
        text = report(results)
    status = save_results(results, failed, args.out, "cluster", partial=text)
    if status is not None:
        return status
    m = results["machine"]
    print(f"\ncorral {m['corral']} ({m['corral_git'].get('commit')}"
          f"{' + uncommitted src changes' if m['corral_git'].get('src_dirty') else ''}), "
          f"uvicorn {m['uvicorn']}, gunicorn {m['gunicorn']}, h11 {m['h11']}, {m['wrk']}; "
          f"python {m['python']}; nproc {m['nproc']} ({m['cpu']}); "
          f"tcp_migrate_req={results['settings']['tcp_migrate_req']}; whole run "
          f"{results['wall_s']:.0f} s; {loadavg_span(results)}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
