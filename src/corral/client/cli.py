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

    from corral.client import startopts

    class Parser(argparse.ArgumentParser):
        """No abbreviated flags (`--inst` is not `--instances`): a typo is an error with
        a suggestion, never a guess. Sub-parsers are of the same class."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("allow_abbrev", False)
            super().__init__(*args, **kwargs)

    parser = Parser(
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
    start.add_argument("scripts", nargs="*", metavar="script",
                       help="script path, binary, module (-m), \"shell command\", an "
                       "ecosystem file, `-` (an ecosystem as JSON on stdin), or the name, id "
                       "or namespace of a registered app (restarted); several start several "
                       "apps (default: the ecosystem file of this folder)")
    start.add_argument("--env", dest="env_name", metavar="NAME",
                       help="with an ecosystem file: apply each app's env_NAME")
    start.add_argument("--only", metavar="A,B", help="with an ecosystem file: only these apps")
    startopts.add_app_options(start, "start")
    start.usage = ("corral start [options] [script|file|name ...] [-- app arguments]\n"
                   "       (`corral start -h` lists the options)")

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
    restart_cmd = targets_cmd("restart", "stop then start apps (restart count +1 for a "
                              "running app); the options of `start` given change the apps' "
                              "settings; with an ecosystem file, also start its apps that are "
                              "not registered")
    file_options(restart_cmd, True)
    startopts.add_app_options(restart_cmd, "restart")
    restart_cmd.usage = ("corral restart [options] target [target ...] [-- app arguments]\n"
                         "       (`corral restart -h` lists the options)")
    reload_cmd = targets_cmd("reload", "zero-downtime rolling reload of cluster apps: each "
                             "new worker starts and listens before the old one stops (in fork "
                             "mode this is a restart)")
    reload_cmd.add_argument("--parallel", type=int, default=1, metavar="N",
                            help="workers replaced at a time (default 1)")
    file_options(reload_cmd, True)
    startopts.add_app_options(reload_cmd, "reload")
    reload_cmd.usage = ("corral reload [options] target [target ...]\n"
                        "       (`corral reload -h` lists the options)")
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
        else:
            p.add_argument("--no-wait", action="store_true",
                           help="return once the apps are launched (as `start --no-wait`)")
    init = sub.add_parser("init", aliases=["ecosystem"],
                          help="write a commented ecosystem file in this folder")
    init.add_argument("mode", nargs="?", choices=("simple", "full"), default="full",
                      help="simple: one app, no comments (PM2's `ecosystem simple`); full "
                      "(default): every common key, commented")
    init.add_argument("--format", choices=("py", "toml", "yaml", "json"), default="py",
                      help="file format (default py: ecosystem.config.py)")
    init.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    targets_cmd("reset", "set restart counters to 0")
    describe = targets_cmd("describe", "show everything about apps", ("show", "info", "desc"))
    describe.add_argument("--env", "--show-env", dest="show_env", action="store_true",
                          help="also print the environment values (hidden by default)")

    listing = sub.add_parser("list", aliases=list(LIST_COMMANDS[1:]), help="list the apps",
                             description="The process table. Colours follow NO_COLOR and the "
                             "terminal.")
    listing.add_argument("--sort", metavar="FIELD[:asc|:desc]",
                         help="order by name, id, pid, uptime, restarts, cpu, memory or "
                         "status (default id:asc)")
    listing.add_argument("-m", "--mini-list", action="store_true",
                         help="PM2's mini list: a few lines of key : value per app")
    sub.add_parser("prettylist", help="the process list as jlist's data, in Node's "
                   "util.inspect style (PM2's prettylist)")
    env_cmd = sub.add_parser("env", help="print an app's settings and environment values",
                             description="Every pm2_env key of the instance and its "
                             "environment variables, values included (you asked for them).")
    env_cmd.add_argument("target", help="an id (or any target matching one instance)")
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
    logs.add_argument("--format", action="store_true",
                      help="key=value lines: timestamp=… app=NAME id=N type=out|error "
                      "message=…")
    logs.add_argument("--highlight", nargs="?", const="", metavar="TEXT",
                      help="show TEXT in reverse video where it appears (on a terminal)")
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
    web = sub.add_parser("web", help="a web dashboard in the browser (off by default)",
                         description="Turn the web dashboard on in the daemon (remembered "
                         "by the next daemon) and print its URL, which carries the access "
                         "token: the process table, logs, events and actions in a browser. "
                         "Loopback only unless --allow-remote. docs/web.md.")
    web.add_argument("--port", type=int, help="port to serve on (default 9616; 0: any "
                     "free port)")
    web.add_argument("--host", help="address (default 127.0.0.1)")
    web.add_argument("--allow-remote", action="store_true",
                     help="allow a --host that is not a loopback address")
    web_mode = web.add_mutually_exclusive_group()
    web_mode.add_argument("--url", action="store_true",
                          help="print the URL again (the dashboard stays as it is)")
    web_mode.add_argument("--stop", action="store_true", help="turn the dashboard off")
    web_mode.add_argument("--rotate", action="store_true",
                          help="a new access token: the old URL and open pages stop working")
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
    sub.add_parser("update", aliases=["updatePM2"],
                   help="replace the daemon with this corral's version; the apps keep running",
                   description="The daemon hands its apps over and exits; a daemon of this "
                   "corral's version adopts them (cluster workers keep serving and hand their "
                   "listeners back). No app is stopped. Use it after upgrading corral.")
    export = sub.add_parser(
        "export", help="translate an ecosystem file for Kubernetes or systemd",
        description="Write what runs the file's apps elsewhere (docs/deploy.md): Kubernetes "
        "YAML (a Deployment per app, running corral-runtime; a Service where the port is "
        "known) or systemd units. Only the environment the file sets is exported.")
    export.add_argument("target", choices=("kubernetes", "k8s", "systemd"))
    export.add_argument("file", help="the ecosystem file")
    export.add_argument("--env", dest="env_name", metavar="NAME",
                        help="apply each app's env_NAME")
    export.add_argument("--only", metavar="A,B", help="only these apps")
    export.add_argument("--image", help="kubernetes: the container image (default "
                        "FOLDER:latest, FOLDER being the file's folder)")
    export.add_argument("--namespace", metavar="NS", help="kubernetes: metadata.namespace")
    export.add_argument("--secrets", nargs="?", const="auto", metavar="all|A,B",
                        help="kubernetes: variables in a Secret, not inline: those whose name "
                        "or value says secret (PASSWORD, TOKEN, *_KEY, a URL with a "
                        "password), all, or the ones named")
    export.add_argument("--file-in-image", metavar="PATH",
                        help="kubernetes: the file's path in the image (default: its name, "
                        "in the image's working directory)")
    export.add_argument("-o", "--output", metavar="DIR",
                        help="write the files into DIR (default: print them)")
    export.add_argument("-u", "--user", help="systemd: User= of the units (default: you)")
    sub.add_parser("ping", help="check the daemon, starting it if needed")
    sub.add_parser("kill", help="stop every app, then the daemon")
    completion = sub.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)",
        description="Print a script that completes corral's commands, their flags and the "
        "names of the registered apps. bash: add `eval \"$(corral completion bash)\"` to "
        "~/.bashrc; zsh: `eval \"$(corral completion zsh)\"` in ~/.zshrc; fish: `corral "
        "completion fish > ~/.config/fish/completions/corral.fish`.")
    completion.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"),
                            default="bash")
    completion.add_argument("--names", action="store_true",
                            help="print the registered apps' names (what the script calls)")
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


GLOBAL_FLAGS = ("-s", "--silent", "--no-color")


def global_flags(argv: list[str]) -> list[str]:
    """PM2's options that every command takes: -s/--silent (nothing on stdout) and
    --no-color (as NO_COLOR). They are taken out of argv (before `--`) and applied."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = {a for a in argv[:end] if a in GLOBAL_FLAGS}
    if not found:
        return argv
    import os

    if "--no-color" in found:
        os.environ["NO_COLOR"] = "1"
    if found & {"-s", "--silent"}:
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


