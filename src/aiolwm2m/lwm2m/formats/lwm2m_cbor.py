"""LwM2M CBOR (content format 11544), a nested-map format from LwM2M 1.2.

Optional for a 1.1.1 client; provided because it is the most compact format
and costs little on top of the CBOR dependency. Structure: nested CBOR maps
keyed by path components starting at the object id, e.g.
``{3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}}}}``. A key may also be
an array of consecutive components (``{[3, 0]: {...}}``), which we accept on
decode and do not emit. Values: text strings (String, Corelnk, Objlnk as
``"3:0"``), integers (Integer, Unsigned, Time), floats, booleans, byte
strings (Opaque); Time is written as plain integer seconds and also accepted
as a tag-1 epoch value. Timestamps are not representable and are dropped.
A multiple resource with no instance is an empty map (``{6: {}}``), read
into and written from :attr:`~aiolwm2m.lwm2m.values.Records.empty`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import cbor2

from ..model import InvalidValueError, ObjLnk, TypeLookup, Value, time_to_seconds
from ..path import Path, PathError
from ..values import Record, Records, apply_types, empty_resources
from .errors import ContentFormatError, FormatEncodeError, Lwm2mCborError

__all__ = ["decode", "dumps", "encode", "leaf_value", "wire_value"]

_MAX_DEPTH = 12


def wire_value(value: object) -> object:
    """What cbor2 writes for a resource value (shared with plain CBOR, format 60)."""
    if isinstance(value, ObjLnk):
        return str(value)
    if isinstance(value, datetime):
        try:
            return time_to_seconds(value)
        except InvalidValueError as exc:
            raise FormatEncodeError(str(exc)) from exc
    return value


def dumps(document: object, what: str) -> bytes:
    """Canonical CBOR (shortest exact floats, sorted maps) or a FormatEncodeError."""
    try:
        return bytes(cbor2.dumps(document, canonical=True))
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        raise FormatEncodeError(f"{what} cannot carry this value: {exc}") from exc


def leaf_value(value: object, where: object, error: type[ContentFormatError]) -> Value:
    """A decoded CBOR item as a resource value (before typing), or ``error``.

    Time may arrive as a tag-1 epoch or tag-0 date/time string; cbor2 turns
    both into datetimes, which must carry a time zone.
    """
    if isinstance(value, datetime) and value.tzinfo is None:
        raise error(f"time value without time zone at {where}")
    if isinstance(value, str | bytes | float | int | datetime):
        return value
    raise error(f"unsupported value type {type(value).__name__} at {where}")


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base`` as nested maps rooted at the object id, and the
    multiple resources of :attr:`~aiolwm2m.lwm2m.values.Records.empty` as empty maps."""
    tree: dict[int, Any] = {}
    for record in records:
        _place(tree, base, record.path, wire_value(record.value))
    for path in sorted(empty_resources(records)):
        _place(tree, base, path, {})
    return dumps(tree, "LwM2M CBOR")


def _place(tree: dict[int, Any], base: Path, path: Path, value: object) -> None:
    """Put ``value`` at ``path`` in the nested maps of ``tree``."""
    if not base.contains(path):
        raise FormatEncodeError(f"{path} is not below the request path {base}")
    *parents, leaf = path.ids
    node = tree
    for component in parents:
        child = node.setdefault(component, {})
        if not isinstance(child, dict):
            raise FormatEncodeError(f"{path} is below a single-value resource")
        node = child
    if leaf in node:
        raise FormatEncodeError(f"{path} given more than once (or is a container)")
    node[leaf] = value


def _walk(node: object, prefix: tuple[int, ...], out: list[Record], empty: list[Path]) -> None:
    """Records of the values below ``prefix``; an empty map at resource depth is a
    multiple resource with no instance, added to ``empty``."""
    if not isinstance(node, dict):
        raise Lwm2mCborError("expected a map")
    for key, value in node.items():
        if isinstance(key, int) and not isinstance(key, bool):
            components: tuple[int, ...] = (key,)
        elif (
            isinstance(key, tuple | list)
            and key
            and all(isinstance(k, int) and not isinstance(k, bool) for k in key)
        ):
            components = tuple(key)
        else:
            raise Lwm2mCborError(f"invalid map key {key!r}")
        ids = prefix + components
        if len(ids) > 4:
            raise Lwm2mCborError(f"path deeper than a resource instance: {ids}")
        if isinstance(value, dict):
            if not value and len(ids) == 3:
                empty.append(Path.of(*ids))
            _walk(value, ids, out, empty)
            continue
        if len(ids) < 3:
            raise Lwm2mCborError(f"value at {ids}, above resource level")
        out.append(Record(Path.of(*ids), leaf_value(value, ids, Lwm2mCborError)))


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a LwM2M CBOR document; every value must lie below ``base``."""
    try:
        document = cbor2.loads(bytes(payload), max_depth=_MAX_DEPTH, allow_duplicate_keys=False)
    except Exception as exc:  # cbor2 raises assorted exception types on hostile input
        raise Lwm2mCborError(f"invalid CBOR: {exc}") from None
    records: list[Record] = []
    empty: list[Path] = []
    try:
        _walk(document, (), records, empty)
        seen: set[Path] = set()
        for record in records:
            if record.path in seen:
                raise Lwm2mCborError(f"{record.path} given more than once")
            seen.add(record.path)
            if not base.contains(record.path):
                raise Lwm2mCborError(f"{record.path} is not below the request path {base}")
        given = {Path.of(*path.ids[:3]) for path in seen} if empty else set()
        for path in empty:
            if path in given:  # {6: {}} and values of /.../6 under an array key
                raise Lwm2mCborError(f"{path} given more than once")
            if not base.contains(path):
                raise Lwm2mCborError(f"{path} is not below the request path {base}")
        return Records(apply_types(records, types), empty)
    except (PathError, InvalidValueError) as exc:
        raise Lwm2mCborError(str(exc)) from None
