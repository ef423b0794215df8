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


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def ms(value: int, zero: str = "none") -> str:
    return f"{value} ms" if value else zero


def size(value: int) -> str:
    if not value:
        return "none"
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"


def words(values: list[Any], empty: str = "none") -> str:
    return " ".join(str(v) for v in values) or empty


def interpreter_text(spec: dict[str, Any], app_path: str | None = None) -> str:
    """The interpreter, and for a console script (`uvicorn`, a #! script) the Python of
    its #! line, which also runs its cluster workers (found in the app's PATH)."""
    if spec["interpreter"]:
        return spec["interpreter"]
    program = spec["exec_path"]
    if spec["kind"] == "shell":
        program = spec["script"].split()[0] if spec["script"].split() else ""
    if program:
        import shutil

        from corral.model.apps import is_python_program, shebang_python

        path = shutil.which(program, path=app_path) or shutil.which(program) or program
        if is_python_program(path):
            return path
        python = shebang_python(path)
        if python:
            return f"{python} (the #! line of {path.rsplit('/', 1)[-1]})"
    return "none (the program runs itself)"


def watch_text(spec: dict[str, Any], watching: bool | None) -> str:
    watch = spec.get("watch")
    if not watch:
        return "off"
    where = "the app's folder" if watch is True else ", ".join(watch)
    return where + ("" if watching in (None, True) else " (not watching now)")


def rotation_text(spec: dict[str, Any]) -> str:
    parts = []
    if spec.get("log_max_size_bytes"):
        parts.append(f"at {size(spec['log_max_size_bytes'])}")
    if spec.get("log_rotate_daily"):
        parts.append("daily")
    if not parts:
        return "off"
    if spec.get("log_retain"):
        parts.append(f"keep {spec['log_retain']}")
    if spec.get("log_compress"):
        parts.append("gzip")
    return ", ".join(parts)


def health_text(check: dict[str, Any] | None) -> str:
    if not check:
        return "none"
    text = (f"{check.get('kind')} {check.get('target')}, every "
            f"{check.get('interval_ms', 0) / 1000:g} s, timeout "
            f"{check.get('timeout_ms', 0) / 1000:g} s, {check.get('retries')} retries")
    if check.get("start_period_ms"):
        text += f", after {check['start_period_ms'] / 1000:g} s"
    return text


def unstable_text(row: dict[str, Any]) -> str:
    """The unstable restarts in a row; the count is set back to 0 when they end in
    `errored` (as PM2 does), so then the limit they reached is shown."""
    spec = row["spec"]
    if row["status"] == "errored" and "too many unstable restarts" in (row.get("reason")
                                                                      or ""):
        return f"{spec['max_restarts']} in a row: the limit (max_restarts), errored"
    return str(row["unstable_restarts"])


def describe_fields(row: dict[str, Any], now_ms: float | None = None) -> list[tuple[str, Any]]:
    """(label, value) for every detail of one instance, in `corral describe`'s order:
    every setting that applies, empty ones as `none`/`off`, booleans as yes/no."""
    spec = row["spec"]
    now = time.time() * 1000 if now_ms is None else now_ms
    running = bool(row["pid"])
    cluster = spec["exec_mode"] == "cluster"
    watching = row.get("watching")
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
        ("unstable restarts", unstable_text(row)),
        ("uptime", human_duration(now - row["pm_uptime"]) if running else "0"),
        ("script path", spec["exec_path"] or spec["script"]),
        ("script args", words(spec["args"])),
        ("interpreter", interpreter_text(spec, row.get("app_path"))),
        ("interpreter args", words(spec["interpreter_args"])),
        ("exec cwd", spec["cwd"]),
        ("exec mode", spec["exec_mode"]),
        *([("cluster policy", row.get("cluster_policy", ""))] if cluster else []),
        *([("listening", ", ".join(row.get("listening") or [])
            or ("not yet" if running else "no (not running)"))]
          if cluster or row.get("listening") else []),
        *([("listen timeout", ms(spec.get("listen_timeout_ms", 0))),
           ("wait ready", yes_no(spec.get("wait_ready")))] if cluster else []),
        ("out log path", row["out_log_path"]),
        ("error log path", row["err_log_path"]),
        *([("combined log path", row["log_path"])] if row.get("log_path") else []),
        *([("pid file", row["pid_path"])] if row.get("pid_path") else []),
        ("log date format", spec.get("log_date_format") or "none"),
        ("log type", spec.get("log_type") or "raw"),
        ("merge logs", yes_no(spec.get("merge_logs"))),
        ("log rotation", rotation_text(spec)),
        ("autorestart", yes_no(spec["autorestart"])),
        ("autostart", yes_no(spec.get("autostart", True))),
        ("max restarts", spec["max_restarts"]),
        ("min uptime", f"{spec['min_uptime_ms']} ms"),
        ("restart delay", ms(spec["restart_delay_ms"])),
        ("exp backoff restart delay", ms(spec["exp_backoff_restart_delay_ms"])),
        ("stop exit codes", words(spec["stop_exit_codes"])),
        ("kill signal", spec["kill_signal"]),
        ("kill timeout", f"{spec['kill_timeout_ms']} ms"),
        ("shutdown with message", yes_no(spec.get("shutdown_with_message"))),
        ("watch", watch_text(spec, watching)),
        *([("ignore watch", words(spec.get("ignore_watch") or [])),
           ("watch delay", ms(spec.get("watch_delay_ms", 0)))] if spec.get("watch") else []),
        ("max memory restart", size(spec.get("max_memory_restart_bytes", 0))),
        ("cron restart", spec.get("cron_restart") or "none"),
        ("health check", health_text(spec.get("health_check"))),
        *([("health", row.get("health") or "not checked yet")]
          if spec.get("health_check") else []),
        ("depends on", ", ".join(spec.get("depends_on") or []) or "none"),
        ("last exit", last_exit(row) or "none yet"),
        ("reason", row.get("reason") or "none"),
        *([("last error", row["last_error"])] if row.get("last_error") else []),
        *([("last error line", row["last_error_line"])]
          if row.get("last_error_line") else []),
        ("created at", iso(row["created_at"]) or "none"),
        ("adopted", yes_no(row.get("adopted", False))),
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
