"""The bootstrap flow: open the Bootstrap-Server link, wait the hold-off, request,
take the server's operations, and at Bootstrap-Finish hand the new server set
over to registration (as wsproto's façade hands over from handshake to
connection).

The operations themselves are answered by
:class:`~aiolwm2m.client.bootstrap.BootstrapHandler` on a copy of the
accounts, so a bootstrap that fails half-way changes nothing. What a failed
Request or link does is the failure table's business (``_recovery.py``).
"""

from __future__ import annotations

from dataclasses import replace

from aiolwm2m.accounts import (
    InvalidParameters,
    ServerAccount,
    check_security,
    parse_server_uri,
)
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
from aiolwm2m.client.engine._channel import Failed, classify, wait_detail
from aiolwm2m.client.engine._shared import Scheduled, Shared, Step
from aiolwm2m.client.engine._types import BOOTSTRAP_LINK, CloseLink, LinkFailure
from aiolwm2m.client.policy import Failure, RequestKind
from aiolwm2m.client.states import BootstrapPhase, BootstrapTrigger, ServerState, Trigger
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest
from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.linkformat import ObjectEntry

__all__ = ["BOOTSTRAP_HOLD_OFF_CAP", "BOOTSTRAP_PREFERRED_FORMAT", "BootstrapFlow"]

#: Content format announced as ``pct`` in the Bootstrap-Request (SenML CBOR).
BOOTSTRAP_PREFERRED_FORMAT = 112
#: Spec §10: the doubling bootstrap hold-off never exceeds this (unless /0/x/11 itself does).
BOOTSTRAP_HOLD_OFF_CAP = 20.0

_B = BootstrapTrigger


