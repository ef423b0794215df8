"""The persisted process list: CORRAL_HOME/state.json, written on every change.

A daemon killed at any moment comes back with every app (docs/daemon.md): the
file is replaced atomically (write_json_atomically), and the pid with its start
time tells a live process of ours from a reused pid.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from corral.model.spec import InstanceRecord
from corral.model.validate import record_from_dict
from corral.model.version import __version__
from corral.store.home import Home, open_own, write_json_atomically

log = logging.getLogger("corral.daemon")

STATE_VERSION = 1  # the layout of state.json; a newer one is read with a warning


@dataclass
class State:
    records: list[InstanceRecord] = field(default_factory=list)
    next_id: int = 0
    metrics: Any = None  # the endpoint `corral metrics --port` turned on, if any
    web: Any = None  # the dashboard `corral web` turned on, if any (its host and port)
    # (pid, start time) of the entries that could not be read: stopped if they still run
    strays: list[tuple[int, float]] = field(default_factory=list)


def write_state(home: Home, records: list[dict[str, Any]], next_id: int,
                metrics: Any, web: Any = None) -> None:
    """Replace state.json atomically; OSError when it cannot be written."""
    state = {
        "version": STATE_VERSION,
        "corral": __version__,
        "next_id": next_id,
        "instances": records,
        "metrics": metrics,
        "web": web,
    }
    write_json_atomically(home.state_file, state, separators=(",", ":"))


def read_state(home: Home) -> State:
    """The last persisted list; an unreadable file is set aside (logged) and read as empty,
    an unreadable entry is skipped (logged)."""
    try:
        with os.fdopen(open_own(home.state_file)) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"an object was expected, not {type(data).__name__}")
    except FileNotFoundError:
        return State()
    except PermissionError as exc:  # planted by another user, or a link: never run it
        log.error("refusing the process list: %s", exc)
        return State()
    except (OSError, ValueError, RecursionError) as exc:
        broken = f"{home.state_file}.broken-{int(time.time())}"
        log.error("unreadable process list %s (%s); kept as %s", home.state_file,
                  str(exc)[:200], broken)
        try:
            os.replace(home.state_file, broken)
        except OSError:
            pass
        return State()
    version = data.get("version", STATE_VERSION)
    if not isinstance(version, int) or version > STATE_VERSION:
        log.warning("%s has layout version %r, newer than this corral's (%d, corral %s); "
                    "reading what it understands", home.state_file, version, STATE_VERSION,
                    __version__)
    records = []
    strays = []
    entries = data.get("instances", []) if isinstance(data, dict) else []
    for entry in entries if isinstance(entries, list) else []:
        try:
            records.append(record_from_dict(entry))
        except ValueError as exc:
            log.error("skipping an unreadable entry of the process list: %s", exc)
            if isinstance(entry, dict) and isinstance(entry.get("pid"), int) \
                    and isinstance(entry.get("pid_create_time"), (int, float)):
                strays.append((entry["pid"], float(entry["pid_create_time"])))
    next_id = data.get("next_id", 0)
    return State(records, next_id if isinstance(next_id, int) and next_id >= 0 else 0,
                 data.get("metrics"), data.get("web"), strays)


def is_same_process(pid: int, recorded_create_time: float) -> bool:
    """True when pid is alive and is the process that was recorded (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - recorded_create_time) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def orphans_left(home: Home) -> bool:
    """Does the process list name a process that still runs (one a dead daemon left)?"""
    try:
        with open(home.state_file) as f:
            records = json.load(f).get("instances", [])
    except (OSError, ValueError):
        return False
    return any(is_same_process(r.get("pid", 0), r.get("pid_create_time", 0.0))
               for r in records)
