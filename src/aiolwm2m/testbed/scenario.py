"""Scripted outage scenarios: testbed server + fault proxy + clients in one process.

A scenario is a TOML timeline (see ``docs/fault-injection.md`` and the files in
``scenarios/``)::

    [scenario]
    name = "blackhole"
    clients = 1
    duration = 60          # scenario seconds
    bound = 20             # optional: recovery bound after each fault window
    time_scale = 1.0       # real seconds per scenario second

    [client.server]        # config overrides, same keys as the client TOML
    lifetime = 10

    [notify]               # optional: a notification every `every` s
    every = 1.0

    [[step]]
    at = 10
    fault = "blackhole"
    duration = 30
    direction = "both"
    expect = ["error code=timeout"]

:class:`ScenarioRunner` starts the testbed server, a :class:`FaultProxy` in
front of it and the clients (real UDP on 127.0.0.1, ephemeral ports), applies
the steps at their times, records a timeline and judges it:

* after each fault window every client completes a Register or Update within
  the bound (declared, or derived from the client's own schedules);
* every ``expect`` pattern shows up in each client's events during the window;
* notifications arrive at the server in order, and every one produced that did
  not arrive is accounted for by the client (counted as dropped by its
  policy, ended by a Reset that cancelled its observation, or still stored
  at the end);
* no task raised an unhandled exception.

``time_scale`` shrinks every duration — the timeline *and* the client's
timers (CoAP ACK timeout, lifetime, reconnect and retry delays, Max-Age) — by
the same factor, so a 30-minute outage runs in seconds. It is a scaled model
of the real timing, not the real timing: the proportions are kept, while
fixed costs (event-loop latency, whole-second lifetimes and Max-Age values on
the wire) are not scaled.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, load_config, read_toml
from aiolwm2m.client.engine import Notification
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    encode_uint,
    make_options,
)
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.core import Address, ResponseEvent, ServerCore, ServerEvent
from aiolwm2m.testbed.proxy import CoapRule, FaultProxy, RuleAction, directions
from aiolwm2m.testbed.server import TestbedServer

#: The name clients use for the server; resolved by :class:`ResolverLoop` (RFC 6761:
#: ``.invalid`` never resolves in real DNS, so nothing outside the scenario answers it).
SERVER_NAME = "lwm2m-testbed.invalid"
#: The resource observed for notification delivery checks (Device Current Time).
OBSERVED_PATH = ("3", "0", "13")

# -- the data model and server side of notification checks --------------------------


class NotifyingObjects:
    """A minimal data model (the engine's ``ObjectTree`` protocol) for delivery checks.

    Its Device /3/0/13 can be observed and produces numbered CON notifications
    on demand. Payloads are ``b"<endpoint>:<seq>"`` so the server side can check
    order and loss without trusting tokens, which change when the server
    re-observes. Exact accounting is the point: every :meth:`produce` is one
    notification handed to the engine, nothing is coalesced.
    """

    def __init__(self, endpoint: str, ssids: list[int]) -> None:
        self.instances = {1: list(range(len(ssids))), 3: [0]}
        self.endpoint = endpoint
        self.ssid = ssids[0]
        self.token: bytes | None = None
        self.seq = 0
        self.produced = 0
        self.unobserved = 0  # production ticks with nobody observing
        self._due: list[Notification] = []

    def registration_payload(self, lwm2m_version: str) -> bytes:
        return linkformat.encode(linkformat.registration_links(self.instances, {1: "1.1"}))

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None

    def handle_request(self, ssid: int, request: Message, now: float) -> Message:
        try:
            path = tuple(request.uri_path)
        except CoapDecodeError:
            return Message(code=Code.BAD_REQUEST)
        if request.code != Code.GET or path != OBSERVED_PATH:
            return Message(code=Code.NOT_FOUND)
        resp = Message(code=Code.CONTENT, payload=self._payload())
        if request.observe == 0:
            self.token = request.token
            resp.add(OptionNumber.OBSERVE, encode_uint(self.seq & 0xFFFFFF))
        elif request.observe == 1 and request.token == self.token:
            self.token = None
        return resp

    def drop_observations(self, ssid: int) -> None:
        self.token = None

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> None:
        if token == self.token:
            self.token = None

    def take_notifications(self, now: float) -> list[Notification]:
        out, self._due = self._due, []
        return out

    def produce(self, now: float) -> bool:
        """A new value: queue a CON notification if observed (then call ``client.poll()``)."""
        if self.token is None:
            self.unobserved += 1
            return False
        self.seq += 1
        self.produced += 1
        msg = Message(
            type=MessageType.CON,
            code=Code.CONTENT,
            token=self.token,
            options=make_options(observe=self.seq & 0xFFFFFF, content_format=0),
            payload=self._payload(),
        )
        self._due.append(Notification(self.ssid, self.token, "/3/0/13", msg, now))
        return True

    def _payload(self) -> bytes:
        return f"{self.endpoint}:{self.seq}".encode()


class ObservingCore(ServerCore):
    """Testbed server core that records the notifications it accepts, per endpoint.

    Memory stays bounded however long it runs (the soak measures RSS): per
    endpoint a count, the highest sequence number, the last
    :data:`RECENT_SEQS` numbers (to tell a duplicate from a late arrival) and
    the first few out-of-order arrivals.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.received: dict[str, Delivery] = {}
        self.duplicates = 0

    def next_response(self) -> ResponseEvent | None:
        event = super().next_response()
        if event is not None and event.result.response is not None:
            self._record(event.result.response)
        return event

    def _record(self, resp: Message) -> None:
        if resp.code != Code.CONTENT or not resp.has(OptionNumber.OBSERVE):
            return
        endpoint, _, seq_text = resp.payload.decode("utf-8", "replace").rpartition(":")
        if not seq_text.isdigit() or int(seq_text) == 0:
            return  # the value sent with the Observe response itself, not a notification
        delivery = self.received.setdefault(endpoint, Delivery())
        if not delivery.add(int(seq_text)):
            self.duplicates += 1


#: How many recent sequence numbers :class:`Delivery` remembers for duplicate detection.
RECENT_SEQS = 256


@dataclass
class Delivery:
    """Notifications of one endpoint as the server received them."""

    count: int = 0
    highest: int = 0
    out_of_order: list[int] = field(default_factory=list)  # the first few only
    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_SEQS))

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it is a duplicate of a recent one."""
        if seq in self._recent:
            return False
        self._recent.append(seq)
        self.count += 1
        if seq < self.highest and len(self.out_of_order) < 10:
            self.out_of_order.append(seq)
        self.highest = max(self.highest, seq)
        return True


class LeanTestbedServer(TestbedServer):
    """A testbed server that does not keep its whole event history (long soak runs).

    :class:`ServerCore` appends every registration event to ``history`` for
    ever; over a 10-minute soak with 100 clients that is megabytes, which
    would be counted as the client's memory growth. Once the server has
    delivered the events to ``on_event`` they are dropped.
    """

    def _pump(self) -> None:
        super()._pump()
        history = self.core.history
        if len(history) > 1000 and self._logged == len(history):
            history.clear()
            self._logged = 0


# -- name resolution the scenario controls --------------------------------------------


class ResolverLoop(asyncio.SelectorEventLoop):
    """Event loop whose ``getaddrinfo`` answers ``*.invalid`` names from :attr:`names`.

    The DNS fault removes a name for a window, so the client's lookup fails
    exactly as a failed DNS query does (``socket.gaierror``); every other name
    goes to the system resolver.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str | None] = {}

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name.endswith(".invalid"):
            addr = self.names.get(name)
            if addr is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            sock_type = type or socket.SOCK_DGRAM
            return [(socket.AF_INET, sock_type, 0, "", (addr, int(port or 0)))]
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )


