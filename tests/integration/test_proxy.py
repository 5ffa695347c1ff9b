"""FaultProxy on real UDP sockets (127.0.0.1) between raw CoAP peers and the testbed server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    decode,
    encode,
    make_options,
)
from aiolwm2m.dtls.server import ServerSecurity
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.proxy import CoapRule, FaultProxy, RuleAction
from aiolwm2m.testbed.server import TestbedServer

pytestmark = pytest.mark.timeout(30)


class RawPeer(asyncio.DatagramProtocol):
    """A connected UDP socket that queues what it receives (datagrams and socket errors)."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.received.put_nowait(exc)

    def send(self, msg: Message) -> None:
        assert self.transport is not None
        self.transport.sendto(encode(msg))

    async def next(self, timeout: float = 5.0) -> bytes | Exception:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def reply(self, timeout: float = 5.0) -> Message:
        item = await self.next(timeout)
        assert isinstance(item, bytes), item
        return decode(item)


async def open_peer(port: int) -> RawPeer:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawPeer, remote_addr=("127.0.0.1", port))
    proto.transport = transport
    return proto


def register(ep: str, mid: int) -> Message:
    return Message(
        type=MessageType.CON,
        code=Code.POST,
        mid=mid,
        token=mid.to_bytes(2, "big"),
        options=make_options(path=["rd"], query=[f"ep={ep}", "lt=60", "lwm2m=1.1"]),
        payload=b"</3/0>",
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a counter the proxy updates from its own callbacks."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def bed() -> AsyncIterator[tuple[TestbedServer, FaultProxy]]:
    server = TestbedServer("127.0.0.1", 0)
    await server.start()

    proxy = FaultProxy(("127.0.0.1", server.port), seed=3, restart_upstream=server.restart)
    await proxy.start()
    yield server, proxy
    await proxy.stop()
    await server.stop()


async def test_forwards_and_gives_each_client_its_own_upstream_peer(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    server, proxy = bed
    a, b = await open_peer(proxy.port), await open_peer(proxy.port)
    a.send(register("ep-a", 1))
    b.send(register("ep-b", 2))
    assert (await a.reply()).code == Code.CREATED
    assert (await b.reply()).code == Code.CREATED
    addr_a = server.core.registrations["ep-a"].address
    addr_b = server.core.registrations["ep-b"].address
    assert addr_a != addr_b
    assert proxy.sessions == 2
    assert proxy.counters["up.forwarded"] == 2 and proxy.counters["down.forwarded"] == 2


async def test_respond_rule_answers_in_the_servers_place_with_max_age(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    server, proxy = bed
    rule = proxy.add_rule(CoapRule("POST /rd", code="4.29", max_age=7, count=1))
    peer = await open_peer(proxy.port)
    peer.send(register("ep", 10))
    resp = await peer.reply()
    assert (resp.type, resp.code, resp.mid, resp.max_age) == (MessageType.ACK, 0x9D, 10, 7)
    peer.send(register("ep", 10))  # a retransmission gets the same answer, count untouched
    assert (await peer.reply()).code == 0x9D
    assert rule.applied == 1 and proxy.counters["rule.retransmission"] == 1
    peer.send(register("ep", 11))  # count used up: forwarded to the real server
    assert (await peer.reply()).code == Code.CREATED
    assert "ep" in server.core.registrations


async def test_reset_rule_resets_a_con_and_drop_rule_swallows(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    _, proxy = bed
    proxy.add_rule(CoapRule("POST /rd", action=RuleAction.RESET, count=1))
    proxy.add_rule(CoapRule("POST /rd/*", action=RuleAction.DROP))
    peer = await open_peer(proxy.port)
    peer.send(register("ep", 20))
    rst = await peer.reply()
    assert (rst.type, rst.code, rst.mid) == (MessageType.RST, Code.EMPTY, 20)
    peer.send(
        Message(
            type=MessageType.CON, code=Code.POST, mid=21, options=make_options(path=["rd", "1"])
        )
    )
    await until(lambda: proxy.counters["rule.drop"] == 1)
    assert peer.received.empty()


async def test_unreachable_window_makes_the_connected_socket_see_refusal(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    _, proxy = bed
    peer = await open_peer(proxy.port)
    port = proxy.port
    await proxy.set_unreachable(True)
    assert not proxy.reachable
    peer.send(register("ep", 30))
    assert isinstance(await peer.next(), ConnectionRefusedError)
    await proxy.set_unreachable(False)
    assert proxy.port == port
    peer.send(register("ep", 31))
    assert (await peer.reply()).code == Code.CREATED


async def test_blackhole_then_clear(bed: tuple[TestbedServer, FaultProxy]) -> None:
    _, proxy = bed
    peer = await open_peer(proxy.port)
    proxy.set_faults("up", blackhole=True)
    peer.send(register("ep", 40))
    await until(lambda: proxy.counters["up.blackholed"] == 1)
    proxy.clear_faults()
    peer.send(register("ep", 41))
    assert (await peer.reply()).mid == 41
    assert peer.received.empty()


async def test_duplicate_and_delay_down(bed: tuple[TestbedServer, FaultProxy]) -> None:
    _, proxy = bed
    peer = await open_peer(proxy.port)
    proxy.set_faults("down", duplicate=1.0, delay=0.05, jitter=0.01)
    peer.send(register("ep", 50))
    first, second = await peer.reply(), await peer.reply()
    assert first == second and first.mid == 50
    assert proxy.counters["down.duplicated"] == 1 and proxy.counters["down.delayed"] == 2


async def test_corrupt_and_truncate_reach_the_server_damaged(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    server, proxy = bed
    peer = await open_peer(proxy.port)
    proxy.set_faults("up", truncate=1.0)
    peer.send(register("ep", 60))
    await until(lambda: proxy.counters["up.forwarded"] == 1)
    proxy.set_faults("up", truncate=0.0, corrupt=1.0)
    peer.send(register("ep", 61))
    await until(lambda: proxy.counters["up.forwarded"] == 2)
    assert proxy.counters["up.truncated"] == 1 and proxy.counters["up.corrupted"] == 1
    proxy.clear_faults()
    peer.send(register("ep", 62))
    while (resp := await peer.reply()).mid != 62:  # the damaged ones may have got a RST
        pass
    assert resp.code == Code.CREATED and "ep" in server.core.registrations


async def test_reorder_lets_the_next_datagram_overtake(
    bed: tuple[TestbedServer, FaultProxy],
) -> None:
    _, proxy = bed
    peer = await open_peer(proxy.port)
    proxy.set_faults("up", reorder=1.0)
    peer.send(register("ep-1", 70))
    await until(lambda: proxy.counters["up.reordered"] == 1)
    proxy.set_faults("up", reorder=0.0)
    peer.send(register("ep-2", 71))
    mids = [(await peer.reply()).mid, (await peer.reply()).mid]
    assert mids == [71, 70]


async def test_restart_upstream_uses_the_callback(bed: tuple[TestbedServer, FaultProxy]) -> None:
    server, proxy = bed
    peer = await open_peer(proxy.port)
    peer.send(register("ep", 80))
    await peer.reply()
    await proxy.restart_upstream()
    assert proxy.counters["upstream.restarts"] == 1 and server.running
    peer.send(register("ep", 81))
    assert (await peer.reply()).code == Code.CREATED


async def test_dtls_session_survives_duplicates_and_delay_and_rules_leave_it_alone() -> None:
    """Byte-level faults work on DTLS records; CoAP rules never touch them."""
    key, ep = bytes(range(16)), "dtls-dev"
    server = TestbedServer(security=ServerSecurity(psk_store={ep.encode(): key}))
    await server.start()
    proxy = FaultProxy(("127.0.0.1", server.port), seed=5)
    await proxy.start()
    proxy.set_faults("both", duplicate=0.5, delay=0.02, jitter=0.01)
    proxy.add_rule(CoapRule("*", code="5.03"))  # would break a plaintext Register
    account = ServerAccount(
        uri=f"coaps://127.0.0.1:{proxy.port}",
        psk_identity=ep.encode(),
        psk_key=key,
        retry=RetrySettings(bootstrap_on_registration_failure=False),
    )
    client = Client(ClientConfig(endpoint=ep, servers=(account,)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 20)
    finally:
        await client.stop()
        await proxy.stop()
        await server.stop()
    assert ep in server.core.registrations
    assert proxy.counters["up.duplicated"] + proxy.counters["down.duplicated"] > 0
    assert proxy.counters["up.delayed"] > 0
    assert not any(k.startswith("rule.") for k in proxy.counters)
