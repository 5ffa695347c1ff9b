"""Sans-IO CoAP message layer: deterministic (seeded rng, explicit ``now``), no sleeps."""

from __future__ import annotations

import random

import pytest

from aiolwm2m.coap.layer import (
    Event,
    ExchangeResult,
    IncomingRequest,
    MessageLayer,
    Outcome,
)
from aiolwm2m.coap.message import (
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    make_options,
)
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.errors import ConfigError, EncodeError

from .forge import forge

DEFAULTS = TransmissionParameters()
SEED = 20240611
TOKEN = b"\x10\x20\x30\x40"
START = 1000.0


def make_layer(
    params: TransmissionParameters = DEFAULTS, seed: int = SEED
) -> tuple[MessageLayer, random.Random]:
    """A layer and a twin rng in the same state, already past the initial-MID draw."""
    layer = MessageLayer(params, random.Random(seed))
    twin = random.Random(seed)
    twin.randrange(0x10000)
    return layer, twin


def get(path: str = "3/0", token: bytes = TOKEN, mtype: MessageType = MessageType.CON) -> Message:
    return Message(type=mtype, code=Code.GET, token=token, options=make_options(path=[path]))


def sent(layer: MessageLayer) -> list[Message]:
    return [decode(d) for d in layer.datagrams_to_send()]


def events(layer: MessageLayer) -> list[Event]:
    out: list[Event] = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def one_result(layer: MessageLayer) -> ExchangeResult:
    evs = events(layer)
    assert len(evs) == 1, evs
    assert isinstance(evs[0], ExchangeResult)
    return evs[0]


def feed(layer: MessageLayer, msg: Message, now: float) -> None:
    layer.receive(encode(msg), now)


def empty(mtype: MessageType, mid: int) -> Message:
    return Message(type=mtype, code=Code.EMPTY, mid=mid)


def start_request(layer: MessageLayer, now: float = START, **kw: bool) -> tuple[int, Message]:
    key = layer.send_request(get(), now, **kw)
    (msg,) = sent(layer)
    return key, msg


# -- parameters ------------------------------------------------------------------


def test_derived_parameters_with_defaults() -> None:
    p = DEFAULTS
    assert p.max_transmit_span == pytest.approx(45.0)
    assert p.max_transmit_wait == pytest.approx(93.0)
    assert p.max_rtt == pytest.approx(202.0)
    assert p.exchange_lifetime == pytest.approx(247.0)
    assert p.non_lifetime == pytest.approx(145.0)
    assert p.processing_delay == p.ack_timeout
    assert p.effective_separate_response_timeout == pytest.approx(93.0)
    assert p.effective_piggyback_window == pytest.approx(1.0)


def test_derived_parameters_follow_base_values() -> None:
    p = TransmissionParameters(ack_timeout=1.0, ack_random_factor=1.0, max_retransmit=2)
    assert p.max_transmit_span == pytest.approx(3.0)
    assert p.max_transmit_wait == pytest.approx(7.0)
    assert p.exchange_lifetime == pytest.approx(3.0 + 200.0 + 1.0)
    q = TransmissionParameters(separate_response_timeout=5.0, piggyback_window=0.1)
    assert q.effective_separate_response_timeout == 5.0
    assert q.effective_piggyback_window == 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ack_timeout": 0},
        {"ack_timeout": -1.0},
        {"ack_random_factor": 0.99},
        {"max_retransmit": -1},
        {"nstart": 0},
        {"max_latency": 0},
    ],
)
def test_bad_parameters_raise_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TransmissionParameters(**kwargs)  # type: ignore[arg-type]


# -- confirmable retransmission ----------------------------------------------------


@pytest.mark.parametrize("seed", [SEED, 1, 2, 3])
def test_exact_retransmission_schedule_then_timeout(seed: int) -> None:
    layer, twin = make_layer(seed=seed)
    first_timeout = twin.uniform(DEFAULTS.ack_timeout, DEFAULTS.ack_timeout * 1.5)
    assert 2.0 <= first_timeout <= 3.0
    key, original = start_request(layer)
    assert original.type == MessageType.CON
    # Retransmissions at start + T, + 2T, + 4T, + 8T; give up after another 16T.
    instants = [START + first_timeout * (2**i - 1) for i in range(1, DEFAULTS.max_retransmit + 2)]
    assert instants[-1] - START == pytest.approx(31 * first_timeout)
    assert instants[-1] - START <= DEFAULTS.max_transmit_wait
    previous = START
    for i, instant in enumerate(instants):
        due = layer.next_timer()
        assert due == pytest.approx(instant)
        assert due is not None
        for quiet in (previous + 1e-6, (previous + due) / 2, due - 1e-6):
            layer.handle_timer(quiet)
            assert layer.datagrams_to_send() == []
            assert events(layer) == []
        layer.handle_timer(due)
        if i < DEFAULTS.max_retransmit:
            assert sent(layer) == [original]  # identical bytes: same MID, same token
            assert layer.stats.retransmissions == i + 1
            assert events(layer) == []
        else:
            assert layer.datagrams_to_send() == []
            result = one_result(layer)
            assert (result.key, result.outcome, result.response) == (key, Outcome.TIMEOUT, None)
            assert result.request.token == TOKEN
        previous = due
    assert layer.next_timer() is None
    assert layer.pending() == 0
    layer.handle_timer(START + 1000)
    assert layer.datagrams_to_send() == []


def test_max_retransmit_zero_times_out_after_first_timeout() -> None:
    params = TransmissionParameters(max_retransmit=0)
    layer, twin = make_layer(params)
    first_timeout = twin.uniform(2.0, 3.0)
    start_request(layer)
    assert layer.next_timer() == pytest.approx(START + first_timeout)
    layer.handle_timer(START + first_timeout)
    assert layer.datagrams_to_send() == []
    assert one_result(layer).outcome is Outcome.TIMEOUT


def test_first_timeout_is_drawn_from_the_spec_interval() -> None:
    for seed in range(200):
        layer, _ = make_layer(seed=seed)
        start_request(layer, now=0.0)
        due = layer.next_timer()
        assert due is not None and 2.0 <= due <= 3.0


