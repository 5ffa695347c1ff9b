"""What the data model asks of the engine: the server operations that concern registration.

A server's Write or Execute on the Server object (Registration Update
Trigger, Disable, Bootstrap-Request Trigger, a new Lifetime or Binding) and
instance creation or deletion are queued by the data model as these values;
the engine takes them (``DataModel.take_actions``) after each of its inputs
and carries them out itself, so no runtime has to know them. A leaf module:
the engine and the data model both import it and neither imports the other
for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiolwm2m.accounts import ServerAccount

__all__ = ["ClientAction", "DisableServer", "ObjectsChanged", "RequestBootstrap", "TriggerUpdate"]


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


ClientAction = TriggerUpdate | DisableServer | RequestBootstrap | ObjectsChanged
