"""The capture path of an instance's stdout and stderr.

Each stream goes through a named pipe (FIFO) in CORRAL_HOME/pipes. The child
gets the FIFO opened read-write, so it always holds a reader of its own: when
the daemon is gone, writes fill the pipe and then wait instead of failing with
EPIPE (which kills chatty PM2 children, reference/pm2.md §4.6). The daemon
opens the same FIFO read-write and non-blocking, so it never sees EOF between
restarts, and a new daemon simply reopens it and reads what waited there.

The daemon's reader is an event-loop callback: it reads what is there and
appends it to the log file. Nothing here blocks on the child.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat

log = logging.getLogger("corral.logs")

PIPE_SIZE = 1024 * 1024
READ_SIZE = 256 * 1024
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
    if path in ("/dev/null", "NULL"):
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


class StreamCapture:
    """Reads one FIFO and appends what arrives to one log file."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fifo_path: str, log_path: str) -> None:
        self.loop = loop
        self.fifo_path = fifo_path
        self.log_path = log_path
        self.bytes_written = 0
        self.write_error: str | None = None
        make_fifo(fifo_path)
        self.read_fd = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.read_fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        self.log_fd = open_log_file(log_path)
        loop.add_reader(self.read_fd, self._on_readable)

    def _on_readable(self) -> None:
        self.drain(max_reads=8)

    def drain(self, max_reads: int | None = None) -> None:
        """Move what waits in the pipe to the file (all of it, or up to max_reads chunks)."""
        reads = 0
        while max_reads is None or reads < max_reads:
            try:
                chunk = os.read(self.read_fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                return
            reads += 1
            self._write(chunk)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.log_fd, view)
            except OSError as exc:
                if self.write_error is None:
                    log.error("cannot write %s: %s", self.log_path, exc.strerror)
                self.write_error = f"{self.log_path}: {exc.strerror}"
                return
            self.bytes_written += written
            view = view[written:]
        self.write_error = None

    def reopen(self) -> None:
        """Open the log file again (it was moved away by an external rotation)."""
        self.drain()
        try:
            new_fd = open_log_file(self.log_path)
        except OSError as exc:
            self.write_error = f"{self.log_path}: {exc.strerror}"
            log.error("cannot reopen %s: %s", self.log_path, exc.strerror)
            return
        os.close(self.log_fd)
        self.log_fd = new_fd

    def close(self) -> None:
        self.loop.remove_reader(self.read_fd)
        try:
            self.drain()
        finally:
            os.close(self.read_fd)
            os.close(self.log_fd)
