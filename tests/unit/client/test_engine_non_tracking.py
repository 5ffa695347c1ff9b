"""The engine remembers the newest NON notifications only (a Reset for an older one is moot).

Driven with bytes on an explicit clock, no runtime: the engine, the default
data model and an Observe from a hand-made server.
"""

from __future__ import annotations

from simkit import observed_engine, sent

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.engine import ClientEngine
from aiolwm2m.client.engine._channel import NON_NOTIFICATIONS_TRACKED
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    encode,
)
from aiolwm2m.lwm2m.tree import Instance

CONFIG = ClientConfig("ep", (ServerAccount("coap://127.0.0.1:5683", 1, lifetime=300),))


def events(engine: ClientEngine) -> list[ev.Event]:
    out = []
    while (event := engine.next_event()) is not None:
        out.append(event)
    return out


def observed_client() -> tuple[ClientEngine, Instance, int]:
    """A registered engine whose server observes /3303/0/5700."""
    engine, sensor, link, first = observed_engine(CONFIG)
    assert first.code == Code.CONTENT and first.observe is not None
    events(engine)
    return engine, sensor, link


def test_only_the_newest_non_notifications_can_be_reset() -> None:
    engine, sensor, link = observed_client()
    mids = []
    for i in range(NON_NOTIFICATIONS_TRACKED + 6):
        sensor.set(5700, float(i))
        engine.poll(1.0 + i)
        (note,) = sent(engine)
        assert note.type == MessageType.NON
        mids.append(note.mid)
    # The first six are forgotten: their Reset changes nothing.
    for mid in mids[:6]:
        engine.datagram_received(link, encode(Message(MessageType.RST, Code.EMPTY, mid)), 80.0)
    assert not [e for e in events(engine) if isinstance(e, ev.ObservationCancelled)]
    # The seventh is the oldest one remembered: its Reset ends the observation.
    engine.datagram_received(link, encode(Message(MessageType.RST, Code.EMPTY, mids[6])), 81.0)
    cancelled = [e for e in events(engine) if isinstance(e, ev.ObservationCancelled)]
    assert [(e.ssid, e.path) for e in cancelled] == [(1, "/3303/0/5700")]
