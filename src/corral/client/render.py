"""Text output of the CLI: the process table, describe, PM2's jlist shape.

Plain Python on purpose (no rich): `corral list` must start fast.
"""

from __future__ import annotations

import os
import sys
import time

from corral.model import states
from corral.model.describe import describe_fields, human_duration

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


def username() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return str(os.getuid())


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The table's cells of full or brief rows (an older daemon's, the API's): the cells
    of table_cells(), from the same values."""
    return table_cells([[row["pm_id"], row["spec"]["name"], row["spec"]["namespace"],
                         row["spec"]["exec_mode"], row["pid"], row["pm_uptime"],
                         row["restart_time"], row["status"], row.get("health"),
                         row["monit"]["cpu"], row["monit"]["memory"], row.get("watching")]
                        for row in rows])


# `list` with table: the daemon's rows are lists of these (daemon/rpc.py TABLE_COLUMNS)
TABLE_COLUMNS = ["pm_id", "name", "namespace", "exec_mode", "pid", "pm_uptime",
                 "restart_time", "status", "health", "cpu", "memory", "watching",
                 "last_error_line", "reason"]


def table_cells(rows: list[list[Any]]) -> list[list[str]]:
    """The table's cells of the daemon's table rows (lists of TABLE_COLUMNS), with as
    little work a row as it takes (a `list` of 1,000 apps, BENCHMARKS.md):
    human_duration() and human_bytes() inlined (tests/test_units.py holds them equal)."""
    now = time.time() * 1000
    user = username()
    out: list[list[str]] = []
    append = out.append
    online, unhealthy = states.ONLINE, states.UNHEALTHY
    for row in rows:
        (pm_id, name, namespace, mode, pid, uptime, restarts, status, health, cpu, memory,
         watching) = row[:12]
        if health == unhealthy and status == online:  # states.shown(), inlined
            status = unhealthy
        if not pid:
            append([str(pm_id), name, namespace, mode, "0", "0", str(restarts), status, "0%",
                    "0b", user, "enabled" if watching else "disabled"])
            continue
        seconds = (now - uptime) / 1000
        if seconds < 60:
            age = f"{int(max(seconds, 0))}s"
        elif seconds < 3600:
            age = f"{int(seconds // 60)}m"
        elif seconds < 86400:
            age = f"{int(seconds // 3600)}h"
        else:
            age = f"{int(seconds // 86400)}D"
        if memory < 1024:
            mem = f"{memory:.0f}b"
        elif memory < 1048576:
            mem = f"{memory / 1024:.1f}kb"
        elif memory < 1073741824:
            mem = f"{memory / 1048576:.1f}mb"
        else:
            mem = f"{memory / 1073741824:.1f}gb"
        append([str(pm_id), name, namespace, mode, str(pid), age, str(restarts), status,
                f"{cpu:.0f}%", mem, user, "enabled" if watching else "disabled"])
    return out


def table_notes_rows(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """The rows crash_notes() reads (those with a last error line), as dicts."""
    return [{"spec": {"name": row[1]}, "status": row[7], "restart_time": row[6],
             "last_error_line": row[12], "reason": row[13]} for row in rows if row[12]]


HEADERS = ["id", "name", "namespace", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
           "user", "watching"]
# narrower layouts, tried in turn when the full one is wider than the terminal (PM2
# condenses its table below 134 columns); the name column then shrinks to fit, to
# MIN_NAME characters at least, with an ellipsis
LAYOUTS = (
    HEADERS,
    ["id", "name", "namespace", "mode", "pid", "uptime", "↺", "status", "cpu", "mem"],
    ["id", "name", "mode", "pid", "uptime", "↺", "status", "cpu", "mem"],
    ["id", "name", "mode", "↺", "status", "cpu", "mem"],
    ["id", "name", "↺", "status", "mem"],
)
MIN_NAME = 10


def terminal_width(stream: Any = None) -> int | None:
    """The width to fit: COLUMNS if set, else the terminal's; None (no limit) when the
    output is not a terminal (a pipe or a file gets every column)."""
    stream = stream or sys.stdout
    text = os.environ.get("COLUMNS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (OSError, AttributeError, ValueError):
        pass
    return None


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def natural_widths(cells: list[list[str]]) -> list[int]:
    """Each column's width with nothing cut: its widest cell or its header."""
    natural = [len(h) for h in HEADERS]
    if cells:
        natural = [max(w, max(map(len, column))) for w, column in zip(natural, zip(*cells))]
    return natural


