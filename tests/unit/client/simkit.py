"""Virtual-clock helpers for engine tests: clients of a simulated testbed server.

Every test here runs the production engine and the production server core on
:mod:`aiolwm2m.runtime.sim`; nothing sleeps, a week of backoff costs microseconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiolwm2m.accounts import RetrySettings, ServerAccount
from aiolwm2m.client.actions import ClientAction
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.engine import ClientEngine, Notification, OpenLink, SendDatagram
from aiolwm2m.client.observe import ObserveSettings
from aiolwm2m.client.operations import OperationHandler, default_objects
from aiolwm2m.client.policy import ReconnectPolicy
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    is_request,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.objects import FixedHost
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import DEFAULT_HISTORY, SimClient, SimNetwork
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.operations import OperationRequest, OperationResult
from aiolwm2m.testbed.sim import SimServer

#: Deterministic CoAP timing: ACK_RANDOM_FACTOR 1 makes every retransmission
#: schedule exact (2, 4, 8, 16 s; the exchange times out 62 s after sending).
EXACT_COAP = TransmissionParameters(ack_timeout=2.0, ack_random_factor=1.0)
#: Time from sending a CON until it times out with EXACT_COAP: 2+4+8+16+32.
CON_GIVES_UP_AFTER = 62.0

#: Updates at the spec's exact instant (no jitter), for tests that assert the instant.
EXACT_UPDATES = RegistrationConfig(update_jitter=0.0)

MakeClient = Callable[..., SimClient]


def account(uri: str, **changes: Any) -> ServerAccount:
    """A NoSec account; bootstrap-on-failure off unless the test turns it on."""
    retry = changes.pop("retry", RetrySettings(bootstrap_on_registration_failure=False))
    return ServerAccount(uri=uri, lifetime=changes.pop("lifetime", 300), retry=retry, **changes)


def client_factory(net: SimNetwork, uri: str) -> MakeClient:
    def build(*, seed: int = 1, start: bool = True, **changes: Any) -> SimClient:
        servers = changes.pop("servers", None)
        if servers is None:
            servers = (account(uri, **changes.pop("account", {})),)
        config = ClientConfig(
            endpoint=changes.pop("endpoint", "dev-1"),
            servers=servers,
            coap=changes.pop("coap", EXACT_COAP),
            reconnect=changes.pop("reconnect", ReconnectPolicy()),
        )
        objects = changes.pop("objects", None)
        history = changes.pop("history", DEFAULT_HISTORY)
        client = SimClient(
            net, replace(config, **changes), objects, rng=random.Random(seed), history=history
        )
        if start:
            client.start()
        return client

    return build


def sensor_device(
    net: SimNetwork,
    server: SimServer,
    *,
    storing: bool = True,
    confirmable: bool = False,
    lifetime: int = 86400,
    registration: RegistrationConfig | None = None,
) -> tuple[SimClient, OperationHandler, Instance]:
    """A registered client with the production data model and an observable temperature
    (/3303/0/5700); one retry, then the outer loop every 2, 4, 8 s."""
    account = ServerAccount(
        server.uri,
        1,
        lifetime=lifetime,
        notification_storing=storing,
        retry=RetrySettings(bootstrap_on_registration_failure=False, communication_retry_count=1),
    )
    config = ClientConfig(
        endpoint="dev-1",
        servers=(account,),
        coap=TransmissionParameters(ack_random_factor=1.0),
        reconnect=ReconnectPolicy(first_delay_min=2, first_delay_max=2, max_delay=8),
        registration=registration or RegistrationConfig(),
    )
    objects = default_objects(config, observe=ObserveSettings(confirmable=confirmable))
    objects.tree.add_object(3303, factory=lambda iid: Instance())
    sensor = objects.tree.add_instance(3303, 0, Instance({5700: 0.0, 5701: "Cel"}))
    client = SimClient(net, config, objects, rng=random.Random(1))
    client.start()
    net.clock.run_for(1)
    assert client.engine.registered()
    return client, objects, sensor


def requests_to(net: SimNetwork, dst: Address) -> list[tuple[float, Message]]:
    """CoAP requests that left for ``dst`` (needs ``net.trace = []`` before the test)."""
    assert net.trace is not None
    out = []
    for t, _src, to, data in net.trace:
        if to == dst:
            msg = decode(data)
            if is_request(msg.code):
                out.append((t, msg))
    return out


def operate(
    net: SimNetwork, server: SimServer, op: OperationRequest, endpoint: str = "dev-1"
) -> OperationResult:
    """Run one testbed operation against a simulated client; its decoded answer."""
    key = server.start_operation(endpoint, op)
    answers: list[OperationResult] = []

    def answered() -> bool:
        while (event := server.core.next_response()) is not None:
            if event.key == key and event.operation is not None:
                answers.append(event.operation)
        return bool(answers)

    assert net.clock.run_until_true(answered, timeout=30)
    return answers[0]


RST = "rst"
#: A ScriptedServer handler answers a request with a message, RST, or None (silence).
Handler = Callable[[Message], "Message | str | None"]


class ScriptedServer:
    """A server on the simulated network whose answers the test writes by hand.

    It speaks raw CoAP, so a test can send what no well-behaved server would:
    a Reset, a malformed Location-Path, silence for one request kind only.
    Every request it receives is kept in ``received`` with its arrival time.
    """

    def __init__(self, net: SimNetwork, addr: Address, handler: Handler) -> None:
        self.net = net
        self.addr = addr
        self.handler = handler
        self.received: list[tuple[float, Message]] = []
        net.bind(addr, self._on_datagram)

    @property
    def uri(self) -> str:
        return f"coap://{self.addr[0]}:{self.addr[1]}"

    def _on_datagram(self, src: Address, data: bytes) -> None:
        msg = decode(data)
        if not is_request(msg.code):
            return
        self.received.append((self.net.clock.now, msg))
        answer = self.handler(msg)
        if answer is None:
            return
        if answer == RST:
            reply = Message(type=MessageType.RST, code=Code.EMPTY, mid=msg.mid)
        else:
            assert isinstance(answer, Message)
            reply = answer
            reply.type = MessageType.ACK
            reply.mid = msg.mid
            reply.token = msg.token
        self.net.send(self.addr, src, encode(reply))


def registered_answer(location: str = "rd/abc") -> Message:
    reply = Message(code=Code.CREATED)
    for seg in location.split("/"):
        reply.add(OptionNumber.LOCATION_PATH, seg.encode())
    return reply


class FakeTree:
    """An object tree whose notifications and failures the test controls.

    ``notify()`` queues a 2.05 notification for an observation the test pretends
    the server made (it runs until cancelled); ``fail_payload`` makes the object
    list unbuildable.
    """

    def __init__(self, ssid: int = 1) -> None:
        self.ssid = ssid
        self.queued: list[Notification] = []
        self.cancelled: list[tuple[int, bytes, str]] = []
        self.observing: set[bytes] = set()
        self.dropped: list[int] = []
        self.fail_payload = False
        self._seq = 0

    def registration_payload(self, lwm2m_version: str) -> bytes:
        if self.fail_payload:
            raise MemoryError("no room for the object list")
        return b'</>;rt="oma.lwm2m",</1/0>,</3/0>'

    def handle_request(self, ssid: int, request: Message, now: float) -> Message | None:
        return Message(code=Code.NOT_FOUND)

    def drop_observations(self, ssid: int) -> None:
        self.dropped.append(ssid)

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> bool:
        self.cancelled.append((ssid, token, reason))
        if token not in self.observing:
            return False
        self.observing.remove(token)
        return True

    def take_actions(self) -> list[ClientAction]:
        return []

    def take_notifications(self, now: float) -> list[Notification]:
        out, self.queued = self.queued, []
        return out

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None

    def notify(
        self, now: float, *, token: bytes = b"obs1", confirmable: bool = True, value: str = "1"
    ) -> Notification:
        self._seq += 1
        msg = Message(
            type=MessageType.CON if confirmable else MessageType.NON,
            code=Code.CONTENT,
            token=token,
            payload=value.encode(),
        )
        msg.set_uint(OptionNumber.OBSERVE, self._seq)
        note = Notification(self.ssid, token, "/3303/0/5700", msg, now)
        self.observing.add(token)
        self.queued.append(note)
        return note


def observed_values(server: SimServer) -> list[bytes]:
    """Payloads of the 2.05 answers (reads, observe responses, notifications) the server got."""
    out = []
    while (event := server.core.next_response()) is not None:
        assert event.operation is not None
        if event.operation.code == Code.CONTENT:
            out.append(event.operation.payload)
    return out


def sent(engine: ClientEngine) -> list[Message]:
    """The messages the engine asks to send now (decoded)."""
    return [decode(a.data) for a in engine.link_actions() if isinstance(a, SendDatagram)]


def observed_engine(
    config: ClientConfig, after_step: Callable[[ClientEngine], object] = lambda _e: None
) -> tuple[ClientEngine, Instance, int, Message]:
    """A bare engine on an explicit clock, registered with config's first server, which
    observes /3303/0/5700: (engine, the sensor instance, its link, the first notification).

    ``after_step`` runs after each input the engine is given (a check a test keeps
    true throughout)."""
    objects = default_objects(config, host=FixedHost())
    sensor = objects.tree.add_instance(3303, 0, Instance({5700: 1.0}))
    engine = ClientEngine(config, objects, rng=random.Random(5))
    engine.start(0.0)
    after_step(engine)
    link = next(a.link for a in engine.link_actions() if isinstance(a, OpenLink))
    engine.link_up(link, 0.0, secure=False)
    after_step(engine)
    (register,) = sent(engine)
    created = Message(MessageType.ACK, Code.CREATED, register.mid, register.token)
    created.add(OptionNumber.LOCATION_PATH, b"rd")
    engine.datagram_received(link, encode(created), 0.1)
    after_step(engine)
    observe = Message(
        MessageType.CON,
        Code.GET,
        0x100,
        b"obs",
        make_options(path=["3303", "0", "5700"], observe=0),
    )
    engine.datagram_received(link, encode(observe), 0.2)
    after_step(engine)
    (first,) = sent(engine)
    return engine, sensor, link, first
