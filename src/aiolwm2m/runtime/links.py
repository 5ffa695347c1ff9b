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
    HandshakeProgress,
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


class UdpLink:
    """A connected, non-blocking UDP socket that the loop's selector reads directly.

    Deliberately not an asyncio transport: a transport brings a write-buffer
    deque, a protocol object and bookkeeping — about 2 KB a socket, which a
    fleet of thousands of devices in one process pays for nothing. A datagram
    socket needs no write buffer: when the kernel's send buffer is full the
    datagram is lost, as it may be anywhere on the path, and CoAP retransmits.
    ICMP errors (port unreachable) surface as ``OSError`` on the next receive
    or send and are reported through ``on_error`` on the next loop turn.
    """

    __slots__ = ("_loop", "_on_datagram", "_on_error", "_sock")
    secure = False
    resumed = False

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagram: DatagramCallback,
        on_error: ErrorCallback,
    ) -> None:
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._on_datagram = on_datagram
        self._on_error = on_error
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._on_error(exc)
                return
            self._on_datagram(data)

    def send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass  # send buffer full: this datagram is lost, CoAP retransmits
        except OSError as exc:
            self._loop.call_soon(self._on_error, exc)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()


#: Largest datagram read (the IPv4 UDP payload limit).
_MAX_DATAGRAM = 65_507
#: Datagrams read per readiness wake-up before other sockets get their turn.
_READS_PER_WAKEUP = 16


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
) -> UdpLink:
    """A :class:`UdpLink` connected to ``remote`` (an IP address: resolve names first)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local_host:
            sock.bind((local_host, 0))
        sock.connect(remote)
    except OSError as exc:
        sock.close()
        raise LinkError(LinkFailure.NETWORK, f"cannot open UDP socket to {remote}: {exc}") from exc
    return UdpLink(loop, sock, on_datagram, on_error)


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
    progress: HandshakeProgress | None = None,
) -> Link:
    """Open a link for ``account``: plain UDP for coap://, a DTLS session for coaps://.

    The engine refuses configured accounts whose security mode disagrees with
    the scheme; the check is repeated here because accounts also arrive later
    (bootstrap), and a secure account must never end up on a plaintext socket.
    Without a TLS stack installed a coaps:// link fails as SECURE with the
    one-line install hint (plain coap:// never loads it). ``sessions`` keeps
    DTLS sessions between links so a reconnect can resume one; ``progress``
    hears of each handshake flight.
    """
    try:
        check_security(account, uri)  # InvalidParameters is a ConfigError
        credentials = account_credentials(account) if uri.secure else None
    except ConfigError as exc:
        raise LinkError(LinkFailure.SECURE, f"unusable credentials: {exc}") from exc
    remote = await _resolved(resolver, uri.host, uri.port)
    if credentials is None:
        return await open_udp(remote, on_datagram, on_error, local_host)
    try:
        return await open_dtls_link(
            remote,
            uri.host,
            credentials,
            config.dtls,
            on_datagram,
            on_error,
            local_host,
            sessions,
            progress,
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