def test_mid_assignment_follows_rng_and_increments() -> None:
    mid0 = random.Random(SEED).randrange(0x10000)
    params = TransmissionParameters(nstart=3)
    layer = MessageLayer(params, random.Random(SEED))
    for i in range(3):
        layer.send_request(get(token=bytes([i])), START)
    assert [m.mid for m in sent(layer)] == [(mid0 + i) & 0xFFFF for i in range(3)]


def test_token_is_assigned_when_missing() -> None:
    layer, twin = make_layer()
    layer.send_request(get(token=b""), START)
    (msg,) = sent(layer)
    assert msg.token == twin.getrandbits(64).to_bytes(8, "big")


def test_send_request_rejects_non_requests() -> None:
    layer, _ = make_layer()
    with pytest.raises(ValueError):
        layer.send_request(Message(code=Code.CONTENT), START)
    with pytest.raises(ValueError):
        layer.send_request(get(mtype=MessageType.ACK), START)


# -- NSTART ------------------------------------------------------------------------


def piggyback(req: Message, code: int = Code.CONTENT, payload: bytes = b"ok") -> Message:
    return Message(type=MessageType.ACK, code=code, mid=req.mid, token=req.token, payload=payload)


def test_nstart_1_queues_second_request_until_first_completes() -> None:
    layer, _ = make_layer()
    k1 = layer.send_request(get("1", token=b"a"), START)
    k2 = layer.send_request(get("2", token=b"b"), START)
    (first,) = sent(layer)
    assert first.uri_path == ["1"]
    assert layer.pending() == 2
    # Retransmitting the first one never lets the second out.
    due = layer.next_timer()
    assert due is not None
    layer.handle_timer(due)
    assert [m.uri_path for m in sent(layer)] == [["1"]]
    feed(layer, piggyback(first), due + 0.5)
    result = one_result(layer)
    assert (result.key, result.outcome) == (k1, Outcome.RESPONSE)
    (second,) = sent(layer)
    assert second.uri_path == ["2"]
    assert second.mid == (first.mid + 1) & 0xFFFF
    feed(layer, piggyback(second), due + 1)
    assert one_result(layer).key == k2
    assert layer.pending() == 0


def test_nstart_1_queue_also_waits_for_separate_response() -> None:
    layer, _ = make_layer()
    layer.send_request(get("1", token=b"a"), START)
    layer.send_request(get("2", token=b"b"), START)
    (first,) = sent(layer)
    feed(layer, empty(MessageType.ACK, first.mid), START + 1)
    assert layer.datagrams_to_send() == []
    feed(layer, Message(MessageType.NON, Code.CONTENT, 77, first.token), START + 2)
    assert one_result(layer).outcome is Outcome.RESPONSE
    assert [m.uri_path for m in sent(layer)] == [["2"]]


def test_nstart_2_allows_two_outstanding() -> None:
    layer, _ = make_layer(TransmissionParameters(nstart=2))
    keys = [layer.send_request(get(str(i), token=bytes([i])), START) for i in range(3)]
    out = sent(layer)
    assert [m.uri_path for m in out] == [["0"], ["1"]]
    feed(layer, piggyback(out[1]), START + 0.1)
    assert one_result(layer).key == keys[1]
    (third,) = sent(layer)
    assert third.uri_path == ["2"]
    feed(layer, piggyback(out[0]), START + 0.2)
    feed(layer, piggyback(third), START + 0.3)
    assert [e.key for e in events(layer)] == [keys[0], keys[2]]


def test_cancel_of_in_flight_request_releases_nstart_slot() -> None:
    layer, _ = make_layer()
    k1 = layer.send_request(get("1", token=b"a"), START)
    layer.send_request(get("2", token=b"b"), START)
    (first,) = sent(layer)
    layer.cancel(k1, START + 1)
    assert [m.uri_path for m in sent(layer)] == [["2"]]
    assert events(layer) == []
    # A late answer to the cancelled request is not delivered.
    feed(layer, piggyback(first), START + 2)
    assert events(layer) == []


def test_cancel_of_queued_request() -> None:
    layer, _ = make_layer()
    layer.send_request(get("1", token=b"a"), START)
    k2 = layer.send_request(get("2", token=b"b"), START)
    (first,) = sent(layer)
    layer.cancel(k2, START)
    layer.cancel(k2, START)  # idempotent
    feed(layer, piggyback(first), START + 1)
    assert len(events(layer)) == 1
    assert layer.datagrams_to_send() == []
    assert layer.pending() == 0


# -- responses ---------------------------------------------------------------------


def test_piggybacked_response() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, piggyback(req, payload=b"22.5"), START + 0.3)
    result = one_result(layer)
    assert result.key == key
    assert result.outcome is Outcome.RESPONSE
    assert result.response is not None
    assert result.response.payload == b"22.5"
    assert result.request.token == TOKEN
    assert layer.datagrams_to_send() == []  # nothing to acknowledge
    assert layer.next_timer() is None
    # A duplicate of the ACK is ignored.
    feed(layer, piggyback(req, payload=b"22.5"), START + 0.4)
    assert events(layer) == []
    assert layer.datagrams_to_send() == []


def test_empty_ack_then_separate_con_response() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 0.2)
    assert events(layer) == []
    assert layer.datagrams_to_send() == []
    # No more retransmissions; only the separate-response deadline remains.
    assert layer.next_timer() == pytest.approx(START + 0.2 + 93.0)
    layer.handle_timer(START + 50)
    assert layer.datagrams_to_send() == []
    sep = Message(MessageType.CON, Code.CONTENT, 0x4242, TOKEN, payload=b"late")
    feed(layer, sep, START + 60)
    assert sent(layer) == [empty(MessageType.ACK, 0x4242)]
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESPONSE)
    assert result.response is not None and result.response.payload == b"late"
    # The peer did not get our ACK and retransmits: ACK again, no second delivery.
    feed(layer, sep, START + 62)
    assert sent(layer) == [empty(MessageType.ACK, 0x4242)]
    assert events(layer) == []
    assert layer.stats.duplicates == 1


