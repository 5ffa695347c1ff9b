"""Recovery: the only part of the engine that reads the failure table.

Every failure arrives here as (request kind, failure row, §6 error) with the
request's circumstances; :meth:`FailureTable.decide` picks the action (its
overrides settle (†) and the 4.12 fallback), the ``error`` event reports it,
and a dict of handlers carries it out, one dict for servers and one for the
Bootstrap-Server. The spec's two loops live here as well: the §4 registration
retry procedure per server (inner) and the §2 reconnect schedule once no
server has a usable connection (outer, spec §9).
"""

from __future__ import annotations

from collections.abc import Callable

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine._channel import Failed, Pending
from aiolwm2m.client.engine._shared import Scheduled, ServerSession, Shared, Step
from aiolwm2m.client.engine._types import LinkFailure
from aiolwm2m.client.policy import (
    Action,
    Circumstance,
    Failure,
    ReconnectSchedule,
    RequestKind,
    action_reported,
)
from aiolwm2m.client.states import BootstrapPhase, ServerState, Trigger

__all__ = ["Recovery"]

#: Actions after which a failed notification is superseded by the next value.
_SUPERSEDED = frozenset({Action.IGNORE, Action.NOT_APPLICABLE, Action.NONE})
#: Actions that keep the failed notification for after re-registration: all that
#: leave the registration, not those that cancel it, wait or do nothing.
_KEEP_NOTIFICATION = (
    frozenset(Action)
    - _SUPERSEDED
    - {
        Action.CANCEL_OBSERVATION,
        Action.CANCEL_OBSERVATION_UNLESS_STORING,
        Action.WAIT_MAX_AGE,
    }
)


