"""Helpers for the interop tests: find the third-party peers, run them, watch the wire.

Peers are installed by ``scripts/install-peers.sh`` (run by ``make test``); when
one is missing the test that needs it skips, quoting why the installer could not
provide it (recorded in ``tests/interop/.peers-status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer
from aiolwm2m.coap.message import CoapDecodeError, Message, MessageType, decode, is_response
from aiolwm2m.coap.params import TransmissionParameters

HERE = Path(__file__).parent
NODE_DIR = HERE / "node"
STATUS_FILE = HERE / ".peers-status"
NODE_LIB = NODE_DIR / "node_modules" / "lwm2m-node-lib" / "package.json"


# -- discovery ---------------------------------------------------------------------


def _installer_notes(prefix: str) -> str:
    try:
        lines = STATUS_FILE.read_text().splitlines()
    except OSError:
        return "scripts/install-peers.sh has not run (make peers)"
    notes = [line for line in lines if line.startswith(prefix)]
    return "; ".join(notes) if notes else "not on PATH although scripts/install-peers.sh ran"


def libcoap_tool(name: str) -> str:
    """Path of a libcoap3-bin tool, or skip saying why it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian libcoap3-bin): {_installer_notes('libcoap')}")
    return path


def libcoap_version() -> str | None:
    path = shutil.which("coap-client-notls")
    if path is None:
        return None
    out = subprocess.run([path], capture_output=True, text=True, check=False)
    # First line: "coap-client-notls v4.3.1 -- a small CoAP implementation"
    for word in (out.stdout + out.stderr).split():
        if word.startswith("v") and word[1:2].isdigit():
            return word[1:]
    return None


