"""Virtual-clock helpers for engine tests: clients of a simulated testbed server.

Every test here runs the production engine and the production server core on
:mod:`aiolwm2m.runtime.sim`; nothing sleeps, a week of backoff costs microseconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.policy import ReconnectPolicy, RetrySettings
from aiolwm2m.coap.message import Message, decode, is_request
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import Address

#: Deterministic CoAP timing: ACK_RANDOM_FACTOR 1 makes every retransmission
#: schedule exact (2, 4, 8, 16 s; the exchange times out 62 s after sending).
EXACT_COAP = TransmissionParameters(ack_timeout=2.0, ack_random_factor=1.0)
#: Time from sending a CON until it times out with EXACT_COAP: 2+4+8+16+32.
CON_GIVES_UP_AFTER = 62.0

MakeClient = Callable[..., SimClient]


def account(uri: str, **changes: Any) -> ServerAccount:
    """A NoSec account; bootstrap-on-failure off unless the test turns it on."""
    retry = changes.pop("retry", RetrySettings(bootstrap_on_registration_failure=False))
    return ServerAccount(uri=uri, lifetime=changes.pop("lifetime", 300), retry=retry, **changes)


def client_factory(net: SimNetwork, uri: str) -> MakeClient:
    def build(*, seed: int = 1, start: bool = True, **changes: Any) -> SimClient:
        servers = changes.pop("servers", None)
        if servers is None:
            servers = (account(uri, **changes.pop("account", {})),)
        config = ClientConfig(
            endpoint=changes.pop("endpoint", "dev-1"),
            servers=servers,
            coap=changes.pop("coap", EXACT_COAP),
            reconnect=changes.pop("reconnect", ReconnectPolicy()),
        )
        client = SimClient(net, replace(config, **changes), rng=random.Random(seed))
        if start:
            client.start()
        return client

    return build


def requests_to(net: SimNetwork, dst: Address) -> list[tuple[float, Message]]:
    """CoAP requests that left for ``dst`` (needs ``net.trace = []`` before the test)."""
    assert net.trace is not None
    out = []
    for t, _src, to, data in net.trace:
        if to == dst:
            msg = decode(data)
            if is_request(msg.code):
                out.append((t, msg))
    return out
