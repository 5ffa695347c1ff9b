"""Simulated runtime: a virtual clock and a simulated network driving the real core.

Everything here is deterministic for a given seed: time only moves when the
scheduler runs the next due callback, so a one-week backoff costs a few
microseconds. Clients hold an :class:`~aiolwm2m.runtime.driver.EngineDriver`
like the asyncio client; the simulated servers (:mod:`aiolwm2m.testbed.sim`) wrap the same
sans-IO cores as the UDP testbed, so a virtual-clock test exercises
production code, not a model of it. This module knows nothing of servers:
the testbed builds on the runtime, never the other way round.

The network knows what a test needs: per-datagram latency and loss, a global
outage ("cable pulled": everything silently dropped), DNS names that do or do
not resolve, and ICMP port-unreachable when a datagram reaches a closed port
from a connected socket.

DTLS is modelled, not run: the virtual clock cannot drive OpenSSL's wall-clock
timers. A ``coaps://`` link sends a marker "ClientHello" datagram on the
:class:`~aiolwm2m.dtls.policy.HandshakeTiming` schedule the real session uses
(RFC 6347 §4.2.4: re-sent after 1, 2, 4… s, failing once a wait of the
maximum elapsed unanswered); a simulated server with ``dtls=``
(:class:`aiolwm2m.testbed.sim.SimServer`) answers it per its
``HandshakeOutcome`` (accept, reject with an alert, or stay silent) and
drops any other datagram from a peer without a session, as a real DTLS
server does. Outcomes map to the same link failures as the real runtime
(``HANDSHAKE_TIMEOUT``, ``SECURE``, ``NETWORK``). The model is one exchange
per handshake; the cookie exchange and the cryptography are not simulated.

Resumption is modelled too: an accepting server hands out a session token
with its "Finished"; the client keeps it per server address and offers it in
its next ClientHello; a server that still knows the token answers
"resumed" (an abbreviated handshake: :data:`ABBREVIATED_FLIGHTS` instead of
:data:`FULL_FLIGHTS` on the wire, as measured with OpenSSL), otherwise it
runs a full one and hands out a new token. The link says which
(``resumed``), as the real runtime's does, and each flight sent is reported
as the real runtime reports it (``handshake_started``,
``handshake_retransmitted``).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import DataModel, LinkFailure, OpenLink
from aiolwm2m.runtime.driver import ClientSurface, EngineDriver

#: A simulated socket address, as on a real network: (IP, port).
Address = tuple[str, int]


class TimerHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A discrete-event scheduler; ``now`` advances only by running callbacks."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(max(when, self.now), callback)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self.now + delay, callback)

    def step(self) -> bool:
        """Run the next due callback; False when nothing is scheduled."""
        while self._heap:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = when
            handle.callback()
            return True
        return False

    def next_time(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_until(self, t: float) -> None:
        while (nt := self.next_time()) is not None and nt <= t:
            self.step()
        self.now = max(self.now, t)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Advance until ``predicate()`` holds or ``timeout`` virtual seconds pass."""
        deadline = self.now + timeout
        while not predicate():
            nt = self.next_time()
            if nt is None or nt > deadline:
                self.now = max(self.now, deadline)
                return predicate()
            self.step()
        return True


#: Marker datagrams of the handshake model (DTLS 1.2 record headers, then a tag).
#: A ClientHello may carry a session token after it; a full "Finished" carries
#: the new token after it.
SIM_CLIENT_HELLO = b"\x16\xfe\xfdsim-client-hello"
SIM_SERVER_FINISHED = b"\x16\xfe\xfdsim-server-finished"
SIM_SERVER_RESUMED = b"\x16\xfe\xfdsim-server-resumed"
SIM_FATAL_ALERT = b"\x15\xfe\xfdsim-fatal-alert"
#: Flights on the wire of a DTLS 1.2 handshake with a cookie exchange, full
#: and abbreviated (measured with OpenSSL: tests/unit/dtls).
FULL_FLIGHTS = 6
ABBREVIATED_FLIGHTS = 5


Receiver = Callable[[Address, bytes], None]
IcmpReceiver = Callable[[Exception], None]


@dataclass
class _Socket:
    addr: Address
    on_datagram: Receiver
    on_icmp: IcmpReceiver | None
    remote: Address | None  # set for connected sockets


