"""One shard of a fleet on one asyncio event loop, over real UDP/DTLS.

A shard is the devices ``start`` ≤ i < ``stop`` of a :class:`FleetSpec`; a
process (``aiolwm2m fleet``) or a Locust worker's loop thread runs one. It
starts its devices at its share of the fleet's rate, from a clock instant all
shards agree on (``origin``, a ``time.monotonic()`` value: CLOCK_MONOTONIC is
one clock for every process on the machine), so the fleet's ramp-up is the
one the spec asks for however many processes carry it.

Being lean at scale is the point: one random generator and one resolver
answer for the whole shard; after start-up the collector's generations are
frozen (``gc.freeze()``: the devices live for the whole run, and full
collections walking tens of thousands of long-lived objects stall the loop
for longer than a CoAP ACK timeout).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Callable

from aiolwm2m.fleet.devices import NotificationTap, ValueTicker, device_objects, phases
from aiolwm2m.fleet.spec import FleetSpec
from aiolwm2m.fleet.stats import FleetStats, Listener, Window
from aiolwm2m.runtime.aio import Client

__all__ = ["AioShard"]

#: How often the ramp-up starts the devices that are due.
RAMP_STEP = 0.01


class AioShard:
    """Devices ``start`` … ``stop`` − 1 of ``spec`` on the running loop (module docstring)."""

    def __init__(
        self,
        spec: FleetSpec,
        start: int,
        stop: int,
        *,
        origin: float,
        rate: float,
        local_host: str | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.spec = spec
        self.start, self.stop = start, stop
        self.origin = origin  # time.monotonic() when the fleet started
        self.rate = rate  # this shard's share of the fleet's rate
        self.local_host = local_host
        self.listener = listener
        self.rng = random.Random(spec.seed * 1_000_003 + start)
        self.clients: list[Client] = []
        self.stats: FleetStats | None = None
        self.ticker = ValueTicker(spec, self.rng)
        self._tap: NotificationTap | None = None
        self._stopping = False

    @property
    def count(self) -> int:
        return self.stop - self.start

    async def run(self, on_window: Callable[[Window], None], until: float | None = None) -> None:
        """Ramp up, hold until ``origin + duration`` (or ``until``), sampling windows; then stop."""
        loop = asyncio.get_running_loop()
        # The loop's clock and time.monotonic() are the same clock on Linux; keep the
        # offset anyway so a loop with another clock still agrees with the other shards.
        offset = loop.time() - time.monotonic()
        origin = self.origin + offset
        end = origin + (until if until is not None else self.spec.duration)
        stats = self.stats = FleetStats(self.count, origin, self.listener)
        if self.spec.values:
            self._tap = NotificationTap(stats)
        interval = self.spec.sample_interval
        sampler = loop.create_task(self._sample(on_window, origin, interval, end))
        ticker = loop.create_task(self._tick(origin, end)) if self.spec.values else None
        await self._ramp(origin, end)
        gc.collect()
        gc.freeze()
        await sampler
        if ticker is not None:
            ticker.cancel()

    async def _ramp(self, origin: float, end: float) -> None:
        loop = asyncio.get_running_loop()
        base = self.spec.base_config()
        device_phases = phases(self.spec.devices, self.spec.seed)[self.start : self.stop]
        identities = self.spec.identities(self.start, self.stop)
        assert self.stats is not None
        frozen_at = loop.time()
        for j, identity in enumerate(identities):
            due = origin + j / self.rate
            if due > loop.time():
                await asyncio.sleep(max(RAMP_STEP, due - loop.time()))
            if loop.time() >= end or self._stopping:
                return
            config = self.spec.device_config(base, identity)
            objects = device_objects(self.spec, config, device_phases[j])
            client = Client(config, objects, rng=self.rng, local_host=self.local_host)
            driver = client
            client.subscribe(self.stats.watch(j, driver))
            if self._tap is not None:
                driver.wire_taps.append(self._tap)
                self.ticker.add(objects, device_phases[j])
            self.clients.append(client)
            await client.start()
            if loop.time() - frozen_at > 1.0:
                # Objects built so far live as long as the run: keep full collections off them.
                gc.freeze()
                frozen_at = loop.time()

    async def _sample(
        self, on_window: Callable[[Window], None], origin: float, interval: float, end: float
    ) -> None:
        loop = asyncio.get_running_loop()
        assert self.stats is not None
        k = 1
        while (due := origin + k * interval) <= end + 1e-9 and not self._stopping:
            await asyncio.sleep(max(0.0, due - loop.time()))
            on_window(self.stats.take(due))
            k += 1

    async def _tick(self, origin: float, end: float) -> None:
        loop = asyncio.get_running_loop()
        k = 1
        while (due := origin + k) < end and not self._stopping:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.ticker.step(loop.time() - origin)
            k += 1

    async def close(self, timeout: float = 5.0) -> None:
        """De-register every device (bounded by ``timeout``), then drop the sockets."""
        self._stopping = True
        await asyncio.gather(*(c.close(timeout) for c in self.clients), return_exceptions=True)
