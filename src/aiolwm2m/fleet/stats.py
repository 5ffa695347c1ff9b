"""What a fleet did, counted from its devices' events: state counts, rates, round trips.

One :class:`FleetStats` watches the devices of one shard (a process, a Locust
worker, a simulation) through their event callbacks and keeps per device only
a state byte and two start times, so it costs a few bytes a device. Every
``sample_interval`` the runner takes a :class:`Window` — the state counts at
that instant and what happened since the last one — which is plain data: it
crosses process pipes and is merged with the other shards' (:func:`merge`)
into the fleet's timeline. Round trips are from ``registering`` to
``registered`` and from ``update_sent`` to ``updated`` (retransmissions
included, as a device experiences them). Update lateness is how long after
its planned instant the timer that sent an Update ran (loop stalls show here).
"""

from __future__ import annotations

import enum
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine import ServerState

__all__ = [
    "Category",
    "FleetStats",
    "Histogram",
    "Listener",
    "TimerClock",
    "Totals",
    "Window",
    "merge",
    "percentile",
]


class Category(enum.IntEnum):
    """Where a device stands, as the status line and the timeline count it."""

    WAITING = 0  # not started yet (ramp-up) or stopped
    CONNECTING = 1  # opening the link or registering
    REGISTERED = 2
    BACKING_OFF = 3  # waiting to retry (§4 retry procedure or the outer reconnect loop)
    FAILED = 4  # gave up with nothing scheduled

    @property
    def label(self) -> str:
        return self.name.lower()


_OF_STATE = {
    ServerState.IDLE: Category.WAITING,
    ServerState.CONNECTING: Category.CONNECTING,
    ServerState.REGISTERING: Category.CONNECTING,
    ServerState.BOOTSTRAPPING: Category.CONNECTING,
    ServerState.DEREGISTERING: Category.CONNECTING,
    ServerState.REGISTERED: Category.REGISTERED,
    ServerState.BACKOFF: Category.BACKING_OFF,
    ServerState.SUSPENDED: Category.BACKING_OFF,
    ServerState.OFFLINE: Category.BACKING_OFF,
    ServerState.FAILED: Category.FAILED,
}


class TimerClock(Protocol):
    """What the stats read from a device's runtime: the lateness of the timer running now."""

    @property
    def timer_lateness(self) -> float | None: ...


#: Told each finished exchange as it happens: (kind, seconds, error code or None), kind
#: being register, update, notify, or the request an error concerns.
Listener = Callable[[str, float, str | None], None]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0 … 1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Window:
    """One timeline row of one shard (or, merged, of the fleet)."""

    t: float  # seconds since the fleet started, end of the window
    counts: list[int]  # devices per Category at ``t``
    registrations: int = 0
    reregistrations: int = 0  # Registered of a device that had registered before
    updates: int = 0
    notifications: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    register_rtt: list[float] = field(default_factory=list)
    update_rtt: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)

    def row(self, interval: float) -> dict[str, Any]:
        """The CSV/plot row: counts, rates per second and p50/p99 in milliseconds."""
        out: dict[str, Any] = {"t": round(self.t, 3)}
        for category in Category:
            out[category.label] = self.counts[category]
        out["registrations_per_s"] = round(self.registrations / interval, 3)
        out["updates_per_s"] = round(self.updates / interval, 3)
        out["notifications_per_s"] = round(self.notifications / interval, 3)
        out["errors"] = sum(self.errors.values())
        out["reregistrations"] = self.reregistrations
        for name, values in (("register", self.register_rtt), ("update", self.update_rtt)):
            for q in (50, 99):
                value = percentile(values, q / 100)
                out[f"{name}_p{q}_ms"] = "" if value is None else round(value * 1000, 3)
        return out


def merge(windows: Iterable[Window]) -> Window:
    """The shards' windows of one instant as one fleet window."""
    items = list(windows)
    out = Window(t=max(w.t for w in items), counts=[0] * len(Category))
    for w in items:
        out.counts = [a + b for a, b in zip(out.counts, w.counts, strict=True)]
        out.registrations += w.registrations
        out.reregistrations += w.reregistrations
        out.updates += w.updates
        out.notifications += w.notifications
        out.errors.update(w.errors)
        out.register_rtt += w.register_rtt
        out.update_rtt += w.update_rtt
        out.lateness += w.lateness
    return out


class Histogram:
    """Log-spaced buckets 2 % wide from 1 µs: percentiles of millions of round trips
    in bounded memory, mergeable across shards and processes (to 2 %)."""

    __slots__ = ("buckets", "count", "max")
    _BASE = 1e-6
    _LOG_STEP = math.log(1.02)

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, values: Iterable[float]) -> None:
        for v in values:
            self.buckets[int(math.log(max(v, self._BASE) / self._BASE) / self._LOG_STEP)] += 1
            self.count += 1
            self.max = max(self.max, v)

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0 … 1): the middle of its bucket, None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(self.max, self._BASE * math.exp((index + 0.5) * self._LOG_STEP))
        return self.max


