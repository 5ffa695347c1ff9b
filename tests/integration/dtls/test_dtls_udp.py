"""DTLS over real UDP on 127.0.0.1: asyncio glue, timers, ICMP, what goes on the wire."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from aiolwm2m.dtls import (
    CertificateCredentials,
    DtlsConnectionError,
    DtlsHandshakeError,
    DtlsServerEndpoint,
    FailureInfo,
    HandshakeFailure,
    HandshakeTiming,
    PskCredentials,
    ServerCertificateCredentials,
    TlsAlert,
)
from aiolwm2m.dtls.aio import DtlsServer, dtls_client_connect, serve_dtls
from aiolwm2m.dtls.certs import (
    generate_ca,
    generate_device_certificate,
    generate_server_certificate,
)
from aiolwm2m.dtls.records import ContentType, is_client_hello, iter_records

KEY = bytes(range(16))
PSK = PskCredentials(b"ep1", KEY)
# A CoAP Register request (CON POST /rd?ep=ep1): must never be seen in clear.
COAP_REGISTER = b"\x44\x02\x12\x34\xab\xcd\xef\x01\xb2rd\x47ep=ep1\xff</1/0>,</3/0>"
SHORT = HandshakeTiming(0.1, 0.8)


class Recorder(asyncio.DatagramProtocol):
    """A UDP socket that never answers and notes when datagrams arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((time.monotonic(), data))


