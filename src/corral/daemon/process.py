"""One OS process of an app: its handle (Proc), its exit seen by the event loop, and the
end of its whole process tree (signal, wait, SIGKILL) — docs/lifecycle.md, "Stopping".
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
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


# Stops that begin together (in one turn of the event loop) share one scan of the process
# table: `delete all` of 1,000 apps scanned every process of the machine once per app
# (psutil's children()), which was 45 s of its 50 (bench/scale.py). A scan serves the
# turn it was made in, and for TREE_SCAN_MAX_AGE_S at most.
TREE_SCAN_MAX_AGE_S = 0.5
_tree_scan: tuple[float, dict[int, list[int]]] | None = None


def _forget_tree_scan() -> None:
    global _tree_scan
    _tree_scan = None


def _children_by_parent(max_age_s: float) -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process, from a scan of this turn of the event loop at
    most max_age_s old."""
    global _tree_scan
    now = time.monotonic()
    if _tree_scan is not None and now - _tree_scan[0] <= max_age_s:
        return _tree_scan[1]
    if _tree_scan is None:
        try:
            asyncio.get_running_loop().call_soon(_forget_tree_scan)
        except RuntimeError:  # no loop: the scan serves max_age_s
            pass
    by_parent: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc: psutil's own walk
        for proc in psutil.process_iter(["ppid"]):
            by_parent.setdefault(proc.info["ppid"] or 0, []).append(proc.pid)
        names = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
            # the command (field 2) may hold spaces and ')': the ppid follows the last ')'
            ppid = int(data[data.rfind(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        by_parent.setdefault(ppid, []).append(int(name))
    _tree_scan = (now, by_parent)
    return by_parent


def descendants_or_none(pid: int, max_age_s: float = TREE_SCAN_MAX_AGE_S
                        ) -> list[psutil.Process]:
    """The process tree under pid (as psutil's children(recursive=True), from a scan of
    the process table at most max_age_s old), or [] when it cannot be read (EMFILE, ...):
    a stop then signals the process group alone, never fails for it."""
    try:
        root_time = psutil.Process(pid).create_time()
        by_parent = _children_by_parent(max_age_s)
    except (psutil.Error, OSError):
        return []
    tree: list[psutil.Process] = []
    seen = {pid}
    stack = [pid]
    while stack:
        for child in by_parent.get(stack.pop(), ()):
            if child in seen:
                continue
            seen.add(child)
            try:
                proc = psutil.Process(child)
                if proc.create_time() >= root_time:  # older than pid: a reused pid
                    tree.append(proc)
                    stack.append(child)
            except (psutil.Error, OSError):
                pass
    return tree


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
