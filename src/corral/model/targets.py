"""What a command's words name: an app, an id, a namespace, a script path, a `/regex/`
on the names, or `all`.

One matcher for both sides: the daemon resolves targets to instances, the CLI
filters rows it already has (describe, pid, id) with the same rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from corral.model.errors import CorralError


class Entry(NamedTuple):
    """What a target can match of one instance."""

    name: str
    namespace: str
    exec_path: str


def to_wire(words: Iterable[str | int]) -> list[dict[str, Any]]:
    """The targets as sent to the daemon: each word, and its absolute path when it names
    an existing file (so `corral stop app.py` finds the app running that script)."""
    out = []
    for word in words:
        text = str(word)
        out.append({"name": text, "path": os.path.abspath(text) if os.path.isfile(text)
                    else None})
    return out


def is_regex(word: str) -> bool:
    """PM2's `/regex/` target: a word that starts and ends with a slash."""
    return len(word) > 2 and word.startswith("/") and word.endswith("/")


def select(targets: Iterable[dict[str, Any]], entries: Mapping[int, Entry],
           empty_ok: bool = False) -> list[int]:
    """The ids the targets name, in id order. Each word is tried as `all`, a `/regex/` on
    the name, a name, an id, a namespace, then a script path; words that match nothing are
    one error ("no process found"), `all` on an empty list too unless empty_ok."""
    chosen: set[int] = set()
    unknown = []
    for target in targets:
        name = str(target.get("name", ""))
        path = target.get("path")
        if name == "all":
            if not entries and not empty_ok:
                raise CorralError("no process found: the process list is empty")
            chosen.update(entries)
            continue
        if is_regex(name):
            try:
                pattern = re.compile(name[1:-1])
            except re.error as exc:
                raise CorralError(f"target {name}: not a valid regular expression ({exc})"
                                  ) from None
            matched = [i for i, e in entries.items() if pattern.search(e.name)]
            if not matched:
                unknown.append(name)
            chosen.update(matched)
            continue
        matched = [i for i, e in entries.items() if e.name == name]
        if not matched and name.isdigit() and int(name) in entries:
            matched = [int(name)]
        if not matched:
            matched = [i for i, e in entries.items() if e.namespace == name]
        if not matched and path:
            matched = [i for i, e in entries.items() if e.exec_path == path]
        if not matched:
            unknown.append(name)
        chosen.update(matched)
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise CorralError(f"unknown target {listed}: no process found (no app, id, namespace "
                          "or script of that name, no name matching a /regex/); "
                          "`corral list` shows what exists")
    return sorted(chosen)
