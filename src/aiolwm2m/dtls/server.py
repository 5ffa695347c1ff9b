"""DTLS 1.2 server endpoint: many peers on one socket, demultiplexed by address.

Used by the testbed LwM2M/bootstrap servers and the fault tests, so its first
duty is to stay up: it must survive garbage, floods and misbehaving peers, and
it never raises out of :meth:`DtlsServerEndpoint.handle_datagram` or
:meth:`~DtlsServerEndpoint.poll`. Defences:

- A datagram from an unknown address allocates nothing unless it is a
  plaintext ClientHello; anything that is not well-formed DTLS records is
  dropped before OpenSSL sees it.
- Cookies (HelloVerifyRequest, RFC 6347 §4.2.1) are always on and stateless
  (``DTLSv1_listen`` on a throw-away connection): a peer gets state only once
  its ClientHello carries a valid cookie, so spoofed source addresses and
  ClientHello floods cost no memory.
- At most ``max_peers`` peers; the oldest handshaking peer is dropped first.
- Failed peers are forgotten at once, idle ones after ``idle_timeout``.

A client that restarts and handshakes again from the same address gets a new
session, but the old one is replaced only once the new ClientHello carried a
valid cookie (proved the address): a forged ClientHello cannot cut an
established device off.

Sessions can be resumed (abbreviated handshake) from the server's session
cache or a session ticket; both live in the endpoint's OpenSSL context, so a
new endpoint (a restarted server, see :class:`ServerSecurity`) refuses the old
sessions and clients fall back to a full handshake.

OpenSSL silently discards a client Finished it cannot decrypt (RFC 6347
§4.1.2.7), which is what a wrong PSK looks like; the endpoint notices (the
client's CCS and encrypted Finished arrived and the handshake did not end)
and answers a plaintext bad_record_mac alert, as Mbed TLS servers do, so the
client learns "wrong key" instead of timing out.

Like :class:`~aiolwm2m.dtls.session.DtlsClientSession` it owns no socket:
feed datagrams in, send what :meth:`~DtlsServerEndpoint.datagrams_to_send`
returns, call :meth:`~DtlsServerEndpoint.poll` ~every 20 ms.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiolwm2m.dtls import _backend as be
from aiolwm2m.dtls.credentials import PskStore, ServerCertificateCredentials, ServerSecurity
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.dtls.policy import (
    FailureInfo,
    HandshakeFailure,
    HandshakeTiming,
    TlsAlert,
    classify_handshake_alerts,
)
from aiolwm2m.dtls.records import (
    alert_record,
    has_encrypted_handshake,
    is_client_hello,
    last_plaintext_sequence,
    looks_like_dtls,
)

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
    resumed: bool = False  # ESTABLISHED by an abbreviated handshake


@dataclass(frozen=True)
class PeerInfo:
    """What the server knows about an established peer's authentication."""

    address: Any
    established: bool
    psk_identity: bytes | None
    certificate_der: bytes | None
    cipher_suite: str | None
    resumed: bool = False


class _Peer:
    __slots__ = (
        "address",
        "cert",
        "cipher",
        "conn",
        "data",
        "established",
        "last_activity",
        "plaintext_seq",
        "resumed",
        "retx",
        "started",
    )

    def __init__(self, address: Any, conn: Any, data: Any, timing: HandshakeTiming, now: float):
        self.address = address
        self.conn = conn
        self.data = data
        self.established = False
        self.resumed = False
        self.started = now
        self.last_activity = now
        self.cert: bytes | None = None
        self.cipher: str | None = None
        self.retx = be.Retransmitter(timing)
        self.plaintext_seq = -1  # highest epoch-0 sequence number we sent

    @property
    def psk_identity(self) -> bytes | None:
        identity = self.data.psk_identity
        return identity if isinstance(identity, bytes) else None


