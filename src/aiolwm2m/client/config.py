"""Client configuration and its TOML form (a public contract, see README).

Every problem raises :class:`~aiolwm2m.errors.ConfigError` while loading,
naming the key: structural ones (unknown keys, wrong types, out-of-range
numbers) and everything the engine would refuse at start (:func:`check_config`:
a malformed server URI, an over-long or unsendable endpoint name, a security
mode that disagrees with the URI) — a configuration file is checked whole
before anything runs. The engine keeps its own check for configurations built
in Python or provisioned by a bootstrap server: there a bad account is an
``invalid_parameters`` error event for that server, not retried until
reconfigured (spec §6), and the other accounts keep working.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aiolwm2m.accounts import (
    InvalidParameters,
    RetrySettings,
    SecurityMode,
    ServerAccount,
    ServerUri,
    check_endpoint_name,
    check_security,
    parse_server_uri,
)
from aiolwm2m.client.firmware.settings import FirmwareSettings, parse_firmware_table
from aiolwm2m.client.policy import FailureTable, ReconnectPolicy, RetryProcedure
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.errors import ConfigError

__all__ = [
    "ClientConfig",
    "RegistrationConfig",
    "check_account",
    "check_config",
    "hex_or_text",
    "load_config",
    "read_toml",
]


@dataclass(frozen=True)
class RegistrationConfig:
    """``[registration]``.

    ``resume_with_update`` (spec §10): a new link (reconnect, offline exit, a
    new socket or DTLS session, a restart) first resumes a registration that
    has not expired by the client's clock with an Update; only a refusal forces
    a Register. False registers on every new link (Anjay's way).
    ``max_retry_after`` caps every Max-Age wait (4.29, 5.03; spec §7): Max-Age
    is 32-bit, and no server may park a device for years.
    """

    timeout: float = 180.0
    retry_procedure: RetryProcedure = RetryProcedure.LWM2M_1_1
    connection_error_is_registration_failure: bool = False
    lwm2m_version: str = "1.1"
    #: Each Update is planned at a uniform (1 − jitter … 1) × the spec's interval, so a
    #: fleet that registered together does not update in lock-step bursts; never later
    #: than the spec's instant. 0 gives the exact instant (tests that assert it).
    update_jitter: float = 0.1
    resume_with_update: bool = True
    max_retry_after: float = 3600.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ConfigError("registration timeout must be > 0")
        if not 0.0 <= self.update_jitter < 1.0:
            raise ConfigError("update_jitter must be >= 0 and < 1")
        if self.lwm2m_version not in ("1.0", "1.1"):
            raise ConfigError("lwm2m_version must be '1.0' or '1.1'")
        if self.max_retry_after < 0:
            raise ConfigError("max_retry_after must be >= 0")


@dataclass(frozen=True)
class ClientConfig:
    endpoint: str
    servers: tuple[ServerAccount, ...] = ()
    bootstrap: ServerAccount | None = None
    coap: TransmissionParameters = field(default_factory=TransmissionParameters)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    failure_table: FailureTable = field(default_factory=FailureTable)
    storage_path: str | None = None
    notification_store_limit: int = 1000
    dtls: HandshakeTiming = field(default_factory=HandshakeTiming)
    firmware: FirmwareSettings = field(default_factory=FirmwareSettings)

    def with_overrides(self, **changes: Any) -> ClientConfig:
        return replace(self, **changes)


# -- TOML ------------------------------------------------------------------------


def _table(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    return data


def _build(cls: type[Any], data: dict[str, Any], where: str, **extra: Any) -> Any:
    """Construct a dataclass from a TOML table, rejecting unknown keys and bad types."""
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = dict(extra)
    for key, value in data.items():
        if key not in known or key in extra:
            raise ConfigError(f"unknown key {key!r} in [{where}]")
        # Types first, so a wrong type is named instead of failing a range check.
        _check_type(key, value, known[key].type, where)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc


def _check_type(key: str, value: Any, annotation: Any, where: str) -> None:
    ann = str(annotation)
    if "bool" in ann and not isinstance(value, bool) and value is not None:
        raise ConfigError(f"[{where}] {key} must be true or false")
    if ann in ("float", "int") and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"[{where}] {key} must be a number")
    if ann == "str" and not isinstance(value, str):
        raise ConfigError(f"[{where}] {key} must be a string")


_RETRY_KEYS = {f.name for f in fields(RetrySettings)}


def hex_or_text(value: Any, key: str, where: str | None = None) -> bytes:
    """PSK values in TOML: ``hex:0011…`` or plain text (shared by every config file)."""
    at = f"[{where}] " if where else ""
    if not isinstance(value, str):
        raise ConfigError(f"{at}{key} must be a string (text, or hex:…)")
    if value.startswith("hex:"):
        try:
            return bytes.fromhex(value[4:])
        except ValueError as exc:
            raise ConfigError(f"{at}{key}: bad hex") from exc
    return value.encode()


def _account(data: dict[str, Any], where: str) -> ServerAccount:
    data = dict(data)
    retry_data = {k: data.pop(k) for k in list(data) if k in _RETRY_KEYS}
    retry = _build(RetrySettings, retry_data, where)
    # Instance ids are what a Bootstrap-Server wrote, never a configuration key.
    extra: dict[str, Any] = {"retry": retry, "security_instance": None, "server_instance": None}
    if "security_mode" in data:
        mode = data.pop("security_mode")
        try:
            extra["security_mode"] = SecurityMode[str(mode).upper()]
        except KeyError as exc:
            raise ConfigError(
                f"[{where}] security_mode must be psk, rpk, certificate or nosec"
            ) from exc
    for key in ("psk_identity", "psk_key"):
        if key in data:
            extra[key] = hex_or_text(data.pop(key), key, where)
    if "ca_certificates" in data:
        cas = data.pop("ca_certificates")
        if not isinstance(cas, list) or not all(isinstance(c, str) for c in cas):
            raise ConfigError(f"[{where}] ca_certificates must be a list of paths")
        extra["ca_certificates"] = tuple(cas)
    if "uri" not in data:
        raise ConfigError(f"[{where}] needs a uri")
    account: ServerAccount = _build(ServerAccount, data, where, **extra)
    check_account(account, f"[{where}]")
    return account


def check_account(account: ServerAccount, where: str) -> ServerUri:
    """The account's URI, or :class:`InvalidParameters` prefixed with ``where`` (key or flag)."""
    try:
        uri = parse_server_uri(account.uri)
    except InvalidParameters as exc:
        raise InvalidParameters(f"{where} uri: {exc}") from exc
    try:
        check_security(account, uri)
    except InvalidParameters as exc:
        raise InvalidParameters(f"{where} {exc}") from exc
    return uri


def check_config(config: ClientConfig) -> None:
    """Refuse what the engine would report as ``invalid_parameters`` at start (spec §6).

    Run on every loaded file, so a bad value stops the program with a message
    naming its key instead of a running client that can never register.
    """
    try:
        check_endpoint_name(config.endpoint)
    except InvalidParameters as exc:
        raise InvalidParameters(f"endpoint: {exc}") from exc
    for i, account in enumerate(config.servers):
        check_account(account, f"[server {i}]")
    if config.bootstrap is not None:
        check_account(config.bootstrap, "[bootstrap]")


#: TOML keys of the [dtls] table → :class:`HandshakeTiming` fields.
_DTLS_KEYS = {
    "handshake_initial_timeout": "initial_timeout",
    "handshake_max_timeout": "max_timeout",
}


def _dtls_timing(data: dict[str, Any]) -> HandshakeTiming:
    for key in data:
        if key not in _DTLS_KEYS:
            raise ConfigError(f"unknown key {key!r} in [dtls]")
    try:
        return HandshakeTiming(**{_DTLS_KEYS[k]: v for k, v in data.items()})
    except ConfigError as exc:
        raise ConfigError(f"[dtls] {exc}") from exc


def _reconnect(data: dict[str, Any]) -> ReconnectPolicy:
    """``[reconnect]``: a ``preset`` (default ``izuma-2019``) and keys that override it."""
    data = dict(data)
    name = data.pop("preset", "izuma-2019")
    if not isinstance(name, str):
        raise ConfigError("[reconnect] preset must be a string")
    checked: ReconnectPolicy = _build(ReconnectPolicy, data, "reconnect")  # types and ranges
    changes = {key: getattr(checked, key) for key in data}
    try:
        return ReconnectPolicy.preset(name, **changes)
    except ConfigError as exc:
        raise ConfigError(f"[reconnect] {exc}") from exc


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; unreadable, not UTF-8 or not TOML is a :class:`ConfigError`.

    Every TOML file the project reads (client, bootstrap server, scenario)
    comes through here, so they fail the same typed way.
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc


_TOP_LEVEL = frozenset(
    {
        "endpoint",
        "server",
        "bootstrap",
        "coap",
        "reconnect",
        "registration",
        "storage",
        "dtls",
        "firmware",
    }
)


def load_config(
    source: str | Path | dict[str, Any], *, endpoint: str | None = None
) -> ClientConfig:
    """Read a TOML file (or an already-parsed dict) into a :class:`ClientConfig`."""
    data = dict(source) if isinstance(source, dict) else read_toml(source, "config file")
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"unknown top-level key {key!r}")
    kwargs: dict[str, Any] = {}
    ep = endpoint if endpoint is not None else data.get("endpoint")
    if not isinstance(ep, str):
        raise ConfigError('an endpoint name is required (endpoint = "..." or --endpoint)')
    if "coap" in data:
        kwargs["coap"] = _build(TransmissionParameters, _table(data["coap"], "coap"), "coap")
    if "dtls" in data:
        kwargs["dtls"] = _dtls_timing(_table(data["dtls"], "dtls"))
    if "reconnect" in data:
        kwargs["reconnect"] = _reconnect(_table(data["reconnect"], "reconnect"))
    if "registration" in data:
        kwargs["registration"] = _registration(_table(data["registration"], "registration"))
    kwargs["servers"] = _servers(data.get("server", []))
    if "bootstrap" in data:
        kwargs["bootstrap"] = _account(_table(data["bootstrap"], "bootstrap"), "bootstrap")
    if "firmware" in data:
        kwargs["firmware"] = parse_firmware_table(_table(data["firmware"], "firmware"), hex_or_text)
    if "storage" in data:
        kwargs.update(_storage(_table(data["storage"], "storage")))
    config = ClientConfig(endpoint=ep, **kwargs)
    check_config(config)
    return config


