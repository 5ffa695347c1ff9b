"""One link to one server: the message layer on it, its requests in flight, and
how an exchange that went wrong is classified for the failure table.

Servers and the Bootstrap-Server each talk through a :class:`Channel`, so
what both need is written once here: whether the link is open and secure,
whether a request goes out over a *fresh* session (the circumstance of rule
(†)), how an answer becomes a failure-table row (including 4.12, and 4.29 or
5.03 with their Max-Age wait), and the round trip of the last exchange.

A DTLS session is fresh from its handshake (full or abbreviated) until the
server first shows it still holds it: any answer, Reset or request over it.
A request that times out on a fresh session says nothing about the session
(the server was there moments ago), so (†) treats it as on a NoSec link; one
that times out on a session the server had already used may have outlived the
server's memory of it (a restart, an expired session), so the failure table
retries the handshake (spec §10) instead of sending on over the same session.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from aiolwm2m.accounts import ServerAccount, ServerUri
from aiolwm2m.client.engine._types import (
    CloseLink,
    LinkAction,
    Notification,
    OpenLink,
    SendDatagram,
)
from aiolwm2m.client.events import ErrorCode
from aiolwm2m.client.policy import MAX_AGE_ROWS, Circumstance, Failure, RequestKind
from aiolwm2m.coap.layer import Event as LayerEvent
from aiolwm2m.coap.layer import ExchangeResult, MessageLayer, Outcome
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    code_str,
    is_success,
)
from aiolwm2m.coap.params import TransmissionParameters

__all__ = [
    "DEFAULT_MAX_AGE",
    "DIAGNOSTIC_BYTES",
    "NON_NOTIFICATIONS_TRACKED",
    "Channel",
    "Failed",
    "Pending",
    "classify",
    "wait_detail",
]

#: NON notifications are remembered this many at a time so a late Reset can
#: still cancel its observation; older ones are forgotten (they cannot time out).
NON_NOTIFICATIONS_TRACKED = 64

#: How much of a server's diagnostic payload an ``error`` event quotes.
DIAGNOSTIC_BYTES = 100

#: RFC 7252 §5.10.5: Max-Age when a 4.29 carries none.
DEFAULT_MAX_AGE = 60


class Pending(NamedTuple):
    """A request (or notification) in flight, as the failure table needs it.

    ``sent`` (when it went out) measures the round trip of its exchange. A
    named tuple (never changed once made): one is made per notification sent,
    built by :meth:`NotificationStore.send` with one C call, no ``__init__``.
    """

    kind: RequestKind
    fresh_session: bool
    notification: Notification | None = None
    sent: float | None = None

    @property
    def circumstances(self) -> frozenset[Circumstance]:
        if self.fresh_session:
            return frozenset({Circumstance.AFTER_FRESH_HANDSHAKE})
        return frozenset()


@dataclass(frozen=True, slots=True)
class Failed:
    """An exchange that got no usable answer: its row, its §6 error and what came back."""

    failure: Failure
    code: ErrorCode
    coap_code: str | None = None
    response: Message | None = None

    @property
    def diagnostic(self) -> str | None:
        """The start of the answer's diagnostic payload (RFC 7252 §5.5.2) as text.

        Servers explain a 4.xx/5.xx there (Leshan: "Invalid Binding mode: …");
        the ``error`` event quotes it so the reason is not lost.
        """
        if self.response is None or not self.response.payload:
            return None
        return self.response.payload[:DIAGNOSTIC_BYTES].decode("utf-8", "replace")

    def retry_after(self, cap: float) -> float | None:
        """Seconds to wait before the next request to this server (spec §7), or None.

        A 4.29 or a 5.03 with Max-Age is a retry-after hint: its Max-Age (60 s
        when a 4.29 carries none or an unreadable one), never more than ``cap``
        (``[registration] max_retry_after``).
        """
        if self.failure not in MAX_AGE_ROWS:
            return None
        max_age = _max_age(self.response)
        return min(float(DEFAULT_MAX_AGE if max_age is None else max_age), cap)


def _max_age(response: Message | None) -> int | None:
    if response is None:
        return None
    try:
        return response.max_age
    except CoapDecodeError:
        return None


def wait_detail(seconds: float) -> str:
    """The ``detail`` of the ``error`` event of a Max-Age wait."""
    return f"waiting {seconds:g} s (Max-Age)"


def _outcome_failure(outcome: Outcome, *, secure: bool) -> Failed:
    """A request's message layer ends in ACKNOWLEDGED only if it broke (an empty
    ACK and then nothing): an internal error of the exchange."""
    if outcome is Outcome.TIMEOUT:
        return Failed(Failure.TIMEOUT_DTLS if secure else Failure.TIMEOUT_NOSEC, ErrorCode.TIMEOUT)
    if outcome is Outcome.RESET:
        return Failed(Failure.RESET, ErrorCode.RESET)
    if outcome is Outcome.NETWORK_ERROR:
        return Failed(Failure.NETWORK, ErrorCode.NETWORK_ERROR)
    return Failed(Failure.INTERNAL, ErrorCode.INTERNAL_ERROR)


def classify(result: ExchangeResult, *, secure: bool) -> Message | Failed:
    """The success response of an exchange, or its failure-table row and §6 error."""
    resp = result.response
    if result.outcome is not Outcome.RESPONSE or resp is None:
        return _outcome_failure(result.outcome, secure=secure)
    if is_success(resp.code):
        return resp
    if resp.code == Code.TOO_MANY_REQUESTS:
        return Failed(Failure.TOO_MANY_REQUESTS, ErrorCode.TOO_MANY_REQUESTS, "4.29", resp)
    if resp.code == Code.SERVICE_UNAVAILABLE and _max_age(resp) is not None:
        return Failed(Failure.SERVICE_UNAVAILABLE, ErrorCode.COAP_ERROR, "5.03", resp)
    failure = Failure.PRECONDITION_FAILED if resp.code == Code.PRECONDITION_FAILED else None
    return Failed(failure or Failure.COAP_ERROR, ErrorCode.COAP_ERROR, code_str(resp.code), resp)


class Channel:
    """The link with id ``link`` and what travels on it; see the module docstring.

    The channel outlives its links: each :meth:`up` starts a new message layer
    (a new socket is a new session), :meth:`close` drops it.
    """

    __slots__ = (
        "_actions",
        "_malformed_seen",
        "_params",
        "_rng",
        "deferred",
        "fresh",
        "inflight",
        "layer",
        "link",
        "non_keys",
        "open",
        "round_trip",
        "secure",
        "sends",
    )

    def __init__(
        self,
        link: int,
        params: TransmissionParameters,
        rng: random.Random,
        actions: list[LinkAction],
    ) -> None:
        self.link = link
        self._params = params
        self._rng = rng
        self._actions = actions
        self.layer: MessageLayer | None = None
        self.open = False
        self.secure = False
        self.fresh = False  # a DTLS session the server has not yet shown it holds
        self.round_trip = 0.0  # of the last exchange answered without a retransmission
        self.inflight: dict[int, Pending] = {}
        # The keys of NON notifications among inflight, oldest first (added by
        # NotificationStore.send, kept exact by pop()/forget_*()): the one to
        # forget beyond the limit is the first.
        self.non_keys: list[int] = []
        self.deferred: dict[tuple[int, bytes], int] = {}  # answers the data model owes
        self.sends: dict[int, int] = {}  # layer key -> LwM2M Send id
        # Counted across links, as the layer's own count restarts with each one.
        self._malformed_seen = 0

    # ------------------------------------------------------------------ the link
    def connect(self, uri: ServerUri, account: ServerAccount) -> None:
        """Ask the runtime for the link; it answers with ``link_up`` or ``link_failed``."""
        self._actions.append(OpenLink(self.link, uri, account))

    def up(self, secure: bool) -> None:
        self.layer = MessageLayer(self._params, self._rng)
        self.open = True
        self.secure = secure
        self.fresh = secure

    def close(self, *, opening: bool = False) -> None:
        """Send what the layer still has to say (e.g. an ACK), then drop the link.

        ``opening``: the runtime may be opening it right now; tell it to stop.
        """
        if self.open and self.layer is not None:
            self.send_datagrams()
        if self.open or opening:
            self._actions.append(CloseLink(self.link))
        self.open = False
        if self.layer is not None:
            self.layer.clear()
        self.layer = None
        self.deferred.clear()
        self.inflight.clear()
        self.non_keys.clear()

    def cancel_all(self, now: float) -> None:
        """End every request in flight without an outcome."""
        if self.layer is not None:
            for key in list(self.inflight):
                self.layer.cancel(key, now)
        self.inflight.clear()
        self.non_keys.clear()

    # ------------------------------------------------------------------ sending
    def pending(self, kind: RequestKind) -> Pending:
        """What a request of ``kind`` sent now would be recorded as."""
        return Pending(kind, self.fresh)

    def request(self, kind: RequestKind, msg: Message, now: float) -> int:
        """Send a confirmable request; raises MemoryError/ValueError if it cannot be built."""
        assert self.layer is not None
        key = self.layer.send_request(msg, now)
        self.inflight[key] = Pending(kind, self.fresh, sent=now)
        return key

    def heard(self, pending: Pending | None, outcome: Outcome, now: float) -> None:
        """An exchange ended: an answer proves the session; a quick one is a round trip.

        Only an exchange answered before its first retransmission could have
        been due is a sample (Karn's rule: a retransmitted request's answer
        cannot be matched to one transmission).
        """
        if outcome in (Outcome.TIMEOUT, Outcome.NETWORK_ERROR):
            return
        self.fresh = False
        if pending is not None and pending.sent is not None:
            elapsed = now - pending.sent
            if elapsed < self._params.ack_timeout:
                self.round_trip = elapsed

    def pop(self, key: int) -> Pending | None:
        """Take a request out of flight (its exchange ended)."""
        pending = self.inflight.pop(key, None)
        if pending is not None and _is_non_notification(pending):
            self.non_keys.remove(key)
        return pending

    def forget_notifications(self) -> list[Pending]:
        """Take every notification out of flight, in key order."""
        inflight = self.inflight
        gone = [p for _, p in sorted(inflight.items()) if p.notification is not None]
        for key in [k for k, p in inflight.items() if p.notification is not None]:
            del inflight[key]
        self.non_keys.clear()
        return gone

    def withdraw_notifications(self, token: bytes, now: float) -> int:
        """Take back the notifications with ``token`` that have not left yet; how many.

        Those already sent stay in flight (see :meth:`MessageLayer.withdraw`).
        """
        layer = self.layer
        if layer is None:
            return 0
        mine = [
            key
            for key, pending in self.inflight.items()
            if pending.notification is not None and pending.notification.token == token
        ]
        withdrawn = 0
        for key in mine:  # in sending order: one taken back may start the next
            if layer.withdraw(key, now):
                self.pop(key)
                withdrawn += 1
        return withdrawn

    def only_non_notifications(self) -> list[int]:
        """Keys of NON notifications when nothing confirmable is in flight, else []."""
        non = self.non_keys  # in inflight's order
        return non.copy() if len(non) == len(self.inflight) else []

    def send_datagrams(self) -> bool:
        """Hand the layer's datagrams to the runtime; whether there were any."""
        if not self.open or self.layer is None:
            return False
        datagrams = self.layer.datagrams_to_send()
        link = self.link
        actions = self._actions
        for data in datagrams:
            actions.append(_datagram(SendDatagram, (link, data)))
        return bool(datagrams)

    # ------------------------------------------------------------------ receiving
    def next_event(self) -> LayerEvent | None:
        return self.layer.next_event() if self.layer is not None else None

    def new_malformed(self) -> bool:
        """Whether malformed datagrams arrived since the last call (each reported once)."""
        if self.layer is None or self.layer.stats.malformed <= self._malformed_seen:
            return False
        self._malformed_seen = self.layer.stats.malformed
        return True

    def next_timer(self) -> float | None:
        return self.layer.next_timer() if self.layer is not None else None


def _is_non_notification(pending: Pending) -> bool:
    note = pending.notification
    return note is not None and note.message.type is _NON


_NON = MessageType.NON
#: How a :class:`SendDatagram` (per datagram) and a notification's :class:`Pending`
#: (by ``NotificationStore.send``) are built: a named tuple's own ``__new__`` is a
#: Python function around this C call.
_datagram = new_pending = tuple.__new__
