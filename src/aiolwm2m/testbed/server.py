"""asyncio wrapper that puts :class:`ServerCore` on a real UDP socket.

Stopping the server closes its socket, so a client's connected socket gets ICMP
port-unreachable — exactly what a crashed server looks like on the wire.
``restart()`` binds the same port again and, like a real restart, forgets all
message-layer state (registrations are kept unless ``forget_registrations``).

The LwM2M operations (:meth:`TestbedServer.read`, ``write``, ``observe``…)
return an :class:`~aiolwm2m.testbed.operations.OperationResult` whatever the
client answers (error codes included) and raise
:class:`~aiolwm2m.testbed.operations.TransportError` only when no answer comes.

With ``security=`` the server speaks DTLS only (a :class:`DtlsServerEndpoint`
demultiplexes peers; plaintext CoAP is dropped unread) and a restart also
loses every DTLS session, so clients must run a full handshake again (unless
its :class:`ServerSecurity` says ``keep_sessions``: then they can resume).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiolwm2m import dtls
from aiolwm2m.coap.message import Message
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.credentials import ServerSecurity
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.model import TypeLookup, Value
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record
from aiolwm2m.testbed import operations as ops
from aiolwm2m.testbed.core import Address, ResponseEvent, ServerCore
from aiolwm2m.testbed.host import AioHost
from aiolwm2m.testbed.operations import (
    Op,
    OperationRequest,
    OperationResult,
    TransportError,
)

if TYPE_CHECKING:
    from aiolwm2m.dtls.aio import DtlsServer
    from aiolwm2m.dtls.server import PeerEvent

log = logging.getLogger("aiolwm2m.testbed")


class Observation:
    """An open Observe (or Observe-Composite) seen from the server.

    ``initial`` is the answer to the Observe request itself; iterate
    (``async for note in observation``) for the notifications that follow.
    Iteration ends when the observation ends: cancelled from this side, or a
    final answer from the client (an error code, or a response without the
    Observe option), which is yielded before stopping.
    """

    def __init__(
        self, server: TestbedServer, endpoint: str, request: OperationRequest, key: int
    ) -> None:
        self.server = server
        self.endpoint = endpoint
        self.request = request
        self.key = key
        self.initial: OperationResult | None = None
        self.active = True
        self.notifications: list[OperationResult] = []
        self._queue: asyncio.Queue[ResponseEvent | None] = asyncio.Queue()

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.request.paths or (self.request.base,)

    def _push(self, event: ResponseEvent | None) -> None:
        self._queue.put_nowait(event)

    def _end(self) -> None:
        if self.active:
            self.active = False
            self._queue.put_nowait(None)

    def __aiter__(self) -> Observation:
        return self

    async def __anext__(self) -> OperationResult:
        while True:
            if not self.active and self._queue.empty():
                raise StopAsyncIteration
            event = await self._queue.get()
            if event is None:
                raise StopAsyncIteration
            if event.operation is None:  # a Block2 continuation of a notification got lost
                log.info("%s: notification lost (%s)", self.endpoint, event.result.outcome.value)
                continue
            if event.final:
                self.active = False
                self.server._observations.pop(self.key, None)
            self.notifications.append(event.operation)
            return event.operation

    async def next(self, timeout: float | None = None) -> OperationResult:
        """The next notification; ``TimeoutError`` if none within ``timeout``."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def cancel(self, *, active: bool = True, timeout: float = 30.0) -> OperationResult | None:
        """Stop observing.

        ``active=True`` sends the Observe request again with Observe=1 (the
        client answers it like a Read, which is returned). ``active=False``
        only forgets the observation: the client's next notification is
        answered with RST, which makes it cancel (returns None).
        """
        if not self.active:
            return None
        self.server._observations.pop(self.key, None)
        self._end()
        if not active:
            self.server._cancel(self.key)
            return None
        return await self.server._cancel_actively(self.key, timeout)