def test_separate_response_without_empty_ack() -> None:
    """The ACK was lost; a CON separate response also ends the retransmissions."""
    layer, _ = make_layer()
    key, _ = start_request(layer)
    feed(layer, Message(MessageType.CON, Code.CHANGED, 9, TOKEN), START + 0.5)
    assert sent(layer) == [empty(MessageType.ACK, 9)]
    assert one_result(layer).key == key
    assert layer.next_timer() is None


def test_separate_response_timeout() -> None:
    params = TransmissionParameters(separate_response_timeout=30.0)
    layer, _ = make_layer(params)
    key, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 1)
    assert layer.next_timer() == pytest.approx(START + 31)
    layer.handle_timer(START + 30.9)
    assert events(layer) == []
    layer.handle_timer(START + 31)
    result = one_result(layer)
    assert (result.key, result.outcome, result.response) == (key, Outcome.TIMEOUT, None)
    assert layer.datagrams_to_send() == []
    # A response after the deadline is unknown: rejected.
    feed(layer, Message(MessageType.CON, Code.CONTENT, 5, TOKEN), START + 40)
    assert sent(layer) == [empty(MessageType.RST, 5)]
    assert events(layer) == []


def test_non_request_times_out_without_retransmission() -> None:
    layer, _ = make_layer()
    key = layer.send_request(get(mtype=MessageType.NON), START)
    (req,) = sent(layer)
    assert req.type == MessageType.NON
    assert layer.next_timer() == pytest.approx(START + 93.0)
    layer.handle_timer(START + 93.0)
    assert layer.datagrams_to_send() == []
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.TIMEOUT)


def test_non_request_non_response() -> None:
    layer, _ = make_layer()
    key = layer.send_request(get(mtype=MessageType.NON), START)
    sent(layer)
    feed(layer, Message(MessageType.NON, Code.CONTENT, 3, TOKEN, payload=b"x"), START + 1)
    assert layer.datagrams_to_send() == []
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESPONSE)


def test_piggybacked_response_with_wrong_token_counts_as_empty_ack() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, Message(MessageType.ACK, Code.CONTENT, req.mid, b"other"), START + 1)
    assert events(layer) == []
    assert layer.stats.unmatched == 1
    layer.handle_timer(START + 20)  # no retransmission: the CON was acknowledged
    assert layer.datagrams_to_send() == []
    feed(layer, Message(MessageType.NON, Code.CONTENT, 1, TOKEN), START + 21)
    assert one_result(layer).key == key


# -- reset -------------------------------------------------------------------------


def test_rst_for_outstanding_con_request() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, empty(MessageType.RST, req.mid), START + 0.5)
    result = one_result(layer)
    assert (result.key, result.outcome, result.response) == (key, Outcome.RESET, None)
    assert layer.next_timer() is None
    layer.handle_timer(START + 100)
    assert layer.datagrams_to_send() == []


def test_rst_with_other_mid_is_ignored() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer)
    feed(layer, empty(MessageType.RST, (req.mid + 1) & 0xFFFF), START + 0.5)
    feed(layer, empty(MessageType.ACK, (req.mid + 1) & 0xFFFF), START + 0.5)
    assert events(layer) == []
    assert layer.datagrams_to_send() == []
    assert layer.pending() == 1


def notification(observe: int, mtype: MessageType, token: bytes = TOKEN) -> Message:
    msg = Message(type=mtype, code=Code.CONTENT, token=token, payload=b"v")
    msg.set_uint(OptionNumber.OBSERVE, observe)
    return msg


def test_rst_for_recent_non_notification() -> None:
    layer, _ = make_layer()
    key = layer.send_message(notification(5, MessageType.NON), START)
    (out,) = sent(layer)
    assert out.type == MessageType.NON
    assert layer.next_timer() is None  # NON: nothing to retransmit
    feed(layer, empty(MessageType.RST, out.mid), START + 3)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESET)
    # The result names the notification that was rejected (its token identifies
    # the observation to drop, RFC 7641 §3.6 / §4.5).
    assert result.request.token == TOKEN
    assert result.request.observe == 5
    # A second RST for the same MID reports nothing more.
    feed(layer, empty(MessageType.RST, out.mid), START + 4)
    assert events(layer) == []


def test_rst_for_old_non_notification_is_ignored() -> None:
    layer, _ = make_layer()
    layer.send_message(notification(5, MessageType.NON), START)
    (out,) = sent(layer)
    feed(layer, empty(MessageType.RST, out.mid), START + DEFAULTS.non_lifetime)
    assert events(layer) == []


def test_unreported_non_message_never_reports_reset() -> None:
    layer, _ = make_layer()
    layer.send_message(notification(5, MessageType.NON), START, report=False)
    (out,) = sent(layer)
    feed(layer, empty(MessageType.RST, out.mid), START + 1)
    assert events(layer) == []


def test_con_notification_acknowledged() -> None:
    layer, twin = make_layer()
    key = layer.send_message(notification(7, MessageType.CON), START)
    (out,) = sent(layer)
    assert out.type == MessageType.CON and out.observe == 7
    first_timeout = twin.uniform(2.0, 3.0)
    assert layer.next_timer() == pytest.approx(START + first_timeout)
    layer.handle_timer(START + first_timeout)
    assert sent(layer) == [out]
    feed(layer, empty(MessageType.ACK, out.mid), START + first_timeout + 1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.ACKNOWLEDGED)
    assert result.request.observe == 7
    assert layer.next_timer() is None


def test_con_notification_reset() -> None:
    layer, _ = make_layer()
    key = layer.send_message(notification(7, MessageType.CON), START)
    (out,) = sent(layer)
    feed(layer, empty(MessageType.RST, out.mid), START + 1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESET)


