"""Soak test: many clients, minutes of randomly drawn faults, invariants checked throughout.

``python -m aiolwm2m.testbed.soak --clients 100 --seconds 600`` (``make soak``)
generates a fault timeline from a seed — one fault window at a time, each
followed by a quiet period as long as the clients' recovery bound — and runs
it as a scenario (:class:`~aiolwm2m.testbed.scenario.ScenarioRunner`, no
event recording) with every client observed and notifying. It stops by itself
and checks:

* no unhandled exception in any task (the event loop's exception handler);
* after every fault window every client registered or updated again within
  the bound derived from its own reconnect and retry schedules;
* every notification produced arrived in order, or is accounted for by the
  client's drop policy, a Reset that cancelled its observation, or the store;
* resident memory (``VmRSS``) grew less than 5 % between the end of the
  warm-up and the end of the run.

It prints the figures (faults, recoveries, worst recovery time, notifications,
RSS) and exits 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiolwm2m.client.config import ClientConfig
from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.scenario import (
    NotifySpec,
    Scenario,
    ScenarioRunner,
    Step,
    Verdict,
    client_config,
    recovery_bound,
)

__all__ = [
    "MARGIN",
    "MAX_RSS_GROWTH",
    "PROGRESS_EVERY",
    "SoakResult",
    "SoakSettings",
    "build_scenario",
    "main",
    "read_rss_kib",
    "run_soak",
]


#: Gap after each fault window beyond the recovery bound, so windows never overlap
#: a recovery that is still allowed to be in progress.
MARGIN = 2.0
MAX_RSS_GROWTH = 0.05
#: Seconds between progress lines (a silent 10-minute run looks hung).
PROGRESS_EVERY = 10.0


def read_rss_kib() -> int:
    """This process's resident set size (``VmRSS`` in /proc/self/status), in KiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _draw(rng: random.Random, clients: int) -> dict[str, Any]:
    """One random fault (its step fields without ``at``)."""
    kind = rng.choice(
        [
            "blackhole",
            "loss",
            "unreachable",
            "update-5.03",
            "update-4.04",
            "update-reset",
            "overloaded",
            "delay",
            "duplicate",
            "restart",
            "flap",
            "notify-silence",
        ]
    )
    duration = round(rng.uniform(2.0, 8.0), 1)
    some = max(1, clients // 2)
    table: dict[str, dict[str, Any]] = {
        "blackhole": {"fault": "blackhole"},
        "loss": {"fault": "loss", "probability": round(rng.uniform(0.2, 0.6), 2)},
        "unreachable": {"fault": "unreachable"},
        "update-5.03": {"fault": "respond", "match": "POST /rd/*", "code": "5.03"},
        "update-4.04": {"fault": "respond", "match": "POST /rd/*", "code": "4.04", "count": some},
        "update-reset": {"fault": "reset", "match": "POST /rd/*", "count": some},
        "overloaded": {"fault": "respond", "match": "POST /rd/*", "code": "4.29", "max_age": 2},
        "delay": {"fault": "delay", "delay": 0.2, "jitter": 0.15},
        "duplicate": {"fault": "duplicate", "probability": 0.3},
        "restart": {"fault": "restart", "forget_registrations": rng.random() < 0.5},
        "flap": {"fault": "flap", "up": 1.0, "down": 1.0},
        "notify-silence": {"fault": "silence", "match": "2.05", "count": some},
    }
    step = dict(table[kind])
    step["duration"] = min(duration, 3.0) if kind == "restart" else duration
    return step


@dataclass
class SoakSettings:
    clients: int = 100
    seconds: float = 600.0
    seed: int = 1
    notify_every: float = 2.0
    warmup: float | None = None  # default: see _warmup
    # Longer than the scenario default so Updates from many clients spread out.
    lifetime: int = 20
    # RFC 7252 MAX_LATENCY; it sets EXCHANGE_LIFETIME, how long dedup entries live.
    max_latency: float = 100.0


def build_scenario(settings: SoakSettings) -> Scenario:
    """The random fault timeline for these settings (same seed, same timeline)."""
    rng = random.Random(settings.seed)
    scenario = Scenario(
        name=f"soak-{settings.clients}x{settings.seconds:g}s-seed{settings.seed}",
        duration=settings.seconds,
        steps=[],
        clients=settings.clients,
        seed=settings.seed,
        client={
            "server": {"lifetime": settings.lifetime},
            "coap": {"max_latency": settings.max_latency},
        },
        notify=NotifySpec(every=settings.notify_every, start=1.0),
    )
    config = client_config(scenario, "127.0.0.1:1", 0)
    warmup = _warmup(settings, config)
    at = warmup
    while True:
        fields = _draw(rng, settings.clients)
        extra = float(fields.get("max_age", 0))
        quiet = recovery_bound(config, fields["duration"], extra) + MARGIN
        if at + fields["duration"] + quiet > settings.seconds:
            break
        scenario.steps.append(Step(at=round(at, 1), **fields))
        at += fields["duration"] + quiet
    if not scenario.steps:
        # A soak without a fault proves nothing; passing it would say otherwise.
        raise ConfigError(
            f"--seconds {settings.seconds:g} is too short for one fault window: this seed's "
            f"first one needs {at + fields['duration'] + quiet:.0f} s (warm-up {warmup:.0f} s, "
            f"fault {fields['duration']:g} s, recovery bound and margin {quiet:.0f} s)"
        )
    assert scenario.notify is not None
    scenario.notify.stop = settings.seconds - recovery_bound(config, 0.0) - MARGIN
    return scenario


def _warmup(settings: SoakSettings, config: ClientConfig) -> float:
    """Faults start and memory is measured only after this.

    At least EXCHANGE_LIFETIME (+10 s): until then the duplicate-detection
    caches RFC 7252 requires (on both ends) are still filling, which is
    growth by design, not a leak. Otherwise 20 % of the run, at most 60 s.
    """
    if settings.warmup is not None:
        return settings.warmup
    return max(min(60.0, 0.2 * settings.seconds), config.coap.exchange_lifetime + 10.0)


@dataclass
class SoakResult:
    verdict: Verdict
    scenario: Scenario
    rss_after_warmup: int = 0
    rss_end: int = 0
    rss_max: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict.passed and not self.reasons

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_after_warmup) / max(1, self.rss_after_warmup)

    def figures(self) -> list[str]:
        v = self.verdict
        done = [r.recovered_after for r in v.recoveries if r.recovered_after is not None]
        produced = sum(c.produced for c in v.clients)
        delivered = sum(c.delivered for c in v.clients)
        faults = ", ".join(
            f"{k}={n}" for k, n in sorted(Counter(s.fault for s in self.scenario.steps).items())
        )
        return [
            f"soak {self.scenario.name}: {len(v.clients)} clients, "
            f"{self.scenario.duration:g} s, {len(self.scenario.steps)} fault windows",
            f"faults injected: {faults}",
            "proxy counters: " + ", ".join(f"{k}={n}" for k, n in sorted(v.counters.items())),
            f"recoveries: {len(done)}/{len(v.recoveries)} client×window, max recovery "
            f"{max(done, default=0.0):.2f} s, mean {sum(done) / max(1, len(done)):.2f} s "
            f"(bounds {min((r.bound for r in v.recoveries), default=0):.1f}-"
            f"{max((r.bound for r in v.recoveries), default=0):.1f} s)",
            f"notifications: produced {produced}, delivered {delivered}, dropped by policy "
            f"{sum(c.store_dropped for c in v.clients)} (of which ended with their observations "
            f"by a new registration {sum(c.dropped_at_register for c in v.clients)}, unsent "
            f"when a Reset ended their observation {sum(c.dropped_cancelled for c in v.clients)}), "
            "cancelled by reset "
            f"{sum(c.cancelled for c in v.clients)}, still stored "
            f"{sum(c.still_stored for c in v.clients)} (notify errors reported "
            f"{sum(c.notify_errors for c in v.clients)}, duplicates seen by the server "
            f"{v.server_duplicates})",
            f"RSS: {self.rss_after_warmup / 1024:.1f} MiB after warm-up, "
            f"{self.rss_end / 1024:.1f} MiB at the end ({self.rss_growth:+.1%}), "
            f"max {self.rss_max / 1024:.1f} MiB",
        ]


