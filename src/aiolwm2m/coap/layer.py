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
import random
from collections import deque
from dataclasses import dataclass, field

from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    decode,
    encode,
    is_request,
    is_response,
)
from aiolwm2m.coap.params import TransmissionParameters


class Outcome(enum.Enum):
    RESPONSE = "response"
    ACKNOWLEDGED = "acknowledged"  # a non-request CON (e.g. a notification) was ACKed
    TIMEOUT = "timeout"  # retransmissions used up, or no separate response in time
    RESET = "reset"  # the peer answered with RST
    NETWORK_ERROR = "network_error"  # ICMP unreachable or similar reported by the transport


@dataclass
class ExchangeResult:
    """Final (or, for an open observation, repeated) outcome of an outgoing exchange."""

    key: int
    outcome: Outcome
    request: Message
    response: Message | None = None


@dataclass
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


@dataclass
class _Outgoing:
    key: int
    msg: Message
    is_request: bool
    keep_open: bool
    report: bool
    state: _State = _State.QUEUED
    deadline: float | None = None
    timeout: float = 0.0
    retransmits: int = 0

    @property
    def outstanding(self) -> bool:
        """Counts against NSTART (RFC 7252 §4.7)."""
        return self.state in (_State.WAIT_ACK, _State.WAIT_RESPONSE)


@dataclass
class _Incoming:
    key: int
    msg: Message
    acked: bool = False
    ack_deadline: float | None = None


@dataclass
class _Seen:
    expires: float
    reply: bytes | None = None


