"""LwM2M server accounts: what a Security /0/x + Server /1/x instance pair holds.

A leaf module (it imports only :mod:`aiolwm2m.errors`) because both the data
model (``lwm2m/objects`` mirrors accounts as Server object instances) and the
client engine use these types; living in ``client/`` they made ``lwm2m``
depend on the engine's package.

Structural problems (out-of-range numbers, wrong binding) raise
:class:`~aiolwm2m.errors.ConfigError` on construction. The spec's *invalid
parameters* (§6) — a malformed server URI, an over-long endpoint name, a
security mode that disagrees with the URI — are checked by the functions
here, which both the configuration loader (refusing before start) and the
engine (an ``invalid_parameters`` event for accounts built in Python or
provisioned by a bootstrap server) call.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiolwm2m.errors import ConfigError

__all__ = [
    "MAX_INSTANCE_ID",
    "MAX_INTEGER",
    "MAX_NAME_LENGTH",
    "InvalidParameters",
    "RetrySettings",
    "SecurityMode",
    "ServerAccount",
    "ServerUri",
    "check_endpoint_name",
    "check_security",
    "parse_server_uri",
    "place_instances",
]

MAX_NAME_LENGTH = 64
#: ``ep=<name>`` travels in one Uri-Query option, 0-255 bytes (RFC 7252 §5.10
#: Table 4, ``coap.message.OPTION_LENGTHS``, which this leaf module cannot
#: import): 64 characters of 4-byte UTF-8 are more.
_MAX_EP_QUERY_BYTES = 255
#: Largest LwM2M Integer (signed 64 bits): the bound of every integer Server resource.
MAX_INTEGER = 2**63 - 1
#: Largest Object Instance ID (Core §7.2: 65535 is reserved).
MAX_INSTANCE_ID = 65534


class InvalidParameters(ConfigError):
    """A server URI, endpoint name or account id the spec calls invalid (§6)."""


class SecurityMode(enum.Enum):
    """Security object /0/x/2 values."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NOSEC = 3


@dataclass(frozen=True)
class ServerUri:
    scheme: str
    host: str
    port: int
    query: str = ""

    @property
    def secure(self) -> bool:
        return self.scheme == "coaps"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}" + (f"?{self.query}" if self.query else "")


