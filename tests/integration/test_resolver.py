"""Name resolution is injectable (``Client(resolver=...)``), over real UDP on 127.0.0.1.

A harness (the scenario runner, a fleet) answers names from its own table and
can make one stop resolving; the client must then report a DNS failure and
register again once the name is back. IP literals are never looked up.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.policy import ReconnectPolicy, RetrySettings
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.links import resolve
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.server import TestbedServer

FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)


class Table:
    """A resolver answering from a dict; a name mapped to None fails like a DNS miss."""

    def __init__(self, names: dict[str, str | None]) -> None:
        self.names = names
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> tuple[str, int]:
        self.asked.append((host, port))
        addr = self.names.get(host)
        if addr is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addr, port


def config(uri: str) -> ClientConfig:
    retry = RetrySettings(
        communication_retry_count=1,
        communication_sequence_retry_count=1,
        bootstrap_on_registration_failure=False,
    )
    return ClientConfig(
        endpoint="named-dev",
        servers=(ServerAccount(uri=uri, lifetime=30, retry=retry),),
        coap=FAST,
        reconnect=ReconnectPolicy(first_delay_min=0.2, first_delay_max=0.3, max_delay=0.5),
    )


@pytest.fixture
async def server() -> AsyncIterator[TestbedServer]:
    async with TestbedServer("127.0.0.1", 0, params=FAST) as srv:
        yield srv


async def test_the_injected_resolver_finds_the_server(server: TestbedServer) -> None:
    table = Table({"device-management.invalid": "127.0.0.1"})
    client = Client(config(f"coap://device-management.invalid:{server.port}"), resolver=table)
    await client.start()
    await client.wait_for(ev.Registered, 5)
    await client.close()
    assert table.asked == [("device-management.invalid", server.port)]
    assert "named-dev" not in server.core.registrations  # de-registered through it too


async def test_a_name_that_stops_resolving_is_a_dns_failure_until_it_is_back(
    server: TestbedServer,
) -> None:
    table = Table({"dm.invalid": "127.0.0.1"})
    client = Client(config(f"coap://dm.invalid:{server.port}"), resolver=table)
    errors: list[ev.Error] = []
    client.subscribe(lambda e: errors.append(e) if isinstance(e, ev.Error) else None)
    await client.start()
    await client.wait_for(ev.Registered, 5)
    table.names["dm.invalid"] = None
    # An Update answered with RST makes the client reconnect, so it must resolve again.
    server.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET, count=1))
    client.trigger_update()
    failed = await client.wait_for(
        ev.Error, 5, lambda e: e.code is ev.ErrorCode.DNS_RESOLVING_FAILED
    )
    assert isinstance(failed, ev.Error) and "dm.invalid" in (failed.detail or "")
    table.names["dm.invalid"] = "127.0.0.1"
    await client.wait_for(ev.Updated, 10)  # the registration resumed (spec §10)
    await client.close()
    assert len(table.asked) >= 3


async def test_ip_literals_are_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    looked_up: list[object] = []

    async def getaddrinfo(host: object, *args: object, **kwargs: object) -> list[object]:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "not here")

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    assert await resolve("127.0.0.1", 5683) == ("127.0.0.1", 5683)
    assert await resolve("::1", 5684) == ("::1", 5684)
    assert looked_up == []
    with pytest.raises(socket.gaierror):
        await resolve("localhost", 5683)
    assert looked_up == ["localhost"]
