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
from bisect import insort
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from ..model import (
    UINT64_MAX,
    InvalidValueError,
    ObjLnk,
    ResourceType,
    TypeLookup,
    Value,
    object_types,
    seconds_to_time,
    time_to_seconds,
)
from ..path import Path, PathError, interned_path
from ..values import Record, Records, empty_resources, trusted_record
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
    data = bytes(payload)
    return _tlvs(_scan(data, 0, len(data), _TOP))


def _tlvs(items: list[_Item]) -> tuple[Tlv, ...]:
    return tuple(
        Tlv(_KINDS[kind], ident, children=_tlvs(body))
        if kind in _CONTAINERS
        else Tlv(_KINDS[kind], ident, value=body)
        for kind, ident, body in items
    )


# The scanner below is what decode() runs on: plain tuples ``(kind, id, body)``,
# body the value bytes or, for a container, its scanned children.
_Item = tuple[int, int, Any]
_TOP = -1
_OBJECT_INSTANCE, _RESOURCE_INSTANCE, _MULTIPLE_RESOURCE, _RESOURCE = 0, 1, 2, 3
_CONTAINERS = (_OBJECT_INSTANCE, _MULTIPLE_RESOURCE)


def _scan(data: bytes, pos: int, end: int, parent: int) -> list[_Item]:
    items: list[_Item] = []
    while pos < end:
        type_byte = data[pos]
        pos += 1
        kind = type_byte >> 6
        id_len = 2 if type_byte & 0x20 else 1
        length_type = (type_byte >> 3) & 0x03
        if pos + id_len + length_type > end:
            raise TlvError("truncated TLV header")
        identifier = data[pos] if id_len == 1 else data[pos] << 8 | data[pos + 1]
        pos += id_len
        if length_type == 0:
            length = type_byte & 0x07
        else:
            length = int.from_bytes(data[pos : pos + length_type], "big")
            pos += length_type
        stop = pos + length
        if stop > end:
            raise TlvError(f"TLV length {length} runs past the end of the payload")
        if parent == _OBJECT_INSTANCE and kind not in (_RESOURCE, _MULTIPLE_RESOURCE):
            raise TlvError(f"{_KINDS[kind].name} inside an object instance")
        if parent == _MULTIPLE_RESOURCE and kind != _RESOURCE_INSTANCE:
            raise TlvError(f"{_KINDS[kind].name} inside a multiple resource")
        if kind in _CONTAINERS:
            items.append((kind, identifier, _scan(data, pos, stop, kind)))
        else:
            items.append((kind, identifier, data[pos:stop]))
        pos = stop
    return items


# -- values -----------------------------------------------------------------------


# The one-byte integers (most counters, levels, ids) encoded ahead of time.
_SMALL_INTS = tuple(n.to_bytes(1, "big", signed=True) for n in range(-128, 128))


def _encode_int(number: int) -> bytes:
    if -128 <= number < 128:
        return _SMALL_INTS[number + 128]
    for width in (2, 4, 8):
        low = -(1 << (8 * width - 1))
        if low <= number < -low:
            return number.to_bytes(width, "big", signed=True)
    if number <= UINT64_MAX and number > 0:
        # Only an Unsigned Integer can be this large; its 8-byte form is unsigned.
        return number.to_bytes(8, "big")
    raise FormatEncodeError(f"integer does not fit in 64 bits: {number}")


def encode_value(value: Value) -> bytes:
    """TLV value bytes for one value (width chosen from the value, not a schema)."""
    kind = type(value)  # the exact types first: most values are one of them
    if kind is str:
        return value.encode("utf-8")  # type: ignore[union-attr]
    if kind is int and -0x80000000 <= value < 0x80000000:  # type: ignore[operator]
        return _encode_int(value)  # type: ignore[arg-type]
    if kind is datetime:
        return _encode_time(value)  # type: ignore[arg-type]
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
        return _encode_time(value)
    raise FormatEncodeError(f"unsupported value type {type(value).__name__}")


def _encode_time(value: datetime) -> bytes:
    try:
        return _encode_int(time_to_seconds(value))
    except InvalidValueError as exc:
        raise FormatEncodeError(str(exc)) from exc


# Enum members bound once: ``ResourceType.X`` is a descriptor lookup each time.
_STRING, _CORELNK, _INTEGER, _UNSIGNED, _TIME = (
    ResourceType.STRING,
    ResourceType.CORELNK,
    ResourceType.INTEGER,
    ResourceType.UNSIGNED,
    ResourceType.TIME,
)
_FLOAT, _BOOLEAN, _OBJLNK, _OPAQUE = (
    ResourceType.FLOAT,
    ResourceType.BOOLEAN,
    ResourceType.OBJLNK,
    ResourceType.OPAQUE,
)