def parse_server_uri(uri: str) -> ServerUri:
    """Accept ``coap://host[:port]`` and ``coaps://host[:port][?aid=…]`` only."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidParameters(f"malformed server URI {uri!r}: {exc}") from exc
    if parts.scheme not in ("coap", "coaps"):
        raise InvalidParameters(f"server URI {uri!r} must start with coap:// or coaps://")
    if not parts.hostname:
        raise InvalidParameters(f"server URI {uri!r} has no host")
    if parts.path not in ("", "/"):
        raise InvalidParameters(f"server URI {uri!r} must not have a path")
    for key, _, value in (q.partition("=") for q in parts.query.split("&") if q):
        if key == "aid" and len(value) > MAX_NAME_LENGTH:
            raise InvalidParameters(f"account id longer than {MAX_NAME_LENGTH} characters")
    if port == 0:
        raise InvalidParameters(f"server URI {uri!r}: port 0 is not a server's port")
    default_port = 5684 if parts.scheme == "coaps" else 5683
    return ServerUri(parts.scheme, parts.hostname, port or default_port, parts.query)


def check_security(account: ServerAccount, uri: ServerUri) -> None:
    """Refuse an account whose security mode and URI scheme disagree, or lack credentials.

    A NoSec account must never reach a ``coaps://`` server and a secure account
    must never talk plain ``coap://`` (no silent downgrade either way), so a
    mismatch is an :class:`InvalidParameters` error, never a guess.
    """
    mode = account.effective_security_mode
    if mode is SecurityMode.RPK:
        raise InvalidParameters(
            "security mode 1 (raw public key) is not supported: python-mbedtls has no "
            "RFC 7250 support; use psk or certificate"
        )
    if mode is SecurityMode.NOSEC:
        if uri.secure:
            raise InvalidParameters(
                f"{uri} is coaps:// but the account is NoSec: set psk_identity/psk_key "
                "or certificate/private_key (security_mode psk or certificate)"
            )
        return
    if not uri.secure:
        raise InvalidParameters(
            f"the account uses security mode {mode.name.lower()} but {uri} is plain "
            "coap://: a secure account never talks plaintext, use coaps://"
        )
    if mode is SecurityMode.PSK and (account.psk_identity is None or account.psk_key is None):
        raise InvalidParameters("security mode psk needs psk_identity and psk_key")
    if mode is SecurityMode.CERTIFICATE:
        if account.certificate is None or account.private_key is None:
            raise InvalidParameters("security mode certificate needs certificate and private_key")
        if not 0 <= account.certificate_usage <= 3:
            raise InvalidParameters("certificate_usage must be 0..3 (LwM2M /0/x/15)")


def check_endpoint_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidParameters(f"endpoint name must be 1..{MAX_NAME_LENGTH} characters")
    if any(c in name for c in "&?#/ ") or not name.isprintable():
        raise InvalidParameters(f"endpoint name {name!r} has characters a URI query cannot carry")
    if len(f"ep={name}".encode()) > _MAX_EP_QUERY_BYTES:
        raise InvalidParameters(
            f"endpoint name {name!r} is over {_MAX_EP_QUERY_BYTES - 3} bytes of UTF-8: "
            f"ep=<name> must fit one CoAP Uri-Query option ({_MAX_EP_QUERY_BYTES} bytes)"
        )


@dataclass(frozen=True)
class RetrySettings:
    """Server object resources 16–20 (TS 1.1.1 table 6.2.1.1-1 defaults)."""

    bootstrap_on_registration_failure: bool = True
    communication_retry_count: int = 5
    communication_retry_timer: float = 60.0
    communication_sequence_delay_timer: float = 86_400.0
    communication_sequence_retry_count: int = 1

    def __post_init__(self) -> None:
        if self.communication_retry_count < 1:
            raise ConfigError("communication_retry_count must be >= 1")
        if self.communication_sequence_retry_count < 1:
            raise ConfigError("communication_sequence_retry_count must be >= 1")
        if self.communication_retry_timer < 0 or self.communication_sequence_delay_timer < 0:
            raise ConfigError("communication timers must be >= 0")


@dataclass(frozen=True)
class ServerAccount:
    """One LwM2M Server account (Security /0/x + Server /1/x instances)."""

    uri: str
    short_server_id: int = 1
    lifetime: int = 86_400
    binding: str = "U"
    notification_storing: bool = True
    default_pmin: int = 0
    default_pmax: int = 0
    registration_priority: int | None = None
    initial_registration_delay: float = 0.0
    registration_failure_block: bool = False
    disable_timeout: int = 86_400  # Server /1/x/5: seconds off after a Disable (/1/x/4)
    retry: RetrySettings = field(default_factory=RetrySettings)
    security_mode: SecurityMode | None = None  # None: derived from the URI scheme
    psk_identity: bytes | None = None
    psk_key: bytes | None = None
    certificate: str | None = None  # path to PEM/DER client certificate
    private_key: str | None = None
    server_certificate: str | None = None
    ca_certificates: tuple[str, ...] = ()
    certificate_usage: int = 3
    # Bootstrap-Server accounts only: Client Hold Off Time (/0/x/11), seconds.
    client_hold_off_time: float = 0.0
    # Bootstrap-Server accounts only: Bootstrap-Server Account Timeout (/0/x/12),
    # seconds; the account is purged that long after a successful Bootstrap-Finish
    # that left it in place (0: kept for ever).
    bootstrap_account_timeout: int = 0
    # The Security (/0/x) and Server (/1/x) instance ids a Bootstrap-Server wrote the
    # account under; kept so every later /1/x request and the Register payload use
    # them (None: the lowest free ids, in account order; see place_instances()).
    security_instance: int | None = None
    server_instance: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.short_server_id <= 65534:
            raise ConfigError("short_server_id must be in 1..65534")
        if isinstance(self.lifetime, bool) or not isinstance(self.lifetime, int):
            raise ConfigError("lifetime must be a whole number of seconds")  # it goes in lt=
        if not 1 <= self.lifetime <= MAX_INTEGER:
            raise ConfigError(f"lifetime must be 1..{MAX_INTEGER} s (Server /1/x/1 is an Integer)")
        for name in (
            "default_pmin",
            "default_pmax",
            "registration_priority",
            "disable_timeout",
            "bootstrap_account_timeout",
        ):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_INTEGER:
                raise ConfigError(f"{name} must be 0..{MAX_INTEGER}")
        if self.initial_registration_delay < 0:
            raise ConfigError("initial_registration_delay must be >= 0 s")
        if self.binding not in ("U", "UQ"):
            raise ConfigError("binding must be 'U' or 'UQ' (UDP, optionally queue mode)")
        if self.client_hold_off_time < 0:
            raise ConfigError("client_hold_off_time (Security /0/x/11) must be >= 0 s")
        for name in ("security_instance", "server_instance"):
            iid = getattr(self, name)
            if iid is not None and (
                isinstance(iid, bool) or not isinstance(iid, int) or not 0 <= iid <= MAX_INSTANCE_ID
            ):
                raise ConfigError(f"{name} must be an instance id in 0..{MAX_INSTANCE_ID}")

    @property
    def effective_security_mode(self) -> SecurityMode:
        if self.security_mode is not None:
            return self.security_mode
        if self.psk_identity is not None:
            return SecurityMode.PSK
        if self.certificate is not None:
            return SecurityMode.CERTIFICATE
        return SecurityMode.NOSEC


def place_instances(wanted: Sequence[int | None]) -> list[int]:
    """Instance ids for accounts in order: each given id kept, the others the lowest free.

    One rule for the Security/Server instances a bootstrap starts from, the ones
    stored, and the /1 instances of the data model, so they always agree; with
    no id given (a configuration file) it numbers 0, 1, 2… as before. Two
    accounts given the same id are a :class:`ConfigError`.
    """
    given = [iid for iid in wanted if iid is not None]
    taken = set(given)
    if len(taken) != len(given):
        raise ConfigError(f"two accounts share an instance id: {sorted(given)}")
    free = (iid for iid in itertools.count() if iid not in taken)
    return [iid if iid is not None else next(free) for iid in wanted]
