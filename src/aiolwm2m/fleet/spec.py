"""What a fleet is: N devices, how each is named and keyed, what it exposes, what happens to it.

One :class:`FleetSpec` drives every way of running a fleet — real UDP in one
or several processes (``aiolwm2m fleet``), Locust workers, and virtual time
(``aiolwm2m fleet --simulate``) — so a server team replays the same fleet on
their server and on the simulator. It is written as TOML (``[fleet]``,
``[[value]]``, ``[[outage]]``) or built in Python; every problem raises
:class:`~aiolwm2m.errors.ConfigError` naming the key.

Device *n* (0-based, ``first`` ≤ n < ``first + devices``) gets its endpoint
from the ``endpoint`` pattern and its PSK identity and key from patterns or
from a CSV file (``endpoint,identity,key`` per line, the key as ``hex:…`` or
text), so a fleet can use credentials a server was provisioned with.
"""

from __future__ import annotations

import csv
import enum
import math
import os
import random
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path as FilePath
from typing import Any

from aiolwm2m.accounts import (
    InvalidParameters,
    ServerAccount,
    check_endpoint_name,
    parse_server_uri,
)
from aiolwm2m.client.config import ClientConfig, RegistrationConfig, hex_or_text, load_config
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.path import Path, PathError

__all__ = [
    "DeviceIdentity",
    "FleetSpec",
    "Generator",
    "Outage",
    "OutageKind",
    "ValueSpec",
    "load_spec",
]


class Generator(enum.StrEnum):
    """How a value changes over time (each device with its own phase)."""

    SINE = "sine"  # low … high over ``period`` seconds
    RANDOM_WALK = "random_walk"  # steps of at most (high − low) / 20, kept in [low, high]
    COUNTER = "counter"  # low, low + 1, … (integers)
    CONSTANT = "constant"  # always low


@dataclass(frozen=True)
class ValueSpec:
    """A resource every device exposes and changes every ``every`` seconds."""

    path: str  # /object/instance/resource, e.g. /3303/0/5700
    generator: Generator = Generator.SINE
    low: float = 0.0
    high: float = 100.0
    period: float = 600.0
    every: float = 10.0

    def __post_init__(self) -> None:
        try:
            parsed = Path.parse(self.path)
        except PathError as exc:
            raise ConfigError(f"[[value]] path: {exc}") from exc
        if not parsed.is_resource:
            raise ConfigError(f"[[value]] path must name a resource: {self.path!r}")
        object.__setattr__(self, "generator", _enum(Generator, self.generator, "generator"))
        if self.every <= 0 or self.period <= 0:
            raise ConfigError("[[value]] every and period must be > 0")
        if self.high < self.low:
            raise ConfigError("[[value]] high must be >= low")

    @property
    def parsed(self) -> Path:
        return Path.parse(self.path)

    def value(self, t: float, phase: float, previous: float | None, rng: random.Random) -> float:
        """The value at ``t`` for a device whose phase (0 … 1) is ``phase``."""
        span = self.high - self.low
        if self.generator is Generator.SINE:
            angle = 2 * math.pi * (t / self.period + phase)
            return round(self.low + span * (0.5 + 0.5 * math.sin(angle)), 3)
        if self.generator is Generator.RANDOM_WALK:
            start = self.low + span * phase if previous is None else previous
            return round(min(self.high, max(self.low, start + rng.uniform(-span, span) / 20)), 3)
        if self.generator is Generator.COUNTER:
            return self.low if previous is None else previous + 1
        return self.low


class OutageKind(enum.StrEnum):
    """How the server goes away for the fleet (through the fault proxy, or simulated)."""

    UNREACHABLE = "unreachable"  # port closed: ICMP port-unreachable at once
    BLACKHOLE = "blackhole"  # every datagram both ways silently dropped


