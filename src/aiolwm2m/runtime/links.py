"""Links: the runtime's connected datagram channels to one server (plain UDP or DTLS).

A link is what the engine calls a connection. Opening one resolves DNS again
and binds a fresh socket every time (spec §10: a registration retry starts
clean), and failures are mapped to :class:`LinkFailure` so the engine's
policy, not the runtime, decides what happens next.

Name resolution is a :data:`Resolver` the caller may replace (a test or a
fault-injection harness makes a name stop resolving for a while; a fleet
answers from its own table): :func:`resolve`, the default, asks the system
through the event loop, except for IP literals, which need no lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiolwm2m.accounts import ServerAccount, ServerUri, check_security
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.dtls.errors import DtlsHandshakeError, DtlsUnavailableError
from aiolwm2m.errors import ConfigError, Lwm2mError
from aiolwm2m.runtime.dtls_link import (
    DtlsSessions,
    account_credentials,
    link_failure,
    open_dtls_link,
)

DatagramCallback = Callable[[bytes], None]
ErrorCallback = Callable[[Exception], None]


class LinkError(Lwm2mError):
    """Opening a link failed; ``failure`` says how (DNS, network, handshake…)."""

    def __init__(self, failure: LinkFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class Link(Protocol):
    secure: bool
    resumed: bool  # a DTLS session resumed with an abbreviated handshake

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: DatagramCallback, on_error: ErrorCallback) -> None:
        self.on_datagram = on_datagram
        self.on_error = on_error

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        self.on_error(exc)


class UdpLink:
    """A connected UDP socket: ICMP errors for it arrive via ``error_received``."""

    secure = False
    resumed = False

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(data)

    def close(self) -> None:
        self.transport.close()


#: ``await resolver(host, port)`` → the (IP, port) to connect to. A name that does not
#: resolve raises :class:`OSError` (e.g. ``socket.gaierror``) or :class:`LinkError`.
Resolver = Callable[[str, int], Awaitable[tuple[str, int]]]


async def resolve(host: str, port: int) -> tuple[str, int]:
    """The system resolver (``getaddrinfo`` on the loop's thread pool); IP literals as they are."""
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise LinkError(LinkFailure.DNS, f"no address for {host!r}")
    addr = infos[0][4]
    return str(addr[0]), int(addr[1])


async def _resolved(resolver: Resolver, host: str, port: int) -> tuple[str, int]:
    try:
        return await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise LinkError(LinkFailure.DNS, f"cannot resolve {host!r}: {exc}") from exc


async def open_udp(
    remote: tuple[str, int],
    on_datagram: DatagramCallback,
    on_error: ErrorCallback,
    local_host: str | None = None,
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(on_datagram, on_error),
            remote_addr=remote,
            local_addr=(local_host, 0) if local_host else None,
        )
    except OSError as exc:
        raise LinkError(LinkFailure.NETWORK, f"cannot open UDP socket to {remote}: {exc}") from exc
    return transport


async def open_link(
    uri: ServerUri,
    account: ServerAccount,
    config: ClientConfig,
    on_datagram: DatagramCallback,
    on_error: ErrorCallback,
    *,
    local_host: str | None = None,
    sessions: DtlsSessions | None = None,
    resolver: Resolver = resolve,
) -> Link:
    """Open a link for ``account``: plain UDP for coap://, a DTLS session for coaps://.

    The engine refuses configured accounts whose security mode disagrees with
    the scheme; the check is repeated here because accounts also arrive later
    (bootstrap), and a secure account must never end up on a plaintext socket.
    Without a TLS stack installed a coaps:// link fails as SECURE with the
    one-line install hint (plain coap:// never loads it). ``sessions`` keeps
    DTLS sessions between links so a reconnect can resume one.
    """
    try:
        check_security(account, uri)  # InvalidParameters is a ConfigError
        credentials = account_credentials(account) if uri.secure else None
    except ConfigError as exc:
        raise LinkError(LinkFailure.SECURE, f"unusable credentials: {exc}") from exc
    remote = await _resolved(resolver, uri.host, uri.port)
    if credentials is None:
        transport = await open_udp(remote, on_datagram, on_error, local_host)
        return UdpLink(transport)
    try:
        return await open_dtls_link(
            remote, uri.host, credentials, config.dtls, on_datagram, on_error, local_host, sessions
        )
    except DtlsHandshakeError as exc:
        raise LinkError(link_failure(exc.failure), str(exc.info)) from exc
    except DtlsUnavailableError as exc:
        raise LinkError(LinkFailure.SECURE, str(exc)) from exc


__all__ = [
    "Link",
    "LinkError",
    "Resolver",
    "UdpLink",
    "open_link",
    "open_udp",
    "resolve",
]
