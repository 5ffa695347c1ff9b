"""Sans-IO core of the embedded LwM2M testbed server.

It speaks real LwM2M (Register / Update / De-register on ``/rd``) through the
same :class:`~aiolwm2m.coap.layer.MessageLayer` the client uses, one per peer
address, and can be told to misbehave: answer a chosen operation with a chosen
code (4.04, 5.03, 4.29 + Max-Age…), stay silent, or reset it — the server-side
faults the recovery tests need. The asyncio wrapper (:mod:`.server`) and the
simulated network both drive this same object.

Registrations follow Leshan, the strictest server we could read (its
``RegistrationHandler``, ``RegistrationUpdate`` and
``InMemoryRegistrationStore``, eclipse-leshan/leshan): an Update names its
registration by location and is answered 4.04 when the server no longer holds
it (never registered, expired, lost in a restart); an accepted Update moves the
registration, and the observations open on it, to the address it came from (a
client back on a new socket or DTLS session); a Register for an endpoint that
is already registered replaces that registration with a new one under a new
location, and every observation of the old one ends (the server has to observe
again). A client that wants to keep its observations across a reconnect must
therefore resume with an Update, not re-register.

Server-initiated requests (:meth:`ServerCore.send_request`, and the decoded
LwM2M operations of :meth:`ServerCore.start_operation`) are identified by a
server-wide id, because the message layers' own keys are per peer and would
collide between two clients. Block2 answers are reassembled here, so a large
Read looks like any other to the caller.

Registration parameters are checked as strictly as Eclipse Leshan checks them
(:func:`binding_problem`): a 1.1 client saying ``b=UQ`` is refused with 4.00
and Leshan's diagnostic, because 1.1 has queue mode as its own ``Q``
parameter; a 1.0 client still says ``b=UQ``.
"""

from __future__ import annotations

import enum
import functools
import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass, field

from aiolwm2m.coap.blockwise import Block2Receiver, BlockwiseError
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer, Outcome
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    encode_uint,
    is_success,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import DecodeError
from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.formats import decode as decode_values
from aiolwm2m.lwm2m.model import TypeLookup
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record
from aiolwm2m.testbed.operations import (
    OperationRequest,
    OperationResult,
    UnknownEndpointError,
    cancel_observe_request,
    decode_result,
    jsonable,
)
from aiolwm2m.testbed.peers import HISTORY_LIMIT, Address, PeerMux, ServerEvent, ServerLog

#: How many Send payloads (decoded) the server keeps in ``sent``.
SENT_LIMIT = 10_000

# Options a Block2 continuation request does not repeat (RFC 7959 section 2.4:
# continuations of an observation are plain GETs; Block2 is set per request).
_NOT_REPEATED = frozenset({OptionNumber.OBSERVE, OptionNumber.BLOCK2})


class Operation(enum.Enum):
    REGISTER = "register"
    UPDATE = "update"
    DEREGISTER = "deregister"
    SEND = "send"  # LwM2M 1.1 Send: POST /dp from a registered client
    ANY = "any"


class FaultKind(enum.Enum):
    RESPOND = "respond"  # answer with ``code`` (and Max-Age for 4.29)
    SILENT = "silent"  # drop the request: the client times out
    RESET = "reset"  # answer a CON with RST


def inject_fault(
    layer: MessageLayer, req: IncomingRequest, kind: FaultKind, answer: Message, now: float
) -> None:
    """Misbehave on one request as a fault says: drop it, reset it, or answer ``answer``."""
    if kind is FaultKind.SILENT:
        layer.cancel_incoming(req.key)
    elif kind is FaultKind.RESET:
        layer.reject(req.key, now)
    else:
        layer.respond(req.key, answer, now)


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
    binding: str  # as sent in b=
    links: str
    registered_at: float
    updated_at: float
    updates: int = 0
    queue_mode: bool = False  # "Q" in a 1.0 binding, the Q parameter in 1.1


@dataclass
class SentData:
    """Values a client pushed with LwM2M Send (POST /dp), decoded."""

    time: float
    endpoint: str
    content_format: int
    records: list[Record]