def choose_layout(cells: list[list[str]], boxed: bool, width: int | None,
                  natural: list[int] | None = None) -> tuple[list[int], int]:
    """The columns to show (indexes into HEADERS) and the name column's width: the
    widest layout that fits `width` with names of at least MIN_NAME characters (or
    whole), else the narrowest one with names cut to fit."""
    if natural is None:
        natural = natural_widths(cells)
    plain_ns = all(c[2] == "default" for c in cells)
    chosen: list[int] = []
    name_width = natural[1]
    for number, layout in enumerate(LAYOUTS):
        if number and plain_ns and "namespace" in layout and number < len(LAYOUTS) - 1:
            continue  # every app is in `default`: that column goes first
        chosen = [HEADERS.index(h) for h in layout]
        if width is None:
            return chosen, natural[1]
        overhead = 3 * len(chosen) + 1 if boxed else 2 * (len(chosen) - 1)
        others = sum(natural[i] for i in chosen if i != 1) + overhead
        name_width = min(natural[1], width - others)
        if name_width >= min(natural[1], MIN_NAME):
            return chosen, name_width
    return chosen, max(name_width, 4)


def format_table(rows: list[dict[str, Any]], colour: bool, boxed: bool,
                 width: int | None = None) -> str:
    """The process table; with a width (the terminal's), in a narrower layout when the
    full one would wrap, names shortened with an ellipsis."""
    return format_cells(table_rows(rows), colour, boxed, width)


def format_cells(all_cells: list[list[str]], colour: bool, boxed: bool,
                 width: int | None = None) -> str:
    """format_table() of the cells of table_rows() (or table_cells()): one %-format a
    line, the colours put in the format (the name's) or looked up (the status's)."""
    natural = natural_widths(all_cells)
    columns, name_width = choose_layout(all_cells, boxed, width, natural)
    headers = [HEADERS[i] for i in columns]
    cells = all_cells if len(columns) == len(HEADERS) else [
        [line[i] for i in columns] for line in all_cells]
    # the name is the second column of every layout; name_width is at least 4 ("name")
    if natural[1] > name_width:
        cells = [[line[0], shorten(line[1], name_width), *line[2:]] for line in cells]
    widths = [min(natural[1], name_width) if i == 1 else natural[i] for i in columns]
    status_col = headers.index("status")

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

    # the rows: one format string; the status cell comes padded (and painted) from a table
    # of the statuses seen, since its colour depends on its text
    pieces = []
    for i in range(len(headers)):
        if i == status_col:
            pieces.append("%s")
        elif i == 1 and colour:
            pieces.append(f"\x1b[36m%-{widths[i]}s\x1b[0m")
        else:
            pieces.append(f"%-{widths[i]}s")
    padded: dict[str, str] = {}
    for line in cells:
        status = line[status_col]
        if status not in padded:
            padded[status] = paint(status.ljust(widths[status_col]),
                                   STATUS_COLOURS.get(status), colour)
    if not boxed:
        template = "  ".join(pieces)
        lines = ["  ".join(fmt(headers, True)).rstrip()]
        lines += [(template % (*line[:status_col], padded[line[status_col]],
                               *line[status_col + 1:])).rstrip() for line in cells]
        return "\n".join(lines)
    template = "│ " + " │ ".join(pieces) + " │"
    bar = [("─" * (w + 2)) for w in widths]
    lines = ["┌" + "┬".join(bar) + "┐", "│ " + " │ ".join(fmt(headers, True)) + " │",
             "├" + "┼".join(bar) + "┤"]
    lines += [template % (*line[:status_col], padded[line[status_col]],
                          *line[status_col + 1:]) for line in cells]
    lines.append("└" + "┴".join(bar) + "┘")
    return "\n".join(lines)


