"""One client under load, real UDP on 127.0.0.1, beside a reference measured in the same run.

Three figures (issue 16), each printed with its reference and the ratio:

* ``build``: CPU and memory to build one client (objects, config, engine),
  beside a device of the minimal reference client (benchmarks/reference_client.py)
  and a client whose data model was built once and shared (what the engine
  itself costs);
* ``reads``: Reads/s one client serves to a server keeping 16 CON GETs
  outstanding, per 10 s window over a sustained run, beside aiocoap's server
  answering the same GET with the same payload to the same load generator;
* ``notify``: NON notifications a client sends per CPU second (the application
  sets an observed value, the client samples, encodes and sends it), beside
  raw ``transport.sendto`` of a datagram of the same size on the same socket
  kind; rounds of both alternate and the median ratio is the figure (one
  round of each swung between 0.10 and 0.16 on a machine shared with other
  work).

The load generator is a separate process written on raw asyncio (no aiolwm2m
code), so it costs both sides the same. CoAP message ids are 16 bits: at these
rates any generator reuses one within the default EXCHANGE_LIFETIME (247 s),
which both stacks rightly treat as a duplicate (and answer from their cache).
Both therefore run with ``ack_timeout 0.25, max_retransmit 1, max_latency
0.5`` (EXCHANGE_LIFETIME 1.625 s: room for 40 000 fresh ids a second), and the
generator counts only answers carrying the token it sent; a wrong token (a
cached answer to an older request) is reported and makes the figure invalid.

    .venv/bin/python benchmarks/bench_client.py [--seconds 60] [--only reads]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_client
from _util import print_table

REFERENCE = "reference device (reference_client.py)"

HOST = "127.0.0.1"
OUTSTANDING = 16
WINDOW = 10.0
READ_PATH = (b"3", b"0", b"0")
READ_PAYLOAD = b"aiolwm2m"  # /3/0/0 Manufacturer of the default Device object
TUNING = {"ack_timeout": 0.25, "ack_random_factor": 1.5, "max_retransmit": 1, "max_latency": 0.5}


# -- raw CoAP bits for the generator (deliberately not aiolwm2m's codec) ---------------


def _options(options: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    last = 0
    for number, value in options:
        delta = number - last
        assert delta < 13 and len(value) < 13
        out.append(delta << 4 | len(value))
        out += value
        last = number
    return bytes(out)


def _header(mtype: int, code: int, mid: int, token: bytes) -> bytes:
    return bytes([0x40 | mtype << 4 | len(token), code]) + mid.to_bytes(2, "big") + token


def _get(mid: int, token: bytes, path: tuple[bytes, ...], observe: bool = False) -> bytes:
    options = [(6, b"")] if observe else []
    options += [(11, segment) for segment in path]
    return _header(0, 0x01, mid, token) + _options(options)


def _parse(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(type, code, mid, token) of a datagram, None if it is not CoAP."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    tkl = data[0] & 0x0F
    return (data[0] >> 4) & 3, data[1], int.from_bytes(data[2:4], "big"), data[4 : 4 + tkl]


class _Generator(asyncio.DatagramProtocol):
    """The server side: registers the client (if asked to) and drives it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.registered = asyncio.Event()
        self.mid = 1
        self.token = 1
        self.pending: dict[int, tuple[bytes, bytes, float]] = {}  # mid -> (token, datagram, sent)
        self.done = 0
        self.wrong_token = 0
        self.retransmitted = 0
        self.observe_token = b"obs!"
        self.notifications = 0
        self.others = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = _parse(data)
        if head is None:
            return
        mtype, code, mid, token = head
        assert self.transport is not None
        if mtype == 0 and 1 <= code <= 31:  # a request from the client: Register / Update
            if code == 0x02 and self.peer is None:
                self.peer = addr
                location = _options([(8, b"rd"), (8, b"1")])
                self.transport.sendto(_header(2, 0x41, mid, token) + location, addr)
                self.registered.set()
            else:
                self.transport.sendto(_header(2, 0x44, mid, token), addr)
            return
        if token == self.observe_token:
            self.notifications += 1
            if mtype == 0:
                self.transport.sendto(_header(2, 0, mid, b""), addr)
            return
        if mtype == 2 and code == 0x45:
            sent = self.pending.pop(mid, None)
            if sent is None:
                return
            if sent[0] != token:
                self.wrong_token += 1  # a duplicate's cached answer: not a Read served
            else:
                self.done += 1
            self._next()
            return
        self.others += 1

    def _next(self) -> None:
        assert self.transport is not None and self.peer is not None
        mid, self.mid = self.mid, (self.mid + 1) & 0xFFFF
        token = self.token.to_bytes(4, "big")
        self.token += 1
        data = _get(mid, token, READ_PATH)
        self.pending[mid] = (token, data, time.monotonic())
        self.transport.sendto(data, self.peer)

    def resend_stale(self, older_than: float) -> None:
        assert self.transport is not None and self.peer is not None
        now = time.monotonic()
        for mid, (token, data, sent) in list(self.pending.items()):
            if now - sent > older_than:
                self.pending[mid] = (token, data, now)
                self.retransmitted += 1
                self.transport.sendto(data, self.peer)


