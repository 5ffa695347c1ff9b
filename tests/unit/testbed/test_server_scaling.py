"""The testbed server cores keep up: work per datagram, bounded memory, strict options.

Issue 16 item 2: a datagram or a timer costs the work of the peers it concerns,
not a scan of every peer and registration; idle peers are forgotten; history
and stored Sends are capped. RFC 7252 §5.4.1: an unrecognised critical option
gets 4.02 (CON) or RST (NON) from the LwM2M and the bootstrap server alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aiolwm2m.coap.layer import MessageLayer
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    encode_uint,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.testbed.bootstrap import BootstrapConfig, BootstrapCore, ProvisionedServer
from aiolwm2m.testbed.core import Registration, ServerCore

NOW = 1000.0
UNKNOWN_CRITICAL = 9  # odd, and not assigned in the CoAP option registry
UNKNOWN_ELECTIVE = 2052  # even: must be ignored


def request(
    path: list[str], query: list[str], mid: int, *, mtype: MessageType = MessageType.CON
) -> Message:
    return Message(
        type=mtype,
        code=Code.POST,
        mid=mid,
        token=mid.to_bytes(2, "big"),
        options=make_options(path=path, query=query),
    )


def exchange(core: Any, addr: tuple[str, int], msg: Message, now: float) -> list[Message]:
    core.datagram_received(addr, encode(msg), now)
    return [decode(data) for to, data in core.datagrams_to_send() if to == addr]


def register(core: ServerCore, i: int, now: float = NOW, lifetime: int = 60) -> Message:
    addr = ("10.0.0.1", 2000 + i)
    msg = request(["rd"], [f"ep=ep{i}", f"lt={lifetime}"], mid=i)
    (answer,) = exchange(core, addr, msg, now)
    assert answer.code == Code.CREATED
    return answer


class Counted:
    """Counts calls of a MessageLayer method, for every layer at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls = 0
        original = getattr(MessageLayer, name)

        def counting(layer: MessageLayer, *args: Any) -> Any:
            self.calls += 1
            return original(layer, *args)

        monkeypatch.setattr(MessageLayer, name, counting)


class ScanningDict(dict[str, Registration]):
    """A registrations dict that counts every walk over it."""

    scans = 0

    def values(self) -> Any:
        ScanningDict.scans += 1
        return super().values()

    def items(self) -> Any:
        ScanningDict.scans += 1
        return super().items()

    def __iter__(self) -> Iterator[str]:
        ScanningDict.scans += 1
        return super().__iter__()


def test_a_timer_visits_only_the_peers_that_are_due(monkeypatch: pytest.MonkeyPatch) -> None:
    core = ServerCore()
    for i in range(300):
        register(core, i)
    probe = Message(type=MessageType.CON, code=Code.GET, options=make_options(path=["3", "0"]))
    core.send_request("ep7", probe, NOW)
    [(_, first)] = core.datagrams_to_send()
    handled = Counted(monkeypatch, "handle_timer")
    asked = Counted(monkeypatch, "next_timer")
    due = core.next_timer()
    assert due is not None and NOW + 2 <= due <= NOW + 3  # ep7's retransmission
    core.handle_timer(due)
    core.next_timer()
    assert handled.calls == 1  # ep7's layer only, not 300
    assert asked.calls <= 1  # re-armed from ep7's layer alone
    [(addr, data)] = core.datagrams_to_send()
    assert addr == ("10.0.0.1", 2007) and data == first  # the retransmission


def test_a_datagram_asks_only_its_own_peer_for_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    core = ServerCore()
    for i in range(300):
        register(core, i)
    asked = Counted(monkeypatch, "next_timer")
    exchange(core, ("10.0.0.1", 2005), request(["rd", "6"], [], mid=99), NOW + 1)
    core.next_timer()
    assert asked.calls == 1


