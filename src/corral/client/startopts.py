"""The options of `start`, also taken by `restart` and `reload` (PM2's attribute update):
their argparse definitions, the PM2 flags that mean nothing here, and what the options
given become (build_spec() keywords for a start, AppSpec fields for a restart).

Every option is declared with argparse.SUPPRESS as its default, so that what the user
typed is known (`given`); fill_defaults() then sets the defaults a start needs.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from corral.model.errors import CorralError
from corral.model.names import NULL_LOG_PATHS, POLICIES

# dest -> default, for the options whose default is not None
DEFAULTS: dict[str, Any] = {
    "namespace": "default", "interpreter_args": "", "restart_delay": 0,
    "exp_backoff_restart_delay": 0, "stop_exit_codes": [], "kill_signal": "SIGINT",
    "instance_var": "CORRAL_INSTANCE", "ignore_watch": [], "health_interval": "10s",
    "health_timeout": "5s", "health_retries": 3, "health_start_period": "0",
    "filter_env": None,
}
STORE_TRUE = ("wait_ready", "shutdown_with_message", "module", "no_autorestart",
              "no_autostart", "merge_logs", "time", "disable_logs", "log_compress", "force",
              "no_watch", "attach", "execute_command", "update_env", "no_wait")

# PM2 flags that have no effect in corral: (flags, takes a value (True, False or "?" for
# an optional one), the note printed when given (None: silence), what it is)
PM2_NO_OPS: tuple[tuple[tuple[str, ...], bool | str, str | None, str], ...] = (
    (("--no-vizion",), False, None, "PM2's git metadata: corral reads none"),
    (("--no-pmx",), False, None, "PM2's @pm2/io injection: corral injects nothing"),
    (("--no-automation",), False, None, "the same"),
    (("--disable-trace",), False, None, "PM2 Plus tracing: corral has none"),
    (("--disable-source-map-support",), False, None, "Node source maps: untouched"),
    (("--trace",), False, "PM2 Plus transaction tracing (Node)", "PM2 Plus tracing: a note"),
    (("--v8",), False, "PM2 Plus V8 metrics (Node)", "PM2 Plus: a note"),
    (("--event-loop-inspector",), False, "PM2 Plus event-loop dumps (Node)",
     "PM2 Plus: a note"),
    (("--deep-monitoring",), False, "PM2 Plus monitoring (Node)", "PM2 Plus: a note"),
    (("--source-map-support",), False, "Node source maps",
     "Node source maps: a note (use --node-args --enable-source-maps)"),
    (("--no-treekill",), False, "corral always stops the app's whole process tree",
     "a note: corral always stops the whole process tree"),
    (("--uid",), True, "apps run as the daemon's user (run corral as that user)",
     "a note: apps run as corral's user"),
    (("--gid",), True, "apps run as the daemon's user (run corral as that user)",
     "a note: apps run as corral's user"),
    (("-w", "--write"), False, "corral writes no config file here (`corral init` writes one)",
     "PM2 writes NAME-pm2.json: a note (`corral init` writes a file)"),
    (("--no-daemon",), False, "corral always runs its daemon in the background",
     "a note: the daemon always runs in the background"),
    (("--ext",), True, "corral's --watch watches every file; --ignore-watch leaves some out",
     "watch only these extensions: a note (use --ignore-watch)"),
    (("--sort",), True, None, "a `list` option"),
    (("-u", "--user"), True, None, "a `startup` option"),
    (("--hp",), True, None, "a `startup` option"),
    (("--service-name",), True, None, "a `startup` option"),
    (("--wait-ip",), False, None, "a `startup` option"),
    (("--fresh",), False, None, "a --container option"),
    (("--daemon",), False, None, "a --container option"),
    (("--dockerdaemon",), False, None, "a --container option"),
    (("--image-name",), "?", None, "a --container option"),
    (("--node-version",), "?", None, "a --container option"),
)
CONTAINER = ("--container", "--dist")

# what a restart cannot change (it would be another program, or other instances)
NOT_ON_RESTART = {
    "instances": "-i (`corral scale NAME N` changes the number of instances)",
    "exec_mode": "--exec-mode", "execute_command": "-x", "cluster_policy": "--cluster-policy",
    "interpreter": "--interpreter", "cwd": "--cwd", "filter_env": "--filter-env",
    "no_autostart": "--no-autostart",
}


def _dest(flags: tuple[str, ...]) -> str:
    long = next(f for f in flags if f.startswith("--"))
    return "pm2_" + long[2:].replace("-", "_")


def add_app_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options of one app, on `start` (command "start"), `restart` or `reload`."""
    start = command == "start"
    S = argparse.SUPPRESS

    def opt(*flags: str, **kw: Any) -> None:
        p.add_argument(*flags, default=S, **kw)

    what = "start" if start else command
    opt("-n", "--name", help="app name (default: script name without extension)"
        if start else "rename the app")
    if start:
        opt("-i", "--instances",
            help="number of instances: N, max (or 0) = one per CPU, -N = CPUs minus N; on a "
            "Python or Node app this means cluster mode (one port, N workers)")
        opt("--exec-mode", choices=("fork", "cluster"),
            help="fork: N separate processes; cluster: N workers sharing the app's ports "
            "(default with -i on a Python or Node app)")
        opt("-x", "--execute-command", action="store_true",
            help="PM2's fork mode: the same as --exec-mode fork")
        opt("--cluster-policy", choices=POLICIES,
            help="how cluster workers share a port (docs/cluster.md)")
    opt("--listen-timeout", type=int, metavar="MS",
        help="cluster mode: how long a new worker may take to listen (default 3000)")
    opt("--wait-ready", action="store_true",
        help="a new worker (or Node app) is up when it calls corral.ready() / "
        "process.send('ready'), not when it listens")
    opt("--shutdown-with-message", action="store_true",
        help="stop the app with the message 'shutdown' instead of the kill signal")
    if start:
        opt("-m", "--module", action="store_true",
            help="run SCRIPT as a Python module (python -m SCRIPT)")
        opt("--interpreter", help="program that runs the script "
            "(e.g. /venv/bin/python, \"uv run\", none for a binary)")
    opt("--interpreter-args", metavar="ARGS",
        help="arguments for the interpreter, as one string (\"-X dev\")")
    opt("--node-args", metavar="ARGS",
        help="arguments for node, as one string; on an app that node does not run: a "
        "warning, and ignored")
    if start:
        opt("--cwd", help="working directory (default: the current one)")
    opt("--namespace", help="namespace (default: default)")
    opt("--no-autorestart", action="store_true", help="do not restart the app when it exits")
    if start:
        opt("--no-autostart", action="store_true",
            help="register the app without starting it (status stopped)")
    opt("--max-restarts", type=int, metavar="N",
        help="unstable restarts allowed before `errored` (default 16)")
    opt("--min-uptime", type=int, metavar="MS",
        help="a run shorter than this is unstable (default 1000 ms)")
    opt("--restart-delay", type=int, metavar="MS",
        help="wait this long before an automatic restart")
    opt("--exp-backoff-restart-delay", type=int, metavar="MS",
        help="exponential backoff: first delay, ×1.5 each time, at most 15 s")
    opt("--stop-exit-codes", type=int, nargs="+", metavar="CODE",
        help="exit codes after which the app is not restarted")
    opt("-k", "--kill-timeout", type=int, metavar="MS",
        help="on stop, how long to wait after the kill signal before SIGKILL (default 1600)")
    opt("--kill-signal", help="signal sent to stop the app (default SIGINT)")
    opt("--instance-var", help="env var holding the instance index (default CORRAL_INSTANCE)")
    opt("-o", "--output", help="stdout log file (NULL disables)")
    opt("-e", "--error", help="stderr log file (NULL disables)")
    opt("-l", "--log", nargs="?", const="true", metavar="PATH",
        help="also write stdout and stderr to one combined file "
        "(default CORRAL_HOME/logs/NAME-ID.log)")
    opt("-p", "--pid", metavar="FILE",
        help="write the app's pid to FILE (FILE-ID.pid with several instances)")
    opt("--merge-logs", action="store_true",
        help="instances share their log files (no -ID suffix)")
    opt("--log-date-format", metavar="FMT",
        help="stamp each line, PM2's tokens: \"YYYY-MM-DD HH:mm:ss.SSS Z\"")
    opt("--time", action="store_true", help="stamp each line with YYYY-MM-DDTHH:mm:ss")
    opt("--log-type", choices=("raw", "json"),
        help="json: one JSON object a line (message, timestamp, type, process_id, app_name)")
    opt("--disable-logs", action="store_true", help="write no log files")
    opt("--log-max-size", metavar="SIZE", help="rotate a log file at this size (10M, 1G, ...)")
    opt("--log-retain", type=int, metavar="N", help="rotated files kept (default: all)")
    opt("--log-compress", action="store_true", help="gzip rotated files")
    opt("--watch", nargs="*", metavar="PATH",
        help="restart (reload in cluster mode) when files change: the app's folder, or these "
        "paths" + ("" if start else "; without PATH: on if it was off, off if it was on"))
    opt("--no-watch", action="store_true", help="do not watch files")
    opt("--ignore-watch", nargs="+", metavar="GLOB",
        help="files not to watch (.git, __pycache__, .venv, node_modules never are)")
    opt("--watch-delay", type=int, metavar="MS",
        help="wait this long after a change before restarting")
    opt("--health-http", metavar="URL",
        help="health check: GET this loopback URL (2xx/3xx is healthy)")
    opt("--health-tcp", metavar="[HOST:]PORT", help="health check: connect")
    opt("--health-cmd", metavar="CMD", help="health check: run, exit 0")
    opt("--health-interval", metavar="DURATION", help="time between checks (default 10s)")
    opt("--health-timeout", metavar="DURATION", help="time a check may take (default 5s)")
    opt("--health-retries", type=int, metavar="N",
        help="failures in a row before a restart (default 3)")
    opt("--health-start-period", metavar="DURATION", help="no checks this long after a start")
    opt("-c", "--cron-restart", "--cron", dest="cron_restart", metavar="CRON",
        help="restart (reload in cluster mode) on a cron schedule: 5 fields, or 6 with "
        "seconds first; 0 removes it")
    opt("--max-memory-restart", metavar="SIZE",
        help="restart when the app's whole process tree uses more (200M, 1G)")
    opt("-f", "--force", action="store_true",
        help="start the script again even if it is already managed" if start
        else "PM2's `force actions`: no effect here")
    if start:
        opt("--filter-env", nargs="*", metavar="PREFIX",
            help="leave out the variables of this shell whose names contain these strings "
            "(without one: all of them)")
        opt("-a", "--update-env", action="store_true",
            help="with a name (smart start): restart it with this shell's environment")
    opt("--attach", action="store_true",
        help=f"after the {what}, follow the apps' logs (Ctrl-C to stop)")
    if command != "reload":
        opt("--parallel", type=int, metavar="N", help="PM2's concurrency: no effect here")
        opt("--no-wait", action="store_true",
            help=f"return once the apps are launched, without waiting to see them up "
            f"(by default {what} waits until cluster workers listen, and through a fork "
            "app's first second, min_uptime at most, and fails if the app exits)")

    group = p.add_argument_group(
        "PM2 flags accepted for compatibility (no effect in corral; some print a note)")
    for flags, value, _, text in PM2_NO_OPS:
        if value == "?":
            group.add_argument(*flags, dest=_dest(flags), nargs="?", const=True, default=S,
                               metavar="X", help=text)
        elif value:
            group.add_argument(*flags, dest=_dest(flags), metavar="X", default=S, help=text)
        else:
            group.add_argument(*flags, dest=_dest(flags), action="store_true", default=S,
                               help=text)
    group.add_argument("-s", "--silent", dest="pm2_silent", action="store_true", default=S,
                       help="(every command) print nothing on stdout")
    group.add_argument("--no-color", dest="pm2_no_color", action="store_true", default=S,
                       help="(every command) no colours, as NO_COLOR")
    if start:
        for flag in CONTAINER:
            group.add_argument(flag, dest=_dest((flag,)), action="store_true", default=S,
                               help="PM2's Docker mode: refused (corral has none)")


