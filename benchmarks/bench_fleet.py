"""Fleets (issue 16): many aiolwm2m devices in one process, beside the minimal reference client.

Parts (``--only``, repeatable; all by default):

* ``udp``: N devices (default 10 000) in one process over real UDP on
  127.0.0.1 against the testbed server (its own process), registered at
  ``--rate`` per second and held ``--hold`` seconds at lifetime 300 s;
  the same load from :mod:`reference_client` first, in the same run. Figures:
  RSS per registered device (process RSS after every device registered minus
  before the first was built, over N), CPU per Register (process CPU from the
  first Register until all registered, over registrations: building the
  device included), Update lateness p50/p99 (how long after its planned
  instant each Update's timer ran), re-registrations while held (must be 0).
* ``sim``: N devices × one simulated week on the virtual clock with the
  server down twice, wall time and memory per device, beside the reference
  figure of the issue (the same week for the minimal model: 2.4 s).
* ``storm``: N devices, a 60 s outage, the reconnection storm plotted
  (registrations per second; target peak ≤ N/8 per second).

Every load loop is bounded in count and time and stops by itself; traffic
stays on 127.0.0.1.

    .venv/bin/python benchmarks/bench_fleet.py [--devices 10000] [--hold 300] [--only udp]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import print_table

HOST = "127.0.0.1"
LIFETIME = 300


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the server (its own process) ---------------------------------------------------------


def _server_main(conn: Connection) -> None:
    async def run() -> None:
        from aiolwm2m.testbed.server import TestbedServer

        server = TestbedServer(HOST, 0, quiet=True)
        await server.start()
        conn.send(server.port)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(conn.fileno(), done.set)
        await done.wait()
        conn.recv()
        core = server.core
        conn.send({"registrations": len(core.registrations)})

    asyncio.run(run())


# -- the fleet (its own process) ----------------------------------------------------------


def _ours_main(conn: Connection, port: int, devices: int, rate: float, hold: float) -> None:
    from aiolwm2m.fleet.shard import AioShard
    from aiolwm2m.fleet.spec import FleetSpec
    from aiolwm2m.fleet.stats import Window

    spec = FleetSpec(
        server=f"coap://{HOST}:{port}",
        devices=devices,
        rate=rate,
        lifetime=LIFETIME,
        duration=devices / rate + 60 + hold,
        processes=1,
    )

    async def run() -> dict[str, Any]:
        # Everything a device needs is imported and the shipped definitions parsed
        # before the "before" figure: per-device memory is what devices add.
        warm = FleetSpec(server=spec.server, devices=1, endpoint="warm-{n}")
        from aiolwm2m.fleet.devices import device_objects

        device_objects(warm, warm.base_config(), 0.0)
        gc.collect()
        rss0, cpu0 = rss_bytes(), time.process_time()
        shard = AioShard(spec, 0, devices, origin=time.monotonic(), rate=rate)
        marks: dict[str, Any] = {}

        def on_window(w: Window) -> None:
            stats = shard.stats
            assert stats is not None
            if "registered" not in marks and stats.total.registrations >= devices:
                marks["registered"] = w.t
                marks["rss"] = rss_bytes()
                marks["cpu"] = time.process_time()
                marks["regs"] = stats.total.registrations
                marks["held_from"] = stats.total.reregistrations
            if "registered" in marks and w.t >= marks["registered"] + hold:
                shard._stopping = True

        task = asyncio.create_task(shard.run(on_window))
        while not task.done():
            await asyncio.sleep(0.5)
            if shard._stopping:
                break
        task.cancel()
        stats = shard.stats
        assert stats is not None
        total = stats.total
        for client in shard.clients:
            await client.stop()
        if "registered" not in marks:
            return {"failed": f"only {total.registrations} of {devices} registered"}
        late = total.lateness
        return {
            "rss_per_device": (marks["rss"] - rss0) / devices,
            "cpu_per_register_ms": (marks["cpu"] - cpu0) / marks["regs"] * 1000,
            "register_seconds": marks["registered"],
            "updates": total.updates,
            "lateness": [late.quantile(0.5), late.quantile(0.99), late.max],
            "reregistrations": total.reregistrations - marks["held_from"],
            "errors": dict(total.errors),
            "register_rtt_p99_ms": (total.register_rtt.quantile(0.99) or 0.0) * 1000,
        }

    conn.send(asyncio.run(run()))


def _reference_main(conn: Connection, port: int, devices: int, rate: float, hold: float) -> None:
    from reference_client import Fleet

    async def run() -> dict[str, Any]:
        gc.collect()
        rss0, cpu0 = rss_bytes(), time.process_time()
        fleet = Fleet(LIFETIME)
        start = time.monotonic()
        await fleet.start((HOST, port), devices, rate, "ref-")
        deadline = start + devices / rate + 60
        while fleet.stats.registered < devices and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        registered = fleet.stats.registered
        rss, cpu = rss_bytes(), time.process_time()
        await asyncio.sleep(hold)
        fleet.close()
        s = fleet.stats
        return {
            "rss_per_device": (rss - rss0) / devices,
            "cpu_per_register_ms": (cpu - cpu0) / max(registered, 1) * 1000,
            "register_seconds": time.monotonic() - start - hold,
            "updates": s.updates,
            "lateness": [pct(s.lateness, 0.5), pct(s.lateness, 0.99), max(s.lateness, default=0.0)],
            "reregistrations": s.registered - devices,
            "errors": {"give-ups": s.failures} if s.failures else {},
            "register_rtt_p99_ms": pct(s.rtts["register"], 0.99) * 1000,
        }

    conn.send(asyncio.run(run()))


def late_ms(result: dict[str, Any], i: int) -> float:
    """Update lateness figure ``i`` (p50, p99, max) in ms; nan when no Update ran."""
    value = result["lateness"][i]
    return float("nan") if value is None or value != value else value * 1e3


def run_udp(kind: str, devices: int, rate: float, hold: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    server_end, server_child = ctx.Pipe()
    server = ctx.Process(target=_server_main, args=(server_child,), daemon=True)
    server.start()
    try:
        port = server_end.recv()
        ours, theirs = ctx.Pipe()
        target = _ours_main if kind == "aiolwm2m" else _reference_main
        client = ctx.Process(target=target, args=(theirs, port, devices, rate, hold), daemon=True)
        client.start()
        limit = devices / rate + 120 + hold
        if not ours.poll(limit):
            client.kill()
            return {"failed": f"no result within {limit:.0f} s"}
        result: dict[str, Any] = ours.recv()
        client.join(10)
        server_end.send("stop")
        result["server"] = server_end.recv() if server_end.poll(10) else {}
        return result
    finally:
        server.join(5)
        if server.is_alive():
            server.kill()


def udp_part(args: argparse.Namespace) -> bool:
    results = {k: run_udp(k, args.devices, args.rate, args.hold) for k in ("reference", "aiolwm2m")}
    ref, ours = results["reference"], results["aiolwm2m"]
    print(
        f"\nReal UDP, one process: {args.devices} devices, lifetime {LIFETIME} s, Register at "
        f"{args.rate:g}/s, held {args.hold:g} s (baseline: minimal reference client, same run)"
    )
    for name, r in results.items():
        if "failed" in r:
            print(f"{name}: FAILED: {r['failed']}")
    if "failed" in ours or "failed" in ref:
        return False

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    rows = [
        (
            "RSS per device (KB)",
            ours["rss_per_device"] / 1000,
            ref["rss_per_device"] / 1000,
            "{:.1f}",
        ),
        (
            "CPU per Register (ms)",
            ours["cpu_per_register_ms"],
            ref["cpu_per_register_ms"],
            "{:.3f}",
        ),
        (
            "Update lateness p50 (ms)",
            late_ms(ours, 0),
            late_ms(ref, 0),
            "{:.2f}",
        ),
        (
            "Update lateness p99 (ms)",
            late_ms(ours, 1),
            late_ms(ref, 1),
            "{:.2f}",
        ),
        (
            "Update lateness max (ms)",
            late_ms(ours, 2),
            late_ms(ref, 2),
            "{:.1f}",
        ),
        ("Updates while held", ours["updates"], ref["updates"], "{:d}"),
        ("re-registrations while held", ours["reregistrations"], ref["reregistrations"], "{:d}"),
        ("time to register all (s)", ours["register_seconds"], ref["register_seconds"], "{:.1f}"),
        (
            "Register round trip p99 (ms)",
            ours["register_rtt_p99_ms"],
            ref["register_rtt_p99_ms"],
            "{:.1f}",
        ),
    ]
    print_table(
        ["figure", "aiolwm2m", "reference", "ratio"],
        [(name, f.format(a), f.format(b), ratio(a, b)) for name, a, b, f in rows],
    )
    if ours["errors"]:
        print(f"aiolwm2m errors: {ours['errors']}")
    met = (
        ours["rss_per_device"] <= 20_000
        and ours["cpu_per_register_ms"] <= 1.0
        and late_ms(ours, 1) <= 10.0
        and ours["reregistrations"] == 0
        and ours["updates"] > 0
    )
    print(
        "targets (<= 20 KB RSS/device, <= 1 ms CPU/Register, Update lateness p99 <= 10 ms, "
        f"0 re-registrations): {'met' if met else 'NOT met'}"
    )
    return met


# -- simulated fleets -----------------------------------------------------------------------

DAY = 86400.0
WEEK = 7 * DAY
#: The week: lifetime one day; 2 h port closed on day 1, 4 h silent on day 4 (both while
#: Updates fall, so devices back off and come back) — tests/unit/fleet/test_simulate.py.
WEEK_OUTAGES = ((80_000.0, 7_200.0, "unreachable"), (320_000.0, 14_400.0, "blackhole"))


def _reference_sim(
    devices: int,
    rate: float,
    lifetime: float,
    duration: float,
    outages: list[tuple[float, float]],
    interval: float,
) -> dict[str, Any]:
    import reference_sim

    gc.collect()
    rss0, start = rss_bytes(), time.perf_counter()
    result = reference_sim.simulate(devices, rate, lifetime, duration, outages, interval=interval)
    result["wall"] = time.perf_counter() - start
    result["rss_per_device"] = (rss_bytes() - rss0) / devices
    result["peak"] = max(result["per_interval"]) / interval
    return result


def sim_part(args: argparse.Namespace) -> bool:
    from aiolwm2m.fleet.run import run_fleet
    from aiolwm2m.fleet.spec import FleetSpec, Outage

    n = args.devices
    spec = FleetSpec(
        server="coap://10.0.0.1:5683",
        devices=n,
        rate=n / 60,
        lifetime=86400,
        duration=WEEK,
        outages=tuple(Outage(*o) for o in WEEK_OUTAGES),
        sample_every=60,  # type: ignore[arg-type]
    )
    ours = run_fleet(spec, simulate=True).summary
    ref = _reference_sim(n, n / 60, 86400, WEEK, [o[:2] for o in WEEK_OUTAGES], 60)
    print(
        f"\nSimulated week: {n} devices, lifetime 1 day, server away twice (2 h closed, "
        f"4 h silent), {ours['processes']} processes (baseline: reference client model)"
    )
    rows = [
        ("wall time (s)", ours["wall_seconds"], ref["wall"], "{:.1f}"),
        (
            "memory per device (KB)",
            ours["rss_per_device_kb"],
            ref["rss_per_device"] / 1000,
            "{:.1f}",
        ),
        ("registrations", ours["registrations"], ref["registrations"], "{:d}"),
        ("registered at the end", ours["final"]["registered"], ref["registered_at_end"], "{:d}"),
        ("CPU seconds, all processes", ours["cpu_seconds"], ref["wall"], "{:.1f}"),
    ]
    _table(rows)
    met = ours["wall_seconds"] <= 30 and ours["rss_per_device_kb"] <= 20
    print(f"targets (<= 30 s wall, <= 20 KB/device): {'met' if met else 'NOT met'}")
    return met


def storm_part(args: argparse.Namespace) -> bool:
    from aiolwm2m.fleet.run import run_fleet
    from aiolwm2m.fleet.spec import FleetSpec, Outage

    n = args.devices
    spec = FleetSpec(
        server="coap://10.0.0.1:5683",
        devices=n,
        rate=500,
        lifetime=60,
        duration=420,
        outages=(Outage(120, 60),),
        sample_every=1,
    )
    out = Path(args.storm_out)
    result = run_fleet(spec, simulate=True, out_dir=out)
    after = [r for r in result.rows if r["t"] > 180]
    back = next((r["t"] - 180 for r in after if r["registered"] >= n), None)
    ref = _reference_sim(n, 500, 60, 420, [(120, 60)], 1)
    ref_after = ref["per_interval"][181:]
    print(f"\nReconnection storm, simulated: {n} devices, lifetime 60 s, server away 60 s at t=120")
    rows = [
        (
            "peak registrations/s after",
            max(r["registrations_per_s"] for r in after),
            max(ref_after),
            "{:.0f}",
        ),
        (
            "peak as a fraction of N",
            max(r["registrations_per_s"] for r in after) / n,
            max(ref_after) / n,
            "{:.3f}",
        ),
        (
            "all registered again after (s)",
            back if back is not None else float("nan"),
            float("nan"),
            "{:.0f}",
        ),
    ]
    _table(rows)
    print(f"plot: {out / 'fleet.png'}")
    peak = max(r["registrations_per_s"] for r in after)
    met = peak <= n / 8 and back is not None
    print(f"target (peak <= N/8 = {n / 8:.0f} per s): {'met' if met else 'NOT met'}")
    return met


def locust_part(args: argparse.Namespace) -> bool:
    """Locust master + 2 workers on 127.0.0.1, 2 000 devices in all, against the testbed."""
    import csv
    import socket
    import subprocess
    import tempfile

    ctx = mp.get_context("spawn")
    server_end, server_child = ctx.Pipe()
    server = ctx.Process(target=_server_main, args=(server_child,), daemon=True)
    server.start()
    port = server_end.recv()
    locustfile = subprocess.run(
        [sys.executable, "-m", "aiolwm2m.fleet.locustfile"], capture_output=True, text=True
    ).stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        master_port = s.getsockname()[1]
    base = [sys.executable, "-m", "locust", "-f", locustfile]
    tmp = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    workers = [
        subprocess.Popen(
            [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    per_user = args.locust_devices // 2
    try:
        master = subprocess.run(
            [
                *base,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(master_port),
                "--headless",
                "--expect-workers",
                "2",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                f"{args.locust_seconds:g}s",
                "--csv",
                str(tmp / "run"),
                "--lwm2m-server",
                f"coap://127.0.0.1:{port}",
                "--lwm2m-devices",
                str(per_user),
                "--lwm2m-lifetime",
                "30",
                "--lwm2m-rate",
                "200",
            ],
            capture_output=True,
            text=True,
            timeout=args.locust_seconds + 120,
        )
    finally:
        for worker in workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        server_end.send("stop")
        server.join(5)
        if server.is_alive():
            server.kill()
    with (tmp / "run_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    print(
        f"\nLocust: master + 2 workers, {2 * per_user} devices in all (lifetime 30 s), "
        f"{args.locust_seconds:g} s; stats CSV {tmp / 'run_stats.csv'}:"
    )
    print_table(
        ["name", "requests", "failures", "median ms", "p99 ms", "req/s"],
        [
            [
                name,
                r["Request Count"],
                r["Failure Count"],
                r["Median Response Time"],
                r["99%"],
                f"{float(r['Requests/s']):.1f}",
            ]
            for name, r in stats.items()
        ],
    )
    registered = int(stats.get("register", {}).get("Request Count", 0))
    updated = int(stats.get("update", {}).get("Request Count", 0))
    met = master.returncode == 0 and registered >= 2 * per_user and updated >= 2 * per_user
    print(f"target (all {2 * per_user} registered and updating): {'met' if met else 'NOT met'}")
    return met


def _table(rows: list[tuple[str, Any, Any, str]]) -> None:
    def ratio(a: float, b: float) -> str:
        # No ratio against a reference figure that rounds to nothing (the model's memory).
        return f"{a / b:.2f}x" if b and a == a and b == b and a / b < 1000 else "-"

    print_table(
        ["figure", "aiolwm2m", "reference", "ratio"],
        [(name, f.format(a), f.format(b), ratio(a, b)) for name, a, b, f in rows],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="Registers per second")
    parser.add_argument("--hold", type=float, default=300.0, help="seconds held after registering")
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--storm-out", default="docs/fleet-storm", help="storm plot directory")
    parser.add_argument("--locust-devices", type=int, default=2000)
    parser.add_argument("--locust-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    verdicts = {part: globals()[f"{part}_part"](args) for part in args.only or PARTS}
    print(
        "\nfleet targets: "
        + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in verdicts.items())
    )
    return 0


PARTS = ("udp", "sim", "storm", "locust")


if __name__ == "__main__":
    sys.exit(main())
