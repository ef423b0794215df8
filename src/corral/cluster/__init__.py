"""corral.cluster: Node's `cluster` module for Python.

    from corral import cluster

    if cluster.is_primary:
        for _ in range(2):
            cluster.fork()
        cluster.on("exit", lambda worker, code, sig: cluster.fork())
    else:
        serve_forever_on_port_3000()   # an unmodified server: its bind reaches the primary

A process is a worker when the primary started it (CORRAL_CLUSTER_WORKER_ID is
set); importing this module there connects it to the primary and installs the
hook on socket.socket.bind. `scheduling_policy` is "rr", "shared" or
"reuseport" (default from CORRAL_CLUSTER_SCHED_POLICY, else "shared"), fixed
at the first fork.
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

is_worker: bool = ENV_WORKER_ID in os.environ
is_primary: bool = not is_worker

primary: Primary | None = None
worker: Any = None  # cluster.worker inside a worker (corral.cluster.child.WorkerSide)

if is_worker:
    from corral.cluster import child as _child

    worker = _child.setup()
    workers: dict[int, Worker] = {}
else:
    primary = Primary()
    workers = primary.workers


def _need_primary(what: str) -> Primary:
    if primary is None:
        raise ClusterError(f"cluster.{what}() is for the primary; this process is worker "
                           f"{worker.id if worker else '?'}")
    return primary


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
    return primary if primary is not None else worker


class _ClusterModule(types.ModuleType):
    """Makes `cluster.scheduling_policy` and `cluster.settings` live attributes."""

    @property
    def scheduling_policy(self) -> str:
        if primary is not None:
            return primary.scheduling_policy
        return os.environ.get("CORRAL_CLUSTER_SCHED_POLICY", SCHED_SHARED)

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
        return dict(primary.settings) if primary is not None else {}


sys.modules[__name__].__class__ = _ClusterModule

__all__ = [
    "SCHED_REUSEPORT", "SCHED_RR", "SCHED_SHARED", "ClusterError", "Worker", "disconnect",
    "fork", "is_primary", "is_worker", "off", "on", "once", "setup_primary", "wait_for",
    "worker", "workers",
]
