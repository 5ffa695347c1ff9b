"""The value tree shared by every content format: a flat list of :class:`Record`.

Why flat records and not nested objects/instances/resources: every format can
be mapped to and from "(path, value, optional time)" without loss, SenML *is*
that list, timestamped notifications need the same path more than once, and a
flat list is trivial to build, filter (``base.contains(r.path)``) and compare
in tests. Nesting is recomputed by the formats that need it (TLV, LwM2M CBOR).

Single-instance resources use a 3-component path (``/3/0/9``); each instance of
a multiple-instance resource is one record with a 4-component path
(``/3/0/6/0``). Empty containers (an object instance or a multiple resource
with no values) produce no record; a multiple resource with no instance at all
is named in :attr:`Records.empty` instead, where a payload can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING

from .model import InvalidValueError, ObjLnk, ResourceType, TypeLookup, Value, coerce
from .path import Path

__all__ = [
    "Record",
    "Records",
    "apply_types",
    "empty_resources",
    "joined_records",
    "make_record",
    "records_from_mapping",
    "records_to_dict",
    "trusted_record",
]

_VALUE_TYPES = (str, int, float, bytes, ObjLnk, datetime)


class Record(tuple[Path, Value, float | None]):
    """One resource (instance) value, optionally with a measurement time.

    ``time`` is absolute Unix seconds as carried by SenML ``bt``/``t`` (used by
    Send and stored notifications). Formats without timestamps ignore it.

    A tuple underneath (``(path, value, time)``) because decoders make one per
    value and a tuple is the cheapest immutable, hashable record Python has;
    it only equals another :class:`Record`. Building one checks its fields;
    the decoders, whose fields are checked already, use :func:`trusted_record`.
    """

    __slots__ = ()

    def __new__(cls, path: Path, value: Value, time: float | None = None) -> Record:
        if not isinstance(path, Path) or len(path.ids) < 3:
            raise InvalidValueError(
                f"a record needs a resource or resource-instance path: {path!r}"
            )
        if not isinstance(value, _VALUE_TYPES):
            raise InvalidValueError(f"unsupported value type {type(value).__name__}")
        if time is not None and (isinstance(time, bool) or not isinstance(time, int | float)):
            raise InvalidValueError(f"record time must be a number: {time!r}")
        return make_record(cls, (path, value, time))

    if TYPE_CHECKING:

        @property
        def path(self) -> Path: ...

        @property
        def value(self) -> Value: ...

        @property
        def time(self) -> float | None: ...

    else:  # C-level getters: these are read for every value a format encodes
        path = property(itemgetter(0), doc="The resource or resource-instance path.")
        value = property(itemgetter(1), doc="The value, of the canonical type for its resource.")
        time = property(itemgetter(2), doc="Measurement time in Unix seconds, or None.")

    def with_time(self, time: float | None) -> Record:
        """The same value stamped with ``time``."""
        return Record(self[0], self[1], time)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return f"Record(path={self[0]!r}, value={self[1]!r}, time={self[2]!r})"

    def __reduce__(self) -> tuple[type[Record], tuple[Path, Value, float | None]]:
        return (Record, (self[0], self[1], self[2]))


#: :func:`trusted_record` without its call, as ``make_record(Record, (path, value, time))``:
#: for the paths that build a record of every value read or notified, whose fields
#: are checked already (a call costs more than building the tuple).
make_record = tuple.__new__


def trusted_record(path: Path, value: Value, time: float | None = None) -> Record:
    """A record whose fields the caller already checked (a decoder's typed values)."""
    return make_record(Record, (path, value, time))


class Records(list[Record]):
    """Records, and the multiple resources that hold no instance (``empty``).

    A multiple resource with zero instances is a value of its own: a Write
    replace of it leaves the resource empty, and TLV must send it as a
    Multiple Resource entry whatever its number of instances, 0 included
    (Core 1.1.1 §7.4.3). It has no record, since a record is one value, and
    a sentinel record would be a value every format, filter and consumer of
    records would have to skip. So the resource paths ride alongside: the
    formats that can express an empty multiple resource (TLV, LwM2M CBOR)
    fill ``empty`` when decoding and write it when encoding; the others, and
    every consumer that has no use for it, see a plain list of records.
    Equality is the list's (``empty`` is not compared).
    """

    __slots__ = ("empty",)

    def __init__(self, records: Iterable[Record] = (), empty: Iterable[Path] = ()) -> None:
        super().__init__(records)
        #: Resource paths (3 components) of multiple resources with no instance.
        self.empty: frozenset[Path] = frozenset(empty)


def empty_resources(records: Iterable[Record]) -> frozenset[Path]:
    """The multiple resources ``records`` gives with no instance (see :class:`Records`)."""
    return records.empty if isinstance(records, Records) else frozenset()


def joined_records(parts: Iterable[Sequence[Record]]) -> list[Record]:
    """The records of ``parts`` one after the other, keeping the multiple resources
    they give with no instance (a :class:`Records` then, else a plain list)."""
    records: list[Record] = []
    empty: list[Path] = []
    for part in parts:
        records.extend(part)
        empty.extend(empty_resources(part))
    return Records(records, empty) if empty else records


def records_from_mapping(values: Mapping[Path, Value]) -> list[Record]:
    """Records from ``{path: value}``, in path order (the order payloads use)."""
    return [Record(path, values[path]) for path in sorted(values)]


def records_to_dict(records: Iterable[Record]) -> dict[Path, Value]:
    """``{path: value}``; for repeated paths (time series) the last record wins."""
    return {record.path: record.value for record in records}


def apply_types(records: Iterable[Record], types: TypeLookup | None) -> list[Record]:
    """Re-type decoded values with the resource definitions, when known.

    Self-describing formats decode numbers as int/float and strings as str;
    this turns them into datetime for Time, ObjLnk for Objlnk text, float for
    Float given as an integer, and rejects values that contradict the model.
    Raises :class:`InvalidValueError`; decoders wrap it in their own error.
    """
    out: list[Record] = []
    for record in records:
        path, value, time = record
        rtype = types(path) if types is not None else None
        if rtype is None:
            out.append(record)
            continue
        if rtype is _NONE:
            raise InvalidValueError(f"{path} is executable and has no value")
        typed = coerce(value, rtype)
        # Most values already have their type: the record stays as it was built.
        out.append(record if typed is value else make_record(Record, (path, typed, time)))
    return out


_NONE = ResourceType.NONE
