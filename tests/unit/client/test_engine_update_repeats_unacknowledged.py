"""An Update the server did not accept tells it nothing: the next one says it again.

Core 1.1.1 §6.2.2: an Update carries the parameters that changed (lt, b) and
the object list when it changed. "Changed" is against what the server
accepted, not against what the client last tried to send: an Update that
was answered 4.29 (then repeated after Max-Age, recovery §7) or that timed
out on a DTLS session (then resumed over a new one, recovery §10) never
reached the server's registration.
"""

from __future__ import annotations

from simkit import EXACT_UPDATES, MakeClient, operate, requests_to

from aiolwm2m.coap.message import Code
from aiolwm2m.lwm2m import ContentFormat
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.operations import create_request, write_request
from aiolwm2m.testbed.sim import SimServer


def _updates(net: SimNetwork, server: SimServer) -> list[tuple[float, list[str], bytes]]:
    return [
        (t, m.uri_query, m.payload)
        for t, m in requests_to(net, server.addr)
        if m.uri_path == ["rd", "1"]
    ]


def test_a_lifetime_refused_with_4_29_is_in_the_update_after_max_age(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    make_client(registration=EXACT_UPDATES)
    net.clock.run_for(2)
    reg = server.core.registrations["dev-1"]
    server.core.add_rule(
        FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.TOO_MANY_REQUESTS, max_age=5, count=1)
    )
    written = operate(net, server, write_request("/1/0/1", 120, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    net.clock.run_for(10)
    queries = [query for _, query, _ in _updates(net, server)]
    assert queries == [["lt=120"], ["lt=120"]]  # refused, then said again after Max-Age
    assert reg.lifetime == 120


def test_an_object_list_refused_with_4_29_is_in_the_update_after_max_age(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(registration=EXACT_UPDATES, start=False)
    client.objects.tree.add_object(3303, factory=lambda iid: Instance())
    client.start()
    net.clock.run_for(2)
    server.core.add_rule(
        FaultRule(Operation.UPDATE, FaultKind.RESPOND, Code.TOO_MANY_REQUESTS, max_age=5, count=1)
    )
    created = operate(net, server, create_request(3303, {5700: 20.0}, instance_id=0))
    assert created.code == Code.CREATED
    net.clock.run_for(10)
    updates = _updates(net, server)
    assert len(updates) == 2
    assert all(b"</3303/0>" in payload for _, _, payload in updates)
    assert "</3303/0>" in server.core.registrations["dev-1"].links
