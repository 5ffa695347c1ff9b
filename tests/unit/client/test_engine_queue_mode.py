"""Queue mode (binding "UQ", spec §10): idle link closed after MAX_TRANSMIT_WAIT,
reopened with an Update whenever something has to be sent.

How it is announced depends on the registered version (issue 12 item 1): LwM2M
1.0 says ``b=UQ``; 1.1 says ``b=U`` plus the valueless ``Q`` parameter, which
only Register carries (Core 1.1.1 §6.2.1/§6.2.2), so a server switching queue
mode through /1/x/7 under a 1.1 registration gets a new Register.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from simkit import (
    CON_GIVES_UP_AFTER,
    FakeTree,
    MakeClient,
    ScriptedServer,
    client_factory,
    operate,
    registered_answer,
    requests_to,
)

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import RegistrationConfig
from aiolwm2m.coap.message import Code, Message, OptionNumber, encode_uint
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.operations import OperationResult, read_request, write_request
from aiolwm2m.testbed.sim import SimServer

MTW = CON_GIVES_UP_AFTER  # MAX_TRANSMIT_WAIT with EXACT_COAP: 62 s


def test_idle_link_sleeps_and_a_notification_wakes_it_with_an_update_first(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    tree = FakeTree()
    net.trace = []
    client = make_client(objects=tree, account={"lifetime": 3600, "binding": "UQ"})
    net.clock.run_for(MTW + 1)
    [sleep] = [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
    [registered] = client.named("registered")
    assert sleep.time == pytest.approx(registered.time + MTW)
    assert client.engine.registered(), "asleep, still registered"
    reg = server.core.registrations["dev-1"]
    assert (reg.lwm2m_version, reg.binding, reg.queue_mode) == ("1.1", "U", True)

    sent = net.sent
    net.clock.run_for(600)
    assert net.sent == sent, "nothing on the wire while asleep"
    tree.notify(net.clock.now, value="42")
    client.poll()
    net.clock.run_for(1)
    to_server = [m for _, m in requests_to(net, server.addr)]
    assert [m.uri_path[:1] for m in to_server] == [["rd"], ["rd"]]  # Register, then Update
    assert client.named("updated")
    notes = [
        data
        for _, _, dst, data in net.trace
        if dst == server.addr and data[1] == 0x45  # 2.05 Content: the notification
    ]
    assert notes and notes[-1].endswith(b"42")
    update_time = next(t for t, m in requests_to(net, server.addr) if m.uri_path != ["rd"])
    note_time = next(t for t, _, dst, data in net.trace if dst == server.addr and data[1] == 0x45)
    assert note_time >= update_time, "the Update goes first"


def test_the_periodic_update_wakes_the_link(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"lifetime": 300, "binding": "UQ"})
    net.clock.run_for(400)  # Update due at 300 - 62 = 238 s, asleep again 62 s later
    sleeps = [e.time for e in client.events if isinstance(e, ev.QueueModeSleep)]
    updates = [e.time for e in client.named("updated")]
    assert len(sleeps) >= 2 and updates, "sleeps, wakes for the Update, sleeps again"
    assert sleeps[0] < updates[0] < sleeps[1]
    assert client.engine.registered()


def test_close_while_asleep_wakes_to_deregister(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"binding": "UQ"})
    net.clock.run_for(MTW + 1)
    assert [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
    client.close()
    net.clock.run_for(1)
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and dereg.acknowledged
    assert "dev-1" not in server.core.registrations


def test_plain_binding_never_sleeps(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(3 * MTW)
    assert not [e for e in client.events if isinstance(e, ev.QueueModeSleep)]


# -- how queue mode is announced (issue 12 item 1) ----------------------------------------


def registers(net: SimNetwork, server: Address) -> list[Message]:
    return [m for _, m in requests_to(net, server) if m.uri_path == ["rd"]]


def updates(net: SimNetwork, server: Address) -> list[Message]:
    return [
        m
        for _, m in requests_to(net, server)
        if m.code == Code.POST and len(m.uri_path) == 2 and m.uri_path[0] == "rd"
    ]


AS_1_0 = RegistrationConfig(lwm2m_version="1.0")


def test_a_1_1_client_announces_queue_mode_with_the_q_parameter(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"binding": "UQ"})
    net.clock.run_for(1)
    [register] = registers(net, server.addr)
    assert register.uri_query == ["ep=dev-1", "lt=300", "lwm2m=1.1", "b=U", "Q"]
    assert client.engine.registered()
    assert not client.errors()


def test_a_client_registering_as_1_0_says_b_uq(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"binding": "UQ"}, registration=AS_1_0)
    net.clock.run_for(1)
    [register] = registers(net, server.addr)
    assert register.uri_query == ["ep=dev-1", "lt=300", "lwm2m=1.0", "b=UQ"]
    reg = server.core.registrations["dev-1"]
    assert (reg.binding, reg.queue_mode) == ("UQ", True)
    assert client.engine.registered()


def test_after_the_4_12_fallback_queue_mode_is_the_1_0_binding_uq(net: SimNetwork) -> None:
    def answer(msg: Message) -> Message:
        if "lwm2m=1.1" in msg.uri_query:
            return Message(code=Code.PRECONDITION_FAILED)
        return registered_answer()

    scripted = ScriptedServer(net, ("10.0.0.8", 5683), answer)
    client = client_factory(net, scripted.uri)(account={"binding": "UQ"})
    net.clock.run_for(1)
    assert [m.uri_query for _, m in scripted.received] == [
        ["ep=dev-1", "lt=300", "lwm2m=1.1", "b=U", "Q"],
        ["ep=dev-1", "lt=300", "lwm2m=1.0", "b=UQ"],
    ]
    assert client.engine.registered()


def write_binding(net: SimNetwork, server: SimServer, value: str) -> OperationResult:
    """Write /1/0/7, then give the client a second to tell the server (Update/Register)."""
    result = operate(net, server, write_request("/1/0/7", value, ContentFormat.TEXT))
    net.clock.run_for(1)
    return result


def test_a_server_writing_uq_to_a_1_1_client_gets_a_new_register_with_q(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(1)
    assert write_binding(net, server, "UQ").code == Code.CHANGED
    first, second = registers(net, server.addr)
    assert first.uri_query == ["ep=dev-1", "lt=3600", "lwm2m=1.1", "b=U"]
    assert second.uri_query == ["ep=dev-1", "lt=3600", "lwm2m=1.1", "b=U", "Q"]
    assert not updates(net, server.addr), "no Update can carry Q"
    reg = server.core.registrations["dev-1"]
    assert (reg.binding, reg.queue_mode) == ("U", True)
    assert client.engine.registered() and not client.errors()
    net.clock.run_for(MTW + 1)
    assert [e for e in client.events if isinstance(e, ev.QueueModeSleep)], "queue mode is on"


def test_queue_mode_switched_off_while_asleep_wakes_to_register_without_q(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"lifetime": 3600, "binding": "UQ"})
    net.clock.run_for(MTW + 1)
    assert [e for e in client.events if isinstance(e, ev.QueueModeSleep)]
    account = client.engine.provisioning().accounts()[0]
    client.engine.update_account(replace(account, binding="U"), net.clock.now)
    client.poll()
    net.clock.run_for(1)
    last = registers(net, server.addr)[-1]
    assert last.uri_query == ["ep=dev-1", "lt=3600", "lwm2m=1.1", "b=U"]
    assert server.core.registrations["dev-1"].queue_mode is False
    assert client.engine.registered() and not client.errors()


def test_a_1_0_registration_switches_queue_mode_with_an_update(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    net.trace = []
    client = make_client(account={"lifetime": 3600}, registration=AS_1_0)
    net.clock.run_for(1)
    assert write_binding(net, server, "UQ").code == Code.CHANGED
    assert len(registers(net, server.addr)) == 1
    [update] = updates(net, server.addr)
    assert update.uri_query == ["b=UQ"]
    assert server.core.registrations["dev-1"].queue_mode is True
    assert client.named("updated")


def test_an_error_event_quotes_the_servers_diagnostic_payload(net: SimNetwork) -> None:
    diagnostic = b"Invalid Binding mode: Q is not supported since LWM2M 1.1"

    def refuse(msg: Message) -> Message:
        reply = Message(code=Code.BAD_REQUEST, payload=diagnostic + b" " + b"x" * 200)
        reply.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.TEXT))
        return reply

    scripted = ScriptedServer(net, ("10.0.0.8", 5683), refuse)
    client = client_factory(net, scripted.uri)()
    net.clock.run_for(1)
    error = client.errors(ev.ErrorCode.COAP_ERROR)[0]
    assert error.coap_code == "4.00" and error.request is ev.Request.REGISTER
    assert error.detail is not None and error.detail.startswith(diagnostic.decode())
    assert len(error.detail) == 100, "the first 100 bytes, not the whole payload"


@pytest.mark.parametrize("value", ["UX", "X", "", "uq", "UQQ", "Q"])
def test_a_write_of_an_unknown_binding_is_4_00_and_changes_nothing(
    net: SimNetwork, server: SimServer, make_client: MakeClient, value: str
) -> None:
    """Issue 12 item 5: bad input stays bad input (the client speaks U, with or without Q)."""
    net.trace = []
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(1)
    result = write_binding(net, server, value)
    assert result.code == Code.BAD_REQUEST
    assert b"binding" in result.payload, "the diagnostic says what was refused"
    net.clock.run_for(5)
    assert len(registers(net, server.addr)) == 1 and not updates(net, server.addr)
    read = operate(net, server, read_request("/1/0/7", ContentFormat.TEXT))
    assert read.payload == b"U"
    [account] = client.engine.provisioning().accounts()
    assert account.binding == "U"
    assert client.engine.registered() and not client.errors()


@pytest.mark.parametrize("replace_instance", [True, False], ids=["write", "partial-update"])
def test_a_write_of_lifetime_and_a_bad_binding_is_refused_whole(
    net: SimNetwork, server: SimServer, make_client: MakeClient, replace_instance: bool
) -> None:
    """The lifetime in the same Write must not be applied either (all-or-nothing)."""
    net.trace = []
    client = make_client(account={"lifetime": 3600})
    net.clock.run_for(1)
    values = {"/1/0/1": 100, "/1/0/7": "UX"}
    request = write_request("/1/0", values, ContentFormat.TLV, replace=replace_instance)
    result = operate(net, server, request)
    net.clock.run_for(5)
    assert result.code == Code.BAD_REQUEST
    [account] = client.engine.provisioning().accounts()
    assert (account.lifetime, account.binding) == (3600, "U")
    assert not updates(net, server.addr), "nothing changed, nothing to announce"
    assert server.core.registrations["dev-1"].lifetime == 3600
