"""``aiolwm2m server``: run the embedded testbed LwM2M server and log registrations."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from aiolwm2m.testbed.core import ServerEvent
from aiolwm2m.testbed.server import TestbedServer


def add_parser(sub: Any) -> None:
    p = sub.add_parser("server", help="run the embedded testbed LwM2M server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5683)
    p.set_defaults(func=run)


async def _serve(host: str, port: int) -> int:
    server = TestbedServer(host, port)
    loop = asyncio.get_running_loop()
    since = loop.time()

    def show(event: ServerEvent) -> None:
        print(
            f"{event.time - since:8.3f}s  server  {event.kind:<12} {event.endpoint or '-'} "
            f"{event.detail}".rstrip(),
            flush=True,
        )

    server.on_event = show
    await server.start()
    print(f"testbed LwM2M server listening on {server.uri}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args.host, args.port))
