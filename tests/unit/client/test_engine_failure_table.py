"""One virtual-clock test per cell of the spec §3 failure table.

Each test provokes exactly one (request kind, failure) pair against a
:class:`ScriptedServer` and asserts the action the engine took and when.
With ``EXACT_COAP`` a CON gives up exactly 62 s after it was first sent.
Cells that need a bootstrap server or a DTLS link live with those features'
tests (``test_bootstrap*.py``, ``test_sim_dtls.py``); here (B) never holds,
so "client-initiated bootstrap" ends in giving up on the server and the
outer reconnect schedule.
"""

from __future__ import annotations

import pytest
from simkit import (
    CON_GIVES_UP_AFTER,
    RST,
    FakeTree,
    MakeClient,
    ScriptedServer,
    account,
    registered_answer,
)

from aiolwm2m.accounts import RetrySettings
from aiolwm2m.client import events as ev
from aiolwm2m.client.engine import ServerState
from aiolwm2m.client.policy import Action
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.runtime.sim import SimClient, SimNetwork

ADDR = ("10.0.0.5", 5683)
URI = "coap://10.0.0.5:5683"


def kind_of(msg: Message) -> str:
    if msg.code == Code.DELETE:
        return "deregister"
    return "register" if msg.uri_path == ["rd"] else "update"


class Script:
    """Answer each request kind as the test says; 'ok' is a well-behaved server."""

    def __init__(self, **answers: object) -> None:
        self.answers = answers

    def __call__(self, msg: Message) -> Message | str | None:
        kind = kind_of(msg)
        answer = self.answers.get(kind, "ok")
        if answer == "ok":
            if kind == "register":
                return registered_answer()
            return Message(code=Code.DELETED if kind == "deregister" else Code.CHANGED)
        if answer in ("silent", None):
            return None
        if answer == RST:
            return RST
        if isinstance(answer, int):
            return Message(code=answer)
        assert isinstance(answer, Message)
        return answer


def start(make_client: MakeClient, **changes: object) -> SimClient:
    account_changes = dict(changes.pop("account", {}))  # type: ignore[call-overload]
    account_changes.setdefault("retry", RetrySettings(bootstrap_on_registration_failure=False))
    return make_client(servers=(account(URI, **account_changes),), **changes)


def only_error(client: SimClient) -> ev.Error:
    errors = [e for e in client.errors() if e.request is not None]
    assert len(errors) == 1, errors
    return errors[0]


def cell(err: ev.Error) -> tuple[ev.ErrorCode, str | None, str | None]:
    return err.code, err.request, err.action


def gave_up_then_reconnect(client: SimClient, at: float) -> None:
    """(B) does not hold: the server is aborted and the outer loop schedules a retry."""
    [gave_up] = client.named("server_gave_up")
    assert gave_up.time == pytest.approx(at)
    assert client.named("all_connections_failed")
    [sched] = client.named("reconnect_scheduled")
    assert isinstance(sched, ev.ReconnectScheduled) and 2 <= sched.delay <= 10


# ----------------------------------------------------------------------------- Register


def test_register_timeout_nosec_aborts_registration_and_retries_after_the_retry_timer(
    net: SimNetwork, make_client: MakeClient
) -> None:
    srv = ScriptedServer(net, ADDR, Script(register="silent"))
    client = start(make_client)
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    err = only_error(client)
    assert cell(err) == (
        ev.ErrorCode.TIMEOUT,
        "register",
        Action.ABORT_REGISTRATION.value,
    )
    assert err.time == pytest.approx(CON_GIVES_UP_AFTER)
    assert client.state(1) is ServerState.BACKOFF
    [retry] = client.named("retry_scheduled")
    assert isinstance(retry, ev.RetryScheduled) and retry.delay == 60
    net.clock.run_for(60)
    registers = [t for t, m in srv.received if kind_of(m) == "register"]
    # 5 transmissions of the first Register (0, 2, 6, 14, 30 s), then the retry at 62 + 60.
    assert registers == pytest.approx([0, 2, 6, 14, 30, 122], abs=0.02)


def test_register_network_error_aborts_registration_at_once(
    net: SimNetwork, make_client: MakeClient
) -> None:
    client = start(make_client)  # nothing listens on ADDR: ICMP port unreachable
    net.clock.run_for(1)
    err = only_error(client)
    assert cell(err) == (
        ev.ErrorCode.NETWORK_ERROR,
        "register",
        "abort_registration",
    )
    assert err.time < 0.05, "ICMP ends the exchange at once, not after the CoAP timeout"
    assert client.state(1) is ServerState.BACKOFF


