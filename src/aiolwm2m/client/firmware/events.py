"""Firmware events the client reports (names and fields are part of the public contract).

``firmware_state``: either object's State moved (``object_id`` 5 or 10252,
state names in snake_case, the result code after the move);
``firmware_progress``: good bytes stored so far (and the total when known),
at every checkpoint and at the end; ``firmware_retry``: a transient failure
and the back-off before the download resumes from ``offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from aiolwm2m.client.events import Event

__all__ = ["FirmwareProgress", "FirmwareRetry", "FirmwareStateChanged"]


@dataclass(frozen=True, slots=True)
class FirmwareStateChanged(Event):
    name: ClassVar[str] = "firmware_state"
    object_id: int
    old: str
    new: str
    result: int
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class FirmwareProgress(Event):
    name: ClassVar[str] = "firmware_progress"
    bytes: int
    total: int | None = None


@dataclass(frozen=True, slots=True)
class FirmwareRetry(Event):
    name: ClassVar[str] = "firmware_retry"
    delay: float
    attempt: int
    offset: int
    reason: str
    detail: str | None = None
