"""Recovery policy as data: the outgoing-request failure table (spec §3), the
outer reconnection schedule (spec §2, with its presets) and the LwM2M 1.1
registration retry procedure (spec §4).

The engine never hard-codes a reaction: it classifies what happened into a
(:class:`RequestKind`, :class:`Failure`) pair and asks a :class:`FailureTable`
for the :class:`Action`. Users replace the table or the schedules by passing
their own instances; the defaults are the spec's.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiolwm2m.accounts import RetrySettings
from aiolwm2m.errors import ConfigError

__all__ = [
    "DEFAULT_TABLE",
    "DISABLED_UNTIL_ENABLED",
    "LINK_FAILURE_ROWS",
    "MAX_AGE_ROWS",
    "NO_FURTHER_SEQUENCE",
    "OVERRIDES",
    "RECONNECT_PRESETS",
    "Action",
    "Circumstance",
    "Failure",
    "FailureTable",
    "ReconnectPolicy",
    "ReconnectPreset",
    "ReconnectSchedule",
    "RegistrationRetry",
    "RequestKind",
    "RetryProcedure",
    "RetrySettings",
    "action_reported",
    "disable_wait",
]


class RequestKind(enum.StrEnum):
    """The failure table's columns: what the client was doing when something failed."""

    BOOTSTRAP_REQUEST = "bootstrap_request"
    REGISTER = "register"
    UPDATE = "update"
    DEREGISTER = "deregister"
    NOTIFY = "notify"
    CONNECT = "connect"  # opening the link: DNS, socket, DTLS handshake
    SEND = "send"  # LwM2M Send (POST /dp)

    @property
    def ends_session(self) -> bool:
        """Whatever its cell says, a failed request of this kind still ends the session."""
        return self in _SESSION_ENDING


#: Spec §3, column De-register: a De-register that fails ends the session all the
#: same (the device was leaving; nothing is retried).
_SESSION_ENDING = frozenset({RequestKind.DEREGISTER})


class Failure(enum.StrEnum):
    """The failure table's rows: what went wrong."""

    TIMEOUT_DTLS = "timeout_dtls"
    TIMEOUT_NOSEC = "timeout_nosec"
    NETWORK = "network"
    COAP_ERROR = "coap_error"
    RESET = "reset"
    INTERNAL = "internal"
    DNS = "dns"  # the server's host name did not resolve
    SECURE = "secure"  # handshake rejected: bad PSK, bad/expired/untrusted certificate…
    PRECONDITION_FAILED = "precondition_failed"  # 4.12: the LwM2M version is not supported
    TOO_MANY_REQUESTS = "too_many_requests"  # 4.29 (RFC 8516): wait Max-Age
    SERVICE_UNAVAILABLE = "service_unavailable"  # 5.03 with a Max-Age (RFC 7252 §5.9.3.4)


class Action(enum.StrEnum):
    """What the client does about a failure; the value is the ``action`` of ``error`` events."""

    RETRY_HANDSHAKE = "retry_handshake"
    ABORT_ALL = "abort_all"
    ABORT_REGISTRATION = "abort_registration"
    FALLBACK_REGISTER = "fallback_register"
    BOOTSTRAP = "bootstrap"
    IGNORE = "ignore"
    CANCEL_OBSERVATION = "cancel_observation"
    CANCEL_OBSERVATION_UNLESS_STORING = "cancel_observation_unless_storing"
    RETRY_LWM2M_1_0 = "retry_lwm2m_1.0"  # spec §10: Register again with LwM2M 1.0, at once
    WAIT_MAX_AGE = "wait_max_age"  # spec §7: the same request again after Max-Age (capped)
    NONE = "none"  # no recovery: reported, the application decides (Send)
    NOT_APPLICABLE = "n/a"


class Circumstance(enum.Enum):
    """Facts about a failed request that make a cell's action not apply."""

    AFTER_FRESH_HANDSHAKE = "sent over a fresh session"
    NO_LOWER_VERSION = "no lower LwM2M version to fall back to"


_R = RequestKind
_F = Failure
_A = Action
# Short names so the table below reads like the spec's.
HS, AA, AR, FR = _A.RETRY_HANDSHAKE, _A.ABORT_ALL, _A.ABORT_REGISTRATION, _A.FALLBACK_REGISTER
BS, IG, CO, CU = (
    _A.BOOTSTRAP,
    _A.IGNORE,
    _A.CANCEL_OBSERVATION,
    _A.CANCEL_OBSERVATION_UNLESS_STORING,
)
V1, MA, NO, NA = _A.RETRY_LWM2M_1_0, _A.WAIT_MAX_AGE, _A.NONE, _A.NOT_APPLICABLE

