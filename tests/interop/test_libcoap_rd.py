"""Our client registering with libcoap's resource directory ``coap-rd-notls`` (libcoap3-bin).

coap-rd is a CoRE Resource Directory, not an LwM2M server, but LwM2M's Register
is RD registration, so it checks our Register against an implementation we did
not write: it answers 2.01 with a two-segment Location-Path (``rd``, an id of
its own making) and serves the registered links at that location.

What libcoap 4.3.1's coap-rd does not do, and what our client must survive:
* Registration Update (POST to the location) is answered 4.05: the client
  falls back to a fresh Register, as the failure table says for an Update
  answered with an error code.
* A DELETE of the location (our De-register) crashes coap-rd ("double free
  detected"); the client still sends exactly one De-register there and closes.

Every message is seen on the wire through a relay between client and coap-rd.
Over DTLS-PSK (``coap-rd-openssl -k``) the client registers through its real
``coaps://`` link; a wrong key ends in ``secure_connection_failed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls import HandshakeTiming
from aiolwm2m.runtime.aio import Client
from interop.peers import PeerProcess, Relay, free_udp_port, libcoap_tool, run_tool

PARAMS = TransmissionParameters(ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=2)


@asynccontextmanager
async def rd_and_client(tmp_path: Path) -> AsyncIterator[tuple[int, Relay, Client, PeerProcess]]:
    binary = libcoap_tool("coap-rd-notls")
    port = free_udp_port()
    rd = PeerProcess([binary, "-A", "127.0.0.1", "-p", str(port), "-v", "7"], tmp_path / "rd.log")
    await rd.start(wait_port=port)
    relay = Relay(upstream=("127.0.0.1", port))
    await relay.start()
    config = ClientConfig(
        "interop-rd", servers=(ServerAccount(uri=relay.uri, lifetime=600),), coap=PARAMS
    )
    client = Client(config)
    try:
        yield port, relay, client, rd
    finally:
        await client.stop()
        relay.close()
        await rd.stop()


def requests_to_rd(relay: Relay) -> list[Message]:
    return [m for _, m in relay.messages("c2s") if 1 <= m.code <= 31]


async def test_register_accepted_by_coap_rd_and_links_stored(tmp_path: Path) -> None:
    client_tool = libcoap_tool("coap-client-notls")
    async with rd_and_client(tmp_path) as (port, relay, client, rd):
        await client.start()
        registered = await client.wait_for(ev.Registered, 10)
        assert isinstance(registered, ev.Registered)
        register = requests_to_rd(relay)[0]
        answer = next(m for _, m in relay.messages("s2c") if m.mid == register.mid)
        # What libcoap stored at the location it gave us is what we registered.
        location = "/".join(answer.location_path)
        rc, links, err = await run_tool(
            [client_tool, "-m", "get", f"coap://127.0.0.1:{port}/{location}"]
        )
    assert register.code == Code.POST and register.uri_path == ["rd"]
    assert "ep=interop-rd" in register.uri_query and "lt=600" in register.uri_query
    assert answer.code == Code.CREATED, rd.log()
    assert answer.location_path[0] == "rd" and len(answer.location_path) == 2
    assert registered.location == "/" + location
    assert rc == 0, err
    assert links.strip() == register.payload
    # The 1.1 root link announcing the content formats is stored like any other link.
    assert register.payload.startswith(b'</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</1>')


async def test_update_goes_to_location_path_then_falls_back_to_register(tmp_path: Path) -> None:
    async with rd_and_client(tmp_path) as (_port, relay, client, rd):
        await client.start()
        await client.wait_for(ev.Registered, 10)
        first_location = next(m for _, m in relay.messages("s2c")).location_path
        again = asyncio.ensure_future(client.wait_for(ev.Registered, 10))
        client.trigger_update()
        await relay.wait_for(lambda: len(requests_to_rd(relay)) >= 3, 10, "update + register")
        await again
        update, register_again = requests_to_rd(relay)[1:3]
        update_answer = next(m for _, m in relay.messages("s2c") if m.mid == update.mid)
    # The Update went to exactly the location coap-rd gave us...
    assert update.code == Code.POST and update.uri_path == first_location
    # ...which coap-rd 4.3.1 does not implement, so the client registers afresh.
    assert update_answer.code == Code.METHOD_NOT_ALLOWED, rd.log()
    assert register_again.code == Code.POST and register_again.uri_path == ["rd"]


async def test_deregister_sent_to_location_path(tmp_path: Path) -> None:
    async with rd_and_client(tmp_path) as (_port, relay, client, _rd):
        await client.start()
        await client.wait_for(ev.Registered, 10)
        location = next(m for _, m in relay.messages("s2c")).location_path
        await client.close(timeout=5)
        deletes = [m for m in requests_to_rd(relay) if m.code == Code.DELETE]
    # coap-rd 4.3.1 crashes on this DELETE, so it may be retransmitted but never
    # re-addressed; the client closes within the bound either way.
    assert deletes and all(m.uri_path == location for m in deletes)
    assert len({m.mid for m in deletes}) == 1


# -- over DTLS-PSK: coap-rd-openssl ------------------------------------------------------

PSK_KEY = b"interop-rd-key"


async def dtls_rd_client(tmp_path: Path, key: bytes) -> tuple[PeerProcess, Client]:
    binary = libcoap_tool("coap-rd-openssl")
    port = free_udp_port(pair=True)  # libcoap listens for DTLS on port + 1
    rd = PeerProcess(
        [binary, "-A", "127.0.0.1", "-p", str(port), "-k", PSK_KEY.decode(), "-v", "7"],
        tmp_path / "rd.log",
    )
    await rd.start(wait_port=port + 1)
    account = ServerAccount(
        uri=f"coaps://127.0.0.1:{port + 1}", lifetime=600, psk_identity=b"ep", psk_key=key
    )
    config = ClientConfig(
        "interop-rd-dtls", servers=(account,), coap=PARAMS, dtls=HandshakeTiming(0.2, 0.8)
    )
    return rd, Client(config)


async def test_register_over_dtls_psk_with_coap_rd_openssl(tmp_path: Path) -> None:
    rd, client = await dtls_rd_client(tmp_path, PSK_KEY)
    try:
        await client.start()
        registered = await client.wait_for(ev.Registered, 10)
    finally:
        await client.stop()
        await rd.stop()
    assert isinstance(registered, ev.Registered)
    assert registered.location.startswith("/rd/"), rd.log()


async def test_wrong_psk_with_coap_rd_openssl_is_secure_connection_failed(
    tmp_path: Path,
) -> None:
    rd, client = await dtls_rd_client(tmp_path, b"not-the-key")
    try:
        await client.start()
        error = await client.wait_for(
            ev.Error, 10, lambda e: e.code is ev.ErrorCode.SECURE_CONNECTION_FAILED
        )
        state = client.state(1)
    finally:
        await client.stop()
        await rd.stop()
    # OpenSSL drops the Finished it cannot decrypt without an alert, so mbedtls can
    # only see a handshake timeout (see test_libcoap_server.py).
    assert isinstance(error, ev.Error) and "timeout" in (error.detail or "")
    assert state.value == "failed"