async def _generate(conn: Connection, mode: str, target: tuple[str, int] | None) -> None:
    loop = asyncio.get_running_loop()
    transport, gen = await loop.create_datagram_endpoint(_Generator, local_addr=(HOST, 0))
    conn.send(transport.get_extra_info("sockname")[1])
    if target is None:
        await gen.registered.wait()
    else:
        gen.peer = target
    assert gen.peer is not None
    if mode == "observe":
        transport.sendto(_get(0x7777, gen.observe_token, (b"3303", b"0", b"5700"), True), gen.peer)
        conn.recv()  # the client finished sending
        await asyncio.sleep(0.5)  # let the last datagrams arrive
        conn.send((gen.notifications, gen.others))
        transport.close()
        return
    seconds, warmup = conn.recv()
    for _ in range(OUTSTANDING):
        gen._next()
    await asyncio.sleep(warmup)
    windows: list[tuple[float, float]] = []  # (reads/s, server CPU us per read)
    pid = conn.recv()
    for _ in range(int(seconds / WINDOW)):
        start, before, cpu = time.monotonic(), gen.done, _cpu(pid)
        while time.monotonic() - start < WINDOW:
            await asyncio.sleep(0.25)
            gen.resend_stale(1.0)
        done = gen.done - before
        used = _cpu(pid) - cpu
        windows.append((done / (time.monotonic() - start), used / done * 1e6 if done else 0.0))
    conn.send((windows, gen.wrong_token, gen.retransmitted))
    transport.close()


def _cpu(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _generator_main(conn: Connection, mode: str, target: tuple[str, int] | None) -> None:
    asyncio.run(_generate(conn, mode, target))


# -- the parties under test ----------------------------------------------------------


def _config(port: int) -> Any:
    from aiolwm2m.client.config import ClientConfig, ServerAccount
    from aiolwm2m.coap.params import TransmissionParameters

    account = ServerAccount(uri=f"coap://{HOST}:{port}", lifetime=300)
    return ClientConfig(endpoint="bench", servers=(account,), coap=TransmissionParameters(**TUNING))


def _client_main(port: int) -> None:
    from aiolwm2m.client.operations import default_objects
    from aiolwm2m.runtime.aio import Client

    async def run() -> None:
        config = _config(port)
        client = Client(config, default_objects(config))
        await client.start()
        await asyncio.Event().wait()

    asyncio.run(run())


def _aiocoap_main(conn: Connection) -> None:
    import aiocoap
    import aiocoap.resource
    from aiocoap.numbers.constants import TransportTuning

    TransportTuning.ACK_TIMEOUT = TUNING["ack_timeout"]
    TransportTuning.ACK_RANDOM_FACTOR = TUNING["ack_random_factor"]
    TransportTuning.MAX_RETRANSMIT = int(TUNING["max_retransmit"])
    TransportTuning.MAX_LATENCY = TUNING["max_latency"]

    class Manufacturer(aiocoap.resource.Resource):
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=READ_PAYLOAD, content_format=0)

    async def run() -> None:
        site = aiocoap.resource.Site()
        site.add_resource([s.decode() for s in READ_PATH], Manufacturer())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        await aiocoap.Context.create_server_context(site, bind=(HOST, port), transports=["udp6"])
        conn.send(port)
        await asyncio.Event().wait()

    asyncio.run(run())


