"""SenML JSON (110) and SenML CBOR (112) with the LwM2M conventions."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lwm2m_strategies import Schema, based_records, with_times

from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import senml_cbor, senml_json
from aiolwm2m.lwm2m.formats.errors import FormatEncodeError, SenmlCborError, SenmlJsonError
from aiolwm2m.lwm2m.model import ObjLnk, ResourceType
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record

REGISTRY = load_builtin()

# Core spec 7.4.4 example: Read /3/0 in SenML JSON.
DEVICE_JSON = [
    {"bn": "/3/0/", "n": "0", "vs": "Open Mobile Alliance"},
    {"n": "1", "vs": "Lightweight M2M Client"},
    {"n": "2", "vs": "345000123"},
    {"n": "3", "vs": "1.0"},
    {"n": "6/0", "v": 1},
    {"n": "6/1", "v": 5},
    {"n": "7/0", "v": 3800},
    {"n": "7/1", "v": 5000},
    {"n": "8/0", "v": 125},
    {"n": "8/1", "v": 900},
    {"n": "9", "v": 100},
    {"n": "10", "v": 15},
    {"n": "11/0", "v": 0},
    {"n": "13", "v": 1367491215},
    {"n": "14", "vs": "+02:00"},
    {"n": "16", "vs": "U"},
]


def device_records() -> list[Record]:
    out = []
    for entry in DEVICE_JSON:
        value = entry.get("vs", entry.get("v"))
        path = Path.parse("/3/0/" + str(entry["n"]))
        if path == Path(3, 0, 13):
            value = datetime.fromtimestamp(1367491215, UTC)
        out.append(Record(path, value))  # type: ignore[arg-type]
    return out


def test_spec_device_example_json() -> None:
    payload = json.dumps(DEVICE_JSON).encode()
    assert senml_json.decode(payload, Path(3, 0), REGISTRY.type_of) == device_records()
    assert json.loads(senml_json.encode(device_records(), Path(3, 0))) == DEVICE_JSON


def test_device_example_cbor_uses_integer_labels() -> None:
    labels = {"bn": -2, "n": 0, "v": 2, "vs": 3}
    cbor_entries = [{labels[k]: v for k, v in entry.items()} for entry in DEVICE_JSON]
    assert (
        senml_cbor.decode(cbor2.dumps(cbor_entries), Path(3, 0), REGISTRY.type_of)
        == device_records()
    )
    assert cbor2.loads(senml_cbor.encode(device_records(), Path(3, 0))) == cbor_entries


def test_value_kinds_json() -> None:
    records = [
        Record(Path(1, 0, 6), True),
        Record(Path(1, 0, 10), ObjLnk(11, 0)),
        Record(Path(0, 0, 3), b"\xfb\xff\x00"),
        Record(Path(3303, 0, 5700), 18.5),
    ]
    payload = senml_json.encode(records, Path())
    assert json.loads(payload) == [
        {"n": "/1/0/6", "vb": True},
        {"n": "/1/0/10", "vlo": "11:0"},
        {"n": "/0/0/3", "vd": "-_8A"},  # base64url, no padding
        {"n": "/3303/0/5700", "v": 18.5},
    ]
    assert senml_json.decode(payload, Path(), REGISTRY.type_of) == records
    # Padded standard-alphabet base64 from other stacks is accepted too.
    assert senml_json.decode(b'[{"n":"/0/0/3","vd":"+/8A"}]', Path())[0].value == b"\xfb\xff\x00"


def test_value_kinds_cbor() -> None:
    records = [
        Record(Path(1, 0, 6), True),
        Record(Path(1, 0, 10), ObjLnk(11, 0)),
        Record(Path(0, 0, 3), b"\xfb\xff\x00"),
        Record(Path(3303, 0, 5700), 18.5),
    ]
    decoded = cbor2.loads(senml_cbor.encode(records, Path()))
    assert decoded == [
        {0: "/1/0/6", 4: True},
        {0: "/1/0/10", "vlo": "11:0"},  # no integer label exists for vlo
        {0: "/0/0/3", 8: b"\xfb\xff\x00"},
        {0: "/3303/0/5700", 2: 18.5},
    ]
    assert (
        senml_cbor.decode(senml_cbor.encode(records, Path()), Path(), REGISTRY.type_of) == records
    )


def test_base_fields_carry_over_and_time() -> None:
    payload = json.dumps(
        [
            {"bn": "/3303/0/5700", "bt": 1_700_000_000, "v": 18.5},
            {"t": 10, "v": 19},
            {"bn": "/3303/1/", "n": "5700", "t": -5, "v": 20.25},
        ]
    ).encode()
    records = senml_json.decode(payload, Path(), REGISTRY.type_of)
    assert records == [
        Record(Path(3303, 0, 5700), 18.5, 1_700_000_000.0),
        Record(Path(3303, 0, 5700), 19.0, 1_700_000_010.0),
        Record(Path(3303, 1, 5700), 20.25, 1_699_999_995.0),
    ]
    assert isinstance(records[1].value, float)  # typed as Float by the registry
    assert senml_json.decode(senml_json.encode(records, Path()), Path()) == records


def test_base_value_applies_to_numbers() -> None:
    payload = b'[{"bn":"/3303/0/","bv":10,"n":"5700","v":1.5}]'
    assert senml_json.decode(payload, Path(3303))[0].value == 11.5


def test_resource_level_base_name() -> None:
    record = Record(Path(3, 0, 0), "OMA")
    payload = senml_json.encode([record], Path(3, 0, 0))
    assert json.loads(payload) == [{"bn": "/3/0/0", "vs": "OMA"}]
    mixed = [Record(Path(3, 0, 6, 0), 1), Record(Path(3, 0, 6, 1), 5)]
    assert json.loads(senml_json.encode(mixed, Path(3, 0, 6))) == [
        {"bn": "/3/0/6/", "n": "0", "v": 1},
        {"n": "1", "v": 5},
    ]


def test_composite_paths() -> None:
    paths = [Path(3, 0, 0), Path(1), Path(3303, 0)]
    assert senml_json.decode_paths(senml_json.encode_paths(paths)) == paths
    assert senml_cbor.decode_paths(senml_cbor.encode_paths(paths)) == paths
    assert senml_json.decode_paths(b'[{"bn":"/3/0/","n":"1"},{"n":"2"}]') == [
        Path(3, 0, 1),
        Path(3, 0, 2),
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{}",
        b"[1]",
        b'[{"n":"/3/0/0"}]',  # no value
        b'[{"n":"/3/0/0","v":1,"vs":"x"}]',  # two values
        b'[{"n":"/3/0","v":1}]',  # above resource level
        b'[{"n":"3/0/0","v":1}]',  # not a path
        b'[{"v":1}]',  # no name at all
        b'[{"n":"/3/0/0","v":"1"}]',
        b'[{"n":"/3/0/0","v":true}]',
        b'[{"n":"/3/0/0","vb":1}]',
        b'[{"n":"/3/0/0","vd":"***"}]',
        b'[{"n":"/3/0/0","vd":"a"}]',
        b'[{"n":"/3/0/0","vlo":"1-2"}]',
        b'[{"n":"/3/0/0","v":NaN}]',
        b'[{"n":"/3/0/0","v":1e999}]',
        b'[{"n":"/3/0/0","v":1,"t":"x"}]',
        b'[{"n":"/3/0/0","v":1,"n":"/3/0/1"}]',  # duplicate label
        b'[{"n":"/3/0/0","v":1,"foo_":1}]',  # must-understand extension
        b'[{"bn":1,"n":"/3/0/0","v":1}]',
        b'[{"n":"/4/0/0","v":1}]',  # outside the request path
        b'[{"n":"/3/0/13","v":1.5}]',  # Time must be integral
        b'[{"n":"/3/0/9","vs":"100"}]',  # wrong kind for an Integer resource
        b'[{"n":"/3/0/4","v":1}]',  # executable resource
        b"\xff",
        b"[" * 100000,
    ],
)
def test_malformed_json(payload: bytes) -> None:
    with pytest.raises(SenmlJsonError):
        senml_json.decode(payload, Path(3), REGISTRY.type_of)


@pytest.mark.parametrize(
    "entries",
    [
        {},
        [[1]],
        [{0: "/3/0/0", 2: "x"}],
        [{0: "/3/0/0", 8: "not bytes"}],
        [{0: "/3/0/0", 2: 1, 1.5: 1}],
        [{0: "/3/0/0", 2: 1, "n": "/3/0/1"}],  # same label twice (int and text)
        [{0: "/3/0/0", 2: cbor2.CBORTag(1234, 1)}],
        [{0: "/3/0/9", 2: cbor2.CBORTag(4, [1, "x"])}],  # malformed decimal fraction
        [{0: "/3/0/9", 2: cbor2.CBORTag(4, [1])}],
        [{0: "/3/0/9", 2: cbor2.CBORTag(4, [1.5, 3])}],
        [{0: "/3/0/0", True: 1}],
    ],
)
def test_malformed_cbor(entries: Any) -> None:
    with pytest.raises(SenmlCborError):
        senml_cbor.decode(cbor2.dumps(entries), Path(3), REGISTRY.type_of)


@pytest.mark.parametrize("bver", [11, 1000, 10.0, "10", True, None])
def test_bver_above_10_or_not_an_integer_refused(bver: object) -> None:
    # RFC 8428 §4.4: a pack of a version higher than the receiver's (10) must
    # not be used; a version is an integer.
    with pytest.raises(SenmlJsonError):
        senml_json.decode(json.dumps([{"bver": bver, "n": "/3/0/9", "v": 1}]).encode(), Path(3))
    with pytest.raises(SenmlCborError):
        senml_cbor.decode(cbor2.dumps([{-1: bver, 0: "/3/0/9", 2: 1}]), Path(3))
    with pytest.raises(SenmlCborError):  # in a later record, with the text label
        senml_cbor.decode(cbor2.dumps([{0: "/3/0/9", 2: 1}, {"bver": bver, 2: 2}]), Path(3))
    with pytest.raises(SenmlJsonError):  # a Read-Composite request body too
        senml_json.decode_paths(json.dumps([{"bver": bver, "n": "/3/0/9"}]).encode())


@pytest.mark.parametrize("bver", [10, 5])
def test_bver_up_to_10_accepted(bver: int) -> None:
    expected = [Record(Path(3, 0, 9), 1)]
    payload = json.dumps([{"bver": bver, "n": "/3/0/9", "v": 1}]).encode()
    assert senml_json.decode(payload, Path(3)) == expected
    assert senml_cbor.decode(cbor2.dumps([{-1: bver, 0: "/3/0/9", 2: 1}]), Path(3)) == expected


def fraction(exponent: int, mantissa: int) -> cbor2.CBORTag:
    """A CBOR decimal fraction, mantissa × 10**exponent (RFC 8949 §3.4.4, tag 4)."""
    return cbor2.CBORTag(4, [exponent, mantissa])


def test_decimal_fractions_decode_as_floats() -> None:
    payload = cbor2.dumps(
        [
            {-2: "/3303/0/5700", -3: fraction(0, 1_700_000_000), -5: fraction(-1, 5), 2: 1234},
            {6: fraction(-1, 25), 2: fraction(-2, 1234)},
            {-2: "/3303/1/5700", 2: cbor2.CBORTag(5, [-1, 3])},  # a bigfloat, 3 × 2**-1
        ]
    )
    records = senml_cbor.decode(payload, Path(3303))
    assert records == [
        Record(Path(3303, 0, 5700), 1234.5, 1_700_000_000.0),
        Record(Path(3303, 0, 5700), 12.84, 1_700_000_002.5),
        Record(Path(3303, 1, 5700), 2.0, 1_700_000_000.0),
    ]
    assert all(type(record.value) is float for record in records)
    typed = senml_cbor.decode(
        cbor2.dumps([{0: "/3/0/9", 2: fraction(1, 5)}]), Path(3), REGISTRY.type_of
    )
    assert typed == [Record(Path(3, 0, 9), 50)]  # an Integer resource


@pytest.mark.parametrize("label", [2, 6, -3, -5])
def test_decimal_fraction_out_of_float_range_refused(label: int) -> None:
    entry = {0: "/3303/0/5700", 2: 1.5, label: fraction(400, 1)}  # 10**400 (label 2: as v)
    with pytest.raises(SenmlCborError):
        senml_cbor.decode(cbor2.dumps([entry]), Path(3303))


def test_unknown_integer_labels_ignored() -> None:
    payload = cbor2.dumps([{0: "/3/0/9", 2: 100, 99: "ignored"}])
    assert senml_cbor.decode(payload, Path(3)) == [Record(Path(3, 0, 9), 100)]


def test_encode_errors() -> None:
    with pytest.raises(FormatEncodeError):
        senml_json.encode([Record(Path(3, 0, 9), float("nan"))], Path())
    with pytest.raises(FormatEncodeError):
        senml_json.encode([Record(Path(3, 0, 9), 1)], Path(4))


@given(based_records().flatmap(lambda c: st.tuples(st.just(c), with_times(c[2]))), st.booleans())
def test_round_trip_json(
    case: tuple[tuple[Schema, Path, list[Record]], list[Record]], root: bool
) -> None:
    (schema, base, _), records = case
    base = Path() if root else base
    assert senml_json.decode(senml_json.encode(records, base), base, schema.type_of) == records


@given(based_records().flatmap(lambda c: st.tuples(st.just(c), with_times(c[2]))))
def test_round_trip_cbor(case: tuple[tuple[Schema, Path, list[Record]], list[Record]]) -> None:
    (schema, base, _), records = case
    assert senml_cbor.decode(senml_cbor.encode(records, base), base, schema.type_of) == records


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_cbor_non_finite_float_is_refused_for_a_float_resource(value: float) -> None:
    """CBOR can carry NaN and infinity, a Float resource cannot hold them (see
    ``model.coerce``): a typed decode error, which a Write answers 4.00."""
    payload = cbor2.dumps([{0: "/3303/0/5700", 2: value}])
    types = {Path(3303, 0, 5700): ResourceType.FLOAT}.get
    with pytest.raises(SenmlCborError, match="finite"):
        senml_cbor.decode(payload, Path(3303, 0, 5700), types)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
senml_keys = st.sampled_from(["bn", "n", "v", "vs", "vb", "vd", "vlo", "t", "bt", "bv", "x_"])
senml_like = st.lists(
    st.dictionaries(
        senml_keys,
        st.sampled_from(["/3/0/", "0", "/3/0/9", "9", "1:2", "AAE"])
        | st.integers()
        | st.floats()
        | st.booleans(),
        max_size=5,
    ),
    max_size=4,
)


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from([Path(), Path(3), Path(3, 0)]), st.booleans())
def test_random_bytes_raise_only_senml_errors(data: bytes, base: Path, typed: bool) -> None:
    types = REGISTRY.type_of if typed else None
    for decode, error in ((senml_json.decode, SenmlJsonError), (senml_cbor.decode, SenmlCborError)):
        with contextlib.suppress(error):
            decode(data, base, types)
    for decode_paths, error in (
        (senml_json.decode_paths, SenmlJsonError),
        (senml_cbor.decode_paths, SenmlCborError),
    ):
        with contextlib.suppress(error):
            decode_paths(data)


@settings(max_examples=300)
@given(json_values | senml_like, st.booleans())
def test_structured_garbage_raises_only_senml_errors(document: object, typed: bool) -> None:
    types = REGISTRY.type_of if typed else None
    with contextlib.suppress(SenmlJsonError):
        senml_json.decode(json.dumps(document).encode(), Path(), types)
    labels = {"bn": -2, "bt": -3, "bv": -5, "n": 0, "v": 2, "vs": 3, "vb": 4, "t": 6, "vd": 8}
    if isinstance(document, list):
        document = [
            {labels.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item
            for item in document
        ]
    with contextlib.suppress(SenmlCborError):
        senml_cbor.decode(cbor2.dumps(document), Path(), types)
