"""libcoap's ``coap-client`` (libcoap3-bin) sending requests to our running LwM2M client.

Our client talks to its LwM2M server from a *connected* UDP socket, so the
kernel drops datagrams from any other address: coap-client cannot reach it
directly. The client is therefore registered (with our testbed server)
through :class:`~interop.peers.Relay`, which is its server address; coap-client
sends to the relay's second port and the relay re-sends from the server
address, routing the client's answers back to coap-client by message id and
token. libcoap's bytes are untouched both ways.

Each payload libcoap received (``-o FILE``) is decoded twice, by our decoders
and independently (``json``, ``cbor2``, plain text, a minimal TLV walker that
shares no code with ours), and compared with the
values the client's data model holds. Resources that change by themselves
(/3/0/10 free memory, /3/0/13 current time) are checked for presence and type
only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cbor2
import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.operations import OperationHandler, default_objects
from aiolwm2m.coap.message import Code, Message, code_str, is_response
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.formats import ContentFormat, decode
from aiolwm2m.lwm2m.path import Path as LwPath
from aiolwm2m.lwm2m.tree import ObjectTree
from aiolwm2m.lwm2m.values import Record
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.server import TestbedServer
from interop.peers import Relay, libcoap_tool, run_tool

LIVE = {"/3/0/10", "/3/0/13"}  # change between reads by themselves


@dataclass
class Reply:
    """What coap-client got: the payload it wrote and the response as it left our client."""

    payload: bytes
    responses: list[Message]

    @property
    def code(self) -> int:
        return self.responses[-1].code


@dataclass
class Device:
    tool: str
    relay: Relay
    client: Client
    ops: OperationHandler
    server: TestbedServer
    tmp: Path

    @property
    def tree(self) -> ObjectTree:
        return self.ops.tree

    def url(self, path: str) -> str:
        return f"coap://127.0.0.1:{self.relay.front_port}{path}"

    async def coap_client(self, path: str, *args: str, timeout: float = 30.0) -> Reply:
        out = self.tmp / "out.bin"
        out.unlink(missing_ok=True)
        start = len(self.relay.seen)
        rc, _, err = await run_tool(
            [self.tool, "-o", str(out), *args, self.url(path)], timeout=timeout
        )
        assert rc == 0, err
        responses = [
            m
            for s in self.relay.seen[start:]
            if s.direction == "c2p" and (m := s.msg) is not None and is_response(m.code)
        ]
        payload = out.read_bytes() if out.exists() else b""
        return Reply(payload, responses)

    def expected(self, path: str) -> dict[str, object]:
        """Every readable resource (instance) value below ``path``, keyed by path string."""
        base = LwPath.parse(path)
        assert base.object_id is not None and base.instance_id is not None
        rids = (
            [base.resource_id]
            if base.resource_id is not None
            else self.tree.readable_resources(base.object_id, base.instance_id)
        )
        out: dict[str, object] = {}
        for rid in rids:
            rpath = LwPath.parse(f"/{base.object_id}/{base.instance_id}/{rid}")
            for rec in ObjectTree.to_records(rpath, self.tree.get(rpath)):
                out[str(rec.path)] = rec.value
        return out


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[Device]:
    tool = libcoap_tool("coap-client-notls")
    server = TestbedServer()
    await server.start()
    relay = Relay(upstream=("127.0.0.1", server.port))
    await relay.start()
    config = ClientConfig("interop-libcoap", servers=(ServerAccount(uri=relay.uri, lifetime=300),))
    ops = default_objects(config)
    client = Client(config, ops)
    registered = asyncio.Event()
    client.subscribe(lambda e: registered.set() if e.name == "registered" else None)
    await client.start()
    await asyncio.wait_for(registered.wait(), 10)
    try:
        yield Device(tool, relay, client, ops, server, tmp_path)
    finally:
        await client.stop()
        relay.close()
        await server.stop()


def stable(values: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if k not in LIVE}


def by_path(records: Sequence[Record]) -> dict[str, object]:
    return {str(r.path): r.value for r in records}


def json_value(value: object) -> object:
    """How SenML carries a value of ours (time as Unix seconds)."""
    return int(value.timestamp()) if isinstance(value, datetime) else value


# -- reads in every format ---------------------------------------------------------------


async def test_text_reads_of_single_resources(device: Device) -> None:
    for path in ("/3/0/0", "/3/0/1", "/3/0/2", "/3/0/3", "/3/0/15", "/3/0/16", "/3/0/21"):
        reply = await device.coap_client(path, "-A", "0")
        assert reply.code == Code.CONTENT, (path, code_str(reply.code))
        (value,) = device.expected(path).values()
        assert reply.payload.decode() == str(value)
        ours = decode(ContentFormat.TEXT, reply.payload, LwPath.parse(path), device.tree.type_of)
        assert by_path(ours) == {path: value}


def tlv_walk(data: bytes, prefix: str) -> dict[str, bytes]:
    """Independent OMA TLV reader (LwM2M Core §7.4.3): path → raw value bytes."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        kind = data[pos]
        pos += 1
        id_len = 2 if kind & 0x20 else 1
        ident = int.from_bytes(data[pos : pos + id_len], "big")
        pos += id_len
        len_len = (kind >> 3) & 0x3
        if len_len:
            length = int.from_bytes(data[pos : pos + len_len], "big")
            pos += len_len
        else:
            length = kind & 0x7
        value = data[pos : pos + length]
        pos += length
        if kind >> 6 in (0b00, 0b10):  # object instance / multiple resource: nested
            out |= tlv_walk(value, f"{prefix}/{ident}")
        else:
            out[f"{prefix}/{ident}"] = value
    return out


