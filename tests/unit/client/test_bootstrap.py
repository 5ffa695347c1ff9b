"""Sans-IO tests of the client's Bootstrap interface (client/bootstrap.py)."""

from __future__ import annotations

import json
import pathlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from simkit import EXACT_COAP, account, requests_to

from aiolwm2m.accounts import RetrySettings, SecurityMode, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import (
    BootstrapHandler,
    InconsistentConfiguration,
    Provisioning,
)
from aiolwm2m.client.bootstrap import Operation as BsOp
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.engine import BootstrapPhase, ServerState
from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.coap.message import decode as decode_coap
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import StorageError
from aiolwm2m.lwm2m import (
    ContentFormat,
    Path,
    Record,
    Value,
    decode,
    encode,
    linkformat,
    load_builtin,
)
from aiolwm2m.lwm2m.linkformat import ObjectEntry
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.bootstrap import BootstrapConfig, BootstrapFault, ProvisionedServer
from aiolwm2m.testbed.core import Address, FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import HandshakeOutcome, SimBootstrapServer, SimServer

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
    assert reply.operation is BsOp.WRITE
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
    assert reply.operation is BsOp.FINISH
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


def test_delete_of_an_object_the_client_lacks_is_bad_request() -> None:
    # Core 1.1.1 §6.1.7.6: Delete targets objects the client supports; the
    # Bootstrap interface answers an unknown URI with 4.00, never 4.04.
    prov = factory()
    handler = BootstrapHandler(prov, {3: ObjectEntry("1.1", (0,)), 3303: ObjectEntry()})
    for path in ("/77", "/77/0", "/21"):
        assert handler.handle(request(Code.DELETE, path)).response.code == Code.BAD_REQUEST
    # The application's own objects: accepted and left alone.
    for path in ("/3303", "/3303/0", "/3/0"):
        assert handler.handle(request(Code.DELETE, path)).response.code == Code.DELETED
    assert handler.provisioning == prov


def test_delete_of_an_instance_that_is_not_there_is_deleted() -> None:
    # Core 1.1.1 §6.1.7.6 names no error for an absent instance of a supported
    # object; a clean-up Delete before a Write must not fail (Anjay: 2.02 too).
    prov = factory()
    handler = BootstrapHandler(prov)
    for path in ("/0/7", "/1/7"):
        assert handler.handle(request(Code.DELETE, path)).response.code == Code.DELETED
    assert handler.provisioning == prov


def test_discover_lists_ssid_and_uri() -> None:
    handler = BootstrapHandler(factory(), {3: ObjectEntry("1.1", (0,)), 1: ObjectEntry()})
    reply = handler.handle(request(Code.GET, "/", accept=ContentFormat.LINK_FORMAT))
    assert reply.operation is BsOp.DISCOVER
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
    assert [link.target for link in linkformat.decode(one.response.payload)] == ["/", "/1/0"]
    deep = handler.handle(request(Code.GET, "/1/0", accept=ContentFormat.LINK_FORMAT))
    assert deep.response.code == Code.BAD_REQUEST


def test_discover_quotes_the_server_uri() -> None:
    # Core 1.1.1 §6.1.7.3: uri="coaps://…" in the spec's examples; Leshan's
    # Bootstrap-Server parses the uri attribute as a quoted-string only.
    handler = BootstrapHandler(factory())
    reply = handler.handle(request(Code.GET, "/0", accept=ContentFormat.LINK_FORMAT))
    assert b';uri="coap://10.0.0.1:5683"' in reply.response.payload


def test_discover_of_one_object_starts_with_the_enabler_version() -> None:
    # Core 1.1.1 §6.1.7.3: the answer holds the LwM2M Enabler Version whatever
    # the target; the spec's Discover /0 example starts with </>;lwm2m=1.1.
    handler = BootstrapHandler(factory(), {3: ObjectEntry("1.1", (0,))})
    for target, expected in [
        ("/0", ["/", "/0/0", "/0/1"]),
        ("/3", ["/", "/3", "/3/0"]),
    ]:
        reply = handler.handle(request(Code.GET, target, accept=ContentFormat.LINK_FORMAT))
        links = linkformat.decode(reply.response.payload)
        assert [link.target for link in links] == expected
        assert links[0].params == (("lwm2m", "1.1"),)
    absent = handler.handle(request(Code.GET, "/5", accept=ContentFormat.LINK_FORMAT))
    assert absent.response.code == Code.NOT_FOUND


