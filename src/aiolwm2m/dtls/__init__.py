"""DTLS 1.2 for aiolwm2m: pure handshake policy plus an OpenSSL (pyOpenSSL) wrapper.

Everything OpenSSL-specific stays in :mod:`._backend`, behind
:class:`DtlsClientSession` and :class:`DtlsServerEndpoint` (memory BIOs, no
sockets), so the binding can be replaced; :mod:`aiolwm2m.dtls.aio` is the only
asyncio part. Importing this package is cheap: the names below load on first
use (PEP 562), so the sans-IO core and plain ``coap://`` use the pure pieces
(:mod:`.policy`, :mod:`.records`, :mod:`.credentials`) without the TLS stack;
:func:`require` loads it and turns its absence into one clear error.
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
        ServerSecurity,
    )
    from aiolwm2m.dtls.errors import (
        DtlsConnectionError,
        DtlsError,
        DtlsHandshakeError,
        DtlsStateError,
        DtlsUnavailableError,
    )
    from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure, HandshakeTiming, TlsAlert
    from aiolwm2m.dtls.server import DtlsServerEndpoint, PeerEvent, PeerEventKind, PeerInfo
    from aiolwm2m.dtls.session import DtlsClientSession, DtlsState, SavedSession

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
    "DtlsUnavailableError": "aiolwm2m.dtls.errors",
    "FailureInfo": "aiolwm2m.dtls.policy",
    "HandshakeFailure": "aiolwm2m.dtls.policy",
    "HandshakeTiming": "aiolwm2m.dtls.policy",
    "NO_SEC": "aiolwm2m.dtls.credentials",
    "NoSec": "aiolwm2m.dtls.credentials",
    "PeerEvent": "aiolwm2m.dtls.server",
    "PeerEventKind": "aiolwm2m.dtls.server",
    "PeerInfo": "aiolwm2m.dtls.server",
    "PskCredentials": "aiolwm2m.dtls.credentials",
    "SavedSession": "aiolwm2m.dtls.session",
    "ServerCertificateCredentials": "aiolwm2m.dtls.credentials",
    "ServerSecurity": "aiolwm2m.dtls.credentials",
    "TlsAlert": "aiolwm2m.dtls.policy",
}


#: What to tell a user whose Python lacks the TLS stack.
INSTALL_HINT = "DTLS (coaps://) needs pyOpenSSL: pip install 'pyOpenSSL>=26.4'"


def require() -> None:
    """Load the TLS stack now; :class:`DtlsUnavailableError` (one line) if it is missing.

    Called where a secure link or server is about to be opened, so ``import
    aiolwm2m``, the CLI's ``--help`` and plain ``coap://`` never need it.
    """
    from aiolwm2m.dtls.errors import DtlsUnavailableError

    try:
        importlib.import_module("aiolwm2m.dtls._backend")
    except ImportError as exc:
        raise DtlsUnavailableError(f"{INSTALL_HINT} ({exc})") from exc


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "INSTALL_HINT",
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
    "DtlsUnavailableError",
    "FailureInfo",
    "HandshakeFailure",
    "HandshakeTiming",
    "NoSec",
    "PeerEvent",
    "PeerEventKind",
    "PeerInfo",
    "PskCredentials",
    "SavedSession",
    "ServerCertificateCredentials",
    "ServerSecurity",
    "TlsAlert",
    "require",
]
