"""``aiolwm2m demo --firmware``: a signed manifest, a download cut by an outage, an install.

The story, on 127.0.0.1 with real sockets: the testbed LwM2M server writes a
signed manifest (made like ``aiolwm2m manifest create`` does) to the device's
/10252/0/1; the device verifies it and pulls the image over CoAP Block2 from
the testbed image server, through the fault proxy; halfway through, the proxy
plays "unreachable" for a few seconds (the scripted outage). The device backs
off (``firmware_retry`` events), resumes from the last good byte, checks the
digest, runs its install command and reports Update Result 1 and Manifest
Result 19 ("updated successfully after recovery"), which the server reads back.
Exit code 0 means exactly that happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.cli.output import emit, event_json, event_line
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.events import Event
from aiolwm2m.client.firmware import (
    DownloadPolicy,
    FirmwareSettings,
    Manifest,
    ManifestResult,
    RetrySchedule,
    UpdateResult,
    sign_manifest,
)
from aiolwm2m.client.firmware.events import FirmwareProgress, FirmwareStateChanged
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.clock import loop_now
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.testbed.core import ServerEvent
from aiolwm2m.testbed.images import ImageServer
from aiolwm2m.testbed.proxy import FaultProxy
from aiolwm2m.testbed.server import TestbedServer

__all__ = ["run_firmware_demo"]

ENDPOINT = "demo-device"
VENDOR = uuid.UUID("5c1e7a52-6b8d-4f0e-9d3a-2a4b6c8d0e1f")
CLASS = uuid.UUID("a7f3c9e1-2d4b-4c6a-8e0f-1b3d5f7a9c2e")
NEW_VERSION = "2.0.0"
IMAGE_SIZE = 96 * 1024


def _settings(directory: Path, key_file: Path) -> FirmwareSettings:
    # Short back-off so the story fits in ~15 s; the defaults are in docs/firmware.md.
    schedule = RetrySchedule(first_delay=1.0, multiplier=2.0, max_delay=4.0, max_retries=10)
    return FirmwareSettings(
        directory=str(directory),
        install_command=(sys.executable, "-c", f"print({NEW_VERSION!r})"),
        download=DownloadPolicy(schedule=schedule, checkpoint_bytes=8 * 1024),
        manifest_keys=(str(key_file),),
        vendor_id=VENDOR,
        class_id=CLASS,
    )


async def run_firmware_demo(outage: float, seed: int | None, fmt: str) -> int:
    loop = asyncio.get_running_loop()
    since = loop.time()
    events_since = loop_now(loop)  # the same instant on the client events' clock
    rng = random.Random(seed)

    def say(text: str) -> None:
        if fmt == "text":
            emit(f"{loop.time() - since:8.3f}s  ----    {text}")

    def client_event(event: Event) -> None:
        if fmt == "jsonl":
            emit(event_json(event, events_since))
        elif isinstance(event, FirmwareProgress) and event.total and event.bytes < event.total:
            return  # every 8 KiB is too chatty for a timeline; the last one is shown
        elif (line := event_line(event, events_since)) is not None:
            emit(line)

    def server_event(event: ServerEvent) -> None:
        if fmt == "text" and event.kind in ("registered", "deregistered"):
            emit(f"{event.time - since:8.3f}s  server  {event.kind:<24} {event.endpoint or ''}")

    with tempfile.TemporaryDirectory(prefix="aiolwm2m-fw-demo-") as tmp:
        work = Path(tmp)
        (work / "images").mkdir()
        image = bytes(rng.getrandbits(8) for _ in range(IMAGE_SIZE))
        (work / "images" / "gateway-fw.bin").write_bytes(image)
        key = ec.generate_private_key(ec.SECP256R1())
        (work / "vendor.pub.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        images = ImageServer(work / "images", pace=0.005)  # ~1 KiB per 5 ms: a slow link
        await images.start()
        proxy = FaultProxy((images.host, images.port), seed=seed)
        await proxy.start()
        server = TestbedServer()
        server.on_event = server_event
        await server.start()
        config = ClientConfig(
            endpoint=ENDPOINT,
            servers=(ServerAccount(uri=server.uri, lifetime=60),),
            coap=TransmissionParameters(ack_timeout=0.5, max_retransmit=2),
            firmware=_settings(work / "firmware", work / "vendor.pub.pem"),
        )
        client = Client(config, rng=random.Random(seed))
        client.subscribe(client_event)
        firmware = FirmwareRunner(client, rng=random.Random(seed))
        await client.start()
        try:
            return await _story(say, server, images, proxy, client, key, image, outage)
        except TimeoutError:
            say("FAILED: the update did not finish in time")
            return 1
        finally:
            await firmware.close()
            await client.close()
            await server.stop()
            await proxy.stop()
            images.stop()


async def _story(
    say: Callable[[str], None],
    server: TestbedServer,
    images: ImageServer,
    proxy: FaultProxy,
    client: Client,
    key: ec.EllipticCurvePrivateKey,
    image: bytes,
    outage: float,
) -> int:
    await server.wait_registered(ENDPOINT, 10)
    manifest = Manifest(
        sequence=1,
        vendor_id=VENDOR,
        class_id=CLASS,
        uri=f"{proxy.uri}/gateway-fw.bin",
        size=len(image),
        digest=hashlib.sha256(image).digest(),
        version=NEW_VERSION,
        name="gateway-fw",
    )
    done: asyncio.Future[FirmwareStateChanged] = asyncio.get_running_loop().create_future()

    def watch(event: Event) -> None:
        if (
            isinstance(event, FirmwareStateChanged)
            and event.object_id == 10252
            and event.new == "idle"
            and event.old != "uninitialised"
            and not done.done()
        ):
            done.set_result(event)

    client.subscribe(watch)
    say(f"server writes a signed manifest for {len(image)} bytes to /10252/0/1")
    written = await server.write(
        ENDPOINT, "/10252/0/1", sign_manifest(manifest, key), ContentFormat.OPAQUE
    )
    if not written.ok:
        say(f"FAILED: the manifest write was answered {written.code_text}")
        return 1
    blocks = -(-len(image) // 1024)
    async with asyncio.timeout(30):
        while len(images.served["gateway-fw.bin"]) < blocks // 3:
            await asyncio.sleep(0.01)
    say(f"OUTAGE: the image server is unreachable for {outage:g} s mid-download")
    await proxy.set_unreachable(True)
    await asyncio.sleep(outage)
    await proxy.set_unreachable(False)
    say("the image server is back; the device resumes on its own schedule")
    finished = await asyncio.wait_for(done, 60)
    result = await server.read(ENDPOINT, "/10252/0")
    update = await server.read(ENDPOINT, "/5/0")
    served = images.served["gateway-fw.bin"]
    twice = len(served) - len(set(served))
    manifest_result, update_result = result.value("/10252/0/3"), update.value("/5/0/5")
    version = update.value("/5/0/7")
    say(
        f"server reads Manifest Result {manifest_result!s}, Update Result {update_result!s}, "
        f"PkgVersion {version!r}; {len(served)} blocks served for {blocks}, {twice} twice"
    )
    if (
        finished.result == ManifestResult.UPDATED_AFTER_RECOVERY
        and update_result == UpdateResult.SUCCESS
        and version == NEW_VERSION
    ):
        say("UPDATED after recovery (Manifest Result 19, Update Result 1)")
        return 0
    say(f"FAILED: Manifest Result {finished.result}")
    return 1
