"""What the data model asks of the engine: the server operations it carries out itself.

A server's Write or Execute on the Server object (Registration Update
Trigger, Disable, Bootstrap-Request Trigger, a new Lifetime or Binding),
instance creation or deletion and a server's Cancel-Observe are queued by
the data model as these values; the engine takes them
(``DataModel.take_actions``) after each of its inputs and carries them out
itself, so no runtime has to know them. A leaf module:
the engine and the data model both import it and neither imports the other
for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiolwm2m.accounts import ServerAccount

__all__ = [
    "CancelObserve",
    "ClientAction",
    "DisableServer",
    "ObjectsChanged",
    "RequestBootstrap",
    "TriggerUpdate",
]


@dataclass(frozen=True)
class TriggerUpdate:
    """Send an Update to ``ssid`` (Registration Update Trigger, or its account changed)."""

    ssid: int
    account: ServerAccount | None = None


@dataclass(frozen=True)
class DisableServer:
    """Server ``ssid`` executed Disable (/1/x/4): go offline for ``timeout`` seconds."""

    ssid: int
    timeout: float


@dataclass(frozen=True)
class RequestBootstrap:
    """Server ``ssid`` executed Bootstrap-Request Trigger (/1/x/9): bootstrap now."""

    ssid: int


@dataclass(frozen=True)
class ObjectsChanged:
    """Instances were created or deleted: registered servers need an Update."""


@dataclass(frozen=True)
class CancelObserve:
    """Server ``ssid`` cancelled the observation with ``token`` (GET or FETCH with
    Observe 1, RFC 7641 §3.6): the notifications of it the engine has not sent yet
    are not sent (the data model's own are gone already)."""

    ssid: int
    token: bytes


ClientAction = TriggerUpdate | DisableServer | RequestBootstrap | ObjectsChanged | CancelObserve
