"""The failure-table cells that need a Bootstrap-Server or a DTLS link, on the virtual clock.

Together with ``test_engine_failure_table.py``, ``test_bootstrap.py`` (Bootstrap-Request
timeouts, NoSec and DTLS with and without (†)) and ``runtime/test_sim_dtls.py``
(Register and Update timeouts on a DTLS server) every one of the 30 cells has a test.
Cells with no natural trigger in this client (an internal error while sending a
Bootstrap-Request or a De-register, which carry no application data) are
provoked by making the message layer fail to take the request, as memory
exhaustion would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from simkit import CON_GIVES_UP_AFTER, EXACT_COAP, RST, FakeTree, ScriptedServer, account

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.layer import MessageLayer
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import HandshakeOutcome, SimBootstrapServer, SimServer

BS_ADDR = ("10.0.0.9", 5683)
BS_URI = f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}"


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(seed=5)


def bootstrap_only_client(net: SimNetwork) -> SimClient:
    config = ClientConfig(endpoint="dev-1", bootstrap=ServerAccount(uri=BS_URI), coap=EXACT_COAP)
    client = SimClient(net, config, rng=random.Random(2))
    client.start()
    return client


def bs_error(client: SimClient) -> ev.Error:
    [err] = [e for e in client.errors() if e.request == "bootstrap_request"]
    return err


def aborted_all(client: SimClient) -> None:
    assert client.engine.all_connections_failed()
    assert client.named("reconnect_scheduled"), "the outer loop retries bootstrap later"


# ----------------------------------------------------------------------------- Bootstrap-Request


def test_bootstrap_request_network_error_aborts_all(net: SimNetwork) -> None:
    client = bootstrap_only_client(net)  # nothing listens on the Bootstrap-Server port
    net.clock.run_for(3)
    err = bs_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.NETWORK_ERROR, "abort_all")
    aborted_all(client)


@pytest.mark.parametrize("answer", [Code.INTERNAL_SERVER_ERROR, Code.FORBIDDEN])
def test_bootstrap_request_coap_error_aborts_all(net: SimNetwork, answer: int) -> None:
    ScriptedServer(net, BS_ADDR, lambda msg: Message(code=answer))
    client = bootstrap_only_client(net)
    net.clock.run_for(3)
    err = bs_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.COAP_ERROR, "abort_all")
    aborted_all(client)


def test_bootstrap_request_reset_aborts_all(net: SimNetwork) -> None:
    ScriptedServer(net, BS_ADDR, lambda msg: RST)
    client = bootstrap_only_client(net)
    net.clock.run_for(3)
    err = bs_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.RESET, "abort_all")
    aborted_all(client)


@pytest.fixture
def layer_refuses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Make MessageLayer.send_request fail (as on memory exhaustion) for chosen paths."""
    refused: list[list[str]] = []
    original = MessageLayer.send_request

    def send_request(self: MessageLayer, msg: Message, now: float, **kw: bool) -> int:
        if msg.uri_path in refused:
            raise MemoryError("no buffer for the request")
        return original(self, msg, now, **kw)

    monkeypatch.setattr(MessageLayer, "send_request", send_request)
    yield refused


def test_bootstrap_request_internal_error_aborts_all(
    net: SimNetwork, layer_refuses: list[list[str]]
) -> None:
    layer_refuses.append(["bs"])
    SimBootstrapServer(
        net,
        BootstrapConfig(default=(ProvisionedServer(uri="coap://10.0.0.1:5683", ssid=1),)),
        BS_ADDR,
    ).start()
    client = bootstrap_only_client(net)
    net.clock.run_for(3)
    err = bs_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.MEMORY, "abort_all")
    aborted_all(client)


# ----------------------------------------------------------------------------- De-register


def test_deregister_internal_error_is_ignored(
    net: SimNetwork, layer_refuses: list[list[str]]
) -> None:
    server = SimServer(net)
    server.start()
    config = ClientConfig(endpoint="dev-1", servers=(account(server.uri),), coap=EXACT_COAP)
    client = SimClient(net, config, rng=random.Random(2))
    client.start()
    net.clock.run_for(1)
    location = server.core.registrations["dev-1"].location
    layer_refuses.append(location.strip("/").split("/"))
    client.close()
    [err] = [e for e in client.errors() if e.request == "deregister"]
    assert (err.code, err.action) == (ev.ErrorCode.MEMORY, "ignore")
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and not dereg.acknowledged
    assert client.state(1) is ServerState.IDLE


# ----------------------------------------------------------------------------- DTLS timeouts


def dtls_client(net: SimNetwork, objects: FakeTree | None = None) -> tuple[SimClient, SimServer]:
    server = SimServer(net, ("10.0.0.1", 5684), dtls=HandshakeOutcome.ACCEPT)
    server.start()
    psk = ServerAccount(
        uri=server.uri,
        lifetime=300,
        psk_identity=b"dev-1",
        psk_key=bytes(16),
        retry=RetrySettings(bootstrap_on_registration_failure=False),
    )
    config = ClientConfig(endpoint="dev-1", servers=(psk,), coap=EXACT_COAP)
    client = SimClient(net, config, objects, rng=random.Random(2))
    client.start()
    assert net.clock.run_until_true(lambda: client.engine.registered(), 10)
    return client, server


def test_deregister_timeout_on_a_dtls_server_is_ignored(net: SimNetwork) -> None:
    client, server = dtls_client(net)
    server.core.add_rule(FaultRule(Operation.DEREGISTER, FaultKind.SILENT))
    client.close()
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    [err] = [e for e in client.errors() if e.request == "deregister"]
    assert (err.code, err.action) == (ev.ErrorCode.TIMEOUT, "ignore")
    assert len(server.handshakes) == 1, "no new handshake for a De-register"
    assert client.state(1) is ServerState.IDLE


def test_notify_timeout_on_a_dtls_server_is_ignored_and_the_observation_kept(
    net: SimNetwork,
) -> None:
    tree = FakeTree()
    client, server = dtls_client(net, tree)
    server.core.add_rule(FaultRule(Operation.ANY, FaultKind.SILENT))
    # The server never ACKs: drop every datagram it would send from now on.
    net.filters.append(lambda src, dst, data: src != server.addr)
    tree.notify(net.clock.now)
    client.poll()
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    [err] = [e for e in client.errors() if e.request == "notify"]
    assert (err.code, err.action) == (ev.ErrorCode.TIMEOUT, "ignore")
    assert tree.cancelled == []
    assert client.engine.registered()
    assert len(server.handshakes) == 1