def test_withdraw_takes_back_only_what_has_not_left() -> None:
    """Queued behind NSTART, or started by the Reset of the one before it and not yet
    handed out: taken back, never sent, no event. Sent: left to run to its end."""
    layer, _ = make_layer()
    keys = [layer.send_message(notification(n, MessageType.CON), START) for n in (1, 2, 3, 4)]
    (first,) = sent(layer)
    assert layer.withdraw(keys[2], START)  # queued
    assert not layer.withdraw(keys[0], START), "sent: its answer must still match"
    feed(layer, empty(MessageType.RST, first.mid), START + 1)  # starts the second
    assert layer.withdraw(keys[1], START + 1), "started, but nothing handed out yet"
    assert [m.observe for m in sent(layer)] == [4], "the next one starts instead"
    assert [(e.key, e.outcome) for e in events(layer)] == [(keys[0], Outcome.RESET)]
    assert not layer.withdraw(keys[3], START + 1)
    assert not layer.withdraw(keys[1], START + 1), "already gone"
    assert layer.pending() == 1


def test_con_notification_times_out() -> None:
    layer, _ = make_layer()
    key = layer.send_message(notification(7, MessageType.CON), START)
    sent(layer)
    retransmissions = 0
    while (due := layer.next_timer()) is not None:
        layer.handle_timer(due)
        retransmissions += len(layer.datagrams_to_send())
    assert retransmissions == DEFAULTS.max_retransmit
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.TIMEOUT)


def test_con_notifications_obey_nstart() -> None:
    layer, _ = make_layer()
    layer.send_message(notification(1, MessageType.CON), START)
    layer.send_message(notification(2, MessageType.CON), START)
    (first,) = sent(layer)
    assert first.observe == 1
    feed(layer, empty(MessageType.ACK, first.mid), START + 1)
    assert [m.observe for m in sent(layer)] == [2]


# -- network errors ----------------------------------------------------------------


def test_network_error_fails_in_flight_at_once() -> None:
    layer, _ = make_layer()
    key, _ = start_request(layer)
    due = layer.next_timer()
    assert due is not None
    layer.network_error(START + 0.1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.NETWORK_ERROR)
    assert layer.next_timer() is None
    for t in (due, due + 10, START + 200):
        layer.handle_timer(t)
        assert layer.datagrams_to_send() == []
        assert events(layer) == []
    assert layer.stats.retransmissions == 0


def test_network_error_fails_request_waiting_for_separate_response() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 0.1)
    layer.network_error(START + 0.2)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.NETWORK_ERROR)


def test_network_error_leaves_queued_requests_and_starts_them() -> None:
    layer, _ = make_layer()
    k1 = layer.send_request(get("1", token=b"a"), START)
    k2 = layer.send_request(get("2", token=b"b"), START)
    sent(layer)
    layer.network_error(START + 1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (k1, Outcome.NETWORK_ERROR)
    (second,) = sent(layer)
    assert second.uri_path == ["2"]
    feed(layer, piggyback(second), START + 2)
    assert one_result(layer).key == k2


def test_network_error_leaves_open_observation() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer, keep_open=True)
    feed(layer, notification_ack(req, 1), START + 0.1)
    assert one_result(layer).outcome is Outcome.RESPONSE
    layer.network_error(START + 1)
    assert events(layer) == []
    feed(layer, notification(2, MessageType.NON), START + 2)
    assert one_result(layer).key == key


def notification_ack(req: Message, observe: int) -> Message:
    msg = piggyback(req)
    msg.set_uint(OptionNumber.OBSERVE, observe)
    return msg


# -- incoming requests ---------------------------------------------------------------


def incoming(mtype: MessageType = MessageType.CON, mid: int = 0x0A0A) -> Message:
    return Message(type=mtype, code=Code.GET, mid=mid, token=b"\x99", options=[(11, b"3")])


def one_request(layer: MessageLayer) -> IncomingRequest:
    evs = events(layer)
    assert len(evs) == 1 and isinstance(evs[0], IncomingRequest), evs
    return evs[0]


def test_incoming_con_request_piggybacked_response_and_duplicate() -> None:
    layer, _ = make_layer()
    feed(layer, incoming(), START)
    req = one_request(layer)
    assert req.message.uri_path == ["3"]
    assert layer.next_timer() == pytest.approx(START + 1.0)  # piggyback window
    layer.respond(req.key, Message(code=Code.CONTENT, payload=b"data"), START + 0.2)
    (resp,) = sent(layer)
    assert (resp.type, resp.mid, resp.token, resp.payload) == (
        MessageType.ACK,
        0x0A0A,
        b"\x99",
        b"data",
    )
    assert layer.next_timer() is None
    # The peer lost our ACK and retransmits: the cached response goes out again.
    feed(layer, incoming(), START + 2.5)
    assert sent(layer) == [resp]
    assert events(layer) == []
    assert layer.stats.duplicates == 1
    # Responding twice to the same request is a no-op.
    layer.respond(req.key, Message(code=Code.CONTENT), START + 3)
    assert layer.datagrams_to_send() == []


def test_duplicate_before_response_is_silent() -> None:
    layer, _ = make_layer()
    feed(layer, incoming(), START)
    req = one_request(layer)
    feed(layer, incoming(), START + 0.5)
    assert layer.datagrams_to_send() == []
    assert events(layer) == []
    layer.respond(req.key, Message(code=Code.CONTENT), START + 0.6)
    assert sent(layer)[0].type == MessageType.ACK


def test_slow_application_gets_empty_ack_then_separate_response() -> None:
    layer, twin = make_layer()
    feed(layer, incoming(), START)
    req = one_request(layer)
    layer.handle_timer(START + 0.99)
    assert layer.datagrams_to_send() == []
    layer.handle_timer(START + 1.0)
    assert sent(layer) == [empty(MessageType.ACK, 0x0A0A)]
    # A duplicate after the empty ACK gets the same empty ACK again.
    feed(layer, incoming(), START + 2)
    assert sent(layer) == [empty(MessageType.ACK, 0x0A0A)]
    assert events(layer) == []
    # The answer goes out as a CON separate response with a fresh MID, retransmitted.
    mid0 = random.Random(SEED).randrange(0x10000)
    first_timeout = twin.uniform(2.0, 3.0)
    layer.respond(req.key, Message(code=Code.CONTENT, payload=b"slow"), START + 5)
    (sep,) = sent(layer)
    assert (sep.type, sep.mid, sep.token, sep.payload) == (
        MessageType.CON,
        mid0,
        b"\x99",
        b"slow",
    )
    assert layer.next_timer() == pytest.approx(START + 5 + first_timeout)
    layer.handle_timer(START + 5 + first_timeout)
    assert sent(layer) == [sep]
    feed(layer, empty(MessageType.ACK, sep.mid), START + 9)
    assert events(layer) == []  # separate responses are not reported
    assert layer.next_timer() is None
    assert layer.pending() == 0


