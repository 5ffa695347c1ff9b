"""What the data model hands the runtime: jobs, and the protocol it meets.

The client actions (what it asks of the engine) live in :mod:`aiolwm2m.client.actions`
and are re-exported here.

Internal to :mod:`aiolwm2m.client.operations`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiolwm2m.client.actions import (
    CancelObserve,
    ClientAction,
    DisableServer,
    ObjectsChanged,
    RequestBootstrap,
    TriggerUpdate,
)
from aiolwm2m.coap.message import Message
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.lwm2m.objects import HostInfo
from aiolwm2m.lwm2m.path import Path

__all__ = [
    "CancelObserve",
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


@dataclass
class Job:
    """A request whose answer waits for async hooks; see the package docstring.

    A job without a ``request`` awaits an async read hook for an observation
    (its coroutine returns None): there is nothing to answer; the runtime
    polls the engine once it is done, so the waiting notification goes out.
    """

    ssid: int
    request: Message | None
    coroutine: Coroutine[Any, Any, Message | None]


@runtime_checkable
class DataModelRuntime(Protocol):
    """What a runtime drives beyond the engine's ``ObjectTree`` protocol."""

    def attach_host(self, host: HostInfo) -> None: ...

    def take_jobs(self) -> list[Job]: ...

    def set_wakeup(self, callback: Callable[[], None] | None) -> None: ...

    def send_payload(
        self, ssid: int, paths: Sequence[Path | str], content_format: int, time: float
    ) -> bytes: ...
