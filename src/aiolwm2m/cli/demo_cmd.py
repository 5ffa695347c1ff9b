"""``aiolwm2m demo``: an embedded server, a client and a scripted outage, in one process.

Timings are shortened (ACK_TIMEOUT 0.5 s, lifetime 10 s, first reconnect delay
1–2 s) so the whole story — register, update, the server dies, typed errors,
scheduled reconnects with doubling delays, the server returns, the client
resumes its registration with an Update from its new socket (spec §10; after
an outage longer than the lifetime it registers anew), De-register — fits in
about 20 seconds. Exit code 0 means the client recovered on its own.

``--secure`` runs the same story over DTLS with a pre-shared key drawn at
random for this run: the outage then also costs the DTLS session, so the
client's recovery includes a fresh handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
from collections.abc import Callable
from typing import Any

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.cli.common import clock_origin, positive_number
from aiolwm2m.cli.demo_firmware import run_firmware_demo
from aiolwm2m.cli.output import emit, event_json, event_line, log_event
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.client.events import Event
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.credentials import PskCredentials, ServerSecurity
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.core import ServerEvent
from aiolwm2m.testbed.server import TestbedServer

__all__ = [
    "DEADLINE_MARGIN",
    "ENDPOINT",
    "add_parser",
    "demo_config",
    "run",
]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="client + embedded server with a scripted outage")
    p.add_argument(
        "--outage",
        type=positive_number,
        default=6.0,
        help="seconds the server stays down (> 0; the whole demo is bounded by this + "
        f"{DEADLINE_MARGIN:g} s)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the client's randomness")
    p.add_argument("--events", choices=["jsonl", "text"], default="text")
    p.add_argument("--secure", action="store_true", help="DTLS with a pre-shared key")
    p.add_argument(
        "--firmware",
        action="store_true",
        help="firmware update story instead: a signed manifest, a download cut by the outage "
        "(--outage, default 6 s), resume, install; ends with result 1 / Manifest Result 19",
    )
    p.set_defaults(func=run)


ENDPOINT = "demo-device"
#: Seconds the demo may take beyond the outage before it gives up (exit 1): the
#: story needs about 15 s around the outage; a hung demo must never be the result.
DEADLINE_MARGIN = 90.0


def demo_config(server_uri: str, psk: PskCredentials | None = None) -> ClientConfig:
    return ClientConfig(
        endpoint=ENDPOINT,
        servers=(
            ServerAccount(
                uri=server_uri,
                psk_identity=psk.identity if psk else None,
                psk_key=psk.key if psk else None,
                lifetime=10,
                retry=RetrySettings(
                    communication_retry_count=1, bootstrap_on_registration_failure=False
                ),
            ),
        ),
        coap=TransmissionParameters(ack_timeout=0.5, max_retransmit=2),
        reconnect=ReconnectPolicy(first_delay_min=1.0, first_delay_max=2.0, max_delay=30.0),
    )


async def _demo(outage: float, seed: int | None, fmt: str, secure: bool = False) -> int:
    loop = asyncio.get_running_loop()
    since = clock_origin()  # the clock of log lines too
    psk = PskCredentials(ENDPOINT.encode(), secrets.token_bytes(16)) if secure else None
    security = ServerSecurity(psk_store={psk.identity: psk.key}) if psk else None
    server = TestbedServer("127.0.0.1", 0, security=security)

    def say(text: str) -> None:
        if fmt == "text":
            emit(f"{loop.time() - since:8.3f}s  ----    {text}")

    def server_event(event: ServerEvent) -> None:
        if fmt == "text":
            emit(
                f"{event.time - since:8.3f}s  server  {event.kind:<24} {event.endpoint or ''} "
                f"{event.detail}".rstrip()
            )

    def client_event(event: Event) -> None:
        if fmt == "jsonl":
            emit(event_json(event))
        elif (line := event_line(event)) is not None:
            emit(line)

    server.on_event = server_event
    await server.start()
    say(f"testbed server up on {server.uri}")
    client = Client(demo_config(server.uri, psk), rng=random.Random(seed))
    client.subscribe(client_event)
    client.subscribe(log_event)
    await client.start()
    try:
        async with asyncio.timeout(outage + DEADLINE_MARGIN):
            await _story(client, server, outage, say)
    except TimeoutError:
        say("FAILED: the client did not recover in time")
        await client.stop()
        await server.stop()
        return 1
    await client.close()
    await server.stop()
    say("client de-registered; demo finished")
    return 0


async def _story(
    client: Client, server: TestbedServer, outage: float, say: Callable[[str], None]
) -> None:
    """Register, update, outage, recovery: each step bounded, the whole by the caller."""
    await client.wait_for(ev.Registered, 10)
    await client.wait_for(ev.Updated, 10)
    say(f"OUTAGE: the server goes away for {outage:g} s (its port is closed)")
    await server.stop()
    await asyncio.sleep(outage)
    await server.start()
    server_back = client.now()
    say("the server is back; the client reconnects on its own schedule")
    # Resumed with an Update (the registration had not expired), or registered anew:
    # either way the state says so the moment it happened, not at the next Update.
    back = await client.wait_for(ev.StateChanged, 60, lambda e: e.new is ServerState.REGISTERED)
    say(
        f"RECOVERED: registered again {client.elapsed(back.time):.3f} s after start, "
        f"{back.time - server_back:.3f} s after the server came back"
    )


def run(args: argparse.Namespace) -> int:
    if args.firmware:
        return asyncio.run(run_firmware_demo(args.outage, args.seed, args.events))
    return asyncio.run(_demo(args.outage, args.seed, args.events, args.secure))
