"""OMA TLV (content format 11542), LwM2M Core 1.1.1 section 7.4.3.

Header byte::

    bits 7-6  00 object instance | 01 resource instance |
              10 multiple resource | 11 resource with value
    bit 5     identifier length: 0 = 8 bits, 1 = 16 bits
    bits 4-3  length type: 00 = length in bits 2-0, 01/10/11 = 8/16/24-bit length field
    bits 2-0  the length itself when length type is 00

Values are bare bytes: Integer/Time are big-endian two's complement in 1, 2, 4
or 8 bytes, Unsigned the same width unsigned, Float 4 or 8 bytes IEEE 754,
Boolean one byte 0/1, Objlnk two 16-bit unsigned ids, String UTF-8, Opaque raw.

TLV is not self-describing, so :func:`decode` needs a type lookup to return
typed values; resources of unknown type come back as ``bytes``. Identifiers in
the payload are relative to the request path, which is why both directions
take the ``base`` path.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from ..model import (
    UINT64_MAX,
    InvalidValueError,
    ObjLnk,
    ResourceType,
    TypeLookup,
    Value,
    seconds_to_time,
    time_to_seconds,
)
from ..path import Path, PathError, PathLevel
from ..values import Record
from .errors import FormatEncodeError, TlvError

__all__ = ["Kind", "Tlv", "decode", "decode_value", "encode", "encode_value", "parse", "serialize"]

_MAX_LENGTH = 0xFFFFFF  # 24-bit length field


class Kind(IntEnum):
    """The TLV type field (header bits 7-6)."""

    OBJECT_INSTANCE = 0
    RESOURCE_INSTANCE = 1
    MULTIPLE_RESOURCE = 2
    RESOURCE = 3


_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class Tlv:
    """One parsed TLV: containers have ``children``, values have ``value``."""

    kind: Kind
    id: int
    value: bytes = b""
    children: tuple[Tlv, ...] = ()

    @property
    def is_container(self) -> bool:
        return self.kind in (Kind.OBJECT_INSTANCE, Kind.MULTIPLE_RESOURCE)


# -- wire level -----------------------------------------------------------------


def _header(kind: Kind, identifier: int, length: int) -> bytes:
    if not 0 <= identifier <= 0xFFFF:
        raise FormatEncodeError(f"TLV identifier out of range: {identifier}")
    if length > _MAX_LENGTH:
        raise FormatEncodeError(f"TLV value of {length} bytes exceeds the 24-bit length field")
    type_byte = kind << 6
    id_bytes = identifier.to_bytes(1 if identifier <= 0xFF else 2, "big")
    if identifier > 0xFF:
        type_byte |= 0x20
    if length < 8:
        type_byte |= length
        length_bytes = b""
    elif length <= 0xFF:
        type_byte |= 0x08
        length_bytes = length.to_bytes(1, "big")
    elif length <= 0xFFFF:
        type_byte |= 0x10
        length_bytes = length.to_bytes(2, "big")
    else:
        type_byte |= 0x18
        length_bytes = length.to_bytes(3, "big")
    return bytes([type_byte]) + id_bytes + length_bytes


def serialize(items: Sequence[Tlv]) -> bytes:
    """Wire bytes for a sequence of TLVs (shortest id and length encodings)."""
    out = bytearray()
    for item in items:
        body = serialize(item.children) if item.is_container else item.value
        out += _header(item.kind, item.id, len(body))
        out += body
    return bytes(out)


def parse(payload: bytes) -> tuple[Tlv, ...]:
    """Parse TLV structure without interpreting values.

    Nesting is checked against the spec: object instances hold resources or
    multiple resources, multiple resources hold resource instances only.
    """
    return _parse(memoryview(bytes(payload)), None)


def _parse(data: memoryview, parent: Kind | None) -> tuple[Tlv, ...]:
    items: list[Tlv] = []
    pos = 0
    end = len(data)
    while pos < end:
        type_byte = data[pos]
        pos += 1
        kind = _KINDS[type_byte >> 6]
        id_len = 2 if type_byte & 0x20 else 1
        length_type = (type_byte >> 3) & 0x03
        if pos + id_len + length_type > end:
            raise TlvError("truncated TLV header")
        identifier = int.from_bytes(data[pos : pos + id_len], "big")
        pos += id_len
        if length_type == 0:
            length = type_byte & 0x07
        else:
            length = int.from_bytes(data[pos : pos + length_type], "big")
            pos += length_type
        if pos + length > end:
            raise TlvError(f"TLV length {length} runs past the end of the payload")
        body = data[pos : pos + length]
        pos += length
        if parent is Kind.OBJECT_INSTANCE and kind not in (Kind.RESOURCE, Kind.MULTIPLE_RESOURCE):
            raise TlvError(f"{kind.name} inside an object instance")
        if parent is Kind.MULTIPLE_RESOURCE and kind is not Kind.RESOURCE_INSTANCE:
            raise TlvError(f"{kind.name} inside a multiple resource")
        if kind in (Kind.OBJECT_INSTANCE, Kind.MULTIPLE_RESOURCE):
            items.append(Tlv(kind, identifier, children=_parse(body, kind)))
        else:
            items.append(Tlv(kind, identifier, value=bytes(body)))
    return tuple(items)


# -- values -----------------------------------------------------------------------


def _encode_int(number: int) -> bytes:
    for width in (1, 2, 4, 8):
        low = -(1 << (8 * width - 1))
        if low <= number < -low:
            return number.to_bytes(width, "big", signed=True)
    if number <= UINT64_MAX and number > 0:
        # Only an Unsigned Integer can be this large; its 8-byte form is unsigned.
        return number.to_bytes(8, "big")
    raise FormatEncodeError(f"integer does not fit in 64 bits: {number}")


def encode_value(value: Value) -> bytes:
    """TLV value bytes for one value (width chosen from the value, not a schema)."""
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return _encode_int(value)
    if isinstance(value, float):
        # Four bytes whenever that is exact (NaN and infinities included).
        try:
            single = struct.pack(">f", value)
        except OverflowError:
            return struct.pack(">d", value)
        if struct.unpack(">f", single)[0] == value or math.isnan(value):
            return single
        return struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, ObjLnk):
        return struct.pack(">HH", value.object_id, value.instance_id)
    if isinstance(value, datetime):
        try:
            return _encode_int(time_to_seconds(value))
        except InvalidValueError as exc:
            raise FormatEncodeError(str(exc)) from exc
    raise FormatEncodeError(f"unsupported value type {type(value).__name__}")


def decode_value(data: bytes, rtype: ResourceType | None) -> Value:
    """Interpret TLV value bytes as ``rtype`` (``None``: return the bytes).

    Integer widths other than 1/2/4/8 (e.g. 3 bytes) are accepted because the
    value is still unambiguous and some stacks emit minimal widths.
    """
    if rtype is None or rtype is ResourceType.OPAQUE:
        return bytes(data)
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TlvError(f"string is not UTF-8: {exc}") from None
    if rtype in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED):
        if not 1 <= len(data) <= 8:
            raise TlvError(f"integer value of {len(data)} bytes (1-8 allowed)")
        signed = rtype is not ResourceType.UNSIGNED
        number = int.from_bytes(data, "big", signed=signed)
        if rtype is ResourceType.TIME:
            try:
                return seconds_to_time(number)
            except InvalidValueError as exc:
                raise TlvError(str(exc)) from None
        return number
    if rtype is ResourceType.FLOAT:
        if len(data) == 4:
            return float(struct.unpack(">f", data)[0])
        if len(data) == 8:
            return float(struct.unpack(">d", data)[0])
        raise TlvError(f"float value of {len(data)} bytes (4 or 8 allowed)")
    if rtype is ResourceType.BOOLEAN:
        if data == b"\x00":
            return False
        if data == b"\x01":
            return True
        raise TlvError(f"boolean must be one byte 0 or 1, got {bytes(data[:8]).hex()}")
    if rtype is ResourceType.OBJLNK:
        if len(data) != 4:
            raise TlvError(f"object link value of {len(data)} bytes (4 required)")
        object_id, instance_id = struct.unpack(">HH", data)
        return ObjLnk(object_id, instance_id)
    raise TlvError("executable resources carry no value")


# -- records <-> TLV tree ------------------------------------------------------------


def _resource_tlvs(records: Sequence[Record], depth: int) -> list[Tlv]:
    """TLVs for records grouped by resource id (component ``depth`` of the path)."""
    singles: dict[int, Tlv] = {}
    multiples: dict[int, list[Tlv]] = {}
    order: list[int] = []
    for record in records:
        ids = record.path.ids
        resource_id = ids[depth]
        if resource_id not in singles and resource_id not in multiples:
            order.append(resource_id)
        if len(ids) == depth + 1:
            if resource_id in singles or resource_id in multiples:
                raise FormatEncodeError(f"resource {record.path} given more than once")
            singles[resource_id] = Tlv(Kind.RESOURCE, resource_id, encode_value(record.value))
        else:
            if resource_id in singles:
                raise FormatEncodeError(
                    f"resource {record.path.parent} is both single and multiple"
                )
            instances = multiples.setdefault(resource_id, [])
            instance_id = ids[depth + 1]
            if any(t.id == instance_id for t in instances):
                raise FormatEncodeError(f"resource instance {record.path} given more than once")
            instances.append(Tlv(Kind.RESOURCE_INSTANCE, instance_id, encode_value(record.value)))
    return [
        singles[rid]
        if rid in singles
        else Tlv(Kind.MULTIPLE_RESOURCE, rid, children=tuple(multiples[rid]))
        for rid in order
    ]


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base`` (an object, instance, resource or resource instance).

    Records keep their order; timestamps are dropped (TLV has no time field).
    """
    for record in records:
        if not base.contains(record.path):
            raise FormatEncodeError(f"{record.path} is not below the request path {base}")
    level = base.level
    if level is PathLevel.ROOT:
        raise FormatEncodeError("TLV cannot encode from the root path")
    if level is PathLevel.OBJECT:
        by_instance: dict[int, list[Record]] = {}
        for record in records:
            instance_id = record.path.instance_id
            assert instance_id is not None
            by_instance.setdefault(instance_id, []).append(record)
        return serialize(
            [
                Tlv(Kind.OBJECT_INSTANCE, iid, children=tuple(_resource_tlvs(group, 2)))
                for iid, group in by_instance.items()
            ]
        )
    if level is PathLevel.INSTANCE:
        return serialize(_resource_tlvs(records, 2))
    if level is PathLevel.RESOURCE:
        return serialize(_resource_tlvs(records, 2))
    if len(records) != 1:
        raise FormatEncodeError(f"exactly one value expected at {base}")
    rid = base.resource_instance_id
    assert rid is not None
    return serialize([Tlv(Kind.RESOURCE_INSTANCE, rid, encode_value(records[0].value))])


