"""DTLS handshake policy as data: retransmission timing and failure kinds.

Pure (no IO, no clock): the client core models a handshake's timing and outcome
with these values because the virtual clock cannot drive OpenSSL's own timers
(OpenSSL reads the wall clock). The wrapper (:mod:`aiolwm2m.dtls.session`)
retransmits on the same :class:`HandshakeTiming`, so the model and the real
handshake agree to the millisecond.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from aiolwm2m.errors import ConfigError

__all__ = [
    "FailureInfo",
    "HandshakeFailure",
    "HandshakeTiming",
    "TlsAlert",
    "classify_alert",
    "classify_handshake_alerts",
]

# Timers are kept in whole milliseconds (uint32, as DTLS stacks do).
_MAX_TIMEOUT_S = (2**32 - 1) / 1000


@dataclass(frozen=True)
class HandshakeTiming:
    """RFC 6347 §4.2.4 retransmission timer of one handshake flight.

    A flight is sent, then re-sent each time the current wait elapses with no
    answer; the wait starts at ``initial_timeout`` and doubles, capped at
    ``max_timeout``. The flight fails once a wait equal to ``max_timeout`` has
    elapsed without an answer. As in Mbed TLS and OpenSSL, the last wait is
    ``max_timeout`` even
    when it is not a power-of-two multiple of ``initial_timeout``, e.g. 1/60 s
    gives waits 1, 2, 4, 8, 16, 32, 60 and fails after 123 s (the same waits
    as OpenSSL's default timer). Every new flight (e.g. after a
    HelloVerifyRequest) restarts the schedule.

    Values are honoured to the millisecond.
    """

    initial_timeout: float = 1.0
    max_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("initial_timeout", "max_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be positive and finite, got {value!r}")
            if value > _MAX_TIMEOUT_S:
                raise ConfigError(f"{name} must be at most {_MAX_TIMEOUT_S} s, got {value!r}")
        if self.initial_ms < 1:
            raise ConfigError(f"initial_timeout must be at least 1 ms, got {self.initial_timeout}")
        if self.max_timeout < self.initial_timeout:
            raise ConfigError(
                f"max_timeout ({self.max_timeout}) must not be below "
                f"initial_timeout ({self.initial_timeout})"
            )

    @property
    def initial_ms(self) -> int:
        return round(self.initial_timeout * 1000)

    @property
    def max_ms(self) -> int:
        return round(self.max_timeout * 1000)

    @property
    def waits(self) -> tuple[float, ...]:
        """Successive waits of one flight, in seconds; the last one equals the max."""
        wait, out = self.initial_ms, [self.initial_ms]
        while wait < self.max_ms:
            wait = min(2 * wait, self.max_ms)
            out.append(wait)
        return tuple(w / 1000 for w in out)

    @property
    def retransmission_instants(self) -> tuple[float, ...]:
        """When the flight is re-sent, in seconds after its first transmission."""
        instants: list[float] = []
        elapsed_ms = 0
        for wait in self.waits[:-1]:
            elapsed_ms += round(wait * 1000)
            instants.append(elapsed_ms / 1000)
        return tuple(instants)

    @property
    def ultimate_timeout(self) -> float:
        """Seconds after a flight's first transmission at which the handshake fails."""
        return sum(round(w * 1000) for w in self.waits) / 1000

    @property
    def transmissions(self) -> int:
        """How many times a flight that is never answered goes on the wire."""
        return len(self.waits)


