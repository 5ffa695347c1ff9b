"""asyncio runtime: real UDP sockets and timers around the sans-IO client engine.

The runtime is deliberately thin. It keeps no protocol state: it opens a
*connected* UDP socket per server link (so the kernel reports ICMP
port-unreachable as ``ConnectionRefusedError`` within milliseconds), feeds
datagrams, socket errors and timer expiries into the engine and carries out
the link actions it returns (see :class:`EngineDriver`). There is no
background task per client — one ``loop.call_at`` handle and the sockets — so
one event loop can host thousands of clients.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import DataModel, OpenLink
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.runtime.driver import EngineDriver
from aiolwm2m.runtime.dtls_link import DtlsSessions
from aiolwm2m.runtime.links import LinkError, Resolver, open_link, resolve

__all__ = ["Client"]


class Client(EngineDriver):
    """An LwM2M client running on the current asyncio event loop.

    ``async with Client(config) as client:`` starts it; leaving the block
    de-registers (bounded by MAX_TRANSMIT_WAIT). Events arrive through
    :meth:`events` (async iterator) and/or :meth:`subscribe` (callbacks).
    """

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
        super().__init__(config, objects, rng=rng)
        self._local_host = local_host
        self._resolver = resolver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._queues: list[asyncio.Queue[ev.Event | None]] = []
        # DTLS sessions kept across links, so a reconnect can resume one.
        self.dtls_sessions = DtlsSessions()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.start_engine()

    async def close(self, timeout: float | None = None) -> None:
        """De-register (``not_registered`` error if not registered), then stop."""
        if self._loop is None or self._stopped:
            return
        self.engine.close(self.now())
        self._pump()
        limit = timeout if timeout is not None else self.config.coap.max_transmit_wait
        deadline = self._loop.time() + limit
        while not self.engine.idle and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        await self.stop()

    async def stop(self) -> None:
        """Stop at once without De-register (what a crash or power loss looks like)."""
        self.stop_links()
        for q in self._queues:
            q.put_nowait(None)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ events
    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event from now on, until the client stops."""
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self._queues.append(queue)
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            unsubscribe()
            self._queues.remove(queue)

    async def wait_for(
        self, name: str, timeout: float, predicate: Callable[[Any], bool] | None = None
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

    # ------------------------------------------------------------------ runtime hooks
    def now(self) -> float:
        assert self._loop is not None, "client not started"
        return self._loop.time()

    def _set_timer(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

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
