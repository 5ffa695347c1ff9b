"""A UDP fault proxy between LwM2M clients and a server: the network misbehaving on purpose.

Recovery code that only ever met a polite network is untested. :class:`FaultProxy`
sits between a client and a server on 127.0.0.1 and, per direction (``up`` is
client → server, ``down`` server → client), can drop, duplicate, reorder,
delay (with jitter), corrupt or truncate datagrams, black-hole a direction,
look unreachable (it closes its listening socket, so the client's *connected*
socket gets ECONNREFUSED from the kernel's ICMP port-unreachable, then it binds
the same port again), reset or answer chosen CoAP requests itself (4.04, 5.03,
4.29 with Max-Age…) and restart the upstream server through a callback.

Each client address gets its own upstream socket, so the server sees distinct
peers exactly as it would without the proxy. The byte-level faults never parse
the payload and therefore work on DTLS records too; CoAP rules only look at
datagrams that decode as CoAP and pass everything else through.

All randomness comes from one seeded :class:`random.Random`, and every fault
applied is counted in :attr:`FaultProxy.counters`. Faults can be changed at
any time while the proxy runs (:meth:`FaultProxy.set_faults`,
:meth:`FaultProxy.add_rule`…).
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    encode_uint,
)
from aiolwm2m.errors import ConfigError

__all__ = [
    "DEFAULT_SESSION_IDLE",
    "FAULT_FIELDS",
    "REORDER_HOLD",
    "CoapRule",
    "Direction",
    "FaultProxy",
    "LinkFaults",
    "RuleAction",
    "directions",
    "parse_code",
]


log = logging.getLogger("aiolwm2m.proxy")

Address = tuple[str, int]

#: A client address with no traffic for this long loses its upstream socket.
DEFAULT_SESSION_IDLE = 120.0
#: A datagram held back for reordering is released after this long if nothing overtakes it.
REORDER_HOLD = 0.5


class Direction(enum.Enum):
    UP = "up"  # client → server
    DOWN = "down"  # server → client


def directions(which: str | Direction) -> tuple[Direction, ...]:
    """``"up"``, ``"down"`` or ``"both"`` as the directions it names."""
    if isinstance(which, Direction):
        return (which,)
    if which == "both":
        return (Direction.UP, Direction.DOWN)
    try:
        return (Direction(which),)
    except ValueError as exc:
        raise ConfigError(f"direction must be up, down or both, not {which!r}") from exc


@dataclass(frozen=True)
class LinkFaults:
    """Impairments of one direction; probabilities are per datagram."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    truncate: float = 0.0
    blackhole: bool = False

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt", "truncate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a probability")
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1]")
        if self.delay < 0 or self.jitter < 0:
            raise ConfigError("delay and jitter must be >= 0")

    @property
    def active(self) -> bool:
        return self != LinkFaults()


FAULT_FIELDS = frozenset(f.name for f in fields(LinkFaults))


class RuleAction(enum.Enum):
    RESPOND = "respond"  # answer in the server's place with ``code``
    RESET = "reset"  # answer a CON with RST
    DROP = "drop"  # swallow the request (the client times out)


def parse_code(text: str) -> int:
    """``"4.29"`` → the CoAP code byte."""
    cls, dot, detail = text.partition(".")
    try:
        c, d = int(cls), int(detail)
    except ValueError as exc:
        raise ConfigError(f"CoAP code must look like 4.04, not {text!r}") from exc
    if not dot or not 0 <= c <= 7 or not 0 <= d <= 31:
        raise ConfigError(f"CoAP code out of range: {text!r}")
    return (c << 5) | d


