"""Firmware settings and their ``[firmware]`` TOML table (a public contract, docs/firmware.md).

Every number has the default the docs state; unknown keys and wrong types are
a :class:`~aiolwm2m.errors.ConfigError` naming the key, like the rest of the
client configuration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiolwm2m.errors import ConfigError

from .download import DownloadPolicy, ResourceChangedPolicy, RetrySchedule

__all__ = ["SUPPORTED_SCHEMES", "FirmwareSettings", "parse_firmware_table"]

#: URI schemes a Package URI / asset URI may use, in /5/0/8 protocol order.
SUPPORTED_SCHEMES: tuple[str, ...] = ("coap", "coaps", "http", "https")


@dataclass(frozen=True)
class FirmwareSettings:
    """How the client downloads, checks and installs firmware.

    ``directory`` and ``install_command`` configure the default package
    handler of the runtime (``runtime/firmware_store.py``); an application
    passing its own handler ignores them. DTLS credentials for ``coaps://``
    downloads are their own (a download server is not the LwM2M server).
    """

    directory: str | None = None
    install_command: tuple[str, ...] = ()
    install_timeout: float = 600.0
    max_package_bytes: int | None = None  # storage quota of the default handler (result 2)
    download: DownloadPolicy = field(default_factory=DownloadPolicy)
    protocols: tuple[str, ...] = SUPPORTED_SCHEMES
    block_size: int = 1024  # CoAP Block2 size asked for (16..1024)
    http_timeout: float = 30.0  # HTTP(S): connect, and the longest silence while reading
    http_chunk: int = 64 * 1024  # HTTP(S): most bytes handed to storage at once
    push_timeout: float = 247.0  # EXCHANGE_LIFETIME: a silent push fails after this
    queue_mode_pause: bool = True  # queue-mode sleep pauses a download until the next wake
    manifest_keys: tuple[str, ...] = ()  # PEM public keys (P-256) trusted for manifests
    vendor_id: uuid.UUID | None = None
    class_id: uuid.UUID | None = None
    psk_identity: bytes | None = None
    psk_key: bytes | None = None
    certificate: str | None = None
    private_key: str | None = None
    ca_certificates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.protocols) - set(SUPPORTED_SCHEMES)
        if unknown:
            raise ConfigError(f"unsupported firmware protocols: {sorted(unknown)}")
        if not 16 <= self.block_size <= 1024 or self.block_size & (self.block_size - 1):
            raise ConfigError("block_size must be a power of two in 16..1024")
        if self.push_timeout <= 0 or self.install_timeout <= 0 or self.http_timeout <= 0:
            raise ConfigError("push_timeout, install_timeout and http_timeout must be > 0")
        if self.max_package_bytes is not None and self.max_package_bytes < 1:
            raise ConfigError("max_package_bytes must be >= 1")
        if self.http_chunk < 1:
            raise ConfigError("http_chunk must be >= 1")


#: ``[firmware]`` keys of the retry schedule → :class:`RetrySchedule` fields.
_SCHEDULE_KEYS = {
    "retry_first_delay": "first_delay",
    "retry_multiplier": "multiplier",
    "retry_max_delay": "max_delay",
    "retry_jitter": "jitter",
    "retry_count": "max_retries",
    "download_deadline": "deadline",
}
_NUMBERS = {"install_timeout", "push_timeout", "http_timeout", *_SCHEDULE_KEYS}
_INTEGERS = {
    "block_size",
    "http_chunk",
    "checkpoint_bytes",
    "max_restarts",
    "retry_count",
    "max_package_bytes",
}
_STRINGS = {"directory", "certificate", "private_key"}
_LISTS = {"install_command", "manifest_keys", "ca_certificates", "protocols"}
_OTHER = {
    "queue_mode_pause",
    "on_resource_changed",
    "vendor_id",
    "class_id",
    "psk_identity",
    "psk_key",
}


def _number(key: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"[firmware] {key} must be a number")
    if integer and not isinstance(value, int):
        raise ConfigError(f"[firmware] {key} must be a whole number")
    return value


def _text_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and key == "install_command":
        return tuple(value.split())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[firmware] {key} must be a list of strings")
    return tuple(value)


def _uuid(key: str, value: Any) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ConfigError(f"[firmware] {key} must be a UUID string")


def parse_firmware_table(data: dict[str, Any], hex_or_text: Any) -> FirmwareSettings:
    """``[firmware]`` → :class:`FirmwareSettings`; ``hex_or_text`` decodes PSK values.

    The PSK decoder is passed in so PSK values read the same as in ``[[server]]``.
    """
    known = _NUMBERS | _INTEGERS | _STRINGS | _LISTS | _OTHER
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in [firmware]")
    kwargs: dict[str, Any] = {}
    schedule: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SCHEDULE_KEYS:
            schedule[_SCHEDULE_KEYS[key]] = _number(key, value, key in _INTEGERS)
        elif key in ("checkpoint_bytes", "max_restarts"):
            policy[key] = _number(key, value, True)
        elif key in _NUMBERS or key in _INTEGERS:
            kwargs[key] = _number(key, value, key in _INTEGERS)
        elif key in _STRINGS:
            if not isinstance(value, str):
                raise ConfigError(f"[firmware] {key} must be a string")
            kwargs[key] = value
        elif key in _LISTS:
            kwargs[key] = _text_list(key, value)
        elif key == "queue_mode_pause":
            if not isinstance(value, bool):
                raise ConfigError("[firmware] queue_mode_pause must be true or false")
            kwargs[key] = value
        elif key == "on_resource_changed":
            try:
                policy[key] = ResourceChangedPolicy(value)
            except ValueError:
                raise ConfigError(
                    "[firmware] on_resource_changed must be 'restart' or 'fail'"
                ) from None
        elif key in ("vendor_id", "class_id"):
            kwargs[key] = _uuid(key, value)
        else:  # psk_identity, psk_key
            kwargs[key] = hex_or_text(value, key, "firmware")
    try:
        policy["schedule"] = RetrySchedule(**schedule)
        kwargs["download"] = DownloadPolicy(**policy)
        return FirmwareSettings(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[firmware]: {exc}") from exc
