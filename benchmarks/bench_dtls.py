"""DTLS cost: full and resumed handshakes/s (PSK, ECDHE-ECDSA) and round trips/s.

Handshakes run both ends in this process over memory buffers (our
``DtlsClientSession`` and ``DtlsServerEndpoint``, OpenSSL underneath), so the
figure is the CPU cost of one handshake including the cookie exchange, for
client and server together; "resumed" is the abbreviated handshake with a
kept session. When python-mbedtls (the previous backend) is importable, its
own full handshakes and record round trips are measured in the same run as
the baseline (``make bench`` installs it where a wheel exists). Round trips carry a Notify-sized
CoAP message (the one ``bench_coap.py`` uses, ~80 bytes), one at a time:

- in memory: encrypt → decrypt → encrypt → decrypt, the pure record cost;
- over UDP on 127.0.0.1 with asyncio: a DTLS echo server vs a plain UDP echo
  server in the same run, so the ratio shows what security costs on the wire.

    .venv/bin/python benchmarks/bench_dtls.py [--rounds 5] [--number N]

``run()`` returns the figures as a dict for other scripts and the smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiolwm2m.coap.message import encode
from aiolwm2m.dtls.aio import dtls_client_connect, serve_dtls
from aiolwm2m.dtls.certs import (
    generate_ca,
    generate_device_certificate,
    generate_server_certificate,
)
from aiolwm2m.dtls.credentials import (
    CertificateCredentials,
    DtlsCredentials,
    PskCredentials,
    ServerCertificateCredentials,
)
from aiolwm2m.dtls.server import DtlsServerEndpoint, ServerSecurity
from aiolwm2m.dtls.session import DtlsClientSession, DtlsState, SavedSession

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import compare, fmt_rate, print_table
from bench_coap import notify_message

PSK = PskCredentials(b"bench-device", bytes(range(16)))


def _pki() -> tuple[CertificateCredentials, ServerCertificateCredentials]:
    ca = generate_ca()
    server = generate_server_certificate(ca)
    device = generate_device_certificate(ca, "bench-device")
    client = CertificateCredentials(
        device.certificate_der,
        device.private_key_der,
        server_certificate_der=server.certificate_der,
    )
    return client, ServerCertificateCredentials(
        server.certificate_der, server.private_key_der, (ca.certificate_der,)
    )


def _pump(client: DtlsClientSession, server: DtlsServerEndpoint, addr: Any) -> list[bytes]:
    """Move datagrams both ways until quiet; return records that reached the client."""
    got: list[bytes] = []
    while True:
        moved = False
        for d in client.datagrams_to_send():
            moved = True
            server.handle_datagram(addr, d)
        for a, d in server.datagrams_to_send():
            moved = True
            if a == addr:
                got += client.handle_datagram(d)
        if not moved:
            return got


def handshake_case(
    security: ServerSecurity, credentials: DtlsCredentials, *, resumed: bool = False
) -> Callable[[], None]:
    server = security.endpoint()
    ports = itertools.count()
    saved: list[SavedSession | None] = [None]

    def handshake() -> None:
        addr = ("192.0.2.1", next(ports) % 60000 + 1)
        client = DtlsClientSession(credentials, resume=saved[0])
        client.start()
        _pump(client, server, addr)
        if client.state is not DtlsState.ESTABLISHED or client.resumed != bool(saved[0]):
            raise RuntimeError(f"handshake failed: {client.failure_info}")
        client.close()  # a session dropped without close_notify cannot be resumed
        server.forget(addr)
        if resumed and saved[0] is None:
            saved[0] = client.saved_session

    if resumed:
        handshake()  # the full handshake whose session the timed ones resume
    return handshake


def memory_roundtrip_case(payload: bytes) -> Callable[[], None]:
    server = DtlsServerEndpoint(psk_store={PSK.identity: PSK.key})
    client = DtlsClientSession(PSK)
    client.start()
    addr = ("192.0.2.1", 5683)
    _pump(client, server, addr)

    def roundtrip() -> None:
        client.send(payload)
        (datagram,) = client.datagrams_to_send()
        ((peer, record),) = server.handle_datagram(addr, datagram)
        server.send(peer, record)
        ((_, back),) = server.datagrams_to_send()
        client.handle_datagram(back)

    return roundtrip


def mbedtls_cases(payload: bytes) -> dict[str, Callable[[], None]]:
    """The previous backend's own figures (raw python-mbedtls, memory buffers), if installed."""
    try:
        from mbedtls import tls  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return {}
    common = {
        "lowest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "highest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "ciphers": ("TLS-PSK-WITH-AES-128-CCM-8",),
        "validate_certificates": False,
    }
    client_ctx = tls.ClientContext(
        tls.DTLSConfiguration(pre_shared_key=(PSK.identity.decode(), PSK.key), **common)
    )
    server_ctx = tls.ServerContext(
        tls.DTLSConfiguration(pre_shared_key_store={PSK.identity.decode(): PSK.key}, **common)
    )

    def step(buf: Any) -> bytes:
        out = b""
        for _ in range(64):
            try:
                buf.do_handshake()
            except (tls.WantReadError, tls.HelloVerifyRequest):
                break
            except tls.WantWriteError:
                pass
            out += buf.peek_outgoing(65536)
            buf.consume_outgoing(len(out))
            if buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER:
                break
        data = buf.peek_outgoing(65536)
        buf.consume_outgoing(len(data))
        return out + data

    def connect() -> tuple[Any, Any]:
        client = client_ctx.wrap_buffers(None)
        hello = step(client)
        server = server_ctx.wrap_buffers()  # stateless: HelloVerifyRequest, then forget
        server.setcookieparam(b"peer")
        server.receive_from_network(hello)
        client.receive_from_network(step(server))
        server = server_ctx.wrap_buffers()
        server.setcookieparam(b"peer")
        data = step(client)
        while data:
            server.receive_from_network(data)
            back = step(server)
            if back:
                client.receive_from_network(back)
            data = step(client)
        if client._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
            raise RuntimeError("python-mbedtls handshake did not finish")
        return client, server

    def handshake() -> None:
        connect()

    client, server = connect()

    def roundtrip() -> None:
        client.write(payload)
        server.receive_from_network(client.peek_outgoing(65536))
        client.consume_outgoing(len(client.peek_outgoing(65536)))
        server.write(server.read(4096))
        client.receive_from_network(server.peek_outgoing(65536))
        server.consume_outgoing(len(server.peek_outgoing(65536)))
        client.read(4096)

    return {
        "python-mbedtls: handshake PSK-AES128-CCM8": handshake,
        "python-mbedtls: record round trip, memory": roundtrip,
    }


