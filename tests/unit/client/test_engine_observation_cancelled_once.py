"""An observation ends once: one ``observation_cancelled`` however many Resets it gets.

The production object tree, observe scheduler, engine and testbed server core
on the virtual clock. The server hears nothing from the client for a few
seconds while the value keeps changing, then restarts and forgets its
observations: every notification of that time that reaches it is Reset
(RFC 7641 §3.6). Every Reset is still matched and reported as its own
``error`` (the scenario and soak reports count cancelled notifications from
those), but each observation ends with the first one.
"""

from __future__ import annotations

from collections import Counter

import pytest
from simkit import observed_values, sensor_device

from aiolwm2m.client import events as ev
from aiolwm2m.client.operations import OperationHandler
from aiolwm2m.coap.message import MessageType, decode
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.operations import observe_request
from aiolwm2m.testbed.sim import SimServer

#: Seconds the server hears nothing from the client, one value change each.
SILENT = 4
#: One observation, or two (of a resource and of its instance) that notify together.
PATHS = pytest.mark.parametrize("paths", [["/3303/0/5700"], ["/3303/0/5700", "/3303/0"]])


def observed(
    net: SimNetwork, server: SimServer, paths: list[str], *, confirmable: bool
) -> tuple[SimClient, OperationHandler, Instance]:
    """A client whose server observes ``paths``."""
    client, objects, sensor = sensor_device(net, server, confirmable=confirmable)
    for path in paths:
        server.start_operation("dev-1", observe_request(path))
        net.clock.run_for(1)
    assert len(observed_values(server)) == len(paths)
    return client, objects, sensor


def change_unheard(net: SimNetwork, client: SimClient, sensor: Instance) -> int:
    """The value changes ``SILENT`` times, a second apart (the caller keeps the server
    from hearing it); how many client events came before."""
    before = len(client.events)
    net.trace = []
    for second in range(1, SILENT + 1):
        sensor.set(5700, float(second))
        client.poll()
        net.clock.run_for(1)
    return before


def check_each_observation_ended_once(
    net: SimNetwork, server: SimServer, client: SimClient, objects: OperationHandler, before: int
) -> list[ev.Error]:
    """Every Reset matched and reported, one ``observation_cancelled`` per observation."""
    assert net.trace is not None
    errors = [e for e in client.events[before:] if isinstance(e, ev.Error)]
    resets = [e for e in errors if e.code is ev.ErrorCode.RESET and e.request == "notify"]
    rst_sent = [d for _t, src, _dst, d in net.trace if src == server.addr and d[0] >> 4 & 3 == 3]
    assert resets == errors, "nothing else: no malformed or unmatched datagram reported"
    assert len(resets) == len(rst_sent), "each Reset matched and reported"
    assert all(decode(d).type is MessageType.RST for d in rst_sent)
    assert all(e.action == "cancel_observation" for e in resets)
    assert not objects.observer.busy, "every observation ended"
    return resets


def cancelled(client: SimClient) -> Counter[tuple[int, str]]:
    return Counter(
        (e.ssid, e.path) for e in client.events if isinstance(e, ev.ObservationCancelled)
    )


@PATHS
def test_resets_of_queued_con_notifications_end_each_observation_once(paths: list[str]) -> None:
    """CON: the first retransmitted while the server is deaf, the others queued behind
    it (NSTART 1); after the restart the first of each observation is Reset and the
    others, never sent, are dropped with one ``notifications_dropped`` each."""
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, objects, sensor = observed(net, server, paths, confirmable=True)
    net.filters.append(lambda _src, dst, _data: dst != server.addr)  # the server hears nothing
    before = change_unheard(net, client, sensor)
    server.restart()
    server.core.forget_registrations()
    net.filters.clear()
    net.clock.run_for(30)

    resets = check_each_observation_ended_once(net, server, client, objects, before)
    assert len(resets) == len(paths), "one Reset each: the others were never sent"
    assert cancelled(client) == Counter({(1, path): 1 for path in paths})
    dropped = [
        (e.count, e.reason)
        for e in client.events[before:]
        if isinstance(e, ev.NotificationsDropped)
    ]
    assert dropped == [(SILENT - 1, ev.NotificationsDropped.OBSERVATION_CANCELLED)] * len(paths)


@PATHS
def test_resets_of_non_notifications_end_each_observation_once(paths: list[str]) -> None:
    """NON: held up on the way (a congested link), they reach the restarted server
    all at once and each is Reset; the client remembers them for exactly that."""
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, objects, sensor = observed(net, server, paths, confirmable=False)
    held: list[tuple[Address, Address, bytes]] = []

    def hold(src: Address, dst: Address, data: bytes) -> bool:
        if dst == server.addr:
            held.append((src, dst, data))
            return False
        return True

    net.filters.append(hold)
    before = change_unheard(net, client, sensor)
    assert len(held) == SILENT * len(paths)
    server.restart()
    server.core.forget_registrations()
    net.filters.clear()
    for datagram in held:
        net.send(*datagram)
    net.clock.run_for(5)

    resets = check_each_observation_ended_once(net, server, client, objects, before)
    assert len(resets) == len(held)
    assert cancelled(client) == Counter({(1, path): 1 for path in paths})
