"""The client over DTLS on 127.0.0.1: PSK and certificates end to end, failures classified.

Every test runs the production client (``runtime.aio.Client``) against the
testbed server in its DTLS mode (``security=``), on real UDP sockets. A spy
relay between them records every datagram so tests can assert on the bytes
that actually left the client (no plaintext CoAP, handshake retransmissions).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from aiolwm2m.accounts import (
    InvalidParameters,
    RetrySettings,
    SecurityMode,
    ServerAccount,
    parse_server_uri,
)
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig, load_config
from aiolwm2m.client.engine import LinkFailure, ServerState
from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.certs import (
    TestPki,
    generate_device_certificate,
    generate_server_certificate,
    write_test_pki,
)
from aiolwm2m.dtls.credentials import (
    PskCredentials,
    ServerCertificateCredentials,
    ServerSecurity,
)
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.dtls.records import ContentType, is_client_hello, iter_records, looks_like_dtls
from aiolwm2m.dtls.session import DtlsClientSession
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.links import LinkError, open_link
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.server import TestbedServer

EP = "dev-1"
KEY = bytes(range(16))
#: Short CoAP timing: a CON gives up 0.1 + 0.2 = 0.3 s after it was sent.
FAST_COAP = TransmissionParameters(ack_timeout=0.1, ack_random_factor=1.0, max_retransmit=1)
NO_BOOTSTRAP = RetrySettings(bootstrap_on_registration_failure=False, communication_retry_count=1)


class Spy:
    """UDP relay client ⇄ server that records every datagram with its arrival time."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.uri = ""
        self.wire: list[tuple[float, str, bytes]] = []
        self.front: asyncio.DatagramTransport | None = None
        self.backs: dict[Any, asyncio.DatagramTransport] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        spy = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                spy.wire.append((time.monotonic(), "c2s", data))
                back = spy.backs.get(addr)
                if back is None:
                    spy.tasks.append(loop.create_task(spy._open_back(addr, data)))
                else:
                    back.sendto(data)

        self.front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        port = int(self.front.get_extra_info("sockname")[1])
        self.uri = f"coaps://127.0.0.1:{port}"
        return port

    async def _open_back(self, client: Any, first: bytes) -> None:
        # One upstream socket per client socket, so the server sees distinct peers.
        spy = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                spy.wire.append((time.monotonic(), "s2c", data))
                assert spy.front is not None
                spy.front.sendto(data, client)

        back, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Back, remote_addr=self.target
        )
        self.backs[client] = back
        back.sendto(first)

    def client_datagrams(self) -> list[bytes]:
        return [d for _, direction, d in self.wire if direction == "c2s"]

    def client_hellos(self) -> list[float]:
        return [t for t, direction, d in self.wire if direction == "c2s" and is_client_hello(d)]

    def close(self) -> None:
        for t in [self.front, *self.backs.values()]:
            if t is not None:
                t.close()


def assert_no_plaintext(datagrams: list[bytes], *, app_data: bool) -> None:
    """Every datagram is DTLS and no CoAP (Register query, link-format) shows in clear.

    The PSK identity legitimately travels in clear (ClientKeyExchange), so the
    endpoint name alone proves nothing; the Register query options would be
    CoAP (markers long enough that ciphertext cannot hold them by chance).
    """
    assert datagrams, "the client sent nothing"
    for data in datagrams:
        assert looks_like_dtls(data), f"non-DTLS datagram on the wire: {data[:16].hex()}"
        assert b"ep=" + EP.encode() not in data and b"lwm2m=1.1" not in data
    kinds = {r.content_type for d in datagrams for r in iter_records(d)}
    assert (ContentType.APPLICATION_DATA in kinds) is app_data


def psk_account(uri: str, key: bytes = KEY, **changes: Any) -> ServerAccount:
    return ServerAccount(
        uri=uri,
        lifetime=changes.pop("lifetime", 300),
        psk_identity=EP.encode(),
        psk_key=key,
        retry=changes.pop("retry", NO_BOOTSTRAP),
        **changes,
    )


def config(account: ServerAccount, **changes: Any) -> ClientConfig:
    return ClientConfig(
        endpoint=EP,
        servers=(account,),
        coap=changes.pop("coap", FAST_COAP),
        dtls=changes.pop("dtls", HandshakeTiming(0.1, 0.4)),
        **changes,
    )


