"""Sans-IO tests of the testbed Bootstrap-Server against the client's Bootstrap interface.

The "device" is the production client side (a MessageLayer answering with a
BootstrapHandler); both ends are pumped by hand, no sockets, no clock.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from aiolwm2m.accounts import SecurityMode, ServerAccount
from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer
from aiolwm2m.coap.message import Code, Message, MessageType, decode, make_options
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import ConfigError
from aiolwm2m.examples import EXAMPLES
from aiolwm2m.lwm2m import ContentFormat
from aiolwm2m.testbed.bootstrap import (
    BootstrapConfig,
    BootstrapCore,
    BootstrapFault,
    ProvisionedServer,
    load_bootstrap_config,
)
from aiolwm2m.testbed.core import FaultKind

EXAMPLE = EXAMPLES / "bootstrap.toml"
DEVICE = ("10.0.0.2", 40000)


class Device:
    """A client's bootstrap link: answers with the production BootstrapHandler."""

    def __init__(
        self,
        core: BootstrapCore,
        servers: tuple[ServerAccount, ...] = (),
        addr: tuple[str, int] = DEVICE,
    ) -> None:
        self.core = core
        self.addr = addr
        self.layer = MessageLayer(TransmissionParameters(), random.Random(addr[1]))
        config = ClientConfig("dev-1", servers=servers, bootstrap=ServerAccount("coap://bs:5683"))
        self.handler = BootstrapHandler(Provisioning.from_config(config))
        self.accounts: list[ServerAccount] | None = None
        self.results: list[ExchangeResult] = []
        self.received: list[Message] = []
        self.now = 0.0

    def request(self, query: list[str]) -> None:
        msg = Message(
            type=MessageType.CON, code=Code.POST, options=make_options(path=["bs"], query=query)
        )
        self.layer.send_request(msg, self.now)
        self.pump()

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for data in self.layer.datagrams_to_send():
                self.core.datagram_received(self.addr, data, self.now)
                moved = True
            for addr, data in self.core.datagrams_to_send():
                assert addr == self.addr
                self.received.append(decode(data))
                self.layer.receive(data, self.now)
                moved = True
            while (event := self.layer.next_event()) is not None:
                if isinstance(event, IncomingRequest):
                    reply = self.handler.handle(event.message)
                    if reply.accounts is not None:
                        self.accounts = reply.accounts
                    self.layer.respond(event.key, reply.response, self.now)
                else:
                    self.results.append(event)
                moved = True
            if not moved:
                return

    def run_timers(self, until: float) -> None:
        """Let time pass (retransmissions, timeouts) on both ends."""
        while True:
            times = [t for t in (self.layer.next_timer(), self.core.next_timer()) if t is not None]
            if not times or min(times) > until:
                return
            self.now = min(times)
            self.layer.handle_timer(self.now)
            self.core.handle_timer(self.now)
            self.pump()


def kinds(core: BootstrapCore) -> list[str]:
    return [e.kind for e in core.history]


