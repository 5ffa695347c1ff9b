"""DTLS 1.2 client session over memory BIOs (OpenSSL behind our API).

The session owns no socket and no timer: the caller feeds received datagrams to
:meth:`DtlsClientSession.handle_datagram`, sends what
:meth:`~DtlsClientSession.datagrams_to_send` returns, and calls
:meth:`~DtlsClientSession.poll` about every 20 ms while the handshake runs, so
flights are re-sent on the :class:`~aiolwm2m.dtls.policy.HandshakeTiming`
schedule (always flush after polling). That keeps asyncio out of here and lets
another binding replace OpenSSL behind the same methods.

Session resumption (RFC 5246 §7.3 abbreviated handshake, RFC 5077 tickets):
after a handshake, :attr:`~DtlsClientSession.saved_session` holds what is
needed to resume; a new session built with ``resume=`` offers it, and
:attr:`~DtlsClientSession.resumed` says whether the server took it (no
certificate exchange, no key exchange: one flight less and far less CPU) or
ran a full handshake instead. Connection ID (RFC 9146) is not available: no
Python binding of a DTLS stack exposes it (docs/dtls-backends.md).
"""

from __future__ import annotations

import datetime as _dt
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from aiolwm2m.dtls import _backend as be
from aiolwm2m.dtls.credentials import CertificateCredentials, PskCredentials
from aiolwm2m.dtls.errors import DtlsConnectionError, DtlsStateError
from aiolwm2m.dtls.policy import (
    FailureInfo,
    HandshakeFailure,
    HandshakeTiming,
    TlsAlert,
    classify_handshake_alerts,
)
from aiolwm2m.dtls.records import looks_like_dtls
from aiolwm2m.dtls.verify import verify_server_certificate

__all__ = ["DtlsClientSession", "DtlsState", "SavedSession"]

_log = logging.getLogger(__name__)

SavedSession = be.SavedSession


