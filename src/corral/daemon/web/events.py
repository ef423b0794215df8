"""What happened to the apps, for the dashboard's events list: a bounded ring fed by
Supervisor.on_event (every status change from transition(), and the cause of every
restart: manual, or the trigger that fired: watch, memory, cron, health).

Kept by every daemon, with or without the dashboard (a few hundred small dicts),
so that a crash before the page was opened is still listed. Nothing here blocks:
the last line of a crashed app's error log is read from the end of the file
(at most TAIL_BYTES), which the daemon has finished writing by then (the
capture drains the pipe before the exit is handled).
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.model.names import NULL_LOG_PATHS
from corral.model.restart import describe_exit
from corral.model.states import ERRORED, LAUNCHING, ONLINE, STOPPED, WAITING

if TYPE_CHECKING:
    from corral.daemon.supervisor import Instance
    from corral.model.spec import InstanceRecord

RING_SIZE = 500
TAIL_BYTES = 8192
LINE_MAX = 500

# a trigger's reason (daemon/triggers.py) starts with what fired it
CAUSES = (("watch", "watch"), ("memory", "memory"), ("cron", "cron"), ("unhealthy", "health"))


def cause_of(reason: str) -> str:
    """"watch: app.py changed" -> watch; "memory 300mb ..." -> memory; manual -> manual."""
    for prefix, cause in CAUSES:
        if reason.startswith(prefix):
            return cause
    return "manual" if reason.startswith("manual") else "other"


def last_line(path: str) -> str | None:
    """The last non-empty line of a log file (its message, for JSON lines), or None."""
    if not path or path in NULL_LOG_PATHS:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, TAIL_BYTES, max(size - TAIL_BYTES, 0))
    except OSError:
        return None
    finally:
        os.close(fd)
    for raw in reversed(data.decode("utf-8", errors="replace").splitlines()):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                message = json.loads(line).get("message")
                if isinstance(message, str):
                    line = message
            except (ValueError, AttributeError):
                pass
        return line[:LINE_MAX]
    return None


class Events:
    """The ring, and whoever wants to know when it (or any status) changes."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.seq = 0
        # called after every status change, with the new event or None (the dashboard)
        self.listeners: list[Callable[[dict[str, Any] | None], None]] = []

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.ring if e["seq"] > seq]

    def on_event(self, inst: Instance, kind: str, details: dict[str, Any]) -> None:
        """Supervisor.on_event."""
        rec = inst.record
        event = None
        if kind == "restart":
            reason = str(details.get("cause") or "manual")
            cause = cause_of(reason)
            text = "restart requested" if cause == "manual" else reason
            if details.get("action") == "reload":
                text = "reload requested"
            event = self._add(rec, "restart", text, cause=cause)
        elif kind == "status":
            event = self._status(rec, str(details.get("was")), details.get("reason"))
        for listener in list(self.listeners):
            listener(event)

    def _status(self, rec: InstanceRecord, was: str, reason: str | None
                ) -> dict[str, Any] | None:
        status = rec.status
        asked = bool(reason) and str(reason).endswith("requested")
        if was in (ONLINE, LAUNCHING) and status in (LAUNCHING, WAITING, ERRORED, STOPPED) \
                and not asked:
            if reason is None and status == STOPPED:
                # restore: it ended while no daemon was watching
                return self._add(rec, "exit", "not running when the daemon started: it "
                                 "ended while the daemon was down")
            if status == ERRORED and was == LAUNCHING and reason \
                    and not reason.startswith(("exited", "killed")):
                return self._add(rec, "errored", reason)  # could not be spawned
            how = describe_exit(rec)
            then = {LAUNCHING: f"{how}; restarted at once",
                    ERRORED: reason or how,
                    WAITING: reason or how,
                    STOPPED: reason or how}[status]
            err_path = rec.err_log_path if rec.err_log_path not in NULL_LOG_PATHS \
                else rec.log_path
            return self._add(rec, "crash", then, exit_code=rec.exit_code,
                             exit_signal=rec.exit_signal, last_error=last_line(err_path))
        if status == ERRORED:
            return self._add(rec, "errored", reason or "errored")
        if status == STOPPED and reason == "stop requested":
            return self._add(rec, "stop", "stopped")
        if status == STOPPED and reason == "delete requested":
            return self._add(rec, "delete", "deleted")
        if status == LAUNCHING and was in (STOPPED, ERRORED) \
                and rec.reason != "restart requested":
            return self._add(rec, "start", "started")
        return None

    def _add(self, rec: InstanceRecord, kind: str, text: str, **extra: Any) -> dict[str, Any]:
        self.seq += 1
        event = {"seq": self.seq, "at": time.time(), "pm_id": rec.pm_id,
                 "name": rec.spec.name, "namespace": rec.spec.namespace, "kind": kind,
                 "text": text, **extra}
        self.ring.append(event)
        return event
