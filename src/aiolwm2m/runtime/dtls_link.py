"""DTLS links: the client handshake on the link's own connected UDP socket.

A ``coaps://`` link is a :class:`~aiolwm2m.dtls.aio.DtlsDatagramConnection`
(OpenSSL behind our own session wrapper) whose records carry CoAP both ways,
so the server's requests (Read, Observe, Execute…) arrive over the same
session as the client's. This module turns the account's Security settings
into DTLS credentials and the DTLS layer's classified failures into the
engine's :class:`~aiolwm2m.client.engine.LinkFailure`, so recovery policy stays
in the engine:

- silent server → ``HANDSHAKE_TIMEOUT`` at the timing's ultimate timeout;
- ICMP unreachable → ``NETWORK``;
- wrong PSK, unknown identity, rejected / expired / untrusted / misnamed
  certificate, or any fatal alert → ``SECURE`` (the detail says which);
- a surprise inside the binding → ``INTERNAL``.

Session resumption: :class:`DtlsSessions` keeps the last session per server
address and credentials; the next link to that server (after an outage,
offline mode or a queue-mode wake) offers it, and :attr:`DtlsLink.resumed`
says whether the server took it (abbreviated handshake) or ran a full one.
The TLS stack is imported only when a secure link is opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiolwm2m import dtls
from aiolwm2m.accounts import SecurityMode, ServerAccount
from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.dtls.credentials import CertificateCredentials, DtlsCredentials, PskCredentials
from aiolwm2m.dtls.errors import DtlsConnectionError, DtlsError
from aiolwm2m.dtls.policy import HandshakeFailure, HandshakeTiming
from aiolwm2m.errors import ConfigError

if TYPE_CHECKING:
    from aiolwm2m.dtls.aio import DtlsDatagramConnection
    from aiolwm2m.dtls.session import SavedSession

__all__ = [
    "DtlsLink",
    "DtlsSessions",
    "HandshakeProgress",
    "account_credentials",
    "link_failure",
    "open_dtls_link",
]

#: ``progress(attempt, next_timeout, resuming)``: a handshake flight went out
#: (attempt 1: the handshake started; ``resuming``: a kept session is offered).
HandshakeProgress = Callable[[int, float, bool], None]

log = logging.getLogger("aiolwm2m.client")

_LINK_FAILURES = {
    HandshakeFailure.TIMEOUT: LinkFailure.HANDSHAKE_TIMEOUT,
    HandshakeFailure.NETWORK: LinkFailure.NETWORK,
    HandshakeFailure.INTERNAL: LinkFailure.INTERNAL,
}


def link_failure(kind: HandshakeFailure) -> LinkFailure:
    """The engine's view of a handshake failure; every credential or alert kind is SECURE."""
    return _LINK_FAILURES.get(kind, LinkFailure.SECURE)


def account_credentials(account: ServerAccount) -> DtlsCredentials:
    """DTLS credentials for a secure account; files are read now, at every link opening.

    Reading at each opening (not at start) lets an operator rotate certificate
    files without restarting the client. Raises :class:`ConfigError` when the
    account is NoSec or its material is unusable.
    """
    mode = account.effective_security_mode
    if mode is SecurityMode.PSK:
        if account.psk_identity is None or account.psk_key is None:
            raise ConfigError("security mode psk needs psk_identity and psk_key")
        return PskCredentials(account.psk_identity, account.psk_key)
    if mode is SecurityMode.CERTIFICATE:
        if account.certificate is None or account.private_key is None:
            raise ConfigError("security mode certificate needs certificate and private_key")
        return CertificateCredentials.from_files(
            account.certificate,
            account.private_key,
            server_certificate=account.server_certificate,
            ca_certificates=account.ca_certificates,
            certificate_usage=account.certificate_usage,
        )
    raise ConfigError(f"security mode {mode.name.lower()} has no DTLS credentials")


class DtlsSessions:
    """The sessions a client may resume, one per (server address, credentials).

    Lives as long as the client (memory only: the session holds the master
    secret). A failed handshake with rejected credentials forgets the entry;
    a refused resumption is simply replaced by the full handshake's session.
    """

    def __init__(self) -> None:
        self._saved: dict[tuple[Any, DtlsCredentials], SavedSession] = {}

    def get(self, remote: Any, credentials: DtlsCredentials) -> SavedSession | None:
        return self._saved.get((remote, credentials))

    def put(self, remote: Any, credentials: DtlsCredentials, saved: SavedSession | None) -> None:
        if saved is None:
            self._saved.pop((remote, credentials), None)
        else:
            self._saved[(remote, credentials)] = saved

    def __len__(self) -> int:
        return len(self._saved)


async def open_dtls_link(
    remote: tuple[str, int],
    host: str,
    credentials: DtlsCredentials,
    timing: HandshakeTiming,
    on_datagram: Callable[[bytes], None],
    on_error: Callable[[Exception], None],
    local_host: str | None = None,
    sessions: DtlsSessions | None = None,
    progress: HandshakeProgress | None = None,
) -> DtlsLink:
    """Handshake (resuming a kept session when there is one) and wrap it as a link.

    ``progress`` hears of every flight sent (see :data:`HandshakeProgress`).

    Raises :class:`~aiolwm2m.dtls.errors.DtlsUnavailableError` without a TLS
    stack and :class:`~aiolwm2m.dtls.errors.DtlsHandshakeError` on failure.
    """
    dtls.require()
    from aiolwm2m.dtls.aio import dtls_client_connect  # the TLS stack: loaded on first use

    saved = sessions.get(remote, credentials) if sessions is not None else None
    on_flight = None
    if progress is not None:
        report = progress  # narrowed for the closure

        def on_flight(attempt: int, next_timeout: float) -> None:
            report(attempt, next_timeout, saved is not None)

    try:
        conn = await dtls_client_connect(
            remote[0],
            remote[1],
            credentials,
            timing,
            local_addr=(local_host, 0) if local_host else None,
            server_hostname=host,
            resume=saved,
            on_flight=on_flight,
        )
    except dtls.DtlsHandshakeError as exc:
        if sessions is not None and exc.failure.credentials_rejected:
            sessions.put(remote, credentials, None)
        raise
    if sessions is not None:
        sessions.put(remote, credentials, conn.session.saved_session)
    link = DtlsLink(conn, on_datagram, on_error)
    log.debug(
        "DTLS link to %s:%d %s",
        remote[0],
        remote[1],
        "resumed" if link.resumed else "fully established",
    )
    return link


class DtlsLink:
    """An established DTLS session used as the engine's link to one server.

    ``resumed`` is True when the handshake was abbreviated (the server took
    the kept session), for the engine to treat the registration as still
    valid (send an Update, not a Register).
    """

    secure = True

    def __init__(
        self,
        conn: DtlsDatagramConnection,
        on_datagram: Callable[[bytes], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        self.conn = conn
        self.resumed = conn.session.resumed
        self._on_error = on_error
        conn.on_error = lambda info: on_error(DtlsConnectionError(info))
        conn.set_receiver(on_datagram)

    def send(self, data: bytes) -> None:
        """Encrypt and send; a broken session is reported once, never raised into the engine."""
        if not self.conn.is_open:
            return  # already reported through on_error when it broke
        try:
            self.conn.send(data)
        except DtlsError as exc:
            # Reported on the next loop pass: the engine is in the middle of
            # handing us its actions and must not be re-entered from here.
            log.debug("DTLS send failed: %s", exc)
            asyncio.get_running_loop().call_soon(self._on_error, exc)

    def close(self) -> None:
        self.conn.close()
