"""Typed error hierarchy shared by every layer.

Decoders raise exactly one subclass of :class:`DecodeError` on malformed input so
callers can treat "the peer sent garbage" uniformly (log, count, ignore) without
catching broad exception types that would also hide our own bugs.
"""

from __future__ import annotations


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
