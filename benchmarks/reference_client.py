"""A minimal LwM2M load client: Register / Update over raw asyncio UDP, many devices per process.

It is the yardstick the benchmarks put aiolwm2m's figures next to, and the load
generator for server benchmarks. On purpose it is the least a real device
does — hand-built CoAP (RFC 7252 §3), one connected UDP socket per device,
CON with exponential retransmission (§4.2), piggybacked or separate answers,
Update every ``lifetime / 2`` — and nothing of aiolwm2m, so it shares no bug
and no cost with the code it measures.

    python benchmarks/reference_client.py 127.0.0.1:5683 --devices 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import cast

CON, NON, ACK, RST = 0, 1, 2, 3
POST, CREATED, CHANGED = 0x02, 0x41, 0x44
URI_PATH, LOCATION_PATH, CONTENT_FORMAT, URI_QUERY = 11, 8, 12, 15


def encode(mtype: int, code: int, mid: int, token: bytes, opts: list[tuple[int, bytes]]) -> bytes:
    out = bytearray([0x40 | mtype << 4 | len(token), code, mid >> 8, mid & 0xFF]) + token
    last = 0
    for number, value in sorted(opts, key=lambda o: o[0]):  # stable: repeated options keep order
        delta, size = number - last, len(value)
        last = number
        ext = b""
        nibbles = []
        for n in (delta, size):
            if n < 13:
                nibbles.append(n)
            elif n < 269:
                nibbles.append(13)
                ext += bytes([n - 13])
            else:
                nibbles.append(14)
                ext += (n - 269).to_bytes(2, "big")
        out += bytes([nibbles[0] << 4 | nibbles[1]]) + ext + value
    return bytes(out)


def decode(data: bytes) -> tuple[int, int, int, bytes, list[tuple[int, bytes]]]:
    """(type, code, mid, token, options) of a datagram (the payload is not needed)."""
    tkl = data[0] & 0x0F
    mtype, code, mid = data[0] >> 4 & 3, data[1], int.from_bytes(data[2:4], "big")
    pos, number, opts = 4 + tkl, 0, []
    while pos < len(data) and data[pos] != 0xFF:
        head, pos = data[pos], pos + 1
        nibbles = [head >> 4, head & 0x0F]
        for i in (0, 1):
            if nibbles[i] == 13:
                nibbles[i], pos = data[pos] + 13, pos + 1
            elif nibbles[i] == 14:
                nibbles[i], pos = int.from_bytes(data[pos : pos + 2], "big") + 269, pos + 2
        number += nibbles[0]
        opts.append((number, data[pos : pos + nibbles[1]]))
        pos += nibbles[1]
    return mtype, code, mid, data[4 : 4 + tkl], opts


@dataclass
class Stats:
    registered: int = 0
    updates: int = 0
    retransmissions: int = 0
    failures: int = 0
    rtts: dict[str, list[float]] = field(default_factory=lambda: {"register": [], "update": []})
    lateness: list[float] = field(default_factory=list)  # Update timer run - planned instant


class Device(asyncio.DatagramProtocol):
    def __init__(self, fleet: Fleet, endpoint: str) -> None:
        self.fleet, self.endpoint = fleet, endpoint
        self.mid, self.location = random.randrange(0x10000), b""
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: tuple[int, bytes, str, float] | None = None  # mid, token, kind, sent
        self.timer: asyncio.TimerHandle | None = None
        self.due: float | None = None  # when the planned Update should run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def request(self, kind: str) -> None:
        if kind == "update" and self.due is not None:
            self.fleet.stats.lateness.append(self.fleet.loop.time() - self.due)
            self.due = None
        self.mid = (self.mid + 1) & 0xFFFF
        token = random.getrandbits(32).to_bytes(4, "big")
        if kind == "register":
            query = [f"ep={self.endpoint}", f"lt={self.fleet.lifetime}", "lwm2m=1.1", "b=U"]
            opts = [(URI_PATH, b"rd"), (CONTENT_FORMAT, b"\x28")]
            opts += [(URI_QUERY, q.encode()) for q in query]
            data = encode(CON, POST, self.mid, token, opts) + b"\xff</1/0>,</3/0>"
        else:
            opts = [(URI_PATH, s) for s in self.location.split(b"/") if s]
            data = encode(CON, POST, self.mid, token, opts)
        self.pending = (self.mid, token, kind, time.monotonic())
        self.send(data, 2.0 * random.uniform(1.0, 1.5), 0)

    def send(self, data: bytes, timeout: float, tries: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data)
        self.timer = self.fleet.loop.call_later(timeout, self.retransmit, data, timeout, tries)

    def retransmit(self, data: bytes, timeout: float, tries: int) -> None:
        if tries == 4:  # MAX_RETRANSMIT: give up, register again later
            self.pending, self.location = None, b""
            self.fleet.stats.failures += 1
            self.timer = self.fleet.loop.call_later(
                self.fleet.lifetime / 2, self.request, "register"
            )
            return
        self.fleet.stats.retransmissions += 1
        self.send(data, timeout * 2, tries + 1)

    def datagram_received(self, data: bytes, addr: object) -> None:
        mtype, code, mid, token, opts = decode(data)
        if mtype == CON:  # a separate response (or a request we do not serve): ACK it
            assert self.transport is not None
            self.transport.sendto(encode(ACK, 0, mid, b"", []))
        if self.pending is None or code == 0 or token != self.pending[1]:
            return
        kind, sent = self.pending[2], self.pending[3]
        self.pending = None
        if self.timer is not None:
            self.timer.cancel()
        if code in (CREATED, CHANGED):
            self.fleet.stats.rtts[kind].append(time.monotonic() - sent)
            if kind == "register":
                self.location = b"/".join(v for n, v in opts if n == LOCATION_PATH)
                self.fleet.stats.registered += 1
            else:
                self.fleet.stats.updates += 1
            again = "update"
        else:
            self.fleet.stats.failures += 1
            again = "register"
        self.later(again)

    def later(self, kind: str) -> None:
        self.due = self.fleet.loop.time() + self.fleet.lifetime / 2
        self.timer = self.fleet.loop.call_at(self.due, self.request, kind)


class Fleet:
    def __init__(self, lifetime: int = 60) -> None:
        self.lifetime, self.stats = lifetime, Stats()
        self.devices: list[Device] = []
        self.loop = asyncio.get_running_loop()

    async def start(self, server: tuple[str, int], count: int, rate: float, prefix: str) -> None:
        """Open ``count`` devices and register them at ``rate`` per second (10 ms batches)."""
        start = self.loop.time()
        while len(self.devices) < count:
            due = min(count, int((self.loop.time() - start) * rate) + 1)
            while len(self.devices) < due:
                device = Device(self, f"{prefix}{len(self.devices)}")
                await self.loop.create_datagram_endpoint(lambda d=device: d, remote_addr=server)
                self.devices.append(device)
                device.request("register")
            await asyncio.sleep(0.01)

    def close(self) -> None:
        for device in self.devices:
            if device.timer is not None:
                device.timer.cancel()
            if device.transport is not None:
                device.transport.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="HOST:PORT of the LwM2M server")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--lifetime", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1000.0, help="Registers per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--prefix", default="ref-")
    args = parser.parse_args()
    host, _, port = args.server.rpartition(":")
    fleet = Fleet(args.lifetime)
    cpu = time.process_time()
    await fleet.start((host, int(port)), args.devices, args.rate, args.prefix)
    await asyncio.sleep(args.seconds)
    fleet.close()
    s = fleet.stats
    print(
        f"registered {s.registered} updates {s.updates} retransmissions {s.retransmissions} "
        f"failures {s.failures} cpu {time.process_time() - cpu:.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
