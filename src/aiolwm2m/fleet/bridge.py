"""An asyncio event loop in a real OS thread, safe beside gevent (Locust's workers).

Locust runs on gevent and monkey-patches the standard library when it is
imported: ``threading.Thread`` becomes a greenlet, ``selectors`` loses
epoll, locks and queues become gevent's. asyncio must not run inside a
greenlet (its loop would block the gevent hub, and the hub's switches would
re-enter the loop), so :class:`LoopThread`:

* starts its thread with the *original* ``_thread.start_new_thread`` — a
  kernel thread, scheduled by the OS, not by the gevent hub;
* gives the loop a selector over the *original* ``select.epoll``, so the
  loop waits in the kernel and never touches the hub;
* crosses threads only through ``loop.call_soon_threadsafe`` (one
  ``deque.append`` and a write to the loop's self-pipe, no locks) into the
  loop, and through :class:`Outbox` (a ``collections.deque``, whose append
  and popleft are atomic) out of it, which the gevent side drains from a
  greenlet — no ``concurrent.futures`` or ``threading`` locks, which gevent
  would have turned into hub-bound objects unusable from another thread.

Without gevent loaded nothing is patched and the same code uses the plain
standard library.
"""

from __future__ import annotations

import _thread
import asyncio
import math
import selectors
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LoopThread", "Outbox"]


def _original(module: str, name: str) -> Any:
    """The standard library's ``module.name`` from before gevent patched it (if it did)."""
    if _patched(module):
        return sys.modules["gevent.monkey"].get_original(module, name)
    return getattr(__import__(module), name)


class _KernelEpollSelector(selectors._PollLikeSelector):
    """epoll through the original ``select.epoll`` (gevent removes it from ``select``)."""

    _EVENT_READ = 0x001  # EPOLLIN
    _EVENT_WRITE = 0x004  # EPOLLOUT
    # Set by the standard library's base classes (not in its type stubs).
    _selector: Any
    _fd_to_key: dict[int, selectors.SelectorKey]

    def __init__(self) -> None:
        self._selector_cls = _original("select", "epoll")
        super().__init__()

    def fileno(self) -> int:
        return int(self._selector.fileno())

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        wait = -1.0 if timeout is None else max(0.0, math.ceil(timeout * 1e3) * 1e-3)
        try:
            fired = self._selector.poll(wait, max(len(self._fd_to_key), 1))
        except InterruptedError:
            return []
        ready = []
        for fd, event in fired:
            key = self._fd_to_key.get(fd)
            if key is not None:
                events = (selectors.EVENT_READ if event & ~self._EVENT_WRITE else 0) | (
                    selectors.EVENT_WRITE if event & ~self._EVENT_READ else 0
                )
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self._selector.close()
        super().close()


def _patched(module: str) -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched(module))


def _selector() -> selectors.BaseSelector:
    """The kernel's epoll when gevent patched ``select``/``selectors``, else the default."""
    if _patched("select") or _patched("selectors"):
        return _KernelEpollSelector()
    return selectors.DefaultSelector()


class Outbox:
    """Records handed from the loop thread to the other side; drained by polling."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()

    def put(self, item: Any) -> None:
        self._items.append(item)

    def drain(self) -> list[Any]:
        out = []
        items = self._items
        while items:
            out.append(items.popleft())
        return out


class LoopThread:
    """An asyncio loop in its own kernel thread; see the module docstring."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id: int | None = None
        self.stopped = False
        self.crashed: BaseException | None = None

    def start(self) -> None:
        """Start the thread; :attr:`loop` is set once it runs (poll :attr:`running`)."""
        start_new_thread = _original("_thread", "start_new_thread")
        start_new_thread(self._main, ())

    @property
    def running(self) -> bool:
        return self.loop is not None and self.loop.is_running()

    def _main(self) -> None:
        self.thread_id = _thread.get_ident()
        loop = asyncio.SelectorEventLoop(_selector())
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_forever()
        except BaseException as exc:  # reported to the other side, which cannot see our stack
            self.crashed = exc
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()
            self.stopped = True

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread, soon."""
        assert self.loop is not None, "LoopThread not running yet"
        self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any], outbox: Outbox, tag: str) -> None:
        """Run ``coro`` as a task; ``(tag, result, exception)`` lands in ``outbox`` at its end."""

        def done(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                outbox.put((tag, None, asyncio.CancelledError()))
            else:
                outbox.put((tag, None if task.exception() else task.result(), task.exception()))

        def begin() -> None:
            asyncio.get_running_loop().create_task(coro).add_done_callback(done)

        self.call(begin)

    def stop(self) -> None:
        if self.loop is not None and not self.stopped:
            self.loop.call_soon_threadsafe(self.loop.stop)