async def test_tlv_read_of_device_instance(device: Device) -> None:
    reply = await device.coap_client("/3/0", "-A", str(int(ContentFormat.TLV)))
    assert reply.code == Code.CONTENT
    assert reply.responses[-1].content_format == ContentFormat.TLV
    want = device.expected("/3/0")
    got = by_path(
        decode(ContentFormat.TLV, reply.payload, LwPath.parse("/3/0"), device.tree.type_of)
    )
    assert stable(got) == stable(want)
    assert got.keys() == want.keys()
    # Independently: strings are UTF-8, integers and times big-endian two's complement.
    raw = tlv_walk(reply.payload, "/3/0")
    assert raw.keys() == want.keys()
    for path, value in stable(want).items():
        if isinstance(value, str):
            assert raw[path].decode() == value
        else:
            assert int.from_bytes(raw[path], "big", signed=True) == value


async def test_senml_json_read_of_device_instance(device: Device) -> None:
    reply = await device.coap_client("/3/0", "-A", str(int(ContentFormat.SENML_JSON)))
    assert reply.code == Code.CONTENT
    want = device.expected("/3/0")
    # Independently: plain json, SenML base name + name resolution by hand.
    independent: dict[str, object] = {}
    base = ""
    for pack in json.loads(reply.payload):
        base = pack.get("bn", base)
        value = next(pack[k] for k in ("v", "vs", "vb", "vd", "vlo") if k in pack)
        independent[base + pack.get("n", "")] = value
    assert independent.keys() == want.keys()
    assert stable(independent) == {k: json_value(v) for k, v in stable(want).items()}
    ours = decode(
        ContentFormat.SENML_JSON, reply.payload, LwPath.parse("/3/0"), device.tree.type_of
    )
    assert stable(by_path(ours)) == stable(want)


async def test_senml_cbor_read_of_device_instance(device: Device) -> None:
    reply = await device.coap_client("/3/0", "-A", str(int(ContentFormat.SENML_CBOR)))
    assert reply.code == Code.CONTENT
    want = device.expected("/3/0")
    # Independently with cbor2: SenML CBOR labels bn=-2, n=0, v=2, vs=3, vb=4 (RFC 8428 §6).
    independent: dict[str, object] = {}
    base = ""
    for pack in cbor2.loads(reply.payload):
        base = pack.get(-2, base)
        value = next(pack[k] for k in (2, 3, 4, 8) if k in pack)
        independent[base + pack.get(0, "")] = value
    assert independent.keys() == want.keys()
    assert stable(independent) == {k: json_value(v) for k, v in stable(want).items()}
    ours = decode(
        ContentFormat.SENML_CBOR, reply.payload, LwPath.parse("/3/0"), device.tree.type_of
    )
    assert stable(by_path(ours)) == stable(want)


async def test_discover_device_instance(device: Device) -> None:
    reply = await device.coap_client("/3/0", "-A", "40")
    assert reply.code == Code.CONTENT
    assert reply.responses[-1].content_format == 40
    links = linkformat.decode(reply.payload)
    assert links[0].target == "/3/0"
    listed = {link.target for link in links[1:]}
    # Discover lists every resource, readable or not (the executable /3/0/4 too).
    readable = {f"/3/0/{rid}" for rid in device.tree.readable_resources(3, 0)}
    assert readable <= listed
    assert "/3/0/4" in listed


