"""Testbed LwM2M server under load: 10 000 devices at lifetime 60 s, next to a minimal server.

Each server runs alone in a child process (one core); the load comes from
:mod:`reference_client` in this process (one UDP socket per device, Register
at ``--rate`` per second, then Update every lifetime / 2). The same load is
put on the minimal :mod:`reference_server` first, in the same run, as the
baseline. Figures per server:

* server CPU per message it received (``time.process_time`` of its process
  over the whole run, divided by the datagrams it was handed);
* UDP receive drops of its socket (``drops`` column of ``/proc/net/udp``)
  while the devices register and while they are held, and of the whole host
  (``Udp: RcvbufErrors`` of ``/proc/net/snmp``, before and after — the load
  generator's sockets and other processes count there too);
* time to register every device, Updates answered while holding them,
  retransmissions the devices needed.

Targets (issue 16): zero drops, ≤ 0.2 ms CPU per message. ``--profile`` prints
a one-second cProfile of the testbed server taken in the middle of the
Register ramp, when it is busiest (profiling slows the server down for that
second, so take the figures from a run without it).

    .venv/bin/python benchmarks/bench_testbed_server.py [--devices 10000] [--hold 60]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

# Importable as a script (benchmarks/ is sys.path[0]) and by path from the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import print_table
from reference_client import Fleet
from reference_server import serve

HOST = "127.0.0.1"


def udp_socket_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to 127.0.0.1:``port``."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted:
                return int(fields[-1])
    return 0


def host_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


# -- the server process ----------------------------------------------------------------


async def _serve(kind: str, conn: Connection, quiet: bool) -> None:
    loop = asyncio.get_running_loop()
    received = [0]
    if kind == "reference":
        transport, ref = await serve(HOST, 0)
        port = transport.get_extra_info("sockname")[1]

        def count() -> int:
            return ref.received
    else:
        from aiolwm2m.testbed.server import TestbedServer

        server = TestbedServer(HOST, 0, **({"quiet": True} if quiet else {}))
        await server.start()
        port = server.port
        inner = server.core.datagram_received

        def counting(addr: Any, data: bytes, now: float) -> None:
            received[0] += 1
            inner(addr, data, now)

        server.core.datagram_received = counting  # type: ignore[method-assign]

        def count() -> int:
            return received[0]

    done = asyncio.Event()
    profiler = cProfile.Profile()

    def report() -> dict[str, float]:
        return {"cpu": time.process_time(), "received": count(), "drops": udp_socket_drops(port)}

    def stop_profile() -> None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
        conn.send({"profile": out.getvalue()})

    def on_command() -> None:
        command, arg = conn.recv()
        if command == "profile":
            profiler.enable()
            loop.call_later(arg, stop_profile)
            return
        conn.send(report())
        if command == "stop":
            done.set()

    loop.add_reader(conn.fileno(), on_command)
    conn.send(port)
    await done.wait()


def _server_process(kind: str, conn: Connection, quiet: bool) -> None:
    asyncio.run(_serve(kind, conn, quiet))


# -- the load --------------------------------------------------------------------------


@dataclass
class Result:
    register_seconds: float
    registered: int
    updates: int
    retransmissions: int
    failures: int
    cpu_per_message_ms: float
    messages: int
    socket_drops: int  # while registering
    hold_drops: int  # while holding them (Updates)
    host_drops: int
    profile: str = ""


async def _load(conn: Connection, args: argparse.Namespace, profile: bool) -> Result:
    port = conn.recv()
    host_before = host_rcvbuf_errors()
    conn.send(("mark", None))
    first = conn.recv()
    fleet = Fleet(args.lifetime)
    start = time.monotonic()
    profiled = asyncio.create_task(_profile(conn, args)) if profile else None
    await fleet.start((HOST, port), args.devices, args.rate, "dev-")
    deadline = start + args.devices / args.rate + 60
    while fleet.stats.registered < args.devices and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    registered_after = time.monotonic() - start
    conn.send(("mark", None))
    ramped = await asyncio.to_thread(conn.recv)
    await asyncio.sleep(args.hold)
    text = await profiled if profiled is not None else ""
    conn.send(("stop", None))
    last = await asyncio.to_thread(conn.recv)
    fleet.close()
    s = fleet.stats
    messages = int(last["received"] - first["received"])
    return Result(
        register_seconds=registered_after,
        registered=s.registered,
        updates=s.updates,
        retransmissions=s.retransmissions,
        failures=s.failures,
        cpu_per_message_ms=(last["cpu"] - first["cpu"]) * 1000 / max(messages, 1),
        messages=messages,
        socket_drops=int(ramped["drops"] - first["drops"]),
        hold_drops=int(last["drops"] - ramped["drops"]),
        host_drops=host_rcvbuf_errors() - host_before,
        profile=text,
    )


async def _profile(conn: Connection, args: argparse.Namespace) -> str:
    """One second of the server's profile, from the middle of the Register ramp."""
    await asyncio.sleep(args.devices / args.rate / 2)
    conn.send(("profile", 1.0))
    reply: dict[str, str] = await asyncio.to_thread(conn.recv)
    return reply["profile"]


def run_one(kind: str, args: argparse.Namespace, *, profile: bool = False) -> Result:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_server_process, args=(kind, child, not args.verbose_server), daemon=True
    )
    proc.start()
    try:
        return asyncio.run(_load(parent, args, profile))
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def run(args: argparse.Namespace) -> dict[str, Result]:
    reference = run_one("reference", args)
    testbed = run_one("testbed", args, profile=args.profile)
    return {"reference": reference, "testbed": testbed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--lifetime", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2000.0, help="Registers per second")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds after registering")
    parser.add_argument("--profile", action="store_true", help="1 s server profile mid-ramp")
    parser.add_argument(
        "--verbose-server", action="store_true", help="testbed server without --quiet"
    )
    args = parser.parse_args(argv)
    results = run(args)
    ref, ours = results["reference"], results["testbed"]
    print(
        f"\nTestbed server: {args.devices} devices, lifetime {args.lifetime} s, "
        f"Register at {args.rate:g}/s, held {args.hold:g} s (baseline: minimal server, same run)"
    )

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    rows = [
        ("CPU per message (ms)", ours.cpu_per_message_ms, ref.cpu_per_message_ms, "{:.3f}"),
        ("messages handled", ours.messages, ref.messages, "{:d}"),
        ("UDP drops, server socket, ramp", ours.socket_drops, ref.socket_drops, "{:d}"),
        ("UDP drops, server socket, hold", ours.hold_drops, ref.hold_drops, "{:d}"),
        ("UDP RcvbufErrors, whole host", ours.host_drops, ref.host_drops, "{:d}"),
        ("registered", ours.registered, ref.registered, "{:d}"),
        ("time to register all (s)", ours.register_seconds, ref.register_seconds, "{:.1f}"),
        ("Updates answered", ours.updates, ref.updates, "{:d}"),
        ("client retransmissions", ours.retransmissions, ref.retransmissions, "{:d}"),
        ("client give-ups", ours.failures, ref.failures, "{:d}"),
    ]
    print_table(
        ["figure", "testbed", "reference", "ratio"],
        [(name, f.format(a), f.format(b), ratio(a, b)) for name, a, b, f in rows],
    )
    drops = ours.socket_drops + ours.hold_drops
    verdict = drops == 0 and ours.cpu_per_message_ms <= 0.2
    print(f"target (0 drops, <= 0.2 ms CPU/message): {'met' if verdict else 'NOT met'}")
    if ours.profile:
        print("\nTestbed server, 1 s profile in the middle of the Register ramp:\n" + ours.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