def given(args: argparse.Namespace) -> set[str]:
    """The options the user typed (everything else is SUPPRESSed until fill_defaults)."""
    return set(vars(args))


def fill_defaults(args: argparse.Namespace) -> None:
    for dest in list(DEFAULT_DESTS):
        if not hasattr(args, dest):
            setattr(args, dest, DEFAULTS.get(dest, False if dest in STORE_TRUE else None))


DEFAULT_DESTS = (
    "name", "instances", "exec_mode", "execute_command", "cluster_policy", "listen_timeout",
    "wait_ready", "shutdown_with_message", "module", "interpreter", "interpreter_args",
    "node_args", "cwd", "namespace", "no_autorestart", "no_autostart", "max_restarts",
    "min_uptime", "restart_delay", "exp_backoff_restart_delay", "stop_exit_codes",
    "kill_timeout", "kill_signal", "instance_var", "output", "error", "log", "pid",
    "merge_logs", "log_date_format", "time", "log_type", "disable_logs", "log_max_size",
    "log_retain", "log_compress", "watch", "no_watch", "ignore_watch", "watch_delay",
    "health_http", "health_tcp", "health_cmd", "health_interval", "health_timeout",
    "health_retries", "health_start_period", "cron_restart", "max_memory_restart", "force",
    "filter_env", "update_env", "attach", "parallel", "no_wait",
)


