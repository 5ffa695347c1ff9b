"""What ``-v``/``-vv`` show, over real sockets: the CoAP message trace, DTLS handshake
steps, and the testbed server's log of handshakes it rejected.
"""

from __future__ import annotations

import logging

import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.message import Code, Message, MessageType, OptionNumber, encode
from aiolwm2m.dtls.credentials import ServerSecurity
from aiolwm2m.runtime import wiretap
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.wiretap import TRACE_LOGGER, describe
from aiolwm2m.testbed.core import ServerEvent
from aiolwm2m.testbed.server import TestbedServer

KEY = bytes(range(16))


def test_describe_shows_type_code_mid_token_path_options_and_payload() -> None:
    msg = Message(type=MessageType.CON, code=Code.POST, mid=7, token=b"\x0a\x0b", payload=b"</3/0>")
    for part in ("rd", "ep=dev", "lt=60"):
        msg.add(OptionNumber.URI_PATH if part == "rd" else OptionNumber.URI_QUERY, part.encode())
    msg.set_uint(OptionNumber.CONTENT_FORMAT, 40)
    assert describe(msg) == (
        "CON POST mid=7 token=0a0b /rd?ep=dev&lt=60 content-format=link-format 6 B '</3/0>'"
    )
    ack = Message(type=MessageType.ACK, code=Code.CREATED, mid=7, token=b"\x0a\x0b")
    ack.add(OptionNumber.LOCATION_PATH, b"rd").add(OptionNumber.LOCATION_PATH, b"1")
    assert describe(ack) == "ACK 2.01 mid=7 token=0a0b location=/rd/1"
    binary = Message(type=MessageType.NON, code=Code.CONTENT, mid=1, payload=bytes(100))
    assert describe(binary).endswith(" 100 B " + "00" * 48 + "…")
    assert encode(binary)  # the message under test is a valid one


async def _register(account: ServerAccount, server: TestbedServer) -> list[ev.Event]:
    client = Client(ClientConfig(endpoint="dev", servers=(account,)), local_host="127.0.0.1")
    seen: list[ev.Event] = []
    client.subscribe(seen.append)
    await client.start()
    try:
        await client.wait_for(ev.Registered, 10)
    finally:
        await client.close(timeout=2)
    return seen


async def test_vv_traces_every_message_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=TRACE_LOGGER)
    async with TestbedServer("127.0.0.1", 0) as server:
        await _register(ServerAccount(uri=server.uri), server)
    lines = [r.getMessage() for r in caplog.records if r.name == TRACE_LOGGER]
    sent = next(line for line in lines if "-> CON POST" in line)
    assert "/rd?ep=dev" in sent and "content-format=link-format" in sent
    assert any("<- ACK 2.01" in line and "location=/rd/" in line for line in lines), lines
    assert any("-> CON DELETE" in line for line in lines), "the De-register is traced too"
    assert any(line == "link 1 opened" for line in lines)
    # The testbed server traces its side too, by peer address.
    assert any(line.startswith("peer 127.0.0.1:") and "<- CON POST" in line for line in lines)


async def test_without_vv_the_trace_decodes_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=TRACE_LOGGER)
    decoded: list[bytes] = []
    monkeypatch.setattr(wiretap, "decode", lambda data: decoded.append(data))
    async with TestbedServer("127.0.0.1", 0) as server:
        await _register(ServerAccount(uri=server.uri), server)
    assert decoded == [], "a datagram was decoded for a trace nobody reads"


async def test_dtls_handshake_steps_and_a_rejected_handshake_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiolwm2m.dtls.handshake")
    security = ServerSecurity(psk_store={b"dev": KEY})
    server = TestbedServer("127.0.0.1", 0, security=security)
    events: list[ServerEvent] = []
    server.on_event = events.append
    await server.start()
    try:
        good = ServerAccount(uri=server.uri, psk_identity=b"dev", psk_key=KEY)
        await _register(good, server)
        steps = [r.getMessage() for r in caplog.records if r.name == "aiolwm2m.dtls.handshake"]
        assert "client: handshake starts" in steps and "client: handshake done" in steps
        assert any("write client hello" in s for s in steps)
        assert any(s.startswith("server, peer 127.0.0.1:") for s in steps)

        bad = ServerAccount(uri=server.uri, psk_identity=b"dev", psk_key=bytes(16))
        client = Client(ClientConfig(endpoint="dev", servers=(bad,)), local_host="127.0.0.1")
        await client.start()
        try:
            await client.wait_for(
                ev.Error, 10, lambda e: e.code is ev.ErrorCode.SECURE_CONNECTION_FAILED
            )
        finally:
            await client.stop()
    finally:
        await server.stop()
    [rejected] = [e for e in events if e.kind == "handshake_rejected"]
    assert "psk_identity=b'dev'" in rejected.detail and "bad_psk" in rejected.detail
