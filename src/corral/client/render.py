"""Text output of the CLI: the process table, describe, PM2's jlist shape.

Plain Python on purpose (no rich): `corral list` must start fast.
"""

from __future__ import annotations

import os
import sys
import time

from corral.model import states

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATUS_COLOURS = {
    states.ONLINE: "32",  # green
    states.LAUNCHING: "33",
    states.WAITING: "33",
    states.STOPPING: "33",
    states.STOPPED: "90",
    states.ERRORED: "31",  # red
    states.UNHEALTHY: "31",
}


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    # no-color.org: NO_COLOR set to a non-empty value turns colour off
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, code: str | None, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("b", "kb", "mb", "gb"):
        if size < 1024 or unit == "gb":
            return f"{size:.0f}{unit}" if unit == "b" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}gb"


def human_duration(ms: float) -> str:
    seconds = max(ms / 1000, 0)
    for limit, unit, div in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // div)}{unit}"
    return f"{int(seconds // 86400)}D"


def username() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return str(os.getuid())


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    now = time.time() * 1000
    user = username()
    out = []
    for row in rows:
        spec = row["spec"]
        running = bool(row["pid"])
        out.append([
            str(row["pm_id"]),
            spec["name"],
            spec["namespace"],
            spec["exec_mode"],
            str(row["pid"]) if running else "0",
            human_duration(now - row["pm_uptime"]) if running else "0",
            str(row["restart_time"]),
            states.shown(row["status"], row.get("health")),
            f"{row['monit']['cpu']:.0f}%" if running else "0%",
            human_bytes(row["monit"]["memory"]) if running else "0b",
            user,
            "enabled" if row.get("watching") else "disabled",
        ])
    return out


HEADERS = ["id", "name", "namespace", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
           "user", "watching"]


def format_table(rows: list[dict[str, Any]], colour: bool, boxed: bool) -> str:
    cells = table_rows(rows)
    widths = [len(h) for h in HEADERS]
    for line in cells:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))
    status_col = HEADERS.index("status")

    def fmt(line: list[str], header: bool = False) -> list[str]:
        parts = []
        for i, cell in enumerate(line):
            text = cell.ljust(widths[i])
            if header:
                text = paint(text, "1", colour)
            elif i == status_col:
                text = paint(text, STATUS_COLOURS.get(cell), colour)
            elif i == 1:
                text = paint(text, "36", colour)
            parts.append(text)
        return parts

    if not boxed:
        lines = ["  ".join(fmt(HEADERS, True)).rstrip()]
        lines += ["  ".join(fmt(c)).rstrip() for c in cells]
        return "\n".join(lines)
    bar = [("─" * (w + 2)) for w in widths]
    lines = ["┌" + "┬".join(bar) + "┐", "│ " + " │ ".join(fmt(HEADERS, True)) + " │",
             "├" + "┼".join(bar) + "┤"]
    lines += ["│ " + " │ ".join(fmt(c)) + " │" for c in cells]
    lines.append("└" + "┴".join(bar) + "┘")
    return "\n".join(lines)


def describe(row: dict[str, Any], show_env: bool) -> str:
    spec = row["spec"]
    now = time.time() * 1000
    running = bool(row["pid"])
    fields: list[tuple[str, Any]] = [
        ("status", row["status"]),
        ("name", spec["name"]),
        ("namespace", spec["namespace"]),
        ("id", row["pm_id"]),
        ("pid", row["pid"] or 0),
        ("instance", f"{spec['instance_var']}={row['instance_index']}"),
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
        ("autorestart", spec["autorestart"]),
        ("max restarts", spec["max_restarts"]),
        ("min uptime", f"{spec['min_uptime_ms']} ms"),
        ("restart delay", f"{spec['restart_delay_ms']} ms"),
        ("exp backoff restart delay", f"{spec['exp_backoff_restart_delay_ms']} ms"),
        ("stop exit codes", " ".join(str(c) for c in spec["stop_exit_codes"])),
        ("kill signal", spec["kill_signal"]),
        ("kill timeout", f"{spec['kill_timeout_ms']} ms"),
        ("last exit", _last_exit(row)),
        ("reason", row.get("reason") or ""),
        *([("health", row.get("health") or "not checked yet")]
          if spec.get("health_check") else []),
        *([("last error", row["last_error"])] if row.get("last_error") else []),
        *([("depends on", ", ".join(spec["depends_on"]))] if spec.get("depends_on") else []),
        ("created at", _iso(row["created_at"])),
        ("adopted", row.get("adopted", False)),
    ]
    if row.get("log_write_error"):
        fields.append(("log write error", row["log_write_error"]))
    env = spec.get("env") or {}
    width = max(len(k) for k, _ in fields)
    lines = [f"Describing process with id {row['pm_id']} - name {spec['name']}"]
    lines += [f"  {key.ljust(width)}  {value}" for key, value in fields]
    if show_env:
        lines.append("  environment:")
        lines += [f"    {k}={v}" for k, v in sorted(env.items())]
    else:
        lines.append("  environment:  hidden (use --env to show the values)")
    return "\n".join(lines)


def _last_exit(row: dict[str, Any]) -> str:
    if row.get("exit_signal"):
        return f"signal {row['exit_signal']}"
    if row.get("exit_code") is not None:
        return f"code {row['exit_code']}"
    return ""


def _iso(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch_ms / 1000))


def to_pm2(row: dict[str, Any], version: str) -> dict[str, Any]:
    """One instance in the shape of `pm2 jlist` (docs/cli.md, `jlist`)."""
    spec = row["spec"]
    env = dict(spec.get("env") or {})
    pm2_env: dict[str, Any] = {
        "name": spec["name"],
        "namespace": spec["namespace"],
        "pm_id": row["pm_id"],
        "status": row["status"],
        "restart_time": row["restart_time"],
        "unstable_restarts": row["unstable_restarts"],
        "pm_uptime": row["pm_uptime"],
        "created_at": row["created_at"],
        "exec_mode": f"{spec['exec_mode']}_mode",
        "health": row.get("health"),
        "instances": spec["instances"],
        "exec_interpreter": spec["interpreter"] or "none",
        "node_args": spec["interpreter_args"],
        "interpreter_args": spec["interpreter_args"],
        "args": spec["args"],
        "pm_exec_path": spec["exec_path"] or spec["script"],
        "pm_cwd": spec["cwd"],
        "pm_out_log_path": row["out_log_path"],
        "pm_err_log_path": row["err_log_path"],
        "autorestart": spec["autorestart"],
        "autostart": spec.get("autostart", True),
        "watch": bool(spec.get("watch")),
        "treekill": True,
        "max_restarts": spec["max_restarts"],
        "min_uptime": spec["min_uptime_ms"],
        "kill_timeout": spec["kill_timeout_ms"],
        "restart_delay": spec["restart_delay_ms"],
        "exp_backoff_restart_delay": spec["exp_backoff_restart_delay_ms"],
        "prev_restart_delay": row["prev_restart_delay_ms"],
        "stop_exit_codes": spec["stop_exit_codes"],
        "instance_var": spec["instance_var"],
        spec["instance_var"]: row["instance_index"],
        "username": username(),
        "_corral_version": version,
        "env": env,
    }
    if row.get("exit_code") is not None or row.get("exit_signal"):
        pm2_env["exit_code"] = row.get("exit_code")
    return {
        "pid": row["pid"] or 0,
        "name": spec["name"],
        "pm_id": row["pm_id"],
        "monit": {"memory": row["monit"]["memory"], "cpu": row["monit"]["cpu"]},
        "pm2_env": pm2_env,
    }
