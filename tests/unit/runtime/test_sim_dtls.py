"""The DTLS handshake model of the simulated runtime, on the virtual clock.

The real handshake runs mbedtls on the wall clock; these tests pin down the
policy the model and the real session share (``HandshakeTiming``: RFC 6347
§4.2.4 waits of 1, 2, 4… s up to the maximum) and what the engine does with
each outcome: spec §5 for timeouts, §6 "secure connection failed", and the
(†) rule against handshake loops.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.runtime.sim import (
    ABBREVIATED_FLIGHTS,
    FULL_FLIGHTS,
    SIM_CLIENT_HELLO,
    SimClient,
    SimNetwork,
)
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.sim import HandshakeOutcome, SimServer

#: ACK_RANDOM_FACTOR 1: a CON gives up exactly 2+4+8+16+32 = 62 s after it was sent.
EXACT_COAP = TransmissionParameters(ack_timeout=2.0, ack_random_factor=1.0)
LATENCY = 0.005


@pytest.fixture
def net() -> SimNetwork:
    network = SimNetwork(seed=3, latency=LATENCY)
    network.trace = []
    return network


def make_server(net: SimNetwork, outcome: HandshakeOutcome) -> SimServer:
    server = SimServer(net, ("10.0.0.1", 5684), dtls=outcome)
    server.start()
    return server


def make_client(net: SimNetwork, uri: str, **changes: Any) -> SimClient:
    account = ServerAccount(
        uri=uri,
        lifetime=300,
        psk_identity=b"dev-1",
        psk_key=bytes(16),
        retry=changes.pop(
            "retry",
            RetrySettings(bootstrap_on_registration_failure=False, communication_retry_count=1),
        ),
    )
    changes.setdefault("coap", EXACT_COAP)
    config = ClientConfig(endpoint="dev-1", servers=(account,), **changes)
    client = SimClient(net, config, rng=random.Random(1))
    client.start()
    return client


def hello_times(net: SimNetwork) -> list[float]:
    assert net.trace is not None
    return [t for t, _src, _dst, data in net.trace if data.startswith(SIM_CLIENT_HELLO)]


def connect_errors(client: SimClient) -> list[ev.Error]:
    return [e for e in client.errors() if e.request == "connect"]


@pytest.mark.parametrize(
    ("timing", "instants", "gives_up"),
    [
        # RFC 6347 defaults: waits 1, 2, 4, 8, 16, 32 and a last one of 60 s.
        (HandshakeTiming(), [0, 1, 3, 7, 15, 31, 63], 123.0),
        # A configured [dtls] table, e.g. 0.5 / 4 s: waits 0.5, 1, 2, 4.
        (HandshakeTiming(0.5, 4.0), [0, 0.5, 1.5, 3.5], 7.5),
    ],
)
def test_silent_server_retransmits_on_the_rfc_schedule_then_gives_up(
    net: SimNetwork, timing: HandshakeTiming, instants: list[float], gives_up: float
) -> None:
    server = make_server(net, HandshakeOutcome.SILENT)
    client = make_client(net, server.uri, dtls=timing)
    assert net.clock.run_until_true(lambda: bool(connect_errors(client)), 1000)
    assert hello_times(net) == pytest.approx(instants)
    # Issue 13 item 3: the handshake's progress is visible long before the verdict.
    [started] = [e for e in client.events if isinstance(e, ev.HandshakeStarted)]
    assert (started.time, started.ssid, started.resuming) == (0, 1, False)
    resent = [e for e in client.events if isinstance(e, ev.HandshakeRetransmitted)]
    assert [e.time for e in resent] == pytest.approx(instants[1:])
    assert [e.attempt for e in resent] == list(range(2, len(instants) + 1))
    assert [e.next_timeout for e in resent] == list(timing.waits[1:])
    (error,) = connect_errors(client)
    assert error.code is ev.ErrorCode.SECURE_CONNECTION_FAILED
    assert error.detail is not None and error.detail.startswith("timeout")
    assert error.time == pytest.approx(gives_up)
    # §5: the ultimate timeout → client-initiated bootstrap if (B) holds; there
    # is no bootstrap account, so this server is given up.
    assert client.state(1) is ServerState.FAILED


def test_rejected_handshake_is_secure_connection_failed_and_sends_no_coap(
    net: SimNetwork,
) -> None:
    server = make_server(net, HandshakeOutcome.REJECT)
    client = make_client(net, server.uri)
    assert net.clock.run_until_true(lambda: bool(connect_errors(client)), 60)
    (error,) = connect_errors(client)
    assert error.code is ev.ErrorCode.SECURE_CONNECTION_FAILED
    assert error.time == pytest.approx(2 * LATENCY)
    assert client.state(1) is ServerState.FAILED
    assert net.trace is not None
    sent = [data for _t, src, _dst, data in net.trace if src[0] == client.host]
    assert sent == [SIM_CLIENT_HELLO]
    assert server.core.registrations == {}


def test_accepted_handshake_registers_over_the_session(net: SimNetwork) -> None:
    server = make_server(net, HandshakeOutcome.ACCEPT)
    client = make_client(net, server.uri)
    assert net.clock.run_until_true(lambda: bool(client.named("registered")), 10)
    assert "dev-1" in server.core.registrations
    assert len(server.handshakes) == 1
    assert server.dropped_without_session == 0


def test_closed_port_during_handshake_is_a_network_error(net: SimNetwork) -> None:
    server = make_server(net, HandshakeOutcome.SILENT)
    server.stop()
    client = make_client(net, server.uri)
    assert net.clock.run_until_true(lambda: bool(connect_errors(client)), 10)
    (error,) = connect_errors(client)
    assert error.code is ev.ErrorCode.NETWORK_ERROR
    assert len(hello_times(net)) == 1  # ICMP ends it at once: no retransmission


def test_register_lost_right_after_handshake_does_not_loop(net: SimNetwork) -> None:
    """(†): act as for a NoSec timeout (abort registration), no second handshake."""
    server = make_server(net, HandshakeOutcome.ACCEPT)
    server.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.SILENT))
    client = make_client(net, server.uri)
    net.clock.run_for(62.5)
    (error,) = [e for e in client.errors() if e.request == "register"]
    assert error.code is ev.ErrorCode.TIMEOUT
    assert error.action == "abort_registration"
    assert error.time == pytest.approx(2 * LATENCY + 62)  # sent once the handshake ended
    assert len(server.handshakes) == 1


def test_lost_session_triggers_one_new_handshake_then_resumes(net: SimNetwork) -> None:
    """Spec §10: a timeout on a session the server had used means a new handshake at once.

    The Update that times out is not sent again over the same session (no
    Register on it first, as Anjay's table would): a new handshake, then the
    Update again, which the restarted server (its registrations kept)
    accepts.
    """
    server = make_server(net, HandshakeOutcome.ACCEPT)
    client = make_client(net, server.uri)
    assert net.clock.run_until_true(lambda: bool(client.named("registered")), 10)
    server.restart()  # the server forgets the session; the client does not know
    client.trigger_update()
    assert net.clock.run_until_true(lambda: bool(client.named("updated")), 300)
    [error] = client.errors()
    assert (error.request, error.action) == ("update", "retry_handshake")
    assert len(server.handshakes) == 2
    assert server.dropped_without_session == 5  # the Update's transmissions only
    [updated] = client.named("updated")
    # One handshake and one exchange after the timeout: four network hops.
    assert updated.time - error.time == pytest.approx(4 * LATENCY)
    assert len(client.named("registered")) == 1


def test_a_timeout_right_after_the_new_handshake_does_not_loop(net: SimNetwork) -> None:
    """(†): the Update resumed over a fresh session times out too: no third handshake."""
    server = make_server(net, HandshakeOutcome.ACCEPT)
    client = make_client(net, server.uri)
    assert net.clock.run_until_true(lambda: bool(client.named("registered")), 10)
    server.restart()
    server.core.add_rule(FaultRule(Operation.ANY, FaultKind.SILENT))
    client.trigger_update()
    net.clock.run_for(3 * 62 + 1)
    kinds = [(e.request, e.action) for e in client.errors()]
    assert kinds == [
        ("update", "retry_handshake"),  # the session the server had used: redo it
        ("update", "fallback_register"),  # fresh session: (†) reads the NoSec row
        ("register", "abort_registration"),  # still fresh: nothing has come back over it
    ]
    assert len(server.handshakes) == 2


# -- session resumption after an outage -------------------------------------------

#: A CON gives up 15.5 s after it was sent: the Update and the Register after it
#: both fail inside a 30 s outage, so the client reconnects with a new link.
SHORT_COAP = TransmissionParameters(ack_timeout=0.5, ack_random_factor=1.0)


@pytest.mark.parametrize(
    ("server_restarts", "flights"),
    [(False, [FULL_FLIGHTS, ABBREVIATED_FLIGHTS]), (True, [FULL_FLIGHTS, FULL_FLIGHTS])],
)
def test_30s_outage_ends_with_an_abbreviated_handshake(
    net: SimNetwork, server_restarts: bool, flights: list[int]
) -> None:
    server = make_server(net, HandshakeOutcome.ACCEPT)
    client = make_client(net, server.uri, coap=SHORT_COAP)
    net.clock.run_until_true(lambda: client.state(1) is ServerState.REGISTERED, 10)
    first_link = client._driver._links[1]
    assert first_link.secure and not first_link.resumed
    net.down = True
    client.trigger_update()  # its CON is lost until the outage ends, then given up on
    net.clock.run_for(30)
    net.down = False
    if server_restarts:
        server.restart()
    assert net.clock.run_until_true(
        lambda: (
            client._driver._links.get(1) not in (None, first_link)
            and client.state(1) is ServerState.REGISTERED
        ),
        120,
    )
    assert server.flights == flights
    assert client._driver._links[1].resumed is (not server_restarts)
    done = [e for e in client.events if isinstance(e, ev.HandshakeDone)]
    assert [e.resumed for e in done] == [False, not server_restarts]
    # Resumed or not, the registration the server kept is resumed with an Update.
    assert len(client.named("registered")) == 1
    assert client.named("updated")[-1].time > done[-1].time
    assert len(server.core.registrations) == 1
