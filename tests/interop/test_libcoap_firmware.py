"""Firmware pulls from libcoap's ``coap-server`` (Debian libcoap3-bin) over CoAP and CoAPS.

The image is uploaded to a dynamic resource of the real server with
libcoap's own ``coap-client`` (Block1 PUT), then our firmware runner fetches it
with Block2, checking libcoap's ETag on every block: directly, across a
fault-proxy outage in the middle (the download resumes from the last good
byte), and over DTLS-PSK from ``coap-server-openssl``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.firmware import (
    DownloadPolicy,
    FirmwareSettings,
    RetrySchedule,
    UpdateResult,
)
from aiolwm2m.client.firmware.events import FirmwareProgress, FirmwareRetry, FirmwareStateChanged
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls import HandshakeTiming
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.testbed.proxy import FaultProxy
from interop.peers import PeerProcess, free_udp_port, libcoap_tool, run_tool

IMAGE = os.urandom(120 * 1024 + 333)
IDENTITY = b"aiolwm2m-fw"
KEY = b"firmware-psk-0123456789"
FAST = TransmissionParameters(ack_timeout=0.3, ack_random_factor=1.0, max_retransmit=2)


@asynccontextmanager
async def image_server(tmp_path: Path, tool: str, *extra: str) -> AsyncIterator[int]:
    """A coap-server holding IMAGE at /fw.bin (uploaded by coap-client); yields its port."""
    server = libcoap_tool(tool)
    client = libcoap_tool("coap-client-notls")
    port = free_udp_port(pair=True)
    proc = PeerProcess(
        [server, "-A", "127.0.0.1", "-p", str(port), "-d", "4", "-v", "4", *extra],
        tmp_path / "coap-server.log",
    )
    await proc.start(wait_port=port + 1 if "-k" in extra else port)
    image = tmp_path / "upload.bin"
    image.write_bytes(IMAGE)
    try:
        rc, _out, err = await run_tool(
            [client, "-m", "put", "-b", "1024", "-f", str(image), f"coap://127.0.0.1:{port}/fw.bin"]
        )
        assert rc == 0, err
        yield port
    finally:
        await proc.stop()


def device(tmp_path: Path, **settings: Any) -> ClientConfig:
    schedule = RetrySchedule(first_delay=0.3, max_delay=1.0, jitter=0.1, max_retries=30)
    firmware = FirmwareSettings(
        directory=str(tmp_path / "fw"),
        download=DownloadPolicy(schedule=schedule, checkpoint_bytes=8192),
        **settings,
    )
    return ClientConfig(endpoint="fw-interop", coap=FAST, firmware=firmware)


async def download(
    config: ClientConfig, uri: str, during: Any = None
) -> tuple[FirmwareStateChanged, list[Any]]:
    client = Client(config)
    runner = FirmwareRunner(client)
    events: list[Any] = []
    client.subscribe(events.append)
    await client.start()
    try:
        runner.write_uri(uri)
        if during is not None:
            await during(events)
        done = await client.wait_for(
            FirmwareStateChanged,
            60,
            lambda e: (
                isinstance(e, FirmwareStateChanged) and e.object_id == 5 and e.new != "downloading"
            ),
        )
        assert isinstance(done, FirmwareStateChanged)
        return done, events
    finally:
        await runner.close()
        await client.stop()


def stored(tmp_path: Path) -> bytes:
    return (tmp_path / "fw" / "package.part").read_bytes()


async def test_block2_download_from_libcoap_coap_server(tmp_path: Path) -> None:
    async with image_server(tmp_path, "coap-server-notls") as port:
        done, events = await download(device(tmp_path), f"coap://127.0.0.1:{port}/fw.bin")
    assert (done.new, done.result) == ("downloaded", UpdateResult.INITIAL), done
    assert hashlib.sha256(stored(tmp_path)).digest() == hashlib.sha256(IMAGE).digest()
    progress = [e for e in events if isinstance(e, FirmwareProgress)]
    assert progress[-1].total == len(IMAGE)  # libcoap's Size2


async def test_download_from_libcoap_resumes_across_a_proxy_outage(tmp_path: Path) -> None:
    async with image_server(tmp_path, "coap-server-notls") as port:
        proxy = FaultProxy(("127.0.0.1", port))
        await proxy.start()
        proxy.set_faults("down", delay=0.003)  # a slower link, so the outage lands mid-way

        async def outage(events: list[Any]) -> None:
            async with asyncio.timeout(30):
                while not any(
                    isinstance(e, FirmwareProgress) and e.bytes >= 40 * 1024 for e in events
                ):
                    await asyncio.sleep(0.002)
            await proxy.set_unreachable(True)
            await asyncio.sleep(2.0)
            await proxy.set_unreachable(False)

        try:
            done, events = await download(device(tmp_path), f"{proxy.uri}/fw.bin", during=outage)
        finally:
            await proxy.stop()
    assert done.new == "downloaded", done
    assert stored(tmp_path) == IMAGE
    retries = [e for e in events if isinstance(e, FirmwareRetry)]
    assert retries and min(r.offset for r in retries) >= 40 * 1024  # resumed, not restarted
    assert proxy.counters["unreachable.windows"] == 1


async def test_coaps_psk_download_from_libcoap_coap_server_openssl(tmp_path: Path) -> None:
    async with image_server(tmp_path, "coap-server-openssl", "-k", KEY.decode(), "-h", "") as port:
        config = device(tmp_path, psk_identity=IDENTITY, psk_key=KEY)
        config = dataclasses.replace(
            config, dtls=HandshakeTiming(initial_timeout=0.3, max_timeout=2.4)
        )
        done, _ = await download(config, f"coaps://127.0.0.1:{port + 1}/fw.bin")
    assert done.new == "downloaded", done
    assert stored(tmp_path) == IMAGE
