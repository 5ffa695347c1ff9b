"""Sans-IO CoAP message layer for one peer (RFC 7252 §4, RFC 7641 §4.5).

One instance serves one connection (one remote endpoint). It owns everything
that depends on message ids and timing: confirmable retransmission with the
§4.8 parameters, NSTART, duplicate detection with cached responses, empty ACK
followed by a separate response, Reset matching, tokens.

It never reads a clock or touches a socket: the caller feeds datagrams and the
current time in, then drains :meth:`datagrams_to_send`, :meth:`next_event` and
:meth:`next_timer`. Every outgoing exchange ends in exactly one
:class:`ExchangeResult` whose :class:`Outcome` is what the recovery engine's
failure table is keyed on (response, timeout, reset, network error).
"""

from __future__ import annotations

import enum
import itertools
import random
from collections import OrderedDict
from dataclasses import dataclass

from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    decode,
    encode,
    encode_fields,
    is_request,
    is_response,
    with_mid,
)
from aiolwm2m.coap.params import TransmissionParameters

__all__ = [
    "Event",
    "ExchangeResult",
    "IncomingRequest",
    "LayerStats",
    "MessageLayer",
    "Outcome",
]


class Outcome(enum.Enum):
    RESPONSE = "response"
    ACKNOWLEDGED = "acknowledged"  # a non-request CON (e.g. a notification) was ACKed
    TIMEOUT = "timeout"  # retransmissions used up, or no separate response in time
    RESET = "reset"  # the peer answered with RST
    NETWORK_ERROR = "network_error"  # ICMP unreachable or similar reported by the transport


@dataclass(slots=True)
class ExchangeResult:
    """Final (or, for an open observation, repeated) outcome of an outgoing exchange.

    ``request`` is the message as the layer sent it (with its message id and
    token), never the object the caller passed in.
    """

    key: int
    outcome: Outcome
    request: Message
    response: Message | None = None


@dataclass(slots=True)
class IncomingRequest:
    """A request from the peer; answer it with :meth:`MessageLayer.respond`."""

    key: int
    message: Message


Event = ExchangeResult | IncomingRequest


class _State(enum.Enum):
    QUEUED = 0
    WAIT_ACK = 1
    WAIT_RESPONSE = 2
    OPEN = 3  # observation: further responses with this token keep arriving


@dataclass(slots=True)
class _Outgoing:
    key: int
    msg: Message  # the layer's own copy; ``data`` is its encoding once sent
    is_request: bool
    keep_open: bool
    report: bool
    state: _State = _State.QUEUED
    deadline: float | None = None
    timeout: float = 0.0
    retransmits: int = 0
    data: bytes = b""

    @property
    def outstanding(self) -> bool:
        """Counts against NSTART (RFC 7252 §4.7)."""
        return self.state in (_State.WAIT_ACK, _State.WAIT_RESPONSE)


@dataclass(slots=True)
class _Incoming:
    key: int
    msg: Message
    acked: bool = False
    ack_deadline: float | None = None


@dataclass(slots=True)
class _Seen:
    expires: float
    reply: bytes | None = None


class _Window:
    """Message ids seen within a lifetime, oldest first (RFC 7252 §4.5 deduplication).

    Every entry lives exactly ``lifetime`` seconds and ``now`` never goes back,
    so insertion order is expiry order: pruning pops from the front and costs
    only what expired, however many ids are remembered (a scan of the whole
    table per datagram made a busy client slow down as the table filled up).
    """

    __slots__ = ("entries", "lifetime")

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.entries: OrderedDict[int, _Seen] = OrderedDict()

    def add(self, mid: int, now: float) -> _Seen:
        seen = self.entries[mid] = _Seen(now + self.lifetime)
        return seen

    def prune(self, now: float) -> None:
        entries = self.entries
        while entries and next(iter(entries.values())).expires <= now:
            entries.popitem(last=False)


@dataclass(slots=True)
class LayerStats:
    sent: int = 0
    retransmissions: int = 0
    received: int = 0
    # Datagrams refused unread: undecodable, reserved codes, or responses with a
    # critical option we do not recognise (RFC 7252 §5.4.1, §5.4.3).
    malformed: int = 0
    duplicates: int = 0
    unmatched: int = 0


