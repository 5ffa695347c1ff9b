"""Running a fleet over P processes: shards, the merged timeline, scripted outages, outputs.

The parent process starts one child per shard (``spawn``: nothing of the
parent's state leaks in), waits until every child has built what it needs,
then gives them one start instant; each child runs its shard
(:class:`~aiolwm2m.fleet.shard.AioShard` on a real network,
:class:`~aiolwm2m.fleet.simulate.SimFleet` in virtual time) and sends a
:class:`Window` per sample interval through its pipe. The parent merges the
windows of each instant into the fleet's timeline row, shows the status line
and, at the end, writes the JSON summary, the CSV timeline and the PNG.

Scripted outages on a real network go through the testbed's
:class:`~aiolwm2m.testbed.proxy.FaultProxy`, run by the parent in front of the
server: the devices talk to the proxy, which closes its port (``unreachable``)
or forwards nothing (``blackhole``) during each outage — so a server team
replays the same reconnection storm against their own server.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiolwm2m.accounts import parse_server_uri
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.fleet.devices import device_objects
from aiolwm2m.fleet.report import PlotUnavailable, plot_timeline, write_csv, write_summary
from aiolwm2m.fleet.shard import AioShard
from aiolwm2m.fleet.simulate import SimFleet
from aiolwm2m.fleet.spec import FleetSpec, Outage, OutageKind
from aiolwm2m.fleet.stats import Totals, Window, merge

__all__ = ["FleetError", "FleetResult", "RowCallback", "run_fleet"]

#: Told each timeline row as it completes, with the merged window it came from.
RowCallback = Callable[[dict[str, Any], Window], None]

#: Seconds between "every shard is ready" and the fleet's start instant.
START_MARGIN = 0.2


class FleetError(Lwm2mError):
    """A shard process failed (its traceback is in the message)."""


@dataclass
class FleetResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    #: Why a file was not written (the PNG without matplotlib).
    skipped: list[str] = field(default_factory=list)


# -- the shard processes ------------------------------------------------------------------


def _usage() -> dict[str, float]:
    return {
        "cpu": time.process_time(),
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0,
    }


def _shard_main(conn: Connection, spec: FleetSpec, start: int, stop: int, simulate: bool) -> None:
    try:
        # The shipped definitions parsed before "ready": what the process holds from
        # there on is the devices'.
        device_objects(spec, spec.base_config(), 0.0)
        ready = _usage()
        if simulate:
            fleet = SimFleet(spec, start, stop)
            conn.send(("ready",))
            conn.recv()
            totals = fleet.run(lambda w: conn.send(("window", w)))
        else:
            totals = asyncio.run(_aio_shard(conn, spec, start, stop))
        conn.send(("done", totals, {**_usage(), "ready_rss": ready["max_rss"]}))
    except Exception:
        conn.send(("error", traceback.format_exc()))


async def _aio_shard(conn: Connection, spec: FleetSpec, start: int, stop: int) -> Totals:
    conn.send(("ready",))
    origin: float = await asyncio.to_thread(conn.recv)
    shard = AioShard(
        spec, start, stop, origin=origin, rate=spec.rate * (stop - start) / spec.devices
    )
    await shard.run(lambda w: conn.send(("window", w)))
    await shard.close()
    assert shard.stats is not None
    return shard.stats.total


# -- the parent ---------------------------------------------------------------------------


class _Merger:
    """Windows from every shard, merged instant by instant into timeline rows."""

    def __init__(self, shards: int, interval: float, on_row: RowCallback):
        self.shards = shards
        self.interval = interval
        self.on_row = on_row
        self.pending: dict[int, list[Window]] = {}
        self.received: list[int] = [0] * shards
        self.rows: list[dict[str, Any]] = []

    def add(self, shard: int, window: Window) -> None:
        k = self.received[shard]
        self.received[shard] += 1
        group = self.pending.setdefault(k, [])
        group.append(window)
        while len(self.pending.get(len(self.rows), ())) == self.shards:
            window = merge(self.pending.pop(len(self.rows)))
            row = window.row(self.interval)
            self.rows.append(row)
            self.on_row(row, window)


def run_fleet(
    spec: FleetSpec,
    *,
    simulate: bool = False,
    out_dir: Path | None = None,
    on_row: RowCallback | None = None,
) -> FleetResult:
    """Run ``spec`` to the end over ``spec.processes`` processes; see the module docstring."""
    return asyncio.run(_run(spec, simulate, out_dir, on_row or (lambda row, window: None)))


async def _run(
    spec: FleetSpec, simulate: bool, out_dir: Path | None, on_row: RowCallback
) -> FleetResult:
    loop = asyncio.get_running_loop()
    wall = time.monotonic()
    proxy = None
    shard_spec = spec
    if spec.outages and not simulate:
        from aiolwm2m.testbed.proxy import FaultProxy

        uri = parse_server_uri(spec.server)
        from aiolwm2m.runtime.links import resolve

        proxy = FaultProxy(await resolve(uri.host, uri.port), seed=spec.seed)
        await proxy.start()
        scheme = "coaps" if uri.secure else "coap"
        shard_spec = replace(spec, server=f"{scheme}://{proxy.host}:{proxy.port}")
    ranges = spec.shards(spec.process_count())
    ctx = mp.get_context("spawn")
    children: list[tuple[Any, Connection]] = []
    for start, stop in ranges:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_shard_main, args=(child_end, shard_spec, start, stop, simulate), daemon=True
        )
        proc.start()
        child_end.close()
        children.append((proc, parent_end))
    result = FleetResult()
    merger = _Merger(len(children), spec.sample_interval, on_row)
    usage: list[dict[str, float]] = []
    done = 0
    finished = asyncio.Event()
    failure: list[str] = []

    def readable(index: int, conn: Connection) -> None:
        nonlocal done
        try:
            message = conn.recv()
        except EOFError:
            message = ("error", f"shard {index} exited without a result")
        kind = message[0]
        if kind == "window":
            merger.add(index, message[1])
            return
        loop.remove_reader(conn.fileno())
        if kind == "done":
            result.totals.merge(message[1])
            usage.append(message[2])
        elif kind == "error":
            failure.append(message[1])
        done += 1
        if done == len(children) or failure:
            finished.set()

    try:
        for _proc, conn in children:
            message = await asyncio.to_thread(conn.recv)
            if message[0] != "ready":
                raise FleetError(f"a shard failed to start:\n{message[1]}")
        origin = time.monotonic() + START_MARGIN
        for _proc, conn in children:
            conn.send(origin)
        for index, (_proc, conn) in enumerate(children):
            loop.add_reader(conn.fileno(), readable, index, conn)
        outages = []
        if proxy is not None:
            outages = [_schedule_outage(loop, proxy, o, origin) for o in spec.outages]
        await finished.wait()
        for handle in outages:
            handle.cancel()
    finally:
        for proc, conn in children:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
            conn.close()
        if proxy is not None:
            await proxy.stop()
    if failure:
        raise FleetError(f"a shard failed:\n{failure[0]}")
    result.rows = merger.rows
    result.summary = _summary(spec, simulate, result, usage, time.monotonic() - wall)
    if out_dir is not None:
        _write(out_dir, spec, simulate, result)
    return result


def _schedule_outage(
    loop: asyncio.AbstractEventLoop, proxy: Any, outage: Outage, origin: float
) -> asyncio.TimerHandle:
    offset = loop.time() - time.monotonic()

    def switch(on: bool) -> None:
        if outage.kind is OutageKind.BLACKHOLE:
            proxy.set_faults("both", blackhole=on)
        else:
            loop.create_task(proxy.set_unreachable(on))

    begin = origin + offset + outage.at
    loop.call_at(begin + outage.duration, switch, False)
    return loop.call_at(begin, switch, True)


def _summary(
    spec: FleetSpec,
    simulate: bool,
    result: FleetResult,
    usage: list[dict[str, float]],
    wall: float,
) -> dict[str, Any]:
    settings = asdict(spec)
    if settings.get("psk_key"):
        settings["psk_key"] = "(set)"
    rows = result.rows
    everyone = next((r["t"] for r in rows if r["registered"] >= spec.devices), None)
    peak = max(rows, key=lambda r: r["registrations_per_s"], default=None)
    cpu = sum(u["cpu"] for u in usage)
    totals = result.totals
    return {
        "mode": "simulated" if simulate else "udp",
        "devices": spec.devices,
        "processes": len(usage),
        "wall_seconds": round(wall, 3),
        "all_registered_at": everyone,
        "peak_registrations_per_s": peak["registrations_per_s"] if peak else 0,
        "peak_at": peak["t"] if peak else None,
        "cpu_seconds": round(cpu, 3),
        "cpu_per_register_ms": round(cpu / totals.registrations * 1000, 3)
        if totals.registrations
        else None,
        # Peak RSS of the shard processes minus what each held before building devices.
        "rss_per_device_kb": round(
            sum(u["max_rss"] - u["ready_rss"] for u in usage) / spec.devices / 1000, 2
        ),
        **totals.summary(),
        "spec": settings,
    }


def _write(out_dir: Path, spec: FleetSpec, simulate: bool, result: FleetResult) -> None:
    os.makedirs(out_dir, exist_ok=True)
    summary, timeline, png = (
        out_dir / "summary.json",
        out_dir / "timeline.csv",
        out_dir / "fleet.png",
    )
    write_summary(summary, result.summary)
    write_csv(timeline, result.rows)
    result.files += [summary, timeline]
    mode = "simulated" if simulate else "real UDP"
    title = f"{spec.devices} devices, {mode}, lifetime {spec.lifetime} s"
    try:
        plot_timeline(png, result.rows, title, [(o.at, o.at + o.duration) for o in spec.outages])
        result.files.append(png)
    except PlotUnavailable as exc:
        result.skipped.append(f"{png}: matplotlib is not installed ({exc})")