class DtlsState(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    FAILED = "failed"
    CLOSED = "closed"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class DtlsClientSession:
    """One DTLS client connection to one server address.

    States: IDLE → (start) → HANDSHAKING → ESTABLISHED, or FAILED with
    :attr:`failure` set; ``close()`` → CLOSED. A peer's close_notify also
    ends in CLOSED, with ``failure_info`` = PEER_ALERT close_notify so the
    caller knows it was the server's doing. A FAILED or CLOSED session is
    never reused: make a new one (recovery contract §10: a retry starts clean),
    passing ``resume=`` the old one's :attr:`saved_session` to try an
    abbreviated handshake.

    ``server_hostname`` is the host of the server URI: sent as SNI when it is a
    name, and checked against the server certificate (certificate usages 0-2).
    ``wall_clock`` returns the current UTC time for certificate validity;
    ``clock`` the monotonic seconds the retransmission timer runs on.
    """

    def __init__(
        self,
        credentials: PskCredentials | CertificateCredentials,
        timing: HandshakeTiming | None = None,
        server_hostname: str | None = None,
        *,
        resume: SavedSession | None = None,
        max_datagram: int = be.DEFAULT_MAX_DATAGRAM,
        wall_clock: Callable[[], _dt.datetime] = _utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(credentials, PskCredentials | CertificateCredentials):
            raise TypeError(f"DTLS credentials expected, got {type(credentials).__name__}")
        self._credentials = credentials
        self._timing = timing if timing is not None else HandshakeTiming()
        self._hostname = server_hostname
        self._max_datagram = max_datagram
        self._wall_clock = wall_clock
        self._clock = clock
        self._offered = resume
        self._conn: Any = None
        self._alerts = be.AlertLog()
        self._retx = be.Retransmitter(self._timing)
        self._state = DtlsState.IDLE
        self._failure: FailureInfo | None = None
        self._outgoing: list[bytes] = []
        self._peer_cert: bytes | None = None
        self._cipher: str | None = None
        self._resumed = False
        self._saved: SavedSession | None = None
        self.flights = 0  # distinct handshake flights this client sent

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
        """IANA name of the negotiated suite, e.g. ``TLS_PSK_WITH_AES_128_CCM_8``."""
        return self._cipher

    @property
    def peer_certificate_der(self) -> bytes | None:
        return self._peer_cert

    @property
    def resumed(self) -> bool:
        """True when the server accepted the offered session (abbreviated handshake)."""
        return self._resumed

    @property
    def transmissions(self) -> int:
        """Times the current handshake flight went on the wire (1 until a resend)."""
        return self._retx.transmissions

    @property
    def resumption_offered(self) -> bool:
        return self._offered is not None

    @property
    def saved_session(self) -> SavedSession | None:
        """What a later session needs to resume this one (set once established)."""
        return self._saved

    @property
    def _psk(self) -> bool:
        return isinstance(self._credentials, PskCredentials)

    # -- driving ------------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake: the ClientHello is then in :meth:`datagrams_to_send`."""
        if self._state is not DtlsState.IDLE:
            raise DtlsStateError(f"start() in state {self._state.value}")
        self._conn, self._alerts = be.client_connection(
            self._credentials, self._hostname, self._max_datagram, self._offered
        )
        self._state = DtlsState.HANDSHAKING
        self._advance()

    def poll(self) -> None:
        """Re-send or time out the current flight when due; call ~every 20 ms."""
        if self._state is not DtlsState.HANDSHAKING:
            return
        try:
            due = self._retx.due(self._clock())
            if due == "fail":
                self._fail(
                    FailureInfo(
                        HandshakeFailure.TIMEOUT,
                        None,
                        f"no answer to a handshake flight sent {self._retx.transmissions} "
                        f"times over {self._timing.ultimate_timeout:g} s",
                    )
                )
            elif due == "resend":
                if be.retransmit(self._conn):
                    self._queue(be.drain(self._conn))
                else:
                    self._outgoing.extend(self._retx.copy_of_flight())
        except Exception as exc:  # a binding surprise must not escape into the runtime
            _log.exception("DTLS client: unexpected error while polling")
            self._fail(FailureInfo(HandshakeFailure.INTERNAL, None, repr(exc)))

    def handle_datagram(self, data: bytes) -> list[bytes]:
        """Process one received datagram; return the application records it held.

        Non-DTLS junk is dropped without touching OpenSSL. Never raises for
        anything the network can send; failures show in :attr:`state`.
        """
        if self._state not in (DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            return []
        data = bytes(data)
        if not looks_like_dtls(data):
            return []
        try:
            if not be.feed(self._conn, data):
                return []
            if self._state is DtlsState.HANDSHAKING:
                self._advance()
                if not self.handshake_done:
                    return []
            return self._read()
        except Exception as exc:  # a binding surprise must not escape into the runtime
            _log.exception("DTLS client: unexpected error handling a datagram")
            self._fail(FailureInfo(HandshakeFailure.INTERNAL, None, repr(exc)))
            return []

    def datagrams_to_send(self) -> list[bytes]:
        """Take everything queued for the network (always flush after any call)."""
        out, self._outgoing = self._outgoing, []
        return out

    def send(self, app_data: bytes) -> None:
        """Encrypt ``app_data`` as one record; the datagram is then queued.

        Raises DtlsStateError when not established or too large, and
        DtlsConnectionError if OpenSSL fails (the session is then FAILED).
        """
        if self._state is not DtlsState.ESTABLISHED:
            raise DtlsStateError(f"cannot send in state {self._state.value}")
        try:
            be.write_record(self._conn, bytes(app_data))
        except be.Error as exc:
            info = FailureInfo(
                HandshakeFailure.INTERNAL, None, f"write failed: {be.error_text(exc)}"
            )
            self._fail(info)
            raise DtlsConnectionError(info) from exc
        finally:
            self._flush()

    def close(self) -> None:
        """Send close_notify if established; the session is CLOSED afterwards."""
        if self._state is DtlsState.ESTABLISHED:
            be.shutdown(self._conn)
            self._flush()
        if self._state in (DtlsState.IDLE, DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            self._state = DtlsState.CLOSED
            self._retx.stop()

    def fail(self, kind: HandshakeFailure, detail: str = "") -> None:
        """Record a failure seen outside OpenSSL (e.g. ICMP unreachable → NETWORK)."""
        if self._state in (DtlsState.IDLE, DtlsState.HANDSHAKING, DtlsState.ESTABLISHED):
            self._fail(FailureInfo(kind, None, detail))

    # -- internals ----------------------------------------------------------

    def _flush(self) -> None:
        if self._conn is not None:
            self._queue(be.drain(self._conn))

    def _queue(self, stream: bytes) -> list[bytes]:
        datagrams = be.split(stream, self._max_datagram)
        self._outgoing.extend(datagrams)
        return datagrams

    def _fail_from_alerts(self, exc: BaseException) -> None:
        """OpenSSL failed: classify by the alerts this connection sent and received."""
        self._fail(
            classify_handshake_alerts(
                is_client=True,
                psk=self._psk,
                received=self._alerts.received,
                sent=self._alerts.sent,
                detail=be.error_text(exc),
            )
        )

    def _fail(self, info: FailureInfo) -> None:
        if self._saved is not None:  # it was established: the network failed, not the keys
            be.keep_resumable(self._conn)
        self._state = DtlsState.FAILED
        self._failure = info
        self._retx.stop()

    def _advance(self) -> None:
        before = be.state_string(self._conn)
        try:
            progress = be.handshake(self._conn)
        except be.Error as exc:
            self._flush()  # a fatal alert OpenSSL queued must still reach the peer
            self._fail_from_alerts(exc)
            return
        sent = self._queue(be.drain(self._conn))
        if progress is be.Progress.DONE:
            self._retx.stop()
            self._handshake_finished()
        elif sent and (be.state_string(self._conn) != before or not self._retx.running):
            self.flights += 1
            self._retx.new_flight(sent, self._clock())

    def _handshake_finished(self) -> None:
        if self._outgoing:
            self.flights += 1  # the final flight (client Finished) went out just now
        self._cipher = be.cipher_suite(self._conn)
        self._peer_cert = be.peer_certificate(self._conn)
        self._resumed = self._offered is not None and be.session_reused(self._conn)
        if isinstance(self._credentials, CertificateCredentials):
            problem = verify_server_certificate(
                self._peer_cert, self._credentials, self._hostname, self._wall_clock()
            )
            if problem is not None:
                # The certificate is checked only once the handshake is over;
                # close_notify at least tells the server to drop the session
                # instead of waiting for it to idle out.
                be.shutdown(self._conn)
                self._flush()
                self._fail(problem)
                return
        self._saved = be.saved_session(self._conn, self._credentials)
        self._state = DtlsState.ESTABLISHED

    def _read(self) -> list[bytes]:
        records, exc = be.read_records(self._conn)
        self._flush()
        if exc is None:
            return records
        if isinstance(exc, be.ZeroReturnError) or self._alerts.close_notify_received:
            self._state = DtlsState.CLOSED
            self._failure = FailureInfo(
                HandshakeFailure.PEER_ALERT, TlsAlert.CLOSE_NOTIFY, "server closed the session"
            )
        else:
            self._fail_from_alerts(exc)
        return records
