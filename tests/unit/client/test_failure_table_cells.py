"""Every cell of DEFAULT_TABLE, provoked on the virtual clock: the engine does what the cell says.

The cases come from the table itself: change a cell and this test expects the
new action, so it fails unless the engine's behaviour follows (and a rule
hard-coded beside the table fails it too). Each case provokes exactly one
(request kind, failure) pair (a network filter plays the faulty server), then
checks the ``error`` event's ``action`` and the action's visible effect.
A cell marked "n/a" must name a failure that cannot happen to that request:
no provocation exists for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from simkit import EXACT_COAP, FakeTree

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.engine import LinkFailure, ServerState
from aiolwm2m.client.policy import (
    DEFAULT_TABLE,
    Action,
    Failure,
    RequestKind,
    RetrySettings,
    action_reported,
)
from aiolwm2m.coap.layer import MessageLayer
from aiolwm2m.coap.message import (
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    encode_uint,
)
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.sim import HandshakeOutcome, SimServer

SERVER = ("10.0.0.1", 5683)
BOOTSTRAP = ("10.0.0.9", 5683)
MAX_AGE = 5
R, F, A = RequestKind, Failure, Action


def kind_of(msg: Message) -> RequestKind | None:
    """Which request (or notification) a datagram from the client is."""
    path = msg.uri_path
    if msg.code == Code.CONTENT and msg.type == MessageType.CON:
        return R.NOTIFY
    if msg.code == Code.DELETE:
        return R.DEREGISTER
    if msg.code != Code.POST:
        return None
    return {("rd",): R.REGISTER, ("dp",): R.SEND, ("bs",): R.BOOTSTRAP_REQUEST}.get(
        tuple(path), R.UPDATE if path[:1] == ["rd"] else None
    )


@dataclass
class World:
    """A client of a simulated server; ``fault`` answers one request kind as a bad server."""

    net: SimNetwork
    client: SimClient
    server: SimServer
    tree: FakeTree
    seen: dict[RequestKind, list[float]] = field(default_factory=dict)
    fault: tuple[RequestKind, str, int] | None = None  # (kind, drop|reset|respond, code)

    def filter(self, src: Address, dst: Address, data: bytes) -> bool:
        try:
            msg = decode(data)
        except CoapDecodeError:
            return True  # a (modelled) DTLS handshake record
        kind = kind_of(msg)
        if kind is None:
            return True
        self.seen.setdefault(kind, []).append(self.net.clock.now)
        if self.fault is None or self.fault[0] is not kind:
            return True
        _, effect, code = self.fault
        if effect == "respond":
            reply = Message(type=MessageType.ACK, code=code, mid=msg.mid, token=msg.token)
            if code in (Code.TOO_MANY_REQUESTS, Code.SERVICE_UNAVAILABLE):
                reply.add(OptionNumber.MAX_AGE, encode_uint(MAX_AGE))
            self.net.send(dst, src, encode(reply))
        elif effect == "reset":
            self.net.send(dst, src, encode(Message(type=MessageType.RST, mid=msg.mid)))
        return False  # "drop", or answered here

    def run(self, seconds: float) -> None:
        self.net.clock.run_for(seconds)

    def cell_error(self, kind: RequestKind, failure: Failure) -> ev.Error:
        """The first error of ``kind`` (after the 4.29 that staged a (†) case)."""
        staged = failure is not F.TOO_MANY_REQUESTS
        errors = [
            e
            for e in self.client.errors()
            if e.request == kind.value and not (staged and e.code is ev.ErrorCode.TOO_MANY_REQUESTS)
        ]
        assert errors, f"no {kind.value} error in {self.client.events}"
        return errors[0]

    def after(self, event: ev.Event) -> list[ev.Event]:
        """The events that followed ``event``."""
        return self.client.events[self.client.events.index(event) + 1 :]


def world(
    net: SimNetwork, *, dtls: bool = False, bootstrap_only: bool = False, **config: Any
) -> World:
    server = SimServer(
        net, BOOTSTRAP if bootstrap_only else SERVER, dtls=HandshakeOutcome.ACCEPT if dtls else None
    )
    server.start()
    credentials: dict[str, Any] = {"psk_identity": b"dev-1", "psk_key": bytes(16)} if dtls else {}
    retry = RetrySettings(bootstrap_on_registration_failure=False, communication_retry_count=2)
    account = ServerAccount(uri=server.uri, lifetime=300, retry=retry, **credentials)
    bs_uri = server.uri if bootstrap_only else "coap://10.0.0.9:5683"
    bootstrap = ServerAccount(uri=bs_uri, **(credentials if bootstrap_only else {}))
    tree = FakeTree()
    client = SimClient(
        net,
        ClientConfig(
            endpoint="dev-1",
            servers=() if bootstrap_only else (account,),
            bootstrap=bootstrap,
            coap=EXACT_COAP,
            **config,
        ),
        tree,
        rng=random.Random(1),
    )
    w = World(net, client, server, tree)
    net.filters.append(w.filter)
    return w


@pytest.fixture
def refuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[RequestKind]]:
    """Make the message layer refuse requests of some kinds, as on memory exhaustion."""
    refused: set[RequestKind] = set()
    original = MessageLayer.send_request

    def send_request(self: MessageLayer, msg: Message, now: float, **kw: bool) -> int:
        if kind_of(msg) in refused:
            raise MemoryError("no buffer for the request")
        return original(self, msg, now, **kw)

    monkeypatch.setattr(MessageLayer, "send_request", send_request)
    yield refused


# ----------------------------------------------------------------------------- provocations

Provoke = Callable[[SimNetwork, set[RequestKind]], World]
#: How each failure is staged: (effect, code) of the fault on the request, or a special.
FAULTS: dict[Failure, tuple[str, int]] = {
    F.TIMEOUT_NOSEC: ("drop", 0),
    F.TIMEOUT_DTLS: ("drop", 0),
    F.RESET: ("reset", 0),
    F.COAP_ERROR: ("respond", Code.FORBIDDEN),
    F.PRECONDITION_FAILED: ("respond", Code.PRECONDITION_FAILED),
    F.TOO_MANY_REQUESTS: ("respond", Code.TOO_MANY_REQUESTS),
    F.SERVICE_UNAVAILABLE: ("respond", Code.SERVICE_UNAVAILABLE),  # with a Max-Age
}


def _fail(w: World, kind: RequestKind, failure: Failure, refused: set[RequestKind]) -> None:
    """Arm ``failure`` for the next request of ``kind``."""
    if failure is F.NETWORK:
        w.server.stop()  # closed port: ICMP
    elif failure is F.INTERNAL:
        refused.add(kind)
    else:
        effect, code = FAULTS[failure]
        w.fault = (kind, effect, code)


def _registered(net: SimNetwork, failure: Failure) -> World:
    w = world(net, dtls=failure is F.TIMEOUT_DTLS)
    w.client.start()
    w.run(1)
    assert w.client.engine.registered()
    return w


def provoke_first_request(kind: RequestKind, failure: Failure) -> Provoke:
    """The first request of a client (Register, or Bootstrap-Request without servers)."""

    def run(net: SimNetwork, refused: set[RequestKind]) -> World:
        w = world(net, dtls=failure is F.TIMEOUT_DTLS, bootstrap_only=kind is R.BOOTSTRAP_REQUEST)
        if failure is F.TIMEOUT_DTLS:
            # (†): the request right after the handshake would not retry it; the
            # one sent again after a 4.29 does.
            w.fault = (kind, "respond", Code.TOO_MANY_REQUESTS)
            w.client.start()
            w.run(3)
            w.fault = (kind, "drop", 0)
        else:
            _fail(w, kind, failure, refused)
            w.client.start()
        w.run(MAX_AGE + 70)
        return w

    return run


def provoke_after_registration(kind: RequestKind, failure: Failure) -> Provoke:
    def run(net: SimNetwork, refused: set[RequestKind]) -> World:
        w = _registered(net, failure)
        _fail(w, kind, failure, refused)
        if kind is R.UPDATE:
            w.client.trigger_update()
        elif kind is R.DEREGISTER:
            w.client.close()
        elif kind is R.SEND:
            w.client.engine.send(1, b"\x80", 112, net.clock.now)
            w.client.poll()
        elif kind is R.NOTIFY:
            token = b"123456789" if failure is F.INTERNAL else b"obs1"  # 9 bytes: unencodable
            w.tree.notify(net.clock.now, token=token)
            w.client.poll()
        w.run(70)
        return w

    return run


def provoke_connect(failure: Failure) -> Provoke:
    def run(net: SimNetwork, refused: set[RequestKind]) -> World:
        silent = failure in (F.TIMEOUT_DTLS, F.TIMEOUT_NOSEC)
        timeout = 10.0 if failure is F.TIMEOUT_NOSEC else 180.0  # no Register in 10 s
        w = world(net, dtls=failure is not F.DNS, registration=RegistrationConfig(timeout=timeout))
        if failure is F.DNS:
            net.unresolvable.add(SERVER[0])
        elif failure is F.SECURE:
            w.server.handshake = HandshakeOutcome.REJECT
        elif silent:  # the handshake gives up after 123 s, the registration timeout first
            w.server.handshake = HandshakeOutcome.SILENT
        elif failure is F.NETWORK:
            w.server.stop()
        w.client.start()
        if failure is F.INTERNAL:  # what the runtime reports when opening fails oddly
            w.client.engine.link_failed(1, LinkFailure.INTERNAL, net.clock.now, "internal")
            w.client.poll()
        w.run(200)
        return w

    return run


PROVOKE: dict[tuple[RequestKind, Failure], Provoke] = {
    **{
        (kind, f): provoke_first_request(kind, f)
        for kind in (R.REGISTER, R.BOOTSTRAP_REQUEST)
        for f in [*FAULTS, F.NETWORK, F.INTERNAL]
    },
    **{
        (kind, f): provoke_after_registration(kind, f)
        for kind in (R.UPDATE, R.DEREGISTER)
        for f in [*FAULTS, F.NETWORK, F.INTERNAL]
    },
    **{
        (R.SEND, f): provoke_after_registration(R.SEND, f)
        for f in (
            F.TIMEOUT_NOSEC,
            F.TIMEOUT_DTLS,
            F.RESET,
            F.COAP_ERROR,
            F.SERVICE_UNAVAILABLE,
            F.NETWORK,
            F.INTERNAL,
        )
    },
    **{
        (R.NOTIFY, f): provoke_after_registration(R.NOTIFY, f)
        for f in (F.TIMEOUT_NOSEC, F.TIMEOUT_DTLS, F.RESET, F.NETWORK, F.INTERNAL)
    },
    **{
        (R.CONNECT, f): provoke_connect(f)
        for f in (F.DNS, F.SECURE, F.TIMEOUT_DTLS, F.TIMEOUT_NOSEC, F.NETWORK, F.INTERNAL)
    },
}


# ----------------------------------------------------------------------------- effects


def _names(events: list[ev.Event]) -> list[str]:
    return [e.name for e in events if e.name != "state_changed"]


def _effect(w: World, kind: RequestKind, action: Action, err: ev.Error) -> None:
    """Assert the visible effect of ``action`` taken on ``err``."""
    after = w.after(err)
    names = _names(after)
    if action is A.RETRY_HANDSHAKE:
        assert any(t > err.time for t, _peer in w.server.handshakes), "no new handshake"
        assert any(t > err.time for t in w.seen[kind]), "request not sent again"
    elif action is A.ABORT_ALL:
        assert "all_connections_failed" in names
        assert all(s is ServerState.FAILED for s in w.client.engine.server_states().values())
    elif action is A.ABORT_REGISTRATION:
        assert names[:1] == ["retry_scheduled"], names
    elif action is A.FALLBACK_REGISTER:
        assert names[:1] == ["registering"], names
    elif action is A.BOOTSTRAP:
        assert "bootstrap_started" in names[:2], names
    elif action is A.IGNORE:
        if kind is R.DEREGISTER:  # the column ends the session anyway
            assert isinstance(after[-1] if after else None, ev.StateChanged)
            (done,) = w.client.named("deregistered")
            assert isinstance(done, ev.Deregistered) and not done.acknowledged
        else:
            assert not names, names
            assert w.client.engine.registered()
            assert w.client.engine.dropped_notifications(1) == 1
    elif action in (A.CANCEL_OBSERVATION, A.CANCEL_OBSERVATION_UNLESS_STORING):
        storing = w.client.config.servers[0].notification_storing
        cancels = action is A.CANCEL_OBSERVATION or not storing
        assert ("observation_cancelled" in names) is cancels, names
        assert bool(w.tree.cancelled) is cancels
        assert w.client.engine.registered()
    elif action is A.RETRY_LWM2M_1_0:
        (again,) = [e for e in after if isinstance(e, ev.Registering)][:1]
        assert again.lwm2m_version == "1.0"
    elif action is A.WAIT_MAX_AGE:
        again = [t for t in w.seen[kind] if t > err.time]
        assert again and again[0] == pytest.approx(err.time + MAX_AGE, abs=0.1), again
    elif action is A.NONE:
        assert names[:1] == ["send_finished"], names
        assert w.client.engine.registered()
    else:
        pytest.fail(f"no effect check for {action}")


CELLS = sorted(
    DEFAULT_TABLE.items(), key=lambda item: (list(R).index(item[0][0]), list(F).index(item[0][1]))
)


@pytest.mark.parametrize(
    ("cell", "action"), CELLS, ids=[f"{k.value}-{f.value}-{a.value}" for (k, f), a in CELLS]
)
def test_the_engine_does_what_each_cell_of_the_default_table_says(
    cell: tuple[RequestKind, Failure], action: Action, refuse: set[RequestKind]
) -> None:
    provoke = PROVOKE.get(cell)
    if action is A.NOT_APPLICABLE:
        assert provoke is None, f"{cell} can happen: its cell needs an action"
        return
    assert provoke is not None, f"{cell} has an action but no provocation here"
    kind, failure = cell
    w = provoke(SimNetwork(seed=11), refuse)
    err = w.cell_error(kind, failure)
    assert err.action == (action if action_reported(kind, failure) else None), err
    _effect(w, kind, action, err)
