"""Every setting of an app instance, as `corral describe` shows them: the pure part,
shared by the CLI (client/render.py) and the web dashboard (daemon/web), which
must not import each other's side.

A row is what the daemon's `list` returns for one instance (environment values
are not part of what is described here: only the CLI prints them, when asked).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms at import; `corral list` imports this module
    from typing import Any


def human_duration(ms: float) -> str:
    seconds = max(ms / 1000, 0)
    for limit, unit, div in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // div)}{unit}"
    return f"{int(seconds // 86400)}D"


def describe_fields(row: dict[str, Any], now_ms: float | None = None) -> list[tuple[str, Any]]:
    """(label, value) for every detail of one instance, in `corral describe`'s order."""
    spec = row["spec"]
    now = time.time() * 1000 if now_ms is None else now_ms
    running = bool(row["pid"])
    fields: list[tuple[str, Any]] = [
        ("status", row["status"]),
        ("name", spec["name"]),
        ("namespace", spec["namespace"]),
        ("id", row["pm_id"]),
        ("pid", row["pid"] or 0),
        # the per-instance values hold no secret: shown without --env (increment_var too)
        ("instance", ", ".join(f"{k}={v}" for k, v in (
            row.get("instance_values") or {spec["instance_var"]: row["instance_index"]}
        ).items())),
        ("restarts", row["restart_time"]),
        ("unstable restarts", row["unstable_restarts"]),
        ("uptime", human_duration(now - row["pm_uptime"]) if running else "0"),
        ("script path", spec["exec_path"] or spec["script"]),
        ("script args", " ".join(spec["args"])),
        ("interpreter", spec["interpreter"] or "none"),
        ("interpreter args", " ".join(spec["interpreter_args"])),
        ("exec cwd", spec["cwd"]),
        ("exec mode", spec["exec_mode"]),
        *([("cluster policy", row.get("cluster_policy", "")),
           ("listening", ", ".join(row.get("listening") or [])
            or ("not yet" if row["pid"] else ""))]
          if spec["exec_mode"] == "cluster" else []),
        ("out log path", row["out_log_path"]),
        ("error log path", row["err_log_path"]),
        *([("combined log path", row["log_path"])] if row.get("log_path") else []),
        *([("pid file", row["pid_path"])] if row.get("pid_path") else []),
        ("autorestart", spec["autorestart"]),
        ("max restarts", spec["max_restarts"]),
        ("min uptime", f"{spec['min_uptime_ms']} ms"),
        ("restart delay", f"{spec['restart_delay_ms']} ms"),
        ("exp backoff restart delay", f"{spec['exp_backoff_restart_delay_ms']} ms"),
        ("stop exit codes", " ".join(str(c) for c in spec["stop_exit_codes"])),
        ("kill signal", spec["kill_signal"]),
        ("kill timeout", f"{spec['kill_timeout_ms']} ms"),
        ("last exit", last_exit(row)),
        ("reason", row.get("reason") or ""),
        *([("health", row.get("health") or "not checked yet")]
          if spec.get("health_check") else []),
        *([("last error", row["last_error"])] if row.get("last_error") else []),
        *([("depends on", ", ".join(spec["depends_on"]))] if spec.get("depends_on") else []),
        ("created at", iso(row["created_at"])),
        ("adopted", row.get("adopted", False)),
    ]
    if row.get("log_write_error"):
        fields.append(("log write error", row["log_write_error"]))
    return fields


def last_exit(row: dict[str, Any]) -> str:
    if row.get("exit_signal"):
        return f"signal {row['exit_signal']}"
    if row.get("exit_code") is not None:
        return f"code {row['exit_code']}"
    return ""


def iso(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch_ms / 1000))