def test_discover_announces_the_enabler_version_it_is_given() -> None:
    # Core 1.1.1 §6.1.7.3: the answer holds the LwM2M Enabler Version the
    # client supports; a client of LwM2M 1.0 must not claim 1.1.
    handler = BootstrapHandler(factory(), lwm2m_version="1.0")
    for target in ("/", "/0"):
        reply = handler.handle(request(Code.GET, target, accept=ContentFormat.LINK_FORMAT))
        assert linkformat.decode(reply.response.payload)[0].params == (("lwm2m", "1.0"),)


def test_discover_lists_the_server_object_without_instances() -> None:
    # Core 1.1.1 §6.1.7.3: a supported object with no instance is still
    # listed (the spec's </5>,</4>); after Delete / that is /1.
    handler = _only_bootstrap()
    root = handler.handle(request(Code.GET, "/", accept=ContentFormat.LINK_FORMAT))
    assert "/1" in [link.target for link in linkformat.decode(root.response.payload)]
    one = handler.handle(request(Code.GET, "/1", accept=ContentFormat.LINK_FORMAT))
    assert one.response.code == Code.CONTENT
    assert [link.target for link in linkformat.decode(one.response.payload)] == ["/", "/1"]


@pytest.mark.parametrize("cf", VALUE_FORMATS, ids=lambda c: c.name)
def test_bootstrap_read_of_server_object(cf: ContentFormat) -> None:
    handler = BootstrapHandler(factory())
    reply = handler.handle(request(Code.GET, "/1", accept=cf))
    assert reply.operation is BsOp.READ and reply.response.code == Code.CONTENT
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


def test_finish_with_a_second_bootstrap_account_is_not_acceptable() -> None:
    # Core 1.1.1 §5.2 (Client Initiated Bootstrap, step 3): a replaced
    # Bootstrap-Server account must be gone by Finish, else 4.06 and the
    # previous account stays the only one active.
    handler = _only_bootstrap()
    found = handler.provisioning.bootstrap_instance()
    assert found is not None
    write(handler, "/0/0", security_records(0, 9, "coap://x:1"), ContentFormat.TLV)
    write(handler, "/1/0", server_records(0, 9), ContentFormat.TLV)
    second = [*security_records(7, 9, "coap://10.0.0.8:5683")[:-1]]
    second[1] = Record(Path.of(0, 7, 1), True)
    write(handler, "/0/7", second, ContentFormat.TLV)
    code, payload, accounts = finish(handler)
    assert code == Code.NOT_ACCEPTABLE and accounts is None
    assert b"more than one Bootstrap-Server account" in payload
    assert f"/0/{found[0]}, /0/7".encode() in payload
    # The server may fix it and finish again.
    assert handler.handle(request(Code.DELETE, "/0/7")).response.code == Code.DELETED
    assert finish(handler)[0] == Code.CHANGED


def _rewrite_bootstrap_account(handler: BootstrapHandler, changes: dict[int, Value | None]) -> int:
    """Bootstrap-Write the Bootstrap-Server's own instance with ``changes`` (None drops
    a resource); its instance id."""
    found = handler.provisioning.bootstrap_instance()
    assert found is not None
    iid, inst = found[0], {**found[1], **changes}
    records = [
        Record(Path.of(0, iid, rid), v)
        for rid, v in sorted(inst.items())
        if v is not None and not isinstance(v, dict)
    ]
    assert write(handler, f"/0/{iid}", records, ContentFormat.TLV) == Code.CHANGED
    return iid


@pytest.mark.parametrize(
    ("changes", "diagnostic"),
    [
        ({12: -5}, "bootstrap_account_timeout"),
        ({11: -5}, "client_hold_off_time (Security /0/x/11) must be >= 0"),
        ({0: None}, "no LwM2M Server URI"),
        ({0: "http://10.0.0.9:80"}, "coap://"),
        ({0: "coaps://10.0.0.9:5684", 2: 0}, "psk_identity"),
    ],
    ids=["negative-timeout", "negative-hold-off", "no-uri", "bad-uri", "psk-without-credentials"],
)
def test_finish_refuses_an_unusable_rewritten_bootstrap_account(
    changes: dict[int, Value | None], diagnostic: str
) -> None:
    # Core 1.1.1, Bootstrap and Configuration Consistency: an inconsistency in
    # what was loaded is answered at Finish with an error (4.06, as for two
    # Bootstrap-Server accounts); the client used to answer 2.04 and quietly
    # keep its previous account.
    handler = BootstrapHandler(factory())
    iid = _rewrite_bootstrap_account(handler, changes)
    code, payload, accounts = finish(handler)
    assert (code, accounts) == (Code.NOT_ACCEPTABLE, None)
    assert f"Bootstrap-Server account /0/{iid}: ".encode() in payload
    assert diagnostic in payload.decode()
    # The server may fix it and finish again.
    _rewrite_bootstrap_account(handler, {0: BS_URI, 2: 3, 11: 0, 12: 30})
    assert finish(handler)[0] == Code.CHANGED


