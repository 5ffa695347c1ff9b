"""text/plain, opaque, plain CBOR, OMA JSON, LwM2M CBOR and the Content-Format dispatcher."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lwm2m_strategies import VALUE_TYPES, Schema, based_records, values, with_times

from aiolwm2m.errors import DecodeError
from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import (
    VALUE_FORMATS,
    CborError,
    ContentFormat,
    ContentFormatError,
    FormatEncodeError,
    Lwm2mCborError,
    OmaJsonError,
    OpaqueError,
    SenmlCborError,
    SenmlJsonError,
    TextError,
    TlvError,
    UnsupportedFormatError,
    cbor,
    decode,
    encode,
    lwm2m_cbor,
    oma_json,
    opaque,
    text,
)
from aiolwm2m.lwm2m.model import ObjLnk, ResourceType, Value
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record, Records, empty_resources

REGISTRY = load_builtin()

# -- text/plain ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("Open Mobile Alliance", b"Open Mobile Alliance"),
        ("é", b"\xc3\xa9"),
        (-42, b"-42"),
        (18.5, b"18.5"),
        (True, b"1"),
        (False, b"0"),
        (ObjLnk(1, 2), b"1:2"),
        (datetime.fromtimestamp(1367491215, UTC), b"1367491215"),
    ],
)
def test_text_encodings(value: Value, wire: bytes) -> None:
    assert text.encode_value(value) == wire


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (6.667e-11, b"0.00000000006667"),  # Core 1.1.1 Table C.2's own example
        (1e-05, b"0.00001"),
        (-2.5e-7, b"-0.00000025"),
        (1e20, b"100000000000000000000"),
        (-1.2345e30, b"-1234500000000000000000000000000"),  # repr's digits, not int()'s
        (5e-324, b"0." + b"0" * 323 + b"5"),
        (0.1, b"0.1"),
        (3.0, b"3.0"),
        (-0.0, b"-0.0"),
    ],
)
def test_text_floats_are_plain_decimals(value: float, wire: bytes) -> None:
    # Core 1.1.1 Appendix C, Table C.2: a Float is text without exponent.
    assert text.encode_value(value) == wire
    assert text.decode_value(wire, ResourceType.FLOAT) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_text_any_float_without_exponent(value: float) -> None:
    wire = text.encode_value(value)
    assert b"e" not in wire.lower()
    assert text.decode_value(wire, ResourceType.FLOAT) == value


@pytest.mark.parametrize(
    ("wire", "rtype", "value"),
    [
        (b"100", ResourceType.INTEGER, 100),
        (b"+5", ResourceType.INTEGER, 5),
        (b"18446744073709551615", ResourceType.UNSIGNED, 2**64 - 1),
        (b"1", ResourceType.BOOLEAN, True),
        (b"1.5e3", ResourceType.FLOAT, 1500.0),  # exponents still read: Table C.2 has no grammar
        (b"1.0E-5", ResourceType.FLOAT, 1e-05),  # as Java's Float.toString writes it
        (b"-.5", ResourceType.FLOAT, -0.5),
        (b"7", ResourceType.FLOAT, 7.0),
        (b"1367491215", ResourceType.TIME, datetime.fromtimestamp(1367491215, UTC)),
        (b"65535:65535", ResourceType.OBJLNK, ObjLnk(65535, 65535)),
        (b"</1/0>", ResourceType.CORELNK, "</1/0>"),
        (b"100", None, "100"),
    ],
)
def test_text_decodings(wire: bytes, rtype: ResourceType | None, value: Value) -> None:
    assert text.decode_value(wire, rtype) == value


@pytest.mark.parametrize(
    ("wire", "rtype"),
    [
        (b"\xff", ResourceType.STRING),
        (b"true", ResourceType.BOOLEAN),
        (b"2", ResourceType.BOOLEAN),
        (b" 1", ResourceType.INTEGER),
        (b"1_0", ResourceType.INTEGER),
        (b"9223372036854775808", ResourceType.INTEGER),
        (b"-1", ResourceType.UNSIGNED),
        (b"1.5", ResourceType.TIME),
        (b"nan", ResourceType.FLOAT),
        (b"inf", ResourceType.FLOAT),
        (b"1e999", ResourceType.FLOAT),
        (b"1" * 401, ResourceType.FLOAT),  # over the length bound
        (b" 1.5", ResourceType.FLOAT),
        (b"\xd9\xa3", ResourceType.INTEGER),  # Arabic-Indic digit, which int() would take
        (b"1:", ResourceType.OBJLNK),
        (b"AQIDBAU", ResourceType.OPAQUE),  # base64 without its padding
        (b"AQIDBAV=", ResourceType.OPAQUE),  # non-zero pad bits (RFC 4648 §3.5)
        (b"AQ==AQ==", ResourceType.OPAQUE),  # data after the padding
        (b"AQID\nBAU=", ResourceType.OPAQUE),
        (b" AQIDBAU=", ResourceType.OPAQUE),
        (b"-_8=", ResourceType.OPAQUE),  # the URL-safe alphabet is SenML's, not text's
        (b"\xc3\xa9", ResourceType.OPAQUE),
        (b"", ResourceType.NONE),
    ],
)
def test_text_rejects(wire: bytes, rtype: ResourceType) -> None:
    with pytest.raises(TextError):
        text.decode_value(wire, rtype)


def test_text_record_api() -> None:
    base = Path(3, 0, 9)
    assert text.decode(b"100", base, REGISTRY.type_of) == [Record(base, 100)]
    assert text.encode([Record(base, 100)], base) == b"100"
    with pytest.raises(FormatEncodeError):
        text.encode([Record(base, 1), Record(Path(3, 0, 10), 1)], base)
    with pytest.raises(FormatEncodeError):
        text.encode_value(float("inf"))
    with pytest.raises(TextError):
        text.decode(b"1", Path(3, 0))


def test_text_opaque_is_padded_base64() -> None:
    # Core 1.1.1 Appendix C, Table C.2, whose example this is.
    base = Path(5, 0, 0)
    assert text.encode([Record(base, b"\x01\x02\x03\x04\x05")], base) == b"AQIDBAU="
    assert text.decode(b"AQIDBAU=", base, REGISTRY.type_of) == [
        Record(base, b"\x01\x02\x03\x04\x05")
    ]
    assert text.encode_value(b"\xfb\xff") == b"+/8="
    assert text.decode_value(b"", ResourceType.OPAQUE) == b""
    assert decode(ContentFormat.TEXT, b"+/8=", base, REGISTRY.type_of)[0].value == b"\xfb\xff"


@given(st.sampled_from(VALUE_TYPES).flatmap(lambda t: st.tuples(st.just(t), values(t))))
def test_text_round_trip(case: tuple[ResourceType, Value]) -> None:
    rtype, value = case
    assert text.decode_value(text.encode_value(value), rtype) == value


@settings(max_examples=300)
@given(st.binary(max_size=40), st.sampled_from([*VALUE_TYPES, ResourceType.NONE, None]))
def test_text_random_bytes(data: bytes, rtype: ResourceType | None) -> None:
    with contextlib.suppress(TextError):
        text.decode_value(data, rtype)


# -- opaque -----------------------------------------------------------------------------


def test_opaque() -> None:
    base = Path(5, 0, 0)
    assert opaque.decode(b"\x00\xff", base, REGISTRY.type_of) == [Record(base, b"\x00\xff")]
    assert opaque.encode([Record(base, b"\x00\xff")], base) == b"\x00\xff"
    with pytest.raises(OpaqueError):
        opaque.decode(b"1", Path(3, 0, 9), REGISTRY.type_of)  # Integer resource
    with pytest.raises(OpaqueError):
        opaque.decode(b"1", Path(5, 0))
    with pytest.raises(FormatEncodeError):
        opaque.encode([Record(base, "text")], base)


# -- OMA JSON ----------------------------------------------------------------------------


def test_oma_json_example() -> None:
    payload = json.dumps(
        {
            "bn": "/3/0/",
            "bt": 1_500_000_000,
            "e": [
                {"n": "0", "sv": "Open Mobile Alliance"},
                {"n": "6/0", "v": 1},
                {"n": "13", "v": 1367491215, "t": -5},
                {"n": "22/0", "ov": "66:0"},
            ],
        }
    ).encode()
    assert oma_json.decode(payload, Path(3, 0), REGISTRY.type_of) == [
        Record(Path(3, 0, 0), "Open Mobile Alliance", 1_500_000_000.0),
        Record(Path(3, 0, 6, 0), 1, 1_500_000_000.0),
        Record(Path(3, 0, 13), datetime.fromtimestamp(1367491215, UTC), 1_499_999_995.0),
        Record(Path(3, 0, 22, 0), ObjLnk(66, 0), 1_500_000_000.0),
    ]


def test_oma_json_opaque_is_base64_string() -> None:
    record = Record(Path(0, 0, 3), b"\x01\x02")
    payload = oma_json.encode([record], Path(0, 0))
    assert json.loads(payload) == {"bn": "/0/0/", "e": [{"n": "3", "sv": "AQI="}]}
    assert oma_json.decode(payload, Path(0, 0), REGISTRY.type_of) == [record]
    assert oma_json.decode(payload, Path(0, 0)) == [Record(Path(0, 0, 3), "AQI=")]


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'{"e":{}}',
        b'{"bn":"/3/0/","e":[{"n":"9"}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","v":"1"}]}',
        b'{"bn":"/3/0/","e":[{"n":"22/0","ov":"66"}]}',
        b'{"bn":"/4/0/","e":[{"n":"0","v":1}]}',
        b'{"bn":"/0/0/","e":[{"n":"3","sv":"!!"}]}',
        b'{"bn":"/3/","e":[{"n":"0","v":1}]}',
        b'{"bn":1,"e":[]}',
        b'{"bt":"x","e":[]}',
        b"{",
    ],
)
def test_oma_json_rejects(payload: bytes) -> None:
    base = Path(0) if b"/0/0/" in payload else Path(3)
    with pytest.raises(OmaJsonError):
        oma_json.decode(payload, base, REGISTRY.type_of)


@given(based_records().flatmap(lambda c: st.tuples(st.just(c), with_times(c[2]))))
def test_oma_json_round_trip(case: tuple[tuple[Schema, Path, list[Record]], list[Record]]) -> None:
    (schema, base, _), records = case
    assert oma_json.decode(oma_json.encode(records, base), base, schema.type_of) == records


# -- LwM2M CBOR -----------------------------------------------------------------------------


def test_lwm2m_cbor_nesting() -> None:
    records = [
        Record(Path(3, 0, 0), "Open Mobile Alliance"),
        Record(Path(3, 0, 6, 0), 1),
        Record(Path(3, 0, 6, 1), 5),
        Record(Path(3, 0, 13), datetime.fromtimestamp(1367491215, UTC)),
        Record(Path(3, 0, 22, 0), ObjLnk(66, 0)),
    ]
    payload = lwm2m_cbor.encode(records, Path(3, 0))
    assert cbor2.loads(payload) == {
        3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}, 13: 1367491215, 22: {0: "66:0"}}}
    }
    assert lwm2m_cbor.decode(payload, Path(3, 0), REGISTRY.type_of) == records


def test_lwm2m_cbor_array_keys_and_tagged_time() -> None:
    payload = cbor2.dumps({(3, 0): {9: 100, 13: cbor2.CBORTag(1, 1367491215)}})
    assert lwm2m_cbor.decode(payload, Path(3), REGISTRY.type_of) == [
        Record(Path(3, 0, 9), 100),
        Record(Path(3, 0, 13), datetime.fromtimestamp(1367491215, UTC)),
    ]


def test_lwm2m_cbor_empty_map_is_a_multiple_resource_with_no_instance() -> None:
    payload = cbor2.dumps({3: {0: {6: {}, 9: 100}}})
    records = lwm2m_cbor.decode(payload, Path(3, 0), REGISTRY.type_of)
    assert records == [Record(Path(3, 0, 9), 100)]
    assert empty_resources(records) == {Path(3, 0, 6)}
    resource = lwm2m_cbor.decode(cbor2.dumps({(3, 0, 6): {}}), Path(3, 0, 6), REGISTRY.type_of)
    assert resource == [] and empty_resources(resource) == {Path(3, 0, 6)}
    for contradicting in ({3: {0: {6: {}}}, (3, 0, 6, 0): 1}, {3: {0: {6: {}}}, (3, 0, 6): 1}):
        with pytest.raises(Lwm2mCborError):
            lwm2m_cbor.decode(cbor2.dumps(contradicting), Path(3), REGISTRY.type_of)
    with pytest.raises(Lwm2mCborError):  # outside the request path
        lwm2m_cbor.decode(cbor2.dumps({3: {0: {6: {}}}}), Path(3, 0, 7), REGISTRY.type_of)
    written = lwm2m_cbor.encode(Records([Record(Path(3, 0, 9), 100)], [Path(3, 0, 6)]), Path(3))
    assert cbor2.loads(written) == {3: {0: {6: {}, 9: 100}}}


@pytest.mark.parametrize(
    "document",
    [
        [1],
        {3: 1},  # value above resource level
        {3: {0: {9: {0: {1: 2}}}}},  # deeper than a resource instance
        {"3": {0: {9: 1}}},
        {(3, 0, 9): [1]},
        {(3, 0, 9, 0, 1): 1},
        {(): {0: {9: 1}}},
        {4: {0: {0: 1}}},  # outside the request path
        {3: {0: {9: "x"}}},  # wrong type for Battery Level
    ],
)
def test_lwm2m_cbor_rejects(document: object) -> None:
    with pytest.raises(Lwm2mCborError):
        lwm2m_cbor.decode(cbor2.dumps(document), Path(3), REGISTRY.type_of)


@given(based_records())
def test_lwm2m_cbor_round_trip(case: tuple[Schema, Path, list[Record]]) -> None:
    schema, base, records = case
    decoded = lwm2m_cbor.decode(lwm2m_cbor.encode(records, base), base, schema.type_of)
    assert sorted(decoded, key=lambda r: r.path) == sorted(records, key=lambda r: r.path)


# -- plain CBOR (60): one value ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "wire"),
    [
        ("/3/0/9", 87, "1857"),  # Integer: major type 0
        ("/3303/0/5700", -40, "3827"),  # major type 1
        ("/3303/0/5700", 21.5, "f94d60"),  # Float: shortest exact width (half)
        ("/3303/0/5700", 0.1, "fb3fb999999999999a"),
        ("/3/0/0", "Acme", "6441636d65"),  # String: text string
        ("/1/0/6", True, "f5"),  # Boolean
        ("/0/0/3", b"\x00\x01", "420001"),  # Opaque: byte string
        ("/3/0/13", datetime.fromtimestamp(1367491215, UTC), "1a5182428f"),  # Time: seconds
        ("/3/0/22/0", ObjLnk(66, 0), "6436363a30"),  # Objlnk: "66:0"
    ],
)
def test_cbor_single_values(path: str, value: Value, wire: str) -> None:
    base = Path.parse(path)
    payload = cbor.encode([Record(base, value)], base)
    assert payload.hex() == wire
    assert decode(ContentFormat.CBOR, payload, base, REGISTRY.type_of) == [Record(base, value)]


def test_cbor_time_also_as_tagged_epoch_or_date_string() -> None:
    base = Path(3, 0, 13)
    when = datetime.fromtimestamp(1367491215, UTC)
    for item in (cbor2.CBORTag(1, 1367491215), cbor2.CBORTag(0, "2013-05-02T10:40:15Z")):
        assert cbor.decode(cbor2.dumps(item), base, REGISTRY.type_of) == [Record(base, when)]


@pytest.mark.parametrize(
    ("payload", "base"),
    [
        (b"", Path(3, 0, 9)),
        (bytes.fromhex("18570a"), Path(3, 0, 9)),  # trailing byte after the value
        (cbor2.dumps([1]), Path(3, 0, 9)),
        (cbor2.dumps({0: 1}), Path(3, 0, 9)),
        (cbor2.dumps("x"), Path(3, 0, 9)),  # Battery Level is an Integer
        (cbor2.dumps(1.5), Path(3, 0, 9)),
        (cbor2.dumps(cbor2.CBORTag(1, 1)), Path(3, 0, 0)),  # a time for a String
        (cbor2.dumps(cbor2.CBORTag(99, 1)), Path(3, 0, 9)),
        (cbor2.dumps(7), Path(3, 0)),  # one value needs a resource path
    ],
)
def test_cbor_rejects(payload: bytes, base: Path) -> None:
    with pytest.raises(CborError):
        cbor.decode(payload, base, REGISTRY.type_of)


def test_cbor_carries_one_value_only() -> None:
    with pytest.raises(FormatEncodeError):
        cbor.encode([Record(Path(3, 0, 9), 1), Record(Path(3, 0, 10), 2)], Path(3, 0))
    with pytest.raises(FormatEncodeError):
        cbor.encode([Record(Path(3, 0, 9), 1)], Path(3, 0))


# -- dispatcher ---------------------------------------------------------------------------------


def test_content_format_numbers() -> None:
    assert (
        ContentFormat.TEXT == 0 and ContentFormat.LINK_FORMAT == 40 and ContentFormat.OPAQUE == 42
    )
    assert ContentFormat.CBOR == 60
    assert ContentFormat.SENML_JSON == 110 and ContentFormat.SENML_CBOR == 112
    assert ContentFormat.TLV == 11542 and ContentFormat.OMA_JSON == 11543
    assert ContentFormat.LWM2M_CBOR == 11544
    assert ContentFormat.LINK_FORMAT not in VALUE_FORMATS


def test_dispatch() -> None:
    base = Path(3, 0, 9)
    records = [Record(base, 100)]
    for content_format in sorted(
        VALUE_FORMATS - {ContentFormat.OPAQUE, ContentFormat.LEGACY_OPAQUE}
    ):
        payload = encode(content_format, records, base)
        assert decode(content_format, payload, base, REGISTRY.type_of) == records, content_format
    with pytest.raises(UnsupportedFormatError):
        decode(40, b"</1>", base)
    with pytest.raises(UnsupportedFormatError):
        encode(9999, records, base)


EXPECTED_ERROR: dict[int, type[ContentFormatError]] = {
    ContentFormat.TEXT: TextError,
    ContentFormat.LEGACY_TEXT: TextError,
    ContentFormat.OPAQUE: OpaqueError,
    ContentFormat.LEGACY_OPAQUE: OpaqueError,
    ContentFormat.CBOR: CborError,
    ContentFormat.TLV: TlvError,
    ContentFormat.LEGACY_TLV: TlvError,
    ContentFormat.SENML_JSON: SenmlJsonError,
    ContentFormat.SENML_CBOR: SenmlCborError,
    ContentFormat.OMA_JSON: OmaJsonError,
    ContentFormat.LEGACY_JSON: OmaJsonError,
    ContentFormat.LWM2M_CBOR: Lwm2mCborError,
}
ALL_BASES = [Path(), Path(3), Path(3, 0), Path(3, 0, 9), Path(3, 0, 6, 0), Path(5, 0, 0)]


@settings(max_examples=400)
@given(
    st.sampled_from([*sorted(VALUE_FORMATS), 40, 9999]),
    st.binary(max_size=48),
    st.sampled_from(ALL_BASES),
    st.booleans(),
)
def test_every_decoder_raises_only_its_error(
    content_format: int, data: bytes, base: Path, typed: bool
) -> None:
    expected = EXPECTED_ERROR.get(content_format, UnsupportedFormatError)
    try:
        decode(content_format, data, base, REGISTRY.type_of if typed else None)
    except ContentFormatError as exc:
        assert type(exc) is expected and isinstance(exc, DecodeError)
    else:
        assert expected is not UnsupportedFormatError
