"""The capture path of an instance's stdout and stderr, and the log files.

Each stream goes through a named pipe (FIFO) in CORRAL_HOME/pipes. The child
gets the FIFO opened read-write, so it always holds a reader of its own: when
the daemon is gone, writes fill the pipe and then wait instead of failing with
EPIPE (which kills chatty PM2 children; docs/logs.md). The daemon
opens the same FIFO read-write and non-blocking, so it never sees EOF between
restarts, and a new daemon simply reopens it and reads what waited there.

The daemon's reader is an event-loop callback: it reads what is there, cuts it
into lines (a line split across reads is joined again, never cut), stamps them
(log_date_format, or one JSON object a line) and appends them to the log
files, which rotate between lines. Nothing here blocks on the child, and
nothing is sent to followers unless someone follows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.model.logformat import compile_date_format, json_line
from corral.model.names import NULL_LOG_PATHS

log = logging.getLogger("corral.logs")

PIPE_SIZE = 1024 * 1024
READ_SIZE = 256 * 1024
PARTIAL_FLUSH_S = 0.5  # a line without its newline reaches the file this soon
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def make_fifo(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        return
    if not stat.S_ISFIFO(st.st_mode):
        os.unlink(path)
        os.mkfifo(path, 0o600)


def open_child_end(path: str) -> int:
    """The fd the child gets as stdout or stderr (read-write: never EPIPE)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    return fd


def open_log_file(path: str) -> int:
    """Open (creating its folder) a log file for appending; raise OSError if impossible."""
    if path in NULL_LOG_PATHS:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


@dataclass
class Rotation:
    max_bytes: int = 0  # 0: no size rotation
    retain: int = 0  # rotated files kept (0: keep all)
    compress: bool = False
    daily: bool = False


class LogFile:
    """One file on disk, maybe shared by several streams (merge_logs, the combined log).

    Writers append whole lines; it rotates only between lines, so a rotation never
    cuts or repeats one."""

    def __init__(self, path: str, rotation: Rotation) -> None:
        self.path = path
        self.rotation = rotation
        self.fd = open_log_file(path)
        self.size = self._current_size()
        self.day = time.localtime().tm_yday
        self.mid_line = False
        self.at_line_start = True  # the last byte written is a newline (or none was)
        self.cut = False  # a write failed: what the file ends with may be a cut line
        self.error: str | None = None
        self.dropped_bytes = 0
        self.written_bytes = 0
        self.refs = 0

    def _current_size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return 0

    def write(self, data: bytes, ends_line: bool = True) -> None:
        if self.cut and not self.at_line_start and data:
            # a write error (a full disk) cut the last line short or lost its end: end
            # that fragment, so that it is never merged with what comes now
            data = b"\n" + data
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                if self.error is None:
                    log.error("cannot write %s: %s", self.path, exc.strerror)
                self.error = f"{self.path}: {exc.strerror} ({errno.errorcode.get(exc.errno or 0)})"
                self.dropped_bytes += len(view)
                self.cut = True
                return
            if written:
                self.at_line_start = view[written - 1:written] == b"\n"
            self.size += written
            self.written_bytes += written
            view = view[written:]
        self.cut = False
        self.error = None
        self.mid_line = not ends_line
        if not self.mid_line and self._due():
            self.rotate()

    def _due(self) -> bool:
        rotation = self.rotation
        if self.path in NULL_LOG_PATHS:
            return False
        if rotation.max_bytes and self.size >= rotation.max_bytes:
            return True
        return rotation.daily and time.localtime().tm_yday != self.day and self.size > 0

    def rotate(self) -> None:
        """Start a new file now; number (and gzip) the old one in the rotation thread.

        Only that one thread touches the numbered files, in order, so a burst that
        rotates again while a gzip runs cannot shift or delete the wrong file."""
        moving = f"{self.path}.rotating-{time.time_ns()}"
        try:
            os.replace(self.path, moving)
        except OSError as exc:
            log.error("cannot rotate %s: %s", self.path, exc.strerror)
            return
        self.reopen()
        _ROTATIONS.submit(_finish_rotation, self.path, moving, self.rotation)

    def reopen(self) -> None:
        try:
            new_fd = open_log_file(self.path)
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror}"
            log.error("cannot reopen %s: %s", self.path, exc.strerror)
            return
        os.close(self.fd)
        self.fd = new_fd
        self.size = self._current_size()
        self.day = time.localtime().tm_yday

    def truncate(self) -> None:
        try:
            os.ftruncate(self.fd, 0)
            self.size = 0
            self.at_line_start, self.cut = True, False
        except OSError as exc:
            log.error("cannot flush %s: %s", self.path, exc.strerror)

    def close(self) -> None:
        os.close(self.fd)