@dataclass
class SimNetwork:
    """Datagram delivery between simulated hosts, with faults a test can switch on."""

    seed: int = 0
    latency: float = 0.005
    loss: float = 0.0
    clock: VirtualClock = field(default_factory=VirtualClock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.down = False  # outage: every datagram silently dropped
        self.dns: dict[str, str] = {"localhost": "127.0.0.1"}
        self.unresolvable: set[str] = set()
        self._sockets: dict[Address, _Socket] = {}
        self._ports = itertools.count(40000)
        self.sent = 0
        self.dropped = 0
        self.trace: list[tuple[float, Address, Address, bytes]] | None = None
        self.filters: list[Callable[[Address, Address, bytes], bool]] = []

    # -- sockets -----------------------------------------------------------------
    def bind(
        self,
        addr: Address,
        on_datagram: Receiver,
        on_icmp: IcmpReceiver | None = None,
        remote: Address | None = None,
        *,
        replace: bool = False,
    ) -> Address:
        """Open a socket (port 0 picks one); ``replace`` swaps the handlers of an open one."""
        if addr[1] == 0:
            addr = (addr[0], next(self._ports))
        if addr in self._sockets and not replace:
            raise OSError(f"address {addr} already in use")
        self._sockets[addr] = _Socket(addr, on_datagram, on_icmp, remote)
        return addr

    def unbind(self, addr: Address) -> None:
        self._sockets.pop(addr, None)

    def resolve(self, host: str) -> str | None:
        if host in self.unresolvable:
            return None
        if host in self.dns:
            return self.dns[host]
        parts = host.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return host
        return None

    # -- delivery ------------------------------------------------------------------
    def send(self, src: Address, dst: Address, data: bytes) -> None:
        self.sent += 1
        if self.trace is not None:
            self.trace.append((self.clock.now, src, dst, data))
        if self.down or (self.loss and self.rng.random() < self.loss):
            self.dropped += 1
            return
        if any(not keep(src, dst, data) for keep in self.filters):
            self.dropped += 1
            return
        self.clock.call_later(self.latency, lambda: self._arrive(src, dst, data))

    def _arrive(self, src: Address, dst: Address, data: bytes) -> None:
        sock = self._sockets.get(dst)
        if sock is not None:
            sock.on_datagram(src, data)
            return
        sender = self._sockets.get(src)
        if sender is not None and sender.remote == dst and sender.on_icmp is not None:
            on_icmp = sender.on_icmp
            self.clock.call_later(
                self.latency, lambda: on_icmp(ConnectionRefusedError("port unreachable"))
            )


class _SimLink:
    def __init__(
        self,
        net: SimNetwork,
        local: Address,
        remote: Address,
        *,
        secure: bool = False,
        resumed: bool = False,
    ) -> None:
        self.net = net
        self.local = local
        self.remote = remote
        self.secure = secure
        self.resumed = resumed

    def send(self, data: bytes) -> None:
        self.net.send(self.local, self.remote, data)

    def close(self) -> None:
        self.net.unbind(self.local)


#: Events a :class:`SimClient` keeps by default: at least the last this many.
DEFAULT_HISTORY = 1000


class _SimDriver(EngineDriver):
    """Internal: the engine on the virtual clock, over the simulated network."""

    def __init__(
        self,
        net: SimNetwork,
        config: ClientConfig,
        objects: DataModel | None,
        *,
        rng: random.Random,
        host: str,
    ) -> None:
        super().__init__(config, objects, rng=rng)
        self.net = net
        self.host = host
        self._timer: TimerHandle | None = None
        self._opening: dict[int, TimerHandle | _SimHandshake] = {}
        # Modelled DTLS session tokens per server address (see module docstring).
        self.dtls_sessions: dict[Address, bytes] = {}

    def close(self) -> None:
        self.engine.close(self.now())
        self._pump()

    def now(self) -> float:
        return self.net.clock.now

    def wall_time(self) -> float:
        """The virtual clock: stored times stay exact across a simulated restart."""
        return self.net.clock.now

    def _set_timer(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.net.clock.call_at(when, self._on_timer)

    def _cancel_open(self, link_id: int) -> None:
        handle = self._opening.pop(link_id, None)
        if handle is not None:
            handle.cancel()

    def _begin_open(self, action: OpenLink, generation: int) -> None:
        # Opening is asynchronous in real life (DNS, socket); model it as one
        # scheduler step so ordering matches the asyncio runtime.
        self._opening[action.link] = self.net.clock.call_later(
            0.0, lambda: self._finish_open(action, generation)
        )

    def _finish_open(self, action: OpenLink, gen: int) -> None:
        self._opening.pop(action.link, None)
        ip = self.net.resolve(action.uri.host)
        if ip is None:
            self._link_failed(
                action.link, gen, LinkFailure.DNS, f"cannot resolve {action.uri.host!r}"
            )
            return
        remote = (ip, action.uri.port)
        link_id = action.link
        if action.uri.secure:
            self._opening[link_id] = _SimHandshake(self, link_id, gen, remote)
            return
        local = self.net.bind(
            (self.host, 0),
            lambda _src, data: self._on_datagram(link_id, gen, data),
            lambda exc: self._on_link_error(link_id, gen, exc),
            remote=remote,
        )
        self._link_opened(action.link, gen, _SimLink(self.net, local, remote))


class SimClient(ClientSurface[_SimDriver]):
    """A client on the simulated network; its recent events are also kept in ``events``.

    The same shape as :class:`~aiolwm2m.runtime.aio.Client` (it holds its
    driver and shows the same verbs and accessors), except that every verb is
    synchronous: the work runs as the virtual clock is advanced
    (``net.clock.run_for``…). :meth:`stop` is a crash or power loss.

    ``history`` bounds what ``events`` keeps — at least the last ``history``
    events (the oldest half is dropped when twice as many piled up, so a
    simulated week does not keep every event it ever saw); ``None`` keeps
    them all (a test that inspects a whole long run), ``0`` none (a fleet,
    which counts events as they come).
    """

    __slots__ = ("events", "history")

    def __init__(
        self,
        net: SimNetwork,
        config: ClientConfig,
        objects: DataModel | None = None,
        *,
        rng: random.Random | None = None,
        host: str = "10.0.0.2",
        history: int | None = DEFAULT_HISTORY,
    ) -> None:
        rng = rng or random.Random(net.rng.random())
        super().__init__(_SimDriver(net, config, objects, rng=rng, host=host))
        self.events: list[ev.Event] = []
        self.history = history
        if history != 0:
            self.subscribe(self._keep)

    def _keep(self, event: ev.Event) -> None:
        events = self.events
        events.append(event)
        if self.history is not None and len(events) >= 2 * self.history:
            del events[: len(events) - self.history]

    @property
    def net(self) -> SimNetwork:
        return self._driver.net

    @property
    def host(self) -> str:
        """The client's simulated IP address."""
        return self._driver.host

    @property
    def dtls_sessions(self) -> dict[Address, bytes]:
        """Modelled DTLS session tokens kept per server address (what a reconnect resumes)."""
        return self._driver.dtls_sessions

    def start(self) -> None:
        self._driver.start_engine()

    def close(self) -> None:
        """De-register; the exchange runs as the clock advances."""
        self._driver.close()

    def stop(self) -> None:
        """Drop every link and the timer without De-register (a crash or power loss)."""
        self._driver.stop_links()

    def named(self, name: str) -> list[ev.Event]:
        return [e for e in self.events if e.name == name]

    def errors(self, code: ev.ErrorCode | None = None) -> list[ev.Error]:
        return [
            e for e in self.events if isinstance(e, ev.Error) and (code is None or e.code is code)
        ]


class _SimHandshake:
    """One modelled client handshake on its own connected socket (see module docstring)."""

    def __init__(self, client: _SimDriver, link_id: int, gen: int, remote: Address) -> None:
        self.client = client
        self.link_id = link_id
        self.gen = gen
        self.remote = remote
        net = client.net
        self.local = net.bind((client.host, 0), self._on_datagram, self._on_icmp, remote=remote)
        timing = client.config.dtls
        self._attempt = 0
        self._timers = [
            net.clock.call_later(t, self._send_hello) for t in timing.retransmission_instants
        ]
        self._timers.append(net.clock.call_later(timing.ultimate_timeout, self._timeout))
        self._send_hello()

    def _send_hello(self) -> None:
        """Send (or re-send) the ClientHello and report the flight, as the real runtime does."""
        token = self.client.dtls_sessions.get(self.remote, b"")
        self.client.net.send(self.local, self.remote, SIM_CLIENT_HELLO + token)
        self._attempt += 1
        waits = self.client.config.dtls.waits
        next_timeout = waits[min(self._attempt, len(waits)) - 1]
        self.client._handshake_progress(
            self.link_id, self.gen, self._attempt, next_timeout, bool(token)
        )

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.client.net.unbind(self.local)

    def _fail(self, failure: LinkFailure, detail: str) -> None:
        self.cancel()
        self.client._opening.pop(self.link_id, None)
        self.client._link_failed(self.link_id, self.gen, failure, detail)

    def _timeout(self) -> None:
        self._fail(LinkFailure.HANDSHAKE_TIMEOUT, "timeout (simulated handshake)")

    def _on_icmp(self, exc: Exception) -> None:
        self._fail(LinkFailure.NETWORK, f"network: {exc}")

    def _on_datagram(self, _src: Address, data: bytes) -> None:
        if data == SIM_FATAL_ALERT:
            self.client.dtls_sessions.pop(self.remote, None)
            self._fail(LinkFailure.SECURE, "bad_psk (simulated fatal alert)")
        elif data.startswith(SIM_SERVER_FINISHED) or data == SIM_SERVER_RESUMED:
            resumed = data == SIM_SERVER_RESUMED
            if not resumed:
                self.client.dtls_sessions[self.remote] = data[len(SIM_SERVER_FINISHED) :]
            for timer in self._timers:
                timer.cancel()
            client, link_id, gen = self.client, self.link_id, self.gen
            client._opening.pop(link_id, None)
            # From now on the socket carries the session's (modelled) records.
            client.net.bind(
                self.local,
                lambda _s, d: client._on_datagram(link_id, gen, d),
                lambda exc: client._on_link_error(link_id, gen, exc),
                remote=self.remote,
                replace=True,
            )
            link = _SimLink(client.net, self.local, self.remote, secure=True, resumed=resumed)
            client._link_opened(link_id, gen, link)


__all__ = [
    "ABBREVIATED_FLIGHTS",
    "DEFAULT_HISTORY",
    "FULL_FLIGHTS",
    "SIM_CLIENT_HELLO",
    "SIM_FATAL_ALERT",
    "SIM_SERVER_FINISHED",
    "SIM_SERVER_RESUMED",
    "Address",
    "SimClient",
    "SimNetwork",
    "TimerHandle",
    "VirtualClock",
]
