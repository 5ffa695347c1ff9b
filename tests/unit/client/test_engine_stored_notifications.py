"""Notifications produced while the server is unreachable reach it, in order, afterwards.

The production object tree, observe scheduler, engine and testbed server core
on the virtual clock: the server observes a temperature, its port closes for
30 s (ICMP port unreachable) while the application keeps changing the value,
then it comes back; every value must arrive once, in production order, with
nothing left in the store.
"""

from __future__ import annotations

import pytest
from simkit import observed_values, sensor_device

from aiolwm2m.client import events as ev
from aiolwm2m.client.operations import OperationHandler
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.operations import observe_request
from aiolwm2m.testbed.sim import SimServer


def device(
    net: SimNetwork, server: SimServer, *, storing: bool = True, confirmable: bool = False
) -> tuple[SimClient, OperationHandler, Instance]:
    return sensor_device(net, server, storing=storing, confirmable=confirmable)


@pytest.mark.parametrize("confirmable", [True, False])
def test_every_value_of_a_30_s_outage_arrives_in_order(confirmable: bool) -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, _objects, sensor = device(net, server, confirmable=confirmable)
    server.start_operation("dev-1", observe_request("/3303/0/5700", 0))
    net.clock.run_for(1)
    assert observed_values(server) == [b"0.0"]

    server.stop()  # port closed: ICMP for every datagram from the client
    for second in range(1, 31):
        sensor.set(5700, float(second))
        client.poll()
        net.clock.run_for(1)
    assert not client.engine.registered()
    stored = client.engine.stored_notifications(1)
    assert [n.created for n in stored] == sorted(n.created for n in stored)
    server.start()
    net.clock.run_for(20)  # the reconnect schedule (2, 4, 8 s) brings it back

    assert client.engine.registered()
    got = observed_values(server)
    expected = [f"{float(s)}".encode() for s in range(1, 31)]
    if confirmable:
        assert got == expected, "every value, in order"
        assert client.engine.dropped_notifications(1) == 0
    else:
        # NON notifications sent before the client knew the port was closed are
        # not tracked for delivery; all later ones are kept and arrive in order.
        assert got == expected[len(expected) - len(got) :]
        assert len(got) >= 29
    assert client.engine.stored_notifications(1) == []
    [flushed] = [e for e in client.events if isinstance(e, ev.NotificationsFlushed)]
    assert flushed.count >= 29


def test_with_storing_off_offline_notifications_are_dropped_and_counted() -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, _objects, sensor = device(net, server, storing=False)
    server.start_operation("dev-1", observe_request("/3303/0/5700", 0))
    net.clock.run_for(1)
    observed_values(server)
    server.stop()
    for second in range(1, 11):
        sensor.set(5700, float(second))
        client.poll()
        net.clock.run_for(1)
    assert client.engine.stored_notifications(1) == []
    assert client.engine.dropped_notifications(1) >= 9
    server.start()
    net.clock.run_for(20)
    assert client.engine.registered()
    assert observed_values(server) == []
