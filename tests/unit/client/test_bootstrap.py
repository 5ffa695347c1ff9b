"""Sans-IO tests of the client's Bootstrap interface (client/bootstrap.py)."""

from __future__ import annotations

import json

import pytest

from aiolwm2m.client.bootstrap import (
    BootstrapHandler,
    InconsistentConfiguration,
    Operation,
    Provisioning,
)
from aiolwm2m.client.config import ClientConfig, SecurityMode, ServerAccount
from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.errors import StorageError
from aiolwm2m.lwm2m import ContentFormat, Path, Record, decode, encode, linkformat, load_builtin
from aiolwm2m.lwm2m.linkformat import ObjectEntry

BS_URI = "coap://10.0.0.9:5683"
VALUE_FORMATS = [
    ContentFormat.TLV,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
]


def factory() -> Provisioning:
    config = ClientConfig(
        endpoint="dev",
        servers=(ServerAccount(uri="coap://10.0.0.1:5683", short_server_id=1, lifetime=300),),
        bootstrap=ServerAccount(uri=BS_URI),
    )
    return Provisioning.from_config(config)


def request(code: Code, path: str, payload: bytes = b"", **opts: int) -> Message:
    segments = [s for s in path.split("/") if s]
    return Message(
        type=MessageType.CON,
        code=code,
        options=make_options(path=segments, **opts),  # type: ignore[arg-type]
        payload=payload,
    )


def write(handler: BootstrapHandler, path: str, records: list[Record], cf: int) -> Code:
    payload = encode(cf, records, Path.parse(path))
    reply = handler.handle(request(Code.PUT, path, payload, content_format=cf))
    assert reply.operation is Operation.WRITE
    return Code(reply.response.code)


def server_records(iid: int, ssid: int, lifetime: int = 120) -> list[Record]:
    return [
        Record(Path.of(1, iid, 0), ssid),
        Record(Path.of(1, iid, 1), lifetime),
        Record(Path.of(1, iid, 6), True),
        Record(Path.of(1, iid, 7), "U"),
    ]


def security_records(iid: int, ssid: int, uri: str, mode: int = 3) -> list[Record]:
    return [
        Record(Path.of(0, iid, 0), uri),
        Record(Path.of(0, iid, 1), False),
        Record(Path.of(0, iid, 2), mode),
        Record(Path.of(0, iid, 3), b""),
        Record(Path.of(0, iid, 5), b""),
        Record(Path.of(0, iid, 10), ssid),
    ]


def finish(handler: BootstrapHandler) -> tuple[Code, bytes, list[ServerAccount] | None]:
    reply = handler.handle(request(Code.POST, "/bs"))
    assert reply.operation is Operation.FINISH
    return Code(reply.response.code), reply.response.payload, reply.accounts


def test_factory_provisioning_round_trips_to_accounts() -> None:
    prov = factory()
    (account,) = prov.accounts()
    assert account.uri == "coap://10.0.0.1:5683"
    assert account.short_server_id == 1 and account.lifetime == 300
    bs = prov.bootstrap_account()
    assert bs is not None and bs.uri == BS_URI
    assert prov.bootstrap_instance() is not None


@pytest.mark.parametrize("cf", VALUE_FORMATS, ids=lambda c: c.name)
def test_delete_write_finish_in_every_format(cf: ContentFormat) -> None:
    handler = BootstrapHandler(factory())
    reply = handler.handle(request(Code.DELETE, "/"))
    assert reply.response.code == Code.DELETED
    # Only the Bootstrap-Server account survives a delete of everything.
    assert [i for i, s in handler.provisioning.security.items() if s.get(1) is True] == list(
        handler.provisioning.security
    )
    assert handler.provisioning.server == {}
    assert write(handler, "/0/5", security_records(5, 42, "coap://10.0.0.7:5683"), cf) == (
        Code.CHANGED
    )
    assert write(handler, "/1", server_records(3, 42, 77), cf) == Code.CHANGED
    code, _, accounts = finish(handler)
    assert code == Code.CHANGED
    assert accounts is not None
    (account,) = accounts
    assert (account.uri, account.short_server_id, account.lifetime) == (
        "coap://10.0.0.7:5683",
        42,
        77,
    )
    assert account.security_mode is SecurityMode.NOSEC


def test_resource_write_in_text_and_instance_write_replaces() -> None:
    handler = BootstrapHandler(factory())
    reply = handler.handle(request(Code.PUT, "/1/0/1", b"999", content_format=ContentFormat.TEXT))
    assert reply.response.code == Code.CHANGED
    assert handler.provisioning.server[0][1] == 999
    assert 6 in handler.provisioning.server[0]
    # An instance-level write replaces the whole instance.
    assert write(handler, "/1/0", server_records(0, 1, 50)[:2], ContentFormat.TLV) == Code.CHANGED
    assert set(handler.provisioning.server[0]) == {0, 1}


