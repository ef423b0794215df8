"""The status of an app instance: PM2's names, and the moves between them.

Every change of status goes through Supervisor.transition(), which checks it
against LEGAL and logs it; restoring a previous daemon's list walks the same
moves (docs/architecture.md, "the life of a crash").
"""

from __future__ import annotations

LAUNCHING = "launching"  # spawned; not yet online (cluster: not yet listening or ready)
ONLINE = "online"  # running (cluster: listening, or ready with wait_ready)
STOPPING = "stopping"  # asked to stop: kill signal sent, waiting for the tree to exit
STOPPED = "stopped"  # not running, and not to be restarted until asked
ERRORED = "errored"  # too many unstable restarts, or could not be spawned
WAITING = "waiting restart"  # exited; restarts after its restart delay

ALL = (LAUNCHING, ONLINE, STOPPING, STOPPED, ERRORED, WAITING)

# status -> the statuses it may move to
LEGAL: dict[str, frozenset[str]] = {
    STOPPED: frozenset({LAUNCHING}),
    ERRORED: frozenset({LAUNCHING, STOPPED}),
    LAUNCHING: frozenset({ONLINE, ERRORED, STOPPED, STOPPING, WAITING, LAUNCHING}),
    ONLINE: frozenset({STOPPING, STOPPED, ERRORED, WAITING, LAUNCHING}),
    WAITING: frozenset({LAUNCHING, STOPPED}),
    STOPPING: frozenset({STOPPED, ERRORED}),
}

RUNNING = frozenset({LAUNCHING, ONLINE, STOPPING})  # a process of ours exists

UNHEALTHY = "unhealthy"  # shown instead of online while its health check fails


def shown(status: str, health: str | None) -> str:
    """The status a table shows: online apps whose health check fails are unhealthy."""
    return UNHEALTHY if status == ONLINE and health == UNHEALTHY else status


class IllegalTransition(RuntimeError):
    """A move the state machine does not have: a bug in corral, never a user error."""


def check(name: str, pm_id: int, was: str, status: str) -> None:
    """Raise IllegalTransition unless was -> status is a move of LEGAL."""
    if status not in LEGAL.get(was, frozenset()):
        raise IllegalTransition(f"{name} (id {pm_id}): {was} -> {status}")


def restore_path(was: str, alive: bool) -> list[str]:
    """The legal moves that bring a status a previous daemon persisted to what is true now:
    ONLINE when its process still runs (adopted), STOPPED when a process that should run
    is gone (it is then started again), unchanged when nothing runs and nothing should."""
    if alive:
        if was == ONLINE:
            return []
        if was == LAUNCHING:
            return [ONLINE]
        # alive though it should not run (stopping, stopped, errored, waiting): online,
        # so that the stop that follows is an ordinary one
        return ([STOPPED] if was == STOPPING else []) + [LAUNCHING, ONLINE]
    if was in (ONLINE, LAUNCHING, WAITING, STOPPING):
        return [STOPPED]
    return []
