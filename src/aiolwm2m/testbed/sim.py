"""Simulated servers: the testbed's sans-IO server cores on the simulated network.

The virtual clock and the network (:mod:`aiolwm2m.runtime.sim`) are the
runtime's; the servers that live on it are the testbed's, so the runtime never
imports the testbed. :class:`SimHost` is the one place that turns a core's
datagrams and timer into simulated traffic and clock callbacks, for the LwM2M
server (:class:`SimServer`, optionally a modelled DTLS server) and the
bootstrap server (:class:`SimBootstrapServer`) alike.
"""

from __future__ import annotations

import enum
import random

from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.sim import (
    ABBREVIATED_FLIGHTS,
    FULL_FLIGHTS,
    SIM_CLIENT_HELLO,
    SIM_FATAL_ALERT,
    SIM_SERVER_FINISHED,
    SIM_SERVER_RESUMED,
    SimNetwork,
    TimerHandle,
)
from aiolwm2m.testbed.bootstrap import BootstrapConfig, BootstrapCore
from aiolwm2m.testbed.core import Address, ServerCore
from aiolwm2m.testbed.host import SansIoCore
from aiolwm2m.testbed.operations import OperationRequest


class HandshakeOutcome(enum.Enum):
    """How a simulated DTLS server answers a handshake."""

    ACCEPT = "accept"
    REJECT = "reject"  # fatal alert, e.g. wrong PSK or refused certificate
    SILENT = "silent"  # never answers: the client's handshake times out


class SimHost:
    """A sans-IO server core bound to an address on the simulated network.

    The one place that turns a core's datagrams and timer into simulated
    network traffic and clock callbacks, for every simulated server.
    """

    def __init__(self, net: SimNetwork, addr: Address, core: SansIoCore) -> None:
        self.net = net
        self.addr = addr
        self.host_core = core
        self._timer: TimerHandle | None = None
        self.running = False

    @property
    def uri(self) -> str:
        return f"coap://{self.addr[0]}:{self.addr[1]}"

    def start(self) -> None:
        self.net.bind(self.addr, self._on_datagram)
        self.running = True
        self._pump()

    def stop(self) -> None:
        """Close the port: clients' connected sockets now get ICMP port-unreachable."""
        self.net.unbind(self.addr)
        self.running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_datagram(self, src: Address, data: bytes) -> None:
        self.host_core.datagram_received(src, data, self.net.clock.now)
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.host_core.handle_timer(self.net.clock.now)
        self._pump()

    def _reachable(self, dst: Address) -> bool:
        """Whether a datagram the core sends to ``dst`` goes out (DTLS: needs a session)."""
        return True

    def _pump(self) -> None:
        if not self.running:
            return
        for dst, data in self.host_core.datagrams_to_send():
            if self._reachable(dst):
                self.net.send(self.addr, dst, data)
        if self._timer is not None:
            self._timer.cancel()
        when = self.host_core.next_timer()
        self._timer = self.net.clock.call_at(when, self._on_timer) if when is not None else None


class SimServer(SimHost):
    """A :class:`ServerCore` bound to an address on the simulated network.

    With ``dtls=`` it is a (modelled) DTLS server: ``handshake`` says how it
    answers handshakes and may be changed at any time; ``handshakes`` records
    (time, peer) of every ClientHello and ``flights`` the modelled flights of
    each handshake (fewer for an abbreviated one, i.e. a resumed session);
    datagrams from peers without a session are dropped and counted in
    ``dropped_without_session``. ``restart()`` forgets every session and,
    unless ``keep_sessions``, every resumable one too.
    """

    def __init__(
        self,
        net: SimNetwork,
        addr: Address = ("10.0.0.1", 5683),
        *,
        params: TransmissionParameters | None = None,
        dtls: HandshakeOutcome | None = None,
        keep_sessions: bool = False,
    ) -> None:
        self.handshake = dtls
        self.keep_sessions = keep_sessions
        self.sessions: set[Address] = set()
        self.resumable: set[bytes] = set()
        self.handshakes: list[tuple[float, Address]] = []
        self.flights: list[int] = []
        self._tokens_issued = 0
        self.dropped_without_session = 0
        self.core = ServerCore(
            params=params or TransmissionParameters(), rng=random.Random(net.rng.random())
        )
        super().__init__(net, addr, self.core)

    @property
    def uri(self) -> str:
        scheme = "coap" if self.handshake is None else "coaps"
        return f"{scheme}://{self.addr[0]}:{self.addr[1]}"

    def restart(self) -> None:
        self.stop()
        self.core.forget_peers()
        self.sessions.clear()
        if not self.keep_sessions:
            self.resumable.clear()
        self.start()

    def start_operation(self, endpoint: str, request: OperationRequest) -> int:
        """Send an LwM2M operation now; its answer comes from ``core.next_response()``."""
        key = self.core.start_operation(endpoint, request, self.net.clock.now)
        self._pump()
        return key

    def _on_datagram(self, src: Address, data: bytes) -> None:
        if self.handshake is not None and not self._dtls_datagram(src, data):
            return
        super()._on_datagram(src, data)

    def _dtls_datagram(self, src: Address, data: bytes) -> bool:
        """Run the handshake model; True when ``data`` is a record of an open session."""
        if data.startswith(SIM_CLIENT_HELLO):
            self.handshakes.append((self.net.clock.now, src))
            self.sessions.discard(src)
            token = data[len(SIM_CLIENT_HELLO) :]
            if self.handshake is HandshakeOutcome.ACCEPT:
                self.sessions.add(src)
                if token in self.resumable:
                    self.flights.append(ABBREVIATED_FLIGHTS)
                    self.net.send(self.addr, src, SIM_SERVER_RESUMED)
                else:
                    self.flights.append(FULL_FLIGHTS)
                    self._tokens_issued += 1  # never reused, not even after a restart
                    token = b"#%d" % self._tokens_issued
                    self.resumable.add(token)
                    self.net.send(self.addr, src, SIM_SERVER_FINISHED + token)
            elif self.handshake is HandshakeOutcome.REJECT:
                self.net.send(self.addr, src, SIM_FATAL_ALERT)
            return False
        if src not in self.sessions:
            self.dropped_without_session += 1
            return False
        return True

    def _reachable(self, dst: Address) -> bool:
        return self.handshake is None or dst in self.sessions


class SimBootstrapServer(SimHost):
    """A :class:`BootstrapCore` bound to an address on the simulated network."""

    def __init__(
        self,
        net: SimNetwork,
        config: BootstrapConfig,
        addr: Address = ("10.0.0.9", 5683),
        *,
        params: TransmissionParameters | None = None,
    ) -> None:
        self.core = BootstrapCore(
            config, params or TransmissionParameters(), random.Random(net.rng.random())
        )
        super().__init__(net, addr, self.core)

    def push(self, client: Address, endpoint: str) -> bool:
        """Server-initiated bootstrap of the client socket at ``client``."""
        started = self.core.push(client, endpoint, self.net.clock.now)
        self._pump()
        return started

    def kinds(self, endpoint: str | None = None) -> list[str]:
        return [e.kind for e in self.core.history if endpoint in (None, e.endpoint)]


__all__ = [
    "HandshakeOutcome",
    "SimBootstrapServer",
    "SimHost",
    "SimServer",
]
