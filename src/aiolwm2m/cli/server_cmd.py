"""``aiolwm2m server``: the embedded testbed LwM2M server with a command interface.

It logs registrations as before and, one command per line on stdin (or from
``--script FILE`` first), performs any LwM2M operation on a registered
client. The command language is deliberately a flat ``verb endpoint path
[args]`` so a test script is a plain text file and a human can type it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aiolwm2m.cli.common import clock_origin, listen_error, port_number, verbosity
from aiolwm2m.cli.console import Completer, read_lines
from aiolwm2m.cli.firmware_cmds import FIRMWARE_HELP, FirmwareCommands, ImageServers
from aiolwm2m.cli.metrics import add_metrics_flag, start_server_metrics
from aiolwm2m.cli.output import emit, server_event_json
from aiolwm2m.dtls.credentials import PskCredentials, ServerCertificateCredentials, ServerSecurity
from aiolwm2m.errors import ConfigError, Lwm2mError
from aiolwm2m.lwm2m.formats import text
from aiolwm2m.lwm2m.model import ResourceType, TypeLookup, Value
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record, records_from_mapping
from aiolwm2m.testbed import operations as ops
from aiolwm2m.testbed.core import ServerEvent
from aiolwm2m.testbed.operations import OperationError, OperationResult, TransportError
from aiolwm2m.testbed.server import Observation, TestbedServer

__all__ = [
    "COMMANDS_HELP",
    "CommandError",
    "CommandShell",
    "add_parser",
    "run",
    "security_from_args",
]


COMMANDS_HELP = """\
commands (one per line on stdin or in --script FILE; '#' starts a comment):
  read EP PATH [FMT]                   Read, e.g. read dev /3/0 tlv
  discover EP PATH                     Discover (link-format, with attributes)
  write EP PATH VALUE [FMT]            Write one resource: write dev /1/0/1 300
  write EP PATH ID=VALUE... [FMT] [partial]
                                       Write an instance (replace, or partial update):
                                       write dev /1/0 1=300 7=U partial
  exec EP PATH [ARGS...]               Execute, e.g. exec dev /3/0/4 or exec dev /x/0/1 0='a'
  create EP /OID[/IID] ID=VALUE... [FMT]
                                       Create (without IID the client picks it; TLV only)
  delete EP PATH                       Delete an object instance
  attr EP PATH NAME=VALUE... [NAME]    Write-Attributes; a bare NAME removes it:
                                       attr dev /3303/0/5700 pmin=1 pmax=5 gt
  observe EP PATH [FMT] [NAME=VALUE...]
                                       Observe (attributes written first); notifications
                                       are printed as they arrive
  cancel EP PATH [rst]                 Cancel an observation: GET with Observe=1, or
                                       forget it and RST the next notification
  read-composite EP PATH... [FMT]      Read-Composite (default senml-cbor)
  write-composite EP PATH=VALUE... [FMT]
                                       Write-Composite (default senml-cbor)
  observe-composite EP PATH... [FMT]   Observe-Composite (cancel with the first PATH)
  list                                 registrations and open observations
  wait EP [SECONDS]                    wait until EP is registered (default 30 s)
  sleep SECONDS                        pause a script
  help                                 this text
  quit                                 stop the server
