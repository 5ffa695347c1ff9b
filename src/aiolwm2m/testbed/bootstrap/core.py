"""The bootstrap server's sans-IO core: one provisioning session per client address.

Fed datagrams and time like the LwM2M server core, through the same
per-peer multiplexer (:class:`~aiolwm2m.testbed.peers.PeerMux`); the
asyncio server and the simulated host drive it alike.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, MessageLayer, Outcome
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    code_str,
    is_success,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m import ContentFormat, Path, Record, encode, linkformat
from aiolwm2m.lwm2m.formats import LinkFormatError
from aiolwm2m.testbed.bootstrap.config import WRITE_FORMATS, BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.core import inject_fault
from aiolwm2m.testbed.peers import HISTORY_LIMIT, Address, PeerMux, ServerEvent, ServerLog


class BootstrapStep(enum.Enum):
    DISCOVER = "discover"
    DELETE = "delete"
    WRITE = "write"
    FINISH = "finish"


@dataclass
class _Session:
    endpoint: str
    servers: tuple[ProvisionedServer, ...]
    content_format: int
    steps: list[tuple[BootstrapStep, Message]] = field(default_factory=list)
    current: tuple[int, BootstrapStep, str] | None = None  # (layer key, step, path)


def _path_of(msg: Message) -> str:
    return "/" + "/".join(msg.uri_path)


def _request(code: Code, path: str, **opts: Any) -> Message:
    segments = [s for s in path.split("/") if s]
    return Message(type=MessageType.CON, code=code, options=make_options(path=segments, **opts))


@dataclass
class BootstrapCore:
    """The whole bootstrap server state machine; feed it datagrams and time.

    A session is forgotten once it ends (its outcome is in the log and in
    ``bootstrapped``), so memory grows only with the clients in progress.
    """

    config: BootstrapConfig
    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    history_limit: int = HISTORY_LIMIT

    def __post_init__(self) -> None:
        self.log = ServerLog(self.history_limit)
        self.bootstrapped: dict[str, int] = {}  # endpoint → successful Finishes
        self.requests: dict[str, int] = {}  # endpoint → Bootstrap-Requests seen
        self.peers = PeerMux(self.params, self.rng, self, self.log)
        self._sessions: dict[Address, _Session] = {}

    @property
    def history(self) -> deque[ServerEvent]:
        """The last ``history_limit`` events, oldest first."""
        return self.log.history

    def take_events(self) -> list[ServerEvent]:
        """Events logged since the last call (what a host forwards to its listeners)."""
        return self.log.take()

    # -- IO boundary ------------------------------------------------------------------------
    def datagram_received(self, addr: Address, data: bytes, now: float) -> None:
        self.peers.receive(addr, data, now)

    def handle_timer(self, now: float) -> None:
        self.peers.handle_timer(now)

    def next_timer(self) -> float | None:
        return self.peers.next_timer()

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        return self.peers.datagrams_to_send()

    def forget_peers(self) -> None:
        """A restart: message-layer state and sessions are lost."""
        self.peers.clear()
        self._sessions.clear()

    def push(
        self, addr: Address, endpoint: str, now: float, content_format: int | None = None
    ) -> bool:
        """Server-initiated bootstrap: provision the client at ``addr`` without a Request."""
        servers = self.config.servers_for(endpoint)
        if servers is None:
            self.log.add(now, "unknown_endpoint", endpoint)
            return False
        self._start(addr, endpoint, servers, content_format, now)
        self.peers.drain(addr, now)
        return True

    # -- PeerHandler ------------------------------------------------------------------------
    def on_request(
        self, addr: Address, layer: MessageLayer, req: IncomingRequest, now: float
    ) -> None:
        msg = req.message
        try:
            is_bs = msg.code == Code.POST and msg.uri_path == ["bs"]
            args = {k: v for k, _, v in (q.partition("=") for q in msg.uri_query)}
        except CoapDecodeError:
            layer.respond(req.key, Message(code=Code.BAD_REQUEST), now)
            return
        if not is_bs:
            layer.respond(req.key, Message(code=Code.NOT_FOUND), now)
            return
        endpoint = args.get("ep")
        if not endpoint:
            layer.respond(req.key, Message(code=Code.BAD_REQUEST, payload=b"missing ep"), now)
            return
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
        asked = args.get("pct")
        self.log.add(now, "bootstrap_request", endpoint, f"pct={asked or '-'}", pct=asked)
        for fault in self.config.faults:
            if fault.matches(endpoint):
                if fault.count is not None:
                    fault.count -= 1
                self.log.add(
                    now,
                    "fault",
                    endpoint,
                    f"bootstrap_request: {fault.kind.value}",
                    operation="bootstrap_request",
                    fault=fault.kind.value,
                )
                answer = Message(code=fault.code, payload=fault.payload)
                inject_fault(layer, req, fault.kind, answer, now)
                return
        servers = self.config.servers_for(endpoint)
        if servers is None:
            self.log.add(now, "unknown_endpoint", endpoint)
            layer.respond(req.key, Message(code=Code.BAD_REQUEST, payload=b"unknown endpoint"), now)
            return
        layer.respond(req.key, Message(code=Code.CHANGED), now)
        pct: int | None
        try:
            pct = int(args["pct"]) if "pct" in args else None
        except ValueError:
            pct = None
        self._start(addr, endpoint, servers, pct, now)

    def _start(
        self,
        addr: Address,
        endpoint: str,
        servers: tuple[ProvisionedServer, ...],
        pct: int | None,
        now: float,
    ) -> None:
        cf = self.config.content_format
        if cf is None:
            cf = pct if pct in WRITE_FORMATS else ContentFormat.TLV
        session = _Session(endpoint, servers, cf)
        if self.config.discover:
            session.steps.append(
                (BootstrapStep.DISCOVER, _request(Code.GET, "/0", accept=ContentFormat.LINK_FORMAT))
            )
        session.steps += [
            (BootstrapStep.DELETE, _request(Code.DELETE, "/0")),
            (BootstrapStep.DELETE, _request(Code.DELETE, "/1")),
        ]
        if not self.config.discover:
            self._add_writes(session, set())
        self._sessions[addr] = session
        self._next(addr, now)

    def _add_writes(self, session: _Session, taken: set[int]) -> None:
        """Write each account, then ``account_timeout`` into the client's own
        Bootstrap-Server instances (``taken``, found by Discover), then Finish."""
        own = sorted(taken)
        iid = self.config.first_instance_id
        chosen = {s.security_instance for s in session.servers if s.security_instance is not None}
        taken = taken | chosen  # numbered accounts go around the chosen ids
        for index, server in enumerate(session.servers):
            while iid in taken:
                iid += 1
            sec = iid if server.security_instance is None else server.security_instance
            srv = index if server.server_instance is None else server.server_instance
            session.steps.append(self._write(f"/0/{sec}", server.security_records(sec), session))
            session.steps.append(self._write(f"/1/{srv}", server.server_records(srv), session))
            if server.security_instance is None:
                iid += 1
        timeout = self.config.account_timeout
        if timeout is not None:
            for bs_iid in own:
                record = Record(Path.of(0, bs_iid, 12), timeout)
                session.steps.append(self._write(f"/0/{bs_iid}/12", [record], session))
        session.steps.append((BootstrapStep.FINISH, _request(Code.POST, "/bs")))

    def _write(
        self, path: str, records: list[Record], session: _Session
    ) -> tuple[BootstrapStep, Message]:
        payload = encode(session.content_format, records, Path.parse(path))
        msg = _request(Code.PUT, path, content_format=session.content_format)
        msg.payload = payload
        return BootstrapStep.WRITE, msg

    def _next(self, addr: Address, now: float) -> None:
        session = self._sessions.get(addr)
        if session is None:
            return
        if not session.steps:
            del self._sessions[addr]
            return
        step, msg = session.steps.pop(0)
        key = self.peers.layer(addr, now).send_request(msg, now)
        session.current = (key, step, _path_of(msg))

    def on_result(
        self, addr: Address, layer: MessageLayer, result: ExchangeResult, now: float
    ) -> None:
        session = self._sessions.get(addr)
        if session is None or session.current is None or session.current[0] != result.key:
            return
        _, step, path = session.current
        session.current = None
        ep = session.endpoint
        resp = result.response
        if result.outcome is not Outcome.RESPONSE or resp is None:
            self.log.add(
                now,
                "bootstrap_failed",
                ep,
                f"{step.value} {path}: {result.outcome.value}",
                step=step.value,
                path=str(path),
                outcome=result.outcome.value,
            )
            del self._sessions[addr]
            return
        code = code_str(resp.code)
        self.log.add(now, f"bs_{step.value}", ep, f"{path} {code}", path=str(path), code=code)
        if step is BootstrapStep.FINISH:
            del self._sessions[addr]
            if is_success(resp.code):
                self.bootstrapped[ep] = self.bootstrapped.get(ep, 0) + 1
                count = len(session.servers)
                self.log.add(now, "bootstrapped", ep, f"{count} server(s)", servers=count)
            else:
                diagnostic = resp.payload.decode("utf-8", "replace")
                self.log.add(
                    now,
                    "finish_rejected",
                    ep,
                    f"{code} {diagnostic}".strip(),
                    code=code,
                    diagnostic=diagnostic,
                )
            return
        if not is_success(resp.code):
            self.log.add(
                now,
                "bootstrap_failed",
                ep,
                f"{step.value} {path}: {code}",
                step=step.value,
                path=str(path),
                code=code,
            )
            del self._sessions[addr]
            return
        if step is BootstrapStep.DISCOVER:
            try:
                # After the deletes only the client's Bootstrap-Server account
                # remains: the Security instance Discover lists without an ssid.
                taken = {
                    p.instance_id
                    for link in linkformat.decode(resp.payload)
                    if (p := link.path()).object_id == 0
                    and p.instance_id is not None
                    and not link.has("ssid")
                }
            except LinkFormatError as exc:
                self.log.add(
                    now,
                    "bootstrap_failed",
                    ep,
                    f"discover: {exc}",
                    step="discover",
                    reason=str(exc),
                )
                del self._sessions[addr]
                return
            self._add_writes(session, taken)
        self._next(addr, now)


__all__ = ["BootstrapCore", "BootstrapStep"]
