"""The web dashboard's HTTP server (docs/web.md): the page, its JSON API and one
Server-Sent Events stream per open page, on the daemon's own asyncio loop, with
the standard library only (as metricsserver.py). Imported the first time
`corral web` turns the dashboard on, never by an idle daemon.

Security (docs/web.md, "Security"):
  * every route needs the token, 401 otherwise: a token in the URL is checked,
    then exchanged for an HttpOnly SameSite=Strict cookie by a redirect that
    takes it out of the address bar; scripts may send `Authorization: Bearer`;
  * actions are POSTs whose Origin must be the dashboard's own (a page of
    another site, or of another port of this machine, which is the same
    "site" for SameSite, cannot act); API reads refuse other origins too;
  * on loopback the Host header must name loopback (DNS rebinding);
  * no environment value is ever sent: rows are built from a list of fields;
  * tokens are compared in constant time; the token lives in
    CORRAL_HOME/web.token (0600) and `corral web --rotate` replaces it, which
    also ends the open streams.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import os
import secrets
import socket
import time
import urllib.parse
from importlib import resources
from typing import TYPE_CHECKING, Any

from corral.daemon.follow import Follower
from corral.daemon.metricsserver import is_loopback
from corral.model.describe import describe_fields
from corral.model.errors import CorralError
from corral.model.states import shown
from corral.model.version import __version__

if TYPE_CHECKING:
    from corral.daemon.server import Daemon
    from corral.store.home import Home

log = logging.getLogger("corral.web")

DEFAULT_PORT = 9616
TOKEN_FILE = "web.token"
HISTORY_S = 300  # cpu and memory kept for the sparklines: the last 5 minutes
TICK_S = 1.0  # state pushed to open pages this often
IDLE_TICK_S = 5.0  # sampled this often (for the sparklines) when no page is open
PUSH_DELAY_S = 0.1  # a status change reaches the pages this soon (changes coalesced)
HEARTBEAT_S = 15.0
MAX_BODY = 64 * 1024
LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 200
LOG_BUFFER = 5000  # lines waiting for a slow page; more are counted as dropped
ACTIONS = ("restart", "reload", "stop", "start", "scale")

ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
)
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Payload Too Large", 421: "Misdirected Request",
           500: "Internal Server Error"}


# ---- the token --------------------------------------------------------------

def token_path(home: Home) -> str:
    return os.path.join(home.root, TOKEN_FILE)


def rotate_token(home: Home) -> str:
    """A new token, written 0600 (temp file, fsync, rename; no symlink followed)."""
    token = secrets.token_urlsafe(32)
    path = token_path(home)
    tmp = f"{path}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def load_token(home: Home) -> str:
    """The persisted token; a new one when there is none, or when the file is not ours
    and private (someone else may have read it)."""
    try:
        fd = os.open(token_path(home), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return rotate_token(home)
    except OSError as exc:
        log.warning("web: cannot read %s (%s); writing a new token", token_path(home), exc)
        return rotate_token(home)
    try:
        st = os.fstat(fd)
        token = os.read(fd, 256).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or len(token) < 32:
        log.warning("web: %s was not private (mode %o) or not a token; writing a new one",
                    token_path(home), st.st_mode & 0o777)
        return rotate_token(home)
    return token


# ---- HTTP -------------------------------------------------------------------

class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        url = urllib.parse.urlsplit(target)
        self.path = url.path
        self.query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.raw_query = url.query
        self.headers = headers
        self.body = b""

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


class BadRequest(Exception):
    pass


async def read_request(reader: asyncio.StreamReader) -> Request:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise BadRequest("bad header")
        if name in headers and name in ("host", "origin", "authorization", "cookie",
                                        "content-length"):
            raise BadRequest(f"duplicate {name} header")
        headers[name] = value.strip()
    request = Request(parts[0], parts[1], headers)
    if request.method == "POST":
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest("bad content-length") from None
        if length < 0 or length > MAX_BODY:
            raise BadRequest("body too large")
        request.body = await asyncio.wait_for(reader.readexactly(length), 10)
    return request


def response(status: int, body: bytes | str, kind: str = "text/plain; charset=utf-8",
             extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    headers = [("Content-Type", kind), ("Content-Length", str(len(data))),
               ("Connection", "close"), *SECURITY_HEADERS, *extra]
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + data


def json_response(status: int, data: Any) -> bytes:
    return response(status, json.dumps(data), "application/json")


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# ---- what a page is sent ----------------------------------------------------

def app_row(row: dict[str, Any], now_ms: float) -> dict[str, Any]:
    """The fields of one instance the page shows. Built field by field: the spec's
    env (and env_overrides) never leave the daemon."""
    spec = row["spec"]
    return {
        "pm_id": row["pm_id"], "name": spec["name"], "namespace": spec["namespace"],
        "status": shown(row["status"], row.get("health")), "pid": row["pid"],
        "uptime_ms": max(now_ms - row["pm_uptime"], 0) if row["pid"] else 0,
        "restarts": row["restart_time"], "unstable_restarts": row["unstable_restarts"],
        "cpu": row["monit"]["cpu"], "memory": row["monit"]["memory"],
        "health": row.get("health"), "health_checked": bool(spec.get("health_check")),
        "exec_mode": spec["exec_mode"], "instances": spec["instances"],
        "instance_index": row["instance_index"], "reason": row.get("reason"),
        "exit_code": row.get("exit_code"), "exit_signal": row.get("exit_signal"),
        "listening": list(row.get("listening") or []),
        "watching": bool(row.get("watching")),
    }


class Stream:
    """One open page: the latest state (a newer one replaces it), events and log lines
    waiting to be written to it."""

    def __init__(self, log_app: str | None) -> None:
        self.log_app = log_app
        self.pending: list[bytes] = []
        self.state: bytes | None = None
        self.lines: list[dict[str, Any]] = []
        self.dropped = 0
        self.wake = asyncio.Event()
        self.closed = False

    def send(self, message: bytes) -> None:
        self.pending.append(message)
        self.wake.set()

    def set_state(self, message: bytes) -> None:
        self.state = message
        self.wake.set()

    def add_line(self, event: dict[str, Any]) -> None:
        if len(self.lines) >= LOG_BUFFER:
            self.dropped += 1
            return
        self.lines.append({"pm_id": event["pm_id"], "type": event["type"],
                           "at": event["at"], "line": event["line"]})
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def take(self) -> bytes:
        self.wake.clear()
        out = b"".join(self.pending)
        self.pending = []
        if self.state is not None:
            out += self.state
            self.state = None
        if self.lines or self.dropped:
            out += sse("log", {"lines": self.lines, "dropped": self.dropped})
            self.lines = []
            self.dropped = 0
        return out


class AppFollower(Follower):
    """The daemon's log stream (daemon/follow.py) for one app of one page: by name, so
    that instances added by a scale are followed too."""

    def __init__(self, stream: Stream) -> None:
        super().__init__(None, {"out", "err"})
        self.stream = stream

    def wants(self, event: dict[str, Any]) -> bool:
        return event["type"] in self.types and event.get("name") == self.stream.log_app

    def offer(self, event: dict[str, Any]) -> None:
        self.stream.add_line(event)


def tail_lines(path: str, count: int) -> list[str]:
    """The last count lines of a log file (at most LOG_TAIL_BYTES of it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, LOG_TAIL_BYTES, max(size - LOG_TAIL_BYTES, 0))
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first one is probably cut
    return lines[-count:]


