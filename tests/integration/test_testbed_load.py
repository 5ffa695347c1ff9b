"""Load tooling over real UDP on 127.0.0.1: the reference client, the server's load mode, the bench.

The reference client (benchmarks/reference_client.py) is the yardstick and the
load generator of the benchmarks, so it must speak CoAP our codec agrees with
and really register and update. ``aiolwm2m server --quiet --stats`` is the
testbed server's mode for load runs: no line per event, a counter line per
interval. The benchmark itself runs here on a tiny load (no timing asserted).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from aiolwm2m.coap.message import Code, MessageType, OptionNumber, decode, encode
from aiolwm2m.testbed.server import TestbedServer

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))  # the benchmarks import each other as scripts do
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ref = _load("reference_client")


def test_reference_codec_agrees_with_ours() -> None:
    opts = [(11, b"rd"), (12, b"\x28"), (15, b"ep=dev-1"), (15, b"lt=60"), (300, b"x" * 20)]
    data = ref.encode(ref.CON, ref.POST, 0x1234, b"\xaa\xbb", opts)
    msg = decode(data)
    assert (msg.type, msg.code, msg.mid, msg.token) == (
        MessageType.CON,
        Code.POST,
        0x1234,
        b"\xaa\xbb",
    )
    assert msg.uri_path == ["rd"] and msg.uri_query == ["ep=dev-1", "lt=60"]
    assert msg.get_all(300) == [b"x" * 20]
    ours = decode(data)
    ours.add(OptionNumber.LOCATION_PATH, b"rd")
    ours.add(OptionNumber.LOCATION_PATH, b"17")
    mtype, code, mid, token, back = ref.decode(encode(ours))
    assert (mtype, code, mid, token) == (ref.CON, ref.POST, 0x1234, b"\xaa\xbb")
    assert [v for n, v in back if n == ref.LOCATION_PATH] == [b"rd", b"17"]
    assert [v for n, v in back if n == 300] == [b"x" * 20]


async def test_reference_fleet_registers_and_updates_with_the_testbed_server() -> None:
    async with TestbedServer() as server:
        fleet = ref.Fleet(lifetime=2)  # Update every second
        await fleet.start(("127.0.0.1", server.port), 40, 400.0, "ref-")
        for _ in range(300):
            if fleet.stats.updates >= 40:
                break
            await asyncio.sleep(0.02)
        fleet.close()
    assert fleet.stats.registered == 40 and fleet.stats.failures == 0
    assert fleet.stats.updates >= 40
    assert len(server.core.registrations) == 40
    assert server.core.stats()["updated"] == fleet.stats.updates


async def test_server_quiet_mode_prints_counters_not_events() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiolwm2m.cli.main",
        "server",
        "--port",
        "0",
        "--quiet",
        "--stats",
        "0.2",
        "--events",
        "jsonl",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        banner = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        port = int(banner.rsplit(":", 1)[1])
        fleet = ref.Fleet(lifetime=60)
        await fleet.start(("127.0.0.1", port), 12, 200.0, "quiet-")
        records = []
        while not any(r.get("registrations") == 12 for r in records):
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            records.append(json.loads(line))
        fleet.close()
    finally:
        proc.terminate()
        await proc.wait()
    assert {r["event"] for r in records} == {"stats"}  # no line per registration
    last = records[-1]
    assert last["registered"] == 12 and last["peers"] == 12 and last["datagrams_in"] >= 12
    assert {"in_per_s", "out_per_s", "cpu_percent"} <= set(last)


def test_bench_testbed_server_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_testbed_server")
    assert bench.main(["--devices", "30", "--rate", "300", "--hold", "1.5", "--lifetime", "2"]) == 0
    out = capsys.readouterr().out
    assert "CPU per message (ms)" in out and "UDP drops, server socket, hold" in out
    registered = next(line for line in out.splitlines() if line.startswith("registered "))
    assert registered.split()[1:3] == ["30", "30"]  # testbed, reference
