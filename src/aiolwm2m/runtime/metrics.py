"""Prometheus metrics for clients, and the HTTP endpoint that serves them.

Optional: needs ``prometheus-client`` (``pip install 'aiolwm2m[metrics]'``);
nothing imports this module unless metrics are asked for. The names and
labels are a public contract, documented in ``docs/observability.md``.

Everything is counted from what a client already reports — its events, and
a :class:`~aiolwm2m.runtime.wiretap.WireTap` on its links for what has no
event (notifications sent, request round trips, DTLS handshakes) — so
metrics add no state to the engine. The endpoint runs on the client's own
event loop (no thread), so a scrape reads a consistent state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    MessageType,
    OptionNumber,
    code_class,
    decode,
    is_request,
)
from aiolwm2m.runtime.aio import Client

__all__ = ["PREFIX", "ClientMetrics", "MetricsServer", "request_kind", "serve_metrics"]

PREFIX = "aiolwm2m_client"
#: Round trips up to MAX_TRANSMIT_WAIT (93 s with default parameters).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 93)
#: The link of the Bootstrap-Server (servers' links are their Short Server IDs).
BOOTSTRAP_LINK = 0


#: Requests awaiting an answer remembered per client (timeouts would pile up otherwise).
MAX_PENDING = 256


def _method(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"code_{code}"


def request_kind(method: str, path: list[str]) -> str:
    """The LwM2M request a client-sent CoAP request is, as the ``request`` label."""
    if path[:1] == ["rd"]:
        if len(path) == 1:
            return "register"
        return "deregister" if method == "DELETE" else "update"
    if path == ["bs"]:
        return "bootstrap_request"
    if path == ["dp"]:
        return "send"
    return method.lower()


@dataclass
class _Pending:
    kind: str
    sent_at: float


@dataclass
class _Client:
    client: Client
    endpoint: str
    requests: dict[tuple[int, bytes], _Pending] = field(default_factory=dict)  # link, token
    notifies: dict[tuple[int, int], float] = field(default_factory=dict)  # link, mid


class ClientMetrics:
    """Prometheus metrics of any number of clients, labelled by endpoint name.

    ``metrics = ClientMetrics(); metrics.attach(client)`` before
    ``client.start()``; :func:`serve_metrics` exposes ``metrics.registry``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clients: list[_Client] = []
        r = self.registry
        per_server = ("endpoint", "ssid")

        def counter(name: str, text: str, labels: tuple[str, ...] = per_server) -> Counter:
            return Counter(f"{PREFIX}_{name}", text, labels, registry=r)

        self.state = Gauge(
            f"{PREFIX}_server_state",
            "1 for the state each server is in now (label state), 0 for the others",
            [*per_server, "state"],
            registry=r,
        )
        self.registrations = counter("registrations", "Registers the server accepted")
        self.updates = counter("updates", "Updates the server accepted")
        self.deregistrations = counter("deregistrations", "De-registers done")
        self.reconnects = counter(
            "reconnect_attempts",
            "Outer-loop reconnect attempts scheduled (no server usable)",
            ("endpoint",),
        )
        self.retries = counter(
            "registration_retries", "Registration retries scheduled by the LwM2M 1.1 procedure"
        )
        self.errors = counter(
            "errors",
            "error events by code and the request that failed (empty: none)",
            ("endpoint", "code", "request"),
        )
        self.notifications_sent = counter(
            "notifications_sent", "Observe notifications sent (CON or NON)"
        )
        self.notifications_stored = counter(
            "notifications_stored", "Notifications stored while the server was unreachable"
        )
        self.round_trip = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "First transmission of a client request (or confirmable notification) "
            "to its answer, retransmissions included",
            ["endpoint", "request"],
            buckets=BUCKETS,
            registry=r,
        )
        self.handshakes = counter("dtls_handshakes", "DTLS sessions established")
        self.handshake_failures = counter(
            "dtls_handshake_failures",
            "DTLS handshakes that failed (reason: secure = rejected, handshake_timeout)",
            (*per_server, "reason"),
        )
        self.registry.register(_DroppedCollector(self._clients))

    def attach(self, client: Client) -> None:
        """Count ``client`` from now on (its events and its links)."""
        entry = _Client(client, client.config.endpoint)
        self._clients.append(entry)
        client.subscribe(lambda event: self._event(entry, event))
        client.wire_taps.append(_Tap(self, entry))

    def _event(self, entry: _Client, event: ev.Event) -> None:
        ep = entry.endpoint
        if isinstance(event, ev.StateChanged):
            self.state.labels(ep, str(event.ssid), event.old).set(0)
            self.state.labels(ep, str(event.ssid), event.new).set(1)
        elif isinstance(event, ev.Registered):
            self.registrations.labels(ep, str(event.ssid)).inc()
        elif isinstance(event, ev.Updated):
            self.updates.labels(ep, str(event.ssid)).inc()
        elif isinstance(event, ev.Deregistered):
            self.deregistrations.labels(ep, str(event.ssid)).inc()
        elif isinstance(event, ev.ReconnectScheduled):
            self.reconnects.labels(ep).inc()
        elif isinstance(event, ev.RetryScheduled):
            self.retries.labels(ep, str(event.ssid)).inc()
        elif isinstance(event, ev.Error):
            self.errors.labels(ep, event.code.value, event.request or "").inc()
        elif isinstance(event, ev.NotificationStored):
            self.notifications_stored.labels(ep, str(event.ssid)).inc()


