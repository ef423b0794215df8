#!/usr/bin/env python3
"""uvicorn with one connection per request (issue 17, goal 3): corral.cluster (shared) against
`uvicorn --workers 2`, paired runs, both servers up the whole time.

    python bench/uvicorn_close.py               # 12 rounds of 5 s runs, about 5 minutes
    python bench/uvicorn_close.py --diagnose    # also both servers with TCP_NODELAY flipped
    python bench/uvicorn_close.py --together    # both loaded at once in each round: the
                                                # same background load for both (a busy machine)
    python bench/uvicorn_close.py --quick       # 3 rounds of 2 s

What it does:
  * makes a temp folder with a fresh venv: corral (non-editable, a copy of this repository's
    working tree) + uvicorn 0.54.0 (h11, the asyncio loop), as bench/cluster.py does; copies
    bench/apps/;
  * starts, each on its own port of 127.0.0.1, and leaves running for the whole run:
    `uvicorn asgi_app:app --workers 2 ...` (uvicorn's own mode) and
    `python apps/primary.py shared 2 -- apps/uvicorn_run.py` (corral.cluster, bind hook);
    with --diagnose also the same two with TCP_NODELAY flipped on their accepted
    connections (a sitecustomize.py on their PYTHONPATH replaces asyncio's _set_nodelay):
    on for uvicorn's workers (whose listener comes back from the spawn as proto 0, so
    asyncio never sets it), off for corral's (the app's own socket, proto 6: asyncio sets
    it, as in one uvicorn process);
  * each round runs `wrk -t2 -c64 -d5s -H "Connection: close"` once against every server,
    in an order that rotates each round, after waiting for the machine to be quiet (with
    --together, one wrk per server, all at the same time, so that each gets its share of
    the machine under the same background load: the ratios compare like with like); records
    requests/s, p99, socket errors, the CPU time of each server's processes (utime+stime
    from /proc) per request, wrk's CPU per request, and how busy the rest of the machine
    was;
  * prints medians (min-max), the ratio corral/uvicorn per round (paired) and how many
    rounds corral was ahead; writes every raw sample to bench/out/uvicorn_close-<ts>.json.

Standard library only; Linux only; needs wrk on the PATH and PyPI for the venv.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from common import (
    CLK_TCK,
    BenchError,
    ServerBench,
    add_end_options,
    cmdline,
    cpu_seconds,
    fmt,
    git_info,
    install_corral,
    loadavg_span,
    machine_info,
    new_parser,
    remove_tmp,
    report_end,
    run_bench,
    running_in,
    say,
    summary,
    system_cpu,
    unmet_needs,
    venv_versions,
    wait_gone,
    wait_quiet,
)

BASE_PORT = 18650

# TCP_NODELAY on every accepted TCP connection of asyncio (on) or on none (off)
SITECUSTOMIZE = '''\
import asyncio.base_events as _base_events
import socket as _socket

_ON = {on}


def _set_nodelay(sock):
    if sock.family in (_socket.AF_INET, _socket.AF_INET6) and sock.type == _socket.SOCK_STREAM:
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1 if _ON else 0)
        except OSError:
            pass


_base_events._set_nodelay = _set_nodelay
'''


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from one scan of /proc (no /proc/<pid>/task/*/children)."""
    by_parent: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                by_parent.setdefault(int(data[data.rfind(b")") + 2:].split()[1]), []).append(
                    int(name))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += by_parent.get(p, [])
    return out


def parse_wrk(text: str) -> dict[str, Any]:
    import re

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    if not (rps and total and p99):
        raise BenchError(f"cannot read wrk's output:\n{text}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)),
            "p99_ms": float(p99.group(1)) * unit,
            "errors": sum(int(x) for x in errors.groups()) if errors else 0}


