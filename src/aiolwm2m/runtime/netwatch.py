"""Optional Linux network watcher: a link coming up or an address appearing calls a hook.

The engine cannot see the machine's network; the application usually can, and
says so with :meth:`Client.network_changed` (spec §2: a "network is up" hint
ends pending reconnect and retry waits within a jittered second). On Linux
this watcher does it by itself: it listens to the kernel's routing netlink
broadcasts (``RTMGRP_LINK`` and the address groups) through ``pyroute2``
(the ``netwatch`` extra; imported only here, only when started) and calls
``on_change`` once per burst — a link reaching "up and carrier" (the
kernel's ``IFF_UP`` and ``IFF_LOWER_UP``) or a new address, coalesced over
``settle`` seconds, since bringing a link up announces the link, its
addresses and its routes in quick succession.

Off by default: ``aiolwm2m client --watch-network``, or
``async with NetworkWatcher(client.network_changed): ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiolwm2m.errors import ConfigError

__all__ = ["IFF_LOWER_UP", "IFF_UP", "NetworkWatcher", "network_came_up"]

log = logging.getLogger("aiolwm2m.client")

#: ``net/if.h`` interface flags: administratively up, and with carrier.
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
#: ``linux/rtnetlink.h`` message types the watcher acts on.
RTM_NEWLINK = 16
RTM_NEWADDR = 20


def network_came_up(msg: Any) -> bool:
    """Whether a routing netlink message says the network may now carry traffic."""
    kind = msg["header"]["type"]
    if kind == RTM_NEWADDR:
        return True
    flags = int(msg.get("flags", 0) or 0)
    return kind == RTM_NEWLINK and flags & (IFF_UP | IFF_LOWER_UP) == IFF_UP | IFF_LOWER_UP


class NetworkWatcher:
    """Calls ``on_change()`` when the kernel reports a link up or a new address."""

    def __init__(self, on_change: Callable[[], None], *, settle: float = 0.2) -> None:
        self.on_change = on_change
        self.settle = settle
        self.calls = 0
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._ipr: Any = None

    async def start(self) -> None:
        """Subscribe to the kernel's broadcasts; :class:`ConfigError` without pyroute2."""
        try:
            from pyroute2 import AsyncIPRoute
            from pyroute2.netlink.rtnl import (
                RTMGRP_IPV4_IFADDR,
                RTMGRP_IPV6_IFADDR,
                RTMGRP_LINK,
            )
        except ImportError as exc:
            raise ConfigError(
                "watching the network needs pyroute2: pip install 'aiolwm2m[netwatch]'"
            ) from exc
        self._ipr = AsyncIPRoute()
        await self._ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> NetworkWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        while True:  # each get() yields one batch of broadcasts
            async for msg in self._ipr.get():
                if network_came_up(msg):
                    self._soon()

    def _soon(self) -> None:
        """One call per burst: the first relevant message arms it, the rest join it."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.settle, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self.calls += 1
        log.info("the network changed (netlink): reconnecting soon")
        try:
            self.on_change()
        except Exception:  # the hook must not stop the watcher
            log.exception("network change hook failed")
