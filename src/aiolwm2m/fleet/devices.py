"""Building a fleet's devices and changing their values; shared by every way of running one.

A device is the production client (:class:`~aiolwm2m.runtime.aio.Client` on a
real network, :class:`~aiolwm2m.runtime.sim.SimClient` in virtual time) with
the default objects plus the resources the fleet's ``[[value]]`` tables name.
What a fleet can share between its devices, it shares: one random generator
per shard (a Mersenne Twister is 2.5 KB) and one configuration template.

:class:`ValueTicker` changes the values: every second it visits the devices
whose turn it is (device *i* changes a value every ``every`` s, at an offset
of its own, so the fleet's changes are spread evenly over time).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.client.operations import OperationHandler, default_objects
from aiolwm2m.fleet.spec import FleetSpec, ValueSpec
from aiolwm2m.fleet.stats import FleetStats
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance

__all__ = ["NotificationTap", "ValueTicker", "device_objects"]


def device_objects(spec: FleetSpec, config: ClientConfig, phase: float) -> OperationHandler:
    """The default objects plus every ``[[value]]`` resource, at its value for ``phase``."""
    objects = default_objects(config)
    instances: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    rng = random.Random(0)
    for value in spec.values:
        oid, iid, rid = value.parsed.ids[:3]
        instances[oid, iid][rid] = _typed(value, value.value(0.0, phase, None, rng))
    for (oid, iid), values in instances.items():
        objects.tree.add_instance(oid, iid, Instance(values))
    return objects


def _typed(spec: ValueSpec, value: float) -> float:
    return int(value) if spec.generator == "counter" else value


class ValueTicker:
    """Changes the fleet's ``[[value]]`` resources on schedule (see the module docstring)."""

    def __init__(self, spec: FleetSpec, rng: random.Random) -> None:
        self.values = [(v, v.parsed, max(1, round(v.every))) for v in spec.values]
        self.rng = rng
        self.devices: list[tuple[OperationHandler, float] | None] = []
        self.previous: dict[tuple[int, int], float] = {}
        self.tick = 0

    def add(self, objects: OperationHandler, phase: float) -> None:
        self.devices.append((objects, phase))

    def step(self, t: float) -> None:
        """One second passed (``t`` s since the fleet started): change what is due."""
        self.tick += 1
        for k, (value, path, every) in enumerate(self.values):
            for i in range(self.tick % every, len(self.devices), every):
                device = self.devices[i]
                if device is not None:
                    self._change(i, k, value, path, device, t)

    def _change(
        self,
        i: int,
        k: int,
        value: ValueSpec,
        path: Path,
        device: tuple[OperationHandler, float],
        t: float,
    ) -> None:
        objects, phase = device
        new = _typed(value, value.value(t, phase, self.previous.get((i, k)), self.rng))
        self.previous[i, k] = new
        objects.tree.set(path, new)


class NotificationTap:
    """A wire tap counting the notifications devices send (2.05 as CON or NON, not ACK).

    One per shard: it only looks at two header bytes of outgoing datagrams.
    """

    def __init__(self, stats: FleetStats) -> None:
        self.stats = stats

    def datagram(self, link: int, outgoing: bool, data: bytes, now: float) -> None:
        if outgoing and len(data) > 1 and data[1] == 0x45 and data[0] & 0x20 == 0:
            self.stats.notified()

    def link_up(self, link: int, secure: bool, now: float) -> None:
        """Links are counted by their devices' events."""

    def link_failed(self, link: int, failure: LinkFailure, now: float) -> None:
        """Failures are counted by their devices' error events."""


def phases(count: int, seed: int) -> Sequence[float]:
    """Each device's phase in 0 … 1 for the value generators (reproducible per seed)."""
    rng = random.Random(seed)
    return [rng.random() for _ in range(count)]
