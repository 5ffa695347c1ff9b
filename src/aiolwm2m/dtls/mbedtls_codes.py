"""Mbed TLS 2.28 error numbers and their meaning for recovery.

Kept apart from :mod:`aiolwm2m.dtls.policy` so the policy speaks only RFC
terms; and kept free of any ``mbedtls`` import so the classification is a pure
function that unit tests (and a future non-mbedtls backend's author) can read.

mbedtls reports several distinct situations with one code: every received
fatal alert is ``0x7780`` and every certificate problem is ``0x2700``. The
session wrapper therefore passes in the alert it read off the wire itself;
certificate problems never reach here on the client because it verifies the
server certificate with ``cryptography`` (see :mod:`aiolwm2m.dtls.verify`).
"""

from __future__ import annotations

from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, TlsAlert, classify_alert

__all__ = [
    "ERR_CLIENT_RECONNECT",
    "ERR_FATAL_ALERT_MESSAGE",
    "ERR_PEER_CLOSE_NOTIFY",
    "ERR_TIMEOUT",
    "classify_mbedtls_error",
]

# Absolute values (python-mbedtls reports them positive: TLSError.err).
ERR_X509_CERT_VERIFY_FAILED = 0x2700
ERR_SSL_FEATURE_UNAVAILABLE = 0x7080
ERR_SSL_BAD_INPUT_DATA = 0x7100
ERR_INVALID_MAC = 0x7180
ERR_INVALID_RECORD = 0x7200
ERR_NO_CIPHER_CHOSEN = 0x7380
ERR_NO_CLIENT_CERTIFICATE = 0x7480
ERR_CERTIFICATE_REQUIRED = 0x7580
ERR_UNEXPECTED_MESSAGE = 0x7700
ERR_FATAL_ALERT_MESSAGE = 0x7780
ERR_PEER_VERIFY_FAILED = 0x7800
ERR_PEER_CLOSE_NOTIFY = 0x7880
ERR_BAD_HS_CERTIFICATE = 0x7A00
ERR_HANDSHAKE_FAILURE = 0x6E00
ERR_UNKNOWN_IDENTITY = 0x6C80
ERR_INTERNAL_ERROR = 0x6C00
ERR_NO_USABLE_CIPHERSUITE = 0x6980
ERR_TIMEOUT = 0x6800
ERR_CLIENT_RECONNECT = 0x6780

_CLIENT_CERT_CODES = frozenset(
    {
        ERR_X509_CERT_VERIFY_FAILED,
        ERR_NO_CLIENT_CERTIFICATE,
        ERR_CERTIFICATE_REQUIRED,
        ERR_BAD_HS_CERTIFICATE,
    }
)


def classify_mbedtls_error(
    code: int | None,
    *,
    is_client: bool,
    psk: bool,
    alert: int | None = None,
    message: str = "",
) -> FailureInfo:
    """Turn an mbedtls handshake error into a :class:`FailureInfo`.

    ``is_client`` tells which end saw the error (a server seeing ``0x2700``
    rejected the client's certificate; a client would have distrusted the
    server's). ``psk`` says whether PSK credentials were in use. ``alert`` is
    the description of the last plaintext alert received, if any.
    """
    c = abs(code) if code is not None else 0
    detail = f"mbedtls -0x{c:04X}" + (f" {message}" if message else "")
    if c == ERR_TIMEOUT:
        return FailureInfo(HandshakeFailure.TIMEOUT, None, detail)
    if c == ERR_FATAL_ALERT_MESSAGE:
        if alert is None:
            return FailureInfo(HandshakeFailure.PEER_ALERT, None, detail + " (alert encrypted)")
        kind = classify_alert(alert, psk=psk) if is_client else HandshakeFailure.PEER_ALERT
        return FailureInfo(kind, alert, detail)
    if c == ERR_PEER_CLOSE_NOTIFY:
        return FailureInfo(HandshakeFailure.PEER_ALERT, TlsAlert.CLOSE_NOTIFY, detail)
    if psk and c in (ERR_INVALID_MAC, ERR_PEER_VERIFY_FAILED):
        # The Finished message did not verify: the two ends derived different
        # keys, which with PSK means different pre-shared keys.
        return FailureInfo(HandshakeFailure.BAD_PSK, None, detail)
    if c == ERR_UNKNOWN_IDENTITY:
        return FailureInfo(HandshakeFailure.UNKNOWN_PSK_IDENTITY, None, detail)
    if c in _CLIENT_CERT_CODES:
        kind = (
            HandshakeFailure.SERVER_CERT_UNTRUSTED
            if is_client
            else HandshakeFailure.CLIENT_CERT_REJECTED
        )
        return FailureInfo(kind, None, detail)
    return FailureInfo(HandshakeFailure.INTERNAL, None, detail)
