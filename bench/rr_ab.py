#!/usr/bin/env python3
"""A/B of the rr handoff for Node workers (issue 17 goal 4): corral's daemon as Node's
cluster primary, at this working tree and at a git revision, next to the lesson's own
`node cluster.js`, all three up at once, one connection per request, paired rounds.

    python bench/rr_ab.py --base bfaa30d                 # 6 rounds of 8 s
    python bench/rr_ab.py --base bfaa30d --rounds 12 --duration 5
    python bench/rr_ab.py --keepalive                    # without --base: this tree and node

What it does:
  * `git archive <base> src` into a temp folder; both corral trees run with the Python
    running this script (a venv with corral's dependencies, e.g. the dev venv) and
    PYTHONPATH=<tree>/src, each with its own CORRAL_HOME in the temp folder:
    `corral start examples/node/app.js -i 2` (rr, the default for Node apps);
    `WORKERS=2 node examples/node/cluster.js` runs in a session of its own (as a service
    would, and as corral's daemon does: with autogroup scheduling, a session is a unit);
  * each round runs `wrk -t2 -c64 -d<duration>s -H "Connection: close"` (or keep-alive with
    --keepalive) against each server in a rotating order; for every run it records req/s
    and, per request, the CPU time (utime+stime) of the manager (the corral daemon, the
    node primary), of the two workers and of wrk, and the workers' voluntary and
    involuntary context switches (a worker that waits for its next connection sleeps:
    voluntary);
  * prints the medians (min-max) and the ratios paired by round; raw samples go to
    bench/out/rr_ab-<timestamp>.json;
  * stops what it started: `corral kill` for each home, the node primary by its pid
    (SIGINT, then SIGKILL of its process group, which is its own session).

Standard library only; Linux only; needs wrk, node and git.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import common
from common import BenchError, fmt, say, summary

APP = os.path.join(common.REPO, "examples", "node", "app.js")
CLUSTER_JS = os.path.join(common.REPO, "examples", "node", "cluster.js")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing answers on 127.0.0.1:{port} after {timeout:.0f} s")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(x) for x in f.read().split()]
    return found


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of pid."""
    return (int(common.status_field(pid, "voluntary_ctxt_switches")),
            int(common.status_field(pid, "nonvoluntary_ctxt_switches")))


