"""ServerCore driving operations against a hand-played client: ids, Block2, Observe, cancel."""

from __future__ import annotations

import random

import pytest

from aiolwm2m.coap.layer import Outcome
from aiolwm2m.coap.message import (
    Block,
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    encode_uint,
)
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.testbed import operations as ops
from aiolwm2m.testbed.core import ResponseEvent, ServerCore
from aiolwm2m.testbed.operations import Op, UnknownEndpointError

NOW = 100.0


class FakeClient:
    """Plays the client's side of the wire by hand."""

    def __init__(self, core: ServerCore, endpoint: str, port: int) -> None:
        self.core = core
        self.addr = ("127.0.0.1", port)
        self.endpoint = endpoint
        self.mid = port * 10
        register = Message(type=MessageType.CON, code=Code.POST, mid=self.next_mid(), token=b"r")
        register.add(OptionNumber.URI_PATH, b"rd")
        register.add(OptionNumber.URI_QUERY, f"ep={endpoint}".encode())
        register.add(OptionNumber.URI_QUERY, b"lwm2m=1.1")
        register.payload = b"</3/0>,</3303/0>"
        self.send(register)
        assert endpoint in core.registrations
        self.take()

    def next_mid(self) -> int:
        self.mid += 1
        return self.mid

    def send(self, msg: Message) -> None:
        self.core.datagram_received(self.addr, encode(msg), NOW)

    def take(self) -> list[Message]:
        """Datagrams the server sent to this client since the last call."""
        out = []
        for addr, data in self.core.datagrams_to_send():
            assert addr == self.addr
            out.append(decode(data))
        return out

    def answer(
        self, request: Message, code: int, payload: bytes = b"", *, fmt: int | None = None
    ) -> Message:
        """A piggybacked answer to ``request``."""
        resp = Message(type=MessageType.ACK, code=code, mid=request.mid, token=request.token)
        if fmt is not None:
            resp.add(OptionNumber.CONTENT_FORMAT, encode_uint(fmt))
        resp.payload = payload
        return resp

    def notify(self, request: Message, seq: int, payload: bytes) -> Message:
        note = Message(
            type=MessageType.NON, code=Code.CONTENT, mid=self.next_mid(), token=request.token
        )
        note.add(OptionNumber.OBSERVE, encode_uint(seq))
        note.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.TEXT))
        note.payload = payload
        return note


def events(core: ServerCore) -> list[ResponseEvent]:
    out = []
    while (event := core.next_response()) is not None:
        out.append(event)
    return out


@pytest.fixture
def core() -> ServerCore:
    return ServerCore(rng=random.Random(1))


