"""Helpers for the cluster tests: a primary in a subprocess, and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"


class PrimaryProcess:
    def __init__(self, policy: str, count: int, target: Path | str, *args: str,
                 env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ, **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"),
                                                 full_env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "cluster_primary.py"), policy, str(count), str(target),
             *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=full_env)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.worker_pids: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("pid"):
                self.worker_pids.add(event["pid"])
            self.events.put(event)

    def _read_err(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_event(self, name: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        for event in self.seen:
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name} {match} within {timeout}s; seen "
                                     f"{self.seen}; stderr: {''.join(self.stderr)[-3000:]}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return event
            self.seen.append(event)

    def command(self, line: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """End the primary and every worker it started, by pid."""
        pids = set(self.worker_pids)
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                pids.add(child.pid)
        except psutil.Error:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def get(port: int, path: str = "/", timeout: float = 10.0,
        host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def pid_of(body: str) -> int:
    return int(body.strip().rsplit(" ", 1)[1])


WRK = shutil.which("wrk")
needs_wrk = pytest.mark.skipif(WRK is None, reason="wrk is not installed (apt-get install wrk)")


class Wrk:
    """A bounded wrk run in the background (127.0.0.1 only), parsed when it ends."""

    def __init__(self, port: int, seconds: int, close: bool) -> None:
        args = [str(WRK), "-t2", "-c64", f"-d{seconds}s", "--timeout", "5s"]
        if close:
            args += ["-H", "Connection: close"]
        self.proc = subprocess.Popen([*args, f"http://127.0.0.1:{port}/"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> dict[str, int]:
        out, _ = self.proc.communicate(timeout=120)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        total = re.search(r"(\d+) requests in", out)
        assert total, out
        result = {"requests": int(total.group(1)),
                  "non2xx": int(non2xx.group(1)) if non2xx else 0,
                  "errors": sum(int(g) for g in errors.groups()) if errors else 0}
        print(f"wrk: {result}")
        if result["errors"]:
            print(out)
        return result
