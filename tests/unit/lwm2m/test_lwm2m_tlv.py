"""OMA TLV: the LwM2M Core spec appendix examples, header corner cases, properties."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lwm2m_strategies import Schema, based_records, object_records, values

from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import tlv
from aiolwm2m.lwm2m.formats.errors import FormatEncodeError, TlvError
from aiolwm2m.lwm2m.model import ObjLnk, ResourceType
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record, Records, empty_resources

REGISTRY = load_builtin()


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(" ".join(text.split()))


# Core spec appendix: Read /3/0 of the example client's Device object.
DEVICE = hexbytes(
    """
    C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
    C8 02 09 33 34 35 30 30 30 31 32 33
    C3 03 31 2E 30
    86 06 41 00 01 41 01 05
    88 07 08 42 00 0E D8 42 01 13 88
    87 08 41 00 7D 42 01 03 84
    C1 09 64
    C1 0A 0F
    83 0B 41 00 00
    C4 0D 51 82 42 8F
    C6 0E 2B 30 32 3A 30 30
    C1 10 55
    """
)

DEVICE_VALUES = {
    "/3/0/0": "Open Mobile Alliance",
    "/3/0/1": "Lightweight M2M Client",
    "/3/0/2": "345000123",
    "/3/0/3": "1.0",
    "/3/0/6/0": 1,
    "/3/0/6/1": 5,
    "/3/0/7/0": 3800,
    "/3/0/7/1": 5000,
    "/3/0/8/0": 125,
    "/3/0/8/1": 900,
    "/3/0/9": 100,
    "/3/0/10": 15,
    "/3/0/11/0": 0,
    "/3/0/13": datetime.fromtimestamp(1367491215, UTC),
    "/3/0/14": "+02:00",
    "/3/0/16": "U",
}


def device_records() -> list[Record]:
    return [Record(Path.parse(p), v) for p, v in DEVICE_VALUES.items()]


def test_spec_device_object_instance() -> None:
    records = tlv.decode(DEVICE, Path(3, 0), REGISTRY.type_of)
    assert records == device_records()
    assert tlv.encode(records, Path(3, 0)) == DEVICE


def test_spec_device_object_with_instance_wrapper() -> None:
    # Read /3: the same resources wrapped in object instance 0 (16-bit length 0x0079).
    wrapped = hexbytes("08 00 79") + DEVICE
    assert len(DEVICE) == 0x79
    assert tlv.decode(wrapped, Path(3), REGISTRY.type_of) == device_records()
    assert tlv.encode(device_records(), Path(3)) == wrapped
    # Some servers wrap a Write to /3/0 in its own instance; accepted.
    assert tlv.decode(wrapped, Path(3, 0), REGISTRY.type_of) == device_records()
    with pytest.raises(TlvError):
        tlv.decode(wrapped, Path(3, 1), REGISTRY.type_of)


def test_spec_single_resource_and_multiple_resource() -> None:
    manufacturer = DEVICE[:23]
    assert tlv.decode(manufacturer, Path(3, 0, 0), REGISTRY.type_of) == [
        Record(Path(3, 0, 0), "Open Mobile Alliance")
    ]
    power = hexbytes("86 06 41 00 01 41 01 05")
    records = tlv.decode(power, Path(3, 0, 6), REGISTRY.type_of)
    assert records == [Record(Path(3, 0, 6, 0), 1), Record(Path(3, 0, 6, 1), 5)]
    assert tlv.encode(records, Path(3, 0, 6)) == power
    # Resource instance read /3/0/6/1.
    assert tlv.encode([records[1]], Path(3, 0, 6, 1)) == hexbytes("41 01 05")
    assert tlv.decode(hexbytes("41 01 05"), Path(3, 0, 6, 1), REGISTRY.type_of) == [records[1]]
    # Bare resource instances for a multiple resource are tolerated.
    assert tlv.decode(hexbytes("41 00 01 41 01 05"), Path(3, 0, 6), REGISTRY.type_of) == records


def test_multiple_resource_with_no_instance_is_named_empty() -> None:
    """A Multiple Resource TLV of length 0 is the resource with zero instances
    (Core 1.1.1 §7.4.3: that TLV is used "whatever the number of Instances (0, 1
    or more)"): no record, but the resource path in ``empty``, at every level."""
    typed = REGISTRY.type_of
    resource = tlv.decode(hexbytes("80 06"), Path(3, 0, 6), typed)
    assert resource == [] and empty_resources(resource) == {Path(3, 0, 6)}
    instance = tlv.decode(hexbytes("80 06 C1 09 64 80 07"), Path(3, 0), typed)
    assert instance == [Record(Path(3, 0, 9), 100)]
    assert empty_resources(instance) == {Path(3, 0, 6), Path(3, 0, 7)}
    wrapped = tlv.decode(hexbytes("02 00 80 06"), Path(3), typed)
    assert wrapped == [] and empty_resources(wrapped) == {Path(3, 0, 6)}
    assert empty_resources(tlv.decode(DEVICE, Path(3, 0), typed)) == frozenset()


