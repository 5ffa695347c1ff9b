"""The testbed server performs every LwM2M operation on a running client over UDP.

Real sockets on 127.0.0.1: ``aiolwm2m.runtime.aio.Client`` with the default
data model plus a Temperature instance (3303) and a test object holding one
resource of every type, and :class:`TestbedServer` driving it. Values are
checked after decoding, in every content format the client supports; error
answers are checked by code. Waits are on notifications and events, bounded by
generous timeouts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.cli.server_cmd import CommandShell
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.message import Code, Message, OptionNumber, encode_uint
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.model import ObjectDef, ObjLnk, Operations, ResourceDef, ResourceType
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed import operations as ops
from aiolwm2m.testbed.server import TestbedServer

client_operations = pytest.importorskip("aiolwm2m.client.operations")

FAST = TransmissionParameters(ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=2)
EP = "ops-dev"
P = Path.parse
F = ContentFormat

# Formats that carry several values, and all value formats for one resource.
MULTI = (F.TLV, F.SENML_JSON, F.SENML_CBOR, F.LWM2M_CBOR)
SINGLE = (F.TEXT, *MULTI)

TEST_OBJECT = ObjectDef(
    id=32769,
    name="Every type",
    multiple=True,
    resources={
        0: ResourceDef(0, "Opaque", ResourceType.OPAQUE, Operations.RW),
        1: ResourceDef(1, "Integers", ResourceType.INTEGER, Operations.RW, multiple=True),
        2: ResourceDef(2, "String", ResourceType.STRING, Operations.RW),
        3: ResourceDef(3, "Run", ResourceType.NONE, Operations.E),
        4: ResourceDef(4, "Boolean", ResourceType.BOOLEAN, Operations.RW),
        5: ResourceDef(5, "Float", ResourceType.FLOAT, Operations.RW),
        6: ResourceDef(6, "Time", ResourceType.TIME, Operations.RW),
        7: ResourceDef(7, "Link", ResourceType.OBJLNK, Operations.RW),
        8: ResourceDef(8, "Read only", ResourceType.INTEGER, Operations.R),
    },
)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVERY_TYPE = {
    0: b"\x00\x01\xfe\xff",
    1: {0: 1, 1: -2},
    2: "hello",
    4: True,
    5: 2.5,
    6: T0,
    7: ObjLnk(3, 0),
    8: 7,
}


@dataclass
class Device:
    server: TestbedServer
    client: Client
    model: object  # client_operations.OperationHandler (typed loosely: importorskip)
    executed: list[dict[int, str | None]]

    def set(self, path: str, value: object) -> None:
        self.model.tree.set(path, value)  # type: ignore[attr-defined]


@pytest.fixture
async def device() -> AsyncIterator[Device]:
    registry = load_builtin()
    registry.add(TEST_OBJECT)  # the server decodes TLV with the client's definitions
    server = TestbedServer("127.0.0.1", 0, params=FAST, types=registry.type_of)
    await server.start()
    retry = RetrySettings(communication_retry_count=1, bootstrap_on_registration_failure=False)
    config = ClientConfig(
        endpoint=EP,
        servers=(ServerAccount(uri=server.uri, lifetime=300, retry=retry),),
        coap=FAST,
    )
    model = client_operations.default_objects(config)
    executed: list[dict[int, str | None]] = []
    model.tree.add_instance(3303, 0, Instance({5700: 21.5, 5701: "Cel", 5750: "room", 5601: 18.0}))
    model.tree.add_object(TEST_OBJECT.id, definition=TEST_OBJECT, factory=lambda iid: Instance())
    model.tree.add_instance(
        TEST_OBJECT.id, 0, Instance(EVERY_TYPE, on_execute={3: executed.append})
    )
    client = Client(config, model)
    await client.start()
    await server.wait_registered(EP, 10)
    yield Device(server, client, model, executed)
    await client.stop()
    await server.stop()


# -- Read -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SINGLE, ids=lambda f: F(f).name)
async def test_read_resource_in_every_format(device: Device, fmt: int) -> None:
    result = await device.server.read(EP, "/3303/0/5700", fmt)
    assert result.code == Code.CONTENT, result.lines()
    assert result.content_format == fmt
    assert result.values == {P("/3303/0/5700"): 21.5}


@pytest.mark.parametrize("fmt", MULTI, ids=lambda f: F(f).name)
async def test_read_instance_of_every_type(device: Device, fmt: int) -> None:
    result = await device.server.read(EP, "/32769/0", fmt)
    assert result.ok, result.lines()
    expected = {
        P("/32769/0/0"): EVERY_TYPE[0],
        P("/32769/0/1/0"): 1,
        P("/32769/0/1/1"): -2,
        P("/32769/0/2"): "hello",
        P("/32769/0/4"): True,
        P("/32769/0/5"): 2.5,
        P("/32769/0/6"): T0,
        P("/32769/0/7"): ObjLnk(3, 0),
        P("/32769/0/8"): 7,
    }
    assert result.values == expected


async def test_read_opaque_and_object(device: Device) -> None:
    opaque = await device.server.read(EP, "/32769/0/0", F.OPAQUE)
    assert opaque.values == {P("/32769/0/0"): EVERY_TYPE[0]}
    whole = await device.server.read(EP, "/3303", F.SENML_CBOR)
    assert whole.value("/3303/0/5701") == "Cel"
    default = await device.server.read(EP, "/3303/0/5701")  # no Accept: client's choice
    assert default.ok and default.value("/3303/0/5701") == "Cel"


async def test_large_read(device: Device) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(3000))
    device.set("/3303/0/5750", text)
    result = await device.server.read(EP, "/3303/0/5750", F.TEXT)
    assert result.ok, result.lines()
    assert result.value("/3303/0/5750") == text


# -- Write ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SINGLE, ids=lambda f: F(f).name)
async def test_write_resource_in_every_format(device: Device, fmt: int) -> None:
    written = await device.server.write(EP, "/32769/0/2", f"v{fmt}", fmt)
    assert written.code == Code.CHANGED, written.lines()
    assert (await device.server.read(EP, "/32769/0/2")).value("/32769/0/2") == f"v{fmt}"


async def test_write_opaque(device: Device) -> None:
    written = await device.server.write(EP, "/32769/0/0", b"\x10\x20", F.OPAQUE)
    assert written.code == Code.CHANGED, written.lines()
    back = await device.server.read(EP, "/32769/0/0", F.OPAQUE)
    assert back.value("/32769/0/0") == b"\x10\x20"


@pytest.mark.parametrize("fmt", MULTI, ids=lambda f: F(f).name)
async def test_partial_update_and_replace_of_a_multiple_resource(device: Device, fmt: int) -> None:
    server = device.server
    partial = {"/32769/0/5": -1.25, "/32769/0/4": False}
    assert (await server.write(EP, "/32769/0", partial, fmt, replace=False)).code == Code.CHANGED
    replaced = await server.write(EP, "/32769/0/1", {"/32769/0/1/7": 70}, fmt)
    assert replaced.code == Code.CHANGED, replaced.lines()
    values = (await server.read(EP, "/32769/0", F.SENML_JSON)).values
    assert values[P("/32769/0/5")] == -1.25 and values[P("/32769/0/4")] is False
    assert values[P("/32769/0/1/7")] == 70
    assert P("/32769/0/1/0") not in values  # replace dropped the old instances
    assert values[P("/32769/0/2")] == "hello"  # partial update kept the rest


@pytest.mark.parametrize("fmt", (F.SENML_JSON, F.SENML_CBOR), ids=lambda f: F(f).name)
async def test_composite_write_then_read(device: Device, fmt: int) -> None:
    server = device.server
    written = await server.write_composite(EP, {"/32769/0/2": "both", "/1/0/3": 11}, fmt)
    assert written.code == Code.CHANGED, written.lines()
    read = await server.read_composite(EP, ["/32769/0/2", "/1/0/3", "/3303/0"], fmt)
    assert read.ok, read.lines()
    assert read.value("/32769/0/2") == "both"
    assert read.value("/1/0/3") == 11
    assert read.value("/3303/0/5700") == 21.5


# -- Execute, Create, Delete, Discover, Write-Attributes ------------------------------------


async def test_execute_with_arguments(device: Device) -> None:
    result = await device.server.execute(EP, "/32769/0/3", "0='on',1")
    assert result.code == Code.CHANGED, result.lines()
    plain = await device.server.execute(EP, "/32769/0/3")
    assert plain.code == Code.CHANGED
    assert device.executed == [{0: "on", 1: None}, {}]


@pytest.mark.parametrize("fmt", MULTI, ids=lambda f: F(f).name)
async def test_create_read_delete(device: Device, fmt: int) -> None:
    server = device.server
    created = await server.create(EP, 32769, {2: "new", 5: 1.5}, fmt, instance_id=4)
    assert created.code == Code.CREATED, created.lines()
    back = await server.read(EP, "/32769/4", F.SENML_JSON)
    assert back.value("/32769/4/2") == "new" and back.value("/32769/4/5") == 1.5
    assert (await server.delete(EP, "/32769/4")).code == Code.DELETED
    assert (await server.read(EP, "/32769/4")).code == Code.NOT_FOUND


async def test_create_without_instance_id_reports_the_location(device: Device) -> None:
    created = await device.server.create(EP, 32769, {2: "anon"})
    assert created.code == Code.CREATED, created.lines()
    assert created.location is not None and created.location.object_id == 32769
    assert created.location.instance_id != 0
    back = await device.server.read(EP, created.location, F.TLV)
    assert back.value(created.location.child(2)) == "anon"


async def test_discover_shows_written_attributes(device: Device) -> None:
    server = device.server
    attrs = await server.write_attributes(EP, "/3303/0/5700", pmin=2, pmax=30, gt=25)
    assert attrs.code == Code.CHANGED, attrs.lines()
    found = await server.discover(EP, "/3303/0")
    assert found.content_format == F.LINK_FORMAT
    links = {link.target: link for link in found.links}
    assert "/3303/0/5701" in links
    assert links["/3303/0/5700"].get("pmin") == "2"
    assert links["/3303/0/5700"].get("gt") == "25"
    removed = await server.write_attributes(EP, "/3303/0/5700", gt=None)
    assert removed.code == Code.CHANGED
    again = {link.target: link for link in (await server.discover(EP, "/3303/0")).links}
    assert not again["/3303/0/5700"].has("gt")


# -- Error answers ----------------------------------------------------------------------------


async def test_bad_paths_are_not_found(device: Device) -> None:
    server = device.server
    for path in ("/9999", "/3303/7", "/3303/0/1234", "/0/0"):
        assert (await server.read(EP, path)).code == Code.NOT_FOUND, path
    assert (await server.delete(EP, "/32769/99")).code == Code.NOT_FOUND
    assert (await server.execute(EP, "/32769/9/3")).code == Code.NOT_FOUND


async def test_bad_payloads_are_bad_requests(device: Device) -> None:
    server = device.server
    bad = Message(code=Code.PUT, payload=b"not a float")
    for segment in ("32769", "0", "5"):
        bad.add(OptionNumber.URI_PATH, segment.encode())
    bad.add(OptionNumber.CONTENT_FORMAT, encode_uint(F.TEXT))
    request = ops.OperationRequest(ops.Op.WRITE, bad, P("/32769/0/5"))
    assert (await server.operation(EP, request)).code == Code.BAD_REQUEST
    garbage = Message(code=Code.PUT, payload=b"\xff\xff\xff")
    for segment in ("32769", "0"):
        garbage.add(OptionNumber.URI_PATH, segment.encode())
    garbage.add(OptionNumber.CONTENT_FORMAT, encode_uint(F.TLV))
    request = ops.OperationRequest(ops.Op.WRITE, garbage, P("/32769/0"))
    assert (await server.operation(EP, request)).code == Code.BAD_REQUEST
    attrs = await server.write_attributes(EP, "/3303/0/5700", pmin=10, pmax=5)
    assert attrs.code == Code.BAD_REQUEST


async def test_unsupported_formats(device: Device) -> None:
    server = device.server
    assert (await server.read(EP, "/3303/0/5700", 50)).code == Code.NOT_ACCEPTABLE
    assert (await server.read(EP, "/3303/0", F.TEXT)).code == Code.NOT_ACCEPTABLE
    raw = Message(code=Code.PUT, payload=b"{}")
    for segment in ("32769", "0", "2"):
        raw.add(OptionNumber.URI_PATH, segment.encode())
    raw.add(OptionNumber.CONTENT_FORMAT, encode_uint(50))  # application/json
    request = ops.OperationRequest(ops.Op.WRITE, raw, P("/32769/0/2"))
    assert (await server.operation(EP, request)).code == Code.UNSUPPORTED_CONTENT_FORMAT


async def test_operations_not_allowed(device: Device) -> None:
    server = device.server
    assert (await server.write(EP, "/32769/0/8", 1, F.TEXT)).code == Code.METHOD_NOT_ALLOWED
    assert (await server.execute(EP, "/32769/0/2")).code == Code.METHOD_NOT_ALLOWED
    assert (await server.read(EP, "/32769/0/3")).code == Code.METHOD_NOT_ALLOWED


# -- Observe ---------------------------------------------------------------------------------


async def test_observe_with_pmax_and_value_changes_then_active_cancel(device: Device) -> None:
    server = device.server
    obs = await server.observe(EP, "/3303/0/5700", F.TEXT, pmin=0, pmax=1)
    assert obs.active and obs.initial is not None and obs.initial.observe is not None
    assert obs.initial.value("/3303/0/5700") == 21.5
    forced = await obs.next(5)  # pmax forces a notification without a change
    assert forced.value("/3303/0/5700") == 21.5 and forced.observe is not None
    device.set("/3303/0/5700", 30.0)
    while (note := await obs.next(5)).value("/3303/0/5700") != 30.0:
        pass
    assert note.code == Code.CONTENT
    answer = await obs.cancel()
    assert answer is not None and answer.op is ops.Op.CANCEL_OBSERVE
    assert answer.value("/3303/0/5700") == 30.0 and answer.observe is None
    assert not obs.active and server.observations() == []
    assert server.core.open_requests() == {}


async def test_observe_passive_cancel_resets_the_next_notification(device: Device) -> None:
    server = device.server
    obs = await server.observe(EP, "/3303/0/5700", F.SENML_JSON, pmin=0, pmax=1)
    await obs.next(5)
    assert await obs.cancel(active=False) is None
    assert server.core.open_requests() == {}
    # The client's next notification is answered with RST; the client drops the
    # observation, so a new one starts cleanly and works.
    await asyncio.sleep(1.5)  # let a pmax notification go out and be reset
    again = await server.observe(EP, "/3303/0/5700", F.SENML_JSON)
    assert again.active
    device.set("/3303/0/5700", 40.0)
    while (await again.next(5)).value("/3303/0/5700") != 40.0:
        pass
    await again.cancel()


async def test_observe_instance_notifies_on_resource_change(device: Device) -> None:
    obs = await device.server.observe(EP, "/32769/0", F.SENML_CBOR)
    assert obs.initial is not None and obs.initial.value("/32769/0/2") == "hello"
    device.set("/32769/0/2", "changed")
    while (await obs.next(5)).value("/32769/0/2") != "changed":
        pass
    await obs.cancel()


async def test_observe_refused_for_a_missing_path(device: Device) -> None:
    obs = await device.server.observe(EP, "/3303/9/5700")
    assert not obs.active
    assert obs.initial is not None and obs.initial.code == Code.NOT_FOUND


async def test_observe_composite(device: Device) -> None:
    server = device.server
    obs = await server.observe_composite(EP, ["/3303/0/5700", "/32769/0/5"], F.SENML_CBOR)
    assert obs.active and obs.initial is not None
    assert obs.initial.values == {P("/3303/0/5700"): 21.5, P("/32769/0/5"): 2.5}
    device.set("/32769/0/5", 9.5)
    while (note := await obs.next(5)).values.get(P("/32769/0/5")) != 9.5:
        pass
    assert note.value("/3303/0/5700") == 21.5
    answer = await obs.cancel()
    assert answer is not None and answer.ok


# -- CLI ----------------------------------------------------------------------------------


async def test_cli_commands_drive_the_client(device: Device) -> None:
    """The ``aiolwm2m server`` command language, in-process, JSON lines out."""
    out: list[str] = []
    shell = CommandShell(device.server, out.append, jsonl=True, timeout=10)
    script = [
        f"wait {EP} 5",
        f"write {EP} /1/0/3 12",
        f"read {EP} /1/0/3 text",
        f"write {EP} /32769/0 2='two words' 5=0.5 partial",
        f"read-composite {EP} /32769/0/2 /32769/0/5 senml-json",
        f"write-composite {EP} /32769/0/2=composite",
        f"exec {EP} /32769/0/3 0='x'",
        f"create {EP} /32769/5 2=made",
        f"delete {EP} /32769/5",
        f"read {EP} /9999",
        f"discover {EP} /1/0",
        f"attr {EP} /3303/0/5700 pmin=0 pmax=1",
        "bogus",
    ]
    for line in script:
        assert await shell.run_line(line)
    results = [json.loads(line) for line in out]
    assert [(r.get("op"), r.get("code")) for r in results] == [
        ("write", "2.04"),
        ("read", "2.05"),
        ("write", "2.04"),
        ("read-composite", "2.05"),
        ("write-composite", "2.04"),
        ("execute", "2.04"),
        ("create", "2.01"),
        ("delete", "2.02"),
        ("read", "4.04"),
        ("discover", "2.05"),
        ("write-attributes", "2.04"),
        (None, None),  # the error line of 'bogus'
    ]
    assert results[1]["values"] == {"/1/0/3": 12}
    assert results[3]["values"] == {"/32769/0/2": "two words", "/32769/0/5": 0.5}
    assert "</1/0/3>" in results[9]["links"]
    assert "unknown command" in results[11]["error"]
    assert device.executed == [{0: "x"}]
    out.clear()
    assert await shell.run_line(f"observe {EP} /3303/0/5700 text")
    device.set("/3303/0/5700", 33.0)
    for _ in range(200):  # the watcher task prints notifications as they arrive
        if any('"/3303/0/5700": 33.0' in line for line in out[1:]):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"no notification printed: {out}")
    assert await shell.run_line(f"cancel {EP} /3303/0/5700")
    assert not await shell.run_line("quit")
    await shell.close()
    assert device.server.core.open_requests() == {}