def compat_notes(args: argparse.Namespace) -> list[str]:
    """One line for the PM2 flags given that have no effect and deserve a word; the
    Docker mode is refused."""
    for flag in CONTAINER:
        if getattr(args, _dest((flag,)), False):
            raise CorralError(f"{flag}: PM2's Docker mode does not exist in corral; run the "
                              "app in your own container image, with `corral start` in it")
    notes = [f"{flags[-1]} ({note})" for flags, _, note, _ in PM2_NO_OPS
             if note and hasattr(args, _dest(flags))]
    if not notes:
        return []
    return ["no effect in corral: " + "; ".join(notes)]


# ---- what the options become --------------------------------------------------

def size(text: str | None, flag: str = "--log-max-size") -> int | None:
    if text is None:
        return None
    from corral.config.schema import BadValue, to_bytes

    try:
        return to_bytes(text)
    except BadValue as exc:
        raise CorralError(f"{flag} {text!r}: {exc}") from None


def health(args: argparse.Namespace) -> dict[str, Any] | None:
    values = vars(args)
    kinds = [(k, values[f"health_{k}"]) for k in ("http", "tcp", "cmd")
             if values.get(f"health_{k}")]
    if not kinds:
        return None
    if len(kinds) > 1:
        raise CorralError("give one of --health-http, --health-tcp, --health-cmd")
    from corral.config.schema import validate_health

    kind, target = kinds[0]
    try:
        return validate_health({
            kind: target,
            "interval": values.get("health_interval") or DEFAULTS["health_interval"],
            "timeout": values.get("health_timeout") or DEFAULTS["health_timeout"],
            "retries": values.get("health_retries") or DEFAULTS["health_retries"],
            "start_period": values.get("health_start_period")
            or DEFAULTS["health_start_period"]})
    except ValueError as exc:
        raise CorralError(f"--health-{kind} {target!r}: {exc}") from None


