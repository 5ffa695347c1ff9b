"""Random walks through the engine on the virtual clock: no move the state machine forbids.

``client/states.py`` raises ``IllegalTransition`` for any trigger a state
does not allow. These walks mix every API call with every network and server
fault the simulator has (outages, closed ports, restarts, silent, resetting
and 4.12/4.29 servers, DNS failures, rejected and silent DTLS handshakes,
queue mode, priorities, a bootstrap server) in seeded random order; any
illegal move, or any other exception, fails the walk with its seed. The
final check is that the client still ends registered once the faults stop.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from simkit import EXACT_COAP, FakeTree

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import NotAllowedError
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import HandshakeOutcome, SimBootstrapServer, SimServer

A_ADDR, B_ADDR, BS_ADDR = ("10.0.0.1", 5683), ("10.0.0.2", 5683), ("10.0.0.9", 5683)


def build(seed: int) -> tuple[SimNetwork, SimClient, list[SimServer], FakeTree]:
    rng = random.Random(seed)
    net = SimNetwork(seed=seed)
    dtls = rng.random() < 0.4
    outcome = HandshakeOutcome.ACCEPT if dtls else None
    servers = [SimServer(net, A_ADDR, dtls=outcome), SimServer(net, B_ADDR, dtls=outcome)]
    credentials: dict[str, Any] = {"psk_identity": b"walker", "psk_key": bytes(16)} if dtls else {}
    for server in servers:
        server.start()
    SimBootstrapServer(
        net,
        BootstrapConfig(default=(ProvisionedServer(uri=servers[1].uri, ssid=2),)),
        BS_ADDR,
    ).start()
    retry = RetrySettings(
        bootstrap_on_registration_failure=rng.random() < 0.5,
        communication_retry_count=rng.choice([1, 2, 3]),
        communication_retry_timer=rng.choice([0.0, 5.0, 30.0]),
        communication_sequence_delay_timer=60.0,
        communication_sequence_retry_count=2,
    )
    accounts = tuple(
        ServerAccount(
            uri=server.uri,
            short_server_id=ssid,
            lifetime=rng.choice([20, 60, 300]),
            binding=rng.choice(["U", "UQ"]),
            retry=retry,
            registration_priority=rng.choice([None, ssid]),
            initial_registration_delay=rng.choice([0.0, 0.0, 3.0]),
            notification_storing=rng.random() < 0.7,
            **credentials,
        )
        for ssid, server in ((1, servers[0]), (2, servers[1]))
    )
    config = ClientConfig(
        endpoint="walker",
        servers=accounts[: rng.choice([1, 2])],
        bootstrap=ServerAccount(uri=f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}"),
        coap=EXACT_COAP,
        reconnect=ReconnectPolicy(first_delay_min=1.0, first_delay_max=3.0, max_delay=60.0),
        registration=RegistrationConfig(
            connection_error_is_registration_failure=rng.random() < 0.3
        ),
    )
    tree = FakeTree()
    client = SimClient(net, config, tree, rng=random.Random(seed))
    return net, client, servers, tree


def moves(
    net: SimNetwork, client: SimClient, servers: list[SimServer], tree: FakeTree
) -> list[Callable[[random.Random], None]]:
    ssids = sorted(client.engine.server_states())

    def api(rng: random.Random) -> None:
        ssid = rng.choice(ssids)
        call = rng.choice(
            [
                lambda: client.trigger_update(),
                lambda: client.schedule_reconnect(),
                lambda: client.enable_server(ssid),
                lambda: client.disable_server(ssid, rng.choice([None, 5.0])),
                lambda: client.enter_offline(),
                lambda: client.exit_offline(),
                lambda: client.objects_changed(),
                lambda: (client.engine.send(ssid, b"\x80", 112, net.clock.now), client.poll()),
            ]
        )
        with contextlib.suppress(NotAllowedError):  # a documented refusal (unknown ssid…)
            call()

    def notify(rng: random.Random) -> None:
        tree.ssid = rng.choice(ssids)
        tree.notify(net.clock.now, token=rng.choice([b"t1", b"t2"]), confirmable=rng.random() < 0.7)
        client.poll()

    def fault(rng: random.Random) -> None:
        server = rng.choice(servers)
        op = rng.choice([Operation.REGISTER, Operation.UPDATE, Operation.ANY])
        kind = rng.choice(list(FaultKind))
        code = rng.choice([Code.FORBIDDEN, Code.PRECONDITION_FAILED, Code.TOO_MANY_REQUESTS])
        server.core.add_rule(FaultRule(op, kind, code=code, max_age=rng.choice([None, 2]), count=2))

    def network(rng: random.Random) -> None:
        server = rng.choice(servers)
        rng.choice(
            [
                lambda: setattr(net, "down", not net.down),
                lambda: server.stop() if server.running else server.start(),
                lambda: server.restart() if server.running else None,
                lambda: net.unresolvable.symmetric_difference_update({A_ADDR[0]}),
                lambda: (
                    setattr(server, "handshake", rng.choice(list(HandshakeOutcome)))
                    if server.handshake is not None
                    else None
                ),
            ]
        )()

    def wait(rng: random.Random) -> None:
        net.clock.run_for(rng.choice([0.01, 0.5, 3.0, 20.0, 90.0]))

    return [api, notify, fault, network, wait, wait]


@pytest.mark.parametrize("seed", range(40))
def test_random_walk_makes_only_legal_moves_and_recovers(seed: int) -> None:
    net, client, servers, tree = build(seed)
    rng = random.Random(seed)
    client.start()
    steps = moves(net, client, servers, tree)
    for _ in range(150):
        rng.choice(steps)(rng)
    # The faults stop: the client must find its way back on its own schedule.
    net.down = False
    net.unresolvable.clear()
    for server in servers:
        server.core.rules.clear()
        if server.handshake is not None:
            server.handshake = HandshakeOutcome.ACCEPT
        if not server.running:
            server.start()
    if client.engine.offline:
        client.exit_offline()
    for ssid, state in client.engine.server_states().items():
        if state.value == "suspended":
            client.enable_server(ssid)
    assert net.clock.run_until_true(client.engine.registered, 3600), (seed, client.events[-15:])
    client.close()
    net.clock.run_for(300)