_ROTATIONS = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="corral-rotate")


def finish_rotations() -> None:
    """Wait for the rotations under way (before the daemon exits without its usual end)."""
    _ROTATIONS.shutdown(wait=True)


def _finish_rotation(path: str, moving: str, rotation: Rotation) -> None:
    """path.N -> path.N+1 (gzipped ones too), the new one becomes path.1, keep `retain`."""
    try:
        suffix = ".gz" if rotation.compress else ""
        numbered = []
        n = 1
        while True:
            found = [f"{path}.{n}{ext}" for ext in ("", ".gz") if os.path.exists(
                f"{path}.{n}{ext}")]
            if not found:
                break
            numbered.append((n, found))
            n += 1
        for n, names in reversed(numbered):
            for name in names:
                os.replace(name, f"{path}.{n + 1}{name[len(f'{path}.{n}'):]}")
        if rotation.compress:
            import gzip
            import shutil

            with open(moving, "rb") as src, gzip.open(f"{path}.1.gz.part", "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            os.replace(f"{path}.1.gz.part", f"{path}.1{suffix}")
            os.unlink(moving)
        else:
            os.replace(moving, f"{path}.1")
        if rotation.retain:
            n = rotation.retain + 1
            while any(os.path.exists(f"{path}.{n}{ext}") for ext in ("", ".gz")):
                for ext in ("", ".gz"):
                    try:
                        os.unlink(f"{path}.{n}{ext}")
                    except FileNotFoundError:
                        pass
                n += 1
    except OSError as exc:
        log.error("cannot finish the rotation of %s: %s", path, exc)


class LogFiles:
    """The open log files by path: instances that write to one file share it."""

    def __init__(self) -> None:
        self.files: dict[str, LogFile] = {}

    def acquire(self, path: str, rotation: Rotation) -> LogFile:
        existing = self.files.get(path)
        if existing is None:
            existing = self.files[path] = LogFile(path, rotation)
        existing.refs += 1
        return existing

    def release(self, file: LogFile) -> None:
        file.refs -= 1
        if file.refs <= 0 and self.files.get(file.path) is file:
            del self.files[file.path]
            file.close()


@dataclass
class LineFormat:
    date_format: str | None = None
    json: bool = False

    def stamp(self) -> Callable[[float], str] | None:
        return compile_date_format(self.date_format) if self.date_format else None


class StreamCapture:
    """Reads one FIFO and appends what arrives, line by line, to its log files."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fifo_path: str, stream: str,
                 files: list[LogFile], fmt: LineFormat, pm_id: int, app_name: str,
                 publish: Callable[[dict[str, Any]], None] | None = None,
                 following: Callable[[], bool] = lambda: False) -> None:
        self.loop = loop
        self.fifo_path = fifo_path
        self.stream = stream
        self.files = files
        self.fmt = fmt
        self.date = fmt.stamp()
        self.pm_id = pm_id
        self.app_name = app_name
        self.publish = publish
        self.following = following
        self.partial = b""  # the start of a line whose newline has not come yet
        self.mid_line = False  # the files hold the start of the current line already
        self.flush_timer: asyncio.TimerHandle | None = None
        self.lines_ended = 0  # how many times a read completed lines (see _partial_due)
        make_fifo(fifo_path)
        self.read_fd = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.read_fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        loop.add_reader(self.read_fd, self._on_readable)

    @property
    def write_error(self) -> str | None:
        return next((f.error for f in self.files if f.error), None)

    def _on_readable(self) -> None:
        self.drain(max_reads=8)

    def drain(self, max_reads: int | None = None) -> None:
        """Move what waits in the pipe to the files (all of it, or up to max_reads chunks)."""
        reads = 0
        while max_reads is None or reads < max_reads:
            try:
                chunk = os.read(self.read_fd, READ_SIZE)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            if not chunk:
                return
            reads += 1
            self.feed(chunk, time.time())

    def feed(self, chunk: bytes, now: float) -> None:
        data = self.partial + chunk if self.partial else chunk
        cut = data.rfind(b"\n") + 1
        complete, self.partial = data[:cut], data[cut:]
        if complete:
            self.lines_ended += 1
            self._emit(complete, now, ends_line=True)
        if self.partial and self.flush_timer is None:
            self.flush_timer = self.loop.call_later(PARTIAL_FLUSH_S, self._partial_due)

    def _partial_due(self) -> None:
        """The line in progress waited PARTIAL_FLUSH_S. A loop busy with a burst can run
        this timer while the rest of the line waits in the pipe: read first, and flush only
        a line still incomplete (a follower, corral-runtime's output, would see it cut)."""
        self.flush_timer = None
        ended = self.lines_ended
        self.drain(max_reads=1)
        if self.lines_ended == ended:
            self.flush_partial()

    def flush_partial(self, end_line: bool = False) -> None:
        """Write the line in progress now (it is continued later without a new stamp), or
        complete it with a newline (end_line: the app has exited)."""
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if self.partial and (end_line or not self.fmt.json):
            data = self.partial + (b"\n" if end_line else b"")
            self.partial = b""
            self._emit(data, time.time(), ends_line=end_line)
        elif end_line and self.mid_line:
            self._emit(b"\n", time.time(), ends_line=True)

    def _emit(self, data: bytes, now: float, ends_line: bool) -> None:
        lines = None
        if self.fmt.json:
            lines = data.splitlines()
            out = b"".join(json_line(line, self.stream, self.pm_id, self.app_name, now,
                                     self.date) for line in lines)
        elif self.date is not None:
            prefix = f"{self.date(now)}: ".encode()
            ends = data.endswith(b"\n")
            lines = (data[:-1] if ends else data).split(b"\n")
            first = lines[0] if self.mid_line else prefix + lines[0]
            out = b"\n".join([first, *(prefix + line for line in lines[1:])])
            if ends:
                out += b"\n"
        else:
            out = data
        for file in self.files:
            file.write(out, ends_line)
        self.mid_line = not ends_line
        if self.publish is not None and self.following():
            for line in (lines if lines is not None else data.splitlines()):
                self.publish({"pm_id": self.pm_id, "name": self.app_name,
                              "type": self.stream, "at": now,
                              "line": line.decode("utf-8", errors="replace")})

    def hand_over(self) -> dict[str, Any]:
        """Stop reading for a new daemon (`corral update`): move what waits in the pipe to
        the files, and return where the current line stands, for take_over()."""
        self.loop.remove_reader(self.read_fd)
        self.drain()
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        state = {"partial": self.partial.decode("latin-1"), "mid_line": self.mid_line}
        self.partial = b""
        return state

    def take_over(self, state: dict[str, Any]) -> None:
        """Continue the line the previous daemon was in (see hand_over)."""
        self.partial = str(state.get("partial", "")).encode("latin-1") + self.partial
        self.mid_line = bool(state.get("mid_line", False))
        if self.partial and self.flush_timer is None:
            self.flush_timer = self.loop.call_later(PARTIAL_FLUSH_S, self._partial_due)

    def exited(self) -> None:
        """The process ended: take what it wrote last, and complete its last line."""
        self.drain()
        self.flush_partial(end_line=True)

    def close(self) -> None:
        self.loop.remove_reader(self.read_fd)
        try:
            self.drain()
            self.flush_partial(end_line=True)
        finally:
            os.close(self.read_fd)
