"""Test PKI: a CA, a server certificate and device certificates.

Certificate-mode tests, the testbed server and ``aiolwm2m certs`` need X.509
material that matches what LwM2M deployments use (EC P-256 keys, the device's
endpoint name as subject CN, a server certificate valid for ``127.0.0.1`` and
``localhost``), including deliberately broken material: the validity window is
a parameter so a test can mint a certificate that expired yesterday, and a
second CA gives an "untrusted" chain. Nothing here is meant for production
keys: private keys are written unencrypted.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aiolwm2m.dtls.credentials import load_certificate_der, load_private_key_der
from aiolwm2m.errors import ConfigError

__all__ = [
    "CertifiedKey",
    "TestPki",
    "generate_ca",
    "generate_device_certificate",
    "generate_server_certificate",
    "load_ca",
    "write_device_certificate",
    "write_test_pki",
]

#: Certificates are back-dated by this much so a peer whose clock runs a little
#: behind does not reject a certificate minted a second ago as "not yet valid".
_BACKDATE = _dt.timedelta(hours=1)


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key, both DER (key as PKCS#8).

    DER is what the LwM2M Security object stores (/0/x/3, /0/x/5) and what the
    DTLS layer consumes; PEM is only produced when writing files for humans.
    """

    certificate_der: bytes
    private_key_der: bytes = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate_der)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_der_private_key(self.private_key_der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # pragma: no cover - we mint EC
            raise ConfigError("test PKI keys are EC keys")
        return key

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def private_key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _window(
    not_before: _dt.datetime | None, not_after: _dt.datetime | None, days: float
) -> tuple[_dt.datetime, _dt.datetime]:
    start = not_before if not_before is not None else _dt.datetime.now(_dt.UTC) - _BACKDATE
    end = not_after if not_after is not None else start + _dt.timedelta(days=days)
    if end <= start:
        raise ConfigError(f"certificate validity window is empty: {start} .. {end}")
    return start, end


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pack(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertifiedKey:
    return CertifiedKey(
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
        private_key_der=key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _name(common_name: str) -> x509.Name:
    if not common_name:
        raise ConfigError("certificate common name must not be empty")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def generate_ca(
    common_name: str = "aiolwm2m test CA",
    *,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    days: float = 3650,
) -> CertifiedKey:
    """Mint a self-signed CA able to sign leaf certificates (no intermediates)."""
    key = _new_key()
    start, end = _window(not_before, not_after, days)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pack(cert, key)


def _leaf(
    ca: CertifiedKey | None,
    common_name: str,
    *,
    sans: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    not_before: _dt.datetime | None,
    not_after: _dt.datetime | None,
    days: float,
) -> CertifiedKey:
    key = _new_key()
    start, end = _window(not_before, not_after, days)
    subject = _name(common_name)
    if ca is None:
        issuer, signer = subject, key
    else:
        issuer, signer = ca.certificate.subject, ca.private_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    return _pack(builder.sign(signer, hashes.SHA256()), key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def generate_server_certificate(
    ca: CertifiedKey | None,
    *,
    common_name: str = "localhost",
    hosts: Iterable[str] = ("127.0.0.1", "localhost", "::1"),
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    days: float = 825,
) -> CertifiedKey:
    """Mint a server certificate; ``ca=None`` makes it self-signed.

    A self-signed server certificate is the usual companion of certificate usage
    3 (domain-issued certificate), where the device pins the exact certificate.
    """
    return _leaf(
        ca,
        common_name,
        sans=[_general_name(h) for h in hosts],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=not_before,
        not_after=not_after,
        days=days,
    )


def generate_device_certificate(
    ca: CertifiedKey | None,
    endpoint: str,
    *,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    days: float = 825,
) -> CertifiedKey:
    """Mint a device certificate whose subject CN is the LwM2M endpoint name.

    Servers commonly derive the endpoint name from the CN, so the testbed does.
    """
    return _leaf(
        ca,
        endpoint,
        sans=[],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=not_before,
        not_after=not_after,
        days=days,
    )


@dataclass(frozen=True)
class TestPki:
    """Where :func:`write_test_pki` put things, and the material itself."""

    __test__ = False  # not a pytest test class despite its name

    directory: Path
    ca: CertifiedKey
    server: CertifiedKey
    devices: dict[str, CertifiedKey]

    @property
    def ca_pem_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert_path(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.directory / "server.key.pem"

    def device_cert_path(self, endpoint: str) -> Path:
        return self.directory / f"{_safe_file_name(endpoint)}.pem"

    def device_key_path(self, endpoint: str) -> Path:
        return self.directory / f"{_safe_file_name(endpoint)}.key.pem"


def _safe_file_name(endpoint: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in endpoint)
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    # Keys are created 0600 from the start rather than chmod-ed afterwards, so
    # there is no window in which another user could read them.
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_test_pki(
    directory: str | os.PathLike[str],
    endpoints: Iterable[str],
    *,
    days: float = 825,
    server_hosts: Iterable[str] = ("127.0.0.1", "localhost", "::1"),
) -> TestPki:
    """Mint a CA, a server certificate and one certificate per endpoint; write PEM.

    Files: ``ca.pem``, ``ca.key.pem``, ``server.pem``, ``server.key.pem`` and
    ``<endpoint>.pem`` / ``<endpoint>.key.pem`` (unsafe characters replaced by
    ``_``). Existing files are overwritten.
    """
    endpoints = list(endpoints)
    if len(set(map(_safe_file_name, endpoints))) != len(endpoints):
        raise ConfigError("endpoint names collide once turned into file names")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca = generate_ca(days=max(days, 3650))
    server = generate_server_certificate(ca, hosts=server_hosts, days=days)
    devices = {ep: generate_device_certificate(ca, ep, days=days) for ep in endpoints}
    pki = TestPki(directory=out, ca=ca, server=server, devices=devices)
    _write(pki.ca_pem_path, ca.certificate_pem)
    _write(out / "ca.key.pem", ca.private_key_pem, secret=True)
    _write(pki.server_cert_path, server.certificate_pem)
    _write(pki.server_key_path, server.private_key_pem, secret=True)
    for ep, dev in devices.items():
        _write(pki.device_cert_path(ep), dev.certificate_pem)
        _write(pki.device_key_path(ep), dev.private_key_pem, secret=True)
    return pki


def load_ca(directory: str | os.PathLike[str]) -> CertifiedKey:
    """The CA that :func:`write_test_pki` wrote into ``directory`` (to mint more devices)."""
    out = Path(directory)
    if not (out / "ca.pem").exists() or not (out / "ca.key.pem").exists():
        raise ConfigError(f"no test CA in {os.fspath(out)!r} (run `aiolwm2m certs init` first)")
    return CertifiedKey(
        certificate_der=load_certificate_der(out / "ca.pem"),
        private_key_der=load_private_key_der(out / "ca.key.pem"),
    )


def write_device_certificate(
    directory: str | os.PathLike[str],
    endpoint: str,
    *,
    days: float = 825,
    expired: bool = False,
) -> tuple[Path, Path]:
    """Mint one more device certificate from the CA in ``directory``; return (cert, key) paths.

    ``expired=True`` makes one whose validity ended a month ago, for testing
    how a client and server deal with stale credentials.
    """
    ca = load_ca(directory)
    if expired:
        start = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=60)
        device = generate_device_certificate(ca, endpoint, not_before=start, days=30)
    else:
        device = generate_device_certificate(ca, endpoint, days=days)
    out = Path(directory)
    cert_path = out / f"{_safe_file_name(endpoint)}.pem"
    key_path = out / f"{_safe_file_name(endpoint)}.key.pem"
    _write(cert_path, device.certificate_pem)
    _write(key_path, device.private_key_pem, secret=True)
    return cert_path, key_path
