"""asyncio runtime: real UDP sockets and timers around the sans-IO client engine.

The runtime is deliberately thin. It keeps no protocol state: it opens a
*connected* UDP socket per server link (so the kernel reports ICMP
port-unreachable as ``ConnectionRefusedError`` within milliseconds), feeds
datagrams, socket errors and timer expiries into the engine and carries out
the link actions it returns (see :class:`~aiolwm2m.runtime.driver.EngineDriver`).
There is no background task per client — one ``loop.call_at`` handle and the
sockets — so one event loop can host thousands of clients.

:class:`Client` is the application's object; it holds an internal
:class:`_AioDriver` that does the sockets and timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import DataModel, OpenLink
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.runtime.clock import loop_deadline, loop_now
from aiolwm2m.runtime.driver import ClientSurface, EngineDriver
from aiolwm2m.runtime.dtls_link import DtlsSessions
from aiolwm2m.runtime.links import LinkError, Resolver, open_link, resolve

__all__ = ["Client"]

E = TypeVar("E", bound=ev.Event)


class _EventStream:
    """What :meth:`Client.events` returns: an async iterator over a queue of events.

    An object rather than an async generator because a generator never
    iterated never runs its ``finally``: its subscription, and every event
    queued for it, would live as long as the client. Here the subscription
    holds only the queue, and a finalizer on the stream ends it (at the end
    of the events, on :meth:`aclose`, or when the stream is collected).
    """

    __slots__ = ("__weakref__", "_end", "_queue")

    def __init__(self, client: Client) -> None:
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        queues = client._queues
        queues.append(queue)
        unsubscribe = client.subscribe(queue.put_nowait)

        def end() -> None:
            unsubscribe()
            queues.remove(queue)

        self._queue = queue
        self._end = weakref.finalize(self, end)

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ev.Event:
        item = await self._queue.get() if self._end.alive else None
        if item is None:
            self._end()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop receiving events (as an async generator's ``aclose``); a task waiting
        in ``async for`` over this stream ends its loop."""
        if self._end.alive:
            self._end()
            self._queue.put_nowait(None)