@pytest.mark.parametrize(
    ("rid", "value"), [(12, "soon"), (11, "soon"), (11, 2.5)], ids=["timeout", "hold-off", "float"]
)
def test_finish_refuses_a_bootstrap_account_resource_that_is_not_an_integer(
    rid: int, value: Value
) -> None:
    # A typed Write of such a value is already 4.00; Finish does not rely on it.
    # /0/x/11 and /0/x/12 are Integer resources: the client used to take a bad
    # hold-off for 0 and answer 2.04.
    handler = BootstrapHandler(factory())
    found = handler.provisioning.bootstrap_instance()
    assert found is not None
    found[1][rid] = value
    code, payload, accounts = finish(handler)
    assert (code, accounts) == (Code.NOT_ACCEPTABLE, None)
    assert f"Bootstrap-Server account /0/{found[0]}: ".encode() in payload
    assert f"/0/x/{rid} must be an integer".encode() in payload


def test_a_rewritten_bootstrap_account_keeps_its_hold_off_through_the_store() -> None:
    # The stored form is rebuilt from the account (ServerAccount), so what Finish
    # accepted comes back after a restart, a configured fraction of a second as
    # whole seconds (/0/x/11 is an Integer).
    handler = BootstrapHandler(factory())
    _rewrite_bootstrap_account(handler, {11: 7})
    assert finish(handler)[0] == Code.CHANGED
    adopted = handler.provisioning.bootstrap_account()
    assert adopted is not None and adopted.client_hold_off_time == 7
    stored = Provisioning.from_accounts((), replace(adopted, client_hold_off_time=2.5))
    restored = Provisioning.from_dict(stored.to_dict()).bootstrap_account()
    assert restored is not None and restored.client_hold_off_time == 2


def test_finish_keeps_an_untouched_certificate_bootstrap_account(tmp_path: pathlib.Path) -> None:
    # The configured account may hold what /0 cannot say (certificate files):
    # left as it was, it is not checked again, so Finish still succeeds.
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"-"), key.write_bytes(b"-")
    bootstrap = ServerAccount(
        uri="coaps://10.0.0.9:5684", certificate=str(cert), private_key=str(key)
    )
    config = ClientConfig(
        endpoint="dev",
        servers=(ServerAccount(uri="coap://10.0.0.1:5683", short_server_id=1),),
        bootstrap=bootstrap,
    )
    handler = BootstrapHandler(Provisioning.from_config(config))
    assert write(handler, "/1/0", server_records(0, 1, 60), ContentFormat.TLV) == Code.CHANGED
    assert finish(handler)[0] == Code.CHANGED


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


# -- the engine on the virtual clock ------------------------------------------------------------

A_ADDR = ("10.0.0.1", 5683)  # the factory LwM2M server
B_ADDR = ("10.0.0.5", 5683)  # the server the bootstrap provisions
BS_ADDR = ("10.0.0.9", 5683)
BS_ACCOUNT = ServerAccount(uri=f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}")


@dataclass
class World:
    net: SimNetwork
    a: SimServer
    b: SimServer
    bs: SimBootstrapServer

    def client(
        self,
        *,
        servers: tuple[ServerAccount, ...] | None = None,
        bootstrap: ServerAccount | None = BS_ACCOUNT,
        coap: TransmissionParameters = EXACT_COAP,
        start: bool = True,
    ) -> SimClient:
        if servers is None:
            servers = (account(self.a.uri),)
        config = ClientConfig(endpoint="dev-1", servers=servers, bootstrap=bootstrap, coap=coap)
        client = SimClient(self.net, config, rng=random.Random(3))
        if start:
            client.start()
        return client