class Recovery:
    __slots__ = ("s", "schedule")

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self.schedule = ReconnectSchedule(shared.config.reconnect, shared.rng)

    # ------------------------------------------------------------------ servers
    def fail(
        self,
        srv: ServerSession,
        pending: Pending,
        failure: Failure,
        code: ev.ErrorCode,
        now: float,
        *,
        coap_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        """A request of ``srv`` failed: decide, report, act."""
        kind = pending.kind
        circumstances = pending.circumstances
        if srv.lwm2m_version != "1.1":
            circumstances |= {Circumstance.NO_LOWER_VERSION}
        action = self.s.table.decide(kind, failure, circumstances)
        reported = action if action_reported(kind, failure) else None
        request = ev.Request(kind.value)
        self.s.emit(ev.Error(now, code, srv.ssid, request, coap_code, reported, detail))
        self._apply(srv, pending, action, now, f"{kind.value} failed")

    def connect_failed(
        self,
        srv: ServerSession,
        failure: Failure,
        code: ev.ErrorCode,
        detail: str,
        reason: str,
        now: float,
    ) -> None:
        """The link did not open, or no registration came in time while connecting."""
        action = self.s.table.decide(RequestKind.CONNECT, failure, frozenset())
        request = ev.Request.CONNECT
        self.s.emit(ev.Error(now, code, ssid=srv.ssid, request=request, detail=detail))
        self._apply(srv, Pending(RequestKind.CONNECT, False), action, now, reason)

    def send_failed(
        self,
        srv: ServerSession,
        send_id: int,
        failure: Failure,
        code: ev.ErrorCode,
        now: float,
        coap_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        action = self.s.table.decide(RequestKind.SEND, failure, frozenset())
        self.s.send_failed(srv, send_id, code, now, coap_code, detail, action)
        self._apply(srv, Pending(RequestKind.SEND, False), action, now, "send failed")

    def registration_deadline(self, srv: ServerSession, now: float) -> None:
        """Step REGISTRATION_DEADLINE: no registration within ``registration.timeout``."""
        if srv.public_state is ServerState.CONNECTING:
            self.s.links.close(srv)
            detail = "no registration within the registration timeout"
            reason = "registration timeout while connecting"
            code = ev.ErrorCode.TIMEOUT
            self.connect_failed(srv, Failure.TIMEOUT_NOSEC, code, detail, reason, now)
            return
        layer = srv.channel.layer
        if srv.public_state is not ServerState.REGISTERING or layer is None:
            return
        for key, pending in list(srv.channel.inflight.items()):
            if pending.kind is RequestKind.REGISTER:
                layer.cancel(key, now)
                del srv.channel.inflight[key]
                failure = Failure.TIMEOUT_DTLS if srv.channel.secure else Failure.TIMEOUT_NOSEC
                self.fail(srv, pending, failure, ev.ErrorCode.TIMEOUT, now)
                return

    def _apply(
        self, srv: ServerSession, pending: Pending, action: Action, now: float, reason: str
    ) -> None:
        note = pending.notification
        if note is not None and (
            action is Action.CANCEL_OBSERVATION
            or (
                action is Action.CANCEL_OBSERVATION_UNLESS_STORING
                and not srv.account.notification_storing
            )
        ):
            # Several notifications of one observation can be out (NON ones
            # remembered for a late Reset, CON ones with NSTART above 1): a
            # server that forgot it Resets each, and each is reported above, but
            # the observation ends, and is reported, with the first.
            if self.s.model.cancel_observation(srv.ssid, note.token, action.value):
                self.s.emit(ev.ObservationCancelled(now, srv.ssid, note.path, action.value))
            # Its notifications not yet sent never are: each would draw another
            # Reset (RFC 7641 §3.6).
            self.s.store.drop_observation(srv, note.token, now)
            return
        if pending.kind.ends_session:
            self.s.registration.finish_deregister(srv, now, acknowledged=False)
            return
        if note is not None and action in _SUPERSEDED:
            # Spec §10: a timed-out notification is superseded by the next value;
            # it is counted with the dropped ones so nothing vanishes unaccounted.
            srv.stored_dropped += 1
            return
        if note is not None and action in _KEEP_NOTIFICATION:
            # The server became unreachable: kept for after re-registration like
            # a notification produced offline.
            self.s.store.requeue_unacked(srv, note)
        _SERVER_HANDLERS[action](self, srv, pending.kind, reason, now)

    def _fallback_register(
        self, srv: ServerSession, _kind: RequestKind, _r: str, now: float
    ) -> None:
        """Spec §10: the server refused (or lost) the registration: no link resumes it."""
        srv.registered_until = None
        if srv.channel.open and srv.channel.layer is not None:
            self.s.registration.send_register(srv, now, Trigger.FALLBACK_REGISTER)
        else:
            self.s.registration.revive(srv, now, Trigger.FALLBACK_REGISTER, register=True)

    def _retry_handshake(self, srv: ServerSession, kind: RequestKind, _r: str, now: float) -> None:
        """A new session, then the same kind of request: a Register again, else the
        registration is resumed (spec §10: never the same session after a timeout)."""
        self.s.links.close(srv)
        self.s.registration.connect(srv, now, Trigger.RETRY_HANDSHAKE)
        srv.must_register = kind is RequestKind.REGISTER

    def _retry_lwm2m_1_0(
        self, srv: ServerSession, kind: RequestKind, reason: str, now: float
    ) -> None:
        srv.lwm2m_version = "1.0"  # spec §10: version fallback, then Register at once
        self._fallback_register(srv, kind, reason, now)

    def _wait_max_age(self, srv: ServerSession, kind: RequestKind, _r: str, now: float) -> None:
        """Spec §7: the same request again once the Max-Age (4.29, 5.03) is over."""
        if kind is RequestKind.REGISTER:
            srv.deadline = None
            srv.next = Scheduled(srv.rate_limited_until, Step.REGISTER)
            self.s.move(srv, Trigger.WAIT_MAX_AGE, now)
        elif kind is RequestKind.UPDATE:
            if srv.state is ServerState.RESUMING:
                srv.deadline = None  # the server answered: the wait is its, not a timeout
            srv.next = Scheduled(srv.rate_limited_until, Step.UPDATE)

    def _abort_registration(self, srv: ServerSession, _k: RequestKind, _r: str, now: float) -> None:
        self.abort_registration(srv, now)

    def _bootstrap(self, srv: ServerSession, _kind: RequestKind, reason: str, now: float) -> None:
        self.bootstrap_or_abort(srv, now, reason)

    def _abort_all_servers(self, _srv: ServerSession, _k: RequestKind, _r: str, now: float) -> None:
        self._abort_all(now)

    def _nothing(self, _srv: ServerSession, _kind: RequestKind, _reason: str, _now: float) -> None:
        return None

    def _abort_all(self, now: float) -> None:
        for other in self.s.servers.values():
            self.s.links.stop(other, Trigger.ABORT_ALL, now)
        self.check_all_failed(now)

    def abort_registration(self, srv: ServerSession, now: float) -> None:
        """Spec §4: the registration retry procedure for this server."""
        self.s.links.close(srv)  # a retry starts clean: no socket held while waiting
        srv.deadline = None
        self.s.registration.settled(srv, now, failed=True)
        delay = srv.retry.on_failure()
        if delay is not None:
            self.s.move(srv, Trigger.ABORT_REGISTRATION, now)
            srv.next = Scheduled(now + delay, Step.CONNECT)
            self.s.emit(
                ev.RetryScheduled(now, srv.ssid, delay, srv.retry.attempt, srv.retry.sequence)
            )
            return
        srv.retry.reset()
        if srv.account.retry.bootstrap_on_registration_failure:
            self.bootstrap_or_abort(srv, now, "registration failed")
        else:
            self.give_up(srv, now, "registration failed")

    def bootstrap_or_abort(self, srv: ServerSession, now: float, reason: str) -> None:
        """Client-initiated bootstrap if (B) holds, else abort this server (spec §3 (B)).

        (B): a Bootstrap-Server account exists, no other server is registered
        (has a usable connection), and the bootstrap account has not itself
        failed since the outer loop last retried it.
        """
        if (
            self.s.bootstrap_account is None
            or self.s.closing
            or self.s.bs.phase is BootstrapPhase.FAILED
            or any(
                o is not srv and o.public_state is ServerState.REGISTERED
                for o in self.s.servers.values()
            )
        ):
            self.give_up(srv, now, reason)
            return
        self.s.links.stop(srv, Trigger.BOOTSTRAP, now)
        self.s.bootstrap.begin(now)

    def give_up(self, srv: ServerSession, now: float, reason: str) -> None:
        self.s.links.stop(srv, Trigger.GIVE_UP, now)
        self.s.emit(ev.ServerGaveUp(now, srv.ssid, reason))
        self.s.registration.settled(srv, now, failed=True)
        self.check_all_failed(now)

    # ------------------------------------------------------------------ Bootstrap-Server
    def bootstrap_request_failed(
        self, pending: Pending, failed: Failed, code: ev.ErrorCode, detail: str | None, now: float
    ) -> None:
        """The Bootstrap-Request column of the failure table (spec §3)."""
        kind = RequestKind.BOOTSTRAP_REQUEST
        action = self.s.table.decide(kind, failed.failure, pending.circumstances)
        reported = action if action_reported(kind, failed.failure) else None
        request = ev.Request.BOOTSTRAP_REQUEST
        self.s.emit(
            ev.Error(
                now,
                code,
                request=request,
                coap_code=failed.coap_code,
                action=reported,
                detail=detail,
            )
        )
        _BOOTSTRAP_HANDLERS.get(action, Recovery._bootstrap_failed)(self, now)

    def bootstrap_connect_failed(self, failure: LinkFailure, detail: str, now: float) -> None:
        """Spec §5: stop talking to the Bootstrap-Server; with no regular server
        left (all wait in BOOTSTRAPPING) that aborts all communication."""
        action = self.s.table.decide(RequestKind.CONNECT, failure.row, frozenset())
        request = ev.Request.BOOTSTRAP_CONNECT
        self.s.emit(ev.Error(now, failure.code, request=request, detail=detail))
        _BOOTSTRAP_HANDLERS.get(action, Recovery._bootstrap_failed)(self, now)

    def _abort_all_bootstrap(self, now: float) -> None:
        for srv in self.s.servers.values():
            self.s.links.stop(srv, Trigger.ABORT_ALL, now)
        self.s.bootstrap.failed(now)

    def _bootstrap_failed(self, now: float) -> None:
        self.s.bootstrap.failed(now)

    def _bootstrap_retry_handshake(self, now: float) -> None:
        self.s.bootstrap.retry_handshake(now)

    def _bootstrap_wait_max_age(self, now: float) -> None:
        self.s.bootstrap.wait_max_age(now)

    def _bootstrap_wait(self, _now: float) -> None:
        """Wait: the Finish deadline still ends a bootstrap that never comes."""

    # ------------------------------------------------------------------ the outer loop
    def registered(self) -> None:
        """A success resets the §2 schedule."""
        self.schedule.reset()
        self.s.all_failed = False

    def check_all_failed(self, now: float) -> None:
        """No server has a usable connection any more: report, and schedule the outer loop."""
        s = self.s
        if s.closing or s.all_failed or s.bs.running:
            return
        if any(
            srv.public_state not in (ServerState.FAILED, ServerState.SUSPENDED, ServerState.IDLE)
            for srv in s.servers.values()
        ):
            return
        bootstrap_failed = s.bs.phase is BootstrapPhase.FAILED
        failed = [srv for srv in s.servers.values() if srv.state is ServerState.FAILED]
        if not bootstrap_failed and not failed:
            return
        s.all_failed = True
        s.emit(ev.AllConnectionsFailed(now))
        retry_bootstrap = bootstrap_failed and s.bootstrap_account is not None
        if s.config.reconnect.enabled and (
            retry_bootstrap or any(srv.uri is not None for srv in failed)
        ):
            channels = [srv.channel for srv in s.servers.values()] + [s.bs.channel]
            round_trip = max(channel.round_trip for channel in channels)
            delay = self.schedule.next_delay(round_trip)
            s.reconnect = Scheduled(now + delay, Step.RECONNECT)
            s.emit(ev.ReconnectScheduled(now, delay, self.schedule.attempts))

    def network_changed(self, now: float) -> None:
        """The network is back (or changed): pending reconnect and retry waits end soon.

        Every wait of the outer loop or of the §4 retry procedure ends within
        a random delay of at most ``[reconnect] network_change_window`` s,
        drawn once per call (one client, one instant; a fleet spreads out).
        Waits the server asked for (Max-Age) and the configured delays (initial
        registration, Disable) are left alone.
        """
        s = self.s
        delay = s.rng.uniform(0.0, s.config.reconnect.network_change_window)
        due = now + delay
        cut = 0
        if s.reconnect is not None and s.reconnect.when > due:
            s.reconnect = Scheduled(due, Step.RECONNECT)
            cut += 1
        for srv in s.servers.values():
            step = srv.next
            if srv.state is ServerState.BACKOFF and step is not None and step.when > due:
                srv.next = Scheduled(due, step.what)
                cut += 1
        s.emit(ev.NetworkChanged(now, cut, delay))

    def reconnect_due(self, now: float) -> None:
        """Step RECONNECT: retry every failed server, and the Bootstrap-Server."""
        self.s.reconnect = None
        self.reconnect((ServerState.FAILED,), now)

    def reconnect(self, states: tuple[ServerState, ...], now: float) -> None:
        """Revive every started server in one of ``states``; bootstrap alone if none was."""
        self.s.all_failed = False
        revived = False
        for srv in self.s.servers.values():
            if srv.uri is not None and srv.public_state in states:
                self.s.registration.revive(srv, now)
                revived = True
        self.s.bootstrap.reconnect(revived, now)


#: How each action is carried out for a server (class-level: built once, not per client).
_SERVER_HANDLERS: dict[
    Action, Callable[[Recovery, ServerSession, RequestKind, str, float], None]
] = {
    Action.FALLBACK_REGISTER: Recovery._fallback_register,
    Action.RETRY_HANDSHAKE: Recovery._retry_handshake,
    Action.ABORT_REGISTRATION: Recovery._abort_registration,
    Action.BOOTSTRAP: Recovery._bootstrap,
    Action.ABORT_ALL: Recovery._abort_all_servers,
    Action.RETRY_LWM2M_1_0: Recovery._retry_lwm2m_1_0,
    Action.WAIT_MAX_AGE: Recovery._wait_max_age,
    Action.IGNORE: Recovery._nothing,
    Action.CANCEL_OBSERVATION: Recovery._nothing,  # done before dispatch, with the notification
    Action.CANCEL_OBSERVATION_UNLESS_STORING: Recovery._nothing,
    Action.NONE: Recovery._nothing,
    Action.NOT_APPLICABLE: Recovery._nothing,
}

#: How each action is carried out for the Bootstrap-Server; any other fails the attempt.
_BOOTSTRAP_HANDLERS: dict[Action, Callable[[Recovery, float], None]] = {
    Action.RETRY_HANDSHAKE: Recovery._bootstrap_retry_handshake,
    Action.WAIT_MAX_AGE: Recovery._bootstrap_wait_max_age,
    Action.ABORT_ALL: Recovery._abort_all_bootstrap,
    Action.IGNORE: Recovery._bootstrap_wait,
    Action.NOT_APPLICABLE: Recovery._bootstrap_wait,
    Action.NONE: Recovery._bootstrap_wait,
}
