from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from aiolwm2m.lwm2m.model import (
    INT64_MAX,
    UINT64_MAX,
    InvalidValueError,
    ObjLnk,
    Operations,
    ResourceDef,
    ResourceType,
    ValueRange,
    coerce,
    infer_type,
    time_to_seconds,
)
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record, apply_types, records_from_mapping, records_to_dict


def test_objlnk() -> None:
    link = ObjLnk.parse("66:0")
    assert link == ObjLnk(66, 0) and str(link) == "66:0"
    assert ObjLnk(65535, 65535).is_null
    for bad in ("66", "66:", ":0", "1:2:3", "70000:0", " 1:2", "-1:0"):
        with pytest.raises(InvalidValueError):
            ObjLnk.parse(bad)


@pytest.mark.parametrize(
    ("value", "rtype", "expected"),
    [
        ("x", ResourceType.STRING, "x"),
        ("</1>", ResourceType.CORELNK, "</1>"),
        (5, ResourceType.INTEGER, 5),
        (5.0, ResourceType.INTEGER, 5),
        (UINT64_MAX, ResourceType.UNSIGNED, UINT64_MAX),
        (3, ResourceType.FLOAT, 3.0),
        (True, ResourceType.BOOLEAN, True),
        (bytearray(b"ab"), ResourceType.OPAQUE, b"ab"),
        (0, ResourceType.TIME, datetime(1970, 1, 1, tzinfo=UTC)),
        ("1:2", ResourceType.OBJLNK, ObjLnk(1, 2)),
    ],
)
def test_coerce_accepts(value: object, rtype: ResourceType, expected: object) -> None:
    result = coerce(value, rtype)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "rtype"),
    [
        (b"x", ResourceType.STRING),
        (True, ResourceType.INTEGER),
        (5.5, ResourceType.INTEGER),
        (INT64_MAX + 1, ResourceType.INTEGER),
        (-1, ResourceType.UNSIGNED),
        (UINT64_MAX + 1, ResourceType.UNSIGNED),
        ("1.0", ResourceType.FLOAT),
        (10**400, ResourceType.FLOAT),
        (float("nan"), ResourceType.FLOAT),  # no text or JSON format can carry these
        (float("inf"), ResourceType.FLOAT),
        (-float("inf"), ResourceType.FLOAT),
        (1, ResourceType.BOOLEAN),
        ("ab", ResourceType.OPAQUE),
        (datetime(2020, 1, 1), ResourceType.TIME),  # naive
        (10**15, ResourceType.TIME),  # beyond the calendar
        ("1-2", ResourceType.OBJLNK),
        (1, ResourceType.NONE),
    ],
)
def test_coerce_rejects(value: object, rtype: ResourceType) -> None:
    with pytest.raises(InvalidValueError):
        coerce(value, rtype)


def test_time_canonicalised_to_utc_seconds() -> None:
    local = datetime(2020, 1, 1, 12, 0, 0, 900000, tzinfo=timezone(timedelta(hours=2)))
    result = coerce(local, ResourceType.TIME)
    assert result == datetime(2020, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert time_to_seconds(local) == 1577872800


def test_infer_type() -> None:
    assert infer_type(True) is ResourceType.BOOLEAN
    assert infer_type(1) is ResourceType.INTEGER
    assert infer_type(INT64_MAX + 1) is ResourceType.UNSIGNED
    assert infer_type(b"") is ResourceType.OPAQUE
    with pytest.raises(InvalidValueError):
        infer_type(None)


def test_value_ranges() -> None:
    assert ValueRange.parse("0..100") == ValueRange(0, 100)
    assert ValueRange.parse("The possible values are ...") is None
    sizes = ValueRange.parse("16,32,48")
    assert sizes is not None
    sizes.check(b"x" * 32, ResourceType.OPAQUE)
    with pytest.raises(InvalidValueError):
        sizes.check(b"x" * 31, ResourceType.OPAQUE)
    battery = ResourceDef(9, "Battery Level", ResourceType.INTEGER, range_enumeration="0..100")
    assert battery.validate(100) == 100
    with pytest.raises(InvalidValueError):
        battery.validate(101)
    uri = ResourceDef(0, "URI", ResourceType.STRING, range_enumeration="0..255 bytes")
    with pytest.raises(InvalidValueError):
        uri.validate("é" * 128)  # 256 bytes in UTF-8


def test_operations() -> None:
    assert Operations.RW.readable and Operations.RW.writable and not Operations.RW.executable
    assert Operations.E.executable and not Operations.NONE.readable


def test_records() -> None:
    with pytest.raises(InvalidValueError):
        Record(Path(3, 0), 1)
    with pytest.raises(InvalidValueError):
        Record(Path(3, 0, 1), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        Record(Path(3, 0, 1), 1, time="now")  # type: ignore[arg-type]
    mapping = {Path(3, 0, 9): 100, Path(3, 0, 0): "OMA"}
    records = records_from_mapping(mapping)
    assert [r.path for r in records] == [Path(3, 0, 0), Path(3, 0, 9)]
    assert records_to_dict(records) == mapping


def test_apply_types() -> None:
    def lookup(path: Path) -> ResourceType | None:
        return {13: ResourceType.TIME, 4: ResourceType.NONE}.get(path.resource_id or -1)

    (record,) = apply_types([Record(Path(3, 0, 13), 0)], lookup)
    assert record.value == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidValueError):
        apply_types([Record(Path(3, 0, 4), 0)], lookup)
    untouched = [Record(Path(3, 0, 1), 1)]
    assert apply_types(untouched, lookup) == untouched
