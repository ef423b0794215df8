"""Reading requests off the control socket, whatever arrives (docs/daemon.md, "Limits").

A request frame is at most MAX_REQUEST bytes; its body must arrive within
FRAME_TIMEOUT_S of its header, and a connection that sends nothing for
IDLE_TIMEOUT_S is closed. A frame that is not UTF-8 JSON, not an object, nested
too deep or shaped wrong gets an error reply (code 1) and the connection goes on;
only a frame too large or too slow ends it (its end cannot be found any more).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import typing
from collections.abc import Callable
from typing import Any

from corral.model.errors import CorralError
from corral.model.validate import check_params, depth_problem, quote
from corral.model.wire import HEADER, loads

MAX_REQUEST = 8 * 1024 * 1024  # bytes of one request (replies may be larger: wire.MAX_FRAME)
FRAME_TIMEOUT_S = 10.0  # for a frame's body, once its header came
IDLE_TIMEOUT_S = 120.0  # between two requests (the client reconnects after IDLE_RECONNECT_S)
MAX_CONNECTIONS = 256  # open at once; more are answered with an error and closed


def idle_timeout() -> float:
    """IDLE_TIMEOUT_S, or CORRAL_IDLE_TIMEOUT seconds from the daemon's environment."""
    try:
        return float(os.environ.get("CORRAL_IDLE_TIMEOUT") or IDLE_TIMEOUT_S)
    except ValueError:
        return IDLE_TIMEOUT_S


class Closed(Exception):
    """The connection ends: the peer left, was idle too long, or sent a frame that cannot
    be read (then `reply` is the error to send first)."""

    def __init__(self, reply: str | None = None) -> None:
        super().__init__(reply)
        self.reply = reply


async def read_request(reader: asyncio.StreamReader) -> tuple[dict[str, Any], str]:
    """The next request: (request, "") or ({"id"}, why it is refused). Closed when the
    connection must end."""
    try:
        header = await asyncio.wait_for(reader.readexactly(HEADER.size), idle_timeout())
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        raise Closed() from None
    (size,) = HEADER.unpack(header)
    if size > MAX_REQUEST:
        raise Closed(f"bad request: a frame of {size} bytes; a request is at most "
                     f"{MAX_REQUEST} bytes (the connection is closed)")
    try:
        body = await asyncio.wait_for(reader.readexactly(size), FRAME_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise Closed(f"bad request: the frame announced {size} bytes and they did not come "
                     f"within {FRAME_TIMEOUT_S:.0f} s (the connection is closed)") from None
    except (asyncio.IncompleteReadError, ConnectionError):
        raise Closed() from None
    try:
        request = loads(body.decode())
    except UnicodeDecodeError:
        return {"id": 0}, "bad request: the frame is not UTF-8 text"
    except RecursionError:
        return {"id": 0}, "bad request: the JSON is nested too deep"
    except ValueError as exc:
        return {"id": 0}, f"bad request: not JSON ({quote(str(exc))})"
    if not isinstance(request, dict):
        return {"id": 0}, ("bad request: a request is a JSON object {\"id\", \"method\", "
                           f"\"params\"}}, not {type(request).__name__}")
    rid = request.get("id", 0)
    if isinstance(rid, bool) or not isinstance(rid, (int, str, type(None))):
        return {"id": 0}, "bad request: \"id\" must be a number or a string"
    if isinstance(rid, str) and len(rid) > 64:
        return {"id": 0}, "bad request: \"id\" is longer than 64 characters"
    problem = depth_problem(request)
    if problem is not None:
        return {"id": rid}, f"bad request: the JSON is {problem}"
    if not isinstance(request.get("method"), str):
        return {"id": rid}, ("bad request: \"method\" must be a string (got "
                             f"{quote(request.get('method'))})")
    if not isinstance(request.get("params", {}), dict):
        return {"id": rid}, "bad request: \"params\" must be an object"
    return request, ""


_HINTS: dict[Any, dict[str, Any]] = {}


def check_call(name: str, method: Callable[..., Any], params: dict[str, Any]) -> None:
    """The parameters against the handler's signature and annotations (CorralError)."""
    try:
        inspect.signature(method).bind(**params)
    except TypeError as exc:
        raise CorralError(f"bad request: {name}: {str(exc)[:200]}") from None
    func = getattr(method, "__func__", method)
    hints = _HINTS.get(func)
    if hints is None:
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # noqa: BLE001 - an annotation that cannot be resolved: types unchecked
            hints = {}
        hints.pop("return", None)
        _HINTS[func] = hints
    check_params(name, hints, params)
