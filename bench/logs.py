#!/usr/bin/env python3
"""Log capture benchmark (issue 6): corral and PM2 side by side, in one run.

    python bench/logs.py            # full run: 3 runs of each config, about 7 minutes
    python bench/logs.py --quick    # smoke test: 1 run, 50,000 lines a burst

What it does:
  * makes a temp folder; installs PM2 from the npm registry into it
    (`npm install --prefix <tmp>/pm2 pm2@7`) and corral, non-editable, into a
    fresh venv (`pip install` of a copy of this repository), byte-compiled, with
    PYTHONDONTWRITEBYTECODE removed from the environment (as bench/core.py does);
  * runs one corral daemon (CORRAL_HOME=<tmp>/corral_home) and one PM2 daemon
    (PM2_HOME=<tmp>/pm2_home) at the same time;
  * one burst = one `start` of bench/apps/burst.py (copied to <tmp>/app/burst.py,
    run by the venv's python in both): each instance writes N lines of 100 bytes,
    `<instance> <seq:07d> xxx...`, as fast as it can, in 8 KiB os.write calls, and
    exits. `corral start burst.py -n burst --interpreter <py> --no-autorestart
    [-i K --exec-mode fork]` and `pm2 start burst.py --name burst --interpreter <py>
    --no-autorestart [-i K]` (PM2 runs a non-Node interpreter in fork mode), plus
    `--log-date-format "YYYY-MM-DD HH:mm:ss"` (both) or `--time` (PM2) for the
    dated variants;
  * measures, for each burst: the time from the start command until every line is
    on disk (the harness follows the log files and counts newlines), the daemon's
    CPU seconds (utime+stime of the pid in corral.pid / pm2.pid, from just before
    the start command until all lines are on disk, the apps have exited and 0.5 s
    more have passed), its peak RSS, and, parsing every out file: lines present
    exactly once, missing, duplicated, malformed (cut or merged), out of order,
    and (dated variants) lines without their date;
  * configs: 4 instances x 200,000 lines and 1 x 200,000, each plain and dated;
    3 runs of each, the managers' order rotating from run to run; then, as an
    extra, corral alone with `--log-max-size 10M` (lines across rotated files).
    Between bursts: `delete burst`, then the log files are removed;
  * prints Markdown tables with medians (min-max) and the goals; writes every raw
    sample to bench/out/logs-<timestamp>.json (git-ignored);
  * stops only what it started: `corral kill`, `pm2 kill`, then SIGKILL of any
    pid it recorded (daemons and apps) that still runs a program of the temp folder.

Standard library only (the harness reads /proc itself); Linux only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from common import (
    REPO,
    BenchError,
    ManagerBench,
    add_end_options,
    alive,
    bench_env,
    cpu_seconds,
    fmt_values,
    git_info,
    install_corral,
    install_pm2,
    kill_managers,
    loadavg_span,
    machine_info,
    new_parser,
    run_bench,
    run_cmd,
    save_results,
    say,
    system_cpu,
    unmet_needs,
    venv_versions,
    wait_quiet,
)

APP_FILE = os.path.join(REPO, "bench", "apps", "burst.py")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
DATE_FORMAT = "YYYY-MM-DD HH:mm:ss"
LINE_BYTES = 100
APP_NAME = "burst"
POLL_S = 0.005  # how often the harness looks at the log files during a burst
SETTLE_S = 2.0  # apps gone and no new byte for this long: the burst is over, lines missing


# ---- /proc ---------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    """Resident pages from /proc/<pid>/statm, in MiB (the other benches read VmRSS)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB / 1024


# ---- statistics ----------------------------------------------------------------------------

def fmt(values: list[float], digits: int) -> str:
    """median (min-max); one value when there is one or when they are all equal."""
    return fmt_values(values, digits, collapse_equal=True)


