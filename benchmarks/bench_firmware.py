"""Firmware download over loopback CoAP Block2: aiolwm2m's fetcher beside aiocoap, and memory.

One image server (the testbed's CoAP image server, in a child process so it
costs this process neither CPU nor memory) serves a random image; in the same
run this process downloads it

* with aiolwm2m's Block2 fetcher (``runtime/download.py``) into a sink that
  only counts (the protocol cost),
* with the whole firmware path (``FirmwareRunner``: SHA-256, file writes,
  fsync'd checkpoints every 64 KiB, the SQLite record),
* with aiocoap's block-wise GET of the same URI (it reassembles the body in
  memory), 1024-byte blocks for all three,

and then follows the resident set size of this process while the firmware
path downloads a 50 MB image (target: growth < 10 MB; the image is streamed
to disk, never held). Rates are medians of ``--rounds`` interleaved rounds.

    .venv/bin/python benchmarks/bench_firmware.py [--size-mb 10] [--rss-mb 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.firmware import FirmwareSettings
from aiolwm2m.client.firmware.events import FirmwareStateChanged
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.download import fetch_coap
from aiolwm2m.runtime.firmware import FirmwareRunner

SERVER = """
import asyncio, sys
from aiolwm2m.testbed.images import ImageServer
async def main():
    server = ImageServer(sys.argv[1])
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def ours_null(uri: str, size: int) -> float:
    got = 0

    async def sink(offset: int, data: bytes, validator: str, total: int | None) -> None:
        nonlocal got
        got += len(data)

    start = time.perf_counter()
    await fetch_coap(uri, 0, None, sink, FirmwareSettings(block_size=1024))
    elapsed = time.perf_counter() - start
    assert got == size, (got, size)
    return elapsed


async def ours_firmware(uri: str, size: int, work: Path, sample: list[int] | None = None) -> float:
    directory = work / "fw"
    config = ClientConfig(
        endpoint="bench",
        storage_path=str(work / "state.db"),
        firmware=FirmwareSettings(directory=str(directory), block_size=1024),
    )
    client = Client(config)
    runner = FirmwareRunner(client)
    await client.start()
    done = asyncio.get_running_loop().create_future()

    def watch(event: Any) -> None:
        ours = isinstance(event, FirmwareStateChanged) and event.object_id == 5
        if ours and event.new in ("downloaded", "idle") and not done.done():
            done.set_result(event)

    client.subscribe(watch)
    sampler = None
    if sample is not None:

        async def sampling() -> None:
            while True:
                sample.append(rss())
                await asyncio.sleep(0.05)

        sampler = asyncio.ensure_future(sampling())
    start = time.perf_counter()
    runner.write_uri(uri)
    event = await done
    elapsed = time.perf_counter() - start
    if sampler is not None:
        sampler.cancel()
    await runner.close()
    await client.stop()
    assert event.new == "downloaded", event
    assert (directory / "package.part").stat().st_size == size
    (directory / "package.part").unlink()
    if client.store is not None:
        client.store.close()
    (work / "state.db").unlink()
    return elapsed


async def aiocoap_get(uri: str, size: int) -> float:
    import aiocoap

    context = await aiocoap.Context.create_client_context()
    try:
        start = time.perf_counter()
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response
        elapsed = time.perf_counter() - start
    finally:
        await context.shutdown()
    assert len(response.payload) == size, len(response.payload)
    return elapsed


def serve(directory: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def throughput(size_mb: int, rounds: int, work: Path) -> dict[str, float]:
    size = size_mb * 1024 * 1024
    images = work / "images"
    images.mkdir()
    (images / "image.bin").write_bytes(os.urandom(size))
    proc, port = serve(images)
    uri = f"coap://127.0.0.1:{port}/image.bin"
    times: dict[str, list[float]] = {"aiolwm2m fetcher": [], "aiolwm2m firmware": [], "aiocoap": []}
    try:
        for _ in range(rounds):
            times["aiolwm2m fetcher"].append(await ours_null(uri, size))
            times["aiolwm2m firmware"].append(await ours_firmware(uri, size, work))
            times["aiocoap"].append(await aiocoap_get(uri, size))
    finally:
        proc.terminate()
        proc.wait()
        (images / "image.bin").unlink()
    return {name: size / statistics.median(t) / 1e6 for name, t in times.items()}


async def memory(size_mb: int, work: Path) -> tuple[int, int]:
    size = size_mb * 1024 * 1024
    images = work / "big"
    images.mkdir()
    with open(images / "image.bin", "wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1024 * 1024))
    proc, port = serve(images)
    samples: list[int] = []
    try:
        before = rss()
        await ours_firmware(f"coap://127.0.0.1:{port}/image.bin", size, work, samples)
    finally:
        proc.terminate()
        proc.wait()
    return before, max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=10)
    parser.add_argument("--rss-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fw-") as tmp:
        work = Path(tmp)
        rates = asyncio.run(throughput(args.size_mb, args.rounds, work))
        before, peak = asyncio.run(memory(args.rss_mb, work))
    print(f"firmware download, {args.size_mb} MB over loopback CoAP, 1024-byte Block2, "
          f"median of {args.rounds}:")  # fmt: skip
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:7.2f} MB/s")
    fetcher, firmware = rates["aiolwm2m fetcher"], rates["aiolwm2m firmware"]
    print(f"  aiolwm2m fetcher / aiocoap: {fetcher / rates['aiocoap']:.2f}x; "
          f"firmware path / aiocoap: {firmware / rates['aiocoap']:.2f}x")  # fmt: skip
    growth = (peak - before) / 1e6
    verdict = "ok" if growth < 10 else "OVER the 10 MB target"
    print(f"RSS during a {args.rss_mb} MB firmware download: {before / 1e6:.1f} MB before, "
          f"{peak / 1e6:.1f} MB peak, growth {growth:.1f} MB ({verdict})")  # fmt: skip
    return 0 if growth < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
