"""The minimal reference client (reference_client.py) as a discrete-event model in virtual time.

The yardstick for the simulated fleet: the same devices, ramp-up and
outages, modelled as directly as Python allows — one heap of (time, device,
action), a device's whole state in three small lists — with the reference
client's behaviour: Register, Update every lifetime / 2, CON retransmitted
after 2 × (1 … 1.5) s doubling, four retransmissions, then Register again
lifetime / 2 later (it has no back-off schedule and ignores ICMP, so a
closed port looks like a silent one). Nothing of aiolwm2m is used.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence

RTT = 0.01  # the simulated network's round trip (5 ms each way)
REGISTER, UPDATE, RETRY = 0, 1, 2


def simulate(
    devices: int,
    rate: float,
    lifetime: float,
    duration: float,
    outages: Sequence[tuple[float, float]],
    seed: int = 0,
    interval: float = 1.0,
) -> dict[str, object]:
    """Run the model; registrations per ``interval`` s and totals."""
    rng = random.Random(seed)

    def down(t: float) -> bool:
        return any(at <= t < at + length for at, length in outages)

    heap: list[tuple[float, int, int, int, float]] = []  # when, device, action, tries, timeout
    for i in range(devices):
        heap.append((i / rate, i, REGISTER, 0, 0.0))
    heapq.heapify(heap)
    registered = bytearray(devices)
    kind = bytearray(devices)  # what the pending request is
    buckets = [0] * (int(duration / interval) + 1)
    sent = registrations = 0
    while heap and heap[0][0] <= duration:
        t, i, action, tries, timeout = heapq.heappop(heap)
        if action != RETRY:
            kind[i] = action
            timeout = 2.0 * rng.uniform(1.0, 1.5)
        sent += 1
        if not down(t) and not down(t + RTT / 2):
            if kind[i] == REGISTER:
                registrations += 1
                buckets[int((t + RTT) / interval)] += 1
            registered[i] = 1
            heapq.heappush(heap, (t + RTT + lifetime / 2, i, UPDATE, 0, 0.0))
        elif tries == 4:
            registered[i] = 0
            heapq.heappush(heap, (t + timeout + lifetime / 2, i, REGISTER, 0, 0.0))
        else:
            heapq.heappush(heap, (t + timeout, i, RETRY, tries + 1, timeout * 2))
    return {
        "registrations": registrations,
        "per_interval": buckets,
        "sent": sent,
        "registered_at_end": sum(registered),
    }
