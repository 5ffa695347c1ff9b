"""Notifications produced during a 30 s outage all reach the server, in order (real UDP).

Client -> fault proxy -> testbed server, all on 127.0.0.1. The proxy closes
its listening port for 30 s, so the client's connected socket gets ICMP port
unreachable; meanwhile the application changes an observed value every
second. After the window the client reconnects on its schedule, registers
again (same location: the server kept the registration) and delivers every
stored value, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.observe import ObserveSettings
from aiolwm2m.client.operations import default_objects
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.proxy import FaultProxy
from aiolwm2m.testbed.server import TestbedServer

OUTAGE = 30


@pytest.mark.slow
async def test_values_produced_during_a_30_s_outage_arrive_in_order() -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(TestbedServer("127.0.0.1", 0))
        proxy = await stack.enter_async_context(FaultProxy(("127.0.0.1", server.port), seed=1))
        config = ClientConfig(
            endpoint="outage-dev",
            servers=(
                ServerAccount(
                    proxy.uri,
                    1,
                    lifetime=300,
                    retry=RetrySettings(
                        bootstrap_on_registration_failure=False, communication_retry_count=1
                    ),
                ),
            ),
            coap=TransmissionParameters(ack_timeout=1.0),
            reconnect=ReconnectPolicy(first_delay_min=0.5, first_delay_max=1.0, max_delay=2.0),
        )
        objects = default_objects(config, observe=ObserveSettings(confirmable=True))
        objects.tree.add_object(3303, factory=lambda iid: Instance())
        sensor = objects.tree.add_instance(3303, 0, Instance({5700: 0.0, 5701: "Cel"}))
        client = Client(config, objects)
        seen: list[ev.Event] = []
        client.subscribe(seen.append)
        await client.start()
        await client.wait_for("registered", 10)
        observation = await server.observe("outage-dev", "/3303/0/5700")
        assert observation.active and observation.initial is not None

        await proxy.set_unreachable(True)
        for second in range(1, OUTAGE + 1):
            sensor.set(5700, float(second))
            await asyncio.sleep(1)
        assert not client.engine.registered()
        await proxy.set_unreachable(False)
        await client.wait_for("notifications_flushed", 15)

        got: list[bytes] = []
        async with asyncio.timeout(15):
            async for note in observation:
                got.append(note.payload)
                if len(got) == OUTAGE:
                    break
        assert got == [f"{float(s)}".encode() for s in range(1, OUTAGE + 1)]
        assert client.engine.dropped_notifications(1) == 0
        errors = [e for e in seen if isinstance(e, ev.Error)]
        assert errors and {e.code for e in errors} == {ev.ErrorCode.NETWORK_ERROR}
        assert [e.name for e in seen].count("registered") == 2
        await client.close()