def test_incoming_non_request_gets_non_response_and_duplicate_is_answered_again() -> None:
    layer, _ = make_layer()
    feed(layer, incoming(MessageType.NON), START)
    req = one_request(layer)
    assert layer.next_timer() is None  # no ACK to send for a NON
    layer.respond(req.key, Message(code=Code.CONTENT, payload=b"n"), START + 3)
    (resp,) = sent(layer)
    assert resp.type == MessageType.NON
    assert resp.token == b"\x99"
    feed(layer, incoming(MessageType.NON), START + 4)
    assert sent(layer) == [resp]
    assert events(layer) == []


def test_dedup_window_expires_after_exchange_lifetime() -> None:
    layer, _ = make_layer()
    feed(layer, incoming(), START)
    req = one_request(layer)
    layer.respond(req.key, Message(code=Code.CONTENT), START)
    (resp,) = sent(layer)
    feed(layer, incoming(), START + 246.9)
    assert sent(layer) == [resp]
    assert events(layer) == []
    feed(layer, incoming(), START + DEFAULTS.exchange_lifetime)
    again = one_request(layer)
    assert again.key != req.key
    assert again.message.mid == 0x0A0A


def test_non_dedup_window_is_non_lifetime() -> None:
    layer, _ = make_layer()
    feed(layer, incoming(MessageType.NON), START)
    one_request(layer)
    feed(layer, incoming(MessageType.NON), START + 144.9)
    assert events(layer) == []
    feed(layer, incoming(MessageType.NON), START + DEFAULTS.non_lifetime)
    one_request(layer)


def test_incoming_con_ping_gets_rst() -> None:
    layer, _ = make_layer()
    feed(layer, empty(MessageType.CON, 0x1111), START)
    assert sent(layer) == [empty(MessageType.RST, 0x1111)]
    assert events(layer) == []
    feed(layer, empty(MessageType.NON, 0x1112), START)  # NON must not be empty: ignored
    assert layer.datagrams_to_send() == []
    assert events(layer) == []


def test_response_with_unknown_token_gets_rst() -> None:
    layer, _ = make_layer()
    feed(layer, Message(MessageType.CON, Code.CONTENT, 0x2222, b"nope"), START)
    assert sent(layer) == [empty(MessageType.RST, 0x2222)]
    assert layer.stats.unmatched == 1
    feed(layer, Message(MessageType.NON, Code.CONTENT, 0x2223, b"nope"), START)
    assert sent(layer) == [empty(MessageType.RST, 0x2223)]
    # An unmatched piggybacked response (ACK) is never answered.
    feed(layer, Message(MessageType.ACK, Code.CONTENT, 0x2224, b"nope"), START)
    assert layer.datagrams_to_send() == []
    assert events(layer) == []


def test_con_with_reserved_code_class_gets_rst() -> None:
    layer, _ = make_layer()
    feed(layer, Message(MessageType.CON, 0x21, 0x3333, b"t"), START)  # 1.01 is reserved
    assert sent(layer) == [empty(MessageType.RST, 0x3333)]
    feed(layer, Message(MessageType.NON, 0xC1, 0x3334, b"t"), START)  # 6.01: ignore a NON
    assert layer.datagrams_to_send() == []
    assert events(layer) == []


# -- RFC 7252 §4.2: reject (silently ignore) a malformed ACK or RST ----------------


def test_non_empty_rst_is_ignored() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    bad_rst = Message(MessageType.RST, Code.CONTENT, req.mid, req.token)
    feed(layer, bad_rst, START + 0.1)
    assert events(layer) == []
    # Still outstanding: it keeps retransmitting and a real answer completes it.
    due = layer.next_timer()
    assert due is not None
    layer.handle_timer(due)
    assert sent(layer) == [req]
    feed(layer, piggyback(req), due + 0.1)
    assert one_result(layer).key == key


@pytest.mark.parametrize("code", [Code.GET, Code.POST, 0x21, 0xC5, 0xE0])
def test_ack_carrying_request_or_reserved_class_is_ignored(code: int) -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, Message(MessageType.ACK, code, req.mid, req.token), START + 0.1)
    assert events(layer) == []
    due = layer.next_timer()
    assert due is not None and due > START + 0.1 + 1.0  # still retransmitting
    feed(layer, piggyback(req), START + 0.2)
    assert one_result(layer).key == key


# -- observe (keep_open) -------------------------------------------------------------


def test_keep_open_observation_delivers_notifications_until_cancel() -> None:
    layer, _ = make_layer()
    key = layer.send_request(
        Message(code=Code.GET, token=TOKEN, options=make_options(path=["3", "0"], observe=0)),
        START,
        keep_open=True,
    )
    (req,) = sent(layer)
    assert req.observe == 0
    feed(layer, notification_ack(req, 1), START + 0.1)
    first = one_result(layer)
    assert (first.key, first.outcome) == (key, Outcome.RESPONSE)
    assert first.response is not None and first.response.observe == 1
    assert layer.next_timer() is None  # an open observation has no deadline
    assert layer.pending() == 1

    con = notification(2, MessageType.CON)
    con.mid = 500
    feed(layer, con, START + 10)
    assert sent(layer) == [empty(MessageType.ACK, 500)]
    second = one_result(layer)
    assert second.key == key and second.response is not None and second.response.observe == 2
    feed(layer, con, START + 11)  # retransmitted notification: ACK again, deliver once
    assert sent(layer) == [empty(MessageType.ACK, 500)]
    assert events(layer) == []

    non = notification(3, MessageType.NON)
    non.mid = 501
    feed(layer, non, START + 20)
    assert layer.datagrams_to_send() == []
    third = one_result(layer)
    assert third.response is not None and third.response.observe == 3

    layer.cancel(key, START + 30)
    assert events(layer) == []
    assert layer.pending() == 0
    late = notification(4, MessageType.CON)
    late.mid = 502
    feed(layer, late, START + 40)
    assert sent(layer) == [empty(MessageType.RST, 502)]
    assert events(layer) == []
    late_non = notification(5, MessageType.NON)
    late_non.mid = 503
    feed(layer, late_non, START + 41)
    assert sent(layer) == [empty(MessageType.RST, 503)]