def start_env(args: argparse.Namespace) -> dict[str, str] | None:
    """--filter-env: this shell's environment without the variables whose names contain
    one of the strings (PM2's filter_env); all of them without a string."""
    if args.filter_env is None:
        return None
    if not args.filter_env:
        return {}
    return {k: v for k, v in os.environ.items() if not any(f in k for f in args.filter_env)}


def spec_options(args: argparse.Namespace, app_args: list[str]) -> dict[str, Any]:
    """The keywords of API.spec() for a start (fill_defaults() done)."""
    watch: bool | list[str] | None = None
    if args.no_watch:
        watch = False
    elif args.watch is not None:
        watch = args.watch or True
    return dict(
        name=args.name,
        instances=args.instances,
        exec_mode=args.exec_mode or ("fork" if args.execute_command else None),
        cluster_policy=args.cluster_policy,
        listen_timeout_ms=args.listen_timeout,
        wait_ready=args.wait_ready or None,
        shutdown_with_message=args.shutdown_with_message or None,
        interpreter=args.interpreter,
        interpreter_args=args.interpreter_args,
        args=app_args,
        cwd=args.cwd,
        namespace=args.namespace,
        module=args.module,
        env=start_env(args),
        autorestart=not args.no_autorestart,
        autostart=False if args.no_autostart else None,
        max_restarts=args.max_restarts,
        min_uptime_ms=args.min_uptime,
        restart_delay_ms=args.restart_delay,
        exp_backoff_restart_delay_ms=args.exp_backoff_restart_delay,
        stop_exit_codes=args.stop_exit_codes or None,
        kill_timeout_ms=args.kill_timeout,
        kill_signal=args.kill_signal,
        instance_var=args.instance_var,
        out_file=args.output,
        error_file=args.error,
        log_file=args.log,
        pid_file=args.pid,
        merge_logs=args.merge_logs or None,
        log_date_format=args.log_date_format or ("YYYY-MM-DDTHH:mm:ss" if args.time
                                                 else None),
        log_type=args.log_type,
        disable_logs=args.disable_logs or None,
        log_max_size_bytes=size(args.log_max_size),
        log_retain=args.log_retain,
        log_compress=args.log_compress or None,
        cron_restart=args.cron_restart,
        health_check=health(args),
        watch=watch,
        ignore_watch=args.ignore_watch or None,
        watch_delay_ms=args.watch_delay,
        max_memory_restart_bytes=size(args.max_memory_restart, "--max-memory-restart"),
        force=args.force,
    )


