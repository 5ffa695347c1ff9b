"""Firmware pulls over real UDP on 127.0.0.1: outage mid-download, resume, no block twice.

The testbed image server (real sockets, Block2 + ETag) serves the image; the
client's firmware runner downloads it into a real directory. Timings are
shortened through configuration only; waits are on events with generous bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fwkit import firmware_config, wait_state

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.firmware import (
    FirmwareState,
    RetrySchedule,
    UpdateResult,
)
from aiolwm2m.client.firmware.events import FirmwareRetry
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.runtime.storage import Store
from aiolwm2m.testbed.images import ImageServer

IMAGE = os.urandom(48 * 1024 + 100)


@pytest.mark.parametrize("outage", [1.0, pytest.param(30.0, marks=pytest.mark.slow)])
async def test_outage_mid_download_resumes_without_fetching_a_block_twice(
    tmp_path: Path, outage: float
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "fw.bin").write_bytes(IMAGE)
    images = ImageServer(tmp_path / "images")
    await images.start()
    # Back-off 0.2 s doubling to 2 s: a 30 s outage costs ~20 retries of the 100 allowed.
    schedule = RetrySchedule(first_delay=0.2, max_delay=2.0, jitter=0.1, max_retries=100)
    client = Client(firmware_config(tmp_path / "fw", schedule))
    runner = FirmwareRunner(client)
    events: list[Any] = []
    client.subscribe(events.append)
    await client.start()
    try:
        runner.write_uri(images.uri("fw.bin"))
        while len(images.served["fw.bin"]) < 12:
            await asyncio.sleep(0.005)
        port = images.port
        images.stop()  # the image server goes away mid-download
        await asyncio.sleep(outage)
        images.port = port
        await images.start()  # … and comes back on the same port
        done = await wait_state(client, FirmwareState.DOWNLOADED, timeout=outage + 30)
        assert done.result == UpdateResult.INITIAL
        stored = (tmp_path / "fw" / "package.part").read_bytes()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(IMAGE).digest()
        served = images.served["fw.bin"]
        assert sorted(served) == list(range(len(IMAGE) // 1024 + 1))  # each block once
        retries = [e for e in events if isinstance(e, FirmwareRetry)]
        assert retries and retries[0].offset >= 12 * 1024 - 1024
        assert {r.offset for r in retries} == {retries[0].offset}  # every retry resumes there
        assert sum(r.delay for r in retries) >= outage * 0.8  # it waited out the outage
        assert runner.update.fw.state is FirmwareState.DOWNLOADED
    finally:
        await runner.close()
        await client.stop()
        images.stop()


async def test_etag_change_mid_download_restarts_from_zero(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    image_path = tmp_path / "images" / "fw.bin"
    image_path.write_bytes(IMAGE)
    images = ImageServer(tmp_path / "images")
    await images.start()
    client = Client(firmware_config(tmp_path / "fw"))
    runner = FirmwareRunner(client)
    await client.start()
    try:
        runner.write_uri(images.uri("fw.bin"))
        while len(images.served["fw.bin"]) < 5:
            await asyncio.sleep(0.002)
        new_image = os.urandom(len(IMAGE))
        image_path.write_bytes(new_image)  # a new ETag under the client's feet
        await wait_state(client, FirmwareState.DOWNLOADED)
        stored = (tmp_path / "fw" / "package.part").read_bytes()
        assert stored == new_image
        assert images.served["fw.bin"].count(0) == 2  # restarted from block 0 once
    finally:
        await runner.close()
        await client.stop()
        images.stop()


def stored_config(tmp_path: Path) -> ClientConfig:
    config = firmware_config(tmp_path / "fw")
    return dataclasses.replace(config, storage_path=str(tmp_path / "state.db"))


@pytest.mark.parametrize("bad", ["{not json", '{"v": 1, "state": 1}', "[1, 2]"])
async def test_a_bad_firmware_record_is_an_error_event_and_the_client_keeps_going(
    tmp_path: Path, bad: str
) -> None:
    Store(tmp_path / "state.db").close()  # an aiolwm2m store, then a damaged firmware row
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("INSERT INTO meta VALUES ('firmware', ?)", (bad,))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "fw.bin").write_bytes(IMAGE)
    images = ImageServer(tmp_path / "images")
    await images.start()
    client = Client(stored_config(tmp_path))
    errors: list[Any] = []
    client.subscribe(lambda e: errors.append(e) if isinstance(e, ev.Error) else None)
    runner = FirmwareRunner(client)
    await client.start()
    try:
        async with asyncio.timeout(10):
            while not errors:
                await asyncio.sleep(0.01)
        assert errors[0].code is ev.ErrorCode.FAILED_TO_READ_CREDENTIALS
        assert "firmware record" in (errors[0].detail or "")
        assert runner.update.fw.state is FirmwareState.IDLE
        runner.write_uri(images.uri("fw.bin"))  # and it still works, saving a good record
        await wait_state(client, FirmwareState.DOWNLOADED)
        store = client.store
        assert store is not None
        record = store.load_firmware()
        assert record is not None and record["state"] == FirmwareState.DOWNLOADED
        assert record["job"]["offset"] == len(IMAGE)
    finally:
        await runner.close()
        await client.stop()
        images.stop()