def test_keep_open_response_without_observe_finishes() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer, keep_open=True)
    feed(layer, piggyback(req, code=Code.NOT_FOUND), START + 0.1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESPONSE)
    assert layer.pending() == 0
    feed(layer, Message(MessageType.CON, Code.CONTENT, 7, TOKEN), START + 1)
    assert sent(layer) == [empty(MessageType.RST, 7)]


def test_open_observation_does_not_block_nstart() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer, keep_open=True)
    feed(layer, notification_ack(req, 1), START + 0.1)
    events(layer)
    layer.send_request(get("other", token=b"x"), START + 1)
    assert [m.uri_path for m in sent(layer)] == [["other"]]


# -- malformed input -----------------------------------------------------------------


def test_malformed_con_gets_rst_and_is_counted() -> None:
    layer, _ = make_layer()
    layer.receive(b"\x40\x01\x12\x34\xff", START)  # payload marker with no payload
    assert sent(layer) == [empty(MessageType.RST, 0x1234)]
    assert layer.stats.malformed == 1
    assert layer.stats.received == 1
    assert events(layer) == []


@pytest.mark.parametrize(
    "data",
    [
        b"\x50\x01\x12\x34\xff",  # malformed NON
        b"\x60\x01\x12\x34\xff",  # malformed ACK
        b"\x70\x00\x12\x34\x00",  # malformed RST
        b"\x80\x01\x12\x34",  # version 2: silently ignored
        b"\x40\x01",  # header too short to answer
    ],
)
def test_other_malformed_datagrams_are_dropped_silently(data: bytes) -> None:
    layer, _ = make_layer()
    layer.receive(data, START)
    assert layer.datagrams_to_send() == []
    assert events(layer) == []
    assert layer.stats.malformed == 1


def test_malformed_ack_does_not_complete_exchange() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer)
    # A piggybacked response followed by an option header with length nibble 15.
    bad = encode(Message(MessageType.ACK, Code.CONTENT, req.mid, req.token)) + b"\x1f"
    layer.receive(bad, START + 0.1)
    assert events(layer) == []
    assert layer.pending() == 1


# -- housekeeping --------------------------------------------------------------------


def test_clear_drops_everything() -> None:
    layer, _ = make_layer()
    start_request(layer)
    feed(layer, incoming(), START)
    events(layer)
    layer.send_request(get(token=b"q"), START)
    layer.clear()
    assert layer.pending() == 0
    assert layer.next_timer() is None
    assert layer.datagrams_to_send() == []
    layer.handle_timer(START + 100)
    assert layer.datagrams_to_send() == []


def test_stats_count_sent_datagrams() -> None:
    layer, _ = make_layer()
    start_request(layer)
    due = layer.next_timer()
    assert due is not None
    layer.handle_timer(due)
    layer.datagrams_to_send()
    assert layer.stats.sent == 2
    assert layer.stats.retransmissions == 1


def test_late_timer_does_not_burst_retransmissions() -> None:
    """A timer served late (event loop stalled) retransmits once and doubles from *now*."""
    layer, twin = make_layer()
    first_timeout = twin.uniform(2.0, 3.0)
    _, req = start_request(layer)
    late = START + first_timeout + 20.0
    layer.handle_timer(late)
    assert sent(layer) == [req]
    due = layer.next_timer()
    assert due == pytest.approx(late + 2 * first_timeout)
    assert due is not None
    layer.handle_timer(late)  # serving the same instant again sends nothing more
    assert layer.datagrams_to_send() == []
    layer.handle_timer(due)
    assert sent(layer) == [req]
    assert layer.next_timer() == pytest.approx(due + 4 * first_timeout)


def test_answers_after_the_exchange_ended_are_ignored() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer)
    while (due := layer.next_timer()) is not None:
        layer.handle_timer(due)
    assert one_result(layer).outcome is Outcome.TIMEOUT
    layer.datagrams_to_send()
    feed(layer, piggyback(req), START + 100)
    feed(layer, empty(MessageType.RST, req.mid), START + 100)
    assert events(layer) == []
    assert layer.datagrams_to_send() == []


def test_rst_after_empty_ack_is_ignored() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 0.1)
    feed(layer, empty(MessageType.RST, req.mid), START + 0.2)
    assert events(layer) == []
    feed(layer, Message(MessageType.NON, Code.CONTENT, 1, TOKEN), START + 1)
    assert one_result(layer).key == key


# -- deduplication windows -------------------------------------------------------------


def test_dedup_windows_expire_oldest_first_and_per_message_type() -> None:
    """CON ids live EXCHANGE_LIFETIME, NON ids NON_LIFETIME, each counted from its arrival."""
    layer, _ = make_layer()
    for i in range(200):  # one CON and one NON id every half second
        feed(layer, incoming(MessageType.CON, i), START + i / 2)
        feed(layer, incoming(MessageType.NON, i), START + i / 2)
        assert len(events(layer)) == 2
    layer.datagrams_to_send()
    now = START + DEFAULTS.non_lifetime + 5.25  # NON ids 0..10 have expired, CON ids none
    for mid in (0, 10, 11, 199):
        feed(layer, incoming(MessageType.NON, mid), now)
        assert len(events(layer)) == (1 if mid <= 10 else 0), mid
        feed(layer, incoming(MessageType.CON, mid), now)
        assert events(layer) == [], mid
    now = START + DEFAULTS.exchange_lifetime + 1.75  # CON ids 0..3 have expired
    for mid in (1, 3, 4, 150):
        feed(layer, incoming(MessageType.CON, mid), now)
        assert len(events(layer)) == (1 if mid <= 3 else 0), mid


