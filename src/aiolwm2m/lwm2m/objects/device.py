"""Device object (/3/0) with what the host can tell, through a :class:`HostInfo`.

The values a server reads from /3 are meant to be real (model, serial number,
the clock, free memory), but ``lwm2m/`` does no IO: they come from the
:class:`~aiolwm2m.lwm2m.objects.host.HostInfo` the runtime attaches (one per
process, shared by all its clients). Until one is attached those resources
are absent; values the application gives in :class:`DeviceInfo` always win.

Reboot (/3/0/4) and Factory Reset (/3/0/5) only call the application's
callbacks: a library must not reboot the machine by itself. Without a
callback, Reboot answers 2.04 and does nothing but record the request in
:attr:`DeviceInstance.reboot_requests` (the resource is mandatory, so it has
to exist), and Factory Reset is absent (4.04).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..model import Value
from ..tree import (
    ExecuteArguments,
    ExecuteHook,
    Instance,
    MaybeAwaitable,
    NotFoundError,
    ResourceValue,
)
from .host import HostInfo

__all__ = ["DeviceInfo", "DeviceInstance", "format_utc_offset"]

# Resource ids of the Device object (LwM2M Core Appendix E.4).
MANUFACTURER = 0
MODEL_NUMBER = 1
SERIAL_NUMBER = 2
FIRMWARE_VERSION = 3
REBOOT = 4
FACTORY_RESET = 5
MEMORY_FREE = 10
ERROR_CODE = 11
RESET_ERROR_CODE = 12
CURRENT_TIME = 13
UTC_OFFSET = 14
TIMEZONE = 15
SUPPORTED_BINDINGS = 16
DEVICE_TYPE = 17
SOFTWARE_VERSION = 19
MEMORY_TOTAL = 21


def format_utc_offset(offset: timedelta) -> str:
    """``UTC+hh:mm`` as the Device object's UTC Offset resource (ISO 8601) expects."""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class DeviceInfo:
    """Identity values of /3/0; ``None`` fields come from the attached :class:`HostInfo`."""

    manufacturer: str = "aiolwm2m"
    model_number: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    software_version: str | None = None
    device_type: str | None = None
    #: /3/0/16, the letters of TS 1.1.1 §E.1 (U: UDP, Q: queue mode). This client
    #: speaks UDP and does queue mode whatever its accounts' bindings say, so both.
    supported_bindings: str = "UQ"
    error_codes: list[int] = field(default_factory=lambda: [0])


# Resources read from the host when the application gave no value.
_FROM_HOST: dict[int, Callable[[HostInfo], Value]] = {
    MODEL_NUMBER: lambda host: host.model(),
    SERIAL_NUMBER: lambda host: host.serial_number(),
    FIRMWARE_VERSION: lambda host: host.firmware_version(),
    SOFTWARE_VERSION: lambda host: host.software_version(),
    UTC_OFFSET: lambda host: format_utc_offset(host.local_offset()),
    TIMEZONE: lambda host: host.timezone_name(),
    MEMORY_FREE: lambda host: host.memory_kib()[0] or 0,
    MEMORY_TOTAL: lambda host: host.memory_kib()[1] or 0,
}
_MEMORY = frozenset({MEMORY_FREE, MEMORY_TOTAL})


class DeviceInstance(Instance):
    """/3/0 with live time, memory and error codes; reboot/factory reset go to callbacks.

    Current Time is writable as the spec allows: the write is kept as an
    offset to the host clock, so later reads keep ticking from the value the
    server set. UTC Offset and Timezone writes are stored and reported back
    (the host's own clock settings are left alone). Host-backed resources are
    read through :attr:`host` on every server read, with no per-client copy.
    """

    def __init__(
        self,
        info: DeviceInfo | None = None,
        *,
        host: HostInfo | None = None,
        on_reboot: ExecuteHook | None = None,
        on_factory_reset: ExecuteHook | None = None,
    ) -> None:
        self.host = host
        self.info = info = info or DeviceInfo()
        self.reboot_requests = 0
        self._on_reboot = on_reboot
        self._clock_offset = timedelta(0)
        self._removed: frozenset[int] = frozenset()  # host values a Write-replace cleared
        self._memory: bool | None = None  # the host reports memory (checked once)
        values: dict[int, Value | dict[int, Value]] = {
            MANUFACTURER: info.manufacturer,
            SUPPORTED_BINDINGS: info.supported_bindings,
            ERROR_CODE: dict(enumerate(info.error_codes or [0])),
        }
        given = {
            MODEL_NUMBER: info.model_number,
            SERIAL_NUMBER: info.serial_number,
            FIRMWARE_VERSION: info.firmware_version,
            SOFTWARE_VERSION: info.software_version,
            DEVICE_TYPE: info.device_type,
        }
        values.update((rid, value) for rid, value in given.items() if value)
        execute: dict[int, ExecuteHook] = {REBOOT: self._reboot, RESET_ERROR_CODE: self._reset}
        if on_factory_reset is not None:
            execute[FACTORY_RESET] = on_factory_reset
        super().__init__(values, on_execute=execute)

    def resource_ids(self) -> Iterable[int]:
        ids = set(super().resource_ids())
        host = self.host
        if host is not None:
            ids.add(CURRENT_TIME)
            ids.update(_FROM_HOST)
            if not self._has_memory(host):
                ids -= _MEMORY
            ids -= self._removed
        return ids

    def read(self, resource_id: int) -> MaybeAwaitable[ResourceValue]:
        if resource_id in self.on_read or resource_id in self.values:
            return super().read(resource_id)
        host = self.host
        if host is None or resource_id in self._removed:
            raise NotFoundError(f"resource {resource_id} has no value")
        if resource_id == CURRENT_TIME:
            return host.now() + self._clock_offset
        source = _FROM_HOST.get(resource_id)
        if source is None or (resource_id in _MEMORY and not self._has_memory(host)):
            raise NotFoundError(f"resource {resource_id} has no value")
        return source(host)

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        if resource_id == CURRENT_TIME and isinstance(value, datetime):
            if self.host is not None:
                self._clock_offset = value - self.host.now()
            return None
        self._removed -= {resource_id}
        return super().write(resource_id, value)

    def remove(self, resource_id: int) -> None:
        super().remove(resource_id)
        self._removed |= {resource_id}

    def _has_memory(self, host: HostInfo) -> bool:
        if self._memory is None:
            self._memory = host.memory_kib()[1] is not None
        return self._memory

    def _reboot(self, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        self.reboot_requests += 1
        return self._on_reboot(arguments) if self._on_reboot is not None else None

    def _reset(self, arguments: ExecuteArguments) -> None:
        """Reset Error Code (/3/0/12): back to the single "no error" entry."""
        self.set(ERROR_CODE, {0: 0})

    def set_error_codes(self, codes: Iterable[int]) -> None:
        """Report device errors (1 low battery … 8 peripheral malfunction; see the DDF)."""
        self.set(ERROR_CODE, dict(enumerate(list(codes) or [0])))
