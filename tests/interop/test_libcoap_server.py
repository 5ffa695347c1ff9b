"""Our CoAP layer and DTLS session against libcoap's ``coap-server`` (Debian libcoap3-bin).

* Confirmable retransmission: ``coap-server -l 1,2`` drops the first two
  datagrams it sends, so our request must be retransmitted on the RFC 7252
  §4.2 schedule for our ACK_TIMEOUT. The times are taken on the wire (a relay
  between us and the server), not from the layer's own bookkeeping.
* Block-wise (RFC 7959): Block2 GET of coap-server's ``/example_data`` with a
  small block size, Block1 PUT of a large body that libcoap reassembles and
  serves back; POST is answered 4.05 (no coap-server resource takes POST).
* DTLS-PSK: our mbedtls session against ``coap-server-openssl -k KEY``; a
  wrong key is a typed handshake failure (TIMEOUT: OpenSSL sends no alert).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aiolwm2m.coap.blockwise import Block2Receiver
from aiolwm2m.coap.layer import Outcome
from aiolwm2m.coap.message import (
    Block,
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls import DtlsHandshakeError, HandshakeFailure, HandshakeTiming, PskCredentials
from aiolwm2m.dtls.aio import dtls_client_connect
from interop.peers import (
    LayerEndpoint,
    PeerProcess,
    Relay,
    free_udp_port,
    libcoap_tool,
    run_tool,
)

ACK_TIMEOUT = 0.2
# Random factor 1.0 makes the schedule exact: 0.2, then 0.4, 0.8, ... between sends.
PARAMS = TransmissionParameters(ack_timeout=ACK_TIMEOUT, ack_random_factor=1.0, max_retransmit=4)
# Timers only fire late, never early; how late depends on a loaded 2-core machine.
EARLY = 0.01
LATE = 0.15


@asynccontextmanager
async def coap_server(
    tmp_path: Path, *extra: str, tool: str = "coap-server-notls", dtls: bool = False
) -> AsyncIterator[tuple[int, PeerProcess]]:
    """A coap-server on 127.0.0.1; yields its UDP port (DTLS listens on port+1)."""
    binary = libcoap_tool(tool)
    port = free_udp_port(pair=dtls)
    proc = PeerProcess(
        [binary, "-A", "127.0.0.1", "-p", str(port), "-v", "7", *extra], tmp_path / "server.log"
    )
    await proc.start(wait_port=port + 1 if dtls else port)
    try:
        yield port, proc
    finally:
        await proc.stop()


@asynccontextmanager
async def layer_via_relay(port: int) -> AsyncIterator[tuple[LayerEndpoint, Relay]]:
    relay = Relay(upstream=("127.0.0.1", port))
    await relay.start()
    endpoint = LayerEndpoint(PARAMS)
    await endpoint.connect(("127.0.0.1", relay.port))
    try:
        yield endpoint, relay
    finally:
        endpoint.close()
        relay.close()


def get(path: Sequence[str], **kw: object) -> Message:
    return Message(type=MessageType.CON, code=Code.GET, options=make_options(path=path), **kw)  # type: ignore[arg-type]


def send_times(relay: Relay, mid: int) -> list[float]:
    return [t for t, m in relay.messages("c2s") if m.mid == mid and m.type == MessageType.CON]


async def test_retransmission_schedule_when_libcoap_drops_its_first_answers(
    tmp_path: Path,
) -> None:
    async with (
        coap_server(tmp_path, "-l", "1,2") as (port, server),
        layer_via_relay(port) as (endpoint, relay),
    ):
        result = await endpoint.request(get([]))
    assert result.outcome is Outcome.RESPONSE, server.log()
    assert result.response is not None and result.response.code == Code.CONTENT
    assert b"libcoap" in result.response.payload
    times = send_times(relay, result.request.mid)
    # Two answers dropped by the server: the original plus two retransmissions.
    assert len(times) == 3, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        expected = ACK_TIMEOUT * 2**n
        assert expected - EARLY <= gap <= expected + LATE, (n, gaps)
    # Only the server's third datagram reached us.
    assert len(relay.messages("s2c")) == 1
    assert endpoint.layer.stats.retransmissions == 2


async def test_gives_up_after_max_retransmit_when_libcoap_never_answers(tmp_path: Path) -> None:
    async with (
        coap_server(tmp_path, "-l", "1-10") as (port, _server),
        layer_via_relay(port) as (endpoint, relay),
    ):
        loop = asyncio.get_running_loop()
        result = await endpoint.request(get([]))
        ended = loop.time()
    assert result.outcome is Outcome.TIMEOUT
    times = send_times(relay, result.request.mid)
    assert len(times) == 1 + PARAMS.max_retransmit
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        expected = ACK_TIMEOUT * 2**n
        assert expected - EARLY <= gap <= expected + LATE, (n, gaps)
    # The exchange ends one last (doubled) timeout after the final retransmission.
    last_wait = ended - times[-1]
    expected_wait = ACK_TIMEOUT * 2**PARAMS.max_retransmit
    assert expected_wait - EARLY <= last_wait <= expected_wait + LATE
    assert ended - times[0] >= PARAMS.max_transmit_wait - EARLY


async def blockwise_get(endpoint: LayerEndpoint, path: Sequence[str], szx: int) -> bytes:
    receiver = Block2Receiver(szx=szx)
    block = receiver.first_request_block()
    while True:
        msg = get(path)
        if block is not None:
            msg.add(OptionNumber.BLOCK2, block.encode())
        result = await endpoint.request(msg)
        assert result.outcome is Outcome.RESPONSE and result.response is not None
        assert result.response.code == Code.CONTENT, result.response.describe()
        block = receiver.feed(result.response)
        if block is None:
            return receiver.payload


async def test_block2_get_of_libcoap_resource_matches_coap_client(tmp_path: Path) -> None:
    client = libcoap_tool("coap-client-notls")
    async with coap_server(tmp_path) as (port, _server):
        out = tmp_path / "example_data"
        rc, _, err = await run_tool(
            [client, "-m", "get", "-o", str(out), f"coap://127.0.0.1:{port}/example_data"]
        )
        assert rc == 0, err
        async with layer_via_relay(port) as (endpoint, relay):
            body = await blockwise_get(endpoint, ["example_data"], szx=1)  # 32-byte blocks
    assert len(body) > 1024  # really needed several blocks
    assert body == out.read_bytes()
    blocks = [m.block2 for _, m in relay.messages("s2c")]
    assert all(b is not None and b.size == 32 for b in blocks)
    assert len(blocks) == -(-len(body) // 32)


async def test_block1_put_reassembled_by_libcoap_then_read_back(tmp_path: Path) -> None:
    body = bytes(ord("A") + i % 26 for i in range(3000))
    async with (
        coap_server(tmp_path) as (port, _server),
        layer_via_relay(port) as (endpoint, relay),
    ):
        size = 64
        codes = []
        for num in range(-(-len(body) // size)):
            chunk = body[num * size : (num + 1) * size]
            more = (num + 1) * size < len(body)
            msg = Message(
                type=MessageType.CON,
                code=Code.PUT,
                options=make_options(path=["example_data"], content_format=0),
                payload=chunk,
            )
            msg.add(OptionNumber.BLOCK1, Block.for_size(num, more, size).encode())
            result = await endpoint.request(msg)
            assert result.response is not None
            codes.append(result.response.code)
            if more:
                ack = result.response.block1
                assert ack is not None and ack.num == num and ack.more
        # Read it back in 16-byte blocks, the smallest size there is.
        readback = await blockwise_get(endpoint, ["example_data"], szx=0)
    assert codes[:-1] == [Code.CONTINUE] * (len(codes) - 1)
    # coap-server answers 2.01 when a PUT replaces its initial example data.
    assert codes[-1] in (Code.CREATED, Code.CHANGED)
    assert readback == body
    sent = relay.messages("c2s")
    assert sum(1 for _, m in sent if m.block1 is not None) == len(codes)


async def test_post_to_libcoap_resource_is_405_and_layer_stays_usable(tmp_path: Path) -> None:
    async with (
        coap_server(tmp_path) as (port, _server),
        layer_via_relay(port) as (endpoint, _relay),
    ):
        post = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(path=["example_data"]),
            payload=b"x" * 100,
        )
        result = await endpoint.request(post)
        after = await endpoint.request(get([]))
    assert result.response is not None and result.response.code == Code.METHOD_NOT_ALLOWED
    assert after.response is not None and after.response.code == Code.CONTENT


# -- DTLS-PSK --------------------------------------------------------------------------

IDENTITY = b"aiolwm2m-interop"
KEY = b"secret-psk-0123456789"
TIMING = HandshakeTiming(initial_timeout=0.2, max_timeout=1.6)


async def dtls_get(port: int, creds: PskCredentials, path: Sequence[str]) -> Message:
    conn = await dtls_client_connect("127.0.0.1", port, creds, TIMING)
    try:
        request = get(path, mid=0x1234, token=b"\x01\x02")
        conn.send(encode(request))
        while True:
            response = decode(await asyncio.wait_for(conn.recv(), 10))
            if response.mid == request.mid:
                return response
    finally:
        conn.close()


async def test_dtls_psk_get_against_coap_server_openssl(tmp_path: Path) -> None:
    async with coap_server(
        tmp_path, "-k", KEY.decode(), "-h", "", tool="coap-server-openssl", dtls=True
    ) as (port, server):
        response = await dtls_get(port + 1, PskCredentials(IDENTITY, KEY), [])
    assert response.type == MessageType.ACK and response.code == Code.CONTENT, server.log()
    assert b"libcoap" in response.payload
    assert response.token == b"\x01\x02"


async def test_dtls_wrong_psk_is_a_typed_handshake_failure(tmp_path: Path) -> None:
    async with coap_server(tmp_path, "-k", KEY.decode(), tool="coap-server-openssl", dtls=True) as (
        port,
        _server,
    ):
        with pytest.raises(DtlsHandshakeError) as info:
            await dtls_get(port + 1, PskCredentials(IDENTITY, b"not-the-key-at-all"), [])
    # libcoap's OpenSSL server silently discards our Finished, which it cannot
    # decrypt (RFC 6347 §4.1.2.7 allows it), and retransmits its own flight: no
    # alert ever arrives, so on the wire a wrong key looks like a lost flight and
    # the handshake ends in TIMEOUT (python-mbedtls servers send bad_record_mac,
    # which classifies as BAD_PSK). The error is typed either way.
    assert info.value.failure is HandshakeFailure.TIMEOUT
