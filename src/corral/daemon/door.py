"""The cluster door: CORRAL_HOME/cluster.sock, where cluster workers that outlived
their daemon (a crash, a SIGKILL, `corral update`) knock to hand their listeners
back and carry on with the new daemon as their primary (docs/daemon.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.daemon.supervisor import Supervisor
    from corral.store.home import Home

from corral.daemon.peer import peer_uid
from corral.model.validate import quote
from corral.store.home import unix_address

log = logging.getLogger("corral.daemon")


class Door:
    """A part of the Daemon (a mixin): opening the door and reattaching who knocks."""

    home: Home
    supervisor: Supervisor

    def schedule_save(self) -> None:
        raise NotImplementedError  # the Daemon's

    def _open_cluster_door(self, loop: asyncio.AbstractEventLoop) -> None:
        """CORRAL_HOME/cluster.sock: where cluster workers that outlived their daemon knock
        to hand their listeners back (the daemon owns the listeners:
        docs/cluster-mode.md)."""
        path = self.home.cluster_socket
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        door = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o177)
        address, dir_fd = unix_address(path)  # a home of any length
        try:
            door.bind(address)
        finally:
            os.umask(old_umask)
            if dir_fd is not None:
                os.close(dir_fd)
        door.listen(64)
        door.setblocking(False)
        self.door = door
        loop.add_reader(door, self._on_knock)

    def _on_knock(self) -> None:
        try:
            conn, _ = self.door.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE, ...: wait a second rather than spin on the loop
            log.error("cannot take a cluster worker's knock: %s", exc.strerror or exc)
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.door)
            loop.call_later(1.0, loop.add_reader, self.door, self._on_knock)
            return
        if peer_uid(conn) != os.getuid():
            conn.close()
            return
        asyncio.ensure_future(self._reattach(conn))

    async def _reattach(self, conn: socket.socket) -> None:
        from corral.cluster.ipc import Channel, ChannelClosed

        loop = asyncio.get_running_loop()
        channel = Channel(conn)

        def first_message() -> Any:
            conn.settimeout(5)
            try:
                return channel.recv(block=True)
            finally:
                conn.settimeout(None)

        try:
            received = await loop.run_in_executor(None, first_message)
        except (ChannelClosed, OSError):
            conn.close()
            return
        if not received:
            conn.close()
            return
        message, fds = received
        if not isinstance(message, dict):
            message = {}
        pid = message.get("pid")
        inst = next((i for i in self.supervisor.instances.values()
                     if i.proc is not None and i.proc.pid == pid and i.proc.alive), None)
        if inst is None or inst.record.spec.exec_mode != "cluster":
            # a worker no entry of the list names (a reload the last daemon did not
            # finish): told so, it exits (corral.cluster.child); it is never adopted
            log.warning("a cluster worker (pid %s) knocked, but it is not one of ours; told "
                        "to exit", quote(pid))
            for fd in fds:
                os.close(fd)
            try:
                channel.send({"act": "refused"})
            except (ChannelClosed, OSError):
                pass
            conn.close()
            return
        cluster = self.supervisor.cluster_of(inst.record.spec)
        worker = cluster.primary.reattach(conn, message.get("sockets", []), fds)
        assert inst.proc is not None
        inst.proc.worker = worker
        channel.send({"act": "reattached", "worker_id": worker.id})
        log.info("%s (id %d): worker pid %d is back with its listeners", inst.record.spec.name,
                 inst.record.pm_id, pid)
        self.schedule_save()