# -- the caller's messages are never changed (issue 11 item 7) ---------------------------


def snapshot(msg: Message) -> tuple[object, ...]:
    return (msg.type, msg.code, msg.mid, msg.token, list(msg.options), msg.payload)


def test_send_request_leaves_the_callers_message_alone() -> None:
    layer, _ = make_layer()
    msg = get(token=b"")
    before = snapshot(msg)
    key = layer.send_request(msg, START)
    (wire,) = sent(layer)
    assert snapshot(msg) == before
    assert wire.token and wire.token != msg.token
    feed(layer, piggyback(wire), START + 0.1)
    result = one_result(layer)
    assert result.key == key
    assert (result.request.mid, result.request.token) == (wire.mid, wire.token)
    assert result.request is not msg


def test_send_message_leaves_the_callers_message_alone() -> None:
    layer, _ = make_layer()
    for mtype in (MessageType.CON, MessageType.NON):
        msg = notification(5, mtype)
        before = snapshot(msg)
        layer.send_message(msg, START)
        (wire,) = sent(layer)
        assert snapshot(msg) == before
        assert wire.mid != msg.mid and wire.type == mtype


def test_send_message_refuses_an_unencodable_message_without_side_effects() -> None:
    layer, _ = make_layer()
    with pytest.raises(ValueError):
        layer.send_message(notification(5, MessageType.CON, token=bytes(9)), START)
    assert layer.pending() == 0
    assert layer.datagrams_to_send() == []
    assert layer.next_timer() is None


def test_respond_leaves_the_callers_message_alone() -> None:
    # Piggybacked, separate (after the empty ACK) and NON answers.
    layer, _ = make_layer()
    cases = [(MessageType.CON, 0.1), (MessageType.CON, 5.0), (MessageType.NON, 0.1)]
    for mid, (mtype, delay) in enumerate(cases):
        feed(layer, incoming(mtype, mid), START)
        req = one_request(layer)
        if delay > DEFAULTS.effective_piggyback_window:
            layer.handle_timer(START + delay)
            layer.datagrams_to_send()
        response = Message(code=Code.CONTENT, payload=b"x")
        before = snapshot(response)
        layer.respond(req.key, response, START + delay)
        (wire,) = sent(layer)
        assert snapshot(response) == before
        assert wire.token == b"\x99"


# -- unrecognised critical options (RFC 7252 §5.4.1) ------------------------------------


def with_option(mtype: MessageType, number: int) -> Message:
    msg = incoming(mtype)
    msg.add(number, b"\x01")
    return msg


def test_con_request_with_unknown_critical_option_gets_4_02() -> None:
    layer, _ = make_layer()
    feed(layer, with_option(MessageType.CON, 9), START)
    assert layer.refuse_unknown_critical(one_request(layer), START) == [9]
    (resp,) = sent(layer)
    assert (resp.type, resp.code, resp.mid, resp.token) == (
        MessageType.ACK,
        Code.BAD_OPTION,
        0x0A0A,
        b"\x99",
    )
    assert b"9" in resp.payload
    feed(layer, with_option(MessageType.CON, 9), START + 1)  # a duplicate: the same answer
    assert sent(layer) == [resp]


def test_non_request_with_unknown_critical_option_is_reset() -> None:
    layer, _ = make_layer()
    feed(layer, with_option(MessageType.NON, 2049), START)
    assert layer.refuse_unknown_critical(one_request(layer), START) == [2049]
    assert sent(layer) == [empty(MessageType.RST, 0x0A0A)]


@pytest.mark.parametrize("number", [10, 258, int(OptionNumber.URI_QUERY), 2048])
def test_known_or_elective_options_are_accepted(number: int) -> None:
    layer, _ = make_layer()
    feed(layer, with_option(MessageType.CON, number), START)
    req = one_request(layer)
    assert layer.refuse_unknown_critical(req, START) == []
    assert layer.datagrams_to_send() == []
    layer.respond(req.key, Message(code=Code.CONTENT), START)
    assert sent(layer)[0].code == Code.CONTENT


def test_piggybacked_response_with_unknown_critical_option_is_ignored() -> None:
    """RFC 7252 §5.4.1: rejected (§4.2: silently ignored), so the request goes on as unanswered."""
    layer, _ = make_layer()
    key, req = start_request(layer)
    answer = piggyback(req)
    answer.add(9, b"\x01")
    feed(layer, answer, START + 0.3)
    assert events(layer) == []
    assert layer.datagrams_to_send() == []
    assert layer.stats.malformed == 1
    layer.handle_timer(layer.next_timer() or START)
    assert sent(layer)[0].mid == req.mid  # retransmitted: that ACK did not count
    feed(layer, piggyback(req), START + 5)
    assert one_result(layer).key == key


@pytest.mark.parametrize("mtype", [MessageType.CON, MessageType.NON])
def test_separate_response_with_unknown_critical_option_is_reset(mtype: MessageType) -> None:
    """RFC 7252 §5.4.1: a CON or NON response with such an option is rejected with RST."""
    layer, _ = make_layer()
    key, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 0.2)
    late = Message(mtype, Code.CONTENT, 0x4242, TOKEN, payload=b"late")
    late.add(2049, b"\x01")
    feed(layer, late, START + 1)
    assert sent(layer) == [empty(MessageType.RST, 0x4242)]
    assert events(layer) == []
    feed(layer, Message(mtype, Code.CONTENT, 0x4243, TOKEN, payload=b"good"), START + 2)
    result = one_result(layer)
    assert result.key == key and result.response is not None
    assert result.response.payload == b"good"


