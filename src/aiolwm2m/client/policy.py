"""Recovery policy as data: the outgoing-request failure table (spec §3), the
outer reconnection schedule (spec §2) and the LwM2M 1.1 registration retry
procedure (spec §4).

The engine never hard-codes a reaction: it classifies what happened into a
(:class:`RequestKind`, :class:`Failure`) pair and asks a :class:`FailureTable`
for the :class:`Action`. Users replace the table or the schedules by passing
their own instances; the defaults are the spec's.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiolwm2m.accounts import RetrySettings
from aiolwm2m.errors import ConfigError


class RequestKind(enum.Enum):
    BOOTSTRAP_REQUEST = "bootstrap_request"
    REGISTER = "register"
    UPDATE = "update"
    DEREGISTER = "deregister"
    NOTIFY = "notify"


class Failure(enum.Enum):
    TIMEOUT_DTLS = "timeout_dtls"
    TIMEOUT_NOSEC = "timeout_nosec"
    NETWORK = "network"
    COAP_ERROR = "coap_error"
    RESET = "reset"
    INTERNAL = "internal"


class Action(enum.Enum):
    RETRY_HANDSHAKE = "retry_handshake"
    ABORT_ALL = "abort_all"
    ABORT_REGISTRATION = "abort_registration"
    FALLBACK_REGISTER = "fallback_register"
    BOOTSTRAP = "bootstrap"
    IGNORE = "ignore"
    CANCEL_OBSERVATION = "cancel_observation"
    CANCEL_OBSERVATION_UNLESS_STORING = "cancel_observation_unless_storing"
    NOT_APPLICABLE = "n/a"


_R = RequestKind
_F = Failure
_A = Action

#: Spec §3 (Anjay's table): rows are failures, columns request kinds.
DEFAULT_TABLE: Mapping[tuple[RequestKind, Failure], Action] = {
    (_R.BOOTSTRAP_REQUEST, _F.TIMEOUT_DTLS): _A.RETRY_HANDSHAKE,
    (_R.REGISTER, _F.TIMEOUT_DTLS): _A.RETRY_HANDSHAKE,
    (_R.UPDATE, _F.TIMEOUT_DTLS): _A.FALLBACK_REGISTER,
    (_R.DEREGISTER, _F.TIMEOUT_DTLS): _A.IGNORE,
    (_R.NOTIFY, _F.TIMEOUT_DTLS): _A.IGNORE,
    (_R.BOOTSTRAP_REQUEST, _F.TIMEOUT_NOSEC): _A.ABORT_ALL,
    (_R.REGISTER, _F.TIMEOUT_NOSEC): _A.ABORT_REGISTRATION,
    (_R.UPDATE, _F.TIMEOUT_NOSEC): _A.FALLBACK_REGISTER,
    (_R.DEREGISTER, _F.TIMEOUT_NOSEC): _A.IGNORE,
    (_R.NOTIFY, _F.TIMEOUT_NOSEC): _A.IGNORE,
    (_R.BOOTSTRAP_REQUEST, _F.NETWORK): _A.ABORT_ALL,
    (_R.REGISTER, _F.NETWORK): _A.ABORT_REGISTRATION,
    (_R.UPDATE, _F.NETWORK): _A.BOOTSTRAP,
    (_R.DEREGISTER, _F.NETWORK): _A.IGNORE,
    (_R.NOTIFY, _F.NETWORK): _A.BOOTSTRAP,
    (_R.BOOTSTRAP_REQUEST, _F.COAP_ERROR): _A.ABORT_ALL,
    (_R.REGISTER, _F.COAP_ERROR): _A.ABORT_REGISTRATION,
    (_R.UPDATE, _F.COAP_ERROR): _A.FALLBACK_REGISTER,
    (_R.DEREGISTER, _F.COAP_ERROR): _A.IGNORE,
    (_R.NOTIFY, _F.COAP_ERROR): _A.NOT_APPLICABLE,
    (_R.BOOTSTRAP_REQUEST, _F.RESET): _A.ABORT_ALL,
    (_R.REGISTER, _F.RESET): _A.ABORT_REGISTRATION,
    (_R.UPDATE, _F.RESET): _A.BOOTSTRAP,
    (_R.DEREGISTER, _F.RESET): _A.IGNORE,
    (_R.NOTIFY, _F.RESET): _A.CANCEL_OBSERVATION,
    (_R.BOOTSTRAP_REQUEST, _F.INTERNAL): _A.ABORT_ALL,
    (_R.REGISTER, _F.INTERNAL): _A.ABORT_REGISTRATION,
    (_R.UPDATE, _F.INTERNAL): _A.BOOTSTRAP,
    (_R.DEREGISTER, _F.INTERNAL): _A.IGNORE,
    (_R.NOTIFY, _F.INTERNAL): _A.CANCEL_OBSERVATION_UNLESS_STORING,
}


@dataclass(frozen=True)
class FailureTable:
    """Maps every (request kind, failure) cell to an action; all 30 cells must be present."""

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


@dataclass(frozen=True)
class ReconnectPolicy:
    """Spec §2: the outer loop's schedule, used when no server has a usable connection."""

    enabled: bool = True
    first_delay_min: float = 2.0
    first_delay_max: float = 10.0
    multiplier: float = 2.0
    max_delay: float = 604_800.0

    def __post_init__(self) -> None:
        if not 0 <= self.first_delay_min <= self.first_delay_max:
            raise ConfigError("reconnect: need 0 <= first_delay_min <= first_delay_max")
        if self.multiplier < 1.0:
            raise ConfigError("reconnect: multiplier must be >= 1")
        if self.max_delay < self.first_delay_max:
            raise ConfigError("reconnect: max_delay must be >= first_delay_max")


class ReconnectSchedule:
    """State of the §2 schedule: a random first delay, ×multiplier per failure, capped."""

    def __init__(self, policy: ReconnectPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self._delay: float | None = None
        self.attempts = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; call once per failed attempt."""
        if self._delay is None:
            self._delay = self._rng.uniform(
                self.policy.first_delay_min, self.policy.first_delay_max
            )
        else:
            self._delay = min(self._delay * self.policy.multiplier, self.policy.max_delay)
        self.attempts += 1
        return self._delay

    def reset(self) -> None:
        """A success: the next outage starts again from a fresh random first delay."""
        self._delay = None
        self.attempts = 0


class RetryProcedure(enum.Enum):
    LWM2M_1_1 = "lwm2m-1.1"
    BOOTSTRAP_IMMEDIATELY = "bootstrap-immediately"


#: Sequence Delay Timer value meaning "no further sequence" (TS: MAX_VALUE).
NO_FURTHER_SEQUENCE = 2**32 - 1


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
