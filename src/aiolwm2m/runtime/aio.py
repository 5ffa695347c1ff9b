"""asyncio runtime: real UDP sockets and timers around the sans-IO client engine.

The runtime is deliberately thin. It keeps no protocol state: it opens a
*connected* UDP socket per server link (so the kernel reports ICMP
port-unreachable as ``ConnectionRefusedError`` within milliseconds), feeds
datagrams, socket errors and timer expiries into :class:`ClientEngine`, and
carries out the link actions the engine returns. There is no background task
per client — only one ``loop.call_at`` handle and the sockets — so one event
loop can host thousands of clients.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiolwm2m.client import events as ev
from aiolwm2m.client.basic_objects import default_objects
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import (
    ClientEngine,
    CloseLink,
    ObjectTree,
    OpenLink,
    SendDatagram,
    ServerState,
)
from aiolwm2m.runtime.links import Link, LinkError, open_link

log = logging.getLogger("aiolwm2m.client")

EventCallback = Callable[[ev.Event], None]


class Client:
    """An LwM2M client running on the current asyncio event loop.

    ``async with Client(config) as client:`` starts it; leaving the block
    de-registers (bounded by ``close_timeout``). Events arrive through
    :meth:`events` (async iterator) and/or :meth:`subscribe` (callbacks).
    """

    def __init__(
        self,
        config: ClientConfig,
        objects: ObjectTree | None = None,
        *,
        rng: random.Random | None = None,
        local_host: str | None = None,
    ) -> None:
        self.config = config
        self.objects = objects or default_objects([s.short_server_id for s in config.servers])
        self.engine = ClientEngine(config, self.objects, rng=rng or random.Random())
        self._local_host = local_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links: dict[int, Link] = {}
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._generation: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._callbacks: list[EventCallback] = []
        self._queues: list[asyncio.Queue[ev.Event | None]] = []
        self._started_at = 0.0
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        self.engine.start(self._now())
        self._pump()

    async def close(self, timeout: float | None = None) -> None:
        """De-register (spec: ``not_registered`` error if not registered), then stop."""
        if self._loop is None or self._stopped:
            return
        self.engine.close(self._now())
        self._pump()
        limit = timeout if timeout is not None else self.config.coap.max_transmit_wait
        deadline = self._loop.time() + limit
        while not self.engine.idle and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        await self.stop()

    async def stop(self) -> None:
        """Stop at once without De-register (what a crash or power loss looks like)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._opening.values():
            task.cancel()
        for link in self._links.values():
            link.close()
        self._links.clear()
        for q in self._queues:
            q.put_nowait(None)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ application API
    def all_connections_failed(self) -> bool:
        return self.engine.all_connections_failed()

    def schedule_reconnect(self) -> None:
        self.engine.schedule_reconnect(self._now())
        self._pump()

    def enable_server(self, ssid: int) -> None:
        self.engine.enable_server(ssid, self._now())
        self._pump()

    def disable_server(self, ssid: int, timeout: float | None = None) -> None:
        self.engine.disable_server(ssid, self._now(), timeout)
        self._pump()

    def trigger_update(self, ssid: int | None = None) -> None:
        self.engine.trigger_update(self._now(), ssid)
        self._pump()

    def objects_changed(self) -> None:
        self.engine.objects_changed(self._now())
        self._pump()

    def state(self, ssid: int) -> ServerState:
        return self.engine.server_state(ssid)

    def elapsed(self, t: float) -> float:
        """Convert an event's engine time to seconds since :meth:`start`."""
        return t - self._started_at

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event from now on, until the client stops."""
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._queues.remove(queue)

    async def wait_for(
        self,
        name: str,
        timeout: float,
        predicate: Callable[[Any], bool] | None = None,
    ) -> ev.Event:
        """Wait for the next event called ``name`` (optionally matching ``predicate``)."""
        assert self._loop is not None
        fut: asyncio.Future[ev.Event] = self._loop.create_future()

        def check(event: ev.Event) -> None:
            if event.name == name and not fut.done() and (predicate is None or predicate(event)):
                fut.set_result(event)

        unsubscribe = self.subscribe(check)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            unsubscribe()

    # ------------------------------------------------------------------ engine plumbing
    def _now(self) -> float:
        assert self._loop is not None, "client not started"
        return self._loop.time()

    def _pump(self) -> None:
        """Carry out what the engine asked for, deliver its events, re-arm its timer."""
        if self._stopped:
            return
        for action in self.engine.link_actions():
            if isinstance(action, SendDatagram):
                link = self._links.get(action.link)
                if link is not None:
                    link.send(action.data)
            elif isinstance(action, CloseLink):
                self._close_link(action.link)
            elif isinstance(action, OpenLink):
                self._close_link(action.link)
                gen = self._generation.get(action.link, 0) + 1
                self._generation[action.link] = gen
                assert self._loop is not None
                self._opening[action.link] = self._loop.create_task(self._open(action, gen))
        while (event := self.engine.next_event()) is not None:
            self._deliver(event)
        self._rearm()

    def _deliver(self, event: ev.Event) -> None:
        log.debug("event %s", event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # an application callback must not break the client
                log.exception("event callback failed")
        for q in self._queues:
            q.put_nowait(event)

    def _rearm(self) -> None:
        when = self.engine.next_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.engine.handle_timer(self._now())
        self._pump()

    def _close_link(self, link_id: int) -> None:
        self._generation[link_id] = self._generation.get(link_id, 0) + 1
        task = self._opening.pop(link_id, None)
        if task is not None:
            task.cancel()
        link = self._links.pop(link_id, None)
        if link is not None:
            link.close()

    async def _open(self, action: OpenLink, gen: int) -> None:
        def on_datagram(data: bytes) -> None:
            if self._generation.get(action.link) == gen:
                self.engine.datagram_received(action.link, data, self._now())
                self._pump()

        def on_error(exc: Exception) -> None:
            if self._generation.get(action.link) == gen:
                log.debug("link %d: socket error %r", action.link, exc)
                self.engine.link_error(action.link, self._now())
                self._pump()

        try:
            link = await open_link(
                action.uri,
                action.account,
                self.config,
                on_datagram,
                on_error,
                local_host=self._local_host,
            )
        except LinkError as exc:
            if self._generation.get(action.link) == gen:
                self._opening.pop(action.link, None)
                self.engine.link_failed(action.link, exc.failure, self._now(), str(exc))
                self._pump()
            return
        if self._generation.get(action.link) != gen or self._stopped:
            link.close()
            return
        self._opening.pop(action.link, None)
        self._links[action.link] = link
        self.engine.link_up(action.link, self._now(), new_session=True, secure=link.secure)
        self._pump()
