"""The `corral` command: parse argv, call the API, print tables / JSON / errors.

Imports are kept to the standard library's cheap modules; the API (and with it
the client) is imported when a command needs the daemon.
"""

from __future__ import annotations

import sys

from corral.model.errors import CorralError
from corral.model.version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


LIST_COMMANDS = ("list", "ls", "l", "ps", "status")

EPILOG = """\
targets: an id, an app name, a namespace, a script path or `all`; several may be given.
environment: CORRAL_HOME (default ~/.corral) holds the daemon's socket, logs and state.
docs: README.md and docs/ in the corral repository.
"""


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from corral.model.names import POLICIES

    parser = argparse.ArgumentParser(
        prog="corral",
        description="corral: a process manager for Python, in the spirit of PM2.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    start = sub.add_parser(
        "start",
        help="start a script, module, binary or shell command",
        description="Start an app: a Python script (run with corral's Python unless "
        "--interpreter), a .sh/.js/.rb/... script (interpreter by extension), a binary, "
        "a module (-m) or a shell command in quotes. Arguments after `--` go to the app.",
    )
    start.add_argument("script", nargs="?",
                       help="script path, binary, module (-m), \"shell command\" or an "
                       "ecosystem file (default: the ecosystem file of this folder)")
    start.add_argument("--env", dest="env_name", metavar="NAME",
                       help="with an ecosystem file: apply each app's env_NAME")
    start.add_argument("--only", metavar="A,B", help="with an ecosystem file: only these apps")
    start.add_argument("-n", "--name", help="app name (default: script name without extension)")
    start.add_argument("-i", "--instances",
                       help="number of instances: N, max (or 0) = one per CPU, -N = CPUs minus "
                       "N; on a Python app this means cluster mode (one port, N workers)")
    start.add_argument("--exec-mode", choices=("fork", "cluster"),
                       help="fork: N separate processes; cluster: N workers sharing the app's "
                       "ports (default with -i on a Python app)")
    start.add_argument("--cluster-policy", choices=POLICIES,
                       help="how cluster workers share a port (default shared; docs/cluster.md)")
    start.add_argument("--listen-timeout", type=int, metavar="MS",
                       help="reload: how long to wait for a new worker to listen (default 3000)")
    start.add_argument("--wait-ready", action="store_true",
                       help="reload: wait for the worker's corral.ready() instead of listening")
    start.add_argument("--shutdown-with-message", action="store_true",
                       help="stop cluster workers with a 'shutdown' message instead of a signal")
    start.add_argument("-m", "--module", action="store_true",
                       help="run SCRIPT as a Python module (python -m SCRIPT)")
    start.add_argument("--interpreter", help="program that runs the script "
                       "(e.g. /venv/bin/python, \"uv run\", none for a binary)")
    start.add_argument("--interpreter-args", "--node-args", dest="interpreter_args", default="",
                       help="arguments for the interpreter, as one string")
    start.add_argument("--cwd", help="working directory (default: the current one)")
    start.add_argument("--namespace", default="default", help="namespace (default: default)")
    start.add_argument("--no-autorestart", action="store_true",
                       help="do not restart the app when it exits")
    start.add_argument("--max-restarts", type=int, metavar="N",
                       help="unstable restarts allowed before `errored` (default 16)")
    start.add_argument("--min-uptime", type=int, metavar="MS",
                       help="a run shorter than this is unstable (default 1000 ms)")
    start.add_argument("--restart-delay", type=int, default=0, metavar="MS",
                       help="wait this long before an automatic restart")
    start.add_argument("--exp-backoff-restart-delay", type=int, default=0, metavar="MS",
                       help="exponential backoff: first delay, ×1.5 each time, at most 15 s")
    start.add_argument("--stop-exit-codes", type=int, nargs="+", default=[], metavar="CODE",
                       help="exit codes after which the app is not restarted")
    start.add_argument("-k", "--kill-timeout", type=int, metavar="MS",
                       help="on stop, how long to wait after the kill signal before SIGKILL "
                       "(default 1600 ms)")
    start.add_argument("--kill-signal", default="SIGINT",
                       help="signal sent to stop the app (default SIGINT)")
    start.add_argument("--instance-var", default="CORRAL_INSTANCE",
                       help="env var holding the instance index (default CORRAL_INSTANCE)")
    start.add_argument("-o", "--output", help="stdout log file (NULL disables)")
    start.add_argument("-e", "--error", help="stderr log file (NULL disables)")
    start.add_argument("-l", "--log", nargs="?", const="true", metavar="PATH",
                       help="also write stdout and stderr to one combined file "
                       "(default CORRAL_HOME/logs/NAME-ID.log)")
    start.add_argument("--merge-logs", action="store_true",
                       help="instances share their log files (no -ID suffix)")
    start.add_argument("--log-date-format", metavar="FMT",
                       help="stamp each line, PM2's tokens: \"YYYY-MM-DD HH:mm:ss.SSS Z\"")
    start.add_argument("--time", action="store_true",
                       help="stamp each line with YYYY-MM-DDTHH:mm:ss")
    start.add_argument("--log-type", choices=("raw", "json"),
                       help="json: one JSON object a line (message, timestamp, type, ...)")
    start.add_argument("--disable-logs", action="store_true", help="write no log files")
    start.add_argument("--log-max-size", metavar="SIZE",
                       help="rotate a log file at this size (10M, 1G, ...)")
    start.add_argument("--log-retain", type=int, metavar="N",
                       help="rotated files kept (default: all)")
    start.add_argument("--log-compress", action="store_true", help="gzip rotated files")
    start.add_argument("--watch", nargs="*", metavar="PATH",
                       help="restart (reload in cluster mode) when files change: the app's "
                       "folder, or these paths")
    start.add_argument("--ignore-watch", nargs="+", default=[], metavar="GLOB",
                       help="files not to watch (.git, __pycache__, .venv, node_modules are "
                       "never watched)")
    start.add_argument("--watch-delay", type=int, metavar="MS",
                       help="wait this long after a change before restarting")
    start.add_argument("--health-http", metavar="URL",
                       help="health check: GET this loopback URL (2xx/3xx is healthy)")
    start.add_argument("--health-tcp", metavar="[HOST:]PORT", help="health check: connect")
    start.add_argument("--health-cmd", metavar="CMD", help="health check: run, exit 0")
    start.add_argument("--health-interval", metavar="DURATION", default="10s",
                       help="time between checks (default 10s)")
    start.add_argument("--health-timeout", metavar="DURATION", default="5s",
                       help="time a check may take (default 5s)")
    start.add_argument("--health-retries", type=int, default=3, metavar="N",
                       help="failures in a row before a restart (default 3)")
    start.add_argument("--health-start-period", metavar="DURATION", default="0",
                       help="no checks this long after a start")
    start.add_argument("-c", "--cron-restart", "--cron", dest="cron_restart", metavar="CRON",
                       help="restart (reload in cluster mode) on a cron schedule: 5 fields, or "
                       "6 with seconds first; 0 removes it")
    start.add_argument("--max-memory-restart", metavar="SIZE",
                       help="restart when the app's whole process tree uses more (200M, 1G)")
    start.add_argument("-f", "--force", action="store_true",
                       help="start the script again even if it is already managed")

    def targets_cmd(name: str, help_text: str, aliases: tuple[str, ...] = ()) -> Any:
        p = sub.add_parser(name, help=help_text, aliases=list(aliases), description=help_text)
        p.add_argument("targets", nargs="+", metavar="target",
                       help="id, name, namespace, script path or all")
        return p

    def file_options(p: Any, restart: bool) -> None:
        p.add_argument("--only", metavar="A,B", help="with an ecosystem file: only these apps")
        if restart:
            p.add_argument("--env", dest="env_name", metavar="NAME",
                           help="with an ecosystem file: apply each app's env_NAME")
            p.add_argument("-a", "--update-env", action="store_true",
                           help="replace the apps' environment with this shell's (variables "
                           "gone from it are removed; the config's own variables stay)")

    file_options(targets_cmd(
        "stop", "stop apps (SIGINT, SIGKILL after kill_timeout); they stay listed"), False)
    restart_cmd = targets_cmd("restart", "stop then start apps (restart count +1); with an "
                              "ecosystem file, also start its apps that are not registered")
    restart_cmd.add_argument("--watch", action="store_true",
                             help="turn watching on (or off, when it was on), as PM2 does")
    file_options(restart_cmd, True)
    reload_cmd = targets_cmd("reload", "zero-downtime rolling reload of cluster apps: each "
                             "new worker starts and listens before the old one stops (in fork "
                             "mode this is a restart)")
    reload_cmd.add_argument("--parallel", type=int, default=1, metavar="N",
                            help="workers replaced at a time (default 1)")
    file_options(reload_cmd, True)
    scale = sub.add_parser("scale", help="set an app's number of instances: N, +N or -N",
                           description="Add or remove instances; new ones copy the first, and "
                           "the lowest free instance numbers are reused.")
    scale.add_argument("name")
    scale.add_argument("count", help="N, +N or -N")
    file_options(targets_cmd("delete", "stop apps and remove them from the list", ("del",)),
                 False)
    for verb, how in (("startOrRestart", "restart"), ("startOrReload", "reload one by one")):
        p = sub.add_parser(verb, help="start the apps of an ecosystem file that are not "
                           f"registered, {how} the others with the file's settings")
        p.add_argument("targets", nargs=1, metavar="file")
        file_options(p, True)
        if verb == "startOrReload":
            p.add_argument("--parallel", type=int, default=1, metavar="N",
                           help="workers replaced at a time (default 1)")
    init = sub.add_parser("init", aliases=["ecosystem"],
                          help="write a commented ecosystem file in this folder")
    init.add_argument("--format", choices=("py", "toml", "yaml", "json"), default="py",
                      help="file format (default py: ecosystem.config.py)")
    init.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    targets_cmd("reset", "set restart counters to 0")
    describe = targets_cmd("describe", "show everything about apps", ("show", "info", "desc"))
    describe.add_argument("--env", "--show-env", dest="show_env", action="store_true",
                          help="also print the environment values (hidden by default)")

    sub.add_parser("list", aliases=list(LIST_COMMANDS[1:]), help="list the apps",
                   description="The process table. Colours follow NO_COLOR and the terminal.")
    jlist = sub.add_parser("jlist", help="the process list as JSON, in PM2's shape",
                           description="Print the process list as PM2's `jlist` JSON array.")
    jlist.add_argument("--env", dest="show_env", action="store_true",
                       help="include each app's environment (left out by default)")
    pid = sub.add_parser("pid", help="print the pids of an app (of all apps without a name)")
    pid.add_argument("name", nargs="?")
    idp = sub.add_parser("id", help="print the ids of an app")
    idp.add_argument("name")
    sig = sub.add_parser("sendSignal", aliases=["send-signal"],
                         help="send a signal to apps' main processes")
    sig.add_argument("signal", help="signal name or number (SIGUSR1, 10, ...)")
    sig.add_argument("targets", nargs="+", metavar="target")
    logs = sub.add_parser("logs", aliases=["log"], help="show and follow apps' logs",
                          description="Print the last lines of each log file, then follow "
                          "new lines as they come. Without a target: every app and the "
                          "daemon's own log.")
    logs.add_argument("targets", nargs="*", metavar="target")
    logs.add_argument("--lines", type=int, default=15, metavar="N",
                      help="lines of each file to print first (default 15)")
    logs.add_argument("--raw", action="store_true", help="no id|name prefix")
    logs.add_argument("--json", action="store_true", help="one JSON object a line")
    logs.add_argument("--err", action="store_true", help="stderr only")
    logs.add_argument("--out", action="store_true", help="stdout only")
    logs.add_argument("--nostream", action="store_true", help="print and exit, do not follow")
    logs.add_argument("--timestamp", nargs="?", const="YYYY-MM-DD-HH:mm:ss", metavar="FMT",
                      help="prefix followed lines with the time (default YYYY-MM-DD-HH:mm:ss)")
    flush = sub.add_parser("flush", help="empty log files (of the targets, or all)")
    flush.add_argument("targets", nargs="*", metavar="target")
    sub.add_parser("reloadLogs", aliases=["reload-logs"],
                   help="reopen every log file (after an external rotation; also SIGUSR2)")
    metrics = sub.add_parser("metrics", help="serve Prometheus metrics (off by default)",
                             description="Serve /metrics (Prometheus text) and /metrics.json "
                             "on 127.0.0.1:PORT; without options, print where they are. "
                             "CORRAL_METRICS_PORT starts it with the daemon.")
    metrics.add_argument("--port", type=int, help="port to serve on (0: any free port)")
    metrics.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    metrics.add_argument("--allow-remote", action="store_true",
                         help="allow a --host that is not a loopback address")
    metrics.add_argument("--stop", action="store_true", help="stop serving")
    sub.add_parser("monit", aliases=["dashboard", "dash"],
                   help="full-screen dashboard: apps, live cpu/memory, logs; keys to act",
                   description="↑/↓ select, r restart, l reload, s stop, S start, q quit.")
    save = sub.add_parser("save", aliases=["dump"],
                          help="save the process list for `resurrect` and boot",
                          description="Write every registered app (settings, environment, "
                          "instances, stopped or not) to CORRAL_HOME/dump.json (mode 0600); "
                          "the previous save becomes dump.json.bak.")
    save.add_argument("--force", action="store_true", help="save even an empty list")
    sub.add_parser("resurrect", help="start the saved apps that are not registered",
                   description="Start the apps of the last `corral save` whose name is not "
                   "registered now (apps saved stopped come back stopped). Falls back to "
                   "dump.json.bak when dump.json is unusable.")
    sub.add_parser("cleardump", help="empty the saved list (the old one becomes .bak)")
    for verb, text in (("startup", "write and enable a systemd unit that runs "
                                   "`corral resurrect` at boot"),
                       ("unstartup", "disable and remove the unit `corral startup` wrote")):
        boot = sub.add_parser(verb, help=text, description=text + ". As a user, prints the "
                              "sudo command to run; as root, writes /etc/systemd/system/"
                              "corral-USER.service and enables it.")
        boot.add_argument("platform", nargs="?",
                          help="init system: systemd, the only one supported (detected "
                          "when omitted)")
        boot.add_argument("-u", "--user", help="the user whose apps to start (default: you)")
        boot.add_argument("--service-name", help="unit name (default corral-USER)")
        boot.add_argument("--unit-dir", help="write the unit here instead of "
                          "/etc/systemd/system, and do not call systemctl")
        if verb == "startup":
            boot.add_argument("--hp", metavar="HOME", help="the user's home folder: "
                              "CORRAL_HOME is HOME/.corral unless CORRAL_HOME is set")
            boot.add_argument("--print", action="store_true", dest="print_only",
                              help="print the unit, write nothing")
    sub.add_parser("update",
                   help="replace the daemon with this corral's version; the apps keep running",
                   description="The daemon hands its apps over and exits; a daemon of this "
                   "corral's version adopts them (cluster workers keep serving and hand their "
                   "listeners back). No app is stopped. Use it after upgrading corral.")
    sub.add_parser("ping", help="check the daemon, starting it if needed")
    sub.add_parser("kill", help="stop every app, then the daemon")
    return parser


