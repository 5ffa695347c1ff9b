"""``aiolwm2m scenario NAME|FILE``: run a scripted outage against the embedded testbed.

``NAME`` is one of the scenarios shipped inside the package (``--list``), so
they run after a plain ``pip install``; anything with a ``/`` or ending in
``.toml`` is a file of your own.

Prints a timeline (client events interleaved with the injected faults, in
seconds since the start) and a verdict; exit code 0 means every check passed,
1 means at least one failed (the reasons are printed), 2 a bad scenario file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from aiolwm2m.cli.common import verbosity
from aiolwm2m.cli.output import emit, event_line, since_start
from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.scenario import TimelineEntry, Verdict, load_scenario, run_scenario

__all__ = ["SHIPPED", "add_parser", "resolve", "run", "shipped"]

#: Events that would flood the timeline (one per notification); the summary counts them.
_QUIET = {"notification_stored"}


#: The scenarios shipped with the package.
SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scenario", help="run a scripted fault scenario (TOML) and judge recovery")
    p.add_argument(
        "file",
        nargs="?",
        metavar="NAME|FILE",
        help="a shipped scenario (see --list), e.g. blackhole, or a scenario file",
    )
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.set_defaults(func=run, completion_words=sorted(shipped()))


def shipped() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SHIPPED.glob("*.toml"))}


def resolve(name: str) -> Path:
    """A shipped scenario's file for ``name``; a path when it looks like one."""
    if "/" in name or name.endswith(".toml"):
        return Path(name)
    found = shipped().get(name)
    if found is None:
        raise ConfigError(
            f"NAME {name!r}: no shipped scenario of that name (aiolwm2m scenario --list); "
            "a file of your own needs a / or .toml"
        )
    return found


def list_shipped() -> int:
    """Name, wall-clock run time (the duration × time_scale) and description of each."""
    for name, path in shipped().items():
        scenario = load_scenario(path)
        emit(f"{name:<22} {scenario.duration * scenario.time_scale:>4g} s  {scenario.description}")
    return 0


def show(entry: TimelineEntry) -> None:
    """One timeline line, in seconds since the command started (the clock of log lines).

    Entries are delivered as they happen, so a fault's line takes the time of
    its delivery; an event keeps its own time.
    """
    event = entry.event
    if event is not None:
        if event.name in _QUIET:
            return
        line = event_line(event, source=entry.source)
        if line is not None:
            emit(line)
        return
    emit(f"{since_start(time.monotonic()):8.3f}s  {entry.source:<6}  {entry.text}")


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
    if args.list:
        return list_shipped()
    if args.file is None:
        raise ConfigError("NAME|FILE is required: a shipped scenario (see --list) or a file")
    quiet = verbosity(args) < 0  # -q: only the verdict
    scenario = load_scenario(resolve(args.file))
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
