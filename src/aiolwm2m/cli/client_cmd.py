"""``aiolwm2m client``: run one device until SIGINT/SIGTERM, then De-register and exit 0.

Everything the engine would refuse is refused here first, naming the flag or
key (exit 2): a client that can never register must not sit idle looking
healthy. Shutdown is bounded: the De-register gets ``--deregister-timeout``
seconds (a dead server would otherwise hold it for MAX_TRANSMIT_WAIT, 93 s
with the default transmission parameters), and a second signal quits at once.

With ``[firmware] directory`` in the configuration it also offers firmware update
(Objects 5 and 10252) with the default directory package handler.

SIGUSR1, or the line ``network`` on stdin, tells the client the network is back
(``Client.network_changed()``: pending reconnect and retry waits end within a
second); a platform hook such as a NetworkManager dispatcher script can send
it; ``--watch-network`` does it on Linux link/address events (netlink). Other
stdin commands: ``update``, ``reconnect``, ``help``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiolwm2m import dtls
from aiolwm2m.accounts import (
    InvalidParameters,
    ServerAccount,
    check_endpoint_name,
    check_security,
    parse_server_uri,
)
from aiolwm2m.cli.common import positive_number, verbosity
from aiolwm2m.cli.console import Completer, read_lines
from aiolwm2m.cli.metrics import add_metrics_flag, start_client_metrics
from aiolwm2m.cli.output import EventPrinter, log_event
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, load_config
from aiolwm2m.errors import ConfigError, StorageError
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.runtime.netwatch import NetworkWatcher
from aiolwm2m.runtime.storage import ensure_directory

__all__ = ["COMMANDS", "DEFAULT_DEREGISTER_TIMEOUT", "add_parser", "config_from_args", "run"]

#: Seconds the De-register may take after the first SIGINT/SIGTERM.
DEFAULT_DEREGISTER_TIMEOUT = 5.0


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
    p.add_argument(
        "--deregister-timeout",
        type=positive_number,
        default=DEFAULT_DEREGISTER_TIMEOUT,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, wait at most this long for the De-register "
        f"(default {DEFAULT_DEREGISTER_TIMEOUT:g}); a second signal quits at once",
    )
    p.add_argument(
        "--watch-network",
        action="store_true",
        help="Linux: a link coming up or a new address ends pending reconnect waits "
        "(netlink, needs the netwatch extra: pip install 'aiolwm2m[netwatch]')",
    )
    add_metrics_flag(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    """Merge the TOML file with command-line flags (flags win); refuse what cannot run."""
    if args.endpoint is not None:
        try:
            check_endpoint_name(args.endpoint)
        except InvalidParameters as exc:
            raise ConfigError(f"--endpoint: {exc}") from exc
    if args.config:
        config = load_config(args.config, endpoint=args.endpoint)
    elif args.endpoint:
        config = ClientConfig(endpoint=args.endpoint)
    else:
        raise ConfigError("--endpoint (or a --config file with endpoint = ...) is required")
    servers = list(config.servers)
    if args.server is not None:
        base = servers[0] if servers else ServerAccount(uri=args.server)
        servers = [dataclasses.replace(base, uri=args.server), *servers[1:]]
        try:
            uri = parse_server_uri(args.server)
            if uri.secure:
                dtls.require()  # no TLS stack: say how to get one before anything else
            check_security(servers[0], uri)
        except InvalidParameters as exc:
            raise ConfigError(f"--server: {exc}") from exc
    if args.lifetime is not None:
        if not servers:
            raise ConfigError("--lifetime needs a server (--server or [[server]])")
        try:
            servers[0] = dataclasses.replace(servers[0], lifetime=args.lifetime)
        except ConfigError as exc:
            raise ConfigError(f"--lifetime {args.lifetime}: {exc}") from exc
    if not servers and config.bootstrap is None:
        raise ConfigError("no server: pass --server or add a [[server]] table")
    accounts = [*servers, *([config.bootstrap] if config.bootstrap else [])]
    if any(urlsplit(a.uri).scheme == "coaps" for a in accounts):
        dtls.require()  # coaps:// without a TLS stack: one line, exit 2, before start
    if config.storage_path is not None:
        try:
            ensure_directory(config.storage_path)
        except StorageError as exc:
            raise ConfigError(f"[storage] path: {exc}") from exc
    return dataclasses.replace(config, servers=tuple(servers))


async def _run(config: ClientConfig, args: argparse.Namespace) -> int:
    client = Client(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, client.network_changed)
    client.subscribe(EventPrinter(args.events).show)
    client.subscribe(log_event)
    # [firmware] directory turns on Objects 5 and 10252 (docs/firmware.md); built before
    # start() so a restored update result is in place for the first Register.
    firmware = FirmwareRunner(client) if config.firmware.directory is not None else None
    metrics = None if args.metrics is None else await start_client_metrics(client, args.metrics)
    watcher = NetworkWatcher(client.network_changed) if args.watch_network else None
    try:
        if watcher is not None:
            await watcher.start()  # ConfigError (exit 2) without pyroute2, before start
        await client.start()
        console = asyncio.create_task(_console(client))
        await stop.wait()
        console.cancel()
        if firmware is not None:
            await firmware.close()
        return await _shutdown(client, force, args)
    finally:
        if watcher is not None:
            await watcher.stop()
        if metrics is not None:
            await metrics.close()


#: Console commands on stdin: what each does to the running client.
COMMANDS: dict[str, tuple[Callable[[Client], None], str]] = {
    "network": (Client.network_changed, "the network is back: reconnect within a second"),
    "update": (lambda client: client.trigger_update(), "send an Update to every server"),
    "reconnect": (Client.schedule_reconnect, "reconnect every failed server now"),
}


async def _console(client: Client) -> None:
    """Run stdin commands until EOF (a client without a terminal reads nothing)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    ready = threading.Event()
    ready.set()
    read_lines(loop, lines, Completer([*COMMANDS, "help"], dict), ready)
    while (line := await lines.get()) is not None:
        word = line.strip()
        command = COMMANDS.get(word)
        if command is not None:
            command[0](client)
        elif word:
            print("commands:", file=sys.stderr)
            for name, (_do, what) in COMMANDS.items():
                print(f"  {name:10} {what}", file=sys.stderr)
        ready.set()


async def _shutdown(client: Client, force: asyncio.Event, args: argparse.Namespace) -> int:
    """De-register within the bound; a second signal (``force``) stops at once."""
    if not client.engine.registered():
        await client.stop()  # nothing to De-register: no spurious not_registered error
        return 0
    if verbosity(args) >= 0:
        print(
            f"aiolwm2m: de-registering (at most {args.deregister_timeout:g} s); "
            "press Ctrl-C again to quit now",
            file=sys.stderr,
            flush=True,
        )
    done: list[ev.Deregistered] = []
    client.subscribe(lambda e: done.append(e) if isinstance(e, ev.Deregistered) else None)
    closing = asyncio.ensure_future(client.close(timeout=args.deregister_timeout))
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait({closing, forced}, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if closing.done():
        closing.result()
        if not done and verbosity(args) >= 0:
            print(
                f"aiolwm2m: the De-register got no answer within {args.deregister_timeout:g} s; "
                "stopped anyway (--deregister-timeout to wait longer)",
                file=sys.stderr,
            )
        return 0
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    await client.stop()
    print("aiolwm2m: quit without waiting for the De-register", file=sys.stderr, flush=True)
    return 130


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(config_from_args(args), args))