def crash_notes(rows: list[dict[str, Any]], width: int | None) -> list[str]:
    """Under the table, one line per app in a crash loop (or errored by one): what
    state it is in and its last error line, cut to the width."""
    notes: list[str] = []
    seen: set[str] = set()
    for row in rows:
        name = row["spec"]["name"]
        line = row.get("last_error_line")
        if not line or name in seen:
            continue
        seen.add(name)
        reason = row.get("reason") or ""
        if row["status"] == states.ERRORED:
            state = ("errored after too many unstable restarts"
                     if "too many unstable" in reason else "errored")
        else:
            state = f"crash loop (↺ {row['restart_time']})"
        text = f"{name}: {state}: {line.strip()}"
        notes.append(shorten(text, width) if width else text)
    if notes:
        notes.append(shorten("(`corral describe NAME` and `corral logs NAME` tell more)",
                             width or 200))
    return notes


def listening_of(pid: int) -> list[str]:
    """The TCP addresses a process and its descendants listen on (a fork-mode server
    binds them itself: gunicorn, uvicorn), as `host:port`."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    found: list[str] = []
    for proc in procs:
        try:
            conns = (proc.net_connections(kind="tcp") if hasattr(proc, "net_connections")
                     else proc.connections(kind="tcp"))
        except psutil.Error:
            continue
        for conn in conns:
            if conn.status != psutil.CONN_LISTEN or not conn.laddr:
                continue
            host = f"[{conn.laddr.ip}]" if ":" in conn.laddr.ip else conn.laddr.ip
            text = f"{host}:{conn.laddr.port}"
            if text not in found:
                found.append(text)
    return found


def describe(row: dict[str, Any], show_env: bool) -> str:
    spec = row["spec"]
    fields = describe_fields(row)  # shared with the web dashboard (corral.model.describe)
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
        **({"pm_log_path": row["log_path"]} if row.get("log_path") else {}),
        **({"pm_pid_path": row["pid_path"]} if row.get("pid_path") else {}),
        **({"max_memory_restart": spec["max_memory_restart_bytes"]}
           if spec.get("max_memory_restart_bytes") else {}),
        **({"cron_restart": spec["cron_restart"]} if spec.get("cron_restart") else {}),
        "autorestart": spec["autorestart"],
        "autostart": spec.get("autostart", True),
        # PM2's shape: true, false, or the paths watched
        "watch": spec["watch"] if isinstance(spec.get("watch"), list) else bool(spec.get("watch")),
        **({"ignore_watch": spec.get("ignore_watch") or [],
            "watch_delay": spec.get("watch_delay_ms", 0)} if spec.get("watch") else {}),
        "merge_logs": bool(spec.get("merge_logs")),
        **({"log_date_format": spec["log_date_format"]} if spec.get("log_date_format")
           else {}),
        **({"log_type": spec["log_type"]} if spec.get("log_type") else {}),
        **({"disable_logs": True} if spec.get("disable_logs") else {}),
        # rotation (built in; PM2 needs the pm2-logrotate module): the ecosystem keys
        **({"log_max_size": spec.get("log_max_size_bytes", 0),
            "log_rotate_daily": bool(spec.get("log_rotate_daily")),
            "log_retain": spec.get("log_retain", 0),
            "log_compress": bool(spec.get("log_compress"))}
           if spec.get("log_max_size_bytes") or spec.get("log_rotate_daily") else {}),
        "kill_signal": spec["kill_signal"],
        "listen_timeout": spec.get("listen_timeout_ms"),
        "wait_ready": bool(spec.get("wait_ready")),
        "shutdown_with_message": bool(spec.get("shutdown_with_message")),
        **({"cluster_policy": row.get("cluster_policy")}
           if spec["exec_mode"] == "cluster" and row.get("cluster_policy") else {}),
        **({"health_check": spec["health_check"]} if spec.get("health_check") else {}),
        **({"depends_on": spec["depends_on"]} if spec.get("depends_on") else {}),
        **({"increment_var": spec["increment_var"]} if spec.get("increment_var") else {}),
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
        # NODE_APP_INSTANCE, the increment_var: per instance, no secret (PM2 copies every
        # variable here; corral only these)
        **{k: _number(v) for k, v in (row.get("instance_values") or {}).items()},
        "username": username(),
        "_corral_version": version,
        "env": env,
    }
    if env:
        env.update(row.get("instance_values") or {})  # this instance's values
    if row.get("exit_code") is not None or row.get("exit_signal"):
        pm2_env["exit_code"] = row.get("exit_code")
    return {
        "pid": row["pid"] or 0,
        "name": spec["name"],
        "pm_id": row["pm_id"],
        "monit": {"memory": row["monit"]["memory"], "cpu": row["monit"]["cpu"]},
        "pm2_env": pm2_env,
    }


def _number(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


# ---- PM2's other views of the list -------------------------------------------

SORT_KEYS = {
    "name": lambda r: r["spec"]["name"],
    "id": lambda r: r["pm_id"],
    "pid": lambda r: r["pid"] or 0,
    "uptime": lambda r: -r["pm_uptime"] if r["pid"] else float("-inf"),
    "restarts": lambda r: r["restart_time"],
    "cpu": lambda r: r["monit"]["cpu"],
    "memory": lambda r: r["monit"]["memory"],
    "status": lambda r: r["status"],
}


def sort_rows(rows: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    """`list --sort FIELD[:asc|:desc]` (PM2's fields; uptime: longest running last in
    ascending order, as a time)."""
    from corral.model.errors import CorralError

    field, _, order = how.partition(":")
    key = SORT_KEYS.get(field.strip().lower())
    if key is None or order.strip().lower() not in ("", "asc", "desc"):
        raise CorralError(f"--sort {how}: give one of {', '.join(SORT_KEYS)}, optionally "
                          "followed by :asc or :desc")
    return sorted(rows, key=key, reverse=order.strip().lower() == "desc")


def mini_list(rows: list[dict[str, Any]]) -> str:
    """`list -m`: PM2's mini list, a few `key : value` lines per instance."""
    now = time.time() * 1000
    out = []
    for row in rows:
        spec = row["spec"]
        online = row["status"] == states.ONLINE and row["pid"]
        out += [
            f"+--- {spec['name']}",
            f"namespace : {spec['namespace']}",
            f"pid : {row['pid'] or 0}",
            f"corral id : {row['pm_id']}",
            f"status : {row['status']}",
            f"mode : {spec['exec_mode']}",
            f"restarted : {row['restart_time']}",
            f"uptime : {human_duration(now - row['pm_uptime']) if online else 0}",
            f"memory usage : {human_bytes(row['monit']['memory']) if row['pid'] else '0b'}",
            f"error log : {row['err_log_path']}",
            f"watching : {'yes' if row.get('watching') else 'no'}",
            f"PID file : {row.get('pid_path') or ''}",
            "",
        ]
    return "\n".join(out) + ("\n" if out else "")


