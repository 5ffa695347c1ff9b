"""The spec §6 errors the application sees, each with the client's reaction, on the virtual clock.

Errors owned by other features are tested with them: secure connection failed
(DTLS), quota reached / bad request (bootstrap), the three credential errors
(storage), 4.29 (``test_engine_lifecycle.py``), message build failure
(``test_engine_failure_table.py``).
"""

from __future__ import annotations

import pytest
from simkit import MakeClient, ScriptedServer, account

from aiolwm2m.accounts import InvalidParameters, RetrySettings, check_endpoint_name
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import RegistrationConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.message import OPTION_LENGTHS, OptionNumber
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.sim import SimServer

DAY = 86_400.0


def test_registration_timeout_reports_timeout_and_runs_the_retry_procedure(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    ScriptedServer(net, ("10.0.0.5", 5683), lambda msg: None)  # never answers
    client = make_client(
        servers=(account("coap://10.0.0.5:5683"),),
        registration=RegistrationConfig(timeout=30),
    )
    net.clock.run_for(31)
    [err] = client.errors(ev.ErrorCode.TIMEOUT)
    assert err.time == pytest.approx(30), "the registration timeout, not the CoAP one (62 s)"
    assert err.action == "abort_registration"
    assert client.state(1) is ServerState.BACKOFF


def test_default_registration_timeout_is_three_minutes() -> None:
    assert RegistrationConfig().timeout == 180


def test_dns_failure_is_retried_until_the_name_resolves(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(servers=(account("coap://lwm2m.example.net:5683"),))
    net.clock.run_for(3600)
    dns_errors = client.errors(ev.ErrorCode.DNS_RESOLVING_FAILED)
    assert len(dns_errors) >= 8, "each scheduled attempt resolves again and reports"
    assert not client.engine.registered()
    net.dns["lwm2m.example.net"] = server.addr[0]
    net.clock.run_for(3600)
    assert client.engine.registered()


def test_malformed_datagrams_from_the_server_are_reported_and_ignored(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client()
    net.clock.run_for(1)
    # Find the client's socket by what the server saw, then send it garbage.
    reg = server.core.registrations["dev-1"]
    for junk in (b"\x00", b"\xff" * 9, b"\x40\x01"):
        net.send(server.addr, reg.address, junk)
    net.clock.run_for(1)
    assert client.errors(ev.ErrorCode.RESPONSE_PARSE_FAILED)
    assert client.engine.registered(), "never fatal"
    client.trigger_update()
    net.clock.run_for(1)
    assert client.named("updated")


@pytest.mark.parametrize(
    "uri",
    ["http://10.0.0.1:5683", "coap://10.0.0.1:5683/rd", "coaps://10.0.0.1?aid=" + "a" * 65, ""],
)
def test_invalid_server_uri_is_reported_without_retry(
    net: SimNetwork, server: SimServer, make_client: MakeClient, uri: str
) -> None:
    client = make_client(servers=(account(uri),))
    net.clock.run_for(DAY)
    [err] = client.errors()
    assert err.code is ev.ErrorCode.INVALID_PARAMETERS
    assert not client.named("registering") and not client.named("reconnect_scheduled")


def test_endpoint_name_over_64_characters_is_invalid(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    client = make_client(endpoint="e" * 65)
    net.clock.run_for(DAY)
    assert [e.code for e in client.errors()] == [ev.ErrorCode.INVALID_PARAMETERS]
    assert not server.core.registrations


#: 63 and 64 characters of 4-byte UTF-8: ``ep=`` and 252 bytes is the longest Uri-Query.
FITS, TOO_LONG = "\U0001f600" * 63, "\U0001f600" * 64


def test_endpoint_name_must_fit_one_uri_query_option() -> None:
    """RFC 7252 §5.10: a Uri-Query is at most 255 bytes, and ep=<name> is one."""
    assert len(f"ep={FITS}".encode()) == OPTION_LENGTHS[OptionNumber.URI_QUERY][1]
    check_endpoint_name(FITS)
    with pytest.raises(InvalidParameters, match="Uri-Query"):
        check_endpoint_name(TOO_LONG)


def test_endpoint_name_too_long_for_its_uri_query_is_invalid_not_an_internal_error(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """Refused at start, like a name over 64 characters: the Register could never be
    encoded (before, it was sent with a 259-byte Uri-Query)."""
    client = make_client(endpoint=TOO_LONG)
    net.clock.run_for(DAY)
    assert [e.code for e in client.errors()] == [ev.ErrorCode.INVALID_PARAMETERS]
    assert not server.core.registrations


def test_an_endpoint_name_filling_the_uri_query_registers(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    make_client(endpoint=FITS)
    net.clock.run_for(1)
    assert FITS in server.core.registrations


def test_network_error_while_registered_ends_in_the_schedule_then_resumes(
    net: SimNetwork, server: SimServer, make_client: MakeClient
) -> None:
    """Spec §10: the registration has not expired: the new link resumes it with an Update."""
    client = make_client(account={"retry": RetrySettings(bootstrap_on_registration_failure=False)})
    net.clock.run_for(1)
    server.stop()
    client.trigger_update()
    net.clock.run_for(1)
    assert client.errors(ev.ErrorCode.NETWORK_ERROR)
    [scheduled] = client.named("reconnect_scheduled")
    server.start()
    net.clock.run_for(scheduled.delay + 1)  # type: ignore[attr-defined]
    assert client.engine.registered()
    assert len(client.named("registered")) == 1
    assert client.named("updated")[-1].time > scheduled.time