class Proxy:
    """UDP relay client ⇄ server that records every datagram (the "wire")."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.wire: list[tuple[str, bytes]] = []
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.client_addr: Any = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                proxy.client_addr = addr
                proxy.wire.append(("c2s", data))
                assert proxy.back is not None
                proxy.back.sendto(data)

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                proxy.wire.append(("s2c", data))
                assert proxy.front is not None
                proxy.front.sendto(data, proxy.client_addr)

        self.front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        self.back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
        return int(self.front.get_extra_info("sockname")[1])

    def close(self) -> None:
        for t in (self.front, self.back):
            if t is not None:
                t.close()


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def echo_server(endpoint: DtlsServerEndpoint) -> tuple[DtlsServer, int]:
    holder: list[DtlsServer] = []

    def echo(addr: Any, data: bytes) -> None:
        holder[0].send(addr, data)

    server = await serve_dtls("127.0.0.1", 0, endpoint, echo)
    holder.append(server)
    return server, int(server.local_address[1])


def assert_no_plaintext_coap(wire: list[tuple[str, bytes]]) -> None:
    for _direction, datagram in wire:
        assert COAP_REGISTER not in datagram
        assert b"ep=ep1" not in datagram
        for record in iter_records(datagram):
            if record.content_type == ContentType.APPLICATION_DATA:
                assert record.epoch >= 1  # only ever encrypted


async def test_psk_echo_and_ciphertext_on_the_wire() -> None:
    server, port = await echo_server(DtlsServerEndpoint({b"ep1": KEY}))
    proxy = Proxy(("127.0.0.1", port))
    proxy_port = await proxy.start()
    try:
        started = time.monotonic()
        conn = await dtls_client_connect("127.0.0.1", proxy_port, PSK, SHORT)
        elapsed = time.monotonic() - started
        assert elapsed < 0.5
        assert conn.session.cipher_suite == "TLS_PSK_WITH_AES_128_CCM_8"
        for i in range(5):
            conn.send(COAP_REGISTER + bytes([i]))
            assert await asyncio.wait_for(conn.recv(), 2) == COAP_REGISTER + bytes([i])
        conn.close()
        await asyncio.sleep(0.05)
        assert server.endpoint.peers() == []  # close_notify reached the server
        assert any(
            r.content_type == ContentType.APPLICATION_DATA
            for _, d in proxy.wire
            for r in iter_records(d)
        )
        assert_no_plaintext_coap(proxy.wire)
    finally:
        proxy.close()
        server.close()


async def test_certificate_echo() -> None:
    ca = generate_ca()
    srv = generate_server_certificate(ca)
    dev = generate_device_certificate(ca, "ep1")
    endpoint = DtlsServerEndpoint(
        certificate=ServerCertificateCredentials(
            srv.certificate_der, srv.private_key_der, (ca.certificate_der,)
        )
    )
    server, port = await echo_server(endpoint)
    events: list[Any] = []
    server._on_event = events.append
    try:
        creds = CertificateCredentials(
            dev.certificate_der,
            dev.private_key_der,
            ca_certificates_der=(ca.certificate_der,),
            certificate_usage=0,
        )
        conn = await dtls_client_connect("127.0.0.1", port, creds, SHORT)
        assert conn.session.cipher_suite == "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"
        conn.send(b"hello")
        assert await asyncio.wait_for(conn.recv(), 2) == b"hello"
        [addr] = server.endpoint.established_peers()
        info = server.endpoint.peer_info(addr)
        assert info is not None and info.certificate_der == dev.certificate_der
        conn.close()
    finally:
        server.close()


async def test_silent_server_retransmits_on_schedule_then_times_out() -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: recorder, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        started = time.monotonic()
        with pytest.raises(DtlsHandshakeError) as caught:
            await dtls_client_connect("127.0.0.1", port, PSK, SHORT)
        failed_after = time.monotonic() - started
        await asyncio.sleep(0.2)  # nothing more may arrive after the failure
    finally:
        transport.close()
    assert caught.value.failure is HandshakeFailure.TIMEOUT
    assert isinstance(caught.value.info, FailureInfo)

    assert all(is_client_hello(d) for _, d in recorder.received)
    offsets = [t - recorder.received[0][0] for t, _ in recorder.received]
    expected = (0.0, *SHORT.retransmission_instants)  # 0, 0.1, 0.3, 0.7
    assert len(offsets) == SHORT.transmissions == len(expected)
    for got, want in zip(offsets, expected, strict=True):
        assert want - 0.01 <= got <= want + 0.08, (offsets, expected)
    assert SHORT.ultimate_timeout - 0.01 <= failed_after <= SHORT.ultimate_timeout + 0.3


async def test_closed_port_fails_fast_with_network() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DtlsHandshakeError) as caught:
        await dtls_client_connect("127.0.0.1", port, PSK)  # default 1 s/60 s timing
    assert caught.value.failure is HandshakeFailure.NETWORK
    assert "ConnectionRefused" in caught.value.detail
    assert time.monotonic() - started < 1.0


async def test_unresolvable_host_is_network() -> None:
    with pytest.raises(DtlsHandshakeError) as caught:
        await dtls_client_connect("no-such-host.invalid", 5684, PSK)
    assert caught.value.failure is HandshakeFailure.NETWORK
    assert isinstance(caught.value.__cause__, socket.gaierror)


async def test_wrong_psk_is_bad_psk_and_nothing_leaks() -> None:
    server, port = await echo_server(DtlsServerEndpoint({b"ep1": KEY}))
    proxy = Proxy(("127.0.0.1", port))
    proxy_port = await proxy.start()
    try:
        started = time.monotonic()
        with pytest.raises(DtlsHandshakeError) as caught:
            await dtls_client_connect(
                "127.0.0.1", proxy_port, PskCredentials(b"ep1", bytes(16)), SHORT
            )
        assert time.monotonic() - started < 0.5
        assert caught.value.failure is HandshakeFailure.BAD_PSK
        assert caught.value.alert == TlsAlert.BAD_RECORD_MAC
        await asyncio.sleep(0.05)
        assert proxy.wire, "the handshake must have gone through the proxy"
        assert_no_plaintext_coap(proxy.wire)
        # and nothing but handshake traffic at all
        for _, d in proxy.wire:
            for r in iter_records(d):
                assert r.content_type != ContentType.APPLICATION_DATA
    finally:
        proxy.close()
        server.close()


async def test_server_close_notify_reaches_the_connection() -> None:
    server, port = await echo_server(DtlsServerEndpoint({b"ep1": KEY}))
    try:
        conn = await dtls_client_connect("127.0.0.1", port, PSK, SHORT)
        errors: list[FailureInfo] = []
        conn.on_error = errors.append
        server.endpoint.close_all()
        server._flush()
        with pytest.raises(DtlsConnectionError) as caught:
            await asyncio.wait_for(conn.recv(), 2)
        assert caught.value.info.alert == TlsAlert.CLOSE_NOTIFY
        assert [e.alert for e in errors] == [TlsAlert.CLOSE_NOTIFY]
        assert not conn.is_open
    finally:
        server.close()


async def test_icmp_after_establishment_is_reported_as_network() -> None:
    server, port = await echo_server(DtlsServerEndpoint({b"ep1": KEY}))
    conn = await dtls_client_connect("127.0.0.1", port, PSK, SHORT)
    errors: list[FailureInfo] = []
    conn.on_error = errors.append
    # The server process "dies": its socket disappears without close_notify.
    server._task.cancel()  # type: ignore[union-attr]
    assert server._transport is not None
    server._transport.close()
    await asyncio.sleep(0.02)
    conn.send(b"anyone there?")
    with pytest.raises(DtlsConnectionError) as caught:
        await asyncio.wait_for(conn.recv(), 1)
    assert caught.value.failure is HandshakeFailure.NETWORK
    assert [e.kind for e in errors] == [HandshakeFailure.NETWORK]


async def test_cancelling_the_handshake_closes_the_socket() -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: recorder, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        task = asyncio.create_task(dtls_client_connect("127.0.0.1", port, PSK, SHORT))
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        count = len(recorder.received)
        await asyncio.sleep(0.3)
        assert len(recorder.received) == count == 2  # 0 s and 0.1 s, then silence
    finally:
        transport.close()


async def test_many_clients_one_server() -> None:
    keys = {f"ep{i}".encode(): bytes([i]) * 16 for i in range(20)}
    server, port = await echo_server(DtlsServerEndpoint(keys))
    try:
        conns = await asyncio.gather(
            *(
                dtls_client_connect("127.0.0.1", port, PskCredentials(ident, key), SHORT)
                for ident, key in keys.items()
            )
        )
        for i, c in enumerate(conns):
            c.send(b"n%d" % i)
        replies = await asyncio.gather(*(asyncio.wait_for(c.recv(), 2) for c in conns))
        assert replies == [b"n%d" % i for i in range(len(conns))]
        identities = {
            server.endpoint.peer_info(a).psk_identity  # type: ignore[union-attr]
            for a in server.endpoint.established_peers()
        }
        assert identities == set(keys)
        for c in conns:
            c.close()
    finally:
        server.close()