@dataclass
class Totals:
    """A whole run (of a shard or, merged, of the fleet) in bounded memory."""

    registrations: int = 0
    reregistrations: int = 0
    updates: int = 0
    notifications: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    register_rtt: Histogram = field(default_factory=Histogram)
    update_rtt: Histogram = field(default_factory=Histogram)
    lateness: Histogram = field(default_factory=Histogram)
    counts: list[int] = field(default_factory=lambda: [0] * len(Category))

    def add(self, w: Window) -> None:
        self.registrations += w.registrations
        self.reregistrations += w.reregistrations
        self.updates += w.updates
        self.notifications += w.notifications
        self.errors.update(w.errors)
        self.register_rtt.add(w.register_rtt)
        self.update_rtt.add(w.update_rtt)
        self.lateness.add(w.lateness)
        self.counts = list(w.counts)

    def merge(self, other: Totals) -> None:
        """Add another shard's totals (its final counts add up too)."""
        self.registrations += other.registrations
        self.reregistrations += other.reregistrations
        self.updates += other.updates
        self.notifications += other.notifications
        self.errors.update(other.errors)
        self.register_rtt.merge(other.register_rtt)
        self.update_rtt.merge(other.update_rtt)
        self.lateness.merge(other.lateness)
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: counts, errors by code, p50/p99/max in milliseconds."""
        out: dict[str, Any] = {
            "registrations": self.registrations,
            "reregistrations": self.reregistrations,
            "updates": self.updates,
            "notifications": self.notifications,
            "errors": dict(sorted(self.errors.items())),
            "final": {c.label: self.counts[c] for c in Category},
        }
        for name, h in (
            ("register_rtt", self.register_rtt),
            ("update_rtt", self.update_rtt),
            ("update_lateness", self.lateness),
        ):
            figures = {f"p{q}": h.quantile(q / 100) for q in (50, 99)}
            figures["max"] = h.max if h.count else None
            out[f"{name}_ms"] = {
                k: None if v is None else round(v * 1000, 3) for k, v in figures.items()
            }
        return out


class _Watch:
    """One device's event callback: a slotted object is a third of a closure's size."""

    __slots__ = ("clock", "index", "stats")

    def __init__(self, stats: FleetStats, index: int, clock: TimerClock) -> None:
        self.stats, self.index, self.clock = stats, index, clock

    def __call__(self, event: ev.Event) -> None:
        self.stats.event(self.index, event, self.clock.timer_lateness)


class FleetStats:
    """Counts the events of ``count`` devices; see the module docstring."""

    def __init__(self, count: int, origin: float = 0.0, listener: Listener | None = None) -> None:
        self.origin = origin  # the runtime clock's value when the fleet started
        self.listener = listener
        self.category = bytearray(count)  # Category per device
        self.counts = [0] * len(Category)
        self.counts[Category.WAITING] = count
        self._register_start = array("d", bytes(8 * count))
        self._update_start = array("d", bytes(8 * count))
        self._registered_once = bytearray(count)
        self._reconnecting = bytearray(count)
        self._window = self._new_window(0.0)
        #: Every finished window, added up.
        self.total = Totals()

    def _new_window(self, t: float) -> Window:
        return Window(t=t, counts=list(self.counts))

    # ------------------------------------------------------------------ devices
    def watch(self, index: int, clock: TimerClock) -> Callable[[ev.Event], None]:
        """The event callback for device ``index``, whose runtime is ``clock``."""
        return _Watch(self, index, clock)

    def notified(self, count: int = 1) -> None:
        self._window.notifications += count
        if self.listener is not None:
            self.listener("notify", 0.0, None)

    def _set(self, index: int, category: Category) -> None:
        old = self.category[index]
        if old != category:
            self.counts[old] -= 1
            self.counts[category] += 1
            self.category[index] = category

    def event(self, index: int, event: ev.Event, lateness: float | None = None) -> None:
        w = self._window
        if isinstance(event, ev.StateChanged):
            category = _OF_STATE.get(event.new, Category.CONNECTING)
            if category is Category.FAILED and self._reconnecting[index]:
                category = Category.BACKING_OFF
            elif category is not Category.FAILED:
                self._reconnecting[index] = 0
            self._set(index, category)
        elif isinstance(event, ev.Registering):
            self._register_start[index] = event.time
        elif isinstance(event, ev.Registered):
            w.registrations += 1
            if self._registered_once[index]:
                w.reregistrations += 1
            self._registered_once[index] = 1
            rtt = event.time - self._register_start[index]
            w.register_rtt.append(rtt)
            if self.listener is not None:
                self.listener("register", rtt, None)
        elif isinstance(event, ev.UpdateSent):
            self._update_start[index] = event.time
            if lateness is not None:
                w.lateness.append(lateness)
        elif isinstance(event, ev.Updated):
            w.updates += 1
            rtt = event.time - self._update_start[index]
            w.update_rtt.append(rtt)
            if self.listener is not None:
                self.listener("update", rtt, None)
        elif isinstance(event, ev.Error):
            key = (
                event.code.value
                if event.coap_code is None
                else f"{event.code.value} {event.coap_code}"
            )
            w.errors[key] += 1
            if self.listener is not None:
                kind = "error" if event.request is None else event.request.value
                self.listener(kind, 0.0, key)
        elif isinstance(event, ev.ReconnectScheduled):
            self._reconnecting[index] = 1
            if self.category[index] == Category.FAILED:
                self._set(index, Category.BACKING_OFF)

    # ------------------------------------------------------------------ the timeline
    def take(self, now: float) -> Window:
        """Close the current window at runtime time ``now`` and start the next."""
        done = self._window
        done.t = now - self.origin
        done.counts = list(self.counts)
        self._window = self._new_window(done.t)
        self.total.add(done)
        return done
