"""Fetchers for firmware pulls: CoAP(S) Block2 over the sans-IO message layer, HTTP(S) Range.

:func:`fetch_coap` fetches ``uri`` from ``offset`` block by block (RFC 7959),
handing each good chunk to ``on_chunk`` before asking for the next one (so
storage speed bounds memory, not the image size). The first response's ETag
is the representation's validator; every later block, and every block of a
resumed fetch, must carry the same one, else the fetch ends with
RESOURCE_CHANGED. A resume asks for the block that holds ``offset`` and skips
the bytes before it, so any offset works whatever block size the server picks.

:func:`fetch_http` (``http://``, ``https://``) uses aiohttp, an optional
dependency (``pip install aiolwm2m[http]``): without it the client does not
advertise protocols 2 and 3 in /5/0/8 (:func:`available_schemes`) and an
``http://`` Package URI is refused like any unsupported scheme (4.00, result
9); so is ``coaps://`` without the DTLS stack. The validator is the strong
ETag (else Last-Modified); a resume sends
``Range: bytes=offset-`` with ``If-Range: validator``, so a changed file comes
back as a whole (200), which is RESOURCE_CHANGED, like a 412 or another ETag.

Every way it can end is a :class:`FetchError` whose ``kind`` is a
:class:`~aiolwm2m.client.firmware.FailureKind` the sans-IO download machine
decides on (retry, restart, give up). ``coaps://`` opens its own DTLS session
with the credentials of the ``[firmware]`` settings.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from aiolwm2m import dtls
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.client.firmware import FailureKind, FirmwareSettings
from aiolwm2m.coap.blockwise import block_size, szx_for
from aiolwm2m.coap.layer import ExchangeResult, MessageLayer, Outcome
from aiolwm2m.coap.message import Block, CoapDecodeError, Code, Message, MessageType, OptionNumber
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.dtls.credentials import CertificateCredentials, DtlsCredentials, PskCredentials
from aiolwm2m.dtls.errors import DtlsHandshakeError, DtlsUnavailableError
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.errors import Lwm2mError
from aiolwm2m.runtime.dtls_link import link_failure
from aiolwm2m.runtime.links import LinkError, open_udp, resolve

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DTLS_AVAILABLE",
    "HTTP_AVAILABLE",
    "ChunkSink",
    "FetchError",
    "available_schemes",
    "fetch",
    "fetch_coap",
    "fetch_http",
]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses it
        return False


#: aiohttp (the ``http`` extra) is installed: http:// and https:// can be fetched.
HTTP_AVAILABLE = _installed("aiohttp")
#: The DTLS stack (pyOpenSSL) is installed: coaps:// can be fetched.
DTLS_AVAILABLE = _installed("OpenSSL")

#: ``await on_chunk(offset, data, validator, total)``: store ``data`` found at ``offset``.
ChunkSink = Callable[[int, bytes, str, int | None], Awaitable[None]]

_LINK_KINDS = {
    LinkFailure.DNS: FailureKind.DNS,
    LinkFailure.NETWORK: FailureKind.NETWORK,
    LinkFailure.HANDSHAKE_TIMEOUT: FailureKind.SESSION_LOST,
    LinkFailure.SECURE: FailureKind.SECURE,
    LinkFailure.INTERNAL: FailureKind.SESSION_LOST,
}


class FetchError(Lwm2mError):
    """A fetch ended before the end of the representation."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _credentials(settings: FirmwareSettings) -> DtlsCredentials:
    if settings.psk_identity is not None and settings.psk_key is not None:
        return PskCredentials(settings.psk_identity, settings.psk_key)
    if settings.certificate is not None and settings.private_key is not None:
        return CertificateCredentials.from_files(
            settings.certificate,
            settings.private_key,
            ca_certificates=settings.ca_certificates,
        )
    raise FetchError(FailureKind.SECURE, "coaps:// download without [firmware] credentials")


def _response_kind(code: int) -> FailureKind:
    if code == Code.NOT_FOUND:
        return FailureKind.NOT_FOUND
    if code >= Code.INTERNAL_SERVER_ERROR:
        return FailureKind.SERVER_ERROR
    if code == Code.PRECONDITION_FAILED:
        return FailureKind.RESOURCE_CHANGED
    return FailureKind.REFUSED


