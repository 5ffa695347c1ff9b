"""Content formats: one ``encode(records, base)`` / ``decode(payload, base, types)``
pair per format, plus :func:`encode` / :func:`decode` dispatching on the CoAP
Content-Format number so the engine needs no per-format branches.

``base`` is always the request path: TLV ids are relative to it, text/opaque
address it exactly, and the self-describing formats check that every decoded
path lies below it. Link-format (40) is not a value format and lives in
:mod:`aiolwm2m.lwm2m.linkformat`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from ..model import TypeLookup
from ..path import Path
from ..values import Record
from . import cbor, lwm2m_cbor, oma_json, opaque, senml_cbor, senml_json, text, tlv
from .errors import (
    CborError,
    ContentFormatError,
    FormatEncodeError,
    LinkFormatError,
    Lwm2mCborError,
    OmaJsonError,
    OpaqueError,
    SenmlCborError,
    SenmlJsonError,
    TextError,
    TlvError,
)

__all__ = [
    "VALUE_FORMATS",
    "CborError",
    "ContentFormat",
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
    "UnsupportedFormatError",
    "decode",
    "encode",
]


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers LwM2M uses (IANA CoAP registry).

    The ``LEGACY_*`` numbers are the pre-registration values some LwM2M 1.0
    servers still send; they decode like their registered counterparts.
    """

    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    LEGACY_TEXT = 1541
    LEGACY_TLV = 1542
    LEGACY_JSON = 1543
    LEGACY_OPAQUE = 1544
    TLV = 11542
    OMA_JSON = 11543
    LWM2M_CBOR = 11544


class UnsupportedFormatError(ContentFormatError):
    """The Content-Format is unknown or not a value format (answer 4.15)."""


_Encoder = Callable[[Sequence[Record], Path], bytes]
_Decoder = Callable[[bytes, Path, TypeLookup | None], list[Record]]

_CODECS: dict[int, tuple[_Encoder, _Decoder]] = {
    ContentFormat.TEXT: (text.encode, text.decode),
    ContentFormat.LEGACY_TEXT: (text.encode, text.decode),
    ContentFormat.OPAQUE: (opaque.encode, opaque.decode),
    ContentFormat.LEGACY_OPAQUE: (opaque.encode, opaque.decode),
    ContentFormat.CBOR: (cbor.encode, cbor.decode),
    ContentFormat.TLV: (tlv.encode, tlv.decode),
    ContentFormat.LEGACY_TLV: (tlv.encode, tlv.decode),
    ContentFormat.SENML_JSON: (senml_json.encode, senml_json.decode),
    ContentFormat.SENML_CBOR: (senml_cbor.encode, senml_cbor.decode),
    ContentFormat.OMA_JSON: (oma_json.encode, oma_json.decode),
    ContentFormat.LEGACY_JSON: (oma_json.encode, oma_json.decode),
    ContentFormat.LWM2M_CBOR: (lwm2m_cbor.encode, lwm2m_cbor.decode),
}

#: Formats that carry resource values (everything except link-format).
VALUE_FORMATS: frozenset[ContentFormat] = frozenset(ContentFormat(cf) for cf in _CODECS)


#: The types a Content-Format number may have: IntEnum members hash and compare as
#: their numbers, so a plain int finds them, but so would ``False`` or ``0.0``.
_NUMBERS = (int, ContentFormat)


def _unsupported(content_format: object) -> UnsupportedFormatError:
    return UnsupportedFormatError(f"content format {content_format} carries no values")


def encode(content_format: int, records: Sequence[Record], base: Path) -> bytes:
    """Encode ``records`` (all below ``base``) in ``content_format``.

    Raises :class:`FormatEncodeError` when the format cannot represent them
    (several values in text/plain, a non-bytes value as opaque, ...) and
    :class:`UnsupportedFormatError` for unknown numbers.
    """
    # One dict lookup, not ContentFormat(...): that would cost more than some encodings.
    codec = _CODECS.get(content_format) if type(content_format) in _NUMBERS else None
    if codec is None:
        raise _unsupported(content_format)
    return codec[0](records, base)


def decode(
    content_format: int, payload: bytes, base: Path, types: TypeLookup | None = None
) -> list[Record]:
    """Decode ``payload`` sent for request path ``base``.

    Raises only :class:`ContentFormatError` subclasses (one per format).
    """
    codec = _CODECS.get(content_format) if type(content_format) in _NUMBERS else None
    if codec is None:
        raise _unsupported(content_format)
    return codec[1](payload, base, types)
