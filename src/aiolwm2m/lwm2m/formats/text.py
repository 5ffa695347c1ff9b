"""text/plain (content format 0): one resource (instance) value as UTF-8 text.

Per LwM2M 1.1 booleans are ``0``/``1``, Time is decimal Unix seconds, object
links are ``obj:inst``, and floats are plain decimals, ``0.00000000006667``
not ``6.667e-11`` (Core 1.1.1 Appendix C, Table C.2); exponents are still
read, as the table gives no grammar and some implementations write them. Opaque
values are base64 (RFC 4648 §4, padded: the same table's example is
``AQIDBAU=``), read strictly: anything but the canonical encoding of some bytes
is refused, since a lenient decoder would store bytes the server never meant.

Text is not self-describing ("1" could be a string, an integer or a boolean),
so decoding needs the resource type; without one the value stays a ``str``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from datetime import datetime

from ..decimal_text import parse_decimal, plain_decimal
from ..model import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    InvalidValueError,
    ObjLnk,
    ResourceType,
    TypeLookup,
    Value,
    seconds_to_time,
    time_to_seconds,
)
from ..path import Path
from ..values import Record
from .errors import FormatEncodeError, TextError

__all__ = ["decode", "decode_value", "encode", "encode_value"]

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_UNSIGNED = re.compile(r"\+?[0-9]{1,20}")
_INF = math.inf
_NEG_INF = -math.inf


def encode_value(value: Value) -> bytes:
    """The text form of one value; non-finite floats are refused."""
    if isinstance(value, float):  # first: the usual notified value (no bool or int is one)
        # Comparisons, not a math.isfinite call (NaN compares False); ASCII text
        # is its own UTF-8, which str.encode() writes without an argument to parse.
        if not _NEG_INF < value < _INF:
            raise FormatEncodeError(f"text/plain cannot carry {value!r}")
        # repr is plain_decimal's answer, without its call, unless it has an exponent.
        text = repr(value)
        return (text if "e" not in text else plain_decimal(value)).encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, ObjLnk):
        return str(value).encode("ascii")
    if isinstance(value, datetime):
        try:
            return str(time_to_seconds(value)).encode("ascii")
        except InvalidValueError as exc:
            raise FormatEncodeError(str(exc)) from exc
    if isinstance(value, bytes):
        return base64.b64encode(value)
    raise FormatEncodeError(f"unsupported value type {type(value).__name__}")


def decode_value(payload: bytes, rtype: ResourceType | None) -> Value:
    """Parse one value of type ``rtype`` (``None``: keep the text as ``str``)."""
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextError(f"text/plain payload is not UTF-8: {exc}") from None
    if rtype is None or rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return text
    if rtype is ResourceType.BOOLEAN:
        if text == "1":
            return True
        if text == "0":
            return False
        raise TextError(f"boolean must be '0' or '1', got {text[:40]!r}")
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if _INTEGER.fullmatch(text) is None:
            raise TextError(f"not a decimal integer: {text[:40]!r}")
        number = int(text)
        if not INT64_MIN <= number <= INT64_MAX:
            raise TextError(f"integer out of 64-bit range: {text[:40]!r}")
        if rtype is ResourceType.INTEGER:
            return number
        try:
            return seconds_to_time(number)
        except InvalidValueError as exc:
            raise TextError(str(exc)) from None
    if rtype is ResourceType.UNSIGNED:
        if _UNSIGNED.fullmatch(text) is None:
            raise TextError(f"not an unsigned integer: {text[:40]!r}")
        number = int(text)
        if number > UINT64_MAX:
            raise TextError(f"unsigned integer out of range: {text[:40]!r}")
        return number
    if rtype is ResourceType.FLOAT:
        try:
            return parse_decimal(text, exponent=True)
        except ValueError as exc:
            raise TextError(str(exc)) from None
    if rtype is ResourceType.OBJLNK:
        try:
            return ObjLnk.parse(text)
        except InvalidValueError as exc:
            raise TextError(str(exc)) from None
    if rtype is ResourceType.OPAQUE:
        return _opaque(text)
    raise TextError("executable resources carry no value")


def _opaque(text: str) -> bytes:
    """The bytes ``text`` is the canonical padded base64 of (else :class:`TextError`).

    ``validate`` refuses characters outside the alphabet and wrong padding;
    encoding back catches what it lets through (non-zero pad bits, ``AB==``),
    which RFC 4648 §3.5 allows a decoder to refuse.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise TextError(f"opaque value is not base64: {text[:40]!r}") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise TextError(f"opaque value is not canonical base64: {text[:40]!r}")
    return data


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode the single record addressed by ``base`` (text carries one value)."""
    if len(records) != 1:
        raise FormatEncodeError(f"text/plain carries exactly one value at {base}")
    path, value, _ = records[0]
    if path is not base and path != base:  # a read's record carries the read's path object
        raise FormatEncodeError(f"text/plain carries exactly one value at {base}")
    return encode_value(value)


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a single value for the resource (instance) at ``base``."""
    if base.level < 3:
        raise TextError(f"text/plain needs a resource path, got {base}")
    rtype = types(base) if types is not None else None
    return [Record(base, decode_value(payload, rtype))]
