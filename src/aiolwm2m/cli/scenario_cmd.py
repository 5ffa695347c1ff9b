"""``aiolwm2m scenario FILE``: run a scripted outage against the embedded testbed.

Prints a timeline (client events interleaved with the injected faults, in
seconds since the start) and a verdict; exit code 0 means every check passed,
1 means at least one failed (the reasons are printed), 2 a bad scenario file.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiolwm2m.cli.common import verbosity
from aiolwm2m.cli.output import emit, event_line
from aiolwm2m.testbed.scenario import TimelineEntry, Verdict, load_scenario, run_scenario

#: Events that would flood the timeline (one per notification); the summary counts them.
_QUIET = {"notification_stored"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scenario", help="run a scripted fault scenario (TOML) and judge recovery")
    p.add_argument("file", help="scenario file, e.g. scenarios/blackhole.toml")
    p.set_defaults(func=run)


def show(entry: TimelineEntry) -> None:
    event = entry.event
    if event is not None:
        if event.name in _QUIET:
            return
        # Events are delivered as they happen, so the entry's time is the event's.
        line = event_line(event, event.time - entry.time, entry.source)
        if line is not None:
            emit(line)
        return
    emit(f"{entry.time:8.3f}s  {entry.source:<6}  {entry.text}")


def summary(verdict: Verdict) -> list[str]:
    lines = []
    for r in verdict.recoveries:
        took = "never" if r.recovered_after is None else f"{r.recovered_after:.2f} s"
        lines.append(
            f"step #{r.step} client {r.client}: registered/updated again {took} after the "
            f"window (bound {r.bound:.3g} s)"
        )
    for c in verdict.clients:
        if c.produced or c.unobserved:
            lines.append(
                f"client {c.index} notifications: produced {c.produced}, delivered "
                f"{c.delivered}, dropped by policy {c.store_dropped}, cancelled by reset "
                f"{c.cancelled}, still stored {c.still_stored} (notify errors reported "
                f"{c.notify_errors}, not observed {c.unobserved})"
            )
    lines.append("proxy: " + ", ".join(f"{k}={v}" for k, v in sorted(verdict.counters.items())))
    return lines


def run(args: argparse.Namespace) -> int:
    quiet = verbosity(args) < 0  # -q: only the verdict
    scenario = load_scenario(args.file)
    if not quiet:
        title = f"scenario {scenario.name}"
        emit(title + (f": {scenario.description}" if scenario.description else ""))
        if scenario.expect_verdict == "fail":
            emit("(this scenario is meant to FAIL: it demonstrates a failing verdict)")
    verdict = run_scenario(scenario, None if quiet else show)
    for line in summary(verdict):
        emit(line)
    if verdict.passed:
        emit(f"VERDICT: PASS ({scenario.name})")
        return 0
    emit(f"VERDICT: FAIL ({scenario.name})")
    for reason in verdict.reasons:
        emit(f"  - {reason}")
    return 1