def decode_value(data: bytes, rtype: ResourceType | None) -> Value:
    """Interpret TLV value bytes as ``rtype`` (``None``: return the bytes).

    Integer widths other than 1/2/4/8 (e.g. 3 bytes) are accepted because the
    value is still unambiguous and some stacks emit minimal widths.
    """
    if rtype is _STRING or rtype is _CORELNK:
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TlvError(f"string is not UTF-8: {exc}") from None
    if rtype is _INTEGER or rtype is _TIME or rtype is _UNSIGNED:
        if not 1 <= len(data) <= 8:
            raise TlvError(f"integer value of {len(data)} bytes (1-8 allowed)")
        number = int.from_bytes(data, "big", signed=rtype is not _UNSIGNED)
        if rtype is _TIME:
            try:
                return seconds_to_time(number)
            except InvalidValueError as exc:
                raise TlvError(str(exc)) from None
        return number
    if rtype is _FLOAT:
        if len(data) == 4:
            return float(struct.unpack(">f", data)[0])
        if len(data) == 8:
            return float(struct.unpack(">d", data)[0])
        raise TlvError(f"float value of {len(data)} bytes (4 or 8 allowed)")
    if rtype is _BOOLEAN:
        if data == b"\x00":
            return False
        if data == b"\x01":
            return True
        raise TlvError(f"boolean must be one byte 0 or 1, got {bytes(data[:8]).hex()}")
    if rtype is _OBJLNK:
        if len(data) != 4:
            raise TlvError(f"object link value of {len(data)} bytes (4 required)")
        object_id, instance_id = struct.unpack(">HH", data)
        return ObjLnk(object_id, instance_id)
    if rtype is None or rtype is _OPAQUE:
        return bytes(data)
    raise TlvError("executable resources carry no value")


# -- records <-> TLV -------------------------------------------------------------------


def _tlv(kind: int, identifier: int, body: bytes) -> bytes:
    """One TLV: header (shortest id and length forms) and body."""
    length = len(body)
    if identifier <= 0xFF:  # the common cases: 8-bit id, length in the type byte or one byte
        if length < 8:
            return bytes((kind << 6 | length, identifier)) + body
        if length <= 0xFF:
            return bytes((kind << 6 | 0x08, identifier, length)) + body
    return _header(_KINDS[kind], identifier, length) + body