def _start(target: Callable[..., None], *args: Any) -> mp.Process:
    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def serve_reads(which: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Drive one server under test for ``seconds`` (after ``warmup``)."""
    ours, theirs = mp.Pipe()
    if which == "aiocoap":
        server_end, server_child = mp.Pipe()
        server = _start(_aiocoap_main, server_child)
        port = server_end.recv()
        gen = _start(_generator_main, theirs, "reads", (HOST, port))
        ours.recv()
    else:
        gen = _start(_generator_main, theirs, "reads", None)
        server = _start(_client_main, ours.recv())
    try:
        ours.send((seconds, warmup))
        time.sleep(warmup)
        assert server.pid is not None
        ours.send(server.pid)
        windows, wrong, retransmitted = ours.recv()
    finally:
        server.kill()
        gen.kill()
    return {
        "rates": [rate for rate, _ in windows],
        "cpu": [cpu for _, cpu in windows],
        "wrong_token": wrong,
        "retransmitted": retransmitted,
    }


# -- notifications ---------------------------------------------------------------------


async def _notify_rates(count: int, rounds: int) -> tuple[list[float], list[float], int, int]:
    """Per CPU second, each round: NON notifications sent, then raw sendto of as many.

    The two alternate round by round, so a busy machine (the bench shares it)
    slows both alike; the first round also warms the caches both use.
    """
    from aiolwm2m.client.operations import default_objects
    from aiolwm2m.lwm2m.path import Path
    from aiolwm2m.lwm2m.tree import Instance
    from aiolwm2m.runtime.aio import Client

    ours_rates: list[float] = []
    raw_rates: list[float] = []
    ours, theirs = mp.Pipe()
    gen = _start(_generator_main, theirs, "observe", None)
    try:
        port = ours.recv()
        config = _config(port)
        objects = default_objects(config)
        objects.tree.add_instance(3303, 0, Instance({5700: 21.5}))
        client = Client(config, objects)
        await client.start()
        while not len(objects.observer):
            await asyncio.sleep(0.01)
        path = Path.parse("/3303/0/5700")
        values = [20.0 + (i % 50) / 4 for i in range(count)]
        # The same number of datagrams of the size of a notification, raw.
        loop = asyncio.get_running_loop()
        raw, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(HOST, port)
        )
        datagram = bytes(20)  # about a notification of a float in text/plain
        for _ in range(rounds):
            gc.collect()
            start = time.process_time()
            for value in values:
                objects.tree.set(path, value)
            ours_rates.append(count / (time.process_time() - start))
            gc.collect()
            start = time.process_time()
            for _ in range(count):
                raw.sendto(datagram)
            raw_rates.append(count / (time.process_time() - start))
            await asyncio.sleep(0)  # let the loop breathe between rounds
        raw.close()
        await client.stop()
        ours.send(None)
        received, others = ours.recv()
    finally:
        gen.kill()
    return ours_rates, raw_rates, received, others


# -- building clients ------------------------------------------------------------------


def build_figures(count: int) -> dict[str, tuple[float, float]]:
    """{case: (CPU ms per client, KiB retained per client)}."""
    return asyncio.run(_build_figures(count))


async def _build_figures(count: int) -> dict[str, tuple[float, float]]:
    from aiolwm2m.client.operations import default_objects
    from aiolwm2m.runtime.aio import Client

    config = _config(5683)
    shared = default_objects(config)
    fleet = reference_client.Fleet()  # wants a running loop, hence async
    cases: dict[str, Callable[[], object]] = {
        "client (objects, config, engine)": lambda: Client(config),
        "engine only (shared data model)": lambda: Client(config, shared),
        REFERENCE: lambda: reference_client.Device(fleet, "bench"),
    }
    out: dict[str, tuple[float, float]] = {}
    for name, build in cases.items():
        build()
        cpu: list[float] = []
        for _ in range(5):
            gc.collect()
            start = time.process_time()
            for _ in range(count):
                build()
            cpu.append((time.process_time() - start) / count * 1e3)
        gc.collect()
        tracemalloc.start()
        kept = [build() for _ in range(count)]
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        out[name] = (statistics.median(cpu), retained / count / 1024)
    return out


# -- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained Read run length")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7, help="notification rounds")
    parser.add_argument("--clients", type=int, default=200, help="clients built for 'build'")
    parser.add_argument("--only", choices=("build", "reads", "notify"), action="append")
    args = parser.parse_args(argv)
    parts = args.only or ["build", "notify", "reads"]

    if "build" in parts:
        figures = build_figures(args.clients)
        print(f"Building one client, median of 5 x {args.clients}")
        rows = [[name, f"{ms:.2f} ms", f"{kib:.1f} KiB"] for name, (ms, kib) in figures.items()]
        print_table(["case", "CPU per client", "memory per client"], rows)
        ours, ref = figures["client (objects, config, engine)"], figures[REFERENCE]
        cpu_ratio, memory_ratio = ours[0] / ref[0], ours[1] / ref[1]
        print(f"client / reference device: CPU x{cpu_ratio:.1f}, memory x{memory_ratio:.1f}")
        print()

    if "notify" in parts:
        n, rounds = args.notifications, args.rounds
        ours_rates, raw_rates, received, others = asyncio.run(_notify_rates(n, rounds))
        ours, raw = statistics.median(ours_rates), statistics.median(raw_rates)
        ratios = [a / b for a, b in zip(ours_rates, raw_rates, strict=True)]
        print(
            f"NON notifications, {n} values set per round, median of {rounds} rounds "
            "alternating with raw sendto (CPU of the client process)"
        )
        print_table(
            ["sender", "per CPU second", "CPU per 10 000"],
            [
                ["aiolwm2m notification", f"{ours:,.0f}", f"{1e4 / ours:.3f} s"],
                ["raw asyncio sendto", f"{raw:,.0f}", f"{1e4 / raw:.3f} s"],
            ],
        )
        print(
            f"ratio x{statistics.median(ratios):.3f} of raw sendto (target >= 0.25; rounds: "
            + " ".join(f"{r:.3f}" for r in ratios)
            + f"); the generator saw {received} notifications (its socket buffer overflows: "
            f"the figure is the sender's CPU), {others} other datagrams"
        )
        print()

    if "reads" in parts:
        results = {
            name: serve_reads(name, args.seconds, args.warmup) for name in ("aiolwm2m", "aiocoap")
        }
        print(
            f"Reads served, {OUTSTANDING} outstanding CON GETs, {args.seconds:g} s "
            f"after {args.warmup:g} s warm-up (per {WINDOW:g} s window)"
        )
        rows = []
        for name, r in results.items():
            w, cpu = r["rates"], r["cpu"]
            rows.append(
                [
                    name,
                    f"{statistics.mean(w):,.0f}/s",
                    " ".join(f"{rate / 1000:.1f}k" for rate in w),
                    " ".join(f"{us:.0f}" for us in cpu),
                    f"{cpu[-1] / cpu[0]:.2f}" if cpu and cpu[0] else "-",
                    str(r["retransmitted"]),
                    str(r["wrong_token"]),
                ]
            )
        print_table(
            [
                "server",
                "mean",
                "reads/s per window",
                "CPU us/read per window",
                "CPU last/first",
                "resent",
                "bad token",
            ],
            rows,
        )
        a = statistics.mean(results["aiolwm2m"]["rates"])
        b = statistics.mean(results["aiocoap"]["rates"])
        print(
            f"aiolwm2m / aiocoap: x{a / b:.2f} (target >= 2). Flat: CPU per read stays put "
            "(the rate also follows whatever else the machine runs)"
        )
        if any(r["wrong_token"] for r in results.values()):
            print("INVALID: answers with a wrong token (message ids reused within the lifetime)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