@dataclass
class LayerStats:
    sent: int = 0
    retransmissions: int = 0
    received: int = 0
    malformed: int = 0
    duplicates: int = 0
    unmatched: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class MessageLayer:
    """CoAP message layer for one peer; see the module docstring."""

    def __init__(self, params: TransmissionParameters, rng: random.Random) -> None:
        self.params = params
        self._rng = rng
        self._next_mid = rng.randrange(0x10000)
        self._next_key = 1
        self._out: dict[int, _Outgoing] = {}
        self._by_mid: dict[int, int] = {}
        self._by_token: dict[bytes, int] = {}
        self._non_sent: dict[int, tuple[int, float, Message]] = {}
        self._queue: deque[int] = deque()
        self._in: dict[int, _Incoming] = {}
        self._seen: dict[tuple[int, int], _Seen] = {}
        self._tx: list[bytes] = []
        self._events: deque[Event] = deque()
        self.stats = LayerStats()

    # -- identifiers -----------------------------------------------------------
    def new_mid(self) -> int:
        mid = self._next_mid
        self._next_mid = (mid + 1) & 0xFFFF
        return mid

    def new_token(self) -> bytes:
        while True:
            token = self._rng.getrandbits(64).to_bytes(8, "big")
            if token not in self._by_token:
                return token

    def _key(self) -> int:
        key = self._next_key
        self._next_key += 1
        return key

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
        if not msg.token:
            msg.token = self.new_token()
        key = self._key()
        self._out[key] = _Outgoing(key, msg, True, keep_open, True)
        self._by_token[msg.token] = key
        self._queue.append(key)
        self._pump(now)
        return key

    def send_message(self, msg: Message, now: float, *, report: bool = True) -> int:
        """Send a non-request message (a notification or separate response).

        A CON one is retransmitted and ends in ACKNOWLEDGED / RESET / TIMEOUT /
        NETWORK_ERROR; a NON one is sent at once and only reports RESET if the
        peer rejects it within NON_LIFETIME.
        """
        key = self._key()
        msg.mid = self.new_mid()
        if msg.type == MessageType.CON:
            self._out[key] = _Outgoing(key, msg, False, False, report)
            self._queue.append(key)
            self._pump(now)
        else:
            msg.type = MessageType.NON
            if report:
                self._non_sent[msg.mid] = (key, now + self.params.non_lifetime, msg)
            self._emit(msg)
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
        response.token = req.token
        seen_key = (int(req.type), req.mid)
        if req.type == MessageType.CON and not inc.acked:
            response.type = MessageType.ACK
            response.mid = req.mid
            data = self._emit(response)
            self._remember_reply(seen_key, data, now)
        elif req.type == MessageType.CON:
            response.type = MessageType.CON
            self.send_message(response, now, report=False)
        else:
            response.type = MessageType.NON
            response.mid = self.new_mid()
            data = self._emit(response)
            self._remember_reply(seen_key, data, now)

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
        self._reply_reset(inc.msg, (int(inc.msg.type), inc.msg.mid), now)

    # -- incoming --------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        self.stats.received += 1
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
        seen_key = (int(msg.type), msg.mid)
        seen = self._seen.get(seen_key)
        if seen is not None:
            self.stats.duplicates += 1
            if seen.reply is not None:
                self._tx.append(seen.reply)
            return
        lifetime = (
            self.params.exchange_lifetime
            if msg.type == MessageType.CON
            else self.params.non_lifetime
        )
        self._seen[seen_key] = _Seen(now + lifetime)
        if is_request(msg.code):
            key = self._key()
            inc = _Incoming(key, msg)
            if msg.type == MessageType.CON:
                inc.ack_deadline = now + self.params.effective_piggyback_window
            self._in[key] = inc
            self._events.append(IncomingRequest(key, msg))
        elif is_response(msg.code):
            self._on_response(msg, seen_key, now)
        else:
            self.stats.unmatched += 1
            if msg.type == MessageType.CON:
                self._reply_reset(msg, seen_key, now)

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
        deadlines = [ex.deadline for ex in self._out.values() if ex.deadline is not None]
        deadlines += [i.ack_deadline for i in self._in.values() if i.ack_deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        for inc in list(self._in.values()):
            if inc.ack_deadline is not None and inc.ack_deadline <= now:
                inc.ack_deadline = None
                inc.acked = True
                ack = self._emit(Message(type=MessageType.ACK, code=Code.EMPTY, mid=inc.msg.mid))
                self._remember_reply((int(inc.msg.type), inc.msg.mid), ack, now)
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
                self._tx.append(encode(ex.msg))
            else:
                self._finish(ex, Outcome.TIMEOUT, None)
        self._pump(now)

    # -- output ------------------------------------------------------------------
    def datagrams_to_send(self) -> list[bytes]:
        out, self._tx = self._tx, []
        self.stats.sent += len(out)
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- internals -------------------------------------------------------------
    def _pump(self, now: float) -> None:
        """Start queued exchanges while fewer than NSTART are outstanding."""
        outstanding = sum(1 for ex in self._out.values() if ex.outstanding)
        while self._queue and outstanding < self.params.nstart:
            key = self._queue.popleft()
            ex = self._out.get(key)
            if ex is None:
                continue
            if ex.is_request:
                ex.msg.mid = self.new_mid()
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
            self._tx.append(encode(ex.msg))

    def _emit(self, msg: Message) -> bytes:
        data = encode(msg)
        self._tx.append(data)
        return data

    def _remember_reply(self, seen_key: tuple[int, int], data: bytes, now: float) -> None:
        seen = self._seen.get(seen_key)
        if seen is None:
            seen = self._seen[seen_key] = _Seen(now + self.params.exchange_lifetime)
        seen.reply = data

    def _reply_reset(self, msg: Message, seen_key: tuple[int, int], now: float) -> None:
        rst = self._emit(Message(type=MessageType.RST, code=Code.EMPTY, mid=msg.mid))
        self._remember_reply(seen_key, rst, now)

    def _reject_malformed(self, data: bytes) -> None:
        # RFC 7252 §4.2: a malformed CON is rejected with RST when its header is readable.
        if len(data) >= 4 and data[0] >> 6 == 1 and (data[0] >> 4) & 0x3 == MessageType.CON:
            mid = int.from_bytes(data[2:4], "big")
            self._emit(Message(type=MessageType.RST, code=Code.EMPTY, mid=mid))

    def _on_ack_or_reset(self, msg: Message, now: float) -> None:
        if msg.code != Code.EMPTY and (msg.type == MessageType.RST or not is_response(msg.code)):
            # RFC 7252 §4.2: a Reset that is not Empty, or an ACK carrying a
            # request or a reserved code class, is rejected by silently ignoring it.
            self.stats.malformed += 1
            return
        key = self._by_mid.get(msg.mid)
        ex = self._out.get(key) if key is not None else None
        if ex is None or ex.state != _State.WAIT_ACK:
            if msg.type == MessageType.RST and msg.mid in self._non_sent:
                nkey, _, sent = self._non_sent.pop(msg.mid)
                self._events.append(ExchangeResult(nkey, Outcome.RESET, sent, None))
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

    def _on_response(self, msg: Message, seen_key: tuple[int, int], now: float) -> None:
        key = self._by_token.get(msg.token)
        ex = self._out.get(key) if key is not None else None
        if ex is None or ex.state == _State.QUEUED:
            self.stats.unmatched += 1
            # Unknown token: reject so the peer stops (this is also how an
            # unwanted notification cancels its observation, RFC 7641 §3.6).
            self._reply_reset(msg, seen_key, now)
            return
        if msg.type == MessageType.CON:
            ack = self._emit(Message(type=MessageType.ACK, code=Code.EMPTY, mid=msg.mid))
            self._remember_reply(seen_key, ack, now)
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
                self._events.append(ExchangeResult(ex.key, Outcome.RESPONSE, ex.msg, response))
            return
        self._finish(ex, Outcome.RESPONSE, response)

    def _finish(self, ex: _Outgoing, outcome: Outcome, response: Message | None) -> None:
        self._out.pop(ex.key, None)
        self._unlink(ex)
        if ex.report:
            self._events.append(ExchangeResult(ex.key, outcome, ex.msg, response))

    def _unlink(self, ex: _Outgoing) -> None:
        if self._by_mid.get(ex.msg.mid) == ex.key:
            del self._by_mid[ex.msg.mid]
        if ex.is_request and self._by_token.get(ex.msg.token) == ex.key:
            del self._by_token[ex.msg.token]

    def _prune(self, now: float) -> None:
        if self._seen:
            for k in [k for k, s in self._seen.items() if s.expires <= now]:
                del self._seen[k]
        if self._non_sent:
            for mid in [m for m, (_, exp, _) in self._non_sent.items() if exp <= now]:
                del self._non_sent[mid]
