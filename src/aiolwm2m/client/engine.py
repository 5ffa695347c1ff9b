"""Sans-IO LwM2M client engine: registration lifecycle and the recovery rules.

The engine owns one :class:`~aiolwm2m.coap.layer.MessageLayer` per server
"link" (a connected UDP socket, or a DTLS session over one). It never opens
sockets itself: it asks the runtime to with :class:`OpenLink`, and the runtime
answers with :meth:`ClientEngine.link_up` or :meth:`ClientEngine.link_failed`
(DNS, ICMP, handshake). Datagrams, ICMP errors and timer expiries are fed in
with the current time; link actions, application events and the next timer
deadline come out.

Recovery (``../shared/spec/recovery.md``) is organised as the spec's two loops:

* inner, per server: each request outcome is classified into a
  (:class:`RequestKind`, :class:`Failure`) cell and the configured
  :class:`FailureTable` picks the action; "abort registration" runs the
  LwM2M 1.1 retry procedure (:class:`RegistrationRetry`);
* outer, whole client: once no server has a usable connection, the
  :class:`ReconnectSchedule` retries every enabled server.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiolwm2m.accounts import (
    InvalidParameters,
    ServerAccount,
    ServerUri,
    check_endpoint_name,
    check_security,
    parse_server_uri,
)
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.policy import (
    Action,
    Failure,
    ReconnectSchedule,
    RegistrationRetry,
    RequestKind,
)
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer, Outcome
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    code_str,
    encode,
    is_success,
    make_options,
)
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.linkformat import ObjectEntry

CONTENT_FORMAT_LINK = 40
#: Link id of the Bootstrap-Server link (server links use their Short Server ID, 1..65534).
BOOTSTRAP_LINK = 0
#: Content format announced as ``pct`` in the Bootstrap-Request (SenML CBOR).
BOOTSTRAP_PREFERRED_FORMAT = 112
#: Spec §10: the doubling bootstrap hold-off never exceeds this (unless /0/x/11 itself does).
BOOTSTRAP_HOLD_OFF_CAP = 20.0


class ServerState(enum.Enum):
    IDLE = "idle"  # not started, or stopped after De-register
    CONNECTING = "connecting"  # waiting for the runtime to open the link
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"
    BACKOFF = "backoff"  # waiting in the §4 retry procedure
    SUSPENDED = "suspended"  # disable_server(): off until enabled or its timeout
    FAILED = "failed"  # gave up / aborted; only the outer loop or the app revives it
    BOOTSTRAPPING = "bootstrapping"
    OFFLINE = "offline"  # enter_offline(): no socket, notifications stored, until exit_offline()


class LinkFailure(enum.Enum):
    """Why the runtime could not open (or keep) a link."""

    DNS = "dns"
    NETWORK = "network"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    SECURE = "secure"  # handshake rejected: bad PSK, bad/expired/untrusted certificate…
    INTERNAL = "internal"


@dataclass(frozen=True)
class OpenLink:
    link: int
    uri: ServerUri
    account: ServerAccount


@dataclass(frozen=True)
class CloseLink:
    link: int


@dataclass(frozen=True)
class SendDatagram:
    link: int
    data: bytes


LinkAction = OpenLink | CloseLink | SendDatagram


@dataclass
class Notification:
    """An Observe notification produced by the data model for one server.

    ``message`` is a complete 2.05 response (token, Observe option, payload);
    its type (CON or NON) is the observe engine's choice. ``created`` is when
    the value was sampled, kept so stored notifications carry their original
    time.
    """

    ssid: int
    token: bytes
    path: str
    message: Message
    created: float


@dataclass(frozen=True)
class RegistrationRecord:
    """One server's registration as it survives a restart.

    The client always registers again after a restart (the transport session
    is new); the location tells it whether the server kept the registration
    (same location: stored notifications are still wanted) or started a new
    one (they are dropped, as for any session change).
    """

    ssid: int
    uri: str
    location: tuple[str, ...]
    registered_at: float
    lifetime: int
    lwm2m_version: str


@dataclass(frozen=True)
class Snapshot:
    """The engine state worth persisting (written by ``aiolwm2m.runtime.storage``).

    ``provisioning`` (:meth:`Provisioning.to_dict`, JSON-able and opaque to
    the store) is None while the servers are those of the factory
    configuration, so editing the config file takes effect until a bootstrap
    provisions other accounts. Times are on the caller's clock; :meth:`shifted`
    moves them to another one (the runtime stores wall-clock seconds).
    """

    provisioning: dict[str, Any] | None = None
    registrations: tuple[RegistrationRecord, ...] = ()
    notifications: tuple[Notification, ...] = ()

    def shifted(self, delta: float) -> Snapshot:
        """The same state with every time moved by ``delta`` seconds."""
        if delta == 0:
            return self
        return replace(
            self,
            registrations=tuple(
                replace(r, registered_at=r.registered_at + delta) for r in self.registrations
            ),
            notifications=tuple(replace(n, created=n.created + delta) for n in self.notifications),
        )


class ObjectTree(Protocol):
    """What the engine needs from the data model (see ``aiolwm2m.lwm2m``)."""

    def registration_payload(self, lwm2m_version: str) -> bytes:
        """CoRE link-format list of objects and instances for Register/Update."""

    def handle_request(self, ssid: int, request: Message, now: float) -> Message | None:
        """Answer a server-initiated operation; None means "later, via engine.respond()"."""

    def drop_observations(self, ssid: int) -> None:
        """The session with ``ssid`` changed: its observations end (spec §10)."""

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> None:
        """The engine ended one observation (Reset, or the failure table said so)."""

    def take_notifications(self, now: float) -> list[Notification]:
        """Notifications due now (value changes, pmin/pmax expiries)."""

    def next_timer(self) -> float | None:
        """When the data model next needs :meth:`handle_timer` (pmax, pending pmin…)."""

    def handle_timer(self, now: float) -> None: ...


def _classify_outcome(outcome: Outcome, *, secure: bool) -> tuple[Failure, ev.ErrorCode]:
    """The failure-table row and the §6 error of an exchange that got no usable answer.

    A request's message layer ends in ACKNOWLEDGED only if it broke (an empty
    ACK and then nothing), which is an internal error of the exchange.
    """
    if outcome is Outcome.TIMEOUT:
        return (Failure.TIMEOUT_DTLS if secure else Failure.TIMEOUT_NOSEC), ev.ErrorCode.TIMEOUT
    if outcome is Outcome.RESET:
        return Failure.RESET, ev.ErrorCode.RESET
    if outcome is Outcome.NETWORK_ERROR:
        return Failure.NETWORK, ev.ErrorCode.NETWORK_ERROR
    return Failure.INTERNAL, ev.ErrorCode.INTERNAL_ERROR


class NotAllowedError(Lwm2mError):
    """An API call arrived in a state that cannot take it; nothing was changed."""


@dataclass
class _Pending:
    kind: RequestKind
    sent_after_handshake: bool
    notification: Notification | None = None


#: NON notifications are remembered this many at a time so a late Reset can
#: still cancel its observation; older ones are forgotten (they cannot time out).
NON_NOTIFICATIONS_TRACKED = 64


@dataclass
class _Server:
    account: ServerAccount
    uri: ServerUri | None = None
    state: ServerState = ServerState.IDLE
    layer: MessageLayer | None = None
    link_open: bool = False
    link_secure: bool = False
    fresh_session: bool = False
    lwm2m_version: str = "1.1"
    location: list[str] = field(default_factory=list)
    registered_at: float | None = None
    wake_at: float | None = None
    wake_action: RequestKind | None = None  # resend after 4.29 / deferred start
    update_at: float | None = None
    reg_deadline: float | None = None
    rate_limited_until: float = 0.0
    objects_changed: bool = False
    # (lifetime, binding) as last sent in Register/Update: an Update repeats what changed.
    announced: tuple[int, str] | None = None
    inflight: dict[int, _Pending] = field(default_factory=dict)
    sends: dict[int, int] = field(default_factory=dict)  # layer key -> send id
    retry: RegistrationRetry | None = None
    malformed_seen: int = 0
    stored: deque[Notification] = field(default_factory=deque)
    stored_dropped: int = 0
    deferred: dict[tuple[int, bytes], int] = field(default_factory=dict)
    # Queue mode (binding "UQ"): the socket is closed while idle, the server keeps
    # the registration; anything to send reopens it with an Update first.
    sleeping: bool = False
    sleep_at: float | None = None
    queued_sends: list[tuple[int, bytes, int]] = field(default_factory=list)

    @property
    def ssid(self) -> int:
        return self.account.short_server_id

    @property
    def queue_mode(self) -> bool:
        return "Q" in self.account.binding


class BootstrapPhase(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"  # waiting for the runtime to open the Bootstrap-Server link
    HOLD_OFF = "hold_off"  # link open: a server-initiated bootstrap may start; then Request
    REQUESTING = "requesting"  # Bootstrap-Request sent
    PROVISIONING = "provisioning"  # taking Bootstrap-Server operations until Finish
    FAILED = "failed"  # this attempt failed: (B) does not hold until the outer loop retries


@dataclass
class _Bootstrap:
    """The Bootstrap-Server link and the progress of one bootstrap attempt."""

    phase: BootstrapPhase = BootstrapPhase.IDLE
    account: ServerAccount | None = None
    uri: ServerUri | None = None
    layer: MessageLayer | None = None
    link_open: bool = False
    link_secure: bool = False
    fresh_session: bool = False
    resend: bool = False  # reopened after a handshake retry: send the Request at once
    request_at: float | None = None  # end of the hold-off (or of a 4.29 wait)
    deadline: float | None = None  # EXCHANGE_LIFETIME after the last bootstrap operation
    failures: int = 0  # failed attempts since the last success: doubles the hold-off
    inflight: dict[int, _Pending] = field(default_factory=dict)
    handler: BootstrapHandler | None = None
    malformed_seen: int = 0

    @property
    def running(self) -> bool:
        return self.phase not in (BootstrapPhase.IDLE, BootstrapPhase.FAILED)


class ClientEngine:
    """The whole client as a deterministic state machine; see the module docstring."""

    def __init__(
        self,
        config: ClientConfig,
        objects: ObjectTree,
        *,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.objects = objects
        self._rng = rng
        self._servers: dict[int, _Server] = {}
        self._set_accounts(config.servers)
        self._actions: list[LinkAction] = []
        self._events: deque[ev.Event] = deque()
        self._schedule = ReconnectSchedule(config.reconnect, rng)
        self._reconnect_at: float | None = None
        self._all_failed = False
        self._started = False
        self._closing = False
        self._order: deque[int] = deque()  # servers waiting for their registration turn
        self._order_head: int | None = None  # the server whose turn it is
        self._offline = False
        self._state_version = 0
        self._bootstrap_account = config.bootstrap
        self._bs = _Bootstrap()
        self._bs_factor: float | None = None  # drawn once, at the first bootstrap
        self._next_send_id = 1

    # ------------------------------------------------------------------ queries
    def all_connections_failed(self) -> bool:
        return self._all_failed

    def server_state(self, ssid: int) -> ServerState:
        return self._require(ssid).state

    def server_states(self) -> dict[int, ServerState]:
        return {ssid: srv.state for ssid, srv in self._servers.items()}

    @property
    def idle(self) -> bool:
        """Nothing in flight: safe to stop the runtime after :meth:`close`."""
        return not self._bs.inflight and all(
            not s.inflight and s.state != ServerState.DEREGISTERING for s in self._servers.values()
        )

    def bootstrap_phase(self) -> BootstrapPhase:
        return self._bs.phase

    @property
    def bootstrap_account(self) -> ServerAccount | None:
        """The Bootstrap-Server account (from the config, or rewritten by a bootstrap)."""
        return self._bootstrap_account

    def provisioning(self) -> Provisioning:
        """The current accounts as Security/Server instances (what a bootstrap starts from)."""
        return Provisioning.from_accounts(
            tuple(s.account for s in self._servers.values()), self._bootstrap_account
        )

    def registered(self, ssid: int | None = None) -> bool:
        servers = self._servers.values() if ssid is None else [self._require(ssid)]
        return any(s.state == ServerState.REGISTERED for s in servers)

    # ------------------------------------------------------------------ outputs
    def link_actions(self) -> list[LinkAction]:
        out, self._actions = self._actions, []
        return out

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def next_timer(self) -> float | None:
        times: list[float] = []
        if self._reconnect_at is not None:
            times.append(self._reconnect_at)
        for srv in self._servers.values():
            for t in (srv.wake_at, srv.update_at, srv.reg_deadline, srv.sleep_at):
                if t is not None:
                    times.append(t)
            if srv.layer is not None:
                lt = srv.layer.next_timer()
                if lt is not None:
                    times.append(lt)
        bs = self._bs
        times += [t for t in (bs.request_at, bs.deadline) if t is not None]
        if bs.layer is not None and (lt := bs.layer.next_timer()) is not None:
            times.append(lt)
        object_timer = self.objects.next_timer()
        if object_timer is not None:
            times.append(object_timer)
        return min(times) if times else None

    def stored_notifications(self, ssid: int) -> list[Notification]:
        return list(self._require(ssid).stored)

    def dropped_notifications(self, ssid: int) -> int:
        """Notifications discarded by the store's drop-oldest policy (or storing off)."""
        return self._require(ssid).stored_dropped

    # ------------------------------------------------------------------ persistence
    @property
    def state_version(self) -> int:
        """Grows whenever :meth:`snapshot` would change: the runtime saves when it moved."""
        return self._state_version

    def snapshot(self) -> Snapshot:
        accounts = tuple(srv.account for srv in self._servers.values())
        factory = (
            accounts == self.config.servers and self._bootstrap_account == self.config.bootstrap
        )
        return Snapshot(
            provisioning=None if factory else self.provisioning().to_dict(),
            registrations=tuple(
                RegistrationRecord(
                    srv.ssid,
                    srv.account.uri,
                    tuple(srv.location),
                    srv.registered_at,
                    srv.account.lifetime,
                    srv.lwm2m_version,
                )
                for srv in self._servers.values()
                if srv.location and srv.registered_at is not None
            ),
            notifications=tuple(note for srv in self._servers.values() for note in srv.stored),
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Take back a :meth:`snapshot` (before :meth:`start`).

        The client registers again on start; a registration is kept only for
        the same server URI, and stored notifications wait, in order, for that
        registration (see :class:`RegistrationRecord`).
        """
        if self._started:
            raise NotAllowedError("restore() after start()")
        if snapshot.provisioning is not None:
            # Validated when the store read it (an unusable one is never restored).
            provisioning = Provisioning.from_dict(snapshot.provisioning)
            self._set_accounts(tuple(provisioning.accounts()))
            self._accounts_replaced()
            self._adopt_bootstrap_account(provisioning)
        for record in snapshot.registrations:
            srv = self._servers.get(record.ssid)
            if srv is not None and srv.account.uri == record.uri:
                srv.location = list(record.location)
                srv.registered_at = record.registered_at
                srv.lwm2m_version = record.lwm2m_version
        for note in snapshot.notifications:
            srv = self._servers.get(note.ssid)
            if srv is not None and srv.account.notification_storing:
                self._keep(srv, note)

    # ------------------------------------------------------------------ application API
    def start(self, now: float) -> None:
        if self._started:
            self._emit(ev.Error(now, ev.ErrorCode.NOT_ALLOWED, detail="already started"))
            raise NotAllowedError("client already started")
        self._started = True
        try:
            check_endpoint_name(self.config.endpoint)
        except InvalidParameters as exc:
            for srv in self._servers.values():
                self._set_state(srv, ServerState.FAILED, now)
            self._emit(ev.Error(now, ev.ErrorCode.INVALID_PARAMETERS, detail=str(exc)))
            return
        self._start_servers(now)
        if not self._servers and self._bootstrap_account is not None:
            # Factory state with only a Bootstrap-Server account: bootstrap first.
            self._begin_bootstrap(now)

    def _start_servers(self, now: float) -> None:
        """Start every server, in the registration order of Server /1/x/13-15.

        Servers with a Registration Priority Order register one after another
        in increasing order, each after its Initial Registration Delay counted
        from when the previous one finished registering; a failed registration
        passes the turn on unless that server's Registration Failure Block is
        set. Servers without a priority are not held by the others (TS 1.1.1
        table 6.2.1.1-1).
        """
        ordered = sorted(
            (s for s in self._servers.values() if s.account.registration_priority is not None),
            key=lambda s: (s.account.registration_priority, s.ssid),
        )
        self._order = deque(s.ssid for s in ordered)
        self._order_head = None
        for srv in self._servers.values():
            if srv.account.registration_priority is None:
                self._start_server(srv, now)
        self._next_in_order(now)

    def _next_in_order(self, now: float) -> None:
        while self._order:
            srv = self._servers.get(self._order.popleft())
            if srv is None:
                continue
            self._order_head = srv.ssid
            self._start_server(srv, now)
            if srv.state is not ServerState.FAILED:  # else invalid: the next one's turn
                return
        self._order_head = None

    def _registration_settled(self, srv: _Server, now: float, *, failed: bool) -> None:
        """The server whose turn it is registered, or failed to: maybe start the next."""
        if srv.ssid != self._order_head:
            return
        if failed and srv.account.registration_failure_block:
            return  # the others wait until this one registers
        self._order_head = None
        self._next_in_order(now)

    def _start_server(self, srv: _Server, now: float) -> None:
        try:
            srv.uri = parse_server_uri(srv.account.uri)
            check_security(srv.account, srv.uri)
        except InvalidParameters as exc:
            self._emit(
                ev.Error(now, ev.ErrorCode.INVALID_PARAMETERS, ssid=srv.ssid, detail=str(exc))
            )
            self._set_state(srv, ServerState.FAILED, now)
            return
        if srv.account.initial_registration_delay > 0:
            srv.wake_at = now + srv.account.initial_registration_delay
            srv.wake_action = RequestKind.REGISTER
        else:
            self._connect(srv, now)

    def close(self, now: float) -> None:
        """De-register from every registered server; ``not_registered`` if there is none."""
        self._closing = True
        self._reconnect_at = None
        self._stop_bootstrap(BootstrapPhase.IDLE, now)
        registered = [s for s in self._servers.values() if s.state == ServerState.REGISTERED]
        if not registered:
            self._emit(
                ev.Error(now, ev.ErrorCode.NOT_REGISTERED, detail="close() while not registered")
            )
        for srv in self._servers.values():
            if srv in registered:
                self._deregister(srv, now)
            else:
                self._stop_server(srv, ServerState.IDLE, now)

    def schedule_reconnect(self, now: float) -> None:
        """Reconnect every enabled server that is not registered or registering, now."""
        if not self._started or self._closing:
            self._not_allowed(now, "schedule_reconnect() before start() or after close()")
            return
        self._reconnect_at = None
        self._all_failed = False
        revived = False
        for srv in self._servers.values():
            if srv.uri is not None and srv.state in (
                ServerState.FAILED,
                ServerState.BACKOFF,
                ServerState.IDLE,
            ):
                self._revive(srv, now)
                revived = True
        self._reconnect_bootstrap(revived, now)

    def enable_server(self, ssid: int, now: float) -> None:
        srv = self._require(ssid)
        if not self._started or self._closing or srv.uri is None:
            self._not_allowed(now, f"enable_server({ssid}) not possible now", ssid)
            return
        if srv.state in (
            ServerState.SUSPENDED,
            ServerState.FAILED,
            ServerState.IDLE,
            ServerState.BACKOFF,
        ):
            self._all_failed = False
            self._reconnect_at = None
            self._revive(srv, now)

    def disable_server(self, ssid: int, now: float, timeout: float | None = None) -> None:
        """LwM2M Disable: close the link without De-register, optionally for ``timeout`` s."""
        srv = self._require(ssid)
        if not self._started or self._closing:
            self._not_allowed(now, f"disable_server({ssid}) before start()", ssid)
            return
        self._stop_server(srv, ServerState.SUSPENDED, now)
        if timeout is not None:
            srv.wake_at = now + timeout
            srv.wake_action = RequestKind.REGISTER

    @property
    def offline(self) -> bool:
        return self._offline

    def enter_offline(self, now: float) -> None:
        """Spec §10 offline mode: close every socket, keep state, store notifications.

        Nothing is sent and no timer fires for a server until :meth:`exit_offline`
        (Updates, retries and the reconnect schedule all wait); notifications
        produced meanwhile are stored when Server /1/x/6 says so, and the
        unacknowledged ones of the closed links with them.
        """
        if not self._started or self._closing or self._offline:
            self._not_allowed(now, "enter_offline() before start(), after close() or twice")
            return
        self._offline = True
        self._reconnect_at = None
        self._stop_bootstrap(BootstrapPhase.IDLE, now)
        for srv in self._servers.values():
            if srv.state not in (ServerState.IDLE, ServerState.SUSPENDED):
                self._stop_server(srv, ServerState.OFFLINE, now)

    def exit_offline(self, now: float) -> None:
        """Leave offline mode: every server that was on registers again.

        A new socket is a new session (python-mbedtls cannot resume DTLS), so
        each server gets a Register; with the same Location its observations
        continue and the stored notifications follow, oldest first.
        """
        if not self._offline:
            self._not_allowed(now, "exit_offline() while not offline")
            return
        self._offline = False
        self._all_failed = False
        self._schedule.reset()
        for srv in self._servers.values():
            if srv.state is ServerState.OFFLINE and srv.uri is not None:
                self._revive(srv, now)

    def trigger_update(self, now: float, ssid: int | None = None) -> None:
        targets = list(self._servers.values()) if ssid is None else [self._require(ssid)]
        registered = [s for s in targets if s.state == ServerState.REGISTERED]
        if not registered:
            self._not_allowed(now, "trigger_update() while not registered", ssid)
            return
        for srv in registered:
            self._send_update(srv, now)

    def update_account(self, account: ServerAccount, now: float) -> None:
        """A server rewrote its Server object (/1/x): use ``account`` from now on.

        The registration, link and stored notifications are kept. When Lifetime
        or Binding changed, a registered server gets an Update at once carrying
        just those (the Core's Update sends the parameters that differ from the
        registration) and the new lifetime schedules the following Updates;
        otherwise the next Register carries them. Other fields (default
        periods, notification storing) apply from now on without an Update.
        """
        srv = self._require(account.short_server_id)
        if account.uri != srv.account.uri:
            self._not_allowed(now, "update_account() cannot change the server URI", srv.ssid)
            return
        srv.account = account
        self._state_version += 1
        announced = (account.lifetime, account.binding)
        if srv.state == ServerState.REGISTERED and srv.announced != announced:
            self._send_update(srv, now)

    def send(self, ssid: int, payload: bytes, content_format: int, now: float) -> int:
        """LwM2M Send (1.1): POST ``payload`` (SenML) to the server's ``/dp``; returns its id.

        The outcome is a :class:`~aiolwm2m.client.events.SendFinished` event.
        Send failures take no recovery action (the failure table has no Send
        column): they are reported as ``error`` events with ``request="send"``
        and the registration is left alone. Only a registered server can take
        a Send; otherwise it fails at once with ``not_registered``.
        """
        srv = self._require(ssid)
        send_id = self._next_send_id
        self._next_send_id += 1
        if srv.state == ServerState.REGISTERED and srv.sleeping:
            srv.queued_sends.append((send_id, payload, content_format))
            self._wake_queued(srv, RequestKind.UPDATE, now)
            return send_id
        if srv.state != ServerState.REGISTERED or srv.layer is None:
            self._send_failed(srv, send_id, ev.ErrorCode.NOT_REGISTERED, now)
            return send_id
        self._send_now(srv, send_id, payload, content_format, now)
        return send_id

    def _send_now(
        self, srv: _Server, send_id: int, payload: bytes, content_format: int, now: float
    ) -> None:
        assert srv.layer is not None
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(path=["dp"], content_format=content_format),
            payload=payload,
        )
        srv.sends[srv.layer.send_request(msg, now)] = send_id
        self._flush(srv, now)

    def objects_changed(self, now: float) -> None:
        """The object/instance list changed: registered servers get an Update with it."""
        for srv in self._servers.values():
            srv.objects_changed = True
            if srv.state == ServerState.REGISTERED:
                self._send_update(srv, now)

    def respond(self, ssid: int, request: Message, response: Message, now: float) -> None:
        """Answer a server request whose handler returned None (e.g. an async callback)."""
        srv = self._require(ssid)
        key = srv.deferred.pop((request.mid, request.token), None)
        if key is not None and srv.layer is not None:
            srv.layer.respond(key, response, now)
            self._flush(srv, now)

    # ------------------------------------------------------------------ runtime inputs
    def link_up(
        self, link: int, now: float, *, new_session: bool = True, secure: bool = False
    ) -> None:
        if link == BOOTSTRAP_LINK:
            self._bootstrap_link_up(now, secure)
            return
        srv = self._servers.get(link)
        if srv is None or srv.state != ServerState.CONNECTING:
            self._actions.append(CloseLink(link))
            return
        srv.link_open = True
        srv.link_secure = secure
        srv.fresh_session = secure
        if new_session or srv.layer is None:
            srv.layer = MessageLayer(self.config.coap, self._rng)
        resend = srv.wake_action or RequestKind.REGISTER
        srv.wake_action = None
        waking, srv.sleeping = srv.sleeping, False
        if resend is RequestKind.DEREGISTER and waking:
            self._set_state(srv, ServerState.REGISTERED, now)
            self._deregister(srv, now)
        elif resend is RequestKind.UPDATE and (waking or not new_session):
            # Queue mode: the Update tells the server we are back (and from where).
            self._set_state(srv, ServerState.REGISTERED, now)
            srv.reg_deadline = None
            self._send_update(srv, now)
            for send_id, payload, content_format in srv.queued_sends:
                self._send_now(srv, send_id, payload, content_format, now)
            srv.queued_sends.clear()
        else:
            self._send_register(srv, now)

    def link_failed(self, link: int, failure: LinkFailure, now: float, detail: str = "") -> None:
        code = {
            LinkFailure.DNS: ev.ErrorCode.DNS_RESOLVING_FAILED,
            LinkFailure.NETWORK: ev.ErrorCode.NETWORK_ERROR,
            LinkFailure.HANDSHAKE_TIMEOUT: ev.ErrorCode.SECURE_CONNECTION_FAILED,
            LinkFailure.SECURE: ev.ErrorCode.SECURE_CONNECTION_FAILED,
            LinkFailure.INTERNAL: ev.ErrorCode.INTERNAL_ERROR,
        }[failure]
        if link == BOOTSTRAP_LINK:
            self._bootstrap_link_failed(code, detail or failure.value, now)
            return
        srv = self._servers.get(link)
        if srv is None or srv.state not in (ServerState.CONNECTING, ServerState.REGISTERING):
            return
        srv.link_open = False
        srv.reg_deadline = None
        self._emit(
            ev.Error(now, code, ssid=srv.ssid, request="connect", detail=detail or failure.value)
        )
        if self.config.registration.connection_error_is_registration_failure:
            self._abort_registration(srv, now)
        else:
            # Spec §5/§10: handshake/network/internal failures while connecting go
            # to client-initiated bootstrap, else give up; the outer loop retries.
            self._bootstrap_or_abort(srv, now, f"connect failed: {failure.value}")

    def datagram_received(self, link: int, data: bytes, now: float) -> None:
        if link == BOOTSTRAP_LINK:
            if self._bs.layer is not None and self._bs.link_open:
                self._bs.layer.receive(data, now)
                self._flush_bootstrap(now)
            return
        srv = self._servers.get(link)
        if srv is None or srv.layer is None or not srv.link_open:
            return
        srv.layer.receive(data, now)
        self._flush(srv, now)

    def link_error(self, link: int, now: float) -> None:
        """ICMP (port/host unreachable) on an open link."""
        if link == BOOTSTRAP_LINK:
            if self._bs.layer is not None:
                self._bs.layer.network_error(now)
                self._flush_bootstrap(now)
            return
        srv = self._servers.get(link)
        if srv is None or srv.layer is None:
            return
        non_notes = [
            key
            for key, p in srv.inflight.items()
            if p.notification is not None and p.notification.message.type == MessageType.NON
        ]
        if len(non_notes) == len(srv.inflight) and non_notes:
            # Nothing confirmable in flight: the ICMP answers the newest NON
            # notification, which no exchange would otherwise report. The server
            # is unreachable all the same (Notify column, network error).
            pending = srv.inflight.pop(non_notes[-1])
            self._fail(srv, pending, Failure.NETWORK, ev.ErrorCode.NETWORK_ERROR, now)
            self._flush(srv, now)
            return
        srv.layer.network_error(now)
        self._flush(srv, now)

    def poll(self, now: float) -> None:
        """Collect notifications the data model produced (after the application changed values)."""
        for note in self.objects.take_notifications(now):
            self._notify(note, now)

    def handle_timer(self, now: float) -> None:
        self.objects.handle_timer(now)
        self.poll(now)
        if self._reconnect_at is not None and self._reconnect_at <= now:
            self._reconnect_at = None
            self._all_failed = False
            revived = False
            for srv in self._servers.values():
                if srv.uri is not None and srv.state == ServerState.FAILED:
                    self._revive(srv, now)
                    revived = True
            self._reconnect_bootstrap(revived, now)
        self._bootstrap_timers(now)
        for srv in list(self._servers.values()):
            if srv.layer is not None:
                srv.layer.handle_timer(now)
                self._flush(srv, now)
            if srv.reg_deadline is not None and srv.reg_deadline <= now:
                self._registration_timeout(srv, now)
            if srv.sleep_at is not None and srv.sleep_at <= now:
                srv.sleep_at = None
                self._sleep(srv, now)
            if srv.wake_at is not None and srv.wake_at <= now:
                srv.wake_at = None
                self._wake(srv, now)
            if (
                srv.update_at is not None
                and srv.update_at <= now
                and srv.state == ServerState.REGISTERED
            ):
                self._send_update(srv, now)

    # ------------------------------------------------------------------ internals: flow
    def _connect(self, srv: _Server, now: float) -> None:
        assert srv.uri is not None
        self._set_state(srv, ServerState.CONNECTING, now)
        if srv.reg_deadline is None:
            srv.reg_deadline = now + self.config.registration.timeout
        self._actions.append(OpenLink(srv.ssid, srv.uri, srv.account))

    def _revive(self, srv: _Server, now: float) -> None:
        if srv.retry is not None:
            srv.retry.reset()
        srv.wake_at = None
        srv.wake_action = None
        srv.lwm2m_version = self.config.registration.lwm2m_version
        self._close_link(srv)
        self._connect(srv, now)

    def _wake(self, srv: _Server, now: float) -> None:
        if srv.state in (ServerState.BACKOFF, ServerState.SUSPENDED, ServerState.IDLE):
            self._connect(srv, now)
        elif srv.state == ServerState.REGISTERING and srv.link_open:
            self._send_register(srv, now)
        elif srv.state == ServerState.REGISTERED and srv.wake_action is RequestKind.UPDATE:
            srv.wake_action = None
            self._send_update(srv, now)

    def _send_register(self, srv: _Server, now: float) -> None:
        assert srv.layer is not None
        self._set_state(srv, ServerState.REGISTERING, now)
        if srv.reg_deadline is None:
            srv.reg_deadline = now + self.config.registration.timeout
        if now < srv.rate_limited_until:
            srv.wake_at = srv.rate_limited_until
            return
        query = [
            f"ep={self.config.endpoint}",
            f"lt={srv.account.lifetime}",
            f"lwm2m={srv.lwm2m_version}",
            f"b={srv.account.binding}",
        ]
        payload = self._registration_payload(srv, RequestKind.REGISTER, now)
        if payload is None:
            return
        srv.announced = (srv.account.lifetime, srv.account.binding)
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(path=["rd"], query=query, content_format=CONTENT_FORMAT_LINK),
            payload=payload,
        )
        assert srv.uri is not None
        self._emit(ev.Registering(now, srv.ssid, str(srv.uri), srv.lwm2m_version))
        self._request(srv, RequestKind.REGISTER, msg, now)

    def _send_update(self, srv: _Server, now: float) -> None:
        if srv.sleeping:
            self._wake_queued(srv, RequestKind.UPDATE, now)
            return
        if srv.layer is None or any(p.kind is RequestKind.UPDATE for p in srv.inflight.values()):
            return
        srv.update_at = None
        if now < srv.rate_limited_until:
            srv.wake_at = srv.rate_limited_until
            srv.wake_action = RequestKind.UPDATE
            return
        with_objects = srv.objects_changed
        payload = b""
        if with_objects:
            built = self._registration_payload(srv, RequestKind.UPDATE, now)
            if built is None:
                return
            payload = built
        query: list[str] = []
        lifetime, binding = srv.announced or (None, None)
        if srv.account.lifetime != lifetime:
            query.append(f"lt={srv.account.lifetime}")
        if srv.account.binding != binding:
            query.append(f"b={srv.account.binding}")
        srv.announced = (srv.account.lifetime, srv.account.binding)
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(
                path=srv.location,
                query=query,
                content_format=CONTENT_FORMAT_LINK if with_objects else None,
            ),
            payload=payload,
        )
        srv.objects_changed = False
        self._emit(ev.UpdateSent(now, srv.ssid, with_objects))
        self._request(srv, RequestKind.UPDATE, msg, now)

    def _deregister(self, srv: _Server, now: float) -> None:
        if srv.sleeping:
            self._wake_queued(srv, RequestKind.DEREGISTER, now)
            return
        assert srv.layer is not None
        self._set_state(srv, ServerState.DEREGISTERING, now)
        srv.update_at = None
        for key in list(srv.inflight):
            srv.layer.cancel(key, now)
        srv.inflight.clear()
        msg = Message(
            type=MessageType.CON, code=Code.DELETE, options=make_options(path=srv.location)
        )
        self._request(srv, RequestKind.DEREGISTER, msg, now)

    def _registration_payload(self, srv: _Server, kind: RequestKind, now: float) -> bytes | None:
        """The object list, or None after reporting a build failure as an internal error.

        Spec §6 "memory / message build failure": the application's object tree
        raised; the request is not sent and the failure table's Internal-error
        row decides what happens to the server.
        """
        try:
            return self.objects.registration_payload(srv.lwm2m_version)
        except Exception as exc:
            self._fail(
                srv,
                _Pending(kind, False),
                Failure.INTERNAL,
                ev.ErrorCode.MEMORY,
                now,
                detail=f"could not build the object list: {exc!r}",
            )
            return None

    def _sleep(self, srv: _Server, now: float) -> None:
        """Queue mode: close the idle link; the server holds requests until we wake."""
        busy = srv.inflight or srv.deferred or srv.sends
        if srv.state != ServerState.REGISTERED or not srv.link_open or busy:
            return
        self._close_link(srv)
        srv.sleeping = True
        self._emit(ev.QueueModeSleep(now, srv.ssid))

    def _wake_queued(self, srv: _Server, kind: RequestKind, now: float) -> None:
        """Reopen a sleeping queue-mode link; ``kind`` (Update or De-register) goes first."""
        if srv.state == ServerState.CONNECTING:
            if kind is RequestKind.DEREGISTER:
                srv.wake_action = kind
            return  # already waking
        srv.wake_action = kind
        self._connect(srv, now)

    def _request(self, srv: _Server, kind: RequestKind, msg: Message, now: float) -> None:
        assert srv.layer is not None
        try:
            key = srv.layer.send_request(msg, now)
        except (MemoryError, ValueError) as exc:
            # Spec §6 "memory / message build failure": the Internal-error row decides.
            detail = f"could not build the {kind.value} request: {exc!r}"
            pending = _Pending(kind, srv.fresh_session)
            self._fail(srv, pending, Failure.INTERNAL, ev.ErrorCode.MEMORY, now, detail=detail)
            return
        srv.inflight[key] = _Pending(kind, srv.fresh_session)
        srv.fresh_session = False
        self._flush(srv, now)

    def _flush(self, srv: _Server, now: float) -> None:
        """Move the layer's output to link actions and act on its events."""
        layer = srv.layer
        if layer is None:
            return
        active = False  # an exchange ended or a request came: queue mode stays awake
        while True:
            event = layer.next_event()
            if event is None:
                break
            active = True
            if isinstance(event, ExchangeResult):
                self._on_result(srv, event, now)
            elif isinstance(event, IncomingRequest):
                self._on_server_request(srv, event, now)
            if srv.layer is not layer:  # the link was replaced while handling
                return
        if layer.stats.malformed > srv.malformed_seen:
            srv.malformed_seen = layer.stats.malformed
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.RESPONSE_PARSE_FAILED,
                    ssid=srv.ssid,
                    detail="malformed CoAP datagram from the server ignored",
                )
            )
        if srv.link_open:
            for data in layer.datagrams_to_send():
                active = True
                self._actions.append(SendDatagram(srv.ssid, data))
            if active and srv.queue_mode and srv.state == ServerState.REGISTERED:
                # Spec §10 queue mode: sleep MAX_TRANSMIT_WAIT after the last exchange.
                srv.sleep_at = now + self.config.coap.max_transmit_wait

    def _on_server_request(self, srv: _Server, req: IncomingRequest, now: float) -> None:
        assert srv.layer is not None
        if srv.layer.refuse_unknown_critical(req, now):
            return
        try:
            response: Message | None = self.objects.handle_request(srv.ssid, req.message, now)
        except Exception as exc:
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.INTERNAL_ERROR,
                    ssid=srv.ssid,
                    detail=f"request handler raised {exc!r}",
                )
            )
            response = Message(code=Code.INTERNAL_SERVER_ERROR)
        if response is None:
            srv.deferred[(req.message.mid, req.message.token)] = req.key
        else:
            srv.layer.respond(req.key, response, now)

    # ------------------------------------------------------------------ outcomes
    def _on_result(self, srv: _Server, result: ExchangeResult, now: float) -> None:
        send_id = srv.sends.pop(result.key, None)
        if send_id is not None:
            self._send_result(srv, send_id, result, now)
            return
        pending = srv.inflight.pop(result.key, None)
        if pending is None:
            return
        kind = pending.kind
        if result.outcome is Outcome.ACKNOWLEDGED and kind is RequestKind.NOTIFY:
            return
        if result.outcome is Outcome.RESPONSE:
            assert result.response is not None
            resp = result.response
            if is_success(resp.code):
                self._on_success(srv, kind, resp, now)
                return
            if resp.code == Code.TOO_MANY_REQUESTS:
                self._rate_limited(srv, kind, resp, now)
                return
            if (
                kind is RequestKind.REGISTER
                and resp.code == Code.PRECONDITION_FAILED
                and (srv.lwm2m_version == "1.1")
            ):
                srv.lwm2m_version = "1.0"  # spec §10: version fallback
                self._emit(
                    ev.Error(
                        now,
                        ev.ErrorCode.COAP_ERROR,
                        ssid=srv.ssid,
                        request=kind.value,
                        coap_code=code_str(resp.code),
                        action="retry_lwm2m_1.0",
                    )
                )
                self._send_register(srv, now)
                return
            failure = Failure.COAP_ERROR
            code = ev.ErrorCode.COAP_ERROR
            coap_code: str | None = code_str(resp.code)
        else:
            coap_code = None
            failure, code = _classify_outcome(result.outcome, secure=srv.link_secure)
        self._fail(srv, pending, failure, code, now, coap_code=coap_code)

    def _send_result(self, srv: _Server, send_id: int, result: ExchangeResult, now: float) -> None:
        resp = result.response
        if result.outcome is Outcome.RESPONSE and resp is not None:
            coap_code = code_str(resp.code)
            if is_success(resp.code):
                self._emit(ev.SendFinished(now, srv.ssid, send_id, True, coap_code))
            else:
                detail = resp.payload.decode("utf-8", "replace")[:200] or None
                self._send_failed(srv, send_id, ev.ErrorCode.COAP_ERROR, now, coap_code, detail)
            return
        code = {
            Outcome.TIMEOUT: ev.ErrorCode.TIMEOUT,
            Outcome.RESET: ev.ErrorCode.RESET,
            Outcome.NETWORK_ERROR: ev.ErrorCode.NETWORK_ERROR,
        }.get(result.outcome, ev.ErrorCode.INTERNAL_ERROR)
        self._send_failed(srv, send_id, code, now)

    def _send_failed(
        self,
        srv: _Server,
        send_id: int,
        code: ev.ErrorCode,
        now: float,
        coap_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        self._emit(
            ev.Error(
                now,
                code,
                ssid=srv.ssid,
                request="send",
                coap_code=coap_code,
                action="none",
                detail=detail or f"send {send_id}",
            )
        )
        self._emit(ev.SendFinished(now, srv.ssid, send_id, False, coap_code, code.value))

    def _fail(
        self,
        srv: _Server,
        pending: _Pending,
        failure: Failure,
        code: ev.ErrorCode,
        now: float,
        *,
        coap_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        kind = pending.kind
        action = self.config.failure_table.action(kind, failure)
        if action is Action.RETRY_HANDSHAKE and pending.sent_after_handshake:
            # (†) no handshake loops: act as for a NoSec timeout.
            action = self.config.failure_table.action(kind, Failure.TIMEOUT_NOSEC)
        self._emit(
            ev.Error(
                now,
                code,
                ssid=srv.ssid,
                request=kind.value,
                coap_code=coap_code,
                action=action.value,
                detail=detail,
            )
        )
        self._apply(srv, pending, action, now)

    def _apply(self, srv: _Server, pending: _Pending, action: Action, now: float) -> None:
        kind = pending.kind
        note = pending.notification
        if note is not None and (
            action is Action.CANCEL_OBSERVATION
            or (
                action is Action.CANCEL_OBSERVATION_UNLESS_STORING
                and not srv.account.notification_storing
            )
        ):
            self.objects.cancel_observation(srv.ssid, note.token, action.value)
            self._emit(ev.ObservationCancelled(now, srv.ssid, note.path, action.value))
            return
        if kind is RequestKind.DEREGISTER:
            # Whatever the table says, a De-register that failed still ends the session.
            self._finish_deregister(srv, now, acknowledged=False)
            return
        if action is Action.IGNORE or action is Action.NOT_APPLICABLE:
            if note is not None:
                # Spec §10: a timed-out notification is superseded by the next
                # value; it is counted with the dropped ones so nothing vanishes
                # unaccounted.
                srv.stored_dropped += 1
            return
        if note is not None and action is not Action.CANCEL_OBSERVATION_UNLESS_STORING:
            # The notification failed because the server became unreachable: it
            # is kept for after re-registration like one produced offline.
            self._requeue_unacked(srv, note)
        if action is Action.FALLBACK_REGISTER:
            if srv.link_open and srv.layer is not None:
                self._send_register(srv, now)
            else:
                self._revive(srv, now)
        elif action is Action.RETRY_HANDSHAKE:
            self._close_link(srv)
            srv.wake_action = kind
            self._connect(srv, now)
        elif action is Action.ABORT_REGISTRATION:
            self._abort_registration(srv, now)
        elif action is Action.BOOTSTRAP:
            self._bootstrap_or_abort(srv, now, f"{kind.value} failed")
        elif action is Action.ABORT_ALL:
            for other in self._servers.values():
                self._stop_server(other, ServerState.FAILED, now)
            self._check_all_failed(now)

    def _on_success(self, srv: _Server, kind: RequestKind, resp: Message, now: float) -> None:
        if kind is RequestKind.REGISTER:
            try:
                location = resp.location_path
            except CoapDecodeError:
                self._fail(
                    srv,
                    _Pending(kind, False),
                    Failure.INTERNAL,
                    ev.ErrorCode.RESPONSE_PARSE_FAILED,
                    now,
                )
                return
            if srv.location and location != srv.location:
                # A new registration (the server gave another location): it has
                # forgotten our observations, so they and what was stored for
                # them end (spec §10, session change).
                self.objects.drop_observations(srv.ssid)
                srv.stored_dropped += len(srv.stored)
                srv.stored.clear()
            srv.location = location
            srv.registered_at = now
            self._state_version += 1
            srv.reg_deadline = None
            srv.objects_changed = False
            if srv.retry is not None:
                srv.retry.reset()
            self._set_state(srv, ServerState.REGISTERED, now)
            self._schedule.reset()
            self._all_failed = False
            self._emit(ev.Registered(now, srv.ssid, "/" + "/".join(location), srv.account.lifetime))
            self._plan_update(srv, now)
            self._flush_stored(srv, now)
            self._registration_settled(srv, now, failed=False)
        elif kind is RequestKind.UPDATE:
            self._emit(ev.Updated(now, srv.ssid))
            srv.registered_at = now
            self._state_version += 1
            self._plan_update(srv, now)
            self._flush_stored(srv, now)  # what waited while a queue-mode link slept
        elif kind is RequestKind.DEREGISTER:
            self._finish_deregister(srv, now, acknowledged=True)

    # ------------------------------------------------------------------ notifications
    def _notify(self, note: Notification, now: float) -> None:
        srv = self._servers.get(note.ssid)
        if srv is None:
            return
        if srv.state == ServerState.REGISTERED and srv.sleeping:
            # Queue mode: not offline, just asleep: keep it (whatever /1/x/6 says)
            # and wake; it follows the Update, in order.
            self._keep(srv, note)
            self._wake_queued(srv, RequestKind.UPDATE, now)
            return
        if srv.state == ServerState.REGISTERED and srv.layer is not None and not srv.stored:
            self._send_notification(srv, note, now)
        elif srv.account.notification_storing:
            self._store(srv, note, now)
        else:
            srv.stored_dropped += 1

    def _store(self, srv: _Server, note: Notification, now: float) -> None:
        """Keep a notification for later, dropping the oldest beyond the configured limit."""
        if self.config.notification_store_limit == 0:
            srv.stored_dropped += 1
            return
        self._keep(srv, note)
        self._state_version += 1
        self._emit(ev.NotificationStored(now, srv.ssid, note.path, len(srv.stored)))

    def _keep(self, srv: _Server, note: Notification) -> None:
        srv.stored.append(note)
        while len(srv.stored) > self.config.notification_store_limit:
            srv.stored.popleft()
            srv.stored_dropped += 1

    def _flush_stored(self, srv: _Server, now: float) -> None:
        count = len(srv.stored)
        while srv.stored and srv.state == ServerState.REGISTERED:
            self._send_notification(srv, srv.stored.popleft(), now)
        if count:
            self._state_version += 1
            self._emit(ev.NotificationsFlushed(now, srv.ssid, count - len(srv.stored)))

    def _send_notification(self, srv: _Server, note: Notification, now: float) -> None:
        assert srv.layer is not None
        try:
            encode(note.message)
        except ValueError as exc:
            # A notification that cannot be encoded (e.g. a token over 8 bytes)
            # is an internal error of the data model: the Notify column decides.
            pending = _Pending(RequestKind.NOTIFY, False, note)
            detail = f"cannot encode notification: {exc}"
            self._fail(srv, pending, Failure.INTERNAL, ev.ErrorCode.MEMORY, now, detail=detail)
            return
        key = srv.layer.send_message(note.message, now)
        srv.inflight[key] = _Pending(RequestKind.NOTIFY, srv.fresh_session, note)
        if note.message.type == MessageType.NON:
            non_keys = [
                k
                for k, p in srv.inflight.items()
                if p.notification is not None and p.notification.message.type == MessageType.NON
            ]
            for old in non_keys[:-NON_NOTIFICATIONS_TRACKED]:
                del srv.inflight[old]
        self._flush(srv, now)

    def _plan_update(self, srv: _Server, now: float) -> None:
        """Spec §10: lifetime/2 if shorter than MAX_TRANSMIT_WAIT, else lifetime − MTW; ≥ 1 s."""
        lifetime = float(srv.account.lifetime)
        mtw = self.config.coap.max_transmit_wait
        delay = lifetime / 2 if lifetime / 2 < mtw else lifetime - mtw
        srv.update_at = now + max(1.0, delay)

    def _rate_limited(self, srv: _Server, kind: RequestKind, resp: Message, now: float) -> None:
        try:
            max_age = resp.max_age
        except CoapDecodeError:
            max_age = None
        wait = float(60 if max_age is None else max_age)
        srv.rate_limited_until = now + wait
        self._emit(
            ev.Error(
                now,
                ev.ErrorCode.TOO_MANY_REQUESTS,
                ssid=srv.ssid,
                request=kind.value,
                coap_code="4.29",
                detail=f"waiting {wait:g} s (Max-Age)",
            )
        )
        if kind is RequestKind.REGISTER:
            srv.reg_deadline = None
            srv.wake_at = srv.rate_limited_until
        elif kind is RequestKind.UPDATE:
            srv.wake_at = srv.rate_limited_until
            srv.wake_action = RequestKind.UPDATE
        elif kind is RequestKind.DEREGISTER:
            self._finish_deregister(srv, now, acknowledged=False)

    def _finish_deregister(self, srv: _Server, now: float, *, acknowledged: bool) -> None:
        self._emit(ev.Deregistered(now, srv.ssid, acknowledged))
        self._stop_server(srv, ServerState.IDLE, now)

    def _registration_timeout(self, srv: _Server, now: float) -> None:
        srv.reg_deadline = None
        if srv.state == ServerState.CONNECTING:
            self._close_link(srv)
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.TIMEOUT,
                    ssid=srv.ssid,
                    request="connect",
                    detail="no registration within the registration timeout",
                )
            )
            self._bootstrap_or_abort(srv, now, "registration timeout while connecting")
            return
        if srv.state != ServerState.REGISTERING or srv.layer is None:
            return
        for key, pending in list(srv.inflight.items()):
            if pending.kind is RequestKind.REGISTER:
                srv.layer.cancel(key, now)
                del srv.inflight[key]
                failure = Failure.TIMEOUT_DTLS if srv.link_secure else Failure.TIMEOUT_NOSEC
                self._fail(srv, pending, failure, ev.ErrorCode.TIMEOUT, now)
                return

    def _abort_registration(self, srv: _Server, now: float) -> None:
        """Spec §4: the registration retry procedure for this server."""
        self._close_link(srv)  # a retry starts clean: no socket held while waiting
        srv.reg_deadline = None
        self._registration_settled(srv, now, failed=True)
        assert srv.retry is not None
        delay = srv.retry.on_failure()
        if delay is not None:
            self._set_state(srv, ServerState.BACKOFF, now)
            srv.wake_at = now + delay
            self._emit(
                ev.RetryScheduled(now, srv.ssid, delay, srv.retry.attempt, srv.retry.sequence)
            )
            return
        srv.retry.reset()
        if srv.account.retry.bootstrap_on_registration_failure:
            self._bootstrap_or_abort(srv, now, "registration failed")
        else:
            self._give_up(srv, now, "registration failed")

    def _bootstrap_or_abort(self, srv: _Server, now: float, reason: str) -> None:
        """Client-initiated bootstrap if (B) holds, else abort this server (spec §3 (B)).

        (B): a Bootstrap-Server account exists, no other server is registered
        (has a usable connection), and the bootstrap account has not itself
        failed since the outer loop last retried it.
        """
        if (
            self._bootstrap_account is None
            or self._closing
            or self._bs.phase is BootstrapPhase.FAILED
            or any(
                o is not srv and o.state == ServerState.REGISTERED for o in self._servers.values()
            )
        ):
            self._give_up(srv, now, reason)
            return
        self._stop_server(srv, ServerState.BOOTSTRAPPING, now)
        self._begin_bootstrap(now)

    def _give_up(self, srv: _Server, now: float, reason: str) -> None:
        self._stop_server(srv, ServerState.FAILED, now)
        self._emit(ev.ServerGaveUp(now, srv.ssid, reason))
        self._registration_settled(srv, now, failed=True)
        self._check_all_failed(now)

    def _check_all_failed(self, now: float) -> None:
        if self._closing or self._all_failed or self._bs.running:
            return
        if any(
            s.state not in (ServerState.FAILED, ServerState.SUSPENDED, ServerState.IDLE)
            for s in self._servers.values()
        ):
            return
        bootstrap_failed = self._bs.phase is BootstrapPhase.FAILED
        if not bootstrap_failed and not any(
            s.state == ServerState.FAILED for s in self._servers.values()
        ):
            return
        self._all_failed = True
        self._emit(ev.AllConnectionsFailed(now))
        retry_bootstrap = bootstrap_failed and self._bootstrap_account is not None
        if self.config.reconnect.enabled and (
            retry_bootstrap
            or any(
                s.uri is not None and s.state == ServerState.FAILED for s in self._servers.values()
            )
        ):
            delay = self._schedule.next_delay()
            self._reconnect_at = now + delay
            self._emit(ev.ReconnectScheduled(now, delay, self._schedule.attempts))

    # ------------------------------------------------------------------ bootstrap
    def _begin_bootstrap(self, now: float) -> None:
        """Open the Bootstrap-Server link; servers wait in BOOTSTRAPPING until Finish.

        Every server not suspended by the application is stopped: the
        bootstrap will replace the server set, and (B) only holds when none of
        them has a usable connection anyway.
        """
        for srv in self._servers.values():
            if srv.state not in (ServerState.SUSPENDED, ServerState.BOOTSTRAPPING):
                self._stop_server(srv, ServerState.BOOTSTRAPPING, now)
        bs = self._bs
        if bs.running:
            return
        account = self._bootstrap_account
        assert account is not None
        try:
            uri = parse_server_uri(account.uri)
            check_security(account, uri)
        except InvalidParameters as exc:
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.INVALID_PARAMETERS,
                    request=RequestKind.BOOTSTRAP_REQUEST.value,
                    detail=f"bootstrap account: {exc}",
                )
            )
            # Spec §6 invalid parameters: no retry until reconfigured.
            self._bootstrap_account = None
            self._bootstrap_failed(now)
            return
        bs.account, bs.uri, bs.resend = account, uri, False
        bs.handler = BootstrapHandler(self.provisioning(), self._object_entries())
        bs.phase = BootstrapPhase.CONNECTING
        self._emit(ev.BootstrapStarted(now, str(uri)))
        self._actions.append(OpenLink(BOOTSTRAP_LINK, uri, account))

    def _object_entries(self) -> dict[int, ObjectEntry]:
        """The application's objects, for Bootstrap-Discover (from its Register payload)."""
        try:
            payload = self.objects.registration_payload("1.1")
            return dict(linkformat.parse_registration(linkformat.decode(payload)).objects)
        except Exception:  # the object tree's problem must not stop a bootstrap
            return {}

    def _hold_off(self) -> float:
        """Spec §10: max(1 s, /0/x/11) × a factor in [1, 1.5] drawn once, ×2 per failure."""
        if self._bs_factor is None:
            self._bs_factor = self._rng.uniform(1.0, 1.5)
        account = self._bootstrap_account
        hold_off = account.client_hold_off_time if account is not None else 0.0
        base = max(1.0, hold_off) * self._bs_factor
        return min(base * 2.0**self._bs.failures, max(BOOTSTRAP_HOLD_OFF_CAP, base))

    def _bootstrap_link_up(self, now: float, secure: bool) -> None:
        bs = self._bs
        if bs.phase is not BootstrapPhase.CONNECTING:
            self._actions.append(CloseLink(BOOTSTRAP_LINK))
            return
        bs.layer = MessageLayer(self.config.coap, self._rng)
        bs.link_open, bs.link_secure, bs.fresh_session = True, secure, secure
        if bs.resend:
            self._send_bootstrap_request(now)
            return
        # The link is open during the hold-off so a Bootstrap-Server may start a
        # server-initiated bootstrap on it; the Request goes out when it ends.
        bs.phase = BootstrapPhase.HOLD_OFF
        bs.request_at = now + self._hold_off()

    def _bootstrap_link_failed(self, code: ev.ErrorCode, detail: str, now: float) -> None:
        if self._bs.phase is not BootstrapPhase.CONNECTING:
            return
        self._bs.link_open = False
        self._emit(ev.Error(now, code, request="bootstrap_connect", detail=detail))
        # Spec §5: stop talking to the Bootstrap-Server; with no regular server
        # left (all wait in BOOTSTRAPPING) that aborts all communication.
        self._bootstrap_failed(now)

    def _send_bootstrap_request(self, now: float) -> None:
        bs = self._bs
        assert bs.layer is not None
        bs.phase = BootstrapPhase.REQUESTING
        bs.request_at = None
        query = [f"ep={self.config.endpoint}"]
        if self.config.registration.lwm2m_version == "1.1":
            query.append(f"pct={BOOTSTRAP_PREFERRED_FORMAT}")
        msg = Message(
            type=MessageType.CON, code=Code.POST, options=make_options(path=["bs"], query=query)
        )
        try:
            key = bs.layer.send_request(msg, now)
        except (MemoryError, ValueError) as exc:
            pending = _Pending(RequestKind.BOOTSTRAP_REQUEST, bs.fresh_session)
            detail = f"could not build the Bootstrap-Request: {exc!r}"
            self._bootstrap_request_failed(
                pending, Failure.INTERNAL, ev.ErrorCode.MEMORY, None, detail, now
            )
            return
        bs.inflight[key] = _Pending(RequestKind.BOOTSTRAP_REQUEST, bs.fresh_session)
        bs.fresh_session = False
        bs.deadline = now + self.config.coap.exchange_lifetime
        self._flush_bootstrap(now)

    def _bootstrap_timers(self, now: float) -> None:
        bs = self._bs
        if bs.layer is not None:
            bs.layer.handle_timer(now)
            self._flush_bootstrap(now)
        if bs.request_at is not None and bs.request_at <= now and bs.link_open:
            self._send_bootstrap_request(now)
        if bs.deadline is not None and bs.deadline <= now and bs.running:
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.TIMEOUT,
                    request="bootstrap_finish",
                    detail="no Bootstrap-Finish within EXCHANGE_LIFETIME of the last operation",
                )
            )
            self._bootstrap_failed(now)

    def _flush_bootstrap(self, now: float) -> None:
        bs = self._bs
        layer = bs.layer
        if layer is None:
            return
        while (event := layer.next_event()) is not None:
            if isinstance(event, ExchangeResult):
                self._on_bootstrap_result(event, now)
            else:
                self._on_bootstrap_operation(event, now)
            if bs.layer is not layer:  # finished, failed or reopened while handling
                return
        if layer.stats.malformed > bs.malformed_seen:
            bs.malformed_seen = layer.stats.malformed
            self._emit(
                ev.Error(
                    now,
                    ev.ErrorCode.RESPONSE_PARSE_FAILED,
                    detail="malformed CoAP datagram from the Bootstrap-Server ignored",
                )
            )
        if bs.link_open:
            for data in layer.datagrams_to_send():
                self._actions.append(SendDatagram(BOOTSTRAP_LINK, data))

    def _on_bootstrap_operation(self, req: IncomingRequest, now: float) -> None:
        bs = self._bs
        assert bs.layer is not None
        if bs.layer.refuse_unknown_critical(req, now):
            return
        if bs.handler is None or bs.phase is BootstrapPhase.CONNECTING:
            bs.layer.respond(req.key, Message(code=Code.SERVICE_UNAVAILABLE), now)
            return
        # Operations before (or without) our Request: a server-initiated bootstrap.
        bs.phase = BootstrapPhase.PROVISIONING
        bs.request_at = None
        bs.deadline = now + self.config.coap.exchange_lifetime
        try:
            reply = bs.handler.handle(req.message)
        except Exception as exc:  # a bug in a handler must not take the client down
            self._emit(
                ev.Error(now, ev.ErrorCode.INTERNAL_ERROR, detail=f"bootstrap handler: {exc!r}")
            )
            bs.layer.respond(req.key, Message(code=Code.INTERNAL_SERVER_ERROR), now)
            return
        bs.layer.respond(req.key, reply.response, now)
        if reply.accounts is not None:
            self._finish_bootstrap(reply.accounts, now)

    def _on_bootstrap_result(self, result: ExchangeResult, now: float) -> None:
        bs = self._bs
        pending = bs.inflight.pop(result.key, None)
        if pending is None or bs.phase is not BootstrapPhase.REQUESTING:
            return  # the server already started operating: the Request did its job
        resp = result.response
        coap_code: str | None = None
        if result.outcome is Outcome.RESPONSE:
            assert resp is not None
            if is_success(resp.code):
                bs.phase = BootstrapPhase.PROVISIONING
                bs.deadline = now + self.config.coap.exchange_lifetime
                return
            if resp.code == Code.TOO_MANY_REQUESTS:
                self._bootstrap_rate_limited(resp, now)
                return
            failure, code = Failure.COAP_ERROR, ev.ErrorCode.COAP_ERROR
            coap_code = code_str(resp.code)
            if resp.code == Code.BAD_REQUEST:
                # Spec §6: "quota reached" is a 4.00 whose diagnostic names the quota.
                quota = b"quota" in resp.payload.lower()
                code = ev.ErrorCode.QUOTA_REACHED if quota else ev.ErrorCode.BAD_REQUEST
        else:
            failure, code = _classify_outcome(result.outcome, secure=bs.link_secure)
        detail = resp.payload.decode("utf-8", "replace")[:200] if resp else None
        self._bootstrap_request_failed(pending, failure, code, coap_code, detail, now)

    def _bootstrap_request_failed(
        self,
        pending: _Pending,
        failure: Failure,
        code: ev.ErrorCode,
        coap_code: str | None,
        detail: str | None,
        now: float,
    ) -> None:
        """The Bootstrap-Request column of the failure table (spec §3)."""
        bs = self._bs
        table = self.config.failure_table
        action = table.action(RequestKind.BOOTSTRAP_REQUEST, failure)
        if action is Action.RETRY_HANDSHAKE and pending.sent_after_handshake:
            action = table.action(RequestKind.BOOTSTRAP_REQUEST, Failure.TIMEOUT_NOSEC)  # (†)
        self._emit(
            ev.Error(
                now,
                code,
                request=RequestKind.BOOTSTRAP_REQUEST.value,
                coap_code=coap_code,
                action=action.value,
                detail=detail,
            )
        )
        if action is Action.RETRY_HANDSHAKE and bs.uri is not None and bs.account is not None:
            self._close_bootstrap_link()
            bs.phase, bs.resend, bs.deadline = BootstrapPhase.CONNECTING, True, None
            self._actions.append(OpenLink(BOOTSTRAP_LINK, bs.uri, bs.account))
        elif action is Action.IGNORE or action is Action.NOT_APPLICABLE:
            return  # wait: the Finish deadline still ends a bootstrap that never comes
        else:
            if action is Action.ABORT_ALL:
                for srv in self._servers.values():
                    self._stop_server(srv, ServerState.FAILED, now)
            self._bootstrap_failed(now)

    def _bootstrap_rate_limited(self, resp: Message, now: float) -> None:
        try:
            max_age = resp.max_age
        except CoapDecodeError:
            max_age = None
        wait = float(60 if max_age is None else max_age)
        self._bs.phase = BootstrapPhase.HOLD_OFF
        self._bs.request_at = now + wait
        self._bs.deadline = None
        self._emit(
            ev.Error(
                now,
                ev.ErrorCode.TOO_MANY_REQUESTS,
                request=RequestKind.BOOTSTRAP_REQUEST.value,
                coap_code="4.29",
                detail=f"waiting {wait:g} s (Max-Age)",
            )
        )

    def _finish_bootstrap(self, accounts: list[ServerAccount], now: float) -> None:
        """Bootstrap-Finish accepted: new server set, then Register to each."""
        bs = self._bs
        assert bs.handler is not None
        self._adopt_bootstrap_account(bs.handler.provisioning)
        self._stop_bootstrap(BootstrapPhase.IDLE, now)
        bs.failures = 0
        old = self._servers
        for srv in old.values():
            self._stop_server(srv, ServerState.IDLE, now)
            self.objects.drop_observations(srv.ssid)
        self._set_accounts(tuple(accounts))
        self._accounts_replaced()
        for srv in self._servers.values():
            kept = old.get(srv.ssid)
            if kept is not None and kept.account.uri == srv.account.uri:
                srv.stored = kept.stored  # same server: its stored notifications still count
                srv.stored_dropped = kept.stored_dropped
        self._state_version += 1
        self._emit(ev.Bootstrapped(now, sorted(self._servers)))
        self._start_servers(now)

    def _adopt_bootstrap_account(self, provisioning: Provisioning) -> None:
        """Take the Bootstrap-Server account from ``provisioning`` if a bootstrap rewrote it."""
        ours = self.provisioning().bootstrap_instance()
        theirs = provisioning.bootstrap_instance()
        if theirs is not None and (ours is None or ours[1] != theirs[1]):
            self._bootstrap_account = provisioning.bootstrap_account() or self._bootstrap_account

    def _bootstrap_failed(self, now: float) -> None:
        """This attempt failed: (B) stops holding until the outer loop retries."""
        self._stop_bootstrap(BootstrapPhase.FAILED, now)
        self._bs.failures += 1
        for srv in self._servers.values():
            if srv.state == ServerState.BOOTSTRAPPING:
                self._set_state(srv, ServerState.FAILED, now)
        self._check_all_failed(now)

    def _reconnect_bootstrap(self, revived: bool, now: float) -> None:
        """Outer loop: the bootstrap account may be tried again; alone if no server revived."""
        if self._bs.phase is BootstrapPhase.FAILED:
            self._bs.phase = BootstrapPhase.IDLE
        if not revived and self._bootstrap_account is not None and not self._bs.running:
            self._begin_bootstrap(now)

    def _stop_bootstrap(self, phase: BootstrapPhase, now: float) -> None:
        bs = self._bs
        if bs.layer is not None:
            for key in list(bs.inflight):
                bs.layer.cancel(key, now)
        was_connecting = bs.phase is BootstrapPhase.CONNECTING
        self._close_bootstrap_link()
        if was_connecting:
            self._actions.append(CloseLink(BOOTSTRAP_LINK))
        bs.phase = phase
        bs.request_at = bs.deadline = None
        bs.handler = None

    def _close_bootstrap_link(self) -> None:
        bs = self._bs
        if bs.link_open and bs.layer is not None:
            # The Finish answer (or any ACK) goes out before the close.
            for data in bs.layer.datagrams_to_send():
                self._actions.append(SendDatagram(BOOTSTRAP_LINK, data))
            self._actions.append(CloseLink(BOOTSTRAP_LINK))
        bs.link_open = False
        if bs.layer is not None:
            bs.layer.clear()
        bs.layer = None
        bs.inflight.clear()

    # ------------------------------------------------------------------ helpers
    def _accounts_replaced(self) -> None:
        """Tell a data model that shows Server objects (optional hook) the new accounts."""
        hook = getattr(self.objects, "accounts_changed", None)
        if hook is not None:
            hook([srv.account for srv in self._servers.values()])

    def _set_accounts(self, accounts: tuple[ServerAccount, ...]) -> None:
        self._servers = {}
        for account in accounts:
            srv = _Server(account, lwm2m_version=self.config.registration.lwm2m_version)
            srv.retry = RegistrationRetry(account.retry, self.config.registration.retry_procedure)
            self._servers[account.short_server_id] = srv

    def _stop_server(self, srv: _Server, state: ServerState, now: float) -> None:
        self._requeue_unacked(srv)
        srv.sleeping = False
        srv.sleep_at = None
        for send_id, _payload, _cf in srv.queued_sends:
            self._send_failed(srv, send_id, ev.ErrorCode.NOT_REGISTERED, now)
        srv.queued_sends.clear()
        if srv.layer is not None:
            for key in list(srv.inflight):
                srv.layer.cancel(key, now)
        srv.inflight.clear()
        srv.update_at = None
        srv.reg_deadline = None
        srv.wake_at = None
        srv.wake_action = None
        self._close_link(srv)
        self._set_state(srv, state, now)

    def _requeue_unacked(self, srv: _Server, *lost: Notification) -> None:
        """Keep confirmable notifications the closing link never delivered (storing on).

        Their server was unreachable, so by Server /1/x/6 they are stored like
        those produced offline: merged by creation time, so the server still
        gets every value in order after re-registration. NON ones are not
        tracked for delivery and are not kept.
        """
        unacked = [
            pending.notification
            for key, pending in sorted(srv.inflight.items())
            if pending.notification is not None
            and pending.notification.message.type == MessageType.CON
        ]
        for key in [k for k, p in srv.inflight.items() if p.notification is not None]:
            del srv.inflight[key]
        notes = [*lost, *unacked]
        if not notes or not srv.account.notification_storing:
            return
        merged = sorted([*notes, *srv.stored], key=lambda n: n.created)
        srv.stored.clear()
        for note in merged:
            self._keep(srv, note)
        self._state_version += 1

    def _close_link(self, srv: _Server) -> None:
        self._requeue_unacked(srv)
        if srv.link_open and srv.layer is not None:
            # Whatever the layer still has to say (e.g. an ACK) goes out before the close.
            for data in srv.layer.datagrams_to_send():
                self._actions.append(SendDatagram(srv.ssid, data))
        if srv.link_open or srv.state == ServerState.CONNECTING:
            self._actions.append(CloseLink(srv.ssid))
        srv.link_open = False
        if srv.layer is not None:
            srv.layer.clear()
        srv.layer = None
        srv.deferred.clear()
        srv.inflight.clear()

    def _set_state(self, srv: _Server, state: ServerState, now: float) -> None:
        if srv.sends and srv.layer is None:
            # The link closed under Sends in flight: their answers can no longer come.
            lost = ev.ErrorCode.NETWORK_ERROR
            for send_id in srv.sends.values():
                self._send_failed(srv, send_id, lost, now, detail="link closed")
            srv.sends.clear()
        if srv.state is not state:
            old = srv.state
            srv.state = state
            self._emit(ev.StateChanged(now, srv.ssid, old.value, state.value))

    def _require(self, ssid: int) -> _Server:
        try:
            return self._servers[ssid]
        except KeyError as exc:
            raise NotAllowedError(f"no server with short server id {ssid}") from exc

    def _not_allowed(self, now: float, detail: str, ssid: int | None = None) -> None:
        self._emit(ev.Error(now, ev.ErrorCode.NOT_ALLOWED, ssid=ssid, detail=detail))

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)
