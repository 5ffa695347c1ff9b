"""The verdict of a scenario run: did every client recover in time, was nothing lost?

Pure: it reads the scenario, the per-client reports the runner collected and
the proxy's counters, and returns a :class:`Verdict` with a reason per
failure.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.testbed.scenario.schema import Scenario, Step, client_config, wire_max_age


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
    #: Of ``store_dropped``: stored for observations a new registration ended (spec §10).
    dropped_at_register: int = 0
    #: Of ``store_dropped``: not yet sent when a Reset ended their observation.
    dropped_cancelled: int = 0
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


def judge(
    sc: Scenario,
    reports: list[ClientReport],
    errors: list[str],
    counters: dict[str, int],
    server_duplicates: int,
) -> Verdict:
    """Judge a finished run: recovery after every fault window, notification accounting."""

    def scaled(seconds: float) -> float:
        return seconds * sc.time_scale

    reasons: list[str] = [f"unhandled exception: {e}" for e in errors]
    recoveries: list[Recovery] = []
    probe = client_config(sc, "127.0.0.1:1", 0)
    for index, step in enumerate(sc.steps, 1):
        # Overlapping windows are one fault period: recovery counts from its end.
        period = fault_period(sc.steps, step)
        window_end = scaled(period[-1].end if period else step.end)
        if sc.bound is not None:
            bound = scaled(sc.bound)
        else:
            start = scaled(min(s.at for s in period))
            extra = max(wire_max_age(s, sc.time_scale) for s in period)
            bound = recovery_bound(probe, window_end - start, extra)
        for report in reports:
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
            start = scaled(step.at)
            for pattern in step.expect:
                if not any(
                    start <= t <= window_end + bound and pattern.matches(e)
                    for t, e in report.events
                ):
                    reasons.append(
                        f"step #{index} ({step.describe()}): {who} never showed "
                        f"'{pattern}' during the window"
                    )
    for report in reports:
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
    return Verdict(
        passed=not reasons,
        reasons=reasons,
        recoveries=recoveries,
        clients=reports,
        counters=dict(counters),
        server_duplicates=server_duplicates,
    )


__all__ = [
    "ClientReport",
    "Recovery",
    "Verdict",
    "fault_period",
    "judge",
    "recovery_bound",
]
