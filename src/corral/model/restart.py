"""PM2's restart policy, as pure functions of an instance's record (docs/lifecycle.md,
"The restart policy"): any exit restarts unless autorestart is off or the code is a
stop code; a run shorter than min_uptime is unstable, and max_restarts unstable runs
in a row end in `errored`; the delay is fixed, or grows x1.5 up to 15 s and starts
over after 30 s up.
"""

from __future__ import annotations

from typing import NamedTuple

from corral.model.spec import EXP_BACKOFF_CAP_MS, EXP_BACKOFF_RESET_MS, InstanceRecord
from corral.model.states import ERRORED, LAUNCHING, STOPPED, WAITING


class Decision(NamedTuple):
    """What follows an exit: the next status (launching = restart now), why, and after how
    long (waiting restart)."""

    status: str
    reason: str | None = None
    delay_ms: int = 0


def describe_exit(rec: InstanceRecord) -> str:
    if rec.exit_signal:
        return f"killed by {rec.exit_signal}"
    if rec.exit_code is None:
        return "exited (code unknown: adopted process)"
    return f"exited with code {rec.exit_code}"


def restart_delay(rec: InstanceRecord, uptime_ms: int) -> int:
    """The delay before the next start; with exp_backoff_restart_delay it grows and is
    remembered in rec.prev_restart_delay_ms."""
    spec = rec.spec
    if spec.exp_backoff_restart_delay_ms > 0:
        previous = 0 if uptime_ms >= EXP_BACKOFF_RESET_MS else rec.prev_restart_delay_ms
        if previous <= 0:
            delay = spec.exp_backoff_restart_delay_ms
        else:
            delay = min(int(previous * 1.5), EXP_BACKOFF_CAP_MS)
        rec.prev_restart_delay_ms = delay
        return delay
    return spec.restart_delay_ms


def after_exit(rec: InstanceRecord, code: int | None, now_ms: int) -> Decision:
    """Decide what an exit leads to, and count it in rec (unstable runs, restarts)."""
    spec = rec.spec
    how = describe_exit(rec)
    if not spec.autorestart:
        return Decision(STOPPED, f"{how}; autorestart is off")
    if code is not None and code >= 0 and code in spec.stop_exit_codes:
        return Decision(STOPPED, f"{how}, a stop exit code")
    uptime = now_ms - rec.pm_uptime
    if uptime >= spec.min_uptime_ms:
        rec.unstable_restarts = 0  # a stable run ends the streak
    else:
        # unlike PM2, the count does not depend on a window since the start: a crash
        # loop that begins an hour after the start still ends in errored
        rec.unstable_restarts += 1
        if rec.unstable_restarts >= spec.max_restarts:
            rec.unstable_restarts = 0
            rec.created_at = None
            cause = f" (last: {rec.last_error})" if rec.last_error else ""
            return Decision(
                ERRORED,
                f"{how} after {uptime} ms{cause}; too many unstable restarts "
                f"(max_restarts {spec.max_restarts}, min_uptime {spec.min_uptime_ms} ms); "
                f"see its error log, then `corral restart {spec.name}`")
    delay = restart_delay(rec, uptime)
    if delay > 0:
        # counted when the restart happens (the supervisor's delayed launch), as PM2 does:
        # an app stopped while it waits was not restarted
        return Decision(WAITING, f"{how}; restarting in {delay} ms", delay)
    rec.restart_time += 1
    return Decision(LAUNCHING)
