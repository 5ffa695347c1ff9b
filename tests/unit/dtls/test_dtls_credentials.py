from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from aiolwm2m.dtls.certs import write_test_pki
from aiolwm2m.dtls.credentials import (
    CertificateCredentials,
    PskCredentials,
    ServerCertificateCredentials,
    load_certificate_der,
    load_certificates_der,
    load_private_key_der,
)
from aiolwm2m.errors import ConfigError


def test_psk_valid_and_hidden_key() -> None:
    c = PskCredentials(b"ep1", bytes(16))
    assert c.identity_str == "ep1"
    assert "key" not in repr(c).replace("PskCredentials", "")
    assert PskCredentials.from_hex("ep1", "00" * 16) == c


@pytest.mark.parametrize(
    ("identity", "key"),
    [
        (b"", b"k"),
        (b"id", b""),
        (b"id", bytes(65)),
        (b"i\x00d", b"k"),  # OpenSSL passes identities as C strings
        (b"x" * 129, b"k"),
        ("id", b"k"),
    ],
)
def test_psk_invalid(identity: object, key: object) -> None:
    with pytest.raises(ConfigError):
        PskCredentials(identity, key)  # type: ignore[arg-type]


def test_psk_bad_hex() -> None:
    with pytest.raises(ConfigError):
        PskCredentials.from_hex("id", "zz")


def test_certificate_credentials(pki: Pki) -> None:
    c = CertificateCredentials(
        pki.device.certificate_der, pki.device.private_key_der, pki.server.certificate_der
    )
    assert c.certificate_usage == 3
    c0 = CertificateCredentials(
        pki.device.certificate_der,
        pki.device.private_key_der,
        ca_certificates_der=[pki.ca.certificate_der],  # type: ignore[arg-type]
        certificate_usage=0,
    )
    assert c0.ca_certificates_der == (pki.ca.certificate_der,)


def test_certificate_credentials_invalid(pki: Pki) -> None:
    dev = pki.device
    with pytest.raises(ConfigError, match="does not match"):
        CertificateCredentials(
            dev.certificate_der, pki.server.private_key_der, pki.server.certificate_der
        )
    with pytest.raises(ConfigError, match="needs server_certificate_der"):
        CertificateCredentials(dev.certificate_der, dev.private_key_der)
    with pytest.raises(ConfigError, match=r"0\.\.3"):
        CertificateCredentials(
            dev.certificate_der,
            dev.private_key_der,
            pki.server.certificate_der,
            certificate_usage=4,
        )
    with pytest.raises(ConfigError, match="usage 1 needs"):
        CertificateCredentials(
            dev.certificate_der,
            dev.private_key_der,
            pki.server.certificate_der,
            certificate_usage=1,
        )
    with pytest.raises(ConfigError, match="usage 0 needs"):
        CertificateCredentials(dev.certificate_der, dev.private_key_der, certificate_usage=0)
    with pytest.raises(ConfigError, match="not a DER"):
        CertificateCredentials(b"junk", dev.private_key_der, pki.server.certificate_der)
    with pytest.raises(ConfigError, match="CA certificate #0"):
        CertificateCredentials(
            dev.certificate_der,
            dev.private_key_der,
            pki.server.certificate_der,
            ca_certificates_der=(b"x",),
        )
    with pytest.raises(ConfigError):
        ServerCertificateCredentials(pki.server.certificate_der, dev.private_key_der)


def test_rsa_key_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="EC key"):
        CertificateCredentials(
            cert.public_bytes(serialization.Encoding.DER),
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            cert.public_bytes(serialization.Encoding.DER),
        )


def test_write_test_pki_and_load(tmp_path: Path) -> None:
    pki = write_test_pki(tmp_path / "pki", ["ep-1", "weird/name"], days=10)
    for path in (
        pki.ca_pem_path,
        pki.server_cert_path,
        pki.server_key_path,
        pki.device_cert_path("ep-1"),
        pki.device_key_path("weird/name"),
    ):
        assert path.is_file(), path
    assert pki.device_cert_path("weird/name").name == "weird_name.pem"
    assert stat.S_IMODE(os.stat(pki.server_key_path).st_mode) == 0o600
    dev = x509.load_der_x509_certificate(pki.devices["ep-1"].certificate_der)
    assert dev.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ep-1"
    assert dev.issuer == pki.ca.certificate.subject
    srv = pki.server.certificate
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert isinstance(srv.public_key(), ec.EllipticCurvePublicKey)
    assert srv.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]

    # PEM files load back to the same DER
    assert load_certificate_der(pki.server_cert_path) == pki.server.certificate_der
    creds = CertificateCredentials.from_files(
        pki.device_cert_path("ep-1"),
        pki.device_key_path("ep-1"),
        ca_certificates=[pki.ca_pem_path],
        certificate_usage=0,
    )
    assert creds.certificate_der == pki.devices["ep-1"].certificate_der
    # DER files too
    der_path = tmp_path / "server.der"
    der_path.write_bytes(pki.server.certificate_der)
    assert load_certificates_der(der_path) == (pki.server.certificate_der,)
    key_der = tmp_path / "k.der"
    key_der.write_bytes(pki.server.private_key_der)
    assert load_private_key_der(key_der) == pki.server.private_key_der


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_certificate_der(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError):
        load_certificate_der(junk)
    with pytest.raises(ConfigError):
        load_private_key_der(junk)


def test_pki_name_collision(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_test_pki(tmp_path, ["a/b", "a_b"])