def test_notification_with_unknown_critical_option_is_reset_and_not_delivered() -> None:
    layer, _ = make_layer()
    layer.send_request(
        Message(code=Code.GET, token=TOKEN, options=make_options(path=["3", "0"], observe=0)),
        START,
        keep_open=True,
    )
    (req,) = sent(layer)
    feed(layer, notification_ack(req, 1), START + 0.1)
    one_result(layer)
    odd = notification(2, MessageType.NON)
    odd.mid = 600
    odd.add(13, b"\x01")
    feed(layer, odd, START + 5)
    assert sent(layer) == [empty(MessageType.RST, 600)]
    assert events(layer) == []


# -- option value lengths (RFC 7252 §5.4.3: outside its range is unrecognised) ---------


def bare(mtype: MessageType = MessageType.CON, code: int = Code.GET) -> Message:
    return Message(type=mtype, code=code, mid=0x0A0A, token=b"\x99")


@pytest.mark.parametrize(
    ("number", "value"),
    [
        (int(OptionNumber.URI_PATH), b"a" * 300),  # the encoding allows it, Table 4 does not
        (int(OptionNumber.URI_QUERY), b"q" * 256),
        (int(OptionNumber.URI_HOST), b""),
        (int(OptionNumber.BLOCK2), b"\x01\x02\x03\x04"),
        (int(OptionNumber.ACCEPT), b"\x01\x02\x03"),
    ],
)
def test_con_request_with_a_critical_option_out_of_range_gets_4_02(
    number: int, value: bytes
) -> None:
    layer, _ = make_layer()
    layer.receive(forge(bare(), (number, value)), START)
    assert layer.refuse_unknown_critical(one_request(layer), START) == [number]
    (resp,) = sent(layer)
    assert (resp.type, resp.code, resp.mid) == (MessageType.ACK, Code.BAD_OPTION, 0x0A0A)
    assert str(number).encode() in resp.payload


def test_non_request_with_a_critical_option_out_of_range_is_reset() -> None:
    layer, _ = make_layer()
    layer.receive(forge(bare(MessageType.NON), (int(OptionNumber.URI_PATH), b"a" * 256)), START)
    assert layer.refuse_unknown_critical(one_request(layer), START) == [11]
    assert sent(layer) == [empty(MessageType.RST, 0x0A0A)]


@pytest.mark.parametrize(
    ("number", "value"),
    [
        (int(OptionNumber.CONTENT_FORMAT), b"\x01" * 5),
        (int(OptionNumber.OBSERVE), b"\x01" * 4),
        (int(OptionNumber.ETAG), b"e" * 9),
        (int(OptionNumber.ETAG), b""),
    ],
)
def test_request_with_an_elective_option_out_of_range_is_served_without_it(
    number: int, value: bytes
) -> None:
    layer, _ = make_layer()
    layer.receive(forge(incoming(), (number, value)), START)
    req = one_request(layer)
    assert layer.refuse_unknown_critical(req, START) == []
    assert req.message.options == [(11, b"3")]
    assert (req.message.content_format, req.message.observe) == (None, None)


def test_a_notification_with_a_4_byte_observe_is_a_plain_response() -> None:
    """RFC 7641 §2: Observe is 0-3 bytes; one longer is ignored, so the answer ends
    the exchange like any response instead of opening an observation (before, reading
    it raised CoapDecodeError out of receive())."""
    layer, _ = make_layer()
    key = layer.send_request(
        Message(code=Code.GET, token=TOKEN, options=make_options(path=["3", "0"], observe=0)),
        START,
        keep_open=True,
    )
    (req,) = sent(layer)
    answer = piggyback(req)
    layer.receive(forge(answer, (int(OptionNumber.OBSERVE), b"\x01\x02\x03\x04")), START + 0.1)
    result = one_result(layer)
    assert (result.key, result.outcome) == (key, Outcome.RESPONSE)
    assert result.response is not None and result.response.observe is None
    assert layer.pending() == 0


def test_a_response_with_a_5_byte_max_age_reads_as_without_one() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer)
    answer = piggyback(req, Code.SERVICE_UNAVAILABLE, b"")
    layer.receive(forge(answer, (int(OptionNumber.MAX_AGE), b"\xff" * 5)), START + 0.1)
    result = one_result(layer)
    assert result.response is not None and result.response.max_age is None


def test_piggybacked_response_with_a_critical_option_out_of_range_is_ignored() -> None:
    layer, _ = make_layer()
    key, req = start_request(layer)
    layer.receive(forge(piggyback(req), (int(OptionNumber.BLOCK2), b"\x00" * 4)), START + 0.3)
    assert events(layer) == []
    assert layer.stats.malformed == 1
    layer.handle_timer(layer.next_timer() or START)
    assert sent(layer)[0].mid == req.mid  # retransmitted: that ACK did not count
    feed(layer, piggyback(req), START + 5)
    assert one_result(layer).key == key


def test_separate_response_with_a_critical_option_out_of_range_is_reset() -> None:
    layer, _ = make_layer()
    _, req = start_request(layer)
    feed(layer, empty(MessageType.ACK, req.mid), START + 0.2)
    late = Message(MessageType.CON, Code.CONTENT, 0x4242, TOKEN)
    layer.receive(forge(late, (int(OptionNumber.URI_PATH), b"x" * 256)), START + 1)
    assert sent(layer) == [empty(MessageType.RST, 0x4242)]
    assert events(layer) == []


def test_a_request_with_an_option_out_of_range_is_refused_before_it_is_queued() -> None:
    layer, _ = make_layer()
    query = ["ep=" + "e" * 253]  # 256 bytes: one Uri-Query is 0-255
    with pytest.raises(EncodeError):
        layer.send_request(
            Message(code=Code.POST, options=make_options(path=["rd"], query=query)), START
        )
    with pytest.raises(EncodeError):
        layer.send_message(notification(1 << 24, MessageType.CON), START)  # a 4-byte Observe
    assert layer.pending() == 0
    assert layer.datagrams_to_send() == []
    assert layer.next_timer() is None
