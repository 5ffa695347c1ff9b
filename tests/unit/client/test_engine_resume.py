"""Reconnects that keep what the device had (issue 13), on the virtual clock.

The production observer, engine and testbed server core (strict like Leshan:
an Update from a new address moves the registration, an Update for a
registration it no longer holds is 4.04, a second Register replaces the
registration and ends its observations). The server observes a temperature;
its port closes for 30 s (ICMP) while the value changes every second.
"""

from __future__ import annotations

from typing import Any

import pytest
from simkit import MakeClient, sensor_device

from aiolwm2m.accounts import RetrySettings
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import RegistrationConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation, ResponseEvent
from aiolwm2m.testbed.operations import observe_request
from aiolwm2m.testbed.sim import SimServer

OUTAGE = 30


def device(
    net: SimNetwork, server: SimServer, *, lifetime: int = 86400, **registration: Any
) -> tuple[SimClient, Instance]:
    client, _objects, sensor = sensor_device(
        net,
        server,
        confirmable=True,
        lifetime=lifetime,
        registration=RegistrationConfig(**registration),
    )
    return client, sensor


def observe(net: SimNetwork, server: SimServer) -> int:
    key = server.start_operation("dev-1", observe_request("/3303/0/5700", 0))
    net.clock.run_for(1)
    [first] = answers(server)
    assert first.key == key and not first.final
    return key


def answers(server: SimServer) -> list[ResponseEvent]:
    out = []
    while (event := server.core.next_response()) is not None:
        out.append(event)
    return out


def outage(net: SimNetwork, server: SimServer, client: SimClient, sensor: Instance) -> None:
    server.stop()  # port closed: ICMP for every datagram from the client
    for second in range(1, OUTAGE + 1):
        sensor.set(5700, float(second))
        client.poll()
        net.clock.run_for(1)
    assert not client.engine.registered()
    assert len(client.engine.stored_notifications(1)) == OUTAGE


def payloads(events: list[ResponseEvent], key: int) -> list[bytes]:
    return [e.operation.payload for e in events if e.key == key and e.operation is not None]


def observe_numbers(events: list[ResponseEvent], key: int) -> list[int]:
    out = []
    for e in events:
        response: Message | None = e.result.response
        if e.key == key and response is not None and response.observe is not None:
            out.append(response.observe)
    return out


def test_an_outage_ends_with_an_update_and_every_value_on_the_same_observation() -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, sensor = device(net, server)
    key = observe(net, server)
    location = server.core.registrations["dev-1"].location
    address = server.core.registrations["dev-1"].address

    outage(net, server, client, sensor)
    server.start()
    net.clock.run_for(20)  # the reconnect schedule (2, 4, 8 s) brings it back

    assert client.engine.registered()
    assert len(client.named("registered")) == 1, "resumed, never registered again"
    reg = server.core.registrations["dev-1"]
    assert reg.location == location and reg.address != address, "moved to the new socket"
    got = answers(server)
    assert payloads(got, key) == [f"{float(s)}".encode() for s in range(1, OUTAGE + 1)]
    numbers = observe_numbers(got, key)
    assert numbers == sorted(numbers) and len(set(numbers)) == OUTAGE
    assert client.engine.dropped_notifications(1) == 0
    assert not client.named("notifications_dropped")
    # The public states are those of a re-registration: connecting, registering, registered.
    moves = [(e.old, e.new) for e in client.events if isinstance(e, ev.StateChanged)][-2:]
    assert moves == [
        (ServerState.CONNECTING, ServerState.REGISTERING),
        (ServerState.REGISTERING, ServerState.REGISTERED),
    ]
    # Nothing but the stored values follows the Update (in order), on the same exchange.
    assert [e.key for e in got] == [key] * OUTAGE


def test_a_refused_update_registers_and_drops_the_stored_values_with_one_event() -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, sensor = device(net, server)
    key = observe(net, server)

    outage(net, server, client, sensor)
    server.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.NOT_FOUND, count=1))
    server.start()
    net.clock.run_for(20)

    assert client.engine.registered()
    [refused] = [e for e in client.errors() if e.coap_code == "4.04"]
    assert (refused.request, refused.action) == ("update", "fallback_register")
    [dropped] = client.named("notifications_dropped")
    assert isinstance(dropped, ev.NotificationsDropped) and dropped.count == OUTAGE
    assert client.engine.dropped_notifications(1) == OUTAGE
    assert client.engine.stored_notifications(1) == []
    names = [e.name for e in client.events]
    assert names.index("notifications_dropped") < len(names) - names[::-1].index("registered")
    assert key in server.core.ended_observations, "the new registration ended it"
    assert payloads(answers(server), key) == []

    # The server observes again and gets the values from now on.
    again = observe(net, server)
    sensor.set(5700, 99.0)
    client.poll()
    net.clock.run_for(1)
    assert payloads(answers(server), again) == [b"99.0"]


