"""Access Control (/2) with two servers over real UDP: rights enforced per server.

The client registers to two testbed servers. By the default rights (see
``lwm2m.objects.build_default_tree``) server 1 owns /3/0 and /4/0 and server 2
may only read them; each server owns its own /1 instance and the other has no
access to it. An unauthorised operation is answered 4.01 (LwM2M Core §7.3 via
Transport §6.4) and changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import Code
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.server import TestbedServer

FAST = TransmissionParameters(ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=2)
EP = "acl-dev"


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[TestbedServer, TestbedServer, Client]]:
    one, two = TestbedServer(params=FAST), TestbedServer(params=FAST)
    await one.start()
    await two.start()
    config = ClientConfig(
        endpoint=EP,
        servers=(
            ServerAccount(one.uri, 1, lifetime=60),
            ServerAccount(two.uri, 2, lifetime=60),
        ),
        coap=FAST,
    )
    client = Client(config, default_objects(config))
    await client.start()
    await one.wait_registered(EP, timeout=10)
    await two.wait_registered(EP, timeout=10)
    yield one, two, client
    await client.close()
    await one.stop()
    await two.stop()


async def test_second_server_may_read_but_not_write_the_device(
    two_servers: tuple[TestbedServer, TestbedServer, Client],
) -> None:
    one, two, _client = two_servers
    assert (await two.read(EP, "/3/0/0", ContentFormat.TEXT)).code == Code.CONTENT
    before = await one.read(EP, "/3/0/14", ContentFormat.TEXT)
    refused = await two.write(EP, "/3/0/14", "+09:00", ContentFormat.TEXT)
    assert refused.code == Code.UNAUTHORIZED
    assert (await one.read(EP, "/3/0/14", ContentFormat.TEXT)).payload == before.payload
    assert (await two.execute(EP, "/3/0/4")).code == Code.UNAUTHORIZED  # Reboot


async def test_a_server_cannot_touch_the_other_servers_instance(
    two_servers: tuple[TestbedServer, TestbedServer, Client],
) -> None:
    one, two, _client = two_servers
    own = await two.read(EP, "/1/1/0", ContentFormat.TEXT)
    assert (own.code, own.payload) == (Code.CONTENT, b"2")
    assert (await two.read(EP, "/1/0", ContentFormat.TLV)).code == Code.UNAUTHORIZED
    refused = await two.write(EP, "/1/0/1", 5, ContentFormat.TEXT)
    assert refused.code == Code.UNAUTHORIZED
    lifetime = await one.read(EP, "/1/0/1", ContentFormat.TEXT)
    assert (lifetime.code, lifetime.payload) == (Code.CONTENT, b"60")
