"""Registration exchanges: Register, Update, De-register, in order and on time.

Covers what the interface says about *when* and *what* to send: the
registration order of Server /1/x/13-15, the Update schedule (spec §10:
lifetime/2 if shorter than MAX_TRANSMIT_WAIT, else lifetime − MTW; ≥ 1 s),
an Update that carries only what changed (lifetime, binding, object list),
what a new link sends first (spec §10: an Update that resumes a registration
not expired by the client's clock, unless the failure table forced a
Register), queue mode's sleep and wake-up, and what a successful answer does —
including ending the server's observations when a Register replaced the
registration they belonged to. What a *failed* answer does is recovery's
business (``_recovery.py``).

Queue mode is spelled the way the registered version knows it
(:func:`registration_parameters`): LwM2M 1.0 appends ``Q`` to the binding
(``b=UQ``); 1.1 removed that letter (Leshan refuses ``b=UQ`` with 4.00) and
has a parameter of its own, ``Q`` without a value, that only Register carries
(Core 1.1.1 §6.2.1, §6.2.2: an Update has ``lt``, ``b``, ``sms`` and the
object list). So when queue mode changes under a 1.1 registration the client
registers again instead of updating.
"""

from __future__ import annotations

from aiolwm2m.accounts import (
    InvalidParameters,
    ServerAccount,
    check_security,
    parse_server_uri,
)
from aiolwm2m.client import events as ev
from aiolwm2m.client.engine._channel import Pending
from aiolwm2m.client.engine._shared import Scheduled, ServerSession, Shared, Step
from aiolwm2m.client.policy import Failure, RequestKind, disable_wait
from aiolwm2m.client.states import ServerState, Trigger
from aiolwm2m.coap.message import CoapDecodeError, Code, Message, MessageType, make_options

__all__ = [
    "CONTENT_FORMAT_LINK",
    "UPDATE_PARAMETERS",
    "Registration",
    "registration_parameters",
]

CONTENT_FORMAT_LINK = 40
#: The registration parameters an Update may carry (Core 1.1.1 §6.2.2); any
#: other one that changed (1.1's ``Q``) needs a new Register.
UPDATE_PARAMETERS = frozenset({"lt", "b"})


def registration_parameters(account: ServerAccount, lwm2m_version: str) -> dict[str, str | None]:
    """Lifetime, binding and queue mode as ``lwm2m_version`` spells them (None: no value).

    The account keeps the binding in the Server object's 1.0 form ("U", "UQ"),
    which is also what the configuration file and a server writing /1/x/7 use.
    """
    params: dict[str, str | None] = {"lt": str(account.lifetime)}
    if lwm2m_version == "1.0":
        params["b"] = account.binding
    else:
        params["b"] = account.binding.replace("Q", "")
        if "Q" in account.binding:
            params["Q"] = None
    return params


def _register_only(params: dict[str, str | None]) -> dict[str, str | None]:
    return {key: value for key, value in params.items() if key not in UPDATE_PARAMETERS}


def _query(params: dict[str, str | None]) -> list[str]:
    return [key if value is None else f"{key}={value}" for key, value in params.items()]