_COLUMNS = tuple(RequestKind)

#: Spec §3 (Anjay's table) with the rules the spec states elsewhere as rows and
#: columns of their own: connect failures (§5, §10), 4.12 (§10), 4.29 and 5.03
#: with a Max-Age (§7), Send. A notification is a response: the server
#: acknowledges or resets it, never answers it with a code. A Send's error
#: answers are all "CoAP error".
#: One cell differs from Anjay's table on purpose: an Update that times out on
#: a DTLS session retries the handshake (spec §10: a timeout on a session that
#: was not fresh means the server may have lost it, so the next attempt goes
#: over a new handshake, never over the same session); after a fresh handshake
#: (†) reads the NoSec row instead, which falls back to Register as Anjay does.
#: HS retry handshake (†), AA abort all (A), AR abort registration (§4), FR fall back
#: to Register, BS client-initiated bootstrap (B), IG ignore, CO cancel the observation,
#: CU … unless storing, V1 Register with LwM2M 1.0, MA wait Max-Age, NO none, NA n/a.
# fmt: off
_ROWS: Mapping[Failure, tuple[Action, ...]] = {
    #                        Bootstrap  Register  Update  De-reg  Notify  Connect  Send
    _F.TIMEOUT_DTLS:        (HS,        HS,       HS,     IG,     IG,     BS,      NO),
    _F.TIMEOUT_NOSEC:       (AA,        AR,       FR,     IG,     IG,     BS,      NO),
    _F.NETWORK:             (AA,        AR,       BS,     IG,     BS,     BS,      NO),
    _F.COAP_ERROR:          (AA,        AR,       FR,     IG,     NA,     NA,      NO),
    _F.RESET:               (AA,        AR,       BS,     IG,     CO,     NA,      NO),
    _F.INTERNAL:            (AA,        AR,       BS,     IG,     CU,     BS,      NO),
    _F.DNS:                 (NA,        NA,       NA,     NA,     NA,     BS,      NA),
    _F.SECURE:              (NA,        NA,       NA,     NA,     NA,     BS,      NA),
    _F.PRECONDITION_FAILED: (AA,        V1,       FR,     IG,     NA,     NA,      NA),
    _F.TOO_MANY_REQUESTS:   (MA,        MA,       MA,     IG,     NA,     NA,      NA),
    _F.SERVICE_UNAVAILABLE: (MA,        MA,       MA,     IG,     NA,     NA,      NO),
}
# fmt: on

DEFAULT_TABLE: Mapping[tuple[RequestKind, Failure], Action] = {
    (kind, failure): action
    for failure, row in _ROWS.items()
    for kind, action in zip(_COLUMNS, row, strict=True)
}

#: Rows whose answer carries a retry-after time (Max-Age, spec §7).
MAX_AGE_ROWS = frozenset({_F.TOO_MANY_REQUESTS, _F.SERVICE_UNAVAILABLE})

#: When a cell's action cannot apply, the row read instead: (action, circumstance) -> row.
OVERRIDES: Mapping[tuple[Action, Circumstance], Failure] = {
    # (†) no handshake loops: a request sent over a fresh session (full or
    # abbreviated handshake, no exchange on it has succeeded yet) that times
    # out is treated as on a NoSec link.
    (HS, Circumstance.AFTER_FRESH_HANDSHAKE): _F.TIMEOUT_NOSEC,
    # Already at LwM2M 1.0: a 4.12 is an ordinary CoAP error.
    (V1, Circumstance.NO_LOWER_VERSION): _F.COAP_ERROR,
}

#: Rows a link failure maps to (the Connect column's cells that
#: ``connection_error_is_registration_failure`` turns into "abort registration").
LINK_FAILURE_ROWS = (_F.DNS, _F.NETWORK, _F.TIMEOUT_DTLS, _F.SECURE, _F.INTERNAL)


def action_reported(kind: RequestKind, failure: Failure) -> bool:
    """Whether an ``error`` event names the action of this cell.

    Connect failures and 4.29 waits never carried an ``action`` field in the
    event stream, which other tools parse; they still do not.
    """
    return kind is not _R.CONNECT and failure is not _F.TOO_MANY_REQUESTS


