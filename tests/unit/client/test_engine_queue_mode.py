"""Queue mode (binding "UQ", spec §10): idle link closed after MAX_TRANSMIT_WAIT,
reopened with an Update whenever something has to be sent."""

from __future__ import annotations

import pytest
from simkit import CON_GIVES_UP_AFTER, FakeTree, MakeClient, requests_to

from aiolwm2m.client import events as ev
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.sim import SimServer

MTW = CON_GIVES_UP_AFTER  # MAX_TRANSMIT_WAIT with EXACT_COAP: 62 s


def test_idle_link_sleeps_and_a_notification_wakes_it_with_an_update_first(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    tree = FakeTree()
    net.trace = []
    client = make_client(objects=tree, account={"lifetime": 3600, "binding": "UQ"})
    net.clock.run_for(MTW + 1)
    [sleep] = [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
    [registered] = client.named("registered")
    assert sleep.time == pytest.approx(registered.time + MTW)
    assert client.engine.registered(), "asleep, still registered"
    assert server.core.registrations["dev-1"].binding == "UQ"

    sent = net.sent
    net.clock.run_for(600)
    assert net.sent == sent, "nothing on the wire while asleep"
    tree.notify(net.clock.now, value="42")
    client.poll()
    net.clock.run_for(1)
    to_server = [m for _, m in requests_to(net, server.addr)]
    assert [m.uri_path[:1] for m in to_server] == [["rd"], ["rd"]]  # Register, then Update
    assert client.named("updated")
    notes = [
        data
        for _, _, dst, data in net.trace
        if dst == server.addr and data[1] == 0x45  # 2.05 Content: the notification
    ]
    assert notes and notes[-1].endswith(b"42")
    update_time = next(t for t, m in requests_to(net, server.addr) if m.uri_path != ["rd"])
    note_time = next(t for t, _, dst, data in net.trace if dst == server.addr and data[1] == 0x45)
    assert note_time >= update_time, "the Update goes first"


def test_the_periodic_update_wakes_the_link(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"lifetime": 300, "binding": "UQ"})
    net.clock.run_for(400)  # Update due at 300 - 62 = 238 s, asleep again 62 s later
    sleeps = [e.time for e in client.events if isinstance(e, ev.QueueModeSleep)]
    updates = [e.time for e in client.named("updated")]
    assert len(sleeps) >= 2 and updates, "sleeps, wakes for the Update, sleeps again"
    assert sleeps[0] < updates[0] < sleeps[1]
    assert client.engine.registered()


def test_close_while_asleep_wakes_to_deregister(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"binding": "UQ"})
    net.clock.run_for(MTW + 1)
    assert [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
    client.close()
    net.clock.run_for(1)
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and dereg.acknowledged
    assert "dev-1" not in server.core.registrations


def test_plain_binding_never_sleeps(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(3 * MTW)
    assert not [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