@pytest.fixture
async def psk_server() -> Any:
    server = TestbedServer(security=ServerSecurity(psk_store={EP.encode(): KEY}))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def spy_on(psk_server: TestbedServer) -> Any:
    spy = Spy(("127.0.0.1", psk_server.port))
    await spy.start()
    yield spy
    spy.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), [EP])


def cert_account(pki: TestPki, uri: str, **changes: Any) -> ServerAccount:
    return ServerAccount(
        uri=uri,
        lifetime=300,
        certificate=str(pki.device_cert_path(EP)),
        private_key=str(pki.device_key_path(EP)),
        retry=NO_BOOTSTRAP,
        **changes,
    )


def cert_security(pki: TestPki, server: Any = None) -> ServerSecurity:
    server = server or pki.server
    return ServerSecurity(
        certificate=ServerCertificateCredentials(
            server.certificate_der, server.private_key_der, (pki.ca.certificate_der,)
        )
    )


async def test_psk_registration_and_server_read_observe_over_the_session(
    psk_server: TestbedServer, spy_on: Spy
) -> None:
    client = Client(config(psk_account(spy_on.uri)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 5)
        assert psk_server.core.registrations[EP].endpoint == EP
        assert psk_server.dtls is not None
        (peer,) = psk_server.dtls.endpoint.established_peers()
        info = psk_server.dtls.endpoint.peer_info(peer)
        assert info is not None and info.psk_identity == EP.encode()
        read = Message(
            type=MessageType.CON, code=Code.GET, options=make_options(path=["3", "0", "0"])
        )
        answer = await psk_server.request(EP, read, timeout=5)
        assert answer.result.response is not None
        assert answer.result.response.code == Code.CONTENT
        assert answer.result.response.payload == b"aiolwm2m"
        # Observe, then a notification the client sends on its own (pmax) over the session.
        observation = await psk_server.observe(EP, "/3/0/0", pmin=0, pmax=1, timeout=5)
        assert observation.active and observation.initial is not None
        note = await observation.next(5)
        assert note.code == Code.CONTENT and note.observe is not None
        assert note.value("/3/0/0") == "aiolwm2m"
        await observation.cancel(timeout=5)
    finally:
        await client.close()
    assert_no_plaintext(spy_on.client_datagrams(), app_data=True)


@pytest.mark.parametrize("usage", [3, 2, 1, 0])
async def test_certificate_registration(pki: TestPki, usage: int) -> None:
    server = TestbedServer(security=cert_security(pki))
    await server.start()
    extra: dict[str, Any] = {"certificate_usage": usage}
    if usage in (3, 2, 1):
        extra["server_certificate"] = str(pki.server_cert_path)
    if usage in (1, 0):
        extra["ca_certificates"] = (str(pki.ca_pem_path),)
    client = Client(config(cert_account(pki, server.uri, **extra)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 5)
        assert EP in server.core.registrations
        assert server.dtls is not None
        (peer,) = server.dtls.endpoint.established_peers()
        info = server.dtls.endpoint.peer_info(peer)
        assert info is not None and info.certificate_der == pki.devices[EP].certificate_der
    finally:
        await client.close()
        await server.stop()


async def secure_failure(client: Client) -> ev.Error:
    await client.start()
    try:
        return await client.wait_for(
            ev.Error, 5, lambda e: e.code is ev.ErrorCode.SECURE_CONNECTION_FAILED
        )
    finally:
        await client.stop()


async def test_wrong_psk_is_secure_connection_failed_and_no_plaintext(
    psk_server: TestbedServer, spy_on: Spy
) -> None:
    client = Client(config(psk_account(spy_on.uri, key=bytes(16))))
    error = await secure_failure(client)
    assert error.request == "connect"
    assert error.detail is not None and error.detail.startswith("bad_psk")
    assert client.state(1) is ServerState.FAILED  # no bootstrap account: give up (§5)
    # Nothing but handshake records and alerts ever left the client.
    assert_no_plaintext(spy_on.client_datagrams(), app_data=False)
    assert EP not in psk_server.core.registrations


async def test_expired_client_certificate_is_secure_connection_failed(
    pki: TestPki, tmp_path: Path
) -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    device = generate_device_certificate(pki.ca, EP, not_before=past, days=30)
    (tmp_path / "old.pem").write_bytes(device.certificate_pem)
    (tmp_path / "old.key.pem").write_bytes(device.private_key_pem)
    server = TestbedServer(security=cert_security(pki))
    await server.start()
    account = ServerAccount(
        uri=server.uri,
        certificate=str(tmp_path / "old.pem"),
        private_key=str(tmp_path / "old.key.pem"),
        server_certificate=str(pki.server_cert_path),
        retry=NO_BOOTSTRAP,
    )
    try:
        error = await secure_failure(Client(config(account)))
    finally:
        await server.stop()
    assert error.detail is not None and error.detail.startswith("client_cert_rejected")


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("expired", "server_cert_expired"),
        ("untrusted", "server_cert_untrusted"),
        ("other name", "server_cert_name_mismatch"),
    ],
)
async def test_bad_server_certificate_is_secure_connection_failed(
    pki: TestPki, which: str, expected: str
) -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    if which == "expired":
        bad = generate_server_certificate(pki.ca, not_before=past, days=30)
    elif which == "other name":
        bad = generate_server_certificate(pki.ca, hosts=["lwm2m.example.com"])
    else:
        bad = generate_server_certificate(None)  # self-signed, not the pinned one
    server = TestbedServer(security=cert_security(pki, bad))
    await server.start()
    account = cert_account(
        pki, server.uri, certificate_usage=0, ca_certificates=(str(pki.ca_pem_path),)
    )
    try:
        error = await secure_failure(Client(config(account)))
    finally:
        await server.stop()
    assert error.detail is not None and error.detail.startswith(expected), error.detail
    assert EP not in server.core.registrations