def test_multiple_instance_resource_is_kept_as_mapping() -> None:
    handler = BootstrapHandler(factory())
    records = [*security_records(0, 1, "coap://10.0.0.1:5683"), Record(Path.of(0, 0, 16, 2), 49)]
    assert write(handler, "/0/0", records, ContentFormat.SENML_CBOR) == Code.CHANGED
    assert handler.provisioning.security[0][16] == {2: 49}


def test_writes_to_other_objects_are_accepted_and_ignored() -> None:
    prov = factory()
    handler = BootstrapHandler(prov)
    reply = handler.handle(request(Code.PUT, "/3/0/15", b"x", content_format=0))
    assert reply.response.code == Code.CHANGED
    assert handler.provisioning == prov


def test_bad_write_payloads_are_4xx_never_exceptions() -> None:
    handler = BootstrapHandler(factory())
    cases = [
        request(Code.PUT, "/0/0", b"\xff\xff\xff", content_format=ContentFormat.TLV),
        request(Code.PUT, "/0/0", b"[{", content_format=ContentFormat.SENML_JSON),
        request(Code.PUT, "/0/0", b"x", content_format=4242),
        request(Code.PUT, "/0/0", b"x"),
        request(Code.PUT, "/", b"x", content_format=ContentFormat.TLV),
        request(Code.PUT, "/abc", b"x", content_format=ContentFormat.TLV),
        request(Code.POST, "/1/0/8"),
    ]
    codes = [handler.handle(m).response.code for m in cases]
    assert codes == [
        Code.BAD_REQUEST,
        Code.BAD_REQUEST,
        Code.UNSUPPORTED_CONTENT_FORMAT,
        Code.BAD_REQUEST,
        Code.METHOD_NOT_ALLOWED,
        Code.NOT_FOUND,
        Code.METHOD_NOT_ALLOWED,
    ]
    assert handler.provisioning == factory()


def test_delete_never_removes_the_bootstrap_account() -> None:
    handler = BootstrapHandler(factory())
    found = handler.provisioning.bootstrap_instance()
    assert found is not None
    bs_iid = found[0]
    reply = handler.handle(request(Code.DELETE, f"/0/{bs_iid}"))
    assert reply.response.code == Code.BAD_REQUEST
    assert handler.handle(request(Code.DELETE, "/0")).response.code == Code.DELETED
    assert list(handler.provisioning.security) == [bs_iid]
    assert handler.provisioning.server  # /0 delete leaves /1 alone
    assert handler.handle(request(Code.DELETE, "/1/0")).response.code == Code.DELETED
    assert handler.provisioning.server == {}
    assert handler.handle(request(Code.DELETE, "/1/0/1")).response.code == Code.BAD_REQUEST


def test_discover_lists_ssid_and_uri() -> None:
    handler = BootstrapHandler(factory(), {3: ObjectEntry("1.1", (0,)), 1: ObjectEntry()})
    reply = handler.handle(request(Code.GET, "/", accept=ContentFormat.LINK_FORMAT))
    assert reply.operation is Operation.DISCOVER
    assert reply.response.content_format == ContentFormat.LINK_FORMAT
    links = linkformat.decode(reply.response.payload)
    assert links[0].target == "/" and links[0].get("lwm2m") == "1.1"
    by_target = {link.target: link for link in links}
    assert by_target["/0/0"].get("ssid") == "1"
    assert by_target["/0/0"].get("uri") == "coap://10.0.0.1:5683"
    assert by_target["/0/1"].params == ()  # the Bootstrap-Server account
    assert by_target["/1/0"].get("ssid") == "1"
    assert by_target["/3"].get("ver") == "1.1" and "/3/0" in by_target
    one = handler.handle(request(Code.GET, "/1", accept=ContentFormat.LINK_FORMAT))
    assert [link.target for link in linkformat.decode(one.response.payload)] == ["/1/0"]
    deep = handler.handle(request(Code.GET, "/1/0", accept=ContentFormat.LINK_FORMAT))
    assert deep.response.code == Code.BAD_REQUEST


@pytest.mark.parametrize("cf", VALUE_FORMATS, ids=lambda c: c.name)
def test_bootstrap_read_of_server_object(cf: ContentFormat) -> None:
    handler = BootstrapHandler(factory())
    reply = handler.handle(request(Code.GET, "/1", accept=cf))
    assert reply.operation is Operation.READ and reply.response.code == Code.CONTENT
    records = decode(cf, reply.response.payload, Path.of(1), load_builtin().type_of)
    values = {str(r.path): r.value for r in records}
    assert values["/1/0/0"] == 1 and values["/1/0/1"] == 300