def _value_record(path: Path, data: bytes, types: TypeLookup | None) -> Record:
    rtype = types(path) if types is not None else None
    return Record(path, decode_value(data, rtype))


def _records_from_resources(
    items: Sequence[Tlv], instance: Path, types: TypeLookup | None
) -> list[Record]:
    out: list[Record] = []
    seen: set[int] = set()
    for item in items:
        if item.kind not in (Kind.RESOURCE, Kind.MULTIPLE_RESOURCE):
            raise TlvError(f"expected a resource below {instance}, got {item.kind.name}")
        if item.id in seen:
            raise TlvError(f"resource {item.id} appears twice below {instance}")
        seen.add(item.id)
        out.extend(_records_from_resource(item, instance.child(item.id), types))
    return out


def _records_from_resource(item: Tlv, path: Path, types: TypeLookup | None) -> list[Record]:
    if item.kind is Kind.RESOURCE:
        return [_value_record(path, item.value, types)]
    out: list[Record] = []
    seen: set[int] = set()
    for child in item.children:
        if child.id in seen:
            raise TlvError(f"resource instance {child.id} appears twice in {path}")
        seen.add(child.id)
        out.append(_value_record(path.child(child.id), child.value, types))
    return out


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a TLV payload sent for request path ``base`` into records.

    Accepted shapes per base level: object -> object instances; instance ->
    resources (or one object instance wrapping them, with the same id, as
    some servers send for Write/Create); resource -> that resource as a value
    or multiple resource (or bare resource instances); resource instance ->
    one resource instance.
    """
    try:
        items = parse(payload)
        return _decode_items(items, base, types)
    except PathError as exc:
        raise TlvError(f"invalid identifier: {exc}") from None
    except InvalidValueError as exc:
        raise TlvError(str(exc)) from None


def _decode_items(items: Sequence[Tlv], base: Path, types: TypeLookup | None) -> list[Record]:
    level = base.level
    if level is PathLevel.ROOT:
        raise TlvError("TLV payloads need at least an object path")
    if level is PathLevel.OBJECT:
        out: list[Record] = []
        seen: set[int] = set()
        for item in items:
            if item.kind is not Kind.OBJECT_INSTANCE:
                raise TlvError(f"expected object instances below {base}, got {item.kind.name}")
            if item.id in seen:
                raise TlvError(f"object instance {item.id} appears twice")
            seen.add(item.id)
            out.extend(_records_from_resources(item.children, base.child(item.id), types))
        return out
    if level is PathLevel.INSTANCE:
        if len(items) == 1 and items[0].kind is Kind.OBJECT_INSTANCE:
            if items[0].id != base.instance_id:
                raise TlvError(f"object instance {items[0].id} sent for {base}")
            items = items[0].children
        return _records_from_resources(items, base, types)
    if level is PathLevel.RESOURCE:
        if items and all(item.kind is Kind.RESOURCE_INSTANCE for item in items):
            return _records_from_resource(
                Tlv(Kind.MULTIPLE_RESOURCE, 0, children=tuple(items)), base, types
            )
        if len(items) != 1 or items[0].kind not in (Kind.RESOURCE, Kind.MULTIPLE_RESOURCE):
            raise TlvError(f"expected one resource for {base}")
        if items[0].id != base.resource_id:
            raise TlvError(f"resource {items[0].id} sent for {base}")
        return _records_from_resource(items[0], base, types)
    if len(items) != 1 or items[0].kind is not Kind.RESOURCE_INSTANCE:
        raise TlvError(f"expected one resource instance for {base}")
    if items[0].id != base.resource_instance_id:
        raise TlvError(f"resource instance {items[0].id} sent for {base}")
    return [_value_record(base, items[0].value, types)]