class Silent(asyncio.DatagramProtocol):
    """A server port that receives and never answers."""

    def __init__(self) -> None:
        self.hellos: list[float] = []
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        if is_client_hello(data):
            self.hellos.append(time.monotonic())


async def test_silent_server_handshake_retransmits_then_gives_up() -> None:
    loop = asyncio.get_running_loop()
    silent = Silent()
    transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    timing = HandshakeTiming(0.1, 0.4)  # waits 0.1, 0.2, 0.4: fails 0.7 s after the first
    client = Client(config(psk_account(f"coaps://127.0.0.1:{port}"), dtls=timing))
    progress: list[ev.Event] = []
    client.subscribe(lambda e: progress.append(e) if e.name.startswith("handshake_") else None)
    try:
        error = await secure_failure(client)
    finally:
        transport.close()
    assert error.detail is not None and error.detail.startswith("timeout")
    assert len(silent.hellos) == timing.transmissions == 3
    # Issue 13 item 3: each flight is reported as it goes, before the verdict.
    assert [(e.name, getattr(e, "attempt", 1)) for e in progress] == [
        ("handshake_started", 1),
        ("handshake_retransmitted", 2),
        ("handshake_retransmitted", 3),
    ]
    assert [getattr(e, "next_timeout", None) for e in progress[1:]] == [0.2, 0.4]
    assert all(e.time < error.time for e in progress)
    gaps = [b - a for a, b in zip(silent.hellos, silent.hellos[1:], strict=False)]
    # 1, 2, 4… scaled: each wait doubles (loose bounds: a shared CI machine).
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[1] > 1.5 * gaps[0]
    # §5: no bootstrap account → this server is given up; the outer loop takes over.
    assert client.state(1) is ServerState.FAILED


async def test_closed_port_is_network_error_not_a_handshake_timeout() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    transport.close()
    client = Client(config(psk_account(f"coaps://127.0.0.1:{port}")))
    await client.start()
    try:
        error = await client.wait_for(ev.Error, 5)
    finally:
        await client.stop()
    assert error.code is ev.ErrorCode.NETWORK_ERROR and error.request == "connect"


async def test_register_timeout_right_after_handshake_does_not_loop(
    psk_server: TestbedServer, spy_on: Spy
) -> None:
    """(†): Register lost right after a handshake → NoSec action, not another handshake."""
    psk_server.core.add_rule(FaultRule(Operation.REGISTER, FaultKind.SILENT))
    client = Client(config(psk_account(spy_on.uri)))
    await client.start()
    try:
        error = await client.wait_for(ev.Error, 5, lambda e: e.request == "register")
        await asyncio.sleep(0.3)  # room for a (wrong) second handshake to show up
    finally:
        await client.stop()
    assert error.code is ev.ErrorCode.TIMEOUT
    assert error.action == "abort_registration"
    assert len(spy_on.client_hellos()) == 2  # one handshake: ClientHello + cookie retry