def test_empty_multiple_resources_are_encoded_as_multiple_resource_tlvs_of_length_0() -> None:
    """What the decoder reads back: in resource id order among the records."""
    typed = REGISTRY.type_of
    resource = Records(empty=[Path(3, 0, 6)])
    assert tlv.encode(resource, Path(3, 0, 6)) == hexbytes("80 06")
    instance = Records([Record(Path(3, 0, 0), "A"), Record(Path(3, 0, 9), 100)], [Path(3, 0, 6)])
    payload = tlv.encode(instance, Path(3, 0))
    assert payload == hexbytes("C1 00 41 80 06 C1 09 64")
    assert empty_resources(tlv.decode(payload, Path(3, 0), typed)) == {Path(3, 0, 6)}
    only_empty = Records(empty=[Path(3, 1, 7)])
    assert tlv.encode(only_empty, Path(3)) == hexbytes("02 01 80 07")
    for wrong, base in (
        (Records([Record(Path(3, 0, 6, 0), 1)], [Path(3, 0, 6)]), Path(3, 0)),
        (Records(empty=[Path(3, 0, 6)]), Path(3, 0, 7)),
        (Records(empty=[Path(3, 0, 6)]), Path(3, 0, 6, 0)),
    ):
        with pytest.raises(FormatEncodeError):
            tlv.encode(wrong, base)


# Core spec appendix: Read /2 with two Access Control instances; the ACL of the
# second one has a resource instance with a 16-bit id (0x0136 = 310).
ACCESS_CONTROL = hexbytes(
    """
    08 00 0E  C1 00 01  C1 01 00  83 02 41 7F 07  C1 03 7F
    08 02 12  C1 00 03  C1 01 00  87 02 41 7F 07 61 01 36 01  C1 03 7F
    """
)


def test_spec_access_control_instances() -> None:
    records = tlv.decode(ACCESS_CONTROL, Path(2), REGISTRY.type_of)
    assert records == [
        Record(Path(2, 0, 0), 1),
        Record(Path(2, 0, 1), 0),
        Record(Path(2, 0, 2, 127), 7),
        Record(Path(2, 0, 3), 127),
        Record(Path(2, 2, 0), 3),
        Record(Path(2, 2, 1), 0),
        Record(Path(2, 2, 2, 127), 7),
        Record(Path(2, 2, 2, 310), 1),
        Record(Path(2, 2, 3), 127),
    ]
    assert tlv.encode(records, Path(2)) == ACCESS_CONTROL


def test_spec_server_instance() -> None:
    # Read /1: short server id 1, lifetime 86400 (4 bytes), storing true, binding "U".
    payload = hexbytes("08 00 0F C1 00 01 C4 01 00 01 51 80 C1 06 01 C1 07 55")
    records = tlv.decode(payload, Path(1), REGISTRY.type_of)
    assert records == [
        Record(Path(1, 0, 0), 1),
        Record(Path(1, 0, 1), 86400),
        Record(Path(1, 0, 6), True),
        Record(Path(1, 0, 7), "U"),
    ]
    # Our encoder picks the shortest integer width, so lifetime shrinks to 4 bytes
    # either way (86400 needs more than 16 bits): byte-identical.
    assert tlv.encode(records, Path(1)) == payload