def senml_json_values(payload: bytes) -> dict[str, object]:
    """Path -> value of a SenML JSON pack, read with nothing but ``json``."""
    out: dict[str, object] = {}
    base = ""
    for pack in json.loads(payload):
        base = pack.get("bn", base)
        out[base + pack.get("n", "")] = next(
            pack[k] for k in ("v", "vs", "vb", "vd", "vlo") if k in pack
        )
    return out


async def test_read_composite_with_fetch(device: Device) -> None:
    fmt = str(int(ContentFormat.SENML_JSON))
    paths = ["/3/0/0", "/3/0/15", "/4/0/1"]
    request = json.dumps([{"n": p} for p in paths])
    reply = await device.coap_client("/", "-m", "fetch", "-t", fmt, "-A", fmt, "-e", request)
    assert reply.code == Code.CONTENT, code_str(reply.code)
    independent = senml_json_values(reply.payload)
    want: dict[str, object] = {}
    for path in paths:
        want |= device.expected(path)
    assert independent == {k: json_value(v) for k, v in want.items()}


async def test_read_composite_of_the_root_path(device: Device) -> None:
    """FETCH / naming ``/`` itself: every object the server may read (Core §6.3.8)."""
    fmt = str(int(ContentFormat.SENML_JSON))
    request = json.dumps([{"n": "/"}])
    reply = await device.coap_client("/", "-m", "fetch", "-t", fmt, "-A", fmt, "-e", request)
    assert reply.code == Code.CONTENT, code_str(reply.code)
    independent = senml_json_values(reply.payload)
    want: dict[str, object] = {}
    for object_id, instance_ids in device.tree.instance_ids().items():
        for iid in instance_ids if object_id != 0 else ():
            want |= device.expected(f"/{object_id}/{iid}")
    assert set(independent) == set(want)
    assert stable(independent) == {k: json_value(v) for k, v in stable(want).items()}


async def test_plain_cbor_reads_of_single_resources(device: Device) -> None:
    for path in ("/3/0/0", "/3/0/21", "/1/0/1", "/1/0/6"):
        reply = await device.coap_client(path, "-A", str(int(ContentFormat.CBOR)))
        assert reply.code == Code.CONTENT, (path, code_str(reply.code))
        assert reply.responses[-1].content_format == ContentFormat.CBOR
        (value,) = device.expected(path).values()
        assert cbor2.loads(reply.payload) == value  # one CBOR item, read independently


async def test_unrecognised_critical_option_gets_4_02(device: Device) -> None:
    """RFC 7252 §5.4.1: option 9 is critical (odd) and unknown to the client."""
    reply = await device.coap_client("/3/0/0", "-A", "0", "-O", "9,x")
    assert code_str(reply.code) == "4.02"
    assert reply.responses[-1].type.name == "ACK"
    # An unknown elective (even) option is ignored: the same Read is answered.
    reply = await device.coap_client("/3/0/0", "-A", "0", "-O", "10,x")
    assert (reply.code, reply.payload) == (Code.CONTENT, b"aiolwm2m")


async def test_write_composite_with_ipatch(device: Device) -> None:
    fmt = str(int(ContentFormat.SENML_JSON))
    body = json.dumps([{"n": "/3/0/15", "vs": "Europe/Paris"}, {"n": "/3/0/14", "vs": "+01:00"}])
    reply = await device.coap_client("/", "-m", "ipatch", "-t", fmt, "-e", body)
    assert reply.code == Code.CHANGED, code_str(reply.code)
    assert device.tree.get(LwPath.parse("/3/0/15")) == "Europe/Paris"
    assert device.tree.get(LwPath.parse("/3/0/14")) == "+01:00"


# -- observe, block-wise, NON -----------------------------------------------------------


async def test_observe_notifications_reach_coap_client(device: Device) -> None:
    path = "/3/0/15"
    before = device.tree.get(LwPath.parse(path))
    observing = asyncio.ensure_future(device.coap_client(path, "-s", "3", "-w", "-A", "0"))

    def notifications() -> list[Message]:
        return [m for _, m in device.relay.messages("c2p") if m.observe is not None]

    await device.relay.wait_for(lambda: len(notifications()) >= 1, 10, "the first response")
    device.tree.set(path, "Europe/Berlin")
    await device.relay.wait_for(lambda: len(notifications()) >= 2, 10, "a notification")
    device.tree.set(path, "Asia/Tokyo")
    await device.relay.wait_for(lambda: len(notifications()) >= 3, 10, "a notification")
    reply = await observing
    assert reply.payload.decode().split() == [before, "Europe/Berlin", "Asia/Tokyo"]
    seqs = [m.observe for m in notifications()]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    # When -s runs out, coap-client cancels with GET Observe:1; answered without Observe.
    cancels = [m for _, m in device.relay.messages("p2c") if m.observe == 1 and m.code == Code.GET]
    assert len(cancels) == 1
    token = cancels[0].token
    # No more notifications: a change now is followed only by the answer to a new read
    # (a notification would be sent as soon as the value is set, before that read).
    device.tree.set(path, "Europe/Rome")
    await device.coap_client("/3/0/0", "-A", "0")
    assert len(notifications()) == 3
    assert [m.observe for _, m in device.relay.messages("c2p") if m.token == token][-1] is None


