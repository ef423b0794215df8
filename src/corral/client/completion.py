"""`corral completion bash|zsh|fish`: a shell completion script (docs/cli.md,
"Shell completion"). The commands and each command's flags are written into the
script from the parser; the names of the registered apps are asked at completion
time from `corral completion --names`, which never starts a daemon.
"""

from __future__ import annotations

import argparse
from typing import Any

# commands whose words are targets (app names); start also takes files
TARGETS = ("start", "stop", "restart", "reload", "delete", "del", "describe", "show",
           "info", "desc", "reset", "logs", "log", "flush", "pid", "id", "sendSignal",
           "send-signal", "scale", "env", "startOrRestart", "startOrReload")
FILES = ("start", "restart", "reload", "delete", "stop", "startOrRestart", "startOrReload",
         "export")


def commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every command (aliases too) -> its flags."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                found[name] = sorted({s for a in sub._actions for s in a.option_strings
                                      if s.startswith("--") or len(s) == 2})
    return found


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    table = commands(parser)
    if shell == "fish":
        return _fish(table)
    text = _bash(table)
    if shell == "zsh":
        return ("# corral completion for zsh (bash's, through bashcompinit)\n"
                "autoload -U +X compinit && compinit\n"
                "autoload -U +X bashcompinit && bashcompinit\n" + text)
    return text


def _bash(table: dict[str, list[str]]) -> str:
    cases = "\n".join(f"        {name}) flags=\"{' '.join(flags)}\" ;;"
                      for name, flags in sorted(table.items()))
    return f"""# corral completion for bash: eval "$(corral completion bash)"
_corral() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="${{COMP_WORDS[1]}}" flags=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{' '.join(sorted(table))} -h --help -v --version" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return
    fi
    case "$cmd" in
        {'|'.join(TARGETS)})
            COMPREPLY=($(compgen -W "$(corral completion --names 2>/dev/null)" -- "$cur"))
            ;;
    esac
    case "$cmd" in
        {'|'.join(FILES)})
            COMPREPLY+=($(compgen -f -- "$cur"))
            ;;
    esac
}}
complete -o filenames -F _corral corral
"""


def _fish(table: dict[str, list[str]]) -> str:
    lines = ["# corral completion for fish: corral completion fish | source",
             "complete -c corral -f",
             f"complete -c corral -n __fish_use_subcommand -a '{' '.join(sorted(table))}'"]
    for name, flags in sorted(table.items()):
        for flag in flags:
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            lines.append(f"complete -c corral -n '__fish_seen_subcommand_from {name}' "
                         f"{option}")
    lines.append(f"complete -c corral -n '__fish_seen_subcommand_from {' '.join(TARGETS)}' "
                 "-a '(corral completion --names 2>/dev/null)'")
    lines.append(f"complete -c corral -n '__fish_seen_subcommand_from {' '.join(FILES)}' "
                 "-F")
    return "\n".join(lines) + "\n"


def names(home: Any) -> list[str]:
    """The registered apps' names, namespaces and `all`, if a daemon runs (none is
    started for a completion)."""
    from corral.client.connection import Client

    try:
        client = Client(home, start=False)
    except Exception:  # noqa: BLE001 - no daemon, or not ours: nothing to complete
        return []
    try:
        rows = client.call("list")
    finally:
        client.close()
    found = sorted({r["spec"]["name"] for r in rows} | {r["spec"]["namespace"] for r in rows})
    return [*found, "all"] if found else []
