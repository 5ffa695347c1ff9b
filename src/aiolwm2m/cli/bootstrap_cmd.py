"""``aiolwm2m bootstrap-server``: the testbed Bootstrap-Server, configured from a TOML file.

Each step of each bootstrap (Request, Discover, Delete, Write, Finish, faults)
is printed as a timeline line, or as JSON lines with ``--events jsonl``, so a
recovery test can follow the client and its Bootstrap-Server side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from aiolwm2m.cli.common import clock_origin, listen_error, port_number
from aiolwm2m.cli.output import emit, server_event_json
from aiolwm2m.examples import EXAMPLES
from aiolwm2m.testbed.bootstrap import BootstrapServer, load_bootstrap_config
from aiolwm2m.testbed.core import ServerEvent

__all__ = [
    "DEFAULT_PORT",
    "add_parser",
    "run",
]


#: IANA gives CoAP 5683 and CoAPS 5684 and nothing to LwM2M bootstrap; the
#: usual convention (public LwM2M sandboxes) is +100: 5783 for coap://, 5784
#: for coaps://. The testbed Bootstrap-Server speaks plain CoAP, so 5783 — and
#: it runs beside ``aiolwm2m server`` (5683) without a clash.
DEFAULT_PORT = 5783


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bootstrap-server",
        help="run the testbed LwM2M Bootstrap-Server (accounts from a TOML file)",
        description="Run the testbed Bootstrap-Server: on a Bootstrap-Request it deletes "
        "/0 and /1, writes the accounts configured for the endpoint and sends "
        "Bootstrap-Finish. See docs/bootstrap.md; without --config it uses the shipped "
        "example (aiolwm2m/examples/bootstrap.toml).",
    )
    p.add_argument(
        "--config",
        default=str(EXAMPLES / "bootstrap.toml"),
        help="bootstrap server TOML file (default: the shipped example, which provisions "
        "coap://127.0.0.1:5683, where `aiolwm2m server` listens)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"UDP port (default {DEFAULT_PORT}: see docs/bootstrap.md for why not 5683)",
    )
    p.add_argument(
        "--events",
        choices=("text", "jsonl"),
        default="text",
        help="output on stdout: a readable timeline, or one JSON object per line",
    )
    p.set_defaults(func=run)


def _line(event: ServerEvent, since: float, jsonl: bool) -> str:
    if jsonl:
        return server_event_json(event)
    return (
        f"{event.time - since:8.3f}s  bootstrap  {event.kind:<17} {event.endpoint or '-'} "
        f"{event.detail}"
    ).rstrip()


async def _serve(args: argparse.Namespace) -> int:
    config = load_bootstrap_config(args.config)
    server = BootstrapServer(config, args.host, args.port)
    loop = asyncio.get_running_loop()
    since = clock_origin()
    server.on_event = lambda event: emit(_line(event, since, args.events == "jsonl"))
    try:
        await server.start()
    except OSError as exc:
        raise listen_error(exc, args.host, args.port) from exc
    print(f"testbed Bootstrap-Server listening on {server.uri}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
