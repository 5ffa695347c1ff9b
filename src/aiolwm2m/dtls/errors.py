"""Exceptions of the DTLS layer.

A handshake failure carries its classified kind so callers branch on data
(``err.failure``) rather than on message text or on OpenSSL's exception types,
which must not leak past this package.
"""

from __future__ import annotations

from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure
from aiolwm2m.errors import ConfigError, Lwm2mError

__all__ = [
    "DtlsConnectionError",
    "DtlsError",
    "DtlsHandshakeError",
    "DtlsStateError",
    "DtlsUnavailableError",
]


class DtlsError(Lwm2mError):
    """Base class of DTLS layer errors."""


class DtlsStateError(DtlsError):
    """An operation was attempted in a state that cannot take it.

    E.g. sending application data before the handshake finished, or after the
    session failed or was closed; also an oversized record.
    """


class DtlsHandshakeError(DtlsError):
    """The handshake failed; ``failure`` says why in a way recovery can act on."""

    def __init__(self, failure: HandshakeFailure, detail: str = "", alert: int | None = None):
        self.failure = failure
        self.detail = detail
        self.alert = alert
        super().__init__(str(self.info))

    @property
    def info(self) -> FailureInfo:
        return FailureInfo(self.failure, self.alert, self.detail)

    @classmethod
    def from_info(cls, info: FailureInfo) -> DtlsHandshakeError:
        return cls(info.kind, info.detail, info.alert)


class DtlsConnectionError(DtlsError):
    """An established connection broke (network error, peer alert, close_notify)."""

    def __init__(self, info: FailureInfo):
        self.info = info
        self.failure = info.kind
        super().__init__(str(info))


class DtlsUnavailableError(DtlsError, ConfigError):
    """This Python has no usable TLS stack (pyOpenSSL); the message says how to get it.

    A configuration problem of the installation, hence also a ConfigError:
    the CLI prints it as one line and exits 2.
    """
