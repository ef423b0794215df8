"""The primary's I/O thread: one selector for every worker channel and rr listener.

Other threads talk to it through call_soon(), which wakes it with a pipe.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("corral.cluster")

# the signals a process gets as a whole (Ctrl-C, a stop, a service manager); a helper
# thread of ours never takes them (start_helper)
PROCESS_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                             signal.SIGUSR1, signal.SIGUSR2})


def start_helper(thread: threading.Thread) -> None:
    """Start one of corral.cluster's threads with the process's signals blocked in it.

    The kernel gives a signal sent to the process to any thread that does not block it.
    Python runs its handlers in the main thread, but a signal taken by another thread does
    not interrupt the main thread's blocking call (a read of stdin, an event loop's
    select without a wake-up fd): a Ctrl-C, or a stop, would then wait for whatever
    wakes that call next. Blocked here, they always reach the main thread."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, PROCESS_SIGNALS)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask on this platform
        thread.start()
        return
    try:
        thread.start()  # the new thread inherits the mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_GONE = object()  # select()'s answer for an fd unregistered since the poll returned


class Poller:
    """What the I/O thread needs of `selectors` (register / modify / unregister / select),
    on epoll directly where there is one: the selectors module costs about 3 us per
    wake-up in Python, and the I/O thread wakes for every rr connection. select() gives
    the registered data of each ready fd (any event: a callback reads or writes what it
    can). Elsewhere, selectors' default selector does the work."""

    def __init__(self) -> None:
        epoll = getattr(select, "epoll", None)
        self._epoll = epoll() if epoll is not None else None
        self._fallback = None if self._epoll is not None else selectors.DefaultSelector()
        self._data: dict[int, Any] = {}
        self._objs: dict[int, Any] = {}  # fd -> the object registered (a socket, an int)

    def _fd(self, fileobj: Any, registered: bool = False) -> int:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0 and registered:
            # a socket closed before it was unregistered: find it as selectors does
            for known, obj in self._objs.items():
                if obj is fileobj:
                    return known
        if fd < 0:
            raise ValueError(f"invalid file descriptor: {fd}")
        return fd

    @staticmethod
    def _mask(events: int) -> int:
        return ((select.EPOLLIN if events & selectors.EVENT_READ else 0)
                | (select.EPOLLOUT if events & selectors.EVENT_WRITE else 0))

    def register(self, fileobj: Any, events: int, data: Any) -> None:
        fd = self._fd(fileobj)
        if fd in self._data:
            raise KeyError(f"fd {fd} is already registered")
        if self._epoll is not None:
            self._epoll.register(fd, self._mask(events))
        else:
            self._fallback.register(fd, events, data)  # type: ignore[union-attr]
        self._data[fd] = data
        self._objs[fd] = fileobj

    def modify(self, fileobj: Any, events: int, data: Any) -> None:
        fd = self._fd(fileobj, registered=True)
        if fd not in self._data:
            raise KeyError(f"fd {fd} is not registered")
        if self._epoll is not None:
            self._epoll.modify(fd, self._mask(events))
        else:
            self._fallback.modify(fd, events, data)  # type: ignore[union-attr]
        self._data[fd] = data

    def unregister(self, fileobj: Any) -> None:
        fd = self._fd(fileobj, registered=True)
        del self._data[fd]  # KeyError if it was not registered, as selectors
        del self._objs[fd]
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                self._fallback.unregister(fd)  # type: ignore[union-attr]
        except (OSError, KeyError):
            pass  # closed already: the kernel forgot it

    def select(self, timeout: float | None) -> list[Any]:
        data = self._data
        if self._epoll is not None:
            try:
                ready = self._epoll.poll(-1 if timeout is None else timeout)
            except InterruptedError:
                return []
            return [data.get(fd, _GONE) for fd, _ in ready]
        return [data.get(key.fd, _GONE)
                for key, _ in self._fallback.select(timeout)]  # type: ignore[union-attr]

    def close(self) -> None:
        self._data.clear()
        self._objs.clear()
        if self._epoll is not None:
            self._epoll.close()
        else:
            self._fallback.close()  # type: ignore[union-attr]


class IOThread:
    def __init__(self, name: str = "corral-cluster-io", daemon: bool = False) -> None:
        """daemon=False keeps a script's primary alive while it has workers (Node's rule);
        corral's daemon uses a daemon thread, which never holds its exit."""
        self.selector = Poller()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self.keep_running: Callable[[], bool] = lambda: True
        self.thread = threading.Thread(target=self._run, name=name, daemon=daemon)
        self.started = False
        self._timeout: float | None = 0.5
        self.main_done = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            start_helper(self.thread)
            # wake the loop when the main thread ends, so that it can decide to finish
            # (concurrent.futures uses the same private hook)
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                try:
                    register(self._main_thread_done)
                    self._timeout = None
                except RuntimeError:
                    pass

    def _main_thread_done(self) -> None:
        # runs before the main thread is marked stopped: remember it ourselves
        self.main_done = True
        self.call_soon(lambda: None)

    def in_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._closed:
                return  # stopped: nothing runs any more
            self._calls.append((fn, args))
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass

    def add_reader(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        if self.in_thread() or not self.started:
            self.selector.register(fileobj, selectors.EVENT_READ, callback)
        else:
            self.call_soon(self.selector.register, fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj: Any) -> None:
        def remove() -> None:
            try:
                self.selector.unregister(fileobj)
            except (KeyError, ValueError):
                pass

        if self.in_thread() or not self.started:
            remove()
        else:
            self.call_soon(remove)

    def stop(self) -> None:
        self._stopping = True
        if self.started:
            self.call_soon(lambda: None)  # the thread closes the selector as it ends
        else:
            self._close()

    def _close(self) -> None:
        """The selector and the wake-up pipe: nothing of a stopped primary stays open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        self.selector.close()

    def _run(self) -> None:
        while not self._stopping:
            for callback in self.selector.select(self._timeout):
                if callback is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                if callback is _GONE:
                    continue
                try:
                    callback()
                except Exception:  # noqa: BLE001 - one bad callback must not end the cluster
                    log.exception("cluster I/O callback failed")
            with self._lock:
                calls, self._calls = self._calls, []
            for fn, args in calls:
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001
                    log.exception("cluster call failed")
            if not self.keep_running():
                break
        self._close()
