from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiolwm2m.errors import DecodeError
from aiolwm2m.lwm2m.attributes import (
    NOTIFICATION_ATTRIBUTES,
    Attributes,
    AttributeUpdate,
    InvalidAttributesError,
    effective_attributes,
    parse_query,
    write_attributes,
)
from aiolwm2m.lwm2m.model import ResourceType
from aiolwm2m.lwm2m.path import Path

TEMPERATURE = Path(3303, 0, 5700)


def test_field_order_matches_names() -> None:
    assert tuple(f.name for f in fields(Attributes)) == NOTIFICATION_ATTRIBUTES
    assert issubclass(InvalidAttributesError, DecodeError)


def test_parse_query_string_and_options() -> None:
    update = parse_query("pmin=10&gt=20.5")
    assert update == AttributeUpdate(Attributes(pmin=10, gt=20.5))
    assert isinstance(update.values.pmin, int) and isinstance(update.values.gt, float)
    assert parse_query(["pmax=60", "lt=-3", "st=0.5", "epmin=1", "epmax=2"]).values == Attributes(
        pmax=60, lt=-3.0, st=0.5, epmin=1, epmax=2
    )
    removal = parse_query(["gt=", "pmax"])
    assert removal.cleared == {"gt", "pmax"} and not removal.values
    assert removal.names == {"gt", "pmax"}


@pytest.mark.parametrize(
    "query",
    [
        "pmin=1.5",  # integer attribute
        "pmin=-1",
        "pmin=abc",
        "gt=1e3",  # not in the spec's number syntax
        "gt=abc",
        "gt=inf",
        "gt=-inf",
        "gt=nan",
        "gt=1.",
        "gt=.5",
        "gt=+1",
        "gt= 1",
        "gt=--1",
        "gt=1_0",
        "gt=\u0663",  # an Arabic-Indic digit, which float() would take
        "gt=1" + "0" * 309,  # a plain decimal, but beyond the float range
        "lt=-0." + "0" * 397 + "1",  # 401 characters: over the length bound
        "st=-1",
        "dim=3",  # read-only
        "ver=1.1",
        "foo=1",
        "pmin=1&pmin=2",
        "pmin&pmin=2",
    ],
)
def test_parse_query_rejects(query: str) -> None:
    with pytest.raises(InvalidAttributesError):
        parse_query(query)


@pytest.mark.parametrize(
    "attributes",
    [
        Attributes(pmin=10, pmax=5),
        Attributes(epmin=10, epmax=5),
        Attributes(lt=5, gt=5),
        Attributes(lt=10, gt=5),
        Attributes(lt=0, gt=10, st=5),  # lt + 2*st == gt
        Attributes(st=-1),
        Attributes(pmin=-1),
    ],
)
def test_validation_rules(attributes: Attributes) -> None:
    with pytest.raises(InvalidAttributesError):
        attributes.validate()


def test_validation_accepts() -> None:
    Attributes(pmin=5, pmax=5, lt=0, gt=10, st=4.9, epmin=0, epmax=0).validate()


def test_write_attributes_levels_and_types() -> None:
    update = parse_query("gt=20&lt=10")
    assert write_attributes(Attributes(), update, TEMPERATURE, ResourceType.FLOAT) == Attributes(
        gt=20, lt=10
    )
    assert write_attributes(Attributes(), update, TEMPERATURE.child(1), ResourceType.FLOAT).gt == 20
    for path in (Path(3303), Path(3303, 0)):
        with pytest.raises(InvalidAttributesError):
            write_attributes(Attributes(), update, path)
    with pytest.raises(InvalidAttributesError):
        write_attributes(Attributes(), update, Path(3303, 0, 5701), ResourceType.STRING)
    with pytest.raises(InvalidAttributesError):
        write_attributes(Attributes(), parse_query("pmin=1"), Path())
    # pmin/pmax/epmin/epmax attach to every level.
    for path in (Path(3), Path(3, 0), Path(3, 0, 9), Path(3, 0, 6, 1)):
        assert write_attributes(Attributes(), parse_query("pmin=1&epmax=3"), path).pmin == 1


def test_write_attributes_validates_the_merged_result() -> None:
    current = Attributes(pmax=10, gt=20)
    with pytest.raises(InvalidAttributesError):
        write_attributes(current, parse_query("pmin=20"), TEMPERATURE)
    with pytest.raises(InvalidAttributesError):
        write_attributes(current, parse_query("lt=30"), TEMPERATURE)
    # Removing the conflicting value in the same request makes it valid.
    assert write_attributes(current, parse_query("pmin=20&pmax"), TEMPERATURE) == Attributes(
        pmin=20, gt=20
    )
    assert write_attributes(current, parse_query("gt"), TEMPERATURE) == Attributes(pmax=10)


