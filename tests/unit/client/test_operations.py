"""Server-initiated operations on the client's data model (sans-IO, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simkit import (
    CON_GIVES_UP_AFTER,
    EXACT_UPDATES,
    MakeClient,
    account,
    client_factory,
    operate,
    requests_to,
)

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.actions import CancelObserve
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.client.events import ErrorCode, SendFinished
from aiolwm2m.client.operations import (
    BlockwiseSettings,
    DataModelRuntime,
    DisableServer,
    ObjectsChanged,
    OperationHandler,
    TriggerUpdate,
    default_objects,
)
from aiolwm2m.coap.blockwise import Block2Receiver
from aiolwm2m.coap.message import Block, Code, Message, MessageType, OptionNumber, make_options
from aiolwm2m.coap.message import decode as coap_decode
from aiolwm2m.coap.message import encode as coap_encode
from aiolwm2m.errors import ConfigError, NotAllowedError
from aiolwm2m.lwm2m import ContentFormat, Path, decode, encode, linkformat, load_builtin
from aiolwm2m.lwm2m.formats import senml_cbor, senml_json, tlv
from aiolwm2m.lwm2m.model import InvalidValueError
from aiolwm2m.lwm2m.objects import DeviceInfo, FixedHost, Right, build_default_tree
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.lwm2m.values import Record, records_to_dict
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import Address, FaultKind, FaultRule, Operation, ServerCore
from aiolwm2m.testbed.operations import (
    OperationResult,
    execute_request,
    observe_request,
    read_request,
    write_request,
)
from aiolwm2m.testbed.sim import SimServer

TYPES = load_builtin().type_of
#: The content formats that can carry a whole object instance.
INSTANCE_FORMATS = [
    ContentFormat.TLV,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.OMA_JSON,
]
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def fake_host() -> FixedHost:
    return FixedHost(
        now_=T0,
        offset=timedelta(hours=1),
        timezone="Europe/Paris",
        memory=(1000, 4000),
        serial="SN-1",
        model_name="Model-X",
        firmware="1.2.3",
        addresses=["192.0.2.10", "2001:db8::10"],
        gateways=["192.0.2.1"],
    )


def make_ops(ssids: tuple[int, ...] = (1,), **kwargs: Any) -> OperationHandler:
    servers = [ServerAccount(f"coap://s{i}", i, lifetime=300) for i in ssids]
    built = build_default_tree(servers, host=fake_host(), device=DeviceInfo(), **kwargs)
    ops = OperationHandler(built.tree, access=built.access)
    ops.tree.add_object(3303, factory=lambda iid: Instance())
    ops.tree.add_instance(3303, 0, Instance({5700: 21.5, 5701: "Cel"}))
    return ops


def request(
    code: Code,
    path: str,
    payload: bytes = b"",
    *,
    cf: int | None = None,
    accept: int | None = None,
    observe: int | None = None,
    query: tuple[str, ...] = (),
    token: bytes = b"tk",
) -> Message:
    segments = [s for s in path.split("/") if s]
    return Message(
        type=MessageType.CON,
        code=code,
        token=token,
        options=make_options(
            path=segments, query=query, content_format=cf, accept=accept, observe=observe
        ),
        payload=payload,
    )


def answer(ops: OperationHandler, msg: Message, ssid: int = 1, now: float = 0.0) -> Message:
    response = ops.handle_request(ssid, msg, now)
    assert response is not None
    return response


def values(response: Message, base: str) -> dict[Path, Any]:
    cf = response.content_format
    assert cf is not None
    return records_to_dict(decode(cf, response.payload, Path.parse(base), TYPES))


@pytest.fixture
def ops() -> OperationHandler:
    return make_ops()


# ---------------------------------------------------------------- Read


def test_read_single_resource_defaults_to_text(ops: OperationHandler) -> None:
    resp = answer(ops, request(Code.GET, "/3/0/0"))
    assert resp.code == Code.CONTENT
    assert resp.content_format == ContentFormat.TEXT
    assert resp.payload == b"aiolwm2m"


@pytest.mark.parametrize("fmt", INSTANCE_FORMATS)
def test_read_instance_in_every_format(ops: OperationHandler, fmt: ContentFormat) -> None:
    resp = answer(ops, request(Code.GET, "/3/0", accept=fmt))
    assert resp.code == Code.CONTENT and resp.content_format == fmt
    got = values(resp, "/3/0")
    assert got[Path.parse("/3/0/0")] == "aiolwm2m"
    assert got[Path.parse("/3/0/1")] == "Model-X"
    assert got[Path.parse("/3/0/13")] == T0  # Current Time (hook), a Time value
    assert got[Path.parse("/3/0/10")] == 1000  # memory free
    assert got[Path.parse("/3/0/11/0")] == 0  # error code list
    assert got[Path.parse("/3/0/14")] == "UTC+01:00"
    assert Path.parse("/3/0/4") not in got  # executable resources are not read


def test_read_object_and_multiple_resource(ops: OperationHandler) -> None:
    resp = answer(ops, request(Code.GET, "/4", accept=ContentFormat.SENML_JSON))
    got = values(resp, "/4")
    assert got[Path.parse("/4/0/4/0")] == "192.0.2.10"
    assert got[Path.parse("/4/0/4/1")] == "2001:db8::10"
    assert got[Path.parse("/4/0/5/0")] == "192.0.2.1"
    resp = answer(ops, request(Code.GET, "/4/0/4", accept=ContentFormat.TLV))
    assert values(resp, "/4/0/4") == {
        Path.parse("/4/0/4/0"): "192.0.2.10",
        Path.parse("/4/0/4/1"): "2001:db8::10",
    }
    resp = answer(ops, request(Code.GET, "/4/0/4/1"))
    assert resp.payload == b"2001:db8::10"


def test_read_text_and_opaque_negotiation(ops: OperationHandler) -> None:
    assert answer(ops, request(Code.GET, "/3303/0/5700")).payload == b"21.5"
    assert answer(ops, request(Code.GET, "/3/0", accept=ContentFormat.TEXT)).code == (
        Code.NOT_ACCEPTABLE
    )
    assert answer(ops, request(Code.GET, "/3/0/0", accept=ContentFormat.OPAQUE)).code == (
        Code.NOT_ACCEPTABLE
    )
    assert answer(ops, request(Code.GET, "/3/0/0", accept=9999)).code == Code.NOT_ACCEPTABLE


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/3/0/4", Code.METHOD_NOT_ALLOWED),  # executable
        ("/3/1", Code.NOT_FOUND),
        ("/3/0/99", Code.NOT_FOUND),  # not defined
        ("/3/0/9", Code.NOT_FOUND),  # defined, absent (battery level)
        ("/9999", Code.NOT_FOUND),
        ("/0/0", Code.NOT_FOUND),  # Security is never exposed
        ("/0", Code.NOT_FOUND),
        ("/3/x", Code.NOT_FOUND),
        ("/", Code.METHOD_NOT_ALLOWED),
        ("/3/0/11/7", Code.NOT_FOUND),
    ],
)
def test_read_errors(ops: OperationHandler, path: str, code: Code) -> None:
    assert answer(ops, request(Code.GET, path)).code == code


def test_read_hook_raising_is_500(ops: OperationHandler) -> None:
    def broken() -> float:
        raise RuntimeError("sensor unplugged")

    ops.tree.instance(3303, 0).on_read[5700] = broken
    resp = answer(ops, request(Code.GET, "/3303/0/5700"))
    assert resp.code == Code.INTERNAL_SERVER_ERROR
    assert b"unplugged" not in resp.payload  # no internals leak to the server


def test_read_hook_returning_wrong_type_is_500(ops: OperationHandler) -> None:
    ops.tree.instance(3303, 0).on_read[5700] = lambda: "hot"
    assert answer(ops, request(Code.GET, "/3303/0/5700")).code == Code.INTERNAL_SERVER_ERROR


# ---------------------------------------------------------------- Write


def test_write_replace_resource_every_format(ops: OperationHandler) -> None:
    base = Path.parse("/3/0/15")
    for n, fmt in enumerate([ContentFormat.TEXT, *INSTANCE_FORMATS]):
        zone = f"Zone/{n}"
        payload = encode(fmt, [Record(base, zone)], base)
        resp = answer(ops, request(Code.PUT, "/3/0/15", payload, cf=fmt))
        assert resp.code == Code.CHANGED, (fmt, resp.payload)
        assert ops.tree.get(base) == zone


def test_write_current_time_moves_the_clock(ops: OperationHandler) -> None:
    later = T0 + timedelta(hours=5)
    payload = str(int(later.timestamp())).encode()
    assert answer(ops, request(Code.PUT, "/3/0/13", payload, cf=0)).code == Code.CHANGED
    assert ops.tree.get(Path.parse("/3/0/13")) == later


def test_write_partial_update_instance_tlv(ops: OperationHandler) -> None:
    base = Path.parse("/3/0")
    payload = tlv.encode([Record(base.child(14), "UTC+02:00"), Record(base.child(15), "X")], base)
    resp = answer(ops, request(Code.POST, "/3/0", payload, cf=ContentFormat.TLV))
    assert resp.code == Code.CHANGED
    assert ops.tree.get(base.child(14)) == "UTC+02:00"
    assert ops.tree.take_changes()[-2:] == [base.child(14), base.child(15)]


def test_write_multiple_resource_replace_vs_partial(ops: OperationHandler) -> None:
    ops.tree.add_object(2, definition=None)
    ops.tree.add_instance(2, 0, Instance({0: 3, 1: 0, 2: {1: 1, 2: 3}, 3: 1}))
    base = Path.parse("/2/0/2")
    payload = senml_json.encode([Record(base.child(5), 7)], base)
    assert answer(ops, request(Code.POST, "/2/0/2", payload, cf=110)).code == Code.CHANGED
    assert ops.tree.get(base) == {1: 1, 2: 3, 5: 7}
    assert answer(ops, request(Code.PUT, "/2/0/2", payload, cf=110)).code == Code.CHANGED
    assert ops.tree.get(base) == {5: 7}
    assert answer(ops, request(Code.PUT, "/2/0/2/9", b"4", cf=0)).code == Code.CHANGED
    assert ops.tree.get(base) == {5: 7, 9: 4}


@pytest.mark.parametrize(
    ("method", "path", "payload", "cf", "code"),
    [
        (Code.PUT, "/3/0/0", b"ACME", 0, Code.METHOD_NOT_ALLOWED),  # R resource
        (Code.PUT, "/3/0/15", b"x", 40, Code.UNSUPPORTED_CONTENT_FORMAT),
        (Code.PUT, "/3/0/15", b"x", 9999, Code.UNSUPPORTED_CONTENT_FORMAT),
        (Code.PUT, "/3/0/15", b"x", None, Code.BAD_REQUEST),
        (Code.PUT, "/3/0/13", b"soon", 0, Code.BAD_REQUEST),  # not a time
        (Code.PUT, "/3/0/15", b"\xff\x00", ContentFormat.TLV, Code.BAD_REQUEST),
        (Code.PUT, "/3/0/15", b"{", ContentFormat.SENML_JSON, Code.BAD_REQUEST),
        (Code.PUT, "/3/0/15", b"\x9f", ContentFormat.SENML_CBOR, Code.BAD_REQUEST),
        # A SenML pack of a version above 10 (RFC 8428 §4.4), JSON and CBOR.
        (Code.PUT, "/3/0/15", b'[{"bver":11,"n":"/3/0/15","vs":"X"}]', 110, Code.BAD_REQUEST),
        (Code.PUT, "/3/0/15", b"\x81\xa3 \x0b\x00g/3/0/15\x03aX", 112, Code.BAD_REQUEST),
        (Code.PUT, "/3/7/15", b"x", 0, Code.NOT_FOUND),
        (Code.PUT, "/3/0/777", b"x", 0, Code.NOT_FOUND),
        (Code.PUT, "/3", b"x", 0, Code.METHOD_NOT_ALLOWED),
        (Code.POST, "/3/0/15/0", b"x", 0, Code.METHOD_NOT_ALLOWED),
        (Code.POST, "/3/0/15", b"x", 0, Code.METHOD_NOT_ALLOWED),  # not executable
        (Code.PUT, "/3303/0/5700", b"30", 0, Code.METHOD_NOT_ALLOWED),
    ],
)
def test_write_errors(
    ops: OperationHandler, method: Code, path: str, payload: bytes, cf: int | None, code: Code
) -> None:
    before = ops.tree.get(Path.parse("/3/0/15"))
    assert answer(ops, request(method, path, payload, cf=cf)).code == code
    assert ops.tree.get(Path.parse("/3/0/15")) == before


def test_write_is_all_or_nothing(ops: OperationHandler) -> None:
    base = Path.parse("/3/0")
    payload = senml_json.encode([Record(base.child(15), "X"), Record(base.child(0), "Y")], base)
    assert answer(ops, request(Code.POST, "/3/0", payload, cf=110)).code == (
        Code.METHOD_NOT_ALLOWED
    )
    assert ops.tree.get(base.child(15)) == "Europe/Paris"


def test_write_hook_can_refuse_a_value(ops: OperationHandler) -> None:
    def refuse(value: object) -> None:
        raise InvalidValueError("no")

    ops.tree.instance(3, 0).on_write[15] = refuse
    assert answer(ops, request(Code.PUT, "/3/0/15", b"Z", cf=0)).code == Code.BAD_REQUEST


# ---------------------------------------------------------------- Execute


def test_execute_with_arguments_and_errors() -> None:
    calls: list[dict[int, str | None]] = []
    ops = make_ops(on_reboot=calls.append)
    assert answer(ops, request(Code.POST, "/3/0/4", b"0='a b',3")).code == Code.CHANGED
    assert calls == [{0: "a b", 3: None}]
    assert answer(ops, request(Code.POST, "/3/0/4", b"1,0='x,y'")).code == Code.CHANGED
    assert calls[-1] == {1: None, 0: "x,y"}  # a comma inside a value is a CHAR
    assert answer(ops, request(Code.POST, "/3/0/4")).code == Code.CHANGED
    assert calls[-1] == {}
    for bad in (b"x", b"12", b"1='a", b"1,1", b"\xff"):
        assert answer(ops, request(Code.POST, "/3/0/4", bad)).code == Code.BAD_REQUEST, bad
    assert answer(ops, request(Code.POST, "/3/0/5")).code == Code.NOT_FOUND  # no callback
    assert answer(ops, request(Code.POST, "/3/0/0")).code == Code.METHOD_NOT_ALLOWED
    assert answer(ops, request(Code.POST, "/3/9/4")).code == Code.NOT_FOUND


def test_execute_hook_raising_is_500() -> None:
    def boom(args: object) -> None:
        raise OSError("no permission")

    ops = make_ops(on_reboot=boom)
    assert answer(ops, request(Code.POST, "/3/0/4")).code == Code.INTERNAL_SERVER_ERROR


def test_reset_error_code(ops: OperationHandler) -> None:
    device = ops.tree.instance(3, 0)
    device.set(11, {0: 1, 1: 5})
    assert answer(ops, request(Code.POST, "/3/0/12")).code == Code.CHANGED
    assert ops.tree.get(Path.parse("/3/0/11")) == {0: 0}


# ---------------------------------------------------------------- Create / Delete


@pytest.mark.parametrize(
    "fmt", [ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR]
)
def test_create_and_delete(ops: OperationHandler, fmt: ContentFormat) -> None:
    base = Path.parse("/3303")
    records = [Record(Path.parse("/3303/4/5700"), 19.0), Record(Path.parse("/3303/4/5701"), "K")]
    resp = answer(ops, request(Code.POST, "/3303", tlv_or(fmt, records, base), cf=fmt))
    assert resp.code == Code.CREATED
    assert resp.location_path == ["3303", "4"]
    assert ops.tree.get(Path.parse("/3303/4/5700")) == 19.0
    assert ops.take_actions() == [ObjectsChanged()]
    assert answer(ops, request(Code.POST, "/3303", tlv_or(fmt, records, base), cf=fmt)).code == (
        Code.BAD_REQUEST
    )  # already exists
    assert answer(ops, request(Code.DELETE, "/3303/4")).code == Code.DELETED
    assert not ops.tree.exists(Path.parse("/3303/4"))
    assert answer(ops, request(Code.DELETE, "/3303/4")).code == Code.NOT_FOUND


def tlv_or(fmt: ContentFormat, records: list[Record], base: Path) -> bytes:
    return encode(fmt, records, base)


def test_create_without_instance_id_picks_one(ops: OperationHandler) -> None:
    # LwM2M 1.0 style TLV: resources without an object instance wrapper.
    new = Path.parse("/3303/1")
    payload = tlv.encode([Record(new.child(5700), 1.5)], new)
    resp = answer(ops, request(Code.POST, "/3303", payload, cf=ContentFormat.TLV))
    assert resp.code == Code.CREATED and resp.location_path == ["3303", "1"]
    resp = answer(ops, request(Code.POST, "/3303", b"", cf=ContentFormat.TLV))
    assert resp.code == Code.CREATED and resp.location_path == ["3303", "2"]


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        (Code.POST, "/3", Code.METHOD_NOT_ALLOWED),  # no factory
        (Code.POST, "/77", Code.NOT_FOUND),
        (Code.DELETE, "/3/0", Code.METHOD_NOT_ALLOWED),
        (Code.DELETE, "/3303", Code.METHOD_NOT_ALLOWED),
        (Code.DELETE, "/3303/0/5700", Code.METHOD_NOT_ALLOWED),
        (Code.DELETE, "/", Code.METHOD_NOT_ALLOWED),
        (Code.PATCH, "/3/0", Code.METHOD_NOT_ALLOWED),
    ],
)
def test_create_delete_errors(ops: OperationHandler, method: Code, path: str, code: Code) -> None:
    assert answer(ops, request(method, path, b"", cf=ContentFormat.TLV)).code == code


def test_create_bad_payload(ops: OperationHandler) -> None:
    bad = senml_json.encode([Record(Path.parse("/3303/1/5700"), "hot")], Path.parse("/3303"))
    assert answer(ops, request(Code.POST, "/3303", bad, cf=110)).code == Code.BAD_REQUEST
    assert answer(ops, request(Code.POST, "/3303", b"x", cf=40)).code == (
        Code.UNSUPPORTED_CONTENT_FORMAT
    )
    assert not ops.tree.exists(Path.parse("/3303/1"))


# ---------------------------------------------------------------- Discover / attributes


def test_discover_levels_and_attributes(ops: OperationHandler) -> None:
    put = request(Code.PUT, "/3303/0/5700", query=("pmin=5", "gt=30"))
    assert answer(ops, put).code == Code.CHANGED
    assert answer(ops, request(Code.PUT, "/3303", query=("pmax=60",))).code == Code.CHANGED
    resp = answer(ops, request(Code.GET, "/3303", accept=40))
    assert resp.content_format == 40
    links = {link.target: dict(link.params) for link in linkformat.decode(resp.payload)}
    assert links["/3303"] == {"ver": "1.1", "pmax": "60"}
    assert links["/3303/0/5700"] == {"pmin": "5", "gt": "30"}
    assert "/3303/0" in links and "/3303/0/5701" in links
    resp = answer(ops, request(Code.GET, "/4/0/4", accept=40))
    targets = [link.target for link in linkformat.decode(resp.payload)]
    assert targets == ["/4/0/4", "/4/0/4/0", "/4/0/4/1"]
    assert linkformat.decode(resp.payload)[0].get("dim") == "2"
    # attributes are per server
    other = answer(ops, request(Code.GET, "/3303/0/5700", accept=40), ssid=2)
    assert other.payload == b"</3303/0/5700>"


def test_discover_of_a_resource_shows_inherited_attributes(ops: OperationHandler) -> None:
    """The targeted resource's link carries what it inherits from its instance and object
    (the closest level wins, Core 1.1.1 §5.1.1), as Wakaama's and Zephyr's clients show it;
    the other links of a Discover show only what is attached to them."""
    for target, query in [
        ("/3303", ("pmin=10", "pmax=90")),
        ("/3303/0", ("pmax=60",)),
        ("/3303/0/5700", ("pmin=5", "gt=30")),
        ("/4/0", ("pmin=7",)),
    ]:
        assert answer(ops, request(Code.PUT, target, query=query)).code == Code.CHANGED

    def discover(path: str) -> dict[str, dict[str, str]]:
        resp = answer(ops, request(Code.GET, path, accept=40))
        assert resp.code == Code.CONTENT
        return {link.target: dict(link.params) for link in linkformat.decode(resp.payload)}

    assert discover("/3303/0/5700") == {"/3303/0/5700": {"pmin": "5", "pmax": "60", "gt": "30"}}
    on_instance = discover("/3303/0")
    assert on_instance["/3303/0"] == {"pmax": "60"}
    assert on_instance["/3303/0/5700"] == {"pmin": "5", "gt": "30"}
    assert discover("/3303/0/5701") == {"/3303/0/5701": {"pmin": "10", "pmax": "60"}}
    multiple = discover("/4/0/4")
    assert multiple["/4/0/4"] == {"dim": "2", "pmin": "7"}
    assert multiple["/4/0/4/0"] == {}
    assert discover("/4/0/4/1") == {"/4/0/4/1": {"pmin": "7"}}


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/3303/0/5700", ("pmin=x",), Code.BAD_REQUEST),
        ("/3303/0/5700", ("pmin=10", "pmax=5"), Code.BAD_REQUEST),
        ("/3303/0/5701", ("gt=1",), Code.BAD_REQUEST),  # string resource
        ("/3303/0", ("gt=1",), Code.BAD_REQUEST),
        ("/3/0/4", ("pmin=10",), Code.METHOD_NOT_ALLOWED),  # Execute: not readable (§5.1.2)
        ("/3303/0/5700", ("dim=2",), Code.BAD_REQUEST),
        ("/3303/9", ("pmin=1",), Code.NOT_FOUND),
        ("/", ("pmin=1",), Code.METHOD_NOT_ALLOWED),
    ],
)
def test_write_attributes_errors(
    ops: OperationHandler, path: str, query: tuple[str, ...], code: Code
) -> None:
    assert answer(ops, request(Code.PUT, path, query=query)).code == code


def test_discover_errors(ops: OperationHandler) -> None:
    assert answer(ops, request(Code.GET, "/", accept=40)).code == Code.METHOD_NOT_ALLOWED
    assert answer(ops, request(Code.GET, "/3/3", accept=40)).code == Code.NOT_FOUND


# ---------------------------------------------------------------- composite


@pytest.mark.parametrize("fmt", [ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR])
def test_read_composite(ops: OperationHandler, fmt: ContentFormat) -> None:
    codec = senml_json if fmt == ContentFormat.SENML_JSON else senml_cbor
    paths = [Path.parse("/3/0/0"), Path.parse("/3303/0"), Path.parse("/3/0/77")]
    resp = answer(ops, request(Code.FETCH, "/", codec.encode_paths(paths), cf=fmt))
    assert resp.code == Code.CONTENT and resp.content_format == fmt
    got = values(resp, "/")
    assert got == {
        Path.parse("/3/0/0"): "aiolwm2m",
        Path.parse("/3303/0/5700"): 21.5,
        Path.parse("/3303/0/5701"): "Cel",
    }


def test_read_composite_errors(ops: OperationHandler) -> None:
    missing = senml_json.encode_paths([Path.parse("/9/9")])
    assert answer(ops, request(Code.FETCH, "/", missing, cf=110)).code == Code.NOT_FOUND
    assert answer(ops, request(Code.FETCH, "/", b"[{", cf=110)).code == Code.BAD_REQUEST
    assert answer(ops, request(Code.FETCH, "/", b"", cf=11542)).code == (
        Code.UNSUPPORTED_CONTENT_FORMAT
    )
    some = senml_json.encode_paths([Path.parse("/3/0/0")])
    assert answer(ops, request(Code.FETCH, "/", some, cf=110, accept=11542)).code == (
        Code.NOT_ACCEPTABLE
    )
    assert answer(ops, request(Code.FETCH, "/3", some, cf=110)).code == Code.METHOD_NOT_ALLOWED


def test_write_composite(ops: OperationHandler) -> None:
    records = [Record(Path.parse("/3/0/15"), "Z1"), Record(Path.parse("/3/0/14"), "UTC+03:00")]
    payload = senml_cbor.encode(records, Path())
    assert answer(ops, request(Code.IPATCH, "/", payload, cf=112)).code == Code.CHANGED
    assert ops.tree.get(Path.parse("/3/0/15")) == "Z1"
    bad = senml_cbor.encode(
        [Record(Path.parse("/3/0/15"), "Z2"), Record(Path.parse("/3/0/0"), "M")], Path()
    )
    assert answer(ops, request(Code.IPATCH, "/", bad, cf=112)).code == Code.METHOD_NOT_ALLOWED
    assert ops.tree.get(Path.parse("/3/0/15")) == "Z1"
    assert answer(ops, request(Code.IPATCH, "/", payload, cf=0)).code == (
        Code.UNSUPPORTED_CONTENT_FORMAT
    )
    gone = senml_cbor.encode([Record(Path.parse("/3/5/15"), "Z")], Path())
    assert answer(ops, request(Code.IPATCH, "/", gone, cf=112)).code == Code.NOT_FOUND


# ---------------------------------------------------------------- Observe


def test_observe_notify_and_cancel(ops: OperationHandler) -> None:
    first = answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"o1"), now=0.0)
    assert first.code == Code.CONTENT and first.observe is not None
    assert first.payload == b"21.5"
    ops.tree.set("/3303/0/5700", 22.0)
    (note,) = ops.take_notifications(1.0)
    assert note.token == b"o1" and note.message.payload == b"22.0"
    assert note.message.observe is not None and note.message.observe != first.observe
    # Cancel with GET Observe=1: a normal read answer, and no more notifications.
    cancel = answer(ops, request(Code.GET, "/3303/0/5700", observe=1, token=b"o1"), now=2.0)
    assert cancel.code == Code.CONTENT and cancel.observe is None
    ops.tree.set("/3303/0/5700", 23.0)
    assert ops.take_notifications(3.0) == []


def test_a_non_finite_float_is_refused_where_it_is_set(ops: OperationHandler) -> None:
    """NaN or infinity, which text/plain and JSON cannot carry, never reaches an
    observation: set() raises a typed error, the value stays, nothing is notified,
    and the next value is notified as usual (the notification path used to raise
    FormatEncodeError out of set() with the NaN stored)."""
    first = answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"o1"), now=0.0)
    assert first.payload == b"21.5"
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidValueError, match="finite"):
            ops.tree.set("/3303/0/5700", bad)
    assert ops.tree.get(Path.parse("/3303/0/5700")) == 21.5
    assert ops.take_notifications(1.0) == []
    ops.tree.set("/3303/0/5700", 22.0)
    (note,) = ops.take_notifications(2.0)
    assert note.message.payload == b"22.0"


def test_a_refused_re_observe_ends_the_observation_of_its_token(ops: OperationHandler) -> None:
    """The server re-registers its token and gets an error: for it that token's
    observation is over (RFC 7641 §3.2), so the client drops it too, and tells the
    engine (its queued and stored notifications are not sent)."""
    answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"o1"), now=0.0)
    ops.take_actions()
    again = answer(ops, request(Code.GET, "/3303/0/9", observe=0, token=b"o1"), now=1.0)
    assert again.code == Code.NOT_FOUND
    assert ops.take_actions() == [CancelObserve(1, b"o1")]
    ops.tree.set("/3303/0/5700", 22.0)
    assert ops.take_notifications(2.0) == []


async def test_a_re_observe_refused_after_an_async_hook_ends_the_observation() -> None:
    ops = make_ops()
    answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"o1"), now=0.0)
    ops.take_actions()

    async def broken() -> float:
        raise RuntimeError("sensor gone")

    ops.tree.instance(3303, 0).on_read[5700] = broken
    assert (
        ops.handle_request(1, request(Code.GET, "/3303/0/5700", observe=0, token=b"o1"), 1.0)
        is None
    )
    (job,) = ops.take_jobs()
    assert (await job.coroutine).code == Code.INTERNAL_SERVER_ERROR
    assert ops.take_actions() == [CancelObserve(1, b"o1")]
    assert ops.cancel_observation(1, b"o1", "reset") is False, "already gone"


def test_observe_pmin_from_write_attributes_and_reset_cancel(ops: OperationHandler) -> None:
    answer(ops, request(Code.PUT, "/3303/0", query=("pmin=10",)))
    answer(ops, request(Code.GET, "/3303/0", observe=0, token=b"o2", accept=110), now=0.0)
    ops.tree.set("/3303/0/5700", 30.0)
    assert ops.take_notifications(1.0) == []
    assert ops.next_timer() == 10.0
    ops.handle_timer(10.0)
    (note,) = ops.take_notifications(10.0)
    assert note.message.content_format == 110
    assert values(note.message, "/3303/0")[Path.parse("/3303/0/5700")] == 30.0
    ops.cancel_observation(1, b"o2", "reset")
    ops.tree.set("/3303/0/5700", 31.0)
    assert ops.take_notifications(100.0) == []


def test_observe_composite_and_deleted_path(ops: OperationHandler) -> None:
    paths = senml_json.encode_paths([Path.parse("/3303/0/5700"), Path.parse("/3/0/15")])
    first = answer(ops, request(Code.FETCH, "/", paths, cf=110, observe=0, token=b"c"))
    assert first.code == Code.CONTENT and first.observe is not None
    answer(ops, request(Code.PUT, "/3/0/15", b"Q", cf=0))
    (note,) = ops.take_notifications(1.0)
    assert values(note.message, "/")[Path.parse("/3/0/15")] == "Q"
    answer(ops, request(Code.DELETE, "/3303/0"))
    (gone,) = ops.take_notifications(2.0)
    assert gone.message.code == Code.NOT_FOUND


def test_changes_collected_together_notify_an_observation_once(ops: OperationHandler) -> None:
    """Two resources of an observed instance changed before the next poll (a server's
    Write of both, or the application setting both): one notification with both
    values, not two carrying the same instance."""
    answer(ops, request(Code.GET, "/3303/0", observe=0, token=b"i", accept=110), now=0.0)
    answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"r"), now=0.0)
    ops.tree.set("/3303/0/5700", 25.0)
    ops.tree.set("/3303/0/5750", "outdoor")
    notes = ops.take_notifications(1.0)
    assert sorted(n.token for n in notes) == [b"i", b"r"]
    (whole,) = (n for n in notes if n.token == b"i")
    got = values(whole.message, "/3303/0")
    assert (got[Path.parse("/3303/0/5700")], got[Path.parse("/3303/0/5750")]) == (25.0, "outdoor")


def test_observe_errors_and_drop(ops: OperationHandler) -> None:
    assert answer(ops, request(Code.GET, "/3/0/4", observe=0)).code == Code.METHOD_NOT_ALLOWED
    assert answer(ops, request(Code.GET, "/3/5", observe=0)).code == Code.NOT_FOUND
    long_token = request(Code.GET, "/3/0/0", observe=0, token=b"123456789")
    assert answer(ops, long_token).code == Code.BAD_REQUEST
    answer(ops, request(Code.GET, "/3303/0/5700", observe=0))
    ops.drop_observations(1)
    ops.tree.set("/3303/0/5700", 1.0)
    assert ops.take_notifications(1.0) == []


def test_default_pmax_from_server_object() -> None:
    servers = [ServerAccount("coap://s1", 1, default_pmax=30)]
    built = build_default_tree(servers, host=fake_host())
    ops = OperationHandler(built.tree, access=built.access)
    answer(ops, request(Code.GET, "/3/0/0", observe=0))
    assert ops.next_timer() == 30.0
    assert ops.attributes(1, Path.parse("/3/0/0")).pmax == 30


def test_default_periods_written_apply_to_running_observations(ops: OperationHandler) -> None:
    """The server rewrites its Default Minimum/Maximum Period (/1/0/2, /1/0/3) while
    observing: the observation follows them, as after a Write-Attributes (§5.1.2)."""
    answer(ops, request(Code.GET, "/3303/0/5700", observe=0, token=b"d"), now=0.0)
    assert answer(ops, request(Code.PUT, "/1/0/2", b"10", cf=0), now=0.0).code == Code.CHANGED
    ops.tree.set("/3303/0/5700", 2.0)
    assert ops.take_notifications(1.0) == []  # held back by the new default pmin
    assert ops.next_timer() == 10.0
    (note,) = ops.take_notifications(10.0)
    assert note.message.payload == b"2.0"
    assert answer(ops, request(Code.PUT, "/1/0/3", b"30", cf=0), now=11.0).code == Code.CHANGED
    assert ops.take_notifications(11.0) == []
    assert ops.next_timer() == 40.0  # the new default pmax, from the last notification


# ---------------------------------------------------------------- Server object


def test_server_object_write_and_executes() -> None:
    config = ClientConfig("ep", (ServerAccount("coap://s1", 1, lifetime=300),))
    ops = default_objects(config)
    assert answer(ops, request(Code.GET, "/1/0/1")).payload == b"300"
    assert answer(ops, request(Code.PUT, "/1/0/1", b"600", cf=0)).code == Code.CHANGED
    (action,) = ops.take_actions()
    assert isinstance(action, TriggerUpdate) and action.account is not None
    assert action.account.lifetime == 600
    assert answer(ops, request(Code.PUT, "/1/0/1", b"0", cf=0)).code == Code.BAD_REQUEST
    assert answer(ops, request(Code.PUT, "/1/0/7", b"T", cf=0)).code == Code.BAD_REQUEST
    assert answer(ops, request(Code.GET, "/1/0/1")).payload == b"600"
    assert answer(ops, request(Code.POST, "/1/0/8")).code == Code.CHANGED
    assert answer(ops, request(Code.POST, "/1/0/4")).code == Code.CHANGED
    assert ops.take_actions() == [TriggerUpdate(1), DisableServer(1, 86400.0)]
    assert answer(ops, request(Code.PUT, "/1/0/0", b"9", cf=0)).code == Code.METHOD_NOT_ALLOWED


def test_registration_payload_hides_security(ops: OperationHandler) -> None:
    links = linkformat.parse_registration(linkformat.decode(ops.registration_payload("1.1")))
    assert set(links.objects) == {1, 3, 4, 3303}
    assert links.objects[3].version == "1.2"


# ---------------------------------------------------------------- Access Control


def test_access_control_with_two_servers() -> None:
    ops = make_ops((1, 2))
    assert 2 in ops.tree.objects  # /2 exists with more than one server
    # Device: owned by server 1, readable by others.
    assert answer(ops, request(Code.GET, "/3/0/0"), ssid=2).code == Code.CONTENT
    assert answer(ops, request(Code.PUT, "/3/0/15", b"x", cf=0), ssid=2).code == (Code.UNAUTHORIZED)
    assert answer(ops, request(Code.PUT, "/3/0/15", b"x", cf=0), ssid=1).code == Code.CHANGED
    assert answer(ops, request(Code.POST, "/3/0/4"), ssid=2).code == Code.UNAUTHORIZED
    # Server instances: each server its own.
    assert answer(ops, request(Code.GET, "/1/1"), ssid=1).code == Code.UNAUTHORIZED
    assert answer(ops, request(Code.GET, "/1/1"), ssid=2).code == Code.CONTENT
    resp = answer(ops, request(Code.GET, "/1", accept=ContentFormat.SENML_JSON), ssid=2)
    assert {p.instance_id for p in values(resp, "/1")} == {1}
    # /3303/0 has no Access Control instance: nobody may touch it.
    assert answer(ops, request(Code.GET, "/3303/0/5700"), ssid=1).code == Code.UNAUTHORIZED
    # Create needs an instance targeting 3303:65535 with the C bit.
    assert answer(ops, request(Code.POST, "/3303", b"", cf=11542), ssid=2).code == (
        Code.UNAUTHORIZED
    )
    ops.access.grant(3303, 65535, 1, {2: Right.CREATE})
    resp = answer(ops, request(Code.POST, "/3303", b"", cf=11542), ssid=2)
    assert resp.code == Code.CREATED
    new = "/" + "/".join(resp.location_path)
    # The creator owns the new instance: full rights; server 1 has none.
    assert answer(ops, request(Code.GET, new), ssid=1).code == Code.UNAUTHORIZED
    assert answer(ops, request(Code.DELETE, new), ssid=1).code == Code.UNAUTHORIZED
    assert answer(ops, request(Code.DELETE, new), ssid=2).code == Code.DELETED
    # Access Control instances: readable by all, writable by their owner only.
    assert answer(ops, request(Code.GET, "/2/0"), ssid=1).code == Code.CONTENT
    assert answer(ops, request(Code.PUT, "/2/0/3", b"2", cf=0), ssid=2).code == (Code.UNAUTHORIZED)


def test_single_server_has_every_right(ops: OperationHandler) -> None:
    assert 2 not in ops.tree.objects
    assert answer(ops, request(Code.GET, "/1/0")).code == Code.CONTENT


# ---------------------------------------------------------------- async hooks


async def test_async_hooks_answer_later() -> None:
    ops = make_ops()
    gate = asyncio.Event()

    async def slow_read() -> float:
        await gate.wait()
        return 25.0

    writes: list[object] = []

    async def slow_write(value: object) -> None:
        await asyncio.sleep(0)
        writes.append(value)

    inst = ops.tree.instance(3303, 0)
    inst.on_read[5700] = slow_read
    inst.on_write[5750] = slow_write
    read = request(Code.GET, "/3303/0", accept=ContentFormat.SENML_JSON)
    assert ops.handle_request(1, read, 0.0) is None
    (job,) = ops.take_jobs()
    assert job.request is read and job.ssid == 1
    task = asyncio.ensure_future(job.coroutine)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set()
    resp = await task
    assert resp.code == Code.CONTENT
    assert values(resp, "/3303/0")[Path.parse("/3303/0/5700")] == 25.0
    assert ops.handle_request(1, request(Code.PUT, "/3303/0/5750", b"lab", cf=0), 0.0) is None
    (job,) = ops.take_jobs()
    assert (await job.coroutine).code == Code.CHANGED
    assert writes == ["lab"]


async def test_async_hook_failure_is_500() -> None:
    ops = make_ops()

    async def broken() -> None:
        raise RuntimeError("x")

    ops.tree.instance(3303, 0).on_execute[5605] = lambda args: broken()
    assert ops.handle_request(1, request(Code.POST, "/3303/0/5605"), 0.0) is None
    (job,) = ops.take_jobs()
    assert (await job.coroutine).code == Code.INTERNAL_SERVER_ERROR


def test_operations_is_a_data_model_runtime(ops: OperationHandler) -> None:
    assert isinstance(ops, DataModelRuntime)
    woken: list[int] = []
    ops.set_wakeup(lambda: woken.append(1))
    ops.tree.set("/3303/0/5700", 1.0)
    assert woken == [1]
    # Inside a request the wake-up is held back (the runtime polls afterwards).
    answer(ops, request(Code.PUT, "/3/0/15", b"A", cf=0))
    assert woken == [1]


def test_the_wakeup_comes_back_after_a_request_and_goes_when_unset(ops: OperationHandler) -> None:
    woken: list[int] = []
    ops.set_wakeup(lambda: woken.append(1))
    answer(ops, request(Code.PUT, "/3/0/15", b"A", cf=0))  # held back inside
    answer(ops, request(Code.GET, "/3/0/404"))  # an error answer restores it too
    ops.tree.set("/3303/0/5700", 1.0)
    assert woken == [1]
    ops.set_wakeup(None)
    ops.tree.set("/3303/0/5700", 2.0)
    assert woken == [1]


def test_never_crashes_on_garbage_options(ops: OperationHandler) -> None:
    msg = request(Code.GET, "/3/0/0")
    msg.add(OptionNumber.URI_PATH, b"\xff")
    assert answer(ops, msg).code in (Code.BAD_REQUEST, Code.NOT_FOUND)
    msg = request(Code.GET, "/3/0/0")
    msg.add(OptionNumber.ACCEPT, b"\x01\x02\x03")
    assert answer(ops, msg).code == Code.BAD_REQUEST


# ---------------------------------------------------------------- block-wise (RFC 7959)

BIG = "".join(f"{i:05d}," for i in range(600))  # 3600 bytes of text


def block_request(path: str, num: int, szx: int = 6, **kwargs: Any) -> Message:
    msg = request(Code.GET, path, **kwargs)
    msg.add(OptionNumber.BLOCK2, Block(num=num, more=False, szx=szx).encode())
    return msg


def fetch_blocks(ops: OperationHandler, path: str, szx: int | None = None, **kwargs: Any) -> bytes:
    """Read ``path`` the way a server does: first GET, then Block2 continuations."""
    receiver = Block2Receiver()
    first = request(Code.GET, path, **kwargs)
    if szx is not None:
        first.add(OptionNumber.BLOCK2, Block(0, False, szx).encode())
    following = receiver.feed(answer(ops, first))
    while following is not None:
        msg = request(Code.GET, path, **kwargs)
        msg.add(OptionNumber.BLOCK2, following.encode())
        following = receiver.feed(answer(ops, msg))
    return receiver.payload


def test_large_read_is_answered_in_block2_slices(ops: OperationHandler) -> None:
    ops.tree.set("/3303/0/5750", BIG)
    first = answer(ops, request(Code.GET, "/3303/0/5750"))
    assert first.code == Code.CONTENT
    assert first.block2 == Block(num=0, more=True, szx=6)
    assert len(first.payload) == 1024
    assert first.get_uint(OptionNumber.SIZE2) == len(BIG)
    etag = first.get_first(OptionNumber.ETAG)
    assert etag is not None
    last = answer(ops, block_request("/3303/0/5750", 3))
    assert last.block2 == Block(num=3, more=False, szx=6)
    assert last.get_first(OptionNumber.ETAG) == etag
    assert last.content_format == ContentFormat.TEXT
    assert fetch_blocks(ops, "/3303/0/5750") == BIG.encode()


def test_block2_size_from_request_and_configured_default() -> None:
    ops = make_ops()
    ops.tree.set("/3303/0/5750", BIG)
    small = answer(ops, block_request("/3303/0/5750", 0, szx=2))  # 64-byte blocks
    assert small.block2 == Block(num=0, more=True, szx=2) and len(small.payload) == 64
    assert fetch_blocks(ops, "/3303/0/5750", szx=2) == BIG.encode()
    built = build_default_tree([ServerAccount("coap://s1", 1)], device=DeviceInfo())
    tight = OperationHandler(built.tree, blockwise=BlockwiseSettings(block_size=256))
    tight.tree.add_instance(3303, 0, Instance({5750: BIG}))
    resp = answer(tight, request(Code.GET, "/3303/0/5750"))
    assert resp.block2 == Block(num=0, more=True, szx=4) and len(resp.payload) == 256
    # A server asking for more than the configured size gets the configured size.
    assert answer(tight, block_request("/3303/0/5750", 0, szx=6)).block2 == Block(0, True, 4)


def test_small_read_has_no_block2_unless_asked(ops: OperationHandler) -> None:
    plain = answer(ops, request(Code.GET, "/3303/0/5701"))
    assert not plain.has(OptionNumber.BLOCK2) and not plain.has(OptionNumber.ETAG)
    asked = answer(ops, block_request("/3303/0/5701", 0))
    assert asked.block2 == Block(num=0, more=False, szx=6) and asked.payload == b"Cel"


def test_continuations_serve_the_kept_representation(ops: OperationHandler) -> None:
    ops.tree.set("/3303/0/5750", BIG)
    first = answer(ops, request(Code.GET, "/3303/0/5750"))
    ops.tree.set("/3303/0/5750", "changed")  # the server still gets the answer it started
    second = answer(ops, block_request("/3303/0/5750", 1))
    assert second.payload == BIG.encode()[1024:2048]
    assert second.get_first(OptionNumber.ETAG) == first.get_first(OptionNumber.ETAG)
    # A fresh Read starts over with the new value.
    assert answer(ops, request(Code.GET, "/3303/0/5750")).payload == b"changed"


def test_kept_representations_expire_and_are_bounded() -> None:
    ops = make_ops()
    lifetime = ops.blockwise.lifetime
    ops.tree.set("/3303/0/5750", BIG)
    first = answer(ops, request(Code.GET, "/3303/0/5750"), now=0.0)
    ops.tree.set("/3303/0/5750", BIG.upper() + "!")
    late = answer(ops, block_request("/3303/0/5750", 1), now=lifetime + 1)
    # Expired: regenerated from the current value, so the ETag tells the server it changed.
    assert late.get_first(OptionNumber.ETAG) != first.get_first(OptionNumber.ETAG)
    for i in range(20):  # many answers at once: only max_representations are kept
        ops.tree.set("/3303/0/5750", BIG + str(i))
        answer(ops, request(Code.GET, "/3303/0/5750", accept=ContentFormat.TEXT, token=bytes([i])))
        answer(ops, request(Code.GET, "/3303/0/5750", accept=ContentFormat.SENML_JSON))
    assert len(ops._transfers.representations()) <= ops.blockwise.max_representations


def test_block2_past_the_end_is_402(ops: OperationHandler) -> None:
    ops.tree.set("/3303/0/5750", BIG)
    assert answer(ops, block_request("/3303/0/5750", 50)).code == Code.BAD_OPTION


def test_large_observe_and_composite_reads_are_sliced(ops: OperationHandler) -> None:
    ops.tree.set("/3303/0/5750", BIG)
    observed = answer(ops, request(Code.GET, "/3303/0/5750", observe=0))
    assert observed.observe is not None and observed.block2 == Block(0, True, 6)
    rest = answer(ops, block_request("/3303/0/5750", 1))
    assert rest.observe is None and rest.payload == BIG.encode()[1024:2048]
    paths = senml_json.encode_paths([Path.parse("/3303/0/5750"), Path.parse("/3/0/0")])
    fetch = request(Code.FETCH, "/", paths, cf=ContentFormat.SENML_JSON)
    first = answer(ops, fetch)
    receiver = Block2Receiver()
    following = receiver.feed(first)
    while following is not None:
        again = request(Code.FETCH, "/", paths, cf=ContentFormat.SENML_JSON)
        again.add(OptionNumber.BLOCK2, following.encode())
        following = receiver.feed(answer(ops, again))
    records = decode(ContentFormat.SENML_JSON, receiver.payload, Path(), TYPES)
    assert records_to_dict(records)[Path.parse("/3303/0/5750")] == BIG


def block1_write(
    ops: OperationHandler, code: Code, path: str, body: bytes, cf: int, szx: int = 4
) -> list[Message]:
    size = 16 << szx
    answers = []
    for num, offset in enumerate(range(0, len(body), size)):
        msg = request(code, path, body[offset : offset + size], cf=cf, token=bytes([num]))
        more = offset + size < len(body)
        msg.add(OptionNumber.BLOCK1, Block(num=num, more=more, szx=szx).encode())
        answers.append(answer(ops, msg))
    return answers


def test_block1_write_is_assembled_then_applied(ops: OperationHandler) -> None:
    answers = block1_write(ops, Code.PUT, "/3303/0/5750", BIG.encode(), ContentFormat.TEXT)
    assert [a.code for a in answers[:-1]] == [Code.CONTINUE] * (len(answers) - 1)
    assert answers[0].block1 == Block(num=0, more=True, szx=4)
    assert ops.tree.get(Path.parse("/3303/0/5750")) == BIG  # applied once complete
    assert answers[-1].code == Code.CHANGED
    assert answers[-1].block1 == Block(num=len(answers) - 1, more=False, szx=4)


def test_block1_partial_update_tlv_and_create(ops: OperationHandler) -> None:
    records = [Record(Path.parse("/3303/0/5750"), BIG)]
    body = encode(ContentFormat.TLV, records, Path.parse("/3303/0"))
    answers = block1_write(ops, Code.POST, "/3303/0", body, ContentFormat.TLV, szx=6)
    assert answers[-1].code == Code.CHANGED and ops.tree.get(Path.parse("/3303/0/5750")) == BIG
    created = [Record(Path.parse("/3303/7/5750"), BIG)]
    body = encode(ContentFormat.SENML_CBOR, created, Path.parse("/3303"))
    answers = block1_write(ops, Code.POST, "/3303", body, ContentFormat.SENML_CBOR)
    assert answers[-1].code == Code.CREATED
    assert answers[-1].location_path == ["3303", "7"]
    assert ops.tree.get(Path.parse("/3303/7/5750")) == BIG


def test_block1_errors(ops: OperationHandler) -> None:
    # A continuation without its start: 4.08 Request Entity Incomplete; nothing written.
    msg = request(Code.PUT, "/3303/0/5750", b"x" * 16, cf=ContentFormat.TEXT)
    msg.add(OptionNumber.BLOCK1, Block(num=3, more=True, szx=0).encode())
    assert answer(ops, msg).code == Code.REQUEST_ENTITY_INCOMPLETE
    # Above max_body: 4.13 with Size1.
    built = build_default_tree([ServerAccount("coap://s1", 1)], device=DeviceInfo())
    small = OperationHandler(built.tree, blockwise=BlockwiseSettings(max_body=100))
    small.tree.add_instance(3303, 0, Instance())
    answers = block1_write(small, Code.PUT, "/3303/0/5750", BIG.encode(), ContentFormat.TEXT)
    too_large = next(a for a in answers if a.code != Code.CONTINUE)
    assert too_large.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert too_large.get_uint(OptionNumber.SIZE1) == 100
    # A bad assembled payload is judged like any write.
    answers = block1_write(ops, Code.PUT, "/3303/0/5750", b"\xff" * 40, ContentFormat.TEXT)
    assert answers[-1].code == Code.BAD_REQUEST
    # Unreadable Block2 option: 4.02.
    bad = request(Code.GET, "/3/0/0")
    bad.add(OptionNumber.BLOCK2, b"\x01\x02\x03\x04")
    assert answer(ops, bad).code == Code.BAD_OPTION


@pytest.mark.parametrize("size", [0, 8, 100, 2048])
def test_blockwise_settings_validation(size: int) -> None:
    with pytest.raises(ConfigError):
        BlockwiseSettings(block_size=size)


def test_large_answer_of_an_async_hook_is_sliced_too(ops: OperationHandler) -> None:
    async def big() -> str:
        return BIG

    ops.tree.add_instance(3303, 1, Instance(on_read={5750: big}))
    assert ops.handle_request(1, request(Code.GET, "/3303/1/5750"), 0.0) is None
    (job,) = ops.take_jobs()
    first = asyncio.run(job.coroutine)
    assert first.block2 == Block(num=0, more=True, szx=6) and first.has(OptionNumber.ETAG)
    rest = answer(ops, block_request("/3303/1/5750", 1))  # served from the kept answer
    assert rest.payload == BIG.encode()[1024:2048]


# ---------------------------------------------------------------- engine wiring (virtual clock)


def test_server_write_of_lifetime_reaches_the_engine(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(registration=EXACT_UPDATES)
    net.clock.run_for(2)
    reg = server.core.registrations["dev-1"]
    assert reg.lifetime == 300
    written = operate(net, server, write_request("/1/0/1", 120, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    net.clock.run_for(1)
    updates = [m for _, m in requests_to(net, server.addr) if m.uri_path == ["rd", "1"]]
    assert [u.uri_query for u in updates] == [["lt=120"]]  # at once, only what changed
    assert reg.lifetime == 120 and reg.updates == 1
    assert client.engine.server_state(1) is ServerState.REGISTERED
    # The next periodic Update follows the new lifetime (lifetime/2 = 60 s, as it is below
    # MAX_TRANSMIT_WAIT = 62 s with EXACT_COAP, instead of 300 - 62) and repeats nothing.
    net.clock.run_for(70)
    updates = [(t, m) for t, m in requests_to(net, server.addr) if m.uri_path == ["rd", "1"]]
    assert len(updates) == 2 and updates[1][1].uri_query == []
    assert updates[1][0] - updates[0][0] == pytest.approx(60, abs=0.1)
    # Queue mode switched on: as LwM2M 1.1 only a Register carries it (b=U plus Q), and a
    # Registration Update Trigger execute still works on the new registration.
    written = operate(net, server, write_request("/1/0/7", "UQ", ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    net.clock.run_for(1)
    reg = server.core.registrations["dev-1"]
    assert (reg.binding, reg.queue_mode, reg.lifetime) == ("U", True, 120)
    assert operate(net, server, execute_request("/1/0/8")).code == Code.CHANGED
    net.clock.run_for(1)
    assert reg.updates == 1
    # An invalid lifetime is refused and changes nothing.
    refused = operate(net, server, write_request("/1/0/1", 0, ContentFormat.TEXT))
    assert refused.code == Code.BAD_REQUEST and reg.lifetime == 120


def test_update_account_before_registration_is_used_by_register(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(start=False)
    client.start()
    account = client.config.servers[0]
    client.engine.update_account(replace(account, lifetime=77), net.clock.now)
    net.clock.run_for(2)
    assert server.core.registrations["dev-1"].lifetime == 77
    client.engine.update_account(replace(account, uri="coap://10.9.9.9:5683"), net.clock.now)
    client.poll()  # deliver the engine's events
    assert client.errors(ErrorCode.NOT_ALLOWED)


# ---------------------------------------------------------------- Send (virtual clock)


def finished(client: SimClient) -> list[SendFinished]:
    return [e for e in client.events if isinstance(e, SendFinished)]


def registered_client(make_client: MakeClient, net: SimNetwork, **kwargs: Any) -> SimClient:
    client = make_client(**kwargs)
    assert net.clock.run_until_true(client.engine.registered, timeout=5)
    client.objects.tree.add_instance(3303, 0, Instance({5700: 21.5, 5701: "Cel"}))
    client.poll()
    net.clock.run_for(1)  # the Update announcing /3303/0
    return client


@pytest.mark.parametrize("fmt", [ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON])
def test_send_posts_current_values_with_time(
    net: SimNetwork, server: SimServer, make_client: MakeClient, fmt: ContentFormat
) -> None:
    client = registered_client(make_client, net)
    net.clock.run_for(10)
    sent_at = net.clock.now
    send_id = client.start_send(["/3303/0/5700", "/3/0/0"], content_format=fmt)
    assert net.clock.run_until_true(lambda: bool(finished(client)), timeout=5)
    (outcome,) = finished(client)
    assert (outcome.send_id, outcome.success, outcome.coap_code) == (send_id, True, "2.04")
    (data,) = server.core.sent
    assert data.endpoint == "dev-1" and data.content_format == fmt
    assert records_to_dict(data.records) == {
        Path.parse("/3303/0/5700"): 21.5,
        Path.parse("/3/0/0"): "aiolwm2m",
    }
    assert {r.time for r in data.records} == {sent_at}  # SimClient's wall clock is virtual
    assert any(e.kind == "send" for e in server.core.history)


def test_send_failures_are_reported_without_recovery(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(make_client, net)
    rule = server.core.add_rule(
        FaultRule(Operation.SEND, FaultKind.RESPOND, Code.SERVICE_UNAVAILABLE)
    )
    client.start_send(["/3303/0/5700"])
    net.clock.run_for(1)
    outcome = finished(client)[-1]
    assert (outcome.success, outcome.coap_code, outcome.reason) == (False, "5.03", "coap_error")
    error = client.errors(ErrorCode.COAP_ERROR)[-1]
    assert (error.request, error.action) == ("send", "none")
    rule.count = 0
    server.core.add_rule(FaultRule(Operation.SEND, FaultKind.SILENT))
    registrations = len(client.named("registering"))
    client.start_send(["/3303/0/5700"])
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    assert finished(client)[-1].reason == "timeout"
    assert client.errors(ErrorCode.TIMEOUT)[-1].request == "send"
    # No recovery action: still registered, no new Register.
    assert client.engine.server_state(1) is ServerState.REGISTERED
    assert len(client.named("registering")) == registrations


def test_send_in_flight_when_the_link_closes_fails(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(make_client, net)
    server.core.add_rule(FaultRule(Operation.SEND, FaultKind.SILENT))
    client.start_send(["/3303/0/5700"])
    net.clock.run_for(1)
    assert not finished(client)
    client.disable_server(1)
    outcome = finished(client)[-1]
    assert (outcome.success, outcome.reason) == (False, "network_error")
    # Not registered any more: a Send fails at once.
    client.start_send(["/3303/0/5700"])
    assert finished(client)[-1].reason == "not_registered"


def test_send_refused_before_sending(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(make_client, net)
    for paths, kwargs in [
        (["/3303/0/9999"], {}),
        (["/0/0/0"], {}),
        ([], {}),
        (["/3303/0/5700"], {"content_format": ContentFormat.TLV}),
        (["/3303/0/5700"], {"ssid": 9}),
    ]:
        with pytest.raises(NotAllowedError):
            client.start_send(paths, **kwargs)
    assert len(client.errors(ErrorCode.NOT_ALLOWED)) == 5
    # The server mutes Send (/1/0/23): refused until it unmutes.
    muted = operate(net, server, write_request("/1/0/23", True, ContentFormat.TEXT))
    assert muted.code == Code.CHANGED
    with pytest.raises(NotAllowedError, match="muted"):
        client.start_send(["/3303/0/5700"])
    operate(net, server, write_request("/1/0/23", False, ContentFormat.TEXT))
    client.start_send(["/3303/0/5700"])
    net.clock.run_for(1)
    assert finished(client)[-1].success
    assert records_to_dict(server.core.sent[-1].records) == {Path.parse("/3303/0/5700"): 21.5}


def test_send_needs_a_server_named_when_several(net: SimNetwork, server: SimServer) -> None:
    servers = (account(server.uri, short_server_id=1), account(server.uri, short_server_id=2))
    client = client_factory(net, server.uri)(servers=servers, start=False)
    with pytest.raises(NotAllowedError, match="name one of the servers"):
        client.start_send(["/3/0/0"])


# ---------------------------------------------------------------- replace, discover, create


def test_write_replace_of_an_instance_drops_unwritten_optional_resources(
    ops: OperationHandler,
) -> None:
    inst = ops.tree.instance(3303, 0)
    inst.set(5750, "greenhouse")  # optional RW
    base = Path.parse("/3303/0")
    only_units = encode(ContentFormat.TLV, [Record(Path.parse("/3303/0/5701"), "K")], base)
    # 5701 is read-only: a replace naming it is refused before anything changes.
    assert answer(ops, request(Code.PUT, "/3303/0", only_units, cf=11542)).code == (
        Code.METHOD_NOT_ALLOWED
    )
    assert inst.values[5750] == "greenhouse"
    # Replace with an empty instance: 5750 goes, read-only values stay.
    empty = encode(ContentFormat.SENML_JSON, [], base)
    resp = answer(ops, request(Code.PUT, "/3303/0", empty, cf=ContentFormat.SENML_JSON))
    assert resp.code == Code.BAD_REQUEST  # a Write needs at least one value
    written = encode(ContentFormat.TLV, [Record(Path.parse("/3303/0/5750"), "lab")], base)
    assert answer(ops, request(Code.PUT, "/3303/0", written, cf=11542)).code == Code.CHANGED
    assert inst.values[5750] == "lab"
    # Device: replacing /3/0 with only the UTC offset removes the time zone (optional RW)
    # and keeps the read-only resources.
    device = ops.tree.instance(3, 0)
    device.set(15, "Europe/Paris")
    offset = encode(
        ContentFormat.TLV, [Record(Path.parse("/3/0/14"), "+02:00")], Path.parse("/3/0")
    )
    assert answer(ops, request(Code.PUT, "/3/0", offset, cf=11542)).code == Code.CHANGED
    assert 15 not in device.values and device.values[14] == "+02:00"
    assert device.values[0] == "aiolwm2m"  # read-only, untouched
    # A partial update (POST) keeps what it does not name.
    device.set(15, "Europe/Paris")
    post = request(Code.POST, "/3/0", offset, cf=11542)
    assert answer(ops, post).code == Code.CHANGED and device.values[15] == "Europe/Paris"


def test_replace_of_a_server_instance_needs_its_mandatory_writable_resources(
    ops: OperationHandler,
) -> None:
    """Lifetime, Notification Storing and Binding (/1/x/1, 6, 7) are mandatory and
    writable: a replace without them is refused; Short Server ID (0) is read-only."""
    server = ops.tree.instance(1, 0)
    base = Path.parse("/1/0")
    payload = encode(ContentFormat.TLV, [Record(base.child(2), 5)], base)
    assert answer(ops, request(Code.PUT, "/1/0", payload, cf=11542)).code == Code.BAD_REQUEST
    assert server.values[1] == 300 and server.values[7] == "U"
    assert server.account.default_pmin == 0
    records = [Record(base.child(rid), v) for rid, v in ((1, 60), (2, 5), (6, True), (7, "U"))]
    payload = encode(ContentFormat.TLV, records, base)
    assert answer(ops, request(Code.PUT, "/1/0", payload, cf=11542)).code == Code.CHANGED
    assert server.account.default_pmin == 5 and server.account.lifetime == 60
    assert 5 not in server.values  # Disable Timeout: optional, not written
    assert server.values[0] == 1  # Short Server ID: read-only, kept


def test_discover_respects_access_rights() -> None:
    ops = make_ops((1, 2))
    assert answer(ops, request(Code.GET, "/1/0", accept=40), ssid=2).code == Code.UNAUTHORIZED
    resp = answer(ops, request(Code.GET, "/1", accept=40), ssid=2)
    targets = {link.target for link in linkformat.decode(resp.payload)}
    assert "/1/1" in targets and "/1/0" not in targets
    assert not any(t.startswith("/1/0/") for t in targets)
    assert answer(ops, request(Code.GET, "/1/1/1", accept=40), ssid=2).code == Code.CONTENT


@pytest.mark.parametrize("fmt", [ContentFormat.TLV, ContentFormat.SENML_CBOR])
def test_create_several_instances_in_one_request(ops: OperationHandler, fmt: ContentFormat) -> None:
    records = [
        Record(Path.parse("/3303/5/5750"), "a"),
        Record(Path.parse("/3303/6/5750"), "b"),
    ]
    resp = answer(
        ops, request(Code.POST, "/3303", encode(fmt, records, Path.parse("/3303")), cf=fmt)
    )
    assert resp.code == Code.CREATED and resp.location_path == []
    assert ops.tree.get(Path.parse("/3303/5/5750")) == "a"
    assert ops.tree.get(Path.parse("/3303/6/5750")) == "b"
    # All or nothing: one existing id refuses the whole request.
    again = [Record(Path.parse("/3303/7/5750"), "c"), Record(Path.parse("/3303/6/5750"), "d")]
    payload = encode(fmt, again, Path.parse("/3303"))
    assert answer(ops, request(Code.POST, "/3303", payload, cf=fmt)).code == Code.BAD_REQUEST
    assert not ops.tree.exists(Path.parse("/3303/7"))
    assert ops.tree.get(Path.parse("/3303/6/5750")) == "b"
    # An invalid value in the second instance: nothing created either.
    bad = [Record(Path.parse("/3303/8/5750"), "ok"), Record(Path.parse("/3303/9/5700"), "x")]
    payload = encode(ContentFormat.SENML_JSON, bad, Path.parse("/3303"))
    resp = answer(ops, request(Code.POST, "/3303", payload, cf=ContentFormat.SENML_JSON))
    assert resp.code == Code.BAD_REQUEST
    assert not ops.tree.exists(Path.parse("/3303/8"))


# ---------------------------------------------------------------- async hooks on the virtual clock


def test_sim_runs_async_hooks_that_do_not_wait(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    assert net.clock.run_until_true(client.engine.registered, timeout=5)

    async def units() -> str:
        return "Cel"

    async def waits() -> str:
        await asyncio.sleep(1)
        return "never"

    async def yields() -> float:
        await asyncio.sleep(0)
        return 1.0

    client.objects.tree.add_instance(
        3303, 0, Instance({5700: 1.0}, on_read={5701: units, 5750: waits, 5601: yields})
    )
    read = operate(net, server, read_request("/3303/0/5701"))
    assert (read.code, read.payload) == (Code.CONTENT, b"Cel")
    assert not client.errors()
    for path in ("/3303/0/5750", "/3303/0/5601"):
        failed = operate(net, server, read_request(path))
        assert failed.code == Code.INTERNAL_SERVER_ERROR
        error = client.errors(ErrorCode.INTERNAL_ERROR)[-1]
        assert path in (error.detail or "") and "asyncio runtime" in (error.detail or "")
    assert client.engine.registered()


def test_testbed_core_send_errors() -> None:
    """The testbed's POST /dp: 4.15 for non-SenML, 4.00 undecodable, 4.04 unregistered."""
    core = ServerCore()
    addr = ("10.0.0.2", 40000)

    def post(path: list[str], payload: bytes, cf: int, mid: int, src: Address = addr) -> int:
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            mid=mid,
            token=bytes([mid]),
            options=make_options(
                path=path, query=["ep=dev"] if path == ["rd"] else [], content_format=cf
            ),
            payload=payload,
        )
        core.datagram_received(src, coap_encode(msg), 0.0)
        (reply,) = [coap_decode(data) for _, data in core.datagrams_to_send()]
        return reply.code

    assert post(["rd"], b"</3/0>", 40, 1) == Code.CREATED
    assert post(["dp"], b"1", ContentFormat.TEXT, 2) == Code.UNSUPPORTED_CONTENT_FORMAT
    assert post(["dp"], b"\xff\x00", ContentFormat.SENML_CBOR, 3) == Code.BAD_REQUEST
    good = senml_cbor.encode([Record(Path.parse("/3/0/0"), "x", 1.5)], Path())
    assert post(["dp"], good, ContentFormat.SENML_CBOR, 4, ("10.0.0.3", 1)) == Code.NOT_FOUND
    assert post(["dp"], good, ContentFormat.SENML_CBOR, 5) == Code.CHANGED
    (data,) = core.sent
    assert data.records == [Record(Path.parse("/3/0/0"), "x", 1.5)]
    assert [e.kind for e in core.history].count("send_rejected") == 1


