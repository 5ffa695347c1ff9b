"""Credential plumbing behind the CLI and the runtime: PSK specs, PEM files, the test CA."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from aiolwm2m.accounts import SecurityMode, ServerAccount
from aiolwm2m.cli import certs_cmd
from aiolwm2m.cli.server_cmd import security_from_args
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.dtls.certs import load_ca, write_device_certificate, write_test_pki
from aiolwm2m.dtls.credentials import (
    CertificateCredentials,
    PskCredentials,
    ServerCertificateCredentials,
)
from aiolwm2m.dtls.policy import HandshakeFailure
from aiolwm2m.dtls.server import ServerSecurity
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.dtls_link import account_credentials, link_failure


def test_psk_spec() -> None:
    psk = PskCredentials.from_spec("urn:imei:1234:00ff")
    assert psk.identity == b"urn:imei:1234" and psk.key == b"\x00\xff"
    for bad in ("nokey", ":00ff", "dev:zz", "dev:"):
        with pytest.raises(ConfigError):
            PskCredentials.from_spec(bad)


def test_server_security_needs_something() -> None:
    with pytest.raises(ConfigError):
        ServerSecurity()
    assert ServerSecurity(psk_store={b"a": b"k"}).endpoint() is not None


def test_device_certificates_from_the_test_ca(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certs init"):
        load_ca(tmp_path)
    pki = write_test_pki(tmp_path, [])
    cert, key = write_device_certificate(tmp_path, "dev/1")
    assert cert.name == "dev_1.pem" and key.stat().st_mode & 0o777 == 0o600
    old, _ = write_device_certificate(tmp_path, "old", expired=True)
    expired = x509.load_pem_x509_certificate(old.read_bytes())
    assert expired.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert expired.issuer == pki.ca.certificate.subject
    creds = CertificateCredentials.from_files(cert, key, server_certificate=pki.server_cert_path)
    assert creds.certificate_usage == 3
    server = ServerCertificateCredentials.from_files(
        pki.server_cert_path, pki.server_key_path, [pki.ca_pem_path]
    )
    assert server.client_ca_certificates_der == (pki.ca.certificate_der,)


def test_certs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init = argparse.Namespace(directory=str(tmp_path), days=30.0, host=None)
    assert certs_cmd.run_init(init) == 0
    device = argparse.Namespace(directory=str(tmp_path), name="dev1", days=30.0, expired=False)
    assert certs_cmd.run_device(device) == 0
    out = capsys.readouterr().out
    assert "aiolwm2m server --cert" in out and f'certificate = "{tmp_path}/dev1.pem"' in out
    assert (tmp_path / "dev1.key.pem").exists()


def _server_args(**changes: object) -> argparse.Namespace:
    base: dict[str, object] = {"psk": [], "cert": None, "key": None, "ca": []}
    return argparse.Namespace(**{**base, **changes})


def test_server_flags(tmp_path: Path) -> None:
    assert security_from_args(_server_args()) is None
    psk = security_from_args(_server_args(psk=["dev:0011", "other:22"]))
    assert psk is not None and psk.psk_store == {b"dev": b"\x00\x11", b"other": b"\x22"}
    pki = write_test_pki(tmp_path, [])
    files = {"cert": str(pki.server_cert_path), "key": str(pki.server_key_path)}
    with pytest.raises(ConfigError, match="--ca"):
        security_from_args(_server_args(**files))
    with pytest.raises(ConfigError, match="together"):
        security_from_args(_server_args(cert=files["cert"], ca=[str(pki.ca_pem_path)]))
    both = security_from_args(_server_args(psk=["dev:00"], ca=[str(pki.ca_pem_path)], **files))
    assert both is not None and both.certificate is not None and both.psk_store


def test_account_credentials(tmp_path: Path) -> None:
    psk = ServerAccount(uri="coaps://h", psk_identity=b"dev", psk_key=b"\x01")
    assert account_credentials(psk) == PskCredentials(b"dev", b"\x01")
    pki = write_test_pki(tmp_path, ["dev"])
    cert = ServerAccount(
        uri="coaps://h",
        certificate=str(pki.device_cert_path("dev")),
        private_key=str(pki.device_key_path("dev")),
        ca_certificates=(str(pki.ca_pem_path),),
        certificate_usage=0,
    )
    assert cert.effective_security_mode is SecurityMode.CERTIFICATE
    creds = account_credentials(cert)
    assert isinstance(creds, CertificateCredentials) and creds.certificate_usage == 0
    with pytest.raises(ConfigError):
        account_credentials(ServerAccount(uri="coaps://h"))
    missing = ServerAccount(uri="coaps://h", certificate="/nonexistent.pem", private_key="x")
    with pytest.raises(ConfigError, match="cannot read"):
        account_credentials(missing)


def test_handshake_failures_map_to_link_failures() -> None:
    assert link_failure(HandshakeFailure.TIMEOUT) is LinkFailure.HANDSHAKE_TIMEOUT
    assert link_failure(HandshakeFailure.NETWORK) is LinkFailure.NETWORK
    assert link_failure(HandshakeFailure.INTERNAL) is LinkFailure.INTERNAL
    for kind in HandshakeFailure:
        if kind.credentials_rejected or kind is HandshakeFailure.PEER_ALERT:
            assert link_failure(kind) is LinkFailure.SECURE
