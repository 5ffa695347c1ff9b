"""Sans-IO core of the embedded LwM2M testbed server.

It speaks real LwM2M (Register / Update / De-register on ``/rd``) through the
same :class:`~aiolwm2m.coap.layer.MessageLayer` the client uses, one per peer
address, and can be told to misbehave: answer a chosen operation with a chosen
code (4.04, 5.03, 4.29 + Max-Age…), stay silent, or reset it — the server-side
faults the recovery tests need. The asyncio wrapper (:mod:`.server`) and the
simulated network both drive this same object.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    encode_uint,
)
from aiolwm2m.coap.params import TransmissionParameters

Address = tuple[str, int]


class Operation(enum.Enum):
    REGISTER = "register"
    UPDATE = "update"
    DEREGISTER = "deregister"
    ANY = "any"


class FaultKind(enum.Enum):
    RESPOND = "respond"  # answer with ``code`` (and Max-Age for 4.29)
    SILENT = "silent"  # drop the request: the client times out
    RESET = "reset"  # answer a CON with RST


@dataclass
class FaultRule:
    operation: Operation
    kind: FaultKind
    code: int = Code.SERVICE_UNAVAILABLE
    max_age: int | None = None
    count: int | None = None  # None: until removed
    endpoint: str | None = None  # None: every client

    def matches(self, op: Operation, endpoint: str | None) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.operation is not Operation.ANY and self.operation is not op:
            return False
        return self.endpoint is None or self.endpoint == endpoint


@dataclass
class Registration:
    endpoint: str
    location: str
    address: Address
    lifetime: int
    lwm2m_version: str
    binding: str
    links: str
    registered_at: float
    updated_at: float
    updates: int = 0


@dataclass
class ServerEvent:
    time: float
    kind: str  # registered / updated / deregistered / expired / fault / malformed
    endpoint: str | None = None
    detail: str = ""


@dataclass
class ResponseEvent:
    """The outcome of a server-initiated request (Read, Observe, …)."""

    key: int
    address: Address
    result: ExchangeResult


def _query_args(msg: Message) -> dict[str, str]:
    return {k: v for k, _, v in (q.partition("=") for q in msg.uri_query)}


@dataclass
class _Peer:
    layer: MessageLayer
    last_seen: float


@dataclass
class ServerCore:
    """The whole testbed server state machine; feed it datagrams and time."""

    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    # Registrations outlive their lifetime by this grace period before expiring.
    expiry_grace: float = 10.0

    def __post_init__(self) -> None:
        self.registrations: dict[str, Registration] = {}
        self.rules: list[FaultRule] = []
        self.events: deque[ServerEvent] = deque(maxlen=10_000)
        self.history: list[ServerEvent] = []
        self._peers: dict[Address, _Peer] = {}
        self._tx: list[tuple[Address, bytes]] = []
        self._responses: deque[ResponseEvent] = deque()
        self._next_location = 1

    # -- configuration ----------------------------------------------------------
    def add_rule(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        self.rules.clear()

    def forget_peers(self) -> None:
        """A restart: all message-layer state (dedup, exchanges) is lost; registrations kept."""
        self._peers.clear()
        self._tx.clear()

    # -- IO boundary -------------------------------------------------------------
    def datagram_received(self, addr: Address, data: bytes, now: float) -> None:
        peer = self._peer(addr, now)
        peer.layer.receive(data, now)
        if peer.layer.stats.malformed:
            peer.layer.stats.malformed = 0
            self._log(now, "malformed", None, f"from {addr[0]}:{addr[1]}")
        self._drain(addr, peer, now)

    def handle_timer(self, now: float) -> None:
        for addr, peer in list(self._peers.items()):
            peer.layer.handle_timer(now)
            self._drain(addr, peer, now)
        for ep, reg in list(self.registrations.items()):
            if now >= reg.updated_at + reg.lifetime + self.expiry_grace:
                del self.registrations[ep]
                self._log(now, "expired", ep)

    def next_timer(self) -> float | None:
        times = [t for p in self._peers.values() if (t := p.layer.next_timer()) is not None]
        times += [
            r.updated_at + r.lifetime + self.expiry_grace for r in self.registrations.values()
        ]
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._tx = self._tx, []
        return out

    def next_response(self) -> ResponseEvent | None:
        return self._responses.popleft() if self._responses else None

    # -- server-initiated requests ------------------------------------------------
    def send_request(
        self, endpoint: str, msg: Message, now: float, *, keep_open: bool = False
    ) -> int:
        """Send Read/Write/Observe… to a registered client; see :meth:`next_response`."""
        reg = self.registrations.get(endpoint)
        if reg is None:
            raise KeyError(f"endpoint {endpoint!r} is not registered")
        peer = self._peer(reg.address, now)
        key = peer.layer.send_request(msg, now, keep_open=keep_open)
        self._drain(reg.address, peer, now)
        return key

    def cancel_request(self, endpoint: str, key: int, now: float) -> None:
        reg = self.registrations.get(endpoint)
        if reg is not None and reg.address in self._peers:
            self._peers[reg.address].layer.cancel(key, now)

    # -- internals ------------------------------------------------------------------
    def _peer(self, addr: Address, now: float) -> _Peer:
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peers[addr] = _Peer(MessageLayer(self.params, self.rng), now)
        peer.last_seen = now
        return peer

    def _drain(self, addr: Address, peer: _Peer, now: float) -> None:
        while (event := peer.layer.next_event()) is not None:
            if isinstance(event, IncomingRequest):
                self._on_request(addr, peer, event, now)
            else:
                self._responses.append(ResponseEvent(event.key, addr, event))
        for data in peer.layer.datagrams_to_send():
            self._tx.append((addr, data))

    def _log(self, now: float, kind: str, endpoint: str | None, detail: str = "") -> None:
        event = ServerEvent(now, kind, endpoint, detail)
        self.events.append(event)
        self.history.append(event)

    def _classify(self, msg: Message) -> tuple[Operation, str | None]:
        path = msg.uri_path
        if not path or path[0] != "rd":
            return Operation.ANY, None
        if len(path) == 1 and msg.code == Code.POST:
            return Operation.REGISTER, _query_args(msg).get("ep")
        loc = "/" + "/".join(path)
        ep = next((r.endpoint for r in self.registrations.values() if r.location == loc), None)
        if msg.code == Code.DELETE:
            return Operation.DEREGISTER, ep
        return Operation.UPDATE, ep

    def _on_request(self, addr: Address, peer: _Peer, req: IncomingRequest, now: float) -> None:
        msg = req.message
        try:
            op, ep = self._classify(msg)
        except CoapDecodeError:
            peer.layer.respond(req.key, Message(code=Code.BAD_REQUEST), now)
            return
        for rule in self.rules:
            if rule.matches(op, ep):
                if rule.count is not None:
                    rule.count -= 1
                self._log(now, "fault", ep, f"{op.value}: {rule.kind.value}")
                if rule.kind is FaultKind.SILENT:
                    peer.layer.cancel_incoming(req.key)
                elif rule.kind is FaultKind.RESET:
                    peer.layer.reject(req.key, now)
                else:
                    resp = Message(code=rule.code)
                    if rule.max_age is not None:
                        resp.add(OptionNumber.MAX_AGE, encode_uint(rule.max_age))
                    peer.layer.respond(req.key, resp, now)
                return
        peer.layer.respond(req.key, self._handle(addr, op, ep, msg, now), now)

    def _handle(
        self, addr: Address, op: Operation, ep: str | None, msg: Message, now: float
    ) -> Message:
        if op is Operation.REGISTER:
            return self._register(addr, msg, now)
        if op is Operation.ANY:
            return Message(code=Code.NOT_FOUND)
        reg = self.registrations.get(ep) if ep else None
        if reg is None:
            return Message(code=Code.NOT_FOUND)
        if op is Operation.DEREGISTER:
            del self.registrations[reg.endpoint]
            self._log(now, "deregistered", reg.endpoint)
            return Message(code=Code.DELETED)
        args = _query_args(msg)
        try:
            if "lt" in args:
                reg.lifetime = int(args["lt"])
        except ValueError:
            return Message(code=Code.BAD_REQUEST)
        reg.binding = args.get("b", reg.binding)
        if msg.payload:
            reg.links = msg.payload.decode("utf-8", "replace")
        reg.address = addr
        reg.updated_at = now
        reg.updates += 1
        self._log(now, "updated", reg.endpoint)
        return Message(code=Code.CHANGED)

    def _register(self, addr: Address, msg: Message, now: float) -> Message:
        args = _query_args(msg)
        ep = args.get("ep")
        if not ep:
            return Message(code=Code.BAD_REQUEST)
        version = args.get("lwm2m", "1.0")
        if version not in ("1.0", "1.1"):
            return Message(code=Code.PRECONDITION_FAILED)
        try:
            lifetime = int(args.get("lt", "86400"))
        except ValueError:
            return Message(code=Code.BAD_REQUEST)
        old = self.registrations.pop(ep, None)
        location = old.location if old else f"/rd/{self._next_location}"
        if old is None:
            self._next_location += 1
        self.registrations[ep] = Registration(
            endpoint=ep,
            location=location,
            address=addr,
            lifetime=lifetime,
            lwm2m_version=version,
            binding=args.get("b", "U"),
            links=msg.payload.decode("utf-8", "replace"),
            registered_at=now,
            updated_at=now,
        )
        self._log(now, "registered", ep, f"{location} lt={lifetime} lwm2m={version}")
        resp = Message(code=Code.CREATED, type=MessageType.ACK)
        for seg in location.strip("/").split("/"):
            resp.add(OptionNumber.LOCATION_PATH, seg.encode())
        return resp