def test_large_notifications_continue_block_wise(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """RFC 7959 §2.6 on the virtual clock: each notification carries the first block,
    the testbed GETs the rest and decodes the whole value."""
    net.trace = []
    client = make_client()
    assert net.clock.run_until_true(client.engine.registered, timeout=5)
    sensor = client.objects.tree.add_instance(3303, 0, Instance({5700: 1.0, 5750: BIG}))
    key = server.start_operation("dev-1", observe_request("/3303/0/5750", ContentFormat.TEXT))
    results: list[OperationResult] = []

    def collect(count: int) -> Callable[[], bool]:
        def done() -> bool:
            while (event := server.core.next_response()) is not None:
                if event.key == key and event.operation is not None:
                    results.append(event.operation)
            return len(results) >= count

        return done

    assert net.clock.run_until_true(collect(1), timeout=10)
    assert results[0].payload == BIG.encode() and results[0].observe is not None
    changed = BIG.replace("0", "9")
    sensor.set(5750, changed)
    assert net.clock.run_until_true(collect(2), timeout=10)
    assert results[1].payload == changed.encode() and results[1].decode_error is None
    # The notification itself carried only the first block.
    notes = [
        m
        for _, m in responses_from(net, server.addr)
        if m.observe is not None and m.observe > 0 and m.block2 is not None
    ]
    assert len(notes) == 2  # the Observe answer and the notification
    assert all(len(m.payload) == 1024 and m.block2.num == 0 for m in notes)


def responses_from(net: SimNetwork, dst: Address) -> list[tuple[float, Message]]:
    """CoAP responses that left for ``dst`` (the client's answers and notifications)."""
    assert net.trace is not None
    out = []
    for t, _src, to, data in net.trace:
        if to == dst:
            msg = coap_decode(data)
            if msg.code >= 64:
                out.append((t, msg))
    return out


def test_server_write_of_a_default_period_sends_no_update(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    assert net.clock.run_until_true(client.engine.registered, timeout=5)
    written = operate(net, server, write_request("/1/0/2", 7, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    net.clock.run_for(1)
    assert server.core.registrations["dev-1"].updates == 0
    assert not client.named("update_sent")
    assert client.engine.snapshot().provisioning is not None  # the account did change


# ---------------------------------------------------------------- composite of the root path


def test_read_composite_of_the_root_is_everything_the_server_may_read() -> None:
    """Core §6.3.8: ``/`` in a Read-Composite names every object; Access Control applies."""
    ops = make_ops((1, 2))
    ops.tree.add_instance(3303, 1, Instance({5700: -3.0}))
    ops.access.grant(3303, 1, 2)  # server 2 owns /3303/1: server 1 may not read it
    for ssid in (1, 2):
        req = request(Code.FETCH, "/", senml_cbor.encode_paths([Path()]), cf=112)
        resp = answer(ops, req, ssid=ssid)
        assert resp.code == Code.CONTENT and resp.content_format == 112
        got = values(resp, "/")
        expected = {
            path: value
            for path, value in ((r.path, r.value) for r in readable(ops, ssid))
            if path.object_id not in (0, 21)
        }
        assert got == expected
        assert got[Path.parse("/3/0/0")] == "aiolwm2m"
        own = {p.instance_id for p in got if p.object_id == 1}
        assert len(own) == 1  # each server reads its own Server instance only
        assert (Path.parse("/3303/1/5700") in got) == (ssid == 2)
        assert not any(p.object_id == 0 for p in got)


def readable(ops: OperationHandler, ssid: int) -> list[Record]:
    """Every resource a plain Read of each object gives ``ssid``, object by object."""
    out: list[Record] = []
    for object_id in sorted(ops.tree.objects):
        resp = answer(ops, request(Code.GET, f"/{object_id}", accept=112), ssid=ssid)
        if resp.code == Code.CONTENT:
            out.extend(senml_cbor.decode(resp.payload, Path.of(object_id), TYPES))
    return out


def test_observe_composite_of_the_root_notifies_any_change() -> None:
    ops = make_ops()
    req = request(Code.FETCH, "/", senml_json.encode_paths([Path()]), cf=110, observe=0)
    first = answer(ops, req)
    assert first.code == Code.CONTENT and first.observe is not None
    assert values(first, "/")[Path.parse("/3303/0/5700")] == 21.5
    ops.tree.set("/3303/0/5700", 19.0)
    (note,) = ops.take_notifications(1.0)
    got = values(note.message, "/")
    assert got[Path.parse("/3303/0/5700")] == 19.0
    assert got[Path.parse("/3/0/0")] == "aiolwm2m"
    # An instance created later is part of the root, so it shows up too.
    ops.tree.add_instance(3303, 4, Instance({5700: 5.0}))
    (note,) = ops.take_notifications(2.0)
    assert values(note.message, "/")[Path.parse("/3303/4/5700")] == 5.0


def test_plain_read_of_the_root_stays_method_not_allowed() -> None:
    assert answer(make_ops(), request(Code.GET, "/")).code == Code.METHOD_NOT_ALLOWED


def _valve_ops() -> OperationHandler:
    """An object with a mandatory writable resource (0), an optional one (1) and a
    mandatory read-only one (2), creatable by servers."""
    from aiolwm2m.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType

    valve = ObjectDef(
        32769,
        "Valve",
        {
            0: ResourceDef(0, "Setpoint", ResourceType.INTEGER, Operations.RW, mandatory=True),
            1: ResourceDef(1, "Label", ResourceType.STRING, Operations.RW),
            2: ResourceDef(2, "State", ResourceType.INTEGER, Operations.R, mandatory=True),
        },
        multiple=True,
    )
    ops = make_ops()
    ops.tree.add_object(32769, factory=lambda iid: Instance({2: 0}), definition=valve)
    return ops


def test_create_without_a_mandatory_writable_resource_is_4_00() -> None:
    """DM&SE response codes, Create: 4.00 "Mandatory Resources are not specified". A
    mandatory read-only resource is the client's to give (here the factory's)."""
    ops = _valve_ops()
    base = Path.parse("/32769")
    missing = senml_json.encode([Record(Path.parse("/32769/0/1"), "a")], base)
    resp = answer(ops, request(Code.POST, "/32769", missing, cf=ContentFormat.SENML_JSON))
    assert resp.code == Code.BAD_REQUEST
    assert not ops.tree.exists(Path.parse("/32769/0"))
    empty = answer(ops, request(Code.POST, "/32769", b"", cf=ContentFormat.TLV))
    assert empty.code == Code.BAD_REQUEST
    given = senml_json.encode([Record(Path.parse("/32769/0/0"), 5)], base)
    resp = answer(ops, request(Code.POST, "/32769", given, cf=ContentFormat.SENML_JSON))
    assert resp.code == Code.CREATED and resp.location_path == ["32769", "0"]
    assert ops.tree.get(Path.parse("/32769/0/0")) == 5


def test_create_of_several_instances_is_refused_if_one_lacks_a_mandatory_resource() -> None:
    ops = _valve_ops()
    records = [Record(Path.parse("/32769/1/0"), 1), Record(Path.parse("/32769/2/1"), "b")]
    payload = senml_json.encode(records, Path.parse("/32769"))
    resp = answer(ops, request(Code.POST, "/32769", payload, cf=ContentFormat.SENML_JSON))
    assert resp.code == Code.BAD_REQUEST
    assert ops.tree.instance_ids()[32769] == []


@pytest.mark.parametrize("fmt", INSTANCE_FORMATS)
def test_write_replace_without_a_mandatory_writable_resource_is_4_00(
    fmt: ContentFormat,
) -> None:
    """A replace (PUT) of an instance replaces all of it (Core 1.1.1 §6.3.3), so, as a
    Create, it must give every mandatory writable resource: 4.00 and nothing written
    otherwise, in every format that carries an instance. The mandatory read-only
    resource (2) is the client's and need not be sent; an optional one left out (1)
    goes. A partial update (POST) and a replace of one resource are not concerned."""
    ops = _valve_ops()
    ops.tree.add_instance(32769, 0, Instance({0: 5, 1: "a", 2: 3}))
    inst = ops.tree.instance(32769, 0)
    base = Path.parse("/32769/0")

    def put(*records: Record) -> Code:
        payload = encode(fmt, list(records), base)
        return answer(ops, request(Code.PUT, "/32769/0", payload, cf=fmt)).code

    assert put(Record(base.child(1), "b")) == Code.BAD_REQUEST
    assert inst.values == {0: 5, 1: "a", 2: 3}
    assert put(Record(base.child(0), 7)) == Code.CHANGED
    assert inst.values == {0: 7, 2: 3}
    label = encode(fmt, [Record(base.child(1), "c")], base)
    assert answer(ops, request(Code.POST, "/32769/0", label, cf=fmt)).code == Code.CHANGED
    assert inst.values == {0: 7, 1: "c", 2: 3}
    one = encode(fmt, [Record(base.child(1), "d")], base.child(1))
    assert answer(ops, request(Code.PUT, "/32769/0/1", one, cf=fmt)).code == Code.CHANGED
    assert inst.values == {0: 7, 1: "d", 2: 3}


def _lists_ops() -> OperationHandler:
    """An object with a mandatory writable multiple resource (0), an optional one
    (1) and a single one (2); instance 0 holds instances in both lists."""
    from aiolwm2m.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType

    rw = Operations.RW
    lists = ObjectDef(
        32770,
        "Lists",
        {
            0: ResourceDef(0, "Targets", ResourceType.INTEGER, rw, mandatory=True, multiple=True),
            1: ResourceDef(1, "Labels", ResourceType.STRING, rw, multiple=True),
            2: ResourceDef(2, "Mode", ResourceType.INTEGER, rw),
        },
        multiple=True,
    )
    ops = make_ops()
    ops.tree.add_object(32770, factory=lambda iid: Instance(), definition=lists)
    ops.tree.add_instance(32770, 0, Instance({0: {0: 1, 1: 2}, 1: {0: "a"}, 2: 3}))
    return ops


def test_write_replace_of_a_multiple_resource_with_no_instance_empties_it() -> None:
    """PUT /X/Y/R with a Multiple Resource TLV of length 0: the new value is "no
    instances" (Core 1.1.1 §6.3.3 replace; §7.4.3 TLV for 0, 1 or more instances),
    answered 2.04; a partial update (POST) of the instance adds no instance."""
    ops = _lists_ops()
    inst = ops.tree.instance(32770, 0)
    empty = bytes.fromhex("8000")
    assert answer(ops, request(Code.PUT, "/32770/0/0", empty, cf=11542)).code == Code.CHANGED
    assert inst.values[0] == {}
    assert Path.parse("/32770/0/0") in ops.tree.take_changes()
    labels = bytes.fromhex("8001")
    assert answer(ops, request(Code.POST, "/32770/0", labels, cf=11542)).code == Code.CHANGED
    assert inst.values[1] == {0: "a"}
    # A Multiple Resource TLV for a single resource is refused, as with instances.
    mode = bytes.fromhex("8002")
    assert answer(ops, request(Code.PUT, "/32770/0/2", mode, cf=11542)).code == Code.NOT_FOUND
    assert inst.values[2] == 3


def test_write_replace_of_an_instance_with_empty_multiple_resources() -> None:
    """A replace of the instance that gives the mandatory multiple resource with no
    instance (a Multiple Resource TLV of length 0) gives it: 2.04, and it is left
    empty; an optional one sent empty is left empty too, not removed."""
    ops = _lists_ops()
    inst = ops.tree.instance(32770, 0)
    payload = bytes.fromhex("8000 8001 C10207")
    assert answer(ops, request(Code.PUT, "/32770/0", payload, cf=11542)).code == Code.CHANGED
    assert inst.values == {0: {}, 1: {}, 2: 7}
    # Not sending the mandatory one at all is still refused.
    assert answer(ops, request(Code.PUT, "/32770/0", bytes.fromhex("8001"), cf=11542)).code == (
        Code.BAD_REQUEST
    )
    assert inst.values == {0: {}, 1: {}, 2: 7}


def test_create_with_an_empty_mandatory_multiple_resource() -> None:
    """Create counts a mandatory multiple resource sent with no instance as given."""
    ops = _lists_ops()
    payload = bytes.fromhex("0205 8000")  # object instance 5 holding /32770/5/0 empty
    resp = answer(ops, request(Code.POST, "/32770", payload, cf=11542))
    assert resp.code == Code.CREATED and resp.location_path == ["32770", "5"]
    assert ops.tree.instance(32770, 5).values == {0: {}}


def test_write_replace_with_an_empty_lwm2m_cbor_map_empties_a_multiple_resource() -> None:
    """LwM2M CBOR says "no instance" with an empty map: {R: {}} (resource or instance)."""
    import cbor2

    ops = _lists_ops()
    inst = ops.tree.instance(32770, 0)
    resource = cbor2.dumps({32770: {0: {1: {}}}})
    assert answer(ops, request(Code.PUT, "/32770/0/1", resource, cf=11544)).code == Code.CHANGED
    assert inst.values[1] == {}
    instance = cbor2.dumps({32770: {0: {0: {}, 2: 4}}})
    assert answer(ops, request(Code.PUT, "/32770/0", instance, cf=11544)).code == Code.CHANGED
    assert inst.values == {0: {}, 2: 4}


def test_read_of_a_multiple_resource_with_no_instance() -> None:
    """TLV sends it as a Multiple Resource TLV of length 0 "whatever the number of
    Instances (0, 1 or more)" (Core 1.1.1 §7.4.3), also within the instance, and
    LwM2M CBOR as an empty map; SenML has no record for it (an empty pack). Its
    instance 0 does not exist (4.04) and Discover shows dim=0."""
    import cbor2

    ops = _lists_ops()
    ops.tree.set("/32770/0/0", {})
    resp = answer(ops, request(Code.GET, "/32770/0/0"))
    assert (resp.code, resp.content_format, resp.payload) == (Code.CONTENT, 11542, b"\x80\x00")
    resp = answer(ops, request(Code.GET, "/32770/0", accept=11542))
    assert resp.payload == bytes.fromhex("8000 830141 0061 C10203")  # /0 empty, /1, /2
    resp = answer(ops, request(Code.GET, "/32770/0/0", accept=11544))
    assert cbor2.loads(resp.payload) == {32770: {0: {0: {}}}}
    resp = answer(ops, request(Code.GET, "/32770/0/0", accept=110))
    assert (resp.code, resp.payload) == (Code.CONTENT, b"[]")
    assert answer(ops, request(Code.GET, "/32770/0/0/0")).code == Code.NOT_FOUND
    resp = answer(ops, request(Code.GET, "/32770/0/0", accept=40))
    assert resp.payload == b"</32770/0/0>;dim=0"


def test_notifications_of_a_multiple_resource_emptied() -> None:
    """A notification carries the empty resource as a Read does: TLV's Multiple
    Resource TLV of length 0, an empty map in an LwM2M CBOR Observe-Composite."""
    import cbor2

    ops = _lists_ops()
    observe = request(Code.GET, "/32770/0/0", accept=11542, observe=0, token=b"t")
    assert answer(ops, observe).code == Code.CONTENT
    paths = senml_json.encode_paths([Path.parse("/32770/0/0"), Path.parse("/32770/0/2")])
    composite = request(Code.FETCH, "/", paths, cf=110, accept=11544, observe=0, token=b"c")
    assert answer(ops, composite).code == Code.CONTENT
    ops.tree.set("/32770/0/0", {})
    notes = {note.token: note.message.payload for note in ops.take_notifications(1.0)}
    assert notes[b"t"] == b"\x80\x00"
    assert cbor2.loads(notes[b"c"]) == {32770: {0: {0: {}, 2: 3}}}


def test_notifications_of_stored_values_and_of_read_hooks() -> None:
    """A plain instance's stored value is notified as the tree stored (and checked) it,
    a multiple resource with no instance left included; a read hook's value is checked
    on every sample, and an invalid one ends the observation."""
    ops = make_ops()
    ops.tree.remove_instance(4, 0)
    bearers = ops.tree.add_instance(4, 0, Instance({1: {0: 0, 1: 21}}))
    tlv_accept = ContentFormat.TLV
    first = answer(ops, request(Code.GET, "/4/0/1", observe=0, token=b"o1", accept=tlv_accept))
    assert values(first, "/4/0/1") == {Path.of(4, 0, 1, 0): 0, Path.of(4, 0, 1, 1): 21}
    bearers.set(1, {})
    (note,) = ops.take_notifications(1.0)
    # An empty Multiple Resource TLV of resource 1 (Core §7.4.3), not an empty payload.
    assert note.message.payload == bytes([0b10000000, 1])
    hooked: list[object] = [1.5]
    ops.tree.add_instance(3303, 1, Instance(on_read={5700: lambda: hooked[0]}))
    answer(ops, request(Code.GET, "/3303/1/5700", observe=0, token=b"o2"))
    hooked[0] = "warm"
    ops.tree.mark_changed("/3303/1/5700")
    (ended,) = ops.take_notifications(2.0)
    assert ended.token == b"o2" and ended.message.code == Code.NOT_FOUND
    assert len(ops.observer) == 1  # the hooked one ended, the stored one runs on


def test_a_stored_value_assigned_behind_the_trees_back_is_still_checked() -> None:
    """``Instance.values`` is a public dict: a value of the wrong type assigned into it
    ends the observation (4.04) instead of reaching the server as the wrong type."""
    ops = make_ops()
    inst = ops.tree.add_instance(3303, 1, Instance({5700: 1.5}))
    answer(ops, request(Code.GET, "/3303/1/5700", observe=0, token=b"o1"))
    inst.values[5700] = 3  # an integer: coerced to the Float it must be
    ops.tree.mark_changed("/3303/1/5700")
    (note,) = ops.take_notifications(1.0)
    assert note.message.code == Code.CONTENT and note.message.payload == b"3.0"
    inst.values[5700] = "warm"
    ops.tree.mark_changed("/3303/1/5700")
    (ended,) = ops.take_notifications(2.0)
    assert ended.token == b"o1" and ended.message.code == Code.NOT_FOUND
    assert not len(ops.observer)


def test_a_notification_checks_the_servers_read_right_under_access_control() -> None:
    """The stored-value sample still asks Access Control when it is enabled: a server
    whose Read right was taken away gets the observation's final 4.04, not the value."""
    ops = make_ops((1, 2))
    ops.tree.add_instance(3303, 1, Instance({5700: 1.5}))
    ops.access.grant(3303, 1, 1)  # server 1 owns /3303/1
    answer(ops, request(Code.GET, "/3303/1/5700", observe=0, token=b"o1"), ssid=1)
    ops.tree.set("/3303/1/5700", 2.5)
    (note,) = ops.take_notifications(1.0)
    assert note.message.code == Code.CONTENT and note.message.payload == b"2.5"
    ops.access.grant(3303, 1, 2)  # now server 2's: server 1 may no longer read it
    ops.tree.set("/3303/1/5700", 3.5)
    (ended,) = ops.take_notifications(2.0)
    assert ended.token == b"o1" and ended.message.code == Code.NOT_FOUND