def _resources(records: Sequence[Record], depth: int, empty: Collection[int] = ()) -> bytes:
    """TLVs for records grouped by resource id (component ``depth`` of the path),
    and a Multiple Resource TLV of length 0 for each id in ``empty``."""
    singles: dict[int, bytes] = {}  # id -> the encoded resource
    multiples: dict[int, list[tuple[int, bytes]]] = {}
    order: list[int] = []  # resource ids as first met
    for record in records:
        path, value, _ = record
        ids = path.ids
        resource_id = ids[depth]
        if len(ids) == depth + 1:
            if resource_id in singles or resource_id in multiples:
                raise FormatEncodeError(f"resource {path} given more than once")
            singles[resource_id] = _tlv(_RESOURCE, resource_id, encode_value(value))
            order.append(resource_id)
            continue
        if resource_id in singles:
            raise FormatEncodeError(f"resource {record.path.parent} is both single and multiple")
        instances = multiples.get(resource_id)
        if instances is None:
            instances = multiples[resource_id] = []
            order.append(resource_id)
        instance_id = ids[depth + 1]
        if any(riid == instance_id for riid, _ in instances):
            raise FormatEncodeError(f"resource instance {record.path} given more than once")
        value = encode_value(record.value)
        instances.append((instance_id, _tlv(_RESOURCE_INSTANCE, instance_id, value)))
    for resource_id in sorted(empty):
        if resource_id in singles or resource_id in multiples:
            raise FormatEncodeError(f"resource {resource_id} given both empty and with values")
        multiples[resource_id] = []
        insort(order, resource_id)  # in id order among records read in id order
    return b"".join(
        singles[rid]
        if rid in singles
        else _tlv(_MULTIPLE_RESOURCE, rid, b"".join(body for _, body in multiples[rid]))
        for rid in order
    )


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base`` (an object, instance, resource or resource instance).

    Records keep their order; timestamps are dropped (TLV has no time field).
    The multiple resources in :attr:`~aiolwm2m.lwm2m.values.Records.empty` are
    Multiple Resource TLVs of length 0, placed in resource id order: Core
    1.1.1 §7.4.3 sends a multiple resource as that TLV "whatever the number of
    Instances (0, 1 or more)".
    """
    mine = base.ids
    depth = len(mine)
    empty = empty_resources(records)
    if depth == 2 and not empty:  # the usual instance Read: one pass, if it is flat
        flat = _flat_encode(records, mine)
        if flat is not None:
            return flat
    for record in records:
        if record.path.ids[:depth] != mine:
            raise FormatEncodeError(f"{record.path} is not below the request path {base}")
    for path in empty:
        if path.ids[:depth] != mine or len(path.ids) != 3:
            raise FormatEncodeError(f"empty resource {path} is not a resource below {base}")
    if depth == 0:
        raise FormatEncodeError("TLV cannot encode from the root path")
    if depth == 1:
        by_instance: dict[int, list[Record]] = {}
        for record in records:
            by_instance.setdefault(record.path.ids[1], []).append(record)
        for path in sorted(empty):
            by_instance.setdefault(path.ids[1], [])
        return b"".join(
            _tlv(
                _OBJECT_INSTANCE,
                iid,
                _resources(group, 2, [p.ids[2] for p in empty if p.ids[1] == iid]),
            )
            for iid, group in by_instance.items()
        )
    if depth < 4:
        return _resources(records, 2, [path.ids[2] for path in empty])
    if len(records) != 1:
        raise FormatEncodeError(f"exactly one value expected at {base}")
    return _tlv(_RESOURCE_INSTANCE, mine[3], encode_value(records[0].value))


def _flat_encode(records: Sequence[Record], instance: tuple[int, ...]) -> bytes | None:
    """The TLVs of single resources directly below ``instance``, with ids below 256
    and values shorter than 256 bytes, each id once; None for anything else."""
    out = bytearray()
    seen = 0  # bit per resource id < 64, as in _flat_resources
    object_id, instance_id = instance
    for path, value, _ in records:
        ids = path.ids
        if len(ids) != 3 or ids[0] != object_id or ids[1] != instance_id:
            return None
        ident = ids[2]
        body = value.encode() if type(value) is str else encode_value(value)
        length = len(body)
        if ident >= 64 or length > 0xFF or seen >> ident & 1:
            return None
        seen |= 1 << ident
        if length < 8:
            out.append(0xC0 | length)
            out.append(ident)
        else:
            out += bytes((0xC8, ident, length))
        out += body
    return bytes(out)


def _record(path: Path, data: bytes, types: TypeLookup | None) -> Record:
    rtype = types(path) if types is not None else None
    return trusted_record(path, decode_value(data, rtype))


def _from_resources(
    items: list[_Item], instance: Path, types: TypeLookup | None, empty: list[Path]
) -> list[Record]:
    """Records of the resources below ``instance``; multiple resources without
    instances are added to ``empty`` (see :class:`~aiolwm2m.lwm2m.values.Records`)."""
    out: list[Record] = []
    prefix = instance.ids
    for kind, ident, body in items:
        path = _path((*prefix, ident))
        if kind == _RESOURCE:
            value = decode_value(body, types(path) if types is not None else None)
            out.append(_new_record(Record, (path, value, None)))
        elif kind == _MULTIPLE_RESOURCE:
            if not body:
                empty.append(path)
            out.extend(_from_instances(body, path, types))
        else:
            raise TlvError(f"expected a resource below {instance}, got {_KINDS[kind].name}")
    _unique(items, f"resource {{}} appears twice below {instance}")
    return out


def _from_instances(items: list[_Item], resource: Path, types: TypeLookup | None) -> list[Record]:
    prefix = resource.ids
    out = [_record(_path((*prefix, ident)), body, types) for _, ident, body in items]
    _unique(items, f"resource instance {{}} appears twice in {resource}")
    return out


def _flat_resources(
    data: bytes, instance: tuple[int, ...], types: TypeLookup | None
) -> list[Record] | None:
    """Records of a payload made only of single resources with 8-bit ids and short values.

    That is what an instance Read or Write nearly always carries, so it gets
    a loop of its own with no intermediate items; anything else (containers,
    16-bit ids or lengths, a repeated id) gets None and takes the general path,
    which also words the errors.
    """
    out: list[Record] = []
    seen = 0  # bit per resource id < 64: the usual ids, checked without a set
    pos, end = 0, len(data)
    table = object_types(types, instance[0])
    interned = _interned
    object_id, instance_id = instance
    while pos < end:
        head = data[pos]
        if head & 0xE0 != 0xC0 or pos + 2 > end:  # not "resource, 8-bit id"
            return None
        short = head & 0x18
        if short == 0:
            length, start = head & 0x07, pos + 2
        elif short == 0x08 and pos + 3 <= end:
            length, start = data[pos + 2], pos + 3
        else:
            return None
        stop = start + length
        ident = data[pos + 1]
        if stop > end or ident >= 64 or seen >> ident & 1:
            return None
        seen |= 1 << ident
        key = (object_id, instance_id, ident)
        path = interned(key) or _path(key)
        if table is not None:
            rtype = table.get(ident)
        else:
            rtype = types(path) if types is not None else None
        raw = data[start:stop]
        if rtype is _STRING and raw.isascii():  # the commonest values, decoded in line
            value: Value = raw.decode("ascii")
        elif rtype is _INTEGER and 0 < length <= 8:
            value = int.from_bytes(raw, "big", signed=True)
        else:
            value = decode_value(raw, rtype)
        out.append(_new_record(Record, (path, value, None)))
        pos = stop
    return out


def _unique(items: list[_Item], message: str) -> None:
    """Every id once (checked after the fact: the common case costs one set)."""
    idents = [ident for _, ident, _ in items]
    if len(set(idents)) != len(idents):
        duplicate = next(i for n, i in enumerate(idents) if i in idents[:n])
        raise TlvError(message.format(duplicate))


_path = Path._trusted
_interned = interned_path
_new_record = tuple.__new__


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a TLV payload sent for request path ``base`` into records.

    Accepted shapes per base level: object -> object instances; instance ->
    resources (or one object instance wrapping them, with the same id, as
    some servers send for Write/Create); resource -> that resource as a value
    or multiple resource (or bare resource instances); resource instance ->
    one resource instance. A Multiple Resource TLV of length 0 (the resource
    holds no instance) is named in the result's
    :attr:`~aiolwm2m.lwm2m.values.Records.empty`.
    """
    try:
        data = bytes(payload)
        if len(base.ids) == 2:  # the usual Read/Write of an instance: one pass, if it is flat
            flat = _flat_resources(data, base.ids, types)
            if flat is not None:
                return flat
        empty: list[Path] = []
        records = _decode_items(_scan(data, 0, len(data), _TOP), base, types, empty)
        return Records(records, empty)
    except PathError as exc:
        raise TlvError(f"invalid identifier: {exc}") from None
    except InvalidValueError as exc:
        raise TlvError(str(exc)) from None