class _Tap:
    """The wire tap of one client: notifications sent, round trips, handshakes."""

    def __init__(self, metrics: ClientMetrics, entry: _Client) -> None:
        self.metrics = metrics
        self.entry = entry

    def datagram(self, link: int, outgoing: bool, data: bytes, now: float) -> None:
        try:
            msg = decode(data)
        except CoapDecodeError:
            return  # counted as malformed by the engine
        entry, ep = self.entry, self.entry.endpoint
        if outgoing:
            if is_request(msg.code) and msg.type in (MessageType.CON, MessageType.NON):
                kind = request_kind(_method(msg.code), msg.uri_path)
                entry.requests.setdefault((link, msg.token), _Pending(kind, now))
                if len(entry.requests) > MAX_PENDING:  # unanswered ones: the oldest go
                    del entry.requests[next(iter(entry.requests))]
            elif (
                msg.has(OptionNumber.OBSERVE)
                and code_class(msg.code) == 2
                and msg.type
                in (
                    MessageType.CON,
                    MessageType.NON,
                )
            ):
                if (link, msg.mid) not in entry.notifies:  # not a retransmission
                    self.metrics.notifications_sent.labels(ep, str(link)).inc()
                if msg.type is MessageType.CON:
                    entry.notifies.setdefault((link, msg.mid), now)
            return
        if msg.type in (MessageType.ACK, MessageType.RST):
            sent_at = entry.notifies.pop((link, msg.mid), None)
            if sent_at is not None:
                self.metrics.round_trip.labels(ep, "notify").observe(now - sent_at)
        if code_class(msg.code) >= 2:
            pending = entry.requests.pop((link, msg.token), None)
            if pending is not None:
                self.metrics.round_trip.labels(ep, pending.kind).observe(now - pending.sent_at)

    def link_up(self, link: int, secure: bool, now: float) -> None:
        self._forget(link)
        if secure:
            self.metrics.handshakes.labels(self.entry.endpoint, str(link)).inc()

    def link_failed(self, link: int, failure: LinkFailure, now: float) -> None:
        self._forget(link)
        if failure in (LinkFailure.SECURE, LinkFailure.HANDSHAKE_TIMEOUT):
            labels = (self.entry.endpoint, str(link), failure.value)
            self.metrics.handshake_failures.labels(*labels).inc()

    def _forget(self, link: int) -> None:
        """A new link: exchanges of the old one will never be answered (no leak)."""
        entry = self.entry
        entry.requests = {k: v for k, v in entry.requests.items() if k[0] != link}
        entry.notifies = {k: v for k, v in entry.notifies.items() if k[0] != link}


class _DroppedCollector(Collector):
    """Notifications dropped by policy: the engine keeps the count, read at scrape time."""

    def __init__(self, clients: list[_Client]) -> None:
        self.clients = clients

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            f"{PREFIX}_notifications_dropped",
            "Notifications dropped by policy (store full, storing off, new registration, "
            "unsent when a Reset ended their observation)",
            labels=["endpoint", "ssid"],
        )
        for entry in self.clients:
            for ssid in sorted(entry.client.engine.server_states()):
                dropped = entry.client.engine.dropped_notifications(ssid)
                family.add_metric([entry.endpoint, str(ssid)], dropped)
        yield family


class MetricsServer:
    """``GET /metrics`` over HTTP/1.x on the running event loop (no thread, no framework)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers: nothing we need
            method, path, *_ = [*request.decode("latin-1").split(), "", ""]
            if method != "GET":
                status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path.split("?")[0] not in ("/metrics", "/"):
                status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, ctype = "200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass  # a scraper that went away or spoke nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Start serving ``registry`` at ``http://host:port/metrics``; ``close()`` stops it."""
    server = MetricsServer(registry)
    await server.start(host, port)
    return server