# ---- configs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    key: str  # "corral", "pm2", "pm2 --time", ...
    manager: str  # corral | pm2
    flags: tuple[str, ...]
    dated: bool


@dataclass
class Config:
    key: str
    instances: int
    lines: int
    variants: list[Variant]
    extra: bool = False
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def make_configs(lines: int, with_extra: bool) -> list[Config]:
    plain = [Variant("corral", "corral", (), False), Variant("pm2", "pm2", (), False)]
    dated = [Variant("corral --log-date-format", "corral", ("--log-date-format", DATE_FORMAT),
                     True),
             Variant("pm2 --log-date-format", "pm2", ("--log-date-format", DATE_FORMAT), True),
             Variant("pm2 --time", "pm2", ("--time",), True)]
    label = f"{lines // 1000}k" if lines % 1000 == 0 else str(lines)
    configs = [Config(f"4 x {label}", 4, lines, plain),
               Config(f"4 x {label}, dated", 4, lines, dated),
               Config(f"1 x {label}", 1, lines, plain),
               Config(f"1 x {label}, dated", 1, lines, dated)]
    if with_extra:
        size = "10M" if lines >= 150_000 else "1M"
        configs.append(Config(f"4 x {label}, rotation (extra)", 4, lines, [
            Variant(f"corral --log-max-size {size}", "corral", ("--log-max-size", size),
                    False)], extra=True))
    return configs


# ---- following and parsing the log files ---------------------------------------------------