def test_spec_object_link_example() -> None:
    # Appendix example object 66: multiple Objlnk resource 0, string 1, integer 2.
    payload = hexbytes(
        """
        88 00 0C 44 00 00 42 00 00 44 01 00 42 00 01
        C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30
        C4 02 12 34 56 78
        """
    )
    schema = Schema(
        66,
        {
            0: (ResourceType.OBJLNK, True),
            1: (ResourceType.STRING, False),
            2: (ResourceType.INTEGER, False),
        },
    )
    records = tlv.decode(payload, Path(66, 0), schema.type_of)
    assert records == [
        Record(Path(66, 0, 0, 0), ObjLnk(66, 0)),
        Record(Path(66, 0, 0, 1), ObjLnk(66, 1)),
        Record(Path(66, 0, 1), "8613800755500"),
        Record(Path(66, 0, 2), 0x12345678),
    ]
    assert tlv.encode(records, Path(66, 0)) == payload


def test_untyped_decode_returns_bytes() -> None:
    records = tlv.decode(hexbytes("C1 09 64"), Path(3, 0))
    assert records == [Record(Path(3, 0, 9), b"\x64")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "00"),
        (-1, "ff"),
        (127, "7f"),
        (128, "0080"),
        (-129, "ff7f"),
        (86400, "00015180"),
        (2**31, "0000000080000000"),
        (2**64 - 1, "ffffffffffffffff"),  # only an Unsigned can be this large
        (True, "01"),
        (1.5, "3fc00000"),
        (0.1, "3fb999999999999a"),  # not exact in 32 bits
        (ObjLnk(1, 2), "00010002"),
        ("é", "c3a9"),
        (datetime.fromtimestamp(1367491215, UTC), "5182428f"),
    ],
)
def test_value_encodings(value: object, expected: str) -> None:
    assert tlv.encode_value(value).hex() == expected  # type: ignore[arg-type]


def test_unsigned_and_float_decoding() -> None:
    assert tlv.decode_value(b"\xff", ResourceType.UNSIGNED) == 255
    assert tlv.decode_value(b"\xff", ResourceType.INTEGER) == -1
    assert tlv.decode_value(b"\x00\x01\x02", ResourceType.INTEGER) == 258  # lenient width
    assert tlv.decode_value(struct.pack(">d", 0.1), ResourceType.FLOAT) == 0.1
    for data, rtype in [
        (b"", ResourceType.INTEGER),
        (b"\x00" * 9, ResourceType.INTEGER),
        (b"\x00" * 3, ResourceType.FLOAT),
        (b"\x02", ResourceType.BOOLEAN),
        (b"\x00\x01", ResourceType.BOOLEAN),
        (b"\x00\x01\x00", ResourceType.OBJLNK),
        (b"\xff", ResourceType.STRING),
        (b"\x7f" + b"\xff" * 7, ResourceType.TIME),
        (b"", ResourceType.NONE),
    ]:
        with pytest.raises(TlvError):
            tlv.decode_value(data, rtype)


@pytest.mark.parametrize(
    ("identifier", "length", "header"),
    [
        (5, 7, "c7 05"),
        (5, 8, "c8 05 08"),
        (300, 8, "e8 01 2c 08"),
        (5, 255, "c8 05 ff"),
        (5, 256, "d0 05 01 00"),
        (5, 65535, "d0 05 ff ff"),
        (5, 65536, "d8 05 01 00 00"),
    ],
)
def test_header_widths(identifier: int, length: int, header: str) -> None:
    payload = tlv.serialize([tlv.Tlv(tlv.Kind.RESOURCE, identifier, b"x" * length)])
    assert payload[: len(hexbytes(header))] == hexbytes(header)
    (parsed,) = tlv.parse(payload)
    assert parsed.id == identifier and len(parsed.value) == length