def split_app_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` belongs to the app, never to corral."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `corral list | head -1`: the reader left; say nothing more, as other tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 1 and (argv[0] in LIST_COMMANDS or argv[0] == "jlist"):
            return fast_list(argv[0])
    except CorralError as exc:
        print(f"corral: error: {exc.message}", file=sys.stderr)
        return exc.code
    argv, app_args = split_app_args(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 1
    try:
        return run(args, app_args)
    except CorralError as exc:
        print(f"corral: error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def fast_list(command: str) -> int:
    """`corral list` / `jlist` without argparse or the API: the most frequent call."""
    from corral.client.connection import Client
    from corral.store.home import home_from_env

    rows = Client(home_from_env()).call("list")
    if command == "jlist":
        print_jlist(rows)
    else:
        print_table(rows)
    return 0


def print_jlist(rows: list[dict[str, Any]]) -> None:
    from corral.client import render
    from corral.model.wire import dumps

    print(dumps([render.to_pm2(r, __version__) for r in rows]))


def print_table(rows: list[dict[str, Any]]) -> None:
    from corral.client import render

    if not rows:
        print("no apps: start one with `corral start app.py`")
        return
    colour = render.use_colour()
    print(render.format_table(rows, colour=colour, boxed=sys.stdout.isatty()))


def run(args: argparse.Namespace, app_args: list[str]) -> int:
    """Run the command argparse found: one cmd_<name> function per command (COMMANDS)."""
    from corral.client.api import API

    return HANDLERS[args.command](API(), args, app_args)


def cmd_list(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print_table(api.list())
    return 0


def cmd_jlist(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print_jlist(api.list(env=args.show_env))
    return 0


def cmd_reload(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    import os

    file = ecosystem_target(args.targets)
    if file is not None:
        loaded = api.load_file(file, args.env_name, only_list(args))
        warn(loaded.warnings)
        result = api.apply(loaded.specs, "reload", parallel=getattr(args, "parallel", 1))
    elif args.command == "startOrReload":
        raise CorralError(f"{args.targets[0]}: startOrReload takes an ecosystem file")
    elif args.env_name:
        raise CorralError("--env applies an ecosystem file's env_<name>: give the file "
                          "(`corral reload ecosystem.config.py --env NAME`), or use "
                          "--update-env to take this shell's environment")
    else:
        result = api.reload(args.targets, parallel=args.parallel,
                            env=dict(os.environ) if args.update_env else None)
    for name in result["restarted_fork_apps"]:
        print(f"corral: {name} runs in fork mode, which has no zero-downtime reload; "
              "it was restarted", file=sys.stderr)
    print_table(result["list"])
    for failure in result["failures"]:
        print(f"corral: error: {failure}", file=sys.stderr)
    return 1 if result["failures"] else 0


def cmd_logs(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import logview, render

    types = ["err"] if args.err else ["out"] if args.out else ["out", "err", "daemon"]
    return logview.show(api, args.targets, args.lines, types, args.raw, args.json,
                        args.timestamp, not args.nostream, render.use_colour())


def cmd_flush(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.client.call("flush", targets=api.targets(args.targets))
    print(f"corral: emptied {len(result['files'])} log file(s)")
    return 0


def cmd_reload_logs(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.client.call("reload_logs")
    print(f"corral: reopened {result['files']} log file(s)")
    return 0


def cmd_monit(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import monit

    return monit.run(api)


def cmd_metrics(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.client.call("metrics", port=args.port, host=args.host,
                             allow_remote=args.allow_remote, stop=args.stop)
    print(result["url"] or "corral: metrics are not served (corral metrics --port N)")
    return 0


def cmd_scale(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print_table(api.scale(args.name, args.count)["list"])
    return 0


def cmd_act(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """stop, restart, delete, reset and startOrRestart: on targets or on a file's apps."""
    command = args.command
    action = {"del": "delete", "startOrRestart": "restart"}.get(command, command)
    file = ecosystem_target(args.targets)
    if file is not None:
        result = act_on_file(api, action, file, args)
    elif command.startswith("startOr"):
        raise CorralError(f"{args.targets[0]}: {command} takes an ecosystem file")
    elif getattr(args, "env_name", None):
        raise CorralError("--env applies an ecosystem file's env_<name>: give the file "
                          "(`corral restart ecosystem.config.py --env NAME`), or use "
                          "--update-env to take this shell's environment")
    elif getattr(args, "update_env", False):
        result = api.restart_update_env(args.targets)
    elif action == "restart" and getattr(args, "watch", False):
        result = api.client.call("restart", targets=api.targets(args.targets),
                                 toggle_watch=True)
    else:
        result = api.act(action, args.targets)
    print_table(result["list"])
    return 0


def cmd_init(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.config.templates import write_template

    print(f"corral: wrote {write_template(args.format, args.force)}")
    return 0


def cmd_describe(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import render

    rows = api.list(env=args.show_env)
    ids = {t["pm_id"] for t in _match(rows, args.targets)}
    for row in rows:
        if row["pm_id"] in ids:
            print(render.describe(row, args.show_env))
    return 0


def cmd_pid(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    rows = api.list()
    if args.name is not None:
        rows = _match(rows, [args.name])
    for row in rows:
        if row["pid"]:
            print(row["pid"])
    return 0


def cmd_id(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    found = [row["pm_id"] for row in _match(api.list(), [args.name])]
    print("[ " + ", ".join(str(i) for i in found) + " ]")
    return 0


def cmd_send_signal(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.send_signal(args.signal, *args.targets)
    print(f"sent {result['signal']} to ids {result['ids']}")
    return 0


def cmd_save(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    saved = api.save(args.force)
    print(f"corral: saved {len(saved['apps'])} app(s) to {saved['path']}: "
          + (", ".join(saved["apps"]) or "(none)"))
    return 0


def cmd_cleardump(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print(f"corral: emptied {api.cleardump()}")
    return 0


def cmd_startup(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import startup

    if args.command == "startup":
        text, notes = startup.install(args.platform, args.user, args.hp, args.service_name,
                                      args.unit_dir, args.print_only, api.home.root)
        print(text)
        warn(notes)
    else:
        print(startup.uninstall(args.platform, args.user, args.service_name, args.unit_dir))
    return 0


def cmd_update(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.update()
    print(f"corral: daemon {result['old_pid']} handed {result['processes']} process(es) "
          f"over to daemon {result['new_pid']} (corral {__version__}); nothing was "
          "restarted")
    print_table(result["list"])
    return 0


def cmd_ping(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print(f'{{"msg":"{api.ping()}","daemon_pid":{api.client.daemon_pid}}}')
    return 0


def cmd_kill(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.kill()
    print(f"corral: stopped {result['stopped']} process(es) and the daemon")
    return 0


def cmd_resurrect(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.resurrect()
    warn(result["notes"])
    for problem in result["problems"]:
        print(f"corral: error: not resurrected: {problem}", file=sys.stderr)
    if result["present"]:
        print("corral: already registered, left as they are: " + ", ".join(result["present"]))
    print(f"corral: resurrected {len(result['started'])} app(s) from {result['file']}"
          + (": " + ", ".join(result["started"]) if result["started"] else ""))
    print_table(result["list"])
    return 1 if result["problems"] else 0


def _match(rows: list[dict[str, Any]], targets: list[str]) -> list[dict[str, Any]]:
    """Client-side target matching for read-only commands (model.targets, as the daemon)."""
    from corral.model.targets import Entry, select, to_wire

    by_id = {r["pm_id"]: r for r in rows}
    entries = {pm_id: Entry(r["spec"]["name"], r["spec"]["namespace"], r["spec"]["exec_path"])
               for pm_id, r in by_id.items()}
    return [by_id[pm_id] for pm_id in select(to_wire(targets), entries)]


def _health(args: argparse.Namespace) -> dict[str, Any] | None:
    given = [(k, v) for k, v in (("http", args.health_http), ("tcp", args.health_tcp),
                                 ("cmd", args.health_cmd)) if v]
    if not given:
        return None
    if len(given) > 1:
        raise CorralError("give one of --health-http, --health-tcp, --health-cmd")
    from corral.config.schema import validate_health

    try:
        return validate_health({given[0][0]: given[0][1], "interval": args.health_interval,
                         "timeout": args.health_timeout, "retries": args.health_retries,
                         "start_period": args.health_start_period})
    except ValueError as exc:
        raise CorralError(f"--health-{given[0][0]} {given[0][1]!r}: {exc}") from None


def _size(text: str | None, flag: str = "--log-max-size") -> int | None:
    if text is None:
        return None
    from corral.config.schema import BadValue, to_bytes

    try:
        return to_bytes(text)
    except BadValue as exc:
        raise CorralError(f"{flag} {text!r}: {exc}") from None


def _match_quietly(rows: list[dict[str, Any]], target: str) -> bool:
    try:
        return bool(_match(rows, [target]))
    except CorralError:
        return False


def ecosystem_target(targets: list[str]) -> str | None:
    """The ecosystem file among a command's targets, if that is what it was given."""
    import os

    from corral.config.ecosystem import is_ecosystem_file

    if len(targets) == 1 and is_ecosystem_file(targets[0]) and os.path.isfile(targets[0]):
        return targets[0]
    return None


def only_list(args: argparse.Namespace) -> list[str] | None:
    only = getattr(args, "only", None)
    return [n.strip() for n in only.split(",") if n.strip()] if only else None


def warn(messages: list[str]) -> None:
    for message in messages:
        print(f"corral: warning: {message}", file=sys.stderr)


def act_on_file(api: Any, action: str, path: str, args: argparse.Namespace) -> Any:
    """stop / delete / restart / reset the apps of an ecosystem file."""
    loaded = api.load_file(path, getattr(args, "env_name", None), only_list(args))
    warn(loaded.warnings)
    if action == "restart":
        return api.apply(loaded.specs, "restart")
    names = [s.name for s in loaded.specs]
    registered = {row["spec"]["name"] for row in api.list()}
    present = [n for n in names if n in registered]
    if not present:
        raise CorralError(f"{path}: none of its apps ({', '.join(names)}) is registered; "
                          f"`corral start {path}` starts them")
    return api.act_in_order(action, loaded.specs, present)


def cmd_start(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    import os

    from corral.config.ecosystem import find_default, is_ecosystem_file

    if args.script is None:
        found = find_default(os.getcwd())
        if found is None:
            raise CorralError(f"no app given and no ecosystem file in {os.getcwd()}; "
                              "`corral start app.py`, or `corral init` to write "
                              "ecosystem.config.py")
        args.script = found
    if not args.module and is_ecosystem_file(args.script) and os.path.isfile(args.script):
        loaded = api.load_file(args.script, args.env_name, only_list(args))
        warn(loaded.warnings)
        result = api.apply(loaded.specs, "start")
        warn(silent_cluster_notes(result["list"], result["started"]))
        if result["untouched"]:
            names = sorted({r["spec"]["name"] for r in result["list"]
                            if r["pm_id"] in result["untouched"]})
            print(f"corral: already running: {', '.join(names)} "
                  f"(`corral restart {args.script}` applies the file to them)", file=sys.stderr)
        print_table(result["list"])
        return 0
    if args.env_name or args.only:
        raise CorralError("--env and --only go with an ecosystem file")
    try:
        spec = api.spec(
            args.script,
            name=args.name,
            instances=args.instances,
            exec_mode=args.exec_mode,
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
            autorestart=not args.no_autorestart,
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
            merge_logs=args.merge_logs or None,
            log_date_format=args.log_date_format or ("YYYY-MM-DDTHH:mm:ss" if args.time
                                                     else None),
            log_type=args.log_type,
            disable_logs=args.disable_logs or None,
            log_max_size_bytes=_size(args.log_max_size),
            log_retain=args.log_retain,
            log_compress=args.log_compress or None,
            cron_restart=args.cron_restart,
            health_check=_health(args),
            watch=(args.watch or True) if args.watch is not None else None,
            ignore_watch=args.ignore_watch or None,
            watch_delay_ms=args.watch_delay,
            max_memory_restart_bytes=_size(args.max_memory_restart, "--max-memory-restart"),
            force=args.force,
        )
    except CorralError as exc:
        # PM2's "smart start": `corral start web` on a registered app restarts it; only a
        # bare name (no path, no --cwd) that matches an app, so a typo in a path is an error
        import os

        if ("script not found" not in exc.message or args.cwd or os.sep in args.script
                or not _match_quietly(api.list(), args.script)):
            raise
        result = api.act("restart", [args.script])
        print_table(result["list"])
        return 0
    warn(api.notes)
    result = api.start(spec)
    warn(silent_cluster_notes(result["list"], result["started"]))
    print_table(result["list"])
    return 0


def silent_cluster_notes(rows: list[dict[str, Any]], ids: list[int]) -> list[str]:
    """Cluster apps just started whose workers never listened: start waited listen_timeout
    for nothing. Say why, and what to use for a program that serves no port."""
    from corral.model import states

    notes = []
    for name in sorted({r["spec"]["name"] for r in rows if r["pm_id"] in ids}):
        mine = [r for r in rows if r["spec"]["name"] == name and r["pm_id"] in ids]
        spec = mine[0]["spec"]
        if (spec["exec_mode"] == "cluster" and not spec["wait_ready"]
                and all(r["status"] == states.ONLINE and not r["listening"] for r in mine)):
            notes.append(f"{name}: no worker listened on a port within listen_timeout "
                         f"({spec['listen_timeout_ms']} ms), so start waited that long. "
                         "A program that serves no port (a queue worker, a script) needs no "
                         "cluster mode: start it with --exec-mode fork (exec_mode: fork)")
    return notes


# every command and alias -> its function (build_parser() declares the same names)
COMMANDS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (LIST_COMMANDS, cmd_list),
    (("jlist",), cmd_jlist),
    (("start",), cmd_start),
    (("reload", "startOrReload"), cmd_reload),
    (("logs", "log"), cmd_logs),
    (("flush",), cmd_flush),
    (("reloadLogs", "reload-logs"), cmd_reload_logs),
    (("monit", "dashboard", "dash"), cmd_monit),
    (("metrics",), cmd_metrics),
    (("scale",), cmd_scale),
    (("stop", "restart", "delete", "del", "reset", "startOrRestart"), cmd_act),
    (("init", "ecosystem"), cmd_init),
    (("describe", "show", "info", "desc"), cmd_describe),
    (("pid",), cmd_pid),
    (("id",), cmd_id),
    (("sendSignal", "send-signal"), cmd_send_signal),
    (("save", "dump"), cmd_save),
    (("resurrect",), cmd_resurrect),
    (("cleardump",), cmd_cleardump),
    (("startup", "unstartup"), cmd_startup),
    (("update",), cmd_update),
    (("ping",), cmd_ping),
    (("kill",), cmd_kill),
)
HANDLERS = {name: handler for names, handler in COMMANDS for name in names}