def _decode_items(
    items: list[_Item], base: Path, types: TypeLookup | None, empty: list[Path]
) -> list[Record]:
    level = len(base.ids)
    if level == 0:
        raise TlvError("TLV payloads need at least an object path")
    if level == 1:
        out: list[Record] = []
        seen: set[int] = set()
        for kind, ident, body in items:
            if kind != _OBJECT_INSTANCE:
                raise TlvError(f"expected object instances below {base}, got {_KINDS[kind].name}")
            if ident in seen:
                raise TlvError(f"object instance {ident} appears twice")
            seen.add(ident)
            out.extend(_from_resources(body, base.child(ident), types, empty))
        return out
    if level == 2:
        if len(items) == 1 and items[0][0] == _OBJECT_INSTANCE:
            if items[0][1] != base.instance_id:
                raise TlvError(f"object instance {items[0][1]} sent for {base}")
            items = items[0][2]
        return _from_resources(items, base, types, empty)
    if level == 3:
        if items and all(kind == _RESOURCE_INSTANCE for kind, _, _ in items):
            return _from_instances(items, base, types)
        if len(items) != 1 or items[0][0] not in (_RESOURCE, _MULTIPLE_RESOURCE):
            raise TlvError(f"expected one resource for {base}")
        kind, ident, body = items[0]
        if ident != base.resource_id:
            raise TlvError(f"resource {ident} sent for {base}")
        if kind == _RESOURCE:
            return [_record(base, body, types)]
        if not body:
            empty.append(base)
        return _from_instances(body, base, types)
    if len(items) != 1 or items[0][0] != _RESOURCE_INSTANCE:
        raise TlvError(f"expected one resource instance for {base}")
    if items[0][1] != base.resource_instance_id:
        raise TlvError(f"resource instance {items[0][1]} sent for {base}")
    return [_record(base, items[0][2], types)]
