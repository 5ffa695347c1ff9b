"""Smoke test over real UDP on 127.0.0.1: the testbed server operates the client's data model.

The full operation matrix lives in the testbed's own integration tests and in
``tests/unit/client/test_operations.py``; this checks the wiring (engine,
driver jobs and actions, observe notifications) end to end, including an
async read hook answered through the runtime.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import NotAllowedError
from aiolwm2m.lwm2m import ContentFormat, Path
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.lwm2m.values import records_to_dict
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.server import TestbedServer

EP = "ops-smoke"


async def test_server_operates_the_client_data_model() -> None:
    async with TestbedServer(host="127.0.0.1", port=0) as server:
        config = ClientConfig(EP, (ServerAccount(server.uri, lifetime=60),))
        objects = default_objects(config)
        reboots: list[object] = []
        objects.tree.instance(3, 0).on_execute[4] = reboots.append

        async def slow_units() -> str:
            await asyncio.sleep(0.01)
            return "Cel"

        sensor = Instance({5700: 20.0}, on_read={5701: slow_units})
        objects.tree.add_object(3303, factory=lambda iid: Instance())
        objects.tree.add_instance(3303, 0, sensor)
        async with Client(config, objects):
            await server.wait_registered(EP, timeout=5)
            read = await server.read(EP, "/3303/0", ContentFormat.TLV, timeout=5)
            assert read.code == Code.CONTENT
            assert records_to_dict(read.records) == {
                Path.parse("/3303/0/5700"): 20.0,
                Path.parse("/3303/0/5701"): "Cel",  # from the async hook
            }
            write = await server.write(EP, "/3/0/15", "Europe/Oslo", ContentFormat.TEXT)
            assert write.code == Code.CHANGED
            assert objects.tree.instance(3, 0).values[15] == "Europe/Oslo"
            assert (await server.execute(EP, "/3/0/4", "1='x'", timeout=5)).code == Code.CHANGED
            assert reboots == [{1: "x"}]
            assert (await server.read(EP, "/3/0/4", timeout=5)).code == Code.METHOD_NOT_ALLOWED
            assert (await server.read(EP, "/0/0", timeout=5)).code == Code.NOT_FOUND
            observation = await server.observe(EP, "/3303/0/5700", ContentFormat.SENML_CBOR)
            assert observation.active
            sensor.set(5700, 21.5)
            note = await observation.next(timeout=5)
            assert records_to_dict(note.records) == {Path.parse("/3303/0/5700"): 21.5}


async def test_large_read_goes_block_wise_over_udp() -> None:
    """A Read bigger than one block arrives whole: the client slices, the testbed reassembles."""
    big = "".join(f"{i:06d};" for i in range(1500))  # 10.5 kB: eleven 1024-byte blocks
    async with TestbedServer(host="127.0.0.1", port=0) as server:
        config = ClientConfig(EP, (ServerAccount(server.uri, lifetime=60),))
        objects = default_objects(config)
        objects.tree.add_instance(3303, 0, Instance({5700: 20.0, 5750: big}))
        async with Client(config, objects):
            await server.wait_registered(EP, timeout=5)
            read = await server.read(EP, "/3303/0/5750", timeout=5)
            assert read.code == Code.CONTENT
            assert records_to_dict(read.records) == {Path.parse("/3303/0/5750"): big}
            tlv = await server.read(EP, "/3303/0", ContentFormat.SENML_CBOR, timeout=5)
            assert records_to_dict(tlv.records)[Path.parse("/3303/0/5750")] == big


async def test_send_over_udp() -> None:
    """Client.send() posts SenML to /dp; the testbed decodes it; a muted Send is refused."""
    async with TestbedServer(host="127.0.0.1", port=0) as server:
        config = ClientConfig(EP, (ServerAccount(server.uri, lifetime=60),))
        objects = default_objects(config)
        objects.tree.add_instance(3303, 0, Instance({5700: 20.5}))
        async with Client(config, objects) as client:
            await server.wait_registered(EP, timeout=5)
            before = time.time()
            outcome = await client.send(["/3303/0/5700", "/3/0/0"], timeout=5)
            assert (outcome.success, outcome.coap_code) == (True, "2.04")
            (data,) = server.core.sent
            assert records_to_dict(data.records) == {
                Path.parse("/3303/0/5700"): 20.5,
                Path.parse("/3/0/0"): "aiolwm2m",
            }
            assert all(before - 1 <= (r.time or 0) <= time.time() + 1 for r in data.records)
            json_outcome = await client.send(["/3303/0"], content_format=ContentFormat.SENML_JSON)
            assert json_outcome.success
            assert server.core.sent[-1].content_format == ContentFormat.SENML_JSON
            muted = await server.write(EP, "/1/0/23", True, ContentFormat.TEXT)
            assert muted.code == Code.CHANGED
            with pytest.raises(NotAllowedError):
                await client.send(["/3303/0/5700"])


async def test_root_composite_and_plain_cbor_over_udp() -> None:
    """Read-/Observe-Composite of ``/`` (Core §6.3.8) and a CBOR (60) Read, on the wire."""
    async with TestbedServer(host="127.0.0.1", port=0) as server:
        config = ClientConfig(EP, (ServerAccount(server.uri, lifetime=60),))
        objects = default_objects(config)
        sensor = Instance({5700: 20.5})
        objects.tree.add_instance(3303, 0, sensor)
        async with Client(config, objects):
            await server.wait_registered(EP, timeout=5)
            whole = await server.read_composite(EP, ["/"], ContentFormat.SENML_CBOR, timeout=5)
            assert whole.code == Code.CONTENT and whole.decode_error is None
            got = records_to_dict(whole.records)
            assert got[Path.parse("/3303/0/5700")] == 20.5
            assert got[Path.parse("/3/0/0")] == "aiolwm2m"
            assert got[Path.parse("/1/0/1")] == 60
            assert {p.object_id for p in got} == {1, 3, 4, 3303}  # never the Security object
            cbor = await server.read(EP, "/3303/0/5700", ContentFormat.CBOR, timeout=5)
            assert (cbor.code, cbor.content_format, cbor.payload) == (
                Code.CONTENT,
                ContentFormat.CBOR,
                bytes.fromhex("f94d20"),
            )
            assert records_to_dict(cbor.records) == {Path.parse("/3303/0/5700"): 20.5}
            observation = await server.observe_composite(EP, ["/"], ContentFormat.SENML_JSON)
            assert observation.active
            sensor.set(5700, 22.25)
            note = await observation.next(timeout=5)
            assert records_to_dict(note.records)[Path.parse("/3303/0/5700")] == 22.25
