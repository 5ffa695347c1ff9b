"""The engine keeps the scan of its own timers between inputs (ClientEngine.next_timer).

A poll that only sent NON notifications leaves them as they were; anything
else (a CON notification's retransmission, queue mode's sleep deadline, any
input) must make the next ``next_timer()`` scan again. Checked against a
forced rescan after every step.
"""

from __future__ import annotations

import pytest
from simkit import observed_engine, sent

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.engine import ClientEngine
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    encode,
)
from aiolwm2m.lwm2m.tree import Instance


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
    engine, sensor, link, _ = observed_engine(config, assert_timer_fresh)
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
