"""Shipped fault scenarios and the soak, on real UDP sockets (127.0.0.1).

`make test` cannot spend the several minutes the scenarios take one after the
other at their own time scale (that is `make scenarios`), so here every
duration in their timelines and client timers is multiplied by 0.3 and they
all run at once, each on its own event loop. The soak runs for 60 s with 20
clients.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.scenario import (
    ScenarioRunner,
    Step,
    client_config,
    fault_period,
    load_scenario,
    recovery_bound,
    run_scenario,
)
from aiolwm2m.testbed.soak import SoakSettings, build_scenario, run_soak
from aiolwm2m.testbed.soak import main as soak_main

SCENARIOS = sorted((Path(__file__).parents[2] / "src" / "aiolwm2m" / "scenarios").glob("*.toml"))
#: Compression of every shipped scenario. Lower would push the scaled Update
#: interval under its 1 s floor, and windows could end before the Update they
#: are meant to catch.
FACTOR = 0.3


def judge_compressed(path: Path) -> list[str]:
    """Run one shipped scenario compressed; what is wrong with its verdict (empty: fine)."""
    scenario = load_scenario(path)
    scenario.time_scale *= FACTOR
    verdict = run_scenario(scenario)
    if scenario.expect_verdict == "fail":
        if verdict.passed or not any("bound is" in r for r in verdict.reasons):
            return [f"{path.stem}: expected a failed recovery bound, got {verdict.reasons}"]
        return []
    if not verdict.passed:
        return [f"{path.stem}: {reason}" for reason in verdict.reasons]
    return []


@pytest.mark.timeout(90)
def test_shipped_scenario_verdicts() -> None:
    """All at once, each on its own event loop in a thread: they mostly wait on timers."""
    assert len(SCENARIOS) >= 15
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        problems = [p for found in pool.map(judge_compressed, SCENARIOS) for p in found]
    assert not problems, "\n".join(problems)


def test_timeline_interleaves_faults_and_client_events() -> None:
    scenario = load_scenario(
        Path(__file__).parents[2] / "src" / "aiolwm2m" / "scenarios" / "update_404.toml"
    )
    scenario.time_scale = 0.15
    entries = []
    verdict = run_scenario(scenario, entries.append)
    sources = [e.source for e in entries]
    assert {"fault", "client", "server"} <= set(sources)
    times = [e.time for e in entries]
    assert times == sorted(times)
    fault = next(i for i, e in enumerate(entries) if e.source == "fault")
    assert any(e.event is not None and e.event.name == "error" for e in entries[fault:])
    assert verdict.passed, verdict.reasons


def test_values_stored_for_observations_a_new_registration_ended_are_counted_apart() -> None:
    """Stored while the server was unreachable, then a new Register (the registration expired
    meanwhile, and the server forgot it): those values end with their observations (spec §10),
    and the report counts them apart from the other drops by policy."""
    scenario = load_scenario(
        {
            "scenario": {"name": "stored-then-forgotten", "duration": 24},
            "client": {"server": {"lifetime": 8}},
            "notify": {"every": 1.0},
            "step": [
                {"at": 4, "fault": "unreachable", "duration": 6},
                {"at": 6, "fault": "restart", "duration": 1, "forget_registrations": True},
            ],
        }
    )
    scenario.time_scale = FACTOR
    verdict = run_scenario(scenario)
    assert verdict.passed, verdict.reasons
    (report,) = verdict.clients
    assert report.dropped_at_register > 0
    assert report.dropped_at_register == report.store_dropped


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"needs a \[scenario\]"),
        ({"scenario": {"duration": 10, "colour": 1}}, "unknown key"),
        ({"scenario": {"duration": 10}, "step": [{"at": 1, "fault": "meteor"}]}, "fault must"),
        (
            {"scenario": {"duration": 10}, "step": [{"at": 5, "fault": "dns", "duration": 9}]},
            "inside",
        ),
        ({"scenario": {"duration": 10}, "client": {"coap": {"ack_timeout": -1}}}, "ack_timeout"),
        (
            {"scenario": {"duration": 9}, "step": [{"at": 1, "duration": 1, "fault": "respond"}]}
            | {"notify": {"every": 0}},
            "every",
        ),
        (
            {"scenario": {"duration": 9}}
            | {"step": [{"at": 1, "duration": 1, "fault": "respond", "code": "9.99"}]},
            "out of range",
        ),
    ],
)
def test_bad_scenarios_are_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_scenario(data)


def test_overlapping_windows_form_one_fault_period() -> None:
    a, b, c = Step(2, "reset", 2), Step(3, "dns", 10), Step(20, "blackhole", 1)
    assert fault_period([a, b, c], a) == [a, b]
    assert fault_period([a, b, c], c) == [c]


def test_recovery_bound_follows_the_reconnect_schedule() -> None:
    scenario = load_scenario({"scenario": {"duration": 10}, "client": {"server": {"lifetime": 2}}})
    config = client_config(scenario, "127.0.0.1:1", 0)
    mtw = config.coap.max_transmit_wait
    # First delay at most 2 s, doubling: attempts at 2, 6, 14 s at the latest, so when a
    # 10 s window ends the client waits in a delay of at most 8 s.
    assert recovery_bound(config, 10.0) == pytest.approx(8.0 + mtw)
    assert recovery_bound(config, 0.0, extra_wait=30) == pytest.approx(30 + mtw)


def test_soak_timeline_is_reproducible_and_leaves_room_to_recover() -> None:
    settings = SoakSettings(clients=5, seconds=300, seed=4, max_latency=2.0)
    first, again = build_scenario(settings), build_scenario(settings)
    assert first.steps == again.steps and len(first.steps) >= 5
    for before, after in zip(first.steps, first.steps[1:], strict=False):
        assert after.at > before.end


def test_soak_refuses_a_run_too_short_for_one_fault_window() -> None:
    """SOAK_SECONDS=120 with the default MAX_LATENCY injected nothing and said PASS."""
    with pytest.raises(ConfigError, match="too short for one fault window"):
        build_scenario(SoakSettings(clients=5, seconds=120))
    assert soak_main(["--clients", "5", "--seconds", "120"]) == 2


def test_record_false_refuses_expectations() -> None:
    scenario = load_scenario(
        Path(__file__).parents[2] / "src" / "aiolwm2m" / "scenarios" / "update_404.toml"
    )
    with pytest.raises(ConfigError):
        ScenarioRunner(scenario, record=False)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_soak_60_seconds() -> None:
    progress: list[str] = []
    settings = SoakSettings(clients=20, seconds=60, seed=2, lifetime=8, max_latency=5.0)
    result = asyncio.run(run_soak(settings, progress=progress.append))
    print("\n".join(result.figures()))
    # A line every 10 s, so a long run never looks hung.
    assert len(progress) >= 5 and "fault windows" in progress[-1], progress
    assert result.passed, [*result.verdict.reasons, *result.reasons]
    assert result.scenario.steps, "no fault was injected"
    produced = sum(c.produced for c in result.verdict.clients)
    assert produced > 0 and sum(c.delivered for c in result.verdict.clients) > 0
