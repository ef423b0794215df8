"""`corral logs`: the last lines of each file, then the live stream from the daemon."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from corral.model.logformat import compile_date_format, iso_utc

COLOURS = ["36", "32", "35", "33", "34", "31", "96", "92", "95", "93"]
DEFAULT_TIMESTAMP = "YYYY-MM-DD-HH:mm:ss"
FORMAT_TIMESTAMP = "YYYY-MM-DD-HH:mm:ssZZ"  # PM2's --format


def tail(path: str, count: int) -> list[bytes]:
    """The last `count` lines of a file, read backwards in blocks."""
    if count <= 0:
        return []
    try:
        f = open(path, "rb")
    except OSError:
        return []
    with f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        block = 64 * 1024
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines[-count:]


def line_reader(spec: dict[str, Any]) -> Any:
    """For an app's log lines read back from its files: line -> (the time it was written,
    or None, and its text without the stamp)."""
    from corral.model.logformat import compile_date_parser, parse_json_line

    stamped = compile_date_parser(spec["log_date_format"]) if spec.get(
        "log_date_format") else None

    def read(text: str) -> tuple[float | None, str]:
        if spec.get("log_type") == "json":
            at, message = parse_json_line(text)
            if message is not None:
                if at is None and stamped is not None:  # the stamp in log_date_format
                    try:
                        at = stamped(json.loads(text)["timestamp"] + ": ")[0]
                    except (ValueError, KeyError, TypeError):
                        at = None
                return at, message
        if stamped is not None:
            return stamped(text)
        return None, text

    return read


def daemon_time(text: str) -> float | None:
    """The time of a line of corral.log (`2024-05-01 12:00:00,123 INFO ...`)."""
    try:
        return time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")) \
            + int(text[20:23]) / 1000
    except ValueError:
        return None


class Printer:
    def __init__(self, raw: bool, as_json: bool, timestamp: str | None, colour: bool,
                 key_values: bool = False, highlight: str | None = None) -> None:
        self.raw = raw
        self.as_json = as_json
        self.key_values = key_values  # PM2's --format
        self.stamp = compile_date_format(timestamp) if timestamp else None
        if key_values and not raw and self.stamp is None:
            self.stamp = compile_date_format(FORMAT_TIMESTAMP)
        self.colour = colour
        self.highlight = highlight or None
        self.width = 0

    def line(self, pm_id: int, name: str, kind: str, text: str, at: float | None = None
             ) -> None:
        if self.highlight and self.colour and not self.as_json:
            text = text.replace(self.highlight, f"\x1b[7m{self.highlight}\x1b[0m")
        if self.as_json:
            out = json.dumps({"message": text, "timestamp": iso_utc(at or time.time()),
                              "type": kind, "process_id": pm_id, "app_name": name},
                             separators=(",", ":"), ensure_ascii=False)
        elif self.key_values:
            # PM2's --format: timestamp=… app=NAME id=N type=out|error message=…
            who = "app=corral" if pm_id < 0 else f"app={name} id={pm_id}"
            kind_text = {"out": " type=out", "err": " type=error"}.get(kind, "")
            stamp = f"timestamp={self.stamp(at or time.time())} " if self.stamp else ""
            out = text if self.raw else f"{stamp}{who}{kind_text} message={text}"
            sys.stdout.write(out + "\n")
            return
        elif self.raw:
            out = text
        else:
            self.width = max(self.width, len(name))
            label = f"{pm_id if pm_id >= 0 else 'PM'}|{name.ljust(self.width)} |"
            if self.colour:
                code = "90" if pm_id < 0 else ("31" if kind == "err" else
                                               COLOURS[pm_id % len(COLOURS)])
                label = f"\x1b[{code}m{label}\x1b[0m"
            out = f"{label} {text}"
        if self.stamp and not self.as_json:
            out = f"{self.stamp(at or time.time())} {out}"
        sys.stdout.write(out + "\n")

    def header(self, text: str) -> None:
        if not self.raw and not self.as_json and not self.key_values:
            sys.stdout.write((f"\x1b[2m{text}\x1b[0m" if self.colour else text) + "\n")


def show(api: Any, targets: list[str], lines: int, types: list[str], raw: bool,
         as_json: bool, timestamp: str | None, follow: bool, colour: bool,
         key_values: bool = False, highlight: str | None = None) -> int:
    from corral.client.connection import Client

    printer = Printer(raw, as_json, timestamp, colour, key_values, highlight)
    files = api.client.call("log_files", targets=api.targets(targets) if targets else [])
    # the lines read back from the files carry the time they were written when the app
    # stamps them (log_date_format, --time) or writes JSON lines; shown with that time
    times = as_json or timestamp is not None or key_values
    readers = {row["pm_id"]: line_reader(row["spec"]) for row in api.list()} if times \
        else {}
    if not targets and "daemon" in types:
        printer.header(f"{api.home.daemon_log} (last {lines} lines)")
        for raw_line in tail(api.home.daemon_log, lines):
            text = raw_line.decode("utf-8", "replace")
            printer.line(-1, "corral", "daemon", text, daemon_time(text) if times else None)
    seen: set[str] = set()
    for entry in files:
        for kind in ("out", "err"):
            path = entry[kind]
            if kind not in types or not path or path in seen or path == "/dev/null":
                continue
            seen.add(path)
            printer.header(f"{path} (last {lines} lines)")
            reader = readers.get(entry["pm_id"])
            unstamped = 0
            for raw_line in tail(path, lines):
                text = raw_line.decode("utf-8", "replace")
                at = None
                if times:
                    at, text = reader(text) if reader else (None, text)
                    unstamped += at is None
                printer.line(entry["pm_id"], entry["name"], kind, text, at)
            if unstamped:
                sys.stdout.flush()
                print(f"corral: {unstamped} line(s) of {path} carry no time of their own "
                      "(the app has no log_date_format and no JSON logs): they are shown "
                      "with the time they were read; `--time` on start stamps each line "
                      "as it is written", file=sys.stderr)
    sys.stdout.flush()
    if not follow:
        return 0
    follow_targets = api.targets(targets) if targets else []
    client: Client | None = Client(api.home)
    try:
        while True:
            assert client is not None
            for frame in client.stream("follow", targets=follow_targets, types=types):
                for event in frame.get("events", []) if isinstance(frame, dict) else []:
                    if "dropped" in event:
                        print(f"corral: {event['dropped']} lines were not shown (this "
                              "terminal was too slow); they are in the files", file=sys.stderr)
                        continue
                    printer.line(event["pm_id"], event["name"], event["type"], event["line"],
                                 event.get("at"))
                sys.stdout.flush()
            # the daemon went away (`corral update`, `kill`, a crash): follow the next one
            client.close()
            client = None
            print("corral: the daemon went away; waiting for the next one (Ctrl-C to stop)",
                  file=sys.stderr)
            client = _next_daemon(api.home)
            print(f"corral: following daemon {client.daemon_pid}; lines written in between "
                  "are in the files", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if client is not None:
            client.close()
    return 0


def _next_daemon(home: Any) -> Any:
    """A client of the next daemon of this home, once one answers (never starts one)."""
    from corral.client.connection import Client
    from corral.model.errors import CorralError
    from corral.model.wire import ProtocolError

    while True:
        try:
            return Client(home, start=False)
        except (OSError, CorralError, ProtocolError):
            time.sleep(0.2)
