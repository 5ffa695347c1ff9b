"""Credentials for the LwM2M Security object's modes (/0/x/2).

Validated when built, so a bad key is a :class:`~aiolwm2m.errors.ConfigError`
at configuration time with a clear message, not an opaque mbedtls failure on
the wire minutes later. Only the modes the DTLS binding can do exist here:
PSK (mode 0), Certificate (mode 2) and NoSec (mode 3); Raw Public Key (mode 1)
and EST are not supported (pyOpenSSL exposes no RFC 7250 raw keys).

Pure data (``cryptography`` only): importing this module never loads the TLS
stack, so configurations and the testbed's plain CoAP mode work without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.errors import ConfigError

if TYPE_CHECKING:
    from aiolwm2m.dtls.server import DtlsServerEndpoint

__all__ = [
    "NO_SEC",
    "CertificateCredentials",
    "CertificateUsage",
    "DtlsCredentials",
    "NoSec",
    "PskCredentials",
    "PskStore",
    "ServerCertificateCredentials",
    "ServerSecurity",
    "load_certificate_der",
    "load_certificates_der",
    "load_private_key_der",
]

#: Longest key accepted: 64 bytes (512 bits) is more than any LwM2M deployment
#: uses, and short enough for every DTLS stack (Mbed TLS 2.28 stopped at 32).
PSK_MAX_KEY_LEN: Final = 64
#: RFC 4279 asks for at least 128; OpenSSL's limit, LwM2M names are <= 64 chars.
PSK_MAX_IDENTITY_LEN: Final = 128


@dataclass(frozen=True)
class NoSec:
    """Security mode 3: plain CoAP over UDP, no DTLS."""


NO_SEC: Final = NoSec()


@dataclass(frozen=True)
class PskCredentials:
    """Security mode 0: pre-shared key (/0/x/3 identity, /0/x/5 key).

    The identity must not contain NUL bytes because OpenSSL passes identities
    as C strings; LwM2M identities are in practice the endpoint name.
    """

    identity: bytes
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.identity, bytes) or not isinstance(self.key, bytes):
            raise ConfigError("PSK identity and key must be bytes")
        if not self.identity:
            raise ConfigError("PSK identity must not be empty")
        if len(self.identity) > PSK_MAX_IDENTITY_LEN:
            raise ConfigError(f"PSK identity longer than {PSK_MAX_IDENTITY_LEN} bytes")
        if b"\0" in self.identity:
            raise ConfigError("PSK identity must not contain NUL bytes")
        if not self.key:
            raise ConfigError("PSK key must not be empty")
        if len(self.key) > PSK_MAX_KEY_LEN:
            raise ConfigError(f"PSK key longer than {PSK_MAX_KEY_LEN} bytes")

    @property
    def identity_str(self) -> str:
        return self.identity.decode("utf-8")

    @classmethod
    def from_hex(cls, identity: str | bytes, key_hex: str) -> PskCredentials:
        """Build from a text identity and a hex key, the form CLIs and configs use."""
        ident = identity.encode("utf-8") if isinstance(identity, str) else identity
        try:
            key = bytes.fromhex(key_hex)
        except ValueError as exc:
            raise ConfigError(f"PSK key is not valid hex: {exc}") from exc
        return cls(ident, key)

    @classmethod
    def from_spec(cls, spec: str) -> PskCredentials:
        """Parse ``IDENTITY:HEXKEY`` (the form of ``aiolwm2m server --psk``)."""
        identity, sep, key_hex = spec.rpartition(":")
        if not sep or not identity:
            raise ConfigError(f"PSK must be IDENTITY:HEXKEY, got {spec!r}")
        return cls.from_hex(identity, key_hex)


class CertificateUsage:
    """LwM2M 1.1 Certificate Usage (/0/x/15), RFC 6698 semantics."""

    CA_CONSTRAINT: Final = 0
    SERVICE_CERTIFICATE_CONSTRAINT: Final = 1
    TRUST_ANCHOR_ASSERTION: Final = 2
    DOMAIN_ISSUED_CERTIFICATE: Final = 3


def _parse_cert(der: bytes, what: str) -> x509.Certificate:
    if not isinstance(der, bytes) or not der:
        raise ConfigError(f"{what} must be non-empty DER bytes")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a DER X.509 certificate: {exc}") from exc


def _parse_ec_key(der: bytes, cert: x509.Certificate) -> None:
    if not isinstance(der, bytes) or not der:
        raise ConfigError("private key must be non-empty DER bytes")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"private key is not an unencrypted DER key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            "private key must be an EC key: the offered suites are ECDHE-ECDSA "
            "(LwM2M mandatory TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)"
        )
    if key.public_key() != cert.public_key():
        raise ConfigError("private key does not match the certificate")


@dataclass(frozen=True)
class CertificateCredentials:
    """Security mode 2: X.509 certificates.

    ``certificate_der`` / ``private_key_der`` are the device's own (/0/x/3,
    /0/x/5; key as PKCS#8 or SEC1 DER). ``server_certificate_der`` is /0/x/4
    and its meaning depends on ``certificate_usage`` (/0/x/15):

    - 3 domain-issued certificate (default): the server must present exactly
      this certificate; no CA involved, no name check.
    - 2 trust anchor assertion: it is a trust anchor the server's chain must
      lead to (as are ``ca_certificates_der``); name checked.
    - 1 service certificate constraint: the server must present exactly this
      certificate *and* it must chain to one of ``ca_certificates_der``.
    - 0 CA constraint: the chain must lead to one of ``ca_certificates_der``
      (or to ``server_certificate_der`` when that holds the CA).

    ``server_name`` overrides the host name the certificate is checked against
    (default: the host of the server URI).
    """

    certificate_der: bytes
    private_key_der: bytes = field(repr=False)
    server_certificate_der: bytes | None = None
    ca_certificates_der: tuple[bytes, ...] = ()
    certificate_usage: int = CertificateUsage.DOMAIN_ISSUED_CERTIFICATE
    server_name: str | None = None

    def __post_init__(self) -> None:
        cert = _parse_cert(self.certificate_der, "certificate")
        _parse_ec_key(self.private_key_der, cert)
        cas = tuple(self.ca_certificates_der)
        object.__setattr__(self, "ca_certificates_der", cas)
        for i, ca in enumerate(cas):
            _parse_cert(ca, f"CA certificate #{i}")
        if self.server_certificate_der is not None:
            _parse_cert(self.server_certificate_der, "server certificate")
        usage = self.certificate_usage
        if isinstance(usage, bool) or not isinstance(usage, int) or not 0 <= usage <= 3:
            raise ConfigError(f"certificate_usage must be 0..3, got {usage!r}")
        if usage in (3, 2, 1) and self.server_certificate_der is None:
            raise ConfigError(f"certificate_usage {usage} needs server_certificate_der")
        if usage == 1 and not cas:
            raise ConfigError("certificate_usage 1 needs ca_certificates_der to chain to")
        if usage == 0 and not cas and self.server_certificate_der is None:
            raise ConfigError("certificate_usage 0 needs a CA certificate")
        if self.server_name is not None and not self.server_name:
            raise ConfigError("server_name must not be empty (use None)")

    @classmethod
    def from_files(
        cls,
        certificate: str | os.PathLike[str],
        private_key: str | os.PathLike[str],
        *,
        server_certificate: str | os.PathLike[str] | None = None,
        ca_certificates: Iterable[str | os.PathLike[str]] = (),
        certificate_usage: int = CertificateUsage.DOMAIN_ISSUED_CERTIFICATE,
        server_name: str | None = None,
        password: bytes | None = None,
    ) -> CertificateCredentials:
        """Load from PEM or DER files (a CA file may hold several PEM certificates)."""
        cas: list[bytes] = []
        for path in ca_certificates:
            cas.extend(load_certificates_der(path))
        return cls(
            certificate_der=load_certificate_der(certificate),
            private_key_der=load_private_key_der(private_key, password=password),
            server_certificate_der=(
                load_certificate_der(server_certificate) if server_certificate else None
            ),
            ca_certificates_der=tuple(cas),
            certificate_usage=certificate_usage,
            server_name=server_name,
        )


@dataclass(frozen=True)
class ServerCertificateCredentials:
    """A DTLS server's certificate, and the CAs its clients' certificates chain to.

    With ``client_ca_certificates_der`` empty the server does not ask clients
    for a certificate (only useful for tests of the client's verification).
    """

    certificate_der: bytes
    private_key_der: bytes = field(repr=False)
    client_ca_certificates_der: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        cert = _parse_cert(self.certificate_der, "server certificate")
        _parse_ec_key(self.private_key_der, cert)
        cas = tuple(self.client_ca_certificates_der)
        object.__setattr__(self, "client_ca_certificates_der", cas)
        for i, ca in enumerate(cas):
            _parse_cert(ca, f"client CA certificate #{i}")

    @classmethod
    def from_files(
        cls,
        certificate: str | os.PathLike[str],
        private_key: str | os.PathLike[str],
        client_ca_certificates: Iterable[str | os.PathLike[str]] = (),
    ) -> ServerCertificateCredentials:
        """Load from PEM or DER files (a CA file may hold several PEM certificates)."""
        cas: list[bytes] = []
        for path in client_ca_certificates:
            cas.extend(load_certificates_der(path))
        return cls(load_certificate_der(certificate), load_private_key_der(private_key), tuple(cas))


DtlsCredentials = PskCredentials | CertificateCredentials


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)!r}: {exc}") from exc


def load_certificates_der(path: str | os.PathLike[str]) -> tuple[bytes, ...]:
    """All certificates in a PEM bundle or a single DER file, as DER."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"{os.fspath(path)!r} holds no valid certificate: {exc}") from exc
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def load_certificate_der(path: str | os.PathLike[str]) -> bytes:
    """The (first) certificate in a PEM or DER file, as DER."""
    return load_certificates_der(path)[0]


def load_private_key_der(path: str | os.PathLike[str], *, password: bytes | None = None) -> bytes:
    """A private key from a PEM or DER file, as unencrypted PKCS#8 DER."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{os.fspath(path)!r} holds no usable private key: {exc}") from exc
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


PskStore = Mapping[bytes, bytes] | Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class ServerSecurity:
    """What a DTLS server accepts: a PSK store and/or a certificate with client CAs.

    A recipe rather than an endpoint, so a server that restarts (the testbed
    simulating a reboot) builds a fresh endpoint and loses every session, as a
    real one would, and clients must run a full handshake; with
    ``keep_sessions`` the new endpoint shares the old one's session cache and
    ticket key (a server that persists them), so clients can resume. A
    mutable mapping as ``psk_store`` is looked up live, so credentials
    provisioned later (e.g. by bootstrap) are accepted at once.
    """

    psk_store: PskStore | None = None
    certificate: ServerCertificateCredentials | None = None
    timing: HandshakeTiming | None = None
    keep_sessions: bool = False
    _context: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.psk_store is None and self.certificate is None:
            raise ConfigError("a DTLS server needs a PSK store or a certificate")

    def endpoint(self) -> DtlsServerEndpoint:
        """A new endpoint; loads the TLS stack (``ImportError`` if it is missing)."""
        from aiolwm2m.dtls.server import DtlsServerEndpoint

        endpoint = DtlsServerEndpoint(
            self.psk_store,
            self.certificate,
            self.timing,
            context=self._context.get("tls") if self.keep_sessions else None,
        )
        self._context["tls"] = endpoint.context
        return endpoint