# -- the scenario file ----------------------------------------------------------------

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
_LINK_FAULTS = {"blackhole", "loss", "delay", "duplicate", "reorder", "corrupt", "truncate"}
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


# -- client configuration -------------------------------------------------------------

#: Short timings every scenario starts from; ``[client]`` tables override them.
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


def fault_period(steps: list[Step], step: Step) -> list[Step]:
    """The steps whose windows overlap ``step``'s, transitively, ordered by end."""
    period = [step]
    start, end = step.at, step.end
    grown = True
    while grown:
        grown = False
        for other in steps:
            if other not in period and other.at <= end and other.end >= start:
                period.append(other)
                start, end = min(start, other.at), max(end, other.end)
                grown = True
    return sorted(period, key=lambda s: s.end)


def recovery_bound(config: ClientConfig, window: float, extra_wait: float = 0.0) -> float:
    """How long after a fault window the client may take to register or update again.

    The longest single wait the client can be in when the window ends — the
    outer reconnect delay reached by then (assuming the largest first delay),
    a step of the registration retry procedure, the Update interval, or a
    server-imposed wait (``extra_wait``, e.g. Max-Age) — plus one full
    exchange (MAX_TRANSMIT_WAIT) to complete the Register or Update.
    """
    policy = config.reconnect
    delay = policy.first_delay_max
    elapsed = 0.0
    while elapsed + delay < window and delay < policy.max_delay:
        elapsed += delay
        delay = min(delay * policy.multiplier, policy.max_delay)
    account = config.servers[0]
    retry = account.retry
    steps = max(0, retry.communication_retry_count - 2)
    inner: float = retry.communication_retry_timer * 2.0**steps
    if retry.communication_sequence_retry_count > 1:
        inner = max(inner, retry.communication_sequence_delay_timer)
    mtw = config.coap.max_transmit_wait
    lifetime = float(account.lifetime)
    update = lifetime / 2 if lifetime / 2 < mtw else lifetime - mtw
    return max(delay, inner, update, extra_wait) + mtw