@dataclass
class CoapRule:
    """Act on client → server CoAP messages matching ``match``.

    ``match`` is ``"METHOD [PATH-GLOB]"`` (``"POST /rd"`` is Register,
    ``"POST /rd/*"`` Update, ``"DELETE /rd/*"`` De-register), a response code
    (``"2.05"``: notifications) or ``"*"``. ``count`` limits how many distinct
    messages it applies to (retransmissions of one message get the same
    treatment without using up the count).
    """

    match: str
    action: RuleAction = RuleAction.RESPOND
    code: str = "5.03"
    max_age: int | None = None
    count: int | None = None
    applied: int = 0
    _code: int | None = field(default=None, init=False, repr=False)
    _path: str | None = field(default=None, init=False, repr=False)
    _reply_code: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        head, _, path = self.match.strip().partition(" ")
        self._path = path.strip() or None
        if head == "*":
            self._code = None
        elif "." in head:
            self._code = parse_code(head)
        else:
            try:
                self._code = Code[head.upper()]
            except KeyError as exc:
                raise ConfigError(f"unknown CoAP method {head!r} in match {self.match!r}") from exc
        self._reply_code = parse_code(self.code)
        if self.max_age is not None and not 0 <= self.max_age < 2**32:
            raise ConfigError("max_age must be in 0 .. 2**32-1")
        if self.count is not None and self.count < 1:
            raise ConfigError("count must be >= 1")

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def matches(self, msg: Message) -> bool:
        if self.exhausted or msg.code == Code.EMPTY:
            return False
        if self._code is not None and msg.code != self._code:
            return False
        if self._path is None:
            return True
        try:
            path = "/" + "/".join(msg.uri_path)
        except CoapDecodeError:
            return False
        return fnmatch.fnmatchcase(path, self._path)

    def reply(self, msg: Message) -> Message | None:
        """The datagram to answer ``msg`` with, or None to stay silent."""
        if self.action is RuleAction.DROP:
            return None
        if self.action is RuleAction.RESET:
            if msg.type != MessageType.CON:
                return None
            return Message(type=MessageType.RST, code=Code.EMPTY, mid=msg.mid)
        resp = Message(
            type=MessageType.ACK if msg.type == MessageType.CON else MessageType.NON,
            code=self._reply_code,
            mid=msg.mid,
            token=msg.token,
        )
        if self.max_age is not None:
            resp.add(OptionNumber.MAX_AGE, encode_uint(self.max_age))
        return resp

    def describe(self) -> str:
        if self.action is RuleAction.RESPOND:
            extra = f" Max-Age={self.max_age}" if self.max_age is not None else ""
            return f"answer {self.match} with {self.code}{extra}"
        return f"{self.action.value} {self.match}"


class _ListenProtocol(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.proxy._from_client((str(addr[0]), int(addr[1])), data)

    def error_received(self, exc: Exception) -> None:
        self.proxy.counters["down.send_error"] += 1


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy, session: _Session) -> None:
        self.proxy = proxy
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.proxy._from_server(self.session, data)

    def error_received(self, exc: Exception) -> None:
        # The upstream is down (ICMP port unreachable): the client only notices by silence.
        self.proxy.counters["upstream.refused"] += 1


@dataclass
class _Session:
    client: Address
    last_seen: float
    transport: asyncio.DatagramTransport | None = None
    backlog: list[bytes] = field(default_factory=list)
    closed: bool = False
    # (mid of a CON already handled by a rule) → the reply, so retransmissions get it too.
    answered: dict[int, bytes | None] = field(default_factory=dict)


