"""Firmware update driven by the testbed LwM2M server over real UDP, manifests made by the CLI.

A client with a firmware runner registers with the testbed server; the server
pushes a package with Block1, writes Package URIs and manifests, executes
Update, and reads what the client reports. The manifests come from
``aiolwm2m manifest keygen|create`` in the same way a vendor would make them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from fwkit import firmware_config

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.cli.main import main
from aiolwm2m.client.firmware import FirmwareState, ManifestResult, UpdateResult
from aiolwm2m.client.firmware.events import FirmwareStateChanged
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.testbed.images import ImageServer, PushError, push_package
from aiolwm2m.testbed.server import TestbedServer

VENDOR = "0b0c5f8e-4a7c-4d1e-9a3e-5b7f6c2d1a90"
CLASS = "7d3f2a1b-6c5e-4f8d-8b9a-0e1d2c3b4a59"
IMAGE = os.urandom(40 * 1024 + 11)
EP = "fw-dev"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        (tmp_path / "images").mkdir()
        (tmp_path / "images" / "fw.bin").write_bytes(IMAGE)
        assert main(["manifest", "keygen", "--key", str(tmp_path / "k.pem"),
                     "--public", str(tmp_path / "pub.pem")]) == 0  # fmt: skip

    async def start(self, **firmware: Any) -> None:
        self.images = ImageServer(self.tmp / "images")
        await self.images.start()
        self.server = TestbedServer()
        await self.server.start()
        config = firmware_config(self.tmp / "fw")
        settings = dataclasses.replace(
            config.firmware,
            manifest_keys=(str(self.tmp / "pub.pem"),),
            vendor_id=uuid.UUID(VENDOR),
            class_id=uuid.UUID(CLASS),
            **firmware,
        )
        config = dataclasses.replace(
            config, firmware=settings, servers=(ServerAccount(uri=self.server.uri, lifetime=60),)
        )
        self.client = Client(config)
        self.runner = FirmwareRunner(self.client)
        self.events: list[Any] = []
        self.seen = 0
        self.client.subscribe(self.events.append)
        await self.client.start()
        await self.server.wait_registered(EP, 10)
        self.seen = len(self.events)  # past the start-up moves

    async def stop(self) -> None:
        await self.runner.close()
        await self.client.stop()
        await self.server.stop()
        self.images.stop()

    def manifest(self, name: str, **changes: str) -> bytes:
        args = {
            "--key": str(self.tmp / "k.pem"),
            "--image": str(self.tmp / "images" / "fw.bin"),
            "--uri": self.images.uri("fw.bin"),
            "--version": "2.0.1",
            "--sequence": "5",
            "--vendor": VENDOR,
            "--class": CLASS,
            "--out": str(self.tmp / name),
            **changes,
        }
        argv = ["manifest", "create"] + [x for kv in args.items() for x in kv]
        assert main(argv) == 0
        return (self.tmp / name).read_bytes()

    async def write_manifest(self, data: bytes) -> None:
        result = await self.server.write(EP, "/10252/0/1", data, ContentFormat.OPAQUE)
        assert result.ok, result

    async def read(self, path: str) -> Any:
        result = await self.server.read(EP, path)
        assert result.ok, result
        return result.value(path)

    async def manifest_state(self, state: str, object_id: int = 10252) -> FirmwareStateChanged:
        """The next move of object ``object_id`` into ``state`` not returned yet (it may
        have happened already: events arrive before the server's answer does)."""
        async with asyncio.timeout(30):
            while True:
                for index in range(self.seen, len(self.events)):
                    e = self.events[index]
                    if isinstance(e, FirmwareStateChanged) and (e.object_id, e.new) == (
                        object_id,
                        state,
                    ):
                        self.seen = index + 1
                        return e
                await asyncio.sleep(0.01)


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    r = Rig(tmp_path)
    yield r
    await r.stop()


async def test_manifest_update_ends_with_18_and_the_new_version(rig: Rig) -> None:
    await rig.start()
    await rig.write_manifest(rig.manifest("m.cose"))
    done = await rig.manifest_state("idle")
    assert done.result == ManifestResult.UPDATED
    assert await rig.read("/10252/0/3") == ManifestResult.UPDATED
    assert await rig.read("/10252/0/5") == hashlib.sha256(IMAGE).digest()
    assert await rig.read("/5/0/5") == UpdateResult.SUCCESS
    assert await rig.read("/5/0/7") == "2.0.1"


async def test_a_manifest_with_a_bad_signature_is_refused_with_7(rig: Rig) -> None:
    await rig.start()
    data = bytearray(rig.manifest("m.cose"))
    data[-5] ^= 0x40  # inside the 64-byte signature
    await rig.write_manifest(bytes(data))
    refused = await rig.manifest_state("idle")
    assert refused.result == ManifestResult.MANIFEST_SIGNATURE_FAILED
    assert await rig.read("/10252/0/3") == ManifestResult.MANIFEST_SIGNATURE_FAILED
    assert b"signature" in await rig.read("/10252/0/4")
    assert await rig.read("/5/0/3") == FirmwareState.IDLE
    assert rig.images.served["fw.bin"] == []  # nothing fetched for a forged manifest


async def test_a_manifest_of_another_key_is_6_and_of_another_vendor_is_5(rig: Rig) -> None:
    await rig.start()
    other = rig.tmp / "other"
    other.mkdir()
    assert main(["manifest", "keygen", "--key", str(other / "k.pem"),
                 "--public", str(other / "pub.pem")]) == 0  # fmt: skip
    await rig.write_manifest(rig.manifest("m1.cose", **{"--key": str(other / "k.pem")}))
    assert (
        await rig.manifest_state("idle")
    ).result == ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND
    await rig.write_manifest(rig.manifest("m2.cose", **{"--vendor": str(uuid.uuid4())}))
    assert (await rig.manifest_state("idle")).result == ManifestResult.MANIFEST_REJECTED


async def test_an_asset_with_the_wrong_digest_is_12_and_result_5(rig: Rig) -> None:
    await rig.start()
    data = rig.manifest("m.cose")
    (rig.tmp / "images" / "fw.bin").write_bytes(os.urandom(len(IMAGE)))  # same size, other bytes
    await rig.write_manifest(data)
    failed = await rig.manifest_state("idle")
    assert failed.result == ManifestResult.ASSET_INTEGRITY_FAILED
    assert await rig.read("/5/0/5") == UpdateResult.INTEGRITY_FAILURE
    assert await rig.read("/5/0/3") == FirmwareState.IDLE


async def test_a_full_disk_is_result_2_and_manifest_result_9(rig: Rig) -> None:
    await rig.start(max_package_bytes=16 * 1024)  # a tiny storage quota
    await rig.write_manifest(rig.manifest("m.cose"))
    failed = await rig.manifest_state("idle")
    assert failed.result == ManifestResult.NOT_ENOUGH_STORAGE
    assert await rig.read("/5/0/5") == UpdateResult.NOT_ENOUGH_STORAGE
    assert len(rig.images.served["fw.bin"]) == 17  # it stopped at the block that did not fit
    # A plain pull hits the same wall.
    written = await rig.server.write(EP, "/5/0/1", rig.images.uri("fw.bin"), ContentFormat.TEXT)
    assert written.ok
    failed5 = await rig.manifest_state("idle", 5)
    assert failed5.result == UpdateResult.NOT_ENOUGH_STORAGE


async def test_an_unsupported_scheme_is_4_00_and_result_9(rig: Rig) -> None:
    await rig.start()
    written = await rig.server.write(EP, "/5/0/1", "ftp://127.0.0.1/fw.bin", ContentFormat.TEXT)
    assert written.code_text.startswith("4.00")
    assert await rig.read("/5/0/5") == UpdateResult.UNSUPPORTED_PROTOCOL
    assert await rig.read("/5/0/3") == FirmwareState.IDLE


async def test_push_with_block1_through_the_testbed_server(rig: Rig) -> None:
    await rig.start()
    progress: list[int] = []
    code = await push_package(
        rig.server, EP, rig.tmp / "images" / "fw.bin", block_size=512,
        on_block=lambda done, total: progress.append(done),
    )  # fmt: skip
    assert code == 0x44  # 2.04
    assert progress[-1] == len(IMAGE) and len(progress) == -(-len(IMAGE) // 512)
    assert await rig.read("/5/0/3") == FirmwareState.DOWNLOADED
    assert (rig.tmp / "fw" / "package.part").read_bytes() == IMAGE
    executed = await rig.server.execute(EP, "/5/0/2")
    assert executed.ok
    await rig.manifest_state("idle", 5)
    assert await rig.read("/5/0/5") == UpdateResult.SUCCESS


async def test_a_push_while_updating_is_refused_and_a_reset_clears_a_download(rig: Rig) -> None:
    await rig.start()
    await push_package(rig.server, EP, rig.tmp / "images" / "fw.bin")
    reset = await rig.server.write(EP, "/5/0/0", b"\x00", ContentFormat.OPAQUE)
    assert reset.ok
    assert await rig.read("/5/0/3") == FirmwareState.IDLE
    assert not (rig.tmp / "fw" / "package.part").exists()
    # Execute Update in Idle is 4.05 and changes nothing.
    refused = await rig.server.execute(EP, "/5/0/2")
    assert refused.code_text.startswith("4.05")
    assert await rig.read("/5/0/3") == FirmwareState.IDLE


async def test_a_push_to_a_client_without_object_5_is_a_push_error(rig: Rig) -> None:
    await rig.start()
    rig.client.objects.tree.remove_instance(5, 0)  # type: ignore[union-attr]
    with pytest.raises(PushError) as refused:
        await push_package(rig.server, EP, rig.tmp / "images" / "fw.bin")
    assert refused.value.code == 0x84  # 4.04


def test_manifest_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    key, pub, out = tmp_path / "k.pem", tmp_path / "pub.pem", tmp_path / "m.cose"
    assert main(["manifest", "keygen", "--key", str(key), "--public", str(pub)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    create = ["manifest", "create", "--key", str(key), "--image", str(image),
              "--uri", "coap://images.example/fw.bin", "--version", "1.2", "--sequence", "3",
              "--vendor", VENDOR, "--class", CLASS, "--out", str(out)]  # fmt: skip
    assert main(create) == 0
    capsys.readouterr()
    verify = ["manifest", "verify", str(out), "--public", str(pub), "--vendor", VENDOR]
    assert main([*verify, "--image", str(image)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["accepted"] and shown["size"] == len(IMAGE) and shown["image_matches"]
    assert main([*verify, "--installed-sequence", "3"]) == 1  # no rollback
    assert (
        json.loads(capsys.readouterr().out)["manifest_result"] == ManifestResult.MANIFEST_REJECTED
    )
    image.write_bytes(b"tampered")
    assert main([*verify, "--image", str(image)]) == 1
    assert json.loads(capsys.readouterr().out)["manifest_result"] == 12
    assert main(["manifest", "verify", str(image), "--public", str(pub)]) == 1  # not a manifest
    missing = [("/nonexistent" if a == str(image) else a) for a in create]
    assert main(missing) == 2  # an unreadable image is a configuration error, exit 2
