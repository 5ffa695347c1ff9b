"""SenML (RFC 8428) records <-> LwM2M records, shared by the JSON and CBOR codecs.

The two SenML serialisations differ only in syntax (text labels vs integer
labels, base64 vs byte strings), so the LwM2M rules live here once:

* the resource path is ``bn + n`` (base name carries over to later records);
* one value field per record: ``v`` (numbers, Time), ``vs`` (String, Corelnk),
  ``vb`` (Boolean), ``vd`` (Opaque), ``vlo`` (Objlnk as ``"3:0"``);
* time is ``bt + t``, stored as :attr:`Record.time`; values of ``bt + t`` below
  2**28 are relative to "now" per RFC 8428, which we pass through unchanged
  because sans-IO code has no clock (the engine decides what to do with them);
* labels ending in ``_`` are must-understand extensions and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import InvalidValueError, ObjLnk, TypeLookup, time_to_seconds
from ..path import Path, PathError
from ..values import Record, apply_types
from .errors import ContentFormatError, FormatEncodeError

__all__ = ["entries_to_paths", "entries_to_records", "paths_to_entries", "records_to_entries"]

_VALUE_LABELS = ("v", "vs", "vb", "vd", "vlo")


def _names(paths: Sequence[Path], base: Path) -> tuple[str | None, list[str]]:
    """Pick a base name and per-record names whose concatenation is each path.

    ``bn`` is the request path (plus ``/`` when every record lies strictly
    below it, the style of the spec examples); an empty ``n`` is omitted.
    """
    for path in paths:
        if not base.contains(path):
            raise FormatEncodeError(f"{path} is not below the request path {base}")
    if base.is_root:
        return None, [str(path) for path in paths]
    base_name = str(base)
    if all(path != base for path in paths):
        base_name += "/"
    return base_name, [str(path)[len(base_name) :] for path in paths]


def records_to_entries(records: Sequence[Record], base: Path) -> list[dict[str, Any]]:
    """SenML records with textual labels; ``vd`` holds raw bytes (codecs encode them)."""
    base_name, names = _names([record.path for record in records], base)
    entries: list[dict[str, Any]] = []
    for index, (record, name) in enumerate(zip(records, names, strict=True)):
        entry: dict[str, Any] = {}
        if index == 0 and base_name is not None:
            entry["bn"] = base_name
        if name:
            entry["n"] = name
        put_value(entry, record, SENML_LABELS)
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class ValueLabels:
    """Entry labels of the non-numeric value kinds; numbers and Time always go in ``v``."""

    boolean: str
    string: str
    opaque: str
    objlnk: str
    opaque_as: Callable[[bytes], Any] = bytes


SENML_LABELS = ValueLabels("vb", "vs", "vd", "vlo")


def put_value(entry: dict[str, Any], record: Record, labels: ValueLabels) -> None:
    """Store ``record``'s value and time in a SenML-like entry (SenML, OMA JSON)."""
    value = record.value
    if isinstance(value, bool):
        entry[labels.boolean] = value
    elif isinstance(value, int | float):
        entry["v"] = value
    elif isinstance(value, str):
        entry[labels.string] = value
    elif isinstance(value, bytes):
        entry[labels.opaque] = labels.opaque_as(value)
    elif isinstance(value, ObjLnk):
        entry[labels.objlnk] = str(value)
    elif isinstance(value, datetime):
        try:
            entry["v"] = time_to_seconds(value)
        except InvalidValueError as exc:
            raise FormatEncodeError(str(exc)) from exc
    if record.time is not None:
        time = record.time
        entry["t"] = int(time) if isinstance(time, float) and time.is_integer() else time


def paths_to_entries(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Name-only records, the Read-Composite / Observe-Composite request body."""
    return [{"n": str(path)} for path in paths]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Walker:
    """Applies the base-field carry-over rules of RFC 8428 section 4.5."""

    def __init__(self, error: type[ContentFormatError]) -> None:
        self.error = error
        self.base_name = ""
        self.base_time: float | None = None
        self.base_value: float | int | None = None

    def step(self, entry: object) -> tuple[Path, dict[str, Any], float | None]:
        error = self.error
        if not isinstance(entry, dict):
            raise error("each SenML record must be a map/object")
        for label in entry:
            if label.endswith("_"):
                raise error(f"unsupported must-understand label {label!r}")
        if "bn" in entry:
            if not isinstance(entry["bn"], str):
                raise error("bn must be a string")
            self.base_name = entry["bn"]
        if "bt" in entry:
            if not _number(entry["bt"]):
                raise error("bt must be a number")
            self.base_time = entry["bt"]
        if "bv" in entry:
            if not _number(entry["bv"]):
                raise error("bv must be a number")
            self.base_value = entry["bv"]
        name = entry.get("n", "")
        if not isinstance(name, str):
            raise error("n must be a string")
        full_name = self.base_name + name
        if not full_name:
            raise error("record without a name")
        try:
            path = Path.parse(full_name)
        except PathError as exc:
            raise error(f"record name is not an LwM2M path: {exc}") from None
        time: float | None = None
        if "t" in entry or self.base_time is not None:
            offset = entry.get("t", 0)
            if not _number(offset):
                raise error("t must be a number")
            try:
                time = float((self.base_time or 0) + offset)
            except OverflowError:
                raise error("time out of range") from None
            if not math.isfinite(time):
                raise error("time is not finite")
        return path, entry, time

    def value(self, entry: dict[str, Any], decode_data: Callable[[object], bytes]) -> object:
        error = self.error
        present = [label for label in _VALUE_LABELS if label in entry]
        if len(present) != 1:
            raise error(f"a record needs exactly one value field, got {present or 'none'}")
        label = present[0]
        raw = entry[label]
        if label == "v":
            if not _number(raw):
                raise error("v must be a number")
            if self.base_value is not None:
                try:
                    raw = raw + self.base_value
                except OverflowError:
                    raise error("v + bv out of range") from None
            return raw
        if label == "vs":
            if not isinstance(raw, str):
                raise error("vs must be a string")
            return raw
        if label == "vb":
            if not isinstance(raw, bool):
                raise error("vb must be a boolean")
            return raw
        if label == "vd":
            return decode_data(raw)
        if not isinstance(raw, str):
            raise error("vlo must be a string")
        try:
            return ObjLnk.parse(raw)
        except InvalidValueError as exc:
            raise error(str(exc)) from None


def entries_to_records(
    entries: object,
    base: Path,
    types: TypeLookup | None,
    error: type[ContentFormatError],
    decode_data: Callable[[object], bytes],
) -> list[Record]:
    """LwM2M records from parsed SenML entries; every path must lie below ``base``."""
    if not isinstance(entries, list):
        raise error("a SenML pack must be an array")
    walker = _Walker(error)
    records: list[Record] = []
    for entry in entries:
        path, fields, time = walker.step(entry)
        if path.level < 3:
            raise error(f"value records need a resource path, got {path}")
        if not base.contains(path):
            raise error(f"{path} is not below the request path {base}")
        value = walker.value(fields, decode_data)
        try:
            records.append(Record(path, value, time))  # type: ignore[arg-type]
        except InvalidValueError as exc:
            raise error(str(exc)) from None
    try:
        return apply_types(records, types)
    except InvalidValueError as exc:
        raise error(str(exc)) from None


def entries_to_paths(entries: object, error: type[ContentFormatError]) -> list[Path]:
    """Paths named by a Read-Composite / Observe-Composite request body."""
    if not isinstance(entries, list):
        raise error("a SenML pack must be an array")
    walker = _Walker(error)
    return [walker.step(entry)[0] for entry in entries]
