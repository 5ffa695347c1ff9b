"""Bootstrap-Request Trigger, Server /1/x/9 (issue 12 item 4).

"When this Resource is executed the LwM2M Client MUST initiate a Client
Initiated Bootstrap procedure in using the LwM2M Bootstrap-Server Account"
(Server object). Without such an account the Execute answers 4.05. As Leshan's
client does, the client de-registers from its servers first (after answering
the Execute), then bootstraps. Production engine, testbed LwM2M and bootstrap
servers, virtual clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from simkit import account, operate

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import BootstrapPhase, ServerState
from aiolwm2m.coap.message import Code, Message, MessageType, decode, encode, make_options
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.operations import OperationResult, execute_request
from aiolwm2m.testbed.sim import SimBootstrapServer, SimServer

A_ADDR, B_ADDR, BS_ADDR = ("10.0.0.1", 5683), ("10.0.0.5", 5683), ("10.0.0.9", 5683)


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(seed=3)


@pytest.fixture
def servers(net: SimNetwork) -> tuple[SimServer, SimServer, SimBootstrapServer]:
    a, b = SimServer(net, A_ADDR), SimServer(net, B_ADDR)
    a.start()
    b.start()
    config = BootstrapConfig(default=(ProvisionedServer(uri=b.uri, ssid=2, server={1: 600}),))
    bs = SimBootstrapServer(net, config, BS_ADDR)
    bs.start()
    return a, b, bs


def client_of(net: SimNetwork, a: SimServer, *, with_bootstrap: bool = True) -> SimClient:
    bootstrap = ServerAccount(uri=f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}") if with_bootstrap else None
    config = ClientConfig("dev-1", servers=(account(a.uri),), bootstrap=bootstrap)
    client = SimClient(net, config, rng=random.Random(4))
    client.start()
    assert net.clock.run_until_true(lambda: client.engine.registered(1), 10)
    return client


def execute_trigger(net: SimNetwork, server: SimServer) -> OperationResult:
    return operate(net, server, execute_request("/1/0/9"))


def registered_to(client: SimClient, ssid: int) -> Callable[[], bool]:
    return lambda: any(isinstance(e, ev.Registered) and e.ssid == ssid for e in client.events)


def test_the_trigger_deregisters_then_bootstraps_to_the_provisioned_server(
    net: SimNetwork, servers: tuple[SimServer, SimServer, SimBootstrapServer]
) -> None:
    a, b, bs = servers
    client = client_of(net, a)
    net.trace = []
    result = execute_trigger(net, a)
    assert result.code == Code.CHANGED
    to_a = [decode(data) for _, _, dst, data in net.trace if dst == a.addr]
    assert [(m.type, m.code) for m in to_a][:2] == [
        (MessageType.ACK, Code.CHANGED),
        (MessageType.CON, Code.DELETE),
    ], "the Execute is answered, then the client de-registers"
    assert net.clock.run_until_true(registered_to(client, 2), 60)
    assert "dev-1" not in a.core.registrations, "no stale registration left behind"
    assert "dev-1" in b.core.registrations
    kinds = [e.name for e in client.events if e.name != "state_changed"]
    tail = kinds[kinds.index("deregistered") :]
    assert tail[:4] == ["deregistered", "bootstrap_started", "bootstrapped", "registering"]
    assert bs.kinds("dev-1")[0] == "bootstrap_request", "client-initiated"
    assert client.engine.bootstrap_phase() is BootstrapPhase.IDLE


def test_without_a_bootstrap_account_the_trigger_is_4_05_and_nothing_changes(
    net: SimNetwork, servers: tuple[SimServer, SimServer, SimBootstrapServer]
) -> None:
    a, _b, bs = servers
    client = client_of(net, a, with_bootstrap=False)
    result = execute_trigger(net, a)
    assert result.code == Code.METHOD_NOT_ALLOWED
    net.clock.run_for(30)
    assert client.engine.server_state(1) is ServerState.REGISTERED
    assert not client.named("deregistered") and not client.named("bootstrap_started")
    assert "dev-1" in a.core.registrations and not bs.kinds("dev-1")


def test_a_deregister_that_gets_no_answer_still_leads_to_the_bootstrap(
    net: SimNetwork, servers: tuple[SimServer, SimServer, SimBootstrapServer]
) -> None:
    a, _b, _bs = servers
    client = client_of(net, a)
    a.core.add_rule(FaultRule(Operation.DEREGISTER, FaultKind.SILENT))
    assert execute_trigger(net, a).code == Code.CHANGED
    assert client.engine.bootstrap_phase() is BootstrapPhase.IDLE  # leaving: hidden
    assert not client.named("bootstrap_started"), "waits for the De-register"
    assert net.clock.run_until_true(registered_to(client, 2), 200)
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and not dereg.acknowledged


def test_the_application_may_request_a_bootstrap_too(
    net: SimNetwork, servers: tuple[SimServer, SimServer, SimBootstrapServer]
) -> None:
    a, _b, _bs = servers
    client = client_of(net, a)
    client.engine.request_bootstrap(net.clock.now)
    client.poll()
    assert net.clock.run_until_true(registered_to(client, 2), 60)


def test_requesting_a_bootstrap_without_an_account_is_not_allowed(
    net: SimNetwork, servers: tuple[SimServer, SimServer, SimBootstrapServer]
) -> None:
    a, _b, _bs = servers
    client = client_of(net, a, with_bootstrap=False)
    client.engine.request_bootstrap(net.clock.now)
    client.poll()
    assert client.errors(ev.ErrorCode.NOT_ALLOWED)
    assert client.engine.server_state(1) is ServerState.REGISTERED


def test_a_bootstrap_write_with_an_unrecognised_critical_option_is_4_02(
    net: SimNetwork,
) -> None:
    """Issue 12 item 5 on the bootstrap link (RFC 7252 §5.4.1): the client's Bootstrap
    interface refuses the Write with 4.02 before it sees it; nothing is provisioned."""
    answers: list[Message] = []
    client_addr: list[tuple[str, int]] = []

    def peer(src: tuple[str, int], data: bytes) -> None:
        msg = decode(data)
        if msg.code == Code.POST and msg.uri_path == ["bs"]:
            client_addr.append(src)
            ack = Message(type=MessageType.ACK, code=Code.CHANGED, mid=msg.mid, token=msg.token)
            net.send(BS_ADDR, src, encode(ack))
            write = Message(
                type=MessageType.CON,
                code=Code.PUT,
                mid=0x4242,
                token=b"bw",
                options=make_options(path=["0", "5", "0"], content_format=0),
                payload=b"coap://10.0.0.77:5683",
            )
            write.add(9, b"x")  # odd, unassigned: critical and unknown
            net.send(BS_ADDR, src, encode(write))
        elif msg.type is MessageType.ACK:
            answers.append(msg)

    net.bind(BS_ADDR, peer)
    bootstrap = ServerAccount(uri=f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}")
    client = SimClient(net, ClientConfig("dev-1", bootstrap=bootstrap), rng=random.Random(4))
    client.start()
    net.clock.run_for(5)
    assert client_addr, "the client sent its Bootstrap-Request"
    [refused] = [m for m in answers if m.mid == 0x4242]
    assert refused.code == Code.BAD_OPTION
    assert 5 not in client.engine.provisioning().security
