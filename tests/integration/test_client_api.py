"""The Python API's first program (issue 14 item 14, issue 11 item 5), over real UDP.

Nothing the client reports is missed by a subscriber that came first, events
are waited for by type, event times are the CLI's clock, and ``close()`` returns
as soon as the De-register is answered.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator

import pytest

from aiolwm2m import (
    Client,
    ClientConfig,
    Instance,
    ServerAccount,
    ServerState,
    default_objects,
    events,
)
from aiolwm2m.cli.common import clock_origin
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.testbed.server import TestbedServer

FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)


@pytest.fixture
async def server() -> AsyncIterator[TestbedServer]:
    async with TestbedServer("127.0.0.1", 0, params=FAST) as srv:
        yield srv


def config(server: TestbedServer) -> ClientConfig:
    return ClientConfig("api-dev", (ServerAccount(server.uri, lifetime=60),), coap=FAST)


async def test_a_subscriber_before_start_sees_the_very_first_event(server: TestbedServer) -> None:
    client = Client(config(server))
    seen: list[events.Event] = []
    client.subscribe(seen.append)
    stream = client.events()  # subscribes now, before start
    first_waiter = asyncio.ensure_future(client.wait_for(events.StateChanged, 5))
    await asyncio.sleep(0)  # the waiter subscribes
    await client.start()
    first = seen[0]
    assert isinstance(first, events.StateChanged) and first.new is ServerState.CONNECTING
    assert await first_waiter is first
    assert await anext(aiter(stream)) is first
    registered = await client.wait_for(events.Registered, 5)
    assert isinstance(registered, events.Registered) and registered.lifetime == 60
    await client.close()


async def test_an_event_stream_dropped_unread_unsubscribes(server: TestbedServer) -> None:
    """A stream never iterated must not keep every later event for the client's life."""
    client = Client(config(server))
    kept = client.events()
    dropped = client.events()
    assert len(client._queues) == 2
    del dropped
    gc.collect()
    assert len(client._queues) == 1  # the dropped stream's queue is gone, with its subscription
    await client.start()
    registered = await client.wait_for(events.Registered, 5)
    seen = [event async for event in _until(kept, registered)]
    assert seen[-1] is registered
    await client.close()


async def test_aclose_ends_a_loop_waiting_on_the_stream(server: TestbedServer) -> None:
    client = Client(config(server))
    stream = client.events()
    got: list[events.Event] = []

    async def consume() -> None:
        async for event in stream:
            got.append(event)

    consumer = asyncio.ensure_future(consume())
    await client.start()
    await client.wait_for(events.Registered, 5)
    await asyncio.sleep(0)
    await stream.aclose()  # type: ignore[attr-defined]  # the stream's documented aclose
    await asyncio.wait_for(consumer, 1)  # the loop ended, it does not wait for events
    assert any(isinstance(e, events.Registered) for e in got)
    assert client._queues == []
    await client.close()


async def _until(
    stream: AsyncIterator[events.Event], last: events.Event
) -> AsyncIterator[events.Event]:
    async for event in stream:
        yield event
        if event is last:
            return


async def test_event_times_are_the_clis_clock(server: TestbedServer) -> None:
    client = Client(config(server))
    before = time.monotonic() - clock_origin()
    await client.start()
    registered = await client.wait_for(events.Registered, 5)
    after = time.monotonic() - clock_origin()
    assert before <= registered.time <= after
    assert client.now() == pytest.approx(time.monotonic() - clock_origin(), abs=0.05)
    await client.close()


async def test_close_returns_when_the_deregister_is_answered(server: TestbedServer) -> None:
    client = Client(config(server))
    await client.start()
    await client.wait_for(events.Registered, 5)
    done: list[events.Deregistered] = []
    client.subscribe(lambda e: done.append(e) if isinstance(e, events.Deregistered) else None)
    began = time.monotonic()
    await client.close(timeout=30)
    assert done and time.monotonic() - began < 1.0  # no poll, no MAX_TRANSMIT_WAIT
    assert "api-dev" not in server.core.registrations


async def test_observed_async_hook_notifies_its_own_value(server: TestbedServer) -> None:
    """A Read said 20.86 while notifications said 21.5 (the stored value): no longer."""
    cfg = config(server)
    objects = default_objects(cfg)
    measured = {"value": 20.86}

    async def read_temperature() -> float:
        await asyncio.sleep(0.02)  # a real await: the sample waits for it on the loop
        return measured["value"]

    objects.tree.add_instance(
        3303, 0, Instance({5700: 21.5, 5701: "Cel"}, on_read={5700: read_temperature})
    )
    async with Client(cfg, objects) as client:
        await client.wait_for(events.Registered, 5)
        read = await server.read("api-dev", "/3303/0/5700", timeout=5)
        assert read.payload == b"20.86"
        observation = await server.observe("api-dev", "/3303/0/5700", timeout=5)
        assert observation.initial is not None and observation.initial.payload == b"20.86"
        notes = aiter(observation)
        for value in (22.25, 19.5):
            measured["value"] = value
            objects.tree.mark_changed("/3303/0/5700")
            note = await asyncio.wait_for(anext(notes), 5)
            assert note.payload == str(value).encode()
