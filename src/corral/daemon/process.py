"""One OS process of an app: its handle (Proc), its exit seen by the event loop, and the
end of its whole process tree (signal, wait, SIGKILL) — docs/lifecycle.md, "Stopping".
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from corral.cluster.node import NodeChannel
    from corral.cluster.primary import Worker


class SpawnError(Exception):
    """The process could not be started (the message says why)."""


class Proc:
    """One OS process of an instance (during a reload an instance has two for a moment)."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None,
                 create_time: float = 0.0) -> None:
        self.pid = pid
        self.popen = popen
        self.create_time = create_time
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self.worker: Worker | None = None  # its cluster channel, in cluster mode
        self.channel: NodeChannel | None = None  # a fork-mode Node app's IPC channel
        self.disconnected = asyncio.Event()  # a Node worker closed its channel
        self.listening = asyncio.Event()
        self.ready = asyncio.Event()
        self.addresses: list[dict[str, Any]] = []

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()


def watch_exit(loop: asyncio.AbstractEventLoop, proc: Proc, on_exit: Callable[[], None]
               ) -> None:
    """Call on_exit on the loop once the process exits: a pidfd the loop watches (no
    polling), or where pidfd is missing a thread that blocks until the exit."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        _watch_exit_thread(loop, proc, on_exit)
        return

    def ready() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        on_exit()

    loop.add_reader(fd, ready)


def _watch_exit_thread(loop: asyncio.AbstractEventLoop, proc: Proc,
                       on_exit: Callable[[], None]) -> None:
    def wait() -> None:
        if proc.popen is not None:
            proc.popen.wait()
        else:
            try:
                psutil.Process(proc.pid).wait()
            except psutil.NoSuchProcess:
                pass
        loop.call_soon_threadsafe(on_exit)

    threading.Thread(target=wait, daemon=True).start()


def descendants_or_none(pid: int) -> list[psutil.Process]:
    """The process tree under pid, or [] when it cannot be read (EMFILE, ...): a stop
    then signals the process group alone, never fails for it."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []


def kill_group(pid: int) -> None:
    """SIGKILL to the process group of pid (an app is the leader of its own session)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def signal_tree(pid: int, tree: list[psutil.Process], sig: signal.Signals) -> None:
    """The signal to the process group of pid and to every process of the tree."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in tree:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


async def wait_tree(loop: asyncio.AbstractEventLoop, proc: Proc, tree: list[psutil.Process],
                    timeout: float) -> bool:
    """Wait until the main process and every process of the tree are gone."""
    deadline = loop.time() + timeout
    try:
        await asyncio.wait_for(proc.exited.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    while alive_in(tree):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def alive_in(tree: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of a tree snapshot that still run (zombies count as gone)."""
    alive = []
    for proc in tree:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            pass
    return alive
