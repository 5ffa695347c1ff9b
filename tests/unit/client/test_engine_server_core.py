"""The client engine and the testbed server core, two pure objects talking (issue 11 item G).

In the manner of aioquic's ``tests/test_connection.py``: no driver, no
event loop, no sockets, no simulated network. A hand loop moves datagrams
between :meth:`ClientEngine.link_actions` and the :class:`ServerCore`'s
input and output, and a plain float clock jumps to whichever side's timer
is due next. What the whole client does on its runtimes is therefore what
these two objects do with each other.
"""

from __future__ import annotations

import random

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.client.engine import ClientEngine, CloseLink, OpenLink, SendDatagram
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import Code
from aiolwm2m.lwm2m.objects import FixedHost
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.testbed.core import ResponseEvent, ServerCore
from aiolwm2m.testbed.operations import observe_request, read_request

CLIENT = ("10.0.0.2", 40000)
LIFETIME = 300
#: Spec §10 with the default CoAP parameters: lifetime − MAX_TRANSMIT_WAIT (93 s).
UPDATE_AFTER = LIFETIME - 93.0


class Pair:
    """One engine, one server core, one clock; the loop a runtime would run."""

    def __init__(self, engine: ClientEngine, core: ServerCore) -> None:
        self.engine = engine
        self.core = core
        self.now = 0.0
        self.link: int | None = None  # the engine's one link, once open
        self.events: list[ev.Event] = []
        self.server_kinds: list[tuple[float, str]] = []
        self.responses: list[ResponseEvent] = []

    def pump(self) -> None:
        """Carry datagrams both ways until neither side has anything to send."""
        moved = True
        while moved:
            moved = False
            for action in self.engine.link_actions():
                moved = True
                if isinstance(action, OpenLink):
                    assert self.link is None, "one server, one link"
                    self.link = action.link
                    self.engine.link_up(action.link, self.now)
                elif isinstance(action, SendDatagram):
                    assert action.link == self.link
                    self.core.datagram_received(CLIENT, action.data, self.now)
                elif isinstance(action, CloseLink):
                    assert action.link == self.link
                    self.link = None
            for addr, data in self.core.datagrams_to_send():
                moved = True
                assert addr == CLIENT and self.link is not None
                self.engine.datagram_received(self.link, data, self.now)
        self._collect()

    def _collect(self) -> None:
        while (event := self.engine.next_event()) is not None:
            self.events.append(event)
        self.server_kinds += [(e.time, e.kind) for e in self.core.take_events()]
        while (response := self.core.next_response()) is not None:
            self.responses.append(response)

    def run_until(self, end: float) -> None:
        """Advance the clock to ``end``, firing each side's timers at their instants."""
        self.pump()
        while True:
            due = [t for t in (self.engine.next_timer(), self.core.next_timer()) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            engine_due = self.engine.next_timer()
            if engine_due is not None and engine_due <= self.now:
                self.engine.handle_timer(self.now)
            core_due = self.core.next_timer()
            if core_due is not None and core_due <= self.now:
                self.core.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, end)

    def of(self, kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)]


def make_pair() -> tuple[Pair, Instance]:
    config = ClientConfig(
        endpoint="dev-1",
        servers=(ServerAccount("coap://10.0.0.1:5683", 1, lifetime=LIFETIME),),
        registration=RegistrationConfig(update_jitter=0.0),
    )
    objects = default_objects(config, host=FixedHost())
    objects.tree.add_object(3303, factory=lambda iid: Instance())
    sensor = objects.tree.add_instance(3303, 0, Instance({5700: 20.0, 5701: "Cel"}))
    engine = ClientEngine(config, objects, rng=random.Random(1))
    return Pair(engine, ServerCore(rng=random.Random(2))), sensor


def test_register_read_observe_update_deregister_without_a_driver() -> None:
    pair, sensor = make_pair()
    engine, core = pair.engine, pair.core

    # Register -> registered, on both sides, at once (no latency on this wire).
    engine.start(pair.now)
    pair.run_until(1.0)
    assert engine.registered(1)
    (registered,) = pair.of(ev.Registered)
    assert isinstance(registered, ev.Registered) and registered.lifetime == LIFETIME
    assert registered.time == 0.0
    assert pair.server_kinds == [(0.0, "registered")]
    assert core.registrations["dev-1"].lifetime == LIFETIME

    # A server Read of /3/0 is answered with the Device object.
    core.start_operation("dev-1", read_request("/3/0"), pair.now)
    pair.run_until(2.0)
    (read,) = pair.responses
    assert read.final and read.operation is not None
    assert read.operation.code == Code.CONTENT
    assert read.operation.value(Path.parse("/3/0/0")) == "aiolwm2m"  # Manufacturer

    # Observe the temperature, change it: the notification reaches the server.
    pair.responses.clear()
    key = core.start_operation("dev-1", observe_request("/3303/0/5700"), pair.now)
    pair.run_until(3.0)
    (first,) = pair.responses
    assert first.key == key and not first.final and first.operation is not None
    assert first.operation.value(Path.parse("/3303/0/5700")) == 20.0
    pair.responses.clear()
    sensor.set(5700, 21.5)
    engine.poll(pair.now)
    pair.run_until(4.0)
    (note,) = pair.responses
    assert note.key == key and not note.final and note.operation is not None
    assert note.operation.value(Path.parse("/3303/0/5700")) == 21.5
    assert note.operation.observe is not None and first.operation.observe is not None
    assert note.operation.observe > first.operation.observe

    # The Update goes out at its scheduled instant, not a moment before.
    pair.run_until(UPDATE_AFTER - 0.5)
    assert not pair.of(ev.UpdateSent)
    pair.run_until(UPDATE_AFTER + 1.0)
    (update,) = pair.of(ev.UpdateSent)
    assert update.time == UPDATE_AFTER
    assert (UPDATE_AFTER, "updated") in pair.server_kinds
    assert pair.of(ev.Updated) and engine.registered(1)

    # close() de-registers: the server forgets the endpoint, the link closes.
    engine.close(pair.now)
    pair.run_until(pair.now + 5.0)
    (gone,) = pair.of(ev.Deregistered)
    assert isinstance(gone, ev.Deregistered) and gone.acknowledged
    assert pair.server_kinds[-1] == (UPDATE_AFTER + 1.0, "deregistered")
    assert "dev-1" not in core.registrations
    assert pair.link is None
    assert not engine.registered(1)
