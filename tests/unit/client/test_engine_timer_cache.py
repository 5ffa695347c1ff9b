"""The engine keeps the scan of its own timers between inputs (ClientEngine.next_timer).

A poll that only sent NON notifications leaves them as they were; anything
else (a CON notification's retransmission, queue mode's sleep deadline, any
input) must make the next ``next_timer()`` scan again. Checked against a
forced rescan after every step.
"""

from __future__ import annotations

import random

import pytest

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.engine import ClientEngine, OpenLink, SendDatagram
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    make_options,
)
from aiolwm2m.lwm2m.objects import FixedHost
from aiolwm2m.lwm2m.tree import Instance


def sent(engine: ClientEngine) -> list[Message]:
    return [decode(a.data) for a in engine.link_actions() if isinstance(a, SendDatagram)]


def assert_timer_fresh(engine: ClientEngine) -> float | None:
    """``next_timer()`` as kept equals a full rescan of every timer."""
    kept = engine.next_timer()
    engine._timer_stale = True
    assert engine.next_timer() == kept
    return kept


def observed_client(binding: str) -> tuple[ClientEngine, Instance, int]:
    config = ClientConfig(
        "ep", (ServerAccount("coap://127.0.0.1:5683", 1, lifetime=1_000_000, binding=binding),)
    )
    objects = default_objects(config, host=FixedHost())
    sensor = objects.tree.add_instance(3303, 0, Instance({5700: 1.0}))
    engine = ClientEngine(config, objects, rng=random.Random(5))
    engine.start(0.0)
    assert_timer_fresh(engine)
    link = next(a.link for a in engine.link_actions() if isinstance(a, OpenLink))
    engine.link_up(link, 0.0, secure=False)
    assert_timer_fresh(engine)
    (register,) = sent(engine)
    created = Message(MessageType.ACK, Code.CREATED, register.mid, register.token)
    created.add(OptionNumber.LOCATION_PATH, b"rd")
    engine.datagram_received(link, encode(created), 0.1)
    assert_timer_fresh(engine)
    observe = Message(
        MessageType.CON,
        Code.GET,
        0x100,
        b"obs",
        make_options(path=["3303", "0", "5700"], observe=0),
    )
    engine.datagram_received(link, encode(observe), 0.2)
    assert_timer_fresh(engine)
    sent(engine)
    return engine, sensor, link


@pytest.mark.parametrize("binding", ["U", "UQ"])
def test_next_timer_follows_non_and_con_notifications(binding: str) -> None:
    engine, sensor, link = observed_client(binding)
    before = assert_timer_fresh(engine)
    for i in range(3):
        sensor.set(5700, float(i))
        engine.poll(1.0 + i)
        (note,) = sent(engine)
        assert note.type == MessageType.NON
        assert_timer_fresh(engine)
    if binding == "UQ":  # each notification pushes the sleep deadline on
        assert engine.next_timer() != before
    # A day without CON: the next notification is confirmable and is retransmitted.
    sensor.set(5700, 99.0)
    engine.poll(90_000.0)
    (con,) = sent(engine)
    assert con.type == MessageType.CON
    due = assert_timer_fresh(engine)
    assert due is not None and due < 90_000.0 + 10
    engine.datagram_received(link, encode(Message(MessageType.ACK, Code.EMPTY, con.mid)), 90_000.5)
    assert_timer_fresh(engine)
