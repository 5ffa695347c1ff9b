"""Typed error hierarchy shared by every layer.

Decoders raise exactly one subclass of :class:`DecodeError` on malformed input so
callers can treat "the peer sent garbage" uniformly (log, count, ignore) without
catching broad exception types that would also hide our own bugs.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "InternalError",
    "Lwm2mError",
    "NotAllowedError",
    "StorageError",
]


class Lwm2mError(Exception):
    """Base class of every error aiolwm2m raises on purpose."""


class DecodeError(Lwm2mError, ValueError):
    """Bytes from the outside world could not be decoded."""


class EncodeError(Lwm2mError, ValueError):
    """A value could not be represented in the requested format."""


class ConfigError(Lwm2mError, ValueError):
    """Configuration is invalid (bad URI, out-of-range value, unknown key...)."""


class StorageError(Lwm2mError):
    """Persistent state could not be read or written."""


class NotAllowedError(Lwm2mError):
    """An API call arrived in a state that cannot take it; nothing was changed.

    The client also reports it as an ``error`` event with code ``not_allowed``.
    """


class InternalError(Lwm2mError):
    """A bug in aiolwm2m itself (e.g. a state machine asked for a move it forbids)."""
