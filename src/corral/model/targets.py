"""What a command's words name: an app, an id, a namespace, a script path, or `all`.

One matcher for both sides: the daemon resolves targets to instances, the CLI
filters rows it already has (describe, pid, id) with the same rules.
"""

from __future__ import annotations

import os
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


def select(targets: Iterable[dict[str, Any]], entries: Mapping[int, Entry]) -> list[int]:
    """The ids the targets name, in id order. Each word is tried as a name, then an id,
    then a namespace, then a script path; words that match nothing are one error."""
    chosen: set[int] = set()
    unknown = []
    for target in targets:
        name = str(target.get("name", ""))
        path = target.get("path")
        if name == "all":
            chosen.update(entries)
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
        raise CorralError(f"unknown target {listed}: no app, id, namespace or script of that "
                          "name; `corral list` shows what exists")
    return sorted(chosen)
