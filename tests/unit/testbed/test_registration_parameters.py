"""The testbed server checks Register/Update parameters as strictly as Eclipse Leshan.

Issue 12 item 1: LwM2M 1.1 removed the queue-mode letter from the binding and
gave queue mode its own Register parameter ``Q``; Leshan answers a 1.1
``b=UQ`` with 4.00 and the plain-text diagnostic "Invalid Binding mode: Q is
not supported since LWM2M 1.1" (``RegisterRequest``/``BindingMode`` in
leshan-lwm2m-core), and a ``Q`` parameter from a 1.0 client with "QueueMode is
not defined in LWM2M v1.0". The suite runs the client against this server, so
the server must refuse what Leshan refuses.
"""

from __future__ import annotations

import pytest

from aiolwm2m.coap.message import Code, Message, MessageType, decode, encode, make_options
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.testbed.core import ServerCore, binding_problem

NOW = 1000.0
ADDR = ("10.0.0.1", 5683)


def post(path: list[str], query: list[str], mid: int) -> Message:
    return Message(
        type=MessageType.CON,
        code=Code.POST,
        mid=mid,
        token=mid.to_bytes(2, "big"),
        options=make_options(path=path, query=query),
        payload=b"</1/0>,</3/0>",
    )


def answer(core: ServerCore, msg: Message) -> Message:
    core.datagram_received(ADDR, encode(msg), NOW)
    (reply,) = [decode(data) for to, data in core.datagrams_to_send() if to == ADDR]
    return reply


def register(core: ServerCore, *query: str) -> Message:
    return answer(core, post(["rd"], ["ep=dev", "lt=300", *query], mid=1))


def test_a_1_1_client_saying_b_uq_gets_leshans_4_00() -> None:
    core = ServerCore()
    reply = register(core, "lwm2m=1.1", "b=UQ")
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload == b"Invalid Binding mode: Q is not supported since LWM2M 1.1"
    assert reply.content_format == ContentFormat.TEXT
    assert "dev" not in core.registrations
    [rejected] = [e for e in core.history if e.kind == "register_rejected"]
    assert rejected.endpoint == "dev"


def test_a_1_1_client_in_queue_mode_says_b_u_and_q() -> None:
    core = ServerCore()
    assert register(core, "lwm2m=1.1", "b=U", "Q").code == Code.CREATED
    reg = core.registrations["dev"]
    assert (reg.binding, reg.queue_mode, reg.lwm2m_version) == ("U", True, "1.1")


def test_a_1_1_client_without_q_is_not_in_queue_mode() -> None:
    core = ServerCore()
    assert register(core, "lwm2m=1.1", "b=U").code == Code.CREATED
    assert core.registrations["dev"].queue_mode is False


def test_a_1_0_client_still_says_b_uq() -> None:
    core = ServerCore()
    assert register(core, "lwm2m=1.0", "b=UQ").code == Code.CREATED
    reg = core.registrations["dev"]
    assert (reg.binding, reg.queue_mode) == ("UQ", True)


def test_the_q_parameter_does_not_exist_in_1_0() -> None:
    core = ServerCore()
    reply = register(core, "lwm2m=1.0", "b=U", "Q")
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload == b"QueueMode is not defined in LWM2M v1.0"
    assert not core.registrations


def test_an_update_cannot_bring_back_the_1_0_binding() -> None:
    core = ServerCore()
    location = register(core, "lwm2m=1.1", "b=U", "Q").location_path
    reply = answer(core, post(location, ["lt=60", "b=UQ"], mid=2))
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload == b"Invalid Binding mode: Q is not supported since LWM2M 1.1"
    reg = core.registrations["dev"]
    assert (reg.lifetime, reg.binding, reg.queue_mode, reg.updates) == (300, "U", True, 0)


def test_a_1_0_update_may_switch_queue_mode_through_the_binding() -> None:
    core = ServerCore()
    location = register(core, "lwm2m=1.0", "b=U").location_path
    assert answer(core, post(location, ["b=UQ"], mid=2)).code == Code.CHANGED
    reg = core.registrations["dev"]
    assert (reg.binding, reg.queue_mode) == ("UQ", True)


@pytest.mark.parametrize(
    ("binding", "version", "problem"),
    [
        ("U", "1.1", None),
        ("UQ", "1.0", None),
        ("UQS", "1.0", None),
        ("T", "1.1", None),
        ("UQ", "1.1", "Invalid Binding mode: Q is not supported since LWM2M 1.1"),
        ("T", "1.0", "Invalid Binding mode: T is supported since LWM2M 1.1"),
        ("N", "1.0", "Invalid Binding mode: N is supported since LWM2M 1.1"),
        ("UX", "1.1", "Invalid Binding mode: 'X' is not a binding"),
        ("", "1.1", "Invalid Binding mode: empty"),
    ],
)
def test_binding_rules(binding: str, version: str, problem: str | None) -> None:
    assert binding_problem(binding, version) == problem


def test_an_unknown_binding_letter_is_4_00_not_a_crash() -> None:
    core = ServerCore()
    reply = register(core, "lwm2m=1.1", "b=X")
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload == b"Invalid Binding mode: 'X' is not a binding"