class Follower:
    """Counts the newlines written to the files of a folder whose name starts with a prefix.

    Files are followed by inode, so a file renamed by a rotation keeps being read."""

    def __init__(self, folder: str, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        self.open: dict[int, int] = {}  # inode -> fd
        self.newlines = 0
        self.bytes = 0

    def poll(self) -> int:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            names = []
        for name in names:
            if not name.startswith(self.prefix):
                continue
            path = os.path.join(self.folder, name)
            try:
                ino = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            if ino not in self.open:
                try:
                    self.open[ino] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
        for fd in self.open.values():
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                self.bytes += len(chunk)
                self.newlines += chunk.count(b"\n")
        return self.newlines

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


LINE_RE = re.compile(rb"(?:(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d): )?(\d+) (\d{7}) (x+)")
FILE_RE = re.compile(r"^(?P<base>.+?\.log)(?:\.(?P<n>\d+)|\.rotating-(?P<ns>\d+))?$")


def log_groups(folder: str, prefix: str) -> dict[str, list[str]]:
    """{base file name: its files, oldest first} (rotated .N, then .rotating-*, then base)."""
    groups: dict[str, list[tuple[tuple[int, int], str]]] = {}
    for name in os.listdir(folder):
        if not name.startswith(prefix):
            continue
        m = FILE_RE.match(name)
        if m is None:
            groups.setdefault(name, []).append(((3, 0), name))
            continue
        if m.group("n"):
            order = (0, -int(m.group("n")))
        elif m.group("ns"):
            order = (1, int(m.group("ns")))
        else:
            order = (2, 0)
        groups.setdefault(m.group("base"), []).append((order, name))
    return {base: [os.path.join(folder, n) for _, n in sorted(items)]
            for base, items in sorted(groups.items())}


@functools.lru_cache(maxsize=8)
def expected_output(instance: int, lines: int) -> bytes:
    """What bench/apps/burst.py writes (the same expression)."""
    head = f"{instance} "
    pad = "x" * (LINE_BYTES - len(head) - 9)
    return "".join(f"{head}{seq:07d} {pad}\n" for seq in range(lines)).encode()


STAMPS_RE = re.compile(rb"(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d: \n)*")


def perfect_instance(data: bytes, instances: int, lines: int, dated: bool) -> int | None:
    """The instance whose whole output `data` is, line for line (with a date on each line
    if dated), or None: then the slow path counts what is wrong."""
    if dated:
        parts = data.split(b"\n")
        if parts[-1]:
            return None
        parts.pop()
        if len(parts) != lines or not STAMPS_RE.fullmatch(
                b"".join([p[:21] + b"\n" for p in parts])):
            return None
        data = b"\n".join([p[21:] for p in parts]) + b"\n"
    head = data[:data.find(b" ")]
    if not head.isdigit() or int(head) >= instances:
        return None
    instance = int(head)
    return instance if data == expected_output(instance, lines) else None


def check_lines(folder: str, prefix: str, instances: int, lines: int,
                dated: bool) -> dict[str, Any]:
    """Parse every out file: each expected (instance, seq) should be there exactly once."""
    counts = bytearray(instances * lines)
    malformed = out_of_order = unstamped = foreign = no_final_newline = 0
    samples: list[str] = []
    files: dict[str, Any] = {}
    for base, paths in log_groups(folder, prefix).items():
        top: dict[int, int] = {}  # instance -> highest seq seen so far in this file group
        group_lines = 0
        blobs = []
        for path in paths:
            with open(path, "rb") as f:
                blobs.append(f.read())
        perfect = perfect_instance(b"".join(blobs), instances, lines, dated)
        if perfect is not None:  # fast path: exactly the app's output, in order
            counts[perfect * lines:(perfect + 1) * lines] = b"\1" * lines
            files[base] = {"files": [os.path.basename(p) for p in paths], "lines": lines,
                           "instances": [perfect]}
            continue
        for data in blobs:
            if not data:
                continue
            parts = data.split(b"\n")
            if parts[-1]:
                no_final_newline += 1
            else:
                parts.pop()
            group_lines += len(parts)
            for line in parts:
                m = LINE_RE.fullmatch(line)
                # `<instance> <seq> x...`: LINE_BYTES with the newline; a date only if asked
                if (m is None or len(m.group(2)) + len(m.group(4)) + 10 != LINE_BYTES
                        or (m.group(1) is not None and not dated)):
                    malformed += 1
                    if len(samples) < 4:
                        samples.append(repr(line[:70] + (b"..." if len(line) > 70 else b""))
                                       + f" ({len(line)} bytes)")
                    continue
                if dated and m.group(1) is None:
                    unstamped += 1  # a whole line without its date: counted, and flagged
                inst, seq = int(m.group(2)), int(m.group(3))
                if inst >= instances or seq >= lines:
                    foreign += 1
                    continue
                idx = inst * lines + seq
                if counts[idx] < 255:
                    counts[idx] += 1
                if seq < top.get(inst, -1):
                    out_of_order += 1
                else:
                    top[inst] = seq
        files[base] = {"files": [os.path.basename(p) for p in paths], "lines": group_lines,
                       "instances": sorted(top)}
    once = counts.count(1)
    missing = counts.count(0)
    # lines missing at the end of an instance's output (lost when it exited), the others
    # (cut or merged into a malformed line)
    missing_at_end = sum(lines - len(counts[i * lines:(i + 1) * lines].rstrip(b"\0"))
                         for i in range(instances))
    duplicated = sum(c - 1 for c in counts if c > 1)
    mixed = sum(len(v["instances"]) > 1 for v in files.values())
    return {"expected": instances * lines, "once": once, "missing": missing,
            "missing_at_end": missing_at_end,
            "duplicated": duplicated, "malformed": malformed, "out_of_order": out_of_order,
            "unstamped": unstamped, "foreign": foreign, "no_final_newline": no_final_newline,
            "files_with_several_instances": mixed, "malformed_samples": samples, "files": files}


# ---- the bench -----------------------------------------------------------------------------

class Bench(ManagerBench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, "corral-bench-logs-")
        self.homes = {"corral": os.path.join(self.tmp, "corral_home"),
                      "pm2": os.path.join(self.tmp, "pm2_home")}
        self.app = os.path.join(self.tmp, "app", "burst.py")
        self.stamps = os.path.join(self.tmp, "stamps")
        self.env = bench_env(["PYTHONDONTWRITEBYTECODE"], CORRAL_HOME=self.homes["corral"],
                             PM2_HOME=self.homes["pm2"], PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.app_pids: set[int] = set()
        self.results: dict[str, Any] = {"bursts": []}

    # -- helpers

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd(argv, env=env or self.env, timeout=timeout, cwd=self.tmp, check=check)

    def logs_dir(self, manager: str) -> str:
        return os.path.join(self.homes[manager], "logs")

    def start_argv(self, variant: Variant, instances: int) -> list[str]:
        if variant.manager == "corral":
            argv = [self.corral, "start", self.app, "-n", APP_NAME, "--interpreter", self.python,
                    "--no-autorestart"]
            if instances > 1:
                argv += ["-i", str(instances), "--exec-mode", "fork"]
        else:
            argv = [self.pm2, "start", self.app, "--name", APP_NAME, "--interpreter",
                    self.python, "--no-autorestart"]
            if instances > 1:
                argv += ["-i", str(instances)]
        return argv + list(variant.flags)

    # -- set-up

    def setup(self) -> None:
        say(f"temp folder {self.tmp}")
        os.makedirs(os.path.dirname(self.app))
        shutil.copyfile(APP_FILE, self.app)

        pm2_version = install_pm2(self.run, self.pm2_prefix, self.args.pm2_version)

        say("python -m venv + pip install (non-editable) ...")
        install_corral(self.run, self.tmp, self.venv)
        info = venv_versions(self.run, self.venv)
        node = self.run(["node", "--version"]).stdout.strip()
        self.results["machine"] = machine_info(os_name=os_pretty_name()) | {
            "python": info[0], "node": node, "pm2": pm2_version, "corral": info[1],
            "corral_git": git_info()}
        say(f"python {info[0]}, node {node}, pm2 {pm2_version}, corral {info[1]}")

    def start_daemons(self) -> None:
        self.start_daemons_pinged(self.homes["corral"], self.homes["pm2"])

    def wait_quiet(self) -> dict[str, float]:
        """Wait (up to --quiet-wait s) until the rest of the machine uses less than
        --quiet-limit % of one core (over 0.3 s; steal time counts as busy)."""
        return wait_quiet(system_cpu, self.args.quiet_limit, self.args.quiet_wait)

    # -- one burst

    def app_stamps(self, folder: str) -> tuple[list[int], list[dict[str, Any]]]:
        pids, done = [], []
        for name in os.listdir(folder):
            if name.endswith(".start"):
                pids.append(int(name[:-6]))
            elif name.isdigit():
                with open(os.path.join(folder, name)) as f:
                    done.append(json.load(f))
        return pids, done

    def burst(self, config: Config, variant: Variant, run_no: int) -> dict[str, Any]:
        a = self.args
        manager = variant.manager
        dpid = self.daemon_pids[manager]
        if not alive(dpid):
            raise BenchError(f"{manager} daemon (pid {dpid}) is gone")
        folder = self.logs_dir(manager)
        prefix = f"{APP_NAME}-"
        os.makedirs(folder, exist_ok=True)
        left = [n for n in os.listdir(folder) if n.startswith(prefix)]
        if left:
            raise BenchError(f"{manager}: log files left from the previous burst: {left}")
        stamp = os.path.join(self.stamps, f"{len(self.results['bursts']):03d}")
        os.makedirs(stamp)
        env = dict(self.env, BENCH_STAMP_DIR=stamp, BURST_LINES=str(config.lines),
                   BURST_LINE_BYTES=str(LINE_BYTES), BURST_CHUNK=str(a.chunk))
        expected = config.instances * config.lines
        argv = self.start_argv(variant, config.instances)
        quiet = self.wait_quiet()

        follower = Follower(folder, f"{APP_NAME}-out")
        peak_rss = rss_mib(dpid)
        sys0 = system_cpu()
        cpu0 = cpu_seconds(dpid)
        t0_wall = time.time()
        t0 = time.perf_counter()
        start = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=120, cwd=self.tmp)
        start_call_s = time.perf_counter() - t0
        if start.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {start.returncode}:\n"
                             f"{start.stdout[-2000:]}{start.stderr[-2000:]}")
        t_complete = cpu_complete = None
        last_count, t_last_growth = -1, 0.0
        outcome = "complete"
        polls = 0
        while True:
            count = follower.poll()
            now = time.perf_counter() - t0
            polls += 1
            if polls % 10 == 0:
                peak_rss = max(peak_rss, rss_mib(dpid))
            if count != last_count:
                last_count, t_last_growth = count, now
            if count >= expected:
                t_complete = now
                cpu_complete = cpu_seconds(dpid) - cpu0
                break
            pids, _ = self.app_stamps(stamp)
            self.app_pids.update(pids)
            gone = len(pids) >= config.instances and not any(alive(p) for p in pids)
            if gone and now - t_last_growth > SETTLE_S:
                outcome = "settled short"
                break
            if now > a.deadline:
                outcome = "deadline"
                break
            time.sleep(POLL_S)
        # the daemon's CPU: until the apps have exited and the daemon has handled it
        wait_until = time.monotonic() + 15
        while time.monotonic() < wait_until:
            pids, _ = self.app_stamps(stamp)
            self.app_pids.update(pids)
            if len(pids) >= config.instances and not any(alive(p) for p in pids):
                break
            time.sleep(0.02)
        apps_exited_s = time.perf_counter() - t0
        time.sleep(0.5)
        count = follower.poll()
        peak_rss = max(peak_rss, rss_mib(dpid))
        cpu_settled = cpu_seconds(dpid) - cpu0
        sys1 = system_cpu()
        wall_s = time.perf_counter() - t0
        follower.close()
        pids, done = self.app_stamps(stamp)
        app_ran = [d["t_written"] - d["t_start"] for d in done]
        app_spawned = [d["t_start"] - t0_wall for d in done]
        app_written = [d["t_written"] - t0_wall for d in done]

        # what the manager says (exec mode, status, log paths), then delete and parse
        rows = json.loads(self.run([self.cli(manager), "jlist"]).stdout)
        seen = [{"pm_id": r.get("pm_id"), "exec_mode": r["pm2_env"].get("exec_mode"),
                 "status": r["pm2_env"].get("status"),
                 "out": os.path.relpath(r["pm2_env"].get("pm_out_log_path") or "",
                                        self.homes[manager])}
                for r in rows if r.get("name") == APP_NAME]
        self.run([self.cli(manager), "delete", APP_NAME])
        time.sleep(0.2)
        check = check_lines(folder, f"{APP_NAME}-out", config.instances, config.lines,
                            variant.dated)
        err_bytes = 0
        for name in os.listdir(folder):
            if name.startswith(f"{APP_NAME}-error") or name.startswith(f"{APP_NAME}-err"):
                err_bytes += os.path.getsize(os.path.join(folder, name))
        for name in os.listdir(folder):
            if name.startswith(prefix):
                os.unlink(os.path.join(folder, name))
        busy_pct = 100.0 * (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])
        result = {
            "config": config.key, "variant": variant.key, "manager": manager, "run": run_no,
            "argv": [os.path.basename(argv[0])] + [
                "<venv python>" if x == self.python else "burst.py" if x == self.app else x
                for x in argv[1:]],
            "expected_lines": expected, "outcome": outcome,
            "time_to_disk_s": t_complete, "time_to_last_byte_s": t_last_growth,
            "start_call_s": start_call_s, "apps_exited_s": apps_exited_s, "wall_s": wall_s,
            "newlines_seen": count, "bytes_seen": follower.bytes,
            "daemon_cpu_s": cpu_settled, "daemon_cpu_at_complete_s": cpu_complete,
            "daemon_peak_rss_mib": peak_rss, "machine_busy_pct_of_all_cores": busy_pct,
            "quiet": quiet, "app_write_s": app_ran, "app_start_after_s": app_spawned,
            "app_written_after_s": app_written, "apps_seen": len(pids),
            "manager_rows": seen, "stderr_bytes": err_bytes, "check": check,
        }
        lost = check["missing"] + check["malformed"]
        say(f"  {config.key:>24} | {variant.key:<26} run {run_no}: "
            + (f"{t_complete:6.2f} s to disk" if t_complete is not None
               else f"{outcome} after {t_last_growth:.2f} s ({count}/{expected} lines)")
            + f", daemon cpu {cpu_settled:5.2f} s, rss {peak_rss:5.1f} MiB, once "
            f"{check['once']}/{expected}, missing {check['missing']}, malformed "
            f"{check['malformed']}, dup {check['duplicated']}, order {check['out_of_order']}"
            + (f", unstamped {check['unstamped']}" if variant.dated else "")
            + (" <- LOST/CUT" if lost and manager == "corral" else ""))
        if not check["files"]:
            raise BenchError(f"{manager}: no out file in {folder}")
        return result

    # -- the whole run

    def main(self) -> dict[str, Any]:
        a = self.args
        self.setup()
        self.start_daemons()
        configs = make_configs(a.lines, not a.no_extra)
        self.results["settings"] = {"runs": a.runs, "lines": a.lines, "line_bytes": LINE_BYTES,
                                    "chunk": a.chunk, "date_format": DATE_FORMAT,
                                    "deadline_s": a.deadline, "poll_s": POLL_S,
                                    "settle_s": SETTLE_S, "quiet_limit": a.quiet_limit,
                                    "quiet_wait": a.quiet_wait}
        self.results["configs"] = [{"key": c.key, "instances": c.instances, "lines": c.lines,
                                    "extra": c.extra, "variants": [v.key for v in c.variants]}
                                   for c in configs]
        time.sleep(1)
        for config in configs:
            say(f"config {config.key}: {len(config.variants)} variants x {a.runs} runs")
            for run_no in range(1, a.runs + 1):
                shift = (run_no - 1) % len(config.variants)
                order = config.variants[shift:] + config.variants[:shift]
                for variant in order:
                    r = self.burst(config, variant, run_no)
                    self.results["bursts"].append(r)
                    config.results.setdefault(variant.key, []).append(r)
        return self.results

    # -- cleanup

    def cleanup(self) -> None:
        say("cleanup: corral kill, pm2 kill, then any recorded pid left")
        kill_managers([self.corral, self.pm2], self.env, cwd=self.tmp)
        pids = set(self.daemon_pids.values()) | self.app_pids
        if os.path.isdir(self.stamps):
            for burst in os.listdir(self.stamps):
                for name in os.listdir(os.path.join(self.stamps, burst)):
                    if name.endswith(".start"):
                        pids.add(int(name[:-6]))
        self.end_cleanup(pids)


