"""Minimal asyncio glue for the DTLS layer (the only asyncio code in ``dtls/``).

The client uses a *connected* UDP socket on purpose: the kernel then reports
ICMP port/host unreachable for that peer through ``error_received`` within a
millisecond, so a closed server port fails the handshake at once with NETWORK
instead of after the whole retransmission schedule (OpenSSL never sees ICMP).
While the handshake runs the session is polled every ``poll_interval``
(20 ms): flights are re-sent and timed out by the session's own schedule.

The project's runtime wraps these; they stay small on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiolwm2m.dtls.credentials import CertificateCredentials, PskCredentials
from aiolwm2m.dtls.errors import DtlsConnectionError, DtlsHandshakeError, DtlsStateError
from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, HandshakeTiming
from aiolwm2m.dtls.server import DtlsServerEndpoint, PeerEvent
from aiolwm2m.dtls.session import DtlsClientSession, DtlsState, SavedSession

__all__ = [
    "DtlsDatagramConnection",
    "DtlsServer",
    "dtls_client_connect",
    "serve_dtls",
]

_log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.02


class DtlsDatagramConnection:
    """An established DTLS client connection on a connected UDP socket.

    Received application records go to :meth:`recv` or, once
    :meth:`set_receiver` was called, to that callback. A later failure (ICMP
    error, fatal alert, the server's close_notify) makes :meth:`recv` raise
    :class:`DtlsConnectionError` and is reported once to ``on_error``.
    """

    def __init__(self, session: DtlsClientSession) -> None:
        self._session = session
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._receiver: Callable[[bytes], None] | None = None
        self._wakeup = asyncio.Event()
        self._reported = False
        self._closed_locally = False
        self.on_error: Callable[[FailureInfo], None] | None = None

    # -- public -------------------------------------------------------------

    @property
    def session(self) -> DtlsClientSession:
        return self._session

    @property
    def failure_info(self) -> FailureInfo | None:
        return self._session.failure_info

    @property
    def is_open(self) -> bool:
        return self._session.state is DtlsState.ESTABLISHED

    @property
    def local_address(self) -> Any:
        return self._transport.get_extra_info("sockname") if self._transport else None

    @property
    def remote_address(self) -> Any:
        return self._transport.get_extra_info("peername") if self._transport else None

    def send(self, data: bytes) -> None:
        """Encrypt and send one record (DtlsStateError / DtlsConnectionError if not open)."""
        if not self.is_open:
            self._raise_closed()
        self._session.send(data)
        self._flush()

    async def recv(self) -> bytes:
        """Next application record; raises once the connection is broken or closed."""
        while True:
            if not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    return item
            if not self.is_open:
                self._raise_closed()
            item = await self._queue.get()
            if item is not None:
                return item

    def set_receiver(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver records to ``callback`` instead of :meth:`recv` (queued ones first)."""
        self._receiver = callback
        while callback is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                callback(item)

    def close(self) -> None:
        """Send close_notify (if still open) and close the socket."""
        self._closed_locally = True
        self._session.close()
        self._flush()
        if self._transport is not None:
            self._transport.close()
        self._queue.put_nowait(None)

    # -- internals ----------------------------------------------------------

    def _raise_closed(self) -> None:
        info = self._session.failure_info
        if info is None or self._closed_locally:
            raise DtlsStateError("DTLS connection is closed")
        raise DtlsConnectionError(info)

    def _flush(self) -> None:
        if self._transport is None or self._transport.is_closing():
            self._session.datagrams_to_send()
            return
        for datagram in self._session.datagrams_to_send():
            self._transport.sendto(datagram)

    def _on_datagram(self, data: bytes) -> None:
        was_open = self.is_open
        for record in self._session.handle_datagram(data):
            if self._receiver is not None:
                try:
                    self._receiver(record)
                except Exception:
                    _log.exception("DTLS receiver callback failed")
            else:
                self._queue.put_nowait(record)
        self._flush()
        self._wakeup.set()
        if was_open and not self.is_open:
            self._broken()

    def _on_error(self, exc: Exception) -> None:
        was_open = self.is_open
        self._session.fail(HandshakeFailure.NETWORK, f"{type(exc).__name__}: {exc}")
        self._wakeup.set()
        if was_open:
            self._broken()

    def _broken(self) -> None:
        self._queue.put_nowait(None)
        if self._transport is not None:
            self._transport.close()
        info = self._session.failure_info
        if info is not None and not self._reported and not self._closed_locally:
            self._reported = True
            if self.on_error is not None:
                try:
                    self.on_error(info)
                except Exception:
                    _log.exception("DTLS on_error callback failed")


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, conn: DtlsDatagramConnection) -> None:
        self._conn = conn

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._conn._on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        self._conn._on_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._conn._on_error(exc)