@pytest.fixture
def world() -> World:
    net = SimNetwork(seed=11)
    a, b = SimServer(net, A_ADDR), SimServer(net, B_ADDR)
    a.start()
    b.start()
    config = BootstrapConfig(default=(ProvisionedServer(uri=b.uri, ssid=2, server={1: 600}),))
    bs = SimBootstrapServer(net, config, BS_ADDR)
    bs.start()
    return World(net, a, b, bs)


def names(client: SimClient) -> list[str]:
    return [e.name for e in client.events if e.name != "state_changed"]


def registered_to(client: SimClient, ssid: int) -> Callable[[], bool]:
    return lambda: any(isinstance(e, ev.Registered) and e.ssid == ssid for e in client.events)


def request_times(net: SimNetwork, dst: Address, path: list[str]) -> list[float]:
    return [t for t, msg in requests_to(net, dst) if msg.uri_path == path]


def test_update_reset_bootstraps_to_a_new_server(world: World) -> None:
    world.net.trace = []
    client = world.client()
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 1), 10)
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET))
    client.trigger_update(1)
    assert clock.run_until_true(registered_to(client, 2), 60)
    (error,) = client.errors(ev.ErrorCode.RESET)
    assert (error.request, error.action) == ("update", "bootstrap")
    tail = names(client)[names(client).index("error") :]
    assert tail[:4] == ["error", "bootstrap_started", "bootstrapped", "registering"]
    (done,) = client.named("bootstrapped")
    assert isinstance(done, ev.Bootstrapped) and done.servers == [2]
    assert client.engine.server_states() == {2: ServerState.REGISTERED}
    assert world.b.core.registrations["dev-1"].lifetime == 600
    assert world.bs.kinds("dev-1") == [
        "bootstrap_request",
        "bs_discover",
        "bs_delete",
        "bs_delete",
        "bs_write",
        "bs_write",
        "bs_finish",
        "bootstrapped",
    ]
    # Spec §10 hold-off: the Request leaves max(1 s, /0/x/11) × factor after the link opened.
    (started,) = client.named("bootstrap_started")
    (sent,) = request_times(world.net, BS_ADDR, ["bs"])
    factor = client.engine._shared.bs.factor
    assert factor is not None and 1.0 <= factor <= 1.5
    assert sent - started.time == pytest.approx(factor)
    query = next(m for _, m in requests_to(world.net, BS_ADDR) if m.uri_path == ["bs"]).uri_query
    assert query == ["ep=dev-1", "pct=112"]
    # The client asked for SenML CBOR: the writes came in it.
    writes = [m for _, m in requests_to(world.net, client_addr(world)) if m.code == Code.PUT]
    assert writes and all(m.content_format == ContentFormat.SENML_CBOR for m in writes)


def client_addr(world: World) -> Address:
    """Where the bootstrap server sent its operations (the client's bootstrap socket)."""
    assert world.net.trace is not None
    return next(dst for _, src, dst, _ in world.net.trace if src == BS_ADDR)


def test_register_never_answered_runs_retry_procedure_then_bootstraps(world: World) -> None:
    retry = RetrySettings(
        bootstrap_on_registration_failure=True,
        communication_retry_count=2,
        communication_retry_timer=10,
        communication_sequence_retry_count=1,
    )
    world.a.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.SILENT))
    client = world.client(servers=(account(world.a.uri, retry=retry),))
    assert world.net.clock.run_until_true(registered_to(client, 2), 400)
    (retry_event,) = client.named("retry_scheduled")
    assert isinstance(retry_event, ev.RetryScheduled) and retry_event.delay == 10
    timeouts = client.errors(ev.ErrorCode.TIMEOUT)
    assert [e.action for e in timeouts] == ["abort_registration", "abort_registration"]
    # Two Registers timed out (62 s each) with 10 s between them, then bootstrap.
    (started,) = client.named("bootstrap_started")
    assert started.time == pytest.approx(62 + 10 + 62, abs=0.1)
    assert client.engine.server_states() == {2: ServerState.REGISTERED}


