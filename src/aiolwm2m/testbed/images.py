"""Testbed image servers: firmware files over CoAP Block2 and HTTP(S) Range, on real sockets.

:class:`ImageServer` serves every file of a directory at
``coap://host:port/<file name>``. The ETag is the first 8 bytes of the file's
SHA-256, so a restarted server keeps it and a replaced file changes it (what a
resuming client must notice). :attr:`ImageServer.served` counts the blocks
answered per file, so a test can prove a resumed download fetched no block twice.

:class:`HttpImageServer` serves the same files at ``http(s)://host:port/<name>``
with aiohttp (the ``http`` extra): a strong ETag (the same hash, quoted),
``Range: bytes=N-[M]`` answered 206 with Content-Range, ``If-Range`` honoured
(a different validator gets the whole file, 200), 416 past the end.
:attr:`HttpImageServer.requests` records each request's range start and the
bytes written for it; ``pace`` slows the body down so a test can cut it.

:func:`push_package` is the push side: a Block1 Write of a file to a
client's /5/0/0 through the testbed LwM2M server, one block in memory at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiolwm2m.coap.blockwise import BlockwiseError, slice_block2
from aiolwm2m.coap.layer import IncomingRequest, MessageLayer
from aiolwm2m.coap.message import (
    Block,
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    code_str,
    encode_uint,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.lwm2m.formats import ContentFormat

if TYPE_CHECKING:
    from aiohttp import web

    from aiolwm2m.testbed.server import TestbedServer

__all__ = ["HttpImageServer", "ImageServer", "PushError", "ServedRange", "etag_of", "push_package"]

Address = tuple[str, int]


def etag_of(data: bytes) -> bytes:
    """The ETag both servers give a file: stable across restarts, new for new content."""
    return hashlib.sha256(data).digest()[:8]


def _image(directory: Path, name: str) -> Path | None:
    """The file ``name`` names in ``directory``; None for anything but a plain file there."""
    path = directory / name
    if not name or "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path


class _Files:
    """File contents and ETags, read again only when a file's size or mtime changes
    (a server answering 10 240 blocks of a 10 MB image must not read it 10 240 times)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], bytes, bytes]] = {}

    def get(self, path: Path) -> tuple[bytes, bytes]:
        """``(content, etag)`` of ``path``."""
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != key:
            data = path.read_bytes()
            cached = self._cache[path] = (key, data, etag_of(data))
        return cached[1], cached[2]


