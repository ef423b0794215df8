"""Running health checks: probe an app on loopback, the verdict as text (None = healthy)."""

from __future__ import annotations

import asyncio
import urllib.parse

from corral.model.health import HealthCheck


async def probe(check: HealthCheck, cwd: str | None = None) -> str | None:
    """None when healthy, else what failed."""
    timeout = check.timeout_ms / 1000
    try:
        if check.kind == "tcp":
            host, port = check.target.rsplit(":", 1)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout)
            writer.close()
            return None
        if check.kind == "http":
            return await asyncio.wait_for(_http(check.target), timeout)
        process = await asyncio.create_subprocess_shell(
            check.target, cwd=cwd, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise
        return None if code == 0 else f"`{check.target}` exited with {code}"
    except asyncio.TimeoutError:
        return f"{check.kind} check timed out after {check.timeout_ms} ms"
    except OSError as exc:
        return f"{check.kind} check: {exc.strerror or exc}"


async def _http(target: str) -> str | None:
    url = urllib.parse.urlsplit(target)
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
