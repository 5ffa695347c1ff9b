"""Connectivity Monitoring (/4/0) with the host's IP addresses and default router.

Addresses come from ``/proc/net/if_inet6`` (IPv6), the kernel's choice of
source address for an outgoing UDP "connection" (IPv4; ``connect`` on a UDP
socket sends nothing) and the host name's addresses, and the router from the
default route in ``/proc/net/route``. Everything is read on each server Read
through hooks, so a DHCP renewal shows up without the application doing
anything. Radio resources (signal strength …) are reported as 0/absent: a
host on Ethernet has none, and a cellular application overrides them.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from ..model import Value
from ..tree import Instance, ResourceValue

__all__ = ["NETWORK_BEARER_ETHERNET", "ConnectivityInstance", "HostNetwork"]

NETWORK_BEARER = 0
AVAILABLE_BEARERS = 1
RADIO_SIGNAL_STRENGTH = 2
IP_ADDRESSES = 4
ROUTER_IP_ADDRESSES = 5

#: Network Bearer value for Ethernet (Core Appendix E.5: 41); WLAN is 21.
NETWORK_BEARER_ETHERNET = 41

# A documentation address (RFC 5737): connect() only selects a route, nothing is sent.
_PROBE_V4 = ("192.0.2.1", 9)


class HostNetwork:
    """Reads the host's addresses; override methods to report something else."""

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


class ConnectivityInstance(Instance):
    """/4/0: bearer, IP addresses and router addresses read live from the host."""

    def __init__(
        self, network: HostNetwork | None = None, *, bearer: int = NETWORK_BEARER_ETHERNET
    ) -> None:
        self.network = network or HostNetwork()
        values: dict[int, Value | dict[int, Value]] = {
            NETWORK_BEARER: bearer,
            AVAILABLE_BEARERS: {0: bearer},
            RADIO_SIGNAL_STRENGTH: 0,
        }
        super().__init__(
            values,
            on_read={IP_ADDRESSES: self._addresses, ROUTER_IP_ADDRESSES: self._routers},
        )

    def _addresses(self) -> ResourceValue:
        return dict(enumerate(self.network.ip_addresses()))

    def _routers(self) -> ResourceValue:
        return dict(enumerate(self.network.routers()))
