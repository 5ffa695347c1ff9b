"""The Server object (/1) follows the accounts the engine really uses.

After a Bootstrap-Finish (or a restart with provisioned accounts) the client
registers to other servers than the factory configuration named; what it lists
in Register and what a server reads from /1 must be those accounts.
"""

from __future__ import annotations

import random

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.operations import read_request
from aiolwm2m.testbed.sim import SimBootstrapServer, SimServer


def test_server_object_shows_the_bootstrapped_account() -> None:
    net = SimNetwork(seed=2)
    provisioned = SimServer(net, ("10.0.0.5", 5683))
    provisioned.start()
    bs = SimBootstrapServer(
        net,
        BootstrapConfig(default=(ProvisionedServer(uri=provisioned.uri, ssid=7, server={1: 600}),)),
        ("10.0.0.9", 5683),
    )
    bs.start()
    config = ClientConfig(endpoint="dev-1", bootstrap=ServerAccount(uri="coap://10.0.0.9:5683"))
    client = SimClient(net, config, rng=random.Random(1))
    client.start()
    states = client.engine.server_states
    assert net.clock.run_until_true(lambda: states().get(7) is ServerState.REGISTERED, 30)
    links = provisioned.core.registrations["dev-1"].links.split(",")
    assert "</1/0>" in links
    key = provisioned.start_operation("dev-1", read_request("/1/0/0"))
    net.clock.run_for(1)
    answers = {}
    while (event := provisioned.core.next_response()) is not None:
        answers[event.key] = event.operation
    result = answers[key]
    assert result is not None and result.payload == b"7"
    key = provisioned.start_operation("dev-1", read_request("/1/0/1"))
    net.clock.run_for(1)
    while (event := provisioned.core.next_response()) is not None:
        answers[event.key] = event.operation
    assert answers[key] is not None and answers[key].payload == b"600"