class Registration:
    __slots__ = ("_order", "_order_head", "s")

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        # Servers waiting for their registration turn. Lists, not deques, here and in the
        # engine's other short queues: an empty deque costs a 760-byte block per client.
        self._order: list[int] = []
        self._order_head: int | None = None  # the server whose turn it is

    # ------------------------------------------------------------------ order (/1/x/13-15)
    def start_servers(self, now: float) -> None:
        """Start every server, in the registration order of Server /1/x/13-15.

        Servers with a Registration Priority Order register one after another
        in increasing order, each after its Initial Registration Delay counted
        from when the previous one finished registering; a failed registration
        passes the turn on unless that server's Registration Failure Block is
        set. Servers without a priority are not held by the others (TS 1.1.1
        table 6.2.1.1-1).
        """
        servers = self.s.servers.values()
        ordered = sorted(
            (s for s in servers if s.account.registration_priority is not None),
            key=lambda s: (s.account.registration_priority, s.ssid),
        )
        self._order = [s.ssid for s in ordered]
        self._order_head = None
        for srv in list(servers):
            if srv.account.registration_priority is None:
                self._start(srv, now)
        self._next_in_order(now)

    def _next_in_order(self, now: float) -> None:
        while self._order:
            srv = self.s.servers.get(self._order.pop(0))
            if srv is None:
                continue
            self._order_head = srv.ssid
            self._start(srv, now)
            if srv.state is not ServerState.FAILED:  # else invalid: the next one's turn
                return
        self._order_head = None

    def settled(self, srv: ServerSession, now: float, *, failed: bool) -> None:
        """The server whose turn it is registered, or failed to: maybe start the next."""
        if srv.ssid != self._order_head:
            return
        if failed and srv.account.registration_failure_block:
            return  # the others wait until this one registers
        self._order_head = None
        self._next_in_order(now)

    def _start(self, srv: ServerSession, now: float) -> None:
        try:
            srv.uri = parse_server_uri(srv.account.uri)
            check_security(srv.account, srv.uri)
        except InvalidParameters as exc:
            self.s.emit(
                ev.Error(now, ev.ErrorCode.INVALID_PARAMETERS, ssid=srv.ssid, detail=str(exc))
            )
            self.s.move(srv, Trigger.INVALID, now)
            return
        if srv.account.initial_registration_delay > 0:
            srv.next = Scheduled(now + srv.account.initial_registration_delay, Step.CONNECT)
            self.s.move(srv, Trigger.DELAY, now)
        else:
            self.connect(srv, now)

    # ------------------------------------------------------------------ the link
    def connect(self, srv: ServerSession, now: float, trigger: Trigger = Trigger.START) -> None:
        """Ask for the link; the registration timeout runs from the first attempt."""
        assert srv.uri is not None
        self.s.move(srv, trigger, now)
        self._start_deadline(srv, now)
        srv.channel.connect(srv.uri, srv.account)

    def revive(
        self,
        srv: ServerSession,
        now: float,
        trigger: Trigger = Trigger.START,
        *,
        register: bool = False,
    ) -> None:
        """A fresh start for ``srv``: new retry procedure, configured version, new link.

        ``register``: the new link registers even if the registration could be
        resumed (the failure table fell back to Register).
        """
        srv.retry.reset()
        srv.next = None
        srv.resume = None
        srv.lwm2m_version = self.s.config.registration.lwm2m_version
        self.s.links.close(srv)
        self.connect(srv, now, trigger)
        srv.must_register = register

    def resumable(self, srv: ServerSession, now: float) -> bool:
        """Spec §10: a registration the server should still hold, by the client's clock."""
        return (
            self.s.config.registration.resume_with_update
            and bool(srv.location)
            and srv.registered_until is not None
            and now < srv.registered_until
        )

    def link_up(self, srv: ServerSession, now: float, secure: bool, resumed: bool) -> None:
        """The link is open: resume the registration with an Update, or Register.

        Queue mode's wake names its first request itself; any other new link
        (reconnect, offline exit, §4 retry, a handshake retry after an Update,
        a restart) resumes a registration that has not expired, unless the
        failure table forced a Register.
        """
        srv.channel.up(secure)
        if secure:
            self.s.emit(ev.HandshakeDone(now, srv.ssid, resumed))
        resume, srv.resume = srv.resume, None
        must_register, srv.must_register = srv.must_register, False
        if resume is RequestKind.DEREGISTER:
            self.s.move(srv, Trigger.RESUMED, now)
            self.deregister(srv, now)
        elif resume is RequestKind.REGISTER:
            self.send_register(srv, now, Trigger.LINK_UP)  # see account_changed()
        elif resume is RequestKind.UPDATE:
            # Queue mode: the Update tells the server we are back (and from where).
            self.s.move(srv, Trigger.RESUMED, now)
            srv.deadline = None
            self.send_update(srv, now)
            for send_id, payload, content_format in srv.queued_sends:
                self.s.sending.send_now(srv, send_id, payload, content_format, now)
            srv.queued_sends.clear()
        elif not must_register and self.resumable(srv, now):
            self.s.move(srv, Trigger.RESUME, now)
            self.send_update(srv, now)
        else:
            self.send_register(srv, now, Trigger.LINK_UP)

    def _start_deadline(self, srv: ServerSession, now: float) -> None:
        if srv.deadline is None or srv.deadline.what is not Step.REGISTRATION_DEADLINE:
            timeout = self.s.config.registration.timeout
            srv.deadline = Scheduled(now + timeout, Step.REGISTRATION_DEADLINE)

    # ------------------------------------------------------------------ queue mode
    def sleep(self, srv: ServerSession, now: float) -> None:
        """Queue mode: close the idle link; the server holds requests until we wake."""
        channel = srv.channel
        busy = channel.inflight or channel.deferred or channel.sends
        if srv.state is not ServerState.REGISTERED or not channel.open or busy:
            return
        self.s.links.close(srv)
        self.s.move(srv, Trigger.SLEEP, now)
        self.s.emit(ev.QueueModeSleep(now, srv.ssid))

    def wake(self, srv: ServerSession, kind: RequestKind, now: float) -> None:
        """Reopen a sleeping queue-mode link; ``kind`` (Update, Register or De-register)
        goes first."""
        srv.resume = kind
        self.connect(srv, now, Trigger.WAKE)

    # ------------------------------------------------------------------ requests
    def send_register(self, srv: ServerSession, now: float, trigger: Trigger) -> None:
        assert srv.channel.layer is not None
        self.s.move(srv, trigger, now)
        self._start_deadline(srv, now)
        if now < srv.rate_limited_until:
            srv.next = Scheduled(srv.rate_limited_until, Step.REGISTER)
            self.s.move(srv, Trigger.WAIT_MAX_AGE, now)
            return
        params = registration_parameters(srv.account, srv.lwm2m_version)
        lifetime = params.pop("lt")
        query = [
            f"ep={self.s.config.endpoint}",
            f"lt={lifetime}",
            f"lwm2m={srv.lwm2m_version}",
            *_query(params),
        ]
        payload = self._payload(srv, RequestKind.REGISTER, now)
        if payload is None:
            return
        srv.announced = {"lt": lifetime, **params}
        srv.unconfirmed = None  # a Register says everything
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(path=["rd"], query=query, content_format=CONTENT_FORMAT_LINK),
            payload=payload,
        )
        assert srv.uri is not None
        self.s.emit(ev.Registering(now, srv.ssid, str(srv.uri), srv.lwm2m_version))
        self.request(srv, RequestKind.REGISTER, msg, now)

    def send_update(self, srv: ServerSession, now: float) -> None:
        if srv.state is ServerState.ASLEEP:
            self.wake(srv, RequestKind.UPDATE, now)
            return
        channel = srv.channel
        if channel.layer is None or any(
            p.kind is RequestKind.UPDATE for p in channel.inflight.values()
        ):
            return
        srv.next = None
        if now < srv.rate_limited_until:
            srv.next = Scheduled(srv.rate_limited_until, Step.UPDATE)
            return
        self._repeat_unconfirmed(srv)
        with_objects = srv.objects_changed
        before = srv.announced
        msg = self._update_message(srv, now)
        if msg is None:
            return
        srv.objects_changed = False
        srv.unconfirmed = (before, with_objects)
        self.s.emit(ev.UpdateSent(now, srv.ssid, with_objects))
        self.request(srv, RequestKind.UPDATE, msg, now)

    @staticmethod
    def _repeat_unconfirmed(srv: ServerSession) -> None:
        """The last Update was not accepted (refused, timed out, its link lost): what it
        carried counts as changed again.

        Core 1.1.1 §6.2.2: an Update carries what changed since the server last
        heard; a 4.29 answered Update repeated after Max-Age (recovery §7) or
        one resumed over a new DTLS session (recovery §10) would otherwise
        drop a new lifetime, binding or object list for good.
        """
        if srv.unconfirmed is None:
            return
        announced, with_objects = srv.unconfirmed
        srv.unconfirmed = None
        srv.announced = announced
        srv.objects_changed = srv.objects_changed or with_objects

    def _update_message(self, srv: ServerSession, now: float) -> Message | None:
        """The Update: the object list if it changed, lifetime and binding if they did."""
        payload = b""
        if srv.objects_changed:
            built = self._payload(srv, RequestKind.UPDATE, now)
            if built is None:
                return None
            payload = built
        params = registration_parameters(srv.account, srv.lwm2m_version)
        announced = srv.announced or {}
        changed = {
            key: value
            for key, value in params.items()
            if key in UPDATE_PARAMETERS and announced.get(key, "") != value
        }
        srv.announced = {**announced, **changed}
        return Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(
                path=srv.location,
                query=_query(changed),
                content_format=CONTENT_FORMAT_LINK if srv.objects_changed else None,
            ),
            payload=payload,
        )

    def account_changed(self, srv: ServerSession, now: float) -> None:
        """A registered server's account changed (/1/x written): tell the server.

        Lifetime and binding go in an Update with just what changed; a change
        only Register can carry (1.1's Queue Mode) makes the client register
        again, on the same link. Nothing changed on the wire: nothing is sent.
        """
        if srv.public_state is not ServerState.REGISTERED or srv.announced is None:
            return
        params = registration_parameters(srv.account, srv.lwm2m_version)
        if params == srv.announced:
            return
        if _register_only(params) == _register_only(srv.announced):
            self.send_update(srv, now)
        elif srv.state is ServerState.ASLEEP:
            self.wake(srv, RequestKind.REGISTER, now)
        else:
            self.send_register(srv, now, Trigger.REGISTER)

    def deregister(
        self, srv: ServerSession, now: float, trigger: Trigger = Trigger.DEREGISTER
    ) -> None:
        if srv.state is ServerState.ASLEEP:
            self.wake(srv, RequestKind.DEREGISTER, now)
            return
        assert srv.channel.layer is not None
        self.s.move(srv, trigger, now)
        srv.next = None
        srv.channel.cancel_all(now)
        msg = Message(
            type=MessageType.CON, code=Code.DELETE, options=make_options(path=srv.location)
        )
        self.request(srv, RequestKind.DEREGISTER, msg, now)

    def finish_deregister(self, srv: ServerSession, now: float, *, acknowledged: bool) -> None:
        self.s.emit(ev.Deregistered(now, srv.ssid, acknowledged))
        self.s.links.stop(srv, Trigger.DEREGISTERED, now)
        if srv.state is ServerState.SUSPENDED:  # the De-register of a Disable
            self._stay_off(srv, now, srv.disable_wait)
        self.s.bootstrap.deregistered(now)  # a Bootstrap-Request Trigger may wait for it

    # ------------------------------------------------------------------ Disable
    def disable(
        self, srv: ServerSession, now: float, timeout: float | None, *, executed: bool
    ) -> None:
        """LwM2M Disable: off for ``timeout`` seconds (:func:`disable_wait`), then register.

        ``executed``: the server executed /1/x/4. Its answer is already on its
        way; the client then de-registers (the Core's Server object: "send
        response of the operation and perform de-registration process", then
        disconnect) and stays off from the end of the De-register. Called by
        the application, or when the server is not registered, the link just
        closes.
        """
        wait = disable_wait(timeout)
        srv.registered_until = None  # coming back registers anew, never resumes
        if executed and srv.state is ServerState.REGISTERED and srv.channel.layer is not None:
            srv.disable_wait = wait
            self.deregister(srv, now, Trigger.DISABLE_EXECUTED)
            return
        self.s.links.stop(srv, Trigger.DISABLE, now)
        self._stay_off(srv, now, wait)

    def _stay_off(self, srv: ServerSession, now: float, wait: float | None) -> None:
        srv.next = None if wait is None else Scheduled(now + wait, Step.CONNECT)

    def request(self, srv: ServerSession, kind: RequestKind, msg: Message, now: float) -> None:
        try:
            srv.channel.request(kind, msg, now)
        except (MemoryError, ValueError) as exc:
            # Spec §6 "memory / message build failure": the Internal-error row decides.
            detail = f"could not build the {kind.value} request: {exc!r}"
            pending = srv.channel.pending(kind)
            self.s.recovery.fail(
                srv, pending, Failure.INTERNAL, ev.ErrorCode.MEMORY, now, detail=detail
            )
            return
        self.s.links.flush(srv, now)

    def _payload(self, srv: ServerSession, kind: RequestKind, now: float) -> bytes | None:
        """The object list, or None after reporting a build failure as an internal error.

        Spec §6 "memory / message build failure": the application's object tree
        raised; the request is not sent and the failure table's Internal-error
        row decides what happens to the server.
        """
        try:
            return self.s.model.registration_payload(srv.lwm2m_version)
        except Exception as exc:
            detail = f"could not build the object list: {exc!r}"
            self.s.recovery.fail(
                srv, Pending(kind, False), Failure.INTERNAL, ev.ErrorCode.MEMORY, now, detail=detail
            )
            return None

    # ------------------------------------------------------------------ answers
    def succeeded(self, srv: ServerSession, kind: RequestKind, resp: Message, now: float) -> None:
        if kind is RequestKind.REGISTER:
            self._registered(srv, resp, now)
        elif kind is RequestKind.UPDATE:
            srv.unconfirmed = None
            self._renewed(srv, now)
            resumed = srv.state is ServerState.RESUMING
            if resumed:
                # The server kept the registration: its observations and what
                # was stored for them carry on over the new link (spec §10).
                self._settle(srv, Trigger.RESUMED, now)
            self.s.emit(ev.Updated(now, srv.ssid))
            self._plan_update(srv, now)
            self.s.store.flush(srv, now)  # what waited while the link was down or asleep
            if resumed:
                self.settled(srv, now, failed=False)
        elif kind is RequestKind.DEREGISTER:
            self.finish_deregister(srv, now, acknowledged=True)

    def _registered(self, srv: ServerSession, resp: Message, now: float) -> None:
        try:
            location = resp.location_path
        except CoapDecodeError:
            location = []
        if not location:
            # Core 1.1.1 §6.2.1: the 2.01 names the registration in Location-Path;
            # without a readable one no Update or De-register could reach it.
            pending = Pending(RequestKind.REGISTER, False)
            code = ev.ErrorCode.RESPONSE_PARSE_FAILED
            detail = "Register answered 2.01 without a readable Location-Path"
            self.s.recovery.fail(srv, pending, Failure.INTERNAL, code, now, detail=detail)
            return
        if srv.location and (
            self.s.config.registration.resume_with_update or location != srv.location
        ):
            # A new registration replaced the one the server's observations
            # belonged to (a standard server drops them; spec §10). Without
            # resuming, only another location says so.
            self.s.store.drop_session(srv, now)
        srv.location = location
        self._renewed(srv, now)
        srv.objects_changed = False
        self._settle(srv, Trigger.REGISTER_OK, now)
        self.s.emit(ev.Registered(now, srv.ssid, "/" + "/".join(location), srv.account.lifetime))
        self._plan_update(srv, now)
        self.s.store.flush(srv, now)
        self.settled(srv, now, failed=False)

    def _renewed(self, srv: ServerSession, now: float) -> None:
        """Register or Update accepted: the registration runs for its lifetime from now."""
        srv.registered_at = now
        lifetime = (srv.announced or {}).get("lt") or srv.account.lifetime
        srv.registered_until = now + int(lifetime)
        self.s.changed()

    def _settle(self, srv: ServerSession, trigger: Trigger, now: float) -> None:
        """Registered again (by Register or a resuming Update): every retry schedule resets."""
        srv.deadline = None
        srv.retry.reset()
        self.s.move(srv, trigger, now)
        self.s.recovery.registered()

    def _plan_update(self, srv: ServerSession, now: float) -> None:
        """Spec §10: lifetime/2 if shorter than MAX_TRANSMIT_WAIT, else lifetime − MTW; ≥ 1 s.

        ``update_jitter`` draws the instant in (1 − jitter … 1) × that delay:
        earlier, never later, so the registration never lapses.
        """
        lifetime = float(srv.account.lifetime)
        mtw = self.s.config.coap.max_transmit_wait
        delay = lifetime / 2 if lifetime / 2 < mtw else lifetime - mtw
        jitter = self.s.config.registration.update_jitter
        if jitter:
            delay *= 1.0 - jitter * self.s.rng.random()
        srv.next = Scheduled(now + max(1.0, delay), Step.UPDATE)

    # ------------------------------------------------------------------ scheduled steps
    def connect_due(self, srv: ServerSession, now: float) -> None:
        """Step CONNECT: the wait (initial delay, §4 retry, Disable timeout) is over.

        A server disabled before its registration turn came (no URI parsed yet)
        stays off until that turn starts it.
        """
        waiting = (ServerState.BACKOFF, ServerState.SUSPENDED, ServerState.IDLE)
        if srv.public_state in waiting and srv.uri is not None:
            self.connect(srv, now)

    def register_due(self, srv: ServerSession, now: float) -> None:
        """Step REGISTER: a 4.29's Max-Age is over."""
        if srv.public_state is ServerState.REGISTERING and srv.channel.open:
            self.send_register(srv, now, Trigger.REGISTER)

    def update_due(self, srv: ServerSession, now: float) -> None:
        """Step UPDATE: the lifetime schedule, or a Max-Age over (a resuming Update too)."""
        if srv.public_state is ServerState.REGISTERED or srv.state is ServerState.RESUMING:
            self.send_update(srv, now)
