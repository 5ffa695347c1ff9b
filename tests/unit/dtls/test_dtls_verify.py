from __future__ import annotations

import datetime as dt

import pytest
from conftest import Pki

from aiolwm2m.dtls.certs import generate_server_certificate
from aiolwm2m.dtls.credentials import CertificateCredentials
from aiolwm2m.dtls.policy import HandshakeFailure
from aiolwm2m.dtls.verify import verify_server_certificate

NOW = dt.datetime.now(dt.UTC)
OK = None


def creds(
    pki: Pki,
    usage: int,
    pinned: bytes | None = None,
    cas: tuple[bytes, ...] = (),
    server_name: str | None = None,
) -> CertificateCredentials:
    return CertificateCredentials(
        pki.device.certificate_der, pki.device.private_key_der, pinned, cas, usage, server_name
    )


def kind(
    peer: bytes | None,
    c: CertificateCredentials,
    host: str | None = "127.0.0.1",
    now: dt.datetime = NOW,
) -> HandshakeFailure | None:
    info = verify_server_certificate(peer, c, host, now)
    return None if info is None else info.kind


def test_usage3_pins_exact_certificate(pki: Pki) -> None:
    c = creds(pki, 3, pki.server.certificate_der)
    assert kind(pki.server.certificate_der, c) is OK
    # no name check for a pinned certificate
    assert kind(pki.server.certificate_der, c, host="elsewhere.example") is OK
    assert kind(pki.server_untrusted.certificate_der, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED
    # same CA, different certificate: still not the pinned one
    assert kind(pki.server_other_name.certificate_der, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED


def test_usage3_expired(pki: Pki) -> None:
    c = creds(pki, 3, pki.server_expired.certificate_der)
    assert kind(pki.server_expired.certificate_der, c) is HandshakeFailure.SERVER_CERT_EXPIRED


@pytest.mark.parametrize("usage", [0, 2])
def test_ca_based_usages(pki: Pki, usage: int) -> None:
    c = (
        creds(pki, 0, cas=(pki.ca.certificate_der,))
        if usage == 0
        else creds(pki, 2, pki.ca.certificate_der)
    )
    assert kind(pki.server.certificate_der, c) is OK
    assert kind(pki.server.certificate_der, c, host="localhost") is OK
    assert kind(pki.server.certificate_der, c, host="::1") is OK
    assert kind(pki.server.certificate_der, c, host=None) is OK
    assert kind(pki.server_expired.certificate_der, c) is HandshakeFailure.SERVER_CERT_EXPIRED
    assert kind(pki.server_untrusted.certificate_der, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED
    assert (
        kind(pki.server_other_name.certificate_der, c) is HandshakeFailure.SERVER_CERT_NAME_MISMATCH
    )
    assert kind(pki.server.certificate_der, c, host="10.0.0.1") is (
        HandshakeFailure.SERVER_CERT_NAME_MISMATCH
    )
    assert kind(pki.server_other_name.certificate_der, c, host="LWM2M.example.com.") is OK


def test_usage0_with_ca_in_server_certificate_resource(pki: Pki) -> None:
    c = creds(pki, 0, pki.ca.certificate_der)
    assert kind(pki.server.certificate_der, c) is OK


def test_usage1_needs_both_pin_and_chain(pki: Pki) -> None:
    c = creds(pki, 1, pki.server.certificate_der, (pki.ca.certificate_der,))
    assert kind(pki.server.certificate_der, c) is OK
    c_wrong_ca = creds(pki, 1, pki.server.certificate_der, (pki.other_ca.certificate_der,))
    assert kind(pki.server.certificate_der, c_wrong_ca) is HandshakeFailure.SERVER_CERT_UNTRUSTED


def test_server_name_overrides_host(pki: Pki) -> None:
    c = creds(pki, 0, cas=(pki.ca.certificate_der,), server_name="lwm2m.example.com")
    assert kind(pki.server_other_name.certificate_der, c, host="127.0.0.1") is OK


def test_not_yet_valid(pki: Pki) -> None:
    c = creds(pki, 0, cas=(pki.ca.certificate_der,))
    early = NOW - dt.timedelta(days=2)
    info = verify_server_certificate(pki.server.certificate_der, c, "127.0.0.1", early)
    assert info is not None and info.kind is HandshakeFailure.SERVER_CERT_EXPIRED
    assert "not valid before" in info.detail


def test_expiry_checked_after_trust(pki: Pki) -> None:
    # an expired certificate from an unknown CA is untrusted first
    other_expired = generate_server_certificate(
        pki.other_ca, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), days=1
    )
    c = creds(pki, 0, cas=(pki.ca.certificate_der,))
    assert kind(other_expired.certificate_der, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED


def test_cn_fallback_and_wildcard(pki: Pki) -> None:
    nosan = generate_server_certificate(pki.ca, common_name="*.example.com", hosts=[])
    c = creds(pki, 0, cas=(pki.ca.certificate_der,))
    assert kind(nosan.certificate_der, c, host="srv.example.com") is OK
    assert kind(nosan.certificate_der, c, host="a.b.example.com") is (
        HandshakeFailure.SERVER_CERT_NAME_MISMATCH
    )
    assert kind(nosan.certificate_der, c, host="example.com") is (
        HandshakeFailure.SERVER_CERT_NAME_MISMATCH
    )


def test_missing_or_garbage_peer_certificate(pki: Pki) -> None:
    c = creds(pki, 3, pki.server.certificate_der)
    assert kind(None, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED
    assert kind(b"\x30\x03junk", c) is HandshakeFailure.SERVER_CERT_UNTRUSTED


def test_leaf_signed_by_other_key_with_same_issuer_name(pki: Pki) -> None:
    # A CA named like ours but with another key must not be trusted.
    from aiolwm2m.dtls.certs import generate_ca

    fake_ca = generate_ca("aiolwm2m test CA")
    fake = generate_server_certificate(fake_ca)
    c = creds(pki, 0, cas=(pki.ca.certificate_der,))
    assert kind(fake.certificate_der, c) is HandshakeFailure.SERVER_CERT_UNTRUSTED
