"""Testbed image server: firmware files over CoAP Block2 with an ETag, on real UDP.

Serves every file of a directory at ``coap://host:port/<file name>``. The
ETag is the first 8 bytes of the file's SHA-256, so a restarted server keeps
it and a replaced file changes it (what a resuming client must notice).
:attr:`ImageServer.served` counts the blocks answered per file, so a test can
prove a resumed download fetched no block twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from pathlib import Path

from aiolwm2m.coap.blockwise import BlockwiseError, slice_block2
from aiolwm2m.coap.layer import IncomingRequest, MessageLayer
from aiolwm2m.coap.message import CoapDecodeError, Code, Message, OptionNumber, encode_uint
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.formats import ContentFormat

__all__ = ["ImageServer"]

Address = tuple[str, int]


class ImageServer(asyncio.DatagramProtocol):
    """See the module docstring. ``await start()``, then ``uri(name)``; ``stop()`` closes it."""

    def __init__(self, directory: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self.served: dict[str, list[int]] = defaultdict(list)
        self._layers: dict[Address, MessageLayer] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._rng = random.Random(0)

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
        path = self.directory / name
        if not name or "/" in name or name.startswith(".") or not path.is_file():
            return Message(code=Code.NOT_FOUND)
        data = path.read_bytes()
        try:
            block = request.block2
            piece = slice_block2(data, block, include_size2=request.has(OptionNumber.SIZE2))
        except (CoapDecodeError, BlockwiseError) as exc:
            return Message(code=Code.BAD_OPTION, payload=str(exc).encode())
        response = Message(code=Code.CONTENT)
        response.add(OptionNumber.ETAG, hashlib.sha256(data).digest()[:8])
        response.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.OPAQUE))
        self.served[name].append(piece.block.num if piece.block is not None else 0)
        return piece.apply(response)
