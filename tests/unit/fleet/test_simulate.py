"""Fleets in virtual time: the production engine × N against the testbed core, outages scripted.

"10 000 devices, one week, server down twice" is the issue's unit test; the
200-device versions keep ``make test`` fast and check the same things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiolwm2m.fleet.run import run_fleet
from aiolwm2m.fleet.simulate import SimFleet
from aiolwm2m.fleet.spec import FleetSpec, Outage, OutageKind, ValueSpec
from aiolwm2m.fleet.stats import Category, Window

DAY = 86400.0
WEEK = 7 * DAY


def week_down_twice(devices: int) -> FleetSpec:
    """Lifetime one day (an Update every ~22-24 h), the server away twice while Updates fall:
    2 h port closed on day 1, 4 h silent on day 4."""
    return FleetSpec(
        server="coap://10.0.0.1:5683",
        devices=devices,
        rate=devices / 60,
        lifetime=86400,
        duration=WEEK,
        outages=(Outage(80_000, 7_200), Outage(320_000, 14_400, OutageKind.BLACKHOLE)),
        sample_every=60,
    )


def _check_week(spec: FleetSpec, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    n = spec.devices
    assert summary["final"] == {
        "waiting": 0,
        "connecting": 0,
        "registered": n,
        "backing_off": 0,
        "failed": 0,
    }
    # Devices whose Update fell into an outage noticed it and registered again later.
    assert summary["reregistrations"] > n // 20
    assert summary["registrations"] == n + summary["reregistrations"]
    assert summary["errors"].get("network_error", 0) > 0, "port closed: ICMP seen"
    assert summary["errors"].get("timeout", 0) > 0, "silent server: timeouts seen"
    for outage in spec.outages:
        during = [r for r in rows if outage.at < r["t"] <= outage.at + outage.duration]
        assert min(r["registered"] for r in during) < n, "the outage was felt"
        after = [r for r in rows if r["t"] > outage.at + outage.duration + 4 * 3600]
        assert after[0]["registered"] == n, "everyone back within 4 h"
    # No stampede after either outage (issue 16: peak <= N/8 per second).
    assert summary["peak_registrations_per_s"] <= n / 8


def test_a_week_down_twice_in_virtual_time_200_devices() -> None:
    spec = week_down_twice(200)
    rows: list[dict[str, Any]] = []
    fleet = SimFleet(spec)
    totals = fleet.run(lambda w: rows.append(w.row(spec.sample_interval)))
    summary = totals.summary()
    summary["peak_registrations_per_s"] = max(r["registrations_per_s"] for r in rows)
    _check_week(spec, rows, summary)
    assert rows[-1]["t"] == WEEK and len(rows) == WEEK / 60


@pytest.mark.slow
def test_ten_thousand_devices_one_week_server_down_twice(tmp_path: Path) -> None:
    spec = week_down_twice(10_000)
    result = run_fleet(spec, simulate=True, out_dir=tmp_path)
    _check_week(spec, result.rows, result.summary)
    assert {p.name for p in result.files} == {"summary.json", "timeline.csv", "fleet.png"}


def test_the_same_seed_replays_the_same_fleet() -> None:
    spec = FleetSpec(
        server="coap://lwm2m.example:5683",  # a name: the simulated DNS answers it
        devices=50,
        rate=25,
        lifetime=60,
        duration=300,
        outages=(Outage(100, 60),),
    )

    def run() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        SimFleet(spec).run(lambda w: rows.append(w.row(1.0)))
        return rows

    first = run()
    assert first == run()
    assert max(r["backing_off"] for r in first) > 0


def test_values_change_and_observed_ones_are_notified() -> None:
    spec = FleetSpec(
        server="coap://10.0.0.1:5683",
        devices=20,
        rate=20,
        lifetime=600,
        duration=120,
        values=(ValueSpec("/3303/0/5700", low=15, high=25, period=60, every=5),),
    )
    fleet = SimFleet(spec)
    windows: list[Window] = []
    fleet.net.clock.call_at(30.0, lambda: _observe_all(fleet))
    fleet.run(windows.append)
    assert sum(w.notifications for w in windows if w.t <= 30) == 0
    # 20 devices x one change per 5 s for 90 s (pmin 0: every change is sent).
    assert 300 <= sum(w.notifications for w in windows) <= 400
    assert windows[-1].counts[Category.REGISTERED] == 20


def _observe_all(fleet: SimFleet) -> None:
    from aiolwm2m.testbed.operations import observe_request

    for endpoint in list(fleet.server.core.registrations):
        fleet.server.start_operation(endpoint, observe_request("/3303/0/5700"))
