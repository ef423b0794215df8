"""A small event emitter (Node's EventEmitter) usable from threads and from asyncio.

A listener registered while an asyncio loop runs in the registering thread is
called in that loop (call_soon_threadsafe; coroutine functions are scheduled
as tasks); any other listener is called in the thread that emits, which for
the cluster is its I/O thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("corral.cluster")


class EventEmitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[tuple[Callable[..., Any], Any, bool]]] = {}
        self._lock = threading.Lock()

    def on(self, event: str, listener: Callable[..., Any]) -> Callable[..., Any]:
        self._add(event, listener, once=False)
        return listener

    def once(self, event: str, listener: Callable[..., Any]) -> Callable[..., Any]:
        self._add(event, listener, once=True)
        return listener

    def off(self, event: str, listener: Callable[..., Any]) -> None:
        with self._lock:
            self._listeners[event] = [e for e in self._listeners.get(event, [])
                                      if e[0] is not listener]

    def listener_count(self, event: str) -> int:
        return len(self._listeners.get(event, ()))

    def _add(self, event: str, listener: Callable[..., Any], once: bool) -> None:
        try:
            loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._listeners.setdefault(event, []).append((listener, loop, once))

    def emit(self, event: str, *args: Any) -> bool:
        with self._lock:
            entries = list(self._listeners.get(event, ()))
            if any(once for _, _, once in entries):
                self._listeners[event] = [e for e in entries if not e[2]]
        for listener, loop, _once in entries:
            try:
                if loop is not None and not loop.is_closed():
                    if inspect.iscoroutinefunction(listener):
                        asyncio.run_coroutine_threadsafe(listener(*args), loop)
                    else:
                        loop.call_soon_threadsafe(listener, *args)
                else:
                    result = listener(*args)
                    if inspect.iscoroutine(result):
                        result.close()
                        log.error("coroutine listener for %r registered outside an event "
                                  "loop was not run", event)
            except Exception:  # noqa: BLE001 - a listener's error must not stop the cluster
                log.exception("listener for %r failed", event)
        return bool(entries)

    def wait_for(self, event: str, predicate: Callable[..., bool] | None = None,
                 timeout: float | None = None) -> tuple[Any, ...]:
        """Block until `event` is emitted (with args that satisfy predicate); return its args."""
        done = threading.Event()
        box: list[tuple[Any, ...]] = []

        def listener(*args: Any) -> None:
            if not done.is_set() and (predicate is None or predicate(*args)):
                box.append(args)
                done.set()

        with self._lock:  # registered for this thread, never through a loop
            self._listeners.setdefault(event, []).append((listener, None, False))
        try:
            if not done.wait(timeout):
                raise TimeoutError(f"no {event!r} event within {timeout}s")
            return box[0]
        finally:
            self.off(event, listener)