def test_registrations_are_found_without_walking_them() -> None:
    core = ServerCore()
    core.registrations = ScanningDict()
    for i in range(50):
        register(core, i)
    ScanningDict.scans = 0
    addr = ("10.0.0.1", 2010)  # ep10, location /rd/11
    (updated,) = exchange(core, addr, request(["rd", "11"], ["lt=90"], mid=500), NOW + 5)
    assert updated.code == Code.CHANGED
    send = request(["dp"], [], mid=501)
    send.add(OptionNumber.CONTENT_FORMAT, encode_uint(110))
    send.payload = b'[{"n":"/3/0/0","vs":"x"}]'
    (sent,) = exchange(core, addr, send, NOW + 6)
    assert sent.code == Code.CHANGED and core.sent[-1].endpoint == "ep10"
    (gone,) = exchange(
        core,
        ("10.0.0.1", 2011),
        Message(
            type=MessageType.CON,
            code=Code.DELETE,
            mid=502,
            token=b"d",
            options=make_options(path=["rd", "12"]),
        ),
        NOW + 7,
    )
    assert gone.code == Code.DELETED and "ep11" not in core.registrations
    core.handle_timer(core.next_timer() or NOW)
    assert ScanningDict.scans == 0


def test_lifetimes_expire_from_the_last_update() -> None:
    core = ServerCore(expiry_grace=10.0)
    register(core, 1, lifetime=60)
    register(core, 2, lifetime=60)
    exchange(core, ("10.0.0.1", 2001), request(["rd", "1"], ["lt=100"], mid=7), NOW + 50)
    core.handle_timer(NOW + 70)
    assert set(core.registrations) == {"ep1"}  # ep2 expired at 60 + 10 s
    core.handle_timer(NOW + 50 + 109)
    assert "ep1" in core.registrations
    core.handle_timer(NOW + 50 + 110)
    assert core.registrations == {}
    assert [e.endpoint for e in core.history if e.kind == "expired"] == ["ep2", "ep1"]
    assert core.next_timer() is None or core.next_timer() > NOW + 160


def test_idle_peers_are_forgotten_after_exchange_lifetime_but_observers_kept() -> None:
    params = TransmissionParameters()
    core = ServerCore(params=params)
    for i in range(3):
        register(core, i, lifetime=86400)
    observe = Message(
        type=MessageType.CON,
        code=Code.GET,
        options=make_options(path=["3", "0", "13"], observe=0),
    )
    core.send_request("ep1", observe, NOW, keep_open=True)
    [(_, data)] = core.datagrams_to_send()
    sent = decode(data)
    answer = Message(
        type=MessageType.ACK,
        code=Code.CONTENT,
        mid=sent.mid,
        token=sent.token,
        options=make_options(observe=1),
        payload=b"1",
    )
    core.datagram_received(("10.0.0.1", 2001), encode(answer), NOW + 0.1)
    assert len(core.peers) == 3
    later = NOW + params.exchange_lifetime
    assert core.next_timer() == pytest.approx(NOW + params.exchange_lifetime)
    core.handle_timer(later - 1)
    assert len(core.peers) == 3
    core.handle_timer(later + 1)
    assert ("10.0.0.1", 2001) in core.peers and len(core.peers) == 1  # the observed one stays
    assert len(core.registrations) == 3 and core.stats()["peers_forgotten"] == 2
    # A forgotten client is served as a new peer when it speaks again.
    (updated,) = exchange(core, ("10.0.0.1", 2000), request(["rd", "1"], [], mid=77), later + 2)
    assert updated.code == Code.CHANGED and len(core.peers) == 2


def test_history_and_stored_sends_are_capped() -> None:
    core = ServerCore(history_limit=100)
    for i in range(250):
        register(core, i)
    assert len(core.history) == 100 and core.history[-1].endpoint == "ep249"
    assert core.stats()["registered"] == 250
    assert len(core.take_events()) == 100  # a host that never drained lost only the oldest
    assert core.take_events() == []
    assert core.sent.maxlen is not None


