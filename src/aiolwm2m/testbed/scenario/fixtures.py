"""What a scenario run stands up besides the real server, proxy and clients.

A data model that produces numbered notifications (:class:`NotifyingObjects`),
a server core that counts what arrives (:class:`ObservingCore`,
:class:`Delivery`), and the resolver clients look the server's name up in
(:class:`ScenarioResolver`), which the DNS fault switches off.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

from aiolwm2m.client.actions import ClientAction
from aiolwm2m.client.engine import Notification
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    encode_uint,
    make_options,
)
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.runtime.links import resolve
from aiolwm2m.testbed.core import ResponseEvent, ServerCore

#: The resource observed for notification delivery checks (Device Current Time).
OBSERVED_PATH = ("3", "0", "13")


class NotifyingObjects:
    """A minimal data model (the engine's ``ObjectTree`` protocol) for delivery checks.

    Its Device /3/0/13 can be observed and produces numbered CON notifications
    on demand. Payloads are ``b"<endpoint>:<seq>"`` so the server side can check
    order and loss without trusting tokens, which change when the server
    re-observes. Exact accounting is the point: every :meth:`produce` is one
    notification handed to the engine, nothing is coalesced.
    """

    def __init__(self, endpoint: str, ssids: list[int]) -> None:
        self.instances = {1: list(range(len(ssids))), 3: [0]}
        self.endpoint = endpoint
        self.ssid = ssids[0]
        self.token: bytes | None = None
        self.seq = 0
        self.produced = 0
        self.unobserved = 0  # production ticks with nobody observing
        self._due: list[Notification] = []

    def registration_payload(self, lwm2m_version: str) -> bytes:
        return linkformat.encode(linkformat.registration_links(self.instances, {1: "1.1"}))

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None

    def handle_request(self, ssid: int, request: Message, now: float) -> Message:
        try:
            path = tuple(request.uri_path)
        except CoapDecodeError:
            return Message(code=Code.BAD_REQUEST)
        if request.code != Code.GET or path != OBSERVED_PATH:
            return Message(code=Code.NOT_FOUND)
        resp = Message(code=Code.CONTENT, payload=self._payload())
        if request.observe == 0:
            self.token = request.token
            resp.add(OptionNumber.OBSERVE, encode_uint(self.seq & 0xFFFFFF))
        elif request.observe == 1 and request.token == self.token:
            self.token = None
        return resp

    def drop_observations(self, ssid: int) -> None:
        self.token = None

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> bool:
        if token != self.token:
            return False
        self.token = None
        return True

    def take_actions(self) -> list[ClientAction]:
        """Nothing: the fixture's requests never concern registration."""
        return []

    def take_notifications(self, now: float) -> list[Notification]:
        out, self._due = self._due, []
        return out

    def produce(self, now: float) -> bool:
        """A new value: queue a CON notification if observed (then call ``client.poll()``)."""
        if self.token is None:
            self.unobserved += 1
            return False
        self.seq += 1
        self.produced += 1
        msg = Message(
            type=MessageType.CON,
            code=Code.CONTENT,
            token=self.token,
            options=make_options(observe=self.seq & 0xFFFFFF, content_format=0),
            payload=self._payload(),
        )
        self._due.append(Notification(self.ssid, self.token, "/3/0/13", msg, now))
        return True

    def _payload(self) -> bytes:
        return f"{self.endpoint}:{self.seq}".encode()


class ObservingCore(ServerCore):
    """Testbed server core that records the notifications it accepts, per endpoint.

    Memory stays bounded however long it runs (the soak measures RSS): per
    endpoint a count, the highest sequence number, the last
    :data:`RECENT_SEQS` numbers (to tell a duplicate from a late arrival) and
    the first few out-of-order arrivals.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.received: dict[str, Delivery] = {}
        self.duplicates = 0

    def next_response(self) -> ResponseEvent | None:
        event = super().next_response()
        if event is not None and event.result.response is not None:
            self._record(event.result.response)
        return event

    def _record(self, resp: Message) -> None:
        if resp.code != Code.CONTENT or not resp.has(OptionNumber.OBSERVE):
            return
        endpoint, _, seq_text = resp.payload.decode("utf-8", "replace").rpartition(":")
        if not seq_text.isdigit() or int(seq_text) == 0:
            return  # the value sent with the Observe response itself, not a notification
        delivery = self.received.setdefault(endpoint, Delivery())
        if not delivery.add(int(seq_text)):
            self.duplicates += 1


#: How many recent sequence numbers :class:`Delivery` remembers for duplicate detection.


RECENT_SEQS = 256


@dataclass
class Delivery:
    """Notifications of one endpoint as the server received them."""

    count: int = 0
    highest: int = 0
    out_of_order: list[int] = field(default_factory=list)  # the first few only
    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_SEQS))

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it is a duplicate of a recent one."""
        if seq in self._recent:
            return False
        self._recent.append(seq)
        self.count += 1
        if seq < self.highest and len(self.out_of_order) < 10:
            self.out_of_order.append(seq)
        self.highest = max(self.highest, seq)
        return True


class ScenarioResolver:
    """The clients' resolver (:data:`aiolwm2m.runtime.links.Resolver`): ``*.invalid``
    names from :attr:`names`, every other name from the system.

    The DNS fault sets a name to None for a window, so the client's lookup
    fails exactly as a failed DNS query does (``socket.gaierror``).
    """

    def __init__(self) -> None:
        self.names: dict[str, str | None] = {}

    async def __call__(self, host: str, port: int) -> tuple[str, int]:
        if not host.endswith(".invalid"):
            return await resolve(host, port)
        addr = self.names.get(host)
        if addr is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addr, port


__all__ = [
    "OBSERVED_PATH",
    "RECENT_SEQS",
    "Delivery",
    "NotifyingObjects",
    "ObservingCore",
    "ScenarioResolver",
]
