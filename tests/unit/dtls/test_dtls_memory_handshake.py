"""Client session ↔ server endpoint through memory: no sockets, real OpenSSL."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from conftest import Pki
from dtls_memory_pump import CLIENT_ADDR, pump

from aiolwm2m.dtls import (
    CertificateCredentials,
    DtlsClientSession,
    DtlsServerEndpoint,
    DtlsState,
    DtlsStateError,
    HandshakeFailure,
    HandshakeTiming,
    PeerEventKind,
    PskCredentials,
    ServerCertificateCredentials,
    ServerSecurity,
    TlsAlert,
)
from aiolwm2m.dtls.records import iter_records

KEY = bytes(range(16))
PSK = PskCredentials(b"ep1", KEY)
FAST = HandshakeTiming(0.05, 0.1)

TLS_PSK_WITH_AES_128_CCM_8 = 0xC0A8
TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xC0AE


def offered_suites(client_hello_datagram: bytes) -> list[int]:
    body = next(iter_records(client_hello_datagram)).fragment[12:]
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 1 + body[pos]  # cookie
    n = int.from_bytes(body[pos : pos + 2], "big")
    return [int.from_bytes(body[pos + 2 + i : pos + 4 + i], "big") for i in range(0, n, 2)]


def psk_server(**kw: object) -> DtlsServerEndpoint:
    return DtlsServerEndpoint({b"ep1": KEY}, **kw)  # type: ignore[arg-type]


def cert_server(pki: Pki, server: object = None) -> DtlsServerEndpoint:
    s = server or pki.server
    return DtlsServerEndpoint(
        certificate=ServerCertificateCredentials(
            s.certificate_der,  # type: ignore[attr-defined]
            s.private_key_der,  # type: ignore[attr-defined]
            (pki.ca.certificate_der,),
        )
    )


def connect(client: DtlsClientSession, server: DtlsServerEndpoint) -> None:
    client.start()
    pump(client, server)


# -- PSK ----------------------------------------------------------------------


def test_psk_handshake_and_echo() -> None:
    server = psk_server()
    client = DtlsClientSession(PSK)
    assert not client.handshake_done and client.failure is None
    client.start()
    first = client.datagrams_to_send()
    assert TLS_PSK_WITH_AES_128_CCM_8 in offered_suites(first[0])
    for d in first:
        server.handle_datagram(CLIENT_ADDR, d)
    pump(client, server)
    assert client.state is DtlsState.ESTABLISHED and client.handshake_done
    assert client.failure is None
    assert client.cipher_suite == "TLS_PSK_WITH_AES_128_CCM_8"
    events = server.events()
    assert [(e.kind, e.psk_identity) for e in events] == [(PeerEventKind.ESTABLISHED, b"ep1")]
    info = server.peer_info(CLIENT_ADDR)
    assert info is not None and info.established and info.psk_identity == b"ep1"

    client.send(b"\x40\x01\x00\x01")
    client.send(b"second")
    _, got = pump(client, server)
    assert got == [(CLIENT_ADDR, b"\x40\x01\x00\x01"), (CLIENT_ADDR, b"second")]
    server.send(CLIENT_ADDR, b"reply")
    got_c, _ = pump(client, server)
    assert got_c == [b"reply"]


def test_wrong_psk_is_bad_psk_on_both_ends() -> None:
    server = psk_server()
    client = DtlsClientSession(PskCredentials(b"ep1", bytes(16)))
    connect(client, server)
    assert client.state is DtlsState.FAILED
    assert client.failure is HandshakeFailure.BAD_PSK
    assert client.failure_info is not None and client.failure_info.alert == TlsAlert.BAD_RECORD_MAC
    assert client.failure.credentials_rejected
    [event] = server.events()
    assert event.kind is PeerEventKind.FAILED and event.info is not None
    assert event.info.kind is HandshakeFailure.BAD_PSK and event.psk_identity == b"ep1"
    assert server.peers() == []


def test_unknown_identity() -> None:
    server = psk_server()
    client = DtlsClientSession(PskCredentials(b"stranger", KEY))
    connect(client, server)
    assert client.failure is HandshakeFailure.UNKNOWN_PSK_IDENTITY
    assert client.failure_info is not None and client.failure_info.alert == 115
    [event] = server.events()
    assert event.info is not None and event.info.kind is HandshakeFailure.UNKNOWN_PSK_IDENTITY


def test_callable_psk_store_sees_identity() -> None:
    asked: list[bytes] = []

    def lookup(identity: bytes) -> bytes | None:
        asked.append(identity)
        return KEY if identity == b"ep1" else None

    server = DtlsServerEndpoint(lookup)
    client = DtlsClientSession(PSK)
    connect(client, server)
    assert client.handshake_done and asked == [b"ep1"]


def test_psk_store_exception_is_unknown_identity() -> None:
    def broken(identity: bytes) -> bytes | None:
        raise RuntimeError("database down")

    server = DtlsServerEndpoint(broken)
    client = DtlsClientSession(PSK)
    connect(client, server)
    assert client.failure is HandshakeFailure.UNKNOWN_PSK_IDENTITY


# -- certificates ---------------------------------------------------------------


def cert_client(
    pki: Pki,
    usage: int = 0,
    device: object = None,
    pinned: bytes | None = None,
    host: str = "127.0.0.1",
) -> DtlsClientSession:
    dev = device or pki.device
    return DtlsClientSession(
        CertificateCredentials(
            dev.certificate_der,  # type: ignore[attr-defined]
            dev.private_key_der,  # type: ignore[attr-defined]
            pinned,
            (pki.ca.certificate_der,),
            usage,
        ),
        server_hostname=host,
    )


def test_certificate_handshake_ccm8(pki: Pki) -> None:
    server = cert_server(pki)
    client = cert_client(pki)
    client.start()
    first = client.datagrams_to_send()
    assert TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 in offered_suites(first[0])
    assert TLS_PSK_WITH_AES_128_CCM_8 not in offered_suites(first[0])
    for d in first:
        server.handle_datagram(CLIENT_ADDR, d)
    pump(client, server)
    assert client.state is DtlsState.ESTABLISHED, client.failure_info
    assert client.cipher_suite == "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"
    assert client.peer_certificate_der == pki.server.certificate_der
    info = server.peer_info(CLIENT_ADDR)
    assert info is not None and info.certificate_der == pki.device.certificate_der
    client.send(b"hi")
    assert pump(client, server)[1] == [(CLIENT_ADDR, b"hi")]


def test_certificate_usage3_pinned(pki: Pki) -> None:
    server = cert_server(pki)
    client = cert_client(pki, 3, pinned=pki.server.certificate_der)
    connect(client, server)
    assert client.handshake_done


@pytest.mark.parametrize(
    ("server_cert", "expected"),
    [
        ("server_expired", HandshakeFailure.SERVER_CERT_EXPIRED),
        ("server_untrusted", HandshakeFailure.SERVER_CERT_UNTRUSTED),
        ("server_other_name", HandshakeFailure.SERVER_CERT_NAME_MISMATCH),
    ],
)
def test_bad_server_certificates(pki: Pki, server_cert: str, expected: HandshakeFailure) -> None:
    server = cert_server(pki, getattr(pki, server_cert))
    client = cert_client(pki)
    connect(client, server)
    assert client.state is DtlsState.FAILED
    assert client.failure is expected, client.failure_info
    with pytest.raises(DtlsStateError):
        client.send(b"must not go out")
    # the client said close_notify, so the server does not keep a session
    kinds = [e.kind for e in server.events()]
    assert kinds[-1] is PeerEventKind.CLOSED and server.established_peers() == []


def test_expired_server_cert_with_injected_clock(pki: Pki) -> None:
    server = cert_server(pki)
    creds = CertificateCredentials(
        pki.device.certificate_der, pki.device.private_key_der, pki.server.certificate_der
    )
    client = DtlsClientSession(
        creds, wall_clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=5000)
    )
    connect(client, server)
    assert client.failure is HandshakeFailure.SERVER_CERT_EXPIRED


@pytest.mark.parametrize(
    ("device", "alert"),
    [("device_untrusted", TlsAlert.UNKNOWN_CA), ("device_expired", TlsAlert.CERTIFICATE_EXPIRED)],
)
def test_client_certificate_rejected(pki: Pki, device: str, alert: int) -> None:
    server = cert_server(pki)
    client = cert_client(pki, device=getattr(pki, device))
    connect(client, server)
    assert client.failure is HandshakeFailure.CLIENT_CERT_REJECTED
    assert client.failure_info is not None and client.failure_info.alert == alert
    [event] = server.events()
    assert event.info is not None and event.info.kind is HandshakeFailure.CLIENT_CERT_REJECTED


def test_mixed_server_serves_psk_and_certificates(pki: Pki) -> None:
    server = DtlsServerEndpoint(
        {b"ep1": KEY},
        ServerCertificateCredentials(
            pki.server.certificate_der, pki.server.private_key_der, (pki.ca.certificate_der,)
        ),
    )
    a = DtlsClientSession(PSK)
    connect(a, server)
    b = cert_client(pki)
    b.start()
    pump(b, server, addr=("192.0.2.2", 1))
    assert a.handshake_done and b.handshake_done
    assert a.cipher_suite == "TLS_PSK_WITH_AES_128_CCM_8"
    assert b.cipher_suite == "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"


# -- lifecycle ------------------------------------------------------------------


def test_send_before_handshake_and_oversize() -> None:
    server = psk_server()
    client = DtlsClientSession(PSK)
    with pytest.raises(DtlsStateError):
        client.send(b"x")
    client.poll()  # harmless before start()
    connect(client, server)
    with pytest.raises(DtlsStateError):
        client.send(bytes(16385))
    assert client.handshake_done  # refusing a big record did not break the session
    client.send(bytes(16384))
    assert pump(client, server)[1] == [(CLIENT_ADDR, bytes(16384))]
    with pytest.raises(DtlsStateError):
        client.start()


def test_close_notify_both_ways() -> None:
    server = psk_server()
    client = DtlsClientSession(PSK)
    connect(client, server)
    server.events()
    client.close()
    assert client.state is DtlsState.CLOSED
    pump(client, server)
    [event] = server.events()
    assert event.kind is PeerEventKind.CLOSED and server.peers() == []

    client = DtlsClientSession(PSK)
    connect(client, server)
    server.close(CLIENT_ADDR)
    pump(client, server)
    assert client.state is DtlsState.CLOSED
    assert client.failure_info is not None
    assert client.failure_info.alert == TlsAlert.CLOSE_NOTIFY


def test_lost_final_flight_is_retransmitted() -> None:
    # Default timing: recovering a lost *final* flight needs OpenSSL's own
    # retransmission (its timer starts at 1 s), see _backend.Retransmitter.
    server = psk_server()
    client = DtlsClientSession(PSK)
    client.start()
    dropped: list[bytes] = []

    def drop_server_finished(direction: str, d: bytes) -> bool:
        # The server's last flight is the one carrying ChangeCipherSpec (type 20).
        if (
            direction == "s2c"
            and not dropped
            and any(r.content_type == 20 for r in iter_records(d))
        ):
            dropped.append(d)
            return True
        return False

    pump(client, server, drop=drop_server_finished)
    assert dropped and not client.handshake_done
    deadline = time.monotonic() + 4
    while not client.handshake_done and time.monotonic() < deadline:
        time.sleep(0.02)
        client.poll()
        server.poll()
        pump(client, server)
    assert client.handshake_done, client.failure_info
    client.send(b"after loss")
    assert pump(client, server)[1] == [(CLIENT_ADDR, b"after loss")]


def test_lost_client_hello_is_resent_on_our_short_schedule() -> None:
    # Sub-second timing: OpenSSL's timer has not expired yet, so the flight
    # is re-sent as it was, at our instants (0.05 s, then failure at 0.15 s).
    server = psk_server()
    client = DtlsClientSession(PSK, FAST)
    client.start()
    first = client.datagrams_to_send()
    time.sleep(0.06)
    client.poll()
    again = client.datagrams_to_send()
    assert again == first
    for d in again:
        server.handle_datagram(CLIENT_ADDR, d)
    pump(client, server)
    assert client.handshake_done, client.failure_info


def test_handshake_timeout_in_memory() -> None:
    client = DtlsClientSession(PSK, HandshakeTiming(0.02, 0.04))
    client.start()
    sent = len(client.datagrams_to_send())
    start = time.monotonic()
    while client.state is DtlsState.HANDSHAKING and time.monotonic() - start < 2:
        time.sleep(0.005)
        client.poll()
        sent += len(client.datagrams_to_send())
    assert client.failure is HandshakeFailure.TIMEOUT
    assert sent == 2  # initial + one retransmission (waits 0.02, 0.04)
    assert 0.05 < time.monotonic() - start < 0.5


def test_client_reconnect_from_same_address() -> None:
    server = psk_server()
    first = DtlsClientSession(PSK)
    connect(first, server)
    server.events()
    second = DtlsClientSession(PSK)  # device rebooted, same source address
    connect(second, server)
    assert second.handshake_done
    kinds = [e.kind for e in server.events()]
    assert kinds == [PeerEventKind.CLOSED, PeerEventKind.ESTABLISHED]
    second.send(b"new session")
    assert pump(second, server)[1] == [(CLIENT_ADDR, b"new session")]


def flights(wire: list[tuple[str, bytes]]) -> int:
    """Handshake flights on the wire: runs of datagrams in one direction."""
    handshake = [(d, dg) for d, dg in wire if dg[0] != 23]  # application data is not a flight
    return sum(1 for i, (d, _) in enumerate(handshake) if i == 0 or handshake[i - 1][0] != d)


def test_resumption_is_an_abbreviated_handshake() -> None:
    server = psk_server()
    first = DtlsClientSession(PSK)
    full: list[tuple[str, bytes]] = []
    first.start()
    pump(first, server, wire=full)
    assert first.handshake_done and not first.resumed and not first.resumption_offered
    saved = first.saved_session
    assert saved is not None
    first.close()
    pump(first, server)
    server.events()

    second = DtlsClientSession(PSK, resume=saved)
    short: list[tuple[str, bytes]] = []
    second.start()
    pump(second, server, wire=short)
    assert second.handshake_done and second.resumed
    assert second.cipher_suite == "TLS_PSK_WITH_AES_128_CCM_8"
    # cookie exchange, then ServerHello+CCS+Finished and the client's CCS+Finished:
    # one flight fewer than the full handshake, no key exchange.
    assert (flights(full), flights(short)) == (6, 5)
    [event] = server.events()
    assert event.kind is PeerEventKind.ESTABLISHED and event.resumed
    info = server.peer_info(CLIENT_ADDR)
    assert info is not None and info.resumed and info.psk_identity == b"ep1"
    second.send(b"resumed")
    assert pump(second, server)[1] == [(CLIENT_ADDR, b"resumed")]


def test_restarted_server_refuses_resumption_and_runs_a_full_handshake() -> None:
    client = DtlsClientSession(PSK)
    connect(client, psk_server())
    saved = client.saved_session
    fresh = DtlsClientSession(PSK, resume=saved)
    server = psk_server()  # a new endpoint: new ticket key, empty cache
    connect(fresh, server)
    assert fresh.handshake_done and fresh.resumption_offered and not fresh.resumed
    [event] = server.events()
    assert not event.resumed and event.psk_identity == b"ep1"


def test_server_security_keep_sessions_across_restart() -> None:
    for keep, expect_resumed in ((True, True), (False, False)):
        security = ServerSecurity(psk_store={b"ep1": KEY}, keep_sessions=keep)
        client = DtlsClientSession(PSK)
        connect(client, security.endpoint())
        again = DtlsClientSession(PSK, resume=client.saved_session)
        connect(again, security.endpoint())  # the "restarted" server
        assert again.handshake_done and again.resumed is expect_resumed


def test_certificate_session_resumes_and_is_checked_again(pki: Pki) -> None:
    server = cert_server(pki)
    client = cert_client(pki)
    connect(client, server)
    again = cert_client(pki)
    again._offered = client.saved_session  # as the runtime's session store would pass it
    connect(again, server)
    assert again.handshake_done and again.resumed
    assert again.peer_certificate_der == pki.server.certificate_der
    late = DtlsClientSession(
        CertificateCredentials(
            pki.device.certificate_der,
            pki.device.private_key_der,
            None,
            (pki.ca.certificate_der,),
            0,
        ),
        server_hostname="127.0.0.1",
        resume=client.saved_session,
        wall_clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=5000),
    )
    connect(late, server)
    assert late.failure is HandshakeFailure.SERVER_CERT_EXPIRED  # a kept session is no bypass


def test_network_failure_reported_by_glue() -> None:
    client = DtlsClientSession(PSK)
    client.start()
    client.fail(HandshakeFailure.NETWORK, "ICMP port unreachable")
    assert client.failure is HandshakeFailure.NETWORK
    assert client.handle_datagram(b"\x16\xfe\xfd" + bytes(10)) == []
    client.poll()
    assert client.state is DtlsState.FAILED
