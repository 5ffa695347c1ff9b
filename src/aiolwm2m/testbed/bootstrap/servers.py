"""The bootstrap server on a real UDP socket (the simulated one: :mod:`aiolwm2m.testbed.sim`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.testbed.bootstrap.config import BootstrapConfig
from aiolwm2m.testbed.bootstrap.core import BootstrapCore
from aiolwm2m.testbed.host import AioHost
from aiolwm2m.testbed.peers import ServerEvent

log = logging.getLogger("aiolwm2m.testbed.bootstrap")


class BootstrapServer(AioHost):
    """The bootstrap server on a real UDP socket (127.0.0.1 by default)."""

    __test__ = False

    def __init__(
        self,
        config: BootstrapConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        params: TransmissionParameters | None = None,
        quiet: bool = False,
    ) -> None:
        self.core = BootstrapCore(config, params or TransmissionParameters())
        super().__init__(self.core, host, port, log, quiet=quiet)
        self._waiters: list[tuple[Callable[[ServerEvent], bool], asyncio.Future[ServerEvent]]] = []

    @property
    def uri(self) -> str:
        return f"coap://{self.host}:{self.port}"

    async def wait_for(
        self, kind: str, endpoint: str | None = None, timeout: float = 30.0
    ) -> ServerEvent:
        """The next logged event ``kind`` (for ``endpoint``), or one already logged."""
        for event in self.core.history:
            if event.kind == kind and endpoint in (None, event.endpoint):
                return event
        assert self._loop is not None
        fut: asyncio.Future[ServerEvent] = self._loop.create_future()
        self._waiters.append((lambda e: e.kind == kind and endpoint in (None, e.endpoint), fut))
        return await asyncio.wait_for(fut, timeout)

    def _event(self, event: ServerEvent) -> None:
        for match, fut in list(self._waiters):
            if not fut.done() and match(event):
                fut.set_result(event)
                self._waiters.remove((match, fut))


__all__ = ["BootstrapServer"]
