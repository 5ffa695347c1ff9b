"""SenML (RFC 8428) records <-> LwM2M records, shared by the JSON and CBOR codecs.

The two SenML serialisations differ only in syntax (text labels vs integer
labels, base64 vs byte strings), so the LwM2M rules live here once:

* the resource path is ``bn + n`` (base name carries over to later records);
* one value field per record: ``v`` (numbers, Time), ``vs`` (String, Corelnk),
  ``vb`` (Boolean), ``vd`` (Opaque), ``vlo`` (Objlnk as ``"3:0"``);
* time is ``bt + t``, stored as :attr:`Record.time`; values of ``bt + t`` below
  2**28 are relative to "now" per RFC 8428, which we pass through unchanged
  because sans-IO code has no clock (the engine decides what to do with them);
* numbers may be CBOR decimal fractions or bigfloats (RFC 8949 §3.4.4), which
  cbor2 hands over as :class:`~decimal.Decimal`; they are read as the float
  they stand for, since LwM2M numbers are ints and floats;
* labels ending in ``_`` are must-understand extensions and are refused, and so
  is a base version ``bver`` above 10 or not an integer (RFC 8428 §4.4: a
  receiver must not use a pack of a version it does not understand).

Each codec works on its own labels (text for JSON, the RFC's integers for
CBOR) through a :class:`Labels` table, so entries are never re-keyed between
the two: a pack is walked once, one record per entry, typed as it is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..model import (
    InvalidValueError,
    ObjLnk,
    ResourceType,
    TypeLookup,
    Value,
    coerce,
    object_types,
    time_to_seconds,
)
from ..path import Path, PathError
from ..values import Record
from .errors import ContentFormatError, FormatEncodeError

__all__ = [
    "CBOR_LABELS",
    "JSON_LABELS",
    "Labels",
    "ValueLabels",
    "entries_to_paths",
    "entries_to_records",
    "paths_to_entries",
    "put_value",
    "records_to_entries",
]

# What the walker does with a label (RFC 8428 §4: base name/time/value/version,
# name, time, and the five LwM2M value fields). The value fields come last
# (the walker tests ``role >= _V``).
_BN, _BT, _BV, _BVER, _N, _T, _V, _VS, _VB, _VD, _VLO = range(11)
_ROLE_NAMES = ("bn", "bt", "bv", "bver", "n", "t", "v", "vs", "vb", "vd", "vlo")
#: RFC 8428 §4.4: the SenML version this decoder understands.
_SENML_VERSION = 10
_TEXT_ROLES: dict[object, int] = {name: role for role, name in enumerate(_ROLE_NAMES)}


@dataclass(frozen=True)
class ValueLabels:
    """Entry labels of the value kinds and the time (SenML, OMA JSON)."""

    boolean: object
    string: object
    opaque: object
    objlnk: object
    opaque_as: Callable[[bytes], Any] = bytes
    number: object = "v"
    time: object = "t"


@dataclass(frozen=True)
class Labels:
    """One SenML serialisation's labels: what it writes and how it reads them."""

    values: ValueLabels
    base_name: object
    name: object
    #: label -> role; labels not in it are ignorable extensions.
    roles: Mapping[object, int] = field(default_factory=dict)


JSON_LABELS = Labels(ValueLabels("vb", "vs", "vd", "vlo"), "bn", "n", _TEXT_ROLES)
#: RFC 8428 Table 4 integers; the object link has no integer label and keeps
#: ``"vlo"``. Text labels are read too, as some peers send them in CBOR.
CBOR_LABELS = Labels(
    ValueLabels(4, 3, 8, "vlo", number=2, time=6),
    -2,
    0,
    {
        **_TEXT_ROLES,
        -1: _BVER,
        -2: _BN,
        -3: _BT,
        -5: _BV,
        0: _N,
        6: _T,
        2: _V,
        3: _VS,
        4: _VB,
        8: _VD,
    },
)


