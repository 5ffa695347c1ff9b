"""What every testbed server core shares: one CoAP message layer per peer, timers, a log.

:class:`PeerMux` keeps a :class:`~aiolwm2m.coap.layer.MessageLayer` per
remote address for the LwM2M server core and the bootstrap server core alike,
and does per datagram only the work that datagram causes, so a server holds
tens of thousands of clients:

* timers: each peer's next deadline sits in a heap (stale entries are skipped
  when they surface), so a timer visits only the peers that are due — never a
  scan of every peer;
* memory: a peer with no exchange in flight that has been silent for
  EXCHANGE_LIFETIME (RFC 7252 §4.8.2: its duplicate-detection state has
  expired by then) is forgotten; peers are kept in order of last activity, so
  finding them costs nothing per datagram;
* strictness (RFC 7252 §5.4.1): a request with an unrecognised critical
  option never reaches the core: a CON one is answered 4.02 Bad Option, a NON
  one is rejected with RST — §4.3 allows RST or silence for a rejected NON;
  RST tells the sender, which a strict server should do, and it is what the
  message layer already does for every other rejected message.

:class:`ServerLog` is the servers' event record: a bounded history to look
at, the events the host has not yet seen, and a count per kind.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer
from aiolwm2m.coap.params import TransmissionParameters

Address = tuple[str, int]

#: How many events a server keeps in ``history`` unless told otherwise.
HISTORY_LIMIT = 10_000


@dataclass
class ServerEvent:
    time: float
    kind: str  # registered / updated / deregistered / expired / fault / malformed …
    endpoint: str | None = None
    detail: str = ""  # the fields as one readable text (the timeline's last column)
    #: The same facts as separate values (JSONL output, tests): location, lifetime…
    fields: dict[str, Any] = field(default_factory=dict)


class ServerLog:
    """Events of one server: ``history`` (the last ``limit``), the unseen ones, counts.

    The host drains :meth:`take` after every input and forwards the events
    (logging, callbacks); a host that never drains loses only the oldest, so
    memory stays bounded either way.
    """

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.history: deque[ServerEvent] = deque(maxlen=limit)
        self.counts: Counter[str] = Counter()
        self._unseen: deque[ServerEvent] = deque(maxlen=limit)

    def add(
        self,
        now: float,
        kind: str,
        endpoint: str | None = None,
        detail: str = "",
        **fields: Any,
    ) -> None:
        event = ServerEvent(now, kind, endpoint, detail, fields)
        self.history.append(event)
        self._unseen.append(event)
        self.counts[kind] += 1

    def take(self) -> list[ServerEvent]:
        """The events logged since the last call, oldest first."""
        out = list(self._unseen)
        self._unseen.clear()
        return out


class PeerHandler(Protocol):
    """The server logic a :class:`PeerMux` hands each peer's messages to."""

    def on_request(
        self, addr: Address, layer: MessageLayer, req: IncomingRequest, now: float
    ) -> None: ...

    def on_result(
        self, addr: Address, layer: MessageLayer, result: ExchangeResult, now: float
    ) -> None: ...


class _Peer:
    __slots__ = ("due", "last_seen", "layer")

    def __init__(self, layer: MessageLayer, now: float) -> None:
        self.layer = layer
        self.last_seen = now
        self.due: float | None = None  # the deadline this peer has in the heap


@dataclass
class MuxStats:
    received: int = 0  # datagrams handed in
    sent: int = 0  # datagrams handed out
    forgotten: int = 0  # idle peers dropped