class BootstrapFlow:
    __slots__ = ("bs", "s")

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self.bs = shared.bs

    # ------------------------------------------------------------------ start
    def begin(self, now: float) -> None:
        """Open the Bootstrap-Server link; servers wait in BOOTSTRAPPING until Finish.

        Every server not suspended by the application is stopped: the
        bootstrap will replace the server set, and (B) only holds when none of
        them has a usable connection anyway.
        """
        for srv in self.s.servers.values():
            if srv.public_state not in (ServerState.SUSPENDED, ServerState.BOOTSTRAPPING):
                self.s.links.stop(srv, Trigger.BOOTSTRAP, now)
        bs = self.bs
        if bs.running and bs.phase is not BootstrapPhase.LEAVING:
            return
        account = self.s.bootstrap_account
        assert account is not None
        try:
            uri = parse_server_uri(account.uri)
            check_security(account, uri)
        except InvalidParameters as exc:
            code = ev.ErrorCode.INVALID_PARAMETERS
            request = ev.Request.BOOTSTRAP_REQUEST
            self.s.emit(ev.Error(now, code, request=request, detail=f"bootstrap account: {exc}"))
            # Spec §6 invalid parameters: no retry until reconfigured.
            self.s.bootstrap_account = None
            self.failed(now)
            return
        bs.account, bs.uri = account, uri
        version = self.s.config.registration.lwm2m_version  # what Register announces too
        bs.handler = BootstrapHandler(
            self.s.provisioning(), self._object_entries(version), lwm2m_version=version
        )
        bs.move(_B.BEGIN)
        self.s.emit(ev.BootstrapStarted(now, str(uri)))
        bs.channel.connect(uri, account)

    def requested(self, now: float) -> None:
        """Bootstrap-Request Trigger (/1/x/9) executed: a client-initiated bootstrap.

        As Leshan's client does, every registered server is de-registered
        first (its registration would otherwise linger until its lifetime
        ends); the bootstrap begins when the last De-register is over. One
        already under way is left to finish.
        """
        bs = self.bs
        if self.s.bootstrap_account is None:
            self.s.not_allowed(now, "Bootstrap-Request Trigger without a Bootstrap-Server account")
            return
        if bs.running:
            return
        bs.move(_B.TRIGGERED)
        for srv in list(self.s.servers.values()):
            if srv.state is ServerState.REGISTERED:
                self.s.registration.deregister(srv, now)
        self.deregistered(now)

    def deregistered(self, now: float) -> None:
        """A De-register is over: a triggered bootstrap begins once none is left."""
        if self.bs.phase is BootstrapPhase.LEAVING and not any(
            srv.state is ServerState.DEREGISTERING for srv in self.s.servers.values()
        ):
            self.begin(now)

    def _object_entries(self, lwm2m_version: str) -> dict[int, ObjectEntry]:
        """The application's objects, for Bootstrap-Discover (from its Register payload)."""
        try:
            payload = self.s.model.registration_payload(lwm2m_version)
            return dict(linkformat.parse_registration(linkformat.decode(payload)).objects)
        except Exception:  # the object tree's problem must not stop a bootstrap
            return {}

    def _hold_off(self) -> float:
        """Spec §10: max(1 s, /0/x/11) × a factor in [1, 1.5] drawn once, ×2 per failure."""
        bs = self.bs
        if bs.factor is None:
            bs.factor = self.s.rng.uniform(1.0, 1.5)
        account = self.s.bootstrap_account
        hold_off = account.client_hold_off_time if account is not None else 0.0
        base = max(1.0, hold_off) * bs.factor
        return min(base * 2.0**bs.failures, max(BOOTSTRAP_HOLD_OFF_CAP, base))

    # ------------------------------------------------------------------ the link
    def link_up(self, now: float, secure: bool, resumed: bool) -> None:
        bs = self.bs
        if bs.phase.public is not BootstrapPhase.CONNECTING:
            self.s.actions.append(CloseLink(BOOTSTRAP_LINK))
            return
        bs.channel.up(secure)
        if secure:
            self.s.emit(ev.HandshakeDone(now, None, resumed))
        if bs.phase is BootstrapPhase.RECONNECTING:
            self._request(now, _B.LINK_UP)
            return
        # The link is open during the hold-off so a Bootstrap-Server may start a
        # server-initiated bootstrap on it; the Request goes out when it ends.
        bs.move(_B.LINK_UP)
        bs.next = Scheduled(now + self._hold_off(), Step.BOOTSTRAP_REQUEST)

    def link_failed(self, failure: LinkFailure, detail: str, now: float) -> None:
        if self.bs.phase.public is not BootstrapPhase.CONNECTING:
            return
        self.bs.channel.open = False
        self.s.recovery.bootstrap_connect_failed(failure, detail, now)

    def received(self, data: bytes, now: float) -> None:
        channel = self.bs.channel
        if channel.layer is not None and channel.open:
            channel.layer.receive(data, now)
            self.flush(now)

    def unreachable(self, now: float) -> None:
        if self.bs.channel.layer is not None:
            self.bs.channel.layer.network_error(now)
            self.flush(now)

    def retry_handshake(self, now: float) -> None:
        """(†)-checked handshake retry: reopen the link and send the Request at once."""
        bs = self.bs
        if bs.uri is None or bs.account is None:
            self.failed(now)
            return
        bs.channel.close()
        bs.move(_B.RETRY_HANDSHAKE)
        bs.deadline = None
        bs.channel.connect(bs.uri, bs.account)

    # ------------------------------------------------------------------ the Request
    def _request(self, now: float, trigger: BootstrapTrigger) -> None:
        bs = self.bs
        bs.move(trigger)
        bs.next = None
        query = [f"ep={self.s.config.endpoint}"]
        if self.s.config.registration.lwm2m_version == "1.1":
            query.append(f"pct={BOOTSTRAP_PREFERRED_FORMAT}")
        msg = Message(
            type=MessageType.CON, code=Code.POST, options=make_options(path=["bs"], query=query)
        )
        kind = RequestKind.BOOTSTRAP_REQUEST
        try:
            bs.channel.request(kind, msg, now)
        except (MemoryError, ValueError) as exc:
            failed = Failed(Failure.INTERNAL, ev.ErrorCode.MEMORY)
            detail = f"could not build the Bootstrap-Request: {exc!r}"
            pending = bs.channel.pending(kind)
            self.s.recovery.bootstrap_request_failed(pending, failed, failed.code, detail, now)
            return
        bs.deadline = Scheduled(now + self.s.config.coap.exchange_lifetime, Step.BOOTSTRAP_DEADLINE)
        self.flush(now)

    def request_due(self, now: float) -> None:
        """Step BOOTSTRAP_REQUEST: the hold-off (or a 4.29's Max-Age) is over."""
        if self.bs.channel.open:
            self._request(now, _B.REQUEST)

    def deadline_due(self, now: float) -> None:
        """Step BOOTSTRAP_DEADLINE: no Bootstrap-Finish within EXCHANGE_LIFETIME."""
        if self.bs.running:
            self.s.emit(
                ev.Error(
                    now,
                    ev.ErrorCode.TIMEOUT,
                    request=ev.Request.BOOTSTRAP_FINISH,
                    detail="no Bootstrap-Finish within EXCHANGE_LIFETIME of the last operation",
                )
            )
            self.failed(now)

    def wait_max_age(self, now: float) -> None:
        """A 4.29 or 5.03 to the Request: hold off for its Max-Age, then request again (§7)."""
        bs = self.bs
        bs.move(_B.WAIT_MAX_AGE)
        bs.next = Scheduled(bs.rate_limited_until, Step.BOOTSTRAP_REQUEST)
        bs.deadline = None

    # ------------------------------------------------------------------ traffic
    def flush(self, now: float) -> None:
        channel = self.bs.channel
        layer = channel.layer
        if layer is None:
            return
        while (event := layer.next_event()) is not None:
            if isinstance(event, ExchangeResult):
                self._result(event, now)
            else:
                self._operation(event, now)
            if channel.layer is not layer:  # finished, failed or reopened while handling
                return
        if channel.new_malformed():
            self.s.malformed(now, None, "Bootstrap-Server")
        channel.send_datagrams()

    def _operation(self, req: IncomingRequest, now: float) -> None:
        bs = self.bs
        layer = bs.channel.layer
        assert layer is not None
        if layer.refuse_unknown_critical(req, now):
            return
        bs.channel.fresh = False  # the server holds the session
        if bs.handler is None or bs.phase.public is BootstrapPhase.CONNECTING:
            layer.respond(req.key, Message(code=Code.SERVICE_UNAVAILABLE), now)
            return
        # Operations before (or without) our Request: a server-initiated bootstrap.
        bs.move(_B.OPERATION)
        bs.next = None
        bs.deadline = Scheduled(now + self.s.config.coap.exchange_lifetime, Step.BOOTSTRAP_DEADLINE)
        try:
            reply = bs.handler.handle(req.message)
        except Exception as exc:  # a bug in a handler must not take the client down
            detail = f"bootstrap handler: {exc!r}"
            self.s.emit(ev.Error(now, ev.ErrorCode.INTERNAL_ERROR, detail=detail))
            layer.respond(req.key, Message(code=Code.INTERNAL_SERVER_ERROR), now)
            return
        layer.respond(req.key, reply.response, now)
        if reply.accounts is not None:
            self._finish(reply.accounts, now)

    def _result(self, result: ExchangeResult, now: float) -> None:
        bs = self.bs
        pending = bs.channel.inflight.pop(result.key, None)
        bs.channel.heard(pending, result.outcome, now)
        if pending is None or bs.phase is not BootstrapPhase.REQUESTING:
            return  # the server already started operating: the Request did its job
        outcome = classify(result, secure=bs.channel.secure)
        if not isinstance(outcome, Failed):
            bs.move(_B.ACCEPTED)
            bs.deadline = Scheduled(
                now + self.s.config.coap.exchange_lifetime, Step.BOOTSTRAP_DEADLINE
            )
            return
        resp = outcome.response
        code = outcome.code
        if resp is not None and resp.code == Code.BAD_REQUEST:
            # Spec §6: "quota reached" is a 4.00 whose diagnostic names the quota.
            quota = b"quota" in resp.payload.lower()
            code = ev.ErrorCode.QUOTA_REACHED if quota else ev.ErrorCode.BAD_REQUEST
        wait = outcome.retry_after(self.s.config.registration.max_retry_after)
        if wait is not None:
            bs.rate_limited_until = now + wait
            detail: str | None = wait_detail(wait)
        else:
            detail = outcome.diagnostic
        self.s.recovery.bootstrap_request_failed(pending, outcome, code, detail, now)

    # ------------------------------------------------------------------ the end
    def _finish(self, accounts: list[ServerAccount], now: float) -> None:
        """Bootstrap-Finish accepted: new server set, then registration takes over."""
        bs = self.bs
        assert bs.handler is not None
        self.adopt_account(bs.handler.provisioning)
        self._arm_purge(now)
        self._stop(_B.FINISHED, now)
        bs.failures = 0
        old = self.s.servers
        for srv in old.values():
            self.s.links.stop(srv, Trigger.BOOTSTRAP_FINISHED, now)
            self.s.model.drop_observations(srv.ssid)
        self.s.set_accounts(tuple(accounts))
        self.s.accounts_replaced()
        for srv in self.s.servers.values():
            kept = old.get(srv.ssid)
            if kept is not None and kept.account.uri == srv.account.uri:
                srv.stored = kept.stored  # same server: its stored notifications still count
                srv.stored_dropped = kept.stored_dropped
        self.s.changed()
        self.s.emit(ev.Bootstrapped(now, sorted(self.s.servers)))
        self.s.registration.start_servers(now)

    def adopt_account(self, provisioning: Provisioning) -> None:
        """Take the Bootstrap-Server account from ``provisioning`` if a bootstrap rewrote
        it, and in any case the Security instance id it has there.

        An untouched instance keeps the configured account (it knows more than
        /0 says: certificate files, CA list); only its instance id follows.
        """
        ours = self.s.provisioning().bootstrap_instance()
        theirs = provisioning.bootstrap_instance()
        if theirs is None:
            return
        account = self.s.bootstrap_account
        if ours is None or ours[1] != theirs[1]:
            account = provisioning.bootstrap_account() or account
        if account is not None and account.security_instance != theirs[0]:
            account = replace(account, security_instance=theirs[0])
        self.s.bootstrap_account = account

    def _arm_purge(self, now: float) -> None:
        """Start the Bootstrap-Server Account Timeout (/0/x/12) from this Finish.

        Core 1.1.1 §5.2 (Client Initiated Bootstrap, step 3) purges the account
        "after" the timeout once bootstrapping succeeded, i.e. from the Finish
        answered 2.04, as Anjay does; each successful Finish starts it anew
        (0 or absent: never, and an earlier deadline is dropped). A factory
        account's configured timeout starts here too, never before a bootstrap.
        """
        account = self.s.bootstrap_account
        timeout = account.bootstrap_account_timeout if account is not None else 0
        self.bs.purge = Scheduled(now + timeout, Step.BOOTSTRAP_PURGE) if timeout > 0 else None

    def restore_purge(self, purge_at: float | None, purged: bool) -> None:
        """Take back the timeout's state from a snapshot (see ``Snapshot``)."""
        if purged:
            # Purged for good: the configured account does not come back either.
            self.s.bootstrap_account = None
            self.bs.purged = True
        elif purge_at is not None:
            self.bs.purge = Scheduled(purge_at, Step.BOOTSTRAP_PURGE)

    def purge_if_due(self, now: float) -> None:
        """Step BOOTSTRAP_PURGE, if due: the account goes; a bootstrap still using it fails.

        Afterwards (B) never holds again (as with no account configured), and
        the purge is persisted so a restart does not bring the account back.
        """
        bs = self.bs
        if bs.purge is None or bs.purge.when > now:
            return
        bs.purge = None
        account = self.s.bootstrap_account
        if account is None:
            return
        self.s.bootstrap_account = None
        bs.purged = True
        self.s.changed()
        self.s.emit(ev.BootstrapAccountPurged(now, account.uri))
        if bs.running:
            self.failed(now)

    def failed(self, now: float) -> None:
        """This attempt failed: (B) stops holding until the outer loop retries."""
        self._stop(_B.FAIL, now)
        self.bs.failures += 1
        for srv in self.s.servers.values():
            if srv.state is ServerState.BOOTSTRAPPING:
                self.s.move(srv, Trigger.BOOTSTRAP_FAILED, now)
        self.s.recovery.check_all_failed(now)

    def reconnect(self, revived: bool, now: float) -> None:
        """Outer loop: the bootstrap account may be tried again; alone if no server revived."""
        if self.bs.phase is BootstrapPhase.FAILED:
            self.bs.move(_B.RECONNECT)
        if not revived and self.s.bootstrap_account is not None and not self.bs.running:
            self.begin(now)

    def stop(self, now: float) -> None:
        """close() or enter_offline(): no bootstrap from now on."""
        self._stop(_B.STOP, now)

    def _stop(self, trigger: BootstrapTrigger, now: float) -> None:
        bs = self.bs
        bs.channel.cancel_all(now)
        bs.channel.close(opening=bs.phase.public is BootstrapPhase.CONNECTING)
        bs.move(trigger)
        bs.next = bs.deadline = None
        bs.handler = None