def records_to_entries(
    records: Sequence[Record], base: Path, labels: Labels = JSON_LABELS
) -> list[dict[Any, Any]]:
    """SenML records for ``records``, all below ``base``; ``vd`` holds raw bytes for
    CBOR (``labels.values.opaque_as`` converts them).

    ``bn`` is the request path (plus ``/`` when every record lies strictly
    below it, the style of the spec examples); an empty ``n`` is omitted.
    """
    prefix = base.ids
    depth = len(prefix)
    strictly_below = True
    for record in records:
        ids = record[0].ids
        if ids[:depth] != prefix:
            raise FormatEncodeError(f"{record[0]} is not below the request path {base}")
        if len(ids) == depth:
            strictly_below = False
    entries: list[dict[Any, Any]] = []
    if depth == 0:
        skip = 0
        base_name = None
    else:
        base_name = str(base) + ("/" if strictly_below else "")
        skip = len(base_name)
    name_label, value_labels = labels.name, labels.values
    for record in records:
        entry: dict[Any, Any] = {}
        if base_name is not None:
            entry[labels.base_name] = base_name
            base_name = None
        name = str(record[0])[skip:]
        if name:
            entry[name_label] = name
        put_value(entry, record, value_labels)
        entries.append(entry)
    return entries


def put_value(entry: dict[Any, Any], record: Record, labels: ValueLabels) -> None:
    """Store ``record``'s value and time in a SenML-like entry (SenML, OMA JSON)."""
    _, value, time = record
    kind = type(value)
    if kind is str:
        entry[labels.string] = value
    elif kind is float or kind is int:
        entry[labels.number] = value
    elif isinstance(value, bool):
        entry[labels.boolean] = value
    elif isinstance(value, int | float):
        entry[labels.number] = value
    elif isinstance(value, str):
        entry[labels.string] = value
    elif isinstance(value, bytes):
        entry[labels.opaque] = labels.opaque_as(value)
    elif isinstance(value, ObjLnk):
        entry[labels.objlnk] = str(value)
    elif isinstance(value, datetime):
        try:
            entry[labels.number] = time_to_seconds(value)
        except InvalidValueError as exc:
            raise FormatEncodeError(str(exc)) from exc
    if time is not None:
        entry[labels.time] = int(time) if isinstance(time, float) and time.is_integer() else time