@pytest.mark.parametrize("code", [Code.FORBIDDEN, Code.BAD_REQUEST, Code.INTERNAL_SERVER_ERROR])
def test_register_coap_error_aborts_registration(
    net: SimNetwork, make_client: MakeClient, code: int
) -> None:
    ScriptedServer(net, ADDR, Script(register=code))
    client = start(make_client)
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.COAP_ERROR, "abort_registration")
    assert client.state(1) is ServerState.BACKOFF


def test_register_reset_aborts_registration(net: SimNetwork, make_client: MakeClient) -> None:
    ScriptedServer(net, ADDR, Script(register=RST))
    client = start(make_client)
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.RESET, "abort_registration")


def test_register_internal_error_unparseable_location_aborts_registration(
    net: SimNetwork, make_client: MakeClient
) -> None:
    bad = Message(code=Code.CREATED)
    bad.add(8, b"\xff\xfe")  # Location-Path that is not UTF-8
    ScriptedServer(net, ADDR, Script(register=bad))
    client = start(make_client)
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.RESPONSE_PARSE_FAILED, "abort_registration")
    assert not client.engine.registered()


def test_register_created_without_location_aborts_registration(
    net: SimNetwork, make_client: MakeClient
) -> None:
    """Core 1.1.1 §6.2.1: no Location-Path, nowhere to send Update or De-register."""
    ScriptedServer(net, ADDR, Script(register=Message(code=Code.CREATED)))
    client = start(make_client)
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.RESPONSE_PARSE_FAILED, "abort_registration")
    assert "Location-Path" in err.detail
    assert not client.engine.registered()


def test_register_internal_error_object_list_unbuildable_aborts_registration(
    net: SimNetwork, make_client: MakeClient
) -> None:
    srv = ScriptedServer(net, ADDR, Script())
    tree = FakeTree()
    tree.fail_payload = True
    client = start(make_client, objects=tree)
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.MEMORY, "abort_registration")
    assert srv.received == [], "nothing half-built was sent"


# ----------------------------------------------------------------------------- Update


def registered(net: SimNetwork, make_client: MakeClient, **answers: object) -> SimClient:
    script = Script()
    ScriptedServer(net, ADDR, script)
    client = start(make_client, objects=answers.pop("objects", None))
    net.clock.run_for(1)
    assert client.engine.registered()
    script.answers = answers
    return client


def test_update_timeout_nosec_falls_back_to_register(
    net: SimNetwork, make_client: MakeClient
) -> None:
    client = registered(net, make_client, update="silent")
    client.trigger_update()
    sent = net.clock.now
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.TIMEOUT, "update", "fallback_register")
    registering = client.named("registering")
    assert len(registering) == 2
    assert registering[1].time == pytest.approx(sent + CON_GIVES_UP_AFTER)
    assert client.engine.registered()


def test_update_network_error_goes_to_bootstrap_else_gives_up(
    net: SimNetwork, make_client: MakeClient
) -> None:
    client = registered(net, make_client)
    net.unbind(ADDR)
    client.trigger_update()
    now = net.clock.now
    net.clock.run_for(1)
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.NETWORK_ERROR, "update", "bootstrap")
    gave_up_then_reconnect(client, at=now + 2 * net.latency)


@pytest.mark.parametrize("code", [Code.NOT_FOUND, Code.BAD_REQUEST, Code.SERVICE_UNAVAILABLE])
def test_update_coap_error_falls_back_to_register(
    net: SimNetwork, make_client: MakeClient, code: int
) -> None:
    client = registered(net, make_client, update=code)
    client.trigger_update()
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.COAP_ERROR, "fallback_register")
    assert len(client.named("registered")) == 2


def test_update_reset_goes_to_bootstrap_else_gives_up(
    net: SimNetwork, make_client: MakeClient
) -> None:
    client = registered(net, make_client, update=RST)
    client.trigger_update()
    now = net.clock.now
    net.clock.run_for(1)
    err = only_error(client)
    assert (err.code, err.action) == (ev.ErrorCode.RESET, "bootstrap")
    gave_up_then_reconnect(client, at=now + 2 * net.latency)


def test_update_internal_error_goes_to_bootstrap_else_gives_up(
    net: SimNetwork, make_client: MakeClient
) -> None:
    tree = FakeTree()
    client = registered(net, make_client, objects=tree)
    tree.fail_payload = True
    client.objects_changed()  # the Update must carry the (unbuildable) object list
    now = net.clock.now
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.MEMORY, "update", "bootstrap")
    gave_up_then_reconnect(client, at=now)


