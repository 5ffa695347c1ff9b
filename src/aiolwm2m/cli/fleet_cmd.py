"""``aiolwm2m fleet``: N devices against any LwM2M server, or in virtual time.

    aiolwm2m fleet --server coap://127.0.0.1:5683 --devices 1000 --rate 200 --duration 300
    aiolwm2m fleet fleet.toml --outage 120:60 --out results/
    aiolwm2m fleet fleet.toml --simulate --devices 10000 --duration 604800

A fleet file has a ``[fleet]`` table (the keys of
:class:`~aiolwm2m.fleet.spec.FleetSpec`), ``[[value]]`` tables (resources
and their generators) and ``[[outage]]`` tables; flags override the file.
While it runs, a status line shows devices per state, rates, errors by code
and round trips (rich's live line on a terminal if rich is installed, a
plain line every few seconds otherwise); at the end ``--out`` gets
``summary.json``, ``timeline.csv`` and, with matplotlib, ``fleet.png``.
See docs/fleet.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiolwm2m.cli.common import positive_number
from aiolwm2m.errors import ConfigError
from aiolwm2m.fleet.report import status_line
from aiolwm2m.fleet.run import FleetError, run_fleet
from aiolwm2m.fleet.spec import FleetSpec, Outage, load_spec
from aiolwm2m.fleet.stats import Window

__all__ = ["add_parser", "run"]

#: Seconds between plain status lines when the output is not a terminal.
PLAIN_EVERY = 10.0


def _outage(text: str) -> Outage:
    """``AT:DURATION[:KIND]`` in seconds, e.g. ``120:60`` or ``120:60:blackhole``."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        return Outage(float(parts[0]), float(parts[1]), *parts[2:])  # type: ignore[arg-type]
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(
            f"expected AT:DURATION[:unreachable|blackhole], got {text!r}"
        ) from exc


def add_parser(sub: Any) -> None:
    p = sub.add_parser("fleet", help="many devices against a server (or simulated), with plots")
    p.add_argument("file", nargs="?", help="fleet TOML ([fleet], [[value]], [[outage]])")
    p.add_argument("--server", help="server URI (coap:// or coaps://)")
    p.add_argument("--devices", type=int, help="how many devices")
    p.add_argument("--first", type=int, help="number of the first device (endpoint pattern's n)")
    p.add_argument("--endpoint", help='endpoint pattern, e.g. "fleet-{n:05d}"')
    p.add_argument("--lifetime", type=int, help="registration lifetime (s)")
    p.add_argument("--psk-identity", help='PSK identity pattern, e.g. "{endpoint}"')
    p.add_argument("--psk-key", help='PSK key pattern, e.g. "hex:{n:032x}"')
    p.add_argument("--psk-csv", help="CSV of endpoint,identity,key")
    p.add_argument("--rate", type=positive_number, help="registrations started per second")
    p.add_argument("--processes", type=int, help="processes (default: one per core)")
    p.add_argument("--duration", type=positive_number, help="seconds to run")
    p.add_argument("--sample-every", type=positive_number, help="seconds per timeline row")
    p.add_argument("--seed", type=int)
    p.add_argument("--client-config", help="client TOML every device starts from")
    p.add_argument(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="AT:DURATION[:KIND]",
        help="server away DURATION s at AT s (unreachable or blackhole); repeatable",
    )
    p.add_argument("--simulate", action="store_true", help="virtual time, no network")
    p.add_argument("--out", type=Path, help="directory for summary.json, timeline.csv, fleet.png")
    p.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    p.set_defaults(func=run)


def _spec(args: argparse.Namespace) -> FleetSpec:
    overrides: dict[str, Any] = {
        key: getattr(args, key)
        for key in (
            "server",
            "devices",
            "first",
            "endpoint",
            "lifetime",
            "psk_identity",
            "psk_key",
            "psk_csv",
            "rate",
            "processes",
            "duration",
            "sample_every",
            "seed",
            "client_config",
        )
    }
    spec = load_spec(args.file, **overrides) if args.file else load_spec({}, **overrides)
    if args.outage:
        from dataclasses import replace

        spec = replace(spec, outages=(*spec.outages, *args.outage))
    return spec


class _Status:
    """The live status line: rich's on a terminal when installed, plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.errors: Counter[str] = Counter()
        self.last_plain = 0.0
        self.live: Any = None
        if sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.live import Live

                self.live = Live(console=Console(stderr=True), auto_refresh=False)
                self.live.start()
            except ImportError:
                self.live = None

    def row(self, row: dict[str, Any], window: Window) -> None:
        self.errors.update(window.errors)
        line = status_line(row, dict(self.errors), self.total)
        if self.live is not None:
            self.live.update(line, refresh=True)
        elif sys.stderr.isatty():
            print("\r" + line[:200].ljust(120), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.last_plain >= PLAIN_EVERY:
            self.last_plain = time.monotonic()
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        elif sys.stderr.isatty():
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    spec = _spec(args)
    status = _Status(spec.devices)
    try:
        result = run_fleet(spec, simulate=args.simulate, out_dir=args.out, on_row=status.row)
    except FleetError as exc:
        status.close()
        print(f"aiolwm2m fleet: {exc}", file=sys.stderr)
        return 1
    status.close()
    summary = result.summary
    if result.rows:
        print(status_line(result.rows[-1], summary["errors"], spec.devices))
    print(
        f"registrations {summary['registrations']} (re-registrations "
        f"{summary['reregistrations']}), updates {summary['updates']}, notifications "
        f"{summary['notifications']}, peak {summary['peak_registrations_per_s']}/s, "
        f"wall {summary['wall_seconds']:.1f} s"
    )
    for path in result.files:
        print(f"wrote {path}")
    for why in result.skipped:
        print(f"skipped {why}")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0