class Server:
    def __init__(self, key: str, label: str, argv: list[str], env: dict[str, str], cwd: str,
                 port: int, logs: str) -> None:
        self.key, self.label, self.port = key, label, port
        self.log = open(os.path.join(logs, f"{key}.log"), "w")
        self.proc = subprocess.Popen([a.replace("{PORT}", str(port)) for a in argv], cwd=cwd,
                                     env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pids: set[int] = {self.proc.pid}

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def wait_ready(self, workers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            tree = process_tree(self.proc.pid)
            self.pids.update(tree)
            serving = [p for p in tree if p != self.proc.pid and "resource_tracker"
                       not in cmdline(p)]
            if len(serving) >= workers and self.answers():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.key} did not come up (see {self.log.name})")
            time.sleep(0.2)

    def cpu(self) -> float:
        total = 0.0
        for pid in process_tree(self.proc.pid):
            self.pids.add(pid)
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def stop(self, tmp: str) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        wait_gone(self.pids, tmp, 5, 0.05)
        for pid in running_in(self.pids, tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self.log.close()


class Bench(ServerBench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-uvclose-")
        self.servers: list[Server] = []
        self.results: dict[str, Any] = {"rounds": []}

    def setup(self) -> None:
        say(f"temp folder {self.tmp}")
        self.prepare()
        say("python -m venv + pip install (corral non-editable, uvicorn) ...")
        install_corral(self.run, self.tmp, self.venv, [f"uvicorn{self.args.uvicorn}"])
        info = venv_versions(self.run, self.venv, "uvicorn", "h11")
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        self.results["machine"] = machine_info() | {
            "python": info[0], "corral": info[1], "uvicorn": info[2], "h11": info[3],
            "wrk": (wrk.stdout + wrk.stderr).split("\n")[0].strip(),
            "corral_git": git_info(with_files=True)}
        say(f"python {info[0]}, corral {info[1]}, uvicorn {info[2]}, h11 {info[3]}")
        for on in (True, False):
            folder = os.path.join(self.tmp, f"nodelay-{'on' if on else 'off'}")
            os.makedirs(folder)
            with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
                f.write(SITECUSTOMIZE.format(on=on))

    def start_servers(self) -> None:
        uvicorn = os.path.join(self.venv, "bin", "uvicorn")
        uv = [uvicorn, "asgi_app:app", "--host", "127.0.0.1", "--port", "{PORT}", "--loop",
              "asyncio", "--http", "h11", "--lifespan", "off", "--log-level", "warning",
              "--no-access-log", "--workers", "2"]
        corral = [self.python, os.path.join(self.apps, "primary.py"), "shared", "2", "--",
                  os.path.join(self.apps, "uvicorn_run.py")]
        configs: list[tuple[str, str, list[str], bool | None]] = [
            ("uvicorn-w2", "uvicorn --workers 2", uv, None),
            ("corral-shared", "corral.cluster shared, uvicorn.run() x2", corral, None)]
        if self.args.diagnose:
            configs += [("uvicorn-w2-nodelay", "uvicorn --workers 2, TCP_NODELAY on", uv, True),
                        ("corral-shared-nagle", "corral.cluster shared x2, TCP_NODELAY off",
                         corral, False)]
        for number, (key, label, argv, nodelay) in enumerate(configs):
            port = BASE_PORT + number
            env = dict(self.env, HOST="127.0.0.1", PORT=str(port))
            if nodelay is not None:
                env["PYTHONPATH"] = os.path.join(self.tmp,
                                                 f"nodelay-{'on' if nodelay else 'off'}")
            server = Server(key, label, argv, env, self.apps, port,
                            os.path.join(self.tmp, "logs"))
            self.servers.append(server)
            server.wait_ready(2)
            say(f"{key} up on port {port}: pids {sorted(server.pids)}")
        self.results["servers"] = {s.key: {"label": s.label, "port": s.port} for s in
                                   self.servers}

    def wrk_once(self, servers: list[Server], seconds: float) -> dict[str, dict[str, Any]]:
        """One wrk run against each server, all at the same time: {key: result}."""
        cpu0 = {s.key: s.cpu() for s in servers}
        sys0, t0 = system_cpu(), time.monotonic()
        running = []
        for server in servers:
            argv = ["wrk", "-t2", "-c64", f"-d{seconds:g}s", "--latency", "-H",
                    "Connection: close", f"http://127.0.0.1:{server.port}/"]
            out = tempfile.TemporaryFile("w+")
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env)
            running.append((server, proc, out))
        finished = []
        for server, proc, out in running:
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
            out.close()
            if proc.returncode != 0:
                raise BenchError(f"wrk exited {proc.returncode}:\n{text}")
            finished.append((server, parse_wrk(text), usage.ru_utime + usage.ru_stime))
        elapsed = time.monotonic() - t0
        sys1 = system_cpu()
        ours = 0.0
        results: dict[str, dict[str, Any]] = {}
        for server, result, wrk_cpu in finished:
            server_cpu = server.cpu() - cpu0[server.key]
            ours += server_cpu + wrk_cpu
            result.update({
                "server_cpu_s": server_cpu, "wrk_cpu_s": wrk_cpu, "elapsed_s": elapsed,
                "server_us_per_req": 1e6 * server_cpu / max(result["requests"], 1),
                "wrk_us_per_req": 1e6 * wrk_cpu / max(result["requests"], 1)})
            results[server.key] = result
        other = max((sys1[0] - sys0[0]) / CLK_TCK - ours, 0.0) / elapsed
        for result in results.values():
            result["other_cores"] = other
        return results

    def main(self) -> dict[str, Any]:
        a = self.args
        self.setup()
        self.start_servers()
        self.results["settings"] = {"rounds": a.rounds, "seconds": a.seconds,
                                    "warmup_s": a.warmup, "diagnose": a.diagnose,
                                    "together": a.together}
        for server in self.servers:
            self.wrk_once([server], a.warmup)
        for number in range(a.rounds):
            order = self.servers[number % len(self.servers):] + \
                self.servers[:number % len(self.servers)]
            runs: dict[str, Any] = {}
            if a.together:  # every server loaded at once: the same background for all
                quiet = wait_quiet(lambda: system_cpu(), a.quiet_limit, a.quiet_wait)
                runs = self.wrk_once(order, a.seconds)
                for run in runs.values():
                    run["waited_s"] = quiet["waited_s"]
            for server in order if not a.together else []:
                quiet = wait_quiet(lambda: system_cpu(), a.quiet_limit, a.quiet_wait)
                run = self.wrk_once([server], a.seconds)[server.key]
                run["waited_s"] = quiet["waited_s"]
                runs[server.key] = run
            self.results["rounds"].append(runs)
            say(f"round {number + 1}/{a.rounds}: " + ", ".join(
                f"{k} {v['rps']:.0f} req/s ({v['server_us_per_req']:.0f} us CPU/req)"
                for k, v in runs.items()))
        return self.results

    def cleanup(self) -> None:
        for server in self.servers:
            server.stop(self.tmp)
        remove_tmp(self.tmp, self.args.keep)


def report(r: dict[str, Any]) -> str:
    rounds = r["rounds"]
    keys = list(r["servers"])
    lines = ["", "| server | req/s | p99 ms | server CPU µs/request | wrk CPU µs/request | "
             "rest of machine, cores | socket errors |", "|---|---|---|---|---|---|---|"]
    for key in keys:
        runs = [x[key] for x in rounds]

        def col(name: str, digits: int, runs: list[dict[str, Any]] = runs) -> str:
            return fmt(summary([x[name] for x in runs]), digits)

        lines.append(f"| {r['servers'][key]['label']} | {col('rps', 0)} | {col('p99_ms', 1)} | "
                     f"{col('server_us_per_req', 0)} | {col('wrk_us_per_req', 0)} | "
                     f"{col('other_cores', 2)} | {sum(x['errors'] for x in runs)} |")
    lines.append("")

    def paired(a: str, b: str, what: str) -> None:
        ratios = [x[a]["rps"] / x[b]["rps"] for x in rounds]
        cpu = [x[a]["server_us_per_req"] / x[b]["server_us_per_req"] for x in rounds]
        ahead = sum(q > 1 for q in ratios)
        lines.append(f"{what}: req/s ratio per round {fmt(summary(ratios), 3)}, ahead in "
                     f"{ahead} of {len(ratios)} rounds; server CPU per request ratio "
                     f"{fmt(summary(cpu), 3)}; ratio of medians "
                     f"{summary([x[a]['rps'] for x in rounds])['median'] / summary([x[b]['rps'] for x in rounds])['median']:.3f}")

    paired("corral-shared", "uvicorn-w2", "corral shared / uvicorn --workers 2 (goal >= 0.95)")
    if "uvicorn-w2-nodelay" in keys:
        paired("corral-shared", "uvicorn-w2-nodelay",
               "corral shared / uvicorn --workers 2 with TCP_NODELAY (same socket options)")
        paired("corral-shared-nagle", "uvicorn-w2",
               "corral shared without TCP_NODELAY / uvicorn --workers 2 (same socket options)")
        paired("uvicorn-w2-nodelay", "uvicorn-w2",
               "uvicorn --workers 2: TCP_NODELAY on / off")
        paired("corral-shared", "corral-shared-nagle", "corral shared: TCP_NODELAY on / off")
    return "\n".join(lines)


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--rounds", type=int, help="rounds (default 12; --quick 3)")
    parser.add_argument("--seconds", type=float, help="length of a wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up run per server, s")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run both servers with TCP_NODELAY flipped")
    parser.add_argument("--together", action="store_true",
                        help="load every server at the same time in each round (each gets "
                        "its share of a busy machine, under the same background load), "
                        "instead of one after the other")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s runs")
    parser.add_argument("--quiet-limit", type=float, default=25.0,
                        help="before each run, wait until the machine's busy CPU is below this "
                        "%% of one core (default 25)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="longest wait for a quiet machine, s (default 60)")
    parser.add_argument("--uvicorn", default="==0.54.0", help="pip version spec for uvicorn")
    add_end_options(parser, pm2=False)
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 12)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    if unmet_needs("bench/uvicorn_close.py", "wrk"):
        return 2
    results, failed = run_bench(Bench, args, "bench/uvicorn_close.py", sys.argv[1:])
    return report_end(results, failed, report, args.out, "uvicorn_close", headline)


def headline(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (f"\ncorral {m['corral']}, uvicorn {m['uvicorn']}, h11 {m['h11']}, {m['wrk']}; "
            f"python {m['python']}; nproc {m['nproc']}; whole run {r['wall_s']:.0f} s; "
            f"{loadavg_span(r)}")


if __name__ == "__main__":
    raise SystemExit(main())
