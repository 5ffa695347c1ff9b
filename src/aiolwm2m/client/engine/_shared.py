"""State the engine's parts share: per-server and bootstrap sessions, their
scheduled next actions, and the context every part works on.

Time in the engine is kept Anjay's way: each server has *one* scheduled next
action, ``(when, what)`` (:class:`Scheduled`), instead of a timer per purpose,
and one deadline that can run beside it: the registration timeout while a
registration is under way, or, once registered in queue mode, the moment the
idle link goes to sleep. The bootstrap session has the same two slots (the
Request after the hold-off; the Finish deadline) and the outer reconnect loop
one more. The façade finds the earliest and fires what is due through one
dict of handlers (:data:`Step`), so no timer is handled by hand.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiolwm2m.accounts import ServerAccount, ServerUri
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine._channel import Channel
from aiolwm2m.client.engine._types import BOOTSTRAP_LINK, DataModel, LinkAction, Notification
from aiolwm2m.client.policy import Action, FailureTable, RegistrationRetry, RequestKind
from aiolwm2m.client.states import (
    BootstrapPhase,
    BootstrapTrigger,
    ServerState,
    Trigger,
    next_bootstrap_phase,
    next_server_state,
)

if TYPE_CHECKING:
    from aiolwm2m.client.engine._bootstrapping import BootstrapFlow
    from aiolwm2m.client.engine._links import ServerLinks
    from aiolwm2m.client.engine._recovery import Recovery
    from aiolwm2m.client.engine._registration import Registration
    from aiolwm2m.client.engine._sending import Sending
    from aiolwm2m.client.engine._storing import NotificationStore

__all__ = ["BootstrapSession", "Scheduled", "ServerSession", "Shared", "Step"]


class Step(enum.Enum):
    """What a scheduled action does when its time comes."""

    CONNECT = "connect"  # Initial Registration Delay, §4 retry wait or Disable timeout over
    REGISTER = "register"  # a Max-Age (4.29, 5.03) over: Register again
    UPDATE = "update"  # lifetime schedule (or a Max-Age) says Update
    SLEEP = "sleep"  # queue mode: the link was idle for MAX_TRANSMIT_WAIT
    REGISTRATION_DEADLINE = "registration_deadline"  # no registration within the timeout
    BOOTSTRAP_REQUEST = "bootstrap_request"  # hold-off (or a Max-Age) over
    BOOTSTRAP_DEADLINE = "bootstrap_deadline"  # no Bootstrap-Finish within EXCHANGE_LIFETIME
    BOOTSTRAP_PURGE = "bootstrap_purge"  # Bootstrap-Server Account Timeout (/0/x/12) over
    RECONNECT = "reconnect"  # the outer loop's next attempt (spec §2)


@dataclass(frozen=True, slots=True)
class Scheduled:
    when: float
    what: Step


@dataclass(slots=True)
class ServerSession:
    """One LwM2M server: its account, state, link and registration."""

    account: ServerAccount
    channel: Channel
    retry: RegistrationRetry
    lwm2m_version: str
    uri: ServerUri | None = None
    state: ServerState = ServerState.IDLE
    next: Scheduled | None = None
    deadline: Scheduled | None = None
    location: list[str] = field(default_factory=list)
    registered_at: float | None = None
    # When the registration expires by the client's clock (a new link resumes it before).
    registered_until: float | None = None
    rate_limited_until: float = 0.0
    objects_changed: bool = False
    # Registration parameters (lt, b, Q) as last sent in Register/Update: an
    # Update repeats what changed, a change only Register carries registers again.
    announced: dict[str, str | None] | None = None
    # The Update not yet accepted: ``announced`` before it and whether it carried the
    # object list. Unless the server accepts it, the next Update says it all again.
    unconfirmed: tuple[dict[str, str | None] | None, bool] | None = None
    # Queue mode: the server held the registration while the link slept; the
    # link that opens next resumes it with this request instead of a Register.
    resume: RequestKind | None = None
    # Disable executed: how long to stay off once the De-register is over (None: until enabled).
    disable_wait: float | None = None
    # The failure table fell back to Register: the link that opens next registers.
    must_register: bool = False
    queued_sends: list[tuple[int, bytes, int]] = field(default_factory=list)
    stored: list[Notification] = field(default_factory=list)  # oldest first
    stored_dropped: int = 0

    @property
    def ssid(self) -> int:
        return self.account.short_server_id

    @property
    def public_state(self) -> ServerState:
        return self.state.public


@dataclass(slots=True)
class BootstrapSession:
    """The Bootstrap-Server link and the progress of one bootstrap attempt."""

    channel: Channel
    phase: BootstrapPhase = BootstrapPhase.IDLE
    account: ServerAccount | None = None
    uri: ServerUri | None = None
    next: Scheduled | None = None  # the Request, after the hold-off or a Max-Age
    deadline: Scheduled | None = None  # EXCHANGE_LIFETIME after the last bootstrap operation
    rate_limited_until: float = 0.0  # a Max-Age (4.29, 5.03)
    failures: int = 0  # failed attempts since the last success: doubles the hold-off
    factor: float | None = None  # the hold-off's random factor, drawn once
    handler: BootstrapHandler | None = None
    # Bootstrap-Server Account Timeout (/0/x/12): when the account goes. It outlives
    # attempts (set by a successful Finish), so it is neither ``next`` nor ``deadline``.
    purge: Scheduled | None = None
    purged: bool = False  # the timeout purged the account: never bootstrap again

    @property
    def running(self) -> bool:
        return self.phase not in (BootstrapPhase.IDLE, BootstrapPhase.FAILED)

    def move(self, trigger: BootstrapTrigger) -> None:
        self.phase = next_bootstrap_phase(self.phase, trigger)


class Shared:
    """The context the engine's parts work on: configuration, outputs, sessions, flags.

    The parts themselves are reachable from here too (set once by the façade),
    as each calls on the others: a failed Register goes to recovery, which may
    register again or start a bootstrap, which hands back to registration.
    """

    __slots__ = (
        "actions",
        "all_failed",
        "bootstrap",
        "bootstrap_account",
        "bs",
        "closing",
        "config",
        "events",
        "links",
        "model",
        "offline",
        "reconnect",
        "recovery",
        "registration",
        "rng",
        "sending",
        "servers",
        "started",
        "state_version",
        "store",
        "table",
    )

    links: ServerLinks
    registration: Registration
    recovery: Recovery
    bootstrap: BootstrapFlow
    store: NotificationStore
    sending: Sending

    def __init__(
        self, config: ClientConfig, model: DataModel, rng: random.Random, table: FailureTable
    ) -> None:
        self.config = config
        self.model = model
        self.rng = rng
        self.table = table
        self.actions: list[LinkAction] = []
        self.events: list[ev.Event] = []
        self.servers: dict[int, ServerSession] = {}
        self.bootstrap_account = config.bootstrap
        self.bs = BootstrapSession(self.channel(BOOTSTRAP_LINK))
        self.started = False
        self.closing = False
        self.offline = False
        self.all_failed = False
        self.reconnect: Scheduled | None = None
        self.state_version = 0

    def channel(self, link: int) -> Channel:
        return Channel(link, self.config.coap, self.rng, self.actions)

    def set_accounts(self, accounts: tuple[ServerAccount, ...]) -> None:
        registration = self.config.registration
        self.servers = {
            account.short_server_id: ServerSession(
                account,
                self.channel(account.short_server_id),
                RegistrationRetry(account.retry, registration.retry_procedure),
                registration.lwm2m_version,
            )
            for account in accounts
        }

    def provisioning(self) -> Provisioning:
        """The current accounts as Security/Server instances (what a bootstrap starts from)."""
        return Provisioning.from_accounts(
            tuple(s.account for s in self.servers.values()), self.bootstrap_account
        )

    def accounts_replaced(self) -> None:
        """Tell a data model that shows Server objects (optional hook) the new accounts."""
        hook = getattr(self.model, "accounts_changed", None)
        if hook is not None:
            hook([srv.account for srv in self.servers.values()])

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)

    def malformed(self, now: float, ssid: int | None, peer: str) -> None:
        """Spec §5: unrecognised packets are ignored, and reported once per batch."""
        detail = f"malformed CoAP datagram from the {peer} ignored"
        self.emit(ev.Error(now, ev.ErrorCode.RESPONSE_PARSE_FAILED, ssid=ssid, detail=detail))

    def not_allowed(self, now: float, detail: str, ssid: int | None = None) -> None:
        self.emit(ev.Error(now, ev.ErrorCode.NOT_ALLOWED, ssid=ssid, detail=detail))

    def changed(self) -> None:
        """What :meth:`ClientEngine.snapshot` returns changed: the runtime saves."""
        self.state_version += 1

    def move(self, srv: ServerSession, trigger: Trigger, now: float) -> None:
        """Fire ``trigger`` on ``srv``'s state machine; ``state_changed`` if its public state moved.

        Sends still waiting for an answer when the link has gone can never get
        one: they fail here, on the way out of whatever state closed it.
        """
        channel = srv.channel
        if channel.sends and channel.layer is None:
            for send_id in channel.sends.values():
                self.send_failed(
                    srv, send_id, ev.ErrorCode.NETWORK_ERROR, now, detail="link closed"
                )
            channel.sends.clear()
        old = srv.state.public
        srv.state = next_server_state(srv.state, trigger)
        if srv.state.public is not old:
            self.emit(ev.StateChanged(now, srv.ssid, old, srv.state.public))

    def send_failed(
        self,
        srv: ServerSession,
        send_id: int,
        code: ev.ErrorCode,
        now: float,
        coap_code: str | None = None,
        detail: str | None = None,
        action: Action = Action.NONE,
    ) -> None:
        """A Send ended without success: ``error`` and ``send_finished``."""
        self.emit(
            ev.Error(
                now,
                code,
                ssid=srv.ssid,
                request=ev.Request.SEND,
                coap_code=coap_code,
                action=action,
                detail=detail or f"send {send_id}",
            )
        )
        self.emit(ev.SendFinished(now, srv.ssid, send_id, False, coap_code, code.value))
