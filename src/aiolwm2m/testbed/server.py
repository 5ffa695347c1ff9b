"""asyncio wrapper that puts :class:`ServerCore` on a real UDP socket.

Stopping the server closes its socket, so a client's connected socket gets ICMP
port-unreachable — exactly what a crashed server looks like on the wire.
``restart()`` binds the same port again and, like a real restart, forgets all
message-layer state (registrations are kept unless ``forget_registrations``).

With ``security=`` the server speaks DTLS only (a :class:`DtlsServerEndpoint`
demultiplexes peers; plaintext CoAP is dropped unread) and a restart also
loses every DTLS session, so clients must handshake again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiolwm2m.coap.message import Message
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.aio import DtlsServer, serve_dtls
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.dtls.server import ServerSecurity
from aiolwm2m.testbed.core import Address, ResponseEvent, ServerCore, ServerEvent

log = logging.getLogger("aiolwm2m.testbed")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: TestbedServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server._on_datagram((str(addr[0]), int(addr[1])), data)

    def error_received(self, exc: Exception) -> None:
        log.debug("server socket error %r", exc)


class TestbedServer:
    """An LwM2M server on 127.0.0.1 for demos and tests."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        params: TransmissionParameters | None = None,
        core: ServerCore | None = None,
        security: ServerSecurity | None = None,
    ) -> None:
        self.host = host
        self.security = security
        self.dtls: DtlsServer | None = None
        self.port = port
        self.core = core or ServerCore(params=params or TransmissionParameters())
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: dict[int, asyncio.Future[ResponseEvent]] = {}
        self._logged = 0
        self.on_event: Callable[[ServerEvent], None] | None = None

    @property
    def uri(self) -> str:
        scheme = "coap" if self.security is None else "coaps"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._transport is not None or self.dtls is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.security is not None:
            self.dtls = await serve_dtls(
                self.host,
                self.port,
                self.security.endpoint(),
                lambda peer, record: self._on_datagram((str(peer[0]), int(peer[1])), record),
            )
            self.port = self.dtls.local_address[1]
            self._pump()
            return
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._pump()

    async def stop(self) -> None:
        if self.dtls is not None:
            self.dtls.close(notify=False)  # like a crash: clients learn by timing out
            self.dtls = None
            await asyncio.sleep(0)  # the socket closes on the next loop pass; restart rebinds
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def restart(self, *, forget_registrations: bool = False) -> None:
        await self.stop()
        self.core.forget_peers()
        if forget_registrations:
            self.core.registrations.clear()
        await self.start()

    async def __aenter__(self) -> TestbedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def request(
        self, endpoint: str, msg: Message, *, timeout: float = 30.0, keep_open: bool = False
    ) -> ResponseEvent:
        """Send a request to a registered client and wait for its outcome."""
        assert self._loop is not None
        key = self.core.send_request(endpoint, msg, self._loop.time(), keep_open=keep_open)
        fut: asyncio.Future[ResponseEvent] = self._loop.create_future()
        self._waiters[key] = fut
        self._pump()
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(key, None)

    def _on_datagram(self, addr: Address, data: bytes) -> None:
        assert self._loop is not None
        self.core.datagram_received(addr, data, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is not None and self.running:
            self.core.handle_timer(self._loop.time())
            self._pump()

    def _send(self, addr: Address, data: bytes) -> None:
        if self.dtls is None:
            assert self._transport is not None
            self._transport.sendto(data, addr)
            return
        try:
            self.dtls.send(addr, data)
        except DtlsStateError:
            # No session with that peer (any more): a DTLS server cannot reach it.
            log.debug("no DTLS session with %s: datagram dropped", addr)

    def _pump(self) -> None:
        if not self.running or self._loop is None:
            return
        for addr, data in self.core.datagrams_to_send():
            self._send(addr, data)
        while (resp := self.core.next_response()) is not None:
            fut = self._waiters.get(resp.key)
            if fut is not None and not fut.done():
                fut.set_result(resp)
        history = self.core.history
        for event in history[self._logged :]:
            log.info("%s %s %s", event.kind, event.endpoint or "-", event.detail)
            if self.on_event is not None:
                self.on_event(event)
        self._logged = len(history)
        if self._timer is not None:
            self._timer.cancel()
        when = self.core.next_timer()
        self._timer = self._loop.call_at(when, self._on_timer) if when is not None else None