def node_lib_version() -> str | None:
    try:
        return str(json.loads(NODE_LIB.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def node_lib_or_skip() -> str:
    """Path of the node binary when lwm2m-node-lib is installed, else skip saying why."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node not installed (runs npm lwm2m-node-lib): " + _installer_notes("lwm2m-node-lib")
        )
    if node_lib_version() is None:
        pytest.skip(
            "npm lwm2m-node-lib not installed in tests/interop/node: "
            + _installer_notes("lwm2m-node-lib")
        )
    return node


def free_udp_port(pair: bool = False) -> int:
    """A UDP port free now on 127.0.0.1 (``pair``: port+1 is free too, for libcoap's DTLS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair or port >= 65535:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port pair")


def _udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to this UDP port (no datagram sent: a probe would
    consume the ``-l`` loss counters of coap-server)."""
    want = f":{port:04X} "
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                if want in line.split(None, 2)[1] + " ":
                    return True
    return False


# -- processes ---------------------------------------------------------------------


@dataclass
class PeerProcess:
    """A third-party peer running as a child process; its output goes to a log file."""

    argv: Sequence[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self, wait_port: int | None = None, timeout: float = 10.0) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        if wait_port is not None:
            await wait_until(lambda: _udp_port_bound(wait_port), timeout, f"{self.argv[0]} bound")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()


async def run_tool(argv: Sequence[str], timeout: float = 30.0) -> tuple[int, bytes, bytes]:
    """Run a command line tool to completion; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition that has no event to wait on (another process's state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# -- the wire ----------------------------------------------------------------------


@dataclass
class Seen:
    """One datagram the relay passed on, with its arrival time (loop clock)."""

    time: float
    direction: str  # "c2s" client→server, "s2c", "p2c" peer→client, "c2p"
    data: bytes

    @property
    def msg(self) -> Message | None:
        try:
            return decode(self.data)
        except CoapDecodeError:
            return None


class _Sock(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data, (str(addr[0]), int(addr[1])))


@dataclass
class Relay:
    """A UDP relay that the client (or our CoAP layer) is told is its server.

    Everything from the client goes to ``upstream`` and back, time-stamped on
    arrival (what the wire carried, independent of the sender's own
    bookkeeping). It also solves the one real obstacle to libcoap → client
    tests: our client talks from a *connected* UDP socket, which the kernel
    only lets its server's address reach. A third-party tool sends to
    :attr:`front_port`; the relay re-sends its datagrams from the server
    address, and routes the client's answers back to the tool by message id
    (ACK/RST of the tool's CONs) or token (responses and notifications).
    """

    upstream: tuple[str, int] | None = None
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    front_port: int = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._changed = asyncio.Event()
        self._client: tuple[str, int] | None = None
        self._peer: tuple[str, int] | None = None
        self._peer_mids: set[int] = set()
        self._peer_tokens: set[bytes] = set()
        self._listen, _ = await loop.create_datagram_endpoint(
            lambda: _Sock(self._from_client), local_addr=("127.0.0.1", 0)
        )
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Sock(self._from_peer), local_addr=("127.0.0.1", 0)
        )
        self._up: asyncio.DatagramTransport | None = None
        if self.upstream is not None:
            self._up, _ = await loop.create_datagram_endpoint(
                lambda: _Sock(self._from_upstream), remote_addr=self.upstream
            )
        self.port = self._listen.get_extra_info("sockname")[1]
        self.front_port = self._front.get_extra_info("sockname")[1]

    def close(self) -> None:
        for t in (self._listen, self._front, self._up):
            if t is not None:
                t.close()

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    def _record(self, direction: str, data: bytes) -> None:
        self.seen.append(Seen(self._loop.time(), direction, data))
        self._changed.set()

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client = addr
        msg = Seen(0, "", data).msg
        to_peer = msg is not None and (
            (msg.type in (MessageType.ACK, MessageType.RST) and msg.mid in self._peer_mids)
            or (is_response(msg.code) and msg.token in self._peer_tokens)
        )
        if to_peer and self._peer is not None:
            self._record("c2p", data)
            self._front.sendto(data, self._peer)
        else:
            self._record("c2s", data)
            if self._up is not None:
                self._up.sendto(data)

    def _from_upstream(self, data: bytes, addr: tuple[str, int]) -> None:
        self._record("s2c", data)
        if self._client is not None:
            self._listen.sendto(data, self._client)

    def _from_peer(self, data: bytes, addr: tuple[str, int]) -> None:
        self._peer = addr
        msg = Seen(0, "", data).msg
        if msg is not None and msg.type == MessageType.CON:
            self._peer_mids.add(msg.mid)
        if msg is not None and msg.token:
            self._peer_tokens.add(msg.token)
        self._record("p2c", data)
        if self._client is not None:
            self._listen.sendto(data, self._client)

    def messages(self, direction: str) -> list[tuple[float, Message]]:
        return [(s.time, m) for s in self.seen if s.direction == direction and (m := s.msg)]

    async def wait_for(
        self, cond: Callable[[], bool], timeout: float = 10.0, what: str = "datagram"
    ) -> None:
        """Wait until ``cond`` holds, re-checking whenever a datagram passes."""
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"relay: timed out waiting for {what}") from None


class LayerEndpoint:
    """Our sans-IO CoAP :class:`MessageLayer` on a connected UDP socket, nothing more.

    The interop tests of the CoAP layer need the layer alone (no LwM2M engine):
    this is the minimum asyncio glue, with one timer and a future per request.
    """

    def __init__(self, params: TransmissionParameters, rng_seed: int = 7) -> None:
        self.layer = MessageLayer(params, random.Random(rng_seed))
        self._futures: dict[int, asyncio.Future[ExchangeResult]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def connect(self, remote: tuple[str, int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Sock(lambda data, _addr: self._receive(data)), remote_addr=remote
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()

    async def request(self, msg: Message, timeout: float = 30.0) -> ExchangeResult:
        key = self.layer.send_request(msg, self._loop.time())
        fut = self._futures[key] = self._loop.create_future()
        self._pump()
        return await asyncio.wait_for(fut, timeout)

    def _receive(self, data: bytes) -> None:
        self.layer.receive(data, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.layer.handle_timer(self._loop.time())
        self._pump()

    def _pump(self) -> None:
        for data in self.layer.datagrams_to_send():
            self._transport.sendto(data)
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, IncomingRequest):
                continue  # nothing here serves requests
            fut = self._futures.pop(event.key, None)
            if fut is not None and not fut.done():
                fut.set_result(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.layer.next_timer()
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)


class NodeLwm2mServer:
    """lwm2m-node-lib's server, driven through ``node/lwm2m_server_driver.js``.

    Commands go to the driver's stdin as JSON lines; replies and the server's
    events (registered, updated, deregistered, notification) come back on
    stdout and are sorted into per-request futures and an event queue.
    """

    def __init__(self, node: str, log_path: Path) -> None:
        self.node = node
        self.log_path = log_path
        self.port = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 1

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_udp_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = await asyncio.create_subprocess_exec(
            self.node,
            str(NODE_DIR / "lwm2m_server_driver.js"),
            str(self.port),
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
        )
        self._reader = asyncio.ensure_future(self._read())
        ready = await self.next_event(10)
        if ready.get("event") != "ready":
            raise RuntimeError(f"lwm2m-node-lib did not start: {ready}")

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        self._log.close()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            fut = self._replies.pop(msg["id"], None) if "id" in msg else None
            if fut is not None:
                fut.set_result(msg)
            else:
                self.events.put_nowait(msg)

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def command(self, cmd: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Run one library call (read/write/observe/discover/devices) and return its reply."""
        assert self.proc.stdin is not None
        ident = self._next_id
        self._next_id += 1
        fut = self._replies[ident] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(fut, timeout)