class RrAB:
    def __init__(self, args: Any) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="corral-bench-rr-")
        self.homes: list[dict[str, str]] = []
        self.node: subprocess.Popen[bytes] | None = None
        self.results: dict[str, Any] = {
            "machine": common.machine_info(), "git": common.git_info(),
            "base": args.base, "mode": "keep-alive" if args.keepalive else "close",
            "rounds": []}

    def start_corral(self, src: str) -> tuple[int, int]:
        home = os.path.join(self.tmp, f"home{len(self.homes)}")
        port = free_port()
        env = common.bench_env(("PYTHONDONTWRITEBYTECODE",), CORRAL_HOME=home,
                               PORT=str(port), PYTHONPATH=src)
        self.homes.append(env)
        common.run_cmd([sys.executable, "-m", "corral", "start", APP, "-i", "2",
                        "--name", "app"], env=env, cwd=self.tmp)
        with open(os.path.join(home, "corral.pid")) as f:
            return int(f.read().split()[0]), port

    def wrk(self, port: int, duration: int = 0) -> tuple[float, int, float]:
        duration = duration or self.args.duration
        argv = ["wrk", "-t2", "-c64", f"-d{duration}s"]
        if not self.args.keepalive:
            argv += ["-H", "Connection: close"]
        before = os.times()
        out = common.run_cmd(argv + [f"http://127.0.0.1:{port}/"], env=dict(os.environ),
                             timeout=duration + 60).stdout
        after = os.times()
        cpu = (after.children_user - before.children_user
               + after.children_system - before.children_system)
        done = re.search(r"(\d+) requests in", out)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if not done or not rate:
            raise BenchError(f"wrk said:\n{out}")
        return float(rate.group(1)), int(done.group(1)), cpu

    def measure(self, manager: int, port: int) -> dict[str, float]:
        workers = children(manager)
        m0, w0 = common.cpu_seconds(manager), [common.cpu_seconds(w) for w in workers]
        s0 = [switches(w) for w in workers]
        rate, count, wrk_cpu = self.wrk(port)
        m1, w1 = common.cpu_seconds(manager), [common.cpu_seconds(w) for w in workers]
        s1 = [switches(w) for w in workers]
        per = 1e6 / count
        return {"rps": rate, "requests": count, "manager_us": (m1 - m0) * per,
                "workers_us": (sum(w1) - sum(w0)) * per, "wrk_us": wrk_cpu * per,
                "workers_voluntary": sum(b[0] - a[0] for a, b in zip(s0, s1)) / count,
                "workers_involuntary": sum(b[1] - a[1] for a, b in zip(s0, s1)) / count,
                "load1": os.getloadavg()[0]}

    def main(self) -> None:
        servers: dict[str, tuple[int, int]] = {}
        servers["corral"] = self.start_corral(os.path.join(common.REPO, "src"))
        if self.args.base:
            base = os.path.join(self.tmp, "base")
            os.makedirs(base)
            archive = subprocess.run(["git", "-C", common.REPO, "archive", self.args.base,
                                      "src"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
            servers["base"] = self.start_corral(os.path.join(base, "src"))
        node_port = free_port()
        self.node = subprocess.Popen(
            ["node", CLUSTER_JS], env=dict(os.environ, WORKERS="2", PORT=str(node_port)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        servers["node"] = (self.node.pid, node_port)
        for _, port in servers.values():
            wait_port(port)
        time.sleep(1)
        names = list(servers)
        for name in names:
            self.wrk(servers[name][1], 2)  # warm-up
        for r in range(self.args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            row = {}
            for name in order:
                row[name] = self.measure(*servers[name])
                m = row[name]
                say(f"round {r + 1} {name:6}: {m['rps']:7.0f} req/s, manager "
                    f"{m['manager_us']:4.0f} us, workers {m['workers_us']:4.0f} us, wrk "
                    f"{m['wrk_us']:3.0f} us per request; load {m['load1']:.1f}")
            self.results["rounds"].append(row)

    def cleanup(self) -> None:
        for env in self.homes:
            common.run_cmd([sys.executable, "-m", "corral", "kill"], env=env,
                           check=False, timeout=60)
        if self.node is not None and self.node.poll() is None:
            self.node.send_signal(signal.SIGINT)
            try:
                self.node.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.node.pid, signal.SIGKILL)
                self.node.wait(10)
        common.remove_tmp(self.tmp, self.args.keep)


def report(results: dict[str, Any]) -> str:
    rounds = results["rounds"]
    if not rounds:
        return "no round measured"
    names = list(rounds[0])
    lines = [f"rr handoff, {results['mode']}, {len(rounds)} rounds (median (min-max))", "",
             "| server | req/s | manager CPU µs/request | workers CPU µs/request | wrk CPU "
             "µs/request | worker sleeps per request (voluntary / involuntary) |",
             "|---|---|---|---|---|---|"]
    for name in names:
        def col(key: str, digits: int = 0, n: str = name) -> str:
            return fmt(summary([r[n][key] for r in rounds]), digits)
        lines.append(f"| {name} | {col('rps')} | {col('manager_us')} | {col('workers_us')} | "
                     f"{col('wrk_us')} | {col('workers_voluntary', 2)} / "
                     f"{col('workers_involuntary', 2)} |")
    lines.append("")
    for a, b in (("corral", "node"), ("base", "node"), ("corral", "base")):
        if a in names and b in names:
            ratios = [r[a]["rps"] / r[b]["rps"] for r in rounds]
            ahead = sum(x > 1 for x in ratios)
            lines.append(f"req/s {a} ÷ {b}, paired by round: {fmt(summary(ratios), 2)}; "
                         f"{a} ahead in {ahead} of {len(ratios)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = common.new_parser(__doc__)
    parser.add_argument("--base", help="a git revision to compare with (its src/)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (default 6)")
    parser.add_argument("--duration", type=int, default=8, help="s per wrk run (default 8)")
    parser.add_argument("--keepalive", action="store_true",
                        help="keep-alive connections instead of one per request")
    common.add_end_options(parser, pm2=False)
    args = parser.parse_args(argv)
    if common.unmet_needs("bench/rr_ab.py", "wrk", "node", "git"):
        return 2
    results, failed = common.run_bench(RrAB, args, "bench/rr_ab.py", argv)
    text = report(results)
    status = common.save_results(results, failed, args.out, "rr_ab", partial=text)
    if status is not None:
        return status
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