async def test_blockwise_read_with_16_byte_blocks(device: Device) -> None:
    fmt = str(int(ContentFormat.SENML_JSON))
    reply = await device.coap_client("/3/0", "-A", fmt, "-b", "16")
    assert reply.code == Code.CONTENT
    blocks = [m.block2 for m in reply.responses]
    assert len(blocks) > 10
    assert all(b is not None and b.size == 16 for b in blocks)
    assert [b.num for b in blocks if b is not None] == list(range(len(blocks)))
    assert len(reply.payload) > 16 * (len(blocks) - 1)
    got = by_path(
        decode(ContentFormat.SENML_JSON, reply.payload, LwPath.parse("/3/0"), device.tree.type_of)
    )
    assert stable(got) == stable(device.expected("/3/0"))


async def test_blockwise_write_with_16_byte_blocks(device: Device) -> None:
    value = "America/Argentina/ComodRivadavia" * 3  # 96 bytes: six Block1 blocks
    start = len(device.relay.seen)
    reply = await device.coap_client("/3/0/15", "-m", "put", "-t", "0", "-b", "16", "-e", value)
    assert reply.code == Code.CHANGED, code_str(reply.code)
    assert device.tree.get(LwPath.parse("/3/0/15")) == value
    sent = [m for s in device.relay.seen[start:] if s.direction == "p2c" and (m := s.msg)]
    blocks = [m.block1 for m in sent if m.block1 is not None]
    assert [b.num for b in blocks] == list(range(6)) and all(b.size == 16 for b in blocks)
    assert [code_str(m.code) for m in reply.responses] == ["2.31"] * 5 + ["2.04"]


async def test_non_confirmable_request_gets_non_response(device: Device) -> None:
    reply = await device.coap_client("/3/0/0", "-N", "-A", "0")
    assert reply.code == Code.CONTENT
    assert reply.responses[-1].type.name == "NON"
    assert reply.payload == b"aiolwm2m"


# -- malformed requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "path", "code"),
    [
        pytest.param(["-m", "get"], "/99/0", Code.NOT_FOUND, id="unknown-object"),
        pytest.param(["-m", "get"], "/3/7", Code.NOT_FOUND, id="unknown-instance"),
        pytest.param(["-m", "get", "-A", "0"], "/3/0", Code.NOT_ACCEPTABLE, id="text-for-instance"),
        pytest.param(
            ["-m", "get", "-A", "9999"], "/3/0/0", Code.NOT_ACCEPTABLE, id="unknown-accept"
        ),
        pytest.param(
            ["-m", "put", "-t", "9999", "-e", "x"],
            "/3/0/14",
            Code.UNSUPPORTED_CONTENT_FORMAT,
            id="unknown-content-format",
        ),
        pytest.param(
            ["-m", "put", "-t", "0", "-e", "evil"],
            "/3/0/0",
            Code.METHOD_NOT_ALLOWED,
            id="write-read-only",
        ),
        pytest.param(
            ["-m", "post", "-e", "x"], "/3/0/0", Code.METHOD_NOT_ALLOWED, id="execute-read-only"
        ),
        pytest.param(
            ["-m", "delete"], "/3/0", Code.METHOD_NOT_ALLOWED, id="delete-device-instance"
        ),
    ],
)
async def test_bad_requests_answered_and_client_alive(
    device: Device, args: list[str], path: str, code: Code
) -> None:
    reply = await device.coap_client(path, *args)
    assert code_str(reply.code) == code_str(code)
    assert device.tree.get(LwPath.parse("/3/0/0")) == "aiolwm2m"
    # Still registered and serving: an Update goes through, a read still works.
    updated = asyncio.ensure_future(device.client.wait_for(ev.Updated, 10))
    await asyncio.sleep(0)  # let wait_for subscribe first
    device.client.trigger_update()
    await updated
    again = await device.coap_client("/3/0/0", "-A", "0")
    assert again.payload == b"aiolwm2m"
