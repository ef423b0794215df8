"""What `start` (and `restart`, a file's apps) can know of its outcome (docs/cli.md,
"What start waits for"): the instances it launched are waited for, a cluster worker
until it listens (Supervisor.settled()), a fork instance through its first moments
(fork_window_ms(): min_uptime, at most FORK_WINDOW_MS); every one that exited
meanwhile without being asked to, or could not be spawned, is a failure, reported with
its last error lines, its log file and a hint (who holds a port in use, a module that
is missing, a program that ends).

Only reads: files (from the end, at most TAIL_BYTES) and, when a port is in use, the
kernel's socket table (psutil).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

from corral.model.names import NULL_LOG_PATHS
from corral.model.states import ERRORED, STOPPED

if TYPE_CHECKING:
    from corral.daemon.supervisor import Instance

FORK_WINDOW_MS = 1000
TAIL_BYTES = 16384
TAIL_LINES = 6
LINE_CHARS = 300
IN_USE = ("Address already in use", "EADDRINUSE", "[Errno 98]")
PORT_WORD = re.compile(r"(?:^|[:=])(\d{2,5})$")


class Mark:
    """Where an instance stood before the operation: its unasked exits, its error log's
    size."""

    def __init__(self, inst: Instance | None = None) -> None:
        self.crashes = inst.crashes if inst is not None else 0
        self.err_size = inst.files[1].size if inst is not None and len(inst.files) > 1 else 0

    def to_wire(self) -> list[int]:
        return [self.crashes, self.err_size]

    @classmethod
    def from_wire(cls, value: list[int]) -> Mark:
        """A mark a client got with `--no-wait` and hands back to `outcome`."""
        made = cls()
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            made.crashes, made.err_size = value
        return made


def mark(instances: list[Instance]) -> dict[int, Mark]:
    return {inst.record.pm_id: Mark(inst) for inst in instances}


def marks_to_wire(marks: dict[int, Mark]) -> dict[str, list[int]]:
    return {str(pm_id): m.to_wire() for pm_id, m in marks.items()}


def fork_window_ms(inst: Instance) -> int:
    return min(inst.record.spec.min_uptime_ms, FORK_WINDOW_MS)


async def wait(instances: list[Instance]) -> None:
    """Until each fork instance launched has run fork_window_ms() or exited (the
    cluster ones: Supervisor.settled(), awaited by the caller)."""
    now = time.time() * 1000
    waits = []
    for inst in instances:
        proc = inst.proc
        if proc is None or not proc.alive or inst.settled is not None \
                and not inst.settled.done():
            continue
        left = fork_window_ms(inst) - (now - inst.record.pm_uptime)
        if left > 0:
            waits.append(asyncio.wait_for(proc.exited.wait(), left / 1000))
    if waits:
        await asyncio.gather(*waits, return_exceptions=True)


def failures(instances: list[Instance], marks: dict[int, Mark],
             everyone: list[Instance]) -> list[dict[str, Any]]:
    """The instances that exited since their mark without being asked to (a finished
    run of an app whose autorestart is off, or a stop exit code, is no failure), or
    could not be spawned."""
    found = []
    for inst in instances:
        rec = inst.record
        spec = rec.spec
        before = marks.get(rec.pm_id)
        if inst.forgotten or before is None:
            continue
        crashed = inst.crashes > before.crashes
        if crashed:
            code = rec.exit_code
            if rec.status == STOPPED and code is not None and (
                    code == 0 or code in spec.stop_exit_codes):
                continue
            what = (f"was killed by {rec.exit_signal}" if rec.exit_signal else
                    f"exited with code {code}" if code is not None else "exited")
            what += f", {inst.last_run_ms / 1000:.1f} s after its start"
            if spec.exec_mode == "cluster" and not rec.listening:
                what += ", before it listened"
        elif rec.status == ERRORED and not inst.alive:
            what = rec.reason or "could not be started"
        else:
            continue
        lines = tail(rec.err_log_path, before.err_size)
        log_path = rec.err_log_path
        if not lines and rec.out_log_path not in NULL_LOG_PATHS:
            out = inst.files[0].size if inst.files else 0
            lines = tail(rec.out_log_path, max(out - TAIL_BYTES, 0))[-TAIL_LINES:]
            if lines:
                log_path = rec.out_log_path
        found.append({
            "pm_id": rec.pm_id, "name": spec.name, "status": rec.status,
            "restarts": rec.restart_time, "what": what, "exit_code": rec.exit_code,
            "lines": lines, "log": log_path, "logs_off": log_path in NULL_LOG_PATHS,
            "last_error": rec.last_error, "reason": rec.reason if rec.status == ERRORED
            else None, "hint": hint(inst, lines, everyone),
        })
    return found


def tail(path: str, since: int) -> list[str]:
    """The last TAIL_LINES non-empty lines written to a file after offset `since` (from
    0 if the file is now smaller: it was rotated or emptied); JSON lines give their
    message."""
    if not path or path in NULL_LOG_PATHS:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        start = since if since <= size else 0
        start = max(start, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        line = raw.rstrip()
        if line.startswith("{"):
            try:
                message = json.loads(line).get("message")
                if isinstance(message, str):
                    line = message.rstrip()
            except (ValueError, AttributeError):
                pass
        if line.strip():
            lines.append(line[:LINE_CHARS])
    runs: list[list[Any]] = []  # a crash loop writes the same line again and again
    for line in lines:
        if runs and runs[-1][0] == line:
            runs[-1][1] += 1
        else:
            runs.append([line, 1])
    return [text if count == 1 else f"{text}   (×{count})"
            for text, count in runs][-TAIL_LINES:]


def hint(inst: Instance, lines: list[str], everyone: list[Instance]) -> str | None:
    """What to do about the commonest failures, when the lines tell which it is."""
    rec = inst.record
    spec = rec.spec
    text = "\n".join(lines + [rec.last_error or ""])
    if any(s in text for s in IN_USE):
        return port_hint(inst, everyone)
    missing = re.search(r"No module named '([\w.]+)'", text)
    if missing:
        from corral.model.apps import worker_python

        python = (worker_python(spec, "python") if spec.exec_mode == "cluster"
                  else spec.interpreter or "the app's Python")
        return (f"the module {missing.group(1)} is not installed for {python}: install it "
                "there, or start the app with --interpreter /path/to/venv/bin/python")
    if rec.exit_code == 0 and not rec.exit_signal and spec.autorestart:
        return ("it ended on its own (code 0), and corral restarts what ends: a program "
                "meant to finish needs --no-autorestart (autorestart: false)")
    return None


def ports_of(inst: Instance) -> list[int]:
    """The ports an app may use: from a bind error, else the words of its command line
    and its PORT variable that look like one (8000, :8000, --port=8000)."""
    rec = inst.record
    found = re.search(r":(\d+)\b", (rec.last_error or "").split(": [Errno")[0])
    if found:
        return [int(found.group(1))]
    spec = rec.spec
    words = [*spec.args, *(spec.script.split() if spec.kind == "shell" else []),
             spec.env.get("PORT", "")]
    ports = []
    for word in words:
        match = PORT_WORD.search(word)
        if match and 0 < int(match.group(1)) < 65536 and int(match.group(1)) not in ports:
            ports.append(int(match.group(1)))
    return ports


def port_hint(inst: Instance, everyone: list[Instance]) -> str:
    ports = ports_of(inst)
    holders = []
    for port in ports:
        who = holder(port, everyone)
        if who:
            holders.append(f"port {port} is in use by {who}")
    if holders:
        return "; ".join(holders) + ": stop it, or give the app another port"
    named = f"port {ports[0]}" if len(ports) == 1 else "the port"
    return f"{named} is in use by another process: stop it, or give the app another port"


def holder(port: int, everyone: list[Instance]) -> str | None:
    """Who listens on a TCP port: an app of this daemon (which holds cluster listeners),
    or a process (pid and command line), if the kernel says."""
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr
            and c.laddr.port == port}
    if not pids:
        return None
    for pid in pids:
        if pid == os.getpid() or any(i.record.pid == pid for i in everyone):
            apps = sorted({i.record.spec.name for i in everyone
                           if i.record.pid == pid
                           or any(f":{port} " in a for a in i.record.listening)})
            if apps:
                return f"corral's app {', '.join(apps)}"
    pid = next((p for p in pids if p is not None), None)
    if pid is None:
        return "a process of another user"
    try:
        proc = psutil.Process(pid)
        command = " ".join(proc.cmdline())
        if "corral.daemon" in command:  # a cluster app of another CORRAL_HOME
            home = proc.environ().get("CORRAL_HOME", "~/.corral")
            return f"the corral daemon of CORRAL_HOME={home} (pid {pid})"
    except psutil.Error:
        command = ""
    return f"pid {pid}" + (f" ({command[:80]})" if command else "")
