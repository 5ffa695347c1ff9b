"""libcoap's ``coap-client`` as an LwM2M client of our testbed server, plain and over DTLS-PSK.

The other direction of the client tests: libcoap builds the Register, Update and
De-register requests, and, over ``coaps://``, its OpenSSL DTLS client handshakes
with our mbedtls-based DTLS server endpoint. A wrong key must leave the server
without a registration (the handshake fails before any CoAP is read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiolwm2m.dtls.credentials import ServerSecurity
from aiolwm2m.testbed.server import TestbedServer
from interop.peers import libcoap_tool, run_tool

IDENTITY = "libcoap-device"
KEY = "libcoap-interop-key"
LINKS = "</1/0>,</3/0>"


@pytest.fixture(params=["notls", "openssl"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[TestbedServer]:
    security = (
        ServerSecurity(psk_store={IDENTITY.encode(): KEY.encode()})
        if request.param == "openssl"
        else None
    )
    srv = TestbedServer(security=security)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def coap_client(server: TestbedServer, method: str, path: str, *args: str) -> str:
    """Run coap-client (the DTLS build when the server is secure); returns its -v 7 log."""
    secure = server.security is not None
    tool = libcoap_tool("coap-client-openssl" if secure else "coap-client-notls")
    creds = ["-u", IDENTITY, "-k", KEY] if secure else []
    scheme = "coaps" if secure else "coap"
    rc, out, err = await run_tool(
        [tool, "-v", "7", *creds, "-m", method, *args, f"{scheme}://127.0.0.1:{server.port}{path}"]
    )
    assert rc == 0, err
    return (out + err).decode(errors="replace")


async def test_libcoap_registers_updates_and_deregisters(server: TestbedServer) -> None:
    ep = "libcoap-ep"
    log = await coap_client(server, "post", f"/rd?ep={ep}&lt=60&lwm2m=1.1&b=U", "-e", LINKS)
    reg = server.core.registrations[ep]
    assert (reg.lifetime, reg.binding, reg.lwm2m_version) == (60, "U", "1.1")
    assert reg.links == LINKS
    assert "2.01" in log and "Location-Path" in log
    log = await coap_client(server, "post", f"{reg.location}?lt=120")
    assert "2.04" in log
    assert server.core.registrations[ep].lifetime == 120
    log = await coap_client(server, "delete", reg.location)
    assert "2.02" in log
    assert ep not in server.core.registrations


async def test_libcoap_with_wrong_psk_gets_an_alert_and_never_registers() -> None:
    tool = libcoap_tool("coap-client-openssl")
    async with TestbedServer(
        security=ServerSecurity(psk_store={IDENTITY.encode(): KEY.encode()})
    ) as srv:
        url = f"coaps://127.0.0.1:{srv.port}/rd?ep=intruder"
        creds = ["-u", IDENTITY, "-k", "wrong-key"]
        _, out, err = await run_tool(
            [tool, "-v", "6", "-B", "3", *creds, "-m", "post", "-e", LINKS, url]
        )
        assert srv.core.registrations == {}
    # Unlike OpenSSL's servers, ours tells the peer: a fatal bad_record_mac alert.
    assert "alert read:fatal:bad record mac" in (out + err).decode(errors="replace")