class TestbedServer(AioHost):
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
        types: TypeLookup | None = None,
        quiet: bool = False,
    ) -> None:
        """``types`` gives resource types for decoding answers (default: shipped objects;
        pass ``registry.type_of`` when clients expose objects of their own). ``quiet``
        keeps events out of the log (``on_event`` still gets them): for load runs."""
        self.core = core or ServerCore(params=params or TransmissionParameters(), types=types)
        super().__init__(self.core, host, port, log, quiet=quiet)
        self.security = security
        self.dtls: DtlsServer | None = None
        self._waiters: dict[int, asyncio.Future[ResponseEvent]] = {}
        self._observations: dict[int, Observation] = {}
        self._registration_waiters: list[tuple[str, asyncio.Future[None]]] = []

    @property
    def uri(self) -> str:
        scheme = "coap" if self.security is None else "coaps"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._transport is not None or self.dtls is not None

    async def start(self) -> None:
        if self.security is None:
            await self._open_udp()
        else:
            self._loop = asyncio.get_running_loop()
            dtls.require()  # one-line DtlsUnavailableError without a TLS stack
            from aiolwm2m.dtls.aio import serve_dtls  # the TLS stack: loaded on first use

            self.dtls = await serve_dtls(
                self.host,
                self.port,
                self.security.endpoint(),
                lambda peer, record: self._on_datagram((str(peer[0]), int(peer[1])), record),
                on_event=self._on_dtls_event,
            )
            self.port = self.dtls.local_address[1]
        self._pump()

    def _on_dtls_event(self, event: PeerEvent) -> None:
        """A rejected handshake goes in the server's log like any other event.

        Without it a client with a wrong key or an untrusted certificate looks,
        from the server's side, like a client that never came.
        """
        if event.kind.value != "failed" or self._loop is None:
            return
        host, port = event.address[0], event.address[1]
        identity = "" if event.psk_identity is None else f" psk_identity={event.psk_identity!r}"
        detail = f"from {host}:{port}{identity}: {event.info}"
        self.core.log.add(
            self._loop.time(),
            "handshake_rejected",
            None,
            detail,
            address=f"{host}:{port}",
            psk_identity=None
            if event.psk_identity is None
            else event.psk_identity.decode("utf-8", "replace"),
            failure=None if event.info is None else event.info.kind.value,
            alert=None if event.info is None else event.info.alert,
            reason=str(event.info),
        )
        self._pump()

    async def stop(self) -> None:
        if self.dtls is not None:
            self.dtls.close(notify=False)  # like a crash: clients learn by timing out
            self.dtls = None
            await asyncio.sleep(0)  # the socket closes on the next loop pass; restart rebinds
        await self._close()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        for observation in self._observations.values():
            observation._end()
        self._observations.clear()

    async def restart(self, *, forget_registrations: bool = False) -> None:
        await self.stop()
        self.core.forget_peers()
        if forget_registrations:
            self.core.forget_registrations()
        await self.start()

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

    async def wait_registered(self, endpoint: str, timeout: float = 30.0) -> None:
        """Return once ``endpoint`` is registered (``TimeoutError`` after ``timeout``)."""
        if endpoint in self.core.registrations:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        entry = (endpoint, fut)
        self._registration_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._registration_waiters.remove(entry)

    # -- LwM2M operations ------------------------------------------------------------
    async def operation(
        self, endpoint: str, request: OperationRequest, *, timeout: float = 30.0
    ) -> OperationResult:
        """Perform one operation and return the client's decoded answer.

        Raises :class:`TransportError` when there is no answer (RST, timeout,
        network error, or nothing within ``timeout`` seconds) and
        :class:`~aiolwm2m.testbed.operations.UnknownEndpointError` for an
        endpoint that is not registered.
        """
        assert self._loop is not None
        key = self.core.start_operation(endpoint, request, self._loop.time())
        return await self._result(key, request.op, timeout)

    async def read(
        self, endpoint: str, path: Path | str, fmt: int | None = None, *, timeout: float = 30.0
    ) -> OperationResult:
        return await self.operation(endpoint, ops.read_request(path, fmt), timeout=timeout)

    async def discover(
        self, endpoint: str, path: Path | str, *, timeout: float = 30.0
    ) -> OperationResult:
        return await self.operation(endpoint, ops.discover_request(path), timeout=timeout)

    async def write(
        self,
        endpoint: str,
        path: Path | str,
        values: Mapping[Path | str, Value] | Sequence[Record] | Value,
        fmt: int = ContentFormat.TLV,
        *,
        replace: bool = True,
        timeout: float = 30.0,
    ) -> OperationResult:
        """Write (``replace=True``, PUT) or Partial Update (POST) values below ``path``."""
        request = ops.write_request(path, values, fmt, replace=replace)
        return await self.operation(endpoint, request, timeout=timeout)

    async def execute(
        self,
        endpoint: str,
        path: Path | str,
        args: str | bytes | None = None,
        *,
        timeout: float = 30.0,
    ) -> OperationResult:
        return await self.operation(endpoint, ops.execute_request(path, args), timeout=timeout)

    async def create(
        self,
        endpoint: str,
        object_id: int,
        values: Mapping[Path | str | int, Value] | Sequence[Record],
        fmt: int = ContentFormat.TLV,
        *,
        instance_id: int | None = None,
        timeout: float = 30.0,
    ) -> OperationResult:
        """Create an instance; int keys are resource ids; see ``result.location``."""
        request = ops.create_request(object_id, values, fmt, instance_id=instance_id)
        return await self.operation(endpoint, request, timeout=timeout)

    async def delete(
        self, endpoint: str, path: Path | str, *, timeout: float = 30.0
    ) -> OperationResult:
        return await self.operation(endpoint, ops.delete_request(path), timeout=timeout)

    async def write_attributes(
        self,
        endpoint: str,
        path: Path | str,
        *,
        timeout: float = 30.0,
        **attrs: int | float | str | None,
    ) -> OperationResult:
        """Write-Attributes, e.g. ``pmin=1, pmax=5``; ``pmax=None`` removes pmax."""
        request = ops.write_attributes_request(path, attrs)
        return await self.operation(endpoint, request, timeout=timeout)

    async def read_composite(
        self,
        endpoint: str,
        paths: Iterable[Path | str],
        fmt: int = ContentFormat.SENML_CBOR,
        *,
        timeout: float = 30.0,
    ) -> OperationResult:
        request = ops.read_composite_request(paths, fmt)
        return await self.operation(endpoint, request, timeout=timeout)

    async def write_composite(
        self,
        endpoint: str,
        values: Mapping[Path | str, Value] | Sequence[Record],
        fmt: int = ContentFormat.SENML_CBOR,
        *,
        timeout: float = 30.0,
    ) -> OperationResult:
        request = ops.write_composite_request(values, fmt)
        return await self.operation(endpoint, request, timeout=timeout)

    async def observe(
        self,
        endpoint: str,
        path: Path | str,
        fmt: int | None = None,
        *,
        timeout: float = 30.0,
        **attrs: int | float | str | None,
    ) -> Observation:
        """Observe ``path``; ``attrs`` (``pmin=1``…) are written first with Write-Attributes.

        Check ``observation.active``: it is False when the client refused
        (its answer is then ``observation.initial``; if the attributes were
        refused, ``initial`` is that Write-Attributes answer).
        """
        return await self.observe_request(
            endpoint, ops.observe_request(path, fmt), timeout=timeout, **attrs
        )

    async def observe_composite(
        self,
        endpoint: str,
        paths: Iterable[Path | str],
        fmt: int = ContentFormat.SENML_CBOR,
        *,
        timeout: float = 30.0,
    ) -> Observation:
        request = ops.observe_composite_request(paths, fmt)
        return await self.observe_request(endpoint, request, timeout=timeout)

    async def observe_request(
        self,
        endpoint: str,
        request: OperationRequest,
        *,
        timeout: float = 30.0,
        **attrs: int | float | str | None,
    ) -> Observation:
        """Start an observation from a prepared Observe / Observe-Composite request."""
        assert self._loop is not None
        if attrs:
            written = await self.operation(
                endpoint, ops.write_attributes_request(request.base, attrs), timeout=timeout
            )
            if not written.ok:
                refused = Observation(self, endpoint, request, 0)
                refused.initial = written
                refused._end()
                return refused
        key = self.core.start_operation(endpoint, request, self._loop.time())
        observation = Observation(self, endpoint, request, key)
        self._observations[key] = observation
        self._pump()
        try:
            first = await asyncio.wait_for(observation._queue.get(), timeout)
        except TimeoutError:
            self._observations.pop(key, None)
            self._cancel(key)
            raise TransportError(request.op, None, f"no answer within {timeout:g} s") from None
        if first is None:  # the server stopped meanwhile
            raise TransportError(request.op, None, "server stopped")
        if first.operation is None:
            self._observations.pop(key, None)
            raise TransportError(request.op, first.result.outcome)
        observation.initial = first.operation
        if first.final:
            self._observations.pop(key, None)
            observation._end()
        return observation

    def observations(self) -> list[Observation]:
        """The observations currently open."""
        return list(self._observations.values())

    async def _result(self, key: int, op: Op, timeout: float) -> OperationResult:
        assert self._loop is not None
        fut: asyncio.Future[ResponseEvent] = self._loop.create_future()
        self._waiters[key] = fut
        self._pump()
        try:
            event = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._cancel(key)
            raise TransportError(op, None, f"no answer within {timeout:g} s") from None
        finally:
            self._waiters.pop(key, None)
        if event.operation is None:
            raise TransportError(op, event.result.outcome)
        return event.operation

    def _cancel(self, key: int) -> None:
        assert self._loop is not None
        self.core.cancel_request(key, self._loop.time())
        self._pump()

    async def _cancel_actively(self, key: int, timeout: float) -> OperationResult | None:
        assert self._loop is not None
        try:
            cancel_key = self.core.cancel_observation(key, self._loop.time())
        except KeyError:
            return None  # the client ended it first; its final answer is queued
        return await self._result(cancel_key, Op.CANCEL_OBSERVE, timeout)

    def _send(self, addr: Address, data: bytes) -> None:
        if self.dtls is None:
            super()._send(addr, data)
            return
        try:
            self.dtls.send(addr, data)
        except DtlsStateError:
            # No session with that peer (any more): a DTLS server cannot reach it.
            log.debug("no DTLS session with %s: datagram dropped", addr)

    def _deliver(self) -> None:
        ended = self.core.ended_observations
        while ended:  # a new registration of their endpoint ended them
            observation = self._observations.pop(ended.popleft(), None)
            if observation is not None:
                observation._end()
        while (resp := self.core.next_response()) is not None:
            observation = self._observations.get(resp.key)
            if observation is not None:
                observation._push(resp)
                continue
            fut = self._waiters.get(resp.key)
            if fut is not None and not fut.done():
                fut.set_result(resp)
        if self._registration_waiters:
            for endpoint, waiter in self._registration_waiters:
                if endpoint in self.core.registrations and not waiter.done():
                    waiter.set_result(None)


__all__ = ["Observation", "TestbedServer"]
