"""An observed resource with an async read hook notifies the hook's answer (issue 14 item 14).

Reported: a Read returned 20.86 while every notification said 21.5 (the stored
value): observation sampling discarded the hook's awaitable. Now the sample
waits for the hook (a request-less job), so the Observe's first answer and
every notification carry what the hook returned. On the virtual clock an
``async def`` hook that only computes finishes at once.
"""

from __future__ import annotations

from simkit import observed_values, sensor_device

from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.operations import (
    observe_composite_request,
    observe_request,
    read_request,
)
from aiolwm2m.testbed.sim import SimServer

PATH = "/3303/1/5700"


def test_notifications_carry_the_async_hooks_value_not_the_stored_one() -> None:
    net = SimNetwork(seed=3)
    server = SimServer(net)
    server.start()
    client, objects, _sensor = sensor_device(net, server)
    measured = {"value": 20.86}
    calls: list[float] = []

    async def read_temperature() -> float:
        calls.append(net.clock.now)
        return measured["value"]

    objects.tree.add_instance(
        3303, 1, Instance({5700: 21.5, 5701: "Cel"}, on_read={5700: read_temperature})
    )
    net.clock.run_for(1)

    server.start_operation("dev-1", read_request(PATH))
    net.clock.run_for(1)
    assert observed_values(server) == [b"20.86"]

    server.start_operation("dev-1", observe_request(PATH, 0))
    net.clock.run_for(1)
    assert observed_values(server) == [b"20.86"]  # the first answer awaited the hook too

    for value in (22.25, 19.5):
        measured["value"] = value
        objects.tree.mark_changed(PATH)  # the application says the hooked value moved
        client.poll()
        net.clock.run_for(1)
        assert observed_values(server) == [str(value).encode()]
    assert client.errors() == []
    assert len(calls) >= 4


def test_observe_composite_carries_the_async_hooks_value() -> None:
    net = SimNetwork(seed=3)
    server = SimServer(net)
    server.start()
    client, objects, _sensor = sensor_device(net, server)
    measured = {"value": 20.86}

    async def read_temperature() -> float:
        return measured["value"]

    objects.tree.add_instance(
        3303, 1, Instance({5700: 21.5, 5701: "Cel"}, on_read={5700: read_temperature})
    )
    net.clock.run_for(1)
    observed_values(server)
    server.start_operation("dev-1", observe_composite_request([PATH], ContentFormat.SENML_JSON))
    net.clock.run_for(1)
    [first] = observed_values(server)
    assert b"20.86" in first and b"21.5" not in first

    measured["value"] = 22.25
    objects.tree.mark_changed(PATH)
    client.poll()
    net.clock.run_for(1)
    [note] = observed_values(server)
    assert b"22.25" in note and b"21.5" not in note