def test_resume_with_update_off_registers_on_every_new_link() -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, sensor = device(net, server, resume_with_update=False)
    observe(net, server)
    outage(net, server, client, sensor)
    server.start()
    net.clock.run_for(20)
    assert client.engine.registered()
    assert len(client.named("registered")) == 2
    assert not [e for e in client.named("update_sent") if e.time > 1]
    # The strict server gave a new location: what was stored is dropped, and said so.
    [dropped] = client.named("notifications_dropped")
    assert isinstance(dropped, ev.NotificationsDropped) and dropped.count == OUTAGE


def test_a_registration_expired_by_the_clients_clock_is_not_resumed() -> None:
    net = SimNetwork(seed=4)
    server = SimServer(net)
    server.start()
    client, sensor = device(net, server, lifetime=20)
    observe(net, server)
    outage(net, server, client, sensor)  # 30 s > lifetime 20 s
    server.start()
    net.clock.run_for(20)
    assert client.engine.registered()
    assert len(client.named("registered")) == 2
    after = [e.name for e in client.events if e.time > OUTAGE]
    assert "update_sent" not in after[: after.index("registered")]
    assert client.named("notifications_dropped")


def test_a_server_that_lost_the_registration_answers_404_then_gets_a_register(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """A server restart that lost its registrations: the resume is refused, then Register."""
    client = make_client()
    net.clock.run_for(1)
    server.stop()
    server.core.forget_registrations()
    client.trigger_update()  # ICMP: the server is gone
    net.clock.run_for(1)
    server.start()
    net.clock.run_for(15)
    assert client.engine.registered()
    kinds = [(e.request, e.coap_code) for e in client.errors()]
    assert kinds == [("update", None), ("update", "4.04")]
    sent = [e.name for e in client.events if e.name in ("update_sent", "registering")]
    assert sent == ["registering", "update_sent", "update_sent", "registering"]


def test_a_refused_registration_is_not_resumed_again_after_a_failed_register(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """Once the server said 4.04 no link resumes: the §4 retry registers."""
    client = make_client(
        account={
            "retry": RetrySettings(
                bootstrap_on_registration_failure=False, communication_retry_timer=10
            )
        }
    )
    net.clock.run_for(1)
    server.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.NOT_FOUND, count=1))
    server.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.RESPOND, Code.FORBIDDEN, count=1))
    client.trigger_update()
    net.clock.run_for(12)
    assert client.engine.registered()
    sent = [e.name for e in client.events if e.name in ("update_sent", "registering")]
    assert sent == ["registering", "update_sent", "registering", "registering"]


def test_a_restart_resumes_the_stored_registration_and_refusal_is_remembered(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    first = make_client()
    net.clock.run_for(1)
    snapshot = first.engine.snapshot()
    first.stop()
    second = make_client(start=False, seed=2)
    second.engine.restore(snapshot)
    second.start()
    net.clock.run_for(1)
    assert second.named("updated") and not second.named("registering")

    # A refusal is stored too: the next restart registers at once.
    server.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.NOT_FOUND, count=1))
    server.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.SILENT, count=1))
    second.trigger_update()
    net.clock.run_for(1)
    [record] = second.engine.snapshot().registrations
    assert record.lifetime == 0
    second.stop()
    third = make_client(start=False, seed=3)
    third.engine.restore(second.engine.snapshot())
    third.start()
    net.clock.run_for(1)
    assert third.named("registered") and not third.named("update_sent")


@pytest.mark.parametrize(
    ("code", "max_age"), [(Code.TOO_MANY_REQUESTS, 2**32 - 1), (Code.SERVICE_UNAVAILABLE, 7200)]
)
def test_every_max_age_wait_is_capped(
    net: SimNetwork, server: SimServer, make_client: MakeClient, code: int, max_age: int
) -> None:
    """Spec §7: a 32-bit Max-Age (136 years) parks the device for at most max_retry_after."""
    client = make_client(
        account={"lifetime": 3600}, registration=RegistrationConfig(max_retry_after=600)
    )
    net.clock.run_for(1)
    server.core.add_rule(
        FaultRule(Operation.UPDATE, FaultKind.RESPOND, code, max_age=max_age, count=1)
    )
    client.trigger_update()
    net.clock.run_for(1)
    [error] = client.errors()
    assert error.detail == "waiting 600 s (Max-Age)"
    sent = client.named("update_sent")
    net.clock.run_for(600)
    assert [e.time for e in client.named("update_sent")][len(sent) :] == pytest.approx(
        [sent[-1].time + 600 + 0.01], abs=0.02
    )
    assert client.named("updated")


def test_the_default_cap_is_one_hour() -> None:
    assert RegistrationConfig().max_retry_after == 3600
