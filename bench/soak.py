"""Soak: random commands and random SIGKILLs (of apps and of the daemon) for a long time,
with corral's invariants checked after every step (issue 12).

    python bench/soak.py                 # 30 minutes
    python bench/soak.py --minutes 10 --seed 7 --out bench/out

Each step is one random action on a small set of apps (a sleeper, a chatty app, an app
that crashes now and then, a cluster app of 1-3 HTTP workers): start, stop, restart,
delete, reload, scale, SIGKILL of an app's process, SIGKILL of the daemon, list. After
each step, once the daemon has settled:

- every process corral started (a session leader whose environment names this
  CORRAL_HOME and a CORRAL_PM_ID) is listed, and once: no process untracked, no pid
  listed twice, every listed pid alive;
- no zombie among the daemon's children;
- every --checkpoint steps every app is deleted, and the daemon's open fds and RSS are
  measured with nothing to manage: they must not grow (fds) or drift (RSS) from the
  first checkpoint of the run.

A violation is counted when it is still there after a grace period (a crash being
restarted is not one). The end prints the figures (and writes them as JSON with --out);
the exit status is 1 if any invariant was broken.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import common

APPS = {
    "sleeper": "import time\ntime.sleep(3600)\n",
    "chatty": ("import sys, time\nn = 0\nwhile True:\n    n += 1\n"
               "    print(f'line {n} ' + 'x' * (n % 200), flush=True)\n    time.sleep(0.01)\n"),
    "crashy": ("import os, random, time\ntime.sleep(random.uniform(0.5, 8))\n"
               "os._exit(random.choice([0, 1, 3]))\n"),
    "web": ("import http.server, os\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'hi')\n"
            "    def log_message(self, *a): pass\n"
            "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H)"
            ".serve_forever()\n"),
}
ACTIONS = {  # weight
    "start": 6, "stop": 3, "restart": 3, "delete": 2, "reload": 3, "scale": 2,
    "kill_app": 5, "kill_daemon": 1, "list": 2,
}
SETTLE_S = 15.0
GRACE_S = 6.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environ_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def proc_state(pid: int) -> str:
    try:
        return common.stat_fields(pid)[0].decode()
    except (OSError, IndexError):
        return ""


def ppid_of(pid: int) -> int:
    try:
        return int(common.stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return 0


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = tempfile.mkdtemp(prefix="corral-soak-")
        self.home = os.path.join(self.tmp, "home")
        self.env = dict(os.environ, CORRAL_HOME=self.home, NO_COLOR="1",
                        PYTHONPATH=os.path.join(common.REPO, "src"))
        self.scripts = {}
        for name, code in APPS.items():
            path = os.path.join(self.tmp, f"{name}.py")
            with open(path, "w") as f:
                f.write(code)
            self.scripts[name] = path
        self.port = free_port()
        self.counts: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        self.checkpoints: list[dict[str, float]] = []
        self.steps = 0
        self.max_listed = 0
        self.command_failures: collections.Counter[str] = collections.Counter()

    # ---- talking to corral ------------------------------------------------------

    def corral(self, *words: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral", *words], env=self.env,
                              cwd=self.tmp, capture_output=True, text=True, timeout=timeout)

    def jlist(self) -> list[dict[str, Any]]:
        done = self.corral("jlist")
        if done.returncode != 0:
            raise common.BenchError(f"jlist failed: {done.stderr.strip()}")
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def daemon_pid(self) -> int:
        try:
            with open(os.path.join(self.home, "corral.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    # ---- one step ------------------------------------------------------------------

    def act(self) -> str:
        action = self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        app = self.rng.choice(list(APPS))
        rows = self.jlist()
        names = sorted({r["name"] for r in rows})
        target = self.rng.choice(names) if names and self.rng.random() < 0.8 else app
        if action == "start":
            extra = ["-i", str(self.rng.randint(1, 3))] if app == "web" else []
            done = self.corral("start", self.scripts[app], "--name", app, *extra,
                               "--kill-timeout", "1000")
        elif action in ("stop", "restart", "delete"):
            done = self.corral(action, target)
        elif action == "reload":
            done = self.corral("reload", target)
        elif action == "scale":
            done = self.corral("scale", "web", self.rng.choice(["1", "2", "3", "+1", "-1"]))
        elif action == "kill_app":
            pids = [r["pid"] for r in rows if r["pid"]]
            if pids:
                try:
                    os.kill(self.rng.choice(pids), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return action
        elif action == "kill_daemon":
            pid = self.daemon_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return action
        else:
            done = self.corral("list")
        if done.returncode != 0:
            first = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "?"
            if "Traceback" in done.stderr or "internal error" in done.stderr:
                self.violations.append(f"step {self.steps}: {action}: {done.stderr[-500:]}")
            self.command_failures[f"{action}: {first[:90]}"] += 1
        return action

    # ---- invariants ------------------------------------------------------------------

    def ours(self) -> dict[int, str]:
        """pid -> state of the processes corral started: session leaders whose
        environment names this home and a CORRAL_PM_ID."""
        found = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                if os.getsid(pid) != pid:
                    continue
            except OSError:
                continue
            env = environ_of(pid)
            if env.get("CORRAL_HOME") == self.home and "CORRAL_PM_ID" in env:
                state = proc_state(pid)
                if state and state != "Z":
                    found[pid] = state
        return found

    def problems(self) -> list[str]:
        rows = self.jlist()
        self.max_listed = max(self.max_listed, len(rows))
        listed = [r["pid"] for r in rows if r["pid"]]
        found = self.ours()
        out = []
        doubles = [p for p, n in collections.Counter(listed).items() if n > 1]
        if doubles:
            out.append(f"pids listed twice: {doubles}")
        untracked = sorted(set(found) - set(listed))
        if untracked:
            out.append(f"running but not listed: {untracked}")
        dead = [r["name"] + f" {r['pid']}" for r in rows if r["pid"]
                and r["pid"] not in found and r["pm2_env"]["status"] == "online"]
        if dead:
            out.append(f"listed online but gone: {dead}")
        daemon = self.daemon_pid()
        zombies = [int(n) for n in os.listdir("/proc") if n.isdigit()
                   and ppid_of(int(n)) == daemon and proc_state(int(n)) == "Z"]
        if daemon and zombies:
            out.append(f"zombies of the daemon: {zombies}")
        return out

    def settle(self) -> None:
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            rows = self.jlist()
            if not any(r["pm2_env"]["status"] in ("launching", "stopping") for r in rows):
                return
            time.sleep(0.2)

    def check(self) -> None:
        self.settle()
        problems = self.problems()
        deadline = time.monotonic() + GRACE_S
        while problems and time.monotonic() < deadline:
            time.sleep(0.5)
            problems = self.problems()
        for problem in problems:
            self.violations.append(f"step {self.steps}: {problem}")
            common.say(f"VIOLATION at step {self.steps}: {problem}")

    def checkpoint(self) -> None:
        """Nothing to manage: the daemon's fds and RSS, to compare along the run."""
        self.corral("delete", "all")
        self.settle()
        time.sleep(1.0)
        daemon = self.daemon_pid()
        if not daemon:
            self.corral("ping")
            daemon = self.daemon_pid()
        try:
            fds = len(os.listdir(f"/proc/{daemon}/fd"))
            rss = common.rss_mib(daemon)
        except (OSError, common.BenchError):
            return
        point = {"step": self.steps, "t_s": round(time.monotonic() - self.t0, 1),
                 "daemon": daemon, "fds": fds, "rss_mib": round(rss, 1)}
        self.checkpoints.append(point)
        common.say(f"checkpoint {len(self.checkpoints)}: step {self.steps}, daemon {daemon} "
                   f"fds {fds}, rss {rss:.1f} MiB")
        first = self.checkpoints[0]
        if fds > first["fds"] + 3:
            self.violations.append(f"step {self.steps}: daemon fds {fds} with no app "
                                   f"(first checkpoint: {first['fds']})")

    # ---- the run -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.env["PORT"] = str(self.port)
        self.t0 = time.monotonic()
        end = self.t0 + self.args.minutes * 60
        self.corral("ping")
        self.checkpoint()
        try:
            while time.monotonic() < end:
                self.steps += 1
                action = self.act()
                self.counts[action] += 1
                self.check()
                if self.steps % self.args.checkpoint == 0:
                    self.checkpoint()
            self.checkpoint()
        finally:
            self.cleanup()
        rss = [c["rss_mib"] for c in self.checkpoints]
        same_daemon = [c for c in self.checkpoints if c["daemon"] == self.checkpoints[-1]
                       ["daemon"]]
        results = {
            "command": " ".join([os.path.relpath(sys.argv[0], common.REPO), *sys.argv[1:]]),
            "minutes": self.args.minutes, "seed": self.args.seed, "steps": self.steps,
            "actions": dict(self.counts), "max_listed_instances": self.max_listed,
            "violations": self.violations,
            "refused_commands": dict(self.command_failures.most_common(12)),
            "checkpoints": self.checkpoints,
            "fds_first_last_max": [self.checkpoints[0]["fds"], self.checkpoints[-1]["fds"],
                                   max(c["fds"] for c in self.checkpoints)],
            "rss_mib_first_last_max": [rss[0], rss[-1], max(rss)],
            "rss_mib_last_daemon_first_last": [same_daemon[0]["rss_mib"],
                                               same_daemon[-1]["rss_mib"]],
            "machine": common.machine_info(),
        }
        return results

    def cleanup(self) -> None:
        try:
            self.corral("kill", timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for pid in self.ours():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if not self.args.keep:
            subprocess.run(["rm", "-rf", self.tmp], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checkpoint", type=int, default=25,
                        help="steps between two measurements with no app (default 25)")
    parser.add_argument("--out", help="folder for the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    soak = Soak(args)
    common.say(f"soak for {args.minutes:g} min, seed {args.seed}, home {soak.home}")
    results = soak.run()
    print(json.dumps({k: v for k, v in results.items() if k not in ("checkpoints", "machine")},
                     indent=1))
    if args.out:
        path = common.write_json(args.out, "soak", results)
        common.say(f"results in {path}")
    return 1 if results["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
