"""Cluster mode in the daemon: one corral.cluster Primary per app.

The daemon is the primary, as PM2's daemon is for Node: the app's listeners
live here for the app's whole life, so a worker's crash, restart or reload
never closes them. This module builds a cluster worker's command line and
environment and turns the primary's events (they happen on its I/O thread)
into calls on the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import socket
from collections.abc import Callable
from typing import Any

from corral.cluster.node import channel_pair, node_env
from corral.cluster.primary import (
    ENV_IPC_FD,
    ENV_POLICY,
    ENV_WORKER_ID,
    Channel,
    Primary,
    Worker,
    check_policy,
)
from corral.model.apps import worker_python
from corral.model.names import DEFAULT_POLICY
from corral.model.spec import AppSpec

log = logging.getLogger("corral.cluster")



def worker_argv(spec: AppSpec, python: str) -> list[str]:
    """The command line of one cluster worker: our bootstrap, then the app. A shell
    command goes through sh, so its variables are expanded as in fork mode."""
    interpreter = worker_python(spec, python)
    if spec.kind == "shell":
        prefix = " ".join(shlex.quote(w) for w in [interpreter, *spec.interpreter_args, "-m",
                                                    "corral.cluster.bootstrap", "--"])
        return ["/bin/sh", "-c", f'exec {prefix} {spec.script} "$@"', "sh", *spec.args]
    boot = [interpreter, *spec.interpreter_args, "-m", "corral.cluster.bootstrap"]
    if spec.kind == "module":
        return [*boot, "-m", "--", spec.script, *spec.args]
    return [*boot, "--", spec.exec_path, *spec.args]


def import_path(home_root: str) -> str:
    """A folder holding only `corral` (a link to this package), for PYTHONPATH: the
    bootstrap then imports under any Python (an app's venv without corral in it)
    without the rest of corral's environment leaking into the app."""
    import corral

    folder = os.path.join(home_root, "pylib")
    link = os.path.join(folder, "corral")
    target = os.path.dirname(os.path.abspath(corral.__file__))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not os.path.islink(link) or os.readlink(link) != target:
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
        os.symlink(target, link)
    return folder


class ClusterApp:
    """The primary of one app, wired to the daemon's loop."""

    def __init__(self, name: str, policy: str | None, loop: asyncio.AbstractEventLoop,
                 on_event: Callable[..., None], default: str = DEFAULT_POLICY) -> None:
        self.name = name
        self.policy = check_policy(policy or os.environ.get(ENV_POLICY) or default)
        self.loop = loop
        self.primary = Primary(policy=self.policy, standalone=False)
        self.primary.setup_primary(exec="", args=[])
        for event in ("online", "listening", "message", "disconnect", "bind_error"):
            self.primary.on(event, self._relay(event, on_event))

    def _relay(self, event: str, on_event: Callable[..., None]) -> Callable[..., None]:
        def relay(worker: Worker, *args: Any) -> None:
            self.loop.call_soon_threadsafe(on_event, event, worker, *args)
        return relay

    def prepare(self, env: dict[str, str]) -> tuple[int, socket.socket, socket.socket]:
        """A worker id and a channel for the next worker; fills its environment."""
        worker_id = self.primary.next_worker_id()
        parent_end, child_end = Channel.pair()
        env[ENV_WORKER_ID] = str(worker_id)
        env[ENV_IPC_FD] = str(child_end.fileno())
        env[ENV_POLICY] = self.policy
        env["CORRAL_CLUSTER_ORPHAN"] = "keep"
        return worker_id, parent_end, child_end

    def prepare_node(self, env: dict[str, str]) -> tuple[int, socket.socket, socket.socket]:
        """The same for a `node` worker: Node's own channel variables (NODE_UNIQUE_ID,
        NODE_CHANNEL_FD), so an unmodified Node app is a cluster worker of the daemon."""
        worker_id = self.primary.next_worker_id()
        parent_end, child_end = channel_pair()
        env.update(node_env(child_end.fileno(), worker_id))
        return worker_id, parent_end, child_end

    def attach(self, worker_id: int, parent_end: socket.socket, process: Any,
               protocol: str = "python") -> Worker:
        return self.primary.attach(worker_id, parent_end, process, protocol=protocol)

    def exited(self, worker: Worker, returncode: int | None) -> None:
        self.primary.io.call_soon(self.primary.worker_exited, worker, returncode)

    def close(self) -> None:
        self.primary.close_handles()
        self.primary.io.stop()
