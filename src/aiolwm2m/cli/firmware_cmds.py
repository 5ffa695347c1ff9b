"""Firmware commands of the ``aiolwm2m server`` console, and its image servers.

``--images DIR`` makes the testbed server also serve the files of DIR as
firmware images, over CoAP Block2 (with ETag) and, when aiohttp is installed,
over HTTP with Range/If-Range; ``images`` prints their URIs. The commands
drive a registered client's Objects 5 and 10252:

  push EP FILE [BLOCK]   Block1 Write of FILE to /5/0/0 (default 1024-byte blocks)
  pull EP URI            Write the Package URI /5/0/1 (an image URI from ``images``)
  manifest EP FILE       Write a signed manifest (``aiolwm2m manifest create``) to /10252/0/1
  update EP              Execute Update /5/0/2
  progress EP            State, result, PkgVersion and bytes of both objects
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.download import HTTP_AVAILABLE
from aiolwm2m.testbed.images import HttpImageServer, ImageServer, PushError, push_package
from aiolwm2m.testbed.operations import OperationResult
from aiolwm2m.testbed.server import TestbedServer

__all__ = ["FIRMWARE_HELP", "FirmwareCommands", "ImageServers"]

FIRMWARE_HELP = """\
firmware (Objects 5 and 10252; images from --images DIR):
  images                               URIs of the image servers
  push EP FILE [BLOCK]                 Block1 Write of FILE to /5/0/0
  pull EP URI                          Write the Package URI /5/0/1
  manifest EP FILE                     Write a signed manifest to /10252/0/1
  update EP                            Execute Update /5/0/2
  progress EP                          states, results, PkgVersion, bytes
"""

_STATES = {0: "idle", 1: "downloading", 2: "downloaded", 3: "updating"}


class ImageServers:
    """The CoAP and (with aiohttp) HTTP image servers of ``--images DIR``."""

    def __init__(self, directory: str, host: str) -> None:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"--images {directory}: not a directory")
        self.coap = ImageServer(path, host=host)
        self.http = HttpImageServer(path, host=host) if HTTP_AVAILABLE else None
        self.directory = path

    async def start(self) -> None:
        await self.coap.start()
        if self.http is not None:
            await self.http.start()

    async def stop(self) -> None:
        self.coap.stop()
        if self.http is not None:
            await self.http.stop()

    def lines(self) -> list[str]:
        names = sorted(p.name for p in self.directory.iterdir() if p.is_file())
        out = []
        for name in names:
            out.append(self.coap.uri(name))
            if self.http is not None:
                out.append(self.http.uri(name))
        return out or [f"no files in {self.directory}"]


class FirmwareCommands:
    """``cmd_*`` methods mixed into the server console's CommandShell."""

    server: TestbedServer
    out: Callable[[str], None]
    timeout: float
    images: ImageServers | None = None

    def _need(self, args: list[str], count: int, usage: str) -> None: ...  # the shell's

    def show(self, endpoint: str, target: str, result: OperationResult) -> None: ...

    async def cmd_images(self, args: list[str]) -> None:
        if self.images is None:
            self.out("no image servers: start the server with --images DIR")
            return
        for line in self.images.lines():
            self.out(line)

    async def cmd_push(self, args: list[str]) -> None:
        self._need(args, 2, "push EP FILE [BLOCK]")
        block = int(args[2]) if len(args) > 2 else 1024
        endpoint, image = args[0], Path(args[1])
        if not image.is_file():
            self.out(f"error: push: {image} is not a file")
            return
        step = max(1, image.stat().st_size // 10)
        shown = [0]

        def progress(done: int, total: int) -> None:
            if done >= shown[0] + step or done == total:
                shown[0] = done
                self.out(f"{endpoint} /5/0/0 pushed {done}/{total} bytes")

        try:
            code = await push_package(
                self.server, endpoint, image, block_size=block, timeout=self.timeout,
                on_block=progress,
            )  # fmt: skip
        except PushError as exc:
            self.out(f"error: push: {exc}")
            return
        self.out(f"{endpoint} /5/0/0 {code >> 5}.{code & 31:02d} pushed")

    async def cmd_pull(self, args: list[str]) -> None:
        self._need(args, 2, "pull EP URI")
        result = await self.server.write(
            args[0], "/5/0/1", args[1], ContentFormat.TEXT, timeout=self.timeout
        )
        self.show(args[0], "/5/0/1", result)

    async def cmd_manifest(self, args: list[str]) -> None:
        self._need(args, 2, "manifest EP FILE")
        try:
            data = Path(args[1]).read_bytes()
        except OSError as exc:
            self.out(f"error: manifest: {exc}")
            return
        result = await self.server.write(
            args[0], "/10252/0/1", data, ContentFormat.OPAQUE, timeout=self.timeout
        )
        self.show(args[0], "/10252/0/1", result)

    async def cmd_update(self, args: list[str]) -> None:
        self._need(args, 1, "update EP")
        result = await self.server.execute(args[0], "/5/0/2", timeout=self.timeout)
        self.show(args[0], "/5/0/2", result)

    async def cmd_progress(self, args: list[str]) -> None:
        self._need(args, 1, "progress EP")
        endpoint = args[0]
        fw = await self.server.read(endpoint, "/5/0", timeout=self.timeout)
        if not fw.ok:
            self.show(endpoint, "/5/0", fw)
            return
        values: dict[str, Any] = {str(p): v for p, v in fw.values.items()}
        state = values.get("/5/0/3")
        shown = _STATES.get(state, state) if isinstance(state, int) else state
        self.out(
            f"{endpoint} /5 state={shown!s} result={values.get('/5/0/5')!s} "
            f"pkg={values.get('/5/0/6', '')!s} version={values.get('/5/0/7', '')!s}"
        )
        manifest = await self.server.read(endpoint, "/10252/0", timeout=self.timeout)
        if manifest.ok:
            m: dict[str, Any] = {str(p): v for p, v in manifest.values.items()}
            self.out(
                f"{endpoint} /10252 state={m.get('/10252/0/2')!s} "
                f"result={m.get('/10252/0/3')!s} bytes={m.get('/10252/0/7')!s}"
            )
