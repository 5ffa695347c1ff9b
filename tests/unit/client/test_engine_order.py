"""Registration order across servers: Server /1/x/13 (priority), 14 (initial delay), 15 (block)."""

from __future__ import annotations

import pytest
from simkit import MakeClient, account

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine import ServerState
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.sim import SimServer


def servers(net: SimNetwork, n: int) -> list[SimServer]:
    out = [SimServer(net, (f"10.0.1.{i}", 5683)) for i in range(1, n + 1)]
    for srv in out:
        srv.start()
    return out


def registered_at(client: SimClient) -> dict[int, float]:
    return {e.ssid: e.time for e in client.events if isinstance(e, ev.Registered)}


def test_priorities_register_in_increasing_order_with_initial_delays(
    net: SimNetwork, make_client: MakeClient
) -> None:
    a, b, c = servers(net, 3)
    client = make_client(
        servers=(
            account(a.uri, short_server_id=1, registration_priority=2),
            account(b.uri, short_server_id=2, registration_priority=1),
            account(c.uri, short_server_id=3, initial_registration_delay=0),
        )
    )
    assert client.state(1) is ServerState.IDLE, "priority 2 waits for priority 1"
    net.clock.run_for(1)
    times = registered_at(client)
    assert set(times) == {1, 2, 3}
    assert times[3] == pytest.approx(times[2]), "no priority: not held by the others"
    assert times[1] > times[2]
    [starting] = [e for e in client.events if isinstance(e, ev.Registering) and e.ssid == 1]
    assert starting.time >= times[2], "its Register leaves once priority 1 registered"


def test_initial_registration_delay_counts_from_the_previous_registration(
    net: SimNetwork, make_client: MakeClient
) -> None:
    a, b = servers(net, 2)
    client = make_client(
        servers=(
            account(a.uri, short_server_id=1, registration_priority=1),
            account(
                b.uri, short_server_id=2, registration_priority=2, initial_registration_delay=30
            ),
        )
    )
    net.clock.run_for(60)
    times = registered_at(client)
    assert times[2] - times[1] == pytest.approx(30, abs=0.02)


@pytest.mark.parametrize("block", [True, False])
def test_registration_failure_block(net: SimNetwork, make_client: MakeClient, block: bool) -> None:
    a, b = servers(net, 2)
    a.stop()  # the first server in the order is down: ICMP on every Register
    client = make_client(
        servers=(
            account(
                a.uri, short_server_id=1, registration_priority=1, registration_failure_block=block
            ),
            account(b.uri, short_server_id=2, registration_priority=2),
        )
    )
    net.clock.run_for(10)
    assert client.engine.registered(2) is (not block)
    if block:
        assert client.state(2) is ServerState.IDLE
        a.start()
        net.clock.run_for(200)  # server 1's retry procedure (60 s) gets through, then 2's turn
        assert client.engine.registered(1) and client.engine.registered(2)
