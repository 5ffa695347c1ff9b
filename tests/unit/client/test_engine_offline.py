"""Offline mode (spec §10): enter_offline() closes sockets and stores notifications."""

from __future__ import annotations

from simkit import FakeTree, MakeClient

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine import ServerState
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.sim import SimServer

DAY = 86_400.0


def test_offline_sends_nothing_stores_notifications_and_exit_resumes_and_flushes(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    tree = FakeTree()
    client = make_client(objects=tree, account={"lifetime": 7 * 86_400})
    net.clock.run_for(1)
    client.enter_offline()
    assert client.state(1) is ServerState.OFFLINE
    sent = net.sent
    for value in ("a", "b", "c"):
        tree.notify(net.clock.now, value=value)
        client.poll()
        net.clock.run_for(60)
    net.clock.run_for(DAY)  # no Update, no retry, no reconnect while offline (lifetime 7 d)
    assert net.sent == sent
    stored = client.engine.stored_notifications(1)
    assert [n.message.payload for n in stored] == [b"a", b"b", b"c"]
    assert not client.named("reconnect_scheduled") and not client.errors()

    client.exit_offline()
    net.clock.run_for(1)
    assert client.engine.registered()
    # Spec §10: a new socket resumes the registration (lifetime 7 d) with an Update.
    assert len(client.named("registered")) == 1
    assert client.named("updated")
    [flushed] = [e for e in client.events if isinstance(e, ev.NotificationsFlushed)]
    assert flushed.count == 3
    assert client.engine.stored_notifications(1) == []


def test_offline_calls_in_the_wrong_state_are_not_allowed(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(start=False)
    client.enter_offline()
    client.start()
    net.clock.run_for(1)
    client.exit_offline()
    client.enter_offline()
    client.enter_offline()
    assert len(client.errors(ev.ErrorCode.NOT_ALLOWED)) == 3
    assert client.state(1) is ServerState.OFFLINE


def test_a_suspended_server_stays_suspended_across_offline(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    net.clock.run_for(1)
    client.disable_server(1)
    client.enter_offline()
    client.exit_offline()
    net.clock.run_for(10)
    assert client.state(1) is ServerState.SUSPENDED


def test_if_the_registration_expired_meanwhile_stored_notifications_are_dropped_and_counted(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    tree = FakeTree()
    client = make_client(objects=tree, account={"lifetime": 60})
    net.clock.run_for(1)
    client.enter_offline()
    tree.notify(net.clock.now)
    client.poll()
    net.clock.run_for(DAY)  # the server expires the registration (lifetime 60 s)
    client.exit_offline()
    net.clock.run_for(1)
    first, second = (e for e in client.events if isinstance(e, ev.Registered))
    assert first.location != second.location, "a new registration: observations are gone"
    assert client.engine.stored_notifications(1) == []
    assert client.engine.dropped_notifications(1) == 1
    assert tree.dropped == [1]