# ---- machine info ----------------------------------------------------------------------------

def os_pretty_name() -> str:
    """PRETTY_NAME of /etc/os-release, else platform.platform()."""
    os_name = platform.platform()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return os_name


# ---- report ----------------------------------------------------------------------------------

COUNT_KEYS = ("missing", "malformed", "duplicated", "out_of_order", "unstamped")


def per_run(values: list[int]) -> str:
    return " / ".join(str(v) for v in values)


def report(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in r["bursts"]:
        by.setdefault((b["config"], b["variant"]), []).append(b)
    out: list[str] = []
    goals: list[dict[str, Any]] = []

    def time_cell(bs: list[dict[str, Any]]) -> str:
        complete = [b["time_to_disk_s"] for b in bs if b["time_to_disk_s"] is not None]
        if len(complete) == len(bs):
            return fmt(complete, 2)
        last = [b["time_to_last_byte_s"] for b in bs]
        return f"never all ({len(bs) - len(complete)} of {len(bs)} runs); last byte " \
               f"{fmt(last, 2)}"

    def time_value(bs: list[dict[str, Any]]) -> float:
        return statistics.median([b["time_to_disk_s"] if b["time_to_disk_s"] is not None
                                  else b["time_to_last_byte_s"] for b in bs])

    out.append("Each cell: median (min-max) over the runs; line counts: one value per run; "
               "missing (n): n of them at the end of an instance's output.\n")
    out.append("| config | manager | time to disk (s) | last app started at (s) | daemon CPU (s) "
               "| daemon peak RSS (MiB) | app writing (s) | once | missing | malformed "
               "| duplicated | out of order | no date |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in r["configs"]:
        for v in c["variants"]:
            bs = by.get((c["key"], v), [])
            if not bs:
                continue
            dated = "date" in v or "--time" in v
            ck = [b["check"] for b in bs]
            app_w = [max(b["app_write_s"]) for b in bs if b["app_write_s"]]
            app_s = [max(b["app_start_after_s"]) for b in bs if b["app_start_after_s"]]
            out.append(
                f"| {c['key']} | {v} | {time_cell(bs)} | "
                f"{fmt(app_s, 2) if app_s else 'n/a'} | "
                f"{fmt([b['daemon_cpu_s'] for b in bs], 2)} | "
                f"{fmt([b['daemon_peak_rss_mib'] for b in bs], 1)} | "
                f"{fmt(app_w, 2) if app_w else 'n/a'} | "
                f"{per_run([x['once'] for x in ck])} | "
                + " / ".join(f"{x['missing']}" + (f" ({x['missing_at_end']})" if x["missing"]
                                                  else "") for x in ck) + " | "
                + " | ".join(per_run([x[k] for x in ck]) for k in COUNT_KEYS[1:4])
                + f" | {per_run([x['unstamped'] for x in ck]) if dated else '-'} |")

    # goals
    out.append("")
    out.append("| goal | config | corral | PM2 | holds |")
    out.append("|---|---|---|---|---|")
    for c in r["configs"]:
        corral_keys = [v for v in c["variants"] if v.startswith("corral")]
        pm2_keys = [v for v in c["variants"] if v.startswith("pm2")]
        for ck_ in corral_keys:
            bs = by.get((c["key"], ck_), [])
            if not bs:
                continue
            lost = [b["check"]["missing"] + b["check"]["malformed"] for b in bs]
            dup = [b["check"]["duplicated"] + b["check"]["out_of_order"] for b in bs]
            holds = not any(lost)
            goals.append({"goal": "0 lines lost or cut (corral)", "config": c["key"],
                          "corral": ck_, "lost_or_cut_per_run": lost, "holds": holds})
            out.append(f"| 0 lines lost or cut ({ck_}) | {c['key']} | missing+malformed per run: "
                       f"{per_run(lost)} (duplicated+out of order: {per_run(dup)}) | | "
                       f"{'yes' if holds else 'NO'} |")
            for pk in pm2_keys:
                ps = by.get((c["key"], pk), [])
                if not ps:
                    continue
                ccpu = statistics.median([b["daemon_cpu_s"] for b in bs])
                pcpu = statistics.median([b["daemon_cpu_s"] for b in ps])
                holds = ccpu <= 0.5 * pcpu
                goals.append({"goal": "daemon CPU <= 0.5 x PM2", "config": c["key"],
                              "corral": ck_, "pm2": pk, "corral_s": ccpu, "pm2_s": pcpu,
                              "ratio": ccpu / pcpu if pcpu else None, "holds": holds})
                ratio = f"{ccpu / pcpu:.2f}" if pcpu else "n/a"
                out.append(f"| daemon CPU ≤ 0.5 × PM2 (`{pk}`) | {c['key']} | {ccpu:.2f} s | "
                           f"{pcpu:.2f} s (ratio {ratio}) | {'yes' if holds else 'NO'} |")
                ct, pt = time_value(bs), time_value(ps)
                caveat = "" if all(b["time_to_disk_s"] is not None for b in ps) else \
                    " (PM2 never had every line: time of its last byte)"
                holds = ct <= pt and all(b["time_to_disk_s"] is not None for b in bs)
                goals.append({"goal": "time to disk <= PM2", "config": c["key"],
                              "corral": ck_, "pm2": pk, "corral_s": ct, "pm2_s": pt,
                              "ratio": ct / pt if pt else None, "holds": holds})
                out.append(f"| time to disk ≤ PM2 (`{pk}`) | {c['key']} | {ct:.2f} s | "
                           f"{pt:.2f} s{caveat} (ratio {ct / pt:.2f}) | "
                           f"{'yes' if holds else 'NO'} |")
    busy = {m: [b["machine_busy_pct_of_all_cores"] for b in r["bursts"] if b["manager"] == m]
            for m in ("corral", "pm2")}
    quiet = [b["quiet"]["busy_pct_before"] for b in r["bursts"]]
    if busy["corral"] and busy["pm2"]:
        out.append("")
        out.append(f"Whole machine busy during the bursts (% of all cores, the bursts included): "
                   f"corral's {fmt(busy['corral'], 0)}, PM2's {fmt(busy['pm2'], 0)}. Other jobs "
                   f"just before a burst (% of one core): {fmt(quiet, 0)}.")
    samples: list[tuple[str, str, list[str]]] = []
    for b in r["bursts"]:
        s = b["check"]["malformed_samples"]
        if s and (b["config"], b["variant"]) not in {(x[0], x[1]) for x in samples}:
            samples.append((b["config"], b["variant"], s[:2]))
    if samples:
        out.append("")
        out.append("Malformed lines, first examples:")
        for cfg, var, s in samples:
            out.append(f"* {cfg}, {var}: " + "; ".join(f"`{x}`" for x in s))
    return "\n".join(out), goals


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="1 run of each config, 50,000 lines a burst (smoke test)")
    parser.add_argument("--runs", type=int, help="runs of each config (default 3)")
    parser.add_argument("--lines", type=int, help="lines per instance (default 200000)")
    parser.add_argument("--chunk", type=int, default=8192,
                        help="bytes per os.write of the app, 0 = one line per write "
                        "(default 8192)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="give up on a burst after this many seconds (default 60)")
    parser.add_argument("--no-extra", action="store_true",
                        help="skip the extra config (corral with --log-max-size)")
    parser.add_argument("--quiet-limit", type=float, default=30.0,
                        help="before each burst, wait until the rest of the machine uses less "
                        "than this %% of one core (default 30)")
    parser.add_argument("--quiet-wait", type=float, default=10.0,
                        help="longest wait for a quiet machine before a burst, in s (default 10)")
    add_end_options(parser)
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.lines = args.lines or (50_000 if args.quick else 200_000)
    if unmet_needs("bench/logs.py"):
        return 2

    results, failed = run_bench(Bench, args, "bench/logs.py",
                                [a for a in sys.argv[1:] if not a.startswith("--out")])
    text = ""
    if results.get("configs"):
        text, results["goals"] = report(results)
    status = save_results(results, failed, args.out, "logs", partial=text)
    if status is not None:
        return status
    m = results["machine"]
    print(f"\ncorral {m['corral']} vs PM2 {m['pm2']}; nproc {m['nproc']}, python {m['python']}, "
          f"node {m['node']}; {args.lines} lines of {LINE_BYTES} bytes per instance, "
          f"{args.chunk}-byte writes; whole run {results['wall_s']:.0f} s; "
          f"{loadavg_span(results)}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
