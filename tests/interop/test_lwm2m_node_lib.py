"""Our client against lwm2m-node-lib's LwM2M server (npm, an LwM2M 1.0-era Node.js stack).

The server is driven through its JavaScript API by ``node/lwm2m_server_driver.js``
so the test decides each operation and checks what the library reports.

Quirks of this peer the client has to live with:
* Registration answers carry ONE Location-Path option holding ``rd/<n>`` (a
  slash inside a segment), not two segments; the client must send Update and
  De-register back with exactly that option for the library to route them.
* Writes use the legacy, pre-registration Content-Format 1541
  (``application/vnd.oma.lwm2m+text``). Decision: accepted as plain text, like
  the other legacy numbers 1542-1544 (TLV, JSON, opaque); a server that was
  built against the 1.0 drafts then still works, and nothing is ambiguous
  because the numbers are not reused for anything else.
* Reads ask for ``text/plain`` (0), so only single resources are read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.observe import ObserveSettings
from aiolwm2m.client.operations import OperationHandler, default_objects
from aiolwm2m.lwm2m.path import Path as LwPath
from aiolwm2m.lwm2m.tree import ObjectTree
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.bootstrap import BootstrapConfig, BootstrapServer, ProvisionedServer
from interop.peers import NodeLwm2mServer, Relay, node_lib_or_skip

ENDPOINT = "interop-node"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NodeLwm2mServer]:
    srv = NodeLwm2mServer(node_lib_or_skip(), tmp_path / "node.log")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def start_client(
    server: NodeLwm2mServer, observe: ObserveSettings | None = None, uri: str | None = None
) -> Client:
    config = ClientConfig(ENDPOINT, servers=(ServerAccount(uri=uri or server.uri, lifetime=300),))
    cl = Client(config, default_objects(config, observe=observe))
    registered = asyncio.Event()
    cl.subscribe(lambda e: registered.set() if e.name == "registered" else None)
    await cl.start()
    event = await server.next_event()
    assert event["event"] == "registered", event
    # The library reports the registration before it answers: wait for the client too.
    await asyncio.wait_for(registered.wait(), 10)
    return cl


@pytest.fixture
async def client(server: NodeLwm2mServer) -> AsyncIterator[Client]:
    cl = await start_client(server)
    try:
        yield cl
    finally:
        await cl.stop()


def held(client: Client, path: str) -> object:
    """The value the client's data model holds (what the server should see)."""
    return tree(client).get(LwPath.parse(path))


async def test_register_seen_by_lwm2m_node_lib(server: NodeLwm2mServer) -> None:
    config = ClientConfig(ENDPOINT, servers=(ServerAccount(uri=server.uri, lifetime=300),))
    ops = default_objects(config)
    async with Client(config, ops) as cl:
        registered = await cl.wait_for(ev.Registered, 10)
        event = await server.next_event()
        devices = await server.command("devices")
    assert isinstance(registered, ev.Registered)
    assert event["event"] == "registered" and event["endpoint"] == ENDPOINT
    assert event["lifetime"] == "300" and event["binding"] == "U"
    assert event["payload"].encode() == ops.registration_payload("1.1")
    # The library's single "rd/<n>" Location-Path option, kept as one segment.
    assert registered.location.startswith("/rd/")
    assert [d["name"] for d in devices["value"]] == [ENDPOINT]
    # Leaving the block de-registered at that location.
    assert (await server.next_event())["event"] == "deregistered"


@pytest.mark.parametrize(("version", "binding"), [("1.0", "UQ"), ("1.1", "U")])
async def test_queue_mode_registration_seen_by_lwm2m_node_lib(
    server: NodeLwm2mServer, version: str, binding: str
) -> None:
    """Issue 12 item 1: as 1.0 queue mode is the binding "UQ"; as 1.1 it is b=U plus
    the Q parameter, which this 1.0-era library does not know and ignores."""
    account = ServerAccount(uri=server.uri, lifetime=300, binding="UQ")
    config = ClientConfig(
        ENDPOINT, servers=(account,), registration=RegistrationConfig(lwm2m_version=version)
    )
    async with Client(config, default_objects(config)) as cl:
        await cl.wait_for(ev.Registered, 10)
        event = await server.next_event()
    assert event["event"] == "registered"
    assert (event["version"], event["binding"]) == (version, binding)
    assert (await server.next_event())["event"] == "deregistered"


