"""Server certificate verification with ``cryptography``.

mbedtls reports an expired, an untrusted and a wrongly named server certificate
all as ``0x2700``, but recovery treats them differently (an expired certificate
may call for fresh credentials via bootstrap, a name mismatch is a
configuration error). So the client runs mbedtls without certificate
validation and checks the peer's certificate here, in order: trust (an
untrusted certificate's dates and names mean nothing), validity window, name.

Limitation: mbedtls exposes only the peer's leaf certificate, not the chain it
sent, so any intermediate CA must be among the configured CA certificates.
Pure apart from reading nothing: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from aiolwm2m.dtls.credentials import CertificateCredentials, CertificateUsage
from aiolwm2m.dtls.policy import FailureInfo, HandshakeFailure

__all__ = ["verify_server_certificate"]


def _load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError, TypeError (unsupported key)
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        # v1 certificates (no extensions) were CAs by convention.
        return cert.version == x509.Version.v1


def _chain_to(
    leaf: x509.Certificate, anchors: list[x509.Certificate]
) -> list[x509.Certificate] | None:
    """[leaf, anchor] if a configured CA signed the leaf ([leaf] if it is one), else None.

    Every configured CA certificate is a trust anchor (RFC 5280 §6.1 trusts an
    anchor as such, self-signed or not), so one step is all there is to check.
    """
    if any(leaf == a for a in anchors):
        return [leaf]
    issuer = next((a for a in anchors if _is_ca(a) and _issued_by(leaf, a)), None)
    return None if issuer is None else [leaf, issuer]


def _validity(path: list[x509.Certificate], now: _dt.datetime) -> FailureInfo | None:
    for cert in path:
        role = "server certificate" if cert is path[0] else "CA certificate"
        if now < cert.not_valid_before_utc:
            return FailureInfo(
                HandshakeFailure.SERVER_CERT_EXPIRED,
                None,
                f"{role} not valid before {cert.not_valid_before_utc.isoformat()}",
            )
        if now > cert.not_valid_after_utc:
            return FailureInfo(
                HandshakeFailure.SERVER_CERT_EXPIRED,
                None,
                f"{role} expired at {cert.not_valid_after_utc.isoformat()}",
            )
    return None


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def _name_matches(cert: x509.Certificate, host: str) -> bool:
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        if ip is not None:
            return ip in san.get_values_for_type(x509.IPAddress)
        return any(_dns_match(n, host) for n in san.get_values_for_type(x509.DNSName))
    # No SAN: fall back to the subject CN, as many LwM2M deployments still rely on.
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
        if ip is not None:
            if value == str(ip):
                return True
        elif _dns_match(value, host):
            return True
    return False


def verify_server_certificate(
    peer_der: bytes | None,
    credentials: CertificateCredentials,
    hostname: str | None,
    now: _dt.datetime,
) -> FailureInfo | None:
    """None if the server's certificate is acceptable, else why not.

    ``hostname`` is the name to match (``credentials.server_name`` wins over
    it); None skips the name check. Certificate usage 3 skips it too, because
    the exact certificate is pinned.
    """
    if peer_der is None:
        return FailureInfo(HandshakeFailure.SERVER_CERT_UNTRUSTED, None, "no server certificate")
    leaf = _load(peer_der)
    if leaf is None:
        return FailureInfo(
            HandshakeFailure.SERVER_CERT_UNTRUSTED, None, "unparseable server certificate"
        )
    usage = credentials.certificate_usage
    pinned = credentials.server_certificate_der
    cas = [c for c in (_load(d) for d in credentials.ca_certificates_der) if c is not None]

    pin_required = usage in (
        CertificateUsage.DOMAIN_ISSUED_CERTIFICATE,
        CertificateUsage.SERVICE_CERTIFICATE_CONSTRAINT,
    )
    if pin_required and pinned is not None and peer_der != pinned:
        return FailureInfo(
            HandshakeFailure.SERVER_CERT_UNTRUSTED,
            None,
            "server certificate differs from the configured one",
        )
    path: list[x509.Certificate] | None = [leaf]
    if usage != CertificateUsage.DOMAIN_ISSUED_CERTIFICATE:
        anchors = list(cas)
        if usage in (CertificateUsage.TRUST_ANCHOR_ASSERTION, CertificateUsage.CA_CONSTRAINT):
            extra = _load(pinned) if pinned is not None else None
            if extra is not None:
                anchors.append(extra)
        path = _chain_to(leaf, anchors)
    if path is None:
        return FailureInfo(
            HandshakeFailure.SERVER_CERT_UNTRUSTED,
            None,
            f"server certificate ({leaf.subject.rfc4514_string()}, issued by "
            f"{leaf.issuer.rfc4514_string()}) does not chain to a configured CA",
        )
    expired = _validity(path, now)
    if expired is not None:
        return expired
    name = credentials.server_name or hostname
    if (
        usage != CertificateUsage.DOMAIN_ISSUED_CERTIFICATE
        and name is not None
        and not _name_matches(leaf, name)
    ):
        return FailureInfo(
            HandshakeFailure.SERVER_CERT_NAME_MISMATCH,
            None,
            f"server certificate is not valid for {name!r}",
        )
    return None
