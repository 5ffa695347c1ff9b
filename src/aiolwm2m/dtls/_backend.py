"""The only module that touches python-mbedtls; everything else goes through here.

python-mbedtls has no type stubs in our mypy setup and its behaviour has
sharp edges (measured, see /work/shared/notes/python-stack.md), so they are
handled once, here:

- ``do_handshake()`` advances one state per call and raises ``WantWriteError``
  merely to say "output is pending": keep calling until ``WantReadError``.
- The memory BIO is a byte ring buffer: datagram boundaries are lost, and if
  it fills up mbedtls sees "want read". Drain after every call and re-cut the
  stream at record boundaries.
- ``read()`` concatenates several records; ``readinto()`` returns one record,
  which keeps one CoAP message per record.
- A write larger than a record resets the whole context (python-mbedtls calls
  ``session_reset`` on any error), so sizes are checked before writing.
- Any error resets the context too: a failed buffer must never be driven
  again, or it silently starts a new handshake.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from mbedtls import pk as _pk
from mbedtls import tls as _tls
from mbedtls import x509 as _x509
from mbedtls.exceptions import TLSError as _TLSError

from aiolwm2m.dtls.credentials import (
    CertificateCredentials,
    PskCredentials,
    ServerCertificateCredentials,
)
from aiolwm2m.dtls.errors import DtlsStateError
from aiolwm2m.dtls.policy import HandshakeTiming
from aiolwm2m.dtls.records import split_into_datagrams

#: LwM2M 1.1 (TS Core §E) mandatory suite first, then the recommended one.
PSK_SUITES: Final = ("TLS-PSK-WITH-AES-128-CCM-8", "TLS-PSK-WITH-AES-128-CBC-SHA256")
CERT_SUITES: Final = (
    "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8",
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
)
#: MBEDTLS_SSL_OUT_CONTENT_LEN: the largest plaintext one record can carry.
MAX_RECORD_PLAINTEXT: Final = 16384
#: Largest datagram handed to mbedtls: one maximal DTLS record (RFC 6347 §4.1:
#: 2^14 plaintext + 2048 expansion + header). Bigger ones cannot be valid, and
#: past 32 KiB python-mbedtls' input ring buffer raises BufferError.
MAX_INCOMING_DATAGRAM: Final = 2**14 + 2048 + 13
#: Datagram size used when re-cutting mbedtls' output stream.
DEFAULT_MAX_DATAGRAM: Final = 1400
#: Safety net against a do_handshake() that never stops returning success.
_MAX_STEPS: Final = 256

TLSError = _TLSError
WantReadError = _tls.WantReadError
WantWriteError = _tls.WantWriteError
HelloVerifyRequest = _tls.HelloVerifyRequest
Buffer = Any  # mbedtls.tls.TLSWrappedBuffer (untyped)


class HandshakeProgress:
    WANT_READ: Final = "want_read"
    DONE: Final = "done"
    HELLO_VERIFY: Final = "hello_verify"


def error_code(exc: BaseException) -> int | None:
    err = getattr(exc, "err", None)
    return abs(err) if isinstance(err, int) else None


def error_message(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None)
    return msg if isinstance(msg, str) else str(exc)


def _timing_kwargs(timing: HandshakeTiming) -> dict[str, Any]:
    return {
        "handshake_timeout_min": timing.initial_ms / 1000,
        "handshake_timeout_max": timing.max_ms / 1000,
    }


def _chain(cert_der: bytes, key_der: bytes) -> tuple[tuple[Any, ...], Any]:
    return ((_x509.CRT.from_DER(cert_der),), _pk.ECC.from_DER(key_der))


def _common() -> dict[str, Any]:
    return {
        "lowest_supported_version": _tls.DTLSVersion.DTLSv1_2,
        "highest_supported_version": _tls.DTLSVersion.DTLSv1_2,
        "anti_replay": True,
    }


def client_context(
    credentials: PskCredentials | CertificateCredentials, timing: HandshakeTiming
) -> Any:
    if isinstance(credentials, PskCredentials):
        conf = _tls.DTLSConfiguration(
            pre_shared_key=(credentials.identity_str, credentials.key),
            ciphers=PSK_SUITES,
            validate_certificates=False,
            **_common(),
            **_timing_kwargs(timing),
        )
    else:
        # validate_certificates=False: we verify the server certificate
        # ourselves (verify.py) to tell expired / untrusted / wrong name apart.
        conf = _tls.DTLSConfiguration(
            certificate_chain=_chain(credentials.certificate_der, credentials.private_key_der),
            ciphers=CERT_SUITES,
            validate_certificates=False,
            **_common(),
            **_timing_kwargs(timing),
        )
    return _tls.ClientContext(conf)


def sni_name(hostname: str | None) -> str | None:
    """The name to send as SNI: RFC 6066 forbids IP literals there."""
    if not hostname:
        return None
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return hostname
    return None


def client_buffer(context: Any, hostname: str | None) -> Buffer:
    return context.wrap_buffers(sni_name(hostname))


class PskLookup(Mapping[str, bytes]):
    """Adapts our PSK store to mbedtls' ``Mapping[str, bytes]`` and notes who asked.

    mbedtls calls ``store[identity]`` synchronously inside ``do_handshake()``;
    the server endpoint sets :attr:`on_lookup` around each call so the identity
    a peer used is recorded without a separate API (python-mbedtls has none).
    Any exception here is turned by python-mbedtls into unknown_psk_identity.
    """

    def __init__(
        self, store: Mapping[bytes, bytes] | Callable[[bytes], bytes | None] | None
    ) -> None:
        self._store = store
        self.on_lookup: Callable[[bytes], None] | None = None

    def __getitem__(self, identity: str) -> bytes:
        ident = identity.encode("utf-8")
        if self.on_lookup is not None:
            self.on_lookup(ident)
        key: bytes | None
        if self._store is None:
            key = None
        elif callable(self._store):
            key = self._store(ident)
        else:
            key = self._store.get(ident)
        if not key:
            raise KeyError(identity)
        return key

    def __iter__(self) -> Iterator[str]:
        # mbedtls only ever looks identities up; a callable store cannot list.
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return self._store is not None


def server_context(
    psk_lookup: PskLookup | None,
    certificate: ServerCertificateCredentials | None,
    timing: HandshakeTiming,
) -> Any:
    ciphers: list[str] = []
    kwargs: dict[str, Any] = {}
    if psk_lookup is not None:
        ciphers.extend(PSK_SUITES)
        kwargs["pre_shared_key_store"] = psk_lookup
    validate = False
    if certificate is not None:
        ciphers.extend(CERT_SUITES)
        kwargs["certificate_chain"] = _chain(
            certificate.certificate_der, certificate.private_key_der
        )
        if certificate.client_ca_certificates_der:
            validate = True
            kwargs["trust_store"] = _tls.TrustStore(
                [_x509.CRT.from_DER(d) for d in certificate.client_ca_certificates_der]
            )
    conf = _tls.DTLSConfiguration(
        ciphers=tuple(ciphers),
        validate_certificates=validate,
        **kwargs,
        **_common(),
        **_timing_kwargs(timing),
    )
    return _tls.ServerContext(conf)


def feed(buf: Buffer, data: bytes) -> bool:
    """Hand one received datagram to mbedtls; False (and nothing done) if oversized."""
    if len(data) > MAX_INCOMING_DATAGRAM:
        return False
    buf.receive_from_network(data)
    return True


def drain(buf: Buffer) -> bytes:
    """Everything mbedtls queued for the network, as one byte stream."""
    out = bytearray()
    while True:
        chunk = buf.peek_outgoing(65536)
        if not chunk:
            return bytes(out)
        buf.consume_outgoing(len(chunk))
        out += chunk


def drive_handshake(buf: Buffer, out: bytearray) -> str:
    """Advance the handshake as far as the data received allows.

    Returns a :class:`HandshakeProgress` value; raises TLSError on failure
    (with the buffer already reset by python-mbedtls: discard it). Output is
    appended to ``out`` even when an exception is raised, because a fatal alert
    mbedtls queued must still reach the peer.
    """
    try:
        for _ in range(_MAX_STEPS):
            try:
                buf.do_handshake()
            except WantReadError:
                return HandshakeProgress.WANT_READ
            except WantWriteError:
                out += drain(buf)
                continue
            except HelloVerifyRequest:
                return HandshakeProgress.HELLO_VERIFY
            out += drain(buf)
            if buf._handshake_state is _tls.HandshakeStep.HANDSHAKE_OVER:
                return HandshakeProgress.DONE
        raise DtlsStateError("mbedtls handshake did not settle")  # pragma: no cover
    finally:
        out += drain(buf)


def read_records(buf: Buffer) -> tuple[list[bytes], BaseException | None]:
    """Decrypted application records now available (one bytes per record).

    An error after some records still returns those records, with the error
    (a TLSError; the buffer is then reset and must be discarded).
    """
    out: list[bytes] = []
    scratch = bytearray(MAX_RECORD_PLAINTEXT + 1024)
    while True:
        try:
            n = buf.readinto(scratch, len(scratch))
        except (WantReadError, WantWriteError):
            return out, None
        except TLSError as exc:
            return out, exc
        out.append(bytes(scratch[:n]))


def write_record(buf: Buffer, data: bytes) -> None:
    if len(data) > MAX_RECORD_PLAINTEXT:
        raise DtlsStateError(
            f"{len(data)} bytes do not fit one DTLS record (max {MAX_RECORD_PLAINTEXT})"
        )
    if not data:
        raise DtlsStateError("empty application data cannot be sent as a DTLS record")
    buf.write(data)


def shutdown(buf: Buffer) -> None:
    """Queue close_notify; errors mean the connection is already gone."""
    with contextlib.suppress(WantReadError, WantWriteError, TLSError):
        buf.shutdown()


def peer_certificate(buf: Buffer) -> bytes | None:
    der = buf.getpeercert(True)
    return der if isinstance(der, bytes) else None


def cipher_suite(buf: Buffer) -> str | None:
    name = buf.cipher()
    return name if isinstance(name, str) else None


def save(buf: Buffer) -> bytes:
    """mbedtls_ssl_context_save; afterwards ``buf`` is reset and unusable."""
    state = buf.__getstate__()
    blob = state["connection"]
    if not isinstance(blob, bytes):  # pragma: no cover
        raise DtlsStateError("mbedtls returned no session state")
    return blob


def restore(context: Any, blob: bytes, hostname: str | None) -> Buffer:
    # __new__ then __setstate__ is exactly what unpickling does; going through
    # pickle itself would let stored bytes run code.
    buf: Any = _tls.TLSWrappedBuffer.__new__(_tls.TLSWrappedBuffer)
    buf.__setstate__(
        {"connection": blob, "context": context, "server_hostname": sni_name(hostname)}
    )
    return buf


def split(stream: bytes, max_datagram: int) -> list[bytes]:
    return split_into_datagrams(stream, max_datagram) if stream else []