FMT: text, opaque, tlv, senml-json, senml-cbor, lwm2m-cbor, oma-json (or a number,
except after values).
VALUE: typed by the object definition (shipped objects); 0x... is opaque, quotes
keep spaces ("My device").
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "server",
        help="run the embedded testbed LwM2M server (and drive clients from stdin)",
        description="Run the testbed LwM2M server. Registrations are logged; commands "
        "read from stdin (and --script) perform LwM2M operations on registered clients.",
        epilog=COMMANDS_HELP + FIRMWARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=port_number, help="default 5683, or 5684 with DTLS (IANA coap/coaps)"
    )
    dtls = p.add_argument_group("DTLS (any of these makes it a coaps:// server)")
    dtls.add_argument(
        "--psk",
        action="append",
        default=[],
        metavar="IDENTITY:HEXKEY",
        help="accept this PSK identity and key (repeatable)",
    )
    dtls.add_argument("--cert", help="server certificate (PEM/DER) for certificate mode")
    dtls.add_argument("--key", help="private key of --cert")
    dtls.add_argument(
        "--ca", action="append", default=[], help="CA that client certificates chain to"
    )
    p.add_argument("--script", help="run the commands of this file first, then read stdin")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="also serve DIR's files as firmware images (CoAP Block2; HTTP Range with aiohttp)",
    )
    p.add_argument(
        "--events",
        choices=["jsonl", "text"],
        default="text",
        help="output on stdout: one JSON object per line, or readable text",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer")
    add_metrics_flag(p)
    load = p.add_argument_group("load runs")
    load.add_argument(
        "--stats",
        type=float,
        metavar="SECONDS",
        help="every SECONDS, one line of counters: registrations, peers, datagrams in/out "
        "and per second, events by kind, CPU",
    )
    p.set_defaults(func=run)


def security_from_args(args: argparse.Namespace) -> ServerSecurity | None:
    """The DTLS settings the flags ask for; None for a plain CoAP server."""
    psk = []
    for spec in args.psk:
        try:
            psk.append(PskCredentials.from_spec(spec))
        except ConfigError as exc:
            raise ConfigError(f"--psk {spec}: {exc}") from exc
    if (args.cert is None) != (args.key is None):
        raise ConfigError("--cert and --key go together")
    if args.ca and args.cert is None:
        raise ConfigError("--ca needs --cert and --key (certificate mode)")
    certificate = None
    if args.cert is not None:
        if not args.ca:
            raise ConfigError("certificate mode needs --ca to verify client certificates")
        certificate = ServerCertificateCredentials.from_files(args.cert, args.key, args.ca)
    if not psk and certificate is None:
        return None
    store = {p.identity: p.key for p in psk} if psk else None
    return ServerSecurity(psk_store=store, certificate=certificate)


class CommandError(Lwm2mError, ValueError):
    """A command line that cannot be run as written (shown, then the next line is read)."""


def _split_format(args: list[str], *, numbers: bool = True) -> tuple[list[str], int | None]:
    """Take a trailing content format (a name, or a number if ``numbers``) off ``args``.

    Commands that carry values accept only names, so ``write dev /1/0/1 300``
    writes 300 instead of asking for format 300.
    """
    if not args or "=" in args[-1] or args[-1].startswith("/"):
        return args, None
    if not numbers and args[-1].strip().isdigit():
        return args, None
    try:
        return args[:-1], ops.format_number(args[-1])
    except OperationError:
        return args, None


def _parse_value(raw: str, rtype: ResourceType | None) -> Value:
    """A command-line value, typed by the resource definition when there is one."""
    if raw.startswith("0x") and rtype in (None, ResourceType.OPAQUE):
        try:
            return bytes.fromhex(raw[2:])
        except ValueError:
            raise CommandError(f"bad hex value {raw!r}") from None
    if rtype is None:
        for kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                pass
        return raw
    if rtype is ResourceType.OPAQUE:
        return raw.encode()
    return text.decode_value(raw.encode(), rtype)


def _or(fmt: int | None, default: str) -> int:
    return fmt if fmt is not None else int(ops.FORMAT_NAMES[default])


def _path(raw: str) -> Path:
    try:
        return Path.parse(raw)
    except Lwm2mError as exc:
        raise CommandError(str(exc)) from None


class CommandShell(FirmwareCommands):
    """Runs command lines against a :class:`TestbedServer`; output goes to ``out``."""

    def __init__(
        self,
        server: TestbedServer,
        out: Callable[[str], None],
        *,
        jsonl: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.server = server
        self.out = out
        self.jsonl = jsonl
        self.timeout = timeout
        self.types: TypeLookup | None = server.core.types
        self._watchers: set[asyncio.Task[None]] = set()
        self._observing: dict[tuple[str, Path], Observation] = {}
        self._line = ""  # the raw command line (Execute arguments keep their quotes)
        self.failures = 0  # commands that ended in an error: a script's exit status

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    # -- output ---------------------------------------------------------------------
    def show(self, endpoint: str, target: str, result: OperationResult) -> None:
        if self.jsonl:
            self.out(json.dumps({"endpoint": endpoint, "path": target, **result.to_dict()}))
            return
        first, *rest = result.lines()
        self.out(f"{endpoint} {target} {first}")
        for line in rest:
            self.out(line)

    def error(self, message: str) -> None:
        self.failures += 1
        self.out(json.dumps({"error": message}) if self.jsonl else f"error: {message}")

    # -- commands ---------------------------------------------------------------------
    async def run_line(self, line: str) -> bool:
        """Run one command; False once ``quit`` was read."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.error(f"cannot parse {line!r}: {exc}")
            return True
        if not words:
            return True
        self._line = line
        verb, args = words[0].lower(), words[1:]
        if verb in ("quit", "exit"):
            return False
        handler = getattr(self, "cmd_" + verb.replace("-", "_"), None)
        if handler is None:
            self.error(f"unknown command {verb!r} (try: help)")
            return True
        try:
            await handler(args)
        except TransportError as exc:
            self.error(f"no answer: {exc}")
        except TimeoutError:
            self.error(f"{verb}: timed out")
        except Lwm2mError as exc:  # CommandError, OperationError, UnknownEndpointError…
            self.error(f"{verb}: {exc}")
        return True

    def _need(self, args: list[str], count: int, usage: str) -> None:
        if len(args) < count:
            raise CommandError(f"usage: {usage}")

    def command_names(self) -> list[str]:
        """Every command the shell understands (Tab completion)."""
        names = [n[4:].replace("_", "-") for n in dir(self) if n.startswith("cmd_")]
        return [*names, "quit"]

    async def cmd_help(self, args: list[str]) -> None:
        for line in (COMMANDS_HELP + FIRMWARE_HELP).rstrip().splitlines():
            self.out(line)

    async def cmd_read(self, args: list[str]) -> None:
        self._need(args, 2, "read EP PATH [FMT]")
        rest, fmt = _split_format(args[2:])
        if rest:
            raise CommandError(f"unexpected {rest}")
        result = await self.server.read(args[0], args[1], fmt, timeout=self.timeout)
        self.show(args[0], args[1], result)

    async def cmd_discover(self, args: list[str]) -> None:
        self._need(args, 2, "discover EP PATH")
        result = await self.server.discover(args[0], args[1], timeout=self.timeout)
        self.show(args[0], args[1], result)

    def _assignments(self, base: Path | None, items: list[str]) -> list[Record]:
        """``ID=VALUE`` relative to ``base`` (or ``/PATH=VALUE`` when base is None)."""
        values: dict[Path, Value] = {}
        for item in items:
            key, sep, raw = item.partition("=")
            if not sep:
                raise CommandError(f"expected NAME=VALUE, got {item!r}")
            path = _path(key) if base is None else _path(f"{base}/{key}".replace("//", "/"))
            values[path] = _parse_value(raw, self.types(path) if self.types else None)
        try:
            return records_from_mapping(values)
        except Lwm2mError as exc:  # a path above resource level
            raise CommandError(str(exc)) from None

    async def cmd_write(self, args: list[str]) -> None:
        self._need(args, 3, "write EP PATH VALUE [FMT] | write EP PATH ID=VALUE... [partial]")
        endpoint, path = args[0], _path(args[1])
        rest = args[2:]
        partial = "partial" in rest
        rest = [a for a in rest if a != "partial"]
        rest, fmt = _split_format(rest, numbers=False)
        if len(rest) == 1 and "=" not in rest[0] and path.level >= 3:
            value = _parse_value(rest[0], self.types(path) if self.types else None)
            # One value: text/plain unless asked otherwise (every client reads it).
            request = ops.write_request(path, value, _or(fmt, "text"), replace=not partial)
        else:
            records = self._assignments(path, rest)
            request = ops.write_request(path, records, _or(fmt, "tlv"), replace=not partial)
        result = await self.server.operation(endpoint, request, timeout=self.timeout)
        self.show(endpoint, str(path), result)

    async def cmd_exec(self, args: list[str]) -> None:
        self._need(args, 2, "exec EP PATH [ARGS...]")
        # LwM2M arguments quote with single quotes (0='a b'): pass them through raw.
        raw = self._line.split("#", 1)[0].split(None, 3)
        arguments = raw[3].strip() if len(raw) > 3 else None
        result = await self.server.execute(args[0], args[1], arguments, timeout=self.timeout)
        self.show(args[0], args[1], result)

    async def cmd_create(self, args: list[str]) -> None:
        self._need(args, 2, "create EP /OID[/IID] ID=VALUE... [FMT]")
        endpoint, path = args[0], _path(args[1])
        rest, fmt = _split_format(args[2:], numbers=False)
        if path.object_id is None or path.level > 2:
            raise CommandError(f"create takes /OID or /OID/IID, not {path}")
        instance = path if path.instance_id is not None else path.child(0)
        records = self._assignments(instance, rest)
        request = ops.create_request(
            path.object_id, records, _or(fmt, "tlv"), instance_id=path.instance_id
        )
        result = await self.server.operation(endpoint, request, timeout=self.timeout)
        self.show(endpoint, str(path), result)

    async def cmd_delete(self, args: list[str]) -> None:
        self._need(args, 2, "delete EP PATH")
        result = await self.server.delete(args[0], args[1], timeout=self.timeout)
        self.show(args[0], args[1], result)

    @staticmethod
    def _attributes(items: list[str]) -> dict[str, int | float | str | None]:
        attrs: dict[str, int | float | str | None] = {}
        for item in items:
            name, sep, raw = item.partition("=")
            attrs[name] = raw if sep else None
        return attrs

    async def cmd_attr(self, args: list[str]) -> None:
        self._need(args, 3, "attr EP PATH NAME=VALUE... [NAME]")
        request = ops.write_attributes_request(args[1], self._attributes(args[2:]))
        result = await self.server.operation(args[0], request, timeout=self.timeout)
        self.show(args[0], args[1], result)

    async def cmd_observe(self, args: list[str]) -> None:
        self._need(args, 2, "observe EP PATH [FMT] [NAME=VALUE...]")
        endpoint, path = args[0], _path(args[1])
        attr_items = [a for a in args[2:] if "=" in a]
        rest, fmt = _split_format([a for a in args[2:] if "=" not in a])
        if rest:
            raise CommandError(f"unexpected {rest}")
        attrs = self._attributes(attr_items)
        observation = await self.server.observe(endpoint, path, fmt, timeout=self.timeout, **attrs)
        self._started(endpoint, path, observation)

    async def cmd_observe_composite(self, args: list[str]) -> None:
        self._need(args, 2, "observe-composite EP PATH... [FMT]")
        paths, fmt = _split_format(args[1:])
        observation = await self.server.observe_composite(
            args[0],
            [_path(p) for p in paths],
            _or(fmt, "senml-cbor"),
            timeout=self.timeout,
        )
        self._started(args[0], _path(paths[0]), observation)

    def _started(self, endpoint: str, path: Path, observation: Observation) -> None:
        target = observation.request.target
        assert observation.initial is not None
        self.show(endpoint, target, observation.initial)
        if not observation.active:
            return
        old = self._observing.pop((endpoint, path), None)
        if old is not None:
            self._forget(old)
        self._observing[(endpoint, path)] = observation
        task = asyncio.create_task(self._watch(endpoint, target, observation))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _forget(self, observation: Observation) -> None:
        """A new observe of the same path replaces the old one (passive cancel)."""
        task = asyncio.create_task(self._cancel_quietly(observation))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    @staticmethod
    async def _cancel_quietly(observation: Observation) -> None:
        await observation.cancel(active=False)

    async def _watch(self, endpoint: str, target: str, observation: Observation) -> None:
        async for note in observation:
            self.show(endpoint, target, note)
        self._observing = {k: v for k, v in self._observing.items() if v is not observation}
        if self.jsonl:
            self.out(json.dumps({"endpoint": endpoint, "path": target, "observe": "ended"}))
        else:
            self.out(f"{endpoint} {target} observation ended")

    async def cmd_cancel(self, args: list[str]) -> None:
        self._need(args, 2, "cancel EP PATH [rst]")
        endpoint, path = args[0], _path(args[1])
        observation = self._observing.pop((endpoint, path), None)
        if observation is None:
            raise CommandError(f"no observation of {path} on {endpoint} (see: list)")
        passive = args[2:] == ["rst"]
        result = await observation.cancel(active=not passive, timeout=self.timeout)
        if result is not None:
            self.show(endpoint, observation.request.target, result)

    async def cmd_read_composite(self, args: list[str]) -> None:
        self._need(args, 2, "read-composite EP PATH... [FMT]")
        paths, fmt = _split_format(args[1:])
        result = await self.server.read_composite(
            args[0],
            [_path(p) for p in paths],
            _or(fmt, "senml-cbor"),
            timeout=self.timeout,
        )
        self.show(args[0], " ".join(paths), result)

    async def cmd_write_composite(self, args: list[str]) -> None:
        self._need(args, 2, "write-composite EP PATH=VALUE... [FMT]")
        rest, fmt = _split_format(args[1:], numbers=False)
        records = self._assignments(None, rest)
        result = await self.server.write_composite(
            args[0],
            records,
            _or(fmt, "senml-cbor"),
            timeout=self.timeout,
        )
        self.show(args[0], " ".join(str(r.path) for r in records), result)

    async def cmd_list(self, args: list[str]) -> None:
        registrations = self.server.core.registrations
        if self.jsonl:
            self.out(
                json.dumps(
                    {
                        "registrations": {
                            ep: {
                                "address": f"{r.address[0]}:{r.address[1]}",
                                "lifetime": r.lifetime,
                                "lwm2m": r.lwm2m_version,
                                "objects": r.links,
                            }
                            for ep, r in registrations.items()
                        },
                        "observations": [
                            {"endpoint": ep, "path": o.request.target}
                            for (ep, _), o in self._observing.items()
                        ],
                    }
                )
            )
            return
        if not registrations:
            self.out("no client registered")
        for ep, reg in registrations.items():
            self.out(
                f"{ep} at {reg.address[0]}:{reg.address[1]} lt={reg.lifetime} "
                f"lwm2m={reg.lwm2m_version} {reg.links}"
            )
        for (ep, _), observation in self._observing.items():
            self.out(f"{ep} observing {observation.request.target}")

    async def cmd_wait(self, args: list[str]) -> None:
        self._need(args, 1, "wait EP [SECONDS]")
        seconds = float(args[1]) if len(args) > 1 else 30.0
        await self.server.wait_registered(args[0], seconds)

    async def cmd_sleep(self, args: list[str]) -> None:
        self._need(args, 1, "sleep SECONDS")
        try:
            seconds = float(args[0])
        except ValueError:
            raise CommandError(f"not a number of seconds: {args[0]!r}") from None
        await asyncio.sleep(seconds)


async def _serve(args: argparse.Namespace) -> int:
    security = security_from_args(args)
    port = args.port if args.port is not None else (5683 if security is None else 5684)
    # -q (the common flag): no line per registration/update/... event; command
    # output and --stats lines are still shown (load runs).
    quiet = verbosity(args) < 0
    server = TestbedServer(args.host, port, security=security, quiet=quiet)
    loop = asyncio.get_running_loop()
    since = clock_origin()
    jsonl = args.events == "jsonl"

    def show(event: ServerEvent) -> None:
        if jsonl:
            emit(server_event_json(event))
            return
        emit(
            f"{event.time - since:8.3f}s  server  {event.kind:<12} {event.endpoint or '-'} "
            f"{event.detail}".rstrip()
        )

    script: list[str] = []
    if args.script:
        try:
            with open(args.script, encoding="utf-8") as handle:
                script = handle.readlines()
        except OSError as exc:
            raise ConfigError(f"--script {args.script}: cannot read it: {exc.strerror}") from exc
    images = ImageServers(args.images, args.host) if args.images else None
    if not quiet:
        server.on_event = show
    try:
        await server.start()
    except OSError as exc:
        raise listen_error(exc, args.host, port) from exc
    try:
        metrics = (
            None if args.metrics is None else await start_server_metrics(server.core, args.metrics)
        )
    except ConfigError:
        await server.stop()
        raise
    print(f"testbed LwM2M server listening on {server.uri}", file=sys.stderr, flush=True)
    if images is not None:
        await images.start()
        print("firmware images: " + " ".join(images.lines()), file=sys.stderr, flush=True)
    shell = CommandShell(server, emit, jsonl=jsonl, timeout=args.timeout)
    shell.images = images
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def commands() -> None:
        for command in script:
            if not await shell.run_line(command):
                stop.set()
                return
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        ready = threading.Event()
        ready.set()
        completer = Completer(
            shell.command_names(),
            lambda: {ep: r.links for ep, r in list(server.core.registrations.items())},
        )
        read_lines(loop, lines, completer, ready)
        while (line := await lines.get()) is not None:
            if not await shell.run_line(line):
                stop.set()
                return
            ready.set()
        # stdin closed: keep serving until a signal, as without commands.

    tasks = [asyncio.create_task(commands())]
    if args.stats:
        tasks.append(asyncio.create_task(_report_stats(server, args.stats, jsonl, since)))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await shell.close()
    await server.stop()
    if images is not None:
        await images.stop()
    if metrics is not None:
        await metrics.close()
    if shell.failures:
        # A script is a test: a command that failed must fail the run.
        print(f"aiolwm2m server: {shell.failures} command(s) failed", file=sys.stderr)
        return 1
    return 0


async def _report_stats(server: TestbedServer, every: float, jsonl: bool, since: float) -> None:
    """A counter line every ``every`` seconds (rates over the last interval)."""
    loop = asyncio.get_running_loop()
    last = server.core.stats()
    last_cpu, last_time = time.process_time(), loop.time()
    while True:
        await asyncio.sleep(every)
        stats = server.core.stats()
        cpu, now = time.process_time(), loop.time()
        elapsed = max(now - last_time, 1e-9)
        record: dict[str, Any] = {"time": round(now - since, 3), "event": "stats", **stats}
        record["in_per_s"] = round((stats["datagrams_in"] - last["datagrams_in"]) / elapsed, 1)
        record["out_per_s"] = round((stats["datagrams_out"] - last["datagrams_out"]) / elapsed, 1)
        record["cpu_percent"] = round(100 * (cpu - last_cpu) / elapsed, 1)
        last, last_cpu, last_time = stats, cpu, now
        if jsonl:
            emit(json.dumps(record))
        else:
            fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("time", "event"))
            emit(f"{record['time']:8.3f}s  server  stats        {fields}")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
