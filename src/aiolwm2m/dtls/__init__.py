"""DTLS 1.2 for aiolwm2m: pure handshake policy plus a python-mbedtls wrapper.

Everything mbedtls-specific stays behind :class:`DtlsClientSession` and
:class:`DtlsServerEndpoint` (memory-buffer, sans-socket) so the binding can be
replaced; :mod:`aiolwm2m.dtls.aio` is the only asyncio part. Importing this
package imports python-mbedtls; the pure pieces (:mod:`.policy`,
:mod:`.records`, :mod:`.mbedtls_codes`) can be imported on their own.
"""

from aiolwm2m.dtls.credentials import (
    NO_SEC,
    CertificateCredentials,
    CertificateUsage,
    DtlsCredentials,
    NoSec,
    PskCredentials,
    ServerCertificateCredentials,
)
from aiolwm2m.dtls.errors import (
    DtlsConnectionError,
    DtlsError,
    DtlsHandshakeError,
    DtlsStateError,
)
from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, HandshakeTiming, TlsAlert
from aiolwm2m.dtls.server import DtlsServerEndpoint, PeerEvent, PeerEventKind, PeerInfo
from aiolwm2m.dtls.session import DtlsClientSession, DtlsState

__all__ = [
    "NO_SEC",
    "CertificateCredentials",
    "CertificateUsage",
    "DtlsClientSession",
    "DtlsConnectionError",
    "DtlsCredentials",
    "DtlsError",
    "DtlsHandshakeError",
    "DtlsServerEndpoint",
    "DtlsState",
    "DtlsStateError",
    "FailureInfo",
    "HandshakeFailure",
    "HandshakeTiming",
    "NoSec",
    "PeerEvent",
    "PeerEventKind",
    "PeerInfo",
    "PskCredentials",
    "ServerCertificateCredentials",
    "TlsAlert",
]
