"""Firmware Update (/5/0) and Manifest (/10252/0) instances over a firmware controller.

The instances hold no firmware logic: server writes and executes go to a
:class:`FirmwareControl` (the runtime's, which feeds the sans-IO coordinator
``aiolwm2m.client.firmware.FirmwareUpdate``), and the controller shows the
coordinator's values back with :meth:`FirmwareInstance.show`, which records
each change so observers of State or Update Result are notified.

Package (/5/0/0) is never stored: a Block1 Write streams block by block
through :meth:`FirmwareInstance.write_block` (see ``BlockSink`` in
``lwm2m/tree.py``), a plain Write hands the whole value over once.
Refusals raise the errors of ``client/firmware/states.py`` (4.05 or 4.00).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..tree import ExecuteArguments, Instance, MaybeAwaitable, NotFoundError, ResourceValue

__all__ = [
    "FIRMWARE_OBJECT",
    "MANIFEST_OBJECT",
    "FirmwareControl",
    "FirmwareInstance",
    "ManifestInstance",
]

FIRMWARE_OBJECT = 5
MANIFEST_OBJECT = 10252

PACKAGE = 0
PACKAGE_URI = 1
UPDATE = 2
CANCEL = 10
_SETTINGS = {11: "severity", 13: "max_defer", 14: "auto_update"}

MANIFEST = 1
CAMPAIGN_ID = 8
MANUAL_TRIGGER = 9


class FirmwareControl(Protocol):
    """What the two instances ask of the runtime (any method may be ``async``)."""

    def write_uri(self, uri: str) -> MaybeAwaitable[None]: ...

    def write_package(self, data: bytes) -> MaybeAwaitable[None]: ...

    def write_package_block(self, offset: int, data: bytes, more: bool) -> MaybeAwaitable[None]: ...

    def execute_update(self) -> MaybeAwaitable[None]: ...

    def cancel(self) -> MaybeAwaitable[None]: ...

    def write_manifest(self, data: bytes) -> MaybeAwaitable[None]: ...

    def manual_trigger(self) -> MaybeAwaitable[None]: ...

    def set_value(self, name: str, value: Any) -> None: ...


class _Mirror(Instance):
    """An instance whose readable values are set by the controller, never by servers."""

    #: Write-only resources that exist although they hold no value.
    keep: frozenset[int] = frozenset()

    def __init__(self, control: FirmwareControl, values: Mapping[int, Any]) -> None:
        self.control = control
        super().__init__(values)

    def show(self, values: Mapping[int, Any]) -> None:
        """Make the resources read ``values``; changed ones notify their observers."""
        for rid, value in values.items():
            if self.values.get(rid) != value:
                self.set(rid, value)
        for rid in set(self.values) - set(values) - self.keep:
            self.remove(rid)


class FirmwareInstance(_Mirror):
    """/5/0; see the module docstring."""

    keep = frozenset({PACKAGE})

    def __init__(self, control: FirmwareControl, values: Mapping[int, Any]) -> None:
        super().__init__(control, values)
        self.on_execute = {UPDATE: self._update, CANCEL: self._cancel}

    def resource_ids(self) -> set[int]:
        return {*super().resource_ids(), PACKAGE}

    def read(self, resource_id: int) -> MaybeAwaitable[ResourceValue]:
        if resource_id == PACKAGE:
            raise NotFoundError("Package is write-only")
        return super().read(resource_id)

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        if resource_id == PACKAGE:
            assert isinstance(value, bytes)
            return self.control.write_package(value)
        if resource_id == PACKAGE_URI:
            assert isinstance(value, str)
            return self.control.write_uri(value)
        name = _SETTINGS.get(resource_id)
        if name is None:
            return super().write(resource_id, value)
        self.control.set_value(name, value)
        self.values[resource_id] = value
        return None

    def write_block(
        self, resource_id: int, offset: int, data: bytes, more: bool
    ) -> MaybeAwaitable[None]:
        """One Block1 block of a Write to Package, straight to the package storage."""
        if resource_id != PACKAGE:
            raise NotFoundError(f"resource {resource_id} takes no block-wise stream")
        return self.control.write_package_block(offset, data, more)

    def streams(self, resource_id: int) -> bool:
        return resource_id == PACKAGE

    def _update(self, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        return self.control.execute_update()

    def _cancel(self, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        return self.control.cancel()


class ManifestInstance(_Mirror):
    """/10252/0; see the module docstring."""

    keep = frozenset({MANIFEST})

    def __init__(self, control: FirmwareControl, values: Mapping[int, Any]) -> None:
        super().__init__(control, values)
        self.on_execute = {MANUAL_TRIGGER: self._trigger}

    def resource_ids(self) -> set[int]:
        return {*super().resource_ids(), MANIFEST}

    def read(self, resource_id: int) -> MaybeAwaitable[ResourceValue]:
        if resource_id == MANIFEST:
            raise NotFoundError("Manifest is write-only")
        return super().read(resource_id)

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        if resource_id == MANIFEST:
            assert isinstance(value, bytes)
            return self.control.write_manifest(value)
        if resource_id == CAMPAIGN_ID:
            self.control.set_value("campaign_id", value)
        return super().write(resource_id, value)

    def _trigger(self, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        return self.control.manual_trigger()