def node_args_for(spec: Any, node_args: str | None, notes: list[str]) -> None:
    """--node-args: interpreter arguments for an app that node runs; on another app a
    warning, and nothing is passed (node's flags would stop python or bash)."""
    if not node_args:
        return
    from corral.model.apps import is_node_app

    words = _split(node_args, "--node-args")
    if is_node_app(spec):
        spec.interpreter_args = [*spec.interpreter_args, *words]
    else:
        notes.append(f"{spec.name}: --node-args {node_args!r} ignored: node does not run "
                     "this app (--interpreter-args passes arguments to any interpreter)")


def _split(text: str, flag: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CorralError(f"{flag} {text!r}: {exc}") from None


def _path(text: str) -> str:
    if text in NULL_LOG_PATHS:
        return "/dev/null"
    return os.path.abspath(os.path.expanduser(text))


def update_options(args: argparse.Namespace, typed: set[str], app_args: list[str],
                   notes: list[str]) -> tuple[dict[str, Any], bool]:
    """What a restart / reload / smart start changes (PM2's attribute update): AppSpec
    fields for the options typed, and whether `--watch` without paths asks for a toggle.
    Paths are taken from the current folder."""
    from corral.config.resolve import SIGNAL_NAMES
    from corral.config.schema import BadValue, to_cron

    v = vars(args)
    update: dict[str, Any] = {}
    simple = {
        "name": "name", "namespace": "namespace", "max_restarts": "max_restarts",
        "min_uptime": "min_uptime_ms", "restart_delay": "restart_delay_ms",
        "exp_backoff_restart_delay": "exp_backoff_restart_delay_ms",
        "stop_exit_codes": "stop_exit_codes", "kill_timeout": "kill_timeout_ms",
        "instance_var": "instance_var", "listen_timeout": "listen_timeout_ms",
        "log_type": "log_type", "log_retain": "log_retain", "ignore_watch": "ignore_watch",
        "watch_delay": "watch_delay_ms", "log_date_format": "log_date_format",
    }
    for dest, field in simple.items():
        if dest in typed:
            update[field] = v[dest]
    for dest, field in (("wait_ready", "wait_ready"), ("merge_logs", "merge_logs"),
                        ("shutdown_with_message", "shutdown_with_message"),
                        ("disable_logs", "disable_logs"), ("log_compress", "log_compress")):
        if dest in typed:
            update[field] = True
    if "no_autorestart" in typed:
        update["autorestart"] = False
    if "time" in typed and "log_date_format" not in typed:
        update["log_date_format"] = "YYYY-MM-DDTHH:mm:ss"
    if "kill_signal" in typed:
        signal_name = str(v["kill_signal"]).upper()
        if signal_name not in SIGNAL_NAMES:
            raise CorralError(f"kill_signal {signal_name!r} is not one of "
                              f"{', '.join(sorted(SIGNAL_NAMES))}")
        update["kill_signal"] = signal_name
    if "interpreter_args" in typed:
        update["interpreter_args"] = _split(v["interpreter_args"], "--interpreter-args")
    if "node_args" in typed:  # the daemon knows which apps node runs
        update["node_args"] = _split(v["node_args"], "--node-args")
    if app_args:
        update["args"] = list(app_args)
    for dest, field in (("output", "out_file"), ("error", "error_file"), ("pid", "pid_file")):
        if dest in typed:
            update[field] = _path(v[dest])
    if "log" in typed:
        update["log_file"] = "true" if v["log"] == "true" else _path(v["log"])
    if "log_max_size" in typed:
        update["log_max_size_bytes"] = size(v["log_max_size"])
    if "max_memory_restart" in typed:
        update["max_memory_restart_bytes"] = size(v["max_memory_restart"],
                                                  "--max-memory-restart")
    if "cron_restart" in typed:
        try:
            update["cron_restart"] = to_cron(v["cron_restart"])
        except BadValue as exc:
            raise CorralError(f"cron_restart {v['cron_restart']!r}: {exc}") from None
    checked = health(args)
    if checked is not None:
        update["health_check"] = checked
    elif typed & {"health_interval", "health_timeout", "health_retries",
                  "health_start_period"}:
        notes.append("the --health-* settings need --health-http, --health-tcp or "
                     "--health-cmd with them; ignored")
    toggle = False
    if "no_watch" in typed:
        update["watch"] = False
    elif "watch" in typed:
        if v["watch"]:
            update["watch"] = list(v["watch"])
        else:
            toggle = True
    ignored = [text for dest, text in NOT_ON_RESTART.items() if dest in typed]
    if ignored:
        notes.append("ignored by a restart (delete the app and start it again to change "
                     "them): " + ", ".join(ignored))
    return update, toggle
