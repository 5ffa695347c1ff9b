"""Bootstrap over real UDP on 127.0.0.1: the asyncio client, two testbed LwM2M
servers and the testbed Bootstrap-Server (in-process, then as the CLI command).

Waits are on events with generous bounds; the only delay in the flow is the
bootstrap hold-off (1-1.5 s, spec §10).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.message import Code
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.bootstrap import BootstrapConfig, BootstrapServer, ProvisionedServer
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.server import TestbedServer

FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)


@pytest.fixture
async def servers() -> AsyncIterator[tuple[TestbedServer, TestbedServer]]:
    old, new = (
        TestbedServer("127.0.0.1", 0, params=FAST),
        TestbedServer("127.0.0.1", 0, params=FAST),
    )
    await old.start()
    await new.start()
    yield old, new
    await old.stop()
    await new.stop()


def client_config(servers: tuple[ServerAccount, ...], bootstrap_uri: str) -> ClientConfig:
    return ClientConfig(
        endpoint="bs-dev",
        servers=servers,
        bootstrap=ServerAccount(uri=bootstrap_uri),
        coap=FAST,
    )


def registered(ssid: int) -> Callable[[ev.Event], bool]:
    return lambda e: isinstance(e, ev.Registered) and e.ssid == ssid


def future_event(client: Client, match: Callable[[ev.Event], bool]) -> asyncio.Future[ev.Event]:
    """A future for the first event matching ``match``, subscribed right now."""
    fut: asyncio.Future[ev.Event] = asyncio.get_running_loop().create_future()

    def check(event: ev.Event) -> None:
        if match(event) and not fut.done():
            fut.set_result(event)

    client.subscribe(check)
    return fut


async def test_update_reset_bootstraps_to_the_provisioned_server(
    servers: tuple[TestbedServer, TestbedServer],
) -> None:
    old, new = servers
    provision = ProvisionedServer(uri=new.uri, ssid=2, server={1: 45})
    async with BootstrapServer(BootstrapConfig(default=(provision,)), params=FAST) as bs:
        account = ServerAccount(uri=old.uri, lifetime=30, retry=RetrySettings())
        client = Client(client_config((account,), bs.uri), local_host="127.0.0.1")
        seen: list[ev.Event] = []
        client.subscribe(seen.append)
        await client.start()
        try:
            await client.wait_for(ev.Registered, 5, registered(1))
            old.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET))
            waiting = future_event(client, registered(2))  # subscribed before the trigger
            client.trigger_update(1)
            done = await asyncio.wait_for(waiting, 10)
            assert isinstance(done, ev.Registered) and done.lifetime == 45
            await bs.wait_for("bootstrapped", "bs-dev", timeout=5)
            assert new.core.registrations["bs-dev"].lifetime == 45
        finally:
            await client.close()
    names = [e.name for e in seen if e.name != "state_changed"]
    reset = next(e for e in seen if isinstance(e, ev.Error) and e.code is ev.ErrorCode.RESET)
    assert (reset.request, reset.action) == ("update", "bootstrap")
    start = names.index("bootstrap_started")
    assert names[start : start + 3] == ["bootstrap_started", "bootstrapped", "registering"]
    assert client.engine.server_states() == {2: ServerState.IDLE}  # after close()
    steps = [e.kind for e in bs.core.history]
    assert steps[0] == "bootstrap_request" and steps[-1] == "bootstrapped"


async def test_cli_bootstrap_server_provisions_a_factory_client(
    servers: tuple[TestbedServer, TestbedServer], tmp_path: Path
) -> None:
    _, new = servers
    toml = tmp_path / "bs.toml"
    # Written as Wakaama does, /0/1 and /1/1: the client keeps those ids (issue 12 item 2).
    toml.write_text(
        f'[[default.server]]\nuri = "{new.uri}"\nssid = 5\nlifetime = 60\n'
        "security_instance = 1\nserver_instance = 1\n"
    )
    port = _free_udp_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiolwm2m.cli.main",
            "bootstrap-server",
            "--config",
            str(toml),
            "--port",
            str(port),
            "--events",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        banner = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 20)
        assert b"listening on coap://127.0.0.1:" in banner
        client = Client(client_config((), f"coap://127.0.0.1:{port}"), local_host="127.0.0.1")
        await client.start()
        try:
            done = await client.wait_for(ev.Registered, 10, registered(5))
            assert isinstance(done, ev.Registered) and done.lifetime == 60
            assert "</1/1>" in new.core.registrations["bs-dev"].links.split(",")
            read = await new.read("bs-dev", "/1/1/0", ContentFormat.TEXT, timeout=5)
            assert (read.code, read.payload) == (Code.CONTENT, b"5")
        finally:
            await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=10)
    assert proc.returncode == 0
    assert b'"event": "bootstrapped", "endpoint": "bs-dev"' in out


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_register_never_answered_runs_the_retry_procedure_then_bootstraps(
    servers: tuple[TestbedServer, TestbedServer],
) -> None:
    old, new = servers
    old.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.SILENT))
    provision = ProvisionedServer(uri=new.uri, ssid=2, server={1: 45})
    async with BootstrapServer(BootstrapConfig(default=(provision,)), params=FAST) as bs:
        # Two attempts 0.5 s apart (Server /1/x/17-18), one sequence, then /1/x/16: bootstrap.
        retry = RetrySettings(communication_retry_count=2, communication_retry_timer=0.5)
        account = ServerAccount(uri=old.uri, lifetime=30, retry=retry)
        client = Client(client_config((account,), bs.uri), local_host="127.0.0.1")
        seen: list[ev.Event] = []
        client.subscribe(seen.append)
        done = future_event(client, registered(2))
        await client.start()
        await asyncio.wait_for(done, 20)
        kinds = [(e.name, getattr(e, "request", None)) for e in seen]
        timeouts = [e for e in seen if isinstance(e, ev.Error) and e.request == "register"]
        assert [e.code for e in timeouts] == [ev.ErrorCode.TIMEOUT] * 2
        assert [e.action for e in timeouts] == ["abort_registration"] * 2
        [retry_event] = [e for e in seen if isinstance(e, ev.RetryScheduled)]
        assert retry_event.delay == 0.5
        assert kinds.index(("bootstrap_started", None)) > kinds.index(("retry_scheduled", None))
        assert "bs-dev" in new.core.registrations and "bs-dev" not in old.core.registrations
        await client.close()


async def test_bootstrap_request_trigger_executed_by_a_server(
    servers: tuple[TestbedServer, TestbedServer],
) -> None:
    """Issue 12 item 4: Execute /1/0/9 answered 2.04, De-register, client-initiated bootstrap."""
    old, new = servers
    provision = ProvisionedServer(uri=new.uri, ssid=2, server={1: 45})
    async with BootstrapServer(BootstrapConfig(default=(provision,)), params=FAST) as bs:
        account = ServerAccount(uri=old.uri, lifetime=30)
        client = Client(client_config((account,), bs.uri), local_host="127.0.0.1")
        await client.start()
        try:
            await client.wait_for(ev.Registered, 5, registered(1))
            waiting = future_event(client, registered(2))
            result = await old.execute("bs-dev", "/1/0/9", timeout=5)
            assert result.code == Code.CHANGED
            await asyncio.wait_for(waiting, 10)
            assert "bs-dev" not in old.core.registrations, "de-registered first"
            assert new.core.registrations["bs-dev"].lifetime == 45
        finally:
            await client.close()