def paths_to_entries(paths: Sequence[Path], labels: Labels = JSON_LABELS) -> list[dict[Any, Any]]:
    """Name-only records, the Read-Composite / Observe-Composite request body."""
    return [{labels.name: str(path)} for path in paths]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Walker:
    """Applies the base-field carry-over rules of RFC 8428 section 4.5."""

    def __init__(self, error: type[ContentFormatError], roles: Mapping[object, int]) -> None:
        self.error = error
        self.roles = roles
        self.base_name = ""
        self.base_time: float | None = None
        self.base_value: float | int | None = None

    def step(self, entry: object) -> tuple[Path, int, object, float | None]:
        """(path, value role or -1, raw value, time) of one entry."""
        error = self.error
        if type(entry) is not dict:
            raise error("each SenML record must be a map/object")
        name: object = ""
        time: object = None
        role = -1
        raw: object = None
        seen = 0
        roles = self.roles
        for label, item in entry.items():
            # False/True would find the integer labels 0/1: a boolean is never a label.
            this = roles.get(label) if type(label) is not bool else None
            if this is None:
                if isinstance(label, str):
                    if label.endswith("_"):
                        raise error(f"unsupported must-understand label {label!r}")
                elif type(label) is not int:
                    raise error(f"invalid label {label!r}")
                continue  # an ignorable extension (or a unit, sum …)
            if seen >> this & 1:
                raise error(f"label {_ROLE_NAMES[this]!r} given twice")
            seen |= 1 << this
            if this >= _V:
                if role >= 0:
                    raise error("a record needs exactly one value field, got two")
                role, raw = this, item
            elif this == _N:
                name = item
            elif this == _T:
                time = item
            elif this == _BN:
                if not isinstance(item, str):
                    raise error("bn must be a string")
                self.base_name = item
            elif this == _BVER:
                # RFC 8428 §4.4: a newer version may change what fields mean,
                # so such a pack must not be used at all.
                if type(item) is not int or item > _SENML_VERSION:
                    raise error(f"unsupported SenML version bver={item!r}")
            elif this == _BT:
                self.base_time = item if _number(item) else self.fraction(item, "bt")
            else:
                self.base_value = item if _number(item) else self.fraction(item, "bv")
        if not isinstance(name, str):
            raise error("n must be a string")
        full_name = self.base_name + name
        if not full_name:
            raise error("record without a name")
        try:
            path = Path.parse(full_name)
        except PathError as exc:
            raise error(f"record name is not an LwM2M path: {exc}") from None
        if time is None and self.base_time is None:
            return path, role, raw, None
        offset = 0 if time is None else time
        if not _number(offset):
            offset = self.fraction(offset, "t")
        try:
            when = float((self.base_time or 0) + offset)  # type: ignore[operator]
        except OverflowError:
            raise error("time out of range") from None
        if not math.isfinite(when):
            raise error("time is not finite")
        return path, role, raw, when

    def fraction(self, item: object, label: str) -> float:
        """``item``, a number that is neither int nor float, as a float.

        Only a CBOR decimal fraction (tag 4) or bigfloat (tag 5) gets here:
        cbor2 decodes both to a :class:`~decimal.Decimal`, and LwM2M numbers
        are ints and floats. Kept off the int/float path, which is the hot one.
        """
        if not isinstance(item, Decimal):
            raise self.error(f"{label} must be a number")
        number = float(item) if item.is_finite() else math.inf
        if not math.isfinite(number):
            raise self.error(f"{label} out of the range of a float")
        return number

    def value(self, role: int, raw: object, decode_data: Callable[[object], bytes]) -> Value:
        error = self.error
        if role == _VS:
            if type(raw) is not str:
                raise error("vs must be a string")
            return raw
        if role == _V:
            if not _number(raw):
                raw = self.fraction(raw, "v")
            if self.base_value is not None:
                try:
                    raw = raw + self.base_value  # type: ignore[operator]
                except OverflowError:
                    raise error("v + bv out of range") from None
            return raw  # type: ignore[return-value]
        if role == _VB:
            if not isinstance(raw, bool):
                raise error("vb must be a boolean")
            return raw
        if role == _VD:
            return decode_data(raw)
        if role != _VLO:
            raise error("a record needs exactly one value field, got none")
        if not isinstance(raw, str):
            raise error("vlo must be a string")
        try:
            return ObjLnk.parse(raw)
        except InvalidValueError as exc:
            raise error(str(exc)) from None


_NONE = ResourceType.NONE
_new_record = tuple.__new__


def entries_to_records(
    entries: object,
    base: Path,
    types: TypeLookup | None,
    error: type[ContentFormatError],
    decode_data: Callable[[object], bytes],
    labels: Labels = JSON_LABELS,
) -> list[Record]:
    """LwM2M records from parsed SenML entries; every path must lie below ``base``.

    Values are typed with ``types`` as each record is built (Time from
    seconds, Objlnk from text, Float from an integer …).
    """
    if not isinstance(entries, list):
        raise error("a SenML pack must be an array")
    walker = _Walker(error, labels.roles)
    prefix = base.ids
    depth = len(prefix)
    table_object = -1
    table: Mapping[int, ResourceType] | None = None
    records: list[Record] = []
    for entry in entries:
        path, role, raw, time = walker.step(entry)
        ids = path.ids
        if len(ids) < 3:
            raise error(f"value records need a resource path, got {path}")
        if ids[:depth] != prefix:
            raise error(f"{path} is not below the request path {base}")
        value = walker.value(role, raw, decode_data)
        if types is not None:
            if ids[0] != table_object:
                table_object, table = ids[0], object_types(types, ids[0])
            rtype = table.get(ids[2]) if table is not None else types(path)
            if rtype is not None:
                if rtype is _NONE:
                    raise error(f"{path} is executable and has no value")
                try:
                    value = coerce(value, rtype)
                except InvalidValueError as exc:
                    raise error(str(exc)) from None
        records.append(_new_record(Record, (path, value, time)))
    return records


def entries_to_paths(
    entries: object, error: type[ContentFormatError], labels: Labels = JSON_LABELS
) -> list[Path]:
    """Paths named by a Read-Composite / Observe-Composite request body."""
    if not isinstance(entries, list):
        raise error("a SenML pack must be an array")
    walker = _Walker(error, labels.roles)
    return [walker.step(entry)[0] for entry in entries]
