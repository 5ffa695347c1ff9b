"""DTLS 1.2 client session over memory buffers (python-mbedtls behind our API).

The session owns no socket and no timer: the caller feeds received datagrams to
:meth:`DtlsClientSession.handle_datagram`, sends what
:meth:`~DtlsClientSession.datagrams_to_send` returns, and calls
:meth:`~DtlsClientSession.poll` about every 20 ms while the handshake runs,
because mbedtls retransmits a flight only when called after its own wall-clock
timer expired (the re-sent flight then waits in the output buffer, so always
flush after polling). That keeps asyncio out of here and lets another binding
replace mbedtls behind the same methods.

What this binding cannot do, so neither can this class: no DTLS Connection ID
(RFC 9146), no raw public keys (RFC 7250, LwM2M security mode 1), no
standard session resumption (abbreviated handshake). The closest thing is
:meth:`~DtlsClientSession.suspend` / :meth:`~DtlsClientSession.resume`, which
serialise the live connection (mbedtls context save, a few hundred bytes) and
continue it later *on the same address pair* without any handshake: useful for
a sleeping device whose NAT binding and server session both survived; if
either did not, the server drops the records and the caller must fall back to
a full handshake.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, Final

from aiolwm2m.dtls import _backend as be
from aiolwm2m.dtls.credentials import CertificateCredentials, PskCredentials
from aiolwm2m.dtls.errors import DtlsConnectionError, DtlsStateError
from aiolwm2m.dtls.mbedtls_codes import ERR_PEER_CLOSE_NOTIFY, classify_mbedtls_error
from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, HandshakeTiming, TlsAlert
from aiolwm2m.dtls.records import looks_like_dtls, plaintext_alerts
from aiolwm2m.dtls.verify import verify_server_certificate

__all__ = ["DtlsClientSession", "DtlsState"]

_log = logging.getLogger(__name__)
_SAVE_MAGIC: Final = b"aDT1"
_TAG_LEN: Final = 16
_FATAL: Final = 2  # alert level


class DtlsState(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    FAILED = "failed"
    CLOSED = "closed"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _seal_key(credentials: PskCredentials | CertificateCredentials) -> bytes:
    h = hashlib.sha256(b"aiolwm2m dtls session seal\0")
    if isinstance(credentials, PskCredentials):
        h.update(b"psk\0" + credentials.identity + b"\0" + credentials.key)
    else:
        h.update(b"cert\0" + credentials.certificate_der + b"\0" + credentials.private_key_der)
    return h.digest()


def _seal(credentials: PskCredentials | CertificateCredentials, blob: bytes) -> bytes:
    return hmac.new(_seal_key(credentials), blob, hashlib.sha256).digest()[:_TAG_LEN]


class DtlsClientSession:
    """One DTLS client connection to one server address.

    States: IDLE → (start) → HANDSHAKING → ESTABLISHED, or FAILED with
    :attr:`failure` set; ``close()`` → CLOSED. A peer's close_notify also
    ends in CLOSED, with ``failure_info`` = PEER_ALERT close_notify so the
    caller knows it was the server's doing. A FAILED or CLOSED session is
    never reused: make a new one (recovery contract §10: a retry starts clean).

    ``server_hostname`` is the host of the server URI: sent as SNI when it is a
    name, and checked against the server certificate (certificate usages 0-2).
    ``wall_clock`` returns the current UTC time for certificate validity.
    """

    def __init__(
        self,
        credentials: PskCredentials | CertificateCredentials,
        timing: HandshakeTiming | None = None,
        server_hostname: str | None = None,
        *,
        max_datagram: int = be.DEFAULT_MAX_DATAGRAM,
        wall_clock: Callable[[], _dt.datetime] = _utcnow,
    ) -> None:
        if not isinstance(credentials, PskCredentials | CertificateCredentials):
            raise TypeError(f"DTLS credentials expected, got {type(credentials).__name__}")
        self._credentials = credentials
        self._timing = timing if timing is not None else HandshakeTiming()
        self._hostname = server_hostname
        self._max_datagram = max_datagram
        self._wall_clock = wall_clock
        self._context: Any = be.client_context(credentials, self._timing)
        self._buf: Any = None
        self._state = DtlsState.IDLE
        self._failure: FailureInfo | None = None
        self._outgoing: list[bytes] = []
        self._last_alert: int | None = None
        self._peer_cert: bytes | None = None
        self._cipher: str | None = None

    # -- properties ---------------------------------------------------------

    @property
    def state(self) -> DtlsState:
        return self._state

    @property
    def failure(self) -> HandshakeFailure | None:
        return self._failure.kind if self._failure is not None else None

    @property
    def failure_info(self) -> FailureInfo | None:
        return self._failure

    @property
    def handshake_done(self) -> bool:
        return self._state is DtlsState.ESTABLISHED

    @property
    def credentials(self) -> PskCredentials | CertificateCredentials:
        return self._credentials

    @property
    def timing(self) -> HandshakeTiming:
        return self._timing

    @property
    def cipher_suite(self) -> str | None:
        return self._cipher

    @property
    def peer_certificate_der(self) -> bytes | None:
        return self._peer_cert

    @property
    def _psk(self) -> bool:
        return isinstance(self._credentials, PskCredentials)

    # -- driving ------------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake: the ClientHello is then in :meth:`datagrams_to_send`."""
        if self._state is not DtlsState.IDLE:
            raise DtlsStateError(f"start() in state {self._state.value}")
        self._buf = be.client_buffer(self._context, self._hostname)
        self._state = DtlsState.HANDSHAKING
        self._advance()

    def poll(self) -> None:
        """Let mbedtls retransmit or time out the current flight; call ~every 20 ms."""
        if self._state is DtlsState.HANDSHAKING:
            self._advance()

    def handle_datagram(self, data: bytes) -> list[bytes]:
        """Process one received datagram; return the application records it held.

        Non-DTLS junk is dropped without touching mbedtls. Never raises for
        anything the network can send; failures show in :attr:`state`.
        """
        if self._state not in (DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            return []
        data = bytes(data)
        if not looks_like_dtls(data):
            return []
        try:
            return self._handle(data)
        except Exception as exc:  # a binding surprise must not escape into the runtime
            _log.exception("DTLS client: unexpected error handling a datagram")
            self._fail(FailureInfo(HandshakeFailure.INTERNAL, None, repr(exc)))
            return []

    def _handle(self, data: bytes) -> list[bytes]:
        for level, description in plaintext_alerts(data):
            if level == _FATAL:
                self._last_alert = description
        if not be.feed(self._buf, data):
            return []
        if self._state is DtlsState.HANDSHAKING:
            self._advance()
            if not self.handshake_done:
                return []
        return self._read()

    def datagrams_to_send(self) -> list[bytes]:
        """Take everything queued for the network (always flush after any call)."""
        out, self._outgoing = self._outgoing, []
        return out

    def send(self, app_data: bytes) -> None:
        """Encrypt ``app_data`` as one record; the datagram is then queued.

        Raises DtlsStateError when not established or too large, and
        DtlsConnectionError if mbedtls fails (the session is then FAILED).
        """
        if self._state is not DtlsState.ESTABLISHED:
            raise DtlsStateError(f"cannot send in state {self._state.value}")
        try:
            be.write_record(self._buf, bytes(app_data))
        except be.TLSError as exc:
            info = FailureInfo(
                HandshakeFailure.INTERNAL, None, f"write failed: {be.error_message(exc)}"
            )
            self._fail(info)
            raise DtlsConnectionError(info) from exc
        finally:
            self._flush()

    def close(self) -> None:
        """Send close_notify if established; the session is CLOSED afterwards."""
        if self._state is DtlsState.ESTABLISHED:
            be.shutdown(self._buf)
            self._flush()
        if self._state in (DtlsState.IDLE, DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            self._state = DtlsState.CLOSED

    def fail(self, kind: HandshakeFailure, detail: str = "") -> None:
        """Record a failure seen outside mbedtls (e.g. ICMP unreachable → NETWORK)."""
        if self._state in (DtlsState.IDLE, DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            self._fail(FailureInfo(kind, None, detail))

    # -- suspend / resume ---------------------------------------------------

    def suspend(self) -> bytes:
        """Serialise the established connection and close this object (no alert sent).

        Resume only on the same local/remote address pair, with the same
        credentials; see the module docstring. The bytes hold session keys:
        store them as securely as the credentials themselves. They carry a
        MAC keyed from the credentials, so :meth:`resume` rejects corrupt or
        foreign state instead of handing it to mbedtls (which would crash).
        """
        if self._state is not DtlsState.ESTABLISHED:
            raise DtlsStateError(f"cannot suspend in state {self._state.value}")
        self._flush()
        try:
            blob = be.save(self._buf)
        except (TypeError, be.TLSError) as exc:
            raise DtlsStateError(f"mbedtls could not save the session: {exc}") from exc
        self._state = DtlsState.CLOSED
        return _SAVE_MAGIC + _seal(self._credentials, blob) + blob

    @classmethod
    def resume(
        cls,
        credentials: PskCredentials | CertificateCredentials,
        saved: bytes,
        timing: HandshakeTiming | None = None,
        server_hostname: str | None = None,
        *,
        max_datagram: int = be.DEFAULT_MAX_DATAGRAM,
    ) -> DtlsClientSession:
        """Rebuild an ESTABLISHED session from :meth:`suspend`'s bytes."""
        session = cls(credentials, timing, server_hostname, max_datagram=max_datagram)
        head = len(_SAVE_MAGIC) + _TAG_LEN
        tag, blob = saved[len(_SAVE_MAGIC) : head], saved[head:]
        # Authenticate before mbedtls parses anything: mbedtls_ssl_context_load
        # trusts its input and crashes the process on corrupt bytes (measured).
        if not saved.startswith(_SAVE_MAGIC) or not hmac.compare_digest(
            tag, _seal(credentials, blob)
        ):
            raise DtlsStateError("saved DTLS session is corrupt or belongs to other credentials")
        try:
            session._buf = be.restore(session._context, blob, server_hostname)
        except (TypeError, ValueError, be.TLSError) as exc:
            raise DtlsStateError(f"mbedtls refused the saved session: {exc}") from exc
        session._state = DtlsState.ESTABLISHED
        session._cipher = be.cipher_suite(session._buf)
        return session

    # -- internals ----------------------------------------------------------

    def _flush(self) -> None:
        if self._buf is not None:
            self._outgoing.extend(be.split(be.drain(self._buf), self._max_datagram))

    def _queue(self, stream: bytes | bytearray) -> None:
        self._outgoing.extend(be.split(bytes(stream), self._max_datagram))

    def _fail(self, info: FailureInfo) -> None:
        self._state = DtlsState.FAILED
        self._failure = info

    def _advance(self) -> None:
        out = bytearray()
        try:
            progress = be.drive_handshake(self._buf, out)
        except be.TLSError as exc:
            self._queue(out)
            self._fail(
                classify_mbedtls_error(
                    be.error_code(exc),
                    is_client=True,
                    psk=self._psk,
                    alert=self._last_alert,
                    message=be.error_message(exc),
                )
            )
            return
        self._queue(out)
        if progress == be.HandshakeProgress.DONE:
            self._handshake_finished()

    def _handshake_finished(self) -> None:
        self._cipher = be.cipher_suite(self._buf)
        self._peer_cert = be.peer_certificate(self._buf)
        if isinstance(self._credentials, CertificateCredentials):
            problem = verify_server_certificate(
                self._peer_cert, self._credentials, self._hostname, self._wall_clock()
            )
            if problem is not None:
                # mbedtls only learns the certificate at the end and offers no
                # way to send a specific alert; close_notify at least tells the
                # server to drop the session instead of waiting for it to idle out.
                be.shutdown(self._buf)
                self._flush()
                self._fail(problem)
                return
        self._state = DtlsState.ESTABLISHED

    def _read(self) -> list[bytes]:
        records, exc = be.read_records(self._buf)
        self._flush()
        if exc is not None:
            code = be.error_code(exc)
            if code == ERR_PEER_CLOSE_NOTIFY:
                self._state = DtlsState.CLOSED
                self._failure = FailureInfo(
                    HandshakeFailure.PEER_ALERT, TlsAlert.CLOSE_NOTIFY, "server closed the session"
                )
            else:
                self._fail(
                    classify_mbedtls_error(
                        code,
                        is_client=True,
                        psk=self._psk,
                        alert=self._last_alert,
                        message=be.error_message(exc),
                    )
                )
        return records
