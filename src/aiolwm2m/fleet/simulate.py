"""A fleet in virtual time: the same :class:`FleetSpec`, no network, the same timeline.

Every device is the production engine (:class:`~aiolwm2m.runtime.sim.SimClient`,
keeping no event history: the fleet's :class:`FleetStats` counts events as
they come) and the server is the testbed's sans-IO core
(:class:`~aiolwm2m.testbed.sim.SimServer`) on the simulated network, so a
week of back-off after the scripted outages takes seconds and is the same
for a given seed every time. Outages act on the server's address: an
``unreachable`` one closes its port (devices get ICMP port-unreachable), a
``blackhole`` one drops every datagram to and from it.

Devices are ramped up at ``rate`` per second of virtual time, as on a real
network. The server's address is the spec's host when it is an IP address,
otherwise a simulated one its name resolves to.
"""

from __future__ import annotations

import gc
import ipaddress
import random
from collections.abc import Callable
from functools import partial

from aiolwm2m.accounts import parse_server_uri
from aiolwm2m.fleet.devices import NotificationTap, ValueTicker, device_objects, phases
from aiolwm2m.fleet.spec import FleetSpec, OutageKind
from aiolwm2m.fleet.stats import FleetStats, Totals, Window
from aiolwm2m.runtime.sim import Address, SimClient, SimNetwork
from aiolwm2m.testbed.sim import SimServer

__all__ = ["SimFleet"]

#: Where a server named by host name lives on the simulated network.
SIM_SERVER_IP = "10.0.0.1"


def _device_ip(i: int) -> str:
    """A distinct simulated address per device (10.128.0.0/9: room for 8 M devices)."""
    return f"10.{128 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}"


class SimFleet:
    """Devices ``start`` … ``stop`` − 1 of ``spec`` on a virtual clock (module docstring)."""

    def __init__(self, spec: FleetSpec, start: int = 0, stop: int | None = None) -> None:
        self.spec = spec
        self.start, self.stop = start, spec.devices if stop is None else stop
        uri = parse_server_uri(spec.server)
        self.net = net = SimNetwork(seed=spec.seed)
        try:
            ip = str(ipaddress.ip_address(uri.host))
        except ValueError:
            ip = SIM_SERVER_IP
            net.dns[uri.host] = ip
        self.server_addr: Address = (ip, uri.port)
        self.server = SimServer(net, self.server_addr)
        self.rng = random.Random(spec.seed * 1_000_003 + self.start)
        self.stats = FleetStats(self.stop - self.start, origin=net.clock.now)
        self.clients: list[SimClient] = []
        self.ticker = ValueTicker(spec, self.rng)
        self._tap = NotificationTap(self.stats) if spec.values else None
        self._blackholed = False
        net.filters.append(self._passes)

    def _passes(self, src: Address, dst: Address, data: bytes) -> bool:
        return not (self._blackholed and self.server_addr in (src, dst))

    # ------------------------------------------------------------------ running
    def run(self, on_window: Callable[[Window], None], until: float | None = None) -> Totals:
        """Run ``duration`` (or ``until``) virtual seconds; returns the totals."""
        spec, clock = self.spec, self.net.clock
        end = until if until is not None else spec.duration
        self.server.start()
        self._schedule_ramp()
        for outage in spec.outages:
            clock.call_at(outage.at, partial(self._outage, outage.kind, True))
            clock.call_at(outage.at + outage.duration, partial(self._outage, outage.kind, False))
        if spec.values:
            clock.call_at(1.0, partial(self._tick, end))
        interval = spec.sample_interval
        k = 1
        while k * interval <= end + 1e-9:
            clock.run_until(k * interval)
            on_window(self.stats.take(clock.now))
            k += 1
        return self.stats.total

    def _schedule_ramp(self) -> None:
        spec, clock = self.spec, self.net.clock
        base = spec.base_config()
        device_phases = phases(spec.devices, spec.seed)[self.start : self.stop]
        shard_rate = spec.rate * (self.stop - self.start) / spec.devices
        for j, identity in enumerate(spec.identities(self.start, self.stop)):
            config = spec.device_config(base, identity)
            objects = device_objects(spec, config, device_phases[j])
            client = SimClient(
                self.net, config, objects, rng=self.rng, host=_device_ip(identity.index), history=0
            )
            client.subscribe(self.stats.watch(j, client))
            if self._tap is not None:
                client.wire_taps.append(self._tap)
                self.ticker.add(objects, device_phases[j])
            self.clients.append(client)
            clock.call_at(j / shard_rate, client.start)
        # The devices live for the whole run: keep the collector's full passes off them.
        gc.collect()
        gc.freeze()

    def _tick(self, end: float) -> None:
        now = self.net.clock.now
        self.ticker.step(now)
        if now + 1.0 < end:
            self.net.clock.call_at(now + 1.0, partial(self._tick, end))

    def _outage(self, kind: OutageKind, begins: bool) -> None:
        if kind is OutageKind.BLACKHOLE:
            self._blackholed = begins
        elif begins:
            self.server.stop()
        else:
            self.server.start()
