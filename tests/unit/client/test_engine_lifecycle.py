"""Registration lifecycle on the virtual clock: Register, Update timing, De-register.

The client is the production engine driven by :mod:`aiolwm2m.runtime.sim`; the
server is the production testbed core. Assertions are on what crossed the
(simulated) wire and on the events the application saw, at exact times.
"""

from __future__ import annotations

import pytest
from simkit import EXACT_UPDATES, MakeClient, account, requests_to

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import RegistrationConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import SimServer


def test_register_carries_endpoint_lifetime_version_binding_and_objects(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"lifetime": 120})
    assert net.clock.run_until_true(lambda: client.engine.registered(), timeout=5)
    reg = server.core.registrations["dev-1"]
    assert (reg.lifetime, reg.lwm2m_version, reg.binding) == (120, "1.1", "U")
    links = reg.links.split(",")
    assert "</1/0>" in links and "</3/0>" in links
    assert not any(link.startswith("</0") for link in links), "Security is never listed"
    [(_, register)] = requests_to(net, server.addr)
    assert register.code == Code.POST and register.uri_path == ["rd"]
    assert sorted(register.uri_query) == sorted(["ep=dev-1", "lt=120", "lwm2m=1.1", "b=U"])
    assert [e.name for e in client.events if e.name in ("registering", "registered")] == [
        "registering",
        "registered",
    ]
    [registered] = client.named("registered")
    assert isinstance(registered, ev.Registered) and registered.location == reg.location


def test_update_goes_to_the_location_path_at_lifetime_minus_max_transmit_wait(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    # A first endpoint takes /rd/1, so ours gets another location it must honour.
    make_client(endpoint="other", account={"lifetime": 86400})
    net.clock.run_for(1)
    net.trace = []
    client = make_client(account={"lifetime": 300}, registration=EXACT_UPDATES)
    net.clock.run_for(250)
    [registered] = client.named("registered")
    updates = [(t, m) for t, m in requests_to(net, server.addr) if m.uri_path != ["rd"]]
    assert updates, "an Update was sent before the lifetime ran out"
    t_update, update = updates[0]
    assert "/" + "/".join(update.uri_path) == server.core.registrations["dev-1"].location
    assert update.uri_path != ["rd", "1"]
    # Spec §10: lifetime − MAX_TRANSMIT_WAIT; with ACK_RANDOM_FACTOR 1 MTW is
    # 2 s × 31 = 62 s (93 s with the default 1.5), so the Update leaves at 238 s.
    assert client.engine.config.coap.max_transmit_wait == 62
    assert t_update == pytest.approx(registered.time + 238)
    assert update.payload == b"", "no object list unless it changed"
    assert client.named("updated")


def test_short_lifetime_updates_at_half_the_lifetime(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"lifetime": 60}, registration=EXACT_UPDATES)
    net.clock.run_for(100)
    sent = [e.time for e in client.named("update_sent")]
    [registered] = client.named("registered")
    # Each Update restarts the lifetime when acknowledged (one 5 ms hop later).
    assert sent[:2] == pytest.approx([registered.time + 30, registered.time + 60.01])


