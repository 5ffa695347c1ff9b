"""The outer reconnect schedule (spec §2) over simulated months, and its first-delay spread.

A server that is down answers every Register with ICMP port-unreachable, so
each attempt fails within two network hops; the retry procedure is set to one
attempt, so every failure goes straight to the outer loop.
"""

from __future__ import annotations

import random

import pytest
from simkit import EXACT_COAP, FakeTree, MakeClient, account

from aiolwm2m.accounts import RetrySettings
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ClientEngine, LinkFailure, OpenLink, ServerState
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import SimServer

WEEK = 604_800.0
DAY = 86_400.0
ONE_SHOT = RetrySettings(
    communication_retry_count=1,
    communication_sequence_retry_count=1,
    bootstrap_on_registration_failure=False,
)


def one_shot_client(make_client: MakeClient, server: SimServer, **changes: object) -> SimClient:
    return make_client(servers=(account(server.uri, retry=ONE_SHOT),), **changes)


def test_sixty_days_of_doubling_delays_then_weekly_then_a_success_resets(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    client = one_shot_client(make_client, server, history=None)  # all 60 days of events
    net.clock.run_for(60 * DAY)

    scheduled = [e for e in client.events if isinstance(e, ev.ReconnectScheduled)]
    delays = [e.delay for e in scheduled]
    first = delays[0]
    assert 2 <= first <= 10
    expected = [first]
    while len(expected) < len(delays):
        expected.append(min(expected[-1] * 2, WEEK))
    assert delays == pytest.approx(expected)
    assert delays[-1] == WEEK and delays.count(WEEK) >= 2, "weekly attempts once capped"
    assert [e.attempt for e in scheduled] == list(range(1, len(scheduled) + 1))

    # Each attempt happens exactly when its delay ran out, and fails with a typed error.
    attempts = [e.time for e in client.named("registering")]
    assert attempts[1:] == pytest.approx([e.time + e.delay for e in scheduled[: len(attempts) - 1]])
    errors = client.errors(ev.ErrorCode.NETWORK_ERROR)
    assert len(errors) == len(attempts)
    # 60 days: the doubling phase (about 17 steps) then one attempt a week.
    doubling = sum(1 for d in delays if d < WEEK)
    assert 16 <= doubling <= 19
    assert len(attempts) == pytest.approx(
        doubling + 1 + (60 * DAY - sum(delays[:doubling])) // WEEK, abs=1
    )

    # The server comes back: the next weekly attempt succeeds and the schedule resets.
    server.start()
    net.clock.run_for(WEEK + 1)
    assert client.engine.registered()
    server.stop()
    client.trigger_update()  # Update -> ICMP -> (B) impossible -> give up -> outer loop
    net.clock.run_for(1)
    after = [e for e in client.events if isinstance(e, ev.ReconnectScheduled)][len(scheduled) :]
    # Spec §2: "the reconnection attempts will begin with the original reconnection time".
    assert after and after[0].delay == first and after[0].attempt == 1


def test_first_delay_is_uniform_in_2_to_10_seconds_over_10000_seeded_clients() -> None:
    config = ClientConfig(
        endpoint="fleet",
        servers=(account("coap://10.0.0.1:5683", retry=ONE_SHOT),),
        coap=EXACT_COAP,
    )
    firsts = []
    for seed in range(10_000):
        engine = ClientEngine(config, FakeTree(), rng=random.Random(seed))
        engine.start(0.0)
        [link] = [a for a in engine.link_actions() if isinstance(a, OpenLink)]
        engine.link_failed(link.link, LinkFailure.NETWORK, 0.0)
        events = []
        while (event := engine.next_event()) is not None:
            events.append(event)
        [scheduled] = [e for e in events if isinstance(e, ev.ReconnectScheduled)]
        firsts.append(scheduled.delay)
    assert min(firsts) >= 2.0 and max(firsts) <= 10.0
    # Kolmogorov-Smirnov against U(2, 10): D must stay under the 1 % critical value.
    firsts.sort()
    n = len(firsts)
    d = max(max((i + 1) / n - (x - 2) / 8, (x - 2) / 8 - i / n) for i, x in enumerate(firsts))
    assert d < 1.63 / n**0.5
    # And no gaps: each of the eight one-second bins holds about an eighth.
    bins = [0] * 8
    for x in firsts:
        bins[min(int(x - 2), 7)] += 1
    assert all(abs(b - n / 8) < 0.1 * n / 8 for b in bins)


def test_all_five_schedule_numbers_are_configuration(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    policy = ReconnectPolicy(first_delay_min=1, first_delay_max=1, multiplier=3, max_delay=20)
    client = one_shot_client(make_client, server, reconnect=policy)
    net.clock.run_for(200)
    delays = [e.delay for e in client.events if isinstance(e, ev.ReconnectScheduled)]
    assert delays[:5] == pytest.approx([1, 3, 9, 20, 20])


def test_reconnect_disabled_stays_failed_until_the_application_acts(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    client = one_shot_client(make_client, server, reconnect=ReconnectPolicy(enabled=False))
    net.clock.run_for(DAY)
    assert client.engine.all_connections_failed()
    assert len(client.named("registering")) == 1
    assert not client.named("reconnect_scheduled")
    server.start()
    client.schedule_reconnect()
    net.clock.run_for(1)
    assert client.engine.registered()
    assert not client.engine.all_connections_failed()


def test_enable_server_restores_a_failed_server_at_once(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    client = one_shot_client(make_client, server)
    net.clock.run_for(1)
    assert client.engine.all_connections_failed()
    server.start()
    client.enable_server(1)
    net.clock.run_for(1)
    assert client.engine.registered()


def test_disable_server_with_timeout_comes_back_by_itself(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = one_shot_client(make_client, server)
    net.clock.run_for(1)
    client.disable_server(1, timeout=30)
    assert client.state(1).value == "suspended"
    net.clock.run_for(29)
    assert not client.engine.registered()
    net.clock.run_for(2)
    assert client.engine.registered()
    assert len(client.named("registered")) == 2


def outages(net: SimNetwork, server: SimServer, client: SimClient, count: int) -> list[float]:
    """The first reconnect delay of each of ``count`` outages (server gone, then back)."""
    firsts = []
    for _ in range(count):
        server.stop()
        client.trigger_update()  # ICMP -> (B) impossible -> give up -> outer loop
        net.clock.run_for(1)
        [scheduled] = [e for e in client.events if isinstance(e, ev.ReconnectScheduled)][-1:]
        firsts.append(scheduled.delay)
        server.start()
        net.clock.run_for(60)
        assert client.engine.registered()
    return firsts


def test_the_first_delay_is_drawn_once_per_client_unless_redrawn_per_outage(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = one_shot_client(make_client, server)
    net.clock.run_for(1)
    once = outages(net, server, client, 3)
    assert len(set(once)) == 1 and 2 <= once[0] <= 10
    other = one_shot_client(
        make_client,
        server,
        endpoint="dev-2",
        seed=2,
        reconnect=ReconnectPolicy(redraw_first_delay=True),
    )
    net.clock.run_for(1)
    redrawn = outages(net, server, other, 3)
    assert len(set(redrawn)) == 3 and all(2 <= d <= 10 for d in redrawn)


def test_the_izuma_current_preset_jitters_every_delay_and_caps_at_4_hours(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    policy = ReconnectPolicy.preset("izuma-current")
    client = one_shot_client(make_client, server, reconnect=policy)
    net.clock.run_for(1)
    # The Register's exchange was the last one answered: two hops of the simulated network.
    round_trip = 2 * net.latency
    server.stop()
    client.trigger_update()
    net.clock.run_for(10 * DAY)
    delays = [e.delay for e in client.events if isinstance(e, ev.ReconnectScheduled)]
    base = 10 + round_trip
    capped = 0
    for delay in delays:
        assert 0.9 * base <= delay <= 1.1 * base
        capped += base == 4 * 3600
        base = min(base * 2, 4 * 3600)
    assert len(set(delays)) == len(delays), "each delay jittered afresh"
    assert capped > 40, "10 days: mostly waits of 4 h ± 10 %"
    with pytest.raises(ConfigError, match="300"):
        ReconnectPolicy.preset("izuma-current", max_delay=299)
    assert ReconnectPolicy.preset("izuma-2019") == ReconnectPolicy()


def test_network_changed_cuts_the_pending_reconnect_wait_short_with_jitter(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """Issue 13 item 4: a fleet told the network is back reconnects within 1 s, spread."""
    clients = [one_shot_client(make_client, server, endpoint=f"dev-{i}", seed=i) for i in range(20)]
    net.clock.run_for(1)
    server.stop()
    for client in clients:
        client.trigger_update()
    net.clock.run_for(200)  # several failed attempts: the next waits are long
    server.start()
    told = net.clock.now
    for client in clients:
        client.network_changed()
    net.clock.run_for(1.1)
    assert all(c.engine.registered() for c in clients)
    cut = [e for c in clients for e in c.events if isinstance(e, ev.NetworkChanged)]
    assert [e.cut for e in cut] == [1] * 20
    assert all(0 <= e.delay <= 1 for e in cut)
    attempts = [c.named("update_sent")[-1].time - told for c in clients]
    assert max(attempts) <= 1.0 and len({round(a, 3) for a in attempts}) > 15, "spread out"


def test_network_changed_cuts_a_registration_retry_wait_but_not_a_max_age(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    server.stop()
    client = make_client()  # §4 procedure: 60 s before the first retry
    net.clock.run_for(1)
    assert client.state(1) is ServerState.BACKOFF
    server.start()
    client.network_changed()
    net.clock.run_for(1)
    assert client.engine.registered()

    server.core.add_rule(
        FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.TOO_MANY_REQUESTS, max_age=30, count=1)
    )
    client.trigger_update()
    net.clock.run_for(1)
    client.network_changed()
    net.clock.run_for(10)
    [event] = client.named("network_changed")[-1:]
    assert isinstance(event, ev.NetworkChanged) and event.cut == 0
    assert len(client.named("updated")) == 0, "the server's Max-Age is obeyed"
    net.clock.run_for(25)
    assert client.named("updated")


def test_network_changed_before_start_is_not_allowed(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(start=False)
    client.network_changed()
    [error] = client.errors()
    assert error.code is ev.ErrorCode.NOT_ALLOWED


def test_add_round_trip_adds_the_last_measured_round_trip(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    policy = ReconnectPolicy(first_delay_min=10, first_delay_max=10, add_round_trip=True)
    client = one_shot_client(make_client, server, reconnect=policy)
    net.clock.run_for(1)
    [first] = outages(net, server, client, 1)
    assert first == pytest.approx(10 + 2 * net.latency)  # the Register's two hops