def test_bootstrap_read_is_for_server_and_access_control_only() -> None:
    handler = BootstrapHandler(factory())
    assert handler.handle(request(Code.GET, "/0")).response.code == Code.BAD_REQUEST
    assert handler.handle(request(Code.GET, "/3/0")).response.code == Code.BAD_REQUEST
    assert handler.handle(request(Code.GET, "/2")).response.code == Code.NOT_FOUND
    assert handler.handle(request(Code.GET, "/1/9")).response.code == Code.NOT_FOUND
    reply = handler.handle(request(Code.GET, "/1/0"))
    assert reply.response.content_format == ContentFormat.TLV


def _only_bootstrap() -> BootstrapHandler:
    handler = BootstrapHandler(factory())
    handler.handle(request(Code.DELETE, "/"))
    return handler


@pytest.mark.parametrize(
    ("security", "server", "diagnostic"),
    [
        ([], [], "no LwM2M Server account"),
        ([], server_records(0, 9), "no Security instance"),
        (security_records(0, 9, "http://x:1"), server_records(0, 9), "coap://"),
        (security_records(0, 9, "coaps://x:1", mode=3), server_records(0, 9), "NoSec"),
        (security_records(0, 9, "coap://x:1", mode=0), server_records(0, 9), "plain"),
        (security_records(0, 9, "coaps://x:1", mode=0), server_records(0, 9), "psk_identity"),
        (security_records(0, 9, "coaps://x:1", mode=2), server_records(0, 9), "CERTIFICATE"),
        (security_records(0, 9, "coap://x:1", mode=7), server_records(0, 9), "not supported"),
        (security_records(0, 9, "coap://x:1"), server_records(0, 9, lifetime=0), "lifetime"),
        (security_records(0, 9, "coap://x:1")[:-1], server_records(0, 9), "Short Server ID"),
    ],
)
def test_finish_rejects_inconsistent_configuration(
    security: list[Record], server: list[Record], diagnostic: str
) -> None:
    handler = _only_bootstrap()
    before = handler.provisioning.copy()
    if security:
        write(handler, "/0/0", security, ContentFormat.TLV)
    if server:
        write(handler, "/1/0", server, ContentFormat.TLV)
    code, payload, accounts = finish(handler)
    assert code == Code.NOT_ACCEPTABLE
    assert accounts is None
    assert diagnostic in payload.decode()
    assert before.bootstrap_instance() == handler.provisioning.bootstrap_instance()


def test_psk_account_is_converted() -> None:
    handler = _only_bootstrap()
    records = security_records(0, 4, "coaps://x:5684", mode=0)
    records[3] = Record(Path.of(0, 0, 3), b"id")
    records[4] = Record(Path.of(0, 0, 5), b"\x01\x02")
    write(handler, "/0/0", records, ContentFormat.TLV)
    write(handler, "/1/0", server_records(0, 4), ContentFormat.TLV)
    code, _, accounts = finish(handler)
    assert code == Code.CHANGED and accounts is not None
    assert accounts[0].psk_identity == b"id" and accounts[0].psk_key == b"\x01\x02"
    assert accounts[0].effective_security_mode is SecurityMode.PSK


def test_handler_works_on_a_copy() -> None:
    prov = factory()
    handler = BootstrapHandler(prov)
    handler.handle(request(Code.DELETE, "/"))
    assert prov == factory()


def test_to_dict_round_trip_through_json() -> None:
    handler = BootstrapHandler(factory())
    records = [*security_records(0, 1, "coap://10.0.0.1:5683"), Record(Path.of(0, 0, 16, 2), 49)]
    write(handler, "/0/0", records, ContentFormat.TLV)
    prov = handler.provisioning
    prov.server[0][12] = 1.5
    restored = Provisioning.from_dict(json.loads(json.dumps(prov.to_dict())))
    assert restored == prov


@pytest.mark.parametrize(
    "data",
    [{"0": {"x": {}}}, {"0": {"0": {"1": ["q", 1]}}}, {"1": {"0": {"1": ["i", "1"]}}}, {"0": 5}],
)
def test_from_dict_rejects_garbage(data: dict[str, object]) -> None:
    with pytest.raises(StorageError):
        Provisioning.from_dict(data)


def test_accounts_raise_typed_error() -> None:
    with pytest.raises(InconsistentConfiguration):
        Provisioning().accounts()