def _registration(data: dict[str, Any]) -> RegistrationConfig:
    """``[registration]``; ``retry_procedure`` names a :class:`RetryProcedure`."""
    reg = dict(data)
    extra: dict[str, Any] = {}
    if "retry_procedure" in reg:
        try:
            extra["retry_procedure"] = RetryProcedure(reg.pop("retry_procedure"))
        except ValueError as exc:
            raise ConfigError(
                "[registration] retry_procedure must be 'lwm2m-1.1' or 'bootstrap-immediately'"
            ) from exc
    built: RegistrationConfig = _build(RegistrationConfig, reg, "registration", **extra)
    return built


def _servers(servers: object) -> tuple[ServerAccount, ...]:
    """``[[server]]`` tables; their short_server_ids must differ."""
    if not isinstance(servers, list):
        raise ConfigError("[[server]] must be an array of tables")
    accounts = tuple(
        _account(_table(s, f"server {i}"), f"server {i}") for i, s in enumerate(servers)
    )
    ssids = [s.short_server_id for s in accounts]
    if len(set(ssids)) != len(ssids):
        raise ConfigError("two [[server]] tables share a short_server_id")
    return accounts


def _storage(storage: dict[str, Any]) -> dict[str, Any]:
    """``[storage]`` as the :class:`ClientConfig` keyword arguments it sets."""
    for key in storage:
        if key not in ("path", "notification_limit"):
            raise ConfigError(f"unknown key {key!r} in [storage]")
    path = storage.get("path")
    if path is not None and not isinstance(path, str):
        raise ConfigError("[storage] path must be a string")
    limit = storage.get("notification_limit", 1000)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError("[storage] notification_limit must be an integer >= 0")
    return {"storage_path": path, "notification_store_limit": limit}
