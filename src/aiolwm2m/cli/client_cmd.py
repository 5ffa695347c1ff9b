"""``aiolwm2m client``: run one device until SIGINT/SIGTERM, then De-register and exit 0.

With ``[firmware] directory`` in the configuration it also offers firmware update
(Objects 5 and 10252) with the default directory package handler.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from aiolwm2m import dtls
from aiolwm2m.accounts import ServerAccount
from aiolwm2m.cli.output import emit, event_json, event_line
from aiolwm2m.client.config import ClientConfig, load_config
from aiolwm2m.client.events import Event
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner


def add_parser(sub: Any) -> None:
    p = sub.add_parser("client", help="run an LwM2M client until interrupted")
    p.add_argument("--server", help="server URI, coap://HOST:PORT or coaps://HOST:PORT")
    p.add_argument("--endpoint", help="endpoint client name (overrides the config file)")
    p.add_argument("--lifetime", type=int, help="registration lifetime in seconds")
    p.add_argument("--config", help="TOML configuration file (see README)")
    p.add_argument(
        "--events",
        choices=["jsonl", "text"],
        default="text",
        help="event output on stdout: one JSON object per line, or a readable timeline",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    """Merge the TOML file with command-line flags (flags win)."""
    if args.config:
        config = load_config(args.config, endpoint=args.endpoint)
    elif args.endpoint:
        config = ClientConfig(endpoint=args.endpoint)
    else:
        raise ConfigError("--endpoint (or a --config file with endpoint = ...) is required")
    servers = list(config.servers)
    if args.server:
        base = servers[0] if servers else ServerAccount(uri=args.server)
        servers = [dataclasses.replace(base, uri=args.server), *servers[1:]]
    if args.lifetime is not None:
        if not servers:
            raise ConfigError("--lifetime needs a server (--server or [[server]])")
        servers[0] = dataclasses.replace(servers[0], lifetime=args.lifetime)
    if not servers and config.bootstrap is None:
        raise ConfigError("no server: pass --server or add a [[server]] table")
    accounts = [*servers, *([config.bootstrap] if config.bootstrap else [])]
    if any(urlsplit(a.uri).scheme == "coaps" for a in accounts):
        dtls.require()  # coaps:// without a TLS stack: one line, exit 2, before start
    return dataclasses.replace(config, servers=tuple(servers))


async def _run(config: ClientConfig, fmt: str) -> int:
    client = Client(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    since = loop.time()

    def show(event: Event) -> None:
        if fmt == "jsonl":
            emit(event_json(event, since))
        elif (line := event_line(event, since)) is not None:
            emit(line)

    client.subscribe(show)
    # [firmware] directory turns on Objects 5 and 10252 (docs/firmware.md); built before
    # start() so a restored update result is in place for the first Register.
    firmware = FirmwareRunner(client) if config.firmware.directory is not None else None
    await client.start()
    await stop.wait()
    if firmware is not None:
        await firmware.close()
    await client.close()
    return 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        return asyncio.run(_run(config, args.events))
    except KeyboardInterrupt:  # pragma: no cover - signal handler normally catches it
        print("interrupted", file=sys.stderr)
        return 0
