"""Typed events the client reports to the application.

Event names (``Event.name``) and field names are a public contract: the CLI's
``--events jsonl`` stream prints them verbatim, and other tools parse it.
Events are frozen, slotted dataclasses; fields with a fixed set of values are
enums (string-valued, so ``event.code == "timeout"`` holds too) and
:meth:`Event.to_dict` writes their values. Every event carries ``time``: the
engine's clock in seconds (the runtime's clock, see
:class:`~aiolwm2m.runtime.aio.Client`).

Wait for one kind by its class: ``await client.wait_for(Registered, 30)``
returns a :class:`Registered`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from aiolwm2m.client.policy import Action
from aiolwm2m.client.states import ServerState

__all__ = [
    "AllConnectionsFailed",
    "BootstrapAccountPurged",
    "BootstrapStarted",
    "Bootstrapped",
    "Deregistered",
    "Error",
    "ErrorCode",
    "Event",
    "HandshakeDone",
    "HandshakeRetransmitted",
    "HandshakeStarted",
    "NetworkChanged",
    "NotificationStored",
    "NotificationsDropped",
    "NotificationsFlushed",
    "ObservationCancelled",
    "QueueModeSleep",
    "ReconnectScheduled",
    "Registered",
    "Registering",
    "Request",
    "RetryScheduled",
    "SendFinished",
    "ServerGaveUp",
    "StateChanged",
    "UpdateSent",
    "Updated",
]


class ErrorCode(enum.StrEnum):
    """Spec §6 errors plus the CoAP outcomes of §3, as snake_case names."""

    QUOTA_REACHED = "quota_reached"
    BAD_REQUEST = "bad_request"
    INVALID_PARAMETERS = "invalid_parameters"
    NOT_REGISTERED = "not_registered"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    RESPONSE_PARSE_FAILED = "response_parse_failed"
    MEMORY = "memory"
    NOT_ALLOWED = "not_allowed"
    SECURE_CONNECTION_FAILED = "secure_connection_failed"
    DNS_RESOLVING_FAILED = "dns_resolving_failed"
    FAILED_TO_STORE_CREDENTIALS = "failed_to_store_credentials"
    FAILED_TO_READ_CREDENTIALS = "failed_to_read_credentials"
    INVALID_CREDENTIALS = "invalid_credentials"
    COAP_ERROR = "coap_error"
    RESET = "reset"
    TOO_MANY_REQUESTS = "too_many_requests"
    INTERNAL_ERROR = "internal_error"


class Request(enum.StrEnum):
    """What an ``error`` event is about (the failure table's column, or a bootstrap step)."""

    BOOTSTRAP_REQUEST = "bootstrap_request"
    REGISTER = "register"
    UPDATE = "update"
    DEREGISTER = "deregister"
    NOTIFY = "notify"
    CONNECT = "connect"
    SEND = "send"
    BOOTSTRAP_CONNECT = "bootstrap_connect"  # opening the Bootstrap-Server link
    BOOTSTRAP_FINISH = "bootstrap_finish"  # no Bootstrap-Finish in time


@dataclass(frozen=True, slots=True)
class Event:
    name: ClassVar[str] = "event"
    time: float

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready mapping with ``event`` first; enums become their values."""
        out: dict[str, Any] = {"time": self.time, "event": self.name}
        for key, value in asdict(self).items():
            if key == "time" or value is None:
                continue
            out[key] = value.value if isinstance(value, enum.Enum) else value
        return out


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    name: ClassVar[str] = "state_changed"
    ssid: int
    old: ServerState
    new: ServerState


@dataclass(frozen=True, slots=True)
class Registering(Event):
    name: ClassVar[str] = "registering"
    ssid: int
    uri: str
    lwm2m_version: str


@dataclass(frozen=True, slots=True)
class Registered(Event):
    name: ClassVar[str] = "registered"
    ssid: int
    location: str
    lifetime: int


@dataclass(frozen=True, slots=True)
class UpdateSent(Event):
    name: ClassVar[str] = "update_sent"
    ssid: int
    with_objects: bool


@dataclass(frozen=True, slots=True)
class Updated(Event):
    name: ClassVar[str] = "updated"
    ssid: int


@dataclass(frozen=True, slots=True)
class Deregistered(Event):
    name: ClassVar[str] = "deregistered"
    ssid: int
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class BootstrapStarted(Event):
    name: ClassVar[str] = "bootstrap_started"
    uri: str


@dataclass(frozen=True, slots=True)
class Bootstrapped(Event):
    name: ClassVar[str] = "bootstrapped"
    servers: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BootstrapAccountPurged(Event):
    """The Bootstrap-Server Account Timeout (/0/x/12) ran out: the account is gone.

    Reported because it changes what recovery can do: from now on a failure
    that would bootstrap gives up instead, as without a Bootstrap-Server account.
    """

    name: ClassVar[str] = "bootstrap_account_purged"
    uri: str


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Inner loop: the §4 registration retry procedure waits before the next attempt."""

    name: ClassVar[str] = "retry_scheduled"
    ssid: int
    delay: float
    attempt: int
    sequence: int


@dataclass(frozen=True, slots=True)
class ReconnectScheduled(Event):
    """Outer loop: the §2 schedule waits before retrying every enabled server."""

    name: ClassVar[str] = "reconnect_scheduled"
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class AllConnectionsFailed(Event):
    name: ClassVar[str] = "all_connections_failed"


@dataclass(frozen=True, slots=True)
class ServerGaveUp(Event):
    name: ClassVar[str] = "server_gave_up"
    ssid: int
    reason: str


@dataclass(frozen=True, slots=True)
class ObservationCancelled(Event):
    name: ClassVar[str] = "observation_cancelled"
    ssid: int
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class NotificationStored(Event):
    name: ClassVar[str] = "notification_stored"
    ssid: int
    path: str
    stored: int


@dataclass(frozen=True, slots=True)
class NotificationsFlushed(Event):
    name: ClassVar[str] = "notifications_flushed"
    ssid: int
    count: int


@dataclass(frozen=True, slots=True)
class NotificationsDropped(Event):
    """Notifications that will never be sent, ``count`` of them, and why.

    ``reason`` :attr:`NEW_REGISTRATION`: a new registration replaced the one the
    server's observations belonged to; the server forgot those observations (it
    re-observes if it wants) and the notifications stored for them were
    discarded (spec §10). :attr:`OBSERVATION_CANCELLED`: a Reset, the
    server's Cancel-Observe (a GET or FETCH with Observe 1) or the failure
    table ended an observation; its notifications not yet sent (queued behind
    the one in flight, or stored) were discarded: the server no longer wants
    them, and each would only draw a Reset (RFC 7641 §3.6).
    """

    name: ClassVar[str] = "notifications_dropped"
    NEW_REGISTRATION: ClassVar[str] = "new registration"
    OBSERVATION_CANCELLED: ClassVar[str] = "observation cancelled"
    ssid: int
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class HandshakeStarted(Event):
    """A DTLS handshake began (``ssid`` None: the Bootstrap-Server link).

    ``resuming``: a kept session is offered (an abbreviated handshake if the
    server still has it).
    """

    name: ClassVar[str] = "handshake_started"
    ssid: int | None
    resuming: bool


@dataclass(frozen=True, slots=True)
class HandshakeRetransmitted(Event):
    """A handshake flight got no answer and was sent again (RFC 6347 §4.2.4).

    ``attempt`` counts transmissions of this flight (2 = the first resend);
    ``next_timeout`` is the wait before the next resend or the verdict, so a
    wrong key or a silent server shows long before the handshake gives up.
    """

    name: ClassVar[str] = "handshake_retransmitted"
    ssid: int | None
    attempt: int
    next_timeout: float


@dataclass(frozen=True, slots=True)
class HandshakeDone(Event):
    """A DTLS session is up: ``resumed`` (abbreviated handshake) or fully established."""

    name: ClassVar[str] = "handshake_done"
    ssid: int | None
    resumed: bool


@dataclass(frozen=True, slots=True)
class NetworkChanged(Event):
    """The application (or a link watcher) said the network is back or changed.

    ``cut`` pending reconnect or retry waits now end after ``delay`` s.
    """

    name: ClassVar[str] = "network_changed"
    cut: int
    delay: float


@dataclass(frozen=True, slots=True)
class QueueModeSleep(Event):
    """Queue mode (binding "UQ"): the idle link was closed; the next send reopens it."""

    name: ClassVar[str] = "queue_mode_sleep"
    ssid: int


@dataclass(frozen=True, slots=True)
class SendFinished(Event):
    """Outcome of one LwM2M Send (POST /dp), ``send_id`` as ``start_send`` returned it.

    A failed Send is also reported as an ``error`` with ``request="send"``; it has
    no recovery action (spec §3's table has no Send column): the application decides.
    """

    name: ClassVar[str] = "send_finished"
    ssid: int
    send_id: int
    success: bool
    coap_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Error(Event):
    """A failed attempt or a rejected call, with its spec §6 / §3 code."""

    name: ClassVar[str] = "error"
    code: ErrorCode
    ssid: int | None = None
    request: Request | None = None
    coap_code: str | None = None
    action: Action | None = None
    detail: str | None = None
