"""The façade: the whole client as one deterministic object a runtime drives.

:class:`ClientEngine` owns no behaviour of its own. It checks what the
application may do when, routes runtime inputs (link up/failed, datagrams,
ICMP, timer expiries) to the part that handles them, and exposes what comes
out (link actions, events, the next timer). The parts share one
:class:`~._shared.Shared` context:

=====================  =========================================================
``_channel``           one link, its message layer, its requests in flight
``_links``             what arrives on a server's link; stopping a server
``_registration``      Register / Update / De-register, order, queue mode
``_recovery``          the failure table and both recovery loops
``_bootstrapping``     the bootstrap flow, handing over at Bootstrap-Finish
``_storing``           notifications sent, stored and flushed
``_sending``           LwM2M Send
=====================  =========================================================
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from aiolwm2m.accounts import InvalidParameters, ServerAccount, check_endpoint_name
from aiolwm2m.client import events as ev
from aiolwm2m.client.actions import (
    CancelObserve,
    ClientAction,
    DisableServer,
    RequestBootstrap,
    TriggerUpdate,
)
from aiolwm2m.client.bootstrap import Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine._bootstrapping import BootstrapFlow
from aiolwm2m.client.engine._links import ServerLinks
from aiolwm2m.client.engine._recovery import Recovery
from aiolwm2m.client.engine._registration import Registration
from aiolwm2m.client.engine._sending import Sending
from aiolwm2m.client.engine._shared import (
    BootstrapSession,
    ServerSession,
    Shared,
    Step,
)
from aiolwm2m.client.engine._storing import NotificationStore
from aiolwm2m.client.engine._types import (
    BOOTSTRAP_LINK,
    CloseLink,
    DataModel,
    LinkAction,
    LinkFailure,
    Notification,
    RegistrationRecord,
    Snapshot,
)
from aiolwm2m.client.states import BootstrapPhase, ServerState, Trigger
from aiolwm2m.coap.message import Message
from aiolwm2m.errors import NotAllowedError

__all__ = ["ClientEngine"]

_Input = TypeVar("_Input", bound=Callable[..., Any])


def _input(method: _Input) -> _Input:
    """Marks an engine input: once it ran, the engine carries out the data model's actions.

    Every input can make the data model ask something of the engine (a server's
    Execute arrives as a datagram; an application's new instance is seen at the
    next poll), so each one ends by taking those requests; the input's ``now``
    is found by name. Any input may move the engine's timers: the next
    :meth:`ClientEngine.next_timer` scans them again (marked first, so an input
    that raises half-way is covered too).
    """
    at = list(inspect.signature(method).parameters).index("now") - 1  # without self

    @functools.wraps(method)
    def run(self: ClientEngine, *args: Any, **kwargs: Any) -> Any:
        self._timer_stale = True
        result = method(self, *args, **kwargs)
        if actions := self.objects.take_actions():
            _carry_out_model_actions(self, actions, kwargs["now"] if len(args) <= at else args[at])
        return result

    return cast(_Input, run)


class ClientEngine:
    """The whole client as a deterministic state machine; see the module docstring.

    Recovery (``docs/recovery.md``) is organised as the spec's two loops:
    inner, per server, each failure's failure-table action (``client/policy.py``);
    outer, whole client, the reconnect schedule once no server has a usable
    connection. The states are those of ``client/states.py``.

    Every input ends by carrying out what the data model asked of the engine
    (a server's Execute of Registration Update Trigger…): see ``_INPUTS``.
    """

    __slots__ = ("_shared", "_timer", "_timer_stale", "actions", "config", "events", "objects")

    def __init__(self, config: ClientConfig, objects: DataModel, *, rng: random.Random) -> None:
        self.config = config
        self.objects = objects
        table = config.failure_table
        if config.registration.connection_error_is_registration_failure:
            table = table.with_connect_errors_aborting_registration()
        s = self._shared = Shared(config, objects, rng, table)
        self._timer: float | None = None  # the engine's own, kept: see next_timer()
        self._timer_stale = True
        self.actions, self.events = s.actions, s.events  # drained in place by a runtime
        s.set_accounts(config.servers)
        s.store = NotificationStore(s)
        s.links = ServerLinks(s)
        s.sending = Sending(s)
        s.registration = Registration(s)
        s.bootstrap = BootstrapFlow(s)
        s.recovery = Recovery(s)
        # The data model asks whether there is a Bootstrap-Server account (/1/x/9 is
        # 4.05 without one) of the engine, whose account a purge or a bootstrap
        # changes, not of the configuration it was built from (optional hook).
        follow = getattr(objects, "follow_bootstrap_account", None)
        if follow is not None:
            follow(lambda: s.bootstrap_account is not None)

    # ------------------------------------------------------------------ queries
    def all_connections_failed(self) -> bool:
        return self._shared.all_failed

    def server_state(self, ssid: int) -> ServerState:
        return self._require(ssid).public_state

    def server_states(self) -> dict[int, ServerState]:
        return {ssid: srv.public_state for ssid, srv in self._shared.servers.items()}

    @property
    def idle(self) -> bool:
        """Nothing in flight: safe to stop the runtime after :meth:`close`."""
        return not self._shared.bs.channel.inflight and all(
            not s.channel.inflight and s.public_state is not ServerState.DEREGISTERING
            for s in self._shared.servers.values()
        )

    def bootstrap_phase(self) -> BootstrapPhase:
        return self._shared.bs.phase.public

    @property
    def bootstrap_account(self) -> ServerAccount | None:
        """The Bootstrap-Server account (from the config, or rewritten by a bootstrap)."""
        return self._shared.bootstrap_account

    def provisioning(self) -> Provisioning:
        """The current accounts as Security/Server instances (what a bootstrap starts from)."""
        return self._shared.provisioning()

    def registered(self, ssid: int | None = None) -> bool:
        servers = self._shared.servers.values() if ssid is None else [self._require(ssid)]
        return any(s.public_state is ServerState.REGISTERED for s in servers)

    @property
    def offline(self) -> bool:
        return self._shared.offline

    def stored_notifications(self, ssid: int) -> list[Notification]:
        return list(self._require(ssid).stored)

    def dropped_notifications(self, ssid: int) -> int:
        """Notifications discarded by policy, never to be sent.

        The store's drop-oldest limit, storing off, a timed-out one superseded,
        a new registration, or not yet sent when a Reset ended their observation.
        """
        return self._require(ssid).stored_dropped

    # ------------------------------------------------------------------ outputs
    def link_actions(self) -> list[LinkAction]:
        out = self.actions.copy()
        self.actions.clear()
        return out

    def next_event(self) -> ev.Event | None:
        return self.events.pop(0) if self.events else None

    def next_timer(self) -> float | None:
        """The earliest of every scheduled action, link timer and data-model timer.

        The engine's own (:func:`_own_timer`) move only in an input or a poll that did
        more than send NON notifications: rescanned then; the data model's, every time.
        """
        if self._timer_stale:
            self._timer = _own_timer(self._shared)
            self._timer_stale = False
        best = self._timer
        when = self.objects.next_timer()
        if when is not None and (best is None or when < best):
            best = when
        return best

    def handle_timer(self, now: float) -> None:
        """Fire what is due: data model, outer loop, bootstrap, then each server."""
        s = self._shared
        self.objects.handle_timer(now)
        self._collect_notifications(now)
        if s.reconnect is not None and s.reconnect.when <= now:
            s.recovery.reconnect_due(now)
        _fire_bootstrap(s, now)
        for srv in list(s.servers.values()):
            if srv.channel.layer is not None:
                srv.channel.layer.handle_timer(now)
                s.links.flush(srv, now)
            self._fire(srv, now)

    def _fire(self, srv: ServerSession, now: float) -> None:
        """The server's deadline, then its next action, each if due (and still scheduled)."""
        deadline = srv.deadline
        if deadline is not None and deadline.when <= now:
            srv.deadline = None
            _SERVER_STEPS[deadline.what](self._shared, srv, now)
        step = srv.next
        if step is not None and step.when <= now:
            srv.next = None
            _SERVER_STEPS[step.what](self._shared, srv, now)

    # ------------------------------------------------------------------ persistence
    @property
    def state_version(self) -> int:
        """Grows whenever :meth:`snapshot` would change: the runtime saves when it moved."""
        return self._shared.state_version

    def snapshot(self) -> Snapshot:
        s = self._shared
        accounts = tuple(srv.account for srv in s.servers.values())
        factory = accounts == self.config.servers and s.bootstrap_account == self.config.bootstrap
        return Snapshot(
            provisioning=None if factory else self.provisioning().to_dict(),
            registrations=tuple(
                RegistrationRecord(
                    srv.ssid,
                    srv.account.uri,
                    tuple(srv.location),
                    srv.registered_at,
                    _lifetime_left(srv.registered_at, srv.registered_until),
                    srv.lwm2m_version,
                )
                for srv in s.servers.values()
                if srv.location and srv.registered_at is not None
            ),
            notifications=tuple(note for srv in s.servers.values() for note in srv.stored),
            bootstrap_purge_at=s.bs.purge.when if s.bs.purge is not None else None,
            bootstrap_purged=s.bs.purged,
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Take back a :meth:`snapshot` (before :meth:`start`).

        A registration is kept only for the same server URI; on start the new
        link resumes it with an Update while it has not expired, and stored
        notifications wait, in order, for that (see :class:`RegistrationRecord`).
        """
        s = self._shared
        if s.started:
            raise NotAllowedError("restore() after start()")
        self._timer_stale = True  # a restored purge deadline
        if snapshot.provisioning is not None:
            # Validated when the store read it (an unusable one is never restored).
            provisioning = Provisioning.from_dict(snapshot.provisioning)
            s.set_accounts(tuple(provisioning.accounts()))
            s.accounts_replaced()
            s.bootstrap.adopt_account(provisioning)
        s.bootstrap.restore_purge(snapshot.bootstrap_purge_at, snapshot.bootstrap_purged)
        for record in snapshot.registrations:
            srv = s.servers.get(record.ssid)
            if srv is not None and srv.account.uri == record.uri:
                srv.location = list(record.location)
                srv.registered_at = record.registered_at
                srv.registered_until = record.registered_at + record.lifetime
                srv.lwm2m_version = record.lwm2m_version
        for note in snapshot.notifications:
            srv = s.servers.get(note.ssid)
            if srv is not None and srv.account.notification_storing:
                s.store.keep(srv, note)

    # ------------------------------------------------------------------ application API
    def start(self, now: float) -> None:
        s = self._shared
        if s.started:
            s.emit(ev.Error(now, ev.ErrorCode.NOT_ALLOWED, detail="already started"))
            raise NotAllowedError("client already started")
        s.started = True
        try:
            check_endpoint_name(self.config.endpoint)
        except InvalidParameters as exc:
            for srv in s.servers.values():
                s.move(srv, Trigger.INVALID, now)
            s.emit(ev.Error(now, ev.ErrorCode.INVALID_PARAMETERS, detail=str(exc)))
            return
        s.bootstrap.purge_if_due(now)  # a restored deadline that passed while stopped
        s.registration.start_servers(now)
        if not s.servers and s.bootstrap_account is not None:
            # Factory state with only a Bootstrap-Server account: bootstrap first.
            s.bootstrap.begin(now)

    def close(self, now: float) -> None:
        """De-register from every registered server; ``not_registered`` if there is none."""
        s = self._shared
        s.closing = True
        s.reconnect = None
        s.bootstrap.stop(now)
        registered = [v for v in s.servers.values() if v.public_state is ServerState.REGISTERED]
        if not registered:
            detail = "close() while not registered"
            s.emit(ev.Error(now, ev.ErrorCode.NOT_REGISTERED, detail=detail))
        for srv in s.servers.values():
            if srv in registered:
                s.registration.deregister(srv, now)
            else:
                s.links.stop(srv, Trigger.CLOSE, now)

    def schedule_reconnect(self, now: float) -> None:
        """Reconnect every enabled server that is not registered or registering, now."""
        s = self._shared
        if not s.started or s.closing:
            s.not_allowed(now, "schedule_reconnect() before start() or after close()")
            return
        s.reconnect = None
        revivable = (ServerState.FAILED, ServerState.BACKOFF, ServerState.IDLE)
        s.recovery.reconnect(revivable, now)

    def enable_server(self, ssid: int, now: float) -> None:
        s = self._shared
        srv = self._require(ssid)
        if not s.started or s.closing or srv.uri is None:
            s.not_allowed(now, f"enable_server({ssid}) not possible now", ssid)
            return
        if srv.public_state in (
            ServerState.SUSPENDED,
            ServerState.FAILED,
            ServerState.IDLE,
            ServerState.BACKOFF,
        ):
            s.all_failed = False
            s.reconnect = None
            s.registration.revive(srv, now)

    def disable_server(
        self, ssid: int, now: float, timeout: float | None = None, *, executed: bool = False
    ) -> None:
        """LwM2M Disable: close the link, and register again after ``timeout`` s.

        Without a timeout (or with one of 2^32-1 s or more) the server stays
        off until :meth:`enable_server`. The application's call closes the
        link without De-register; ``executed`` (the server executed Disable,
        /1/x/4, with its Disable Timeout /1/x/5) de-registers first.
        """
        s = self._shared
        srv = self._require(ssid)
        if not s.started or s.closing:
            s.not_allowed(now, f"disable_server({ssid}) before start()", ssid)
            return
        s.registration.disable(srv, now, timeout, executed=executed)

    def request_bootstrap(self, now: float) -> None:
        """Client-initiated bootstrap now (a server executed /1/x/9, or the application).

        Registered servers are de-registered first; without a Bootstrap-Server
        account this is ``not_allowed`` (the Server object answers /1/x/9 with
        4.05 before it gets here).
        """
        s = self._shared
        if not s.started or s.closing or s.offline:
            s.not_allowed(now, "request_bootstrap() before start(), after close() or offline")
            return
        s.bootstrap.requested(now)

    def enter_offline(self, now: float) -> None:
        """Spec §10 offline mode: close every socket, keep state, store notifications.

        Nothing is sent and no timer fires for a server until :meth:`exit_offline`
        (Updates, retries and the reconnect schedule all wait); notifications
        produced meanwhile are stored when Server /1/x/6 says so, and the
        unacknowledged ones of the closed links with them.
        """
        s = self._shared
        if not s.started or s.closing or s.offline:
            s.not_allowed(now, "enter_offline() before start(), after close() or twice")
            return
        s.offline = True
        s.reconnect = None
        s.bootstrap.stop(now)
        for srv in s.servers.values():
            if srv.public_state not in (ServerState.IDLE, ServerState.SUSPENDED):
                s.links.stop(srv, Trigger.OFFLINE, now)

    def exit_offline(self, now: float) -> None:
        """Leave offline mode: every server that was on reconnects.

        Each new link (a new socket; a resumed or new DTLS session) resumes an
        unexpired registration with an Update (spec §10): its observations
        continue and the stored notifications follow, oldest first. A refusal,
        or an expired registration, means a Register instead.
        """
        s = self._shared
        if not s.offline:
            s.not_allowed(now, "exit_offline() while not offline")
            return
        s.offline = False
        s.all_failed = False
        s.recovery.schedule.reset()
        for srv in s.servers.values():
            if srv.state is ServerState.OFFLINE and srv.uri is not None:
                s.registration.revive(srv, now)

    def network_changed(self, now: float) -> None:
        """A hint that the network is back or changed (the platform, or a link watcher).

        Pending reconnect and §4 retry waits end within a small random delay
        (``[reconnect] network_change_window``, ≤ 1 s by default); a
        ``network_changed`` event says how many were cut short.
        """
        s = self._shared
        if not s.started or s.closing:
            s.not_allowed(now, "network_changed() before start() or after close()")
            return
        s.recovery.network_changed(now)

    def trigger_update(self, now: float, ssid: int | None = None) -> None:
        s = self._shared
        targets = list(s.servers.values()) if ssid is None else [self._require(ssid)]
        registered = [v for v in targets if v.public_state is ServerState.REGISTERED]
        if not registered:
            s.not_allowed(now, "trigger_update() while not registered", ssid)
            return
        for srv in registered:
            s.registration.send_update(srv, now)

    def update_account(self, account: ServerAccount, now: float) -> None:
        """A server rewrote its Server object (/1/x): use ``account`` from now on.

        The registration, link and stored notifications are kept. When Lifetime
        or Binding changed, a registered server gets an Update at once carrying
        just those (the Core's Update sends the parameters that differ from the
        registration) and the new lifetime schedules the following Updates;
        queue mode switched under an LwM2M 1.1 registration is a new Register
        (no Update can carry 1.1's ``Q``); otherwise the next Register carries
        them. Other fields (default
        periods, notification storing) apply from now on without an Update.
        """
        s = self._shared
        srv = self._require(account.short_server_id)
        if account.uri != srv.account.uri:
            s.not_allowed(now, "update_account() cannot change the server URI", srv.ssid)
            return
        srv.account = account
        s.changed()
        s.registration.account_changed(srv, now)

    def send(self, ssid: int, payload: bytes, content_format: int, now: float) -> int:
        """LwM2M Send (1.1): POST ``payload`` (SenML) to the server's ``/dp``; returns its id.

        The outcome is a :class:`~aiolwm2m.client.events.SendFinished` event.
        Send failures take no recovery action (the failure table's Send column
        is ``none``): they are reported as ``error`` events with
        ``request="send"`` and the registration is left alone. Only a
        registered server can take a Send; otherwise it fails at once with
        ``not_registered``.
        """
        return self._shared.sending.send(self._require(ssid), payload, content_format, now)

    def objects_changed(self, now: float) -> None:
        """The object/instance list changed: registered servers get an Update with it."""
        for srv in self._shared.servers.values():
            srv.objects_changed = True
            if srv.public_state is ServerState.REGISTERED:
                self._shared.registration.send_update(srv, now)

    def respond(self, ssid: int, request: Message, response: Message, now: float) -> None:
        """Answer a server request whose handler returned None (e.g. an async callback)."""
        srv = self._require(ssid)
        key = srv.channel.deferred.pop((request.mid, request.token), None)
        if key is not None and srv.channel.layer is not None:
            srv.channel.layer.respond(key, response, now)
            self._shared.links.flush(srv, now)

    # ------------------------------------------------------------------ runtime inputs
    def link_up(
        self, link: int, now: float, *, secure: bool = False, resumed: bool = False
    ) -> None:
        """The link opened; ``resumed``: its DTLS session was resumed (abbreviated handshake).

        A resumed session counts as fresh for (†), like a full handshake; either
        way an unexpired registration is resumed with an Update (spec §10).
        """
        s = self._shared
        if link == BOOTSTRAP_LINK:
            s.bootstrap.link_up(now, secure, resumed)
            return
        srv = s.servers.get(link)
        if srv is None or srv.public_state is not ServerState.CONNECTING:
            s.actions.append(CloseLink(link))
            return
        s.registration.link_up(srv, now, secure, resumed)

    def handshake_started(self, link: int, now: float, *, resuming: bool = False) -> None:
        """The runtime began a DTLS handshake on ``link`` (offering a kept session or not)."""
        if self._opening(link):
            self._shared.emit(ev.HandshakeStarted(now, _ssid_of(link), resuming))

    def handshake_retransmitted(
        self, link: int, now: float, attempt: int, next_timeout: float
    ) -> None:
        """A handshake flight on ``link`` went unanswered and was sent again (RFC 6347 §4.2.4)."""
        if self._opening(link):
            self._shared.emit(ev.HandshakeRetransmitted(now, _ssid_of(link), attempt, next_timeout))

    def _opening(self, link: int) -> bool:
        """Whether the engine is waiting for ``link`` to open."""
        s = self._shared
        if link == BOOTSTRAP_LINK:
            return s.bs.phase.public is BootstrapPhase.CONNECTING
        srv = s.servers.get(link)
        return srv is not None and srv.public_state is ServerState.CONNECTING

    def link_failed(self, link: int, failure: LinkFailure, now: float, detail: str = "") -> None:
        s = self._shared
        if link == BOOTSTRAP_LINK:
            s.bootstrap.link_failed(failure, detail or failure.value, now)
            return
        srv = s.servers.get(link)
        if srv is None or srv.public_state not in (
            ServerState.CONNECTING,
            ServerState.REGISTERING,
        ):
            return
        srv.channel.open = False
        srv.deadline = None
        # Spec §5/§10: by default handshake/network/internal failures while
        # connecting go to client-initiated bootstrap, else give up; the outer
        # loop retries (the Connect column of the failure table).
        reason = f"connect failed: {failure.value}"
        s.recovery.connect_failed(
            srv, failure.row, failure.code, detail or failure.value, reason, now
        )

    def datagram_received(self, link: int, data: bytes, now: float) -> None:
        s = self._shared
        if link == BOOTSTRAP_LINK:
            s.bootstrap.received(data, now)
        elif (srv := s.servers.get(link)) is not None:
            s.links.received(srv, data, now)

    def link_error(self, link: int, now: float) -> None:
        """ICMP (port/host unreachable) on an open link."""
        s = self._shared
        if link == BOOTSTRAP_LINK:
            s.bootstrap.unreachable(now)
        elif (srv := s.servers.get(link)) is not None:
            s.links.unreachable(srv, now)

    def poll(self, now: float) -> None:
        """Collect notifications the data model produced (after the application changed values).

        Also an input (:func:`_input`): the data model's requests are carried out, and
        the notifications they produced collected; NON ones alone leave :meth:`next_timer`.
        """
        moved = self._collect_notifications(now)
        if actions := self.objects.take_actions():
            _carry_out_model_actions(self, actions, now)
            self._collect_notifications(now)
            moved = True
        if moved:
            self._timer_stale = True

    def _collect_notifications(self, now: float) -> bool:
        """Send, store or drop the data model's notifications; whether a timer may have moved."""
        store = self._shared.store
        moved = False
        for note in self.objects.take_notifications(now):
            moved = store.notify(note, now) or moved
        return moved

    # ------------------------------------------------------------------ helpers
    def _require(self, ssid: int) -> ServerSession:
        try:
            return self._shared.servers[ssid]
        except KeyError as exc:
            raise NotAllowedError(f"no server with short server id {ssid}") from exc


def _carry_out_model_actions(
    engine: ClientEngine, actions: Sequence[ClientAction], now: float
) -> None:
    """Do what server operations on the data model asked of the engine (``client/actions.py``).

    Runs after every input (see :func:`_input`) that took any, so a Registration
    Update Trigger, Disable, Bootstrap-Request Trigger, a rewritten Server object
    or new instances take effect before the input's datagrams leave, in the
    order they were asked; no runtime needs to know these requests. The
    caller takes them (``objects.take_actions()``): nearly always none, and
    then this call is not made.
    """
    for action in actions:
        if isinstance(action, TriggerUpdate):
            if action.account is not None:
                if action.ssid in engine.server_states():
                    engine.update_account(action.account, now)
            elif engine.registered(action.ssid):
                engine.trigger_update(now, action.ssid)
        elif isinstance(action, DisableServer):
            engine.disable_server(action.ssid, now, action.timeout, executed=True)
        elif isinstance(action, RequestBootstrap):
            engine.request_bootstrap(now)
        elif isinstance(action, CancelObserve):
            srv = engine._shared.servers.get(action.ssid)
            if srv is not None:
                engine._shared.store.drop_observation(srv, action.token, now)
        else:
            engine.objects_changed(now)


#: The engine's inputs (besides :meth:`ClientEngine.poll`, which does the same
#: itself): each ends by carrying out what the data model asked (:func:`_input`).
_INPUTS = (
    "start",
    "close",
    "schedule_reconnect",
    "enable_server",
    "disable_server",
    "request_bootstrap",
    "enter_offline",
    "exit_offline",
    "network_changed",
    "trigger_update",
    "update_account",
    "send",
    "objects_changed",
    "respond",
    "link_up",
    "handshake_started",
    "handshake_retransmitted",
    "link_failed",
    "datagram_received",
    "link_error",
    "handle_timer",
)
for _name in _INPUTS:
    setattr(ClientEngine, _name, _input(getattr(ClientEngine, _name)))


def _own_timer(s: Shared) -> float | None:
    """The earliest scheduled action or link timer (all but the data model's)."""
    # A plain scan, no lists built (thousands of devices).
    best = s.reconnect.when if s.reconnect is not None else None
    purge = s.bs.purge  # the Bootstrap-Server Account Timeout, rarely set
    if purge is not None and (best is None or purge.when < best):
        best = purge.when
    owners: tuple[ServerSession | BootstrapSession, ...] = (*s.servers.values(), s.bs)
    for owner in owners:
        scheduled = owner.deadline
        if scheduled is not None and (best is None or scheduled.when < best):
            best = scheduled.when
        scheduled = owner.next
        if scheduled is not None and (best is None or scheduled.when < best):
            best = scheduled.when
        layer = owner.channel.layer
        when = layer.next_timer() if layer is not None else None
        if when is not None and (best is None or when < best):
            best = when
    return best


def _lifetime_left(registered_at: float, until: float | None) -> int:
    """The lifetime a registration was renewed for; 0 once the server refused it."""
    return 0 if until is None else round(until - registered_at)


def _fire_bootstrap(s: Shared, now: float) -> None:
    """The Bootstrap-Server's timers: the account's purge, its link, deadline, next action."""
    bs = s.bs
    s.bootstrap.purge_if_due(now)
    if bs.channel.layer is not None:
        bs.channel.layer.handle_timer(now)
        s.bootstrap.flush(now)
    deadline = bs.deadline
    if deadline is not None and deadline.when <= now:
        bs.deadline = None
        _BOOTSTRAP_STEPS[deadline.what](s, now)
    step = bs.next
    if step is not None and step.when <= now:
        bs.next = None
        _BOOTSTRAP_STEPS[step.what](s, now)


def _ssid_of(link: int) -> int | None:
    """The ``ssid`` field of an event about ``link`` (None: the Bootstrap-Server)."""
    return None if link == BOOTSTRAP_LINK else link


#: What each scheduled step does (module-level: built once, not per client).
_SERVER_STEPS: dict[Step, Callable[[Shared, ServerSession, float], None]] = {
    Step.CONNECT: lambda s, srv, now: s.registration.connect_due(srv, now),
    Step.REGISTER: lambda s, srv, now: s.registration.register_due(srv, now),
    Step.UPDATE: lambda s, srv, now: s.registration.update_due(srv, now),
    Step.SLEEP: lambda s, srv, now: s.registration.sleep(srv, now),
    Step.REGISTRATION_DEADLINE: lambda s, srv, now: s.recovery.registration_deadline(srv, now),
}
_BOOTSTRAP_STEPS: dict[Step, Callable[[Shared, float], None]] = {
    Step.BOOTSTRAP_REQUEST: lambda s, now: s.bootstrap.request_due(now),
    Step.BOOTSTRAP_DEADLINE: lambda s, now: s.bootstrap.deadline_due(now),
}
