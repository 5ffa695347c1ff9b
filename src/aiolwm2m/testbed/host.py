"""The asyncio side of a testbed server: a sans-IO core on a real UDP socket.

:class:`AioHost` is the asyncio twin of :class:`~aiolwm2m.testbed.sim.SimHost`:
the one place that feeds a core (the LwM2M server's or the bootstrap
server's) datagrams and timer expiries, sends what it returns, forwards the
events it logged and re-arms its timer — for every asyncio testbed server.

The timer is re-armed only when the core's next deadline moves earlier; a
timer that fires early finds nothing due and re-arms itself. Under load that
saves cancelling and creating an asyncio timer for every datagram.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, Self

from aiolwm2m.runtime.wiretap import trace
from aiolwm2m.testbed.peers import Address, ServerEvent


class SansIoCore(Protocol):
    """What a host drives: the testbed server or bootstrap server core."""

    def datagram_received(self, addr: Address, data: bytes, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_timer(self) -> float | None: ...

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]: ...

    def take_events(self) -> list[ServerEvent]: ...


class UdpServerProtocol(asyncio.DatagramProtocol):
    """The listening socket of a testbed server (LwM2M or bootstrap): datagrams to a core."""

    def __init__(self, on_datagram: Callable[[Address, bytes], None], log: logging.Logger) -> None:
        self.on_datagram = on_datagram
        self.log = log

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.on_datagram((str(addr[0]), int(addr[1])), data)

    def error_received(self, exc: Exception) -> None:
        self.log.debug("server socket error %r", exc)


class AioHost:
    """A sans-IO server core bound to a UDP socket on the running event loop.

    ``on_event`` is called with every event the core logs (after the input
    that caused it has been fully handled); the events also go to ``log`` at
    INFO level unless ``quiet``.
    """

    def __init__(
        self,
        core: SansIoCore,
        host: str,
        port: int,
        log: logging.Logger,
        *,
        quiet: bool = False,
    ) -> None:
        self.host_core = core
        self.host = host
        self.port = port
        self.log = log
        self.quiet = quiet
        self.on_event: Callable[[ServerEvent], None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._transport is not None

    async def start(self) -> None:
        await self._open_udp()
        self._pump()

    async def stop(self) -> None:
        await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _open_udp(self) -> None:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: UdpServerProtocol(self._on_datagram, self.log),
            local_addr=(self.host, self.port),
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def _close(self) -> None:
        """Close the socket and return once the port is really closed (so the next
        datagram to it draws ICMP port-unreachable, as a crashed server's does)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)  # asyncio closes the socket on the next loop pass
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_datagram(self, addr: Address, data: bytes) -> None:
        assert self._loop is not None
        trace(addr, False, data)  # -vv: the server's side of the message trace
        self.host_core.datagram_received(addr, data, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is not None and self.running:
            self.host_core.handle_timer(self._loop.time())
            self._pump()

    def _send(self, addr: Address, data: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(data, addr)

    def _deliver(self) -> None:
        """Hand what the core produced besides datagrams and events to waiters."""

    def _event(self, event: ServerEvent) -> None:
        """One logged event, for subclasses that wait on events."""

    def _pump(self) -> None:
        if not self.running or self._loop is None:
            return
        for addr, data in self.host_core.datagrams_to_send():
            trace(addr, True, data)
            self._send(addr, data)
        self._deliver()
        for event in self.host_core.take_events():
            if not self.quiet:
                self.log.info("%s %s %s", event.kind, event.endpoint or "-", event.detail)
            if self.on_event is not None:
                self.on_event(event)
            self._event(event)
        when = self.host_core.next_timer()
        if when is not None and (self._timer is None or when < self._timer.when()):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._on_timer)


__all__ = ["AioHost", "SansIoCore", "UdpServerProtocol"]
