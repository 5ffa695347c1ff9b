"""DTLS 1.2 server endpoint: many peers on one socket, demultiplexed by address.

Used by the testbed LwM2M/bootstrap servers and the fault tests, so its first
duty is to stay up: it must survive garbage, floods and misbehaving peers, and
it never raises out of :meth:`DtlsServerEndpoint.handle_datagram` or
:meth:`~DtlsServerEndpoint.poll`. Defences:

- A datagram from an unknown address allocates nothing unless it is a
  plaintext ClientHello; anything that is not well-formed DTLS records is
  dropped before mbedtls sees it.
- Cookies (HelloVerifyRequest, RFC 6347 §4.2.1) are always on, as mbedtls
  does on the server side; after sending one the peer's state is discarded,
  so spoofed source addresses cost no memory.
- At most ``max_peers`` peers; the oldest handshaking peer is dropped first.
- Failed peers are forgotten at once, idle ones after ``idle_timeout``.

A client that restarts and handshakes again from the same address gets a new
session, but the old one is replaced only once the new ClientHello carried a
valid cookie (proved the address): a forged or malformed ClientHello cannot
cut an established device off (mbedtls' built-in reconnect handling could).

Like :class:`~aiolwm2m.dtls.session.DtlsClientSession` it owns no socket:
feed datagrams in, send what :meth:`~DtlsServerEndpoint.datagrams_to_send`
returns, call :meth:`~DtlsServerEndpoint.poll` ~every 20 ms.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from aiolwm2m.dtls import _backend as be
from aiolwm2m.dtls.credentials import ServerCertificateCredentials
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.dtls.mbedtls_codes import (
    ERR_CLIENT_RECONNECT,
    ERR_PEER_CLOSE_NOTIFY,
    classify_mbedtls_error,
)
from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, HandshakeTiming, TlsAlert
from aiolwm2m.dtls.records import is_client_hello, looks_like_dtls, plaintext_alerts
from aiolwm2m.errors import ConfigError

__all__ = [
    "DtlsServerEndpoint",
    "PeerEvent",
    "PeerEventKind",
    "PeerInfo",
    "PskStore",
    "ServerSecurity",
]

_log = logging.getLogger(__name__)
_FATAL = 2  # alert level

Address = Hashable  # whatever the transport uses, e.g. ("127.0.0.1", 5684)
PskStore = Mapping[bytes, bytes] | Callable[[bytes], bytes | None]


class PeerEventKind(enum.Enum):
    ESTABLISHED = "established"
    FAILED = "failed"
    CLOSED = "closed"  # the peer sent close_notify, or we closed it
    EXPIRED = "expired"  # idle too long, or evicted to make room


@dataclass(frozen=True)
class PeerEvent:
    address: Any
    kind: PeerEventKind
    info: FailureInfo | None = None
    psk_identity: bytes | None = None


@dataclass(frozen=True)
class PeerInfo:
    """What the server knows about an established peer's authentication."""

    address: Any
    established: bool
    psk_identity: bytes | None
    certificate_der: bytes | None
    cipher_suite: str | None


class _Peer:
    __slots__ = (
        "address",
        "buf",
        "cert",
        "cipher",
        "established",
        "last_activity",
        "last_alert",
        "psk_identity",
        "started",
    )

    def __init__(self, address: Any, buf: Any, now: float) -> None:
        self.address = address
        self.buf = buf
        self.established = False
        self.started = now
        self.last_activity = now
        self.psk_identity: bytes | None = None
        self.cert: bytes | None = None
        self.cipher: str | None = None
        self.last_alert: int | None = None


def _cookie_id(address: Any) -> bytes:
    return repr(address).encode("utf-8", "replace")


@dataclass(frozen=True)
class ServerSecurity:
    """What a DTLS server accepts: a PSK store and/or a certificate with client CAs.

    A recipe rather than an endpoint, so a server that restarts (the testbed
    simulating a reboot) builds a fresh endpoint and loses every session, as a
    real one would. A mutable mapping as ``psk_store`` is looked up live, so
    credentials provisioned later (e.g. by bootstrap) are accepted at once.
    """

    psk_store: PskStore | None = None
    certificate: ServerCertificateCredentials | None = None
    timing: HandshakeTiming | None = None

    def __post_init__(self) -> None:
        if self.psk_store is None and self.certificate is None:
            raise ConfigError("a DTLS server needs a PSK store or a certificate")

    def endpoint(self) -> DtlsServerEndpoint:
        return DtlsServerEndpoint(self.psk_store, self.certificate, self.timing)