# -- running ----------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    time: float  # real seconds since the scenario started
    source: str  # "fault", "server", "client 0"…
    text: str
    event: ev.Event | None = None


@dataclass
class ClientReport:
    index: int
    endpoint: str
    events: list[tuple[float, ev.Event]] = field(default_factory=list)  # when recording
    successes: list[float] = field(default_factory=list)  # times of registered / updated
    produced: int = 0
    delivered: int = 0
    out_of_order: list[int] = field(default_factory=list)
    store_dropped: int = 0
    notify_errors: int = 0  # every reported ``notify`` error (most are retried later)
    cancelled: int = 0  # notify errors that ended their observation (Reset)
    still_stored: int = 0
    unobserved: int = 0


@dataclass
class Recovery:
    step: int
    client: int
    window_end: float
    recovered_after: float | None
    bound: float


@dataclass
class Verdict:
    passed: bool
    reasons: list[str]
    recoveries: list[Recovery]
    clients: list[ClientReport]
    counters: dict[str, int]
    server_duplicates: int = 0


class ScenarioRunner:
    """Runs one :class:`Scenario`; :meth:`run` returns the :class:`Verdict`."""

    def __init__(
        self,
        scenario: Scenario,
        on_entry: Callable[[TimelineEntry], None] | None = None,
        *,
        record: bool = True,
    ) -> None:
        """``record=False`` keeps no timeline or event lists (the soak runs for
        minutes with many clients and measures memory): only the figures the
        verdict needs. ``expect`` patterns need the events, so they need ``record``.
        """
        if not record and any(step.expect for step in scenario.steps):
            raise ConfigError("expect patterns need a recorded run")
        self.scenario = scenario
        self.on_entry = on_entry
        self.record = record
        self.timeline: list[TimelineEntry] = []
        self.reports: list[ClientReport] = []
        self.errors: list[str] = []
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[Client] = []
        self._objects: list[NotifyingObjects] = []
        self._observed: dict[str, int] = {}  # endpoint → server key of its observation
        self._observing: set[str] = set()
        self._sessions: dict[str, tuple[str, Address | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart: Step | None = None

    # ------------------------------------------------------------------ helpers
    def scaled(self, seconds: float) -> float:
        return seconds * self.scenario.time_scale

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() - self._t0

    def _add(self, source: str, text: str, event: ev.Event | None = None) -> None:
        if not self.record and self.on_entry is None:
            return
        entry = TimelineEntry(self.now(), source, text, event)
        if self.record:
            self.timeline.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A failing harness or client task fails the verdict like any unhandled exception."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(f"task {task.get_coro()!r} raised {exc!r}")

    # ------------------------------------------------------------------ run
    async def run(self) -> Verdict:
        sc = self.scenario
        loop = asyncio.get_running_loop()
        self._loop = loop
        previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)
        resolver = loop if isinstance(loop, ResolverLoop) else None
        if resolver is None and any(s.fault == "dns" for s in sc.steps):
            raise ConfigError("dns faults need the scenario's own event loop (run_scenario)")
        self._t0 = loop.time()
        probe = client_config(sc, "127.0.0.1:1", 0)
        core = ObservingCore(params=probe.coap, rng=random.Random(sc.seed))
        server_class = TestbedServer if self.record else LeanTestbedServer
        server = server_class("127.0.0.1", 0, core=core)
        server.on_event = self._on_server_event
        await server.start()
        self._server = server

        async def restart() -> None:
            await self._restart_server(server)

        proxy = FaultProxy(("127.0.0.1", server.port), seed=sc.seed, restart_upstream=restart)
        await proxy.start()
        self._proxy = proxy
        host = "127.0.0.1"
        if resolver is not None:
            resolver.names[SERVER_NAME] = "127.0.0.1"
            host = SERVER_NAME
        self._add("----", f"server on 127.0.0.1:{server.port}, proxy on 127.0.0.1:{proxy.port}")
        if sc.time_scale != 1:
            self._add("----", f"time scale {sc.time_scale:g}: scenario times × {sc.time_scale:g}")
        try:
            for i in range(sc.clients):
                self._start_client(i, f"{host}:{proxy.port}")
            if sc.notify is not None:
                self._spawn(self._produce(sc.notify))
            for i, step in enumerate(sc.steps, 1):
                self._spawn(self._apply(i, step, resolver))
            await asyncio.sleep(self.scaled(sc.duration))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._collect()
        finally:
            for client in self._clients:
                await client.stop()
            await proxy.stop()
            await server.stop()
            loop.set_exception_handler(previous_handler)
        verdict = self._judge(proxy)
        return verdict

    def _start_client(self, index: int, hostport: str) -> None:
        config = client_config(self.scenario, hostport, index)
        objects = NotifyingObjects(config.endpoint, [s.short_server_id for s in config.servers])
        client = Client(config, objects, rng=random.Random(self.scenario.seed * 1000 + index))
        report = ClientReport(index, config.endpoint)
        source = f"client {index}" if self.scenario.clients > 1 else "client"

        def on_event(event: ev.Event) -> None:
            now = self.now()
            if event.name in ("registered", "updated"):
                report.successes.append(now)
            elif isinstance(event, ev.Error) and event.request == "notify":
                report.notify_errors += 1
                if (event.action or "").startswith("cancel_observation"):
                    report.cancelled += 1
            if self.record:
                report.events.append((now, event))
            self._add(source, event.name, event)

        client.subscribe(on_event)
        self._clients.append(client)
        self._objects.append(objects)
        self.reports.append(report)
        self._spawn(client.start())

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.errors.append(f"{context.get('message')}: {exc!r}")
        loop.default_exception_handler(context)

    # ------------------------------------------------------------------ faults
    async def _apply(self, index: int, step: Step, resolver: ResolverLoop | None) -> None:
        proxy = self._proxy
        await asyncio.sleep(max(0.0, self.scaled(step.at) - self.now()))
        length = self.scaled(step.duration)
        self._add("fault", f"#{index} {step.describe()} for {step.duration:g} s")
        rule: CoapRule | None = None
        if step.fault in _LINK_FAULTS:
            settings: dict[str, dict[str, Any]] = {
                "blackhole": {"blackhole": True},
                "loss": {"drop": step.probability},
                "delay": {"delay": self.scaled(step.delay), "jitter": self.scaled(step.jitter)},
            }
            setting = settings.get(step.fault, {step.fault: step.probability})
            proxy.set_faults(step.direction, **setting)
        elif step.fault == "unreachable":
            await proxy.set_unreachable(True)
        elif step.fault in ("respond", "reset", "silence"):
            action = {
                "respond": RuleAction.RESPOND,
                "reset": RuleAction.RESET,
                "silence": RuleAction.DROP,
            }[step.fault]
            max_age = self._wire_max_age(step) if step.max_age is not None else None
            rule = proxy.add_rule(
                CoapRule(step.match, action, step.code, max_age=max_age, count=step.count)
            )
        elif step.fault == "dns":
            assert resolver is not None
            resolver.names[SERVER_NAME] = None
        elif step.fault == "restart":
            self._restart = step
            await proxy.restart_upstream()
            self._add("fault", f"#{index} server is back")
            return
        try:
            if step.fault == "flap":
                await self._flap(step, length)
            else:
                await asyncio.sleep(length)
        finally:
            if step.fault == "unreachable":
                await proxy.set_unreachable(False)
            elif step.fault == "dns" and resolver is not None:
                resolver.names[SERVER_NAME] = "127.0.0.1"
            elif rule is not None:
                proxy.remove_rule(rule)
            else:
                proxy.clear_faults(step.direction)
        self._add("fault", f"#{index} ends")

    def _wire_max_age(self, step: Step) -> int:
        """The Max-Age a respond step puts on the wire: scaled, but whole seconds (>= 1)."""
        if step.fault != "respond" or step.max_age is None:
            return 0
        return max(1, round(self.scaled(step.max_age)))

    async def _flap(self, step: Step, length: float) -> None:
        end = self.now() + length
        down = True
        while (left := end - self.now()) > 0:
            self._proxy.set_faults("both", blackhole=down)
            await asyncio.sleep(min(left, self.scaled(step.down if down else step.up)))
            down = not down

    async def _restart_server(self, server: TestbedServer) -> None:
        step = self._restart
        assert step is not None
        await server.stop()
        server.core.forget_peers()
        if step.forget_registrations:
            server.core.registrations.clear()
        self._observed.clear()  # a restarted server has forgotten its observations
        await asyncio.sleep(max(self.scaled(step.duration), 0.001))
        await server.start()

    # ------------------------------------------------------------------ notifications
    def _on_server_event(self, event: ServerEvent) -> None:
        endpoint = event.endpoint
        if endpoint is not None and event.kind in ("registered", "expired", "deregistered"):
            reg = self._server.core.registrations.get(endpoint)
            session = ("", None) if reg is None else (reg.location, reg.address)
            if self._sessions.get(endpoint) != session:
                # A new registration, or one from a new address (a NoSec reconnect
                # is a new session, spec §10): the old observation is gone.
                self._sessions[endpoint] = session
                self._forget_observation(endpoint)
        if event.kind in ("registered", "updated") and event.endpoint is not None:
            if event.kind == "registered" or event.endpoint not in self._observed:
                self._add("server", f"{event.kind} {event.endpoint}")
            if (
                self.scenario.notify is not None
                and event.endpoint not in self._observed
                and event.endpoint not in self._observing
            ):
                self._observing.add(event.endpoint)
                self._spawn(self._observe(event.endpoint))
        elif event.kind in ("deregistered", "expired"):
            self._add("server", f"{event.kind} {event.endpoint}")

    def _forget_observation(self, endpoint: str) -> None:
        key = self._observed.pop(endpoint, None)
        if key is not None and self._loop is not None:
            self._server.core.cancel_request(endpoint, key, self._loop.time())

    async def _observe(self, endpoint: str) -> None:
        """What an LwM2M server does after a registration: observe (again)."""
        server = self._server
        msg = Message(
            type=MessageType.CON,
            code=Code.GET,
            options=make_options(path=list(OBSERVED_PATH), observe=0),
        )
        try:
            result = await server.request(
                endpoint, msg, timeout=server.core.params.max_transmit_wait, keep_open=True
            )
        except (LookupError, TimeoutError, asyncio.CancelledError):
            return  # not registered (any more), or no answer: the next registration retries
        finally:
            self._observing.discard(endpoint)
        response = result.result.response
        if response is not None and response.observe is not None:
            self._observed[endpoint] = result.key
            self._add("server", f"observing {endpoint} /{'/'.join(OBSERVED_PATH)}")

    async def _produce(self, spec: NotifySpec) -> None:
        stop = spec.stop
        if stop is None:
            stop = max(spec.start, self.scenario.duration - (self.scenario.bound or 0.0))
        await asyncio.sleep(self.scaled(spec.start))
        while self.now() < self.scaled(stop):
            for client, objects in zip(self._clients, self._objects, strict=True):
                assert self._loop is not None
                if objects.produce(client.now()):
                    client.poll()
            await asyncio.sleep(self.scaled(spec.every))

    # ------------------------------------------------------------------ verdict
    def _collect(self) -> None:
        core = self._server.core
        assert isinstance(core, ObservingCore)
        for report, client, objects in zip(self.reports, self._clients, self._objects, strict=True):
            ssid = client.config.servers[0].short_server_id
            report.produced = objects.produced
            report.unobserved = objects.unobserved
            delivery = core.received.get(report.endpoint, Delivery())
            report.delivered = delivery.count
            report.out_of_order = delivery.out_of_order
            report.store_dropped = client.engine.dropped_notifications(ssid)
            report.still_stored = len(client.engine.stored_notifications(ssid))

    def _judge(self, proxy: FaultProxy) -> Verdict:
        sc = self.scenario
        reasons: list[str] = list(f"unhandled exception: {e}" for e in self.errors)
        recoveries: list[Recovery] = []
        probe = client_config(sc, "127.0.0.1:1", 0)
        for index, step in enumerate(sc.steps, 1):
            # Overlapping windows are one fault period: recovery counts from its end.
            period = fault_period(sc.steps, step)
            window_end = self.scaled(period[-1].end if period else step.end)
            if sc.bound is not None:
                bound = self.scaled(sc.bound)
            else:
                start = self.scaled(min(s.at for s in period))
                extra = max(self._wire_max_age(s) for s in period)
                bound = recovery_bound(probe, window_end - start, extra)
            for report in self.reports:
                i = bisect.bisect_left(report.successes, window_end)
                done = report.successes[i] if i < len(report.successes) else None
                after = None if done is None else done - window_end
                recoveries.append(Recovery(index, report.index, window_end, after, bound))
                who = f"client {report.index}"
                if after is None:
                    reasons.append(
                        f"step #{index} ({step.describe()}): {who} never registered or "
                        f"updated again after the window ended at {window_end:.2f} s"
                    )
                elif after > bound:
                    reasons.append(
                        f"step #{index} ({step.describe()}): {who} recovered {after:.2f} s after "
                        f"the window, bound is {bound:.3g} s"
                    )
                start = self.scaled(step.at)
                for pattern in step.expect:
                    if not any(
                        start <= t <= window_end + bound and pattern.matches(e)
                        for t, e in report.events
                    ):
                        reasons.append(
                            f"step #{index} ({step.describe()}): {who} never showed "
                            f"'{pattern}' during the window"
                        )
        for report in self.reports:
            who = f"client {report.index}"
            if report.out_of_order:
                reasons.append(
                    f"{who}: notifications arrived out of order (late: {report.out_of_order})"
                )
            lost = report.produced - report.delivered
            # The engine counts what its policy discards (store overflow, a
            # timed-out CON superseded by newer values, a store dropped with its
            # registration) in dropped_notifications and keeps the rest for
            # re-registration; only a Reset ends a notification with an error alone.
            explained = report.store_dropped + report.cancelled + report.still_stored
            if lost > explained:
                reasons.append(
                    f"{who}: {lost} notification(s) produced but not delivered, only "
                    f"{explained} accounted for (dropped by policy {report.store_dropped}, "
                    f"cancelled by reset {report.cancelled}, still stored {report.still_stored})"
                )
            if sc.notify is not None and report.produced == 0:
                reasons.append(f"{who}: no notification was ever produced (never observed)")
        core = self._server.core
        assert isinstance(core, ObservingCore)
        return Verdict(
            passed=not reasons,
            reasons=reasons,
            recoveries=recoveries,
            clients=self.reports,
            counters=dict(proxy.counters),
            server_duplicates=core.duplicates,
        )


def run_scenario(
    scenario: Scenario, on_entry: Callable[[TimelineEntry], None] | None = None
) -> Verdict:
    """Run on a fresh :class:`ResolverLoop` (needed for DNS faults) and return the verdict."""
    loop = ResolverLoop()
    try:
        return loop.run_until_complete(ScenarioRunner(scenario, on_entry).run())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


__all__ = [
    "SERVER_NAME",
    "ClientReport",
    "Delivery",
    "Expectation",
    "LeanTestbedServer",
    "NotifyingObjects",
    "ObservingCore",
    "Recovery",
    "ResolverLoop",
    "Scenario",
    "ScenarioRunner",
    "Step",
    "TimelineEntry",
    "Verdict",
    "client_config",
    "load_scenario",
    "recovery_bound",
    "run_scenario",
]
