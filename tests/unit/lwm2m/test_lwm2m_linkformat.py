from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.attributes import Attributes
from aiolwm2m.lwm2m.formats.errors import FormatEncodeError, LinkFormatError
from aiolwm2m.lwm2m.linkformat import Link, ObjectEntry
from aiolwm2m.lwm2m.path import Path


def test_register_payload() -> None:
    links = linkformat.registration_links(
        {0: [0, 1], 1: [0], 2: [], 3: [0], 5: [], 21: [0], 3303: [1, 0]},
        {1: "1.1", 3: "1.1", 5: "1.0"},
        content_formats=[11543],
    )
    assert linkformat.encode(links) == (
        b'</>;rt="oma.lwm2m";ct=11543,</1>;ver=1.1,</1/0>,</2>,</3>;ver=1.1,</3/0>,</5>,'
        b"</3303/0>,</3303/1>"
    )


def test_register_payload_minimal_and_alternate_root() -> None:
    assert linkformat.encode(linkformat.registration_links({1: [0], 3: [0]})) == b"</1/0>,</3/0>"
    links = linkformat.registration_links({3: [0]}, root="/lwm2m/", content_formats=[110, 112])
    assert linkformat.encode(links) == b'</lwm2m>;rt="oma.lwm2m";ct="110 112",</lwm2m/3/0>'
    registration = linkformat.parse_registration(linkformat.decode(linkformat.encode(links)))
    assert registration.root == "/lwm2m"
    assert registration.content_formats == (110, 112)
    assert registration.objects == {3: ObjectEntry(None, (0,))}


def test_parse_registration() -> None:
    payload = b'</>;rt="oma.lwm2m";ct=110, </1/0>,</3>;ver=1.1,</3/0>,</5>'
    registration = linkformat.parse_registration(linkformat.decode(payload))
    assert registration.root == "" and registration.content_formats == (110,)
    assert registration.objects == {
        1: ObjectEntry(None, (0,)),
        3: ObjectEntry("1.1", (0,)),
        5: ObjectEntry(None, ()),
    }
    with pytest.raises(LinkFormatError):
        linkformat.parse_registration(linkformat.decode(b"</3/0/1>"))
    with pytest.raises(LinkFormatError):
        linkformat.parse_registration(linkformat.decode(b'</>;rt="oma.lwm2m";ct=abc'))


def test_discover_payload() -> None:
    links = linkformat.discover_links(
        [
            (Path(3), {"ver": "1.1"}),
            (Path(3, 0), Attributes(pmin=10).as_dict()),
            (Path(3, 0, 1), {}),
            (Path(3, 0, 6), {"dim": 8}),
            (Path(3, 0, 7), {"gt": 50.0, "lt": 42.2, "st": None}),
        ]
    )
    assert linkformat.encode(links) == (
        b"</3>;ver=1.1,</3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=8,</3/0/7>;gt=50;lt=42.2"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "0.00001"),
        (-2.5e-7, "-0.00000025"),
        (1e20, "100000000000000000000"),
        (1.2345e30, "1234500000000000000000000000000"),  # not int()'s binary expansion
        (1e16 + 2, "10000000000000002"),
        (12.5, "12.5"),
        (0.1, "0.1"),
        (3.0, "3"),
        (-0.0, "0"),
    ],
)
def test_float_attributes_written_as_plain_decimals(value: float, text: str) -> None:
    # Core 1.1.1 §5.1.2: gt/lt/st are Float values written as decimal numbers.
    assert linkformat.format_value(value) == text
    links = linkformat.discover_links([(Path(3303, 0, 5700), {"gt": value})])
    assert linkformat.encode(links) == f"</3303/0/5700>;gt={text}".encode()
    assert float(text) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_attributes_exact_without_exponent(value: float) -> None:
    text = linkformat.format_value(value)
    assert float(text) == value and "e" not in text.lower()


def test_decode_quoted_strings_with_separators() -> None:
    payload = b'</3/0/1>;pmin=10;dim=3;title="a,b;c\\"d\\\\";obs , </a>;rt="x y";ct=40\n'
    assert linkformat.decode(payload) == [
        Link("/3/0/1", (("pmin", "10"), ("dim", "3"), ("title", 'a,b;c"d\\'), ("obs", None))),
        Link("/a", (("rt", "x y"), ("ct", "40"))),
    ]
    assert linkformat.decode(b"") == [] and linkformat.decode(b"  \r\n") == []
    assert linkformat.decode("</1>;a=") == [Link("/1", (("a", ""),))]


def test_link_helpers() -> None:
    link = linkformat.decode(b"</lwm2m/3/0>;pmin=5;pmin=6")[0]
    assert link.get("pmin") == "5" and link.has("pmin") and link.get("pmax") is None
    assert link.path("/lwm2m") == Path(3, 0)
    with pytest.raises(LinkFormatError):
        link.path("/other")
    with pytest.raises(LinkFormatError):
        Link("/x").path()


@pytest.mark.parametrize(
    "payload",
    [
        b"/3/0",
        b"<3/0",
        b"</3/0>;",
        b"</3/0>;=1",
        b'</3/0>;a="unterminated',
        b'</3/0>;a="x\\',
        b"</3/0>,",
        b"</3/0> </1>",
        b"</3/0>;a=b c",
        b"</3 /0>",
        b"\xff",
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(LinkFormatError):
        linkformat.decode(payload)


def test_encode_rejects_unwritable() -> None:
    with pytest.raises(FormatEncodeError):
        linkformat.encode([Link("/a b")])
    with pytest.raises(FormatEncodeError):
        linkformat.encode([Link("/a", (("bad name", "1"),))])
    with pytest.raises(FormatEncodeError):
        linkformat.format_value(float("nan"))


param_names = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
param_values = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12
)
links = st.builds(
    Link,
    st.from_regex(r"/[a-z0-9/]{0,12}", fullmatch=True),
    st.lists(st.tuples(param_names, param_values), max_size=4).map(tuple),
)


@given(st.lists(links, max_size=5))
def test_round_trip(values: list[Link]) -> None:
    assert linkformat.decode(linkformat.encode(values)) == values


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_link_format_error(data: bytes) -> None:
    try:
        for link in linkformat.decode(data):
            with contextlib.suppress(LinkFormatError):
                link.path()
    except LinkFormatError:
        pass


@settings(max_examples=300)
@given(st.text(alphabet='</>;=,"\\ a1.', max_size=40))
def test_random_link_like_text(text: str) -> None:
    with contextlib.suppress(LinkFormatError):
        linkformat.parse_registration(linkformat.decode(text))
