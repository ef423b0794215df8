"""The opt-in metrics endpoint: Prometheus text at /metrics, the same as JSON at
/metrics.json. Off by default; it listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from corral.model.errors import CorralError

HELP = {
    "corral_process_cpu_percent": "CPU use of the app's process tree, percent of one core",
    "corral_process_memory_bytes": "resident memory of the app's process tree",
    "corral_process_restarts": "restarts (PM2's restart_time)",
    "corral_process_unstable_restarts": "restarts after runs shorter than min_uptime",
    "corral_process_uptime_seconds": "seconds since the process started (0 when not running)",
    "corral_process_status": "1 for the instance's current status",
    "corral_daemon_cpu_seconds_total": "CPU seconds used by the daemon",
    "corral_daemon_memory_bytes": "resident memory of the daemon",
    "corral_apps": "instances in the process list",
    "corral_log_bytes_written_total": "bytes written to log files since the daemon started",
}


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def snapshot(rows: list[dict[str, Any]], log_bytes: int) -> dict[str, Any]:
    now = time.time() * 1000
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        rss = usage.ru_maxrss * 1024
    return {
        "daemon": {"cpu_seconds": usage.ru_utime + usage.ru_stime, "memory_bytes": rss,
                   "apps": len(rows), "log_bytes_written": log_bytes},
        "processes": [{
            "name": r["spec"]["name"], "pm_id": r["pm_id"], "namespace": r["spec"]["namespace"],
            "status": r["status"], "pid": r["pid"], "cpu_percent": r["monit"]["cpu"],
            "memory_bytes": r["monit"]["memory"], "restarts": r["restart_time"],
            "unstable_restarts": r["unstable_restarts"],
            "uptime_seconds": round((now - r["pm_uptime"]) / 1000, 3) if r["pid"] else 0.0,
        } for r in rows],
    }


def prometheus(data: dict[str, Any]) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {HELP[name]}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    procs = data["processes"]

    def labels(p: dict[str, Any]) -> dict[str, str]:
        return {"name": p["name"], "pm_id": str(p["pm_id"]), "namespace": p["namespace"]}

    family("corral_process_cpu_percent", "gauge", [(labels(p), p["cpu_percent"]) for p in procs])
    family("corral_process_memory_bytes", "gauge",
           [(labels(p), p["memory_bytes"]) for p in procs])
    family("corral_process_restarts", "gauge", [(labels(p), p["restarts"]) for p in procs])
    family("corral_process_unstable_restarts", "gauge",
           [(labels(p), p["unstable_restarts"]) for p in procs])
    family("corral_process_uptime_seconds", "gauge",
           [(labels(p), p["uptime_seconds"]) for p in procs])
    family("corral_process_status", "gauge",
           [({**labels(p), "status": p["status"]}, 1) for p in procs])
    daemon = data["daemon"]
    family("corral_daemon_cpu_seconds_total", "counter", [({}, daemon["cpu_seconds"])])
    family("corral_daemon_memory_bytes", "gauge", [({}, daemon["memory_bytes"])])
    family("corral_apps", "gauge", [({}, daemon["apps"])])
    family("corral_log_bytes_written_total", "counter", [({}, daemon["log_bytes_written"])])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    def __init__(self, collect: Callable[[], dict[str, Any]]) -> None:
        self.collect = collect
        self.server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self.allow_remote = False

    @property
    def settings(self) -> dict[str, Any] | None:
        """What to persist, so that the next daemon serves on the same address."""
        if self.address is None:
            return None
        return {"host": self.address[0], "port": self.address[1],
                "allow_remote": self.allow_remote}

    async def start(self, host: str, port: int, allow_remote: bool) -> tuple[str, int]:
        if not is_loopback(host) and not allow_remote:
            raise CorralError(f"metrics on {host}: not a loopback address; anyone who can "
                              "reach it will see your apps. Pass --allow-remote to mean it")
        await self.stop()
        try:
            self.server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise CorralError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        sock = self.server.sockets[0]
        self.address = (host, sock.getsockname()[1])
        self.allow_remote = allow_remote
        return self.address

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            self.address = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = head.split(b" ", 2)[1].decode(errors="replace").split("?")[0]
            if path == "/metrics":
                body = prometheus(self.collect()).encode()
                kind = "text/plain; version=0.0.4; charset=utf-8"
                status = "200 OK"
            elif path == "/metrics.json":
                body = json.dumps(self.collect()).encode()
                kind, status = "application/json", "200 OK"
            else:
                body, kind, status = b"see /metrics or /metrics.json\n", "text/plain", \
                    "404 Not Found"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
