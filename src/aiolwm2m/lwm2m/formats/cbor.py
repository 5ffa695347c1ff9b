"""Plain CBOR (content format 60): one resource (instance) value as one CBOR data item.

LwM2M 1.1.1 offers it for single values next to text/plain, with the value
kinds of LwM2M CBOR (:mod:`.lwm2m_cbor`): integers (Integer, Unsigned),
floats in their shortest exact width, booleans, text strings (String,
Corelnk, Objlnk as ``"3:0"``) and byte strings (Opaque). Time goes out as
integer seconds; on the way in a tag-1 epoch or tag-0 date/time string is
accepted too, the forms Core Table C.2 names. A payload is exactly one item:
trailing bytes are an error, not ignored.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cbor2

from ..model import InvalidValueError, TypeLookup
from ..path import Path
from ..values import Record, apply_types
from .errors import CborError, FormatEncodeError
from .lwm2m_cbor import dumps, leaf_value, wire_value

__all__ = ["decode", "encode"]

_MAX_DEPTH = 2  # a value and at most its tag


def encode(records: Sequence[Record], base: Path) -> bytes:
    """The single value at ``base``, as one CBOR item."""
    if len(records) != 1 or records[0].path != base:
        raise FormatEncodeError(f"CBOR (60) carries exactly one value at {base}")
    return dumps(wire_value(records[0].value), "CBOR")


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """The value for the resource (instance) at ``base``, typed when its type is known."""
    if base.level < 3:
        raise CborError(f"CBOR (60) needs a resource path, got {base}")
    data = bytes(payload)
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream, max_depth=_MAX_DEPTH).decode()
    except Exception as exc:  # cbor2 raises assorted exception types on hostile input
        raise CborError(f"invalid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise CborError(f"{len(data) - stream.tell()} bytes after the CBOR value")
    try:
        return apply_types([Record(base, leaf_value(item, base, CborError))], types)
    except InvalidValueError as exc:
        raise CborError(str(exc)) from None
