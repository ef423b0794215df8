"""`corral save` / `resurrect` / `cleardump`: the saved process list.

The saved list is `CORRAL_HOME/dump.json` (the previous one is kept as
`dump.json.bak`). It is separate from `state.json`, which the daemon rewrites on
every change so that a daemon that dies comes back with what it had; the dump
changes only when the user says `corral save`, and it is what `corral resurrect`
(and so the boot unit of `corral startup`) brings back.

Each app is saved once, with its resolved settings (the same ones `state.json`
keeps, environment included), its number of instances, and whether it was
stopped: a stopped app comes back registered and stopped, as in PM2 since #1090.
The file is mode 0600 in a 0700 folder, because the environment may hold secrets.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

from corral.model import states
from corral.model.errors import CorralError
from corral.model.spec import AppSpec, InstanceRecord
from corral.model.version import __version__
from corral.store.home import Home, open_own, write_json_atomically

DUMP_VERSION = 1


def dump_path(home: Home) -> str:
    return os.path.join(home.root, "dump.json")


def build(records: Iterable[InstanceRecord]) -> dict[str, Any]:
    """The saved form of a process list: one entry per app, in id order."""
    apps: dict[str, dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: r.pm_id):
        entry = apps.get(rec.spec.name)
        if entry is None:
            entry = apps[rec.spec.name] = {"spec": rec.spec.to_dict(), "instances": 0,
                                           "stopped": True}
        entry["instances"] += 1
        if rec.status != states.STOPPED:  # online, launching, errored...: start it again
            entry["stopped"] = False
    return {"version": DUMP_VERSION, "corral": __version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "apps": list(apps.values())}


_SAVED: dict[str, Any] = {}  # the last dump read by in_sync(): (mtime, size), apps
_NOT_COMPARED = ("force", "autostart", "instances")  # set by a start or a resurrect itself


def _key(apps: list[dict[str, Any]]) -> str:
    """What makes two saved lists the same for `resurrect`: each app's settings, number
    of instances and stopped flag (not what a start or a resurrect sets by itself)."""
    entries = []
    for entry in apps:
        spec = {k: v for k, v in entry["spec"].items() if k not in _NOT_COMPARED}
        entries.append([spec, entry["instances"], entry.get("stopped", False)])
    return json.dumps(entries, sort_keys=True, default=str)


def _entries(apps: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any, Any]]:
    """The saved apps as _same() compares them: a copy of each one's settings (_same()
    sets in it the ones _key() leaves out to the current values), instances, stopped."""
    return [(dict(entry["spec"]), entry["instances"], entry.get("stopped", False))
            for entry in apps]


def _same(records: Iterable[InstanceRecord], apps: list[dict[str, Any]],
          saved: list[tuple[dict[str, Any], Any, Any]]) -> bool:
    """Would `corral save` now write the same list as the saved `apps` (their _entries()
    in `saved`)? _key() of both, but compared as Python values first, without its JSON
    round trip (~0.1 ms an app: a `list` of 1,000 saved apps took 120 ms more); an app
    that differs is then compared through JSON as _key() does (a tuple is not a list in
    Python, but is in JSON). Settings come from JSON, so values equal in Python are equal
    JSON, but for 1 == 1.0 == True."""
    current: dict[str, list[Any]] = {}
    for rec in sorted(records, key=lambda r: r.pm_id):
        entry = current.get(rec.spec.name)
        if entry is None:
            entry = current[rec.spec.name] = [rec.spec, 0, True]
        entry[1] += 1
        if rec.status != states.STOPPED:
            entry[2] = False
    if len(current) != len(saved):
        return False
    for (spec, count, stopped), theirs, their_app in zip(current.values(), saved, apps):
        mine, their_spec = spec.__dict__, theirs[0]
        for key in _NOT_COMPARED:  # not compared: theirs takes ours (a copy of the file's)
            if key in mine:
                their_spec[key] = mine[key]
        if count == theirs[1] and stopped == theirs[2] and mine == their_spec:
            continue
        ours = {"spec": spec.to_dict(), "instances": count, "stopped": stopped}
        if _key([json.loads(json.dumps(ours, default=str))]) != _key([their_app]):
            return False
    return True


def in_sync(home: Home, records: Iterable[InstanceRecord]) -> bool | None:
    """None when nothing was saved (or the save cannot be read); else whether `corral
    save` now would save the same list (`list` says so when not, as PM2 does)."""
    path = dump_path(home)
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        if _SAVED.get("stamp") != stamp:
            apps = _parse(path)["apps"]
            _SAVED.update(stamp=stamp, apps=apps, entries=_entries(apps))
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return None
    return _same(records, _SAVED["apps"], _SAVED["entries"])


def write(home: Home, data: dict[str, Any], force: bool = False) -> str:
    """Write the dump atomically (temp file, fsync, rename); the old one becomes .bak."""
    path = dump_path(home)
    if not data["apps"] and not force:
        raise CorralError("nothing to save: no app is registered, and saving would make "
                          "`corral resurrect` start nothing; `corral save --force` saves the "
                          "empty list anyway")
    try:
        write_json_atomically(path, data, backup=f"{path}.bak", indent=1)
    except OSError as exc:
        raise CorralError(f"cannot write {exc.filename or path}: {exc.strerror or exc}; "
                          "check that CORRAL_HOME is writable") from None
    return path


def _parse(path: str) -> dict[str, Any]:
    """One dump file, checked; ValueError says what is wrong with it."""
    with os.fdopen(open_own(path), encoding="utf-8") as f:  # ours, and not a link
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON at line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("apps"), list):
        raise ValueError('not a corral dump (expected an object with an "apps" list)')
    for i, entry in enumerate(data["apps"]):
        if not (isinstance(entry, dict) and isinstance(entry.get("spec"), dict)
                and isinstance(entry["spec"].get("name"), str)
                and isinstance(entry.get("instances"), int) and entry["instances"] >= 1):
            raise ValueError(f'apps[{i}] is not a saved app (it needs "spec" with a "name", '
                             'and "instances" >= 1)')
    return data


def read(home: Home) -> tuple[dict[str, Any], str, list[str]]:
    """The saved list, from dump.json or else dump.json.bak: (data, file used, warnings).
    A broken dump is left in place (renamed aside would hide it); the error names it."""
    path = dump_path(home)
    problems: list[tuple[str, Exception]] = []
    for candidate in (path, f"{path}.bak"):
        try:
            data = _parse(candidate)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            problems.append((candidate, exc))
            continue
        notes = [f"{name} is unusable ({exc})" for name, exc in problems]
        if candidate != path:
            notes.append(f"using the previous save, {candidate}")
        return data, candidate, notes
    if problems:
        raise CorralError("no usable saved list: "
                          + "; ".join(f"{name}: {exc}" for name, exc in problems)
                          + "; fix or delete the file, then `corral save` again")
    raise CorralError(f"nothing saved in {home.root}: `corral save` writes the list of "
                      "running apps that `corral resurrect` brings back")


def specs_to_resurrect(data: dict[str, Any], running: set[str]
                       ) -> tuple[list[AppSpec], list[str], list[str]]:
    """(specs to start, names already there, problems) for the saved apps."""
    specs, present, problems = [], [], []
    for entry in data["apps"]:
        spec = AppSpec.from_dict(entry["spec"])
        if spec.name in running:
            present.append(spec.name)
            continue
        if spec.kind in ("script", "binary") and not os.path.exists(spec.exec_path):
            problems.append(f"{spec.name}: its {spec.kind} {spec.exec_path} no longer exists")
            continue
        if spec.cwd and not os.path.isdir(spec.cwd):
            problems.append(f"{spec.name}: its folder {spec.cwd} no longer exists")
            continue
        spec.instances = entry["instances"]
        spec.autostart = not entry.get("stopped", False)
        spec.force = True  # the same script under another name is what was saved
        specs.append(spec)
    return specs, present, problems
