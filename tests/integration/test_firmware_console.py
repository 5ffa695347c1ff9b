"""The ``aiolwm2m server`` console's firmware commands against a real client over UDP."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from fwkit import firmware_config

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.cli.firmware_cmds import ImageServers
from aiolwm2m.cli.main import main
from aiolwm2m.cli.server_cmd import CommandShell
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.firmware import FirmwareRunner
from aiolwm2m.testbed.server import TestbedServer

IMAGE = os.urandom(30 * 1024 + 5)


async def until(lines: list[str], needle: str, timeout: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not any(needle in line for line in lines):
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{needle!r} not in {lines}") from None


async def test_console_push_pull_manifest_update_progress(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "fw.bin").write_bytes(IMAGE)
    key, pub = tmp_path / "k.pem", tmp_path / "pub.pem"
    assert main(["manifest", "keygen", "--key", str(key), "--public", str(pub)]) == 0
    server = TestbedServer()
    await server.start()
    images = ImageServers(str(tmp_path / "images"), "127.0.0.1")
    await images.start()
    lines: list[str] = []
    shell = CommandShell(server, lines.append, timeout=10)
    shell.images = images
    base = firmware_config(tmp_path / "fw")
    config = dataclasses.replace(
        base,
        servers=(ServerAccount(uri=server.uri, lifetime=60),),
        firmware=dataclasses.replace(base.firmware, manifest_keys=(str(pub),)),
    )
    client = Client(config)
    runner = FirmwareRunner(client)
    await client.start()
    try:
        await server.wait_registered("fw-dev", 10)
        await shell.run_line("images")
        coap_uri, http_uri = lines[-2], lines[-1]
        assert coap_uri.startswith("coap://") and http_uri.startswith("http://")

        await shell.run_line(f"push fw-dev {tmp_path / 'images' / 'fw.bin'} 512")
        assert lines[-1] == "fw-dev /5/0/0 2.04 pushed"
        await shell.run_line("progress fw-dev")
        assert "fw-dev /5 state=downloaded result=0" in lines[-2]
        await shell.run_line("update fw-dev")
        await until(lines, "/5/0/2 execute -> 2.04")
        await asyncio.sleep(0.2)
        await shell.run_line("progress fw-dev")
        assert "state=idle result=1" in lines[-2]

        await shell.run_line(f"pull fw-dev {http_uri}")
        assert "2.04" in lines[-1]
        async with asyncio.timeout(20):
            while runner.update.fw.state != 2:
                await asyncio.sleep(0.02)
        await shell.run_line("progress fw-dev")
        assert "state=downloaded" in lines[-2]
        assert (tmp_path / "fw" / "package.part").read_bytes() == IMAGE

        out = tmp_path / "m.cose"
        create = ["manifest", "create", "--key", str(key), "--image",
                  str(tmp_path / "images" / "fw.bin"), "--uri", coap_uri, "--version", "3.0",
                  "--sequence", "1", "--vendor", str(uuid4()), "--class", str(uuid4()),
                  "--out", str(out)]  # fmt: skip
        assert main(create) == 0
        await shell.run_line("update fw-dev")  # install the pulled image first
        await asyncio.sleep(0.2)
        await shell.run_line(f"manifest fw-dev {out}")
        assert "2.04" in lines[-1]
        async with asyncio.timeout(20):
            while runner.update.mf.result != 18:
                await asyncio.sleep(0.02)
        await shell.run_line("progress fw-dev")
        assert "version=3.0" in lines[-2] and "/10252 state=1 result=18" in lines[-1]

        await shell.run_line("pull fw-dev ftp://x/y")
        assert any("/5/0/1" in line and "4.00" in line for line in lines[-3:]), lines[-3:]
        await shell.run_line("progress fw-dev")
        assert "state=idle result=9" in lines[-2]
        await shell.run_line("push fw-dev /nonexistent")
        assert lines[-1].startswith("error: push")
    finally:
        await runner.close()
        await client.stop()
        await shell.close()
        await images.stop()
        await server.stop()


def uuid4() -> str:
    import uuid

    return str(uuid.uuid4())
