"""Device object (/3/0) backed by what the host platform can tell.

This module and :mod:`.connectivity` are the only places in ``lwm2m/`` that
look at the host (``/proc``, :mod:`platform`, the wall clock): the values a
server reads from /3 are meant to be real. All of it goes through a
:class:`Platform` instance so tests, simulations and embedded ports pass
their own and stay deterministic.

Reboot (/3/0/4) and Factory Reset (/3/0/5) only call the application's
callbacks: a library must not reboot the machine by itself. Without a
callback, Reboot answers 2.04 and does nothing but record the request in
:attr:`DeviceInstance.reboot_requests` (the resource is mandatory, so it has
to exist), and Factory Reset is absent (4.04).
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata

from ..model import Value
from ..tree import ExecuteArguments, ExecuteHook, Instance, MaybeAwaitable, ResourceValue

__all__ = ["DeviceInfo", "DeviceInstance", "Platform", "format_utc_offset"]

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


class Platform:
    """The host facts the Device object reports; override any method to fake or extend."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def local_offset(self) -> timedelta:
        offset = datetime.now().astimezone().utcoffset()
        return offset if offset is not None else timedelta(0)

    def timezone_name(self) -> str:
        """IANA name when the host says (``TZ`` or ``/etc/timezone``), else the abbreviation."""
        name = os.environ.get("TZ", "").lstrip(":")
        if name:
            return name
        try:
            with open("/etc/timezone", encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
        return text or time.tzname[0]

    def memory_kib(self) -> tuple[int | None, int | None]:
        """(free, total) memory in KiB from ``/proc/meminfo`` (None when unknown)."""
        try:
            with open("/proc/meminfo", encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return None, None
        fields: dict[str, int] = {}
        for line in lines:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0])
        free = fields.get("MemAvailable", fields.get("MemFree"))
        return free, fields.get("MemTotal")

    def serial_number(self) -> str:
        """``/etc/machine-id`` when readable, else the MAC-derived node id."""
        try:
            with open("/etc/machine-id", encoding="ascii") as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
        return text or f"{uuid.getnode():012x}"

    def model(self) -> str:
        return f"{platform.system()} {platform.machine()}".strip()

    def firmware_version(self) -> str:
        return platform.release()

    def software_version(self) -> str:
        try:
            return "aiolwm2m " + metadata.version("aiolwm2m")
        except metadata.PackageNotFoundError:
            return "aiolwm2m"


@dataclass
class DeviceInfo:
    """Identity values of /3/0; ``None`` fields are filled from the :class:`Platform`."""

    manufacturer: str = "aiolwm2m"
    model_number: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    software_version: str | None = None
    device_type: str | None = None
    supported_bindings: str = "U"
    error_codes: list[int] = field(default_factory=lambda: [0])


class DeviceInstance(Instance):
    """/3/0 with live time, memory and error codes; reboot/factory reset go to callbacks.

    Current Time is writable as the spec allows: the write is kept as an
    offset to the platform clock, so later reads keep ticking from the value
    the server set. UTC Offset and Timezone writes are stored and reported
    back (the host's own clock settings are left alone).
    """

    def __init__(
        self,
        info: DeviceInfo | None = None,
        *,
        platform_: Platform | None = None,
        on_reboot: ExecuteHook | None = None,
        on_factory_reset: ExecuteHook | None = None,
    ) -> None:
        self.platform = platform_ or Platform()
        self.info = info or DeviceInfo()
        self.reboot_requests = 0
        self._on_reboot = on_reboot
        self._clock_offset = timedelta(0)
        p = self.platform
        values: dict[int, Value | dict[int, Value]] = {
            MANUFACTURER: self.info.manufacturer,
            MODEL_NUMBER: self.info.model_number or p.model(),
            SERIAL_NUMBER: self.info.serial_number or p.serial_number(),
            FIRMWARE_VERSION: self.info.firmware_version or p.firmware_version(),
            SOFTWARE_VERSION: self.info.software_version or p.software_version(),
            SUPPORTED_BINDINGS: self.info.supported_bindings,
            ERROR_CODE: dict(enumerate(self.info.error_codes or [0])),
            UTC_OFFSET: format_utc_offset(p.local_offset()),
            TIMEZONE: p.timezone_name(),
        }
        if self.info.device_type is not None:
            values[DEVICE_TYPE] = self.info.device_type
        execute: dict[int, ExecuteHook] = {REBOOT: self._reboot, RESET_ERROR_CODE: self._reset}
        if on_factory_reset is not None:
            execute[FACTORY_RESET] = on_factory_reset
        super().__init__(
            values,
            on_read={CURRENT_TIME: self._current_time},
            on_execute=execute,
        )
        free, total = p.memory_kib()
        if free is not None:
            self.on_read[MEMORY_FREE] = lambda: self.platform.memory_kib()[0] or 0
        if total is not None:
            self.values[MEMORY_TOTAL] = total

    def _current_time(self) -> ResourceValue:
        return self.platform.now() + self._clock_offset

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        if resource_id == CURRENT_TIME and isinstance(value, datetime):
            self._clock_offset = value - self.platform.now()
            return None
        return super().write(resource_id, value)

    def _reboot(self, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        self.reboot_requests += 1
        return self._on_reboot(arguments) if self._on_reboot is not None else None

    def _reset(self, arguments: ExecuteArguments) -> None:
        """Reset Error Code (/3/0/12): back to the single "no error" entry."""
        self.set(ERROR_CODE, {0: 0})

    def set_error_codes(self, codes: Iterable[int]) -> None:
        """Report device errors (1 low battery … 8 peripheral malfunction; see the DDF)."""
        self.set(ERROR_CODE, dict(enumerate(list(codes) or [0])))
