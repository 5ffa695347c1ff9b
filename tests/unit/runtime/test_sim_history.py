"""SimClient keeps a bounded history of its events (a simulated week must not keep them all)."""

from __future__ import annotations

import random

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.sim import SimServer

DAY = 86400.0


def _client(net: SimNetwork, server: SimServer, history: int | None) -> SimClient:
    account = ServerAccount(uri=server.uri, lifetime=60)
    config = ClientConfig(endpoint=f"dev-{history}", servers=(account,))
    host = f"10.0.0.{10 + (history or 0) + (history is None)}"
    return SimClient(net, config, rng=random.Random(1), history=history, host=host)


def test_history_keeps_the_latest_events_within_twice_the_bound() -> None:
    net = SimNetwork(seed=1)
    server = SimServer(net)
    server.start()
    bounded, everything, none = (_client(net, server, h) for h in (10, None, 0))
    seen: list[ev.Event] = []
    bounded.subscribe(seen.append)
    for client in (bounded, everything, none):
        client.start()
    net.clock.run_for(DAY)  # an Update every 30 s: thousands of events each
    assert len(seen) > 1000
    assert 10 <= len(bounded.events) < 20
    assert bounded.events == seen[-len(bounded.events) :], "the newest ones, in order"
    assert len(everything.events) == len(seen)
    assert none.events == []
