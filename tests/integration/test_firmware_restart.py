"""Firmware update across real process deaths: ``kill -9`` mid-download, install-then-restart.

The device is a real ``aiolwm2m client --config`` child process with a SQLite
store and a firmware directory; the LwM2M server and the CoAP image server run
in the test process on 127.0.0.1. The child's ``--events jsonl`` output says
what it did; the image server's block log says what was fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.storage import Store
from aiolwm2m.testbed.images import ImageServer
from aiolwm2m.testbed.server import TestbedServer

ENDPOINT = "fw-restart"


class Device:
    """One run of the client as a child process, its JSONL events collected."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiolwm2m.cli.main",
            "client",
            "--config",
            str(self.config),
            "--events",
            "jsonl",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._changed.set()

    async def wait(self, name: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._reader

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()
        await self._reader


def write_config(tmp_path: Path, server_uri: str, **firmware: Any) -> Path:
    table = {
        "directory": str(tmp_path / "fw"),
        "checkpoint_bytes": 8192,
        "retry_first_delay": 0.2,
        "retry_max_delay": 1.0,
        **firmware,
    }
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in table.items())
    path = tmp_path / "device.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            endpoint = "{ENDPOINT}"
            [[server]]
            uri = "{server_uri}"
            lifetime = 60
            [storage]
            path = "{tmp_path / "state.db"}"
            [firmware]
            """
        )
        + lines
        + "\n"
    )
    return path


async def write_uri(server: TestbedServer, uri: str) -> None:
    result = await server.write(ENDPOINT, "/5/0/1", uri, ContentFormat.TEXT)
    assert result.ok, result


async def test_kill_9_mid_download_resumes_from_the_saved_offset(tmp_path: Path) -> None:
    image = os.urandom(160 * 1024 + 300)
    blocks = -(-len(image) // 1024)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "fw.bin").write_bytes(image)
    images = ImageServer(tmp_path / "images", pace=0.004)
    await images.start()
    server = TestbedServer()
    await server.start()
    config = write_config(tmp_path, server.uri)
    device = Device(config)
    try:
        await device.start()
        await server.wait_registered(ENDPOINT, 30)
        await write_uri(server, images.uri("fw.bin"))
        async with asyncio.timeout(30):
            while len(images.served["fw.bin"]) < 60:
                await asyncio.sleep(0.002)
        await device.kill()  # kill -9: no flush, no goodbye
        assert device.proc.returncode == -signal.SIGKILL
        before = len(images.served["fw.bin"])
        assert before < blocks, "the download finished before the kill"
        store = Store(tmp_path / "state.db")
        try:
            record = store.load_firmware()
        finally:
            store.close()
        assert record is not None and record["state"] == 1  # Downloading
        saved = record["job"]["offset"]
        assert 0 < saved <= before * 1024 and saved % 1024 == 0
        # The partial image on disk holds at least the saved bytes, and they are right.
        part = (tmp_path / "fw" / "package.part").read_bytes()
        assert part[:saved] == image[:saved]

        device = Device(config)
        await device.start()
        done = await device.wait("firmware_state", object_id=5, new="downloaded")
        assert done["result"] == 0
        again = images.served["fw.bin"][before:]
        # Resumed at the saved offset: no saved byte fetched again, every later block once.
        assert again == list(range(saved // 1024, blocks))
        stored = (tmp_path / "fw" / "package.part").read_bytes()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(image).digest()
        read = await server.read(ENDPOINT, "/5/0/3")
        assert read.value("/5/0/3") == 2
    finally:
        await device.stop()
        await server.stop()
        images.stop()


INSTALLER = """\
import os, signal, sys
image = open(sys.argv[-1], "rb").read()
assert len(image) == {size}
with open(os.environ["AIOLWM2M_FIRMWARE_RESULT"], "w") as result:
    result.write("ok 2.0.0\\n")
    result.flush()
    os.fsync(result.fileno())
os.kill(os.getppid(), signal.SIGKILL)  # the device restarts to run the new firmware
"""


async def test_install_that_restarts_the_device_reports_1_and_the_version_after(
    tmp_path: Path,
) -> None:
    image = os.urandom(20 * 1024)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "fw.bin").write_bytes(image)
    installer = tmp_path / "install.py"
    installer.write_text(INSTALLER.format(size=len(image)))
    images = ImageServer(tmp_path / "images")
    await images.start()
    server = TestbedServer()
    await server.start()
    config = write_config(tmp_path, server.uri, install_command=[sys.executable, str(installer)])
    device = Device(config)
    try:
        await device.start()
        await server.wait_registered(ENDPOINT, 30)
        await write_uri(server, images.uri("fw.bin"))
        await device.wait("firmware_state", object_id=5, new="downloaded")
        result = await server.execute(ENDPOINT, "/5/0/2")
        assert result.ok, result
        async with asyncio.timeout(30):
            await device.proc.wait()
        assert device.proc.returncode == -signal.SIGKILL  # the installer "rebooted" it
        await device.kill()

        device = Device(config)
        await device.start()
        back = await device.wait("firmware_state", object_id=5, new="idle")
        assert (back["old"], back["result"]) == ("updating", 1)
        # Settled before the client talks to its server again.
        async with asyncio.timeout(30):
            while not any(e["event"] in ("registered", "updated") for e in device.events):
                await asyncio.sleep(0.01)
        first_talk = next(
            i for i, e in enumerate(device.events) if e["event"] in ("registered", "updated")
        )
        assert device.events.index(back) < first_talk
        values = await server.read(ENDPOINT, "/5/0")
        assert values.value("/5/0/5") == 1
        assert values.value("/5/0/7") == "2.0.0"
        assert values.value("/5/0/3") == 0
        assert not (tmp_path / "fw" / "install-result").exists()
    finally:
        await device.stop()
        await server.stop()
        images.stop()