# ----------------------------------------------------------------------------- De-register


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("silent", ev.ErrorCode.TIMEOUT),
        (RST, ev.ErrorCode.RESET),
        (Code.NOT_FOUND, ev.ErrorCode.COAP_ERROR),
        ("unbound", ev.ErrorCode.NETWORK_ERROR),
    ],
)
def test_deregister_failures_are_ignored(
    net: SimNetwork, make_client: MakeClient, answer: object, code: ev.ErrorCode
) -> None:
    client = registered(net, make_client, deregister=answer)
    if answer == "unbound":
        net.unbind(ADDR)
    client.close()
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    err = only_error(client)
    assert cell(err) == (code, "deregister", "ignore")
    [dereg] = client.named("deregistered")
    assert isinstance(dereg, ev.Deregistered) and not dereg.acknowledged
    assert client.state(1) is ServerState.IDLE
    net.clock.run_for(3600)
    assert len(client.named("registering")) == 1, "no retry after a failed De-register"
    assert not client.named("reconnect_scheduled")


# ----------------------------------------------------------------------------- Notify (CON)


def test_notify_timeout_nosec_is_ignored_and_the_observation_kept(
    net: SimNetwork, make_client: MakeClient
) -> None:
    tree = FakeTree()
    client = registered(net, make_client, objects=tree)  # ScriptedServer never ACKs responses
    tree.notify(net.clock.now)
    client.poll()
    net.clock.run_for(CON_GIVES_UP_AFTER + 1)
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.TIMEOUT, "notify", "ignore")
    assert tree.cancelled == []
    assert client.engine.registered()


def test_notify_network_error_goes_to_bootstrap_else_gives_up(
    net: SimNetwork, make_client: MakeClient
) -> None:
    tree = FakeTree()
    client = registered(net, make_client, objects=tree)
    net.unbind(ADDR)
    tree.notify(net.clock.now)
    client.poll()
    now = net.clock.now
    net.clock.run_for(1)
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.NETWORK_ERROR, "notify", "bootstrap")
    gave_up_then_reconnect(client, at=now + 2 * net.latency)


def test_notify_reset_cancels_that_observation(net: SimNetwork, make_client: MakeClient) -> None:
    tree = FakeTree()
    client = registered(net, make_client, objects=tree)
    srv_addr = ADDR

    def reset_notifications(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bool:
        if dst == srv_addr and data[1] == Code.CONTENT:  # a notification reaches the server
            mid = data[2:4]
            net.send(srv_addr, src, bytes([0x70, 0x00]) + mid)  # RST, same MID
            return False
        return True

    net.filters.append(reset_notifications)
    tree.notify(net.clock.now, token=b"tok7")
    client.poll()
    net.clock.run_for(1)
    err = only_error(client)
    assert cell(err) == (ev.ErrorCode.RESET, "notify", "cancel_observation")
    assert tree.cancelled == [(1, b"tok7", "cancel_observation")]
    [cancelled] = client.named("observation_cancelled")
    assert isinstance(cancelled, ev.ObservationCancelled) and cancelled.path == "/3303/0/5700"
    assert client.engine.registered(), "only the observation ends"


@pytest.mark.parametrize("storing", [False, True])
def test_notify_internal_error_cancels_the_observation_only_if_storing_is_off(
    net: SimNetwork, make_client: MakeClient, storing: bool
) -> None:
    tree = FakeTree()
    script = Script()
    ScriptedServer(net, ADDR, script)
    client = start(make_client, objects=tree, account={"notification_storing": storing})
    net.clock.run_for(1)
    tree.notify(net.clock.now, token=b"123456789")  # a 9-byte token cannot be encoded
    client.poll()
    err = only_error(client)
    assert (err.code, err.request) == (ev.ErrorCode.MEMORY, "notify")
    assert err.action == "cancel_observation_unless_storing"
    assert tree.cancelled == ([] if storing else [(1, b"123456789", err.action)])
    assert client.engine.registered()


def test_notify_coap_error_cell_is_not_applicable() -> None:
    from aiolwm2m.client.policy import DEFAULT_TABLE, Failure, RequestKind

    # A notification is a response: the server cannot answer it with a CoAP error.
    assert DEFAULT_TABLE[(RequestKind.NOTIFY, Failure.COAP_ERROR)] is Action.NOT_APPLICABLE