class ImageServer(asyncio.DatagramProtocol):
    """See the module docstring. ``await start()``, then ``uri(name)``; ``stop()`` closes it."""

    def __init__(
        self, directory: str | Path, *, host: str = "127.0.0.1", port: int = 0, pace: float = 0.0
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self.pace = pace  # seconds before each request is looked at (a slow link)
        self.served: dict[str, list[int]] = defaultdict(list)
        self._layers: dict[Address, MessageLayer] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._rng = random.Random(0)
        self._files = _Files()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def stop(self) -> None:
        """Close the socket: datagrams to the port now draw ICMP port-unreachable."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._layers.clear()

    def uri(self, name: str) -> str:
        return f"coap://{self.host}:{self.port}/{name}"

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.pace:
            asyncio.get_running_loop().call_later(self.pace, self._receive, data, addr)
        else:
            self._receive(data, addr)

    def _receive(self, data: bytes, addr: Address) -> None:
        if self._transport is None:
            return  # stopped meanwhile
        loop = asyncio.get_running_loop()
        layer = self._layers.get(addr)
        if layer is None:
            layer = self._layers[addr] = MessageLayer(TransmissionParameters(), self._rng)
        now = loop.time()
        layer.receive(data, now)
        while (event := layer.next_event()) is not None:
            if isinstance(event, IncomingRequest):
                layer.respond(event.key, self._answer(event.message), now)
        if self._transport is not None:
            for out in layer.datagrams_to_send():
                self._transport.sendto(out, addr)

    def _answer(self, request: Message) -> Message:
        if request.code != Code.GET:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        name = "/".join(request.uri_path)
        path = _image(self.directory, name)
        if path is None:
            return Message(code=Code.NOT_FOUND)
        data, etag = self._files.get(path)
        try:
            block = request.block2
            piece = slice_block2(data, block, include_size2=request.has(OptionNumber.SIZE2))
        except (CoapDecodeError, BlockwiseError) as exc:
            return Message(code=Code.BAD_OPTION, payload=str(exc).encode())
        response = Message(code=Code.CONTENT)
        response.add(OptionNumber.ETAG, etag)
        response.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.OPAQUE))
        self.served[name].append(piece.block.num if piece.block is not None else 0)
        return piece.apply(response)


@dataclass
class ServedRange:
    """One HTTP GET of a file: where its body started and how many bytes were written."""

    start: int
    sent: int = 0
    status: int = 200


class HttpImageServer:
    """See the module docstring. ``await start()``, ``uri(name)``, ``await stop()``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        chunk: int = 4096,
        pace: float = 0.0,
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.chunk = chunk
        self.pace = pace  # seconds between chunks of a body
        self.requests: dict[str, list[ServedRange]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self._live: set[asyncio.Transport] = set()
        self._files = _Files()

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/{name}", self._get)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listener and cut every connection at once (as a crash or a lost link
        does; aiohttp's own shutdown would let bodies in flight finish first)."""
        for transport in self._live:
            transport.abort()
        self._live.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def uri(self, name: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{name}"

    async def _get(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        name = request.match_info["name"]
        path = _image(self.directory, name)
        if path is None:
            raise web.HTTPNotFound()
        data, tag = self._files.get(path)
        etag = f'"{tag.hex()}"'
        start, end = 0, len(data)
        status = 200
        if "Range" in request.headers and request.headers.get("If-Range", etag) == etag:
            try:
                wanted = request.http_range
            except ValueError:
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={"Content-Range": f"bytes */{len(data)}"}
                ) from None
            first = wanted.start if wanted.start is not None else 0
            if first < 0 or first >= len(data):
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={"Content-Range": f"bytes */{len(data)}"}
                )
            start, end, status = first, min(len(data), wanted.stop or len(data)), 206
        served = ServedRange(start, status=status)
        self.requests[name].append(served)
        response = web.StreamResponse(status=status)
        response.headers.update(
            {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        )
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        response.content_length = end - start
        await response.prepare(request)
        transport = request.transport
        if transport is not None:
            self._live.add(transport)
        try:
            for at in range(start, end, self.chunk):
                piece = data[at : min(end, at + self.chunk)]
                await response.write(piece)
                served.sent += len(piece)
                if self.pace:
                    await asyncio.sleep(self.pace)
            await response.write_eof()
        except ConnectionError:  # cut by stop() or by the client
            pass
        finally:
            self._live.discard(transport)
        return response


class PushError(Lwm2mError):
    """A push was refused or lost: ``code`` is the client's answer (None: no answer)."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.code = code


async def push_package(
    server: TestbedServer,
    endpoint: str,
    image: str | Path,
    *,
    block_size: int = 1024,
    timeout: float = 30.0,
    on_block: Callable[[int, int], None] | None = None,
) -> int:
    """Write the file ``image`` to ``endpoint``'s /5/0/0 with Block1 (RFC 7959 §2.5).

    Blocks go one after the other, each after the client's 2.31 Continue;
    the client may ask for smaller blocks (its Block1 SZX), which later blocks
    follow. Returns the final code (2.04 Changed); raises :class:`PushError`
    on any other answer or none. ``on_block(offset, total)`` reports progress.
    """
    path = Path(image)
    total = path.stat().st_size
    offset = 0
    size = block_size
    with path.open("rb") as source:
        while True:
            source.seek(offset)
            chunk = source.read(size)
            more = offset + len(chunk) < total
            request = Message(
                type=MessageType.CON,
                code=Code.PUT,
                options=make_options(path=["5", "0", "0"], content_format=ContentFormat.OPAQUE),
                payload=chunk,
            )
            request.add(OptionNumber.BLOCK1, Block.for_size(offset // size, more, size).encode())
            if offset == 0:
                request.add(OptionNumber.SIZE1, encode_uint(total))
            event = await server.request(endpoint, request, timeout=timeout)
            response = event.result.response
            if response is None:
                raise PushError(
                    f"no answer to the block at {offset} ({event.result.outcome.value})"
                )
            if on_block is not None:
                on_block(offset + len(chunk), total)
            if not more:
                if response.code != Code.CHANGED:
                    raise PushError(f"last block answered {code_str(response.code)}", response.code)
                return response.code
            if response.code != Code.CONTINUE:
                raise PushError(
                    f"block at {offset} answered {code_str(response.code)}", response.code
                )
            offset += len(chunk)
            acked = response.block1
            if acked is not None and acked.size < size:
                size = acked.size  # the client asked for smaller blocks; offset stays aligned