class DtlsServerEndpoint:
    """DTLS server state for all peers of one socket.

    ``psk_store`` maps identity → key (a mapping, or a callable returning the
    key or None, so a testbed can look identities up in its own tables).
    ``certificate`` enables the ECDHE-ECDSA suites; clients must then present
    a certificate chaining to its client CAs. At least one is required.
    """

    def __init__(
        self,
        psk_store: PskStore | None = None,
        certificate: ServerCertificateCredentials | None = None,
        timing: HandshakeTiming | None = None,
        *,
        idle_timeout: float = 24 * 3600.0,
        max_peers: int = 10_000,
        max_datagram: int = be.DEFAULT_MAX_DATAGRAM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if psk_store is None and certificate is None:
            raise DtlsStateError("a DTLS server needs a PSK store or a certificate")
        self._timing = timing if timing is not None else HandshakeTiming()
        self._lookup = be.PskLookup(psk_store) if psk_store is not None else None
        self._context: Any = be.server_context(self._lookup, certificate, self._timing)
        self._idle_timeout = idle_timeout
        self._max_peers = max_peers
        self._max_datagram = max_datagram
        self._clock = clock
        self._peers: dict[Any, _Peer] = {}
        self._outgoing: list[tuple[Any, bytes]] = []
        self._events: list[PeerEvent] = []
        self.dropped_datagrams = 0
        self.internal_errors = 0

    # -- queries ------------------------------------------------------------

    def peers(self) -> list[Any]:
        return list(self._peers)

    def established_peers(self) -> list[Any]:
        return [a for a, p in self._peers.items() if p.established]

    def peer_info(self, address: Any) -> PeerInfo | None:
        peer = self._peers.get(address)
        if peer is None:
            return None
        return PeerInfo(address, peer.established, peer.psk_identity, peer.cert, peer.cipher)

    def datagrams_to_send(self) -> list[tuple[Any, bytes]]:
        out, self._outgoing = self._outgoing, []
        return out

    def events(self) -> list[PeerEvent]:
        """Drain what happened to peers since the last call (for logs and testbeds)."""
        out, self._events = self._events, []
        return out

    # -- driving ------------------------------------------------------------

    def handle_datagram(self, address: Any, data: bytes) -> list[tuple[Any, bytes]]:
        """Process one datagram from ``address``; return decrypted (address, record)s."""
        try:
            return self._handle(address, bytes(data))
        except Exception:  # the server must outlive any peer: log, count, forget it
            self.internal_errors += 1
            _log.exception("DTLS server: internal error on datagram from %r", address)
            self._drop(
                address,
                PeerEventKind.FAILED,
                FailureInfo(HandshakeFailure.INTERNAL, None, "internal error"),
            )
            return []

    def send(self, address: Any, app_data: bytes) -> None:
        """Encrypt one record for an established peer (DtlsStateError otherwise)."""
        peer = self._peers.get(address)
        if peer is None or not peer.established:
            raise DtlsStateError(f"no established DTLS session with {address!r}")
        try:
            be.write_record(peer.buf, bytes(app_data))
        except be.TLSError as exc:
            self._collect(peer)
            self._drop(
                address,
                PeerEventKind.FAILED,
                FailureInfo(HandshakeFailure.INTERNAL, None, be.error_message(exc)),
            )
            raise DtlsStateError(f"DTLS write to {address!r} failed: {exc}") from exc
        self._collect(peer)
        peer.last_activity = self._clock()

    def poll(self) -> None:
        """Drive handshake timers and forget idle peers; call ~every 20 ms."""
        now = self._clock()
        for address, peer in list(self._peers.items()):
            try:
                if not peer.established:
                    self._advance(peer)
                elif now - peer.last_activity > self._idle_timeout:
                    self._drop(address, PeerEventKind.EXPIRED)
            except Exception:
                self.internal_errors += 1
                _log.exception("DTLS server: internal error polling %r", address)
                self._drop(
                    address,
                    PeerEventKind.FAILED,
                    FailureInfo(HandshakeFailure.INTERNAL, None, "internal error"),
                )

    def close(self, address: Any) -> None:
        """Send close_notify to an established peer and forget it."""
        peer = self._peers.get(address)
        if peer is None:
            return
        if peer.established:
            be.shutdown(peer.buf)
            self._collect(peer)
        self._drop(address, PeerEventKind.CLOSED)

    def close_all(self) -> None:
        for address in list(self._peers):
            self.close(address)

    def forget(self, address: Any) -> None:
        """Drop a peer's state silently (e.g. the testbed simulating a server reboot)."""
        self._peers.pop(address, None)

    # -- internals ----------------------------------------------------------

    def _handle(self, address: Any, data: bytes) -> list[tuple[Any, bytes]]:
        if len(data) > be.MAX_INCOMING_DATAGRAM or not looks_like_dtls(data):
            self.dropped_datagrams += 1
            return []
        peer = self._peers.get(address)
        if peer is None:
            if not is_client_hello(data):
                self.dropped_datagrams += 1
                return []
            peer = self._new_peer(address)
            if peer is None:
                self.dropped_datagrams += 1
                return []
        if peer.established and is_client_hello(data):
            self._maybe_reconnect(peer, data)
            return []
        peer.last_activity = self._clock()
        for level, description in plaintext_alerts(data):
            if level == _FATAL:
                peer.last_alert = description
        be.feed(peer.buf, data)
        if not peer.established:
            self._advance(peer)
            if address not in self._peers or not self._peers[address].established:
                return []
        return self._read(peer)

    def _new_peer(self, address: Any) -> _Peer | None:
        if len(self._peers) >= self._max_peers:
            victim = min(
                (p for p in self._peers.values() if not p.established),
                key=lambda p: p.started,
                default=None,
            )
            if victim is None:
                return None
            self._drop(victim.address, PeerEventKind.EXPIRED)
        buf = self._context.wrap_buffers()
        buf.setcookieparam(_cookie_id(address))
        peer = _Peer(address, buf, self._clock())
        self._peers[address] = peer
        return peer

    def _maybe_reconnect(self, old: _Peer, data: bytes) -> None:
        """A ClientHello from an established peer's address: a reboot, or a forgery.

        mbedtls' own reconnect handling kills the established session when the
        ClientHello is malformed, so anyone able to spoof the source address
        could cut a device off. Instead a fresh context takes the ClientHello;
        the old session is replaced only when its cookie proves the address.
        """
        candidate = _Peer(old.address, self._context.wrap_buffers(), self._clock())
        candidate.buf.setcookieparam(_cookie_id(old.address))
        be.feed(candidate.buf, data)
        out = bytearray()
        if self._lookup is not None:
            self._lookup.on_lookup = lambda ident: setattr(candidate, "psk_identity", ident)
        try:
            progress = be.drive_handshake(candidate.buf, out)
        except be.TLSError:
            self.dropped_datagrams += 1
            return
        finally:
            if self._lookup is not None:
                self._lookup.on_lookup = None
        self._queue(old.address, bytes(out))
        if progress == be.HandshakeProgress.HELLO_VERIFY:
            return
        self._events.append(
            PeerEvent(
                old.address,
                PeerEventKind.CLOSED,
                FailureInfo(HandshakeFailure.PEER_ALERT, None, "client reconnected"),
                old.psk_identity,
            )
        )
        self._peers[old.address] = candidate
        if progress == be.HandshakeProgress.DONE:  # pragma: no cover - needs more flights
            self._advance(candidate)

    def _collect(self, peer: _Peer) -> None:
        self._queue(peer.address, be.drain(peer.buf))

    def _queue(self, address: Any, stream: bytes) -> None:
        for datagram in be.split(stream, self._max_datagram):
            self._outgoing.append((address, datagram))

    def _drop(self, address: Any, kind: PeerEventKind, info: FailureInfo | None = None) -> None:
        peer = self._peers.pop(address, None)
        if peer is not None:
            self._events.append(PeerEvent(address, kind, info, peer.psk_identity))

    def _advance(self, peer: _Peer) -> None:
        out = bytearray()
        if self._lookup is not None:
            self._lookup.on_lookup = lambda ident: setattr(peer, "psk_identity", ident)
        try:
            progress = be.drive_handshake(peer.buf, out)
        except be.TLSError as exc:
            self._queue(peer.address, bytes(out))
            info = classify_mbedtls_error(
                be.error_code(exc),
                is_client=False,
                psk=peer.psk_identity is not None,
                alert=peer.last_alert,
                message=be.error_message(exc),
            )
            self._drop(peer.address, PeerEventKind.FAILED, info)
            return
        finally:
            if self._lookup is not None:
                self._lookup.on_lookup = None
        self._queue(peer.address, bytes(out))
        if progress == be.HandshakeProgress.HELLO_VERIFY:
            # HelloVerifyRequest sent: keep no state until the cookie comes back.
            self._peers.pop(peer.address, None)
        elif progress == be.HandshakeProgress.DONE:
            peer.established = True
            peer.cipher = be.cipher_suite(peer.buf)
            peer.cert = be.peer_certificate(peer.buf)
            self._events.append(
                PeerEvent(peer.address, PeerEventKind.ESTABLISHED, None, peer.psk_identity)
            )

    def _read(self, peer: _Peer) -> list[tuple[Any, bytes]]:
        records, exc = be.read_records(peer.buf)
        self._collect(peer)
        out = [(peer.address, r) for r in records]
        if exc is None:
            return out
        code = be.error_code(exc)
        if code == ERR_CLIENT_RECONNECT:
            # mbedtls verified the cookie of a new ClientHello from this
            # address and reset itself for a fresh handshake on this buffer.
            self._events.append(
                PeerEvent(
                    peer.address,
                    PeerEventKind.CLOSED,
                    FailureInfo(HandshakeFailure.PEER_ALERT, None, "client reconnected"),
                    peer.psk_identity,
                )
            )
            peer.established = False
            peer.psk_identity = peer.cert = peer.cipher = None
            peer.last_alert = None
            peer.started = self._clock()
            self._advance(peer)
        elif code == ERR_PEER_CLOSE_NOTIFY:
            self._drop(
                peer.address,
                PeerEventKind.CLOSED,
                FailureInfo(
                    HandshakeFailure.PEER_ALERT, TlsAlert.CLOSE_NOTIFY, "peer closed the session"
                ),
            )
        else:
            self._drop(
                peer.address,
                PeerEventKind.FAILED,
                classify_mbedtls_error(
                    code,
                    is_client=False,
                    psk=peer.psk_identity is not None,
                    alert=peer.last_alert,
                    message=be.error_message(exc),
                ),
            )
        return out
