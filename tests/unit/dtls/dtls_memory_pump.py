"""Move datagrams between a client session and a server endpoint in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiolwm2m.dtls import DtlsClientSession, DtlsServerEndpoint

CLIENT_ADDR = ("192.0.2.1", 50000)


def pump(
    client: DtlsClientSession,
    server: DtlsServerEndpoint,
    *,
    addr: Any = CLIENT_ADDR,
    rounds: int = 30,
    drop: Callable[[str, bytes], bool] | None = None,
    wire: list[tuple[str, bytes]] | None = None,
) -> tuple[list[bytes], list[tuple[Any, bytes]]]:
    """Exchange until quiet; return (records the client got, records the server got).

    ``drop(direction, datagram)`` may discard datagrams ("c2s" / "s2c");
    ``wire`` collects everything that was sent.
    """
    to_client: list[bytes] = []
    to_server: list[tuple[Any, bytes]] = []
    for _ in range(rounds):
        moved = False
        for d in client.datagrams_to_send():
            moved = True
            if wire is not None:
                wire.append(("c2s", d))
            if drop is None or not drop("c2s", d):
                to_server += server.handle_datagram(addr, d)
        for a, d in server.datagrams_to_send():
            moved = True
            if wire is not None:
                wire.append(("s2c", d))
            if a == addr and (drop is None or not drop("s2c", d)):
                to_client += client.handle_datagram(d)
        if not moved:
            break
    return to_client, to_server
