"""DTLS 1.2 for aiolwm2m: pure handshake policy plus a python-mbedtls wrapper.

Everything mbedtls-specific stays behind :class:`DtlsClientSession` and
:class:`DtlsServerEndpoint` (memory-buffer, sans-socket) so the binding can be
replaced; :mod:`aiolwm2m.dtls.aio` is the only asyncio part. Importing this
package is cheap: the names below load on first use (PEP 562), so the sans-IO
core can import the pure pieces (:mod:`.policy`, :mod:`.records`,
:mod:`.mbedtls_codes`) without pulling in python-mbedtls and ``cryptography``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    "CertificateCredentials": "aiolwm2m.dtls.credentials",
    "CertificateUsage": "aiolwm2m.dtls.credentials",
    "DtlsClientSession": "aiolwm2m.dtls.session",
    "DtlsConnectionError": "aiolwm2m.dtls.errors",
    "DtlsCredentials": "aiolwm2m.dtls.credentials",
    "DtlsError": "aiolwm2m.dtls.errors",
    "DtlsHandshakeError": "aiolwm2m.dtls.errors",
    "DtlsServerEndpoint": "aiolwm2m.dtls.server",
    "DtlsState": "aiolwm2m.dtls.session",
    "DtlsStateError": "aiolwm2m.dtls.errors",
    "FailureInfo": "aiolwm2m.dtls.policy",
    "HandshakeFailure": "aiolwm2m.dtls.policy",
    "HandshakeTiming": "aiolwm2m.dtls.policy",
    "NO_SEC": "aiolwm2m.dtls.credentials",
    "NoSec": "aiolwm2m.dtls.credentials",
    "PeerEvent": "aiolwm2m.dtls.server",
    "PeerEventKind": "aiolwm2m.dtls.server",
    "PeerInfo": "aiolwm2m.dtls.server",
    "PskCredentials": "aiolwm2m.dtls.credentials",
    "ServerCertificateCredentials": "aiolwm2m.dtls.credentials",
    "TlsAlert": "aiolwm2m.dtls.policy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
