"""The only module that touches OpenSSL; everything else goes through here.

The binding is pyOpenSSL (OpenSSL's DTLS 1.2 over memory BIOs, session
resumption, cookies) plus two things pyOpenSSL's public API lacks and which
are reached through the cffi bindings of ``cryptography`` that pyOpenSSL
itself uses (``OpenSSL._util``): the PSK callbacks (``SSL_CTX_set_psk_*``)
and ``SSL_session_reused``. :func:`check` verifies both at import, so a
future ``cryptography`` that drops them fails with one clear message instead
of mid-handshake. The study behind this choice is ``docs/dtls-backends.md``.

Sharp edges handled once, here (measured with OpenSSL 3.x/4.0):

- The LwM2M CCM_8 suites sit at OpenSSL security level 0 (64-bit tags), so
  the cipher strings say ``@SECLEVEL=0``; nothing else is offered.
- A memory BIO has no MTU: OpenSSL is told one (``set_ciphertext_mtu``) so it
  fragments certificate flights, and its output stream is re-cut into
  datagrams at record boundaries.
- OpenSSL's handshake timer is fixed (1 s doubling to 60 s) and there is no
  binding for ``DTLS_set_timer_cb``; :class:`Retransmitter` applies our own
  :class:`HandshakeTiming` on top (see there).
- Alerts are learnt from the info callback (both directions, encrypted or
  not), so failures are classified from RFC alert numbers, not error text.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509 as _x509
from cryptography.hazmat.primitives import serialization as _ser
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from aiolwm2m.dtls.credentials import (
    CertificateCredentials,
    PskCredentials,
    ServerCertificateCredentials,
)
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.dtls.records import split_into_datagrams

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "MAX_INCOMING_DATAGRAM",
    "MAX_RECORD_PLAINTEXT",
    "AlertLog",
    "Progress",
    "PskLookup",
    "Retransmitter",
    "SavedSession",
    "check",
    "client_connection",
    "remember_identity",
    "server_context",
]

#: LwM2M 1.1 (TS Core §E) mandatory suite first, then the recommended one.
PSK_CIPHERS: Final = b"PSK-AES128-CCM8:PSK-AES128-CBC-SHA256:@SECLEVEL=0"
CERT_CIPHERS: Final = b"ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0"
#: OpenSSL's suite names → the IANA names (RFC 6655, RFC 7251) we report.
_IANA: Final = {
    "PSK-AES128-CCM8": "TLS_PSK_WITH_AES_128_CCM_8",
    "PSK-AES128-CBC-SHA256": "TLS_PSK_WITH_AES_128_CBC_SHA256",
    "ECDHE-ECDSA-AES128-CCM8": "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}
_DTLS1_2: Final = 0xFEFD
#: The largest plaintext one record can carry (RFC 6347 §4.1, 2^14).
MAX_RECORD_PLAINTEXT: Final = 16384
#: Largest datagram handed to OpenSSL: one maximal DTLS record (2^14 plaintext
#: + 2048 expansion + header). Bigger ones cannot be valid.
MAX_INCOMING_DATAGRAM: Final = 2**14 + 2048 + 13
#: Datagram size used when re-cutting OpenSSL's output and as its MTU.
DEFAULT_MAX_DATAGRAM: Final = 1400
_READ_SIZE: Final = MAX_RECORD_PLAINTEXT + 1024
_DRAIN_SIZE: Final = 65536
_OP_COOKIE_EXCHANGE: Final = 0x2000  # SSL_OP_COOKIE_EXCHANGE (typed int | None in pyOpenSSL)
_SSL_CB_ALERT: Final = 0x4000
_SSL_CB_READ: Final = 0x04
_FATAL: Final = 2


def check() -> None:
    """Fail at import if the cffi bindings this module relies on are gone."""
    missing = [
        name
        for name in (
            "SSL_CTX_set_psk_client_callback",
            "SSL_CTX_set_psk_server_callback",
            "SSL_session_reused",
        )
        if not hasattr(_lib, name)
    ]
    if missing or not getattr(_lib, "Cryptography_HAS_PSK", False):
        raise ImportError(
            "this cryptography/pyOpenSSL build lacks DTLS-PSK bindings "
            f"({', '.join(missing) or 'PSK disabled'}); see docs/dtls-backends.md"
        )


check()

Error = SSL.Error
WantReadError = SSL.WantReadError
ZeroReturnError = SSL.ZeroReturnError


class Progress(enum.Enum):
    WANT_READ = "want_read"
    DONE = "done"


@dataclass
class AlertLog:
    """Fatal alerts a connection sent and received (filled by the info callback)."""

    received: int | None = None
    sent: int | None = None
    close_notify_received: bool = False


@dataclass
class _ConnData:
    """What a callback needs to know about its connection (``Connection.app_data``)."""

    alerts: AlertLog = field(default_factory=AlertLog)
    address: Any = None
    psk_identity: bytes | None = None


#: ``aiolwm2m -vv``: each handshake step and alert, one DEBUG line each.
_steps = logging.getLogger("aiolwm2m.dtls.handshake")


def _log_step(conn: SSL.Connection, where: int, ret: int) -> None:
    peer = getattr(conn.get_app_data(), "address", None)  # only server ends know theirs
    side = "client" if peer is None else f"server, peer {peer[0]}:{peer[1]}"
    if where & SSL.SSL_CB_HANDSHAKE_START:
        _steps.debug("%s: handshake starts", side)
    elif where & SSL.SSL_CB_HANDSHAKE_DONE:
        _steps.debug("%s: handshake done", side)
    elif where & SSL.SSL_CB_LOOP:
        _steps.debug("%s: %s", side, conn.get_state_string().decode("ascii", "replace"))
    elif where & _SSL_CB_ALERT:
        direction = "received" if where & _SSL_CB_READ else "sent"
        _steps.debug(
            "%s: alert %s (level %d, description %d)", side, direction, ret >> 8, ret & 255
        )


def _info_callback(conn: SSL.Connection, where: int, ret: int) -> None:
    if _steps.isEnabledFor(logging.DEBUG):
        _log_step(conn, where, ret)
    if not where & _SSL_CB_ALERT:
        return
    data = conn.get_app_data()
    if not isinstance(data, _ConnData):  # pragma: no cover - every connection has one
        return
    level, description = ret >> 8, ret & 0xFF
    if where & _SSL_CB_READ:
        if description == 0:
            data.alerts.close_notify_received = True
        elif level == _FATAL:
            data.alerts.received = description
    elif level == _FATAL:
        data.alerts.sent = description


def _base_context(ciphers: bytes) -> SSL.Context:
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(_DTLS1_2)
    ctx.set_max_proto_version(_DTLS1_2)
    ctx.set_cipher_list(ciphers)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
    ctx.set_info_callback(_info_callback)
    return ctx


def _use_certificate(ctx: SSL.Context, cert_der: bytes, key_der: bytes) -> None:
    ctx.use_certificate(_x509.load_der_x509_certificate(cert_der))
    key = _ser.load_der_private_key(key_der, password=None)
    ctx.use_privatekey(key)  # type: ignore[arg-type]


def sni_name(hostname: str | None) -> str | None:
    """The name to send as SNI: RFC 6066 forbids IP literals there."""
    if not hostname:
        return None
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return hostname
    return None


class SavedSession:
    """An established session's parameters, kept to resume it (RFC 5246 §7.3, RFC 5077).

    Opaque on purpose: it holds the master secret. Only good for the server
    it came from (the caller keys it so) and only offered with the same
    credentials; it keeps its TLS context because OpenSSL resumes a session
    only on a connection of the context that made it.
    """

    __slots__ = ("_context", "_credentials", "_session")

    def __init__(
        self,
        session: SSL.Session,
        context: SSL.Context,
        credentials: PskCredentials | CertificateCredentials,
    ) -> None:
        self._session = session
        self._context = context
        self._credentials = credentials


def _client_context(credentials: PskCredentials | CertificateCredentials) -> SSL.Context:
    if isinstance(credentials, PskCredentials):
        ctx = _base_context(PSK_CIPHERS)
        identity, key = credentials.identity, credentials.key

        @_ffi.callback(  # type: ignore[untyped-decorator]  # cffi has no stubs
            "unsigned int(SSL *, const char *, char *, unsigned int, unsigned char *, unsigned int)"
        )
        def psk_client(
            ssl: Any, hint: Any, out_id: Any, max_id: int, out_key: Any, max_key: int
        ) -> int:
            if len(identity) >= max_id or len(key) > max_key:
                return 0
            _ffi.memmove(out_id, identity + b"\0", len(identity) + 1)
            _ffi.memmove(out_key, key, len(key))
            return len(key)

        _lib.SSL_CTX_set_psk_client_callback(ctx._context, psk_client)
        ctx._aiolwm2m_psk_callback = psk_client  # type: ignore[attr-defined]  # keep alive
    else:
        ctx = _base_context(CERT_CIPHERS)
        _use_certificate(ctx, credentials.certificate_der, credentials.private_key_der)
        # The server certificate is checked by verify.py after the handshake,
        # which tells expired / untrusted / wrong name apart (OpenSSL's own
        # verification would need the trust store and name rules in its terms).
        ctx.set_verify(SSL.VERIFY_NONE)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
    return ctx


def client_connection(
    credentials: PskCredentials | CertificateCredentials,
    hostname: str | None,
    max_datagram: int,
    saved: SavedSession | None,
) -> tuple[SSL.Connection, AlertLog]:
    """A client connection on memory BIOs, offering ``saved`` for resumption.

    ``saved`` is ignored when it was made with other credentials.
    """
    if saved is not None and saved._credentials != credentials:
        saved = None
    ctx = saved._context if saved is not None else _client_context(credentials)
    conn = SSL.Connection(ctx, None)
    data = _ConnData()
    conn.set_app_data(data)
    conn.set_connect_state()
    conn.set_ciphertext_mtu(max_datagram)
    name = sni_name(hostname)
    if name is not None:
        conn.set_tlsext_host_name(name.encode("idna"))
    if saved is not None:
        conn.set_session(saved._session)
    return conn, data.alerts


class PskLookup:
    """Our PSK store seen from OpenSSL's server callback; notes who asked.

    The server endpoint sets :attr:`asking` to the connection data of the peer
    it is driving, so the identity a peer used is recorded. A store that
    raises is treated as "unknown identity" (OpenSSL then sends alert 115).
    """

    def __init__(self, store: Mapping[bytes, bytes] | Callable[[bytes], bytes | None]) -> None:
        self._store = store
        self.asking: _ConnData | None = None

    def key(self, identity: bytes) -> bytes | None:
        if self.asking is not None:
            self.asking.psk_identity = identity
        try:
            if callable(self._store):
                return self._store(identity)
            return self._store.get(identity)
        except Exception:  # a broken store must not take the handshake down with it
            return None


def server_context(
    lookup: PskLookup | None,
    certificate: ServerCertificateCredentials | None,
) -> SSL.Context:
    """Server context: cookies, a session cache and tickets, new keys per context.

    A new context (a restarted server) has a new ticket key and an empty
    cache, so sessions of the previous one can no longer be resumed.
    """
    ciphers: list[bytes] = []
    if lookup is not None:
        ciphers.append(PSK_CIPHERS.removesuffix(b":@SECLEVEL=0"))
    if certificate is not None:
        ciphers.append(CERT_CIPHERS.removesuffix(b":@SECLEVEL=0"))
    ctx = _base_context(b":".join(ciphers) + b":@SECLEVEL=0")
    ctx.set_options(_OP_COOKIE_EXCHANGE)
    secret = os.urandom(32)

    def cookie(conn: SSL.Connection) -> bytes:
        address = conn.get_app_data().address
        return hmac.new(secret, repr(address).encode(), hashlib.sha256).digest()[:16]

    ctx.set_cookie_generate_callback(cookie)
    ctx.set_cookie_verify_callback(lambda conn, c: hmac.compare_digest(c, cookie(conn)))
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_session_id(b"aiolwm2m-" + secret[:8])
    if lookup is not None:

        @_ffi.callback(  # type: ignore[untyped-decorator]  # cffi has no stubs
            "unsigned int(SSL *, const char *, unsigned char *, unsigned int)"
        )
        def psk_server(ssl: Any, identity: Any, out_key: Any, max_key: int) -> int:
            key = lookup.key(_ffi.string(identity)) if identity != _ffi.NULL else None
            if not key or len(key) > max_key:
                return 0
            _ffi.memmove(out_key, key, len(key))
            return len(key)

        _lib.SSL_CTX_set_psk_server_callback(ctx._context, psk_server)
        ctx._aiolwm2m_psk_callback = psk_server  # type: ignore[attr-defined]
    if certificate is not None:
        _use_certificate(ctx, certificate.certificate_der, certificate.private_key_der)
        if certificate.client_ca_certificates_der:
            store = ctx.get_cert_store()
            assert store is not None
            for der in certificate.client_ca_certificates_der:
                store.add_cert(crypto.X509.from_cryptography(_x509.load_der_x509_certificate(der)))
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    return ctx


def server_connection(
    ctx: SSL.Context, address: Any, max_datagram: int
) -> tuple[SSL.Connection, _ConnData]:
    conn = SSL.Connection(ctx, None)
    data = _ConnData(address=address)
    conn.set_app_data(data)
    conn.set_accept_state()
    conn.set_ciphertext_mtu(max_datagram)
    return conn, data


def listen(conn: SSL.Connection, datagram: bytes) -> bool:
    """Stateless cookie check (RFC 6347 §4.2.1) of a ClientHello on a fresh connection.

    True when the ClientHello carried a valid cookie (the connection then
    holds it and the handshake continues); otherwise a HelloVerifyRequest
    may be waiting in the output and the connection must be discarded.
    """
    conn.bio_write(datagram)
    try:
        conn.DTLSv1_listen()
    except (WantReadError, Error):
        return False
    return True


def feed(conn: SSL.Connection, data: bytes) -> bool:
    """Hand one received datagram to OpenSSL; False (and nothing done) if oversized."""
    if len(data) > MAX_INCOMING_DATAGRAM:
        return False
    conn.bio_write(data)
    return True


def drain(conn: SSL.Connection) -> bytes:
    """Everything OpenSSL queued for the network, as one byte stream of records."""
    out = bytearray()
    while True:
        try:
            chunk = conn.bio_read(_DRAIN_SIZE)
        except WantReadError:
            return bytes(out)
        out += chunk
        if len(chunk) < _DRAIN_SIZE:  # a memory BIO hands out all it holds at once
            return bytes(out)


def handshake(conn: SSL.Connection) -> Progress:
    """Advance the handshake as far as the data received allows; raises ``Error``."""
    try:
        conn.do_handshake()
    except WantReadError:
        return Progress.WANT_READ
    return Progress.DONE


def state_string(conn: SSL.Connection) -> bytes:
    return conn.get_state_string()


def retransmit(conn: SSL.Connection) -> bool:
    """Let OpenSSL re-send its current flight if *its* timer expired."""
    try:
        return bool(conn.DTLSv1_handle_timeout())
    except Error:
        return False


def read_records(conn: SSL.Connection) -> tuple[list[bytes], BaseException | None]:
    """Decrypted application records now available (one bytes per record).

    An error after some records still returns those records, with the error
    (``ZeroReturnError`` for the peer's close_notify, else ``Error``).
    """
    out: list[bytes] = []
    while True:
        try:
            out.append(conn.recv(_READ_SIZE))
        except WantReadError:
            return out, None
        except Error as exc:
            return out, exc


def write_record(conn: SSL.Connection, data: bytes) -> None:
    if len(data) > MAX_RECORD_PLAINTEXT:
        raise DtlsStateError(
            f"{len(data)} bytes do not fit one DTLS record (max {MAX_RECORD_PLAINTEXT})"
        )
    if not data:
        raise DtlsStateError("empty application data cannot be sent as a DTLS record")
    conn.send(data)


def shutdown(conn: SSL.Connection) -> None:
    """Queue close_notify; errors mean the connection is already gone."""
    with contextlib.suppress(Error):
        conn.shutdown()


def keep_resumable(conn: SSL.Connection) -> None:
    """Let the session outlive a connection dropped without close_notify.

    OpenSSL forgets (marks not resumable) the session of a connection freed
    without a close_notify sent, the TLS 1.0 rule; since TLS 1.1 (RFC 5246
    §7.2.1) a connection that merely went quiet may still be resumed, which is
    the point after an outage. Fatal alerts still make OpenSSL drop it.
    """
    conn.set_shutdown(conn.get_shutdown() | SSL.SENT_SHUTDOWN)


def peer_certificate(conn: SSL.Connection) -> bytes | None:
    cert = conn.get_peer_certificate(as_cryptography=True)
    return cert.public_bytes(_ser.Encoding.DER) if cert is not None else None


def cipher_suite(conn: SSL.Connection) -> str | None:
    name = conn.get_cipher_name()
    return _IANA.get(name, name) if name else None


def session_reused(conn: SSL.Connection) -> bool:
    return bool(_lib.SSL_session_reused(conn._ssl))


#: Sessions whose PSK identity a server remembers (per context, oldest dropped first).
_MAX_REMEMBERED_IDENTITIES: Final = 10_000


def remember_identity(ctx: SSL.Context, conn: SSL.Connection, data: _ConnData) -> None:
    """Keep (after a full handshake) or recall (after a resumed one) the PSK identity.

    OpenSSL does not run the PSK callback when a session is resumed and the
    bindings have no ``SSL_get_psk_identity``, so the server keys identities
    by a hash of the session's master secret, which resumption keeps. The
    table lives on the context, so it follows the session cache and ticket
    key across a restart that keeps sessions.
    """
    master = conn.master_key()
    if master is None:  # pragma: no cover - an established connection has one
        return
    table: dict[bytes, bytes] = ctx.__dict__.setdefault("_aiolwm2m_identities", {})
    key = hashlib.sha256(master).digest()
    if data.psk_identity is not None:
        table.pop(key, None)
        table[key] = data.psk_identity
        while len(table) > _MAX_REMEMBERED_IDENTITIES:
            del table[next(iter(table))]
    else:
        data.psk_identity = table.get(key)


def saved_session(
    conn: SSL.Connection, credentials: PskCredentials | CertificateCredentials
) -> SavedSession | None:
    session = conn.get_session()
    if session is None:
        return None
    return SavedSession(session, conn.get_context(), credentials)


def error_text(exc: BaseException) -> str:
    """OpenSSL's reason strings of an ``SSL.Error`` (for details and logs only)."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list):
        reasons = [str(item[2]) for item in args if isinstance(item, tuple) and len(item) == 3]
        if reasons:
            return "; ".join(reasons)
    return str(exc) or type(exc).__name__


def split(stream: bytes, max_datagram: int) -> list[bytes]:
    return split_into_datagrams(stream, max_datagram) if stream else []


class Retransmitter:
    """RFC 6347 §4.2.4 flight timer with our :class:`HandshakeTiming` (pure, clock passed in).

    OpenSSL retransmits only when asked after its own fixed timer expired
    (1 s doubling to 60 s). At each of our retransmission instants the
    caller asks OpenSSL first; if OpenSSL's timer is still running (our
    timing is shorter than OpenSSL's), the last flight is re-sent byte for
    byte instead. Identical records are harmless for a flight the peer never
    got; a peer that did get it drops them as replays, and recovery of a lost
    *final* flight then waits for OpenSSL's own timer (≥ 1 s). With the
    default timing (1 s / 60 s) every retransmission is OpenSSL's own.
    """

    def __init__(self, timing: HandshakeTiming) -> None:
        self._timing = timing
        self._flight: list[bytes] = []
        self._started: float | None = None
        self._next = 0  # index into timing.retransmission_instants
        self.transmissions = 0

    @property
    def running(self) -> bool:
        return self._started is not None

    def new_flight(self, datagrams: list[bytes], now: float) -> None:
        self._flight = list(datagrams)
        self._started = now
        self._next = 0
        self.transmissions = 1

    def stop(self) -> None:
        self._started = None
        self._flight = []

    def due(self, now: float) -> str | None:
        """``"resend"`` at a retransmission instant, ``"fail"`` at the ultimate timeout."""
        if self._started is None:
            return None
        elapsed = now - self._started
        if elapsed >= self._timing.ultimate_timeout:
            return "fail"
        instants = self._timing.retransmission_instants
        if self._next < len(instants) and elapsed >= instants[self._next]:
            # Skip instants already missed (a long pause): one resend, not a burst.
            while self._next < len(instants) and elapsed >= instants[self._next]:
                self._next += 1
            self.transmissions += 1
            return "resend"
        return None

    def copy_of_flight(self) -> list[bytes]:
        return list(self._flight)
