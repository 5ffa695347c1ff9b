"""The value tree shared by every content format: a flat list of :class:`Record`.

Why flat records and not nested objects/instances/resources: every format can
be mapped to and from "(path, value, optional time)" without loss, SenML *is*
that list, timestamped notifications need the same path more than once, and a
flat list is trivial to build, filter (``base.contains(r.path)``) and compare
in tests. Nesting is recomputed by the formats that need it (TLV, LwM2M CBOR).

Single-instance resources use a 3-component path (``/3/0/9``); each instance of
a multiple-instance resource is one record with a 4-component path
(``/3/0/6/0``). Empty containers (an object instance or a multiple resource
with no values) produce no record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .model import InvalidValueError, ObjLnk, ResourceType, TypeLookup, Value, coerce
from .path import Path

__all__ = ["Record", "apply_types", "records_from_mapping", "records_to_dict"]

_VALUE_TYPES = (str, int, float, bytes, ObjLnk, datetime)


@dataclass(frozen=True, slots=True)
class Record:
    """One resource (instance) value, optionally with a measurement time.

    ``time`` is absolute Unix seconds as carried by SenML ``bt``/``t`` (used by
    Send and stored notifications). Formats without timestamps ignore it.
    """

    path: Path
    value: Value
    time: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path) or self.path.level < 3:
            raise InvalidValueError(
                f"a record needs a resource or resource-instance path: {self.path!r}"
            )
        if not isinstance(self.value, _VALUE_TYPES):
            raise InvalidValueError(f"unsupported value type {type(self.value).__name__}")
        if self.time is not None and (
            isinstance(self.time, bool) or not isinstance(self.time, int | float)
        ):
            raise InvalidValueError(f"record time must be a number: {self.time!r}")


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
        rtype = types(record.path) if types is not None else None
        if rtype is None:
            out.append(record)
            continue
        if rtype is ResourceType.NONE:
            raise InvalidValueError(f"{record.path} is executable and has no value")
        out.append(Record(record.path, coerce(record.value, rtype), record.time))
    return out