def pretty(value: Any, indent: int = 0) -> str:
    """Node's util.inspect layout (PM2's prettylist): `{ name: 'web', pid: 12 }`, keys
    unquoted when they are identifiers, strings in single quotes."""
    import re

    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        identifier = re.compile(r"[A-Za-z_$][\w$]*")
        items = [(str(k) if identifier.fullmatch(str(k)) else _js_str(str(k)))
                 + ": " + pretty(v, indent + 1) for k, v in value.items()]
        return "{\n" + ",\n".join(pad + i for i in items) + "\n" + "  " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        parts = [pretty(v, indent + 1) for v in value]
        if all(not isinstance(v, (dict, list)) for v in value) and sum(map(len, parts)) < 60:
            return "[ " + ", ".join(parts) + " ]"
        return "[\n" + ",\n".join(pad + p for p in parts) + "\n" + "  " * indent + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _js_str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JavaScript has one number type: 0, not 0.0
    return str(value)


def _js_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def env_lines(row: dict[str, Any], version: str) -> str:
    """PM2's `env <id>`: every key of the instance's pm2_env, then its environment, one
    `key: value` a line (values shown: the user asked for them)."""
    import json

    pm2_env = to_pm2(row, version)["pm2_env"]
    env = pm2_env.pop("env", {})
    lines = [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in pm2_env.items()]
    lines += [f"{k}: {v}" for k, v in sorted(env.items())]
    return "\n".join(lines)
