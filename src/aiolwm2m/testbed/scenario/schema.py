"""The scenario file: its TOML schema, checked into :class:`Scenario`, and client configs.

Every problem in a file is a :class:`~aiolwm2m.errors.ConfigError` raised
while loading, never in the middle of a run (client overrides included: they
are tried once at load time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, load_config, read_toml
from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.proxy import CoapRule, directions

#: The name clients use for the server; answered by the scenario's own resolver
#: (:class:`~aiolwm2m.testbed.scenario.fixtures.ScenarioResolver`). RFC 6761:
#: ``.invalid`` never resolves in real DNS, so nothing outside the scenario answers it.
SERVER_NAME = "lwm2m-testbed.invalid"

FAULTS = {
    "blackhole",
    "loss",
    "delay",
    "duplicate",
    "reorder",
    "corrupt",
    "truncate",
    "flap",
    "unreachable",
    "respond",
    "reset",
    "silence",
    "restart",
    "dns",
}
LINK_FAULTS = {"blackhole", "loss", "delay", "duplicate", "reorder", "corrupt", "truncate"}
_STEP_KEYS = {
    "at",
    "fault",
    "duration",
    "direction",
    "probability",
    "delay",
    "jitter",
    "up",
    "down",
    "match",
    "code",
    "max_age",
    "count",
    "forget_registrations",
    "expect",
    "note",
}


@dataclass(frozen=True)
class Expectation:
    """``"error code=timeout request=update"``: an event name and field values."""

    name: str
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Expectation:
        name, *pairs = text.split()
        parsed = []
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise ConfigError(f"expect {text!r}: {pair!r} is not key=value")
            parsed.append((key, value))
        return cls(name, tuple(parsed))

    def matches(self, event: ev.Event) -> bool:
        if event.name != self.name:
            return False
        data = event.to_dict()
        return all(str(data.get(k)) == v for k, v in self.fields)

    def __str__(self) -> str:
        return " ".join([self.name, *(f"{k}={v}" for k, v in self.fields)])


@dataclass
class Step:
    at: float
    fault: str
    duration: float
    direction: str = "both"
    probability: float = 1.0
    delay: float = 0.0
    jitter: float = 0.0
    up: float = 1.0
    down: float = 1.0
    match: str = "*"
    code: str = "5.03"
    max_age: int | None = None
    count: int | None = None
    forget_registrations: bool = False
    expect: tuple[Expectation, ...] = ()
    note: str = ""

    @property
    def end(self) -> float:
        return self.at + self.duration

    def describe(self) -> str:
        what = {
            "loss": f"loss {self.probability:.0%} ({self.direction})",
            "delay": f"delay {self.delay:g}±{self.jitter:g} s ({self.direction})",
            "flap": f"flapping link ({self.up:g} s up / {self.down:g} s down)",
            "respond": CoapRule(self.match, code=self.code, max_age=self.max_age).describe(),
            "reset": f"reset {self.match}",
            "silence": f"swallow {self.match}",
            "restart": "server restart"
            + (" (registrations lost)" if self.forget_registrations else ""),
            "dns": f"{SERVER_NAME} does not resolve",
            "unreachable": "ICMP port unreachable",
        }.get(self.fault)
        if what is None:
            prob = f" {self.probability:.0%}" if self.probability < 1 else ""
            what = f"{self.fault}{prob} ({self.direction})"
        return what + (f" — {self.note}" if self.note else "")


@dataclass
class NotifySpec:
    every: float
    start: float = 0.0
    stop: float | None = None


@dataclass
class Scenario:
    name: str
    duration: float
    steps: list[Step]
    description: str = ""
    clients: int = 1
    bound: float | None = None
    time_scale: float = 1.0
    seed: int = 1
    expect_verdict: str = "pass"
    client: dict[str, Any] = field(default_factory=dict)
    notify: NotifySpec | None = None


def _number(table: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number")
    return float(value)


def load_scenario(source: str | Path | dict[str, Any]) -> Scenario:
    """Read and check a scenario file; every problem is a :class:`ConfigError`."""
    data = source if isinstance(source, dict) else read_toml(source, "scenario")
    unknown = set(data) - {"scenario", "client", "notify", "step"}
    if unknown:
        raise ConfigError(f"unknown table(s) in scenario: {', '.join(sorted(unknown))}")
    head = data.get("scenario")
    if not isinstance(head, dict):
        raise ConfigError("a scenario needs a [scenario] table")
    known = {
        "name",
        "description",
        "clients",
        "duration",
        "bound",
        "time_scale",
        "seed",
        "expect_verdict",
    }
    if set(head) - known:
        raise ConfigError(f"unknown key(s) in [scenario]: {', '.join(sorted(set(head) - known))}")
    clients = head.get("clients", 1)
    if isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= 1000:
        raise ConfigError("[scenario] clients must be an integer in 1..1000")
    seed = head.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("[scenario] seed must be an integer")
    verdict = head.get("expect_verdict", "pass")
    if verdict not in ("pass", "fail"):
        raise ConfigError("[scenario] expect_verdict must be 'pass' or 'fail'")
    scenario = Scenario(
        name=str(head.get("name", "scenario")),
        description=str(head.get("description", "")),
        duration=_number(head, "duration", "[scenario]"),
        clients=clients,
        bound=_number(head, "bound", "[scenario]") if "bound" in head else None,
        time_scale=_number(head, "time_scale", "[scenario]", 1.0),
        seed=seed,
        expect_verdict=verdict,
        steps=[],
    )
    if scenario.duration <= 0 or scenario.time_scale <= 0:
        raise ConfigError("[scenario] duration and time_scale must be > 0")
    client = data.get("client", {})
    if not isinstance(client, dict):
        raise ConfigError("[client] must be a table")
    scenario.client = client
    client_config(scenario, "127.0.0.1:1", 0)  # reject bad overrides now, not mid-run
    if "notify" in data:
        n = data["notify"]
        if not isinstance(n, dict) or set(n) - {"every", "start", "stop"}:
            raise ConfigError("[notify] takes every, start and stop")
        scenario.notify = NotifySpec(
            every=_number(n, "every", "[notify]"),
            start=_number(n, "start", "[notify]", 0.0),
            stop=_number(n, "stop", "[notify]") if "stop" in n else None,
        )
        if scenario.notify.every <= 0:
            raise ConfigError("[notify] every must be > 0")
    steps = data.get("step", [])
    if not isinstance(steps, list):
        raise ConfigError("[[step]] must be an array of tables")
    for i, raw in enumerate(steps):
        scenario.steps.append(_step(raw, f"step {i + 1}", scenario.duration))
    return scenario


def _step(raw: Any, where: str, total: float) -> Step:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    fault = raw.get("fault")
    if fault not in FAULTS:
        raise ConfigError(f"{where}: fault must be one of {', '.join(sorted(FAULTS))}")
    kwargs: dict[str, Any] = {"fault": fault}
    for key in ("at", "duration", "probability", "delay", "jitter", "up", "down"):
        if key in raw:
            kwargs[key] = _number(raw, key, where)
    for key in ("direction", "match", "code", "note"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"{where}: {key} must be a string")
            kwargs[key] = raw[key]
    for key in ("max_age", "count"):
        if key in raw:
            if isinstance(raw[key], bool) or not isinstance(raw[key], int):
                raise ConfigError(f"{where}: {key} must be an integer")
            kwargs[key] = raw[key]
    if "forget_registrations" in raw:
        if not isinstance(raw["forget_registrations"], bool):
            raise ConfigError(f"{where}: forget_registrations must be true or false")
        kwargs["forget_registrations"] = raw["forget_registrations"]
    expect = raw.get("expect", [])
    if not isinstance(expect, list) or not all(isinstance(e, str) and e for e in expect):
        raise ConfigError(f"{where}: expect must be a list of event patterns")
    kwargs["expect"] = tuple(Expectation.parse(e) for e in expect)
    if "at" not in kwargs or "duration" not in kwargs:
        raise ConfigError(f"{where}: needs at and duration")
    step = Step(**kwargs)
    if step.at < 0 or step.duration < 0 or step.end > total:
        raise ConfigError(f"{where}: the window must lie inside the scenario's duration")
    if not 0 <= step.probability <= 1:
        raise ConfigError(f"{where}: probability must be in [0, 1]")
    if step.up <= 0 or step.down <= 0 or step.delay < 0 or step.jitter < 0:
        raise ConfigError(f"{where}: up/down must be > 0, delay/jitter >= 0")
    directions(step.direction)
    if fault in ("respond", "reset", "silence"):
        CoapRule(step.match, code=step.code, max_age=step.max_age, count=step.count)
    return step


def wire_max_age(step: Step, scale: float) -> int:
    """The Max-Age a respond step puts on the wire: scaled, but whole seconds (>= 1)."""
    if step.fault != "respond" or step.max_age is None:
        return 0
    return max(1, round(step.max_age * scale))


# -- client configuration -------------------------------------------------------------

BASE_CLIENT: dict[str, Any] = {
    "coap": {"ack_timeout": 0.5, "max_retransmit": 2},
    "reconnect": {"first_delay_min": 1.0, "first_delay_max": 2.0, "max_delay": 30.0},
    "registration": {"timeout": 30.0},
    "server": {
        "lifetime": 10,
        "communication_retry_count": 2,
        "communication_retry_timer": 1.0,
        "bootstrap_on_registration_failure": False,
    },
}

# Which config numbers are durations (scaled by time_scale), per table.
_SCALED = {
    "coap": ("ack_timeout", "max_latency", "separate_response_timeout", "piggyback_window"),
    "reconnect": ("first_delay_min", "first_delay_max", "max_delay"),
    "registration": ("timeout",),
    "server": (
        "lifetime",
        "communication_retry_timer",
        "communication_sequence_delay_timer",
        "initial_registration_delay",
    ),
}


def client_config(scenario: Scenario, hostport: str, index: int) -> ClientConfig:
    """Client ``index``'s configuration: base timings, ``[client]`` overrides, time scale."""
    merged: dict[str, Any] = {k: dict(v) for k, v in BASE_CLIENT.items()}
    for key, value in scenario.client.items():
        if key not in merged or not isinstance(value, dict):
            raise ConfigError(f"[client.{key}] is not a table scenarios can override")
        merged[key].update(value)
    scale = scenario.time_scale
    coap = merged["coap"]
    coap.setdefault("max_latency", 100.0)
    for table, keys in _SCALED.items():
        for key in keys:
            value = merged[table].get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                merged[table][key] = value * scale
    server = merged.pop("server")
    server["lifetime"] = max(1, math.ceil(server["lifetime"]))  # whole seconds on the wire
    server["uri"] = f"coap://{hostport}"
    merged["server"] = [server]
    merged["endpoint"] = f"client-{index}"
    return load_config(merged)


__all__ = [
    "BASE_CLIENT",
    "FAULTS",
    "LINK_FAULTS",
    "SERVER_NAME",
    "Expectation",
    "NotifySpec",
    "Scenario",
    "Step",
    "client_config",
    "load_scenario",
    "wire_max_age",
]
