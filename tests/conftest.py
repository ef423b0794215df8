"""Test harness: every test gets its own CORRAL_HOME, runs the real CLI against a
real daemon, and ends every process it started, by pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Corral:
    """Runs `python -m corral` with this test's CORRAL_HOME and remembers every pid seen."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.env = dict(os.environ, CORRAL_HOME=str(self.home), NO_COLOR="1")
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.seen_pids: set[int] = set()

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "corral", *args],
            env=env or self.env, cwd=cwd or self.tmp, capture_output=True, text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"corral {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def jlist(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.run("jlist").stdout)
        self.seen_pids.update(r["pid"] for r in rows if r["pid"])
        return rows

    def app(self, name: str = "", status: str | None = None) -> dict[str, Any] | None:
        for row in self.jlist():
            if (not name or row["name"] == name) and (status is None
                                                      or row["pm2_env"]["status"] == status):
                return row
        return None

    def wait_status(self, name: str, status: str, timeout: float = 15) -> dict[str, Any]:
        result: dict[str, Any] = wait_for(lambda: self.app(name, status), timeout,
                                          what=f"{name} to be {status}")
        return result

    def script(self, name: str, code: str) -> Path:
        path = self.tmp / name
        path.write_text(textwrap.dedent(code))
        return path

    def daemon_pid(self) -> int:
        return int((self.home / "corral.pid").read_text())

    def cleanup(self) -> None:
        state = self.home / "state.json"
        pid_file = self.home / "corral.pid"
        if pid_file.exists():
            try:
                self.seen_pids.add(int(pid_file.read_text()))
            except ValueError:
                pass
        if state.exists():
            try:
                for rec in json.loads(state.read_text())["instances"]:
                    if rec["pid"]:
                        self.seen_pids.add(rec["pid"])
            except (ValueError, KeyError):
                pass
        if self.home.exists():
            try:
                self.run("kill", check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.seen_pids:
            try:
                proc = psutil.Process(pid)
                tree = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                continue
            for p in tree:
                try:
                    if str(self.tmp) in " ".join(p.cmdline() + [p.cwd()]) or \
                            "corral" in " ".join(p.cmdline()):
                        p.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    harness = Corral(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


def pids_running(script: Path) -> list[int]:
    """pids of live (non-zombie) processes whose command line names this script."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if str(script) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
