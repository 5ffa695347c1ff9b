"""The client's answers as datagrams, over real UDP on 127.0.0.1, to a bare CoAP peer.

The peer is a plain asyncio socket that registers the client and then sends
requests byte for byte, so these tests see exactly what a server would (no
testbed logic in between): RFC 7252 §5.4.1 critical options, the
Register payload's root link, and how queue mode is spelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import Code, Message, MessageType, OptionNumber, decode, encode
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.runtime.aio import Client

TIMEOUT = 5.0


class BarePeer(asyncio.DatagramProtocol):
    """A server socket that hands every datagram to the test, decoded."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.inbox: asyncio.Queue[tuple[Message, tuple[str, int]]] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait((decode(data), addr))

    async def receive(self) -> tuple[Message, tuple[str, int]]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)

    def send(self, msg: Message, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(encode(msg), addr)


@pytest.fixture
async def registered() -> AsyncIterator[tuple[BarePeer, tuple[str, int], Message]]:
    """A client registered with the bare peer: (peer, client address, the Register)."""
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(BarePeer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    config = ClientConfig("wire", (ServerAccount(f"coap://127.0.0.1:{port}", lifetime=300),))
    client = Client(config, default_objects(config))
    await client.start()
    try:
        register, addr = await peer.receive()
        assert register.code == Code.POST and register.uri_path == ["rd"]
        created = Message(MessageType.ACK, Code.CREATED, register.mid, register.token)
        created.add(OptionNumber.LOCATION_PATH, b"rd").add(OptionNumber.LOCATION_PATH, b"1")
        peer.send(created, addr)
        await client.wait_for(ev.Registered, TIMEOUT)
        yield peer, addr, register
    finally:
        await client.stop()
        transport.close()


def manufacturer_get(mtype: MessageType, mid: int, option: int | None) -> Message:
    msg = Message(mtype, Code.GET, mid, b"tok" + bytes([mid & 0xFF]))
    for segment in (b"3", b"0", b"0"):
        msg.add(OptionNumber.URI_PATH, segment)
    if option is not None:
        msg.add(option, b"\x01")
    return msg


async def test_unrecognised_critical_option_is_4_02_for_con_and_reset_for_non(
    registered: tuple[BarePeer, tuple[str, int], Message],
) -> None:
    peer, addr, _ = registered
    peer.send(manufacturer_get(MessageType.CON, 0x100, 9), addr)
    answer, _ = await peer.receive()
    assert (answer.type, answer.code, answer.mid, answer.token) == (
        MessageType.ACK,
        Code.BAD_OPTION,
        0x100,
        b"tok\x00",
    )
    peer.send(manufacturer_get(MessageType.NON, 0x101, 9), addr)
    answer, _ = await peer.receive()
    assert (answer.type, answer.code, answer.mid) == (MessageType.RST, Code.EMPTY, 0x101)
    # An unknown *elective* (even) option is ignored: the Read is answered.
    peer.send(manufacturer_get(MessageType.CON, 0x102, 10), addr)
    answer, _ = await peer.receive()
    assert (answer.type, answer.code, answer.payload) == (
        MessageType.ACK,
        Code.CONTENT,
        b"aiolwm2m",
    )


async def test_register_announces_the_content_formats_in_a_root_link(
    registered: tuple[BarePeer, tuple[str, int], Message],
) -> None:
    _, _, register = registered
    assert "lwm2m=1.1" in register.uri_query
    links = linkformat.decode(register.payload)
    assert links[0].target == "/"
    assert links[0].get("rt") == "oma.lwm2m"
    assert links[0].get("ct") == "60 110 112 11542 11543"
    assert register.payload.startswith(b'</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",')


async def test_queue_mode_goes_out_as_b_u_and_q_from_a_1_1_client() -> None:
    """Issue 12 item 1: LwM2M 1.1 has no "UQ" binding; Leshan refuses it with 4.00."""
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(BarePeer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    account = ServerAccount(f"coap://127.0.0.1:{port}", lifetime=300, binding="UQ")
    config = ClientConfig("wire", (account,))
    client = Client(config, default_objects(config))
    await client.start()
    try:
        register, _addr = await peer.receive()
    finally:
        await client.stop()
        transport.close()
    assert register.uri_path == ["rd"]
    assert register.uri_query == ["ep=wire", "lt=300", "lwm2m=1.1", "b=U", "Q"]