def test_a_1_0_client_discovers_as_1_0_as_it_registers(world: World) -> None:
    # The Discover answer and the Register take the enabler version from the
    # same configuration: a client configured for 1.0 says 1.0 to both servers.
    world.net.trace = []
    config = ClientConfig(
        endpoint="dev-1",
        bootstrap=BS_ACCOUNT,
        coap=EXACT_COAP,
        registration=RegistrationConfig(lwm2m_version="1.0"),
    )
    client = SimClient(world.net, config, rng=random.Random(3))
    client.start()
    assert world.net.clock.run_until_true(registered_to(client, 2), 30)
    assert world.net.trace is not None
    answers = [decode_coap(data) for _, _, dst, data in world.net.trace if dst == BS_ADDR]
    (discovered,) = [m for m in answers if m.content_format == ContentFormat.LINK_FORMAT]
    assert linkformat.decode(discovered.payload)[0].params == (("lwm2m", "1.0"),)
    (register,) = [m for _, m in requests_to(world.net, B_ADDR) if m.uri_path == ["rd"]]
    assert "lwm2m=1.0" in register.uri_query


def test_network_error_on_update_bootstraps(world: World) -> None:
    client = world.client()
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 1), 10)
    world.a.stop()  # ICMP port unreachable for the next datagram
    client.trigger_update(1)
    assert clock.run_until_true(registered_to(client, 2), 60)
    (error,) = client.errors(ev.ErrorCode.NETWORK_ERROR)
    assert (error.request, error.action) == ("update", "bootstrap")


def test_without_bootstrap_account_b_does_not_hold(world: World) -> None:
    client = world.client(bootstrap=None)
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 1), 10)
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET))
    client.trigger_update(1)
    clock.run_for(5)
    assert client.named("bootstrap_started") == []
    assert len(client.named("server_gave_up")) == 1
    assert client.named("all_connections_failed")
    assert client.all_connections_failed()


def test_another_registered_server_means_no_bootstrap(world: World) -> None:
    c = SimServer(world.net, ("10.0.0.3", 5683))
    c.start()
    client = world.client(servers=(account(world.a.uri), account(c.uri, short_server_id=3)))
    clock = world.net.clock
    assert clock.run_until_true(lambda: client.engine.registered(3), 10)
    assert clock.run_until_true(lambda: client.engine.registered(1), 10)
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET))
    client.trigger_update(1)
    clock.run_for(5)
    assert client.named("bootstrap_started") == []
    (gave_up,) = client.named("server_gave_up")
    assert isinstance(gave_up, ev.ServerGaveUp) and gave_up.ssid == 1
    assert client.state(3) is ServerState.REGISTERED
    assert not client.all_connections_failed()


def test_failed_bootstrap_account_means_no_bootstrap_until_the_outer_loop(world: World) -> None:
    world.bs.core.config.faults.append(BootstrapFault(FaultKind.RESPOND, Code.SERVICE_UNAVAILABLE))
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET, count=2))
    client = world.client()
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 1), 10)
    client.trigger_update(1)
    assert clock.run_until_true(client.all_connections_failed, 30)
    (error,) = client.errors(ev.ErrorCode.COAP_ERROR)
    assert (error.request, error.coap_code, error.action) == (
        "bootstrap_request",
        "5.03",
        "abort_all",
    )
    assert client.engine.bootstrap_phase() is BootstrapPhase.FAILED
    # The application revives the server; its next failure (a Reset to the Update
    # that resumes the registration) cannot bootstrap: (B) fails.
    client.enable_server(1)
    clock.run_for(5)
    assert [e.request for e in client.errors(ev.ErrorCode.RESET)] == ["update", "update"]
    assert len(client.named("bootstrap_started")) == 1
    assert client.named("server_gave_up")


def test_bootstrap_request_timeout_on_nosec_aborts_all(world: World) -> None:
    world.bs.core.config.faults.append(BootstrapFault(FaultKind.SILENT))
    client = world.client(servers=())
    clock = world.net.clock
    assert clock.run_until_true(client.all_connections_failed, 200)
    (error,) = client.errors(ev.ErrorCode.TIMEOUT)
    assert (error.request, error.action) == ("bootstrap_request", "abort_all")
    (started,) = client.named("bootstrap_started")
    factor = client.engine._shared.bs.factor
    assert factor is not None
    assert error.time - started.time == pytest.approx(factor + 62)
    assert client.named("reconnect_scheduled")  # the outer loop keeps trying bootstrap