async def test_update_reaches_lwm2m_node_lib(server: NodeLwm2mServer, client: Client) -> None:
    updated = asyncio.ensure_future(client.wait_for(ev.Updated, 10))
    await asyncio.sleep(0)  # let wait_for subscribe before the Update can be answered
    client.trigger_update()
    event = await server.next_event()
    assert event == {"event": "updated", "endpoint": ENDPOINT, "payload": ""}
    await updated


async def test_read_device_resources(server: NodeLwm2mServer, client: Client) -> None:
    for path in ("/3/0/0", "/3/0/1", "/3/0/2", "/3/0/3", "/3/0/16"):
        reply = await server.command("read", endpoint=ENDPOINT, path=path)
        assert reply["ok"], reply
        assert reply["value"] == str(held(client, path))


async def test_read_integer_resource(server: NodeLwm2mServer, client: Client) -> None:
    reply = await server.command("read", endpoint=ENDPOINT, path="/3/0/21")
    assert reply["ok"], reply
    assert int(reply["value"]) == held(client, "/3/0/21")


async def test_legacy_1541_write_is_accepted(server: NodeLwm2mServer, client: Client) -> None:
    reply = await server.command("write", endpoint=ENDPOINT, path="/3/0/14", value="+02:00")
    assert reply["ok"], reply
    assert held(client, "/3/0/14") == "+02:00"
    back = await server.command("read", endpoint=ENDPOINT, path="/3/0/14")
    assert back["value"] == "+02:00"


async def test_write_to_read_only_resource_refused(server: NodeLwm2mServer, client: Client) -> None:
    before = held(client, "/3/0/0")
    reply = await server.command("write", endpoint=ENDPOINT, path="/3/0/0", value="evil")
    assert not reply["ok"]
    assert "4.05" in reply["error"]
    assert held(client, "/3/0/0") == before


def tree(client: Client) -> ObjectTree:
    ops = client.objects
    assert isinstance(ops, OperationHandler)
    return ops.tree


async def test_observe_device_resource(server: NodeLwm2mServer) -> None:
    # The default settings (Observe numbers from 1: see the next test for why not 0).
    client = await start_client(server)
    try:
        reply = await server.command("observe", endpoint=ENDPOINT, path="/3/0/15")
        assert reply["ok"], reply
        assert reply["value"] == held(client, "/3/0/15")
        tree(client).set("/3/0/15", "Europe/Berlin")
        event = await server.next_event()
        assert event == {"event": "notification", "path": "/3/0/15", "value": "Europe/Berlin"}
        # A change made by the server itself is notified too.
        await server.command("write", endpoint=ENDPOINT, path="/3/0/15", value="Asia/Tokyo")
        event = await server.next_event()
        assert event["value"] == "Asia/Tokyo"
    finally:
        await client.stop()


async def test_observe_sequence_zero_loses_the_first_value(server: NodeLwm2mServer) -> None:
    """node-coap 0.22 (under lwm2m-node-lib) only takes a response whose Observe number is
    greater than the last one, starting from 0, so a first response with Observe 0 (valid,
    RFC 7641 §3.4) is dropped: the library's observe() then completes only at the first
    change, with that changed value as its "current" one."""
    relay = Relay(upstream=("127.0.0.1", server.port))
    await relay.start()
    client = await start_client(server, ObserveSettings(initial_sequence=0), uri=relay.uri)
    try:
        pending = asyncio.ensure_future(
            server.command("observe", endpoint=ENDPOINT, path="/3/0/15")
        )

        def first_response_sent() -> bool:
            return any(m.observe == 0 and m.payload for _, m in relay.messages("c2s"))

        await relay.wait_for(first_response_sent, 10, "the 2.05 with Observe 0")
        tree(client).set("/3/0/15", "Europe/Berlin")
        reply = await asyncio.wait_for(pending, 10)
        # Had the library taken the first response, it would have answered "Etc/UTC".
        assert reply == {"id": reply["id"], "ok": True, "value": "Europe/Berlin"}
    finally:
        await client.stop()
        relay.close()


