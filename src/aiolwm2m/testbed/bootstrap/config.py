"""What the bootstrap server provisions, and its TOML file (``aiolwm2m/examples/bootstrap.toml``).

Per endpoint name (and a default) the LwM2M Server accounts to write, each a
Security and a Server instance; the order of the session (Discover first or
not, the first instance id, the write format) and the faults to inject into
Bootstrap-Requests. Every problem in the file is a :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path as FsPath
from typing import Any

from aiolwm2m.accounts import InvalidParameters, SecurityMode, parse_server_uri
from aiolwm2m.client.config import hex_or_text, read_toml
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m import ContentFormat, Path, Record, Value
from aiolwm2m.testbed.core import FaultKind

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
    # Instance ids to write the account under (None: numbered by the session, from
    # BootstrapConfig.first_instance_id for /0 and from 0 for /1). Real servers
    # choose their own: Wakaama writes /0/1 and /1/1, Leshan what its config says.
    security_instance: int | None = None
    server_instance: int | None = None

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
    # Bootstrap-Server Account Timeout to write as /0/x/12 of the client's own
    # Bootstrap-Server instance (the one Discover lists without an ssid) before
    # Finish; None writes nothing. Python only: it exists to test clients' purge.
    account_timeout: int | None = None

    def servers_for(self, endpoint: str) -> tuple[ProvisionedServer, ...] | None:
        """Accounts for ``endpoint``; None if it is unknown and there is no default."""
        if endpoint in self.endpoints:
            return self.endpoints[endpoint]
        return self.default or None


# -- TOML --------------------------------------------------------------------------------

_SERVER_KEYS = (
    {"uri", "ssid", "security_mode", "psk_identity", "psk_key"}
    | {"security_instance", "server_instance"}
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
    try:
        # A file is checked like the client's: to provision a bad URI on purpose
        # (testing a client's invalid_parameters), build the config in Python.
        parse_server_uri(uri)
    except InvalidParameters as exc:
        raise ConfigError(f"[{where}] uri: {exc}") from exc
    ssid = data.get("ssid", 1)
    if isinstance(ssid, bool) or not isinstance(ssid, int) or not 1 <= ssid <= 65534:
        raise ConfigError(f"[{where}] ssid must be an integer in 1..65534")
    kwargs: dict[str, Any] = {"uri": uri, "ssid": ssid}
    for key in ("security_instance", "server_instance"):
        if key in data:
            iid = data[key]
            if isinstance(iid, bool) or not isinstance(iid, int) or not 0 <= iid <= 65534:
                raise ConfigError(f"[{where}] {key} must be an integer in 0..65534")
            kwargs[key] = iid
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


__all__ = [
    "SERVER_RESOURCES",
    "WRITE_FORMATS",
    "BootstrapConfig",
    "BootstrapFault",
    "ProvisionedServer",
    "load_bootstrap_config",
]