class _Channel:
    """One connected datagram socket (UDP or DTLS) feeding a message layer."""

    def __init__(self, params: TransmissionParameters, rng: random.Random) -> None:
        self.loop = asyncio.get_running_loop()
        self.layer = MessageLayer(params, rng)
        self.wake = asyncio.Event()
        self.error: FetchError | None = None
        self._send: Callable[[bytes], None] = lambda data: None
        self._close: Callable[[], None] = lambda: None

    async def open(self, uri: str, settings: FirmwareSettings, timing: HandshakeTiming) -> None:
        parts = urlsplit(uri)
        secure = parts.scheme == "coaps"
        host = parts.hostname or ""
        port = parts.port or (5684 if secure else 5683)
        try:
            remote = await resolve(host, port)
            if not secure:
                link = await open_udp(remote, self._datagram, self._socket_error)
                self._send = link.send
                self._close = link.close
                return
            try:
                dtls.require()
            except DtlsUnavailableError as exc:
                raise FetchError(FailureKind.UNSUPPORTED_PROTOCOL, str(exc)) from exc
            from aiolwm2m.dtls.aio import dtls_client_connect  # the TLS stack, on first use

            conn = await dtls_client_connect(
                remote[0], remote[1], _credentials(settings), timing, server_hostname=host
            )
        except LinkError as exc:
            raise FetchError(_LINK_KINDS[exc.failure], str(exc)) from exc
        except DtlsHandshakeError as exc:
            failure = link_failure(exc.failure)
            raise FetchError(_LINK_KINDS[failure], str(exc.info)) from exc
        conn.set_receiver(self._datagram)
        conn.on_error = lambda info: self._lost(FailureKind.SESSION_LOST, f"DTLS: {info}")
        self._send = conn.send
        self._close = conn.close

    def close(self) -> None:
        self._close()

    def _datagram(self, data: bytes) -> None:
        self.layer.receive(data, self.loop.time())
        self.wake.set()

    def _socket_error(self, exc: Exception) -> None:
        self.layer.network_error(self.loop.time())
        self.wake.set()

    def _lost(self, kind: FailureKind, detail: str) -> None:
        self.error = FetchError(kind, detail)
        self.wake.set()

    async def exchange(self, request: Message) -> ExchangeResult:
        key = self.layer.send_request(request, self.loop.time())
        while True:
            for data in self.layer.datagrams_to_send():
                try:
                    self._send(data)
                except OSError as exc:
                    raise FetchError(FailureKind.NETWORK, f"send failed: {exc}") from exc
                except Lwm2mError as exc:
                    raise FetchError(FailureKind.SESSION_LOST, str(exc)) from exc
            while (event := self.layer.next_event()) is not None:
                if isinstance(event, ExchangeResult) and event.key == key:
                    return event
            if self.error is not None:
                raise self.error
            deadline = self.layer.next_timer()
            self.wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                self.layer.handle_timer(self.loop.time())