@dataclass
class ResponseEvent:
    """The outcome of a server-initiated request (Read, Observe, …).

    ``key`` is the id :meth:`ServerCore.send_request` / ``start_operation``
    returned. ``operation`` is the decoded answer of an operation (None for a
    raw request and for transport failures). ``final`` is False for each
    notification of an observation that stays open.
    """

    key: int
    address: Address
    result: ExchangeResult
    operation: OperationResult | None = None
    final: bool = True


@dataclass
class _Outstanding:
    """One server-initiated request (or open observation) and its Block2 state."""

    endpoint: str
    address: Address
    layer_key: int
    message: Message
    keep_open: bool
    operation: OperationRequest | None = None
    observing: bool = False  # an Observe answer came: notifications follow
    blocks: _Blocks | None = None  # a Block2 answer being fetched
    follow_key: int | None = None  # layer key of the Block2 continuation in flight


@dataclass
class _Blocks:
    first: Message  # code, Content-Format and Observe come from the first block
    receiver: Block2Receiver


def _broken(
    request: OperationRequest, response: Message, types: TypeLookup | None, why: str
) -> OperationResult:
    result = decode_result(request, response, types)
    result.decode_error = why
    return result


@functools.cache
def _builtin_types() -> TypeLookup:
    return load_builtin().type_of


def _query_args(msg: Message) -> dict[str, str]:
    return {k: v for k, _, v in (q.partition("=") for q in msg.uri_query)}


#: Binding letters of the Core spec (U, T, S, N; Q only in 1.0 bindings).
_BINDING_LETTERS = "UTSNQ"


def binding_problem(binding: str, lwm2m_version: str) -> str | None:
    """Why ``b=<binding>`` is invalid for a client of ``lwm2m_version``, or None.

    The wording is Leshan's (its ``BindingMode.isValidFor``), so the client's
    ``error`` event reads the same against either server. An unknown or missing
    letter, which Leshan answers with 5.00, is a 4.00 here.
    """
    if not binding:
        return "Invalid Binding mode: empty"
    for letter in binding:
        if letter not in _BINDING_LETTERS:
            return f"Invalid Binding mode: {letter!r} is not a binding"
        if letter in "TN" and lwm2m_version == "1.0":
            return f"Invalid Binding mode: {letter} is supported since LWM2M 1.1"
        if letter == "Q" and lwm2m_version != "1.0":
            return "Invalid Binding mode: Q is not supported since LWM2M 1.1"
    return None


def _invalid(diagnostic: str) -> Message:
    """4.00 with a plain-text diagnostic payload, as Leshan answers an invalid request."""
    resp = Message(code=Code.BAD_REQUEST, payload=diagnostic.encode())
    resp.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.TEXT))
    return resp


