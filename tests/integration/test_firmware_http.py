"""Firmware pulls over real HTTP(S) on 127.0.0.1: Range resume, If-Range change, 404, TLS.

The testbed HTTP image server (aiohttp, real TCP) serves the image; the
client's firmware runner downloads it into a real directory. Bodies are paced
so a test can cut the connection mid-body by stopping the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from fwkit import firmware_config, wait_state

from aiolwm2m.client.firmware import (
    FirmwareState,
    RefusedInState,
    ResourceChangedPolicy,
    UpdateResult,
)
from aiolwm2m.client.firmware.events import FirmwareRetry, FirmwareStateChanged
from aiolwm2m.dtls.certs import write_test_pki
from aiolwm2m.runtime import download
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.testbed.images import HttpImageServer, ImageServer

pytest.importorskip("aiohttp")

IMAGE = os.urandom(96 * 1024 + 77)


async def wait_bytes(server: HttpImageServer, name: str, at_least: int) -> None:
    async with asyncio.timeout(20):
        while sum(r.sent for r in server.requests[name]) < at_least:
            await asyncio.sleep(0.005)


def images_dir(tmp_path: Path, data: bytes = IMAGE) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / "fw.bin").write_bytes(data)
    return tmp_path / "images"


def stored(tmp_path: Path) -> bytes:
    return (tmp_path / "fw" / "package.part").read_bytes()


async def running(config: Any) -> tuple[Client, FirmwareRunner, list[Any]]:
    client = Client(config)
    runner = FirmwareRunner(client)
    events: list[Any] = []
    client.subscribe(events.append)
    await client.start()
    return client, runner, events


async def test_http_pull_cut_mid_body_resumes_with_a_range_from_the_stored_offset(
    tmp_path: Path,
) -> None:
    images = HttpImageServer(images_dir(tmp_path), chunk=2048, pace=0.01)
    await images.start()
    client, runner, events = await running(firmware_config(tmp_path / "fw"))
    try:
        assert runner.update.object5_values()[8] == {0: 0, 1: 1, 2: 2, 3: 3}
        runner.write_uri(images.uri("fw.bin"))
        await wait_bytes(images, "fw.bin", 30 * 1024)
        port = images.port
        await images.stop()  # every connection is cut mid-body
        await asyncio.sleep(0.5)
        images.port, images.pace = port, 0.0
        await images.start()
        await wait_state(client, FirmwareState.DOWNLOADED)
        assert stored(tmp_path) == IMAGE
        retries = [e for e in events if isinstance(e, FirmwareRetry)]
        assert retries and retries[0].reason in ("network_error", "timeout")
        requests = images.requests["fw.bin"]
        first, *resumed = requests
        assert first.start == 0 and first.status == 200
        good = [r for r in resumed if r.sent]
        # The resume asked for exactly the bytes the client did not have yet.
        assert len(good) == 1 and good[0].status == 206
        assert good[0].start == retries[-1].offset > 0
        assert good[0].start + good[0].sent == len(IMAGE)
    finally:
        await runner.close()
        await client.stop()
        await images.stop()


@pytest.mark.parametrize("policy", list(ResourceChangedPolicy))
async def test_http_file_changed_during_an_outage(
    tmp_path: Path, policy: ResourceChangedPolicy
) -> None:
    directory = images_dir(tmp_path)
    images = HttpImageServer(directory, chunk=2048, pace=0.01)
    await images.start()
    config = firmware_config(tmp_path / "fw", on_resource_changed=policy)
    client, runner, _ = await running(config)
    try:
        runner.write_uri(images.uri("fw.bin"))
        await wait_bytes(images, "fw.bin", 20 * 1024)
        port = images.port
        await images.stop()
        new_image = os.urandom(len(IMAGE) - 5)
        (directory / "fw.bin").write_bytes(new_image)  # If-Range no longer matches
        images.port, images.pace = port, 0.0
        await images.start()
        if policy is ResourceChangedPolicy.RESTART:
            await wait_state(client, FirmwareState.DOWNLOADED)
            assert stored(tmp_path) == new_image
            starts = [(r.start, r.status) for r in images.requests["fw.bin"] if r.sent]
            assert starts[-1] == (0, 200)  # fetched again from byte 0
        else:
            failed = await wait_state(client, FirmwareState.IDLE)
            assert failed.result == UpdateResult.CONNECTION_LOST
            assert "resource_changed" in failed.detail
    finally:
        await runner.close()
        await client.stop()
        await images.stop()


@pytest.mark.parametrize("kind", ["coap", "http"])
async def test_not_found_ends_with_result_7(tmp_path: Path, kind: str) -> None:
    directory = images_dir(tmp_path)
    images: ImageServer | HttpImageServer = (
        ImageServer(directory) if kind == "coap" else HttpImageServer(directory)
    )
    await images.start()
    client, runner, _ = await running(firmware_config(tmp_path / "fw"))
    try:
        runner.write_uri(images.uri("missing.bin"))
        failed = await wait_state(client, FirmwareState.IDLE)
        assert failed.result == UpdateResult.INVALID_URI
    finally:
        await runner.close()
        await client.stop()
        stopped = images.stop()
        if stopped is not None:
            await stopped


@pytest.mark.parametrize("trusted", [True, False])
async def test_https_pull_verifies_the_server_against_the_configured_ca(
    tmp_path: Path, trusted: bool
) -> None:
    pki = write_test_pki(tmp_path / "pki", [])
    other = write_test_pki(tmp_path / "other", [])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert_path, pki.server_key_path)
    images = HttpImageServer(images_dir(tmp_path), ssl_context=context)
    await images.start()
    config = firmware_config(tmp_path / "fw")
    ca = pki.ca_pem_path if trusted else other.ca_pem_path
    settings = dataclasses.replace(config.firmware, ca_certificates=(str(ca),))
    client, runner, events = await running(dataclasses.replace(config, firmware=settings))
    try:
        runner.write_uri(images.uri("fw.bin"))
        if trusted:
            await wait_state(client, FirmwareState.DOWNLOADED)
            assert hashlib.sha256(stored(tmp_path)).digest() == hashlib.sha256(IMAGE).digest()
        else:
            failed = await wait_state(client, FirmwareState.IDLE)
            assert failed.result == UpdateResult.CONNECTION_LOST
            assert "secure_connection_failed" in failed.detail
            assert not [e for e in events if isinstance(e, FirmwareRetry)]  # not retried
    finally:
        await runner.close()
        await client.stop()
        await images.stop()


@pytest.mark.parametrize(
    ("missing", "advertised", "uri"),
    [
        ("HTTP_AVAILABLE", {0: 0, 1: 1}, "http://127.0.0.1:1/fw.bin"),  # CoAP, CoAPS only
        ("DTLS_AVAILABLE", {0: 0, 1: 2, 2: 3}, "coaps://127.0.0.1:1/fw.bin"),
    ],
)
async def test_a_scheme_this_installation_cannot_fetch_is_not_advertised_and_gets_9(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
    advertised: dict[int, int],
    uri: str,
) -> None:
    monkeypatch.setattr(download, missing, False)
    client, runner, events = await running(firmware_config(tmp_path / "fw"))
    try:
        assert runner.update.object5_values()[8] == advertised
        with pytest.raises(RefusedInState):  # answered 4.00
            runner.write_uri(uri)
        assert runner.update.fw.state is FirmwareState.IDLE
        assert runner.update.fw.result is UpdateResult.UNSUPPORTED_PROTOCOL
        await asyncio.sleep(0.05)
        changed = [e for e in events if isinstance(e, FirmwareStateChanged)]
        assert changed and changed[-1].result == UpdateResult.UNSUPPORTED_PROTOCOL
    finally:
        await runner.close()
        await client.stop()