class FaultProxy:
    """UDP proxy with injectable faults; see the module docstring.

    ``async with FaultProxy(("127.0.0.1", server_port), seed=1) as proxy:``
    then point clients at :attr:`uri`.
    """

    def __init__(
        self,
        upstream: Address,
        listen: Address = ("127.0.0.1", 0),
        *,
        seed: int | None = 0,
        restart_upstream: Callable[[], Awaitable[None]] | None = None,
        session_idle: float = DEFAULT_SESSION_IDLE,
    ) -> None:
        self.upstream = upstream
        self.host, self.port = listen
        self.rng = random.Random(seed)
        self.faults: dict[Direction, LinkFaults] = {d: LinkFaults() for d in Direction}
        self.rules: list[CoapRule] = []
        self.counters: Counter[str] = Counter()
        self.session_idle = session_idle
        self._restart_upstream = restart_upstream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.DatagramTransport | None = None
        self._listen_protocol: _ListenProtocol | None = None
        self._sessions: dict[Address, _Session] = {}
        self._held: dict[Direction, list[Callable[[], None]]] = {d: [] for d in Direction}
        self._handles: set[asyncio.TimerHandle] = set()
        self._reaper: asyncio.TimerHandle | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def uri(self) -> str:
        return f"coap://{self.host}:{self.port}"

    @property
    def reachable(self) -> bool:
        """False while the proxy plays "port unreachable" (listening socket closed)."""
        return self._listener is not None

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = True
        await self._bind()
        self._reaper = self._loop.call_later(self.session_idle / 2, self._reap)

    async def stop(self) -> None:
        self._started = False
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for held in self._held.values():
            held.clear()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for session in self._sessions.values():
            self._close_session(session)
        self._sessions.clear()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _bind(self) -> None:
        assert self._loop is not None
        transport, protocol = await self._loop.create_datagram_endpoint(
            lambda: _ListenProtocol(self), local_addr=(self.host, self.port)
        )
        self._listener = transport
        self._listen_protocol = protocol
        self.port = int(transport.get_extra_info("sockname")[1])

    # ------------------------------------------------------------------ fault control
    def set_faults(self, direction: str | Direction = "both", **changes: Any) -> None:
        """Change some impairments of one or both directions (others keep their value)."""
        unknown = set(changes) - FAULT_FIELDS
        if unknown:
            raise ConfigError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        for d in directions(direction):
            self.faults[d] = replace(self.faults[d], **changes)

    def clear_faults(self, direction: str | Direction = "both") -> None:
        for d in directions(direction):
            self.faults[d] = LinkFaults()
            self._release_held(d)

    def add_rule(self, rule: CoapRule) -> CoapRule:
        self.rules.append(rule)
        return rule

    def remove_rule(self, rule: CoapRule) -> None:
        if rule in self.rules:
            self.rules.remove(rule)
        for session in self._sessions.values():
            session.answered.clear()

    def clear_rules(self) -> None:
        self.rules.clear()
        for session in self._sessions.values():
            session.answered.clear()

    async def set_unreachable(self, unreachable: bool = True) -> None:
        """Close (or reopen) the listening socket: clients then get ICMP port unreachable."""
        if unreachable and self._listener is not None:
            self._listener.close()
            self._listener = None
            self.counters["unreachable.windows"] += 1
            if self._listen_protocol is not None:
                await self._listen_protocol.closed  # the port is really free from here on
        elif not unreachable and self._listener is None and self._started:
            await self._bind()

    async def restart_upstream(self) -> None:
        """Restart the upstream server (the ``restart_upstream`` callback)."""
        if self._restart_upstream is None:
            raise ConfigError("this proxy was built without a restart_upstream callback")
        self.counters["upstream.restarts"] += 1
        await self._restart_upstream()

    # ------------------------------------------------------------------ data path
    def _from_client(self, addr: Address, data: bytes) -> None:
        assert self._loop is not None
        session = self._sessions.get(addr)
        if session is None:
            session = self._open_session(addr)
        session.last_seen = self._loop.time()
        self.counters["up.in"] += 1
        if self.rules and self._apply_rules(session, data):
            return
        self._impair(Direction.UP, data, lambda d: self._send_up(session, d))

    def _from_server(self, session: _Session, data: bytes) -> None:
        self.counters["down.in"] += 1
        self._impair(Direction.DOWN, data, lambda d: self._send_down(session.client, d))

    def _apply_rules(self, session: _Session, data: bytes) -> bool:
        """True when a CoAP rule consumed the datagram (answered, reset or dropped it)."""
        if not data or data[0] >> 6 != 1:  # not CoAP version 1 (e.g. a DTLS record)
            return False
        try:
            msg = decode(data)
        except CoapDecodeError:
            return False
        confirmable = msg.type == MessageType.CON
        if confirmable and msg.mid in session.answered:
            reply = session.answered[msg.mid]
            self.counters["rule.retransmission"] += 1
            if reply is not None:
                self._send_down(session.client, reply)
            return True
        if msg.type not in (MessageType.CON, MessageType.NON):
            return False
        for rule in self.rules:
            if not rule.matches(msg):
                continue
            if rule.action is RuleAction.RESET and not confirmable:
                continue
            rule.applied += 1
            self.counters[f"rule.{rule.action.value}"] += 1
            answer = rule.reply(msg)
            data_out = encode(answer) if answer is not None else None
            if confirmable:
                if len(session.answered) > 256:
                    session.answered.clear()
                session.answered[msg.mid] = data_out
            log.debug("%s: mid %d from %s", rule.describe(), msg.mid, session.client)
            if data_out is not None:
                self._send_down(session.client, data_out)
            return True
        return False

    def _impair(self, d: Direction, data: bytes, send: Callable[[bytes], None]) -> None:
        f = self.faults[d]
        name = d.value
        if not f.active:
            self.counters[f"{name}.forwarded"] += 1
            send(data)
            self._release_held(d)
            return
        rng = self.rng
        if f.blackhole:
            self.counters[f"{name}.blackholed"] += 1
            return
        if f.drop and rng.random() < f.drop:
            self.counters[f"{name}.dropped"] += 1
            return
        if f.truncate and data and rng.random() < f.truncate:
            data = data[: rng.randrange(len(data))]
            self.counters[f"{name}.truncated"] += 1
        if f.corrupt and data and rng.random() < f.corrupt:
            buf = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
            data = bytes(buf)
            self.counters[f"{name}.corrupted"] += 1
        copies = 1
        if f.duplicate and rng.random() < f.duplicate:
            copies = 2
            self.counters[f"{name}.duplicated"] += 1
        for _ in range(copies):
            delay = f.delay + (rng.uniform(-f.jitter, f.jitter) if f.jitter else 0.0)
            self._schedule(d, max(0.0, delay), data, send, f)

    def _schedule(
        self,
        d: Direction,
        delay: float,
        data: bytes,
        send: Callable[[bytes], None],
        f: LinkFaults,
    ) -> None:
        assert self._loop is not None
        name = d.value

        def emit() -> None:
            if f.reorder and self.rng.random() < f.reorder:
                # Held back until the next datagram in this direction overtakes it.
                self.counters[f"{name}.reordered"] += 1
                self._held[d].append(lambda: send(data))
                self._later(REORDER_HOLD, lambda: self._release_held(d))
                return
            self.counters[f"{name}.forwarded"] += 1
            send(data)
            self._release_held(d)

        if delay > 0:
            self.counters[f"{name}.delayed"] += 1
            self._later(delay, emit)
        else:
            emit()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            assert handle is not None
            self._handles.discard(handle)
            callback()

        handle = self._loop.call_later(delay, run)
        self._handles.add(handle)

    def _release_held(self, d: Direction) -> None:
        held, self._held[d] = self._held[d], []
        for send in held:
            self.counters[f"{d.value}.forwarded"] += 1
            send()

    def _send_up(self, session: _Session, data: bytes) -> None:
        if session.closed:
            return
        if session.transport is None:
            session.backlog.append(data)
        elif not session.transport.is_closing():
            session.transport.sendto(data)

    def _send_down(self, client: Address, data: bytes) -> None:
        if self._listener is None:
            self.counters["down.lost_unreachable"] += 1
            return
        self._listener.sendto(data, client)

    # ------------------------------------------------------------------ sessions
    def _open_session(self, addr: Address) -> _Session:
        assert self._loop is not None
        session = _Session(addr, self._loop.time())
        self._sessions[addr] = session
        self.counters["sessions.opened"] += 1
        task = self._loop.create_task(self._connect_upstream(session))
        task.add_done_callback(_log_task_failure)
        return session

    async def _connect_upstream(self, session: _Session) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _UpstreamProtocol(self, session), remote_addr=self.upstream
        )
        if session.closed:
            transport.close()
            return
        session.transport = transport
        backlog, session.backlog = session.backlog, []
        for data in backlog:
            transport.sendto(data)

    def _close_session(self, session: _Session) -> None:
        session.closed = True
        session.backlog.clear()
        if session.transport is not None:
            session.transport.close()
            session.transport = None

    def _reap(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for addr, session in list(self._sessions.items()):
            if now - session.last_seen > self.session_idle:
                self._close_session(session)
                del self._sessions[addr]
                self.counters["sessions.expired"] += 1
        self._reaper = self._loop.call_later(self.session_idle / 2, self._reap)


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("proxy: cannot open an upstream socket: %r", task.exception())