def test_quota_reached_is_reported_and_bootstrap_retried_with_doubled_hold_off(
    world: World,
) -> None:
    world.net.trace = []
    world.bs.core.config.faults.append(
        BootstrapFault(FaultKind.RESPOND, Code.BAD_REQUEST, b"account device quota reached", 1)
    )
    client = world.client(servers=())
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 2), 120)
    (error,) = client.errors(ev.ErrorCode.QUOTA_REACHED)
    assert (error.coap_code, error.action) == ("4.00", "abort_all")
    (scheduled,) = client.named("reconnect_scheduled")
    assert isinstance(scheduled, ev.ReconnectScheduled) and 2 <= scheduled.delay <= 10
    first, second = client.named("bootstrap_started")
    assert second.time == pytest.approx(scheduled.time + scheduled.delay)
    sent = request_times(world.net, BS_ADDR, ["bs"])
    factor = client.engine._shared.bs.factor
    assert factor is not None
    assert sent[0] - first.time == pytest.approx(factor)
    assert sent[1] - second.time == pytest.approx(2 * factor)  # doubled after one failure


def test_hold_off_uses_resource_11_and_caps_at_20_s(world: World) -> None:
    world.net.trace = []
    bootstrap = ServerAccount(uri=world.bs.uri, client_hold_off_time=8)
    world.bs.core.config.faults.append(BootstrapFault(FaultKind.RESPOND, Code.BAD_REQUEST, count=2))
    client = world.client(servers=(), bootstrap=bootstrap)
    assert world.net.clock.run_until_true(registered_to(client, 2), 400)
    starts = [e.time for e in client.named("bootstrap_started")]
    sent = request_times(world.net, BS_ADDR, ["bs"])
    factor = client.engine._shared.bs.factor
    assert factor is not None
    waits = [s - t for s, t in zip(sent, starts, strict=True)]
    assert waits == pytest.approx([8 * factor, min(16 * factor, 20), 20])


def test_no_finish_within_exchange_lifetime_fails_the_bootstrap(world: World) -> None:
    # Only the 2.04 to the Request gets through; no operation ever arrives.
    passed: list[bytes] = []

    def first_only(src: Address, dst: Address, data: bytes) -> bool:
        if src != BS_ADDR:
            return True
        passed.append(data)
        return len(passed) == 1

    world.net.filters.append(first_only)
    world.net.trace = []
    client = world.client(servers=(), coap=TransmissionParameters())
    assert world.net.clock.run_until_true(client.all_connections_failed, 400)
    (error,) = client.errors(ev.ErrorCode.TIMEOUT)
    assert error.request == "bootstrap_finish"
    (sent,) = request_times(world.net, BS_ADDR, ["bs"])
    assert error.time - sent == pytest.approx(247.0, abs=0.02)  # 2.04 arrived ~5 ms later
    assert client.named("bootstrapped") == []


def test_server_initiated_bootstrap_during_hold_off(world: World) -> None:
    world.net.trace = []
    bootstrap = ServerAccount(uri=world.bs.uri, client_hold_off_time=30)
    client = world.client(servers=(), bootstrap=bootstrap)
    clock = world.net.clock
    clock.run_for(1)
    assert client.engine.bootstrap_phase() is BootstrapPhase.HOLD_OFF
    socket = next(addr for addr, sock in world.net._sockets.items() if sock.remote == BS_ADDR)
    assert world.bs.push(socket, "dev-1")
    assert clock.run_until_true(registered_to(client, 2), 20)
    assert "bootstrap_request" not in world.bs.kinds()
    assert request_times(world.net, BS_ADDR, ["bs"]) == []
    assert client.named("bootstrapped")


def test_inconsistent_provisioning_is_rejected_and_nothing_changes(world: World) -> None:
    world.bs.core.config.default = (ProvisionedServer(uri="coaps://10.0.0.5:5684", ssid=2),)
    client = world.client()
    clock = world.net.clock
    assert clock.run_until_true(registered_to(client, 1), 10)
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET, count=1))
    client.trigger_update(1)
    clock.run_for(30)
    assert "finish_rejected" in world.bs.kinds()
    assert client.named("bootstrapped") == []
    # The factory account is still the one the engine knows about.
    assert client.engine.provisioning().accounts()[0].uri == world.a.uri