async def test_discover_device_instance(server: NodeLwm2mServer, client: Client) -> None:
    reply = await server.command("discover", endpoint=ENDPOINT, path="/3/0")
    assert reply["ok"], reply
    assert reply["value"].startswith("</3/0>")
    for rid in (0, 1, 2, 3, 13, 14, 15, 16, 21):
        assert f"</3/0/{rid}>" in reply["value"]


async def test_execute_registration_update_trigger(server: NodeLwm2mServer, client: Client) -> None:
    reply = await server.command("execute", endpoint=ENDPOINT, path="/1/0/8")
    assert reply["ok"], reply
    assert await server.next_event() == {"event": "updated", "endpoint": ENDPOINT, "payload": ""}


async def test_legacy_1541_lifetime_write_is_announced_by_update(
    server: NodeLwm2mServer, client: Client
) -> None:
    reply = await server.command("write", endpoint=ENDPOINT, path="/1/0/1", value="120")
    assert reply["ok"], reply
    assert held(client, "/1/0/1") == 120
    assert (await server.next_event())["event"] == "updated"
    devices = await server.command("devices")
    assert [d["lifetime"] for d in devices["value"]] == ["120"]


async def test_execute_disable_deregisters_and_registers_after_the_timeout(
    server: NodeLwm2mServer, client: Client
) -> None:
    """Issue 12 item 3: the library sees the 2.04, then the De-register, then (Disable
    Timeout written to 1 s with its legacy text format) a new registration."""
    reply = await server.command("write", endpoint=ENDPOINT, path="/1/0/5", value="1")
    assert reply["ok"], reply
    reply = await server.command("execute", endpoint=ENDPOINT, path="/1/0/4")
    assert reply["ok"], reply
    assert (await server.next_event())["event"] == "deregistered"
    again = await server.next_event()
    assert again["event"] == "registered" and again["endpoint"] == ENDPOINT


async def test_execute_bootstrap_request_trigger_without_a_bootstrap_account(
    server: NodeLwm2mServer, client: Client
) -> None:
    """Issue 12 item 4: no Bootstrap-Server account, so /1/x/9 is 4.05 and nothing changes."""
    reply = await server.command("execute", endpoint=ENDPOINT, path="/1/0/9")
    assert not reply["ok"]
    assert "4.05" in reply["error"]
    devices = await server.command("devices")
    assert [d["name"] for d in devices["value"]] == [ENDPOINT]


async def test_bootstrapped_instance_ids_reach_lwm2m_node_lib(server: NodeLwm2mServer) -> None:
    """Issue 12 item 2: our Bootstrap-Server writes the account as /0/1 and /1/1 (as
    Wakaama's does); the library sees </1/1> registered and reads the account there."""
    provision = ProvisionedServer(
        uri=server.uri, ssid=4, server={1: 300}, security_instance=1, server_instance=1
    )
    async with BootstrapServer(BootstrapConfig(default=(provision,))) as bs:
        config = ClientConfig(ENDPOINT, bootstrap=ServerAccount(uri=bs.uri))
        async with Client(config, default_objects(config)) as cl:
            await cl.wait_for(ev.Registered, 20)
            event = await server.next_event()
            assert event["event"] == "registered"
            assert "</1/1>" in event["payload"].split(",")
            reply = await server.command("read", endpoint=ENDPOINT, path="/1/1/0")
            assert reply == {"id": reply["id"], "ok": True, "value": "4"}
            missing = await server.command("read", endpoint=ENDPOINT, path="/1/0/0")
            # The library turns a 4.04 answer into its ResourceNotFound error.
            assert not missing["ok"] and "resource was not found" in missing["error"]


async def test_a_write_of_an_unknown_binding_is_refused(
    server: NodeLwm2mServer, client: Client
) -> None:
    """Issue 12 item 5: 4.00, the account (and the registration) unchanged."""
    reply = await server.command("write", endpoint=ENDPOINT, path="/1/0/7", value="X")
    assert not reply["ok"]
    assert "4.00" in reply["error"], reply
    back = await server.command("read", endpoint=ENDPOINT, path="/1/0/7")
    assert back["value"] == "U"
    assert held(client, "/1/0/7") == "U"