async def fetch_coap(
    uri: str,
    offset: int,
    validator: str | None,
    on_chunk: ChunkSink,
    settings: FirmwareSettings,
    *,
    params: TransmissionParameters | None = None,
    timing: HandshakeTiming | None = None,
    rng: random.Random | None = None,
) -> None:
    """Fetch ``uri`` from ``offset`` to its end; see the module docstring."""
    parts = urlsplit(uri)
    path = [unquote(p) for p in parts.path.split("/") if p]
    query = [unquote(q) for q in parts.query.split("&") if q]
    channel = _Channel(params or TransmissionParameters(), rng or random.Random())
    await channel.open(uri, settings, timing or HandshakeTiming())
    try:
        szx = szx_for(settings.block_size)
        while True:
            size = block_size(szx)
            request = Message(type=MessageType.CON, code=Code.GET)
            for segment in path:
                request.add(OptionNumber.URI_PATH, segment.encode())
            for item in query:
                request.add(OptionNumber.URI_QUERY, item.encode())
            request.add(OptionNumber.BLOCK2, Block(offset // size, False, szx).encode())
            if offset < size:
                request.add(OptionNumber.SIZE2, b"")  # ask for the total size (RFC 7959 §4)
            result = await channel.exchange(request)
            response = _check_outcome(result)
            try:
                block = response.block2
                total = response.get_uint(OptionNumber.SIZE2)
            except CoapDecodeError as exc:
                raise FetchError(FailureKind.PROTOCOL, f"unreadable block option: {exc}") from exc
            etag = (response.get_first(OptionNumber.ETAG) or b"").hex()
            if validator is None:
                validator = etag
            elif etag != validator:
                raise FetchError(
                    FailureKind.RESOURCE_CHANGED, f"ETag {etag or '(none)'} is not {validator}"
                )
            start = block.offset if block is not None else 0
            payload = response.payload
            skip = offset - start
            if skip < 0 or skip > len(payload) or (block is not None and block.size > size):
                raise FetchError(
                    FailureKind.PROTOCOL, f"block at {start} does not hold offset {offset}"
                )
            chunk = payload[skip:]
            if chunk:
                await on_chunk(offset, chunk, validator, total)
                offset += len(chunk)
            if block is None or not block.more:
                return
            if not chunk:
                raise FetchError(FailureKind.PROTOCOL, "empty block with more to come")
            szx = block.szx  # the server may ask for smaller blocks (§2.4)
    finally:
        channel.close()


def _check_outcome(result: ExchangeResult) -> Message:
    if result.outcome is Outcome.TIMEOUT:
        raise FetchError(FailureKind.TIMEOUT, "no answer after the CoAP retransmissions")
    if result.outcome is Outcome.NETWORK_ERROR:
        raise FetchError(FailureKind.NETWORK, "ICMP unreachable from the image server")
    if result.outcome is Outcome.RESET or result.response is None:
        raise FetchError(FailureKind.PROTOCOL, "the image server answered with Reset")
    response = result.response
    if response.code != Code.CONTENT:
        raise FetchError(_response_kind(response.code), f"image server answered {response.code}")
    return response


def available_schemes(protocols: tuple[str, ...]) -> tuple[str, ...]:
    """``protocols`` less those this installation cannot fetch (HTTP without aiohttp,
    CoAPS without pyOpenSSL)."""
    missing = set()
    if not HTTP_AVAILABLE:
        missing |= {"http", "https"}
    if not DTLS_AVAILABLE:
        missing.add("coaps")
    return tuple(p for p in protocols if p not in missing)


async def fetch(
    uri: str,
    offset: int,
    validator: str | None,
    on_chunk: ChunkSink,
    settings: FirmwareSettings,
    *,
    params: TransmissionParameters | None = None,
    timing: HandshakeTiming | None = None,
    rng: random.Random | None = None,
) -> None:
    """Fetch ``uri`` from ``offset`` with the fetcher of its scheme."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("coap", "coaps"):
        await fetch_coap(
            uri, offset, validator, on_chunk, settings, params=params, timing=timing, rng=rng
        )
    elif scheme in ("http", "https") and HTTP_AVAILABLE:
        await fetch_http(uri, offset, validator, on_chunk, settings)
    else:
        raise FetchError(FailureKind.UNSUPPORTED_PROTOCOL, f"{scheme}:// cannot be fetched here")


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _http_status_kind(status: int) -> FailureKind:
    if status in (404, 410):
        return FailureKind.NOT_FOUND
    if status == 412:
        return FailureKind.RESOURCE_CHANGED
    if status >= 500 or status in (408, 429):
        return FailureKind.SERVER_ERROR  # transient: retried after the back-off
    return FailureKind.REFUSED


def _tls_context(settings: FirmwareSettings) -> ssl.SSLContext:
    """Server verification against ``ca_certificates`` (else the system's), client
    certificate from ``certificate``/``private_key`` when given."""
    context = ssl.create_default_context()
    try:
        for ca in settings.ca_certificates:
            context.load_verify_locations(cafile=ca)
        if settings.certificate is not None and settings.private_key is not None:
            context.load_cert_chain(settings.certificate, settings.private_key)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(FailureKind.SECURE, f"https:// credentials unusable: {exc}") from exc
    return context


def _http_validator(response: aiohttp.ClientResponse) -> str:
    """The strong ETag, else Last-Modified (If-Range takes either); '' if neither."""
    etag = response.headers.get("ETag", "")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified", "")


def _http_failure(exc: Exception) -> FetchError:
    import aiohttp

    kind = FailureKind.NETWORK
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        kind = FailureKind.DNS
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        kind = FailureKind.SECURE
    elif isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        kind = FailureKind.TIMEOUT
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = FailureKind.INVALID_URI
    return FetchError(kind, f"{type(exc).__name__}: {exc}")


async def fetch_http(
    uri: str,
    offset: int,
    validator: str | None,
    on_chunk: ChunkSink,
    settings: FirmwareSettings,
) -> None:
    """Fetch ``uri`` from ``offset`` over HTTP(S) with Range/If-Range; see the module docstring."""
    import aiohttp

    headers = {"Accept-Encoding": "identity"}  # byte offsets are of the stored bytes
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.http_timeout, sock_read=settings.http_timeout
    )
    context = _tls_context(settings) if uri.lower().startswith("https:") else None
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
            session.get(uri, headers=headers, ssl=context or True) as response,
        ):
            total = _check_http_response(response, offset, validator)
            found = _http_validator(response)
            async for data in response.content.iter_chunked(settings.http_chunk):
                await on_chunk(offset, data, found, total)
                offset += len(data)
    except FetchError:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _http_failure(exc) from exc
    if total is not None and offset != total:
        raise FetchError(FailureKind.NETWORK, f"body ended at {offset} of {total} bytes")


def _check_http_response(
    response: aiohttp.ClientResponse, offset: int, validator: str | None
) -> int | None:
    """The representation's total size (if known) once the answer fits the request."""
    status = response.status
    found = _http_validator(response)
    if status == 416 and offset > 0:
        raise FetchError(FailureKind.RESOURCE_CHANGED, f"range from {offset} not satisfiable")
    if status not in (200, 206):
        raise FetchError(_http_status_kind(status), f"image server answered HTTP {status}")
    if validator is not None and found != validator:
        raise FetchError(FailureKind.RESOURCE_CHANGED, f"validator {found!r} is not {validator!r}")
    if status == 200:
        if offset > 0:  # the range was ignored, or If-Range said the file changed
            raise FetchError(FailureKind.RESOURCE_CHANGED, "HTTP 200 (whole file) to a resume")
        return response.content_length
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or int(match[1]) != offset:
        shown = response.headers.get("Content-Range")
        raise FetchError(
            FailureKind.PROTOCOL, f"Content-Range {shown!r} does not start at {offset}"
        )
    return None if match[3] == "*" else int(match[3])