def _main(argv: list[str] | None) -> int:
    program = argv is None  # run as the `corral` program, not as main([...]) from Python
    argv = global_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        if len(argv) == 1 and (argv[0] in LIST_COMMANDS or argv[0] == "jlist"):
            return fast_list(argv[0], exit_now=program)
    except CorralError as exc:
        print(f"corral: error: {exc.message}", file=sys.stderr)
        return exc.code
    argv, app_args = split_app_args(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in HANDLERS:
        return unknown_command(argv[0])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "start" and not any(e.startswith("-") for e in extra):
        args.scripts += extra  # `start a.js --name x b.js`: scripts between the options
    elif extra:
        bad_arguments(parser, args.command, extra)
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


def unknown_command(word: str) -> int:
    """`corral strat app.py`: the closest command, not a list of forty."""
    import difflib

    names = sorted(HANDLERS)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6) or \
        difflib.get_close_matches(word.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    if close:
        close = [next(n for n in names if n.lower() == close[0].lower())]
    guess = f"; did you mean {close[0]}?" if close else ""
    print(f"corral: error: unknown command {word!r}{guess}\n`corral --help` lists the "
          "commands.", file=sys.stderr)
    return 2


def bad_arguments(parser: argparse.ArgumentParser, command: str | None,
                  extra: list[str]) -> None:
    """Unknown flags or extra words: the sub-command's own usage, and for each flag the
    closest one it has (exits 2, as argparse does)."""
    import difflib

    target = parser
    for action in parser._actions:  # the sub-parsers, by command name
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and command in choices:
            target = choices[command]
    flags = sorted(s for a in target._actions for s in a.option_strings)
    parts = []
    for word in extra:
        flag = word.split("=", 1)[0]
        close = []
        if flag.startswith("--"):  # an abbreviation: the flags it begins, else the closest
            close = [f for f in flags if f.startswith(flag)][:3] or \
                difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
        parts.append(f"{word} (did you mean {' or '.join(close)}?)" if close else word)
    target.error(f"unrecognized arguments: {' '.join(parts)}")


def fast_list(command: str, exit_now: bool = False) -> int:
    """`corral list` / `jlist` without argparse or the API: the most frequent call. The
    table asks for table rows (lists of what it shows, and whether the saved list still
    matches, in one reply; an older daemon gets `list` with brief, then `saved`).
    exit_now (the `corral` program): the process ends here, without the interpreter's
    teardown, a tenth of the call (BENCHMARKS.md, issue 17)."""
    from corral.client.connection import Client
    from corral.store.home import home_from_env

    if exit_now:  # a short-lived process: nothing for the collector to find (~0.5 ms
        import gc  # of 1,000 rows)

        gc.disable()
    client = Client(home_from_env())
    if command == "jlist":
        print_jlist(client.call("list"))
        return _done(exit_now)
    request = client.send("list", table=True)
    from corral.client import render  # while the daemon works

    try:
        reply = client.receive(request)
    except CorralError as exc:  # an older daemon: no table rows (and maybe no brief ones)
        if not exc.message.startswith("bad request: list:"):
            raise
        reply = None
    if isinstance(reply, list):  # rows of the usual shape, from a daemon that ignored `table`
        print_table(reply)
        print_saved_status(client)
        return _done(exit_now)
    if not isinstance(reply, dict) or \
            list(reply.get("columns", ())[:len(render.TABLE_COLUMNS)]) != render.TABLE_COLUMNS:
        try:
            rows = client.call("list", brief=True)
        except CorralError as exc:
            if not exc.message.startswith("bad request: list:"):
                raise
            rows = client.call("list")
        print_table(rows)
        print_saved_status(client)
        return _done(exit_now)
    rows = reply["rows"]
    if not rows:
        print("no apps: start one with `corral start app.py`")
    else:
        width = render.terminal_width()
        print(render.format_cells(render.table_cells(rows), colour=render.use_colour(),
                                  boxed=sys.stdout.isatty(), width=width))
        for line in render.crash_notes(render.table_notes_rows(rows), width):
            print(line)
    if reply["saved"] is False:
        print_changed_since_save()
    return _done(exit_now)


def _done(exit_now: bool) -> int:
    if exit_now:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def print_saved_status(client: Any) -> None:
    """After `list`: one line when the apps changed since `corral save` (PM2 says so
    too); nothing when nothing was saved."""
    try:
        saved = client.call("saved")
    except CorralError:  # an older daemon
        return
    if saved["in_sync"] is False:
        print_changed_since_save()


def print_changed_since_save() -> None:
    print("corral: the apps changed since `corral save`: run `corral save` to keep them",
          file=sys.stderr)


def print_jlist(rows: list[dict[str, Any]]) -> None:
    from corral.client import render
    from corral.model.wire import dumps

    print(dumps([render.to_pm2(r, __version__) for r in rows]))


def print_table(rows: list[dict[str, Any]], failed: list[dict[str, Any]] | None = None
                ) -> None:
    """The table, then a line per app in a crash loop (but those `failed` lists: the
    start that launched them says more)."""
    from corral.client import render

    if not rows:
        print("no apps: start one with `corral start app.py`")
        return
    colour = render.use_colour()
    width = render.terminal_width()
    print(render.format_table(rows, colour=colour, boxed=sys.stdout.isatty(), width=width))
    told = {f["name"] for f in failed or []}
    for line in render.crash_notes([r for r in rows if r["spec"]["name"] not in told],
                                   width):
        print(line)


def run(args: argparse.Namespace, app_args: list[str]) -> int:
    """Run the command argparse found: one cmd_<name> function per command (COMMANDS)."""
    from corral.client.api import API

    return HANDLERS[args.command](API(), args, app_args)


def cmd_list(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import render

    rows = api.list()
    if getattr(args, "sort", None):
        rows = render.sort_rows(rows, args.sort)
    if getattr(args, "mini_list", False):
        print(render.mini_list(rows), end="")
    else:
        print_table(rows)
    print_saved_status(api.client)
    return 0


def cmd_prettylist(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import render

    print(render.pretty([render.to_pm2(r, __version__) for r in api.list()]))
    return 0


def cmd_env(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """PM2's `env <id>`: the instance's pm2_env keys and its environment, values shown."""
    from corral.client import render

    for row in _match(api.list(env=True), [args.target]):
        print(render.env_lines(row, __version__))
    return 0


def cmd_jlist(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print_jlist(api.list(env=args.show_env))
    return 0


def cmd_reload(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    import os

    loaded = load_target(api, args.targets, args)
    if loaded is not None:
        warn(loaded.warnings + file_ignores(args))
        result = api.apply(loaded.specs, "reload", parallel=getattr(args, "parallel", 1))
    elif args.command == "startOrReload":
        raise CorralError(f"{args.targets[0]}: startOrReload takes an ecosystem file")
    elif args.env_name:
        raise CorralError("--env applies an ecosystem file's env_<name>: give the file "
                          "(`corral reload ecosystem.config.py --env NAME`), or use "
                          "--update-env to take this shell's environment")
    else:
        update, toggle = restart_options(args, app_args)
        env = dict(os.environ) if args.update_env else None
        progress = progress_printer()
        chosen = _match(api.list(), args.targets) if progress and not update \
            and not toggle and args.parallel >= 1 else []
        if len(chosen) > 1:
            result = reload_stepwise(api, chosen, args.parallel, env, progress)
        else:
            result = api.reload(args.targets, parallel=args.parallel, env=env,
                                update=update, toggle_watch=toggle)
        warn(result.get("notes", []))
    for name in result["restarted_fork_apps"]:
        print(f"corral: {name} runs in fork mode, which has no zero-downtime reload; "
              "it was restarted", file=sys.stderr)
    print_table(result["list"])
    for failure in result["failures"]:
        print(f"corral: error: {failure}", file=sys.stderr)
    if result["failures"]:
        return 1
    return attach(api, args, result["ids"])


def reload_stepwise(api: Any, chosen: list[dict[str, Any]], parallel: int,
                    env: dict[str, str] | None, progress: Any) -> dict[str, Any]:
    """A rolling reload driven from here, `parallel` instances a request, with a line per
    instance replaced (on a terminal); it stops at the first failure, as the daemon's."""
    merged: dict[str, Any] = {"ids": [], "failures": [], "restarted_fork_apps": [],
                              "list": []}
    total = len(chosen)
    for start in range(0, total, parallel):
        batch = chosen[start:start + parallel]
        result = api.reload([str(r["pm_id"]) for r in batch], parallel=len(batch), env=env)
        for key in ("ids", "failures", "restarted_fork_apps"):
            merged[key] += [v for v in result[key] if v not in merged[key]]
        merged["list"] = result["list"]
        pids = {r["pm_id"]: r["pid"] for r in result["list"]}
        for number, row in enumerate(batch, start + 1):
            progress(f"reload {row['spec']['name']} [{number}/{total}]: id {row['pm_id']}, "
                     f"pid {row['pid']} -> {pids.get(row['pm_id'], 0)}")
        if result["failures"]:
            break
    return merged


def cmd_logs(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import logview, render

    types = ["err"] if args.err else ["out"] if args.out else ["out", "err", "daemon"]
    return logview.show(api, args.targets, args.lines, types, args.raw, args.json,
                        args.timestamp, not args.nostream, render.use_colour(),
                        key_values=args.format, highlight=args.highlight)


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


def cmd_web(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """`corral web`: on (or moved), --url, --stop, --rotate; prints the URL with its token."""
    if (args.url or args.stop or args.rotate) and (args.port is not None or args.host
                                                     or args.allow_remote):
        raise CorralError("--port, --host and --allow-remote go with `corral web` alone")
    action = "status" if args.url else "stop" if args.stop else \
        "rotate" if args.rotate else "start"
    result = api.client.call("web", action=action, port=args.port, host=args.host,
                             allow_remote=args.allow_remote)
    if args.stop:
        print("corral: the web dashboard is off")
        return 0
    if result["url"] is None:
        if args.rotate:
            print("corral: new access token written; the web dashboard is off (corral web)")
            return 0
        raise CorralError("the web dashboard is off; `corral web` turns it on")
    if result["remote"]:
        warn([f"the dashboard listens on {result['address'][0]}, beyond this machine: anyone "
              "who can reach it may try the token, and plain HTTP carries the token and "
              "your logs unencrypted; prefer a loopback address behind an SSH tunnel or a "
              "TLS proxy"])
    print(result["url"])
    return 0


def cmd_scale(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    print_table(api.scale(args.name, args.count)["list"])
    return 0


def cmd_act(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """stop, restart, delete, reset and startOrRestart: on targets or on a file's apps."""
    import os

    command = args.command
    action = {"del": "delete", "startOrRestart": "restart"}.get(command, command)
    loaded = load_target(api, args.targets, args)
    if loaded is not None:
        warn(loaded.warnings + file_ignores(args))
        result = act_on_loaded(api, action, loaded, not getattr(args, "no_wait", False))
    elif command.startswith("startOr"):
        raise CorralError(f"{args.targets[0]}: {command} takes an ecosystem file")
    elif getattr(args, "env_name", None):
        raise CorralError("--env applies an ecosystem file's env_<name>: give the file "
                          "(`corral restart ecosystem.config.py --env NAME`), or use "
                          "--update-env to take this shell's environment")
    elif action == "restart":
        update, toggle = restart_options(args, app_args)
        result = api.restart_with(args.targets, update=update, toggle_watch=toggle,
                                  env=dict(os.environ) if args.update_env else None,
                                  wait=not getattr(args, "no_wait", False))
        warn(result.get("notes", []))
    else:
        result = api.act(action, args.targets)
    print_table(result["list"], result.get("failed"))
    if report_failed(result.get("failed", []), result):
        return 1
    return attach(api, args, result.get("ids", [])) if action == "restart" else 0


def restart_options(args: argparse.Namespace, app_args: list[str]
                    ) -> tuple[dict[str, Any], bool]:
    """The options of `start` given to restart / reload: (fields to update, toggle watch)."""
    from corral.client import startopts

    notes: list[str] = []
    typed = startopts.given(args) & set(startopts.DEFAULT_DESTS)
    update, toggle = startopts.update_options(args, typed, app_args, notes)
    warn(startopts.compat_notes(args) + notes)
    return update, toggle


def file_ignores(args: argparse.Namespace) -> list[str]:
    """With an ecosystem file the file's settings apply: the app options typed do not."""
    from corral.client import startopts

    typed = sorted(startopts.given(args) & set(startopts.DEFAULT_DESTS)
                   - {"update_env", "parallel", "attach", "no_wait"})
    if not typed:
        return []
    return ["with an ecosystem file its settings apply; ignored: "
            + ", ".join("--" + t.replace("_", "-") for t in typed)]


def attach(api: Any, args: argparse.Namespace, ids: list[int]) -> int:
    """PM2's --attach: after the command, follow the logs of the apps it acted on."""
    if not getattr(args, "attach", False) or not ids:
        return 0
    from corral.client import logview, render

    return logview.show(api, [str(i) for i in ids], 0, ["out", "err"], False, False, None,
                        True, render.use_colour())


def cmd_init(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.config.templates import write_template

    print(f"corral: wrote {write_template(args.format, args.force, simple=args.mode == 'simple')}")
    return 0


def cmd_describe(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    from corral.client import render

    rows = api.list(env=True)  # the app's PATH finds its program; values shown with --env
    ids = {t["pm_id"] for t in _match(rows, args.targets)}
    for row in rows:
        if row["pm_id"] in ids:
            row["app_path"] = (row["spec"].get("env") or {}).get("PATH")
            if not args.show_env:
                row["spec"]["env"] = {}
            if row["pid"] and not row.get("listening"):  # fork mode: what the tree binds
                row["listening"] = render.listening_of(row["pid"])
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
    if result["ids"]:
        print(f"sent {result['signal']} to ids {result['ids']}")
    if result.get("not_running"):
        raise CorralError(f"not running, no {result['signal']} sent: "
                          + ", ".join(result["not_running"]))
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


def cmd_export(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """`corral export kubernetes|systemd FILE`: the file's apps for another engine, with
    the environment the file sets (nothing of this shell's). docs/deploy.md."""
    import os
    import pwd

    from corral.config import ecosystem, export

    kube = args.target in ("kubernetes", "k8s")
    wrong = [flag for flag, value, ok in (
        ("--image", args.image, kube), ("--namespace", args.namespace, kube),
        ("--secrets", args.secrets, kube), ("--file-in-image", args.file_in_image, kube),
        ("--user", args.user, not kube)) if value is not None and not ok]
    if wrong:
        raise CorralError(f"{', '.join(wrong)}: not an option of `corral export {args.target}`")
    loaded = ecosystem.load(args.file, args.env_name, only_list(args), base_env={})
    warn(loaded.warnings)
    source = export.Source(loaded.path, args.env_name, loaded.file_names,
                           single=len(loaded.specs) == 1 and not args.only)
    if kube:
        folder = os.path.basename(os.path.dirname(loaded.path))
        image = args.image or f"{export.k8s_name(folder or 'app')}:latest"
        result = export.kubernetes(loaded.specs, source, export.KubeOptions(
            image, args.namespace, args.secrets, args.file_in_image or ""))
    else:
        user = args.user or pwd.getpwuid(os.getuid()).pw_name
        result = export.systemd(loaded.specs, source, export.SystemdOptions(user, sys.executable))
    warn(result.notes)
    if args.output is None:
        for name, text in result.files.items():
            if name:
                print(f"# ---- {name}")
            sys.stdout.write(text)
        return 0
    for name, text in result.files.items():
        path = os.path.join(args.output, name or "kubernetes.yaml")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        except OSError as exc:
            raise CorralError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"corral: wrote {path}")
    return 0


def cmd_completion(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """`corral completion bash|zsh|fish`: the script; `--names`: the apps, for it."""
    from corral.client import completion

    if args.names:
        for name in completion.names(api.home):
            print(name)
        return 0
    sys.stdout.write(completion.script(args.shell, build_parser()))
    return 0


def cmd_kill(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.kill()
    print(f"corral: stopped {result['stopped']} process(es) and the daemon")
    return 0


def cmd_resurrect(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    result = api.resurrect(progress=progress_printer())
    warn(result["notes"])
    for problem in result["problems"]:
        print(f"corral: error: not resurrected: {problem}", file=sys.stderr)
    if result["present"]:
        print("corral: already registered, left as they are: " + ", ".join(result["present"]))
    print(f"corral: resurrected {len(result['started'])} app(s) from {result['file']}"
          + (": " + ", ".join(result["started"]) if result["started"] else ""))
    print_table(result["list"], result["failed"])
    failed = report_failed(result["failed"], result)
    return 1 if result["problems"] or failed else 0


def progress_printer() -> Any:
    """For long operations (a rolling reload, a file of several apps, resurrect): a
    function printing one line per step, on a terminal only (so not with --silent, whose
    stdout is /dev/null, nor into a pipe); None elsewhere."""
    if not sys.stdout.isatty():
        return None

    def step(text: str) -> None:
        print(f"corral: {text}", flush=True)

    return step


def _match(rows: list[dict[str, Any]], targets: list[str]) -> list[dict[str, Any]]:
    """Client-side target matching for read-only commands (model.targets, as the daemon)."""
    from corral.model.targets import Entry, select, to_wire

    by_id = {r["pm_id"]: r for r in rows}
    entries = {pm_id: Entry(r["spec"]["name"], r["spec"]["namespace"], r["spec"]["exec_path"])
               for pm_id, r in by_id.items()}
    return [by_id[pm_id] for pm_id in select(to_wire(targets), entries)]


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
    """Warnings on stderr; on a terminal, wrapped to its width (words are not cut)."""
    width = None
    if messages and sys.stderr.isatty():
        from corral.client.render import terminal_width

        width = terminal_width(sys.stderr)
    for message in messages:
        text = f"corral: warning: {message}"
        if width:
            import textwrap

            text = textwrap.fill(text, width - 1, subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False)
        print(text, file=sys.stderr)


def load_target(api: Any, targets: list[str], args: argparse.Namespace) -> Any:
    """The apps a command's single target stands for, when it is an ecosystem file or `-`
    (an ecosystem as JSON on stdin, as PM2 reads it); else None."""
    if targets == ["-"]:
        return api.load_stdin(sys.stdin.read(), getattr(args, "env_name", None),
                              only_list(args))
    file = ecosystem_target(targets)
    if file is None:
        return None
    return api.load_file(file, getattr(args, "env_name", None), only_list(args))


def act_on_loaded(api: Any, action: str, loaded: Any, wait: bool = True) -> Any:
    """stop / delete / restart / reset the apps of an ecosystem file."""
    if action == "restart":
        return api.apply(loaded.specs, "restart", wait=wait, progress=progress_printer())
    names = [s.name for s in loaded.specs]
    registered = {row["spec"]["name"] for row in api.list()}
    present = [n for n in names if n in registered]
    if not present:
        raise CorralError(f"{loaded.path}: none of its apps ({', '.join(names)}) is "
                          f"registered (no process found); `corral start {loaded.path}` "
                          "starts them")
    return api.act_in_order(action, loaded.specs, present)


ACTIVE = ("online", "launching", "waiting restart")  # else PM2's start restarts the app


def cmd_start(api: Any, args: argparse.Namespace, app_args: list[str]) -> int:
    """Start scripts, files, or (smart start) restart registered apps: every word is
    resolved first, so that a mistake in one starts nothing."""
    import os

    from corral.client import startopts
    from corral.config.ecosystem import find_default

    typed = startopts.given(args)
    startopts.fill_defaults(args)
    warn(startopts.compat_notes(args))
    words = list(args.scripts)
    if not words and args.watch:
        # `start --watch app.py`: --watch takes optional paths, and took the script
        words = [w for w in args.watch if not os.path.isdir(w)]
        args.watch = [w for w in args.watch if os.path.isdir(w)]
        warn([f"--watch {' '.join(words)}: taken as the app to start, not as paths to "
              "watch; it watches " + (" ".join(args.watch) if args.watch else
                                      "the app's folder") + ". Paths to watch go after "
              "the script: `corral start app.py --watch src`"])
    if not words:
        found = find_default(os.getcwd())
        swallowed = [f"--{dest.replace('_', '-')} took {' '.join(getattr(args, dest))!r}"
                     for dest in ("ignore_watch", "filter_env", "stop_exit_codes")
                     if getattr(args, dest, None)]
        if found is None and swallowed:
            raise CorralError(f"no app given: {'; '.join(swallowed)} as its values; put "
                              "the script before the options (`corral start app.py "
                              "--ignore-watch '*.log'`)")
        if found is None:
            raise CorralError(f"no app given and no ecosystem file in {os.getcwd()}; "
                              "`corral start app.py`, or `corral init` to write "
                              "ecosystem.config.py")
        words = [found]
    if len(words) > 1 and args.name:
        raise CorralError("--name with several scripts would give them one name; start them "
                          "one at a time")
    rows = api.list()
    plan = [plan_start(api, word, args, typed, app_args, rows) for word in words]
    if (args.env_name or args.only) and not any(kind == "file" for kind, _ in plan):
        warn(["--env and --only apply to an ecosystem file; ignored"])
    warn(api.notes)
    result: dict[str, Any] = {"list": rows}
    ids: list[int] = []
    failed: list[dict[str, Any]] = []
    wait = not args.no_wait
    for kind, what in plan:
        if kind == "file":
            warn(what.warnings)
            if args.instances is not None:  # -i N overrides the file's instances
                from corral.config.resolve import parse_instances

                for spec in what.specs:
                    spec.instances = parse_instances(args.instances)
            # PM2: `start FILE` restarts its apps
            result = api.apply(what.specs, "restart", wait=wait,
                               progress=progress_printer())
            ids += result["started"] + result["restarted"]
            warn(silent_cluster_notes(result["list"], result["started"]))
        elif kind == "restart":
            word, update, toggle = what
            result = api.restart_with([word], update=update, toggle_watch=toggle,
                                      env=dict(os.environ) if args.update_env else None,
                                      wait=wait)
            warn(result.get("notes", []))
            ids += result["ids"]
        else:
            result = api.start(what, wait=wait)
            ids += result["started"]
            warn(silent_cluster_notes(result["list"], result["started"]))
        failed += result.get("failed", [])
    print_table(result["list"], failed)
    if report_failed(failed, result):
        return 1
    return attach(api, args, ids)


def report_failed(failed: list[dict[str, Any]], result: dict[str, Any]) -> bool:
    """Say, for each app that a start, restart or file found failing (daemon/outcome.py),
    what happened, its last error lines, where its log is, a hint and what corral does
    now. True if there was any."""
    if not failed and not result.get("not_started"):
        return False
    import textwrap

    from corral.client.render import shorten, terminal_width

    sys.stdout.flush()
    width = terminal_width(sys.stderr) if sys.stderr.isatty() else None

    def say(text: str, indent: str = "") -> None:
        print(textwrap.fill(text, min(width or 80, 80) - 1, initial_indent=indent,
                            subsequent_indent=indent + "  ", break_on_hyphens=False,
                            break_long_words=False), file=sys.stderr)

    apps: dict[str, list[dict[str, Any]]] = {}
    for item in failed:
        apps.setdefault(item["name"], []).append(item)
    for name, items in apps.items():
        first = items[0]
        ids = ", ".join(str(i["pm_id"]) for i in items)
        say(f"corral: error: {name} (id {ids}) {first['what']}")
        if first["lines"]:
            say(f"last lines of {first['log']}:", "  ")
            for line in first["lines"]:  # on a terminal, cut to its width (the log has all)
                print(shorten(f"  | {line}", width) if width else f"  | {line}",
                      file=sys.stderr)
        elif first["logs_off"]:
            say("its logs are turned off (disable_logs, or /dev/null): nothing to show", "  ")
        else:
            say(f"it wrote nothing; its log: {first['log']}", "  ")
        if first["last_error"] and first["last_error"] not in "\n".join(first["lines"]):
            say(f"corral: {first['last_error']}", "  ")
        if first["hint"]:
            say(f"hint: {first['hint']}", "  ")
        status = first["status"]
        if status == "errored":
            why = first["reason"] or "see above"
            if "too many unstable restarts" in why:
                why = "too many unstable restarts"
            say(f"{name} is errored ({why}); fix it, then `corral restart {name}`", "  ")
        elif status == "stopped":
            say(f"{name} is stopped; fix it, then `corral restart {name}`", "  ")
        else:
            say(f"corral keeps restarting it (↺ {first['restarts']}, status {status}), "
                f"until too many unstable restarts make it errored: fix it, then `corral "
                f"restart {name}`, or `corral delete {name}`", "  ")
    if result.get("not_started"):
        say("corral: error: not started, as they depend on an app that failed: "
            + ", ".join(result["not_started"]))
    return True


def plan_start(api: Any, word: str, args: argparse.Namespace, typed: set[str],
               app_args: list[str], rows: list[dict[str, Any]]) -> tuple[str, Any]:
    """What `start WORD` does: ("file", Loaded), ("restart", (target, update, toggle))
    or ("spec", AppSpec). PM2's smart start: a registered app's name, id or namespace
    restarts it with the options given, and so does a script whose app (same script, same
    name) is stopped or errored; a running one is a duplicate unless -f."""
    import os

    from corral.client import startopts
    from corral.config.ecosystem import is_ecosystem_file

    if not args.module and word == "-":
        return "file", load_target(api, ["-"], args)
    if not args.module and is_ecosystem_file(word) and os.path.isfile(word):
        return "file", api.load_file(word, args.env_name, only_list(args))
    workdir = os.path.abspath(os.path.expanduser(args.cwd)) if args.cwd else os.getcwd()

    def restart(target: str) -> tuple[str, Any]:
        notes: list[str] = []
        update, toggle = startopts.update_options(args, typed, app_args, notes)
        warn(notes)
        return "restart", (target, update, toggle)

    if (not args.module and not args.cwd and os.sep not in word and " " not in word
            and not os.path.exists(os.path.join(workdir, word))
            and _match_quietly(rows, word)):
        return restart(word)
    spec = api.spec(word, **startopts.spec_options(args, app_args))
    startopts.node_args_for(spec, args.node_args, api.notes)
    same = [r for r in rows if r["spec"]["name"] == spec.name
            and r["spec"]["kind"] == spec.kind and r["spec"]["exec_path"] == spec.exec_path
            and (spec.exec_path or r["spec"]["script"] == spec.script)]
    if same and not args.force:
        if any(r["status"] in ACTIVE for r in same):
            rec = same[0]
            raise CorralError(
                f"{spec.script} is already managed as {spec.name!r} (id {rec['pm_id']}); "
                f"use `corral restart {spec.name}`, or -f to start it again")
        return restart(spec.name)
    return "spec", spec


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
    (("prettylist",), cmd_prettylist),
    (("env",), cmd_env),
    (("start",), cmd_start),
    (("reload", "startOrReload"), cmd_reload),
    (("logs", "log"), cmd_logs),
    (("flush",), cmd_flush),
    (("reloadLogs", "reload-logs"), cmd_reload_logs),
    (("monit", "dashboard", "dash"), cmd_monit),
    (("metrics",), cmd_metrics),
    (("web",), cmd_web),
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
    (("update", "updatePM2"), cmd_update),
    (("ping",), cmd_ping),
    (("kill",), cmd_kill),
    (("export",), cmd_export),
    (("completion",), cmd_completion),
)
HANDLERS = {name: handler for names, handler in COMMANDS for name in names}
