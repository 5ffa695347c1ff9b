"""The real machine behind the Device (/3) and Connectivity Monitoring (/4) objects.

:func:`system_host` is the :class:`~aiolwm2m.lwm2m.objects.host.HostInfo` the
runtime injects into every client's data model. One instance serves a whole
process: identity facts (serial number, model, kernel release, the package
version from its metadata, the time zone name) are read once and shared by
thousands of clients, while what changes (the clock, free memory, addresses)
is read when a server asks.

Addresses come from ``/proc/net/if_inet6`` (IPv6), the kernel's choice of
source address for an outgoing UDP "connection" (IPv4; ``connect`` on a UDP
socket sends nothing) and the host name's addresses; the default router from
``/proc/net/route``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import platform
import socket
import struct
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib import metadata

__all__ = ["SystemHost", "system_host"]

# A documentation address (RFC 5737): connect() only selects a route, nothing is sent.
_PROBE_V4 = ("192.0.2.1", 9)


class SystemHost:
    """Facts about this machine; override any method to report something else."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def local_offset(self) -> timedelta:
        offset = datetime.now().astimezone().utcoffset()
        return offset if offset is not None else timedelta(0)

    @functools.cache  # noqa: B019 - one instance per process (system_host)
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

    @functools.cache  # noqa: B019
    def serial_number(self) -> str:
        """``/etc/machine-id`` when readable, else the MAC-derived node id."""
        try:
            with open("/etc/machine-id", encoding="ascii") as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
        return text or f"{uuid.getnode():012x}"

    @functools.cache  # noqa: B019
    def model(self) -> str:
        return f"{platform.system()} {platform.machine()}".strip()

    @functools.cache  # noqa: B019
    def firmware_version(self) -> str:
        return platform.release()

    @functools.cache  # noqa: B019
    def software_version(self) -> str:
        try:
            return "aiolwm2m " + metadata.version("aiolwm2m")
        except metadata.PackageNotFoundError:
            return "aiolwm2m"

    def ip_addresses(self) -> list[str]:
        found: list[str] = []
        found.extend(self._primary_ipv4())
        found.extend(self._host_addresses())
        found.extend(self._ipv6_from_proc())
        unique = list(dict.fromkeys(found))
        return [a for a in unique if not ipaddress.ip_address(a).is_loopback] or unique

    def routers(self) -> list[str]:
        try:
            with open("/proc/net/route", encoding="ascii") as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            return []
        out = []
        for line in lines:
            cols = line.split()
            if len(cols) > 2 and cols[1] == "00000000" and cols[2] != "00000000":
                try:
                    raw = struct.pack("<I", int(cols[2], 16))
                except (ValueError, struct.error):
                    continue
                out.append(socket.inet_ntoa(raw))
        return out

    def _primary_ipv4(self) -> list[str]:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect(_PROBE_V4)
                address = sock.getsockname()[0]
        except OSError:
            return []
        return [str(address)] if address != "0.0.0.0" else []

    def _host_addresses(self) -> list[str]:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
        except OSError:
            return []
        return [str(info[4][0]).split("%")[0] for info in infos]

    def _ipv6_from_proc(self) -> list[str]:
        try:
            with open("/proc/net/if_inet6", encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            cols = line.split()
            if not cols or len(cols[0]) != 32:
                continue
            try:
                address = ipaddress.IPv6Address(bytes.fromhex(cols[0]))
            except ValueError:
                continue
            if not address.is_link_local:
                out.append(str(address))
        return out


@functools.cache
def system_host() -> SystemHost:
    """The one :class:`SystemHost` of this process."""
    return SystemHost()
