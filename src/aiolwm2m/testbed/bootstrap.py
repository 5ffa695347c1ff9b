"""Testbed LwM2M Bootstrap-Server: sans-IO core and asyncio UDP wrapper.

Configured from a TOML file (see ``examples/bootstrap.toml`` and
``docs/bootstrap.md``): per endpoint name (and a default) the LwM2M Server
accounts to provision. On a Bootstrap-Request (``POST /bs?ep=…``) it answers
2.04 and then, one request at a time, like common Bootstrap-Servers do:

1. Bootstrap-Discover ``/0`` (Accept 40) to learn which Security instance is
   the client's own Bootstrap-Server account, so new instances never overwrite
   it (``discover = false`` skips it and numbers instances from
   ``first_instance_id``);
2. Bootstrap-Delete ``/0`` and ``/1`` (the client keeps its bootstrap account);
3. Bootstrap-Write of each Security (``/0/x``) and Server (``/1/x``) instance,
   in TLV, or in the format the client's ``pct`` asks for (SenML CBOR/JSON,
   LwM2M CBOR), or the configured ``content_format``;
4. Bootstrap-Finish (``POST /bs``).

Every step is logged as a :class:`~aiolwm2m.testbed.core.ServerEvent`. A
failed step (error code, timeout) ends the session ("bootstrap_failed"); the
client's Finish answer ends it as "bootstrapped" or "finish_rejected".

Fault rules answer the Bootstrap-Request with a chosen code and diagnostic
payload (e.g. 4.00 "device quota reached"), drop it, or reset it — what the
client's recovery tests need. :meth:`BootstrapCore.push` starts the same
sequence at a client address without a Bootstrap-Request (server-initiated
bootstrap).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path as FsPath
from typing import Any

from aiolwm2m.accounts import SecurityMode
from aiolwm2m.client.config import hex_or_text, read_toml
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer, Outcome
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    code_str,
    is_success,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m import ContentFormat, Path, Record, Value, encode, linkformat
from aiolwm2m.lwm2m.formats import LinkFormatError
from aiolwm2m.testbed.core import Address, FaultKind, ServerEvent
from aiolwm2m.testbed.server import UdpServerProtocol

log = logging.getLogger("aiolwm2m.testbed.bootstrap")

#: Content formats a client may ask for with ``pct``; anything else gets TLV.
WRITE_FORMATS = frozenset(
    {
        ContentFormat.TLV,
        ContentFormat.SENML_CBOR,
        ContentFormat.SENML_JSON,
        ContentFormat.LWM2M_CBOR,
    }
)

#: Server object (/1) resources a provisioned account may set by name.
SERVER_RESOURCES: Mapping[str, int] = {
    "lifetime": 1,
    "default_pmin": 2,
    "default_pmax": 3,
    "notification_storing": 6,
    "binding": 7,
    "registration_priority": 13,
    "initial_registration_delay": 14,
    "registration_failure_block": 15,
    "bootstrap_on_registration_failure": 16,
    "communication_retry_count": 17,
    "communication_retry_timer": 18,
    "communication_sequence_delay_timer": 19,
    "communication_sequence_retry_count": 20,
}


@dataclass(frozen=True)
class ProvisionedServer:
    """One LwM2M Server account to write: a Security and a Server instance."""

    uri: str
    ssid: int = 1
    security_mode: SecurityMode | None = None  # None: from the URI scheme / credentials
    psk_identity: bytes = b""
    psk_key: bytes = b""
    certificate: bytes = b""  # /0/x/3 in certificate mode (file contents)
    private_key: bytes = b""  # /0/x/5 in certificate mode
    server_certificate: bytes = b""  # /0/x/4
    server: Mapping[int, Value] = field(default_factory=dict)  # /1/x resources by id

    @property
    def mode(self) -> SecurityMode:
        if self.security_mode is not None:
            return self.security_mode
        if not self.uri.startswith("coaps:"):
            return SecurityMode.NOSEC
        return SecurityMode.CERTIFICATE if self.certificate else SecurityMode.PSK

    def security_records(self, iid: int) -> list[Record]:
        cert = self.mode is SecurityMode.CERTIFICATE
        values: list[tuple[int, Value]] = [
            (0, self.uri),
            (1, False),
            (2, self.mode.value),
            (3, self.certificate if cert else self.psk_identity),
            (4, self.server_certificate),
            (5, self.private_key if cert else self.psk_key),
            (10, self.ssid),
        ]
        return [Record(Path.of(0, iid, rid), value) for rid, value in values]

    def server_records(self, iid: int) -> list[Record]:
        values: dict[int, Value] = {0: self.ssid, 1: 86_400, 6: True, 7: "U"}
        values.update(self.server)
        return [Record(Path.of(1, iid, rid), values[rid]) for rid in sorted(values)]


@dataclass
class BootstrapFault:
    """Answer Bootstrap-Requests (of one endpoint, or all) with a chosen misbehaviour."""

    kind: FaultKind
    code: int = Code.BAD_REQUEST
    payload: bytes = b""
    count: int | None = None  # None: until removed
    endpoint: str | None = None

    def matches(self, endpoint: str | None) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return self.endpoint is None or self.endpoint == endpoint


@dataclass
class BootstrapConfig:
    default: tuple[ProvisionedServer, ...] = ()
    endpoints: dict[str, tuple[ProvisionedServer, ...]] = field(default_factory=dict)
    discover: bool = True
    first_instance_id: int = 0
    content_format: int | None = None  # None: the client's pct, else TLV
    faults: list[BootstrapFault] = field(default_factory=list)

    def servers_for(self, endpoint: str) -> tuple[ProvisionedServer, ...] | None:
        """Accounts for ``endpoint``; None if it is unknown and there is no default."""
        if endpoint in self.endpoints:
            return self.endpoints[endpoint]
        return self.default or None


# -- TOML -----------------------------------------------------------------------------------

_SERVER_KEYS = (
    {"uri", "ssid", "security_mode", "psk_identity", "psk_key"}
    | {
        "certificate",
        "private_key",
        "server_certificate",
        "server_resources",
    }
    | set(SERVER_RESOURCES)
)


def _file(value: Any, key: str, where: str, base: FsPath) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"[{where}] {key} must be a file path")
    try:
        return (base / value).read_bytes()
    except OSError as exc:
        raise ConfigError(f"[{where}] {key}: cannot read {value}: {exc}") from exc


def _server(data: Any, where: str, base: FsPath) -> ProvisionedServer:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    unknown = set(data) - _SERVER_KEYS
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in [{where}]")
    uri = data.get("uri")
    if not isinstance(uri, str):
        raise ConfigError(f"[{where}] needs a uri")
    ssid = data.get("ssid", 1)
    if isinstance(ssid, bool) or not isinstance(ssid, int) or not 1 <= ssid <= 65534:
        raise ConfigError(f"[{where}] ssid must be an integer in 1..65534")
    kwargs: dict[str, Any] = {"uri": uri, "ssid": ssid}
    if "security_mode" in data:
        try:
            kwargs["security_mode"] = SecurityMode[str(data["security_mode"]).upper()]
        except KeyError as exc:
            raise ConfigError(f"[{where}] security_mode must be psk, certificate or nosec") from exc
    for key in ("psk_identity", "psk_key"):
        if key in data:
            kwargs[key] = hex_or_text(data[key], key, where)
    for key in ("certificate", "private_key", "server_certificate"):
        if key in data:
            kwargs[key] = _file(data[key], key, where, base)
    resources: dict[int, Value] = {}
    for name, rid in SERVER_RESOURCES.items():
        if name in data:
            value = data[name]
            if not isinstance(value, bool | int | str):
                raise ConfigError(f"[{where}] {name} must be a number, boolean or string")
            resources[rid] = value
    extra = data.get("server_resources", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"[{where}] server_resources must be a table of id = value")
    for rid_text, value in extra.items():
        if not rid_text.isdigit() or not isinstance(value, bool | int | float | str):
            raise ConfigError(f"[{where}] server_resources: bad entry {rid_text!r}")
        resources[int(rid_text)] = value
    kwargs["server"] = resources
    return ProvisionedServer(**kwargs)


def _servers(table: Any, where: str, base: FsPath) -> tuple[ProvisionedServer, ...]:
    if not isinstance(table, dict) or set(table) - {"server"}:
        raise ConfigError(f"[{where}] must be a table with [[{where}.server]] entries")
    entries = table.get("server", [])
    if not isinstance(entries, list):
        raise ConfigError(f"[[{where}.server]] must be an array of tables")
    servers = tuple(_server(s, f"{where}.server {i}", base) for i, s in enumerate(entries))
    if len({s.ssid for s in servers}) != len(servers):
        raise ConfigError(f"[{where}] two servers share an ssid")
    return servers


def _parse_code(text: Any, where: str) -> int:
    """``"4.00"`` → the CoAP code byte."""
    cls, _, detail = str(text).partition(".")
    if not (cls.isdigit() and detail.isdigit() and 2 <= int(cls) <= 5 and int(detail) < 32):
        raise ConfigError(f"[{where}] code must look like 4.00")
    return int(cls) << 5 | int(detail)


def _fault(data: Any, where: str) -> BootstrapFault:
    if not isinstance(data, dict) or set(data) - {"kind", "code", "payload", "count", "endpoint"}:
        raise ConfigError(f"[{where}] keys: kind, code, payload, count, endpoint")
    try:
        kind = FaultKind(data.get("kind", "respond"))
    except ValueError as exc:
        raise ConfigError(f"[{where}] kind must be respond, silent or reset") from exc
    code = _parse_code(data.get("code", "4.00"), where)
    count = data.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise ConfigError(f"[{where}] count must be an integer")
    payload = data.get("payload", "")
    endpoint = data.get("endpoint")
    if not isinstance(payload, str) or not isinstance(endpoint, str | None):
        raise ConfigError(f"[{where}] payload and endpoint must be strings")
    return BootstrapFault(kind, code, payload.encode(), count, endpoint)


def load_bootstrap_config(
    source: str | FsPath | Mapping[str, Any], base: FsPath | None = None
) -> BootstrapConfig:
    """Read the bootstrap server's TOML file (or a parsed dict); :class:`ConfigError` if bad.

    Certificate paths are relative to the file's folder (or ``base``).
    """
    if isinstance(source, Mapping):
        data = dict(source)
        folder = base or FsPath.cwd()
    else:
        data = read_toml(source, "bootstrap config")
        folder = base or FsPath(source).parent
    known = {f.name for f in fields(BootstrapConfig)} - {"faults", "endpoints"}
    unknown = set(data) - known - {"endpoint", "fault"}
    if unknown:
        raise ConfigError(f"unknown top-level key {sorted(unknown)[0]!r} in bootstrap config")
    config = BootstrapConfig()
    if "default" in data:
        config.default = _servers(data["default"], "default", folder)
    endpoints = data.get("endpoint", {})
    if not isinstance(endpoints, dict):
        raise ConfigError("[endpoint.NAME] tables expected")
    for name, table in endpoints.items():
        config.endpoints[name] = _servers(table, f"endpoint.{name}", folder)
    for key in ("discover",):
        if key in data:
            if not isinstance(data[key], bool):
                raise ConfigError(f"{key} must be true or false")
            config.discover = data[key]
    first = data.get("first_instance_id", 0)
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first < 65535:
        raise ConfigError("first_instance_id must be an integer in 0..65534")
    config.first_instance_id = first
    if "content_format" in data:
        cf = data["content_format"]
        if cf not in WRITE_FORMATS:
            raise ConfigError(
                f"content_format must be one of {sorted(int(f) for f in WRITE_FORMATS)}"
            )
        config.content_format = cf
    faults = data.get("fault", [])
    if not isinstance(faults, list):
        raise ConfigError("[[fault]] must be an array of tables")
    config.faults = [_fault(f, f"fault {i}") for i, f in enumerate(faults)]
    if not config.default and not config.endpoints:
        raise ConfigError("the bootstrap config provisions nothing: add [[default.server]]")
    return config


# -- sans-IO core ------------------------------------------------------------------------------


class Step(enum.Enum):
    DISCOVER = "discover"
    DELETE = "delete"
    WRITE = "write"
    FINISH = "finish"


@dataclass
class _Session:
    endpoint: str
    servers: tuple[ProvisionedServer, ...]
    content_format: int
    steps: list[tuple[Step, Message]] = field(default_factory=list)
    current: tuple[int, Step, str] | None = None  # (layer key, step, path)
    done: bool = False


def _path_of(msg: Message) -> str:
    return "/" + "/".join(msg.uri_path)


def _request(code: Code, path: str, **opts: Any) -> Message:
    segments = [s for s in path.split("/") if s]
    return Message(type=MessageType.CON, code=code, options=make_options(path=segments, **opts))


@dataclass
class BootstrapCore:
    """The whole bootstrap server state machine; feed it datagrams and time."""

    config: BootstrapConfig
    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def __post_init__(self) -> None:
        self.history: list[ServerEvent] = []
        self.bootstrapped: dict[str, int] = {}  # endpoint → successful Finishes
        self.requests: dict[str, int] = {}  # endpoint → Bootstrap-Requests seen
        self._layers: dict[Address, MessageLayer] = {}
        self._sessions: dict[Address, _Session] = {}
        self._tx: list[tuple[Address, bytes]] = []

    # -- IO boundary ------------------------------------------------------------------------
    def datagram_received(self, addr: Address, data: bytes, now: float) -> None:
        layer = self._layer(addr)
        layer.receive(data, now)
        self._drain(addr, layer, now)

    def handle_timer(self, now: float) -> None:
        for addr, layer in list(self._layers.items()):
            layer.handle_timer(now)
            self._drain(addr, layer, now)

    def next_timer(self) -> float | None:
        times = [t for layer in self._layers.values() if (t := layer.next_timer()) is not None]
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._tx = self._tx, []
        return out

    def forget_peers(self) -> None:
        """A restart: message-layer state and sessions are lost."""
        self._layers.clear()
        self._sessions.clear()
        self._tx.clear()

    def push(
        self, addr: Address, endpoint: str, now: float, content_format: int | None = None
    ) -> bool:
        """Server-initiated bootstrap: provision the client at ``addr`` without a Request."""
        servers = self.config.servers_for(endpoint)
        if servers is None:
            self._log(now, "unknown_endpoint", endpoint)
            return False
        layer = self._layer(addr)
        self._start(addr, endpoint, servers, content_format, now)
        self._drain(addr, layer, now)
        return True

    # -- internals ----------------------------------------------------------------------
    def _layer(self, addr: Address) -> MessageLayer:
        layer = self._layers.get(addr)
        if layer is None:
            layer = self._layers[addr] = MessageLayer(self.params, self.rng)
        return layer

    def _log(self, now: float, kind: str, endpoint: str | None, detail: str = "") -> None:
        self.history.append(ServerEvent(now, kind, endpoint, detail))

    def _drain(self, addr: Address, layer: MessageLayer, now: float) -> None:
        while (event := layer.next_event()) is not None:
            if isinstance(event, IncomingRequest):
                self._on_request(addr, layer, event, now)
            else:
                self._on_result(addr, event, now)
        for data in layer.datagrams_to_send():
            self._tx.append((addr, data))

    def _on_request(
        self, addr: Address, layer: MessageLayer, req: IncomingRequest, now: float
    ) -> None:
        msg = req.message
        try:
            is_bs = msg.code == Code.POST and msg.uri_path == ["bs"]
            args = {k: v for k, _, v in (q.partition("=") for q in msg.uri_query)}
        except CoapDecodeError:
            layer.respond(req.key, Message(code=Code.BAD_REQUEST), now)
            return
        if not is_bs:
            layer.respond(req.key, Message(code=Code.NOT_FOUND), now)
            return
        endpoint = args.get("ep")
        if not endpoint:
            layer.respond(req.key, Message(code=Code.BAD_REQUEST, payload=b"missing ep"), now)
            return
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
        self._log(now, "bootstrap_request", endpoint, f"pct={args.get('pct', '-')}")
        for fault in self.config.faults:
            if fault.matches(endpoint):
                if fault.count is not None:
                    fault.count -= 1
                self._log(now, "fault", endpoint, f"bootstrap_request: {fault.kind.value}")
                if fault.kind is FaultKind.SILENT:
                    layer.cancel_incoming(req.key)
                elif fault.kind is FaultKind.RESET:
                    layer.reject(req.key, now)
                else:
                    layer.respond(req.key, Message(code=fault.code, payload=fault.payload), now)
                return
        servers = self.config.servers_for(endpoint)
        if servers is None:
            self._log(now, "unknown_endpoint", endpoint)
            layer.respond(req.key, Message(code=Code.BAD_REQUEST, payload=b"unknown endpoint"), now)
            return
        layer.respond(req.key, Message(code=Code.CHANGED), now)
        pct: int | None
        try:
            pct = int(args["pct"]) if "pct" in args else None
        except ValueError:
            pct = None
        self._start(addr, endpoint, servers, pct, now)

    def _start(
        self,
        addr: Address,
        endpoint: str,
        servers: tuple[ProvisionedServer, ...],
        pct: int | None,
        now: float,
    ) -> None:
        cf = self.config.content_format
        if cf is None:
            cf = pct if pct in WRITE_FORMATS else ContentFormat.TLV
        session = _Session(endpoint, servers, cf)
        if self.config.discover:
            session.steps.append(
                (Step.DISCOVER, _request(Code.GET, "/0", accept=ContentFormat.LINK_FORMAT))
            )
        session.steps += [
            (Step.DELETE, _request(Code.DELETE, "/0")),
            (Step.DELETE, _request(Code.DELETE, "/1")),
        ]
        if not self.config.discover:
            self._add_writes(session, set())
        self._sessions[addr] = session
        self._next(addr, now)

    def _add_writes(self, session: _Session, taken: set[int]) -> None:
        iid = self.config.first_instance_id
        for index, server in enumerate(session.servers):
            while iid in taken:
                iid += 1
            session.steps.append(self._write(f"/0/{iid}", server.security_records(iid), session))
            session.steps.append(self._write(f"/1/{index}", server.server_records(index), session))
            iid += 1
        session.steps.append((Step.FINISH, _request(Code.POST, "/bs")))

    def _write(self, path: str, records: list[Record], session: _Session) -> tuple[Step, Message]:
        payload = encode(session.content_format, records, Path.parse(path))
        msg = _request(Code.PUT, path, content_format=session.content_format)
        msg.payload = payload
        return Step.WRITE, msg

    def _next(self, addr: Address, now: float) -> None:
        session = self._sessions.get(addr)
        if session is None or session.done:
            return
        if not session.steps:
            session.done = True
            return
        step, msg = session.steps.pop(0)
        key = self._layer(addr).send_request(msg, now)
        session.current = (key, step, _path_of(msg))

    def _on_result(self, addr: Address, result: ExchangeResult, now: float) -> None:
        session = self._sessions.get(addr)
        if session is None or session.current is None or session.current[0] != result.key:
            return
        _, step, path = session.current
        session.current = None
        ep = session.endpoint
        resp = result.response
        if result.outcome is not Outcome.RESPONSE or resp is None:
            self._log(now, "bootstrap_failed", ep, f"{step.value} {path}: {result.outcome.value}")
            session.done = True
            return
        code = code_str(resp.code)
        self._log(now, f"bs_{step.value}", ep, f"{path} {code}")
        if step is Step.FINISH:
            session.done = True
            if is_success(resp.code):
                self.bootstrapped[ep] = self.bootstrapped.get(ep, 0) + 1
                self._log(now, "bootstrapped", ep, f"{len(session.servers)} server(s)")
            else:
                diagnostic = resp.payload.decode("utf-8", "replace")
                self._log(now, "finish_rejected", ep, f"{code} {diagnostic}".strip())
            return
        if not is_success(resp.code):
            self._log(now, "bootstrap_failed", ep, f"{step.value} {path}: {code}")
            session.done = True
            return
        if step is Step.DISCOVER:
            try:
                # After the deletes only the client's Bootstrap-Server account
                # remains: the Security instance Discover lists without an ssid.
                taken = {
                    p.instance_id
                    for link in linkformat.decode(resp.payload)
                    if (p := link.path()).object_id == 0
                    and p.instance_id is not None
                    and not link.has("ssid")
                }
            except LinkFormatError as exc:
                self._log(now, "bootstrap_failed", ep, f"discover: {exc}")
                session.done = True
                return
            self._add_writes(session, taken)
        self._next(addr, now)


# -- asyncio UDP wrapper --------------------------------------------------------------------


class BootstrapServer:
    """The bootstrap server on a real UDP socket (127.0.0.1 by default)."""

    __test__ = False

    def __init__(
        self,
        config: BootstrapConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        params: TransmissionParameters | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.core = BootstrapCore(config, params or TransmissionParameters())
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._logged = 0
        self._waiters: list[tuple[Callable[[ServerEvent], bool], asyncio.Future[ServerEvent]]] = []
        self.on_event: Callable[[ServerEvent], None] | None = None

    @property
    def uri(self) -> str:
        return f"coap://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: UdpServerProtocol(self._on_datagram), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)  # the socket closes on the next loop pass (as TestbedServer)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __aenter__(self) -> BootstrapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(
        self, kind: str, endpoint: str | None = None, timeout: float = 30.0
    ) -> ServerEvent:
        """The next logged event ``kind`` (for ``endpoint``), or one already logged."""
        for event in self.core.history:
            if event.kind == kind and endpoint in (None, event.endpoint):
                return event
        assert self._loop is not None
        fut: asyncio.Future[ServerEvent] = self._loop.create_future()
        self._waiters.append((lambda e: e.kind == kind and endpoint in (None, e.endpoint), fut))
        return await asyncio.wait_for(fut, timeout)

    def _on_datagram(self, addr: Address, data: bytes) -> None:
        assert self._loop is not None
        self.core.datagram_received(addr, data, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is not None and self._transport is not None:
            self.core.handle_timer(self._loop.time())
            self._pump()

    def _pump(self) -> None:
        if self._transport is None or self._loop is None:
            return
        for addr, data in self.core.datagrams_to_send():
            self._transport.sendto(data, addr)
        for event in self.core.history[self._logged :]:
            log.info("%s %s %s", event.kind, event.endpoint or "-", event.detail)
            if self.on_event is not None:
                self.on_event(event)
            for match, fut in list(self._waiters):
                if not fut.done() and match(event):
                    fut.set_result(event)
                    self._waiters.remove((match, fut))
        self._logged = len(self.core.history)
        if self._timer is not None:
            self._timer.cancel()
        when = self.core.next_timer()
        self._timer = self._loop.call_at(when, self._on_timer) if when is not None else None


__all__ = [
    "BootstrapConfig",
    "BootstrapCore",
    "BootstrapFault",
    "BootstrapServer",
    "ProvisionedServer",
    "load_bootstrap_config",
]