def test_effective_inheritance() -> None:
    stored = {
        Path(3303): Attributes(pmin=1, pmax=100),
        Path(3303, 0): Attributes(pmin=5, epmin=2),
        TEMPERATURE: Attributes(gt=30.0, pmax=60),
        TEMPERATURE.child(0): Attributes(st=0.5),
    }
    assert effective_attributes(TEMPERATURE, stored) == Attributes(
        pmin=5, pmax=60, gt=30.0, epmin=2
    )
    assert effective_attributes(TEMPERATURE.child(0), stored) == Attributes(
        pmin=5, pmax=60, gt=30.0, st=0.5, epmin=2
    )
    assert effective_attributes(Path(3303, 1, 5700), stored) == Attributes(pmin=1, pmax=100)
    assert effective_attributes(Path(3303, 0), stored) == Attributes(pmin=5, pmax=100, epmin=2)


def test_effective_server_defaults() -> None:
    assert effective_attributes(TEMPERATURE, {}) == Attributes(pmin=0)
    assert effective_attributes(TEMPERATURE, {}, default_pmin=10, default_pmax=300) == Attributes(
        pmin=10, pmax=300
    )
    stored = {Path(3303, 0): Attributes(pmax=20)}
    assert effective_attributes(
        TEMPERATURE, stored, default_pmin=10, default_pmax=300
    ) == Attributes(pmin=10, pmax=20)


def test_effective_drops_inconsistent_maximum() -> None:
    stored = {Path(3303): Attributes(pmax=5, epmax=1), TEMPERATURE: Attributes(pmin=10, epmin=3)}
    assert effective_attributes(TEMPERATURE, stored) == Attributes(pmin=10, epmin=3)
    assert effective_attributes(TEMPERATURE, {}, default_pmin=60, default_pmax=30) == Attributes(
        pmin=60
    )


def test_effective_ignores_value_attributes_above_resource_level() -> None:
    stored = {Path(3303, 0): Attributes(gt=1.0)}  # cannot be written, but be robust
    assert effective_attributes(TEMPERATURE, stored).gt is None


def test_query_round_trip() -> None:
    attributes = Attributes(pmin=10, pmax=60, gt=20.5, lt=-1.0, st=0.25, epmin=1, epmax=30)
    assert parse_query(attributes.to_query()).values == attributes
    assert attributes.as_dict()["gt"] == 20.5


def test_query_round_trip_small_floats() -> None:
    # Written as plain decimals (Core 1.1.1 §5.1.2), not 1e-05 that parse_query refuses.
    attributes = Attributes(gt=1e-05, lt=-1.5e-10, st=2.5e-7)
    assert attributes.to_query() == ["gt=0.00001", "lt=-0.00000000015", "st=0.00000025"]
    assert parse_query(attributes.to_query()).values == attributes


@pytest.mark.parametrize(
    "value",
    [
        5e-324,  # the smallest subnormal: "0." and 323 zeros before the 5
        2.2250738585072014e-308,
        1e-05,
        0.1,
        1e20,  # 21 digits, over the old 15-digit limit
        1e16 + 2,
        1.7976931348623157e308,  # the largest double, 309 digits
        -5e-324,
        -1.5,
        -1e20,
        -1.7976931348623157e308,
        0.0,
        -7.0,
        1e15,
        123456789012345678.0,
    ],
)
def test_query_round_trip_edge_values(value: float) -> None:
    # Whatever to_query writes for a float (a plain decimal, Core 1.1.1 §5.1.2)
    # parse_query takes back as the same float, negative values included.
    for attributes in (Attributes(gt=value), Attributes(lt=value), Attributes(st=abs(value))):
        assert parse_query(attributes.to_query()).values == attributes


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_query_round_trip_any_finite_float(value: float) -> None:
    attributes = Attributes(gt=value, st=abs(value))
    assert parse_query(attributes.to_query()).values == attributes


def test_decimal_length_bound() -> None:
    longest = "-0." + "0" * 323 + "5" + "0" * 73  # 400 characters, the bound
    assert parse_query(["lt=" + longest]).values.lt == -5e-324
    assert parse_query(["gt=" + "0" * 399 + "1"]).values.gt == 1.0


def test_negative_thresholds_are_written_and_checked() -> None:
    update = parse_query("gt=-2.5&lt=-100000000000000000000")
    assert update.values == Attributes(gt=-2.5, lt=-1e20)
    assert write_attributes(Attributes(), update, TEMPERATURE, ResourceType.FLOAT) == update.values
    with pytest.raises(InvalidAttributesError):  # lt must stay below gt when both are negative
        write_attributes(Attributes(), parse_query("gt=-20&lt=-2.5"), TEMPERATURE)


@settings(max_examples=300)
@given(st.text(alphabet="pmaxingtlse=&.-0123456789", max_size=40))
def test_random_queries_raise_only_invalid_attributes(query: str) -> None:
    try:
        update = parse_query(query)
        write_attributes(Attributes(), update, TEMPERATURE, ResourceType.FLOAT)
    except InvalidAttributesError:
        pass
