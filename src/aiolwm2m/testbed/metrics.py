"""Prometheus metrics of a testbed server (``aiolwm2m server --metrics HOST:PORT``).

Read from the core's own counters (:meth:`ServerCore.stats`) at scrape time,
so serving them costs the server nothing between scrapes. Names and labels:
``docs/observability.md``. Needs the optional ``prometheus-client``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiolwm2m.testbed.core import ServerCore

__all__ = ["PREFIX", "ServerMetrics"]

PREFIX = "aiolwm2m_server"

#: stats() keys that are sizes now (gauges); the others are totals since start.
_GAUGES = {
    "registrations": "Clients registered now",
    "peers": "Peers (address, port) with message-layer state now",
    "open_requests": "Server-initiated requests awaiting an answer now",
}
_COUNTERS = {
    "datagrams_in": ("datagrams_received", "Datagrams received (after DTLS)"),
    "datagrams_out": ("datagrams_sent", "Datagrams sent (before DTLS)"),
    "peers_forgotten": ("peers_forgotten", "Idle peers whose state was dropped"),
}


class ServerMetrics(Collector):
    """A collector over one server core; ``registry.register(ServerMetrics(core))``."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def collect(self) -> Iterable[Metric]:
        stats = self.core.stats()
        for key, text in _GAUGES.items():
            yield GaugeMetricFamily(f"{PREFIX}_{key}", text, value=stats.pop(key, 0))
        for key, (name, text) in _COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", text, value=stats.pop(key, 0))
        events = CounterMetricFamily(
            f"{PREFIX}_events",
            "Server log events by kind (registered, updated, deregistered, expired, "
            "handshake_rejected, fault, malformed, send, ...)",
            labels=["kind"],
        )
        for kind, count in sorted(stats.items()):  # what is left: the log's counts
            events.add_metric([kind], count)
        yield events
