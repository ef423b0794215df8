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


_PARSE: dict[str, str] = {
    "YYYY": r"(?P<Y>\d{4})", "YY": r"(?P<y>\d{2})", "MMMM": r"(?P<B>[A-Z][a-z]+)",
    "MMM": r"(?P<b>[A-Z][a-z]{2})", "MM": r"(?P<m>\d{2})", "M": r"(?P<m>\d{1,2})",
    "DD": r"(?P<d>\d{2})", "D": r"(?P<d>\d{1,2})", "dddd": r"[A-Z][a-z]+",
    "ddd": r"[A-Z][a-z]{2}", "HH": r"(?P<H>\d{2})", "H": r"(?P<H>\d{1,2})",
    "hh": r"(?P<I>\d{2})", "h": r"(?P<I>\d{1,2})", "mm": r"(?P<M>\d{2})",
    "m": r"(?P<M>\d{1,2})", "ss": r"(?P<S>\d{2})", "s": r"(?P<S>\d{1,2})",
    "SSS": r"(?P<f>\d{3})", "ZZ": r"(?P<z>[+-]\d{4})", "Z": r"(?P<z>[+-]\d\d:\d\d)",
    "A": r"(?P<p>AM|PM)", "a": r"(?P<p>am|pm)", "X": r"(?P<X>\d+)", "x": r"(?P<x>\d+)",
}


def compile_date_parser(fmt: str) -> Callable[[str], tuple[float | None, str]]:
    """The reverse of compile_date_format() for a line the daemon stamped (`STAMP: text`):
    line -> (the time it was written, the text), or (None, line) when the line has no
    such stamp or the format does not say the day (`HH:mm:ss` alone)."""
    pattern = ""
    last = 0
    seen: set[str] = set()
    for match in _TOKENS.finditer(fmt):
        pattern += re.escape(fmt[last:match.start()])
        token = match.group()
        if token.startswith("["):
            pattern += re.escape(token[1:-1])
        else:
            piece = _PARSE[token]
            group = re.search(r"\?P<(\w)>", piece)
            if group and group.group(1) in seen:  # a field written twice: match, unnamed
                piece = re.sub(r"\?P<\w>", "?:", piece)
            elif group:
                seen.add(group.group(1))
            pattern += piece
        last = match.end()
    pattern += re.escape(fmt[last:]) + ": "
    compiled = re.compile(pattern)

    def parse(line: str) -> tuple[float | None, str]:
        found = compiled.match(line)
        if not found:
            return None, line
        return _to_epoch(found.groupdict()), line[found.end():]

    return parse


def _to_epoch(groups: dict[str, str | None]) -> float | None:
    import calendar

    g: dict[str, str] = {k: v for k, v in groups.items() if v}
    if g.get("x"):
        return int(str(g["x"])) / 1000
    if g.get("X"):
        return float(str(g["X"]))
    year = int(g["Y"]) if g.get("Y") else 2000 + int(g["y"]) if g.get("y") else None
    month = int(g["m"]) if g.get("m") else None
    names = [m[:3] for m in _MONTHS]
    for key in ("B", "b"):
        if month is None and g.get(key) and str(g[key])[:3] in names:
            month = names.index(str(g[key])[:3]) + 1
    if year is None or month is None or not g.get("d"):
        return None
    hour = int(g["H"]) if g.get("H") else int(g["I"]) % 12 if g.get("I") else 0
    if g.get("p") and str(g["p"]).lower() == "pm" and not g.get("H"):
        hour += 12
    fields = (year, month, int(str(g["d"])), hour, int(str(g["M"])) if g.get("M") else 0,
              int(str(g["S"])) if g.get("S") else 0)
    fraction = int(str(g["f"])) / 1000 if g.get("f") else 0.0
    if g.get("z"):
        z = str(g["z"]).replace(":", "")
        offset = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * (1 if z[0] == "+" else -1)
        return calendar.timegm((*fields, 0, 0, 0)) - offset + fraction
    return time.mktime((*fields, 0, 0, -1)) + fraction


def parse_json_line(line: str) -> tuple[float | None, str | None]:
    """A log_type json line -> (its time when it is ISO 8601, its message); (None, None)
    when the line is not such an object."""
    try:
        data = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None, None
    stamp = data.get("timestamp")
    at = None
    if isinstance(stamp, str):
        import datetime

        try:
            at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            at = None
    return at, data["message"]


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