def config(**changes: Any) -> BootstrapConfig:
    base = BootstrapConfig(
        default=(
            ProvisionedServer(uri="coap://10.0.0.5:5683", ssid=7, server={1: 123}),
            ProvisionedServer(
                uri="coaps://10.0.0.6:5684", ssid=8, psk_identity=b"me", psk_key=b"k"
            ),
        )
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


@pytest.mark.parametrize(
    ("pct", "expected"),
    [
        (None, ContentFormat.TLV),
        ("112", ContentFormat.SENML_CBOR),
        ("110", ContentFormat.SENML_JSON),
        ("11544", ContentFormat.LWM2M_CBOR),
        ("42", ContentFormat.TLV),
        ("junk", ContentFormat.TLV),
    ],
)
def test_full_sequence_provisions_the_client(pct: str | None, expected: int) -> None:
    core = BootstrapCore(config())
    device = Device(core, servers=(ServerAccount("coap://old:5683", short_server_id=1),))
    device.request(["ep=dev-1"] + ([f"pct={pct}"] if pct else []))
    assert device.results[0].response is not None
    assert device.results[0].response.code == Code.CHANGED
    assert kinds(core) == [
        "bootstrap_request",
        "bs_discover",
        "bs_delete",
        "bs_delete",
        *["bs_write"] * 4,
        "bs_finish",
        "bootstrapped",
    ]
    assert core.bootstrapped == {"dev-1": 1}
    writes = [m for m in device.received if m.code == Code.PUT]
    assert {m.content_format for m in writes} == {expected}
    assert device.accounts is not None
    plain, secure = device.accounts
    assert (plain.uri, plain.short_server_id, plain.lifetime) == ("coap://10.0.0.5:5683", 7, 123)
    assert secure.effective_security_mode is SecurityMode.PSK
    assert (secure.psk_identity, secure.psk_key) == (b"me", b"k")
    # The client's bootstrap account (/0/1 here, after the factory /0/0) was kept.
    prov = device.handler.provisioning
    bs = prov.bootstrap_instance()
    assert bs is not None and bs[0] == 1
    assert sorted(prov.security) == [0, 1, 2]


def test_without_discover_instances_start_at_first_instance_id() -> None:
    core = BootstrapCore(config(discover=False, first_instance_id=10))
    device = Device(core)
    device.request(["ep=dev-1"])
    assert "bs_discover" not in kinds(core)
    writes = ["/" + "/".join(m.uri_path) for m in device.received if m.code == Code.PUT]
    assert writes == ["/0/10", "/1/0", "/0/11", "/1/1"]
    assert core.bootstrapped == {"dev-1": 1}


def test_accounts_can_be_written_under_chosen_instance_ids() -> None:
    """As Wakaama (/0/1, /1/1) or a Leshan configuration would: the client keeps them."""
    toml = {
        "default": {
            "server": [
                {"uri": "coap://10.0.0.5:5683", "ssid": 7, "security_instance": 1},
                {"uri": "coap://10.0.0.6:5683", "ssid": 8, "server_instance": 5},
            ]
        },
    }
    core = BootstrapCore(load_bootstrap_config(toml))
    device = Device(core)
    device.request(["ep=dev-1"])
    writes = ["/" + "/".join(m.uri_path) for m in device.received if m.code == Code.PUT]
    # /0/0 is the client's Bootstrap-Server account (Discover told), /0/1 was chosen.
    assert writes == ["/0/1", "/1/0", "/0/2", "/1/5"]
    assert device.accounts is not None
    ids = [(a.short_server_id, a.security_instance, a.server_instance) for a in device.accounts]
    assert ids == [(7, 1, 0), (8, 2, 5)]


def test_configured_content_format_wins_over_pct() -> None:
    core = BootstrapCore(config(content_format=ContentFormat.TLV))
    device = Device(core)
    device.request(["ep=dev-1", "pct=112"])
    assert {m.content_format for m in device.received if m.code == Code.PUT} == {ContentFormat.TLV}


def test_endpoint_table_and_unknown_endpoint() -> None:
    only = ProvisionedServer(uri="coap://10.0.0.7:5683", ssid=3)
    core = BootstrapCore(BootstrapConfig(endpoints={"dev-1": (only,)}))
    device = Device(core)
    device.request(["ep=dev-1"])
    assert device.accounts is not None and [a.short_server_id for a in device.accounts] == [3]
    other = Device(core, addr=("10.0.0.3", 40001))
    other.request(["ep=stranger"])
    assert other.results[-1].response is not None
    assert other.results[-1].response.code == Code.BAD_REQUEST
    assert "unknown_endpoint" in kinds(core)


def test_finish_rejected_is_logged_with_the_diagnostic() -> None:
    bad = ProvisionedServer(uri="coaps://10.0.0.7:5684", ssid=3, security_mode=SecurityMode.NOSEC)
    core = BootstrapCore(BootstrapConfig(default=(bad,)))
    device = Device(core)
    device.request(["ep=dev-1"])
    assert device.accounts is None
    rejected = [e for e in core.history if e.kind == "finish_rejected"]
    assert len(rejected) == 1 and rejected[0].detail.startswith("4.06")
    assert "NoSec" in rejected[0].detail


@pytest.mark.parametrize(
    ("fault", "outcome", "code"),
    [
        (
            BootstrapFault(FaultKind.RESPOND, Code.BAD_REQUEST, b"quota"),
            "response",
            Code.BAD_REQUEST,
        ),
        (BootstrapFault(FaultKind.RESET), "reset", None),
    ],
)
def test_fault_rules_answer_the_request(
    fault: BootstrapFault, outcome: str, code: int | None
) -> None:
    fault.count = 1
    core = BootstrapCore(config(faults=[fault]))
    device = Device(core)
    device.request(["ep=dev-1"])
    (result,) = device.results
    assert result.outcome.value == outcome
    assert (result.response.code if result.response else None) == code
    assert "fault" in kinds(core) and not core.bootstrapped
    device.request(["ep=dev-1"])  # count exhausted: the next one goes through
    assert core.bootstrapped == {"dev-1": 1}


def test_silent_fault_lets_the_request_time_out() -> None:
    core = BootstrapCore(config(faults=[BootstrapFault(FaultKind.SILENT)]))
    device = Device(core)
    device.request(["ep=dev-1"])
    device.run_timers(until=300)
    (result,) = device.results
    assert result.outcome.value == "timeout"
    assert core.requests == {"dev-1": 1}  # retransmissions are duplicates, dropped too


def test_silent_client_fails_the_session() -> None:
    core = BootstrapCore(config())
    assert core.push(DEVICE, "dev-1", 0.0)
    core.datagrams_to_send()  # lost: the client never answers
    t = 0.0
    while (nt := core.next_timer()) is not None and t < 300:
        t = nt
        core.handle_timer(t)
        core.datagrams_to_send()
    assert kinds(core) == ["bootstrap_failed"]
    assert "discover /0: timeout" in core.history[0].detail


def test_push_is_a_server_initiated_bootstrap() -> None:
    core = BootstrapCore(config())
    device = Device(core)
    assert core.push(DEVICE, "dev-1", 0.0)
    device.pump()
    assert "bootstrap_request" not in kinds(core)
    assert core.bootstrapped == {"dev-1": 1}
    assert not BootstrapCore(config(default=())).push(DEVICE, "stranger", 0.0)


def test_other_requests_are_refused() -> None:
    core = BootstrapCore(config())
    device = Device(core)
    device.layer.send_request(
        Message(type=MessageType.CON, code=Code.GET, options=make_options(path=["rd"])), 0.0
    )
    device.request([])  # POST /bs without ep
    device.pump()
    codes = [r.response.code for r in device.results if r.response is not None]
    assert codes == [Code.NOT_FOUND, Code.BAD_REQUEST]


def test_example_config_loads() -> None:
    loaded = load_bootstrap_config(EXAMPLE)
    assert loaded.servers_for("demo-1") is not None
    assert [s.ssid for s in loaded.servers_for("demo-1") or ()] == [1, 2]
    assert loaded.servers_for("anyone") == loaded.default
    (fault,) = loaded.faults
    assert (fault.code, fault.payload, fault.endpoint) == (
        Code.BAD_REQUEST,
        b"account device quota reached",
        "full-1",
    )


def test_certificate_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "c.der").write_bytes(b"\x30\x01")
    (tmp_path / "k.der").write_bytes(b"\x30\x02")
    toml = tmp_path / "bs.toml"
    toml.write_text(
        '[[default.server]]\nuri = "coaps://h:5684"\nssid = 2\n'
        'certificate = "c.der"\nprivate_key = "k.der"\n'
    )
    (server,) = load_bootstrap_config(toml).default
    assert server.mode is SecurityMode.CERTIFICATE
    records = {r.path.resource_id: r.value for r in server.security_records(0)}
    assert (records[2], records[3], records[5]) == (2, b"\x30\x01", b"\x30\x02")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "provisions nothing"),
        ({"default": {"server": [{"ssid": 1}]}}, "needs a uri"),
        ({"default": {"server": [{"uri": "coap://h", "ssid": 0}]}}, "ssid"),
        ({"default": {"server": [{"uri": "coap://h", "colour": 1}]}}, "colour"),
        ({"default": {"server": [{"uri": "coap://h"}, {"uri": "coap://g"}]}}, "share an ssid"),
        ({"default": {"server": [{"uri": "coap://h", "psk_key": "hex:zz"}]}}, "bad hex"),
        ({"default": {"server": [{"uri": "coap://h", "certificate": "/nope"}]}}, "cannot read"),
        ({"default": {"server": [{"uri": "coap://h", "security_mode": "x"}]}}, "security_mode"),
        ({"default": {"server": [{"uri": "coap://h", "server_instance": -1}]}}, "server_instance"),
        ({"default": {"server": [{"uri": "coap://h", "security_instance": "1"}]}}, "security_inst"),
        ({"default": {"server": [{"uri": "coap://h"}]}, "discover": 1}, "true or false"),
        ({"default": {"server": [{"uri": "coap://h"}]}, "content_format": 0}, "content_format"),
        ({"default": {"server": [{"uri": "coap://h"}]}, "colour": 1}, "colour"),
        ({"default": {"server": [{"uri": "coap://h"}]}, "fault": [{"kind": "x"}]}, "kind"),
        ({"default": {"server": [{"uri": "coap://h"}]}, "fault": [{"code": "9.99"}]}, "code"),
    ],
)
def test_bad_configs_are_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_bootstrap_config(data)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_bootstrap_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[default.server]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_bootstrap_config(bad)