@dataclass
class ServerCore:
    """The whole testbed server state machine; feed it datagrams and time.

    Per datagram it does the work of that datagram only: registrations are
    found by endpoint, location and address through dicts, lifetimes expire
    from a heap, and the per-peer message layers live in a :class:`PeerMux`
    (timers by heap, idle peers forgotten). ``history`` keeps the last
    ``history_limit`` events and ``sent`` the last :data:`SENT_LIMIT` Sends.
    """

    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    # Registrations outlive their lifetime by this grace period before expiring.
    expiry_grace: float = 10.0
    # Resource types for decoding answers (TLV needs them); default: shipped objects.
    types: TypeLookup | None = None
    history_limit: int = HISTORY_LIMIT

    def __post_init__(self) -> None:
        self.registrations: dict[str, Registration] = {}
        self.rules: list[FaultRule] = []
        self.log = ServerLog(self.history_limit)
        self.sent: deque[SentData] = deque(maxlen=SENT_LIMIT)  # accepted Sends, oldest first
        self.peers = PeerMux(self.params, self.rng, self, self.log)
        self._by_location: dict[str, Registration] = {}
        self._by_address: dict[Address, dict[str, None]] = {}  # endpoints, oldest first
        self._expiry: list[tuple[float, int, Registration]] = []
        self._expiry_seq = itertools.count()
        self._responses: deque[ResponseEvent] = deque()
        self._next_location = 1
        self._outstanding: dict[int, _Outstanding] = {}
        self._by_layer: dict[tuple[Address, int], int] = {}
        self._next_id = 1
        self._moves: list[tuple[Address, Address]] = []  # clients seen at a new address
        # Observations a new registration of their endpoint ended, for the host to end
        # its side of them (bounded: a host that does not look must not make it grow).
        self.ended_observations: deque[int] = deque(maxlen=self.history_limit)
        if self.types is None:
            self.types = _builtin_types()

    @property
    def history(self) -> deque[ServerEvent]:
        """The last ``history_limit`` events, oldest first."""
        return self.log.history

    def take_events(self) -> list[ServerEvent]:
        """Events logged since the last call (what a host forwards to its listeners)."""
        return self.log.take()

    def stats(self) -> dict[str, int]:
        """Counters for load runs: sizes now, totals since start, events by kind."""
        mux = self.peers.stats
        figures = {
            "registrations": len(self.registrations),
            "peers": len(self.peers),
            "datagrams_in": mux.received,
            "datagrams_out": mux.sent,
            "peers_forgotten": mux.forgotten,
            "open_requests": len(self._outstanding),
        }
        figures.update(sorted(self.log.counts.items()))
        return figures

    # -- configuration ----------------------------------------------------------
    def add_rule(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        self.rules.clear()

    def forget_peers(self) -> None:
        """A restart: all message-layer state (dedup, exchanges) is lost; registrations kept."""
        self.peers.clear()
        self._outstanding.clear()
        self._by_layer.clear()

    def forget_registrations(self) -> None:
        """Drop every registration (a restart that lost its database)."""
        self.registrations.clear()
        self._by_location.clear()
        self._by_address.clear()
        self._expiry.clear()

    # -- IO boundary -------------------------------------------------------------
    def datagram_received(self, addr: Address, data: bytes, now: float) -> None:
        self.peers.receive(addr, data, now)
        while self._moves:
            self._rehome(*self._moves.pop(), now)

    def _rehome(self, old: Address, new: Address, now: float) -> None:
        """A registered client now talks from ``new`` (a new socket after an outage).

        Like a server that matches notifications by endpoint and token rather
        than by source address, its open observations follow it: the old
        peer's message layer, which holds them, now serves the new address.
        """
        moved = [key for key, out in self._outstanding.items() if out.address == old]
        if old not in self.peers or not moved:
            return
        self.peers.move(old, new, now)
        for key in moved:
            out = self._outstanding[key]
            for layer_key in (out.layer_key, out.follow_key):
                if layer_key is not None and self._by_layer.pop((old, layer_key), None) is not None:
                    self._by_layer[(new, layer_key)] = key
            out.address = new

    def handle_timer(self, now: float) -> None:
        self.peers.handle_timer(now)
        heap = self._expiry
        while heap and heap[0][0] <= now:
            when, _, reg = heapq.heappop(heap)
            if self._expires(reg) == when and self.registrations.get(reg.endpoint) is reg:
                self._drop(reg)
                self.log.add(now, "expired", reg.endpoint)

    def next_timer(self) -> float | None:
        heap = self._expiry
        while heap and not (
            self._expires(heap[0][2]) == heap[0][0]
            and self.registrations.get(heap[0][2].endpoint) is heap[0][2]
        ):
            heapq.heappop(heap)  # renewed (a later entry exists) or gone
        due = self.peers.next_timer()
        if heap and (due is None or heap[0][0] < due):
            due = heap[0][0]
        return due

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        return self.peers.datagrams_to_send()

    def next_response(self) -> ResponseEvent | None:
        return self._responses.popleft() if self._responses else None

    # -- server-initiated requests ------------------------------------------------
    def send_request(
        self, endpoint: str, msg: Message, now: float, *, keep_open: bool = False
    ) -> int:
        """Send a raw request to a registered client; its outcome comes from :meth:`next_response`.

        ``keep_open`` keeps an Observe exchange open: every notification is a
        :class:`ResponseEvent` with ``final=False``. Returns the request id.
        """
        return self._send(endpoint, msg, now, keep_open=keep_open, operation=None)

    def start_operation(self, endpoint: str, request: OperationRequest, now: float) -> int:
        """Send an LwM2M operation; its :class:`ResponseEvent` carries the decoded answer.

        Block2 answers are fetched block by block before the event is emitted.
        """
        return self._send(
            endpoint,
            request.message,
            now,
            keep_open=request.op.observes,
            operation=request,
        )

    def cancel_request(self, key: int, now: float) -> None:
        """Forget a request or observation without an event.

        For an observation this is the passive cancel: the client's next
        notification is unknown and gets RST (RFC 7641 section 3.6).
        """
        out = self._outstanding.pop(key, None)
        if out is None:
            return
        self._by_layer.pop((out.address, out.layer_key), None)
        if out.address not in self.peers:
            return
        layer = self.peers.layer(out.address, now)
        layer.cancel(out.layer_key, now)
        if out.follow_key is not None:
            self._by_layer.pop((out.address, out.follow_key), None)
            layer.cancel(out.follow_key, now)
        self.peers.drain(out.address, now)

    def cancel_observation(self, key: int, now: float) -> int:
        """Active cancel: GET/FETCH with Observe=1 and the observation's token.

        The observation ends without an event; the returned id is that of the
        cancel request, whose answer (usually 2.05 with the current value) is
        reported like any operation's.
        """
        out = self._outstanding.get(key)
        if out is None or out.operation is None or not out.operation.op.observes:
            raise KeyError(f"no open observation {key}")
        cancel = cancel_observe_request(out.operation)
        self.cancel_request(key, now)
        return self._send(out.endpoint, cancel.message, now, keep_open=False, operation=cancel)

    def open_requests(self) -> dict[int, tuple[str, Message]]:
        """Requests still waiting and open observations: ``{id: (endpoint, request)}``."""
        return {k: (o.endpoint, o.message) for k, o in self._outstanding.items()}

    # -- PeerHandler ------------------------------------------------------------------
    def on_result(
        self, addr: Address, layer: MessageLayer, event: ExchangeResult, now: float
    ) -> None:
        key = self._by_layer.pop((addr, event.key), None)
        out = self._outstanding.get(key) if key is not None else None
        if key is None or out is None:
            return  # cancelled meanwhile, or a superseded Block2 continuation
        response = event.response
        continuation = event.key != out.layer_key
        if continuation:
            out.follow_key = None
        else:
            out.observing = (
                out.keep_open
                and event.outcome is Outcome.RESPONSE
                and response is not None
                and response.observe is not None
            )
            if out.observing:
                self._by_layer[(addr, event.key)] = key  # more notifications will come
        operation: OperationResult | None = None
        if out.operation is not None and response is not None:
            operation = self._answer(addr, layer, key, out, response, continuation, now)
            if operation is None:
                return  # the next block has been requested
        final = not out.observing
        if final:
            self._outstanding.pop(key, None)
        self._responses.append(ResponseEvent(key, addr, event, operation, final))

    def on_request(
        self, addr: Address, layer: MessageLayer, req: IncomingRequest, now: float
    ) -> None:
        msg = req.message
        try:
            op, reg = self._classify(msg, addr)
        except CoapDecodeError:
            layer.respond(req.key, Message(code=Code.BAD_REQUEST), now)
            return
        ep = reg.endpoint if isinstance(reg, Registration) else reg
        for rule in self.rules:
            if rule.matches(op, ep):
                if rule.count is not None:
                    rule.count -= 1
                self.log.add(
                    now,
                    "fault",
                    ep,
                    f"{op.value}: {rule.kind.value}",
                    operation=op.value,
                    fault=rule.kind.value,
                )
                answer = Message(code=rule.code)
                if rule.max_age is not None:
                    answer.add(OptionNumber.MAX_AGE, encode_uint(rule.max_age))
                inject_fault(layer, req, rule.kind, answer, now)
                return
        layer.respond(req.key, self._handle(addr, op, reg, msg, now), now)

    # -- internals ------------------------------------------------------------------
    def _send(
        self,
        endpoint: str,
        msg: Message,
        now: float,
        *,
        keep_open: bool,
        operation: OperationRequest | None,
    ) -> int:
        reg = self.registrations.get(endpoint)
        if reg is None:
            raise UnknownEndpointError(f"endpoint {endpoint!r} is not registered")
        layer = self.peers.layer(reg.address, now)
        if not msg.token:
            # The layer never writes into the caller's message; an active cancel
            # repeats this request's token, so it is chosen here.
            msg.token = layer.new_token()
        key = self._next_id
        self._next_id += 1
        layer_key = layer.send_request(msg, now, keep_open=keep_open)
        self._outstanding[key] = _Outstanding(
            endpoint, reg.address, layer_key, msg, keep_open, operation
        )
        self._by_layer[(reg.address, layer_key)] = key
        self.peers.drain(reg.address, now)
        return key

    def _answer(
        self,
        addr: Address,
        layer: MessageLayer,
        key: int,
        out: _Outstanding,
        response: Message,
        continuation: bool,
        now: float,
    ) -> OperationResult | None:
        """Decode an answer, fetching the rest first if it is block-wise (then None)."""
        assert out.operation is not None
        if not continuation:
            # A new notification supersedes a half-fetched one.
            if out.follow_key is not None:
                self._by_layer.pop((addr, out.follow_key), None)
                layer.cancel(out.follow_key, now)
                out.follow_key = None
            out.blocks = None
        first = response if out.blocks is None else out.blocks.first
        try:
            block = response.block2
        except CoapDecodeError as exc:
            out.blocks = None
            return _broken(out.operation, response, self.types, str(exc))
        if out.blocks is None and (block is None or not block.more):
            return decode_result(out.operation, response, self.types)
        if not is_success(response.code):
            out.blocks = None
            return decode_result(out.operation, response, self.types)
        if out.blocks is None:
            out.blocks = _Blocks(response, Block2Receiver())
        try:
            next_block = out.blocks.receiver.feed(response)
        except BlockwiseError as exc:
            out.blocks = None
            return _broken(out.operation, first, self.types, f"block-wise answer: {exc}")
        if next_block is None:
            payload = out.blocks.receiver.payload
            out.blocks = None
            return decode_result(out.operation, first, self.types, payload)
        src = out.message
        follow = Message(
            type=src.type,
            code=src.code,
            options=[o for o in src.options if o[0] not in _NOT_REPEATED],
            payload=src.payload,
        )
        follow.add(OptionNumber.BLOCK2, next_block.encode())
        out.follow_key = layer.send_request(follow, now)
        self._by_layer[(addr, out.follow_key)] = key
        return None

    def _classify(self, msg: Message, addr: Address) -> tuple[Operation, Registration | str | None]:
        """What the request is, and whose: its registration (or, for Register, the ep)."""
        path = msg.uri_path
        if path == ["dp"] and msg.code == Code.POST:
            at = self._by_address.get(addr)
            return Operation.SEND, self.registrations[next(iter(at))] if at else None
        if not path or path[0] != "rd":
            return Operation.ANY, None
        if len(path) == 1 and msg.code == Code.POST:
            return Operation.REGISTER, _query_args(msg).get("ep")
        reg = self._by_location.get("/" + "/".join(path))
        if msg.code == Code.DELETE:
            return Operation.DEREGISTER, reg
        return Operation.UPDATE, reg

    def _handle(
        self,
        addr: Address,
        op: Operation,
        reg: Registration | str | None,
        msg: Message,
        now: float,
    ) -> Message:
        if op is Operation.REGISTER:
            return self._register(addr, msg, now)
        if op is Operation.ANY or not isinstance(reg, Registration):
            return Message(code=Code.NOT_FOUND)
        if op is Operation.SEND:
            return self._send_received(reg, msg, now)
        if op is Operation.DEREGISTER:
            self._drop(reg)
            self.log.add(now, "deregistered", reg.endpoint)
            return Message(code=Code.DELETED)
        args = _query_args(msg)
        try:
            lifetime = int(args["lt"]) if "lt" in args else reg.lifetime
        except ValueError:
            return Message(code=Code.BAD_REQUEST)
        # An Update cannot change queue mode (Core 1.1.1 §6.2.2: no Q); like
        # Leshan, a Q here is an unknown parameter and ignored.
        binding = args.get("b", reg.binding)
        problem = binding_problem(binding, reg.lwm2m_version)
        if problem is not None:
            return _invalid(problem)
        reg.lifetime = lifetime
        if reg.lwm2m_version == "1.0":
            reg.queue_mode = "Q" in binding
        reg.binding = binding
        if msg.payload:
            reg.links = msg.payload.decode("utf-8", "replace")
        if reg.address != addr:
            self._moves.append((reg.address, addr))
            self._unindex_address(reg)
            reg.address = addr
            self._by_address.setdefault(addr, {})[reg.endpoint] = None
        reg.updated_at = now
        reg.updates += 1
        self._arm_expiry(reg)
        self.log.add(now, "updated", reg.endpoint)
        return Message(code=Code.CHANGED)

    def _send_received(self, reg: Registration, msg: Message, now: float) -> Message:
        """Record and log the values of a Send; 4.15 for non-SenML, 4.00 if undecodable."""
        cf = msg.content_format
        if cf not in (ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR):
            return Message(code=Code.UNSUPPORTED_CONTENT_FORMAT)
        try:
            records = decode_values(cf, msg.payload, Path(), self.types)
        except DecodeError as exc:
            self.log.add(now, "send_rejected", reg.endpoint, str(exc)[:200], reason=str(exc))
            return Message(code=Code.BAD_REQUEST)
        self.sent.append(SentData(now, reg.endpoint, cf, records))
        detail = " ".join(f"{r.path}={r.value!r}" for r in records)
        values = {str(r.path): jsonable(r.value) for r in records}
        self.log.add(now, "send", reg.endpoint, detail[:500], values=values)
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
        binding = args.get("b", "U")
        problem = binding_problem(binding, version)
        queue_param = "Q" in msg.uri_query
        if problem is None and queue_param and version == "1.0":
            problem = "QueueMode is not defined in LWM2M v1.0"
        if problem is not None:
            self.log.add(now, "register_rejected", ep, problem, reason=problem)
            return _invalid(problem)
        old = self.registrations.get(ep)
        if old is not None:
            self._drop(old)  # replaced, as Leshan does: new location, its observations end
            self._end_observations(ep, now)
        location = f"/rd/{self._next_location}"
        self._next_location += 1
        reg = self.registrations[ep] = Registration(
            endpoint=ep,
            location=location,
            address=addr,
            lifetime=lifetime,
            lwm2m_version=version,
            binding=binding,
            links=msg.payload.decode("utf-8", "replace"),
            registered_at=now,
            updated_at=now,
            queue_mode=queue_param or (version == "1.0" and "Q" in binding),
        )
        self._by_location[location] = reg
        self._by_address.setdefault(addr, {})[ep] = None
        self._arm_expiry(reg)
        self.log.add(
            now,
            "registered",
            ep,
            f"{location} lt={lifetime} lwm2m={version}",
            location=location,
            lifetime=lifetime,
            lwm2m_version=version,
        )
        resp = Message(code=Code.CREATED, type=MessageType.ACK)
        for seg in location.strip("/").split("/"):
            resp.add(OptionNumber.LOCATION_PATH, seg.encode())
        return resp

    def _end_observations(self, endpoint: str, now: float) -> None:
        """Forget ``endpoint``'s open observations (passively: a late notification gets RST)."""
        ended = [k for k, out in self._outstanding.items() if out.endpoint == endpoint]
        for key in ended:
            if self._outstanding[key].observing:
                self.cancel_request(key, now)
                self.ended_observations.append(key)

    def _expires(self, reg: Registration) -> float:
        return reg.updated_at + reg.lifetime + self.expiry_grace

    def _arm_expiry(self, reg: Registration) -> None:
        heap = self._expiry
        if len(heap) > 2 * len(self.registrations) + 64:
            # Renewals leave stale entries until their time; rebuild before they pile
            # up (a long lifetime renewed often), which costs O(1) per renewal overall.
            heap[:] = [
                (self._expires(r), next(self._expiry_seq), r) for r in self.registrations.values()
            ]
            heapq.heapify(heap)
            if self.registrations.get(reg.endpoint) is reg:
                return  # rebuilt with its new deadline already
        heapq.heappush(heap, (self._expires(reg), next(self._expiry_seq), reg))

    def _drop(self, reg: Registration) -> None:
        """Forget a registration and its index entries (its expiry entry goes stale)."""
        del self.registrations[reg.endpoint]
        if self._by_location.get(reg.location) is reg:
            del self._by_location[reg.location]
        self._unindex_address(reg)

    def _unindex_address(self, reg: Registration) -> None:
        at = self._by_address.get(reg.address)
        if at is not None:
            at.pop(reg.endpoint, None)
            if not at:
                del self._by_address[reg.address]


__all__ = [
    "SENT_LIMIT",
    "Address",
    "FaultKind",
    "FaultRule",
    "Operation",
    "Registration",
    "ResponseEvent",
    "SentData",
    "ServerCore",
    "ServerEvent",
    "binding_problem",
    "inject_fault",
]
