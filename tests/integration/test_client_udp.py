"""The client and the testbed server over real UDP sockets on 127.0.0.1.

Same engine as the virtual-clock tests, driven by the asyncio runtime; timings
are shortened through configuration only. Waits are on events, bounded by
generous timeouts; nothing asserts on wall-clock speed except the ICMP case,
whose whole point is "milliseconds, not the CoAP timeout".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.server import TestbedServer

FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)
NO_BOOTSTRAP = RetrySettings(
    communication_retry_count=1,
    communication_sequence_retry_count=1,
    bootstrap_on_registration_failure=False,
)


def config(
    uri: str,
    *,
    endpoint: str = "udp-dev",
    lifetime: int = 30,
    coap: TransmissionParameters = FAST,
) -> ClientConfig:
    return ClientConfig(
        endpoint=endpoint,
        servers=(ServerAccount(uri=uri, lifetime=lifetime, retry=NO_BOOTSTRAP),),
        coap=coap,
        reconnect=ReconnectPolicy(first_delay_min=0.2, first_delay_max=0.4, max_delay=2.0),
    )


@pytest.fixture
async def server() -> AsyncIterator[TestbedServer]:
    srv = TestbedServer("127.0.0.1", 0, params=FAST)
    await srv.start()
    yield srv
    await srv.stop()


async def test_register_update_deregister(server: TestbedServer) -> None:
    client = Client(config(server.uri))
    seen: list[ev.Event] = []
    client.subscribe(seen.append)
    await client.start()
    registered = await client.wait_for(ev.Registered, 5)
    assert isinstance(registered, ev.Registered)
    reg = server.core.registrations["udp-dev"]
    assert reg.location == registered.location and reg.lifetime == 30
    assert "</3/0>" in reg.links
    client.trigger_update()
    await client.wait_for(ev.Updated, 5)
    assert server.core.registrations["udp-dev"].updates == 1
    await client.close()
    assert "udp-dev" not in server.core.registrations
    names = [e.name for e in seen]
    for name in ("registering", "registered", "update_sent", "updated", "deregistered"):
        assert name in names
    assert names.index("registered") < names.index("updated") < names.index("deregistered")


async def test_update_answered_not_found_registers_again(server: TestbedServer) -> None:
    client = Client(config(server.uri))
    await client.start()
    await client.wait_for(ev.Registered, 5)
    server.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESPOND, code=0x84, count=1))
    client.trigger_update()
    err = await client.wait_for(ev.Error, 5)
    assert isinstance(err, ev.Error) and err.coap_code == "4.04"
    assert err.action == "fallback_register"
    await client.wait_for(ev.Registered, 5)
    await client.close()


async def test_closed_port_is_a_network_error_within_milliseconds(
    server: TestbedServer,
) -> None:
    client = Client(config(server.uri))
    await client.start()
    await client.wait_for(ev.Registered, 5)
    await server.stop()  # the port is closed: the kernel answers with ICMP
    loop = asyncio.get_running_loop()
    sent = loop.time()
    client.trigger_update()
    err = await client.wait_for(ev.Error, 5)
    elapsed = loop.time() - sent
    assert isinstance(err, ev.Error) and err.code is ev.ErrorCode.NETWORK_ERROR
    # CoAP would only give up after 0.2 * (2^3 - 1) = 1.4 s; ICMP arrives in ~1 ms.
    assert elapsed < FAST.ack_timeout, f"network error after {elapsed:.3f} s"
    await client.stop()


async def test_server_outage_typed_errors_scheduled_reconnects_and_registration_again(
    server: TestbedServer,
) -> None:
    client = Client(config(server.uri, lifetime=2))
    seen: list[ev.Event] = []
    client.subscribe(seen.append)
    await client.start()
    await client.wait_for(ev.Registered, 5)
    port = server.port
    await server.stop()
    await client.wait_for(ev.ReconnectScheduled, 10)
    await client.wait_for(ev.ReconnectScheduled, 10)  # at least one failed reconnect
    server.port = port
    await server.start()
    # Back: an Update resumes the registration if it has not expired by the
    # client's clock (lifetime 2 s), else a Register (spec §10).
    back = await client.wait_for(ev.StateChanged, 10, lambda e: e.new is ServerState.REGISTERED)
    errors = [e for e in seen if isinstance(e, ev.Error) and e.time < back.time]
    assert errors and all(
        e.code in (ev.ErrorCode.NETWORK_ERROR, ev.ErrorCode.TIMEOUT) for e in errors
    )
    delays = [e.delay for e in seen if isinstance(e, ev.ReconnectScheduled)]
    assert delays[1] == pytest.approx(delays[0] * 2)
    assert server.core.registrations["udp-dev"].address[1] != port
    await client.close()


async def test_two_hundred_clients_in_one_process(server: TestbedServer) -> None:
    # Default CoAP timing: on a loaded machine 0.2 s ACK timeouts would make the
    # test about scheduling latency instead of many independent clients.
    clients = [
        Client(config(server.uri, endpoint=f"fleet-{i}", coap=TransmissionParameters()))
        for i in range(200)
    ]
    for c in clients:
        await c.start()
    await asyncio.gather(*(c.wait_for(ev.Registered, 30) for c in clients))
    assert len(server.core.registrations) == 200
    await asyncio.gather(*(c.close() for c in clients))
    assert not server.core.registrations


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aiolwm2m.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_cli_client_emits_jsonl_and_deregisters_on_sigterm(server: TestbedServer) -> None:
    proc = _cli("client", "--server", server.uri, "--endpoint", "cli-dev", "--events", "jsonl")
    try:
        deadline = time.monotonic() + 20
        while "cli-dev" not in server.core.registrations:
            assert time.monotonic() < deadline, "the CLI client never registered"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    names = [e["event"] for e in events]
    assert "registering" in names
    assert names.index("registered") < names.index("deregistered")
    assert events[names.index("deregistered")]["acknowledged"] is True
    assert all(isinstance(e["time"], float) and e["time"] >= 0 for e in events)
    assert "cli-dev" not in server.core.registrations


def test_cli_rejects_a_bad_config_with_a_typed_message(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "bad.toml")
    with open(path, "w") as fh:
        fh.write('endpoint = "x"\n[coap]\nack_timeout = "soon"\n')
    proc = _cli("client", "--config", path)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "ack_timeout" in err and "Traceback" not in err


@pytest.mark.slow
def test_make_demo_story_exits_zero_and_shows_recovery() -> None:
    proc = _cli("demo", "--seed", "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for needle in ("registered", "network_error", "reconnect_scheduled", "deregistered"):
        assert needle in out
    assert out.count("registered ") >= 2 or out.count(" registered") >= 2
    # RECOVERED is said as the client is back (its resuming Update or new Register),
    # not at the periodic Update after it: the client line before it is that answer.
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "RECOVERED" in line)
    back = [line for line in lines[:at] if " client " in line][-1].split()
    assert back[2] in ("updated", "registered"), lines[at - 3 : at + 1]
    assert float(lines[at].split()[0].rstrip("s")) - float(back[0].rstrip("s")) < 1.0
    assert sum(" client  updated" in line for line in lines[:at]) <= 2  # before and at recovery


async def test_queue_mode_sleeps_and_wakes_with_an_update_from_a_new_socket(
    server: TestbedServer,
) -> None:
    base = config(server.uri, endpoint="queue-dev")
    queued = dataclasses.replace(
        base, servers=(dataclasses.replace(base.servers[0], binding="UQ"),)
    )
    client = Client(queued)
    await client.start()
    await client.wait_for(ev.Registered, 5)
    first_address = server.core.registrations["queue-dev"].address
    await client.wait_for(ev.QueueModeSleep, 5)  # MAX_TRANSMIT_WAIT = 1.4 s here
    client.trigger_update()
    await client.wait_for(ev.Updated, 5)
    reg = server.core.registrations["queue-dev"]
    # LwM2M 1.1: b=U and the Q parameter (the testbed refuses b=UQ from 1.1, as Leshan does).
    assert reg.updates == 1 and (reg.binding, reg.queue_mode) == ("U", True)
    assert reg.address != first_address, "a new socket each wake; the Update says where"
    await client.close()
    assert "queue-dev" not in server.core.registrations


async def test_a_server_executing_disable_is_answered_deregistered_and_back_after_the_timeout(
    server: TestbedServer,
) -> None:
    """Issue 12 item 3: Execute /1/x/4 answered 2.04, then a De-register (the server
    drops the registration), nothing for the Disable Timeout (/1/x/5), then Register."""
    account = dataclasses.replace(config(server.uri).servers[0], disable_timeout=1)
    client = Client(dataclasses.replace(config(server.uri), servers=(account,)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 5)
        deregistered = asyncio.ensure_future(client.wait_for(ev.Deregistered, 5))
        await asyncio.sleep(0)  # subscribed before the Execute can be answered
        result = await server.execute("udp-dev", "/1/0/4", timeout=5)
        assert result.code == 0x44  # 2.04 Changed
        done = await deregistered
        assert isinstance(done, ev.Deregistered) and done.acknowledged
        assert "udp-dev" not in server.core.registrations
        assert client.state(1).value == "suspended"
        again = await client.wait_for(ev.Registered, 5)
        assert again.time - done.time == pytest.approx(1.0, abs=0.5)
        assert "udp-dev" in server.core.registrations
    finally:
        await client.close()
