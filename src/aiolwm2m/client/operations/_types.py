"""What the data model hands the runtime: jobs, client actions, and the protocol it meets.

Internal to :mod:`aiolwm2m.client.operations`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.coap.message import Message
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.lwm2m.objects import HostInfo
from aiolwm2m.lwm2m.path import Path

__all__ = [
    "ClientAction",
    "DataModelRuntime",
    "DisableServer",
    "Job",
    "ObjectsChanged",
    "RequestBootstrap",
    "SendError",
    "TriggerUpdate",
]


class SendError(Lwm2mError):
    """A Send cannot be built: Mute Send is on, a path is unknown or unreadable, or
    the format is not SenML."""


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


@dataclass
class Job:
    """A request whose answer waits for async hooks; see the package docstring."""

    ssid: int
    request: Message
    coroutine: Coroutine[Any, Any, Message]


@runtime_checkable
class DataModelRuntime(Protocol):
    """What a runtime drives beyond the engine's ``ObjectTree`` protocol."""

    def attach_host(self, host: HostInfo) -> None: ...

    def take_jobs(self) -> list[Job]: ...

    def take_actions(self) -> list[ClientAction]: ...

    def set_wakeup(self, callback: Callable[[], None] | None) -> None: ...

    def send_payload(
        self, ssid: int, paths: Sequence[Path | str], content_format: int, time: float
    ) -> bytes: ...
