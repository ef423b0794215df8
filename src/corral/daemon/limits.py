"""The daemon's file descriptors: the limit it raises at start, what an app costs, and
whether a start still fits (docs/daemon.md, "Limits").

What one instance holds open in the daemon while it runs:

- its two FIFOs (stdout, stderr), read end: 2
- its log files, out and err (shared by the instances of a merged or combined log, and
  `/dev/null` once for every disabled stream): up to 2, plus 1 with a combined log_file
- the pidfd that tells the loop it exited: 1
- cluster mode or a Node app: the IPC channel's end: 1

so 5 for a fork app and 6 for a cluster worker, plus for a cluster app its listening
sockets (one per address) and its primary's I/O thread (an epoll fd and a wake-up
pipe: 3). While a process starts, 5 more for a moment (its FIFO ends, the channel's
other end and subprocess's error pipe). FDS_PER_INSTANCE counts 6 for all, and the
daemon keeps RESERVE free for connections, state writes and starts.
"""

from __future__ import annotations

import logging
import os
import resource
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.model.spec import AppSpec

log = logging.getLogger("corral.daemon")

FDS_PER_INSTANCE = 6
FDS_PER_CLUSTER_APP = 8  # the primary's I/O thread and a few listeners
RESERVE = 64  # for control connections, the state file, a start under way, the web server

_inherited: tuple[int, int] | None = None  # the soft and hard limits the daemon got


def raise_fd_limit() -> tuple[int, int]:
    """The soft RLIMIT_NOFILE up to the hard one (an app does not inherit it: see
    restore_child_limit). Returns (soft, hard) now in force."""
    global _inherited
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _inherited = (soft, hard)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft,
                        hard, exc)
    return soft, hard


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024 * 1024


def restore_child_limit(pid: int) -> None:
    """Give a new app the soft limit the daemon itself was given (what it would have had
    without corral; some programs still use select())."""
    if _inherited is None:
        return
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, _inherited)
    except (OSError, ValueError):
        pass


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def cost(spec: AppSpec, count: int, cluster_exists: bool = False) -> int:
    """The file descriptors `count` more instances of spec hold open in the daemon."""
    extra = FDS_PER_CLUSTER_APP if spec.exec_mode == "cluster" and not cluster_exists else 0
    return count * FDS_PER_INSTANCE + extra


def room_problem(needed: int) -> str | None:
    """Why `needed` more descriptors do not fit under the limit (with RESERVE kept), or None."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = open_fds()
    if used + needed + RESERVE <= soft:
        return None
    return (f"that needs about {needed} more file descriptors in the daemon, which has "
            f"{used} open of its limit of {soft} (and keeps {RESERVE} free); start fewer "
            "instances, or raise the limit (`ulimit -Hn` in the shell that starts corral, "
            "LimitNOFILE= in a systemd unit), then `corral kill` and start again")
