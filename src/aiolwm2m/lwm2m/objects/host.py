"""What the Device (/3) and Connectivity Monitoring (/4) objects report about the machine.

The values a server reads from /3 and /4 are meant to be real (the wall
clock, free memory, IP addresses), but reading them is IO, and ``lwm2m/`` is
sans-IO. So the objects only see a :class:`HostInfo`: the runtime injects one
(``aiolwm2m.runtime.host.system_host()``, shared by every client of a process,
which reads identity facts and package metadata once), tests and simulations
pass a :class:`FixedHost`, an embedded port passes its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["FixedHost", "HostInfo"]


class HostInfo(Protocol):
    """The host facts /3 and /4 report; each method is called when a server reads."""

    def now(self) -> datetime:
        """The wall clock (timezone-aware): Current Time, /3/0/13."""

    def local_offset(self) -> timedelta:
        """The host's offset from UTC now: UTC Offset, /3/0/14."""

    def timezone_name(self) -> str:
        """IANA time zone name, else the abbreviation: Timezone, /3/0/15."""

    def memory_kib(self) -> tuple[int | None, int | None]:
        """(free, total) memory in KiB; None when unknown (/3/0/10 and /3/0/21 go away)."""

    def serial_number(self) -> str: ...

    def model(self) -> str: ...

    def firmware_version(self) -> str: ...

    def software_version(self) -> str: ...

    def ip_addresses(self) -> list[str]:
        """The addresses a server may see this host at: IP Addresses, /4/0/4."""

    def routers(self) -> list[str]:
        """Default routers: Router IP Addresses, /4/0/5."""


@dataclass
class FixedHost:
    """A host whose every fact is given: deterministic tests and simulations.

    ``now`` is the time Current Time reports (it does not advance unless the
    caller sets it).
    """

    now_: datetime = datetime(2030, 1, 1, tzinfo=UTC)
    offset: timedelta = timedelta(0)
    timezone: str = "UTC"
    memory: tuple[int | None, int | None] = (None, None)
    serial: str = "0000"
    model_name: str = "aiolwm2m"
    firmware: str = "0"
    software: str = "aiolwm2m"
    addresses: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)

    def now(self) -> datetime:
        return self.now_

    def local_offset(self) -> timedelta:
        return self.offset

    def timezone_name(self) -> str:
        return self.timezone

    def memory_kib(self) -> tuple[int | None, int | None]:
        return self.memory

    def serial_number(self) -> str:
        return self.serial

    def model(self) -> str:
        return self.model_name

    def firmware_version(self) -> str:
        return self.firmware

    def software_version(self) -> str:
        return self.software

    def ip_addresses(self) -> list[str]:
        return list(self.addresses)

    def routers(self) -> list[str]:
        return list(self.gateways)