def test_operation_result_is_decoded(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    key = core.start_operation("dev", ops.read_request("/3303/0/5700"), NOW)
    (request,) = client.take()
    assert request.uri_path == ["3303", "0", "5700"]
    client.send(client.answer(request, Code.CONTENT, b"21.5", fmt=0))
    (event,) = events(core)
    assert event.key == key and event.final
    assert event.operation is not None
    assert event.operation.values == {Path.parse("/3303/0/5700"): 21.5}
    assert core.open_requests() == {}


def test_ids_are_unique_across_clients(core: ServerCore) -> None:
    a = FakeClient(core, "a", 5001)
    b = FakeClient(core, "b", 5002)
    key_a = core.start_operation("a", ops.read_request("/3/0/0"), NOW)
    (req_a,) = a.take()
    key_b = core.start_operation("b", ops.read_request("/3/0/0"), NOW)
    (req_b,) = b.take()
    assert key_a != key_b
    b.send(b.answer(req_b, Code.CONTENT, b"B", fmt=0))
    a.send(a.answer(req_a, Code.CONTENT, b"A", fmt=0))
    got = {e.key: e.operation.value("/3/0/0") for e in events(core) if e.operation}
    assert got == {key_a: "A", key_b: "B"}


def test_unknown_endpoint_is_a_typed_key_error(core: ServerCore) -> None:
    with pytest.raises(UnknownEndpointError):
        core.start_operation("nobody", ops.read_request("/3"), NOW)
    with pytest.raises(KeyError):  # the historical contract of send_request
        core.send_request("nobody", Message(code=Code.GET), NOW)


def test_block2_answer_is_fetched_and_reassembled(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    body = bytes(range(256)) * 3  # 768 bytes: blocks of 256
    key = core.start_operation("dev", ops.read_request("/5/0/0", 42), NOW)
    (request,) = client.take()
    for num in range(3):
        resp = client.answer(request, Code.CONTENT, body[num * 256 : (num + 1) * 256], fmt=42)
        resp.add(OptionNumber.BLOCK2, Block(num, num < 2, 4).encode())
        client.send(resp)
        if num < 2:
            assert events(core) == []
            (request,) = client.take()
            assert request.block2 == Block(num + 1, False, 4)
            assert request.uri_path == ["5", "0", "0"] and request.accept == 42
    (event,) = events(core)
    assert event.key == key and event.operation is not None
    assert event.operation.values == {Path.parse("/5/0/0"): body}
    assert event.operation.content_format == 42


def test_block2_error_mid_transfer_is_the_result(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    core.start_operation("dev", ops.read_request("/5/0/0", 42), NOW)
    (request,) = client.take()
    first = client.answer(request, Code.CONTENT, bytes(16), fmt=42)
    first.add(OptionNumber.BLOCK2, Block(0, True, 0).encode())
    client.send(first)
    (request,) = client.take()
    client.send(client.answer(request, Code.REQUEST_ENTITY_INCOMPLETE))
    (event,) = events(core)
    assert event.operation is not None and event.operation.code == Code.REQUEST_ENTITY_INCOMPLETE


def test_inconsistent_blocks_are_a_decode_error(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    core.start_operation("dev", ops.read_request("/5/0/0", 42), NOW)
    (request,) = client.take()
    first = client.answer(request, Code.CONTENT, bytes(16), fmt=42)
    first.add(OptionNumber.BLOCK2, Block(0, True, 0).encode())
    client.send(first)
    (request,) = client.take()
    wrong = client.answer(request, Code.CONTENT, bytes(16), fmt=42)
    wrong.add(OptionNumber.BLOCK2, Block(5, False, 0).encode())  # not the block asked for
    client.send(wrong)
    (event,) = events(core)
    assert event.operation is not None
    assert event.operation.decode_error is not None
    assert "block-wise" in event.operation.decode_error


def test_transport_failure_has_no_operation(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    core.start_operation("dev", ops.read_request("/3/0"), NOW)
    (request,) = client.take()
    client.send(Message(type=MessageType.RST, code=Code.EMPTY, mid=request.mid))
    (event,) = events(core)
    assert event.operation is None and event.result.outcome is Outcome.RESET and event.final


def start_observation(core: ServerCore, client: FakeClient) -> tuple[int, Message]:
    key = core.start_operation("dev", ops.observe_request("/3303/0/5700", 0), NOW)
    (request,) = client.take()
    first = client.answer(request, Code.CONTENT, b"20", fmt=0)
    first.add(OptionNumber.OBSERVE, encode_uint(1))
    client.send(first)
    (event,) = events(core)
    assert event.operation is not None and not event.final
    assert event.operation.observe == 1
    return key, request


def test_notifications_are_non_final_events(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    key, request = start_observation(core, client)
    for seq, text in ((2, b"21"), (3, b"22")):
        client.send(client.notify(request, seq, text))
    notes = events(core)
    assert [(e.key, e.final) for e in notes] == [(key, False), (key, False)]
    assert [e.operation.value("/3303/0/5700") for e in notes if e.operation] == [21.0, 22.0]
    assert key in core.open_requests()
    # A final answer (no Observe option) ends the observation.
    end = Message(type=MessageType.NON, code=Code.NOT_FOUND, mid=client.next_mid())
    end.token = request.token
    client.send(end)
    (last,) = events(core)
    assert last.final and last.operation is not None and last.operation.code == Code.NOT_FOUND
    assert core.open_requests() == {}


def test_passive_cancel_answers_the_next_notification_with_rst(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    key, request = start_observation(core, client)
    core.cancel_request(key, NOW)
    note = client.notify(request, 2, b"21")
    note.type = MessageType.CON
    client.send(note)
    assert events(core) == []
    (reply,) = client.take()
    assert (reply.type, reply.mid) == (MessageType.RST, note.mid)


def test_active_cancel_repeats_the_request_with_observe_1(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    key, request = start_observation(core, client)
    cancel_key = core.cancel_observation(key, NOW)
    (cancel,) = client.take()
    assert cancel.observe == 1 and cancel.token == request.token
    assert cancel.uri_path == request.uri_path
    client.send(client.answer(cancel, Code.CONTENT, b"23", fmt=0))
    (event,) = events(core)
    assert event.key == cancel_key and event.final
    assert event.operation is not None and event.operation.op is Op.CANCEL_OBSERVE
    assert event.operation.value("/3303/0/5700") == 23.0
    assert core.open_requests() == {}
    with pytest.raises(KeyError):
        core.cancel_observation(key, NOW)


def test_block2_notification_is_completed_with_plain_gets(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    key, request = start_observation(core, client)
    note = client.notify(request, 2, b"1" * 16)
    note.add(OptionNumber.BLOCK2, Block(0, True, 0).encode())
    client.send(note)
    assert events(core) == []
    (follow,) = client.take()
    assert follow.observe is None and follow.block2 == Block(1, False, 0)
    assert follow.token != request.token
    rest = client.answer(follow, Code.CONTENT, b".5", fmt=0)
    rest.add(OptionNumber.BLOCK2, Block(1, False, 0).encode())
    client.send(rest)
    (event,) = events(core)
    assert event.key == key and not event.final and event.operation is not None
    assert event.operation.value("/3303/0/5700") == float("1" * 16 + ".5")
    assert event.operation.observe == 2
    assert key in core.open_requests()


def test_restart_forgets_open_requests(core: ServerCore) -> None:
    client = FakeClient(core, "dev", 5001)
    start_observation(core, client)
    core.forget_peers()
    assert core.open_requests() == {}
