"""The server endpoint must survive anything a network can deliver."""

from __future__ import annotations

import os

from dtls_memory_pump import CLIENT_ADDR, pump
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiolwm2m.dtls import (
    DtlsClientSession,
    DtlsServerEndpoint,
    HandshakeTiming,
    PeerEventKind,
    PskCredentials,
)

KEY = bytes(16)
PSK = PskCredentials(b"ep1", KEY)


def rec(ctype: int, payload: bytes, epoch: int = 0, seq: int = 0) -> bytes:
    return (
        bytes([ctype, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


def established() -> tuple[DtlsServerEndpoint, DtlsClientSession]:
    server = DtlsServerEndpoint({b"ep1": KEY})
    client = DtlsClientSession(PSK)
    client.start()
    pump(client, server)
    assert client.handshake_done
    server.events()
    return server, client


GARBAGE = [
    b"",
    b"\x00",
    b"\x40\x01\x00\x01",  # plaintext CoAP
    os.urandom(13),
    os.urandom(200),
    rec(22, b""),  # empty handshake record
    rec(22, b"\x01" + bytes(11)),  # ClientHello header, no body
    rec(22, b"\x01" + b"\xff" * 200),  # ClientHello full of junk
    rec(22, b"\x01\x00\x00\x10" + bytes(60)),  # inconsistent lengths
    rec(23, os.urandom(40), epoch=1, seq=5),  # forged application data
    rec(21, b"\x02\x14"),  # plaintext fatal alert
    rec(21, b"\x02\x14", epoch=1, seq=9),  # "encrypted" alert, wrong MAC
    rec(20, b"\x01"),  # stray ChangeCipherSpec
    rec(22, bytes(30), epoch=7, seq=2**48 - 1),
    rec(23, b"x")[:-1],  # truncated
]


def test_garbage_from_unknown_peers_allocates_nothing() -> None:
    server = DtlsServerEndpoint({b"ep1": KEY})
    for i, g in enumerate(GARBAGE):
        assert server.handle_datagram(("198.51.100.1", i), g) == []
    server.poll()
    # junk ClientHellos may get a HelloVerifyRequest or nothing; never a kept peer
    assert server.peers() == []
    assert server.internal_errors == 0


def test_garbage_does_not_kill_an_established_session() -> None:
    # Includes a spoofed plaintext fatal alert and a junk ClientHello from the
    # peer's own address: neither may end the session.
    server, client = established()
    for g in GARBAGE:
        assert server.handle_datagram(CLIENT_ADDR, g) == []
        server.datagrams_to_send()
    server.poll()
    assert server.established_peers() == [CLIENT_ADDR], server.events()
    client.send(b"still here")
    assert pump(client, server)[1] == [(CLIENT_ADDR, b"still here")]
    assert server.internal_errors == 0


def test_garbage_mid_handshake_is_survived() -> None:
    server = DtlsServerEndpoint({b"ep1": KEY})
    client = DtlsClientSession(PSK)
    client.start()
    for d in client.datagrams_to_send():
        server.handle_datagram(CLIENT_ADDR, d)
    for _, d in server.datagrams_to_send():
        client.handle_datagram(d)  # HelloVerifyRequest → ClientHello with cookie
    for d in client.datagrams_to_send():
        server.handle_datagram(CLIENT_ADDR, d)
    for g in GARBAGE:
        server.handle_datagram(CLIENT_ADDR, g)
        client.handle_datagram(g)
    pump(client, server)
    server.poll()
    # Whatever happened, nothing raised; the client either made it or failed cleanly.
    assert server.internal_errors == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=300)), max_size=8))
def test_fuzz_server_never_raises(datagrams: list[tuple[int, bytes]]) -> None:
    server = DtlsServerEndpoint({b"ep1": KEY})
    for port, data in datagrams:
        server.handle_datagram(("203.0.113.9", port), data)
        server.datagrams_to_send()
    server.poll()
    assert server.internal_errors == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=5), st.integers(0, 2**16))
def test_fuzz_dtls_shaped_records_to_established_peer(payloads: list[bytes], seq: int) -> None:
    server, _client = established()
    for i, p in enumerate(payloads):
        ctype = 20 + (p[0] % 4)
        server.handle_datagram(CLIENT_ADDR, rec(ctype, p[1:], epoch=1, seq=seq + i))
    server.poll()
    assert server.internal_errors == 0
    assert server.established_peers() == [CLIENT_ADDR]


