"""Server-executed Disable (/1/x/4) and the Disable Timeout (/1/x/5), issue 12 item 3.

Core, Server object: after an Execute of Disable the client "MUST send response
of the operation and perform de-registration process", disconnect, send nothing
and ignore the server for the Disable Timeout (default 86400 s), then register
again. Leshan kept a stale registration because the client only closed its
socket. The production engine against the testbed server on the virtual clock.
"""

from __future__ import annotations

import math

import pytest
from simkit import MakeClient, operate

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import Provisioning
from aiolwm2m.client.engine import ServerState
from aiolwm2m.client.policy import DISABLED_UNTIL_ENABLED, disable_wait
from aiolwm2m.coap.message import Code, MessageType, decode
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.objects import ServerInstance
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.operations import (
    execute_request,
    write_request,
)
from aiolwm2m.testbed.sim import SimServer

DAY = 86_400.0


def registered_client(net: SimNetwork, make_client: MakeClient) -> SimClient:
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(1)
    assert client.engine.registered()
    return client


def disable(net: SimNetwork, server: SimServer) -> float:
    """Execute /1/0/4; returns when the client's De-register was answered."""
    result = operate(net, server, execute_request("/1/0/4"))
    assert result.code == Code.CHANGED
    net.clock.run_for(1)
    return net.clock.now


def test_disable_answers_then_deregisters_then_stays_off_for_a_day(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(net, make_client)
    net.trace = []
    disable(net, server)
    from_client = [decode(data) for _, _, dst, data in net.trace if dst == server.addr]
    kinds = [(m.type, m.code) for m in from_client]
    assert kinds[:2] == [(MessageType.ACK, Code.CHANGED), (MessageType.CON, Code.DELETE)], (
        "the Execute's 2.04 goes out before the De-register"
    )
    assert "dev-1" not in server.core.registrations, "the server forgot the registration"
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and dereg.acknowledged
    assert client.state(1) is ServerState.SUSPENDED
    off_since = dereg.time
    sent = len(net.trace)
    net.clock.run_until(off_since + DAY - 1)
    assert len(net.trace) == sent, "nothing is sent while disabled"
    assert not client.engine.registered()
    net.clock.run_until(off_since + DAY + 1)
    assert client.engine.registered()
    assert client.named("registered")[-1].time == pytest.approx(off_since + DAY, abs=0.1)


def test_the_disable_timeout_written_by_the_server_is_used(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(net, make_client)
    written = operate(net, server, write_request("/1/0/5", 30, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    disable(net, server)
    off_since = client.named("deregistered")[-1].time
    net.clock.run_until(off_since + 29)
    assert client.state(1) is ServerState.SUSPENDED
    net.clock.run_until(off_since + 31)
    assert client.engine.registered()
    assert "dev-1" in server.core.registrations


def test_a_disable_timeout_of_zero_registers_again_at_once_without_looping(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(net, make_client)
    operate(net, server, write_request("/1/0/5", 0, ContentFormat.TEXT))
    disable(net, server)
    net.clock.run_for(5)
    assert client.engine.registered()
    registers = len(client.named("registered"))
    net.trace = []
    net.clock.run_for(600)
    assert len(client.named("registered")) == registers == 2
    assert len(net.trace) == 0, "registered and quiet: no loop"


@pytest.mark.parametrize("timeout", [2**32 - 1, 2**63 - 1], ids=["2^32-1", "2^63-1"])
def test_a_huge_disable_timeout_keeps_the_server_off_without_a_timer(
    net: SimNetwork, server: SimServer, make_client: MakeClient, timeout: int
) -> None:
    client = registered_client(net, make_client)
    written = operate(net, server, write_request("/1/0/5", timeout, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    disable(net, server)
    assert client.state(1) is ServerState.SUSPENDED
    assert client.engine.next_timer() is None, "no timer armed decades out (or at inf)"
    net.trace = []
    net.clock.run_for(10 * 365 * DAY)
    assert client.state(1) is ServerState.SUSPENDED and net.trace == []
    client.enable_server(1)
    net.clock.run_for(1)
    assert client.engine.registered()


def test_the_application_disable_still_closes_without_deregistering(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(net, make_client)
    client.disable_server(1, timeout=30)
    assert client.state(1) is ServerState.SUSPENDED
    assert not client.named("deregistered")
    assert "dev-1" in server.core.registrations
    net.clock.run_for(31)
    assert client.engine.registered()


def test_a_deregister_that_fails_still_disables(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = registered_client(net, make_client)
    operate(net, server, write_request("/1/0/5", 300, ContentFormat.TEXT))
    server.core.add_rule(FaultRule(Operation.DEREGISTER, FaultKind.SILENT))
    operate(net, server, execute_request("/1/0/4"))
    net.clock.run_for(100)  # the De-register times out (62 s with EXACT_COAP)
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and not dereg.acknowledged
    assert client.state(1) is ServerState.SUSPENDED
    net.clock.run_until(dereg.time + 301)
    assert client.engine.registered()


@pytest.mark.parametrize(
    ("timeout", "wait"),
    [
        (None, None),
        (0, 0.0),
        (-5, 0.0),
        (30, 30.0),
        (DISABLED_UNTIL_ENABLED - 1, DISABLED_UNTIL_ENABLED - 1),
        (DISABLED_UNTIL_ENABLED, None),
        (2.0**70, None),
        (math.inf, None),
        (math.nan, None),
    ],
)
def test_disable_wait(timeout: float | None, wait: float | None) -> None:
    assert disable_wait(timeout) == wait


def test_a_bootstrapped_disable_timeout_is_the_accounts() -> None:
    """/1/x/5 as a Bootstrap-Server writes it is kept (provisioning, storage, /1/x/5)."""
    account = ServerAccount("coap://10.0.0.1", disable_timeout=60)
    prov = Provisioning.from_accounts((account,), None)
    assert prov.server[0][5] == 60
    del prov.server[0][5]
    [plain] = Provisioning.from_dict(prov.to_dict()).accounts()
    assert plain.disable_timeout == 86_400, "not written: the Core's default"
    prov.server[0][5] = 7
    [written] = prov.accounts()
    assert written.disable_timeout == 7
    instance = ServerInstance(written)
    assert instance.values[5] == 7
    with pytest.raises(ConfigError):
        ServerAccount("coap://10.0.0.1", disable_timeout=-1)
