"""OMA LwM2M JSON (content format 11543), the LwM2M 1.0 JSON format.

Kept for servers that only speak 1.0. Shape::

    {"bn": "/3/0/", "bt": 1500000000,
     "e": [{"n": "0", "sv": "Open Mobile Alliance"}, {"n": "6/0", "v": 1, "t": -5},
           {"n": "x", "bv": true}, {"n": "y", "ov": "66:0"}]}

Value fields: ``v`` numbers (and Time), ``sv`` strings (and Opaque, base64),
``bv`` booleans, ``ov`` object links. Entry times are ``bt + t``.
Opaque values need the type lookup to be told apart from strings on decode.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any, NoReturn

from ..model import InvalidValueError, ObjLnk, ResourceType, TypeLookup
from ..path import Path, PathError
from ..values import Record, apply_types
from .errors import FormatEncodeError, OmaJsonError
from .senml import ValueLabels, put_value

__all__ = ["decode", "encode"]

#: Opaque travels as a base64 string in ``sv`` (told apart from String by type).
_LABELS = ValueLabels("bv", "sv", "sv", "ov", lambda raw: base64.b64encode(raw).decode("ascii"))


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base`` as one JSON object with an ``e`` array."""
    for record in records:
        if not base.contains(record.path):
            raise FormatEncodeError(f"{record.path} is not below the request path {base}")
    if base.is_root or all(record.path != base for record in records):
        base_name = str(base).rstrip("/") + "/"
    else:
        base_name = str(base)
    entries: list[dict[str, Any]] = []
    for record in records:
        entry: dict[str, Any] = {"n": str(record.path)[len(base_name) :]}
        put_value(entry, record, _LABELS)
        entries.append(entry)
    try:
        return json.dumps(
            {"bn": base_name, "e": entries},
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")
    except ValueError as exc:
        raise FormatEncodeError(f"JSON cannot carry this value: {exc}") from exc


def _reject_constant(name: str) -> NoReturn:
    raise OmaJsonError(f"JSON constant {name} is not allowed")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OmaJsonError(f"number out of range: {text[:40]}")
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _entry(raw: object, base_name: str, base_time: float | int | None) -> Record:
    if not isinstance(raw, dict):
        raise OmaJsonError("each entry of 'e' must be an object")
    name = raw.get("n", "")
    if not isinstance(name, str):
        raise OmaJsonError("n must be a string")
    try:
        path = Path.parse(base_name + name)
    except PathError as exc:
        raise OmaJsonError(f"entry name is not an LwM2M path: {exc}") from None
    present = [label for label in ("v", "sv", "bv", "ov") if label in raw]
    if len(present) != 1:
        raise OmaJsonError(f"an entry needs exactly one value field, got {present or 'none'}")
    label = present[0]
    value: object = raw[label]
    if label == "v" and not _number(value):
        raise OmaJsonError("v must be a number")
    if label == "sv" and not isinstance(value, str):
        raise OmaJsonError("sv must be a string")
    if label == "bv" and not isinstance(value, bool):
        raise OmaJsonError("bv must be a boolean")
    if label == "ov":
        if not isinstance(value, str):
            raise OmaJsonError("ov must be a string")
        value = ObjLnk.parse(value)
    time: float | None = None
    if "t" in raw or base_time is not None:
        offset = raw.get("t", 0)
        if not _number(offset):
            raise OmaJsonError("t must be a number")
        try:
            time = float((base_time or 0) + offset)
        except OverflowError:
            raise OmaJsonError("time out of range") from None
    if path.level < 3:
        raise OmaJsonError(f"entries need a resource path, got {path}")
    return Record(path, value, time)  # type: ignore[arg-type]


def _opaque_from_base64(record: Record, types: TypeLookup | None) -> Record:
    if (
        types is None
        or not isinstance(record.value, str)
        or types(record.path) is not ResourceType.OPAQUE
    ):
        return record
    try:
        data = base64.b64decode(record.value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OmaJsonError(f"opaque value at {record.path} is not base64: {exc}") from None
    return Record(record.path, data, record.time)


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode an OMA JSON document; every entry must lie below ``base``."""
    try:
        document = json.loads(
            bytes(payload).decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
    except OmaJsonError:
        raise
    except (ValueError, RecursionError) as exc:
        raise OmaJsonError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("e"), list):
        raise OmaJsonError("document must be an object with an 'e' array")
    base_name = document.get("bn", "")
    if not isinstance(base_name, str):
        raise OmaJsonError("bn must be a string")
    base_time = document.get("bt")
    if base_time is not None and not _number(base_time):
        raise OmaJsonError("bt must be a number")
    try:
        records = [_entry(raw, base_name, base_time) for raw in document["e"]]
        for record in records:
            if not base.contains(record.path):
                raise OmaJsonError(f"{record.path} is not below the request path {base}")
        return apply_types([_opaque_from_base64(r, types) for r in records], types)
    except InvalidValueError as exc:
        raise OmaJsonError(str(exc)) from None
