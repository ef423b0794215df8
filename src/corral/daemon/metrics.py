"""cpu and memory of each app's whole process tree, read from /proc when asked.

On Linux one read of /proc/<pid>/stat gives a process's parent, cpu times and
resident size at once. Two ways to find each app's tree, chosen per call by
what it costs (BENCHMARKS.md, issue 17):

* the walk: from each app's root, its stat and its children
  (/proc/<pid>/task/<tid>/children, one file per thread), about 1.7 stat reads
  per app process; what a daemon of a few apps does on a machine of many
  processes;
* the scan: the stat of every process on the machine, the tree from the
  parents; cheaper once the apps are most of the machine's processes (a daemon
  of 1,000 apps), and what a kernel without the children files gets.

Elsewhere psutil does the scan. Nothing is sampled between requests: an idle
daemon reads nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# a walk reads each app process's stat and its children file (a lighter read): about
# 1.7 stat reads against the scan's one per process of the machine
WALK_COST = 1.7
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _read(path: str) -> bytes | None:
    """A small /proc file in one read (os.open/os.read: a third less than open(), no
    file object), or None if it is gone."""
    try:
        fd = os.open(path, _O_READ)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _children(pid: int, tid: int) -> bytes:
    """The pids of what thread tid of pid forked (its children file: to the end, a process
    may have thousands), b"" if none or gone."""
    try:
        fd = os.open(f"/proc/{pid}/task/{tid}/children", _O_READ)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):  # a page at a time: to the empty read
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _stat_fields(data: bytes) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (field 2, which may hold
    spaces and parentheses: cut after the last ')'); index 0 is field 3 (state)."""
    return data[data.rfind(b")") + 2:].split(b" ", 22)


def _proc_table() -> tuple[dict[int, int], dict[int, int], dict[int, int]] | None:
    """({pid: ppid}, {pid: cpu ticks}, {pid: rss pages}) of every process, or None where
    there is no /proc. Three dicts of ints rather than one of tuples: nothing here for
    the garbage collector to track; the loop is inlined (~15 µs a process, most of it
    the kernel's open and stat)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    pages: dict[int, int] = {}
    open_, read, close = os.open, os.read, os.close
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = open_(f"/proc/{name}/stat", _O_READ)
        except OSError:
            continue
        try:
            data = read(fd, 4096)
        except OSError:
            continue
        finally:
            close(fd)
        # the command name (field 2) may hold spaces and parentheses: after the last ')'
        fields = data[data.rfind(b")") + 2:].split(b" ", 22)
        try:
            pid = int(name)
            parents[pid] = int(fields[1])
            ticks[pid] = int(fields[11]) + int(fields[12])
            pages[pid] = int(fields[21])
        except (IndexError, ValueError):
            continue
    return parents, ticks, pages


def _psutil_table() -> tuple[dict[int, int], dict[int, float], dict[int, int]]:
    """_proc_table() from psutil (no /proc): cpu in seconds, rss in bytes."""
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    rss: dict[int, int] = {}
    for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info"]):
        info = proc.info
        if info["cpu_times"] is None or info["memory_info"] is None:
            continue
        times = info["cpu_times"]
        parents[proc.pid] = info["ppid"] or 0
        seconds[proc.pid] = times.user + times.system
        rss[proc.pid] = info["memory_info"].rss
    return parents, seconds, rss


def _sum_trees(parents: dict[int, int], cpu: dict[int, Any], rss: dict[int, int],
               roots: list[int]) -> dict[int, tuple[Any, int]]:
    """{root: (cpu, rss) of its tree}, in the table's units."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        if ppid in children:
            children[ppid].append(pid)
        else:
            children[ppid] = [pid]
    sums: dict[int, tuple[Any, int]] = {}
    for root in roots:
        if root not in parents:
            continue
        tree_cpu, tree_rss = cpu[root], rss[root]
        stack = children.get(root)
        if stack:
            stack = list(stack)
            while stack:
                pid = stack.pop()
                tree_cpu += cpu[pid]
                tree_rss += rss[pid]
                stack.extend(children.get(pid, ()))
        sums[root] = (tree_cpu, tree_rss)
    return sums


