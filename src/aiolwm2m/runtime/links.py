"""Links: the runtime's connected datagram channels to one server (plain UDP or DTLS).

A link is what the engine calls a connection. Opening one resolves DNS again
and binds a fresh socket every time (spec §10: a registration retry starts
clean), and failures are mapped to :class:`LinkFailure` so the engine's
policy, not the runtime, decides what happens next.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol

from aiolwm2m.accounts import ServerAccount, ServerUri, check_security
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.dtls.aio import dtls_client_connect
from aiolwm2m.dtls.errors import DtlsHandshakeError
from aiolwm2m.errors import ConfigError, Lwm2mError
from aiolwm2m.runtime.dtls_link import DtlsLink, account_credentials, link_failure

DatagramCallback = Callable[[bytes], None]
ErrorCallback = Callable[[Exception], None]


class LinkError(Lwm2mError):
    """Opening a link failed; ``failure`` says how (DNS, network, handshake…)."""

    def __init__(self, failure: LinkFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class Link(Protocol):
    secure: bool

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

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(data)

    def close(self) -> None:
        self.transport.close()


async def resolve(host: str, port: int) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LinkError(LinkFailure.DNS, f"cannot resolve {host!r}: {exc}") from exc
    if not infos:
        raise LinkError(LinkFailure.DNS, f"no address for {host!r}")
    addr = infos[0][4]
    return str(addr[0]), int(addr[1])


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
) -> Link:
    """Open a link for ``account``: plain UDP for coap://, a DTLS session for coaps://.

    The engine refuses configured accounts whose security mode disagrees with
    the scheme; the check is repeated here because accounts also arrive later
    (bootstrap), and a secure account must never end up on a plaintext socket.
    """
    try:
        check_security(account, uri)  # InvalidParameters is a ConfigError
        credentials = account_credentials(account) if uri.secure else None
    except ConfigError as exc:
        raise LinkError(LinkFailure.SECURE, f"unusable credentials: {exc}") from exc
    remote = await resolve(uri.host, uri.port)
    if credentials is None:
        transport = await open_udp(remote, on_datagram, on_error, local_host)
        return UdpLink(transport)
    try:
        conn = await dtls_client_connect(
            remote[0],
            remote[1],
            credentials,
            config.dtls,
            local_addr=(local_host, 0) if local_host else None,
            server_hostname=uri.host,
        )
    except DtlsHandshakeError as exc:
        raise LinkError(link_failure(exc.failure), str(exc.info)) from exc
    return DtlsLink(conn, on_datagram, on_error)