async def _rate(call: Callable[[], Awaitable[object]], number: int, rounds: int) -> float:
    rates = []
    for i in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(number):
            await call()
        if i:  # the first round warms up
            rates.append(number / (time.perf_counter() - start))
    return statistics.median(rates)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class _Waiter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(data)


async def udp_rates(payload: bytes, number: int, rounds: int) -> dict[str, float]:
    """Round trips/s over 127.0.0.1: plain UDP echo and DTLS-PSK echo, rounds alternating."""
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    waiter = _Waiter()
    plain, _ = await loop.create_datagram_endpoint(
        lambda: waiter, remote_addr=echo.get_extra_info("sockname")
    )

    async def plain_rt() -> bytes:
        waiter.future = loop.create_future()
        plain.sendto(payload)
        return await waiter.future

    holder: dict[str, Any] = {}
    dtls_server = await serve_dtls(
        "127.0.0.1",
        0,
        DtlsServerEndpoint(psk_store={PSK.identity: PSK.key}),
        lambda peer, record: holder["server"].send(peer, record),
    )
    holder["server"] = dtls_server
    host, port = dtls_server.local_address[:2]
    conn = await dtls_client_connect(host, port, PSK)

    async def dtls_rt() -> bytes:
        conn.send(payload)
        return await conn.recv()

    out: dict[str, list[float]] = {"plain UDP": [], "DTLS-PSK": []}
    try:
        for _ in range(rounds):
            out["plain UDP"].append(await _rate(plain_rt, number, 1))
            out["DTLS-PSK"].append(await _rate(dtls_rt, number, 1))
    finally:
        conn.close()
        dtls_server.close()
        plain.close()
        echo.close()
    return {name: statistics.median(r) for name, r in out.items()}


def run(rounds: int = 5, number: int | None = None) -> dict[str, float]:
    """{case: median ops/s} for every figure this script prints."""
    client_cert, server_cert = _pki()
    payload = encode(notify_message())
    psk_security = ServerSecurity(psk_store={PSK.identity: PSK.key})
    cert_security = ServerSecurity(certificate=server_cert)
    cases = {
        "handshake PSK-AES128-CCM8": handshake_case(psk_security, PSK),
        "resumed handshake PSK-AES128-CCM8": handshake_case(psk_security, PSK, resumed=True),
        "handshake ECDHE-ECDSA-AES128-CCM8": handshake_case(cert_security, client_cert),
        "resumed handshake ECDHE-ECDSA-AES128-CCM8": handshake_case(
            cert_security, client_cert, resumed=True
        ),
        "record round trip, memory": memory_roundtrip_case(payload),
    }
    cases.update(mbedtls_cases(payload))
    rates = compare(cases, number=number, rounds=rounds)
    udp = asyncio.run(udp_rates(payload, number or 2000, rounds))
    rates.update({f"round trip over UDP, {k}": v for k, v in udp.items()})
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median is shown)")
    parser.add_argument("--number", type=int, default=None, help="operations per round (auto)")
    args = parser.parse_args(argv)
    payload = encode(notify_message())
    from OpenSSL import SSL

    version = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    print(f"DTLS 1.2 ({version} via pyOpenSSL); Notify-sized CoAP payload: {len(payload)} bytes")
    if not mbedtls_cases(payload):
        print("python-mbedtls baseline: not installed here (no wheel for this Python)")
    rates = run(rounds=args.rounds, number=args.number)
    print_table(["case", "median"], [[name, fmt_rate(r)] for name, r in rates.items()])
    plain = rates["round trip over UDP, plain UDP"]
    secure = rates["round trip over UDP, DTLS-PSK"]
    print(f"DTLS-PSK / plain UDP round trips: x{secure / plain:.2f}")
    full, short = rates["handshake PSK-AES128-CCM8"], rates["resumed handshake PSK-AES128-CCM8"]
    print(f"resumed / full PSK handshakes: x{short / full:.2f}")
    if "python-mbedtls: handshake PSK-AES128-CCM8" in rates:
        base = rates["python-mbedtls: handshake PSK-AES128-CCM8"]
        print(f"OpenSSL / python-mbedtls full PSK handshakes: x{full / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