def _children_files() -> bool:
    """Does this kernel have /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)?"""
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


def _walk(roots: list[int]) -> dict[int, tuple[int, int]]:
    """{root: (cpu ticks, rss pages) of its tree}, reading only the trees: each
    process's stat, then the children of each of its threads."""
    sums: dict[int, tuple[int, int]] = {}
    for root in roots:
        cpu = rss = 0
        found = False
        stack = [root]
        seen = {root}
        while stack:
            pid = stack.pop()
            data = _read(f"/proc/{pid}/stat")
            if data is None:
                continue  # gone
            fields = _stat_fields(data)
            try:
                cpu += int(fields[11]) + int(fields[12])
                rss += int(fields[21])
                threads = int(fields[17])
            except (IndexError, ValueError):
                continue
            found = True
            if threads == 1:
                kids = _children(pid, pid)
            else:  # a child is listed under the thread that forked it
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                kids = b" ".join(_children(pid, int(tid)) for tid in tids)
            for kid in map(int, kids.split()):
                if kid not in seen:  # a pid used again meanwhile never loops
                    seen.add(kid)
                    stack.append(kid)
        if found:
            sums[root] = (cpu, rss)
    return sums


def _processes() -> int:
    """About how many processes the machine has: /proc's link count is that plus a
    constant (one stat() call, where a listing of /proc costs ~0.5 ms per thousand)."""
    try:
        return os.stat("/proc").st_nlink
    except OSError:
        return 0


class TreeMetrics:
    """Remembers the previous cpu sample of each root pid to give cpu % since then."""

    def __init__(self) -> None:
        # the previous sample: when, and each root's tree's cpu seconds then, with the
        # root's create time (a pid used again is another process); plain dicts of numbers
        self._at = 0.0
        self._cpu: dict[int, float] = {}
        self._created: dict[int, float] = {}
        self._walkable: bool | None = None  # the kernel has the children files

    def sample(self, roots: list[int]) -> tuple[dict[int, tuple[Any, int]], float, int]:
        """{root: (cpu, rss) of its tree}, and the units: seconds per cpu unit, bytes per
        rss unit."""
        if self._walkable is None:
            self._walkable = _children_files()
        if self._walkable and len(roots) * WALK_COST < _processes():
            return _walk(roots), 1 / _CLOCK_TICKS, _PAGE_SIZE
        table = _proc_table()
        if table is None:
            return _sum_trees(*_psutil_table(), roots), 1.0, 1
        return _sum_trees(*table, roots), 1 / _CLOCK_TICKS, _PAGE_SIZE

    def collect(self, roots: dict[int, float]) -> dict[int, tuple[float, int]]:
        """{root pid: create_time} -> {root pid: (cpu percent, rss bytes of the tree)}:
        cpu since the previous call (since the process started, the first time)."""
        sums = self.sample(list(roots)) if roots else ({}, 1.0, 1)
        trees, cpu_unit, rss_unit = sums
        now = time.monotonic()
        wall = time.time()
        since = now - self._at
        old_cpu, old_created = self._cpu, self._created
        cpu_now: dict[int, float] = {}
        result: dict[int, tuple[float, int]] = {}
        for root, created in roots.items():
            tree = trees.get(root)
            cpu_seconds, rss = (tree[0] * cpu_unit, tree[1] * rss_unit) if tree else (0.0, 0)
            base = old_cpu.get(root)
            if base is None or old_created[root] != created:
                elapsed = max(wall - created, 1e-3) if created else 0.0
                base = 0.0
            else:
                elapsed = since
            percent = (cpu_seconds - base) / elapsed * 100 if elapsed > 0 else 0.0
            result[root] = (round(max(percent, 0.0), 1), rss)
            cpu_now[root] = cpu_seconds
        self._at, self._cpu, self._created = now, cpu_now, dict(roots)
        return result


def create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0.0


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