def test_an_unrecognised_critical_option_gets_4_02_and_registers_nothing() -> None:
    core = ServerCore()
    msg = request(["rd"], ["ep=bad"], mid=1)
    msg.add(UNKNOWN_CRITICAL, b"x")
    (answer,) = exchange(core, ("10.0.0.1", 3000), msg, NOW)
    assert answer.type == MessageType.ACK and answer.mid == 1 and answer.token == msg.token
    assert answer.code == Code.BAD_OPTION and b"9" in answer.payload
    assert core.registrations == {} and core.history[-1].kind == "bad_option"
    # Its retransmission gets the same answer (RFC 7252 §4.5), not a new decision.
    (again,) = exchange(core, ("10.0.0.1", 3000), msg, NOW + 2)
    assert encode(again) == encode(answer)


def test_an_unrecognised_critical_option_in_a_non_request_gets_a_reset() -> None:
    core = ServerCore()
    msg = request(["rd"], ["ep=bad"], mid=2, mtype=MessageType.NON)
    msg.add(UNKNOWN_CRITICAL, b"")
    (answer,) = exchange(core, ("10.0.0.1", 3001), msg, NOW)
    assert answer.type == MessageType.RST and answer.code == Code.EMPTY and answer.mid == 2
    assert core.registrations == {}


def test_an_unrecognised_elective_option_is_ignored() -> None:
    core = ServerCore()
    msg = request(["rd"], ["ep=fine"], mid=3)
    msg.add(UNKNOWN_ELECTIVE, b"x")
    (answer,) = exchange(core, ("10.0.0.1", 3002), msg, NOW)
    assert answer.code == Code.CREATED and "fine" in core.registrations


@pytest.mark.parametrize(
    ("mtype", "expected"),
    [
        (MessageType.CON, (MessageType.ACK, Code.BAD_OPTION)),
        (MessageType.NON, (MessageType.RST, Code.EMPTY)),
    ],
)
def test_the_bootstrap_server_refuses_unrecognised_critical_options(
    mtype: MessageType, expected: tuple[MessageType, Code]
) -> None:
    config = BootstrapConfig(default=(ProvisionedServer("coap://10.0.0.1:5683"),))
    core = BootstrapCore(config)
    msg = request(["bs"], ["ep=dev"], mid=5, mtype=mtype)
    msg.add(UNKNOWN_CRITICAL, b"1")
    (answer,) = exchange(core, ("10.0.0.1", 4000), msg, NOW)
    assert (answer.type, answer.code) == expected and answer.mid == 5
    assert core.requests == {} and [e.kind for e in core.history] == ["bad_option"]
    # Without the option the same request starts the session (2.04, then Discover).
    ok = request(["bs"], ["ep=dev"], mid=6, mtype=mtype)
    answers = exchange(core, ("10.0.0.1", 4000), ok, NOW + 1)
    assert answers[0].code == Code.CHANGED and core.requests == {"dev": 1}


def test_renewals_and_retransmissions_do_not_pile_up_timer_entries() -> None:
    core = ServerCore()
    register(core, 1, lifetime=86400)
    for i in range(2000):  # a long lifetime renewed over and over
        update = request(["rd", "1"], [], mid=100 + i)
        exchange(core, ("10.0.0.1", 2001), update, NOW + i)
    assert len(core._expiry) <= 2 * len(core.registrations) + 65
    for i in range(300):  # each exchange arms the peer's deadline anew
        probe = Message(type=MessageType.CON, code=Code.GET, options=make_options(path=["3"]))
        core.send_request("ep1", probe, NOW + 3000 + i)
        [(_, data)] = core.datagrams_to_send()
        sent = decode(data)
        ack = Message(type=MessageType.ACK, code=Code.CONTENT, mid=sent.mid, token=sent.token)
        core.datagram_received(("10.0.0.1", 2001), encode(ack), NOW + 3000 + i)
    assert len(core.peers._heap) <= 2 * len(core.peers) + 65
    core.handle_timer(NOW + 86400 + 2000 + 10)
    assert core.registrations == {} and [e.kind for e in core.history][-1] == "expired"