def test_objects_changed_sends_an_update_with_the_object_list(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    net.clock.run_for(1)
    client.objects_changed()
    net.clock.run_for(1)
    [update] = client.named("update_sent")
    assert isinstance(update, ev.UpdateSent) and update.with_objects
    assert server.core.registrations["dev-1"].updates == 1
    assert "</3/0>" in server.core.registrations["dev-1"].links


def test_close_deregisters_and_the_server_forgets_the_client(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    net.clock.run_for(1)
    client.close()
    net.clock.run_for(1)
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and dereg.acknowledged
    assert "dev-1" not in server.core.registrations
    assert client.state(1) is ServerState.IDLE


def test_close_while_not_registered_reports_not_registered(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    client = make_client()
    client.close()
    assert client.errors(ev.ErrorCode.NOT_REGISTERED)
    assert not client.named("deregistered")


def test_api_calls_in_the_wrong_state_are_not_allowed_and_change_nothing(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(start=False)
    client.schedule_reconnect()
    client.trigger_update()
    assert len(client.errors(ev.ErrorCode.NOT_ALLOWED)) == 2
    assert client.state(1) is ServerState.IDLE
    client.start()
    net.clock.run_for(1)
    assert client.engine.registered()


def test_version_fallback_to_lwm2m_1_0_on_precondition_failed(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.core.add_rule(
        FaultRule(Operation.REGISTER, FaultKind.RESPOND, code=Code.PRECONDITION_FAILED, count=1)
    )
    client = make_client()
    net.clock.run_for(1)
    assert server.core.registrations["dev-1"].lwm2m_version == "1.0"
    [err] = client.errors(ev.ErrorCode.COAP_ERROR)
    assert err.coap_code == "4.12"


def test_too_many_requests_waits_max_age_before_the_next_register(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.core.add_rule(
        FaultRule(
            Operation.REGISTER, FaultKind.RESPOND, code=Code.TOO_MANY_REQUESTS, max_age=42, count=1
        )
    )
    client = make_client()
    net.clock.run_for(41)
    assert not client.engine.registered()
    [err] = client.errors(ev.ErrorCode.TOO_MANY_REQUESTS)
    net.clock.run_for(2)
    first, second = client.named("registering")
    assert second.time - first.time == pytest.approx(42, abs=0.02)
    assert second.time == pytest.approx(err.time + 42)
    assert client.engine.registered()


def test_too_many_requests_without_max_age_waits_60_seconds(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.core.add_rule(
        FaultRule(Operation.UPDATE, FaultKind.RESPOND, code=Code.TOO_MANY_REQUESTS, count=1)
    )
    client = make_client()
    net.clock.run_for(1)
    client.trigger_update()
    net.clock.run_for(59)
    assert len(client.named("update_sent")) == 1
    net.clock.run_for(2)
    sent = client.named("update_sent")
    assert len(sent) == 2 and abs(sent[1].time - sent[0].time - 60) < 0.02
    assert client.named("updated")


def test_thousand_clients_on_one_network_are_independent(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    clients = [make_client(endpoint=f"dev-{i}", seed=i) for i in range(1000)]
    net.clock.run_for(5)
    assert len(server.core.registrations) == 1000
    assert all(c.engine.registered() for c in clients)


def test_two_servers_register_independently(net: SimNetwork, make_client: MakeClient) -> None:
    other = SimServer(net, ("10.0.0.9", 5683))
    other.start()
    client = make_client(
        servers=(
            account("coap://10.0.0.1:5683", short_server_id=1),
            account(other.uri, short_server_id=2),
        )
    )
    net.clock.run_for(1)
    assert client.engine.registered(1) and client.engine.registered(2)
    assert "dev-1" in other.core.registrations


def test_update_instants_are_jittered_below_the_spec_instant(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """The default jitter spreads a fleet's Updates over (0.9 … 1.0) × the interval,
    never later than the spec's instant (lifetime − MAX_TRANSMIT_WAIT = 238 s here)."""
    clients = [
        make_client(endpoint=f"dev-{i}", seed=i, account={"lifetime": 300}) for i in range(20)
    ]
    net.clock.run_for(240)
    delays = []
    for client in clients:
        [registered] = client.named("registered")
        [sent] = client.named("update_sent")
        delays.append(sent.time - registered.time)
    assert all(0.9 * 238 - 1e-9 <= d <= 238 + 1e-9 for d in delays), delays
    assert max(delays) - min(delays) > 5, "the instants are spread, not one burst"


@pytest.mark.parametrize("jitter", [-0.1, 1.0])
def test_update_jitter_outside_0_to_1_is_refused(jitter: float) -> None:
    with pytest.raises(ConfigError, match="update_jitter"):
        RegistrationConfig(update_jitter=jitter)