@dataclass(frozen=True)
class Outage:
    """ "Server away ``duration`` s at ``at`` s" (seconds since the fleet started)."""

    at: float
    duration: float
    kind: OutageKind = OutageKind.UNREACHABLE

    def __post_init__(self) -> None:
        if self.at < 0 or self.duration <= 0:
            raise ConfigError("[[outage]] at must be >= 0 and duration > 0")
        object.__setattr__(self, "kind", _enum(OutageKind, self.kind, "kind"))


@dataclass(frozen=True)
class DeviceIdentity:
    index: int
    endpoint: str
    psk_identity: bytes | None = None
    psk_key: bytes | None = None


@dataclass(frozen=True)
class FleetSpec:
    """A fleet; see the module docstring. Times are seconds, rates per second."""

    server: str = "coap://127.0.0.1:5683"
    devices: int = 100
    first: int = 0
    endpoint: str = "fleet-{n:05d}"
    lifetime: int = 300
    binding: str = "U"
    psk_identity: str | None = None  # pattern, e.g. "{endpoint}"
    psk_key: str | None = None  # pattern, e.g. "hex:{n:032x}" or text
    psk_csv: str | None = None  # endpoint,identity,key per line (overrides the patterns)
    #: Registrations started per second over the whole fleet (the ramp-up).
    rate: float = 100.0
    #: Processes on a real network; 0: one per core.
    processes: int = 0
    #: Seconds the fleet runs after the ramp-up started (then it De-registers and stops).
    duration: float = 60.0
    values: tuple[ValueSpec, ...] = ()
    outages: tuple[Outage, ...] = ()
    update_jitter: float = RegistrationConfig().update_jitter
    #: Seconds between timeline rows (0: one second, or 1/2000 of the duration if longer).
    sample_every: float = 0.0
    seed: int = 0
    #: A client TOML (coap, reconnect, registration… tables) every device starts from.
    client_config: str | None = None

    def __post_init__(self) -> None:
        if self.devices < 1 or self.first < 0:
            raise ConfigError("[fleet] devices must be >= 1 and first >= 0")
        if self.rate <= 0 or self.duration <= 0:
            raise ConfigError("[fleet] rate and duration must be > 0")
        if self.processes < 0 or self.sample_every < 0:
            raise ConfigError("[fleet] processes and sample_every must be >= 0")
        try:
            parse_server_uri(self.server)
            check_endpoint_name(self.endpoint_of(self.first))
        except InvalidParameters as exc:
            raise ConfigError(f"[fleet] {exc}") from exc
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"[fleet] endpoint pattern {self.endpoint!r}: {exc!r}") from exc
        if self.update_jitter < 0 or self.update_jitter >= 1:
            raise ConfigError("[fleet] update_jitter must be >= 0 and < 1")
        if self.psk_csv is None and (self.psk_identity is None) != (self.psk_key is None):
            raise ConfigError("[fleet] psk_identity and psk_key go together")
        secure = self.server.startswith("coaps://")
        if secure != (self.psk_csv is not None or self.psk_key is not None):
            raise ConfigError(
                "[fleet] a coaps:// server needs PSKs (patterns or psk_csv); coap:// takes none"
            )

    # ------------------------------------------------------------------ devices
    def endpoint_of(self, n: int) -> str:
        return self.endpoint.format(n=n)

    def identities(self, start: int = 0, stop: int | None = None) -> Iterator[DeviceIdentity]:
        """Devices ``start`` ≤ i < ``stop`` of this fleet (i counts from 0, not ``first``)."""
        stop = self.devices if stop is None else stop
        table = _read_psk_csv(self.psk_csv) if self.psk_csv is not None else None
        for i in range(start, stop):
            n = self.first + i
            endpoint = self.endpoint_of(n)
            if table is not None:
                try:
                    identity, key = table[endpoint]
                except KeyError:
                    raise ConfigError(f"psk_csv {self.psk_csv}: no line for {endpoint!r}") from None
                yield DeviceIdentity(i, endpoint, identity, key)
            elif self.psk_key is not None and self.psk_identity is not None:
                fill = {"n": n, "endpoint": endpoint}
                yield DeviceIdentity(
                    i,
                    endpoint,
                    self.psk_identity.format(**fill).encode(),
                    hex_or_text(self.psk_key.format(**fill), "psk_key", "fleet"),
                )
            else:
                yield DeviceIdentity(i, endpoint)

    def base_config(self) -> ClientConfig:
        """The configuration every device starts from (endpoint and account set per device)."""
        account = ServerAccount(uri=self.server, lifetime=self.lifetime, binding=self.binding)
        if self.client_config is not None:
            base = load_config(self.client_config)
            if base.servers:
                account = replace(
                    base.servers[0], uri=self.server, lifetime=self.lifetime, binding=self.binding
                )
        else:
            base = ClientConfig(endpoint=self.endpoint_of(self.first))
        registration = replace(base.registration, update_jitter=self.update_jitter)
        return replace(base, servers=(account,), bootstrap=None, registration=registration)

    def device_config(self, base: ClientConfig, device: DeviceIdentity) -> ClientConfig:
        account = base.servers[0]
        if device.psk_key is not None:
            account = replace(account, psk_identity=device.psk_identity, psk_key=device.psk_key)
        return replace(base, endpoint=device.endpoint, servers=(account,))

    # ------------------------------------------------------------------ time
    @property
    def ramp_seconds(self) -> float:
        return self.devices / self.rate

    @property
    def sample_interval(self) -> float:
        if self.sample_every:
            return self.sample_every
        return max(1.0, self.duration / 2000)

    def shards(self, count: int) -> list[tuple[int, int]]:
        """``count`` contiguous (start, stop) device ranges, as even as possible."""
        count = max(1, min(count, self.devices))
        edges = [self.devices * k // count for k in range(count + 1)]
        return [(edges[k], edges[k + 1]) for k in range(count)]

    def process_count(self) -> int:
        return self.processes or os.cpu_count() or 1


def _enum(kind: type[enum.StrEnum], value: object, key: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise ConfigError(f"{key} must be one of {names}, not {value!r}") from None


def _read_psk_csv(path: str) -> dict[str, tuple[bytes, bytes]]:
    table: dict[str, tuple[bytes, bytes]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for number, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) != 3:
                    raise ConfigError(f"psk_csv {path}:{number}: want endpoint,identity,key")
                endpoint, identity, key = (cell.strip() for cell in row)
                table[endpoint] = (identity.encode(), hex_or_text(key, "key", f"{path}:{number}"))
    except OSError as exc:
        raise ConfigError(f"psk_csv: cannot read {path}: {exc.strerror}") from exc
    return table


_SPEC_KEYS = {f.name for f in fields(FleetSpec)} - {"values", "outages"}


def load_spec(source: str | FilePath | Mapping[str, Any], **overrides: Any) -> FleetSpec:
    """A fleet from a TOML file (or its parsed tables); ``overrides`` (CLI flags) win."""
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
        where = FilePath(".")
    else:
        where = FilePath(source).parent
        try:
            with open(source, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    unknown = set(data) - {"fleet", "value", "outage"}
    if unknown:
        raise ConfigError(f"unknown table(s): {', '.join(sorted(unknown))}")
    table = dict(data.get("fleet", {}))
    bad = set(table) - _SPEC_KEYS
    if bad:
        raise ConfigError(f"unknown key(s) in [fleet]: {', '.join(sorted(bad))}")
    for key in ("psk_csv", "client_config"):  # relative to the fleet file
        if isinstance(table.get(key), str):
            table[key] = str(where / table[key])
    values = tuple(_build(ValueSpec, v, "value") for v in data.get("value", ()))
    outages = tuple(_build(Outage, o, "outage") for o in data.get("outage", ()))
    table.update({k: v for k, v in overrides.items() if v is not None})
    spec: FleetSpec = _build(FleetSpec, {**table, "values": values, "outages": outages}, "fleet")
    return spec


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    if not isinstance(data, Mapping):
        raise ConfigError(f"[[{where}]] must be a table")
    bad = set(data) - known
    if bad:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(bad))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc
