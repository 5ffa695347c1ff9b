"""A minimal LwM2M registration server over raw asyncio UDP: the yardstick for the testbed's.

Register (``POST /rd?ep=…``) gets 2.01 with a location, Update (``POST
/rd/<n>``) 2.04 or 4.04, a repeated message id from the same address its
cached answer (RFC 7252 §4.5). Nothing else: no lifetimes, no expiry, no
logging — the least work a server can do per message, measured in the same
run as the testbed server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import cast

# Importable as a script's neighbour (benchmarks/ is sys.path[0]) and by path from tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_client import (
    ACK,
    CHANGED,
    CON,
    CREATED,
    LOCATION_PATH,
    POST,
    URI_PATH,
    URI_QUERY,
    decode,
    encode,
)

NOT_FOUND, BAD_REQUEST = 0x84, 0x80


class ReferenceServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.locations: dict[bytes, bytes] = {}  # location -> endpoint
        self.by_endpoint: dict[bytes, bytes] = {}
        self.last: dict[object, tuple[int, bytes]] = {}  # address -> (mid, answer)
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.received += 1
        mtype, code, mid, token, opts = decode(data)
        cached = self.last.get(addr)
        if cached is not None and cached[0] == mid:
            self.transport.sendto(cached[1], addr)
            return
        if mtype != CON or code != POST:
            return
        path = [v for n, v in opts if n == URI_PATH]
        answer: tuple[int, list[tuple[int, bytes]]] = (NOT_FOUND, [])
        if path == [b"rd"]:
            query = dict(v.partition(b"=")[::2] for n, v in opts if n == URI_QUERY)
            endpoint = query.get(b"ep")
            if endpoint:
                location = self.by_endpoint.get(endpoint) or str(len(self.locations)).encode()
                self.locations[location], self.by_endpoint[endpoint] = endpoint, location
                answer = (CREATED, [(LOCATION_PATH, b"rd"), (LOCATION_PATH, location)])
            else:
                answer = (BAD_REQUEST, [])
        elif len(path) == 2 and path[0] == b"rd" and path[1] in self.locations:
            answer = (CHANGED, [])
        reply = encode(ACK, answer[0], mid, token, answer[1])
        self.last[addr] = (mid, reply)
        self.transport.sendto(reply, addr)


async def serve(
    host: str = "127.0.0.1", port: int = 0
) -> tuple[asyncio.DatagramTransport, ReferenceServer]:
    loop = asyncio.get_running_loop()
    server = ReferenceServer()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=(host, port))
    return transport, server