@dataclass(frozen=True)
class FailureTable:
    """Maps every (request kind, failure) cell to an action; every cell must be present."""

    cells: Mapping[tuple[RequestKind, Failure], Action] = field(
        default_factory=lambda: dict(DEFAULT_TABLE)
    )

    def __post_init__(self) -> None:
        missing = [(r, f) for r in RequestKind for f in Failure if (r, f) not in self.cells]
        if missing:
            names = ", ".join(f"{r.value}×{f.value}" for r, f in missing)
            raise ConfigError(f"failure table is missing cells: {names}")

    def action(self, kind: RequestKind, failure: Failure) -> Action:
        return self.cells[(kind, failure)]

    def decide(
        self, kind: RequestKind, failure: Failure, circumstances: frozenset[Circumstance]
    ) -> Action:
        """The cell's action, or that of the row :data:`OVERRIDES` names when it cannot apply."""
        action = self.action(kind, failure)
        for circumstance in Circumstance:
            row = OVERRIDES.get((action, circumstance))
            if row is not None and circumstance in circumstances:
                return self.action(kind, row)
        return action

    def replace(self, **changes: Action) -> FailureTable:
        """Copy with some cells changed, keyed ``"<request>__<failure>"``."""
        cells = dict(self.cells)
        for key, action in changes.items():
            req, _, fail = key.partition("__")
            try:
                cells[(RequestKind(req), Failure(fail))] = action
            except ValueError as exc:
                raise ConfigError(f"unknown failure table cell {key!r}") from exc
        return FailureTable(cells)

    def with_connect_errors_aborting_registration(self) -> FailureTable:
        """Copy whose link failures run the §4 retry procedure instead of their cells."""
        cells = dict(self.cells)
        for failure in LINK_FAILURE_ROWS:
            cells[(_R.CONNECT, failure)] = _A.ABORT_REGISTRATION
        return FailureTable(cells)


@dataclass(frozen=True)
class ReconnectPolicy:
    """Spec §2: the outer loop's schedule, used when no server has a usable connection.

    The defaults are the ``izuma-2019`` preset (:data:`RECONNECT_PRESETS`):
    a first delay drawn once per client, uniform in [min, max], reused by
    every outage ("the reconnection attempts will begin with the original
    reconnection time"); ×``multiplier`` per failed attempt; capped at
    ``max_delay``. ``redraw_first_delay`` draws it afresh for each outage
    instead; ``add_round_trip`` adds the last measured request round trip to
    it; ``jitter`` (a fraction, e.g. 0.1 for ±10 %) is applied afresh to every
    delay, the capped ones included. ``network_change_window``: a network-up
    hint (``network_changed()``) moves a pending attempt to a random instant
    at most this many seconds away, so a fleet behind one router does not
    reconnect in the same instant.
    """

    enabled: bool = True
    first_delay_min: float = 2.0
    first_delay_max: float = 10.0
    multiplier: float = 2.0
    max_delay: float = 604_800.0
    redraw_first_delay: bool = False
    add_round_trip: bool = False
    jitter: float = 0.0
    network_change_window: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.first_delay_min <= self.first_delay_max:
            raise ConfigError("reconnect: need 0 <= first_delay_min <= first_delay_max")
        if self.multiplier < 1.0:
            raise ConfigError("reconnect: multiplier must be >= 1")
        if self.max_delay < self.first_delay_max:
            raise ConfigError("reconnect: max_delay must be >= first_delay_max")
        if not 0 <= self.jitter < 1:
            raise ConfigError("reconnect: jitter must be in [0, 1)")
        if self.network_change_window < 0:
            raise ConfigError("reconnect: network_change_window must be >= 0")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> ReconnectPolicy:
        """The named preset with ``changes`` applied; unknown names and a cap below the
        preset's minimum are :class:`ConfigError`."""
        try:
            found = RECONNECT_PRESETS[name]
        except KeyError as exc:
            known = ", ".join(sorted(RECONNECT_PRESETS))
            raise ConfigError(f"reconnect: unknown preset {name!r} (known: {known})") from exc
        policy = replace(found.policy, **changes)
        if policy.max_delay < found.min_max_delay:
            raise ConfigError(
                f"reconnect: preset {name!r} needs max_delay >= {found.min_max_delay:g} s"
            )
        return policy