class PeerMux:
    """Per-address message layers of one server; see the module docstring."""

    def __init__(
        self,
        params: TransmissionParameters,
        rng: random.Random,
        handler: PeerHandler,
        log: ServerLog,
    ) -> None:
        self.params = params
        self.rng = rng
        self.handler = handler
        self.log = log
        self.stats = MuxStats()
        self._peers: OrderedDict[Address, _Peer] = OrderedDict()  # least recently active first
        self._heap: list[tuple[float, int, Address]] = []
        self._seq = itertools.count()
        self._tx: list[tuple[Address, bytes]] = []

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, addr: object) -> bool:
        return addr in self._peers

    def layer(self, addr: Address, now: float) -> MessageLayer:
        """The peer's message layer (created if new); call :meth:`drain` after using it."""
        return self._touch(addr, now).layer

    def receive(self, addr: Address, data: bytes, now: float) -> None:
        self.stats.received += 1
        layer = self._touch(addr, now).layer
        layer.receive(data, now)
        if layer.stats.malformed:
            layer.stats.malformed = 0
            self.log.add(
                now, "malformed", None, f"from {addr[0]}:{addr[1]}", address=f"{addr[0]}:{addr[1]}"
            )
        self.drain(addr, now)

    def drain(self, addr: Address, now: float) -> None:
        """Hand the peer's new events to the handler, collect its datagrams, re-arm its timer."""
        peer = self._peers.get(addr)
        if peer is None:
            return
        layer = peer.layer
        while (event := layer.next_event()) is not None:
            if isinstance(event, ExchangeResult):
                self.handler.on_result(addr, layer, event, now)
            elif not self._refuse_bad_options(addr, layer, event, now):
                self.handler.on_request(addr, layer, event, now)
        for data in layer.datagrams_to_send():
            self._tx.append((addr, data))
        due = layer.next_timer()
        if due != peer.due:
            peer.due = due
            if due is not None:
                self._push(due, addr)

    def move(self, old: Address, new: Address, now: float) -> None:
        """The peer at ``old`` now talks from ``new``: its layer (and what it holds) follows."""
        peer = self._peers.pop(old, None)
        if peer is None:
            return
        self._peers.pop(new, None)
        self._peers[new] = peer
        peer.last_seen = now
        peer.due = None
        self.drain(new, now)

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, addr = heapq.heappop(heap)
            peer = self._peers.get(addr)
            if peer is None or peer.due != when:
                continue  # superseded by a later deadline, or the peer is gone
            peer.due = None
            peer.layer.handle_timer(now)
            self.drain(addr, now)
        self._forget_idle(now)

    def next_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, addr = heap[0]
            peer = self._peers.get(addr)
            if peer is not None and peer.due == when:
                break
            heapq.heappop(heap)
        due = heap[0][0] if heap else None
        if self._peers:
            oldest = next(iter(self._peers.values()))
            idle = oldest.last_seen + self.params.exchange_lifetime
            due = idle if due is None else min(due, idle)
        return due

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._tx = self._tx, []
        self.stats.sent += len(out)
        return out

    def clear(self) -> None:
        """A restart: every peer's message-layer state is lost."""
        self._peers.clear()
        self._heap.clear()
        self._tx.clear()

    # -- internals ------------------------------------------------------------------
    def _touch(self, addr: Address, now: float) -> _Peer:
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peers[addr] = _Peer(MessageLayer(self.params, self.rng), now)
        else:
            peer.last_seen = now
            self._peers.move_to_end(addr)
        return peer

    def _push(self, due: float, addr: Address) -> None:
        heap = self._heap
        if len(heap) > 2 * len(self._peers) + 64:
            # Superseded deadlines stay until their time; rebuild before they pile up.
            heap[:] = [
                (p.due, next(self._seq), a) for a, p in self._peers.items() if p.due is not None
            ]
            heapq.heapify(heap)
            if self._peers.get(addr) is not None:
                return  # rebuilt with this peer's new deadline already
        heapq.heappush(heap, (due, next(self._seq), addr))

    def _forget_idle(self, now: float) -> None:
        lifetime = self.params.exchange_lifetime
        peers = self._peers
        while peers:
            addr, peer = next(iter(peers.items()))
            if peer.last_seen + lifetime > now:  # the very sum next_timer() gave
                return
            if peer.layer.pending() or peer.due is not None:
                # An observation or exchange is still open: look again a lifetime later.
                peer.last_seen = now
                peers.move_to_end(addr)
                continue
            del peers[addr]
            self.stats.forgotten += 1

    def _refuse_bad_options(
        self, addr: Address, layer: MessageLayer, req: IncomingRequest, now: float
    ) -> bool:
        unknown = layer.refuse_unknown_critical(req, now)
        if unknown:
            numbers = ", ".join(str(n) for n in unknown)
            self.log.add(
                now,
                "bad_option",
                None,
                f"from {addr[0]}:{addr[1]}: option {numbers}",
                address=f"{addr[0]}:{addr[1]}",
                options=unknown,
            )
        return bool(unknown)


__all__ = [
    "HISTORY_LIMIT",
    "Address",
    "MuxStats",
    "PeerHandler",
    "PeerMux",
    "ServerEvent",
    "ServerLog",
]
