"""Sans-IO Observe scheduler: when to send which notification (LwM2M 1.1.1 §5.1.2, RFC 7641).

The data model (``client/operations/``) registers each accepted Observe or
Observe-Composite request here as an :class:`Observation`; this module decides
*when* a notification is due and builds the complete 2.05 message, while
reading values stays behind the small :class:`Sampler` protocol. Keeping the
rules apart from the object tree makes them testable with a plain float clock
and a fake sampler, and keeps the per-observation state small enough for
thousands of simulated devices in one process.

Rules, per observed path ``i`` with effective attributes ``a_i`` (inheritance
object -> instance -> resource is the sampler's job):

* a *trigger* on path ``i`` is sent at ``last notification + pmin_i``, or at
  once if that is already past (a change during pmin goes out when pmin ends);
* ``pmax`` (ignored unless greater than pmin) forces a notification that long
  after the previous one, change or not;
* with ``gt``/``lt``/``st`` on a numeric single resource only threshold events
  trigger: the value crossing gt or lt between two samples (either direction),
  or moving by at least st from the last *notified* value; several set
  attributes combine with OR. Without them any change triggers;
* ``epmin``/``epmax`` bound the evaluation period: a change reported by the
  application is evaluated no sooner than epmin after the previous sample, and
  the value is sampled at least every epmax even without a report, so values
  that change silently (sensors read on demand) are still noticed;
* a composite observation notifies (all its paths) when any path's rule
  fires; its pmax is the smallest valid one, its evaluation period the most
  restrictive epmin and the smallest epmax.

Every sample (evaluation or notification) updates the remembered values, so
a notification's content is always the new baseline. Triggers latch: a
crossing seen during pmin is reported when pmin ends even if the value went
back, because the spec says the notification "MUST be sent" then.

Timers live in one heap with lazy deletion (an entry is valid while its time
equals the observation's current deadline), so :meth:`Observer.next_timer` is
O(1) amortised and never scans observations.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Iterable, KeysView, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiolwm2m.client.engine import Notification
from aiolwm2m.coap.message import Code, Message, MessageType, OptionNumber, encode_uint
from aiolwm2m.errors import ConfigError, Lwm2mError
from aiolwm2m.lwm2m.attributes import Attributes
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record

__all__ = [
    "SEQUENCE_MODULUS",
    "InvalidObservationError",
    "Observation",
    "ObserveSettings",
    "ObservedPathGone",
    "Observer",
    "SamplePending",
    "Sampler",
]

#: The Observe option carries a 24-bit sequence number that wraps (RFC 7641 §4.4).
SEQUENCE_MODULUS = 1 << 24


class ObservedPathGone(Lwm2mError):
    """Raised by :meth:`Sampler.sample` when an observed path no longer exists."""


class SamplePending(Lwm2mError):
    """Raised by :meth:`Sampler.sample` while a value comes from an async read hook.

    The sampler awaits the hook (a runtime job); the observation waits and
    runs again at :meth:`Observer.resume`, so a notification carries the
    hook's answer, never a stale stored value.
    """


class InvalidObservationError(Lwm2mError, ValueError):
    """An :class:`Observation` that cannot be registered (no path, token too long)."""


class Sampler(Protocol):
    """How the scheduler reads the data model; implemented by the object tree."""

    def sample(
        self, ssid: int, paths: Sequence[Path], content_format: int
    ) -> tuple[bytes, list[Record]]:
        """Encode ``paths`` for server ``ssid``: the payload and the records in it.

        Raises :class:`ObservedPathGone` if a path was deleted.
        """

    def attributes(self, ssid: int, path: Path) -> Attributes:
        """Effective notification attributes of ``path`` for ``ssid`` (inheritance applied)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One accepted Observe (one path) or Observe-Composite (several paths) request."""

    ssid: int
    token: bytes
    paths: tuple[Path, ...]
    content_format: int

    def __post_init__(self) -> None:
        if not self.paths:
            raise InvalidObservationError("an observation needs at least one path")
        if len(self.token) > 8:
            raise InvalidObservationError(f"token longer than 8 bytes: {self.token.hex()}")


@dataclass(frozen=True, slots=True)
class ObserveSettings:
    """Client-wide notification policy (not per server: attributes cover that).

    ``confirmable`` sends every notification as CON; otherwise they are NON
    except that one is made CON when ``max_non_interval`` seconds passed since
    the last CON (or the registration), as RFC 7641 §4.5 requires at least
    every 24 hours so a client that lost interest is found out.
    ``initial_sequence`` is the first Observe value the observer hands out;
    1, not 0, because node-coap (under lwm2m-node-lib) only accepts a value
    greater than its starting 0 and silently drops a first response with
    Observe 0 (valid per RFC 7641 §3.4; see tests/interop).
    """

    confirmable: bool = False
    max_non_interval: float = 86400.0
    initial_sequence: int = 1

    def __post_init__(self) -> None:
        if not self.max_non_interval > 0:
            raise ConfigError(f"max_non_interval must be positive: {self.max_non_interval!r}")
        if not 0 <= self.initial_sequence < SEQUENCE_MODULUS:
            raise ConfigError(f"initial_sequence must fit 24 bits: {self.initial_sequence!r}")


@dataclass(frozen=True, slots=True)
class _Rules:
    """Timing and threshold rules of one observation, derived from its attributes.

    Shared between observations with equal attributes (see :func:`_rules`), so
    thousands of devices observing with the same attributes cost one object.
    """

    pmin: tuple[float, ...]  # per path
    pmax: float | None  # smallest valid pmax over the paths
    epmin: float
    epmax: float | None
    thresholds: tuple[Attributes | None, ...]  # per path: set when gt/lt/st is
    threshold_mask: int  # bit i set when path i has thresholds
    # Every path's pmin when they are all equal (always for a single path): then
    # "a pending path's pmin is over" needs no loop over the paths.
    common_pmin: float | None
    # No attribute that delays, repeats or filters (pmin, pmax, epmin, epmax,
    # thresholds: the default): every change goes out at once, nothing is timed.
    immediate: bool


@functools.lru_cache(maxsize=256)
def _rules(attrs: tuple[Attributes, ...]) -> _Rules:
    pmins = tuple(float(a.pmin or 0) for a in attrs)
    # pmax is ignored when not greater than pmin (which also covers pmax=0).
    pmaxes = [float(a.pmax or 0) for a in attrs]
    pmaxes = [pmax for pmax, pmin in zip(pmaxes, pmins, strict=True) if pmax > pmin]
    epmin = float(max(a.epmin or 0 for a in attrs))
    epmaxes = [float(a.epmax) for a in attrs if a.epmax]
    epmax = min(epmaxes) if epmaxes and min(epmaxes) > epmin else None
    thresholds = tuple(
        a if a.gt is not None or a.lt is not None or a.st is not None else None for a in attrs
    )
    mask = sum(1 << i for i, t in enumerate(thresholds) if t is not None)
    common = pmins[0] if len(set(pmins)) == 1 else None
    pmax = min(pmaxes) if pmaxes else None
    immediate = common == 0 and pmax is None and epmin == 0 and epmax is None and not mask
    return _Rules(pmins, pmax, epmin, epmax, thresholds, mask, common, immediate)


class _Obs:
    """Mutable per-observation state; slots keep it near 160 bytes."""

    __slots__ = (
        "content_format",
        "deadline",
        "dirty",
        "ids",
        "immediate",
        "key",
        "label",
        "last_con",
        "last_eval",
        "last_notify",
        "obs",
        "pending",
        "prev",
        "rules",
        "sent",
        "simple",
    )

    def __init__(self, obs: Observation, rules: _Rules, now: float) -> None:
        self.obs = obs
        # What every notification and lookup repeats, made once: the key, the
        # Content-Format option, the path text events carry, and the one
        # observed path's ids (None for a composite) that a change is matched with.
        self.key = (obs.ssid, obs.token)
        self.content_format = (_CONTENT_FORMAT, encode_uint(obs.content_format))
        self.label = _describe(obs)
        self.ids = obs.paths[0].ids if len(obs.paths) == 1 else None
        self.use(rules)
        self.last_notify = now  # the first 2.05 response counts as a notification
        self.last_con = now
        self.last_eval = now
        self.pending = 0  # bit i: path i's rule fired, waiting for pmin_i
        self.dirty = 0  # bit i: the application changed path i, not evaluated yet
        # Per path, at the last sample: the numeric value for threshold paths,
        # else that sample's records (changes seen by periodic sampling). The
        # records are kept, not reduced to a hash, so the usual notification of
        # an "any change" rule, which never compares them, costs nothing here.
        self.prev: list[float | Sequence[Record] | None] = [None] * len(obs.paths)
        # Per threshold path: the value in the last notification (for st).
        self.sent: list[float | None] = [None] * len(obs.paths)
        self.deadline: float | None = None

    def use(self, rules: _Rules) -> None:
        """Follow ``rules``; what every step asks of them is copied to plain attributes."""
        self.rules = rules
        self.immediate = rules.immediate
        # One path without thresholds: a sample is its baseline as it is (no loop).
        self.simple = self.ids is not None and not rules.threshold_mask

    def matches(self, path: Path) -> int:
        """The bits of the observed paths at, above or below the changed ``path``
        (a composite's: one path is matched by :meth:`Observer.values_changed` itself)."""
        bits = 0
        for i, observed in enumerate(self.obs.paths):
            if observed.contains(path) or path.contains(observed):
                bits |= 1 << i
        return bits


def _numeric(records: Sequence[Record], path: Path) -> float | None:
    """The number at exactly ``path`` (last one if timestamped), None if not numeric."""
    for record in reversed(records):
        if record.path == path:
            value = record.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return None
    return None


def _changed(
    before: float | Sequence[Record] | None, records: Sequence[Record], path: Path, whole: bool
) -> bool:
    """Whether the values under ``path`` differ between the samples ``before`` and ``records``
    (``before`` not a sample: changed)."""
    if before is None or isinstance(before, float):
        return True
    if whole:  # a record is (path, value, time): its first two fields, without a filter
        return [record[:2] for record in before] != [record[:2] for record in records]
    return [(r.path, r.value) for r in before if path.contains(r.path)] != [
        (r.path, r.value) for r in records if path.contains(r.path)
    ]


def _crossed(before: float, after: float, threshold: float | None, above: bool) -> bool:
    """The value moved to the other side of ``threshold`` (``above``: side is ``> gt``)."""
    if threshold is None:
        return False
    if above:
        return (before > threshold) != (after > threshold)
    return (before < threshold) != (after < threshold)


class Observer:
    """All observations of one client; see the module docstring for the rules."""

    def __init__(self, sampler: Sampler, settings: ObserveSettings | None = None) -> None:
        self._sampler = sampler
        settings = settings if settings is not None else ObserveSettings()
        # Read for every notification: plain attributes rather than two lookups each.
        self._confirmable = settings.confirmable
        self._max_non_interval = settings.max_non_interval
        self._obs: dict[tuple[int, bytes], _Obs] = {}
        # Observations by the object instance their path lies in (shorter ids
        # for object and root paths), so a resource change looks at a few lists
        # instead of every observation. Lists, not sets: they hold one or two
        # observations, and a set costs four times the memory.
        self._index: dict[tuple[int, ...], list[_Obs]] = {}
        # How many observations have an object or root path (indexed by fewer
        # than two ids): while none has, a resource change looks at one list.
        self._shallow = 0
        self._heap: list[tuple[float, tuple[int, bytes]]] = []
        self._outbox: list[Notification] = []
        # Observations stopped by SamplePending, until resume(); None while there are
        # none (most devices never have any: a fleet pays nothing for it).
        self._waiting: list[tuple[int, bytes]] | None = None
        # The Observe values: one counter for every observation of this client,
        # taken modulo 24 bits. Shared rather than per observation so a token
        # re-used after Cancel (or a replaced observation) never repeats or goes
        # back in numbers the server may still hold (RFC 7641 §3.4 freshness);
        # with thousands of devices per process it also saves a field per
        # observation. A C iterator: taking a value costs no Python call.
        self._sequence = itertools.count(settings.initial_sequence)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._obs)

    @property
    def busy(self) -> bool:
        """Something is observed, queued or timed: ``take_notifications`` may yield."""
        return bool(self._obs or self._outbox or self._heap)

    def keys(self) -> KeysView[tuple[int, bytes]]:
        """The (ssid, token) of every registered observation: a live view, for a caller
        that asks how many there are or whether one is, at every poll, without a call."""
        return self._obs.keys()

    def observations(self, ssid: int | None = None) -> list[Observation]:
        """The registered observations (of one server when ``ssid`` is given)."""
        return [o.obs for o in self._obs.values() if ssid is None or o.obs.ssid == ssid]

    # ------------------------------------------------------------------ registration
    def add(self, obs: Observation, now: float, *, records: Sequence[Record] | None = None) -> int:
        """Register ``obs`` (replacing one with the same ssid and token).

        Returns the Observe value for the first 2.05 response. ``records`` is
        what that response carries, used as the baseline for gt/lt/st; without
        it the sampler is asked (and :class:`ObservedPathGone` propagates, for
        the caller to answer 4.04; nothing is registered then).
        """
        key = (obs.ssid, obs.token)
        if records is None:
            _, records = self._sampler.sample(obs.ssid, obs.paths, obs.content_format)
        if key in self._obs:
            self._forget(key)
        state = _Obs(obs, self._read_rules(obs), now)
        self._baseline(state, records)
        self._obs[state.key] = state  # the key the state holds: one tuple, not two
        buckets = {p.ids[:2] for p in obs.paths}
        for bucket in buckets:
            self._index.setdefault(bucket, []).append(state)
        if any(len(bucket) < 2 for bucket in buckets):
            self._shallow += 1
        self._schedule(state)
        return next(self._sequence) % SEQUENCE_MODULUS

    def remove(self, ssid: int, token: bytes) -> bool:
        """End one observation (Cancel-Observe, Reset, failure); False if unknown."""
        if (ssid, token) not in self._obs:
            return False
        self._forget((ssid, token))
        return True

    def drop(self, ssid: int) -> None:
        """The session with ``ssid`` changed: all its observations end."""
        for key in [k for k in self._obs if k[0] == ssid]:
            self._forget(key)

    # ------------------------------------------------------------------ inputs
    def values_changed(self, paths: Sequence[Path], now: float) -> None:
        """The application changed ``paths`` (what one poll collected); observations on them,
        above or below them react, each once: a Write of several resources of an observed
        instance, or a Create under an observed object, is one notification, not one per
        path (each would carry the same values)."""
        index = self._index
        # The usual poll touches one observation: it runs without a list or a sort.
        first: _Obs | None = None
        more: dict[tuple[int, bytes], _Obs] | None = None
        for path in paths:
            ids = path.ids
            states: Iterable[_Obs]
            if len(ids) >= 2:
                states = index.get(ids[:2], ())
                if self._shallow:  # the object or the root may be observed too: rare
                    states = [*states, *index.get(ids[:1], ()), *index.get((), ())]
            else:  # an object or the root changed (instances created/deleted): rare
                states = self._obs.values()
            for state in states:
                mine = state.ids
                if mine is not None:  # one observed path, nearly always the changed one itself
                    if not (ids == mine or ids[: len(mine)] == mine or mine[: len(ids)] == ids):
                        continue
                    bits = 1
                else:
                    bits = state.matches(path)
                    if not bits:
                        continue
                state.dirty |= bits
                if first is None:
                    first = state
                elif state is not first:
                    if more is None:
                        more = {first.key: first}
                    more[state.key] = state
        if more is None:
            if first is not None:
                self._step(first, now)
            return
        obs = self._obs
        for key in sorted(more):  # sorted: notifications in a reproducible order
            state = more[key]
            if obs.get(key) is state:  # not ended by another's step
                self._step(state, now)

    def attributes_changed(self, ssid: int, now: float) -> None:
        """Write-Attributes for ``ssid`` happened: re-read attributes and reschedule.

        When a path gains or loses thresholds its remembered value changes
        meaning (number vs fingerprint), so a fresh sample becomes that path's
        baseline; the other paths keep theirs (st still counts from the value
        last sent).
        """
        for state in [s for s in self._obs.values() if s.obs.ssid == ssid]:
            rules = self._read_rules(state.obs)
            rebaseline = rules.threshold_mask ^ state.rules.threshold_mask
            state.use(rules)
            if rebaseline:
                try:
                    _, records = self._sampler.sample(
                        ssid, state.obs.paths, state.obs.content_format
                    )
                except ObservedPathGone:
                    self._gone(state, now)
                    continue
                except SamplePending:
                    self._wait(state)  # baselined by its next sample
                    continue
                self._baseline(state, records, rebaseline)
            self._step(state, now)

    # ------------------------------------------------------------------ timers and output
    def next_timer(self) -> float | None:
        """The earliest deadline (pmin end, pmax, evaluation), dropping stale heap entries."""
        heap = self._heap
        while heap:
            deadline, key = heap[0]
            state = self._obs.get(key)
            if state is not None and state.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Run every observation whose deadline is at or before ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            state = self._obs.get(key)
            if state is None or state.deadline != deadline:
                continue
            state.deadline = None  # popped: _step's reschedule must push again
            self._step(state, now)

    def resume(self, now: float) -> None:
        """Run again the observations a :class:`SamplePending` stopped (the values are in)."""
        waiting, self._waiting = self._waiting or [], None
        for key in sorted(set(waiting)):
            state = self._obs.get(key)
            if state is not None:
                self._step(state, now)

    def _wait(self, state: _Obs) -> None:
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(state.key)

    def take_notifications(self, now: float) -> list[Notification]:
        """Notifications produced so far, after running anything due at ``now``."""
        heap = self._heap
        if heap and heap[0][0] <= now:
            self.handle_timer(now)
        out, self._outbox = self._outbox, []
        return out

    # ------------------------------------------------------------------ internals
    def _read_rules(self, obs: Observation) -> _Rules:
        return _rules(tuple(self._sampler.attributes(obs.ssid, p) for p in obs.paths))

    def _forget(self, key: tuple[int, bytes]) -> None:
        state = self._obs.pop(key)
        buckets = {p.ids[:2] for p in state.obs.paths}
        for bucket in buckets:
            states = self._index[bucket]
            states.remove(state)
            if not states:
                del self._index[bucket]
        if any(len(bucket) < 2 for bucket in buckets):
            self._shallow -= 1
        if self._outbox:
            self._outbox = [n for n in self._outbox if (n.ssid, n.token) != key]

    def _step(self, state: _Obs, now: float) -> None:
        """Do whatever is due for one observation at ``now``, then reschedule it.

        A due notification is built here, the one place that sends one, rather
        than in a method of its own: every notification passes through, and
        each Python call on that path is a measurable part of its cost.
        """
        try:
            if state.immediate:  # what evaluating and pmin would conclude, without asking
                due: int = state.pending | state.dirty  # non-zero: a change waits
                state.pending = due
                state.dirty = 0
            else:
                rules = state.rules
                if state.dirty and now >= state.last_eval + rules.epmin:
                    self._evaluate(state, now, periodic=False)
                elif rules.epmax is not None and now >= state.last_eval + rules.epmax:
                    self._evaluate(state, now, periodic=True)
                due = self._notify_due(state, now)
            if due:
                obs = state.obs
                payload, records = self._sampler.sample(obs.ssid, obs.paths, obs.content_format)
                if state.simple:  # the usual baseline, without a call and a loop
                    state.prev[0] = records
                    state.sent[0] = None
                else:
                    self._baseline(state, records)
                state.last_notify = state.last_eval = now
                state.pending = state.dirty = 0
                confirmable = self._confirmable or now - state.last_con >= self._max_non_interval
                if confirmable:
                    state.last_con = now
                # Observe (6) then Content-Format (12): already in option order. The
                # Observe value is below 2**24: its minimal uint bytes (encode_uint's)
                # are its three bytes without the leading zeros, made without a call.
                sequence = next(self._sequence) % SEQUENCE_MODULUS
                options = [
                    (_OBSERVE, sequence.to_bytes(3, "big").lstrip(b"\0")),
                    state.content_format,
                ]
                message = Message(
                    _CON if confirmable else _NON, _CONTENT, 0, obs.token, options, payload
                )
                self._outbox.append(Notification(obs.ssid, obs.token, state.label, message, now))
        except ObservedPathGone:
            self._gone(state, now)
            return
        except SamplePending:
            self._wait(state)
            return
        if not state.immediate or state.deadline is not None:  # immediate: nothing is due later
            self._schedule(state)

    def _notify_due(self, state: _Obs, now: float) -> bool:
        rules = state.rules
        if rules.pmax is not None and now >= state.last_notify + rules.pmax:
            return True
        pending = state.pending
        if not pending:
            return False
        if rules.common_pmin is not None:
            return now >= state.last_notify + rules.common_pmin
        return any(
            pending >> i & 1 and now >= state.last_notify + pmin
            for i, pmin in enumerate(rules.pmin)
        )

    def _deadline(self, state: _Obs) -> float | None:
        rules = state.rules
        if not (state.pending or state.dirty) and rules.epmax is None:
            # Nothing waits for pmin or an evaluation (every notification of a
            # value that changes without pmin ends here): pmax alone, if any.
            return None if rules.pmax is None else state.last_notify + rules.pmax
        times: list[float] = []
        if rules.pmax is not None:
            times.append(state.last_notify + rules.pmax)
        if state.pending:
            times.extend(
                state.last_notify + pmin
                for i, pmin in enumerate(rules.pmin)
                if state.pending >> i & 1
            )
        if state.dirty:
            times.append(state.last_eval + rules.epmin)
        if rules.epmax is not None:
            times.append(state.last_eval + rules.epmax)
        return min(times) if times else None

    def _schedule(self, state: _Obs) -> None:
        deadline = self._deadline(state)
        if deadline == state.deadline:
            return
        state.deadline = deadline
        if deadline is None:
            return
        heap = self._heap
        if len(heap) > 2 * len(self._obs) + 64:
            # Too many stale entries (frequent reschedules): rebuild from live deadlines.
            heap[:] = [(s.deadline, k) for k, s in self._obs.items() if s.deadline is not None]
            heapq.heapify(heap)  # includes ``state``: its deadline is already set
            return
        heapq.heappush(heap, (deadline, state.key))

    def _evaluate(self, state: _Obs, now: float, *, periodic: bool) -> None:
        """Turn reported changes (``dirty``) and/or a fresh sample into triggers."""
        rules = state.rules
        hinted = state.dirty
        if (
            not periodic
            and not hinted & rules.threshold_mask
            and rules.epmin == 0
            and rules.epmax is None
        ):
            # Plain "any change" rule: trust the application, read the value
            # only once, when the notification is built.
            state.dirty = 0
            state.pending |= hinted
            return
        obs = state.obs
        # Sampled before anything changes: SamplePending leaves the state as it was.
        _, records = self._sampler.sample(obs.ssid, obs.paths, obs.content_format)
        state.dirty = 0
        state.last_eval = now
        whole = len(obs.paths) == 1
        for i, path in enumerate(obs.paths):
            bit = 1 << i
            thresholds = rules.thresholds[i]
            value = _numeric(records, path) if thresholds is not None else None
            if thresholds is not None and value is not None:
                before, sent = state.prev[i], state.sent[i]
                fired = isinstance(before, float) and (
                    _crossed(before, value, thresholds.gt, above=True)
                    or _crossed(before, value, thresholds.lt, above=False)
                )
                if thresholds.st is not None and sent is not None:
                    fired = fired or abs(value - sent) >= thresholds.st
                state.prev[i] = value
            else:
                fired = bool(hinted & bit) or _changed(state.prev[i], records, path, whole)
                state.prev[i] = records
            if fired:
                state.pending |= bit

    def _baseline(self, state: _Obs, records: Sequence[Record], mask: int = -1) -> None:
        """Remember ``records`` as both the last sample and the last notified values.

        Only for the paths in ``mask`` (all by default).
        """
        obs = state.obs
        for i, path in enumerate(obs.paths):
            if not mask >> i & 1:
                continue
            value = _numeric(records, path) if state.rules.thresholds[i] is not None else None
            if value is not None:
                state.prev[i] = state.sent[i] = value
            else:
                state.prev[i] = records
                state.sent[i] = None

    def _gone(self, state: _Obs, now: float) -> None:
        """A path vanished: a final 4.04 (no Observe option ends it, RFC 7641 §3.2).

        Sent as CON whatever the settings: it is the last word on this
        observation and a lost NON would leave the server waiting until pmax.
        """
        obs = state.obs
        self._forget(state.key)
        message = Message(type=MessageType.CON, code=Code.NOT_FOUND, token=obs.token)
        self._outbox.append(Notification(obs.ssid, obs.token, state.label, message, now))


_CON, _NON, _CONTENT = MessageType.CON, MessageType.NON, Code.CONTENT
_OBSERVE, _CONTENT_FORMAT = int(OptionNumber.OBSERVE), int(OptionNumber.CONTENT_FORMAT)


def _describe(obs: Observation) -> str:
    """``Notification.path``: the path, or the comma-separated paths of a composite."""
    return ",".join(str(p) for p in obs.paths)
