"""Types shared by the engine's parts, the runtimes and the data model.

The runtime side of the sans-IO contract lives here: the link actions the
engine asks for (:class:`OpenLink`, :class:`CloseLink`, :class:`SendDatagram`),
why a link could not open (:class:`LinkFailure`), what the data model must
offer (:class:`DataModel`), and the state worth persisting
(:class:`Snapshot`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from aiolwm2m.accounts import ServerAccount, ServerUri
from aiolwm2m.client.actions import ClientAction
from aiolwm2m.client.events import ErrorCode
from aiolwm2m.client.policy import Failure
from aiolwm2m.coap.message import Message

__all__ = [
    "BOOTSTRAP_LINK",
    "CloseLink",
    "DataModel",
    "LinkAction",
    "LinkFailure",
    "Notification",
    "OpenLink",
    "RegistrationRecord",
    "SendDatagram",
    "Snapshot",
]

#: Link id of the Bootstrap-Server link (server links use their Short Server ID, 1..65534).
BOOTSTRAP_LINK = 0


class LinkFailure(enum.Enum):
    """Why the runtime could not open (or keep) a link."""

    DNS = "dns"
    NETWORK = "network"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    SECURE = "secure"  # handshake rejected: bad PSK, bad/expired/untrusted certificate…
    INTERNAL = "internal"

    @property
    def row(self) -> Failure:
        """The failure table's row for this failure (Connect column)."""
        return _ROWS[self]

    @property
    def code(self) -> ErrorCode:
        """The spec §6 error reported for it."""
        return _CODES[self]


_ROWS = {
    LinkFailure.DNS: Failure.DNS,
    LinkFailure.NETWORK: Failure.NETWORK,
    LinkFailure.HANDSHAKE_TIMEOUT: Failure.TIMEOUT_DTLS,
    LinkFailure.SECURE: Failure.SECURE,
    LinkFailure.INTERNAL: Failure.INTERNAL,
}
_CODES = {
    LinkFailure.DNS: ErrorCode.DNS_RESOLVING_FAILED,
    LinkFailure.NETWORK: ErrorCode.NETWORK_ERROR,
    LinkFailure.HANDSHAKE_TIMEOUT: ErrorCode.SECURE_CONNECTION_FAILED,
    LinkFailure.SECURE: ErrorCode.SECURE_CONNECTION_FAILED,
    LinkFailure.INTERNAL: ErrorCode.INTERNAL_ERROR,
}


@dataclass(frozen=True)
class OpenLink:
    link: int
    uri: ServerUri
    account: ServerAccount


@dataclass(frozen=True)
class CloseLink:
    link: int


class SendDatagram(NamedTuple):
    """Send ``data`` on ``link``.

    A named tuple, not a frozen dataclass like the other actions: one is built
    per datagram, and a tuple is built without a frozen dataclass's
    ``object.__setattr__`` per field (immutable and comparable all the same).
    """

    link: int
    data: bytes


LinkAction = OpenLink | CloseLink | SendDatagram


@dataclass(slots=True)
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

    After a restart the new link resumes the registration with an Update to
    ``location`` while ``registered_at + lifetime`` has not passed (spec §10,
    ``resume_with_update``); stored notifications follow it. A refusal or an
    expired registration means a Register, which drops them (one
    ``notifications_dropped`` event). ``lifetime`` is 0 once the server refused
    the registration: it is not resumed again.
    """

    ssid: int
    uri: str
    location: tuple[str, ...]
    registered_at: float
    lifetime: int
    lwm2m_version: str


@dataclass(frozen=True)
class Snapshot:
    """The engine state worth persisting (written by ``aiolwm2m.client.storage``).

    ``provisioning`` (:meth:`Provisioning.to_dict`, JSON-able and opaque to
    the store) is None while the servers are those of the factory
    configuration, so editing the config file takes effect until a bootstrap
    provisions other accounts. ``bootstrap_purge_at`` is when the
    Bootstrap-Server Account Timeout (/0/x/12) purges the account, and
    ``bootstrap_purged`` says it did: the configured account stays gone.
    Times are on the caller's clock; :meth:`shifted` moves them to another one
    (the runtime stores wall-clock seconds).
    """

    provisioning: dict[str, Any] | None = None
    registrations: tuple[RegistrationRecord, ...] = ()
    notifications: tuple[Notification, ...] = ()
    bootstrap_purge_at: float | None = None
    bootstrap_purged: bool = False

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
            bootstrap_purge_at=(
                None if self.bootstrap_purge_at is None else self.bootstrap_purge_at + delta
            ),
        )


class DataModel(Protocol):
    """What the engine needs from the data model (see ``aiolwm2m.client.operations``).

    Optional hooks, called when the model has them: ``accounts_changed(accounts)``
    (the server set changed) and ``follow_bootstrap_account(present)`` (how to ask
    whether the engine has a Bootstrap-Server account now).
    """

    def registration_payload(self, lwm2m_version: str) -> bytes:
        """CoRE link-format list of objects and instances for Register/Update."""

    def handle_request(self, ssid: int, request: Message, now: float) -> Message | None:
        """Answer a server-initiated operation; None means "later, via engine.respond()"."""

    def drop_observations(self, ssid: int) -> None:
        """The session with ``ssid`` changed: its observations end (spec §10)."""

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> bool:
        """The engine ended one observation (Reset, or the failure table said so).

        True if it was still running; False if it had already ended (a Reset of
        another of its notifications, a Cancel-Observe): the engine then reports
        nothing more, an observation ends once.
        """

    def take_actions(self) -> list[ClientAction]:
        """What server operations asked of the engine since the last call (in order)."""
        ...

    def take_notifications(self, now: float) -> list[Notification]:
        """Notifications due now (value changes, pmin/pmax expiries)."""

    def next_timer(self) -> float | None:
        """When the data model next needs :meth:`handle_timer` (pmax, pending pmin…)."""

    def handle_timer(self, now: float) -> None: ...
