"""The daemon's own log, CORRAL_HOME/corral.log (docs/daemon.md, "Logs and rotation").

The client starts the daemon with corral.log as its stdout and stderr; log lines go
to stderr. Two guards keep the file bounded:

- rotation by size, as the apps' logs: past MAX_BYTES (CORRAL_DAEMON_LOG_MAX_SIZE
  overrides, in bytes) corral.log becomes corral.log.1 (.1 becomes .2, ...; KEEP
  kept) and a new corral.log takes fds 1 and 2, so a stray traceback lands there too;
- repeated warnings and errors held back: the same line (logger, level, text) at most
  REPEATS times per WINDOW_S, then one line saying how many were held back. A loop that
  fails the same way (an accept error, a worker that keeps knocking) cannot flood the
  disk; the INFO lines (every status change of every app) are all kept.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.store.home import Home

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3
REPEATS = 5
WINDOW_S = 60.0
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RepeatFilter(logging.Filter):
    """Lets a line through at most REPEATS times per WINDOW_S; the next one after the
    window says how many were held back."""

    def __init__(self, repeats: int = REPEATS, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.repeats = repeats
        self.window_s = window_s
        self.seen: dict[tuple[str, int, str], list[float]] = {}  # [window start, count, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # the apps' history (every status change) is never held back
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's to report
            return True
        key = (record.name, record.levelno, text[:500])
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is None or now - entry[0] > self.window_s:
            held = int(entry[2]) if entry is not None else 0
            self.seen[key] = [now, 1, 0]
            if len(self.seen) > 1000:  # forget old lines: the table stays small
                for old in [k for k, v in self.seen.items() if now - v[0] > self.window_s]:
                    del self.seen[old]
            if held:
                record.msg = f"{text} (and {held} more like it in the last " \
                             f"{self.window_s:.0f} s, held back)"
                record.args = None
            return True
        entry[1] += 1
        if entry[1] <= self.repeats:
            return True
        if entry[1] == self.repeats + 1:
            record.msg = f"{text} (repeated; more like it are held back for " \
                         f"{self.window_s:.0f} s)"
            record.args = None
            return True
        entry[2] += 1
        return False


class RotatingStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr; when stderr is corral.log and it grows past max_bytes, rotates
    it and moves fds 1 and 2 to the new file."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        super().__init__(sys.stderr)
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    def _is_ours(self) -> bool:
        try:
            a, b = os.fstat(2), os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        try:
            size = os.fstat(2).st_size
        except OSError:
            return
        if self.max_bytes and size >= self.max_bytes and self._is_ours():
            self.rotate()

    def rotate(self) -> None:
        try:
            for n in range(self.keep - 1, 0, -1):
                if os.path.exists(f"{self.path}.{n}"):
                    os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # a full disk, say: the file keeps growing, nothing else breaks
        sys.stderr.flush()
        sys.stdout.flush()
        os.dup2(fd, 1, inheritable=False)
        os.dup2(fd, 2, inheritable=False)
        os.close(fd)


def setup_logging(home: Home) -> None:
    """The daemon's root logger: INFO and up, to stderr (corral.log), rotated, repeats
    held back."""
    path = home.daemon_log
    try:
        max_bytes = int(os.environ.get("CORRAL_DAEMON_LOG_MAX_SIZE", MAX_BYTES))
    except ValueError:
        max_bytes = MAX_BYTES
    handler = RotatingStderrHandler(path, max_bytes)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