class DtlsServerEndpoint:
    """DTLS server state for all peers of one socket.

    ``psk_store`` maps identity → key (a mapping, or a callable returning the
    key or None, so a testbed can look identities up in its own tables).
    ``certificate`` enables the ECDHE-ECDSA suites; clients must then present
    a certificate chaining to its client CAs. At least one is required.
    ``context`` shares the TLS context (session cache, ticket keys) of an
    earlier endpoint, which is how a server keeps sessions across a restart.
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
        context: Any = None,
    ) -> None:
        if psk_store is None and certificate is None:
            raise DtlsStateError("a DTLS server needs a PSK store or a certificate")
        self._timing = timing if timing is not None else HandshakeTiming()
        self._lookup = be.PskLookup(psk_store) if psk_store is not None else None
        self.context: Any = (
            context if context is not None else be.server_context(self._lookup, certificate)
        )
        self._idle_timeout = idle_timeout
        self._max_peers = max_peers
        self._max_datagram = max_datagram
        self._clock = clock
        self._peers: dict[Any, _Peer] = {}
        self._outgoing: list[tuple[Any, bytes]] = []
        self._events: list[PeerEvent] = []
        self.dropped_datagrams = 0
        self.internal_errors = 0
        self.cookies_sent = 0

    # -- queries ------------------------------------------------------------

    def peers(self) -> list[Any]:
        return list(self._peers)

    def established_peers(self) -> list[Any]:
        return [a for a, p in self._peers.items() if p.established]

    def peer_info(self, address: Any) -> PeerInfo | None:
        peer = self._peers.get(address)
        if peer is None:
            return None
        return PeerInfo(
            address, peer.established, peer.psk_identity, peer.cert, peer.cipher, peer.resumed
        )

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
            be.write_record(peer.conn, bytes(app_data))
        except be.Error as exc:
            self._collect(peer)
            self._drop(
                address,
                PeerEventKind.FAILED,
                FailureInfo(HandshakeFailure.INTERNAL, None, be.error_text(exc)),
            )
            raise DtlsStateError(f"DTLS write to {address!r} failed: {exc}") from exc
        self._collect(peer)
        peer.last_activity = self._clock()

    def poll(self) -> None:
        """Re-send or time out handshake flights, forget idle peers; call ~every 20 ms."""
        now = self._clock()
        for address, peer in list(self._peers.items()):
            try:
                if not peer.established:
                    self._poll_handshake(peer, now)
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
            be.shutdown(peer.conn)
            self._collect(peer)
        self._drop(address, PeerEventKind.CLOSED)

    def close_all(self) -> None:
        for address in list(self._peers):
            self.close(address)

    def forget(self, address: Any) -> None:
        """Drop a peer's state silently; its session stays resumable (cache, ticket)."""
        peer = self._peers.pop(address, None)
        if peer is not None and peer.established:
            be.keep_resumable(peer.conn)

    # -- internals ----------------------------------------------------------

    def _handle(self, address: Any, data: bytes) -> list[tuple[Any, bytes]]:
        if len(data) > be.MAX_INCOMING_DATAGRAM or not looks_like_dtls(data):
            self.dropped_datagrams += 1
            return []
        peer = self._peers.get(address)
        if peer is None or (peer.established and is_client_hello(data)):
            # A new peer, or an established one's address sending a ClientHello
            # (a rebooted device, or a forgery): only a valid cookie gets state.
            if is_client_hello(data):
                self._hello(address, data, peer)
            else:
                self.dropped_datagrams += 1
            return []
        peer.last_activity = self._clock()
        be.feed(peer.conn, data)
        if not peer.established:
            self._advance(peer, data)
            if address not in self._peers or not self._peers[address].established:
                return []
        return self._read(peer)

    def _hello(self, address: Any, data: bytes, old: _Peer | None) -> None:
        conn, cdata = be.server_connection(self.context, address, self._max_datagram)
        if not be.listen(conn, data):
            out = be.drain(conn)
            if out:
                self.cookies_sent += 1
                self._queue(address, out)
            else:
                self.dropped_datagrams += 1
            return
        if old is not None:
            self._events.append(
                PeerEvent(
                    address,
                    PeerEventKind.CLOSED,
                    FailureInfo(HandshakeFailure.PEER_ALERT, None, "client reconnected"),
                    old.psk_identity,
                )
            )
            del self._peers[address]
        elif len(self._peers) >= self._max_peers:
            victim = min(
                (p for p in self._peers.values() if not p.established),
                key=lambda p: p.started,
                default=None,
            )
            if victim is None:
                self.dropped_datagrams += 1
                return
            self._drop(victim.address, PeerEventKind.EXPIRED)
        peer = _Peer(address, conn, cdata, self._timing, self._clock())
        self._peers[address] = peer
        self._advance(peer, data)

    def _collect(self, peer: _Peer) -> list[bytes]:
        return self._queue(peer.address, be.drain(peer.conn), peer)

    def _queue(self, address: Any, stream: bytes, peer: _Peer | None = None) -> list[bytes]:
        if peer is not None:
            seq = last_plaintext_sequence(stream)
            if seq is not None:
                peer.plaintext_seq = max(peer.plaintext_seq, seq)
        datagrams = be.split(stream, self._max_datagram)
        self._outgoing.extend((address, d) for d in datagrams)
        return datagrams

    def _drop(self, address: Any, kind: PeerEventKind, info: FailureInfo | None = None) -> None:
        peer = self._peers.pop(address, None)
        if peer is not None and peer.established:
            be.keep_resumable(peer.conn)  # idle or evicted: the client may still resume
        if peer is not None:
            self._events.append(PeerEvent(address, kind, info, peer.psk_identity))

    def _fail_handshake(self, peer: _Peer, detail: str) -> None:
        alerts = peer.data.alerts
        info = classify_handshake_alerts(
            is_client=False,
            psk=peer.psk_identity is not None,
            received=alerts.received,
            sent=alerts.sent,
            detail=detail,
        )
        self._drop(peer.address, PeerEventKind.FAILED, info)

    def _advance(self, peer: _Peer, data: bytes) -> None:
        before = be.state_string(peer.conn)
        if self._lookup is not None:
            self._lookup.asking = peer.data
        try:
            progress = be.handshake(peer.conn)
        except be.Error as exc:
            self._collect(peer)  # the fatal alert OpenSSL queued
            self._fail_handshake(peer, be.error_text(exc))
            return
        finally:
            if self._lookup is not None:
                self._lookup.asking = None
        sent = self._collect(peer)
        if progress is be.Progress.DONE:
            peer.retx.stop()
            peer.established = True
            peer.resumed = be.session_reused(peer.conn)
            be.remember_identity(self.context, peer.conn, peer.data)
            peer.cipher = be.cipher_suite(peer.conn)
            peer.cert = be.peer_certificate(peer.conn)
            self._events.append(
                PeerEvent(
                    peer.address,
                    PeerEventKind.ESTABLISHED,
                    None,
                    peer.psk_identity,
                    peer.resumed,
                )
            )
        elif peer.psk_identity is not None and has_encrypted_handshake(data) and not sent:
            self._bad_finished(peer)
        elif sent and (be.state_string(peer.conn) != before or not peer.retx.running):
            peer.retx.new_flight(sent, self._clock())

    def _bad_finished(self, peer: _Peer) -> None:
        """The client's Finished did not decrypt: with a PSK, the keys differ."""
        alert = alert_record(peer.plaintext_seq + 1, _FATAL, TlsAlert.BAD_RECORD_MAC)
        self._outgoing.append((peer.address, alert))
        peer.data.alerts.sent = TlsAlert.BAD_RECORD_MAC
        self._fail_handshake(peer, "client Finished did not verify (different PSK)")

    def _poll_handshake(self, peer: _Peer, now: float) -> None:
        due = peer.retx.due(now)
        if due == "fail":
            self._drop(
                peer.address,
                PeerEventKind.FAILED,
                FailureInfo(HandshakeFailure.TIMEOUT, None, "client stopped answering"),
            )
        elif due == "resend":
            if be.retransmit(peer.conn):
                self._collect(peer)
            else:
                self._outgoing.extend((peer.address, d) for d in peer.retx.copy_of_flight())

    def _read(self, peer: _Peer) -> list[tuple[Any, bytes]]:
        records, exc = be.read_records(peer.conn)
        self._collect(peer)
        out = [(peer.address, r) for r in records]
        if exc is None:
            return out
        if isinstance(exc, be.ZeroReturnError) or peer.data.alerts.close_notify_received:
            self._drop(
                peer.address,
                PeerEventKind.CLOSED,
                FailureInfo(
                    HandshakeFailure.PEER_ALERT, TlsAlert.CLOSE_NOTIFY, "peer closed the session"
                ),
            )
        else:
            self._fail_handshake(peer, be.error_text(exc))
        return out
