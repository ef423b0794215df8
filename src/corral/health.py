"""Health checks (beyond PM2): an HTTP GET, a TCP connect or a command, on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULTS = {"interval": 10_000, "timeout": 5_000, "retries": 3, "start_period": 0}


@dataclass
class HealthCheck:
    kind: str  # http | tcp | cmd
    target: str  # the URL, "host:port" or the command
    interval_ms: int = 10_000
    timeout_ms: int = 5_000
    retries: int = 3
    start_period_ms: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthCheck:
        return cls(**data)

    async def probe(self, cwd: str | None = None) -> str | None:
        """None when healthy, else what failed."""
        timeout = self.timeout_ms / 1000
        try:
            if self.kind == "tcp":
                host, port = self.target.rsplit(":", 1)
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host.strip("[]"), int(port)), timeout)
                writer.close()
                return None
            if self.kind == "http":
                return await asyncio.wait_for(self._http(), timeout)
            process = await asyncio.create_subprocess_shell(
                self.target, cwd=cwd, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            try:
                code = await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
                raise
            return None if code == 0 else f"`{self.target}` exited with {code}"
        except asyncio.TimeoutError:
            return f"{self.kind} check timed out after {self.timeout_ms} ms"
        except OSError as exc:
            return f"{self.kind} check: {exc.strerror or exc}"

    async def _http(self) -> str | None:
        url = urllib.parse.urlsplit(self.target)
        port = url.port or 80
        reader, writer = await asyncio.open_connection(url.hostname, port)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
                     "User-Agent: corral-health\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return "http check: no HTTP answer"
        status = int(parts[1])
        return None if 200 <= status < 400 else f"http check: status {status}"


def validate(data: Any) -> dict[str, Any]:
    """An ecosystem health_check value -> HealthCheck fields; ValueError says what is wrong."""
    from corral.schema import BadValue, to_count, to_ms

    if not isinstance(data, dict):
        raise ValueError("expected {http: URL | tcp: PORT | cmd: COMMAND, interval, timeout, "
                         "retries, start_period}")
    kinds = [k for k in ("http", "tcp", "cmd") if k in data]
    if len(kinds) != 1:
        raise ValueError("give exactly one of http, tcp or cmd")
    unknown = set(data) - {"http", "tcp", "cmd", *DEFAULTS}
    if unknown:
        raise ValueError(f"unknown health_check keys: {', '.join(sorted(unknown))}")
    kind = kinds[0]
    target = data[kind]
    if kind == "http":
        url = urllib.parse.urlsplit(str(target))
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"http: {target!r} is not an http:// URL")
        _require_loopback(url.hostname)
        target = str(target)
    elif kind == "tcp":
        text = str(target)
        host, _, port = text.rpartition(":") if ":" in text else ("127.0.0.1", "", text)
        if not port.isdigit():
            raise ValueError(f"tcp: {target!r}: expected a port or HOST:PORT")
        _require_loopback(host.strip("[]") or "127.0.0.1")
        target = f"{host or '127.0.0.1'}:{port}"
    else:
        target = str(target)
    fields: dict[str, Any] = {"kind": kind, "target": target}
    try:
        fields["interval_ms"] = to_ms(data.get("interval", DEFAULTS["interval"]))
        fields["timeout_ms"] = to_ms(data.get("timeout", DEFAULTS["timeout"]))
        fields["retries"] = max(to_count(data.get("retries", DEFAULTS["retries"])), 1)
        fields["start_period_ms"] = to_ms(data.get("start_period", DEFAULTS["start_period"]))
    except BadValue as exc:
        raise ValueError(str(exc)) from None
    return fields


def _require_loopback(host: str) -> None:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ValueError(f"{host!r} does not resolve") from None
    if not addresses or not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback
                                for a in addresses):
        raise ValueError(f"{host!r} is not a loopback address; health checks probe the app "
                         "on this machine (127.0.0.1, ::1, localhost)")
