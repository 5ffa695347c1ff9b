"""Connectivity Monitoring (/4/0) with the host's IP addresses and default router.

Addresses and routers come from the attached
:class:`~aiolwm2m.lwm2m.objects.host.HostInfo` on each server Read, so a DHCP
renewal shows up without the application doing anything (the runtime's host
reads them from the kernel; see ``aiolwm2m.runtime.host``). Radio resources
(signal strength …) are reported as 0/absent: a host on Ethernet has none, and
a cellular application overrides them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import Value
from ..tree import Instance, MaybeAwaitable, NotFoundError, ResourceValue
from .host import HostInfo

__all__ = ["NETWORK_BEARER_ETHERNET", "ConnectivityInstance"]

NETWORK_BEARER = 0
AVAILABLE_BEARERS = 1
RADIO_SIGNAL_STRENGTH = 2
IP_ADDRESSES = 4
ROUTER_IP_ADDRESSES = 5

#: Network Bearer value for Ethernet (Core Appendix E.5: 41); WLAN is 21.
NETWORK_BEARER_ETHERNET = 41

_FROM_HOST = frozenset({IP_ADDRESSES, ROUTER_IP_ADDRESSES})


class ConnectivityInstance(Instance):
    """/4/0: bearer, IP addresses and router addresses read live from the host."""

    def __init__(
        self, host: HostInfo | None = None, *, bearer: int = NETWORK_BEARER_ETHERNET
    ) -> None:
        self.host = host
        values: dict[int, Value | dict[int, Value]] = {
            NETWORK_BEARER: bearer,
            AVAILABLE_BEARERS: {0: bearer},
            RADIO_SIGNAL_STRENGTH: 0,
        }
        super().__init__(values)

    def resource_ids(self) -> Iterable[int]:
        ids = set(super().resource_ids())
        if self.host is not None:
            ids |= _FROM_HOST
        return ids

    def read(self, resource_id: int) -> MaybeAwaitable[ResourceValue]:
        host = self.host
        if resource_id in self.on_read or resource_id in self.values or host is None:
            return super().read(resource_id)
        if resource_id == IP_ADDRESSES:
            return dict(enumerate(host.ip_addresses()))
        if resource_id == ROUTER_IP_ADDRESSES:
            return dict(enumerate(host.routers()))
        raise NotFoundError(f"resource {resource_id} has no value")
