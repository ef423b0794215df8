"""PM2's log_date_format (dayjs tokens) in Python, and the JSON log line."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

_TOKENS = re.compile(r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|HH|H|hh|h|mm|m|ss|s|"
                     r"SSS|ZZ|Z|A|a|X|x")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _offset(tm: time.struct_time, colon: bool) -> str:
    seconds = tm.tm_gmtoff or 0
    sign = "+" if seconds >= 0 else "-"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def compile_date_format(fmt: str) -> Callable[[float], str]:
    """A dayjs format ('YYYY-MM-DD HH:mm:ss.SSS Z') -> a function of a timestamp."""
    parts: list[str | Callable[[time.struct_time, float], str]] = []
    last = 0
    for match in _TOKENS.finditer(fmt):
        if match.start() > last:
            parts.append(fmt[last:match.start()])
        token = match.group()
        parts.append(token[1:-1] if token.startswith("[") else _RENDER[token])
        last = match.end()
    if last < len(fmt):
        parts.append(fmt[last:])

    def render(timestamp: float) -> str:
        tm = time.localtime(timestamp)
        return "".join(p if isinstance(p, str) else p(tm, timestamp) for p in parts)

    return render


_RENDER: dict[str, Callable[[time.struct_time, float], str]] = {
    "YYYY": lambda tm, ts: f"{tm.tm_year:04d}",
    "YY": lambda tm, ts: f"{tm.tm_year % 100:02d}",
    "MMMM": lambda tm, ts: _MONTHS[tm.tm_mon - 1],
    "MMM": lambda tm, ts: _MONTHS[tm.tm_mon - 1][:3],
    "MM": lambda tm, ts: f"{tm.tm_mon:02d}",
    "M": lambda tm, ts: str(tm.tm_mon),
    "DD": lambda tm, ts: f"{tm.tm_mday:02d}",
    "D": lambda tm, ts: str(tm.tm_mday),
    "dddd": lambda tm, ts: _DAYS[tm.tm_wday],
    "ddd": lambda tm, ts: _DAYS[tm.tm_wday][:3],
    "HH": lambda tm, ts: f"{tm.tm_hour:02d}",
    "H": lambda tm, ts: str(tm.tm_hour),
    "hh": lambda tm, ts: f"{(tm.tm_hour % 12) or 12:02d}",
    "h": lambda tm, ts: str((tm.tm_hour % 12) or 12),
    "mm": lambda tm, ts: f"{tm.tm_min:02d}",
    "m": lambda tm, ts: str(tm.tm_min),
    "ss": lambda tm, ts: f"{tm.tm_sec:02d}",
    "s": lambda tm, ts: str(tm.tm_sec),
    "SSS": lambda tm, ts: f"{int(ts * 1000) % 1000:03d}",
    "ZZ": lambda tm, ts: _offset(tm, colon=False),
    "Z": lambda tm, ts: _offset(tm, colon=True),
    "A": lambda tm, ts: "AM" if tm.tm_hour < 12 else "PM",
    "a": lambda tm, ts: "am" if tm.tm_hour < 12 else "pm",
    "X": lambda tm, ts: str(int(ts)),
    "x": lambda tm, ts: str(int(ts * 1000)),
}


def json_line(message: bytes, stream: str, pm_id: int, app_name: str, timestamp: float,
              date: Callable[[float], str] | None) -> bytes:
    """PM2's log_type json: one compact object a line, PM2's keys in PM2's order, the
    time as JavaScript's toISOString() (UTC) unless log_date_format says otherwise
    (invalid UTF-8 kept as \\x escapes)."""
    text = message.decode("utf-8", errors="backslashreplace")
    stamp = date(timestamp) if date else iso_utc(timestamp)
    return (json.dumps({"message": text, "timestamp": stamp, "type": stream,
                        "process_id": pm_id, "app_name": app_name},
                       separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def iso_utc(timestamp: float) -> str:
    """JavaScript's Date.toISOString(): 2024-05-01T12:00:00.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) \
        + f".{int(timestamp * 1000) % 1000:03d}Z"