def test_max_peers_evicts_oldest_handshake() -> None:
    server = DtlsServerEndpoint({b"ep1": KEY}, max_peers=2)
    clients = []
    for port in range(3):
        c = DtlsClientSession(PSK)
        c.start()
        clients.append(c)
        addr = ("192.0.2.5", port)
        # get past the cookie so the server keeps per-peer state
        for d in c.datagrams_to_send():
            server.handle_datagram(addr, d)
        for _, d in server.datagrams_to_send():
            c.handle_datagram(d)
        for d in c.datagrams_to_send():
            server.handle_datagram(addr, d)
        server.datagrams_to_send()
    assert len(server.peers()) == 2
    assert ("192.0.2.5", 0) not in server.peers()
    assert [e.kind for e in server.events()] == [PeerEventKind.EXPIRED]


def test_idle_peers_are_forgotten() -> None:
    now = [1000.0]
    server = DtlsServerEndpoint({b"ep1": KEY}, idle_timeout=30, clock=lambda: now[0])
    client = DtlsClientSession(PSK)
    client.start()
    pump(client, server)
    server.events()
    now[0] += 29
    server.poll()
    assert server.established_peers() == [CLIENT_ADDR]
    now[0] += 2
    server.poll()
    assert server.peers() == []
    assert [e.kind for e in server.events()] == [PeerEventKind.EXPIRED]


def test_silent_client_handshake_times_out_on_server() -> None:
    import time

    server = DtlsServerEndpoint({b"ep1": KEY}, timing=HandshakeTiming(0.02, 0.04))
    client = DtlsClientSession(PSK)
    client.start()
    for d in client.datagrams_to_send():
        server.handle_datagram(CLIENT_ADDR, d)
    for _, d in server.datagrams_to_send():
        client.handle_datagram(d)
    for d in client.datagrams_to_send():
        server.handle_datagram(CLIENT_ADDR, d)  # server now sends its flight and waits
    assert server.peers() == [CLIENT_ADDR]
    deadline = time.monotonic() + 1
    while server.peers() and time.monotonic() < deadline:
        time.sleep(0.005)
        server.poll()
    assert server.peers() == []
    [event] = server.events()
    assert event.kind is PeerEventKind.FAILED and event.info is not None
    assert event.info.kind.value == "timeout"


def test_send_to_unknown_peer_is_a_state_error() -> None:
    import pytest

    from aiolwm2m.dtls import DtlsStateError

    server = DtlsServerEndpoint({b"ep1": KEY})
    with pytest.raises(DtlsStateError):
        server.send(("192.0.2.1", 1), b"x")
    server.close(("192.0.2.1", 1))  # no-op
    server.forget(("192.0.2.1", 1))


def test_server_needs_credentials() -> None:
    import pytest

    from aiolwm2m.dtls import DtlsStateError

    with pytest.raises(DtlsStateError):
        DtlsServerEndpoint()


def oversized() -> bytes:
    n = 40_000
    return bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(6) + n.to_bytes(2, "big") + bytes(n)


def test_oversized_datagrams_are_dropped_on_both_ends() -> None:
    server, client = established()
    assert server.handle_datagram(CLIENT_ADDR, oversized()) == []
    assert client.handle_datagram(oversized()) == []
    assert server.internal_errors == 0
    assert client.handshake_done and server.established_peers() == [CLIENT_ADDR]
    client.send(b"fine")
    assert pump(client, server)[1] == [(CLIENT_ADDR, b"fine")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_fuzz_client_session_never_raises(datagrams: list[bytes]) -> None:
    _server, client = established()
    handshaking = DtlsClientSession(PSK)
    handshaking.start()
    for d in datagrams:
        client.handle_datagram(d)
        handshaking.handle_datagram(d)
        if d:
            forged = rec(20 + d[0] % 4, d[1:], epoch=d[0] % 2, seq=len(d))
            client.handle_datagram(forged)
            handshaking.handle_datagram(forged)
    handshaking.poll()
    # forged records never decrypt, so the real session is unaffected
    assert client.handshake_done


def test_client_hello_flood_costs_no_state_and_spares_the_established_peer() -> None:
    server, client = established()
    hello = DtlsClientSession(PSK)
    hello.start()
    [client_hello] = hello.datagrams_to_send()  # a genuine ClientHello, no cookie
    cookies_before = server.cookies_sent
    for port in range(2000):  # spoofed sources: each gets a HelloVerifyRequest, nothing more
        server.handle_datagram(("203.0.113.7", port), client_hello)
    # the established peer's own address too: no valid cookie, so its session stays
    for _ in range(50):
        server.handle_datagram(CLIENT_ADDR, client_hello)
    sent = server.datagrams_to_send()
    assert server.cookies_sent - cookies_before == len(sent) == 2050
    assert all(d[0] == 22 and len(d) < len(client_hello) for _, d in sent)  # no amplification
    assert server.peers() == [CLIENT_ADDR] and server.internal_errors == 0
    assert server.events() == []
    client.send(b"still here")
    assert pump(client, server)[1] == [(CLIENT_ADDR, b"still here")]