async def run_soak(
    settings: SoakSettings, progress: Callable[[str], None] | None = None
) -> SoakResult:
    scenario = build_scenario(settings)
    warmup = _warmup(settings, client_config(scenario, "127.0.0.1:1", 0))
    runner = ScenarioRunner(scenario, record=False)
    rss: list[int] = []  # samples from the end of the warm-up on

    async def sample_rss() -> None:
        """A progress line every PROGRESS_EVERY s; RSS samples from the end of the warm-up."""
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            now = runner.now()
            if now >= warmup:
                rss.append(read_rss_kib())
            if progress is not None:
                started = sum(1 for step in scenario.steps if step.at <= now)
                progress(
                    f"{now:7.1f}s of {scenario.duration:g} s  fault windows "
                    f"{started}/{len(scenario.steps)}  RSS {read_rss_kib() / 1024:.1f} MiB"
                    + ("  (warm-up)" if now < warmup else "")
                )

    sampler = asyncio.get_running_loop().create_task(sample_rss())
    try:
        verdict = await runner.run()
    finally:
        sampler.cancel()
    rss.append(read_rss_kib())
    result = SoakResult(verdict, scenario, rss[0], rss[-1], max(rss))
    if result.rss_growth >= MAX_RSS_GROWTH:
        result.reasons.append(
            f"RSS grew {result.rss_growth:.1%} after warm-up (limit {MAX_RSS_GROWTH:.0%})"
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aiolwm2m.testbed.soak", description=__doc__)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--notify-every", type=float, default=2.0)
    p.add_argument("--lifetime", type=int, default=20)
    p.add_argument("--max-latency", type=float, default=100.0, help="RFC 7252 MAX_LATENCY")
    args = p.parse_args(argv)
    settings = SoakSettings(
        args.clients,
        args.seconds,
        args.seed,
        args.notify_every,
        lifetime=args.lifetime,
        max_latency=args.max_latency,
    )
    try:
        result = asyncio.run(run_soak(settings, progress=lambda line: print(line, flush=True)))
    except ConfigError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    for line in result.figures():
        print(line)
    if result.passed:
        print("SOAK: PASS")
        return 0
    print("SOAK: FAIL")
    for reason in [*result.verdict.reasons, *result.reasons][:50]:
        print(f"  - {reason}")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
