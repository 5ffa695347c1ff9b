"""One decode error class per content format, under a common parent.

The engine answers any :class:`ContentFormatError` with 4.00 Bad Request
without caring which format failed; tests and logs can still tell them apart.
"""

from __future__ import annotations

from aiolwm2m.errors import DecodeError, EncodeError

__all__ = [
    "CborError",
    "ContentFormatError",
    "FormatEncodeError",
    "LinkFormatError",
    "Lwm2mCborError",
    "OmaJsonError",
    "OpaqueError",
    "SenmlCborError",
    "SenmlJsonError",
    "TextError",
    "TlvError",
]


class ContentFormatError(DecodeError):
    """A payload could not be decoded in its declared content format."""


class TextError(ContentFormatError):
    """Malformed text/plain value."""


class OpaqueError(ContentFormatError):
    """application/octet-stream used where it is not allowed."""


class TlvError(ContentFormatError):
    """Malformed OMA TLV payload."""


class SenmlJsonError(ContentFormatError):
    """Malformed SenML JSON payload."""


class SenmlCborError(ContentFormatError):
    """Malformed SenML CBOR payload."""


class OmaJsonError(ContentFormatError):
    """Malformed OMA LwM2M JSON (11543) payload."""


class CborError(ContentFormatError):
    """Malformed plain CBOR (60) value."""


class Lwm2mCborError(ContentFormatError):
    """Malformed LwM2M CBOR (11544) payload."""


class LinkFormatError(ContentFormatError):
    """Malformed CoRE link-format (RFC 6690) payload."""


class FormatEncodeError(EncodeError):
    """Records cannot be represented in the requested format at that base path."""
