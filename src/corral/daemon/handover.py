"""`corral update`: the daemon hands every app over to a daemon of the new version
without stopping any (docs/daemon.md, "corral update").
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from corral.model.errors import CorralError

if TYPE_CHECKING:
    from corral.daemon.supervisor import Supervisor
    from corral.store.home import Home

log = logging.getLogger("corral.daemon")


class Handover:
    """A part of the Daemon (a mixin): the update request and the exit after its reply."""

    home: Home
    supervisor: Supervisor
    server: asyncio.AbstractServer | None
    updating: bool

    def save(self, records: list[dict[str, Any]] | None = None) -> str | None:
        raise NotImplementedError  # the Daemon's

    async def rpc_update(self) -> dict[str, Any]:
        """`corral update`: hand every app over to a new daemon without stopping any. Stop
        taking commands, wait for operations under way, move what the apps wrote to the
        files, persist the list (with where each log line stands), then exit once the
        reply is sent (handle() calls _exit_for_update). The next daemon adopts the apps,
        as after a SIGKILL, and cluster workers hand it their listeners."""
        instances = list(self.supervisor.instances.values())
        locks = [inst.lock for inst in instances]
        taken = []
        try:
            for lock in locks:
                await asyncio.wait_for(lock.acquire(), 10)
                taken.append(lock)
        except asyncio.TimeoutError:
            for lock in taken:
                lock.release()
            raise CorralError("an operation (a reload, a restart) is still under way after "
                              "10 s; run `corral update` again when it has finished") from None
        # from here on the daemon is leaving: the locks stay taken
        assert self.server is not None
        self.server.close()
        for inst in instances:
            if inst.restart_timer is not None:
                inst.restart_timer.cancel()
            handover = {}
            for stream in ("out", "err"):
                capture = getattr(inst, stream)
                if capture is not None:
                    handover[stream] = capture.hand_over()
            inst.record.handover = handover
        self.save()
        self.updating = True
        log.info("handing %d process(es) over to a new daemon (corral update)", len(instances))
        return {"pid": os.getpid(), "processes": len(instances)}

    def _exit_for_update(self) -> None:
        from corral.daemon.logcapture import finish_rotations

        finish_rotations()
        for path in (self.home.socket, self.home.pid_file, self.home.pm2_pid_file):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        log.info("daemon exits; its apps keep running for the next one")
        logging.shutdown()
        os._exit(0)  # no cleanup: the apps, their listeners and pipes must stay as they are