def test_unresolvable_bootstrap_server_stops_the_bootstrap(world: World) -> None:
    client = world.client(servers=(), bootstrap=ServerAccount(uri="coap://nowhere.invalid:5683"))
    assert world.net.clock.run_until_true(client.all_connections_failed, 5)
    (error,) = client.errors(ev.ErrorCode.DNS_RESOLVING_FAILED)
    assert error.request == "bootstrap_connect"
    assert client.engine.bootstrap_phase() is BootstrapPhase.FAILED
    assert client.named("reconnect_scheduled")


def test_provisioned_accounts_survive_a_restart(world: World) -> None:
    bootstrap = ServerAccount(uri=world.bs.uri, client_hold_off_time=3)
    client = world.client(servers=(), bootstrap=bootstrap)
    assert world.net.clock.run_until_true(registered_to(client, 2), 30)
    snapshot = client.engine.snapshot()
    assert snapshot.provisioning is not None
    restored = world.client(servers=(), bootstrap=bootstrap, start=False)
    restored.engine.restore(snapshot)
    assert [a.short_server_id for a in restored.engine.provisioning().accounts()] == [2]
    # The configured account, at the /0 instance it has on the client (issue 12 item 2).
    assert restored.engine.bootstrap_account == replace(bootstrap, security_instance=0)
    restored.start()
    # Spec §10: the restored registration has not expired: an Update resumes it.
    assert world.net.clock.run_until_true(lambda: restored.engine.registered(2), 10)
    assert restored.named("updated") and not restored.named("registering")
    assert restored.named("bootstrap_started") == []


def test_dtls_bootstrap_request_timeout_right_after_handshake_aborts_all(world: World) -> None:
    """Row Bootstrap-Request × timeout on a DTLS server with the (†) rule: the Request
    is the first one on a fresh session, so no second handshake: abort all (A)."""
    secure_bs = SimServer(world.net, ("10.0.0.10", 5684), dtls=HandshakeOutcome.ACCEPT)
    secure_bs.start()
    secure_bs.core.add_rule(FaultRule(Operation.ANY, FaultKind.SILENT))
    bootstrap = ServerAccount(uri=secure_bs.uri, psk_identity=b"dev-1", psk_key=b"k")
    client = world.client(servers=(), bootstrap=bootstrap)
    assert world.net.clock.run_until_true(client.all_connections_failed, 200)
    (error,) = client.errors(ev.ErrorCode.TIMEOUT)
    assert (error.request, error.action) == ("bootstrap_request", "abort_all")
    assert len(secure_bs.handshakes) == 1


def test_dtls_bootstrap_request_timeout_later_in_the_session_retries_the_handshake(
    world: World,
) -> None:
    """After a 4.29 wait the Request is not the first on the session: a timeout retries
    the handshake once and resends at once; that one times out right after it: (A)."""
    secure_bs = SimServer(world.net, ("10.0.0.10", 5684), dtls=HandshakeOutcome.ACCEPT)
    secure_bs.start()
    secure_bs.core.add_rule(
        FaultRule(Operation.ANY, FaultKind.RESPOND, Code.TOO_MANY_REQUESTS, max_age=5, count=1)
    )
    secure_bs.core.add_rule(FaultRule(Operation.ANY, FaultKind.SILENT))
    bootstrap = ServerAccount(uri=secure_bs.uri, psk_identity=b"dev-1", psk_key=b"k")
    client = world.client(servers=(), bootstrap=bootstrap)
    assert world.net.clock.run_until_true(client.all_connections_failed, 400)
    errors = [(e.code, e.action) for e in client.errors()]
    assert errors == [
        (ev.ErrorCode.TOO_MANY_REQUESTS, None),
        (ev.ErrorCode.TIMEOUT, "retry_handshake"),
        (ev.ErrorCode.TIMEOUT, "abort_all"),
    ]
    assert len(secure_bs.handshakes) == 2
    limited, first_timeout, _ = client.errors()
    assert first_timeout.time - limited.time == pytest.approx(5 + 62, abs=0.1)


def test_invalid_bootstrap_account_is_reported_and_not_retried(world: World) -> None:
    client = world.client(servers=(), bootstrap=ServerAccount(uri="http://10.0.0.9:80"))
    clock = world.net.clock
    assert clock.run_until_true(client.all_connections_failed, 5)
    (error,) = client.errors(ev.ErrorCode.INVALID_PARAMETERS)
    assert error.request == "bootstrap_request"
    clock.run_for(3600)
    assert client.named("bootstrap_started") == []
    assert client.named("reconnect_scheduled") == []