class _AioDriver(EngineDriver):
    """Internal: the engine on the running event loop, over real sockets and one timer."""

    def __init__(
        self,
        config: ClientConfig,
        objects: DataModel | None,
        *,
        rng: random.Random | None,
        local_host: str | None,
        resolver: Resolver,
    ) -> None:
        super().__init__(config, objects, rng=rng)
        self._local_host = local_host
        self._resolver = resolver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # DTLS sessions kept across links, so a reconnect can resume one.
        self.dtls_sessions = DtlsSessions()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.start_engine()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._stopped

    def now(self) -> float:
        """The runtime clock (:mod:`aiolwm2m.runtime.clock`): event times are on it."""
        assert self._loop is not None, "client not started"
        return loop_now(self._loop)

    def _set_timer(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(loop_deadline(when), self._on_timer)

    def _cancel_open(self, link_id: int) -> None:
        task = self._opening.pop(link_id, None)
        if task is not None:
            task.cancel()

    def _begin_open(self, action: OpenLink, generation: int) -> None:
        assert self._loop is not None
        self._opening[action.link] = self._loop.create_task(self._open(action, generation))

    async def _open(self, action: OpenLink, gen: int) -> None:
        link_id = action.link
        try:
            link = await open_link(
                action.uri,
                action.account,
                self.config,
                lambda data: self._on_datagram(link_id, gen, data),
                lambda exc: self._on_link_error(link_id, gen, exc),
                local_host=self._local_host,
                sessions=self.dtls_sessions,
                resolver=self._resolver,
                progress=lambda attempt, wait, resuming: self._handshake_progress(
                    link_id, gen, attempt, wait, resuming
                ),
            )
        except LinkError as exc:
            self._opening.pop(link_id, None)
            self._link_failed(link_id, gen, exc.failure, str(exc))
            return
        self._opening.pop(link_id, None)
        self._link_opened(link_id, gen, link)


class Client(ClientSurface[_AioDriver]):
    """An LwM2M client running on the current asyncio event loop.

    ``async with Client(config) as client:`` starts it; leaving the block
    de-registers (bounded by MAX_TRANSMIT_WAIT). Events arrive through
    :meth:`events` (async iterator), :meth:`wait_for` and/or :meth:`subscribe`
    (callbacks); subscribe or call :meth:`events` *before* :meth:`start` to see
    the very first events, which ``start()`` itself reports.

    The verbs that wait are ``async``: :meth:`start`, :meth:`close`,
    :meth:`stop`, :meth:`wait_for`, :meth:`send` (and iterating :meth:`events`).
    Those that only tell the engine something are plain methods (see
    :class:`~aiolwm2m.runtime.driver.ClientSurface`).
    """

    __slots__ = ("_queues",)

    def __init__(
        self,
        config: ClientConfig,
        objects: DataModel | None = None,
        *,
        rng: random.Random | None = None,
        local_host: str | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        """``resolver`` turns a server's host name into an address on every link
        open (default: the system's; see :mod:`aiolwm2m.runtime.links`)."""
        super().__init__(
            _AioDriver(config, objects, rng=rng, local_host=local_host, resolver=resolver)
        )
        self._queues: list[asyncio.Queue[ev.Event | None]] = []

    @property
    def dtls_sessions(self) -> DtlsSessions:
        """DTLS sessions kept across links (what a reconnect resumes)."""
        return self._driver.dtls_sessions

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start on the running loop: connects and registers in the background."""
        self._driver.start(asyncio.get_running_loop())

    async def close(self, timeout: float | None = None) -> None:
        """De-register (``not_registered`` error if not registered), then stop.

        Waits until nothing is in flight, at most ``timeout`` seconds
        (default MAX_TRANSMIT_WAIT).
        """
        driver = self._driver
        if not driver.running:
            return
        driver.engine.close(driver.now())
        driver._pump()
        limit = timeout if timeout is not None else self.config.coap.max_transmit_wait
        with contextlib.suppress(TimeoutError):  # still busy: stop anyway
            await asyncio.wait_for(driver.wait_idle().wait(), limit)
        await self.stop()

    async def stop(self) -> None:
        """Stop at once without De-register (what a crash or power loss looks like)."""
        self._driver.stop_links()
        for q in self._queues:
            q.put_nowait(None)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ events
    def events(self) -> AsyncIterator[ev.Event]:
        """Every event from this call on, until the client stops.

        Subscribes at once, so ``stream = client.events()`` before
        ``await client.start()`` misses nothing. A stream dropped without
        being read to its end unsubscribes when it is garbage-collected, so
        an unused one does not keep every later event.
        """
        return _EventStream(self)

    async def wait_for(
        self, kind: type[E], timeout: float, predicate: Callable[[E], bool] | None = None
    ) -> E:
        """Wait for the next event of type ``kind`` (optionally matching ``predicate``).

        ``await client.wait_for(events.Registered, 30)`` returns a ``Registered``;
        raises ``TimeoutError`` after ``timeout`` seconds. May be started
        before :meth:`start` (as a task) to catch the first events.
        """
        fut: asyncio.Future[E] = asyncio.get_running_loop().create_future()

        def check(event: ev.Event) -> None:
            if (
                isinstance(event, kind)
                and not fut.done()
                and (predicate is None or predicate(event))
            ):
                fut.set_result(event)

        unsubscribe = self.subscribe(check)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            unsubscribe()

    # ------------------------------------------------------------------ Send
    async def send(
        self,
        paths: Sequence[Path | str],
        *,
        ssid: int | None = None,
        content_format: int = ContentFormat.SENML_CBOR,
        timeout: float | None = None,
    ) -> ev.SendFinished:
        """LwM2M Send (POST /dp, SenML) of the current values of ``paths``; see
        :meth:`start_send`. Returns the outcome (``success``, ``coap_code``,
        ``reason``); a failed Send is not retried and changes nothing else.
        """
        finished: dict[int, ev.SendFinished] = {}
        arrived = asyncio.Event()

        def collect(event: ev.Event) -> None:
            if isinstance(event, ev.SendFinished):
                finished[event.send_id] = event
                arrived.set()

        unsubscribe = self.subscribe(collect)
        try:
            send_id = self.start_send(paths, ssid=ssid, content_format=content_format)
            async with asyncio.timeout(timeout):
                while send_id not in finished:
                    arrived.clear()
                    await arrived.wait()
            return finished[send_id]
        finally:
            unsubscribe()