async def dtls_client_connect(
    host: str,
    port: int,
    credentials: PskCredentials | CertificateCredentials,
    timing: HandshakeTiming | None = None,
    *,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    resume: SavedSession | None = None,
    on_flight: Callable[[int, float], None] | None = None,
) -> DtlsDatagramConnection:
    """Open a connected UDP socket to host:port and run the DTLS handshake.

    ``server_hostname`` (default ``host``) is what the server certificate is
    checked against. ``resume`` offers a kept session (abbreviated handshake
    if the server still has it; ``conn.session.resumed`` tells).
    ``on_flight(attempt, next_timeout)`` hears of the first flight (attempt 1)
    and of every retransmission of a flight, with the wait before the next
    one (or the verdict), so a silent server shows long before it fails. Raises
    :class:`DtlsHandshakeError`; a name that does not resolve or a socket
    that cannot be opened is NETWORK, chained from the OSError
    (``socket.gaierror`` for DNS). Cancelling closes the socket.
    """
    loop = asyncio.get_running_loop()
    session = DtlsClientSession(credentials, timing, server_hostname or host, resume=resume)
    conn = DtlsDatagramConnection(session)
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ClientProtocol(conn), remote_addr=(host, port), local_addr=local_addr
        )
    except socket.gaierror as exc:
        raise DtlsHandshakeError(
            HandshakeFailure.NETWORK, f"cannot resolve {host!r}: {exc}"
        ) from exc
    except OSError as exc:
        raise DtlsHandshakeError(HandshakeFailure.NETWORK, f"socket: {exc}") from exc
    conn._transport = transport
    waits = session.timing.waits

    def report(attempt: int) -> None:
        if on_flight is not None:
            on_flight(attempt, waits[min(attempt, len(waits)) - 1])

    try:
        session.start()
        conn._flush()
        report(1)
        while session.state is DtlsState.HANDSHAKING:
            conn._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn._wakeup.wait(), poll_interval)
            sent = session.transmissions
            session.poll()
            conn._flush()
            if session.state is DtlsState.HANDSHAKING and session.transmissions > sent:
                report(session.transmissions)
        if session.state is not DtlsState.ESTABLISHED:
            info = session.failure_info or FailureInfo(
                HandshakeFailure.INTERNAL, None, f"handshake ended in {session.state.value}"
            )
            raise DtlsHandshakeError.from_info(info)
    except BaseException:
        transport.close()
        raise
    return conn


class DtlsServer:
    """A :class:`DtlsServerEndpoint` bound to a UDP socket, polled in the background."""

    def __init__(
        self,
        endpoint: DtlsServerEndpoint,
        on_app_data: Callable[[Any, bytes], None],
        on_event: Callable[[PeerEvent], None] | None,
        poll_interval: float,
    ) -> None:
        self.endpoint = endpoint
        self._on_app_data = on_app_data
        self._on_event = on_event
        self._poll_interval = poll_interval
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def local_address(self) -> Any:
        return self._transport.get_extra_info("sockname") if self._transport else None

    def send(self, address: Any, data: bytes) -> None:
        self.endpoint.send(address, data)
        self._flush()

    def close(self, *, notify: bool = True) -> None:
        """Stop serving; ``notify=False`` sends no close_notify (what a crash looks like)."""
        if self._task is not None:
            self._task.cancel()
        if notify:
            self.endpoint.close_all()
            self._flush()
        self._dispatch_events()
        if self._transport is not None:
            self._transport.close()

    def _flush(self) -> None:
        if self._transport is None or self._transport.is_closing():
            self.endpoint.datagrams_to_send()
            return
        for address, datagram in self.endpoint.datagrams_to_send():
            self._transport.sendto(datagram, address)

    def _dispatch_events(self) -> None:
        for event in self.endpoint.events():
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    _log.exception("DTLS server on_event callback failed")

    def _received(self, data: bytes, address: Any) -> None:
        records = self.endpoint.handle_datagram(address, data)
        self._flush()
        self._dispatch_events()
        for peer, record in records:
            try:
                self._on_app_data(peer, record)
            except Exception:
                _log.exception("DTLS server on_app_data callback failed")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            self.endpoint.poll()
            self._flush()
            self._dispatch_events()


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DtlsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._server._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP for a datagram we sent to some client: that client's problem.
        _log.debug("DTLS server socket error: %s", exc)


async def serve_dtls(
    host: str,
    port: int,
    endpoint: DtlsServerEndpoint | Callable[[], DtlsServerEndpoint],
    on_app_data: Callable[[Any, bytes], None],
    *,
    on_event: Callable[[PeerEvent], None] | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> DtlsServer:
    """Bind a UDP socket (port 0 picks one; see ``local_address``) and serve DTLS."""
    ep = endpoint if isinstance(endpoint, DtlsServerEndpoint) else endpoint()
    server = DtlsServer(ep, on_app_data, on_event, poll_interval)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ServerProtocol(server), local_addr=(host, port)
    )
    server._transport = transport
    server._task = loop.create_task(server._poll_forever())
    return server
