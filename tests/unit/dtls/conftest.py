"""Shared test PKI for the DTLS unit tests (EC keys are cheap; one set per session)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from aiolwm2m.dtls.certs import (
    CertifiedKey,
    generate_ca,
    generate_device_certificate,
    generate_server_certificate,
)


@dataclass(frozen=True)
class Pki:
    ca: CertifiedKey
    other_ca: CertifiedKey
    server: CertifiedKey  # by ca, valid for 127.0.0.1/localhost/::1
    server_expired: CertifiedKey  # by ca, expired last year
    server_untrusted: CertifiedKey  # by other_ca
    server_other_name: CertifiedKey  # by ca, only valid for lwm2m.example.com
    device: CertifiedKey  # by ca, CN=ep1
    device_untrusted: CertifiedKey  # by other_ca
    device_expired: CertifiedKey  # by ca, expired


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = generate_ca()
    other = generate_ca("some other CA")
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    return Pki(
        ca=ca,
        other_ca=other,
        server=generate_server_certificate(ca),
        server_expired=generate_server_certificate(ca, not_before=past, days=30),
        server_untrusted=generate_server_certificate(other),
        server_other_name=generate_server_certificate(
            ca, common_name="lwm2m.example.com", hosts=["lwm2m.example.com"]
        ),
        device=generate_device_certificate(ca, "ep1"),
        device_untrusted=generate_device_certificate(other, "ep2"),
        device_expired=generate_device_certificate(ca, "ep3", not_before=past, days=30),
    )