class TlsAlert(enum.IntEnum):
    """TLS/DTLS alert descriptions (RFC 5246 §7.2, RFC 4279 §2, RFC 6066)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    DECRYPTION_FAILED = 21
    RECORD_OVERFLOW = 22
    DECOMPRESSION_FAILURE = 30
    HANDSHAKE_FAILURE = 40
    NO_CERTIFICATE = 41
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    UNKNOWN_PSK_IDENTITY = 115


class HandshakeFailure(enum.Enum):
    """Why a DTLS handshake (or, for NETWORK/PEER_ALERT, a session) failed.

    The recovery logic needs to tell "try again later" (TIMEOUT, NETWORK) from
    "these credentials will never work" (the credential kinds), which is why
    the TLS stack's catch-all errors are split into these kinds.
    """

    TIMEOUT = "timeout"
    NETWORK = "network"
    BAD_PSK = "bad_psk"
    UNKNOWN_PSK_IDENTITY = "unknown_psk_identity"
    CLIENT_CERT_REJECTED = "client_cert_rejected"
    SERVER_CERT_EXPIRED = "server_cert_expired"
    SERVER_CERT_UNTRUSTED = "server_cert_untrusted"
    SERVER_CERT_NAME_MISMATCH = "server_cert_name_mismatch"
    PEER_ALERT = "peer_alert"
    INTERNAL = "internal"

    @property
    def credentials_rejected(self) -> bool:
        """True when retrying with the same credentials cannot succeed.

        Drives the "secure connection failed: fall back to bootstrap for fresh
        credentials" reaction (recovery contract §6).
        """
        return self in _CREDENTIAL_FAILURES


_CREDENTIAL_FAILURES = frozenset(
    {
        HandshakeFailure.BAD_PSK,
        HandshakeFailure.UNKNOWN_PSK_IDENTITY,
        HandshakeFailure.CLIENT_CERT_REJECTED,
        HandshakeFailure.SERVER_CERT_EXPIRED,
        HandshakeFailure.SERVER_CERT_UNTRUSTED,
        HandshakeFailure.SERVER_CERT_NAME_MISMATCH,
    }
)


@dataclass(frozen=True)
class FailureInfo:
    """A classified failure: the kind, the TLS alert involved (if any), and text.

    ``alert`` keeps the number of an alert that did not map to a specific kind
    (PEER_ALERT) so logs and tests can still tell e.g. handshake_failure (40,
    no common cipher suite) from protocol_version (70).
    """

    kind: HandshakeFailure
    alert: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        text = self.kind.value
        if self.alert is not None:
            try:
                text += f" (alert {self.alert} {TlsAlert(self.alert).name.lower()})"
            except ValueError:
                text += f" (alert {self.alert})"
        if self.detail:
            text += f": {self.detail}"
        return text


# Alerts a server sends when it refuses the client's certificate.
_CLIENT_CERT_ALERTS = frozenset(
    {
        TlsAlert.NO_CERTIFICATE,
        TlsAlert.BAD_CERTIFICATE,
        TlsAlert.UNSUPPORTED_CERTIFICATE,
        TlsAlert.CERTIFICATE_REVOKED,
        TlsAlert.CERTIFICATE_EXPIRED,
        TlsAlert.CERTIFICATE_UNKNOWN,
        TlsAlert.UNKNOWN_CA,
        TlsAlert.ACCESS_DENIED,
    }
)


def classify_alert(description: int, *, psk: bool) -> HandshakeFailure:
    """Map a fatal alert received from the server during the handshake to a kind.

    ``psk`` says which credentials the client used, because the same alert
    means different things: with a PSK, bad_record_mac (what Mbed TLS and our
    server send when the Finished MAC does not verify) or decrypt_error (what RFC 5246 says
    to send) both mean the server holds a different key for our identity; with
    certificates they are just protocol errors.
    """
    if psk:
        if description in (TlsAlert.BAD_RECORD_MAC, TlsAlert.DECRYPT_ERROR):
            return HandshakeFailure.BAD_PSK
        if description == TlsAlert.UNKNOWN_PSK_IDENTITY:
            return HandshakeFailure.UNKNOWN_PSK_IDENTITY
        return HandshakeFailure.PEER_ALERT
    if description in _CLIENT_CERT_ALERTS:
        return HandshakeFailure.CLIENT_CERT_REJECTED
    return HandshakeFailure.PEER_ALERT


# Alerts a server sends when a PSK handshake fails on the key: our server
# sends bad_record_mac when the client's Finished does not decrypt.
_BAD_KEY_ALERTS = frozenset({TlsAlert.BAD_RECORD_MAC, TlsAlert.DECRYPT_ERROR})


def classify_handshake_alerts(
    *, is_client: bool, psk: bool, received: int | None, sent: int | None, detail: str
) -> FailureInfo:
    """Why a handshake failed, from the fatal alerts this end received and sent.

    A received alert says what the peer objected to (for a client, see
    :func:`classify_alert`); a sent one says what this end objected to, which
    on a server names the client's credential problem. With neither (a
    failure that produced no alert) the kind is INTERNAL.
    """
    if received is not None:
        kind = classify_alert(received, psk=psk) if is_client else HandshakeFailure.PEER_ALERT
        return FailureInfo(kind, received, detail)
    if sent is None:
        return FailureInfo(HandshakeFailure.INTERNAL, None, detail)
    if not is_client:
        if sent == TlsAlert.UNKNOWN_PSK_IDENTITY:
            return FailureInfo(HandshakeFailure.UNKNOWN_PSK_IDENTITY, sent, detail)
        if psk and sent in _BAD_KEY_ALERTS:
            return FailureInfo(HandshakeFailure.BAD_PSK, sent, detail)
        if sent in _CLIENT_CERT_ALERTS or sent == _CERTIFICATE_REQUIRED:
            return FailureInfo(HandshakeFailure.CLIENT_CERT_REJECTED, sent, detail)
    return FailureInfo(HandshakeFailure.PEER_ALERT, sent, detail + " (alert sent)")


#: TLS 1.3's certificate_required (RFC 8446), which OpenSSL also sends in DTLS 1.2.
_CERTIFICATE_REQUIRED = 116