def test_value_too_long() -> None:
    with pytest.raises(FormatEncodeError):
        tlv.serialize([tlv.Tlv(tlv.Kind.RESOURCE, 0, b"\0" * (2**24))])


@pytest.mark.parametrize(
    ("payload", "base"),
    [
        ("c8 00", Path(3, 0)),  # truncated length
        ("c3 00 31", Path(3, 0)),  # value runs past the end
        ("e1 01", Path(3, 0)),  # truncated 16-bit id
        ("08 00 03 41 00 01", Path(3)),  # resource instance directly in an object instance
        ("83 06 c1 00 01", Path(3, 0)),  # resource inside a multiple resource
        ("83 06 03 00 00", Path(3, 0)),  # object instance inside a multiple resource
        ("c1 09 64 c1 09 64", Path(3, 0)),  # duplicate resource
        ("c1 09 64", Path(3)),  # resource where instances are expected
        ("c1 09 64", Path(3, 0, 10)),  # wrong resource id
        ("c1 09 64", Path()),  # root
        ("41 01 05", Path(3, 0, 6, 2)),  # wrong resource instance id
        ("c1 09 64 c1 0a 0f", Path(3, 0, 9)),  # two resources for one resource path
        ("08 00 03 c1 09 64 08 00 03 c1 09 64", Path(3)),  # duplicate instance
        ("28 ff ff 00", Path(3)),  # reserved instance id 65535
        ("86 06 41 00 01 41 00 01", Path(3, 0)),  # duplicate resource instance
    ],
)
def test_malformed(payload: str, base: Path) -> None:
    with pytest.raises(TlvError):
        tlv.decode(hexbytes(payload), base, REGISTRY.type_of)


def test_encode_errors() -> None:
    record = Record(Path(3, 0, 9), 100)
    with pytest.raises(FormatEncodeError):
        tlv.encode([record], Path(4))
    with pytest.raises(FormatEncodeError):
        tlv.encode([record], Path())
    with pytest.raises(FormatEncodeError):
        tlv.encode([record, Record(Path(3, 0, 9, 0), 1)], Path(3, 0))
    with pytest.raises(FormatEncodeError):
        tlv.encode([record, record], Path(3, 0))
    with pytest.raises(FormatEncodeError):
        tlv.encode([Record(Path(3, 0, 9), 2**64)], Path(3, 0))


@given(object_records(finite=False))
def test_round_trip_object_level(case: tuple[Schema, Path, list[Record]]) -> None:
    schema, base, records = case
    assert tlv.decode(tlv.encode(records, base), base, schema.type_of) == records


@given(based_records(finite=False))
def test_round_trip_any_level(case: tuple[Schema, Path, list[Record]]) -> None:
    schema, base, records = case
    assert tlv.decode(tlv.encode(records, base), base, schema.type_of) == records


@given(
    st.sampled_from([t for t in ResourceType if t is not ResourceType.NONE]).flatmap(
        lambda t: st.tuples(st.just(t), values(t, finite=False))
    )
)
def test_value_round_trip(case: tuple[ResourceType, object]) -> None:
    rtype, value = case
    assert tlv.decode_value(tlv.encode_value(value), rtype) == value  # type: ignore[arg-type]


BASES = [Path(), Path(3), Path(3, 0), Path(3, 0, 6), Path(3, 0, 6, 1), Path(1, 0), Path(2)]


@settings(max_examples=500)
@given(st.binary(max_size=64), st.sampled_from(BASES), st.booleans())
def test_random_bytes_raise_only_tlv_error(data: bytes, base: Path, typed: bool) -> None:
    with contextlib.suppress(TlvError):
        tlv.decode(data, base, REGISTRY.type_of if typed else None)


@settings(max_examples=500)
@given(st.data())
def test_mutated_spec_payload_raises_only_tlv_error(data: st.DataObject) -> None:
    payload = bytearray(data.draw(st.sampled_from([DEVICE, ACCESS_CONTROL])))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    with contextlib.suppress(TlvError):
        tlv.decode(bytes(payload[:cut]), data.draw(st.sampled_from(BASES)), REGISTRY.type_of)
