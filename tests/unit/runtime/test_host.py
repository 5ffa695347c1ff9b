"""The host facts behind /3 and /4: injected by the runtime, one per process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.operations import default_objects
from aiolwm2m.lwm2m.objects import ConnectivityInstance, DeviceInfo, DeviceInstance, FixedHost
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import NotFoundError
from aiolwm2m.runtime import host as host_module
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.host import SystemHost, system_host

CONFIG = ClientConfig("ep", (ServerAccount("coap://127.0.0.1:5683", 1),))
HOST_BACKED = {1, 2, 3, 10, 13, 14, 15, 19, 21}


def test_without_a_host_the_host_backed_resources_are_absent_until_attached() -> None:
    ops = default_objects(CONFIG, device=DeviceInfo(serial_number="given"))
    device = ops.tree.instance(3, 0)
    assert isinstance(device, DeviceInstance)
    assert set(device.resource_ids()) & HOST_BACKED == {2}  # what the application gave
    with pytest.raises(NotFoundError):
        ops.tree.get(Path.parse("/3/0/13"))
    host = FixedHost(memory=(10, 20), addresses=["192.0.2.7"])
    ops.attach_host(host)
    assert set(device.resource_ids()) >= HOST_BACKED
    assert ops.tree.get(Path.parse("/3/0/2")) == "given"  # the application's value wins
    assert ops.tree.get(Path.parse("/3/0/1")) == host.model()
    assert ops.tree.get(Path.parse("/3/0/13")) == host.now()
    assert ops.tree.get(Path.parse("/4/0/4")) == {0: "192.0.2.7"}
    ops.attach_host(FixedHost(model_name="other"))  # an attached host is kept
    assert ops.tree.get(Path.parse("/3/0/1")) == host.model()


def test_memory_resources_follow_what_the_host_knows() -> None:
    device = DeviceInstance(host=FixedHost(memory=(None, None)))
    assert not {10, 21} & set(device.resource_ids())
    with pytest.raises(NotFoundError):
        device.read(21)
    device = DeviceInstance(host=FixedHost(memory=(5, 9)))
    assert (device.read(10), device.read(21)) == (5, 9)


def test_every_client_of_a_process_shares_the_system_host() -> None:
    first, second = Client(CONFIG), Client(CONFIG)
    devices = [c.objects.tree.instance(3, 0) for c in (first, second)]  # type: ignore[attr-defined]
    links = [c.objects.tree.instance(4, 0) for c in (first, second)]  # type: ignore[attr-defined]
    assert all(isinstance(d, DeviceInstance) and d.host is system_host() for d in devices)
    assert all(isinstance(c, ConnectivityInstance) and c.host is system_host() for c in links)


def test_identity_facts_and_package_metadata_are_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def version(name: str) -> str:
        calls.append(name)
        return "9.9"

    monkeypatch.setattr(host_module.metadata, "version", version)
    host = SystemHost()
    assert host.software_version() == host.software_version() == "aiolwm2m 9.9"
    assert calls == ["aiolwm2m"]
    assert host.model() == host.model() and host.serial_number() == host.serial_number()


def test_the_system_host_reads_the_real_clock_and_memory() -> None:
    host = system_host()
    before = datetime.now(UTC)
    assert before <= host.now() <= datetime.now(UTC)
    free, total = host.memory_kib()
    assert total is None or (free is not None and 0 < free <= total)
