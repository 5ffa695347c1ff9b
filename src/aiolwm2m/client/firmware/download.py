"""Sans-IO download machine: where to fetch from next, when to retry, when to give up.

One :class:`DownloadMachine` follows one pull download. It never sees the
bytes: the runtime's fetcher (CoAP Block2 or HTTP Range) writes them to the
package storage and reports how far the good data reaches; the machine keeps
that offset and the representation's validator (ETag) and answers every
failure by the data in :class:`DownloadPolicy`:

* a **transient** failure (timeout, network error, ICMP, DTLS loss, a 5.xx,
  a garbled response — a server restart shows up as these) is retried from
  the last good byte after a jittered exponential back-off
  (:class:`RetrySchedule`); the count of consecutive failures resets with
  every good byte, so a long download survives any number of short outages;
* the **resource changed** under us (ETag differs, HTTP 200 instead of 206,
  412) restarts from byte 0 or fails, as ``on_resource_changed`` says;
* everything else ends the download with the result codes of its
  :class:`FailureRule` (Object 5 Update Result, Manifest Result), as do
  transient failures once the retry count or the overall deadline is used up.

Time comes in as ``now``; randomness from the ``random.Random`` passed in.
Pausing (offline mode, queue-mode sleep) stops the fetch and the clock of the
overall deadline; resuming fetches again from the last good byte at once.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aiolwm2m.errors import ConfigError

from .states import ManifestResult, UpdateResult

__all__ = [
    "DEFAULT_FAILURE_RULES",
    "Checkpoint",
    "DownloadAction",
    "DownloadFailed",
    "DownloadFinished",
    "DownloadMachine",
    "DownloadPhase",
    "DownloadPolicy",
    "FailureKind",
    "FailureRule",
    "Fetch",
    "ResourceChangedPolicy",
    "Restart",
    "RetrySchedule",
    "RetryWait",
    "StopFetch",
]


class FailureKind(enum.Enum):
    """Why a fetch (or the storage behind it) failed, as the runtime classifies it."""

    TIMEOUT = "timeout"  # CoAP retransmissions used up, HTTP connect/read timeout
    NETWORK = "network_error"  # ICMP unreachable, connection refused or reset
    SESSION_LOST = "session_lost"  # the DTLS/TLS session broke or its handshake timed out
    SERVER_ERROR = "server_error"  # CoAP 5.xx, HTTP 5xx
    PROTOCOL = "protocol_error"  # malformed or out-of-sequence response
    DNS = "dns_failure"
    NOT_FOUND = "not_found"  # CoAP 4.04, HTTP 404 / 410
    REFUSED = "refused"  # any other 4.xx / 4xx
    SECURE = "secure_connection_failed"  # handshake rejected: credentials, certificate
    RESOURCE_CHANGED = "resource_changed"  # ETag differs, 200 instead of 206, 412
    STORAGE = "storage_full"  # the package store refused bytes (no space, quota, I/O)
    OUT_OF_MEMORY = "out_of_memory"
    INTEGRITY = "integrity"  # size or digest mismatch
    UNSUPPORTED_PACKAGE = "unsupported_package"
    INVALID_URI = "invalid_uri"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    DEADLINE = "deadline"  # the overall deadline passed


@dataclass(frozen=True)
class FailureRule:
    """What a failure kind does: retry it, and the result codes it ends with."""

    retry: bool
    result: UpdateResult
    manifest_result: ManifestResult


_U, _M = UpdateResult, ManifestResult
#: Anjay's mapping (DNS and 4.04/404 → Invalid URI, storage → 2, memory → 3,
#: everything else → 4), plus which kinds are transient and therefore retried.
#: Timeouts end in Manifest Result 15 "timed out", other connection losses in 11.
DEFAULT_FAILURE_RULES: Mapping[FailureKind, FailureRule] = MappingProxyType(
    {
        FailureKind.TIMEOUT: FailureRule(True, _U.CONNECTION_LOST, _M.DOWNLOAD_TIMED_OUT),
        FailureKind.NETWORK: FailureRule(True, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.SESSION_LOST: FailureRule(True, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.SERVER_ERROR: FailureRule(True, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.PROTOCOL: FailureRule(True, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.DNS: FailureRule(False, _U.INVALID_URI, _M.INVALID_ASSET_URI),
        FailureKind.NOT_FOUND: FailureRule(False, _U.INVALID_URI, _M.INVALID_ASSET_URI),
        FailureKind.REFUSED: FailureRule(False, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.SECURE: FailureRule(False, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.RESOURCE_CHANGED: FailureRule(False, _U.CONNECTION_LOST, _M.CONNECTION_LOST),
        FailureKind.STORAGE: FailureRule(False, _U.NOT_ENOUGH_STORAGE, _M.NOT_ENOUGH_STORAGE),
        FailureKind.OUT_OF_MEMORY: FailureRule(False, _U.OUT_OF_MEMORY, _M.OUT_OF_MEMORY),
        FailureKind.INTEGRITY: FailureRule(False, _U.INTEGRITY_FAILURE, _M.ASSET_INTEGRITY_FAILED),
        FailureKind.UNSUPPORTED_PACKAGE: FailureRule(
            False, _U.UNSUPPORTED_PACKAGE_TYPE, _M.UNSUPPORTED_ASSET_TYPE
        ),
        FailureKind.INVALID_URI: FailureRule(False, _U.INVALID_URI, _M.INVALID_ASSET_URI),
        FailureKind.UNSUPPORTED_PROTOCOL: FailureRule(
            False, _U.UNSUPPORTED_PROTOCOL, _M.INVALID_ASSET_URI
        ),
        FailureKind.DEADLINE: FailureRule(False, _U.CONNECTION_LOST, _M.DOWNLOAD_TIMED_OUT),
    }
)


@dataclass(frozen=True)
class RetrySchedule:
    """Back-off between attempts after a transient failure (all seconds).

    The n-th consecutive retry waits ``min(max_delay, first_delay ×
    multiplier^(n-1) × U(1 − jitter, 1 + jitter))``; at most ``max_retries``
    retries follow each other without a good byte in between, and no retry
    starts once ``deadline`` seconds of (unpaused) download time have passed.
    """

    first_delay: float = 2.0
    multiplier: float = 2.0
    max_delay: float = 600.0
    jitter: float = 0.25
    max_retries: int = 20
    deadline: float = 86_400.0

    def __post_init__(self) -> None:
        if self.first_delay <= 0 or self.max_delay < self.first_delay:
            raise ConfigError("retry delays need 0 < first_delay <= max_delay")
        if self.multiplier < 1.0:
            raise ConfigError("retry multiplier must be >= 1")
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigError("retry jitter must be in [0, 1)")
        if self.max_retries < 0:
            raise ConfigError("max_retries must be >= 0")
        if self.deadline <= 0:
            raise ConfigError("download deadline must be > 0")

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = self.first_delay * self.multiplier ** (attempt - 1)
        factor = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter) if self.jitter else 1.0
        return min(self.max_delay, base * factor)


class ResourceChangedPolicy(enum.Enum):
    RESTART = "restart"  # discard what we have and fetch from byte 0
    FAIL = "fail"  # end with the RESOURCE_CHANGED rule (result 4)


@dataclass(frozen=True)
class DownloadPolicy:
    """Everything a download decides by: schedule, failure table, checkpoints."""

    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    rules: Mapping[FailureKind, FailureRule] = field(default_factory=lambda: DEFAULT_FAILURE_RULES)
    on_resource_changed: ResourceChangedPolicy = ResourceChangedPolicy.RESTART
    #: How many times a changed resource restarts the download before it fails.
    max_restarts: int = 3
    #: Persist the offset (after flushing the storage) at least every this many bytes.
    checkpoint_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        missing = set(FailureKind) - set(self.rules)
        if missing:
            names = ", ".join(sorted(k.value for k in missing))
            raise ConfigError(f"the download failure table has no rule for: {names}")
        if self.checkpoint_bytes < 1 or self.max_restarts < 0:
            raise ConfigError("checkpoint_bytes must be >= 1 and max_restarts >= 0")

    def rule(self, kind: FailureKind) -> FailureRule:
        return self.rules[kind]


# -- actions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """(Re)start fetching at ``offset``; ``validator`` must still match (None: first fetch)."""

    offset: int
    validator: str | None


@dataclass(frozen=True)
class StopFetch:
    """Abandon the fetch in progress (its later reports are stale)."""


@dataclass(frozen=True)
class Restart:
    """The resource changed: discard the stored bytes; a :class:`Fetch` from 0 follows."""


@dataclass(frozen=True)
class Checkpoint:
    """Flush the stored bytes up to ``offset``, then persist the download state."""

    offset: int


@dataclass(frozen=True)
class RetryWait:
    """A transient failure: the next :class:`Fetch` comes after ``delay`` seconds."""

    kind: FailureKind
    delay: float
    attempt: int
    offset: int
    detail: str


@dataclass(frozen=True)
class DownloadFinished:
    """The source said the representation is complete at ``offset`` bytes."""

    offset: int


@dataclass(frozen=True)
class DownloadFailed:
    kind: FailureKind
    rule: FailureRule
    detail: str


DownloadAction = (
    Fetch | StopFetch | Restart | Checkpoint | RetryWait | DownloadFinished | DownloadFailed
)


class DownloadPhase(enum.Enum):
    CREATED = "created"
    FETCHING = "fetching"
    WAITING = "waiting"  # back-off before a retry
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"


class DownloadMachine:
    """One pull download's progress and retry state; see the module docstring."""

    def __init__(
        self,
        policy: DownloadPolicy,
        rng: random.Random,
        *,
        offset: int = 0,
        validator: str | None = None,
        total: int | None = None,
        resumes: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        self.policy = policy
        self._rng = rng
        self.offset = offset
        self.validator = validator
        self.total = total
        #: Fetches started again after a failure or a pause (Manifest Result 19 counts them).
        self.resumes = resumes
        self.restarts = 0
        self.attempt = 0
        self.phase = DownloadPhase.CREATED
        self.retry_at: float | None = None
        self._elapsed_before = elapsed  # download time of earlier runs (a restored download)
        self._running_since: float | None = None
        self._checkpointed = offset
        self._actions: list[DownloadAction] = []

    # -- outputs ------------------------------------------------------------------
    def take_actions(self) -> list[DownloadAction]:
        out, self._actions = self._actions, []
        return out

    def next_timer(self) -> float | None:
        if self.phase is DownloadPhase.WAITING:
            return self.retry_at
        if self.phase is DownloadPhase.FETCHING and self._running_since is not None:
            return self._running_since + self.policy.schedule.deadline - self._elapsed_before
        return None

    @property
    def active(self) -> bool:
        return self.phase in (DownloadPhase.FETCHING, DownloadPhase.WAITING, DownloadPhase.PAUSED)

    def elapsed(self, now: float) -> float:
        """Unpaused download time so far (persisted, so a restart keeps the deadline)."""
        running = now - self._running_since if self._running_since is not None else 0.0
        return self._elapsed_before + running

    # -- inputs -------------------------------------------------------------------
    def start(self, now: float, *, resumed: bool = False) -> None:
        """Begin fetching at :attr:`offset` (``resumed``: after a restart of the client)."""
        if self.phase is not DownloadPhase.CREATED:
            raise RuntimeError("download already started")
        if resumed:
            self.resumes += 1
        self._run(now)

    def received(
        self, offset: int, now: float, *, validator: str | None = None, total: int | None = None
    ) -> None:
        """Good bytes now reach ``offset`` (already stored); the retry count starts over."""
        if self.phase is not DownloadPhase.FETCHING:
            return
        if validator is not None and self.validator is None:
            self.validator = validator
        if total is not None:
            self.total = total
        if offset > self.offset:
            self.offset = offset
            self.attempt = 0
        if self._past_deadline(now):
            self._fail(FailureKind.DEADLINE, "overall download deadline passed", now, stop=True)
            return
        if self.offset - self._checkpointed >= self.policy.checkpoint_bytes:
            self._checkpointed = self.offset
            self._actions.append(Checkpoint(self.offset))

    def completed(self, now: float) -> None:
        """The source says the representation ends at :attr:`offset`."""
        if self.phase is not DownloadPhase.FETCHING:
            return
        self._stop_clock(now)
        self.phase = DownloadPhase.FINISHED
        self._checkpointed = self.offset
        self._actions.append(DownloadFinished(self.offset))

    def failed(self, kind: FailureKind, now: float, detail: str = "") -> None:
        """The fetch in progress ended with ``kind``; retry, restart or give up."""
        if self.phase is not DownloadPhase.FETCHING:
            return
        if kind is FailureKind.RESOURCE_CHANGED:
            self._changed(now, detail)
            return
        rule = self.policy.rule(kind)
        schedule = self.policy.schedule
        if not rule.retry or self.attempt >= schedule.max_retries:
            self._fail(kind, detail, now, stop=False)
            return
        if self._past_deadline(now):
            self._fail(FailureKind.DEADLINE, f"deadline passed after {kind.value}", now, False)
            return
        self.attempt += 1
        delay = schedule.delay(self.attempt, self._rng)
        self._stop_clock(now)
        self.phase = DownloadPhase.WAITING
        self.retry_at = now + delay
        self._actions.append(RetryWait(kind, delay, self.attempt, self.offset, detail))

    def handle_timer(self, now: float) -> None:
        if self.phase is DownloadPhase.WAITING and self.retry_at is not None:
            if now >= self.retry_at:
                self.retry_at = None
                self.resumes += 1
                self._run(now)
        elif self.phase is DownloadPhase.FETCHING and self._past_deadline(now):
            self._fail(FailureKind.DEADLINE, "overall download deadline passed", now, stop=True)

    def pause(self, now: float) -> None:
        """Stop fetching until :meth:`resume` (offline mode, queue-mode sleep)."""
        if self.phase is DownloadPhase.FETCHING:
            self._stop_clock(now)
            self._actions.append(StopFetch())
        elif self.phase is not DownloadPhase.WAITING:
            return
        self.retry_at = None
        self.phase = DownloadPhase.PAUSED

    def resume(self, now: float) -> None:
        if self.phase is DownloadPhase.PAUSED:
            self.resumes += 1
            self._run(now)

    def cancel(self, now: float) -> None:
        """Stop for good (a server cancelled or reset); no result is produced."""
        if self.phase is DownloadPhase.FETCHING:
            self._actions.append(StopFetch())
        self._stop_clock(now)
        self.retry_at = None
        self.phase = DownloadPhase.FAILED

    # -- internals ----------------------------------------------------------------
    def _run(self, now: float) -> None:
        self.phase = DownloadPhase.FETCHING
        self._running_since = now
        self._actions.append(Fetch(self.offset, self.validator))

    def _stop_clock(self, now: float) -> None:
        if self._running_since is not None:
            self._elapsed_before += now - self._running_since
            self._running_since = None

    def _past_deadline(self, now: float) -> bool:
        return self.elapsed(now) >= self.policy.schedule.deadline

    def _changed(self, now: float, detail: str) -> None:
        policy = self.policy
        if (
            policy.on_resource_changed is ResourceChangedPolicy.FAIL
            or self.restarts >= policy.max_restarts
        ):
            self._fail(FailureKind.RESOURCE_CHANGED, detail, now, stop=False)
            return
        self.restarts += 1
        self.offset = 0
        self.validator = None
        self.total = None
        self.attempt = 0
        self._checkpointed = 0
        self._actions.append(Restart())
        self._actions.append(Fetch(0, None))

    def _fail(self, kind: FailureKind, detail: str, now: float, stop: bool) -> None:
        if stop:
            self._actions.append(StopFetch())
        self._stop_clock(now)
        self.retry_at = None
        self.phase = DownloadPhase.FAILED
        self._actions.append(DownloadFailed(kind, self.policy.rule(kind), detail))