# ---- the server -------------------------------------------------------------

class WebServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self.allow_remote = False
        self.token = ""
        self.streams: set[Stream] = set()
        self.followers: dict[Stream, AppFollower] = {}
        self.history: dict[int, collections.deque[tuple[float, float, int]]] = {}
        self.ticker: asyncio.Task[None] | None = None
        self.tick_now = asyncio.Event()
        self.push_timer: asyncio.TimerHandle | None = None
        self.sent_seq = 0
        self.assets: dict[str, bytes] = {}

    # ---- life ----------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any] | None:
        """What to persist, so that the next daemon serves on the same address."""
        if self.address is None:
            return None
        return {"host": self.address[0], "port": self.address[1],
                "allow_remote": self.allow_remote}

    async def start(self, host: str | None, port: int | None, allow_remote: bool) -> None:
        """Serve on host:port; on already (same address, or none given): nothing changes."""
        if self.address is not None and (host is None or host == self.address[0]) \
                and (port is None or port == self.address[1]):
            if allow_remote and not self.allow_remote:
                self.allow_remote = True
            return
        host = host or "127.0.0.1"
        port = DEFAULT_PORT if port is None else port
        if not is_loopback(host) and not allow_remote:
            raise CorralError(f"web on {host}: not a loopback address; anyone who can reach "
                              "it could try the token, which travels unencrypted over HTTP. "
                              "Pass --allow-remote to mean it")
        if not self.assets:
            folder = resources.files("corral.daemon.web") / "static"
            for path, (name, _) in ASSETS.items():
                self.assets[path] = (folder / name).read_bytes()
        self.token = self.token or load_token(self.daemon.home)
        try:
            server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise CorralError(f"cannot serve the dashboard on {host}:{port}: "
                              f"{exc.strerror or exc}; choose another --port") from None
        await self._close()
        self.server = server
        self.address = (host, server.sockets[0].getsockname()[1])
        self.allow_remote = allow_remote
        if self._ring_listener not in self.daemon.events.listeners:
            self.daemon.events.listeners.append(self._ring_listener)
        self.sent_seq = self.daemon.events.seq
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.get_running_loop().create_task(self._tick())
        log.info("web dashboard on http://%s", self._netloc())

    async def stop(self) -> None:
        await self._close()
        if self._ring_listener in self.daemon.events.listeners:
            self.daemon.events.listeners.remove(self._ring_listener)
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if self.push_timer is not None:
            self.push_timer.cancel()
            self.push_timer = None
        self.history.clear()
        log.info("web dashboard stopped")

    async def _close(self) -> None:
        for stream in list(self.streams):
            stream.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            self.address = None

    def rotate(self) -> None:
        """A new token: the old URL, cookies and open pages stop working."""
        self.token = rotate_token(self.daemon.home)
        for stream in list(self.streams):
            stream.close()
        log.info("web dashboard: token rotated")

    def _netloc(self) -> str:
        assert self.address is not None
        host, port = self.address
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def where(self) -> dict[str, Any]:
        assert self.address is not None
        self.token = self.token or load_token(self.daemon.home)
        return {"url": f"http://{self._netloc()}/?token={self.token}",
                "address": list(self.address), "remote": not is_loopback(self.address[0])}

    # ---- the state the pages see ---------------------------------------------

    def _rows(self) -> list[dict[str, Any]]:
        now_ms = time.time() * 1000
        return [app_row(r, now_ms) for r in self.daemon.view()]

    def _sample(self, rows: list[dict[str, Any]]) -> None:
        now = time.time()
        live = set()
        for row in rows:
            live.add(row["pm_id"])
            points = self.history.setdefault(row["pm_id"], collections.deque())
            points.append((round(now, 2), row["cpu"], row["memory"]))
            while points and points[0][0] < now - HISTORY_S:
                points.popleft()
        for pm_id in set(self.history) - live:
            del self.history[pm_id]

    async def _tick(self) -> None:
        """Sample cpu and memory (history for the sparklines) and push the state to the
        open pages: every TICK_S while a page is open, every IDLE_TICK_S otherwise."""
        while True:
            try:
                await asyncio.wait_for(self.tick_now.wait(),
                                       TICK_S if self.streams else IDLE_TICK_S)
            except asyncio.TimeoutError:
                pass
            self.tick_now.clear()
            try:
                self._push()
            except Exception:  # noqa: BLE001 - the daemon must survive its dashboard
                log.exception("web dashboard: cannot sample the process list")

    def _push(self) -> None:
        if self.push_timer is not None:
            self.push_timer.cancel()
            self.push_timer = None
        rows = self._rows()
        self._sample(rows)
        if not self.streams:
            return
        events = self.daemon.events.since(self.sent_seq)
        self.sent_seq = self.daemon.events.seq
        state = sse("state", {"apps": rows, "at": time.time()})
        for stream in self.streams:
            if events:
                stream.send(sse("events", events))
            stream.set_state(state)

    def _ring_listener(self, event: dict[str, Any] | None) -> None:
        """A status changed (and maybe an event was added): push soon, changes coalesced."""
        if self.streams and self.push_timer is None:
            self.push_timer = asyncio.get_running_loop().call_later(PUSH_DELAY_S,
                                                                    self._push_soon)

    def _push_soon(self) -> None:
        self.push_timer = None
        self.tick_now.set()

    def _hello(self) -> dict[str, Any]:
        rows = self._rows()
        return {
            "apps": rows, "at": time.time(), "events": list(self.daemon.events.ring),
            "history": {str(k): list(v) for k, v in self.history.items()},
            "daemon": {"pid": os.getpid(), "version": __version__,
                       "home": self.daemon.home.root, "host": socket.gethostname()},
        }

    # ---- requests --------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await read_request(reader)
            except (BadRequest, asyncio.LimitOverrunError, ValueError) as exc:
                writer.write(response(400, f"bad request: {exc}\n"))
                await writer.drain()
                return
            if request.path == "/api/stream" and request.method == "GET":
                refusal = self._refuse(request)
                if refusal is not None:
                    writer.write(refusal)
                    await writer.drain()
                    return
                await self._stream(request, reader, writer)
                return
            writer.write(await self._route(request))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:  # noqa: BLE001 - the daemon must survive any request
            log.exception("web dashboard: request failed")
            try:
                writer.write(response(500, "internal error: see corral.log\n"))
            except ConnectionError:
                pass
        finally:
            writer.close()

    def _host_ok(self, request: Request) -> bool:
        """On loopback, the Host header must name a loopback address (DNS rebinding)."""
        assert self.address is not None
        host = request.headers.get("host", "")
        if not host:
            return False
        if self.allow_remote and not is_loopback(self.address[0]):
            return True
        port = self.address[1]
        names = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
                 f"{self.address[0]}:{port}", f"[{self.address[0]}]:{port}"}
        return host.lower() in names

    def _origin(self, request: Request) -> str:
        return "http://" + request.headers.get("host", "")

    def _authorized(self, request: Request) -> bool:
        assert self.address is not None
        given = request.cookie(self.cookie_name) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and bool(self.token) and hmac.compare_digest(
            given.encode(), self.token.encode())

    @property
    def cookie_name(self) -> str:
        # cookies do not tell ports apart: a name per port keeps two dashboards apart
        assert self.address is not None
        return f"corral_web_{self.address[1]}"

    def _refuse(self, request: Request) -> bytes | None:
        """The answer to a request that may not go on, or None."""
        if not self._host_ok(request):
            return response(421, "corral web: unexpected Host header\n")
        if not self._authorized(request):
            return response(401, "corral web: the access token is missing or wrong; open "
                            "the URL `corral web --url` prints\n",
                            extra=(("WWW-Authenticate", 'Bearer realm="corral"'),))
        if request.path.startswith("/api/") or request.method == "POST":
            origin = request.headers.get("origin")
            site = request.headers.get("sec-fetch-site")
            if request.method == "POST" and origin != self._origin(request):
                log.warning("web dashboard: refused a POST to %s from origin %s: it "
                            "carried the token, but from another origin than the "
                            "dashboard's own", request.path, origin)
                return response(403, "corral web: actions need the dashboard's own Origin\n")
            if origin is not None and origin != self._origin(request):
                return response(403, "corral web: another origin may not read this\n")
            if site is not None and site not in ("same-origin", "none"):
                return response(403, f"corral web: refused a {site} request\n")
        return None

    async def _route(self, request: Request) -> bytes:
        if request.method not in ("GET", "POST"):
            return response(405, "GET or POST\n", extra=(("Allow", "GET, POST"),))
        if request.method == "GET" and "token" in request.query:
            return self._exchange(request)
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        if request.method == "GET":
            if request.path in ASSETS:
                return response(200, self.assets[request.path], ASSETS[request.path][1])
            if request.path == "/api/state":
                return json_response(200, self._hello())
            if request.path == "/api/describe":
                return self._describe(request)
            return response(404, "not found\n")
        if request.path == "/api/action":
            return await self._action(request)
        return response(404, "not found\n")

    def _exchange(self, request: Request) -> bytes:
        """?token=...: right, a cookie and a redirect to the same address without it."""
        if not self._host_ok(request):
            return response(421, "corral web: unexpected Host header\n")
        given = request.query.get("token", "")
        if not (self.token and hmac.compare_digest(given.encode(), self.token.encode())):
            return response(401, "corral web: this token is wrong (rotated?); open the URL "
                            "`corral web --url` prints\n")
        rest = [(k, v) for k, v in urllib.parse.parse_qsl(request.raw_query,
                                                          keep_blank_values=True)
                if k != "token"]
        location = request.path + ("?" + urllib.parse.urlencode(rest) if rest else "")
        cookie = f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        return response(303, "", extra=(("Location", location), ("Set-Cookie", cookie)))

    def _describe(self, request: Request) -> bytes:
        try:
            pm_id = int(request.query.get("id", ""))
        except ValueError:
            return json_response(400, {"error": "id: a number"})
        for row in self.daemon.view():
            if row["pm_id"] == pm_id:
                return json_response(200, {"pm_id": pm_id, "fields": [
                    [k, v if isinstance(v, (int, float, bool)) or v is None else str(v)]
                    for k, v in describe_fields(row)]})
        return json_response(404, {"error": f"no process with id {pm_id}"})

    async def _action(self, request: Request) -> bytes:
        try:
            data = json.loads(request.body or b"{}")
            action = str(data["action"])
            target = str(data["target"])
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"ok": False, "error": "give action and target"})
        if action not in ACTIONS:
            return json_response(400, {"ok": False, "error": f"unknown action {action!r}"})
        daemon = self.daemon
        changes_before = daemon.changes
        try:
            response = await self._act(action, target, data)
        except CorralError as exc:
            response = json_response(409, {"ok": False, "error": exc.message})
        # as for the CLI's requests (Daemon.dispatch): the answer goes once the list is on disk
        if daemon.changes != changes_before:
            failure = daemon.save()
            if failure is not None:
                return json_response(500, {
                    "ok": False, "error": f"cannot record the change in "
                    f"{daemon.home.state_file}: {failure}; `{action}` was done, but a crash "
                    "of the daemon now would undo it (free some space, then do it again)"})
        return response

    async def _act(self, action: str, target: str, data: dict[str, Any]) -> bytes:
        daemon = self.daemon
        targets = [{"name": target, "path": None}]
        before = {i.record.pm_id: i.record.pid for i in daemon.resolve(targets)}
        failures: list[str] = []
        if action == "restart":
            await daemon.rpc_restart(targets)
        elif action == "reload":
            failures = (await daemon.rpc_reload(targets))["failures"]
        elif action == "stop":
            await daemon.rpc_stop(targets)
        elif action == "start":
            instances = daemon.resolve(targets)
            await asyncio.gather(*(daemon.supervisor.start_stopped(i) for i in instances))
            await daemon.supervisor.settled(instances)
        else:
            result = await daemon.rpc_scale(target, str(data.get("count", "")))
            self.tick_now.set()
            return json_response(200, {
                "ok": True, "message": f"scale {target}: {len(result['added'])} added, "
                f"{len(result['removed'])} removed"})
        self.tick_now.set()
        table = daemon.supervisor.instances
        changes = []
        for pm_id, pid in before.items():
            inst = table.get(pm_id)
            now = inst.record.pid if inst is not None else 0
            changes.append({"pm_id": pm_id, "before": pid, "after": now,
                            "status": inst.record.status if inst is not None else "gone"})
        pids = ", ".join(f"id {c['pm_id']}: pid {c['before'] or '-'} → {c['after'] or '-'}"
                         for c in changes)
        if failures:
            return json_response(409, {"ok": False, "error": "; ".join(failures),
                                       "changes": changes})
        return json_response(200, {"ok": True, "message": f"{action} {target}: done ({pids})",
                                   "changes": changes})

    async def _stream(self, request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """Server-Sent Events: hello (everything), then state, events and log lines."""
        log_app = request.query.get("log") or None
        stream = Stream(log_app)
        head = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in SECURITY_HEADERS)
                + "Connection: close\r\n\r\n")
        writer.write(head.encode() + b"retry: 2000\n\n" + sse("hello", self._hello()))
        if log_app is not None:
            past = []
            for inst in self.daemon.supervisor.instances_of(log_app):
                rec = inst.record
                for kind, path in (("out", rec.out_log_path), ("err", rec.err_log_path)):
                    past += [{"pm_id": rec.pm_id, "type": kind, "line": line}
                             for line in tail_lines(path, LOG_TAIL_LINES)]
            writer.write(sse("past", {"app": log_app, "lines": past}))
            follower = AppFollower(stream)
            self.followers[stream] = follower
            self.daemon.followers.append(follower)
        if not self.streams:
            self.tick_now.set()  # the ticker was idle (IDLE_TICK_S): back to TICK_S
        self.streams.add(stream)
        gone = asyncio.ensure_future(reader.read(1))  # the page closing ends the stream
        try:
            await writer.drain()
            while not gone.done() and not stream.closed:
                waiter = asyncio.ensure_future(stream.wake.wait())
                done, _ = await asyncio.wait({waiter, gone}, timeout=HEARTBEAT_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                data = stream.take() or (b": ping\n\n" if not done else b"")
                if data:
                    writer.write(data)
                    await asyncio.wait_for(writer.drain(), HEARTBEAT_S)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.streams.discard(stream)
            ended = self.followers.pop(stream, None)
            if ended is not None:
                self.daemon.followers.remove(ended)
            gone.cancel()