async def test_lost_session_retries_the_handshake_and_resumes(
    psk_server: TestbedServer, spy_on: Spy
) -> None:
    """Spec §10: an Update lost on a session the server had used → a new handshake at once,
    then the Update again over it (never a Register over the dead session first)."""
    client = Client(config(psk_account(spy_on.uri)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 5)
        await psk_server.restart()  # the server forgets every DTLS session
        hellos = len(spy_on.client_hellos())
        spy_on.backs.clear()  # the restarted server sees the client afresh
        client.trigger_update()
        retry = await client.wait_for(ev.Error, 5, lambda e: e.action == "retry_handshake")
        assert retry.request == "update"
        await client.wait_for(ev.Updated, 5)
    finally:
        await client.close()
    assert len(spy_on.client_hellos()) == hellos + 2  # one handshake: ClientHello + cookie


async def start_refused(client: Client) -> ev.Error:
    """Start a client whose only account is refused at start; return that error."""
    seen: list[ev.Event] = []
    client.subscribe(seen.append)
    await client.start()
    await asyncio.sleep(0.05)  # give a (wrong) link the chance to send something
    await client.stop()
    errors = [e for e in seen if isinstance(e, ev.Error)]
    assert [e.code for e in errors] == [ev.ErrorCode.INVALID_PARAMETERS]
    assert client.state(1) is ServerState.FAILED
    return errors[0]


async def test_nosec_account_never_talks_to_coaps(spy_on: Spy) -> None:
    error = await start_refused(Client(config(ServerAccount(uri=spy_on.uri))))
    assert "NoSec" in (error.detail or "")
    assert spy_on.wire == []


async def test_secure_account_never_talks_plain_coap() -> None:
    loop = asyncio.get_running_loop()
    silent = Silent()
    transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        error = await start_refused(Client(config(psk_account(f"coap://127.0.0.1:{port}"))))
    finally:
        transport.close()
    assert "never talks plaintext" in (error.detail or "")
    assert silent.received == 0


def test_config_refuses_mismatched_security_at_load_time() -> None:
    base = {"endpoint": EP}
    with pytest.raises(InvalidParameters, match="never talks plaintext"):
        load_config(
            {**base, "server": [{"uri": "coap://h", "psk_identity": "a", "psk_key": "hex:00"}]}
        )
    with pytest.raises(InvalidParameters, match="NoSec"):
        load_config({**base, "server": [{"uri": "coaps://h"}]})
    with pytest.raises(InvalidParameters, match="raw public key"):
        load_config({**base, "server": [{"uri": "coaps://h", "security_mode": "rpk"}]})
    loaded = load_config(
        {
            **base,
            "server": [{"uri": "coaps://h", "psk_identity": "a", "psk_key": "hex:0011"}],
            "dtls": {"handshake_initial_timeout": 0.5, "handshake_max_timeout": 8},
        }
    )
    assert loaded.servers[0].effective_security_mode is SecurityMode.PSK
    assert loaded.dtls == HandshakeTiming(0.5, 8)
    for bad, match in [
        ({"handshake_initial": 1}, "unknown key"),
        ({"handshake_initial_timeout": "1"}, r"\[dtls\] initial_timeout must be a number"),
        ({"handshake_initial_timeout": 0}, "positive"),
        ({"handshake_initial_timeout": 5, "handshake_max_timeout": 2}, "must not be below"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_config({**base, "dtls": bad})


async def test_expired_certificate_falls_back_to_bootstrap_for_fresh_credentials(
    pki: TestPki, tmp_path: Path
) -> None:
    """§6: secure connection failed → bootstrap → new (PSK) credentials → registered."""
    bs = pytest.importorskip("aiolwm2m.testbed.bootstrap")
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    device = generate_device_certificate(pki.ca, EP, not_before=past, days=30)
    (tmp_path / "old.pem").write_bytes(device.certificate_pem)
    (tmp_path / "old.key.pem").write_bytes(device.private_key_pem)
    fresh = bytes(range(100, 116))
    server = TestbedServer(
        security=ServerSecurity(
            psk_store={EP.encode(): fresh}, certificate=cert_security(pki).certificate
        )
    )
    await server.start()
    bootstrap = bs.BootstrapServer(
        bs.BootstrapConfig(
            default=(bs.ProvisionedServer(server.uri, psk_identity=EP.encode(), psk_key=fresh),)
        )
    )
    await bootstrap.start()
    expired = ServerAccount(
        uri=server.uri,
        certificate=str(tmp_path / "old.pem"),
        private_key=str(tmp_path / "old.key.pem"),
        server_certificate=str(pki.server_cert_path),
    )
    client = Client(config(expired, bootstrap=ServerAccount(uri=bootstrap.uri)))
    seen: list[ev.Event] = []
    client.subscribe(seen.append)
    await client.start()
    try:
        await client.wait_for(ev.Registered, 10)
    finally:
        await client.close()
        await bootstrap.stop()
        await server.stop()
    failed = [e for e in seen if isinstance(e, ev.Error) and e.request == "connect"]
    assert failed[0].code is ev.ErrorCode.SECURE_CONNECTION_FAILED
    assert (failed[0].detail or "").startswith("client_cert_rejected")
    names = [e.name for e in seen]
    order = [names.index(n) for n in ("error", "bootstrap_started", "bootstrapped", "registered")]
    assert order == sorted(order)
    (registered,) = [e for e in server.core.history if e.kind == "registered"]
    assert registered.endpoint == EP


async def test_link_layer_refuses_a_secure_account_on_plain_coap() -> None:
    """Accounts provisioned later (bootstrap) skip the start-time check: the link checks too."""
    loop = asyncio.get_running_loop()
    silent = Silent()
    transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
    uri = f"coap://127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    account = psk_account(uri)
    try:
        with pytest.raises(LinkError, match="never talks plaintext") as caught:
            await open_link(
                parse_server_uri(uri), account, config(account), lambda _: None, lambda _: None
            )
        await asyncio.sleep(0.05)
    finally:
        transport.close()
    assert caught.value.failure is LinkFailure.SECURE
    assert silent.received == 0


@pytest.mark.parametrize("server_restarts", [False, True])
async def test_offline_and_back_resumes_the_session_unless_the_server_lost_it(
    psk_server: TestbedServer, server_restarts: bool
) -> None:
    client = Client(config(psk_account(psk_server.uri)))
    await client.start()
    try:
        await client.wait_for(ev.Registered, 5)
        assert psk_server.dtls is not None
        assert len(client.dtls_sessions) == 1
        client.enter_offline()
        if server_restarts:
            await psk_server.stop()
            await psk_server.start()  # a new endpoint: cache and ticket key are gone
        client.exit_offline()
        # Resumed session or full handshake, the server kept the registration: an
        # Update resumes it (spec §10), and the event says which handshake it was.
        done = await client.wait_for(ev.HandshakeDone, 5)
        assert done.resumed is (not server_restarts)
        await client.wait_for(ev.Updated, 5)
        endpoint = psk_server.dtls.endpoint
        [peer] = endpoint.established_peers()  # the old one said close_notify going offline
        info = endpoint.peer_info(peer)
        assert info is not None and info.resumed is (not server_restarts)
        assert info.psk_identity == EP.encode()  # known on a resumed session too
    finally:
        await client.close()


async def test_client_hello_flood_at_the_secure_testbed_server(psk_server: TestbedServer) -> None:
    """Thousands of cookie-less ClientHellos: answered statelessly, the device is unaffected."""
    client = Client(config(psk_account(psk_server.uri)))
    await client.start()
    loop = asyncio.get_running_loop()
    try:
        await client.wait_for(ev.Registered, 5)
        hello = DtlsClientSession(PskCredentials(b"flooder", KEY))
        hello.start()
        [client_hello] = hello.datagrams_to_send()
        sockets = []
        for _ in range(4):  # a few source ports, 3000 ClientHellos in all
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", psk_server.port)
            )
            sockets.append(transport)
        for i in range(3000):
            sockets[i % 4].sendto(client_hello)
            if i % 20 == 0:
                await asyncio.sleep(0)  # let the server read: we test it, not socket buffers
        client.trigger_update()
        await client.wait_for(ev.Updated, 5)
        assert psk_server.dtls is not None
        endpoint = psk_server.dtls.endpoint
        assert endpoint.internal_errors == 0
        assert len(endpoint.peers()) == 1  # only the device holds state
        assert endpoint.cookies_sent > 300  # it was hit (the kernel drops some of a burst)
        for transport in sockets:
            transport.close()
    finally:
        await client.close()
