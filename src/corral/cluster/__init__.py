"""corral.cluster: Node's `cluster` module for Python.

    from corral import cluster

    if cluster.is_primary:
        for _ in range(2):
            cluster.fork()
        cluster.on("exit", lambda worker, code, sig: cluster.fork())
    else:
        serve_forever_on_port_3000()   # an unmodified server: its bind reaches the primary

A process is a worker when the primary started it (CORRAL_CLUSTER_WORKER_ID is
set); its bootstrap (`python -m corral.cluster.bootstrap`) connects it to the
primary and installs the hook on socket.socket.bind before the app runs.
Importing this module does nothing else: no file descriptor, no thread, no
error whatever the environment; the primary is built on first use.
`scheduling_policy` is "rr", "shared" or "reuseport" (default from
CORRAL_CLUSTER_SCHED_POLICY, else "shared"), fixed at the first fork.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from typing import Any

from corral.cluster.handles import POLICIES
from corral.cluster.primary import (
    ENV_WORKER_ID,
    ClusterError,
    Primary,
    Worker,
)

SCHED_RR = "rr"
SCHED_SHARED = "shared"
SCHED_REUSEPORT = "reuseport"

_primary: Primary | None = None


def _is_worker() -> bool:
    from corral.cluster import child

    return child.WORKER is not None or ENV_WORKER_ID in os.environ


def _worker() -> Any:
    """cluster.worker inside a worker (connected on first use if the bootstrap did not)."""
    if not _is_worker():
        return None
    from corral.cluster import child

    return child.setup()


def _need_primary(what: str) -> Primary:
    if _is_worker():
        raise ClusterError(f"cluster.{what}() is for the primary; this process is worker "
                           f"{_worker().id}")
    global _primary
    if _primary is None:
        _primary = Primary()
    return _primary


def fork(env: dict[str, str] | None = None) -> Worker:
    """Start a worker (Node's cluster.fork): it runs settings.exec, this script by default."""
    return _need_primary("fork").fork(env)


def setup_primary(**settings: Any) -> None:
    """exec=, args=, exec_argv=, cwd=, silent=, stdio=, env=, listen=, python= for later forks."""
    _need_primary("setup_primary").setup_primary(**settings)


def disconnect(timeout: float | None = None) -> None:
    """Disconnect every worker, wait for them to exit (up to timeout), close the listeners."""
    _need_primary("disconnect").disconnect(timeout)


def on(event: str, listener: Callable[..., Any]) -> Callable[..., Any]:
    """Cluster events: fork, online, listening, disconnect, exit, message, setup."""
    return _emitter().on(event, listener)


def once(event: str, listener: Callable[..., Any]) -> Callable[..., Any]:
    return _emitter().once(event, listener)


def off(event: str, listener: Callable[..., Any]) -> None:
    _emitter().off(event, listener)


def wait_for(event: str, predicate: Callable[..., bool] | None = None,
             timeout: float | None = None) -> tuple[Any, ...]:
    """Block until a cluster event happens (with args that satisfy predicate)."""
    return _emitter().wait_for(event, predicate, timeout)


def _emitter() -> Any:
    return _worker() if _is_worker() else _need_primary("on")


class _ClusterModule(types.ModuleType):
    """Live attributes: is_primary, is_worker, primary, worker, workers, scheduling_policy,
    settings."""

    @property
    def is_worker(self) -> bool:
        return _is_worker()

    @property
    def is_primary(self) -> bool:
        return not _is_worker()

    @property
    def primary(self) -> Primary | None:
        return None if _is_worker() else _need_primary("primary")

    @property
    def worker(self) -> Any:
        return _worker()

    @property
    def workers(self) -> dict[int, Worker]:
        return {} if _is_worker() else _need_primary("workers").workers

    @property
    def scheduling_policy(self) -> str:
        if _is_worker():
            return os.environ.get("CORRAL_CLUSTER_SCHED_POLICY", SCHED_SHARED)
        return _need_primary("scheduling_policy").scheduling_policy

    @scheduling_policy.setter
    def scheduling_policy(self, value: str) -> None:
        p = _need_primary("scheduling_policy")
        if p._frozen_policy:
            raise ClusterError("scheduling_policy is fixed once the first worker is forked")
        if value not in POLICIES:
            raise ClusterError(f"unknown scheduling policy {value!r}; valid policies: "
                               f"{', '.join(POLICIES)}")
        p.scheduling_policy = value

    @property
    def settings(self) -> dict[str, Any]:
        return {} if _is_worker() else dict(_need_primary("settings").settings)


sys.modules[__name__].__class__ = _ClusterModule

__all__ = [
    "SCHED_REUSEPORT", "SCHED_RR", "SCHED_SHARED", "ClusterError", "Worker", "disconnect",
    "fork", "is_primary", "is_worker", "off", "on", "once", "setup_primary", "wait_for",
    "worker", "workers",
]