@dataclass(frozen=True)
class ReconnectPreset:
    """A named reconnect schedule: its policy and the lowest cap it accepts."""

    policy: ReconnectPolicy
    min_max_delay: float = 0.0


#: Spec §2's two schedules of the client behind document 000: its 2018–2019
#: releases (the default) and its current ones (10 s + the measured round trip,
#: ±10 % on every delay, cap 4 h ±10 %, configurable down to 300 s).
RECONNECT_PRESETS: Mapping[str, ReconnectPreset] = {
    "izuma-2019": ReconnectPreset(ReconnectPolicy()),
    "izuma-current": ReconnectPreset(
        ReconnectPolicy(
            first_delay_min=10.0,
            first_delay_max=10.0,
            max_delay=4 * 3600.0,
            redraw_first_delay=True,
            add_round_trip=True,
            jitter=0.1,
        ),
        min_max_delay=300.0,
    ),
}


class ReconnectSchedule:
    """State of the §2 schedule: first delay, ×multiplier per failure, capped, jittered."""

    def __init__(self, policy: ReconnectPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self._first: float | None = None  # drawn once (unless redrawn per outage)
        self._base: float | None = None  # this outage's delay before jitter
        self.attempts = 0

    def next_delay(self, round_trip: float = 0.0) -> float:
        """Delay before the next attempt; call once per failed attempt.

        ``round_trip`` is the last measured request round trip (seconds), added
        to the first delay when the policy says so.
        """
        p = self.policy
        if self._base is None:
            if self._first is None:
                self._first = self._rng.uniform(p.first_delay_min, p.first_delay_max)
                if p.add_round_trip:
                    self._first += round_trip
            self._base = self._first
        else:
            self._base = min(self._base * p.multiplier, p.max_delay)
        self.attempts += 1
        if p.jitter:
            return self._base * self._rng.uniform(1 - p.jitter, 1 + p.jitter)
        return self._base

    def reset(self) -> None:
        """A success: the next outage starts again from the first delay (redrawn if set so)."""
        self._base = None
        self.attempts = 0
        if self.policy.redraw_first_delay:
            self._first = None


class RetryProcedure(enum.Enum):
    LWM2M_1_1 = "lwm2m-1.1"
    BOOTSTRAP_IMMEDIATELY = "bootstrap-immediately"


#: Sequence Delay Timer value meaning "no further sequence" (TS: MAX_VALUE).
NO_FURTHER_SEQUENCE = 2**32 - 1


#: A Disable Timeout (/1/x/5) this long or longer keeps the server off until
#: ``enable_server()``: 2^32-1 s is 136 years (the TS's MAX_VALUE, as for /1/x/19),
#: and no runtime should arm a timer that far out, nor get ``inf`` or NaN.
DISABLED_UNTIL_ENABLED = float(2**32 - 1)


def disable_wait(timeout: float | None) -> float | None:
    """Seconds a disabled server stays off; None: until enabled (no timer at all).

    A negative timeout is 0 (register again at once); None, NaN, infinity and
    anything from :data:`DISABLED_UNTIL_ENABLED` up mean "until enabled".
    """
    if timeout is None or not timeout < DISABLED_UNTIL_ENABLED:
        return None
    return max(0.0, float(timeout))


class RegistrationRetry:
    """Progress through the §4 retry procedure for one server.

    ``on_failure`` returns the delay before the next attempt, or ``None`` when
    the whole procedure has failed (then resource 16 decides: bootstrap or
    give up).
    """

    def __init__(self, settings: RetrySettings, procedure: RetryProcedure) -> None:
        self.settings = settings
        self.procedure = procedure
        self.attempt = 0  # failed attempts in the current sequence
        self.sequence = 0  # failed sequences

    def on_failure(self) -> float | None:
        s = self.settings
        if self.procedure is RetryProcedure.BOOTSTRAP_IMMEDIATELY:
            return None
        self.attempt += 1
        if self.attempt < s.communication_retry_count:
            return float(s.communication_retry_timer * 2 ** (self.attempt - 1))
        self.sequence += 1
        self.attempt = 0
        if (
            self.sequence < s.communication_sequence_retry_count
            and s.communication_sequence_delay_timer < NO_FURTHER_SEQUENCE
        ):
            return float(s.communication_sequence_delay_timer)
        return None

    def reset(self) -> None:
        self.attempt = 0
        self.sequence = 0