class MessageLayer:
    """CoAP message layer for one peer; see the module docstring."""

    # One per device and one per peer a server hears from: slots, not a dict each.
    __slots__ = (
        "_by_mid",
        "_by_token",
        "_in",
        "_keys",
        "_mids",
        "_non_lifetime",
        "_non_sent",
        "_out",
        "_queue",
        "_rng",
        "_seen",
        "_tx",
        "events",
        "params",
        "stats",
    )

    def __init__(self, params: TransmissionParameters, rng: random.Random) -> None:
        self.params = params
        # Read for every NON message sent; a property of the parameters computes it.
        self._non_lifetime = params.non_lifetime
        self._rng = rng
        # Message ids from a random start, wrapping at 16 bits: next() on a
        # mapped counter is C calls only, no Python method per message.
        self._mids = map((0xFFFF).__and__, itertools.count(rng.randrange(0x10000)))
        # Exchange keys 1, 2, ...: next() on a counter is one C call per message.
        self._keys = itertools.count(1)
        self._out: dict[int, _Outgoing] = {}
        self._by_mid: dict[int, int] = {}
        self._by_token: dict[bytes, int] = {}
        # NON messages that may still draw a Reset, by message id, oldest first
        # (each expires NON_LIFETIME after it was sent): (key, expires, the bytes
        # sent). The bytes, not a Message: a busy client keeps thousands of
        # these, and entries of plain bytes and numbers are left alone by the
        # garbage collector (a Message with its option list is traversed at
        # every collection); the rare Reset decodes them back. A dict keeps
        # insertion order too, at half an empty OrderedDict's size.
        self._non_sent: dict[int, tuple[int, float, bytes]] = {}
        # Lists, not deques: they hold a handful of items, and an empty deque costs
        # a 600-byte block per layer, which adds up with thousands of clients.
        self._queue: list[int] = []
        self._in: dict[int, _Incoming] = {}
        # Deduplication windows per message type (CON and NON ids live apart and
        # for different lifetimes); created on the first message of that type.
        self._seen: dict[int, _Window] = {}
        self._tx: list[bytes] = []
        # What next_event() takes, oldest first; a caller may drain it in place
        # (the client's per-notification flush: no call when it is empty).
        self.events: list[Event] = []
        self.stats = LayerStats()

    # -- identifiers -----------------------------------------------------------
    def new_mid(self) -> int:
        return next(self._mids)

    def new_token(self) -> bytes:
        while True:
            token = self._rng.getrandbits(64).to_bytes(8, "big")
            if token not in self._by_token:
                return token

    # -- outgoing --------------------------------------------------------------
    def send_request(self, msg: Message, now: float, *, keep_open: bool = False) -> int:
        """Queue a request (CON or NON); a token is assigned if it has none.

        ``keep_open`` keeps the token registered after the first response so
        further responses (Observe notifications) are delivered too, until
        :meth:`cancel`.
        """
        if not is_request(msg.code):
            raise ValueError("send_request needs a request code")
        if msg.type not in (MessageType.CON, MessageType.NON):
            raise ValueError("requests are CON or NON")
        token = msg.token or self.new_token()
        own = _copy(msg, msg.type, 0, token)
        # Encoded now so a message that cannot be sent is refused here, not when
        # it leaves the queue; the message id is filled in then (with_mid).
        data = encode(own)
        key = next(self._keys)
        self._out[key] = _Outgoing(key, own, True, keep_open, True, data=data)
        self._by_token[token] = key
        self._queue.append(key)
        self._pump(now)
        return key

    def send_message(self, msg: Message, now: float, *, report: bool = True) -> int:
        """Send a non-request message (a notification or separate response).

        A CON one is retransmitted and ends in ACKNOWLEDGED / RESET / TIMEOUT /
        NETWORK_ERROR; a NON one is sent at once and only reports RESET if the
        peer rejects it within NON_LIFETIME.
        """
        confirmable = msg.type == _CON
        mtype = _CON if confirmable else _NON
        mid = next(self._mids)  # new_mid(), without its call
        # A ValueError here leaves no trace but a skipped message id.
        data = encode_fields(mtype, msg.code, mid, msg.token, msg.options, msg.payload)
        key = next(self._keys)
        if confirmable:
            own = _copy(msg, mtype, mid, msg.token)
            self._out[key] = _Outgoing(key, own, False, False, report, data=data)
            self._queue.append(key)
            self._pump(now)
        else:
            if report:
                self._non_sent[mid] = (key, now + self._non_lifetime, data)
            self._tx.append(data)
        return key

    def cancel(self, key: int, now: float) -> None:
        """Forget an outgoing exchange without an event (later answers are unmatched)."""
        ex = self._out.pop(key, None)
        if ex is None:
            return
        if ex.key in self._queue:
            self._queue.remove(ex.key)
        self._unlink(ex)
        self._pump(now)

    def withdraw(self, key: int, now: float) -> bool:
        """Take back an outgoing exchange that has not left yet; whether it was taken back.

        Not left yet: still queued behind NSTART, or started with its first
        transmission still waiting in :meth:`datagrams_to_send` (the answer that
        ended the exchange before it, in the same :meth:`receive`, started it).
        Nothing of it is ever sent and it ends without an event. One that went
        out is left alone (False): the peer may hold it, so its answer must
        still be matched (:meth:`cancel` forgets it anyway).
        """
        ex = self._out.get(key)
        if ex is None:
            return False
        if ex.state is _State.QUEUED:
            self._queue.remove(key)
        else:
            tx = self._tx
            first = next((i for i, data in enumerate(tx) if data is ex.data), None)
            if ex.retransmits or first is None:
                return False
            del tx[first]
        del self._out[key]
        self._unlink(ex)
        self._pump(now)
        return True

    def pending(self) -> int:
        """Outgoing exchanges not yet finished (queued, in flight or open)."""
        return len(self._out)

    def clear(self) -> None:
        """Drop every exchange and all dedup state (the connection is being replaced)."""
        self._out.clear()
        self._by_mid.clear()
        self._by_token.clear()
        self._non_sent.clear()
        self._queue.clear()
        self._in.clear()
        self._seen.clear()
        self._tx.clear()

    def respond(self, key: int, response: Message, now: float) -> None:
        """Answer an :class:`IncomingRequest`: piggybacked if still possible, else separate."""
        inc = self._in.pop(key, None)
        if inc is None:
            return
        req = inc.msg
        if req.type == MessageType.CON and not inc.acked:
            data = self._emit(_copy(response, MessageType.ACK, req.mid, req.token))
            self._remember_reply(req, data, now)
        elif req.type == MessageType.CON:
            self.send_message(_copy(response, MessageType.CON, 0, req.token), now, report=False)
        else:
            data = self._emit(_copy(response, MessageType.NON, self.new_mid(), req.token))
            self._remember_reply(req, data, now)

    def refuse_unknown_critical(self, request: IncomingRequest, now: float) -> list[int]:
        """RFC 7252 §5.4.1: refuse a request carrying a critical option we do not recognise.

        Unrecognised: an unknown number, or (§5.4.3) a known one whose value
        length is outside its range (a 300-byte Uri-Path, an empty Uri-Host). A
        CON request is answered 4.02 Bad Option (naming the options in the
        diagnostic payload), a NON one is rejected with RST. Returns the
        option numbers (empty: the request is fine and nothing was sent), so
        every endpoint built on this layer checks requests the same way before
        handling them. An elective option outside its range never gets here:
        decoding already dropped it (§5.4.1: ignored).
        """
        unknown = request.message.unknown_critical_options()
        if unknown:
            if request.message.type == MessageType.CON:
                numbers = ", ".join(str(n) for n in unknown)
                diagnostic = f"unrecognised critical option {numbers}".encode()
                self.respond(request.key, Message(code=Code.BAD_OPTION, payload=diagnostic), now)
            else:
                self.reject(request.key, now)
        return unknown

    def cancel_incoming(self, key: int) -> None:
        """Never answer this request, not even with an empty ACK (its duplicates are dropped).

        Fault injection uses it to make a server look dead to one request.
        """
        self._in.pop(key, None)

    def reject(self, key: int, now: float) -> None:
        """Answer an incoming request with RST instead of a response (RFC 7252 §4.2)."""
        inc = self._in.pop(key, None)
        if inc is None:
            return
        self._reply_reset(inc.msg, now)

    # -- incoming --------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        self.stats.received += 1
        if self._seen or self._non_sent:
            self._prune(now)
        try:
            msg = decode(data)
        except CoapDecodeError:
            self.stats.malformed += 1
            self._reject_malformed(data)
            return
        if msg.type in (MessageType.ACK, MessageType.RST):
            self._on_ack_or_reset(msg, now)
            return
        if msg.code == Code.EMPTY:
            if msg.type == MessageType.CON:  # CoAP ping (§4.3)
                self._emit(Message(type=MessageType.RST, code=Code.EMPTY, mid=msg.mid))
            return
        window = self._window(msg.type)
        seen = window.entries.get(msg.mid)
        if seen is not None:
            self.stats.duplicates += 1
            if seen.reply is not None:
                self._tx.append(seen.reply)
            return
        window.add(msg.mid, now)
        if is_request(msg.code):
            key = next(self._keys)
            inc = _Incoming(key, msg)
            if msg.type == MessageType.CON:
                inc.ack_deadline = now + self.params.effective_piggyback_window
            self._in[key] = inc
            self.events.append(IncomingRequest(key, msg))
        elif is_response(msg.code):
            self._on_response(msg, now)
        else:
            self.stats.unmatched += 1
            if msg.type == MessageType.CON:
                self._reply_reset(msg, now)

    def network_error(self, now: float) -> None:
        """The transport reported an ICMP error: every exchange in flight fails at once.

        Never retransmitted (spec §10): one ICMP ends the exchange. Open
        observations are left alone; queued requests stay queued.
        """
        failed = [ex for ex in self._out.values() if ex.outstanding]
        for ex in failed:
            self._finish(ex, Outcome.NETWORK_ERROR, None)
        self._pump(now)

    # -- time --------------------------------------------------------------------
    def next_timer(self) -> float | None:
        if not self._out and not self._in:
            return None
        deadlines = [ex.deadline for ex in self._out.values() if ex.deadline is not None]
        deadlines += [i.ack_deadline for i in self._in.values() if i.ack_deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if not self._in and not self._out:
            return  # nothing to acknowledge, retransmit or start: the client's other timers
        for inc in list(self._in.values()):
            if inc.ack_deadline is not None and inc.ack_deadline <= now:
                inc.ack_deadline = None
                inc.acked = True
                ack = self._emit(Message(type=MessageType.ACK, code=Code.EMPTY, mid=inc.msg.mid))
                self._remember_reply(inc.msg, ack, now)
        for ex in list(self._out.values()):
            if ex.deadline is None or ex.deadline > now:
                continue
            if ex.state == _State.WAIT_ACK and ex.retransmits < self.params.max_retransmit:
                ex.retransmits += 1
                ex.timeout *= 2
                # Measured from the actual (re)send: a late timer must not make
                # the next deadlines already due and burst the retransmissions.
                ex.deadline = now + ex.timeout
                self.stats.retransmissions += 1
                self._tx.append(ex.data)
            else:
                self._finish(ex, Outcome.TIMEOUT, None)
        self._pump(now)

    # -- output ------------------------------------------------------------------
    def datagrams_to_send(self) -> list[bytes]:
        out, self._tx = self._tx, []
        self.stats.sent += len(out)
        return out

    def next_event(self) -> Event | None:
        return self.events.pop(0) if self.events else None

    # -- internals -------------------------------------------------------------
    def _pump(self, now: float) -> None:
        """Start queued exchanges while fewer than NSTART are outstanding."""
        if not self._queue:
            return
        outstanding = sum(1 for ex in self._out.values() if ex.outstanding)
        while self._queue and outstanding < self.params.nstart:
            key = self._queue.pop(0)
            ex = self._out.get(key)
            if ex is None:
                continue
            if ex.is_request:
                ex.msg.mid = self.new_mid()
                ex.data = with_mid(ex.data, ex.msg.mid)
            if ex.msg.type == MessageType.CON:
                self._by_mid[ex.msg.mid] = key
                ex.state = _State.WAIT_ACK
                ex.timeout = self._rng.uniform(
                    self.params.ack_timeout, self.params.ack_timeout * self.params.ack_random_factor
                )
                ex.deadline = now + ex.timeout
            else:
                ex.state = _State.WAIT_RESPONSE
                ex.deadline = now + self.params.effective_separate_response_timeout
            outstanding += 1
            self._tx.append(ex.data)

    def _emit(self, msg: Message) -> bytes:
        data = encode(msg)
        self._tx.append(data)
        return data

    def _window(self, mtype: int) -> _Window:
        window = self._seen.get(mtype)
        if window is None:
            params = self.params
            lifetime = params.exchange_lifetime if mtype == MessageType.CON else params.non_lifetime
            window = self._seen[mtype] = _Window(lifetime)
        return window

    def _remember_reply(self, msg: Message, data: bytes, now: float) -> None:
        """Keep the answer to ``msg`` so a duplicate of it gets the same bytes again."""
        window = self._window(msg.type)
        seen = window.entries.get(msg.mid)
        if seen is None:  # its window entry already expired: a fresh one
            seen = window.add(msg.mid, now)
        seen.reply = data

    def _reply_reset(self, msg: Message, now: float) -> None:
        rst = self._emit(Message(type=MessageType.RST, code=Code.EMPTY, mid=msg.mid))
        self._remember_reply(msg, rst, now)

    def _reject_malformed(self, data: bytes) -> None:
        # RFC 7252 §4.2: a malformed CON is rejected with RST when its header is readable.
        if len(data) >= 4 and data[0] >> 6 == 1 and (data[0] >> 4) & 0x3 == MessageType.CON:
            mid = int.from_bytes(data[2:4], "big")
            self._emit(Message(type=MessageType.RST, code=Code.EMPTY, mid=mid))

    def _on_ack_or_reset(self, msg: Message, now: float) -> None:
        if msg.code != Code.EMPTY and (
            msg.type == MessageType.RST
            or not is_response(msg.code)
            or msg.unknown_critical_options()
        ):
            # RFC 7252 §4.2: a Reset that is not Empty, or an ACK carrying a
            # request, a reserved code class or (§5.4.1, §5.4.3) a critical option
            # we do not recognise, is rejected by silently ignoring it: a request goes on
            # being retransmitted as if no ACK had come.
            self.stats.malformed += 1
            return
        key = self._by_mid.get(msg.mid)
        ex = self._out.get(key) if key is not None else None
        if ex is None or ex.state != _State.WAIT_ACK:
            if msg.type == MessageType.RST and msg.mid in self._non_sent:
                nkey, _, sent = self._non_sent.pop(msg.mid)
                self.events.append(ExchangeResult(nkey, Outcome.RESET, decode(sent), None))
            elif msg.type == MessageType.ACK and msg.code != Code.EMPTY:
                self.stats.unmatched += 1
            return
        del self._by_mid[msg.mid]
        if msg.type == MessageType.RST:
            self._finish(ex, Outcome.RESET, None)
        elif not ex.is_request:
            self._finish(ex, Outcome.ACKNOWLEDGED, None)
        elif msg.code == Code.EMPTY:
            ex.state = _State.WAIT_RESPONSE
            ex.deadline = now + self.params.effective_separate_response_timeout
        elif msg.token != ex.msg.token:
            # A piggybacked response must echo the token; treat a mismatch as no answer yet.
            self.stats.unmatched += 1
            ex.state = _State.WAIT_RESPONSE
            ex.deadline = now + self.params.effective_separate_response_timeout
        else:
            self._deliver(ex, msg)
        self._pump(now)

    def _on_response(self, msg: Message, now: float) -> None:
        key = self._by_token.get(msg.token)
        ex = self._out.get(key) if key is not None else None
        if ex is None or ex.state == _State.QUEUED:
            self.stats.unmatched += 1
            # Unknown token: reject so the peer stops (this is also how an
            # unwanted notification cancels its observation, RFC 7641 §3.6).
            self._reply_reset(msg, now)
            return
        if msg.unknown_critical_options():
            # RFC 7252 §5.4.1: a separate response (or notification) with a
            # critical option we do not recognise is rejected with RST (§4.2, §4.3);
            # the exchange waits on as if it had not come, and a Reset
            # notification ends its observation at the peer (RFC 7641 §3.6).
            self.stats.malformed += 1
            self._reply_reset(msg, now)
            return
        if msg.type == MessageType.CON:
            ack = self._emit(Message(type=MessageType.ACK, code=Code.EMPTY, mid=msg.mid))
            self._remember_reply(msg, ack, now)
        if ex.state == _State.WAIT_ACK:
            self._by_mid.pop(ex.msg.mid, None)
        self._deliver(ex, msg)
        self._pump(now)

    def _deliver(self, ex: _Outgoing, response: Message) -> None:
        if ex.keep_open and response.observe is not None:
            ex.state = _State.OPEN
            ex.deadline = None
            self._by_mid.pop(ex.msg.mid, None)
            if ex.report:
                self.events.append(ExchangeResult(ex.key, Outcome.RESPONSE, ex.msg, response))
            return
        self._finish(ex, Outcome.RESPONSE, response)

    def _finish(self, ex: _Outgoing, outcome: Outcome, response: Message | None) -> None:
        self._out.pop(ex.key, None)
        self._unlink(ex)
        if ex.report:
            self.events.append(ExchangeResult(ex.key, outcome, ex.msg, response))

    def _unlink(self, ex: _Outgoing) -> None:
        if self._by_mid.get(ex.msg.mid) == ex.key:
            del self._by_mid[ex.msg.mid]
        if ex.is_request and self._by_token.get(ex.msg.token) == ex.key:
            del self._by_token[ex.msg.token]

    def _prune(self, now: float) -> None:
        for window in self._seen.values():
            window.prune(now)
        non_sent = self._non_sent
        while non_sent:
            oldest = next(iter(non_sent))
            if non_sent[oldest][1] > now:
                break
            del non_sent[oldest]


_CON, _NON = MessageType.CON, MessageType.NON


def _copy(msg: Message, mtype: MessageType, mid: int, token: bytes) -> Message:
    """The layer's own message: the caller's object is never changed."""
    return Message(mtype, msg.code, mid, token, list(msg.options), msg.payload)
